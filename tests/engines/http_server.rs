// The web server's end-to-end cases, compiled once per engine: `tests/http_server.rs` runs
// them on the thread pool, `tests/http_server_epoll.rs` on the event loop, each with its
// `ENGINE`. The same bytes in must give the same bytes out, whichever engine serves them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket_lab::Endpoint;
use socket_lab::http::server::{HttpConfig, HttpEvent, HttpServer, RunningHttpServer};
use socket_lab::http::site::ABOUT_PAGE;

/// Longest any single read in these tests waits.
const WAIT: Duration = Duration::from_secs(10);

/// A server on a free port and the events it logged.
struct TestServer {
    running: Option<RunningHttpServer>,
    port: u16,
    events: Arc<Mutex<Vec<HttpEvent>>>,
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut HttpConfig)) -> TestServer {
        let mut config = HttpConfig {
            endpoint: Endpoint::inet("127.0.0.1", 0),
            engine: ENGINE,
            ..HttpConfig::default()
        };
        adjust(&mut config);
        let server = HttpServer::bind(config).expect("bind 127.0.0.1:0");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let running = server.spawn(Arc::new(move |event| {
            sink.lock().expect("event lock").push(event)
        }));
        let port = running.addr.port().expect("a TCP port");
        TestServer {
            running: Some(running),
            port,
            events,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the server (joining every worker, so every log line is in) and returns the log.
    fn stop(mut self) -> Vec<HttpEvent> {
        if let Some(running) = self.running.take() {
            running.stop().expect("clean stop");
        }
        self.events.lock().expect("event lock").clone()
    }

    /// The request log as `(peer port, request line, status)`.
    fn requests(self) -> Vec<(u16, String, u16)> {
        self.stop()
            .into_iter()
            .filter_map(|event| match event {
                HttpEvent::Request {
                    peer,
                    request_line,
                    status,
                    ..
                } => Some((peer.port().unwrap_or(0), request_line, status)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop();
        }
    }
}

/// Reads one response: the head up to the empty line, then `Content-Length` bytes of body.
/// Returns the head with the `Date` value replaced by `[..]`, and the body.
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    read_response_to(stream, false)
}

fn read_response_to(stream: &mut TcpStream, head_only: bool) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        // One byte at a time so no byte of the next response is taken: slow, and simple.
        let n = stream.read(&mut byte).expect("read the response head");
        assert_eq!(
            n,
            1,
            "the server closed mid-head after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("an ASCII head");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse::<usize>().expect("a decimal Content-Length"));
    let mut body = vec![0; if head_only { 0 } else { length }];
    stream
        .read_exact(&mut body)
        .expect("read the response body");
    (without_date(&head), body)
}

fn without_date(head: &str) -> String {
    head.split_inclusive("\r\n")
        .map(|line| {
            if line.starts_with("Date: ") {
                // The format is checked once: `Wed, 25 Nov 2026 13:10:14 GMT` is 29 bytes.
                let value = &line["Date: ".len()..line.len() - 2];
                assert!(
                    value.len() == 29 && value.ends_with(" GMT"),
                    "Date: {value}"
                );
                "Date: [..]\r\n".to_string()
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// Reads until the server closes; panics if it does not within [`WAIT`].
fn read_until_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("the server should close the connection");
    all
}

fn html_head(status_line: &str, length: usize, extra: &str) -> String {
    format!(
        "{status_line}\r\nDate: [..]\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {length}\r\n{extra}\r\n"
    )
}

// ---- Raw sockets ----

#[test]
fn get_root_shows_the_browser_its_own_request() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let request =
        b"GET / HTTP/1.1\r\nHost: lab\r\nUser-Agent: raw-test\r\nX-Evil: <script>\r\n\r\n";
    stream.write_all(request).expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", body.len(), ""));
    let page = String::from_utf8(body).expect("UTF-8 page");
    assert!(page.contains("<code>GET / HTTP/1.1</code>"), "{page}");
    assert!(page.contains("<tr><th>User-Agent</th><td><code>raw-test</code></td>"));
    // A header value is text on the page, never markup.
    assert!(page.contains("<code>&lt;script&gt;</code>"));
    assert!(!page.contains("<script>"));
    // The raw bytes, with \r\n visible, one received line per line.
    assert!(page.contains("GET / HTTP/1.1\\r\\n\nHost: lab\\r\\n\n"));
    let client_port = stream.local_addr().expect("local addr").port();
    assert!(page.contains(&format!("<code>127.0.0.1:{client_port}</code>")));
}

#[test]
fn the_log_has_one_line_per_request_with_peer_status_and_bytes() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"GET /about HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .expect("send");
    let sent = read_until_close(&mut stream).len();
    let client_port = stream.local_addr().expect("local addr").port();
    let events = server.stop();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].to_string(),
        format!("[127.0.0.1:{client_port}] \"GET /about HTTP/1.1\" 200 {sent}")
    );
}

#[test]
fn head_gets_the_get_headers_and_no_body() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /about HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, _) = read_response_to(&mut stream, true);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", ABOUT_PAGE.len(), ""));
    // Had a body been sent, this would read it instead of the next status line.
    stream
        .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, "HTTP/1.1 204 No Content\r\nDate: [..]\r\n\r\n");
    assert!(body.is_empty());
}

