//! `socket-lab client` notices things: it says where it is connected and how to quit, sees a
//! server that stops or speaks while nobody types, never sends an empty line, ends cleanly at
//! Ctrl-D on a terminal, and a failed connect names the addresses tried and the command that
//! would start a server there. Through the real binary, against real servers on port 0.

mod common;
mod pty;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use common::{ServerProcess, WAIT, lines_of, socket_lab, socket_lab_process};
use pty::{CTRL_D, Pty};

const ACK: &str = "server recv success";
const HOW_TO_QUIT: &str = "type a line and press Enter to send it; q or Ctrl-D ends the session";

/// A client with every stream piped, stdin left open for the test to type into (or not).
fn spawn_client(args: &[&str]) -> Child {
    socket_lab_process()
        .arg("client")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client")
}

/// Waits (bounded by [`WAIT`]) for the client to exit on its own.
fn exit_of(mut child: Child) -> Output {
    let (done, exited) = mpsc::channel();
    let mut stderr = child.stderr.take().expect("piped stderr");
    thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        let _ = done.send(child.wait().map(|status| Output {
            status,
            stdout: Vec::new(),
            stderr: text,
        }));
    });
    exited
        .recv_timeout(WAIT)
        .expect("the client did not exit in time")
        .expect("wait for the client")
}

/// A port nobody listens on: bound, then closed.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn the_greeting_names_both_ends_of_the_connection_and_how_to_quit() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let output = socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("q\n")
        .timeout(WAIT)
        .output()
        .expect("run the client");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The server logs the client by the address the client's greeting calls its own.
    let peer = server
        .next_line()
        .strip_suffix(" connected")
        .expect("`[PEER] connected`")
        .trim_matches(['[', ']'])
        .to_string();
    assert_eq!(
        stderr,
        format!(
            "connected to 127.0.0.1:{} from {peer}; {HOW_TO_QUIT}\n",
            server.port()
        )
    );
}

#[test]
fn a_server_that_stops_while_the_client_waits_for_input_is_noticed_at_once() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let mut client = spawn_client(&["--port", &server.port()]);
    let mut stdin = client.stdin.take().expect("piped stdin");
    let stdout = lines_of(client.stdout.take().expect("piped stdout"));
    stdin.write_all(b"hello\n").expect("type a line");
    assert_eq!(stdout.recv_timeout(WAIT).expect("the ack"), ACK);

    // Stop the server; stdin stays open and silent, so only the socket can tell the client.
    server.signal(libc::SIGTERM);
    let output = exit_of(client);
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with(&format!(
            "error: connection to 127.0.0.1:{} lost: recv returned 0 bytes, the end of the stream (the server stopped or closed this connection; start it again and reconnect)\n",
            server.port()
        )),
        "{stderr}"
    );
    drop(stdin);
}

#[test]
fn bytes_the_server_sends_unasked_are_shown_as_they_arrive() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    let mut client = spawn_client(&["--port", &port]);
    let mut stdin = client.stdin.take().expect("piped stdin");
    let stdout = lines_of(client.stdout.take().expect("piped stdout"));
    let (mut server, _) = listener.accept().expect("accept the client");
    server.set_read_timeout(Some(WAIT)).expect("timeout");

    // Nothing typed, yet the server speaks: the client prints it, escaped, on a line of its own.
    server.write_all(b"welcome\x07").expect("send unasked");
    assert_eq!(stdout.recv_timeout(WAIT).expect("shown"), "welcome\\x07");

    // The session goes on as usual: a line out, its ack back.
    stdin.write_all(b"hi\n").expect("type a line");
    let mut line = [0; 2];
    server.read_exact(&mut line).expect("the line");
    assert_eq!(&line, b"hi");
    server.write_all(ACK.as_bytes()).expect("ack");
    assert_eq!(stdout.recv_timeout(WAIT).expect("the ack"), ACK);

    drop(server);
    assert_eq!(exit_of(client).status.code(), Some(7));
    drop(stdin);
}

#[test]
fn empty_lines_are_never_sent_and_only_the_text_of_a_line_goes_on_the_wire() {
    // A raw server, to see the exact bytes: a 0-byte send would not show on the wire, but a
    // client that made one would wait forever for an ack, and the run would time out.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    let client = thread::spawn(move || {
        socket_lab()
            .args(["client", "--port", &port])
            .write_stdin("\n\r\nhello\r\n\n\nq\n")
            .timeout(WAIT)
            .output()
            .expect("run the client")
    });
    let (mut server, _) = listener.accept().expect("accept");
    server.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut hello = [0; 5];
    server.read_exact(&mut hello).expect("hello");
    server.write_all(ACK.as_bytes()).expect("ack");
    // Then the client half-closes: everything it sent after hello is nothing at all.
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).expect("end of stream");
    assert_eq!((&hello[..], &rest[..]), (&b"hello"[..], &b""[..]));
    drop(server);

    let output = client.join().expect("the client thread");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{ACK}\n"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .matches("(empty line not sent: a 0-byte send carries nothing over TCP)")
            .count(),
        4,
        "{stderr}"
    );
}

