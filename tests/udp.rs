//! UDP (`SOCK_DGRAM`): the ack protocol over datagrams, and where claims 9 and 10 hold only
//! for TCP. Library tests first, then the binary through `assert_cmd`.

mod kinds_common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kinds_common::{BINARY, STEP_TIMEOUT, ServerProcess, channel_log, next_event};
use predicates::prelude::*;
use socket_lab::client::SessionSummary;
use socket_lab::kernel::Queues;
use socket_lab::server::{ACK, Event, RunningServer, ServerConfig};
use socket_lab::udp::{DatagramClient, DatagramServer, MAX_UDP_PAYLOAD_V4};
use socket_lab::{Address, Endpoint, Error};

/// A UDP ack server on 127.0.0.1, any free port, reading `recv_size` bytes per datagram.
fn start_server(recv_size: usize) -> (RunningServer, std::sync::mpsc::Receiver<Event>) {
    let config = ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        recv_size,
        ..ServerConfig::default()
    };
    let (log, events) = channel_log();
    let server = DatagramServer::bind(config)
        .expect("bind 127.0.0.1:0")
        .spawn(log);
    (server, events)
}

fn client_for(server: &RunningServer) -> DatagramClient {
    DatagramClient::connect(&server.addr.endpoint(), STEP_TIMEOUT).expect("UDP connect")
}

#[test]
fn every_datagram_is_logged_and_acked() {
    let (server, events) = start_server(1024);
    let client = client_for(&server);

    // One datagram out, one ack back: the same protocol as over TCP.
    assert_eq!(client.request(b"hello").expect("request"), ACK);

    // The log shows the sender's (host, port): the address recvfrom returned.
    let me = client.local_addr().expect("client address");
    assert_eq!(
        next_event(&events),
        Event::Message {
            peer: me.clone(),
            data: b"hello".to_vec()
        }
    );
    assert_eq!(
        Event::Message {
            peer: me.clone(),
            data: b"hello".to_vec()
        }
        .to_string(),
        format!("[{me}] send a message to server: hello")
    );
    server.stop().expect("stop");
    // No connection, so no "connected" and no "disconnected": the message was all.
    assert!(events.try_recv().is_err(), "a datagram server logs no more");
}

#[test]
fn two_sends_are_two_datagrams() {
    let (server, events) = start_server(1024);
    let client = client_for(&server);

    // Both datagrams are sent before the server reads either: over TCP one recv could take
    // both (lesson 05); over UDP each recv returns exactly one datagram.
    client.send(b"ab").expect("send ab");
    client.send(b"cd").expect("send cd");
    for expected in [b"ab", b"cd"] {
        match next_event(&events) {
            Event::Message { data, .. } => assert_eq!(data, expected),
            other => panic!("expected a message, got {other:?}"),
        }
    }
    // And each got its own ack datagram.
    assert_eq!(client.recv_reply().expect("first ack"), ACK);
    assert_eq!(client.recv_reply().expect("second ack"), ACK);
    server.stop().expect("stop");
}

#[test]
fn a_long_datagram_is_truncated_and_the_rest_discarded() {
    let (server, events) = start_server(8);
    let client = client_for(&server);

    // 20 bytes into recv(8): the server gets the first 8, and MSG_TRUNC tells it there were 20.
    assert_eq!(client.request(b"0123456789abcdefghij").expect("ack"), ACK);
    let event = next_event(&events);
    let me = client.local_addr().expect("client address");
    assert_eq!(
        event,
        Event::Truncated {
            peer: me.clone(),
            data: b"01234567".to_vec(),
            datagram_len: 20
        }
    );
    assert_eq!(
        event.to_string(),
        format!(
            "[{me}] send a message to server: 01234567 (truncated: the datagram had 20 bytes, recv read 8, the other 12 were discarded)"
        )
    );

    // Claim 10 says the next recv takes the rest. Over UDP the rest is gone: the next recv
    // returns the next datagram and nothing else.
    assert_eq!(client.request(b"next").expect("ack"), ACK);
    assert_eq!(
        next_event(&events),
        Event::Message {
            peer: me,
            data: b"next".to_vec()
        }
    );
    server.stop().expect("stop");
}

