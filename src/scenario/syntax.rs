//! The syntax tree of a scenario: what a file says, checked and typed, before anything runs.
//!
//! [`Scenario`] holds the server to start ([`ServerSpec`]), the step timeout and the
//! [`Step`]s. A step is narration or an actor's call: a client's ([`ClientCall`], the
//! walkthrough's socket calls) or the server's ([`ServerCall`], checks on what it logged, and
//! its life: stop, restart, resume accepting). Outcomes are their own types
//! ([`RecvOutcome`], [`SendOutcome`], ...) so a runner matches on them, never on text.
//!
//! [`VERBS`] is the one list of verbs: name, who can use it, its arguments and outcome forms.
//! The parser takes its names from there, error messages list them from there, and the README
//! and a test are checked against it.

use std::time::Duration;

use crate::engine::Engine;
use crate::kernel::TcpState;
use crate::server::ServerConfig;

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub title: String,
    pub server: ServerSpec,
    pub timeout: Duration,
    pub steps: Vec<Step>,
    /// The file's last line, where a failure at the end of the run points.
    pub last_line: usize,
    /// What the lesson needs of a server beyond its `server` line (`needs` lines), for
    /// `socket-lab check` and `run --port`/`--unix` (against a server already running).
    pub needs: Vec<Need>,
    /// A hostile network between the clients and the server (`network split=1`): the
    /// runner puts [`crate::proxy`] in front of the server.
    pub network: Option<crate::proxy::Network>,
    /// A second server, named (`server udp recv-size=8 as dgram`), for lessons that put two
    /// kinds side by side; clients reach it with `connect-to NAME`.
    pub second: Option<(String, ServerSpec)>,
}

/// Something a lesson needs of the server it runs against that its `server` line cannot say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// `needs two-clients-at-once`: the server must serve a second client while the first
    /// stays connected.
    TwoClientsAtOnce,
    /// `needs the-labs-pages`: the lesson checks what the lab's own web server's pages say
    /// (the page at `/` that shows the request), so another web server cannot pass it.
    TheLabsPages,
}

impl Need {
    pub fn name(&self) -> &'static str {
        match self {
            Need::TwoClientsAtOnce => "two-clients-at-once",
            Need::TheLabsPages => "the-labs-pages",
        }
    }
}

/// The server a scenario starts, as its `server` line says: a kind and the settings that
/// kind takes, each checked when the file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub kind: ServerKind,
    /// In file order, each at most once.
    pub settings: Vec<Setting>,
}

/// One `key=value` on the `server` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `recv-size=8`: the `n` in the server's `recv(n)`.
    RecvSize(usize),
    /// `ack="ok"`: what the ack server answers each recv with.
    Ack(Vec<u8>),
    /// `backlog=1`: the `backlog` in `listen(backlog)`; 0 is legal on Linux.
    Backlog(i32),
    /// `max-clients=2`: connections served at once.
    MaxClients(usize),
    /// `idle-timeout=2s`: a silent client is closed after this long; `0s` means never, as on
    /// the command line.
    IdleTimeout(Duration),
    /// `host="::1"`: the address to listen on (port 0 always).
    Host(String),
    /// `accept=paused`: the server listens but does not call `accept` until
    /// `server: resume-accept`.
    Accept(AcceptMode),
    /// `engine=iterative`: one client at a time, as the walkthrough's server.py; `threads`
    /// (the default) serves each connection on a worker thread; `epoll` from an event loop.
    Engine(Engine),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptMode {
    /// `accept=on`: accept at once (the default).
    On,
    /// `accept=paused`: connections wait in the listen queue.
    Paused,
}

impl Setting {
    /// The key as the file writes it.
    pub fn key(&self) -> &'static str {
        match self {
            Setting::RecvSize(_) => "recv-size",
            Setting::Ack(_) => "ack",
            Setting::Backlog(_) => "backlog",
            Setting::MaxClients(_) => "max-clients",
            Setting::IdleTimeout(_) => "idle-timeout",
            Setting::Host(_) => "host",
            Setting::Accept(_) => "accept",
            Setting::Engine(_) => "engine",
        }
    }
}