#[test]
fn pipelined_requests_are_answered_in_order_then_close() {
    let server = TestServer::start();
    let mut stream = server.connect();
    // Three requests in one send: the server must find each one's end itself.
    stream
        .write_all(
            b"GET /about HTTP/1.1\r\nHost: lab\r\n\r\n\
              POST /form HTTP/1.1\r\nHost: lab\r\nContent-Length: 9\r\n\r\nmessage=x\
              GET /favicon.ico HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n",
        )
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", ABOUT_PAGE.len(), ""));
    assert_eq!(body, ABOUT_PAGE.as_bytes());
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", body.len(), ""));
    assert!(String::from_utf8_lossy(&body).contains("<tr><th>message</th><td><code>x</code>"));
    let (head, _) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 204 No Content\r\nDate: [..]\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(read_until_close(&mut stream), b"");
    let lines: Vec<String> = server
        .requests()
        .into_iter()
        .map(|(_, line, _)| line)
        .collect();
    assert_eq!(
        lines,
        [
            "GET /about HTTP/1.1",
            "POST /form HTTP/1.1",
            "GET /favicon.ico HTTP/1.1"
        ]
    );
}

#[test]
fn a_request_split_across_many_sends_is_one_request() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream.set_nodelay(true).expect("nodelay");
    for piece in [
        &b"GE"[..],
        b"T /fav",
        b"icon.ico HTTP/1.1\r",
        b"\nHost: lab\r\n",
        b"\r\n",
    ] {
        stream.write_all(piece).expect("send a piece");
    }
    let (head, _) = read_response(&mut stream);
    assert_eq!(head, "HTTP/1.1 204 No Content\r\nDate: [..]\r\n\r\n");
}

#[test]
fn http10_closes_unless_it_asks_for_keep_alive() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"GET /favicon.ico HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let (head, _) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 204 No Content\r\nDate: [..]\r\nConnection: keep-alive\r\n\r\n"
    );
    stream
        .write_all(b"GET /favicon.ico HTTP/1.0\r\n\r\n")
        .expect("send");
    let (head, _) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 204 No Content\r\nDate: [..]\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(read_until_close(&mut stream), b"");
}

#[test]
fn each_bad_request_gets_its_status_and_the_connection_closes() {
    let server = TestServer::start();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: lab\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: lab\r\n{}\r\n",
        "X: 1\r\n".repeat(65)
    );
    let cases: [(&str, &[u8], &str); 8] = [
        ("no Host", b"GET / HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
            "400 Bad Request",
        ),
        (
            "HTTP/2.0",
            b"GET / HTTP/2.0\r\n\r\n",
            "505 HTTP Version Not Supported",
        ),
        ("long target", long_target.as_bytes(), "414 URI Too Long"),
        (
            "65 headers",
            many_headers.as_bytes(),
            "431 Request Header Fields Too Large",
        ),
        (
            "huge body",
            b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
            "413 Content Too Large",
        ),
        (
            "unknown method",
            b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
            "501 Not Implemented",
        ),
        (
            // gzip before the final chunked: a coding this server does not decode. (gzip
            // alone, with no chunked last, is a 400: the body length would be unknown.)
            "gzip coding",
            b"POST /form HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501 Not Implemented",
        ),
    ];
    for (what, request, status) in cases {
        let mut stream = server.connect();
        stream.write_all(request).expect("send");
        let (head, body) = read_response(&mut stream);
        assert_eq!(
            head,
            html_head(
                &format!("HTTP/1.1 {status}"),
                body.len(),
                "Connection: close\r\n"
            ),
            "{what}"
        );
        assert_eq!(read_until_close(&mut stream), b"", "{what}: closed after");
    }
}