#[test]
fn a_zero_length_datagram_is_a_message() {
    let (server, events) = start_server(1024);
    let client = client_for(&server);

    // Over TCP, recv returning 0 bytes means "the peer closed". Over UDP it is an empty
    // message, and it is acked like any other.
    assert_eq!(client.request(b"").expect("ack for an empty datagram"), ACK);
    assert_eq!(
        next_event(&events),
        Event::Message {
            peer: client.local_addr().expect("client address"),
            data: Vec::new()
        }
    );
    server.stop().expect("stop");
}

#[test]
fn the_largest_ipv4_payload_gets_through_and_one_more_byte_does_not() {
    let (server, events) = start_server(MAX_UDP_PAYLOAD_V4);
    let client = client_for(&server);

    // 65,535 - 20 (IP header) - 8 (UDP header) = 65,507 bytes fit in one datagram.
    let largest: Vec<u8> = (0..MAX_UDP_PAYLOAD_V4).map(|i| (i % 251) as u8).collect();
    assert_eq!(client.request(&largest).expect("ack"), ACK);
    match next_event(&events) {
        Event::Message { data, .. } => assert!(data == largest, "the payload arrived changed"),
        other => panic!("expected the whole payload as one message, got {other:?}"),
    }

    // One more byte cannot be sent at all: EMSGSIZE, in words.
    let error = client
        .send(&vec![b'x'; MAX_UDP_PAYLOAD_V4 + 1])
        .expect_err("65,508 bytes do not fit");
    assert!(matches!(error, Error::DatagramTooLong { len: 65_508, .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "cannot send a 65508-byte datagram to {}: message too long (one UDP datagram over IPv4 carries at most 65507 bytes; send less per datagram, or use TCP, whose byte stream has no such limit)",
            server.addr
        )
    );
    server.stop().expect("stop");
}

#[test]
fn a_client_with_no_server_is_told_so() {
    // A port nobody listens on: bind one, note it, close it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port();
    let client = DatagramClient::connect(&Endpoint::inet("127.0.0.1", port), STEP_TIMEOUT)
        .expect("UDP connect sends nothing, so it succeeds");

    // The send "works" too. Only the ICMP port-unreachable that comes back tells the kernel,
    // and it reports that to a connected UDP socket as ECONNREFUSED on the next call.
    let started = Instant::now();
    let error = client.request(b"anyone?").expect_err("nobody is listening");
    assert!(
        started.elapsed() < STEP_TIMEOUT,
        "ICMP answers at once, no timeout needed"
    );
    assert_eq!(error.exit_code(), 6);
    assert_eq!(
        error.to_string(),
        format!(
            "no reply from 127.0.0.1:{port}: connection refused (the kernel got an ICMP \"port unreachable\": nobody is listening on that port) (UDP has no connection, so nothing could fail earlier: is a datagram server running there? start one with `socket-lab server --udp`)"
        )
    );
}

#[test]
fn a_lost_ack_ends_in_a_timeout_not_a_hang() {
    // A socket that receives but never answers: to the client, a lost ack looks exactly so.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent peer");
    let port = silent.local_addr().expect("its address").port();
    let wait = Duration::from_millis(200);
    let client =
        DatagramClient::connect(&Endpoint::inet("127.0.0.1", port), wait).expect("UDP connect");

    let started = Instant::now();
    let error = client.request(b"hello?").expect_err("no ack comes");
    let waited = started.elapsed();
    assert!(
        waited >= wait && waited < STEP_TIMEOUT,
        "waited {waited:?} for a {wait:?} timeout"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "no reply from 127.0.0.1:{port}: no ack arrived in time"
        )),
        "{error}"
    );
}

// The binary.