impl Setting {
    /// Changes `config` as this setting says (`host` and `accept` are the runner's to apply).
    pub fn apply_to(&self, config: &mut ServerConfig) {
        match self {
            Setting::RecvSize(size) => config.recv_size = *size,
            Setting::Ack(ack) => config.ack.clone_from(ack),
            Setting::Backlog(backlog) => config.backlog = *backlog,
            Setting::MaxClients(max) => config.max_clients = *max,
            Setting::IdleTimeout(idle) => {
                config.idle_timeout = (!idle.is_zero()).then_some(*idle);
            }
            Setting::Engine(engine) => config.engine = *engine,
            Setting::Host(_) | Setting::Accept(_) => {}
        }
    }
}

impl ServerSpec {
    fn find<T>(&self, pick: impl Fn(&Setting) -> Option<T>) -> Option<T> {
        self.settings.iter().find_map(pick)
    }

    pub fn accept(&self) -> AcceptMode {
        self.find(|setting| match setting {
            Setting::Accept(mode) => Some(*mode),
            _ => None,
        })
        .unwrap_or(AcceptMode::On)
    }

    /// The engine the file names, if it names one.
    pub fn engine(&self) -> Option<Engine> {
        self.find(|setting| match setting {
            Setting::Engine(engine) => Some(*engine),
            _ => None,
        })
    }

    pub fn host(&self) -> Option<&str> {
        self.settings.iter().find_map(|setting| match setting {
            Setting::Host(host) => Some(host.as_str()),
            _ => None,
        })
    }

    /// The ack server's settings as a [`ServerConfig`] (the endpoint is the runner's to
    /// choose).
    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::default();
        for setting in &self.settings {
            setting.apply_to(&mut config);
        }
        config
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The ack server over TCP on 127.0.0.1 (or `host=`), port 0.
    Tcp,
    /// The ack server over UDP: datagrams, no connections.
    Udp,
    /// The ack server on a Unix stream socket in a fresh temporary directory.
    Unix,
    /// The ack server on a Unix datagram socket in a fresh temporary directory.
    UnixDgram,
    /// The web server of `socket-lab http`, on TCP.
    Http,
    /// Nothing listens: for lessons about refused connections.
    None,
}

impl ServerKind {
    pub(crate) const ALL: [ServerKind; 6] = [
        ServerKind::Tcp,
        ServerKind::Udp,
        ServerKind::Unix,
        ServerKind::UnixDgram,
        ServerKind::Http,
        ServerKind::None,
    ];
    pub(crate) const NAMES: &str = "tcp, udp, unix, unix-dgram, http, none";

    /// The kind a file or a flag names (`tcp`, `unix-dgram`, ...).
    pub fn from_name(name: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Tcp => "tcp",
            ServerKind::Udp => "udp",
            ServerKind::Unix => "unix",
            ServerKind::UnixDgram => "unix-dgram",
            ServerKind::Http => "http",
            ServerKind::None => "none",
        }
    }

    /// Datagram servers have no connections: `connect` only fixes the peer address.
    pub fn is_datagram(self) -> bool {
        matches!(self, ServerKind::Udp | ServerKind::UnixDgram)
    }

    /// The settings this kind of server takes. A datagram server has no listen queue and no
    /// connections to pause or time out; a Unix socket has a path, not a host; the web server
    /// has fixed limits of its own.
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            ServerKind::Tcp => &[
                "recv-size",
                "ack",
                "backlog",
                "max-clients",
                "idle-timeout",
                "host",
                "accept",
                "engine",
            ],
            ServerKind::Unix => &[
                "recv-size",
                "ack",
                "backlog",
                "max-clients",
                "idle-timeout",
                "accept",
                "engine",
            ],
            ServerKind::Udp => &["recv-size", "ack", "host"],
            ServerKind::UnixDgram => &["recv-size", "ack"],
            ServerKind::Http => &["host", "engine"],
            ServerKind::None => &[],
        }
    }

    /// The engines this kind of server runs on: the first is its default in a lesson.
    pub fn engines(self) -> &'static [Engine] {
        match self {
            ServerKind::Tcp | ServerKind::Unix => {
                &[Engine::Threads, Engine::Iterative, Engine::Epoll]
            }
            ServerKind::Http => &[Engine::Threads, Engine::Epoll],
            // A datagram server has no connections to serve one way or another.
            ServerKind::Udp | ServerKind::UnixDgram | ServerKind::None => &[],
        }
    }
}

