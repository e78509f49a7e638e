//! Properties over many generated cases (proptest). Case counts are kept small enough for a
//! two-core machine; raise them with PROPTEST_CASES=1000 when exploring.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use socket_lab::endpoint::AddressReuse;
use socket_lab::engine::Engine;
use socket_lab::scenario::Scenario;
use socket_lab::scenario::syntax::{
    Action, BindOutcome, ClientCall, ConnectOutcome, CrowdCall, Direction, Framing, KernelCall,
    MAX_CROWD, RecvOutcome, SendOutcome, ServerCall, Setting, SockOpt, StreamContent, ThreadCount,
    WireCall,
};
use socket_lab::server::{ACK, Event, Server, ServerConfig, channel_log};
use socket_lab::{Address, Endpoint};

/// `default` cases, or as many as `PROPTEST_CASES` asks for.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

const WAIT: Duration = Duration::from_secs(20);
/// The most recvs one case may cost: keeps recv(1) of a large message out of the suite.
const MAX_RECVS: usize = 20_000;

/// Sends `chunks` (one send each) to a fresh server reading with recv(`recv_size`) and
/// checks what the walkthrough's claim 10 promises for TCP: every byte arrives exactly once
/// and in order across the recvs, no recv exceeds its size, and one whole ack comes back for
/// every recv that returned data.
fn every_byte_arrives_once_in_order(
    recv_size: usize,
    chunks: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let (log, events) = channel_log();
    let config = ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        recv_size,
        ..ServerConfig::default()
    };
    let server = Server::bind(config).expect("bind").spawn(log);
    let mut client =
        TcpStream::connect(("127.0.0.1", server.addr.port().unwrap())).expect("connect");
    client.set_read_timeout(Some(WAIT)).unwrap();
    let me = Address::Inet(client.local_addr().unwrap());

    // Read acks on another thread while sending, or a full ack queue would stall both sides.
    let mut reader = client.try_clone().unwrap();
    let acks = thread::spawn(move || {
        let mut acks = Vec::new();
        reader.read_to_end(&mut acks).map(|_| acks)
    });
    for chunk in chunks {
        client.write_all(chunk).expect("send");
    }
    client.shutdown(Shutdown::Write).unwrap();
    let acks = acks.join().unwrap().expect("read the acks");
    server.stop().unwrap();

    let recvs: Vec<Vec<u8>> = events
        .try_iter()
        .filter_map(|event| match event {
            Event::Message { peer, data } if peer == me => Some(data),
            _ => None,
        })
        .collect();
    let sent = chunks.concat();
    prop_assert_eq!(recvs.concat().len(), sent.len());
    prop_assert!(recvs.concat() == sent, "bytes reordered or changed");
    prop_assert!(
        recvs
            .iter()
            .all(|data| !data.is_empty() && data.len() <= recv_size)
    );
    prop_assert_eq!(
        acks.len(),
        ACK.len() * recvs.len(),
        "one whole ack per recv"
    );
    prop_assert!(acks.chunks(ACK.len()).all(|ack| ack == ACK));
    Ok(())
}

/// A recv size where the bugs live: tiny ones (1 to 16 bytes, a recv per byte or so), the
/// powers of two and their neighbours, and anywhere up to 64 KiB. Drawn uniformly from
/// 1..=65536, 48 cases would almost never try a size below 17.
fn recv_sizes() -> impl Strategy<Value = usize> {
    let edges: Vec<usize> = (4..=16)
        .flat_map(|power| {
            let size = 1usize << power;
            [size - 1, size, size + 1]
        })
        .filter(|&size| size <= 65536)
        .collect();
    prop_oneof![
        3 => 1usize..=16,
        2 => proptest::sample::select(edges),
        2 => 17usize..=65536,
    ]
}