#[test]
fn cli_udp_client_and_server_talk() {
    let server = ServerProcess::start(&["--udp", "--port", "0", "--recv-size", "8"]);
    assert!(
        server.addr.starts_with("127.0.0.1:"),
        "UDP stays on loopback by default"
    );

    // Three lines: a word, an empty line (a real, empty datagram over UDP) and a line longer
    // than recv(8). Each gets one ack; `q` ends the session.
    Command::new(BINARY)
        .args(["client", "--udp", "--port", &server.port()])
        .write_stdin("hello\n\n0123456789\nq\nnot sent\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .success()
        .stdout("server recv success\nserver recv success\nserver recv success\n");

    // Every ack was sent after its log line was flushed, so the log is complete now.
    let log = server.stop();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "one log line per datagram:\n{log}");
    let expected_ends = [
        "] send a message to server: hello",
        "] send a message to server: ",
        "] send a message to server: 01234567 (truncated: the datagram had 10 bytes, recv read 8, the other 2 were discarded)",
    ];
    for (line, end) in lines.iter().zip(expected_ends) {
        assert!(
            line.starts_with("[127.0.0.1:") && line.ends_with(end),
            "{line:?} should end with {end:?}"
        );
    }
}

#[test]
fn cli_udp_client_without_a_server_exits_6() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port();
    Command::new(BINARY)
        .args(["client", "--udp", "--port", &port.to_string()])
        .write_stdin("hello\n")
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(6)
        .stderr(predicate::str::starts_with(format!(
            "error: no reply from 127.0.0.1:{port}: connection refused"
        )));
}

#[test]
fn cli_udp_client_reports_a_datagram_too_long() {
    let server = ServerProcess::start(&["--udp", "--port", "0"]);
    let line = format!("{}\n", "x".repeat(MAX_UDP_PAYLOAD_V4 + 1));
    Command::new(BINARY)
        .args(["client", "--udp", "--port", &server.port()])
        .write_stdin(line)
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot send a 65508-byte datagram to 127.0.0.1:",
        ))
        .stderr(predicate::str::contains(
            "message too long (one UDP datagram over IPv4 carries at most 65507 bytes",
        ));
}

#[test]
fn cli_udp_server_on_every_interface_warns() {
    let server = ServerProcess::start(&["--udp", "--host", "0.0.0.0", "--port", "0"]);
    assert!(server.addr.starts_with("0.0.0.0:"), "{}", server.addr);
    assert_eq!(
        server.next_stderr_line(),
        "warning: listening on every interface: other machines can reach this server (use --host 127.0.0.1 to stay local)"
    );
}

#[test]
fn cli_udp_server_reports_port_in_use() {
    // Without SO_REUSEADDR (std's UdpSocket does not set it either) a second bind fails.
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    Command::new(BINARY)
        .args(["server", "--udp", "--port", &port])
        .timeout(STEP_TIMEOUT)
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(format!(
            "error: cannot bind 127.0.0.1:{port}: address already in use"
        )));
}

#[test]
fn cli_udp_rejects_settings_that_only_streams_have() {
    // There is no listen queue, no connection to count and none to time out.
    for setting in [
        &["server", "--udp", "--backlog", "5"][..],
        &["server", "--udp", "--max-clients", "5"][..],
        &["server", "--udp", "--pause-accept"][..],
        &["client", "--udp", "--nodelay"][..],
    ] {
        Command::new(BINARY)
            .args(setting)
            .timeout(STEP_TIMEOUT)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("cannot be used with"));
    }
}

#[test]
fn each_datagram_gets_exactly_one_ack() {
    let (server, events) = start_server(1024);
    let client = client_for(&server);
    for message in [&b"one"[..], b"two", b"three"] {
        client.send(message).expect("send");
    }
    for _ in 0..3 {
        assert!(matches!(next_event(&events), Event::Message { .. }));
    }
    // Three acks, each a whole datagram of its own...
    for _ in 0..3 {
        assert_eq!(client.recv_reply().expect("an ack"), ACK);
    }
    // ...and no fourth: the socket times out instead of returning another.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let extra = client.recv(1024);
    assert!(
        extra
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "a fourth ack: {extra:?}"
    );
    server.stop().expect("stop");
}