impl Scenario {
    /// The engines this lesson runs on in the test suite: the one it names (a lesson about
    /// an engine), or every engine its server kind has, since a lesson about sockets must
    /// hold however the server waits.
    /// A lesson that `needs two-clients-at-once` is not tested on the iterative engine, which
    /// by design serves one client at a time (`socket-lab run --engine iterative` shows it
    /// failing, which is lesson 34's point).
    pub fn engines_to_test(&self) -> Vec<Engine> {
        if let Some(engine) = self.server.engine() {
            return vec![engine];
        }
        let one_at_a_time_is_enough = !self.needs.contains(&Need::TwoClientsAtOnce);
        self.server
            .kind
            .engines()
            .iter()
            .copied()
            .filter(|&engine| engine != Engine::Iterative || one_at_a_time_is_enough)
            .collect()
    }

    /// This lesson with its server on `engine`, whatever the file says (`run --engine`).
    /// An error if the server kind has no such engine.
    pub fn on_engine(&self, engine: Engine) -> Result<Scenario, String> {
        let kind = self.server.kind;
        if !kind.engines().contains(&engine) {
            let names: Vec<&str> = kind.engines().iter().map(|e| e.name()).collect();
            return Err(if names.is_empty() {
                format!(
                    "the {} server has no engines: there are no connections to serve",
                    kind.name()
                )
            } else {
                format!(
                    "the {} server does not run on the {engine} engine; it runs on: {}",
                    kind.name(),
                    names.join(", ")
                )
            });
        }
        let mut scenario = self.clone();
        scenario
            .server
            .settings
            .retain(|setting| !matches!(setting, Setting::Engine(_)));
        scenario.server.settings.push(Setting::Engine(engine));
        Ok(scenario)
    }

    /// The largest crowd the lesson opens (`crowd: connect N`), if it has one.
    pub fn largest_crowd(&self) -> Option<usize> {
        self.steps
            .iter()
            .filter_map(|step| match step.action {
                Action::Crowd(CrowdCall::Connect(count)) => Some(count),
                _ => None,
            })
            .max()
    }

    /// Whether the lesson measures its own process (`server: memory`): the test suite runs
    /// such a lesson in a process of its own, so what it measures is the lesson's alone.
    pub fn measures_its_process(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step.action, Action::Server(ServerCall::Memory { .. })))
    }

    /// Whether any step looks at the wire: such a lesson runs with `socket-lab run --wire`.
    pub fn watches_the_wire(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step.action, Action::Wire(_)))
    }
}

/// One line of the file that does something: narration, or a socket call and its expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line number in the file, for error messages.
    pub line: usize,
    pub action: Action,
    /// What it means when this step fails against a learner's server (`hint "..."` on the
    /// line before): `socket-lab check` prints it.
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Narrate(String),
    Client {
        name: String,
        call: ClientCall,
    },
    Server(ServerCall),
    Kernel(KernelCall),
    Wire(WireCall),
    /// `crowd: ...`: many connections at once, doing the same thing.
    Crowd(CrowdCall),
}

/// What the crowd does: many clients at once, each making the same call. The crowd stands for
/// the thousands of clients a real server meets, which a lesson cannot name one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrowdCall {
    /// Open this many connections to the server at once and hold them.
    Connect(usize),
    /// Every connection sends these bytes, once.
    Send(Vec<u8>),
    /// Every connection receives these bytes, with `recv(size)` calls.
    Recv { size: usize, expect: Vec<u8> },
    /// Close every connection.
    Close,
}

/// The most connections one crowd may open: a connection from this machine to itself needs a
/// local port of its own, and there are at most 65,535.
pub const MAX_CROWD: usize = 60_000;

