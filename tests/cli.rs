//! The binary as a learner uses it: `socket-lab server` in one terminal, `socket-lab client`
//! in the other, and every error the walkthrough says `bind` and `connect` can raise.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use assert_cmd::prelude::*;
use common::{ServerProcess, WAIT, socket_lab};
use predicates::prelude::*;

const ACK_LINE: &str = "server recv success\n";

#[test]
fn piped_session_prints_two_acks_and_the_server_logs_both_messages() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let output = socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("hello\nworld\nq\n")
        .output()
        .expect("run the client");
    assert!(output.status.success(), "client failed: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), ACK_LINE.repeat(2));

    let connected = server.next_line();
    let peer = connected
        .strip_suffix(" connected")
        .expect("first log line is `[PEER] connected`");
    assert!(
        peer.starts_with("[127.0.0.1:"),
        "peer address in {connected:?}"
    );
    assert_eq!(
        server.next_line(),
        format!("{peer} send a message to server: hello")
    );
    assert_eq!(
        server.next_line(),
        format!("{peer} send a message to server: world")
    );
    assert_eq!(server.next_line(), format!("{peer} disconnected"));
}

#[test]
fn q_ends_the_session_and_is_not_sent() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("one\nq\nnever sent\n")
        .assert()
        .success()
        .stdout(ACK_LINE);
    let lines = server.wait_for_line(&format!("{} disconnected", peer_of(&server.next_line())));
    assert_eq!(lines.len(), 1, "only `one` was sent: {lines:?}");
    assert!(lines[0].ends_with("send a message to server: one"));
}

#[test]
fn end_of_input_ends_the_session_like_q() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("no q at the end\n")
        .assert()
        .success()
        .stdout(ACK_LINE);
}

#[test]
fn a_line_longer_than_the_recv_size_gets_every_ack_on_its_own_line() {
    // recv(8) cuts the 20-byte line into 8 + 8 + 4 bytes: three recvs, three acks.
    let server = ServerProcess::start(&["server", "--port", "0", "--recv-size", "8"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("hello, wide world!!!\nq\n")
        .assert()
        .success()
        .stdout(ACK_LINE.repeat(3));
    let peer = peer_of(&server.next_line());
    for piece in ["hello, w", "ide worl", "d!!!"] {
        assert_eq!(
            server.next_line(),
            format!("{peer} send a message to server: {piece}")
        );
    }
}

#[test]
fn bytes_that_are_not_text_are_acked_and_logged_escaped() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin(&b"\xff\x00\x1b[31mred\x07\nq\n"[..])
        .assert()
        .success()
        .stdout(ACK_LINE);
    let peer = peer_of(&server.next_line());
    assert_eq!(
        server.next_line(),
        format!("{peer} send a message to server: \\xff\\0\\x1b[31mred\\x07")
    );
}

#[test]
fn two_clients_are_served_at_once() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let mut alice = TcpStream::connect(&server.addr).expect("alice connects");
    let mut bob = TcpStream::connect(&server.addr).expect("bob connects");
    // Alice stays connected and silent while Bob talks: an idle client must not block others.
    bob.write_all(b"from bob").expect("bob sends");
    assert_eq!(read_ack(&mut bob), b"server recv success");
    alice.write_all(b"from alice").expect("alice sends");
    assert_eq!(read_ack(&mut alice), b"server recv success");

    let (alice_addr, bob_addr) = (alice.local_addr().unwrap(), bob.local_addr().unwrap());
    let lines = server.wait_for_line(&format!(
        "[{alice_addr}] send a message to server: from alice"
    ));
    assert!(
        lines.contains(&format!("[{bob_addr}] send a message to server: from bob")),
        "bob's message is logged with bob's address: {lines:#?}"
    );
}

#[test]
fn bind_reports_port_in_use() {
    let occupied = TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    let port = occupied.local_addr().unwrap().port();
    socket_lab()
        .args(["server", "--port", &port.to_string()])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(format!(
            "error: cannot bind 127.0.0.1:{port}: address already in use (is another server still running?"
        )));
}

#[test]
fn bind_reports_an_unknown_host() {
    socket_lab()
        .args(["server", "--host", "nosuch.invalid"])
        .assert()
        .code(5)
        .stderr(predicate::str::starts_with(
            "error: cannot resolve host \"nosuch.invalid\"",
        ));
}

#[test]
#[cfg_attr(
    not(low_ports_privileged),
    ignore = "this kernel lets anyone bind port 1 (net.ipv4.ip_unprivileged_port_start)"
)]
fn bind_reports_a_privileged_port() {
    use std::os::unix::process::CommandExt;
    // Root may bind any port, so the test drops to `nobody` as a learner's shell would be.
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("socket-lab"));
    command.args(["server", "--port", "1"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        command.uid(65534).gid(65534);
    }
    let unprivileged_start =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    assert!(
        unprivileged_start > 1,
        "ip_unprivileged_port_start is {unprivileged_start} now; the build saw otherwise"
    );
    command.assert().code(4).stderr(predicate::str::starts_with(
        "error: cannot bind 127.0.0.1:1: permission denied (ports below 1024 are reserved",
    ));
}

