//! `socket-lab run` and `socket-lab lessons`: the scenario files as narrated demos.

mod common;

use common::{ServerProcess, socket_lab};
use predicates::prelude::*;

fn lesson(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lessons_lists_the_walkthrough_in_order_with_titles() {
    let output = socket_lab()
        .args(["lessons", "--dir", &lesson("")])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 12, "{stdout}");
    assert!(
        lines[0].starts_with("01-one-message.txt") && lines[0].ends_with("One message, one ack")
    );
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "reading order is file order");
}

#[test]
fn run_narrates_the_truncation_lesson_as_a_sequence_diagram() {
    socket_lab()
        .args(["run", &lesson("03-recv-truncation.txt")])
        .env_remove("NO_COLOR")
        .assert()
        .success()
        .stdout(
            predicate::str::contains(
                "━━ recv(n) takes at most n bytes; the rest waits for the next recv ━━",
            )
            .and(predicate::str::contains(
                "alice ──\"hello, wide world!\\r\\n\" (20 B)──▶ server",
            ))
            .and(predicate::str::contains(
                "      server recv(8) from alice → \"hello, w\"",
            ))
            .and(predicate::str::contains(
                "      server recv(8) from alice → \"d!\\r\\n\"",
            ))
            .and(predicate::str::contains(
                "alice ◀──\"server recv success\" * 3 (57 B)── server",
            ))
            // Piped output carries no colour codes.
            .and(predicate::str::contains("\x1b[").not()),
        );
}

#[test]
fn a_changed_line_fails_with_file_line_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("03-changed.txt");
    let original = std::fs::read_to_string(lesson("03-recv-truncation.txt")).unwrap();
    // One changed expectation, and a short timeout so the failure comes fast.
    let changed = original.replace("ide worl\"", "ide world\"").replace(
        "server tcp recv-size=8\n",
        "server tcp recv-size=8\ntimeout 500ms\n",
    );
    std::fs::write(&path, changed).unwrap();
    socket_lab()
        .args(["run", path.to_str().unwrap()])
        .assert()
        .code(8)
        .stderr(
            predicate::str::contains(format!(
                "{}:15: server: log \"[alice] send a message to server: ide world\"",
                path.display()
            ))
            .and(predicate::str::contains("expected the server to log"))
            .and(predicate::str::contains(
                "within 500ms; the lines not yet matched are:",
            ))
            .and(predicate::str::contains(
                "send a message to server: d!\\r\\n",
            )),
        );
}

#[test]
fn a_malformed_file_names_the_line_and_the_valid_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, "# bad\nserver tcp\n\nalice: conect\n").unwrap();
    socket_lab().args(["run", path.to_str().unwrap()]).assert().code(8).stderr(format!(
        "error: {}:4: unknown verb `conect`; a client can: connect, finish-connect, send, sendall, recv, recv-exactly, recv-until-eof, recv-response, shutdown, close, reset, settimeout, setblocking, setsockopt\n",
        path.display()
    ));
}

#[test]
fn target_plays_the_client_side_against_a_running_server() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args([
            "run",
            "--target",
            &server.addr,
            &lesson("01-one-message.txt"),
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!(
                "(client side only, against the server at {})",
                server.addr
            ))
            .and(predicate::str::contains(
                "(skipped with --target: server: log \"[alice] connected\")",
            ))
            .and(predicate::str::contains(
                "alice ◀──\"server recv success\" (19 B)── server   recv(1024)",
            )),
        );
    assert!(server.next_line().ends_with(" connected"));
    assert!(
        server
            .next_line()
            .ends_with(" send a message to server: hello")
    );
}
