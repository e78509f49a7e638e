//! `socket-lab bench` through the binary: a short, bounded run against its own server prints
//! every field of the report, and a target nobody listens on is a clear error. Its first line
//! comes before the run ends, and a live progress line shows on a terminal only. No timing is
//! asserted: numbers belong in `BENCHMARKS.md`, not in a test on a shared machine.

mod common;
mod pty;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;

use common::{ServerProcess, WAIT, lines_of, socket_lab, socket_lab_process};
use pty::Pty;
use socket_lab::poll::{Want, Watch};

/// The value after `label: ` on the report line that starts with it.
fn field<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no `{label}:` line in the report:\n{report}"))
}

fn run_bench(args: &[&str]) -> String {
    let output = socket_lab()
        .arg("bench")
        .args(args)
        .output()
        .expect("run socket-lab bench");
    assert!(output.status.success(), "bench failed: {output:?}");
    String::from_utf8(output.stdout).expect("the report is text")
}

#[test]
fn a_short_run_against_its_own_server_reports_every_field() {
    let report = run_bench(&["--conns", "2", "--msgs", "50", "--duration", "10s"]);
    // Two connections of 50 messages each: every message sent, every one acked.
    assert_eq!(field(&report, "messages").split(' ').next(), Some("100"));
    assert!(field(&report, "acks").starts_with("100, every byte checked"));
    let per_second: f64 = field(&report, "msgs/s")
        .parse()
        .expect("msgs/s is a number");
    assert!(per_second > 0.0, "{report}");
    let latency = field(&report, "latency");
    for part in ["p50 ", "p99 ", "max "] {
        assert!(latency.contains(part), "{part:?} in {latency:?}");
    }
    assert!(report.contains("(own server, in this process)"), "{report}");
}

#[test]
fn every_transport_carries_the_ack_protocol() {
    for transport in [&["--udp"][..], &["--unix"], &["--unix", "--udp"]] {
        let mut args = vec!["--conns", "2", "--msgs", "20"];
        args.extend_from_slice(transport);
        let report = run_bench(&args);
        assert_eq!(field(&report, "messages").split(' ').next(), Some("40"));
    }
}

#[test]
fn stream_mode_sends_every_byte_and_reports_throughput_without_latency() {
    let report = run_bench(&["--stream", "--size", "65536", "--msgs", "64"]);
    assert_eq!(field(&report, "messages").split(' ').next(), Some("64"));
    assert!(field(&report, "MiB/s").parse::<f64>().is_ok(), "{report}");
    // Nothing waits for an ack, so there is no round trip to report.
    assert!(!report.contains("latency:"), "{report}");
}

#[test]
fn a_target_server_process_is_loaded_over_the_network() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let report = run_bench(&["--port", &server.port(), "--msgs", "10"]);
    assert_eq!(field(&report, "messages").split(' ').next(), Some("10"));
    assert!(!report.contains("own server"), "{report}");
}

#[test]
fn a_dead_target_is_a_clear_connect_error() {
    // Bind a port, then close it: nobody listens there now.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local addr").port()
    };
    let output = socket_lab()
        .args(["bench", "--port", &port.to_string()])
        .output()
        .expect("run socket-lab bench");
    assert_eq!(output.status.code(), Some(6), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The last line is the error; before it, the bench says what it is about to do.
    assert_eq!(
        stderr.trim_end().lines().last().unwrap_or_default(),
        format!(
            "error: cannot connect to 127.0.0.1:{port}: connection refused (is the server running? start it with `socket-lab server --port {port}` in another terminal)"
        )
    );
}

#[test]
fn bad_settings_are_refused_before_any_socket() {
    let output = socket_lab()
        .args(["bench", "--conns", "0"])
        .output()
        .expect("run socket-lab bench");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--conns must be between 1 and"));
}

/// Nothing but the report on stdout, and nothing drawn on stderr, when both are pipes: no
/// carriage returns, no escape sequences, no progress line.
#[test]
fn piped_output_is_the_report_and_nothing_else() {
    let output = socket_lab()
        .args(["bench", "--msgs", "50"])
        .timeout(WAIT)
        .output()
        .expect("run socket-lab bench");
    assert!(output.status.success(), "bench failed: {output:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let labels: Vec<&str> = stdout
        .lines()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        labels,
        ["bench", "messages", "msgs/s", "MiB/s", "latency", "acks"],
        "{stdout}"
    );
    assert!(
        stdout.starts_with("bench: tcp 127.0.0.1:")
            && stdout.contains(" (own server, in this process), 1 connection, 64-byte messages"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(['\r', '\x1b']), "terminal codes in {text:?}");
    }
    // A debug build says it is one; nothing else is said.
    assert!(
        stderr
            .lines()
            .all(|line| line.starts_with("warning: this is a debug build")),
        "{stderr}"
    );
}