#[test]
fn not_found_and_wrong_method_keep_the_connection() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"GET /nope HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 404 Not Found", body.len(), ""));
    stream
        .write_all(b"DELETE / HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        html_head(
            "HTTP/1.1 405 Method Not Allowed",
            body.len(),
            "Allow: GET, HEAD, OPTIONS\r\n"
        )
    );
}

/// RFC 9112 section 3.2.2: a server MUST accept a target in absolute-form (what clients
/// send to a proxy), route it by its path, and take the host from it rather than from the
/// Host field. It used to be a 404.
#[test]
fn absolute_form_is_routed_by_its_path_and_names_the_host() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"GET http://example.test/about HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", body.len(), ""));
    assert_eq!(body, socket_lab::http::site::ABOUT_PAGE.as_bytes());

    // No path is the root; the scheme is case-insensitive; the host is the target's.
    stream
        .write_all(b"GET HTTP://example.test:8080?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", body.len(), ""));
    let page = String::from_utf8(body).expect("UTF-8 page");
    assert!(
        page.contains("<tr><th>host</th><td><code>example.test:8080</code></td>"),
        "{page}"
    );

    // Any other path is a 404 as usual, and the connection stays.
    stream
        .write_all(b"GET http://example.test/nope HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 404 Not Found", body.len(), ""));

    // Origin-form still takes the host from the Host field.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: lab.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let (_, body) = read_response(&mut stream);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("<tr><th>host</th><td><code>lab.test</code></td>")
    );
}

/// RFC 9112 section 3.2.4: `OPTIONS *` asks about the server as a whole; the answer lists
/// every method it supports. `*` with any other method is a 400. Both used to be 404s.
#[test]
fn options_asterisk_lists_every_method_and_asterisk_is_only_for_options() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: [..]\r\nContent-Length: 0\r\nAllow: GET, HEAD, POST, OPTIONS\r\n\r\n"
    );
    assert!(body.is_empty());

    // OPTIONS on one path: the methods that path takes.
    stream
        .write_all(b"OPTIONS /form HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, _) = read_response(&mut stream);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: [..]\r\nContent-Length: 0\r\nAllow: POST, OPTIONS\r\n\r\n"
    );

    stream
        .write_all(b"GET * HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        html_head(
            "HTTP/1.1 400 Bad Request",
            body.len(),
            "Connection: close\r\n"
        )
    );
    assert_eq!(read_until_close(&mut stream), b"", "closed after the 400");
}

#[test]
fn a_head_that_does_not_finish_in_time_gets_408() {
    let server = TestServer::start_with(|config| {
        config.request_timeout = Duration::from_millis(300);
    });
    let mut stream = server.connect();
    // Half a request, then silence: the server's deadline, not ours, ends the wait.
    stream.write_all(b"GET / HTTP/1.1\r\nHo").expect("send");
    let (head, body) = read_response(&mut stream);
    assert_eq!(
        head,
        html_head(
            "HTTP/1.1 408 Request Timeout",
            body.len(),
            "Connection: close\r\n"
        )
    );
    assert_eq!(read_until_close(&mut stream), b"");
}

#[test]
fn an_idle_connection_is_closed_without_a_word() {
    let server = TestServer::start_with(|config| {
        config.read_timeout = Duration::from_millis(200);
    });
    let mut stream = server.connect();
    assert_eq!(read_until_close(&mut stream), b"");
    assert_eq!(server.stop(), []);
}

#[test]
fn stop_closes_open_keep_alive_connections() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    read_response(&mut stream);
    // The connection is idle and open; stop must not wait for its 10 s read timeout.
    let events = server.stop();
    assert_eq!(events.len(), 1);
    assert_eq!(read_until_close(&mut stream), b"");
}

