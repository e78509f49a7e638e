//! `socket-lab run` and `socket-lab lessons`: the scenario files as narrated demos.

mod common;

use common::{ServerProcess, socket_lab};
use predicates::prelude::*;
use socket_lab::scenario::syntax::{Actor, verb_names};

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
    let (listing, closing) = stdout
        .split_once("\n\n")
        .expect("a blank line after the list");
    // Each lesson is its file name, then its title indented on the next line.
    let lines: Vec<&str> = listing.lines().collect();
    let names: Vec<&str> = lines.iter().step_by(2).copied().collect();
    let titles: Vec<&str> = lines.iter().skip(1).step_by(2).copied().collect();
    let files = std::fs::read_dir(lesson(""))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "txt"))
        })
        .count();
    assert_eq!(names.len(), files, "one entry per lesson file:\n{stdout}");
    assert_eq!(titles.len(), files, "a title per lesson:\n{stdout}");
    assert_eq!(names[0], "01-one-message.txt");
    assert_eq!(titles[0], "    One message, one ack");
    assert!(
        titles
            .iter()
            .all(|title| title.starts_with("    ") && title.len() > 8)
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "reading order is file order");
    assert!(closing.contains("Run one: socket-lab run "), "{closing}");
    assert!(closing.contains("01-one-message.txt (add --full to see every byte)"));
    assert!(closing.contains("CLAIMS.md"));
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
    socket_lab()
        .args(["run", path.to_str().unwrap()])
        .assert()
        .code(9)
        .stderr(format!(
            "error: {}:4: unknown verb `conect`; a client can: {}\n",
            path.display(),
            verb_names(Actor::Client)
        ));
}

