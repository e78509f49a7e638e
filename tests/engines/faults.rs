// The ack server's fault cases, compiled once per engine: `tests/faults.rs` runs them on
// the thread pool, `tests/faults_epoll.rs` on the event loop, each with its `ENGINE`. (Not
// on the iterative engine, which by design serves one client while the others wait: most of
// these attacks are about a server that serves others meanwhile.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{ServerProcess, WAIT};
use socket_lab::kernel::{self, TcpState};
use socket_lab::poll::{self, Want, Watch};

const ACK: &[u8] = b"server recv success";

/// Threads and open descriptors of a process.
fn counts(pid: u32) -> (usize, usize) {
    let entries = |dir: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{dir}")).map_or(0, |entries| entries.count())
    };
    (entries("task"), entries("fd"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The connections waiting in the accept queue of the socket listening on `listening`.
fn accept_queue(listening: SocketAddr) -> usize {
    kernel::tcp_sockets()
        .expect("/proc/net/tcp is readable")
        .into_iter()
        .find(|socket| socket.local == listening && socket.state == TcpState::Listen)
        .map_or_else(|| panic!("nothing listens on {listening}"), |socket| socket.rx_queue)
}

/// The ack server's default `--max-clients`: its pool never holds more worker threads.
const MAX_WORKERS: usize = 64;

/// Waits (bounded) until the server's descriptors are back to `baseline` and its threads
/// within the worker pool's bound: a worker logs a disconnect just before its socket closes,
/// and then waits in the pool for the next connection instead of exiting.
///
/// The listening socket's accept queue must be empty too. Descriptors pass through the
/// baseline between two accepts (one connection closed, the next still queued), and a
/// fresh client queued behind a burst of others can find the descriptors all taken again:
/// the server closes it unread, which the client sees as a reset. The queue is read
/// before the descriptors: once it is empty nothing new is accepted (no client connects
/// meanwhile), so descriptors at the baseline then mean every connection is gone.
fn assert_back_to(server: &ServerProcess, baseline: (usize, usize)) {
    let deadline = Instant::now() + WAIT;
    let (base_threads, base_fds) = baseline;
    let listening: SocketAddr = server.addr.parse().expect("the server's address");
    loop {
        let queued = accept_queue(listening);
        let (threads, fds) = counts(server.child.id());
        if queued == 0 && fds == base_fds && threads <= base_threads + MAX_WORKERS {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{threads} threads, {fds} descriptors and {queued} connections in the accept queue; \
             expected {base_fds} descriptors, at most {} threads and an empty queue",
            base_threads + MAX_WORKERS
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh client still gets its ack.
fn assert_still_serves(server: &ServerProcess) {
    let mut client = TcpStream::connect(&server.addr).expect("a fresh client connects");
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"still there?").unwrap();
    let mut ack = [0; ACK.len()];
    client
        .read_exact(&mut ack)
        .expect("a fresh client gets its ack");
    assert_eq!(ack, ACK);
    drop(client);
    server.wait_for_line_ending(" disconnected");
}

/// `socket-lab server ARGS --engine ENGINE`. Once it has said where it listens it holds
/// every descriptor it keeps (the event loops' too), so counts taken then are its baseline.
fn ack_server(args: &[&str]) -> ServerProcess {
    let mut all = vec!["server"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--engine", ENGINE.name()]);
    ServerProcess::start(&all)
}

/// A non-blocking `connect`, under way.
fn start_connect(addr: std::net::SocketAddr) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => panic!("connect: {e}"),
    }
    socket
}

/// Waits until every socket in `sockets` has connected (and fails if one could not).
fn wait_connected(sockets: &[socket2::Socket], deadline: Instant) {
    let mut waiting: Vec<&socket2::Socket> = sockets.iter().collect();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connects did not complete in time");
        let mut watches: Vec<Watch> = waiting
            .iter()
            .map(|socket| Watch::new(*socket, Want::Write))
            .collect();
        poll::wait(&mut watches, Some(left)).expect("poll");
        let done: Vec<bool> = watches.iter().map(Watch::is_ready).collect();
        let mut done = done.into_iter();
        waiting.retain(|_| !done.next().unwrap_or(false));
    }
    for socket in sockets {
        assert!(socket.take_error().unwrap().is_none(), "a connect failed");
    }
}

/// Waits until `client`, which has sent a byte, is either served (its ack arrives) or refused
/// (a line on the server's stderr, returned). Readiness on both sides, checked in turn.
fn served_or_refused(server: &ServerProcess, client: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "neither served nor refused in {WAIT:?}"
        );
        let step = Duration::from_millis(10);
        if poll::wait(&mut [Watch::new(client, Want::Read)], Some(step)).expect("poll") > 0 {
            let mut ack = [0; ACK.len()];
            return match client.read_exact(&mut ack) {
                Ok(()) => {
                    assert_eq!(ack, ACK);
                    None
                }
                // Accepted, then closed for want of a descriptor: the reason is on stderr.
                Err(_) => Some(server.next_stderr_line()),
            };
        }
        if let Some(line) = server.try_stderr_line(step) {
            return Some(line);
        }
    }
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

#[test]
fn silent_instant_and_resetting_clients_leave_nothing_behind() {
    let server = ack_server(&["--port", "0"]);
    let baseline = counts(server.child.id());
    // Each client's address, with how the server must say it left.
    let mut expected = Vec::new();
    for _ in 0..20 {
        // Connect and send nothing, then close: a clean end of stream.
        let silent = TcpStream::connect(&server.addr).unwrap();
        expected.push(format!("[{}] disconnected", silent.local_addr().unwrap()));
        drop(silent);
        // Connect and reset at once: accept still hands the connection over, and its first
        // recv reports the reset.
        let instant = TcpStream::connect(&server.addr).unwrap();
        let addr = instant.local_addr().unwrap();
        expected.push(format!("[{addr}] disconnected (connection reset by peer)"));
        reset(instant);
        // Reset in the middle of a session: the bytes that arrived are read first, then the
        // reset.
        let mut talker = TcpStream::connect(&server.addr).unwrap();
        let addr = talker.local_addr().unwrap();
        expected.push(format!("[{addr}] disconnected (connection reset by peer)"));
        talker.write_all(b"half a sentence").unwrap();
        reset(talker);
    }
    // Workers run at once, so the lines come in any order.
    let mut logged: Vec<String> = (0..expected.len())
        .map(|_| {
            server.wait_for_line_ending_with(&[
                " disconnected",
                " disconnected (connection reset by peer)",
            ])
        })
        .collect();
    logged.sort();
    expected.sort();
    assert_eq!(logged, expected);
    assert_back_to(&server, baseline);
    assert_still_serves(&server);
}

#[test]
fn ten_thousand_connect_disconnect_cycles_leak_no_descriptor_or_thread() {
    let server = ack_server(&["--port", "0"]);
    let baseline = counts(server.child.id());
    // One blocking connect at a time is at the mercy of this VM's scheduler (from 0.03 ms to
    // 5 ms each), so the cycles go in batches of 100 non-blocking connects, awaited together.
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    // A bound, not a speed target: about 12 s on an idle 2-core machine, several times that
    // when other test runs share it.
    let deadline = Instant::now() + Duration::from_secs(300);
    for _ in 0..100 {
        let batch: Vec<socket2::Socket> = (0..100).map(|_| start_connect(addr)).collect();
        wait_connected(&batch, deadline);
        for socket in batch {
            // Reset rather than close: the test leaves no TIME_WAIT sockets holding ports.
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    assert_still_serves(&server);
    assert_back_to(&server, baseline);
}

#[test]
fn a_client_that_never_reads_its_acks_is_cut_off_and_others_are_served() {
    // A 64 KiB ack for every 8-byte recv: the hog's unread acks fill both socket buffers
    // after a few hundred KiB, the server's send blocks, and --idle-timeout ends it.
    let big_ack = "a".repeat(64 * 1024);
    let server = ack_server(&[
        "--port",
        "0",
        "--recv-size",
        "8",
        "--idle-timeout",
        "1s",
        "--ack",
        &big_ack,
    ]);
    let baseline = counts(server.child.id());
    let mut hog = TcpStream::connect(&server.addr).unwrap();
    hog.set_write_timeout(Some(WAIT)).unwrap();
    let hog_addr = hog.local_addr().unwrap();
    let sender = thread::spawn(move || {
        let chunk = [b'x'; 4096];
        // Bounded: at most 10 MiB, and the writes fail once the server gives up on us.
        for _ in 0..2560 {
            if hog.write_all(&chunk).is_err() {
                return;
            }
        }
    });

    // Meanwhile another client is served as usual.
    let mut polite = TcpStream::connect(&server.addr).unwrap();
    polite.set_read_timeout(Some(WAIT)).unwrap();
    polite.write_all(b"hi").unwrap();
    let mut ack = vec![0; big_ack.len()];
    polite.read_exact(&mut ack).unwrap();
    assert_eq!(ack, big_ack.as_bytes());
    drop(polite);

    server.wait_for_line(&format!("[{hog_addr}] disconnected (timed out)"));
    sender.join().unwrap();
    assert_back_to(&server, baseline);
}

#[test]
fn ten_mebibytes_without_a_pause_keep_memory_bounded() {
    let server = ack_server(&["--port", "0", "--recv-size", "65536"]);
    let mut client = TcpStream::connect(&server.addr).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let me = client.local_addr().unwrap();
    let mut reader = client.try_clone().unwrap();
    let acks = thread::spawn(move || {
        let mut acks = Vec::new();
        reader.read_to_end(&mut acks).map(|_| acks.len())
    });
    let chunk = vec![b'z'; 1 << 20];
    for _ in 0..10 {
        client.write_all(&chunk).unwrap();
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let ack_bytes = acks.join().unwrap().unwrap();
    // How the 10 MiB were cut into recvs is the kernel's choice, but the server logs each
    // recv: one ack per logged recv, every byte in exactly one of them, none over 64 KiB.
    let prefix = format!("[{me}] send a message to server: ");
    let recvs: Vec<usize> = server
        .wait_for_line(&format!("[{me}] disconnected"))
        .iter()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::len)
        .collect();
    assert_eq!(recvs.iter().sum::<usize>(), 10 * chunk.len());
    assert!(
        recvs.iter().all(|&len| (1..=65536).contains(&len)),
        "{recvs:?}"
    );
    assert_eq!(ack_bytes, recvs.len() * ACK.len(), "one ack per recv");
    let rss = rss_kib(server.child.id());
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after 10 MiB");
    assert_still_serves(&server);
}

/// A connection that was answered and is now idle keeps no answer buffer: with ten thousand
/// idle clients that would be most of the server's memory. Two hundred clients each get one
/// 64 KiB ack and stay connected; the server grows by far less than 64 KiB a client (about
/// 0.4 KiB on the event loop, 11 KiB on threads, each with its stack: BENCHMARKS.md).
#[test]
fn idle_connections_keep_no_answer_buffer() {
    let ack = "a".repeat(64 * 1024);
    let server = ack_server(&["--port", "0", "--ack", &ack, "--max-clients", "256"]);
    let pid = server.child.id();
    let mut clients = Vec::new();
    let mut answer_one_more = || {
        let mut client = TcpStream::connect(&server.addr).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"x").unwrap();
        let mut answer = vec![0; ack.len()];
        client.read_exact(&mut answer).unwrap();
        assert!(answer == ack.as_bytes());
        clients.push(client);
    };
    // The first few bring what every server has once: allocator arenas, the first stacks.
    for _ in 0..10 {
        answer_one_more();
    }
    let before = rss_kib(pid);
    for _ in 0..200 {
        answer_one_more();
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 200 * 32,
        "the server grew by {grown} KiB for 200 idle clients, each answered once with 64 KiB"
    );
}

#[test]
fn a_message_dripped_one_byte_at_a_time_is_acked_byte_by_byte() {
    let server = ack_server(&["--port", "0"]);
    let mut client = TcpStream::connect(&server.addr).unwrap();
    client.set_nodelay(true).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let me = client.local_addr().unwrap();
    for byte in b"drip, drip" {
        client.write_all(&[*byte]).unwrap();
        let mut ack = [0; ACK.len()];
        client.read_exact(&mut ack).unwrap();
        assert_eq!(ack, ACK);
    }
    let prefix = format!("[{me}] send a message to server: ");
    let mut received = String::new();
    while received.len() < 10 {
        let line = server.next_line();
        if let Some(byte) = line.strip_prefix(&prefix) {
            assert_eq!(byte.len(), 1, "one recv, one log line, per byte: {line:?}");
            received.push_str(byte);
        }
    }
    assert_eq!(received, "drip, drip");
}

/// `socket-lab server --port 0 --engine ENGINE`, started with these descriptor limits
/// (`RLIMIT_NOFILE`, soft and hard).
fn ack_server_with_descriptors(soft: libc::rlim_t, hard: libc::rlim_t) -> ServerProcess {
    let mut command = common::socket_lab_process();
    command
        .args(["server", "--port", "0", "--engine", ENGINE.name()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    ServerProcess::from_command(command)
}

/// A soft descriptor limit below the hard one is raised to it at start (no privilege
/// needed), so a server started with `ulimit -n 64` under a hard limit of 1024 has room for
/// its 64 clients and says nothing about it; started with a hard limit of 64 it warns.
#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    for (soft, hard, warned) in [(64, 1024, false), (64, 64, true)] {
        let server = ack_server_with_descriptors(soft, hard);
        // The warning, if any, is written after the address and before the first client is
        // served: once an ack has come back, it is in the pipe.
        assert_still_serves(&server);
        let said = if warned {
            Some(server.next_stderr_line())
        } else {
            server.try_stderr_line(Duration::from_millis(200))
        };
        assert_eq!(
            said.as_deref().is_some_and(|line| {
                line.starts_with("warning: this process may open 64 descriptors")
            }),
            warned,
            "soft limit {soft}, hard limit {hard}: {said:?}"
        );
    }
}

/// The server is started with `limit` descriptors; clients are held until one is refused,
/// and the line that says why is returned.
///
/// Whether `accept` itself fails or the `dup` that follows it does depends on how many
/// descriptors are left, one or none, so on the parity of `limit`: the caller tries two
/// limits, one apart, and so reaches both.
fn run_out_of_descriptors(limit: libc::rlim_t) -> String {
    let server = ack_server_with_descriptors(limit, limit);
    // Said at start: the server raised the soft limit to the hard one, and it is still short.
    let warning = server.next_stderr_line();
    assert!(
        warning.starts_with(
            &format!("warning: this process may open {limit} descriptors (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`), and 64 clients need about 96")
        ),
        "{warning}"
    );
    let baseline = counts(server.child.id());

    // Hold connections until the server has no descriptor left for the next one. The
    // server logs a failed accept and a failed dup alike, and backs off either way.
    let out_of_descriptors = |line: &str| {
        line.contains(
            "too many open files (this process reached its descriptor limit, `ulimit -n`)",
        ) && (line.starts_with("accept failed: ") || line.ends_with("; connection closed"))
    };
    let mut held = Vec::new();
    let first_failure = loop {
        assert!(
            held.len() < 40,
            "{limit} descriptors should run out before 40 clients"
        );
        let mut client = TcpStream::connect(&server.addr).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"x").unwrap();
        let refused = served_or_refused(&server, &mut client);
        held.push(client);
        if let Some(line) = refused {
            break line;
        }
    };
    assert!(out_of_descriptors(&first_failure), "{first_failure}");
    // The server goes on trying: three more clients, three more failures.
    for _ in 0..3 {
        held.push(TcpStream::connect(&server.addr).unwrap());
        let line = server.next_stderr_line();
        assert!(out_of_descriptors(&line), "{line}");
    }
    // A connection that accept cannot take stays queued, so a loop that retried at once would
    // spin, logging a failure each time round: thousands a second. This one pauses (100 ms)
    // between tries, so a second brings about ten. The window is the measurement, not a wait
    // for something: the bound of 30 is 3 times what a pausing loop can log in it, and a loop
    // slowed down by a loaded machine logs fewer lines, never more.
    // Where the dup failed, the connection was closed instead, so forty more wait in the
    // listen queue: a loop that did not pause would take them all within the window.
    while server.try_stderr_line(Duration::ZERO).is_some() {}
    let window = Duration::from_secs(1);
    let started = Instant::now();
    for _ in 0..40 {
        held.push(TcpStream::connect(&server.addr).unwrap());
    }
    // And the first client, still served, talks on: every message wakes the server (an event
    // loop sees its readiness), and a loop that tried accept again on each wakeup would log a
    // failure for each message.
    let talker = &mut held[0];
    for _ in 0..100 {
        talker.write_all(b"x").unwrap();
        let mut ack = [0; ACK.len()];
        talker.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, ACK);
    }
    let mut failures = 0;
    while let Some(left) = window.checked_sub(started.elapsed()) {
        let Some(line) = server.try_stderr_line(left) else {
            break;
        };
        assert!(out_of_descriptors(&line), "{line}");
        failures += 1;
    }
    assert!(
        failures <= 30,
        "{failures} failures logged in {window:?}: the accept loop does not pause between tries"
    );

    drop(held);
    // Descriptors come back once every worker has seen its client leave and the queued
    // connections have been accepted and closed; until then a fresh client could be the one
    // refused. Then a fresh one is served.
    assert_back_to(&server, baseline);
    assert_still_serves(&server);
    first_failure
}