#[test]
fn a_peer_that_half_closes_mid_request_is_logged_not_answered() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.1\r\n").expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(read_until_close(&mut stream), b"");
    let events = server.stop();
    assert!(
        matches!(&events[..], [HttpEvent::ConnectionFailed { error, .. }] if error.contains("mid-request")),
        "{events:?}"
    );
}

/// A reset mid-request is a lost connection, logged with its cause; no 408 is sent into it.
#[test]
fn a_peer_that_resets_mid_request_is_logged_as_reset() {
    let server = TestServer::start();
    let stream = server.connect();
    let mut partial = &stream;
    partial.write_all(b"GET / HTTP/1.1\r\n").expect("send");
    // Wait until the server holds the half request, so the reset comes mid-request.
    let deadline = std::time::Instant::now() + WAIT;
    let (me, it) = (
        stream.local_addr().expect("address"),
        stream.peer_addr().expect("address"),
    );
    while socket_lab::kernel::tcp_connection(it, me)
        .expect("the kernel answers")
        .is_some_and(|socket| socket.unread_bytes() > 0)
    {
        assert!(std::time::Instant::now() < deadline, "the server never read");
        std::thread::sleep(Duration::from_millis(1));
    }
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
    let deadline = std::time::Instant::now() + WAIT;
    while server.events.lock().expect("event lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing logged");
        std::thread::sleep(Duration::from_millis(1));
    }
    let events = server.stop();
    assert!(
        matches!(&events[..], [HttpEvent::ConnectionFailed { error, .. }]
            if error.starts_with("connection lost mid-request: ") && error.contains("reset")),
        "{events:?}"
    );
}

// ---- The binary ----

#[test]
fn the_binary_prints_its_address_first_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socket-lab"))
        .args(["http", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start socket-lab http");
    let mut stderr = child.stderr.take().expect("stderr");
    // The first line is the contract scripts rely on: `listening on ADDR`.
    let mut first_line = Vec::new();
    let mut byte = [0u8; 1];
    while !first_line.ends_with(b"\n") {
        assert_eq!(
            stderr.read(&mut byte).expect("read stderr"),
            1,
            "no address line"
        );
        first_line.push(byte[0]);
    }
    let first_line = String::from_utf8(first_line).expect("UTF-8");
    let port: u16 = first_line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"));

    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .expect("send");
    assert!(read_until_close(&mut stream).starts_with(b"HTTP/1.1 204 No Content\r\n"));

    // SAFETY: kill(2) on the pid of a child we started and have not yet waited for.
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // Bounded: stdout closes when the process exits, which a clean stop does at once.
    let mut log = String::new();
    let mut stdout = child.stdout.take().expect("stdout");
    stdout.read_to_string(&mut log).expect("read the log");
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let client_port = stream.local_addr().expect("local addr").port();
    assert_eq!(
        log,
        format!("[127.0.0.1:{client_port}] \"GET /favicon.ico HTTP/1.1\" 204 83\n")
    );
}

// ---- Real clients ----

/// Runs a tool under `timeout(1)` so no test can hang on it; `None` (after saying why) when
/// the tool is not installed.
fn run_tool(test: &str, program: &str, args: &[&str], limit_secs: u32) -> Option<Output> {
    let installed = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    // The build found it (the test would be ignored otherwise): missing now is a failure.
    assert!(installed, "{test}: `{program}` is not installed any more");
    let output = Command::new("timeout")
        .arg(limit_secs.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run timeout(1)");
    assert!(
        output.status.success(),
        "{program} {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output)
}

#[test]
#[cfg_attr(not(has_curl), ignore = "curl is not installed (.ci/run installs it)")]
fn curl_get_head_post_and_keep_alive() {
    let server = TestServer::start();
    let test = "curl_get_head_post_and_keep_alive";

    // GET /: the page shows curl its own request.
    let Some(get) = run_tool(
        test,
        "curl",
        &["-sS", "--max-time", "10", &server.url("/")],
        15,
    ) else {
        return;
    };
    let page = String::from_utf8_lossy(&get.stdout);
    assert!(page.contains("<code>GET / HTTP/1.1</code>"), "{page}");
    assert!(page.contains("<tr><th>User-Agent</th><td><code>curl/"));

    // HEAD (-I): the head only, with the length the GET body would have.
    let head = run_tool(
        test,
        "curl",
        &["-sS", "-I", "--max-time", "10", &server.url("/about")],
        15,
    )
    .expect("curl is installed");
    assert_eq!(
        without_date(&String::from_utf8_lossy(&head.stdout)),
        html_head("HTTP/1.1 200 OK", ABOUT_PAGE.len(), "")
    );

    // POST a form: the body comes back decoded.
    let post = run_tool(
        test,
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-d",
            "message=hi+there%21&x=%3Cb%3E",
            &server.url("/form"),
        ],
        15,
    )
    .expect("curl is installed");
    let page = String::from_utf8_lossy(&post.stdout);
    assert!(
        page.contains("<tr><th>message</th><td><code>hi there!</code>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><th>x</th><td><code>&lt;b&gt;</code>"),
        "{page}"
    );

    // Two URLs in one curl: one connection, two requests.
    let two = run_tool(
        test,
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &server.url("/about"),
            &server.url("/favicon.ico"),
        ],
        15,
    )
    .expect("curl is installed");
    assert!(
        two.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );

    let log = server.requests();
    let statuses: Vec<(&str, u16)> = log
        .iter()
        .map(|(_, line, status)| (line.as_str(), *status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("GET / HTTP/1.1", 200),
            ("HEAD /about HTTP/1.1", 200),
            ("POST /form HTTP/1.1", 200),
            ("GET /about HTTP/1.1", 200),
            ("GET /favicon.ico HTTP/1.1", 204),
        ]
    );
    assert_eq!(
        log[3].0, log[4].0,
        "both URLs came over one connection (same client port)"
    );
}

#[test]
#[cfg_attr(
    not(has_python3),
    ignore = "python3 is not installed (.ci/run installs it)"
)]
fn python_http_client_sends_100_requests_on_one_connection() {
    let server = TestServer::start();
    let script = format!(
        "import http.client\n\
         connection = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         for i in range(100):\n\
         \x20   connection.request('GET', '/about' if i % 2 else '/?n=%d' % i)\n\
         \x20   response = connection.getresponse()\n\
         \x20   body = response.read()\n\
         \x20   assert response.status == 200, response.status\n\
         \x20   assert len(body) == int(response.getheader('Content-Length'))\n\
         print('ok')\n",
        port = server.port
    );
    let Some(output) = run_tool(
        "python_http_client_sends_100_requests_on_one_connection",
        "python3",
        &["-c", &script],
        60,
    ) else {
        return;
    };
    assert_eq!(output.stdout, b"ok\n");
    let log = server.requests();
    assert_eq!(log.len(), 100);
    assert!(
        log.iter()
            .all(|(port, _, status)| *port == log[0].0 && *status == 200)
    );
}