#[test]
fn a_datagram_client_names_its_server_and_obeys_its_socket_settings() {
    // A peer that never answers, so every wait below is the client's own setting.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent peer");
    let port = silent.local_addr().expect("its address").port();
    let client =
        DatagramClient::connect(&Endpoint::inet("127.0.0.1", port), STEP_TIMEOUT).expect("connect");
    assert_eq!(client.server(), format!("127.0.0.1:{port}"));

    // Non-blocking: recv answers at once that nothing is there, long before the reply
    // timeout (STEP_TIMEOUT) would have ended a blocking wait.
    client.set_nonblocking(true).expect("non-blocking");
    let started = Instant::now();
    let nothing = client.recv(1024).expect_err("nothing was sent");
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
    assert!(started.elapsed() < STEP_TIMEOUT, "recv blocked");

    // Blocking again, with a shorter timeout than the one connect set.
    client.set_nonblocking(false).expect("blocking");
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let started = Instant::now();
    let nothing = client.recv(1024).expect_err("nothing was sent");
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < STEP_TIMEOUT,
        "waited {waited:?} for a 100 ms timeout"
    );
}

#[test]
fn the_kernel_counts_a_datagram_waiting_for_the_client() {
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind a peer");
    let port = peer.local_addr().expect("its address").port();
    let client =
        DatagramClient::connect(&Endpoint::inet("127.0.0.1", port), STEP_TIMEOUT).expect("connect");
    let Address::Inet(client_addr) = client.local_addr().expect("client address") else {
        panic!("a UDP client has an IP address");
    };
    peer.send_to(b"hello", client_addr).expect("send");

    // FIONREAD on a UDP socket is the size of the next datagram, once it is queued.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let queues = loop {
        let queues = Queues::of(&client).expect("the client's own socket answers");
        if queues.recv > 0 || Instant::now() > deadline {
            break queues;
        }
        std::thread::yield_now();
    };
    assert_eq!(queues.recv, 5);
    assert_eq!(client.recv_reply().expect("the datagram"), b"hello");
    assert_eq!(Queues::of(&client).expect("queues").recv, 0);
}

#[test]
fn a_datagram_session_counts_each_line_and_each_ack() {
    let (server, _events) = start_server(1024);
    let client = client_for(&server);
    let mut output = Vec::new();
    let summary = client
        .run_session(&b"one\n\nthree\nq\nnot sent\n"[..], &mut output, None)
        .expect("session");
    // Over UDP the empty line is a real, empty datagram: three lines, three acks.
    assert_eq!(
        summary,
        SessionSummary {
            lines_sent: 3,
            replies: 3
        }
    );
    assert_eq!(
        String::from_utf8(output).unwrap(),
        "server recv success\n".repeat(3)
    );
    server.stop().expect("stop");
}

#[test]
fn a_datagram_session_keeps_the_prompt_on_lines_of_its_own() {
    let (server, _events) = start_server(1024);
    let client = client_for(&server);
    let mut output = Vec::new();
    let mut prompt = Vec::new();
    // The last line ends without a newline (Ctrl-D after text): it is sent, and the session
    // ends without a second prompt; the cursor, left after the text, gets a newline.
    let summary = client
        .run_session(&b"one\nlast"[..], &mut output, Some(&mut prompt))
        .expect("session");
    assert_eq!(
        summary,
        SessionSummary {
            lines_sent: 2,
            replies: 2
        }
    );
    assert_eq!(String::from_utf8(prompt).unwrap(), "> > \n");

    // End of input at the prompt: the prompt's line is ended too.
    let mut prompt = Vec::new();
    client
        .run_session(&b"one\n"[..], &mut Vec::new(), Some(&mut prompt))
        .expect("session");
    assert_eq!(String::from_utf8(prompt).unwrap(), "> > \n");
    server.stop().expect("stop");
}