/// What the scenario expects to see on the wire (only with `socket-lab run --wire`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireCall {
    /// The next segment from `from` to `to` that no wire step has matched yet has exactly
    /// these TCP flags (or is a UDP datagram), and `len` bytes of payload if given.
    Segment {
        from: String,
        to: String,
        kind: SegmentKind,
        len: Option<usize>,
        /// The receive window it advertises, scaled as the handshake agreed (`win=0`: a
        /// receiver whose buffer is full).
        window: Option<u64>,
    },
    /// No segment at all crosses the wire for this long, from now.
    Silence(Duration),
}

/// A TCP segment with these flags, or a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    Tcp(crate::wire::Flags),
    Udp,
}
/// What the scenario reads from the kernel, to say what *this* machine does rather than
/// quote a number that a sysctl decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelCall {
    /// Print these sysctls' values, each with what it decides.
    Sysctl(Vec<String>),
    /// Print when an unanswered SYN is resent and when connect gives up, worked out from
    /// `net.ipv4.tcp_syn_retries` and `net.ipv4.tcp_syn_linear_timeouts`.
    SynSchedule,
    /// The TCP state the kernel holds for one end of a connection, waited for up to the
    /// step's timeout (states change as segments arrive).
    State { end: End, state: TcpState },
    /// How many connections wait in the listening socket's accept queue.
    AcceptQueue(usize),
}

/// One end of a client's connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// `alice`: the client's own socket.
    Client(String),
    /// `server of alice`: the server's socket for that client's connection.
    ServerOf(String),
}

/// What a client does, in the walkthrough's words (and Python's, for the socket options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCall {
    /// `connect((host, port))`, expecting success, refusal, or no answer yet.
    Connect {
        expect: ConnectOutcome,
    },
    /// Wait for a connect that was left pending (`connect = pending 300ms`) to complete.
    FinishConnect,
    /// `connect` to the scenario's second server, by its name.
    ConnectTo(String),
    /// One `send` call, and what it must return if the file says.
    Send {
        data: Vec<u8>,
        expect: Option<SendOutcome>,
    },
    /// `sendall`: send until every byte is out, waiting whenever the socket is full.
    SendAll {
        data: Vec<u8>,
    },
    /// One `recv(size)` call.
    Recv {
        size: usize,
        expect: RecvOutcome,
    },
    /// `recv` repeated until exactly `size` bytes have arrived.
    RecvExactly {
        size: usize,
        expect: Vec<u8>,
    },
    /// `recv` repeated until end of stream.
    RecvUntilEof {
        expect: StreamContent,
    },
    /// `recv` one HTTP response: the head up to its blank line, then the body, framed by
    /// `Content-Length` (or, without one, until the server closes), matched against a
    /// pattern with `[..]`.
    RecvResponse {
        pattern: String,
        framing: Framing,
    },
    Shutdown(Direction),
    Close,
    /// Close with `SO_LINGER` 0: the peer sees a reset (RST) instead of an orderly close.
    Reset,
    /// Python's `settimeout`: how long a recv or send may wait before it fails with
    /// "timed out". (`none`, Python's "forever", is not offered: every step is bounded.)
    SetTimeout(Duration),
    /// Python's `setblocking`: a non-blocking socket never waits; it says "would block".
    SetBlocking(bool),
    /// `setsockopt` for the options the lessons use.
    SetSockOpt {
        option: SockOpt,
        value: usize,
        /// What `getsockopt` must then say, if the file says (`= 8192`: Linux doubles
        /// buffer sizes).
        expect: Option<usize>,
    },
    /// The lesson does not care what this client leaves unread: the end-of-file check that
    /// every byte sent to it was read is off for it.
    IgnoreRest,
    /// Ask the kernel how many bytes wait in this socket's queues, and check the counts the
    /// file gives.
    Queued(QueueCounts),
}

/// Byte counts of a socket's queues; `None` is "show it, but do not check it".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Received, not yet taken by `recv` (`SIOCINQ`).
    pub recv: Option<usize>,
    /// Sent and not yet acknowledged, or not yet sent (`SIOCOUTQ`).
    pub send: Option<usize>,
    /// Not yet sent at all (`SIOCOUTQNSD`): what Nagle's algorithm holds back.
    pub unsent: Option<usize>,
}