/// A recv size, and a message size drawn from the edges that matter and from anywhere up
/// to 1 MiB (within MAX_RECVS recvs).
fn sizes() -> impl Strategy<Value = (usize, usize)> {
    recv_sizes().prop_flat_map(|recv_size| {
        let most = (recv_size * MAX_RECVS).min(1 << 20);
        let edges = [
            0,
            1,
            recv_size - 1,
            recv_size,
            recv_size + 1,
            65535,
            65536,
            65537,
        ];
        let edge = proptest::sample::select(
            edges
                .iter()
                .copied()
                .filter(|&n| n <= most)
                .collect::<Vec<_>>(),
        );
        (Just(recv_size), prop_oneof![edge, 0..=most])
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn one_send_of_any_size_arrives_whole_and_in_order((recv_size, size) in sizes()) {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        every_byte_arrives_once_in_order(recv_size, &[message])?;
    }

    #[test]
    fn any_chunking_of_one_payload_arrives_whole_and_in_order(
        recv_size in recv_sizes(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..12),
    ) {
        every_byte_arrives_once_in_order(recv_size, &chunks)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn the_scenario_parser_never_panics(text in "(.{0,40}\n){0,8}") {
        let _ = Scenario::parse(&text);
    }

    #[test]
    fn the_scenario_parser_never_panics_on_near_misses(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("server tcp".to_string()),
                Just("# title".to_string()),
                "[a-z]{1,6}: [a-z-]{1,14} ?(\"[^\"]{0,6}\"|r\"|\\\\x[0-9a-z]{0,3}|[0-9]{1,25}|=|\\*|\\+| ){0,6}",
            ],
            0..8,
        )
    ) {
        let _ = Scenario::parse(&lines.join("\n"));
    }

    #[test]
    fn a_printed_scenario_parses_back_to_itself(scenario in scenarios()) {
        let printed = scenario.to_string();
        let reparsed = Scenario::parse(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(&reparsed.title, &scenario.title);
        prop_assert_eq!(&reparsed.server, &scenario.server);
        prop_assert_eq!(reparsed.timeout, scenario.timeout);
        let actions = |s: &Scenario| s.steps.iter().map(|step| step.action.clone()).collect::<Vec<_>>();
        prop_assert_eq!(actions(&reparsed), actions(&scenario));
    }
}

#[test]
fn every_lesson_file_prints_and_parses_back_to_itself() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for path in socket_lab::scenario::discover(&dir).unwrap() {
        let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let reparsed = Scenario::parse(&scenario.to_string()).unwrap();
        let actions = |s: &Scenario| {
            s.steps
                .iter()
                .map(|step| step.action.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(actions(&reparsed), actions(&scenario), "{}", path.display());
        assert_eq!(reparsed.server, scenario.server, "{}", path.display());
    }
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..24)
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,30}"
}

fn send_outcome() -> impl Strategy<Value = SendOutcome> {
    prop_oneof![
        (0usize..100_000).prop_map(SendOutcome::Count),
        Just(SendOutcome::Partial),
        Just(SendOutcome::WouldBlock),
    ]
}

fn sock_opt() -> impl Strategy<Value = SockOpt> {
    prop_oneof![
        Just(SockOpt::SndBuf),
        Just(SockOpt::RcvBuf),
        Just(SockOpt::NoDelay)
    ]
}

fn client_call() -> impl Strategy<Value = ClientCall> {
    prop_oneof![
        Just(ClientCall::Connect {
            expect: ConnectOutcome::Connected
        }),
        Just(ClientCall::Connect {
            expect: ConnectOutcome::Refused
        }),
        (1u64..10_000).prop_map(|ms| ClientCall::Connect {
            expect: ConnectOutcome::Pending(Duration::from_millis(ms))
        }),
        Just(ClientCall::FinishConnect),
        "[a-z][a-z0-9_-]{0,7}".prop_map(ClientCall::ConnectTo),
        (bytes(), proptest::option::of(send_outcome()))
            .prop_map(|(data, expect)| ClientCall::Send { data, expect }),
        bytes().prop_map(|data| ClientCall::SendAll { data }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::Timeout
        }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::WouldBlock
        }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::Data(Vec::new())
        }),
        (
            text(),
            prop_oneof![Just(Framing::Whole), Just(Framing::Short)]
        )
            .prop_map(|(pattern, framing)| ClientCall::RecvResponse { pattern, framing }),
        (1u64..10_000).prop_map(|ms| ClientCall::SetTimeout(Duration::from_millis(ms))),
        any::<bool>().prop_map(ClientCall::SetBlocking),
        (
            sock_opt(),
            0usize..1_000_000,
            proptest::option::of(0usize..1_000_000)
        )
            .prop_map(|(option, value, expect)| ClientCall::SetSockOpt {
                option,
                value,
                expect
            }),
        Just(ClientCall::IgnoreRest),
        bytes().prop_map(|data| ClientCall::Recv {
            size: data.len() + 3,
            expect: RecvOutcome::Data(data)
        }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::Eof
        }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::Reset
        }),
        (1usize..5000).prop_map(|size| ClientCall::Recv {
            size,
            expect: RecvOutcome::Refused
        }),
        bytes().prop_map(|expect| ClientCall::RecvExactly {
            size: expect.len(),
            expect
        }),
        bytes().prop_map(|data| ClientCall::RecvUntilEof {
            expect: StreamContent::Data(data)
        }),
        Just(ClientCall::RecvUntilEof {
            expect: StreamContent::Acks
        }),
        prop_oneof![
            Just(Direction::Read),
            Just(Direction::Write),
            Just(Direction::Both)
        ]
        .prop_map(ClientCall::Shutdown),
        Just(ClientCall::Close),
        Just(ClientCall::Reset),
    ]
}