/// A target that acks only when the test says so: the bench is then mid-run, waiting.
struct HeldServer {
    listener: TcpListener,
    addr: String,
    port: String,
}

impl HeldServer {
    fn new() -> HeldServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("address");
        HeldServer {
            listener,
            addr: local.to_string(),
            port: local.port().to_string(),
        }
    }

    /// `bench` against this server: one connection, one 5-byte message.
    fn bench_one_message(&self) -> [&str; 9] {
        [
            "bench",
            "--host",
            "127.0.0.1",
            "--port",
            &self.port,
            "--msgs",
            "1",
            "--size",
            "5",
        ]
    }

    /// Accepts the bench's connection and reads its first `size`-byte message, unanswered.
    /// A bench that never connects (it failed at once, say) fails the test within [`WAIT`].
    fn first_message(&self, size: usize) -> TcpStream {
        let mut watch = [Watch::new(&self.listener, Want::Read)];
        let ready = socket_lab::poll::wait(&mut watch, Some(WAIT)).expect("poll the listener");
        assert_eq!(ready, 1, "the bench did not connect within {WAIT:?}");
        let (mut stream, _) = self.listener.accept().expect("accept the bench");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut message = vec![0; size];
        stream.read_exact(&mut message).expect("the message");
        assert!(message.iter().all(|&byte| byte == b'x'));
        stream
    }

    /// Acks, then reads to the bench's half-close and closes: the run can end.
    fn ack_and_close(mut stream: TcpStream) {
        stream.write_all(b"server recv success").expect("ack");
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("the bench's half-close");
        assert!(rest.is_empty(), "{rest:?}");
    }
}

#[test]
fn the_first_line_is_printed_before_the_run_ends() {
    let server = HeldServer::new();
    let mut bench = socket_lab_process()
        .args(server.bench_one_message())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the bench");
    let stdout = lines_of(bench.stdout.take().expect("piped stdout"));
    let held = server.first_message(5);
    // The run cannot end before the ack; its first line is already out.
    assert_eq!(
        stdout.recv_timeout(WAIT).expect("the first line, mid-run"),
        format!(
            "bench: tcp {}, 1 connection, 5-byte messages (send, wait for the ack, repeat)",
            server.addr
        )
    );
    HeldServer::ack_and_close(held);
    let report = stdout.recv_timeout(WAIT).expect("the report");
    assert!(report.starts_with("messages: 1 in "), "{report}");
    assert!(bench.wait().expect("wait").success());
}

#[test]
fn on_a_terminal_a_live_line_shows_the_messages_so_far_and_is_cleared_after() {
    let server = HeldServer::new();
    let mut pty = Pty::open();
    let bench = socket_lab_process()
        .args(server.bench_one_message())
        .stdout(Stdio::piped())
        .stderr(pty.stdio())
        // What a terminal sets; without TERM (as under CI) or with `dumb`, nothing is drawn.
        .env("TERM", "xterm")
        .spawn()
        .expect("start the bench");
    pty.close_terminal_end();
    let held = server.first_message(5);
    // Mid-run (the ack is held back), the terminal shows where the run stands.
    pty.wait_for("1 of 1 messages, ", WAIT);
    HeldServer::ack_and_close(held);
    let output = bench.wait_with_output().expect("wait");
    assert!(output.status.success(), "{output:?}");
    let screen = pty.until_closed(WAIT);
    // indicatif's last word is "clear this line": ESC [2K (erase it) after a carriage return.
    assert!(screen.ends_with("\r\x1b[2K"), "{screen:?}");
    // The report went to stdout, a pipe, untouched by the progress line.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("bench: tcp "), "{stdout}");
    assert!(stdout.contains("\nacks: 1, every byte checked"), "{stdout}");
    assert!(!stdout.contains(['\r', '\x1b']), "{stdout:?}");
}