/// Whether a response's body must arrive whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Every byte `Content-Length` announced arrives.
    Whole,
    /// `= short`: fewer bytes arrive than `Content-Length` announced, and then nothing more
    /// (the stream ends, or the step's timeout passes): a server whose header lies.
    Short,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    Refused,
    /// Still not complete after this long: the server's listen queue is full and the kernel
    /// ignores the SYN. The connect goes on; `finish-connect` waits for it.
    Pending(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// `send` returned exactly this count.
    Count(usize),
    /// `send` returned fewer bytes than it was given (but some).
    Partial,
    /// A non-blocking `send` found no room at all.
    WouldBlock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// `SO_SNDBUF`: the kernel's send buffer for this socket.
    SndBuf,
    /// `SO_RCVBUF`: the kernel's receive buffer.
    RcvBuf,
    /// `TCP_NODELAY`: 1 turns off Nagle's algorithm.
    NoDelay,
}

impl SockOpt {
    pub(crate) const ALL: [SockOpt; 3] = [SockOpt::SndBuf, SockOpt::RcvBuf, SockOpt::NoDelay];

    pub fn name(self) -> &'static str {
        match self {
            SockOpt::SndBuf => "SO_SNDBUF",
            SockOpt::RcvBuf => "SO_RCVBUF",
            SockOpt::NoDelay => "TCP_NODELAY",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvOutcome {
    /// These bytes. Empty only for a datagram: on a stream, 0 bytes is `eof`.
    Data(Vec<u8>),
    /// `recv` returned 0 bytes: the peer closed its side.
    Eof,
    /// `recv` failed with "connection reset by peer".
    Reset,
    /// `recv` failed with "connection refused": on a connected datagram socket, the kernel's
    /// report of an ICMP "port unreachable" that came back for an earlier send (udp(7)).
    Refused,
    /// Nothing arrived within the socket's timeout (`settimeout`).
    Timeout,
    /// A non-blocking `recv` found nothing to read.
    WouldBlock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamContent {
    Data(Vec<u8>),
    /// The ack, once for every recv the server logged for this client.
    Acks,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
    Both,
}

/// What the scenario checks or does on the server's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCall {
    /// The server logged a line matching this pattern, in any order, that no step matched yet.
    Log(String),
    /// The first line the server logged after the line the previous `log` or `log-next` step
    /// matched, among those no step matched yet, matches this pattern: order matters.
    LogNext(String),
    /// Every byte the client sent arrived, in order, across the server's recvs.
    ReceivedAll { client: String },
    /// Stop the server: it closes every connection.
    Stop,
    /// Start calling `accept` on a server started with `accept=paused`.
    ResumeAccept,
    /// Try to bind a second server on the same address while the first still runs.
    BindAgain {
        address_reuse: crate::endpoint::AddressReuse,
        expect: BindOutcome,
    },
    /// Stop the server and bind a new one on the same address at once.
    Restart {
        address_reuse: crate::endpoint::AddressReuse,
        expect: BindOutcome,
    },
    /// Count the threads working for the server (in `/proc/self/task`), waiting up to the
    /// step's timeout for the count to be the one expected.
    Threads(ThreadCount),
    /// Show this process's resident memory and how much it grew since the server started,
    /// checked to stay below a bound (in bytes) if the file gives one.
    Memory { below: Option<u64> },
    /// Stop the server and start another on the same address, with these settings changed
    /// (the others stay as they were): the same clients meet another engine.
    Replace(Vec<Setting>),
}

/// How many threads a server should have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadCount {
    Exactly(usize),
    /// `cores`: one per core, the event loop's count on this machine.
    Cores,
}

/// The settings `server: replace` may change: everything but where the server listens.
pub(crate) const REPLACEABLE: &[&str] = &[
    "recv-size",
    "ack",
    "backlog",
    "max-clients",
    "idle-timeout",
    "engine",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// The error message, as a pattern with `[..]`.
    Error(String),
}

/// Who may use a verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// `alice: VERB`, any name but `server`.
    Client,
    /// `server: VERB`.
    Server,
    /// `kernel: VERB`: reads what this machine's kernel is set to do.
    Kernel,
    /// `wire: ...`: what crossed the loopback interface (`run --wire`).
    Wire,
    /// `crowd: VERB`: many connections at once (lesson 38).
    Crowd,
}