fn client_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,7}".prop_filter(
        "`server`, `kernel`, `wire` and `crowd` are not clients",
        |name| !["server", "kernel", "wire", "crowd"].contains(&name.as_str()),
    )
}

fn reuse() -> impl Strategy<Value = AddressReuse> {
    prop_oneof![Just(AddressReuse::Allowed), Just(AddressReuse::Refused)]
}

fn server_call() -> impl Strategy<Value = ServerCall> {
    let bind = prop_oneof![
        Just(BindOutcome::Bound),
        text().prop_map(BindOutcome::Error)
    ];
    prop_oneof![
        text().prop_map(ServerCall::Log),
        text().prop_map(ServerCall::LogNext),
        client_name().prop_map(|client| ServerCall::ReceivedAll { client }),
        Just(ServerCall::Stop),
        Just(ServerCall::ResumeAccept),
        (reuse(), bind.clone()).prop_map(|(address_reuse, expect)| ServerCall::BindAgain {
            address_reuse,
            expect
        }),
        (reuse(), bind).prop_map(|(address_reuse, expect)| ServerCall::Restart {
            address_reuse,
            expect
        }),
        (0usize..=MAX_CROWD).prop_map(|count| ServerCall::Threads(ThreadCount::Exactly(count))),
        Just(ServerCall::Threads(ThreadCount::Cores)),
        proptest::option::of(0u64..64 * 1024).prop_map(|kib| ServerCall::Memory {
            below: kib.map(|kib| kib * 1024)
        }),
        (
            prop_oneof![
                Just(Engine::Iterative),
                Just(Engine::Threads),
                Just(Engine::Epoll)
            ],
            proptest::option::of(1usize..1000)
        )
            .prop_map(|(engine, max_clients)| {
                let mut settings = vec![Setting::Engine(engine)];
                settings.extend(max_clients.map(Setting::MaxClients));
                ServerCall::Replace(settings)
            }),
    ]
}

fn crowd_call() -> impl Strategy<Value = CrowdCall> {
    prop_oneof![
        (1usize..=MAX_CROWD).prop_map(CrowdCall::Connect),
        bytes().prop_map(CrowdCall::Send),
        (1usize..5000, bytes()).prop_map(|(size, expect)| CrowdCall::Recv { size, expect }),
        Just(CrowdCall::Close),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        "[a-zA-Z0-9,.()]([ a-zA-Z0-9,.()]{0,30}[a-zA-Z0-9,.()])?".prop_map(Action::Narrate),
        (client_name(), client_call()).prop_map(|(name, call)| Action::Client { name, call }),
        server_call().prop_map(Action::Server),
        crowd_call().prop_map(Action::Crowd),
        Just(Action::Kernel(KernelCall::SynSchedule)),
        (1usize..100).prop_map(|count| Action::Kernel(KernelCall::AcceptQueue(count))),
        "[a-z]{1,8}(\\.[a-z_]{1,12}){0,3}"
            .prop_map(|name| Action::Kernel(KernelCall::Sysctl(vec![name]))),
        (1u64..10_000).prop_map(|ms| Action::Wire(WireCall::Silence(Duration::from_millis(ms)))),
    ]
}

