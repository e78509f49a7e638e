// The ack server's cases through the library, compiled once per engine: `tests/server.rs`
// runs them on the thread pool, `server_epoll.rs` on the event loop and
// `server_iterative.rs` one client at a time, each with its `ENGINE`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use socket_lab::server::{ACK, Event, RunningServer, Server, ServerConfig, channel_log};
use socket_lab::{Address, Endpoint};

const WAIT: Duration = Duration::from_secs(10);

fn start(config: ServerConfig) -> (RunningServer, Receiver<Event>) {
    let (log, events) = channel_log();
    let config = ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        engine: ENGINE,
        ..config
    };
    let server = Server::bind(config).expect("bind on port 0");
    (server.spawn(log), events)
}

fn connect(server: &RunningServer) -> TcpStream {
    let port = server.addr.port().expect("a TCP server");
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

fn next_event(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(WAIT)
        .expect("the server logged nothing in time")
}

fn me(stream: &TcpStream) -> Address {
    Address::Inet(stream.local_addr().unwrap())
}

#[test]
fn every_recv_that_returns_data_gets_exactly_one_ack() {
    let (server, events) = start(ServerConfig {
        recv_size: 8,
        ..ServerConfig::default()
    });
    let mut client = connect(&server);
    client.write_all(b"hello, wide world!\r\n").unwrap();

    assert_eq!(next_event(&events), Event::Connected { peer: me(&client) });
    let mut received = Vec::new();
    while received.len() < 20 {
        match next_event(&events) {
            Event::Message { data, .. } => {
                assert!(data.len() <= 8, "recv(8) returned {} bytes", data.len());
                received.extend(data);
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
    assert_eq!(received, b"hello, wide world!\r\n");

    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut acks = Vec::new();
    client.read_to_end(&mut acks).unwrap();
    assert_eq!(
        acks,
        ACK.repeat(3),
        "20 bytes in recv(8) pieces is three recvs, three acks"
    );
    server.stop().unwrap();
}

#[test]
fn a_close_is_a_recv_of_zero_bytes() {
    let (server, events) = start(ServerConfig::default());
    let client = connect(&server);
    let peer = me(&client);
    assert_eq!(next_event(&events), Event::Connected { peer: peer.clone() });
    drop(client);
    assert_eq!(
        next_event(&events),
        Event::Disconnected { peer, reason: None }
    );
    server.stop().unwrap();
}

#[test]
fn a_reset_is_logged_as_a_disconnect_with_its_reason() {
    let (server, events) = start(ServerConfig::default());
    let client = connect(&server);
    let peer = me(&client);
    assert_eq!(next_event(&events), Event::Connected { peer: peer.clone() });
    // SO_LINGER with a zero timeout makes close send RST instead of FIN.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    assert_eq!(
        next_event(&events),
        Event::Disconnected {
            peer,
            reason: Some("connection reset by peer".into())
        }
    );
    server.stop().unwrap();
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let (server, events) = start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        ..ServerConfig::default()
    });
    let mut client = connect(&server);
    let peer = me(&client);
    assert_eq!(next_event(&events), Event::Connected { peer: peer.clone() });
    let mut rest = Vec::new();
    assert_eq!(
        client.read_to_end(&mut rest).unwrap(),
        0,
        "the server closed the connection"
    );
    assert_eq!(
        next_event(&events),
        Event::Disconnected {
            peer,
            reason: Some("idle for 100ms, closed by the server".into())
        }
    );
    server.stop().unwrap();
}

#[test]
fn beyond_max_clients_new_connections_wait_in_the_listen_queue() {
    let (server, events) = start(ServerConfig {
        max_clients: 1,
        ..ServerConfig::default()
    });
    let first = connect(&server);
    // The accept loop reports the connection as it accepts it, then that it is full. The
    // iterative engine is never "full": it serves one client at a time by design.
    assert_eq!(next_event(&events), Event::Connected { peer: me(&first) });
    if ENGINE != socket_lab::engine::Engine::Iterative {
        assert_eq!(next_event(&events), Event::Busy { max_clients: 1 });
    }

    // The kernel completes the handshake from the listen queue; the server has not accepted.
    let mut second = connect(&server);
    second.write_all(b"queued").unwrap();
    drop(first);
    // Once `second` takes the freed slot the server is full again and says so once more
    // (when, against the worker's first recv, is the scheduler's choice: counted below).
    let busy = std::cell::Cell::new(0);
    let mut later = std::iter::from_fn(|| events.recv_timeout(WAIT).ok()).filter(|event| {
        let is_busy = matches!(event, Event::Busy { .. });
        busy.set(busy.get() + usize::from(is_busy));
        !is_busy
    });
    assert!(matches!(later.next(), Some(Event::Disconnected { .. })));
    assert_eq!(later.next(), Some(Event::Connected { peer: me(&second) }));
    assert_eq!(
        later.next(),
        Some(Event::Message {
            peer: me(&second),
            data: b"queued".to_vec()
        })
    );
    let mut ack = [0; ACK.len()];
    second.read_exact(&mut ack).unwrap();
    assert_eq!(ack, ACK);
    drop(later);
    let mut busy = busy.get();
    if ENGINE != socket_lab::engine::Engine::Iterative && busy == 0 {
        assert_eq!(next_event(&events), Event::Busy { max_clients: 1 });
        busy = 1;
    }
    drop(second);
    server.stop().unwrap();
    // Once each time the server became full: not again for a client that came meanwhile.
    let rest: Vec<Event> = events.try_iter().collect();
    busy += rest
        .iter()
        .filter(|event| matches!(event, Event::Busy { .. }))
        .count();
    let expected = if ENGINE == socket_lab::engine::Engine::Iterative {
        0
    } else {
        1
    };
    assert_eq!(busy, expected, "busy again, then: {rest:?}");
}

#[test]
fn stop_closes_open_connections_and_returns() {
    let (server, events) = start(ServerConfig::default());
    let mut idle = connect(&server);
    let peer = me(&idle);
    assert_eq!(next_event(&events), Event::Connected { peer: peer.clone() });
    server.stop().unwrap();
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
    // Every engine says goodbye the same way: the blocking ones see their recv return 0
    // after the stop's shutdown, the event loop says it for them.
    assert_eq!(
        next_event(&events),
        Event::Disconnected { peer, reason: None }
    );
}

#[test]
fn settings_that_cannot_work_are_refused_before_binding() {
    for (config, message) in [
        (
            ServerConfig {
                recv_size: 0,
                ..ServerConfig::default()
            },
            "--recv-size must be between 1 and",
        ),
        (
            ServerConfig {
                ack: Vec::new(),
                ..ServerConfig::default()
            },
            "--ack must not be empty",
        ),
        (
            ServerConfig {
                max_clients: 0,
                ..ServerConfig::default()
            },
            "--max-clients must be at least 1",
        ),
    ] {
        let error = Server::bind(config).err().expect("refused");
        assert!(error.to_string().starts_with(message), "{error}");
        assert_eq!(error.exit_code(), 2);
    }
}
