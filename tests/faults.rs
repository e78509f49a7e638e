//! Hostile and faulty clients against the ack server, run as a real process so its threads
//! (`/proc/PID/task`), descriptors (`/proc/PID/fd`) and memory (`VmRSS`) can be counted.
//! After every case the server must still serve a fresh client, and its counts must come
//! back to where they were.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{ServerProcess, WAIT};

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

/// The ack server's default `--max-clients`: its pool never holds more worker threads.
const MAX_WORKERS: usize = 64;

/// Waits (bounded) until the server's descriptors are back to `baseline` and its threads
/// within the worker pool's bound: a worker logs a disconnect just before its socket closes,
/// and then waits in the pool for the next connection instead of exiting.
fn assert_back_to(server: &ServerProcess, baseline: (usize, usize)) {
    let deadline = Instant::now() + WAIT;
    let (base_threads, base_fds) = baseline;
    loop {
        let (threads, fds) = counts(server.child.id());
        if fds == base_fds && threads <= base_threads + MAX_WORKERS {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{threads} threads and {fds} descriptors; expected {base_fds} descriptors and at most {} threads",
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
    use std::os::fd::AsRawFd;
    let mut waiting: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connects did not complete in time");
        // SAFETY: `waiting` is a valid array of pollfd for the duration of the call.
        let ready = unsafe {
            libc::poll(
                waiting.as_mut_ptr(),
                waiting.len() as libc::nfds_t,
                left.as_millis() as i32,
            )
        };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        waiting.retain(|fd| fd.revents == 0);
    }
    for socket in sockets {
        assert!(socket.take_error().unwrap().is_none(), "a connect failed");
    }
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

#[test]
fn silent_instant_and_resetting_clients_leave_nothing_behind() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let baseline = counts(server.child.id());
    for _ in 0..20 {
        // Connect and send nothing, then close.
        drop(TcpStream::connect(&server.addr).unwrap());
        // Connect and reset at once.
        reset(TcpStream::connect(&server.addr).unwrap());
        // Reset in the middle of a session.
        let mut talker = TcpStream::connect(&server.addr).unwrap();
        talker.write_all(b"half a sentence").unwrap();
        reset(talker);
    }
    for _ in 0..60 {
        server.wait_for_line_ending_with(&[
            " disconnected",
            " disconnected (connection reset by peer)",
        ]);
    }
    assert_back_to(&server, baseline);
    assert_still_serves(&server);
}

#[test]
fn ten_thousand_connect_disconnect_cycles_leak_no_descriptor_or_thread() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
    let baseline = counts(server.child.id());
    // One blocking connect at a time is at the mercy of this VM's scheduler (from 0.03 ms to
    // 5 ms each), so the cycles go in batches of 100 non-blocking connects, awaited together.
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
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
    let server = ServerProcess::start(&[
        "server",
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
    let server = ServerProcess::start(&["server", "--port", "0", "--recv-size", "65536"]);
    let mut client = TcpStream::connect(&server.addr).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
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
    assert!(
        ack_bytes >= 10 * (1 << 20) / 65536 * ACK.len(),
        "at least one ack per 64 KiB"
    );
    assert_eq!(ack_bytes % ACK.len(), 0, "only whole acks");
    let rss = rss_kib(server.child.id());
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after 10 MiB");
    assert_still_serves(&server);
}

#[test]
fn a_message_dripped_one_byte_at_a_time_is_acked_byte_by_byte() {
    let server = ServerProcess::start(&["server", "--port", "0"]);
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

#[test]
fn descriptor_exhaustion_is_logged_and_the_accept_loop_backs_off() {
    let mut command = common::socket_lab_process();
    command
        .args(["server", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let server = ServerProcess::from_command(command);
    // Said at start: the server raised the soft limit to the hard one, and it is still short.
    let warning = server.next_stderr_line();
    assert!(
        warning.starts_with(
            "warning: this process may open 24 descriptors (ulimit -n; the hard limit), and 64 clients need about 96"
        ),
        "{warning}"
    );

    // Hold connections until the server has no descriptor left for the next one. Whether
    // accept itself fails or the dup that follows it does depends on how many are left; the
    // server logs either, and backs off either way.
    let out_of_descriptors = |line: &str| {
        line.contains(
            "too many open files (this process reached its descriptor limit, `ulimit -n`)",
        ) && (line.starts_with("accept failed: ") || line.ends_with("; connection closed"))
    };
    let mut held = Vec::new();
    let first_failure = loop {
        assert!(
            held.len() < 40,
            "24 descriptors should run out before 40 clients"
        );
        held.push(TcpStream::connect(&server.addr).unwrap());
        if let Some(line) = server.try_stderr_line(Duration::from_millis(200)) {
            break line;
        }
    };
    assert!(out_of_descriptors(&first_failure), "{first_failure}");
    // Three more tries take at least 200 ms: the loop waits between tries instead of spinning.
    let started = Instant::now();
    for _ in 0..3 {
        held.push(TcpStream::connect(&server.addr).unwrap());
        let line = server.next_stderr_line();
        assert!(out_of_descriptors(&line), "{line}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "retried too fast: {:?}",
        started.elapsed()
    );

    drop(held);
    // Descriptors come back, and the waiting connection and a fresh one are served.
    assert_still_serves(&server);
}

#[test]
fn sigint_under_load_stops_the_server_within_two_seconds() {
    let mut server = ServerProcess::start(&["server", "--port", "0"]);
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

/// A fresh UDP client still gets its ack.
fn assert_udp_still_serves(addr: &str) {
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(addr).unwrap();
    // UDP may drop a datagram when the server's receive buffer is full, as it can be right
    // after a flood, so a client asks again, as any UDP client must (bounded: 10 tries).
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut ack = [0; 64];
    for _ in 0..10 {
        client.send(b"still there?").unwrap();
        if let Ok(n) = client.recv(&mut ack) {
            assert_eq!(&ack[..n], ACK);
            return;
        }
    }
    panic!("a fresh UDP client got no ack in 10 tries");
}

#[test]
fn a_udp_flood_and_replies_to_closed_ports_leave_the_server_serving() {
    let server = ServerProcess::start(&["server", "--udp", "--port", "0", "--recv-size", "8"]);
    let baseline = counts(server.child.id());
    {
        // 10,000 datagrams as fast as the socket takes them, from a client that never reads
        // its acks and then closes: the server's answers go to a port nobody has any more,
        // and the ICMP "port unreachable" that comes back must not stop it.
        let flooder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        flooder.connect(&server.addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..10_000u32 {
            // A full socket buffer drops datagrams, as UDP may; the flood goes on.
            let _ = flooder.send(format!("flood {i} and more bytes than recv(8) takes").as_bytes());
            assert!(Instant::now() < deadline, "the flood took over 30 s");
        }
        // A zero-length datagram is a message, not the end of anything.
        flooder.send(b"").unwrap();
    }
    assert_udp_still_serves(&server.addr);
    let rss = rss_kib(server.child.id());
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after the flood");
    assert_eq!(
        counts(server.child.id()),
        baseline,
        "no thread or descriptor per datagram"
    );
}
