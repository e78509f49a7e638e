//! Unix domain sockets (`AF_UNIX`, claim 1): stream and datagram, their socket files, and the
//! peer that has no address at all. Every socket lives in a fresh `tempfile` directory.

mod kinds_common;

use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kinds_common::{BINARY, STEP_TIMEOUT, ServerProcess, channel_log, next_event};
use predicates::prelude::*;
use socket_lab::endpoint::MAX_UNIX_PATH;
use socket_lab::server::{ACK, Event, Server, ServerConfig};
use socket_lab::udp::{DatagramClient, DatagramServer};
use socket_lab::{Address, Endpoint, Error};
use tempfile::TempDir;

fn socket_dir() -> TempDir {
    tempfile::tempdir().expect("a temp directory")
}

fn config_at(path: &Path) -> ServerConfig {
    ServerConfig {
        endpoint: Endpoint::Unix(path.to_path_buf()),
        ..ServerConfig::default()
    }
}

/// A socket file nobody listens on, as a crashed server leaves it: std's `UnixListener` does
/// not remove its file when dropped.
fn leave_stale_socket(path: &Path) {
    drop(UnixListener::bind(path).expect("bind a listener to leave its file behind"));
    assert!(path.exists(), "the stale file is there");
}

#[test]
fn unix_datagram_client_and_server_exchange_acks() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");
    let (log, events) = channel_log();
    let server = DatagramServer::bind(config_at(&path))
        .expect("bind")
        .spawn(log);

    let client = DatagramClient::connect(&Endpoint::Unix(path.clone()), STEP_TIMEOUT)
        .expect("connect to the datagram server");
    assert_eq!(client.request(b"hi").expect("ack"), ACK);

    // The client bound a path of its own, so the server can answer it, and the log shows it.
    let client_addr = client.local_addr().expect("client address");
    let Address::Unix(Some(client_path)) = &client_addr else {
        panic!("the client should have a path, not {client_addr:?}");
    };
    let event = next_event(&events);
    assert_eq!(
        event,
        Event::Message {
            peer: client_addr.clone(),
            data: b"hi".to_vec()
        }
    );
    assert_eq!(
        event.to_string(),
        format!("[{}] send a message to server: hi", client_path.display())
    );

    // The client's file goes when the client does; the server's when the server stops.
    let client_path = client_path.clone();
    drop(client);
    assert!(!client_path.exists(), "the client removed its socket file");
    server.stop().expect("stop");
    assert!(!path.exists(), "the server removed its socket file");
}

#[test]
fn an_unnamed_sender_is_logged_but_cannot_be_answered() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");
    let (log, events) = channel_log();
    let server = DatagramServer::bind(config_at(&path))
        .expect("bind")
        .spawn(log);

    // A socket that never called bind has no address: recvfrom returns none to answer.
    let unnamed = UnixDatagram::unbound().expect("an unbound datagram socket");
    unnamed.send_to(b"hi", &path).expect("send");

    let message = next_event(&events);
    assert_eq!(
        message.to_string(),
        "[unnamed] send a message to server: hi"
    );
    assert_eq!(
        next_event(&events).to_string(),
        "[unnamed] cannot send the ack: the sender is unnamed (it never bound a path), so there is no address to answer"
    );
    server.stop().expect("stop");
}

#[test]
fn a_unix_datagram_is_truncated_and_the_rest_discarded() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");
    let (log, events) = channel_log();
    let config = ServerConfig {
        recv_size: 4,
        ..config_at(&path)
    };
    let server = DatagramServer::bind(config).expect("bind").spawn(log);
    let client = DatagramClient::connect(&Endpoint::Unix(path), STEP_TIMEOUT).expect("connect");

    // MSG_TRUNC reports the real length for Unix datagrams too (Linux 3.4 and later).
    assert_eq!(client.request(b"abcdefgh").expect("ack"), ACK);
    match next_event(&events) {
        Event::Truncated {
            data, datagram_len, ..
        } => assert_eq!((data.as_slice(), datagram_len), (&b"abcd"[..], 8)),
        other => panic!("expected a truncation, got {other:?}"),
    }
    server.stop().expect("stop");
}