/// A `server tcp` line with any of the settings a TCP server takes.
fn server_line() -> impl Strategy<Value = String> {
    (
        proptest::option::of(1usize..100_000),
        proptest::option::of("[a-z ]{1,12}"),
        proptest::option::of(0i32..1000),
        proptest::option::of(1usize..1000),
        proptest::option::of(0u64..100_000),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(recv_size, ack, backlog, max_clients, idle, paused)| {
            let mut line = "server tcp".to_string();
            if let Some(size) = recv_size {
                line.push_str(&format!(" recv-size={size}"));
            }
            if let Some(ack) = ack {
                line.push_str(&format!(" ack=\"{ack}\""));
            }
            if let Some(backlog) = backlog {
                line.push_str(&format!(" backlog={backlog}"));
            }
            if let Some(max) = max_clients {
                line.push_str(&format!(" max-clients={max}"));
            }
            if let Some(idle) = idle {
                line.push_str(&format!(" idle-timeout={idle}ms"));
            }
            if let Some(paused) = paused {
                line.push_str(if paused {
                    " accept=paused"
                } else {
                    " accept=on"
                });
            }
            line
        })
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        "[a-zA-Z0-9]([ a-zA-Z0-9]{0,20}[a-zA-Z0-9])?",
        server_line(),
        proptest::collection::vec(action(), 0..12),
    )
        .prop_map(|(title, server, actions)| {
            let text = format!("# {title}\n{server}\n");
            let mut scenario = Scenario::parse(&text).expect("the skeleton parses");
            scenario.steps = actions
                .into_iter()
                .enumerate()
                .map(|(index, action)| socket_lab::scenario::syntax::Step {
                    line: index + 3,
                    action,
                    hint: None,
                })
                .collect();
            scenario
        })
}

// ---- One log entry is one line of visible text, whatever a peer sends or binds ----