#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium is not installed (.ci/run installs it)"
)]
fn headless_chromium_renders_its_own_request() {
    let server = TestServer::start();
    let profile = tempfile::tempdir().expect("a temporary profile directory");
    let profile_flag = format!("--user-data-dir={}", profile.path().display());
    let url = server.url("/");
    let Some(output) = run_tool(
        "headless_chromium_renders_its_own_request",
        "chromium",
        &[
            &common::HEADLESS_CHROMIUM[..],
            &[profile_flag.as_str(), "--dump-dom", &url],
        ]
        .concat(),
        90,
    ) else {
        return;
    };
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("<code>GET / HTTP/1.1</code>"), "DOM:\n{dom}");
    assert!(
        dom.contains("<tr><th>User-Agent</th><td><code>Mozilla/5.0"),
        "DOM:\n{dom}"
    );
    let log = server.requests();
    assert_eq!(log[0].1, "GET / HTTP/1.1", "{log:?}");
    assert_eq!(log[0].2, 200);
    // Whether it also asks for /favicon.ico in headless mode varies by version: show it.
    println!(
        "chromium requested: {:?}",
        log.iter().map(|(_, line, _)| line).collect::<Vec<_>>()
    );
}

#[test]
fn expect_100_continue_gets_the_go_ahead_before_the_body() {
    let server = TestServer::start();
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /form HTTP/1.1\r\nHost: lab\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("send the head");
    // The interim response comes before any body byte is sent.
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("read 100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"message=x").expect("send the body");
    let (head, body) = read_response(&mut stream);
    assert_eq!(head, html_head("HTTP/1.1 200 OK", body.len(), ""));
}

#[test]
#[cfg_attr(not(has_curl), ignore = "curl is not installed (.ci/run installs it)")]
fn the_walkthrough_ack_reply_is_http09_which_curl_refuses_by_default() {
    // The walkthrough's experiment: an HTTP client against the ack server. Its reply has no
    // status line, so to an HTTP client it is an HTTP/0.9 response.
    let config = socket_lab::server::ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        // The ack server keeps the connection open; an HTTP/0.9 reply ends at the close.
        idle_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let ack_server = socket_lab::server::Server::bind(config)
        .expect("bind")
        .spawn(Arc::new(|_| {}));
    let url = format!(
        "http://127.0.0.1:{}/",
        ack_server.addr.port().expect("port")
    );
    let test = "the_walkthrough_ack_reply_is_http09_which_curl_refuses_by_default";
    let Some(shown) = run_tool(
        test,
        "curl",
        &["-sS", "--http0.9", "--max-time", "10", &url],
        15,
    ) else {
        return;
    };
    assert_eq!(shown.stdout, b"server recv success");
    // Without the flag, curl refuses the answer (Chromium does too on this port).
    let refused = Command::new("timeout")
        .args(["15", "curl", "-sS", "--max-time", "10", &url])
        .output()
        .expect("run curl");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP/0.9"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ack_server.stop().expect("clean stop");
}

#[test]
fn any_bytes_get_a_status_or_a_close_and_the_server_keeps_serving() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    // One worker slot: a worker that died without freeing it would stop the server here.
    let server = TestServer::start_with(|config| config.max_clients = 1);
    // Request-like bytes with a few overwritten, and plain noise; modest in count, since each
    // case is a real connection.
    let fragments = prop::sample::select(vec![
        &b"GET / HTTP/1.1\r\n"[..],
        b"Host: lab\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
        b"\r",
        b"\n",
        b" ",
        b"\0\xff",
    ]);
    let input = prop::collection::vec(
        prop_oneof![
            fragments.prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 1..8)
        ],
        1..12,
    )
    .prop_map(|pieces| pieces.concat());
    let mut runner = TestRunner::new(Config::with_cases(32));
    let result = runner.run(&input, |bytes| {
        let mut stream = server.connect();
        stream.write_all(&bytes).expect("send");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let answer = read_until_close(&mut stream);
        // Whatever came back is zero or more whole responses, each with a status line.
        let framed = common::whole_responses(&answer);
        prop_assert!(framed.is_ok(), "{:?}", framed);
        Ok(())
    });
    result.expect("every input is answered or closed");

    let mut stream = server.connect();
    stream
        .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: lab\r\n\r\n")
        .expect("send");
    let (head, _) = read_response(&mut stream);
    assert_eq!(head, "HTTP/1.1 204 No Content\r\nDate: [..]\r\n\r\n");
}