#[test]
fn a_stale_socket_file_is_replaced_by_either_kind_of_server() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");

    leave_stale_socket(&path);
    let stream_server = Server::bind(config_at(&path)).expect("a stale file is replaced");
    drop(stream_server);

    leave_stale_socket(&path);
    let datagram_server = DatagramServer::bind(config_at(&path)).expect("here too");
    drop(datagram_server);
    assert!(!path.exists(), "each server removed the file it made");
}

#[test]
fn a_live_server_is_never_replaced() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");
    let in_use_message = format!(
        "cannot bind {}: address already in use (a server is still listening on that path; stop it, or choose another path with --unix)",
        path.display()
    );

    // A stream server is there: neither kind may take its path.
    let stream_server = Server::bind(config_at(&path)).expect("bind");
    for attempt in [
        Server::bind(config_at(&path)).err(),
        DatagramServer::bind(config_at(&path)).err(),
    ] {
        let error = attempt.expect("the path is in use");
        assert_eq!(error.to_string(), in_use_message);
        assert_eq!(error.exit_code(), 3);
    }
    drop(stream_server);

    // A datagram server is there: a stream probe gets "protocol wrong type", which still
    // means somebody is home.
    let datagram_server = DatagramServer::bind(config_at(&path)).expect("bind");
    for attempt in [
        Server::bind(config_at(&path)).err(),
        DatagramServer::bind(config_at(&path)).err(),
    ] {
        assert_eq!(
            attempt.expect("the path is in use").to_string(),
            in_use_message
        );
    }
    drop(datagram_server);
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = socket_dir();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"precious").expect("write a file");
    let error = Server::bind(config_at(&path))
        .err()
        .expect("a regular file is in the way");
    assert!(
        error
            .to_string()
            .contains("a file that is not a socket is in the way; choose another path"),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
}

#[test]
fn a_path_too_long_is_a_clear_error() {
    let dir = socket_dir();
    let long_path: PathBuf = dir.path().join("x".repeat(MAX_UNIX_PATH));
    let expected_start = format!(
        "the Unix socket path {} is {} bytes long, but Linux allows at most 107",
        long_path.display(),
        long_path.as_os_str().len()
    );
    let errors: Vec<Error> = vec![
        Server::bind(config_at(&long_path)).err().expect("stream"),
        DatagramServer::bind(config_at(&long_path))
            .err()
            .expect("datagram"),
        socket_lab::endpoint::Stream::connect(&Endpoint::Unix(long_path.clone()))
            .expect_err("stream client"),
        DatagramClient::connect(&Endpoint::Unix(long_path.clone()), STEP_TIMEOUT)
            .expect_err("datagram client"),
    ];
    for error in errors {
        assert!(error.to_string().starts_with(&expected_start), "{error}");
        assert_eq!(error.exit_code(), 2);
    }
}

// The binary.

