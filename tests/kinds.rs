//! The walkthrough's claims about `listen(backlog)`, `send` and socket options, and IPv6,
//! each demonstrated or corrected on real loopback sockets.

mod kinds_common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kinds_common::{BINARY, STEP_TIMEOUT, ServerProcess, channel_log, next_event};
use proptest::prelude::*;
use socket_lab::backlog::{PendingConnect, Progress};
use socket_lab::endpoint::{AddressReuse, Listener, Stream, connect_first};
use socket_lab::options::{self, TcpOptions};
use socket_lab::send::send_all;
use socket_lab::server::{ACK, Event, Server, ServerConfig};
use socket_lab::udp::{DatagramClient, DatagramServer};
use socket_lab::{Address, Endpoint, Error};

/// How long a connect that "does not complete" is watched. Nothing signals "the SYN was
/// dropped" (the kernel counts drops for the whole machine, not per listener), so this is a
/// window, not a wait; but it cannot make a test flaky: a loaded machine only makes a connect
/// slower to complete, and these connects may complete only after the test accepts. On
/// loopback the SYN and its answer are handled within the `connect` call itself, so 300 ms
/// is far more than a completing connect needs.
const DOES_NOT_COMPLETE: Duration = Duration::from_millis(300);

fn tcp_addr(address: &Address) -> SocketAddr {
    match address {
        Address::Inet(addr) => *addr,
        Address::Unix(_) => panic!("expected a TCP address, got {address}"),
    }
}

/// Sends `message` and reads back exactly one ack.
fn exchange(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    stream.write_all(message).expect("send");
    let mut ack = vec![0; ACK.len()];
    stream.read_exact(&mut ack).expect("the ack");
    ack
}

// listen(backlog): claims 5 and 6.

#[test]
fn connections_beyond_the_backlog_wait_until_the_server_accepts() {
    let config = ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        backlog: 1,
        ..ServerConfig::default()
    };
    let server = Server::bind(config).expect("bind");
    // Listening, but not accepting: the kernel completes handshakes into the queue by itself.
    server.handle().pause_accept();
    let (log, events) = channel_log();
    let server = server.spawn(log);
    let addr = tcp_addr(&server.addr);

    // Linux queues backlog + 1 = 2 completed connections without any accept.
    let queued: Vec<PendingConnect> = (0..2)
        .map(|_| PendingConnect::start(addr).expect("start connect"))
        .collect();
    for connect in &queued {
        assert_eq!(
            connect.wait(STEP_TIMEOUT).expect("connect"),
            Progress::Connected
        );
    }

    // The third SYN is dropped: no "connection refused" (claim 6 says refused), just silence.
    let third = PendingConnect::start(addr).expect("start connect");
    assert_eq!(
        third.wait(DOES_NOT_COMPLETE).expect("not refused"),
        Progress::Pending
    );
    assert!(events.try_recv().is_err(), "nothing was accepted yet");

    // Accepting drains the queue; the third client's retransmitted SYN (about 1 s after the
    // first) then finds room, and the very same connect completes.
    server.handle.resume_accept();
    assert_eq!(
        third.wait(STEP_TIMEOUT).expect("connect"),
        Progress::Connected
    );
    let mut streams: Vec<TcpStream> = queued
        .into_iter()
        .chain([third])
        .map(|connect| connect.into_stream().expect("stream"))
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let message = format!("client {i}");
        assert_eq!(exchange(stream, message.as_bytes()), ACK);
    }
    // All three were accepted and served: the backlog limits waiting, not serving.
    let connected = (0..6)
        .map(|_| next_event(&events))
        .filter(|event| matches!(event, Event::Connected { .. }))
        .count();
    assert_eq!(connected, 3);
    drop(streams);
    server.stop().expect("stop");
}

#[test]
fn cli_pause_accept_holds_connections_until_enter() {
    let mut server = ServerProcess::start(&["--port", "0", "--backlog", "1", "--pause-accept"]);
    assert_eq!(
        server.next_stderr_line(),
        "accept paused: connections wait in the listen queue; press Enter to accept them"
    );
    let addr: SocketAddr = server.addr.parse().expect("a socket address");

    // Two connections fit in the queue; the third connect times out. It is not refused.
    let mut first = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("first connect");
    let _second = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("second connect");
    let third =
        TcpStream::connect_timeout(&addr, DOES_NOT_COMPLETE).expect_err("the queue is full");
    assert_eq!(third.kind(), std::io::ErrorKind::TimedOut);

    server.press_enter();
    assert_eq!(server.next_stderr_line(), "accepting");
    assert_eq!(exchange(&mut first, b"hello"), ACK);
    let mut later = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("room again");
    assert_eq!(exchange(&mut later, b"later"), ACK);
}