/// With every slot taken the server says so, and the next client waits in the listen queue
/// until a slot frees: then it is served. (The thread pool says it each time its slots fill,
/// the event loop when a connection finds them full: here the thread pool says it twice.)
#[test]
fn a_full_server_says_it_is_busy_and_serves_the_next_client_when_a_slot_frees() {
    let server = TestServer::start_with(|config| config.max_clients = 1);
    let mut first = server.connect();
    // Half a request: the one slot is held while the rest is awaited.
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n")
        .expect("send");
    let mut second = server.connect();
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .expect("send");
    let busy = |events: &[HttpEvent]| {
        events
            .iter()
            .filter(|event| matches!(event, HttpEvent::Busy { max_clients: 1 }))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while busy(&server.events.lock().expect("event lock")) == 0 {
        assert!(std::time::Instant::now() < deadline, "no busy line");
        std::thread::sleep(Duration::from_millis(1));
    }
    first.write_all(b"Connection: close\r\n\r\n").expect("send");
    for stream in [&mut first, &mut second] {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("a whole response");
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    }
    let events = server.stop();
    assert!(
        matches!(events.first(), Some(HttpEvent::Busy { max_clients: 1 })),
        "{events:?}"
    );
    let line = events
        .iter()
        .find(|event| matches!(event, HttpEvent::Busy { .. }))
        .map(ToString::to_string);
    assert_eq!(
        line.as_deref(),
        Some(
            "all 1 client slots are busy; new connections wait in the listen queue (raise --max-clients to serve more at once)"
        )
    );
}