#[test]
fn cli_unix_datagram_client_and_server_talk() {
    let dir = socket_dir();
    let path = dir.path().join("s.sock");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    let server = ServerProcess::start(&["--unix", path_arg, "--udp"]);
    assert_eq!(server.addr, path_arg);

    Command::new(BINARY)
        .args(["client", "--unix", path_arg, "--udp"])
        .write_stdin("hi\nq\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .success()
        .stdout("server recv success\n");

    let log = server.stop();
    assert!(
        log.starts_with("[/") && log.ends_with(".sock] send a message to server: hi\n"),
        "the log names the client's own socket path: {log:?}"
    );
}

#[test]
fn cli_unix_stream_client_is_unnamed() {
    let dir = socket_dir();
    let path = dir.path().join("s.sock");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    let server = ServerProcess::start(&["--unix", path_arg]);

    Command::new(BINARY)
        .args(["client", "--unix", path_arg])
        .write_stdin("hi\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .success()
        .stdout("server recv success\n");

    // A stream client connects without binding, so accept returns no address for it. The
    // client exits only after the server closed its side, which the server does after logging
    // the disconnect: the log is complete.
    let (status, log) = server.terminate();
    assert!(status.success(), "Ctrl-C ends the server cleanly: {status}");
    assert_eq!(
        log,
        "[unnamed] connected\n[unnamed] send a message to server: hi\n[unnamed] disconnected\n"
    );
    assert!(
        !path.exists(),
        "the server removed its socket file on SIGTERM"
    );
}

#[test]
fn cli_unix_server_refuses_a_path_in_use() {
    let dir = socket_dir();
    let path = dir.path().join("s.sock");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    let _server = ServerProcess::start(&["--unix", path_arg, "--udp"]);

    for kind in [
        &["--unix", path_arg][..],
        &["--unix", path_arg, "--udp"][..],
    ] {
        Command::new(BINARY)
            .arg("server")
            .args(kind)
            .timeout(STEP_TIMEOUT)
            .assert()
            .code(3)
            .stderr(format!(
                "error: cannot bind {path_arg}: address already in use (a server is still listening on that path; stop it, or choose another path with --unix)\n"
            ));
    }
}

#[test]
fn cli_unix_path_too_long_exits_2() {
    let dir = socket_dir();
    let long_path = dir.path().join("x".repeat(MAX_UNIX_PATH));
    let path_arg = long_path.to_str().expect("a UTF-8 temp path");
    for role in ["server", "client"] {
        Command::new(BINARY)
            .args([role, "--unix", path_arg, "--udp"])
            .write_stdin("hi\n")
            .timeout(STEP_TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("but Linux allows at most 107"));
    }
}

#[test]
fn cli_unix_datagram_client_without_a_server_exits_6() {
    let dir = socket_dir();
    let path = dir.path().join("nobody.sock");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    // Unlike UDP, a Unix datagram connect checks that the path is bound, so this fails early.
    Command::new(BINARY)
        .args(["client", "--unix", path_arg, "--udp"])
        .write_stdin("hi\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(6)
        .stderr(format!(
            "error: cannot connect to {path_arg}: no such file or directory (is the server running? start it with `socket-lab server --unix {path_arg} --udp` in another terminal)\n"
        ));
}

#[test]
fn cli_unix_datagram_server_removes_its_socket_on_sigterm() {
    let dir = socket_dir();
    let path = dir.path().join("s.sock");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    let server = ServerProcess::start(&["--unix", path_arg, "--udp"]);
    assert!(path.exists(), "bind created the socket file");
    let (status, log) = server.terminate();
    assert!(status.success(), "Ctrl-C ends the server cleanly: {status}");
    assert_eq!(
        log, "",
        "no datagram, no log: there is no connect or disconnect"
    );
    assert!(!path.exists(), "the server removed its socket file");
}

// A client chooses the path it binds, so the path is peer-controlled text.

/// A name a client can bind: a forged log line after a newline, a terminal title change
/// (ESC ... BEL), a right-to-left override, a line separator and a `]` that would close the
/// `[peer]` field.
const FORGING_NAME: &str = "c\n[forged] connected\x1b]0;pwned\x07\u{202e}kcos.\u{2028}]";
/// The same name as every log must show it: escaped, one line, nothing for a terminal to obey.
const FORGING_NAME_SHOWN: &str = r"c\n[forged\] connected\x1b\]0;pwned\x07\u{202e}kcos.\u{2028}\]";

#[test]
fn a_client_path_cannot_forge_or_hide_a_log_line_in_any_server() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixDatagram;

    let dir = socket_dir();
    let client_path = dir.path().join(FORGING_NAME);
    let peer = format!("[{}/{FORGING_NAME_SHOWN}]", dir.path().display());
    let bind_client = |kind| {
        let _ = std::fs::remove_file(&client_path);
        let socket = socket2::Socket::new(socket2::Domain::UNIX, kind, None).expect("socket");
        socket
            .bind(&socket2::SockAddr::unix(&client_path).expect("a path that fits"))
            .expect("bind the client's path");
        socket
    };

    // The ack server over a Unix stream socket; the message hides a zero-width space, a
    // bidi isolate and a byte-order mark.
    let path = dir.path().join("stream.sock");
    let server = ServerProcess::start(&["--unix", path.to_str().unwrap()]);
    // A stream client bound to the hostile path, connected to the server at `path`.
    let connect_stream = |path: &std::path::Path| {
        let client = bind_client(socket2::Type::STREAM);
        client
            .connect(&socket2::SockAddr::unix(path).unwrap())
            .expect("connect");
        let client = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(client));
        client.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        client
    };
    let mut client = connect_stream(&path);
    client
        .write_all("hi\u{200b}\u{2066}\u{feff}".as_bytes())
        .unwrap();
    let mut ack = [0; ACK.len()];
    client.read_exact(&mut ack).expect("the ack");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    // The server closes its side after it logged the disconnect: the log is complete.
    assert_eq!(client.read(&mut ack).expect("end of stream"), 0);
    assert_eq!(
        server.stop(),
        format!(
            "{peer} connected\n{peer} send a message to server: hi\\u{{200b}}\\u{{2066}}\\u{{feff}}\n{peer} disconnected\n"
        )
    );

    // The ack server over Unix datagrams.
    let path = dir.path().join("dgram.sock");
    let server = ServerProcess::start(&["--unix", path.to_str().unwrap(), "--udp"]);
    let client = UnixDatagram::from(std::os::fd::OwnedFd::from(bind_client(
        socket2::Type::DGRAM,
    )));
    client.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    client.send_to(b"hi\xe2\x80\xa9", &path).expect("send");
    let mut ack = [0; 64];
    client.recv(&mut ack).expect("the ack");
    assert_eq!(
        server.stop(),
        format!("{peer} send a message to server: hi\\u{{2029}}\n")
    );

    // The web server: one request it answers, one it refuses; the refused request line, as
    // logged, shows what the peer sent, escaped.
    let path = dir.path().join("http.sock");
    let server = ServerProcess::start_command("http", &["--unix", path.to_str().unwrap()]);
    let mut statuses = Vec::new();
    for request in [
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /\u{202e}gpj.exe HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut client = connect_stream(&path);
        client.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).expect("the response");
        statuses.push((
            String::from_utf8_lossy(&response[9..12]).into_owned(),
            response.len(),
        ));
    }
    let log = server.stop();
    let [(ok, ok_len), (refused, refused_len)] = &statuses[..] else {
        panic!("two responses");
    };
    assert_eq!((ok.as_str(), refused.as_str()), ("200", "400"));
    assert_eq!(
        log,
        format!(
            "{peer} \"GET / HTTP/1.1\" 200 {ok_len}\n{peer} \"GET /\\u{{202e}}gpj.exe HTTP/1.1\" 400 {refused_len}\n"
        )
    );
}