impl Actor {
    /// The actor as the README's verb table names it.
    pub fn name(self) -> &'static str {
        match self {
            Actor::Client => "client",
            Actor::Server => "server",
            Actor::Kernel => "kernel",
            Actor::Wire => "wire",
            Actor::Crowd => "crowd",
        }
    }
}

/// One verb of the scenario language: its name, who may use it, and how it is written.
#[derive(Clone, Copy, Debug)]
pub struct Verb {
    pub name: &'static str,
    pub actor: Actor,
    /// The arguments and outcome forms, as the README shows them.
    pub usage: &'static str,
    /// What it does, in one line.
    pub does: &'static str,
}

/// Every verb, in the order the README lists them.
pub const VERBS: &[Verb] = &[
    Verb {
        name: "connect",
        actor: Actor::Client,
        usage: "connect [= connected | error ECONNREFUSED | pending 300ms]",
        does: "connect to the server; on a datagram server it only fixes the peer address",
    },
    Verb {
        name: "connect-to",
        actor: Actor::Client,
        usage: "connect-to NAME",
        does: "connect to the lesson's second server (`server udp ... as NAME`)",
    },
    Verb {
        name: "finish-connect",
        actor: Actor::Client,
        usage: "finish-connect",
        does: "wait for a connect left pending to complete",
    },
    Verb {
        name: "send",
        actor: Actor::Client,
        usage: "send BYTES [= N | partial | error EAGAIN]",
        does: "one send call, and what it returns",
    },
    Verb {
        name: "sendall",
        actor: Actor::Client,
        usage: "sendall BYTES",
        does: "send until every byte is out, waiting for room when the socket is full",
    },
    Verb {
        name: "recv",
        actor: Actor::Client,
        usage: "recv N = BYTES | eof | timeout | error ECONNRESET | error ECONNREFUSED | error EAGAIN",
        does: "one recv call, and what it returns",
    },
    Verb {
        name: "recv-exactly",
        actor: Actor::Client,
        usage: "recv-exactly N = BYTES",
        does: "recv until exactly N bytes are in",
    },
    Verb {
        name: "recv-until-eof",
        actor: Actor::Client,
        usage: "recv-until-eof = BYTES | acks",
        does: "recv until the stream ends (`acks`: one ack per recv the server logged)",
    },
    Verb {
        name: "recv-response",
        actor: Actor::Client,
        usage: "recv-response = [short] PATTERN",
        does: "recv one HTTP response framed by Content-Length and match it (`short`: the body stops before Content-Length bytes)",
    },
    Verb {
        name: "shutdown",
        actor: Actor::Client,
        usage: "shutdown read | write | both",
        does: "shut down one or both directions of the stream",
    },
    Verb {
        name: "close",
        actor: Actor::Client,
        usage: "close",
        does: "close the socket",
    },
    Verb {
        name: "reset",
        actor: Actor::Client,
        usage: "reset",
        does: "close with SO_LINGER 0, so a TCP peer sees RST",
    },
    Verb {
        name: "settimeout",
        actor: Actor::Client,
        usage: "settimeout 200ms",
        does: "Python's settimeout: a recv or send that waits longer fails",
    },
    Verb {
        name: "setblocking",
        actor: Actor::Client,
        usage: "setblocking true | false",
        does: "Python's setblocking: a non-blocking call never waits",
    },
    Verb {
        name: "setsockopt",
        actor: Actor::Client,
        usage: "setsockopt SO_SNDBUF | SO_RCVBUF | TCP_NODELAY N [= N]",
        does: "set a socket option, show what getsockopt then says, and check it if given",
    },
    Verb {
        name: "ignore-rest",
        actor: Actor::Client,
        usage: "ignore-rest",
        does: "the lesson does not read what is left for this client: no end-of-file check for unread bytes",
    },
    Verb {
        name: "queued",
        actor: Actor::Client,
        usage: "queued [recv=N] [send=N] [unsent=N]",
        does: "the bytes waiting in the kernel's queues for this socket (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD), checked where given",
    },
    Verb {
        name: "connect",
        actor: Actor::Crowd,
        usage: "connect N",
        does: "open N connections to the server at once and hold them, never more waiting for accept than the listen queue holds; the descriptor limit and the local ports are checked, and shown, first",
    },
    Verb {
        name: "send",
        actor: Actor::Crowd,
        usage: "send BYTES",
        does: "every connection of the crowd sends BYTES, once",
    },
    Verb {
        name: "recv",
        actor: Actor::Crowd,
        usage: "recv N = BYTES",
        does: "every connection of the crowd receives BYTES, by recv(N) calls, all within the step's timeout",
    },
    Verb {
        name: "close",
        actor: Actor::Crowd,
        usage: "close",
        does: "close every connection of the crowd, and wait until the lab's own server has seen each one end",
    },
    Verb {
        name: "log",
        actor: Actor::Server,
        usage: "log PATTERN",
        does: "the server logged a line matching PATTERN, in any order, that no other step matched",
    },
    Verb {
        name: "log-next",
        actor: Actor::Server,
        usage: "log-next PATTERN",
        does: "the first line logged after the one the previous log step matched, and not yet matched, matches PATTERN",
    },
    Verb {
        name: "received-all",
        actor: Actor::Server,
        usage: "received-all CLIENT",
        does: "every byte the client sent arrived, in order, across the server's recvs",
    },
    Verb {
        name: "stop",
        actor: Actor::Server,
        usage: "stop",
        does: "stop the server: it closes every connection",
    },
    Verb {
        name: "resume-accept",
        actor: Actor::Server,
        usage: "resume-accept",
        does: "start calling accept on a server started with accept=paused",
    },
    Verb {
        name: "bind-again",
        actor: Actor::Server,
        usage: "bind-again [reuseaddr=off] = bound | error PATTERN",
        does: "try to bind a second server on the same address while the first still runs",
    },
    Verb {
        name: "restart",
        actor: Actor::Server,
        usage: "restart [reuseaddr=off] = bound | error PATTERN",
        does: "stop the server and bind a new one on the same address at once",
    },
    Verb {
        name: "replace",
        actor: Actor::Server,
        usage: "replace SETTING...",
        does: "stop the server and start another on the same address with these settings changed (engine=epoll, max-clients=1, ...)",
    },
    Verb {
        name: "threads",
        actor: Actor::Server,
        usage: "threads = N | cores",
        does: "the server's threads, found in /proc/self/task, are N (`cores`: one per core, as the epoll engine runs them), waiting up to the timeout; shows what they do and how often they were switched out",
    },
    Verb {
        name: "memory",
        actor: Actor::Server,
        usage: "memory [< N MiB | KiB]",
        does: "this process's resident memory (Rss in /proc/self/smaps_rollup) and its growth since the server started, checked to be below N if given",
    },
];

