//! Hostile and faulty clients against the ack server, run as a real process so its threads
//! (`/proc/PID/task`), descriptors (`/proc/PID/fd`) and memory (`VmRSS`) can be counted.
//! After every case the server must still serve a fresh client, and its counts must come
//! back to where they were.
//!
//! These cases run on the thread pool here and on the event loop in `faults_epoll.rs` (they
//! are in `engines/faults.rs`); the datagram server's flood, which has no engine, is here.

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Threads;

include!("engines/faults.rs");

/// A fresh UDP client, connected to the server, still gets its ack.
fn assert_udp_still_serves(client: &std::net::UdpSocket) {
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
    let mut server = ServerProcess::start(&["server", "--udp", "--port", "0", "--recv-size", "8"]);
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
    }
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(&server.addr).unwrap();
    let me = client.local_addr().unwrap();
    assert_udp_still_serves(&client);
    // The server answers in order, so by its ack it has read everything the flood left
    // queued: the empty datagram below finds room. It is a message, not the end of anything.
    assert_eq!(client.send(b"").unwrap(), 0);
    let rss = rss_kib(server.child.id());
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after the flood");
    assert_eq!(
        counts(server.child.id()),
        baseline,
        "no thread or descriptor per datagram"
    );

    // The empty datagram is read and logged before the stop: a stop that came first would
    // leave it in the socket's queue, unread, which is allowed.
    let prefix = format!("[{me}] send a message to server: ");
    let mut lines = server.wait_for_line(&prefix);
    lines.push(prefix.clone());
    // Stopped, the server has said everything it will say. Each datagram it got from us is
    // one log line and one ack: "still there?" once or more (a retry may have crossed a late
    // ack), then the empty one, logged as an empty message.
    server.signal(libc::SIGINT);
    assert_eq!(server.wait_exit(), Some(0));
    lines.extend(server.remaining_lines());
    let logged: Vec<String> = lines
        .iter()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        .collect();
    let (last, before) = logged.split_last().expect("our datagrams were logged");
    assert_eq!(last, "", "{logged:?}");
    // recv(8) takes the first 8 bytes of each "still there?" and the log says so.
    let still_there =
        "still th (truncated: the datagram had 12 bytes, recv read 8, the other 4 were discarded)";
    assert!(
        before.iter().all(|message| message == still_there),
        "{logged:?}"
    );
    // One ack was read above; the rest wait in our socket. Read as many as were logged, then
    // make sure there is not one more.
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut ack = [0; 64];
    for _ in 1..logged.len() {
        let n = client.recv(&mut ack).expect("one ack per logged datagram");
        assert_eq!(&ack[..n], ACK);
    }
    client.set_nonblocking(true).unwrap();
    let extra = client.recv(&mut ack).map_err(|e| e.kind());
    assert_eq!(extra, Err(ErrorKind::WouldBlock), "an ack nobody asked for");
}
