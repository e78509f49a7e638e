//! The command line's one language: every subcommand names a server with `--host`, `--port`
//! and `--unix PATH` (and datagrams with `--udp`), every duration has a unit, each command's
//! help says only what is true of it, and every `error:` looks like clap's.

mod common;

use common::{ServerProcess, socket_lab};
use predicates::prelude::*;
use socket_lab::Endpoint;
use socket_lab::server::Engine;

const ACK_LINE: &str = "server recv success\n";

/// The `--help` of a subcommand, its words joined by single spaces: where clap wraps a line
/// is not what these tests are about.
fn help(command: &str) -> String {
    let output = socket_lab()
        .args([command, "--help"])
        .env("COLUMNS", "100")
        .output()
        .expect("run --help");
    assert!(output.status.success(), "{command} --help: {output:?}");
    let text = String::from_utf8(output.stdout).expect("help is text");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_subcommand_that_talks_to_a_server_names_it_with_host_port_and_unix() {
    for command in ["server", "client", "http", "run", "bench", "check", "proxy"] {
        let help = help(command);
        for flag in ["--host <HOST>", "--port <PORT>", "--unix"] {
            assert!(
                help.contains(flag),
                "{command} --help lacks {flag}:\n{help}"
            );
        }
        for old in ["--target", "--listen", "--to <", "--kind"] {
            assert!(
                !help.contains(old),
                "{command} --help still offers {old}:\n{help}"
            );
        }
    }
    // The proxy's second address is the same three words after `to-`.
    let proxy = help("proxy");
    for flag in ["--to-host <HOST>", "--to-port <PORT>", "--to-unix <PATH>"] {
        assert!(proxy.contains(flag), "proxy --help lacks {flag}:\n{proxy}");
    }
}

#[test]
fn http_neither_offers_nor_takes_udp() {
    assert!(!help("http").contains("--udp"));
    socket_lab()
        .args(["http", "--udp"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with(
            "error: unexpected argument '--udp' found",
        ));
}

#[test]
fn only_a_command_that_listens_says_port_0_means_any_free_port() {
    for command in ["server", "http", "proxy"] {
        assert!(
            help(command).contains("0 lets the kernel pick a free one"),
            "{command}"
        );
    }
    for command in ["client", "run", "bench", "check"] {
        assert!(!help(command).contains("free one"), "{command}");
    }
    // And a client told port 0 hears why it cannot connect there, before it tries.
    socket_lab()
        .args(["client", "--port", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "port 0 is what a server binds to get any free port; a client needs the port the server chose",
        ));
}

#[test]
fn the_engines_offered_are_the_librarys() {
    let names: Vec<&str> = Engine::ALL.iter().map(|engine| engine.name()).collect();
    let server = help("server");
    assert!(
        server.contains(&format!("[possible values: {}]", names.join(", "))),
        "{server}"
    );
    assert!(server.contains(&format!("[default: {}]", Engine::default().name())));
}

#[test]
fn durations_show_their_defaults_in_units() {
    let server = help("server");
    assert!(server.contains("--idle-timeout <DURATION>"), "{server}");
    assert!(server.contains("[default: 5m]"), "{server}");
    assert!(server.contains("0s never disconnects one"), "{server}");
    assert!(help("client").contains("--reply-timeout <DURATION>"));
    assert!(help("client").contains("[default: 3s]"));
    let http = help("http");
    for flag in ["--read-timeout", "--request-timeout", "--write-timeout"] {
        assert!(http.contains(&format!("{flag} <DURATION>")), "{http}");
    }
    assert!(help("bench").contains("[default: 10s]"));
}

#[test]
fn a_duration_without_a_unit_or_of_zero_is_refused_with_the_reason() {
    let refused = [
        (
            &["server", "--idle-timeout", "5"][..],
            "error: invalid value '5' for '--idle-timeout <DURATION>': time unit needed, for example 5sec or 5ms\n",
        ),
        (
            &["client", "--udp", "--reply-timeout", "0s"],
            "error: invalid value '0s' for '--reply-timeout <DURATION>': it must be more than 0: the client would give up on every ack before it could arrive\n",
        ),
        (
            &["http", "--write-timeout", "0ms"],
            "error: invalid value '0ms' for '--write-timeout <DURATION>': it must be more than 0: a zero timeout would close every connection at once\n",
        ),
        (
            &["bench", "--duration", "11m"],
            "error: invalid value '11m' for '--duration <DURATION>': at most 10m, so a typo cannot tie up a machine for hours\n",
        ),
        (
            &["proxy", "--merge", "1ms 500us"],
            "error: invalid value '1ms 500us' for '--merge <DURATION>': it must be whole milliseconds, such as 1ms or 20ms\n",
        ),
    ];
    for (args, first_line) in refused {
        socket_lab()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with(first_line));
    }
    // The old spelling is gone, not kept beside the new one.
    socket_lab()
        .args(["client", "--udp", "--reply-timeout-ms", "500"])
        .assert()
        .code(2);
}

/// `bench --unix PATH` loads a server already listening there (it used to be a switch, and
/// a path after it "an unexpected argument").
#[test]
fn bench_loads_a_unix_server_already_running_at_a_path() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("lab.sock");
    let path = path.to_str().expect("a UTF-8 temp path");
    let server = ServerProcess::start(&["server", "--unix", path, "--quiet"]);
    let output = socket_lab()
        .args(["bench", "--unix", path, "--msgs", "10"])
        .output()
        .expect("run socket-lab bench");
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(&format!("bench: unix {path}, ")),
        "{report}"
    );
    assert!(report.contains("messages: 10 in"), "{report}");
    drop(server);
}