// send returns a count: claim 8.

/// A connected pair on loopback with tiny buffers: `sender` is non-blocking with a small
/// `SO_SNDBUF`, `receiver` has a small `SO_RCVBUF` and reads only when the test says so.
fn small_buffer_pair() -> (TcpStream, TcpStream) {
    let small = TcpOptions {
        send_buffer: Some(4096),
        recv_buffer: Some(4096),
        ..TcpOptions::rust_std()
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let listener = options::listen(loopback, 1, &small).expect("listen");
    let addr = listener.local_addr().expect("address");
    let sender = options::connect(addr, STEP_TIMEOUT, &small).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    sender.set_nonblocking(true).expect("non-blocking");
    (sender, receiver)
}

/// Reads everything until end of stream on a thread, with a bound on each read.
fn read_all_on_a_thread(mut receiver: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    receiver
        .set_read_timeout(Some(STEP_TIMEOUT))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut received = Vec::new();
        receiver
            .read_to_end(&mut received)
            .expect("the receiver reads to end of stream");
        received
    })
}

#[test]
fn send_returns_fewer_bytes_than_asked_when_the_buffer_is_full() {
    let (mut sender, receiver) = small_buffer_pair();
    let megabyte = vec![b'x'; 1 << 20];

    // The first send copies what fits in the kernel's buffers and says how much that was.
    let first = sender
        .write(&megabyte)
        .expect("the first send takes something");
    assert!(
        first > 0 && first < megabyte.len(),
        "send returned {first} of {} bytes",
        megabyte.len()
    );

    // The peer does not read, so the buffers stay full: sooner or later send has no room
    // at all and a non-blocking socket says so instead of waiting.
    let mut total = first;
    let mut would_block = false;
    for _ in 0..1000 {
        match sender.write(&megabyte[total..]) {
            Ok(count) => total += count,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                would_block = true;
                break;
            }
            Err(e) => panic!("unexpected send error: {e}"),
        }
    }
    assert!(
        would_block,
        "send never said WouldBlock after {total} bytes"
    );
    assert!(total < megabyte.len(), "all {total} bytes fitted");
    drop(receiver);
}

#[test]
fn send_all_finishes_once_the_peer_reads() {
    let (mut sender, receiver) = small_buffer_pair();
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let reader = read_all_on_a_thread(receiver);

    // sendall / write_all: send what fits, wait for room, repeat.
    let report = send_all(&mut sender, &message, STEP_TIMEOUT).expect("send_all");
    sender.shutdown(Shutdown::Write).expect("end of stream");
    assert_eq!(report.counts.iter().sum::<usize>(), message.len());
    assert!(
        report.counts.len() > 1,
        "one send cannot take 300,000 bytes through 4 KiB buffers: {:?}",
        report.counts
    );
    let received = reader.join().expect("the reader thread");
    assert!(received == message, "the bytes arrived changed");
}