#[test]
fn run_with_a_port_plays_the_client_side_against_a_running_server() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    socket_lab()
        .args([
            "run",
            "--port",
            &server.port(),
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
                "(skipped against another server: server: log \"[alice] connected\")",
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

/// Writes `text` to a scenario file in a fresh directory; returns both (the directory must
/// outlive the run).
fn scenario_file(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn full_prints_the_whole_request_and_response_of_lesson_23() {
    let output = socket_lab()
        .args(["run", "--full", &lesson("23-http-request-and-response.txt")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    // Without --full the request is cut, saying how much is hidden...
    assert!(
        stdout.contains(
            "\"GET / HTTP/1.1\\r\\nHost: localhost\\r\\nUser-Ag\" … 18 more bytes (58 B)"
        )
    );
    // ...and with it every line follows, up to the blank line that ends the head.
    for line in [
        "        ┊ GET / HTTP/1.1\\r\\n\n        ┊ Host: localhost\\r\\n\n        ┊ User-Agent: lesson-23\\r\\n\n        ┊ \\r\\n\n",
        "        ┊ HTTP/1.1 200 OK\\r\\n\n",
        "        ┊ Content-Type: text/html; charset=utf-8\\r\\n\n",
        "        ┊ </html>\\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    let short = socket_lab()
        .args(["run", &lesson("23-http-request-and-response.txt")])
        .output()
        .unwrap();
    assert!(!String::from_utf8(short.stdout).unwrap().contains("┊"));
}

#[test]
fn the_udp_truncation_lesson_shows_the_discarded_bytes() {
    socket_lab()
        .args(["run", &lesson("14-udp-truncation.txt")])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(
                "      server recv(8) from alice → \"hello, w\" (the datagram had 20 bytes, recv read 8, the other 12 were discarded)\n      server ──\"server recv success\" (19 B)──▶ alice\n",
            )
            .and(predicate::str::contains(
                "send a message to server: hello, w (truncated: the datagram had 20 bytes, recv read 8, the other 12 were discarded)\nalice ◀──\"server recv success\" (19 B)── server   recv(1024)\n",
            )),
        );
}

#[test]
fn a_server_recv_is_printed_before_the_ack_it_causes() {
    // Lesson 04 once printed alice's first recv(4) before the server's recv of her message.
    let output = socket_lab()
        .args(["run", &lesson("04-client-recv-in-pieces.txt")])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let recv = stdout
        .find("server recv(1024) from alice → \"hello\"")
        .expect("the server's recv");
    let ack = stdout
        .find("alice ◀──\"serv\" (4 B)")
        .expect("alice's recv");
    assert!(recv < ack, "{stdout}");
}

#[test]
fn log_next_fails_when_the_server_logged_the_lines_in_another_order() {
    let text = "# order\nserver tcp\ntimeout 2s\n\
        alice: connect\nalice: send \"first\"\nalice: recv 1024 = \"server recv success\"\n\
        alice: send \"second\"\nalice: recv 1024 = \"server recv success\"\n";
    let (_dir, right) = scenario_file(
        "right.txt",
        &format!(
            "{text}server: log \"[alice] send a message to server: first\"\nserver: log-next \"[alice] send a message to server: second\"\n"
        ),
    );
    socket_lab().args(["run", &right]).assert().success();
    let (_dir, wrong) = scenario_file(
        "wrong.txt",
        &format!(
            "{text}server: log \"[alice] send a message to server: second\"\nserver: log-next \"[alice] send a message to server: first\"\n"
        ),
    );
    socket_lab().args(["run", &wrong]).assert().code(8).stderr(
        predicate::str::contains(format!(
            "{wrong}:10: server: log-next \"[alice] send a message to server: first\""
        ))
        .and(predicate::str::contains(
            "expected the server's next log line to match",
        )),
    );
    // `log`, unordered, accepts the same two lines in either order.
    let (_dir, any) = scenario_file(
        "any.txt",
        &format!(
            "{text}server: log \"[alice] send a message to server: second\"\nserver: log \"[alice] send a message to server: first\"\n"
        ),
    );
    socket_lab().args(["run", &any]).assert().success();
}

#[test]
fn a_setting_the_server_kind_does_not_take_is_refused_with_file_and_line() {
    let (_dir, path) = scenario_file(
        "paused-http.txt",
        "# t\n\nserver http accept=paused recv-size=8\n",
    );
    socket_lab()
        .args(["run", &path])
        .assert()
        .code(9)
        .stderr(format!(
            "error: {path}:3: the http server does not take `accept`; it takes: host, engine\n"
        ));
}

#[test]
fn no_transcript_starts_with_an_empty_narration_line() {
    let output = socket_lab()
        .args([
            "run",
            &lesson("18-backlog.txt"),
            &lesson("10-bind-errors.txt"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    for block in stdout.split("━━ ").skip(1) {
        let after_title = block.lines().skip(1).find(|line| !line.is_empty());
        assert_ne!(after_title, Some("│"), "{stdout}");
    }
}

/// Input that cannot be read or does not parse has its own exit code, 9: not 1 ("a socket
/// call failed", which a missing file used to get) nor 8 ("did not go as its file says",
/// which a malformed file used to get).
#[test]
fn unreadable_or_malformed_input_exits_9() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    socket_lab()
        .args(["run", missing.to_str().unwrap()])
        .assert()
        .code(9)
        .stderr(format!(
            "error: cannot read {}: no such file or directory\n",
            missing.display()
        ));
    socket_lab()
        .args(["lessons", "--dir", missing.to_str().unwrap()])
        .assert()
        .code(9)
        .stderr(format!(
            "error: cannot list {}: no such file or directory\n",
            missing.display()
        ));
    let (_dir, malformed) = scenario_file("bad.txt", "# t\nserver tcp\nalice: send\n");
    socket_lab()
        .args(["run", &malformed])
        .assert()
        .code(9)
        .stderr(predicate::str::starts_with(format!(
            "error: {malformed}:3: "
        )));
    // Not a file, or a file without end: refused at once, never read until memory runs out.
    socket_lab()
        .args(["run", "/dev/zero"])
        .timeout(std::time::Duration::from_secs(10))
        .assert()
        .code(9)
        .stderr("error: cannot read /dev/zero: not a regular file: a lesson is a text file such as scenarios/01-one-message.txt\n");
    let (_dir, huge) = scenario_file(
        "huge.txt",
        &format!("# t\nserver tcp\n{}", "# x\n".repeat(300_000)),
    );
    socket_lab()
        .args(["run", &huge])
        .assert()
        .code(9)
        .stderr(predicate::str::contains(
            "longer than 1048576 bytes, the most a lesson file may be",
        ));
}