#[test]
fn connect_reports_nobody_listening() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("find a free port");
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens there now
    socket_lab()
        .args(["client", "--port", &port.to_string()])
        .write_stdin("hello\n")
        .assert()
        .code(6)
        .stderr(format!(
            "error: cannot connect to 127.0.0.1:{port}: connection refused (is the server running? start it with `socket-lab server --port {port}` in another terminal)\n"
        ));
}

#[test]
fn the_client_reports_a_server_that_vanishes() {
    let mut server = ServerProcess::start(&["server", "--port", "0"]);
    let mut client = common::socket_lab_process()
        .args(["client", "--port", &server.port()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    let mut stdin = client.stdin.take().unwrap();
    let stdout = common::lines_of(client.stdout.take().unwrap());
    stdin.write_all(b"hello\n").unwrap();
    assert_eq!(stdout.recv_timeout(WAIT).unwrap(), "server recv success");

    server.child.kill().expect("kill the server");
    server.child.wait().unwrap();
    // The next line finds the connection gone.
    let _ = stdin.write_all(b"anyone there?\n");
    drop(stdin);
    let output = wait_with_timeout(client);
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "error: connection to 127.0.0.1:{} lost: ",
            server.port()
        )),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_server_and_closes_connections() {
    let mut server = ServerProcess::start(&["server", "--port", "0"]);
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    server.next_line(); // connected: the worker is now blocked in recv
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    assert_eq!(
        idle.read_to_end(&mut rest)
            .expect("end of stream, not a timeout"),
        0
    );
    assert_eq!(server.wait_exit(), Some(0));
}

#[test]
#[cfg_attr(
    not(has_python3),
    ignore = "python3 is not installed (.ci/run installs it)"
)]
fn a_python_client_written_from_the_walkthrough_gets_its_ack() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         s.connect(('127.0.0.1', {}))\n\
         s.sendall(b'hello')\n\
         print(s.recv(1024))\n\
         s.close()\n",
        server.port()
    );
    Command::new("python3")
        .args(["-c", &script])
        .assert()
        .success()
        .stdout("b'server recv success'\n");
}

#[test]
fn help_documents_the_exit_codes() {
    socket_lab()
        .args(["client", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Exit codes:")
                .and(predicate::str::contains("6  cannot connect")),
        );
}

fn peer_of(connected_line: &str) -> String {
    connected_line
        .strip_suffix(" connected")
        .unwrap_or_else(|| panic!("expected `[PEER] connected`, got {connected_line:?}"))
        .to_string()
}

fn read_ack(stream: &mut TcpStream) -> Vec<u8> {
    let mut ack = vec![0; b"server recv success".len()];
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.read_exact(&mut ack).expect("read the ack");
    ack
}

fn wait_with_timeout(child: std::process::Child) -> std::process::Output {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    rx.recv_timeout(WAIT)
        .expect("the client did not exit in time")
        .expect("wait for the client")
}

#[test]
fn quiet_keeps_the_conversation_out_of_the_log() {
    let mut server = ServerProcess::start(&["server", "--port", "0", "--quiet"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("hello\nq\n")
        .assert()
        .success()
        .stdout(ACK_LINE);
    // Stop it and read what it printed: with --quiet, not one line about the session.
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), Some(0));
    assert_eq!(server.remaining_lines(), Vec::<String>::new());
}

#[test]
fn an_empty_line_is_never_sent_and_the_session_goes_on() {
    // send(b"") puts nothing on the wire and no ack would come back: a client that sent it
    // would wait forever. The client says so and reads the next line.
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("\nhello\n\n\nq\n")
        .timeout(std::time::Duration::from_secs(10))
        .assert()
        .success()
        .stdout(ACK_LINE)
        .stderr(predicates::str::contains(
            "(empty line not sent: a 0-byte send carries nothing over TCP)",
        ));
    let lines = server.wait_for_line(&format!("{} disconnected", peer_of(&server.next_line())));
    assert_eq!(lines.len(), 1, "only `hello` was sent: {lines:?}");
    assert!(lines[0].ends_with("send a message to server: hello"));
}

/// Every timeout flag at the largest duration it takes, in seconds: the servers serve and
/// the client waits for its ack as usual (an `Instant` plus such a timeout used to overflow
/// and panic on every request), and `bench --duration` refuses it in words.
#[test]
fn duration_flags_at_their_largest_never_panic() {
    const MOST: &str = "18446744073709551615s";
    let http = ServerProcess::start(&[
        "http",
        "--port",
        "0",
        "--request-timeout",
        MOST,
        "--read-timeout",
        MOST,
        "--write-timeout",
        MOST,
    ]);
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&http.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(b"GET /favicon.ico HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("a response");
        assert!(
            response.starts_with(b"HTTP/1.1 204 No Content\r\n"),
            "{}",
            String::from_utf8_lossy(&response)
        );
    }

    let server = ServerProcess::start(&["server", "--port", "0", "--idle-timeout", MOST]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("hi\n")
        .timeout(WAIT)
        .assert()
        .success()
        .stdout(ACK_LINE);

    let udp = ServerProcess::start(&["server", "--udp", "--port", "0"]);
    socket_lab()
        .args([
            "client",
            "--udp",
            "--port",
            &udp.port(),
            "--reply-timeout",
            MOST,
        ])
        .write_stdin("hi\n")
        .timeout(WAIT)
        .assert()
        .success()
        .stdout(ACK_LINE);

    socket_lab()
        .args(["bench", "--duration", MOST])
        .timeout(WAIT)
        .assert()
        .code(2)
        .stderr(format!(
            "error: invalid value '{MOST}' for '--duration <DURATION>': at most 10m, so a typo cannot tie up a machine for hours\n\nFor more information, try '--help'.\n"
        ));
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, as when
/// `head` has read what it wanted and gone.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer.into()
}

/// Waits (bounded by [`WAIT`]) for `child` to exit, and returns its exit code and stderr.
fn exit_of(mut child: std::process::Child) -> (Option<i32>, String) {
    let (done, exited) = mpsc::channel();
    let mut stderr = child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = done.send((child.wait().map(|status| status.code()), text));
    });
    let (status, stderr) = exited
        .recv_timeout(WAIT)
        .expect("the process did not end after its stdout closed");
    (status.expect("wait"), stderr)
}