/// The kernel's verbs, listed apart so the client and server tables above read as the
/// walkthrough does.
pub const KERNEL_VERBS: &[Verb] = &[
    Verb {
        name: "sysctl",
        actor: Actor::Kernel,
        usage: "sysctl NAME [NAME ...]",
        does: "print this machine's value of each sysctl, and what it decides",
    },
    Verb {
        name: "syn-schedule",
        actor: Actor::Kernel,
        usage: "syn-schedule",
        does: "print when this machine resends an unanswered SYN and when connect gives up",
    },
    Verb {
        name: "state",
        actor: Actor::Kernel,
        usage: "state CLIENT | server of CLIENT = STATE",
        does: "the kernel holds that end of the connection in STATE (ESTABLISHED, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, ...), waiting for it up to the timeout",
    },
    Verb {
        name: "accept-queue",
        actor: Actor::Kernel,
        usage: "accept-queue = N",
        does: "N connections, handshake done, wait in the listening socket's queue for accept, waiting for the count up to the timeout",
    },
];

/// What a wire step may say. Its "verb" is a shape, not a word.
pub const WIRE_VERBS: &[Verb] = &[
    Verb {
        name: "FROM → TO",
        actor: Actor::Wire,
        usage: "FROM → TO FLAGS... [len=N] [win=N]",
        does: "a segment from FROM to TO with exactly these flags (SYN ACK FIN RST PSH, or UDP), a payload of len bytes and a window of win bytes if given, after the one the previous wire step matched",
    },
    Verb {
        name: "no segment",
        actor: Actor::Wire,
        usage: "no segment for 300ms",
        does: "nothing crosses the wire for that long",
    },
];