// A listener that never accepts: its queue fills, and a blocking connect would wait forever.

/// A Unix stream listener at `path` that never calls accept, its listen queue filled with
/// connections (non-blocking connects, until the kernel answers EAGAIN). Keep both alive.
fn full_listener(path: &Path) -> (socket2::Socket, Vec<socket2::Socket>) {
    let addr = socket2::SockAddr::unix(path).unwrap();
    let listener =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    listener.bind(&addr).unwrap();
    listener.listen(0).unwrap();
    let mut queued = Vec::new();
    for _ in 0..1000 {
        let client =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        client.set_nonblocking(true).unwrap();
        match client.connect(&addr) {
            Ok(()) => queued.push(client),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (listener, queued),
            Err(e) => panic!("connect: {e}"),
        }
    }
    panic!("the listen queue never filled");
}

/// Runs `attempt` on a thread and waits at most [`STEP_TIMEOUT`] for it: a call that blocks
/// forever fails the test instead of hanging it.
fn within_step_timeout<T: Send + 'static>(attempt: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(attempt());
    });
    result
        .recv_timeout(STEP_TIMEOUT)
        .unwrap_or_else(|_| panic!("still blocked after {STEP_TIMEOUT:?}"))
}

#[test]
fn a_listener_with_a_full_queue_is_reported_not_waited_on() {
    let dir = socket_dir();
    let path = dir.path().join("busy.sock");
    let _busy = full_listener(&path);
    let expected = format!(
        "cannot bind {}: address already in use (someone is listening on that path but not accepting: its listen queue is full; stop it, or choose another path with --unix)",
        path.display()
    );

    // Both kinds of server check the file before they replace it: the check must not wait.
    for datagram in [false, true] {
        let config = config_at(&path);
        let error = within_step_timeout(move || {
            if datagram {
                DatagramServer::bind(config).err()
            } else {
                Server::bind(config).err()
            }
        })
        .expect("the path is in use");
        assert_eq!(error.to_string(), expected);
        assert_eq!(error.exit_code(), 3);
    }
    assert!(path.exists(), "a live listener's file is never removed");

    // A client's connect waits at most its timeout, then says nobody accepted.
    let endpoint = Endpoint::Unix(path.clone());
    let error = within_step_timeout(move || {
        socket_lab::endpoint::Stream::connect_timeout(
            &endpoint,
            std::time::Duration::from_millis(200),
        )
        .err()
    })
    .expect("nobody accepts");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to {}: timed out (nothing answered: the server may be too busy to accept, or the address is wrong)",
            path.display()
        )
    );
    assert_eq!(error.exit_code(), 6);

    // The binary: a second `server --unix` on that path exits at once.
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    Command::new(BINARY)
        .args(["server", "--unix", path_arg])
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(3)
        .stderr(format!("error: {expected}\n"));
}