/// `socket-lab lessons | head -2` and the like: a closed stdout ends every subcommand
/// quietly with 0 (no panic, no backtrace, no error), and a server stops cleanly.
#[test]
fn a_closed_stdout_ends_every_subcommand_quietly() {
    let lesson = |name: &str| format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let port = server.port();
    let one_shot: [&[&str]; 4] = [
        &["lessons"],
        &[
            "run",
            &lesson("01-one-message.txt"),
            &lesson("02-q-and-close.txt"),
        ],
        &["bench", "--msgs", "10"],
        &["client", "--port", &port],
    ];
    for args in one_shot {
        let mut child = common::socket_lab_process()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Only the client reads it; the others may have exited already (EPIPE here).
        let _ = child.stdin.take().unwrap().write_all(b"hi\n");
        let (status, stderr) = exit_of(child);
        // The client's greeting and the bench's preamble go to stderr; nothing else may.
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|line| {
                !line.starts_with("connected to 127.0.0.1:")
                    && !line.starts_with("bench: ")
                    && !line.starts_with("warning: this is a debug build")
            })
            .collect();
        assert_eq!(
            (status, unexpected),
            (Some(0), Vec::<&str>::new()),
            "{args:?}"
        );
    }

    // The servers stop at their first log line, as any writer to a closed pipe would; the
    // ack server on a Unix socket removes its file on the way out.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    for (args, request) in [
        (vec!["server", "--unix", path.to_str().unwrap()], &b"hi"[..]),
        (
            vec!["http", "--port", "0"],
            &b"GET /favicon.ico HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        ),
    ] {
        let mut child = common::socket_lab_process()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut first).expect("stderr");
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{first:?}"))
            .to_string();
        child.stderr = None;
        let mut client: Box<dyn ReadWrite> = if args[0] == "server" {
            Box::new(std::os::unix::net::UnixStream::connect(&path).expect("connect"))
        } else {
            Box::new(TcpStream::connect(&addr).expect("connect"))
        };
        // The connection alone may make the first log line ("connected"), and the server
        // may be gone before the request is written: a write that fails then is no failure.
        let _ = client.write_all(request);
        let (done, exited) = mpsc::channel();
        thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            let _ = done.send((child.wait().map(|status| status.code()), rest));
        });
        let (status, rest) = exited
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{args:?} kept running with its stdout closed"));
        // Nothing on stderr but `http`'s pointer to the browser, which it prints at start.
        let rest: Vec<&str> = rest
            .lines()
            .filter(|line| !line.starts_with("open http://"))
            .collect();
        assert_eq!(
            (status.unwrap(), rest),
            (Some(0), Vec::<&str>::new()),
            "{args:?}"
        );
    }
    assert!(!path.exists(), "the server removed its socket file");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn http_says_which_url_to_open() {
    let server = ServerProcess::start(&["http", "--port", "0"]);
    assert_eq!(
        server.next_stderr_line(),
        format!("open http://127.0.0.1:{}/ in a browser", server.port())
    );
}