#[test]
fn a_last_line_without_a_newline_is_sent_and_ends_the_session() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args(["client", "--port", &server.port()])
        .write_stdin("one\nlast")
        .timeout(WAIT)
        .assert()
        .success()
        .stdout(format!("{ACK}\n{ACK}\n"));
    let peer = server
        .next_line()
        .strip_suffix(" connected")
        .expect("`[PEER] connected`")
        .to_string();
    for line in ["one", "last"] {
        assert_eq!(
            server.next_line(),
            format!("{peer} send a message to server: {line}")
        );
    }
    assert_eq!(server.next_line(), format!("{peer} disconnected"));
}

/// A client whose stdin, stdout and stderr are all the terminal, as when a person runs it.
fn client_at_a_terminal(port: &str) -> (Child, Pty) {
    let mut pty = Pty::open();
    let child = socket_lab_process()
        .args(["client", "--port", port])
        .stdin(pty.stdio())
        .stdout(pty.stdio())
        .stderr(pty.stdio())
        // The screen is compared as text: no bold red `error:`, which a terminal otherwise gets.
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start the client");
    pty.close_terminal_end();
    (child, pty)
}

#[test]
fn at_a_terminal_ctrl_d_after_text_sends_it_and_the_ack_starts_a_line_of_its_own() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let (mut client, mut pty) = client_at_a_terminal(&server.port());
    pty.wait_for("\r\n> ", WAIT);
    // The first Ctrl-D hands "partial" over without a newline; the second is end of input.
    pty.type_bytes(b"partial");
    pty.type_bytes(CTRL_D);
    pty.type_bytes(CTRL_D);
    let screen = pty.until_closed(WAIT);
    assert!(
        screen.ends_with(&format!("{HOW_TO_QUIT}\r\n> partial\r\n{ACK}\r\n")),
        "{screen:?}"
    );
    assert!(client.wait().expect("wait").success());
    assert!(
        server
            .wait_for_line_ending("send a message to server: partial")
            .starts_with('[')
    );
}

#[test]
fn at_a_terminal_ctrl_d_on_an_empty_prompt_ends_the_session_on_a_fresh_line() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let (mut client, mut pty) = client_at_a_terminal(&server.port());
    pty.wait_for("\r\n> ", WAIT);
    pty.type_bytes(CTRL_D);
    let screen = pty.until_closed(WAIT);
    assert!(
        screen.ends_with(&format!("{HOW_TO_QUIT}\r\n> \r\n")),
        "{screen:?}"
    );
    assert!(client.wait().expect("wait").success());
}

#[test]
fn at_a_terminal_a_server_that_stops_is_reported_on_a_fresh_line() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let (mut client, mut pty) = client_at_a_terminal(&server.port());
    pty.wait_for("\r\n> ", WAIT);
    server.signal(libc::SIGTERM);
    let screen = pty.until_closed(WAIT);
    assert!(
        screen.contains(&format!("{HOW_TO_QUIT}\r\n> \r\nerror: connection to ")),
        "{screen:?}"
    );
    assert_eq!(client.wait().expect("wait").code(), Some(7));
}

/// The error a client prints when nothing listens where `args` point.
fn connect_error(args: &[&str]) -> String {
    let output = socket_lab()
        .arg("client")
        .args(args)
        .write_stdin("hello\n")
        .timeout(WAIT)
        .output()
        .expect("run the client");
    assert_eq!(output.status.code(), Some(6), "{output:?}");
    String::from_utf8(output.stderr).expect("text")
}

#[test]
fn a_refused_connect_names_the_command_that_starts_a_server_there() {
    let port = free_port();
    assert_eq!(
        connect_error(&["--port", &port.to_string()]),
        format!(
            "error: cannot connect to 127.0.0.1:{port}: connection refused (is the server running? start it with `socket-lab server --port {port}` in another terminal)\n"
        )
    );

    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("nobody.sock");
    let path = path.to_str().expect("a UTF-8 temp path");
    assert_eq!(
        connect_error(&["--unix", path]),
        format!(
            "error: cannot connect to {path}: no such file or directory (is the server running? start it with `socket-lab server --unix {path}` in another terminal)\n"
        )
    );
    // A datagram client needs a datagram server: the same path, and --udp.
    assert_eq!(
        connect_error(&["--unix", path, "--udp"]),
        format!(
            "error: cannot connect to {path}: no such file or directory (is the server running? start it with `socket-lab server --unix {path} --udp` in another terminal)\n"
        )
    );
}

#[test]
fn a_refused_connect_to_a_name_lists_every_address_it_tried() {
    let port = free_port();
    // What this machine's resolver says localhost is (/etc/hosts): the client asks the same.
    let tried: Vec<SocketAddr> = ("localhost", port)
        .to_socket_addrs()
        .expect("resolve localhost")
        .collect();
    let error = connect_error(&["--host", "localhost", "--port", &port.to_string()]);
    let listed = match &tried[..] {
        [only] => format!("tried {only}, the only address localhost has here"),
        several => {
            let each: Vec<String> = several.iter().map(SocketAddr::to_string).collect();
            format!("tried {}", each.join(", then "))
        }
    };
    assert!(
        error.starts_with(&format!(
            "error: cannot connect to localhost:{port}: connection refused ({listed}; is the server running? start it with `socket-lab server"
        )),
        "{error}"
    );
    if tried.iter().all(SocketAddr::is_ipv4) {
        // The case this hint is for: a server on ::1 cannot be found by this name here.
        assert!(
            error
                .ends_with("in another terminal; if it listens on ::1, connect with --host ::1)\n"),
            "{error}"
        );
    }
}
