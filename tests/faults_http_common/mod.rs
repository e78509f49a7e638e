//! Helpers for `tests/faults_http.rs`: a web server in-process or as a child process, raw
//! requests, responses split out of the bytes that came back, and the conformance table.
#![allow(dead_code)] // not every helper is used by every test binary that includes this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket_lab::Endpoint;
use socket_lab::http::server::{HttpConfig, HttpEvent, HttpServer, RunningHttpServer};

/// Longest any single read in these tests waits before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A request every server must still answer after an attack: 204, then it closes.
pub const FRESH_REQUEST: &[u8] =
    b"GET /favicon.ico HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";

/// A web server in this process on 127.0.0.1, port 0.
pub struct TestServer {
    running: Option<RunningHttpServer>,
    pub port: u16,
    /// What it logged, as the lines it prints.
    logged: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut HttpConfig)) -> TestServer {
        let mut config = HttpConfig {
            endpoint: Endpoint::inet("127.0.0.1", 0),
            engine: crate::ENGINE,
            ..HttpConfig::default()
        };
        adjust(&mut config);
        let server = HttpServer::bind(config).expect("bind 127.0.0.1:0");
        let logged = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logged);
        let running = server.spawn(Arc::new(move |event: HttpEvent| {
            sink.lock().expect("log lock").push(event.to_string())
        }));
        let port = running.addr.port().expect("a TCP port");
        TestServer {
            running: Some(running),
            port,
            logged,
        }
    }

    /// The lines it has logged so far.
    pub fn logged(&self) -> Vec<String> {
        self.logged.lock().expect("log lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop();
        }
    }
}

/// `socket-lab http --port 0 ARGS` as a child process, so its descriptors and threads can be
/// counted in `/proc/<pid>` without the test's own getting in the way.
pub struct HttpChild {
    child: Child,
    pub port: u16,
    /// Its stdout (one line per request), as raw bytes, line by line.
    log: Receiver<Vec<u8>>,
    /// Its stderr after the address line, line by line.
    problems: Receiver<Vec<u8>>,
}

/// Reads `reader` line by line on a thread of its own, as long as it has lines.
fn lines_of(mut reader: impl BufRead + Send + 'static) -> Receiver<Vec<u8>> {
    let (lines, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if lines.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    receiver
}

impl HttpChild {
    pub fn start(args: &[&str]) -> HttpChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socket-lab"))
            .args(["http", "--port", "0", "--engine", crate::ENGINE.name()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start socket-lab http");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut first = String::new();
        stderr.read_line(&mut first).expect("read stderr");
        let port = first
            .trim_end()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on 127.0.0.1:PORT`, got {first:?}"));
        let mut second = String::new();
        stderr.read_line(&mut second).expect("read stderr");
        assert!(second.starts_with("open http://"), "{second:?}");
        // The logs must keep flowing: a full pipe would block the server's println!.
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        HttpChild {
            child,
            port,
            log: lines_of(stdout),
            problems: lines_of(stderr),
        }
    }

    /// The lines the server has written to stderr (its problems) and this test has not
    /// taken yet, without waiting.
    pub fn problems_so_far(&self) -> Vec<String> {
        self.problems
            .try_iter()
            .map(|line| String::from_utf8_lossy(&line).into_owned())
            .collect()
    }

    /// The next line the server logs, waiting at most [`WAIT`].
    /// The next line the server writes to stderr (a problem it reports), without its newline.
    pub fn next_problem_line(&self) -> String {
        let line = self
            .problems
            .recv_timeout(WAIT)
            .expect("the server should report a problem");
        String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned()
    }

    pub fn next_log_line(&self) -> Vec<u8> {
        self.log
            .recv_timeout(WAIT)
            .expect("the server should log a line")
    }

    fn proc_entries(&self, what: &str) -> usize {
        let dir = format!("/proc/{}/{what}", self.child.id());
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .count()
    }

    /// Open file descriptors: listener, wake-up socket, stdio, and one per connection.
    pub fn descriptors(&self) -> usize {
        self.proc_entries("fd")
    }

    /// Threads: the accept loop and one per connection being served.
    pub fn threads(&self) -> usize {
        self.proc_entries("task")
    }

    /// The server's process id, for `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory in KiB (`VmHWM` in `/proc/<pid>/status`).
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("a VmHWM line")
    }

    /// Waits until descriptors are back to `baseline` and threads are at most
    /// `baseline + workers`: the server keeps the worker threads it started, waiting for the
    /// next connection, but never more than connections it served at once. A worker finishes
    /// after the client is gone, and nothing tells the test when; so this polls `/proc`,
    /// bounded by [`WAIT`], and fails with the counts it last saw.
    pub fn settles_to(&self, baseline: (usize, usize), workers: usize) {
        let started = Instant::now();
        let (base_descriptors, base_threads) = baseline;
        loop {
            let (descriptors, threads) = (self.descriptors(), self.threads());
            if descriptors == base_descriptors && threads <= base_threads + workers {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "{descriptors} descriptors and {threads} threads; expected {base_descriptors} \
                 descriptors and at most {} threads",
                base_threads + workers
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HttpChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

/// A client with a 4 KiB receive buffer, set before `connect` so the window it advertises is
/// small from the start: a server writing to it blocks in `send` after a few responses.
pub fn connect_with_small_window(port: u16) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    socket.connect(&address.into()).expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

/// Sends `request`, half-closes (so the server's linger after an error ends at once), and
/// reads everything until the server closes. A reset instead of a clean close fails here.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    stream.write_all(request).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    read_until_close(&mut stream)
}

pub fn read_until_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("the server should close cleanly (FIN, not RST) within the wait");
    all
}

/// The server answers a fresh client correctly: the check after every attack.
pub fn assert_still_serves(port: u16) {
    let answer = exchange(port, FRESH_REQUEST);
    let responses = split_responses(&answer, &[false]);
    assert_eq!(responses.len(), 1, "{}", show(&answer));
    assert_eq!(
        responses[0].head,
        "HTTP/1.1 204 No Content\r\nDate: [..]\r\nConnection: close\r\n\r\n"
    );
}

/// One response out of the bytes a connection returned.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The head with the `Date` value as `[..]`.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn closes(&self) -> bool {
        self.head.contains("\r\nConnection: close\r\n")
    }
}

/// Splits `bytes` into whole responses; `head_only[i]` says response i answers a HEAD (no
/// body despite its Content-Length). Panics on anything that is not whole responses.
pub fn split_responses(bytes: &[u8], head_only: &[bool]) -> Vec<Response> {
    let mut responses = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("a response head without its empty line: {}", show(rest));
        };
        let head = std::str::from_utf8(&rest[..end + 4]).expect("an ASCII head");
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|line| line.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let length = head
            .split("\r\n")
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.parse::<usize>().expect("a decimal Content-Length"));
        let length = if head_only.get(responses.len()) == Some(&true) {
            0
        } else {
            length
        };
        let body = rest
            .get(end + 4..end + 4 + length)
            .unwrap_or_else(|| panic!("a body shorter than its Content-Length: {}", show(rest)));
        responses.push(Response {
            status,
            head: without_date(head),
            body: body.to_vec(),
        });
        rest = &rest[end + 4 + length..];
    }
    responses
}

