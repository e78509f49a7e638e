//! `socket-lab bench` through the binary: a short, bounded run against its own server prints
//! every field of the report, and a target nobody listens on is a clear error. No timing is
//! asserted: numbers belong in `BENCHMARKS.md`, not in a test on a shared machine.

mod common;

use std::net::TcpListener;

use common::{ServerProcess, socket_lab};

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
            "error: cannot connect to 127.0.0.1:{port}: connection refused (is the server running? start it with `socket-lab server` in another terminal)"
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