#[test]
fn send_all_gives_up_when_the_peer_never_reads() {
    let (mut sender, _receiver) = small_buffer_pair();
    let started = Instant::now();
    let error = send_all(&mut sender, &vec![0; 1 << 20], Duration::from_millis(200))
        .expect_err("nobody reads");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    // 25 times the 200 ms timeout: room for a loaded machine, far from "never gives up".
    assert!(started.elapsed() < STEP_TIMEOUT);
    assert!(
        error.to_string().ends_with("the peer is not reading"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn send_all_delivers_every_byte(size in 0usize..200_000, seed in any::<u8>()) {
        let (mut sender, receiver) = small_buffer_pair();
        let message: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let reader = read_all_on_a_thread(receiver);
        let report = send_all(&mut sender, &message, STEP_TIMEOUT).expect("send_all");
        sender.shutdown(Shutdown::Write).expect("end of stream");
        prop_assert_eq!(report.counts.iter().sum::<usize>(), size);
        let received = reader.join().expect("the reader thread");
        prop_assert!(received == message, "{} bytes sent, {} received", size, received.len());
    }
}

// Socket options.

#[test]
fn reuse_address_lets_a_server_rebind_over_time_wait() {
    let config = ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        ..ServerConfig::default()
    };
    let (log, events) = channel_log();
    let server = Server::bind(config).expect("bind").spawn(log);
    let addr = tcp_addr(&server.addr);

    // A live connection, then the server stops first: its side of the connection is the one
    // that closes first, so it is the one left in TIME_WAIT.
    let mut client = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("connect");
    assert_eq!(exchange(&mut client, b"hello"), ACK);
    server.stop().expect("stop");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the server's close");
    assert!(rest.is_empty());
    drop(client);
    drop(events);

    // Python's default (no SO_REUSEADDR): the old connection still holds the port.
    let error =
        options::listen(addr, 1, &TcpOptions::python()).expect_err("the port is held by TIME_WAIT");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);

    // Rust's std default, which Listener::bind copies: the restart works at once.
    let restarted = Listener::bind(
        &Endpoint::inet("127.0.0.1", addr.port()),
        1,
        AddressReuse::Allowed,
    )
    .expect("SO_REUSEADDR rebinds over TIME_WAIT");
    assert_eq!(
        restarted.local_addr().expect("address"),
        Address::Inet(addr)
    );

    // It does not let two servers listen on one port.
    let second = options::listen(addr, 1, &TcpOptions::rust_std())
        .expect_err("a listening socket still holds the port");
    assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn a_read_timeout_bounds_a_recv() {
    // A listener nobody accepts from: the connection completes, but nothing is ever sent.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let stream = Stream::connect(&Endpoint::inet("127.0.0.1", addr.port())).expect("connect");

    // settimeout(0.15) in Python; set_read_timeout in Rust.
    let timeout = Duration::from_millis(150);
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let started = Instant::now();
    let mut stream = stream;
    let error = stream
        .read(&mut [0; 16])
        .expect_err("nothing arrives in time");
    // The timeout is the subject: never shorter (a busy machine only adds to it), and the
    // upper bound is 30 times the timeout, room enough for a loaded 2-core machine.
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < STEP_TIMEOUT,
        "waited {waited:?}"
    );
    // Linux reports EAGAIN (WouldBlock); both read as "timed out".
    assert_eq!(socket_lab::error::describe(&error), "timed out");
}

#[test]
fn a_connect_timeout_gives_up_on_a_full_backlog() {
    // Backlog 1 and no accept: two connections fill the queue, a third gets no answer.
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let listener = options::listen(loopback, 1, &TcpOptions::rust_std()).expect("listen");
    let addr = listener.local_addr().expect("address");
    let _queued: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect_timeout(&addr, STEP_TIMEOUT).expect("queued"))
        .collect();

    let started = Instant::now();
    let error = Stream::connect_timeout(
        &Endpoint::inet("127.0.0.1", addr.port()),
        Duration::from_millis(200),
    )
    .expect_err("the SYN is dropped");
    // Gave up on its own timeout, not the kernel's (over a minute of SYN retries): 25 times
    // the timeout is the bound, room enough for a loaded machine.
    assert!(started.elapsed() < STEP_TIMEOUT);
    assert_eq!(error.exit_code(), 6);
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to {addr}: timed out (nothing answered: the server may be too busy to accept, or the address is wrong)"
        )
    );
}