fn without_date(head: &str) -> String {
    head.split_inclusive("\r\n")
        .map(|line| match line.strip_prefix("Date: ") {
            // `Wed, 25 Nov 2026 13:10:14 GMT` is 29 bytes and ends in GMT.
            Some(value) if value.len() == 31 && value.ends_with(" GMT\r\n") => "Date: [..]\r\n",
            _ => line,
        })
        .collect()
}

/// Bytes as an escaped string, for failure messages.
pub fn show(bytes: &[u8]) -> String {
    socket_lab::escape::escape(&bytes[..bytes.len().min(600)])
}

// ---- The conformance table ----

/// What the table says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A whole, valid request: the parser completes it, using every byte.
    Accept,
    /// Refused with this status, then the connection closes.
    Reject(u16),
}

/// One line of `tests/http_conformance.txt`.
#[derive(Debug)]
pub struct Case {
    /// `tests/http_conformance.txt:LINE`, for failure messages.
    pub place: String,
    /// The `#` lines just above the case.
    pub note: String,
    pub verdict: Verdict,
    pub request: Vec<u8>,
}

/// Reads the table; the format is described at the top of the file.
pub fn conformance_cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_conformance.txt");
    let text = std::fs::read_to_string(&path).expect("read tests/http_conformance.txt");
    let mut cases = Vec::new();
    let mut note = String::new();
    for (index, line) in text.lines().enumerate() {
        let place = format!("tests/http_conformance.txt:{}", index + 1);
        if line.trim().is_empty() {
            note.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            note.push_str(comment.trim());
            note.push(' ');
            continue;
        }
        let (verdict, quoted) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{place}: expected `VERDICT \"REQUEST\"`"));
        let verdict = match verdict {
            "accept" => Verdict::Accept,
            status => Verdict::Reject(status.parse().unwrap_or_else(|_| {
                panic!("{place}: the verdict is `accept` or a status, not {status:?}")
            })),
        };
        let request =
            unescape(quoted.trim()).unwrap_or_else(|problem| panic!("{place}: {problem}"));
        cases.push(Case {
            place,
            note: note.trim().to_string(),
            verdict,
            request,
        });
    }
    cases
}

/// `"GET / HTTP/1.1\r\n"` → bytes: a quoted string in the escapes the server's log uses,
/// read back by the one codec there is ([`socket_lab::escape::unescape`]).
pub fn unescape(quoted: &str) -> Result<Vec<u8>, String> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or("the request must be in double quotes")?;
    socket_lab::escape::unescape(inner).map_err(|e| e.to_string())
}