#[test]
fn descriptor_exhaustion_is_logged_and_the_accept_loop_backs_off() {
    let first_failures = [24, 25].map(run_out_of_descriptors);
    // The pause between tries is measured only where accept itself failed.
    assert!(
        first_failures
            .iter()
            .any(|line| line.starts_with("accept failed: ")),
        "with 24 and with 25 descriptors, accept never ran out itself: {first_failures:?}"
    );
}

#[test]
fn sigint_under_load_stops_the_server_within_two_seconds() {
    let mut server = ack_server(&["--port", "0"]);
    let addr = server.addr.clone();
    let stop_at = Instant::now() + WAIT;
    let talkers: Vec<_> = (0..16)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(&addr) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(WAIT));
                let mut ack = [0; ACK.len()];
                // Bounded in count and time; ends when the server closes the connection.
                for _ in 0..100_000 {
                    if Instant::now() > stop_at
                        || stream.write_all(b"load").is_err()
                        || stream.read_exact(&mut ack).is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for _ in 0..16 {
        server.wait_for_line_ending(" connected");
    }
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    assert_eq!(server.wait_exit(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );
    for talker in talkers {
        talker.join().unwrap();
    }
    let refused = TcpStream::connect(&addr).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(ErrorKind::ConnectionRefused),
        "nothing listens after the stop"
    );
}