/// The names of the verbs `actor` may use, for error messages.
pub fn verb_names(actor: Actor) -> String {
    VERBS
        .iter()
        .chain(KERNEL_VERBS)
        .chain(WIRE_VERBS)
        .filter(|verb| verb.actor == actor)
        .map(|verb| verb.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(&format!("# t\n{text}\n")).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn a_servers_settings_are_applied_and_read_back() {
        let spec = scenario(
            "server tcp recv-size=8 ack=ok backlog=3 max-clients=2 idle-timeout=300ms engine=epoll host=\"::1\" accept=paused",
        )
        .server;
        let mut config = ServerConfig::default();
        for setting in &spec.settings {
            setting.apply_to(&mut config);
        }
        assert_eq!(config.recv_size, 8);
        assert_eq!(config.ack, b"ok");
        assert_eq!(config.backlog, 3);
        assert_eq!(config.max_clients, 2);
        assert_eq!(config.idle_timeout, Some(Duration::from_millis(300)));
        assert_eq!(config.engine, Engine::Epoll);
        assert_eq!(spec.engine(), Some(Engine::Epoll));
        assert_eq!(spec.host(), Some("::1"));
        assert_eq!(spec.accept(), AcceptMode::Paused);
        // An idle timeout of 0 is none at all.
        let mut config = ServerConfig::default();
        Setting::IdleTimeout(Duration::ZERO).apply_to(&mut config);
        assert_eq!(config.idle_timeout, None);
        let plain = scenario("server tcp").server;
        assert_eq!(
            (plain.engine(), plain.host(), plain.accept()),
            (None, None, AcceptMode::On)
        );
    }

    #[test]
    fn a_kind_is_found_by_its_name() {
        for kind in ServerKind::ALL {
            assert_eq!(ServerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ServerKind::from_name("sctp"), None);
        let datagram: Vec<&str> = ServerKind::ALL
            .into_iter()
            .filter(|kind| kind.is_datagram())
            .map(ServerKind::name)
            .collect();
        assert_eq!(datagram, ["udp", "unix-dgram"]);
    }

    #[test]
    fn a_lesson_is_tested_on_the_engines_it_can_run_on() {
        let engines = |text: &str| scenario(text).engines_to_test();
        assert_eq!(
            engines("server tcp"),
            [Engine::Threads, Engine::Iterative, Engine::Epoll]
        );
        assert_eq!(
            engines("server tcp\nneeds two-clients-at-once"),
            [Engine::Threads, Engine::Epoll]
        );
        assert_eq!(engines("server tcp engine=iterative"), [Engine::Iterative]);
        assert_eq!(engines("server http"), [Engine::Threads, Engine::Epoll]);
        assert_eq!(engines("server udp"), []);
    }

    #[test]
    fn a_lesson_moved_to_another_engine_names_only_that_one() {
        let moved = scenario("server tcp engine=threads recv-size=8")
            .on_engine(Engine::Epoll)
            .unwrap();
        assert_eq!(
            moved.server.settings,
            [Setting::RecvSize(8), Setting::Engine(Engine::Epoll)]
        );
        assert_eq!(
            scenario("server http").on_engine(Engine::Iterative).err(),
            Some(
                "the http server does not run on the iterative engine; it runs on: threads, epoll"
                    .into()
            )
        );
        assert_eq!(
            scenario("server udp").on_engine(Engine::Threads).err(),
            Some("the udp server has no engines: there are no connections to serve".into())
        );
    }

    #[test]
    fn what_a_lesson_needs_to_run_is_read_from_its_steps() {
        let plain = scenario("server tcp\nalice: connect");
        assert_eq!(plain.largest_crowd(), None);
        assert!(!plain.measures_its_process());
        assert!(!plain.watches_the_wire());
        let big = scenario(
            "server tcp\ncrowd: connect 5\ncrowd: close\ncrowd: connect 7\ncrowd: close\nserver: memory\nwire: no segment for 10ms",
        );
        assert_eq!(big.largest_crowd(), Some(7));
        assert!(big.measures_its_process());
        assert!(big.watches_the_wire());
    }
}