/// Bytes a peer might send or bind: any byte, any character, and above all the characters
/// that drive a terminal or reorder what it shows.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let special = proptest::sample::select(vec![
        "\n",
        "\r",
        "\x1b",
        "\x07",
        "\0",
        "\x7f",
        "\\",
        "\"",
        "]",
        "[",
        "\u{85}",
        "\u{9b}",
        "\u{ad}",
        "\u{61c}",
        "\u{202a}",
        "\u{202e}",
        "\u{2066}",
        "\u{2069}",
        "\u{2028}",
        "\u{2029}",
        "\u{200b}",
        "\u{200d}",
        "\u{200f}",
        "\u{feff}",
        "\u{e0041}",
        r"\u{202e}",
        r"\x1b",
        r"\]",
        "é",
        "你",
    ]);
    proptest::collection::vec(
        prop_oneof![
            any::<u8>().prop_map(|byte| vec![byte]),
            any::<char>().prop_map(|c| c.to_string().into_bytes()),
            special.prop_map(|text| text.as_bytes().to_vec()),
        ],
        0..32,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A file name a client can bind: bytes without `/` or NUL, not `.` or `..`.
fn socket_name() -> impl Strategy<Value = Vec<u8>> {
    hostile_bytes().prop_map(|bytes| {
        let mut name: Vec<u8> = bytes
            .into_iter()
            .filter(|&byte| byte != b'/' && byte != 0)
            .take(60)
            .collect();
        name.push(b'~');
        name
    })
}

/// A log entry must be exactly one line with nothing in it for a terminal to obey: no
/// control character (`\n`, `\r`, ESC, BEL, C1), no format character (bidi overrides and
/// isolates, zero-width characters, the BOM), no line or paragraph separator.
fn assert_one_visible_line(entry: &str) -> Result<(), TestCaseError> {
    let hidden: Vec<char> = entry
        .chars()
        .filter(|&c| socket_lab::escape::is_hidden(c))
        .collect();
    prop_assert!(hidden.is_empty(), "{entry:?} holds {hidden:?}");
    Ok(())
}

/// The `[peer]` field at the start of an entry, read back to bytes: the field ends at the
/// first `]` that is not escaped.
fn peer_field(entry: &str) -> Result<(Vec<u8>, &str), TestCaseError> {
    let inner = entry
        .strip_prefix('[')
        .ok_or_else(|| TestCaseError::fail(format!("no [peer] in {entry:?}")))?;
    let mut chars = inner.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            ']' => {
                let bytes = socket_lab::escape::unescape(&inner[..at])
                    .map_err(|e| TestCaseError::fail(format!("{entry:?}: {e}")))?;
                return Ok((bytes, &inner[at + 1..]));
            }
            _ => {}
        }
    }
    Err(TestCaseError::fail(format!(
        "the [peer] field never ends in {entry:?}"
    )))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn escape_then_unescape_gives_back_any_bytes(bytes in hostile_bytes()) {
        use socket_lab::escape::{escape, escape_in, unescape};
        prop_assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes.clone());
        prop_assert_eq!(unescape(&escape_in(&bytes, '"')).unwrap(), bytes.clone());
        prop_assert_eq!(unescape(&escape_in(&bytes, ']')).unwrap(), bytes.clone());
        assert_one_visible_line(&escape(&bytes))?;
    }

    /// Every event that names a Unix peer, for any path it bound and any bytes it sent: one
    /// line of visible text, and both the path and the bytes read back exactly.
    #[test]
    fn any_unix_path_and_any_message_log_as_one_line_that_reads_back(
        path in hostile_bytes(),
        data in hostile_bytes(),
    ) {
        use std::os::unix::ffi::OsStringExt;
        let peer = Address::Unix(Some(std::ffi::OsString::from_vec(path.clone()).into()));
        let message = Event::Message { peer: peer.clone(), data: data.clone() }.to_string();
        let entries = [
            Event::Connected { peer: peer.clone() }.to_string(),
            message.clone(),
            Event::Disconnected { peer: peer.clone(), reason: None }.to_string(),
            Event::Truncated { peer: peer.clone(), data: data.clone(), datagram_len: 9000 }
                .to_string(),
            Event::ReplyFailed { peer: peer.clone(), reason: "no".into() }.to_string(),
        ];
        for entry in &entries {
            assert_one_visible_line(entry)?;
            prop_assert_eq!(peer_field(entry)?.0, path.clone());
        }
        let (_, rest) = peer_field(&message)?;
        let shown = rest
            .strip_prefix(" send a message to server: ")
            .ok_or_else(|| TestCaseError::fail(message.clone()))?;
        prop_assert_eq!(socket_lab::escape::unescape(shown).unwrap(), data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    /// The same through real servers: a client binds a hostile path, connects to the ack
    /// server and to the web server over Unix stream sockets, and sends hostile bytes; every
    /// entry either server logs is one line of visible text naming that path exactly.
    #[test]
    fn real_servers_log_any_unix_client_as_one_visible_line(
        name in socket_name(),
        data in hostile_bytes(),
    ) {
        use socket_lab::http::server::{HttpConfig, HttpServer};
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::UnixStream;

        let dir = tempfile::tempdir().unwrap();
        let client_path = dir.path().join(std::ffi::OsStr::from_bytes(&name));
        let client_path_bytes = client_path.as_os_str().as_bytes().to_vec();
        let talk = |server: &std::path::Path, bytes: &[u8]| {
            let _ = std::fs::remove_file(&client_path);
            let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                .unwrap();
            socket.bind(&socket2::SockAddr::unix(&client_path).unwrap()).unwrap();
            socket.connect(&socket2::SockAddr::unix(server).unwrap()).unwrap();
            let mut stream = UnixStream::from(std::os::fd::OwnedFd::from(socket));
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(bytes).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).unwrap();
        };

        let mut entries = Vec::new();
        let ack_path = dir.path().join("ack.sock");
        let (log, events) = channel_log();
        let server = Server::bind(ServerConfig {
            endpoint: Endpoint::Unix(ack_path.clone()),
            ..ServerConfig::default()
        })
        .unwrap()
        .spawn(log);
        talk(&ack_path, &data);
        server.stop().unwrap();
        entries.extend(events.try_iter().map(|event| event.to_string()));

        let http_path = dir.path().join("http.sock");
        let (tx, http_events) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let server = HttpServer::bind(HttpConfig {
            endpoint: Endpoint::Unix(http_path.clone()),
            ..HttpConfig::default()
        })
        .unwrap()
        .spawn(std::sync::Arc::new(move |event| {
            let _ = tx.lock().unwrap().send(event);
        }));
        talk(&http_path, &[&data[..], b"\r\n\r\n"].concat());
        server.stop().unwrap();
        entries.extend(http_events.try_iter().map(|event| event.to_string()));

        prop_assert!(entries.len() >= 3, "{entries:?}");
        for entry in &entries {
            assert_one_visible_line(entry)?;
            prop_assert_eq!(peer_field(entry)?.0, client_path_bytes.clone());
        }
    }
}