/// `bind` on a Unix path creates a file: where that fails, the hint is about directories,
/// not about ports below 1024 (which it used to be for permission denied).
#[test]
fn cli_unix_bind_errors_give_hints_about_paths_not_ports() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = socket_dir();
    // The directory itself must be reachable for `nobody`; only the one inside is read-only.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let denied = read_only.join("s.sock");
    let missing = dir.path().join("no-such-dir").join("s.sock");

    for kind in [&[][..], &["--udp"][..]] {
        let mut command = std::process::Command::new(BINARY);
        command.arg("server").arg("--unix").arg(&denied).args(kind);
        // Root may write anywhere, so the test drops to `nobody` as a learner's shell would be.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.uid(65534).gid(65534);
        }
        Command::from_std(command)
            .timeout(STEP_TIMEOUT)
            .assert()
            .code(4)
            .stderr(format!(
                "error: cannot bind {}: permission denied (bind creates the socket file, which needs write permission in its directory; choose a path in a directory you can write, such as /tmp)\n",
                denied.display()
            ));

        Command::new(BINARY)
            .arg("server")
            .arg("--unix")
            .arg(&missing)
            .args(kind)
            .timeout(STEP_TIMEOUT)
            .assert()
            .code(3)
            .stderr(format!(
                "error: cannot bind {}: no such file or directory (the directory for the socket file does not exist; create it, or choose a path in one that does, such as /tmp)\n",
                missing.display()
            ));
    }
}

#[test]
fn a_datagram_server_gone_from_its_path_is_reported_as_such() {
    let dir = socket_dir();
    let path = dir.path().join("server.sock");
    let (log, _events) = channel_log();
    let server = DatagramServer::bind(config_at(&path))
        .expect("bind")
        .spawn(log);
    let client = DatagramClient::connect(&Endpoint::Unix(path.clone()), STEP_TIMEOUT)
        .expect("connect to the datagram server");
    assert_eq!(client.request(b"hi").expect("ack"), ACK);
    server.stop().expect("stop");

    // Unlike UDP, the kernel knows that the socket this one is connected to is gone. Not
    // always at the first send: a test of this binary that starts a process holds a copy of
    // every descriptor between its fork and its exec, the server's socket too, which lives
    // until then and takes the datagram.
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    let error = loop {
        match client.send(b"anyone?") {
            Err(error) => break error,
            Ok(()) => assert!(
                std::time::Instant::now() < deadline,
                "the closed server's socket still takes datagrams"
            ),
        }
    };
    assert_eq!(error.exit_code(), 6);
    assert_eq!(
        error.to_string(),
        format!(
            "no reply from {}: connection refused (no socket is bound at that path any more) (UDP has no connection, so nothing could fail earlier: is a datagram server running there? start one with `socket-lab server --udp`)",
            path.display()
        )
    );
}

#[test]
fn a_datagram_client_that_cannot_bind_its_own_path_says_where_at_once() {
    // The client binds a path in the temp directory, so the server can answer it. A temp
    // directory that does not exist fails the first name tried, and no other would do better.
    let dir = socket_dir();
    let missing = dir.path().join("missing");
    Command::new(BINARY)
        .args(["client", "--unix", "/tmp/no-server-here.sock", "--udp"])
        .env("TMPDIR", &missing)
        .write_stdin("hello\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(3)
        .stderr(
            predicate::str::starts_with(format!(
                "error: cannot bind {}/socket-lab-client-",
                missing.display()
            ))
            .and(predicate::str::contains(
                "-0.sock: no such file or directory",
            )),
        );
}