/// The proxy between a client and a server, each addressed the same way.
#[test]
fn proxy_relays_from_its_port_to_the_server_at_to_port() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let proxy = ServerProcess::start(&["proxy", "--port", "0", "--to-port", &server.port()]);
    // Its address reads back as an endpoint: what `listening on` prints can be typed again.
    let Ok(Endpoint::Inet { host, port }) = proxy.addr.parse::<Endpoint>() else {
        panic!("the proxy's address {:?} is HOST:PORT", proxy.addr);
    };
    assert_eq!(host, "127.0.0.1");
    socket_lab()
        .args(["client", "--port", &port.to_string()])
        .write_stdin("hello\n")
        .assert()
        .success()
        .stdout(ACK_LINE);
    assert!(
        server
            .wait_for_line_ending("send a message to server: hello")
            .starts_with("[127.0.0.1:")
    );
}

/// clap's `error:` and the lab's own look the same: bold red where colour is wanted
/// (`CLICOLOR_FORCE` stands in for a terminal), plain where `NO_COLOR` says so, as for any
/// pipe.
#[test]
fn every_error_prefix_is_styled_like_claps() {
    const STYLED: &str = "\x1b[1m\x1b[31merror:\x1b[0m ";
    // Nothing listens on a path in a fresh directory: the lab's own error, exit 6.
    let dir = tempfile::tempdir().expect("a temp dir");
    let nobody = dir.path().join("nobody.sock");
    let nobody = nobody.to_str().expect("a UTF-8 temp path");
    let clap_error = ["server", "--port", "x"];
    let own_error = ["client", "--unix", nobody];
    let stderr_of = |args: &[&str], env: &[(&str, &str)]| {
        let output = socket_lab()
            .args(args)
            .envs(env.iter().copied())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE")
            .envs(env.iter().copied())
            .write_stdin("hi\n")
            .output()
            .expect("run socket-lab");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "error: "),
        (&[("CLICOLOR_FORCE", "1")], STYLED),
        (&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], "error: "),
    ];
    for (env, prefix) in cases {
        let (code, stderr) = stderr_of(&clap_error, env);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!("{prefix}invalid value")),
            "{env:?}: {stderr:?}"
        );
        let (code, stderr) = stderr_of(&own_error, env);
        assert_eq!(code, Some(6), "{stderr}");
        assert!(
            stderr.starts_with(&format!("{prefix}cannot connect")),
            "{env:?}: {stderr:?}"
        );
    }
}