#[test]
fn cli_client_nodelay_turns_nagle_off_on_its_socket() {
    // The client reads TCP_NODELAY back with getsockopt and says what it found.
    let server = ServerProcess::start(&["--port", "0"]);
    Command::new(BINARY)
        .args(["client", "--nodelay", "--port", &server.port()])
        .write_stdin("hello\nq\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .success()
        .stdout("server recv success\n")
        .stderr(predicates::str::contains(", TCP_NODELAY on;"));
    Command::new(BINARY)
        .args(["client", "--port", &server.port()])
        .write_stdin("hello\nq\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .success()
        .stderr(predicates::prelude::PredicateBooleanExt::not(
            predicates::str::contains("TCP_NODELAY"),
        ));
}

#[test]
fn set_nodelay_is_what_getsockopt_then_says() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = Endpoint::inet("127.0.0.1", listener.local_addr().expect("addr").port());
    let client = socket_lab::client::Client::connect(&endpoint, b"ack").expect("connect");
    assert!(
        !client.nodelay().expect("getsockopt"),
        "Nagle is on by default"
    );
    client.set_nodelay(true).expect("setsockopt");
    assert!(client.nodelay().expect("getsockopt"));
    client.set_nodelay(false).expect("setsockopt");
    assert!(!client.nodelay().expect("getsockopt"));
}

// IPv6 and addresses: claim 3.

#[test]
#[cfg_attr(not(ipv6_loopback), ignore = "this machine has no ::1")]
fn ipv6_loopback_serves_streams_and_datagrams() {
    // Stream: the host may be spelled bare or in brackets.
    let stream_server = Server::bind(ServerConfig {
        endpoint: Endpoint::inet("::1", 0),
        ..ServerConfig::default()
    })
    .expect("bind ::1")
    .spawn(channel_log().0);
    let port = stream_server.addr.port().expect("a port");
    assert_eq!(stream_server.addr.to_string(), format!("[::1]:{port}"));
    for host in ["::1", "[::1]"] {
        let Stream::Tcp(mut stream) =
            Stream::connect(&Endpoint::inet(host, port)).expect("connect over IPv6")
        else {
            panic!("a TCP endpoint gives a TCP stream");
        };
        assert_eq!(exchange(&mut stream, b"hi"), ACK);
    }
    stream_server.stop().expect("stop");

    // Datagram: the log shows the IPv6 sender.
    let (log, events) = channel_log();
    let datagram_server = DatagramServer::bind(ServerConfig {
        endpoint: Endpoint::inet("[::1]", 0),
        ..ServerConfig::default()
    })
    .expect("bind [::1]")
    .spawn(log);
    let client = DatagramClient::connect(&datagram_server.addr.endpoint(), STEP_TIMEOUT)
        .expect("UDP connect");
    assert_eq!(client.request(b"hi").expect("ack"), ACK);
    let me = client.local_addr().expect("client address");
    assert!(me.to_string().starts_with("[::1]:"), "{me}");
    assert_eq!(
        next_event(&events).to_string(),
        format!("[{me}] send a message to server: hi")
    );
    datagram_server.stop().expect("stop");
}

#[test]
#[cfg_attr(not(ipv6_loopback), ignore = "this machine has no ::1")]
fn each_address_of_a_name_is_tried_in_turn() {
    // A server on ::1 only, and a list like the one `localhost` resolves to, with an address
    // nobody listens on first: the connect moves on to the next.
    let server = TcpListener::bind("[::1]:0").expect("bind ::1");
    let ipv6 = server.local_addr().expect("address");
    let nobody = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let stream = connect_first(&[nobody, ipv6], STEP_TIMEOUT).expect("the second address works");
    assert_eq!(stream.peer_addr().expect("peer"), ipv6);

    // With every address refused, the last failure is the one reported.
    let error = connect_first(&[nobody], STEP_TIMEOUT).expect_err("nobody listens");
    assert!(matches!(error, Error::Connect { .. }), "{error}");
}

#[test]
#[cfg_attr(
    not(localhost_is_ipv6),
    ignore = "localhost is not ::1 in /etc/hosts here; each_address_of_a_name_is_tried_in_turn covers the fallback"
)]
fn localhost_reaches_a_server_on_ipv6_only() {
    let server = TcpListener::bind("[::1]:0").expect("bind ::1");
    let port = server.local_addr().expect("address").port();
    let stream = Stream::connect(&Endpoint::inet("localhost", port)).expect("localhost");
    assert!(matches!(stream.peer_addr(), Ok(Address::Inet(addr)) if addr.is_ipv6()));
}

#[test]
#[cfg_attr(not(ipv6_loopback), ignore = "this machine has no ::1")]
fn cli_ipv6_client_and_server_talk() {
    for kind in [&[][..], &["--udp"][..]] {
        let server = ServerProcess::start(&[&["--host", "::1", "--port", "0"][..], kind].concat());
        assert!(server.addr.starts_with("[::1]:"), "{}", server.addr);
        Command::new(BINARY)
            .args(
                [
                    &["client", "--host", "[::1]", "--port", &server.port()][..],
                    kind,
                ]
                .concat(),
            )
            .write_stdin("hi\nq\n")
            .timeout(STEP_TIMEOUT)
            .assert()
            .success()
            .stdout("server recv success\n");
    }
}
