//! Playing a scenario against a real server, over real sockets.
//!
//! The runner starts the server the file names (port 0, or a Unix socket in a fresh
//! temporary directory), then plays each step in order. Every wait is bounded by the
//! scenario's `timeout` and ends on readiness: a `recv` returns, a log line arrives, a
//! connect completes. Nothing sleeps "long enough".
//!
//! The server runs on threads of its own and reports what it does as structured events
//! ([`ServerEvent`]), each stamped on the shared [`Timeline`] where it happened. The runner
//! stamps the clients' calls on the same timeline, so the transcript shows both sides in the
//! order things happened (see [`super::timeline`] for which point of a call is stamped).
//!
//! The runner is split by who acts: `client.rs` plays the clients' verbs, `crowd.rs` the
//! crowd's (thousands of connections at once, counted rather than shown one by one),
//! `server.rs` the server's checks, its life (stop, restart, replace, resume accepting) and
//! its cost (threads, memory, read through `process.rs` from `/proc`), `kernel.rs` and
//! `wire.rs` what the kernel and the wire say; this file starts the server, keeps the
//! transcript and shows the server's events.

mod client;
mod crowd;
mod kernel;
mod process;
mod server;
mod wire;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use super::report::{Entry, EntryKind, Fact, Failure, StepError, Transcript, show_bytes};
use super::syntax::{AcceptMode, Action, Scenario, ServerKind};
use super::timeline::{Moment, ServerEvent, Timeline};
use crate::backlog::PendingConnect;
use crate::endpoint::{Address, Endpoint, Stream};
use crate::engine::RunningServer;
use crate::error::Error;
use crate::http::server::{HttpConfig, HttpEvent, HttpServer};
use crate::kernel::Queues;
use crate::proxy::{Proxy, ProxyEvent, Way};
use crate::server::{Event, Server, ServerConfig};
use crate::udp::{DatagramClient, DatagramServer};
use crate::wire::{Capture, Segment};

pub use crowd::room_for_crowd;

/// Where the client side of a scenario connects.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start the server the scenario names, on a free port.
    OwnServer,
    /// Use a server that is already running (perhaps written in another language). Steps
    /// about the server's log or life are skipped with a note.
    External(Endpoint),
}

/// Runs `scenario` (read from `file`, named in messages) and returns its transcript. Each
/// transcript line is also passed to `observe` as soon as its place in the order is known,
/// for a live demo.
pub fn run(
    scenario: &Scenario,
    file: &str,
    target: &Target,
    observe: &mut dyn FnMut(&Entry),
) -> Result<Transcript, Failure> {
    run_with(scenario, file, target, Views::default(), observe)
}

/// What a run shows besides the socket calls.
#[derive(Default)]
pub struct Views<'a> {
    /// The wire's view: every segment this capture catches is shown among the socket calls,
    /// at the moment the kernel stamped it, and `wire:` steps check them. The capture should
    /// see only this lesson's traffic (a private network namespace, [`crate::namespace`]).
    pub wire: Option<&'a mut Capture>,
    /// The kernel's view: after every step, a line for each of the scenario's TCP sockets
    /// whose state changed (ESTABLISHED, FIN_WAIT2, TIME_WAIT, ...).
    pub kernel: bool,
    /// The run is in the lab's private network namespace (`run --wire`): its per-network
    /// sysctls start from the kernel's defaults, not the machine's settings, and the
    /// lesson's `kernel: sysctl` lines say so.
    pub private_network: bool,
}

/// [`run`], with the wire's and the kernel's views.
pub fn run_with(
    scenario: &Scenario,
    file: &str,
    target: &Target,
    views: Views<'_>,
    observe: &mut dyn FnMut(&Entry),
) -> Result<Transcript, Failure> {
    let mut runner = Runner {
        scenario,
        transcript: Transcript::default(),
        observe,
        timeline: Arc::new(Timeline::default()),
        server: None,
        endpoint: Endpoint::inet("127.0.0.1", 0),
        config: ServerConfig::default(),
        clients: HashMap::new(),
        log: LogBook::default(),
        external: matches!(target, Target::External(_)),
        stops: Vec::new(),
        accepting: scenario.server.accept() == AcceptMode::On,
        proxy: None,
        aliases: HashMap::new(),
        second: None,
        wire: WireView {
            capture: views.wire,
            ..WireView::default()
        },
        kernel_view: views.kernel.then(HashMap::new),
        private_network: views.private_network,
        said_private: false,
        crowd: None,
        crowd_members: HashSet::new(),
        crowd_tally: crowd::Tally::default(),
        ended_by_server: HashSet::new(),
        memory_at_start: None,
        replaced: Vec::new(),
        _socket_dir: None,
    };
    runner.record(Entry::new(EntryKind::Title, scenario.title.clone()));
    if let Err(error) = runner.start(target) {
        return Err(runner.fail(
            file,
            1,
            format!("server {}", scenario.server.kind.name()),
            error,
        ));
    }
    for step in &scenario.steps {
        if let Err(error) = runner.play(&step.action) {
            return Err(runner.fail(file, step.line, step.action.to_string(), error));
        }
        runner.show_kernel_changes();
    }
    // What the server did up to the end of the file belongs to the lesson; what it does while
    // being stopped afterwards does not.
    runner.catch_up();
    if let Err(error) = runner
        .check_nothing_left()
        .and_then(|()| runner.check_no_unexpected_problem())
    {
        return Err(runner.fail(
            file,
            scenario.last_line,
            "(the end of the file)".into(),
            error,
        ));
    }
    // The crowd leaves before the server stops, as clients do at the end of every lesson.
    drop(runner.crowd.take());
    if let Some(proxy) = runner.proxy.take() {
        let _ = proxy.stop();
    }
    if let Some(second) = runner.second.take() {
        let _ = second.running.stop();
    }
    if let Some(server) = runner.server.take() {
        server.stop().map_err(|e| {
            runner.fail(
                file,
                scenario.last_line,
                "(the end of the file: stopping the server)".into(),
                StepError::Other(format!("the server failed: {e}")),
            )
        })?;
    }
    Ok(runner.transcript)
}

/// A client's socket: a stream, a datagram socket, or a connect still under way.
enum ClientSocket {
    Stream(Stream),
    Datagram(DatagramClient),
    Connecting(PendingConnect),
}

struct Client {
    socket: Option<ClientSocket>,
    /// Every byte this client sent, to check `received-all` against.
    sent: Vec<u8>,
    /// The client's address as the server prints it.
    address: Option<Address>,
    /// False after `setblocking false`: calls that would wait fail with "would block".
    blocking: bool,
    /// Bytes read past the end of one HTTP response, kept for the next `recv-response`.
    unread: Vec<u8>,
    /// The second server's name, for a client that connected to it (`connect-to`).
    on: Option<String>,
    /// `ignore-rest`: bytes left unread at the end of the file are not a failure.
    ignores_rest: bool,
}

/// One line the server logged.
struct Logged {
    moment: Moment,
    /// Which of the lesson's servers logged it: `server`, or the second server's name.
    server: String,
    text: String,
    /// A `log` or `log-next` step has matched it.
    matched: bool,
    /// The server reports it as a problem (on stderr): a lesson must expect it.
    problem: bool,
}

/// The server's log as the steps see it, and what its recvs returned per peer.
#[derive(Default)]
struct LogBook {
    lines: Vec<Logged>,
    /// The line the last `log` or `log-next` step matched: `log-next` looks after it.
    cursor: Option<Moment>,
    received: HashMap<Address, Vec<Vec<u8>>>,
}

struct Runner<'a> {
    scenario: &'a Scenario,
    transcript: Transcript,
    observe: &'a mut dyn FnMut(&Entry),
    timeline: Arc<Timeline>,
    server: Option<RunningServer>,
    endpoint: Endpoint,
    config: ServerConfig,
    clients: HashMap<String, Client>,
    log: LogBook,
    external: bool,
    /// The server calls accept (it was not started with `accept=paused`, or has resumed).
    accepting: bool,
    /// The hostile network in front of the server (`network ...`), and the address the
    /// server sees for each client through it: upstream address → client address.
    proxy: Option<RunningServer>,
    aliases: HashMap<Address, Address>,
    /// The lesson's second server (`server udp ... as NAME`), if it has one.
    second: Option<Second>,
    /// When the server was being stopped (from, to): a connection that ends then was closed
    /// by the server itself, whatever its recv returned.
    stops: Vec<(Moment, Moment)>,
    wire: WireView<'a>,
    /// With `--kernel`: the scenario's sockets as last shown.
    kernel_view: Option<kernel::Snapshot>,
    /// See [`Views::private_network`].
    private_network: bool,
    /// The note about the private network's sysctls was printed.
    said_private: bool,
    /// The crowd (`crowd: connect N`), its connections' addresses, and what the server did
    /// for them that the transcript has not said yet.
    crowd: Option<crowd::Crowd>,
    crowd_members: HashSet<Address>,
    crowd_tally: crowd::Tally,
    /// The clients whose connection the server has reported ended.
    ended_by_server: HashSet<String>,
    /// This process's resident memory when the server (last) started, for `server: memory`.
    memory_at_start: Option<u64>,
    /// The settings `server: replace` has changed, by key.
    replaced: Vec<&'static str>,
    /// A Unix socket's directory, removed when the runner is dropped.
    _socket_dir: Option<TempDir>,
}

/// The wire's view of the run: the capture, the segments it caught that are not shown yet,
/// and those shown, for `wire:` steps to check.
#[derive(Default)]
struct WireView<'a> {
    capture: Option<&'a mut Capture>,
    /// Caught, not yet placed in the transcript; oldest first.
    pending: Vec<Segment>,
    /// In the transcript, for `wire:` steps to check.
    shown: Vec<Caught>,
    /// The last segment a `wire:` step matched: the next step looks after it.
    cursor: Option<std::time::SystemTime>,
    /// Each TCP direction's numbers so far.
    sequences: wire::Sequences,
}

/// A log callback for a server: stamps each event on `timeline` on the server's own thread.
fn forward<E: Into<ServerEvent>>(timeline: &Arc<Timeline>) -> Arc<dyn Fn(E) + Send + Sync> {
    let timeline = Arc::clone(timeline);
    Arc::new(move |event: E| timeline.server_event(event.into()))
}

impl Runner<'_> {
    /// Adds `entry` as happening now.
    fn record(&mut self, entry: Entry) {
        let now = self.timeline.now();
        self.record_at(now, entry);
    }

    /// Adds `entry` as happening at `moment`: first whatever the server did, and whatever
    /// crossed the wire, before then.
    fn record_at(&mut self, moment: Moment, entry: Entry) {
        let events = self.timeline.take_before(moment);
        self.show_until(events, moment.wall);
        self.emit(entry);
    }

    /// Shows `events` (all of them) and the segments caught before `until`, merged in the
    /// order they happened.
    fn show_until(&mut self, events: Vec<(Moment, ServerEvent)>, until: std::time::SystemTime) {
        self.learn_aliases(&events);
        self.pull_wire();
        let split = self
            .wire
            .pending
            .partition_point(|segment| segment.stamped < until);
        let mut segments = self.wire.pending.drain(..split).peekable();
        let mut shown = Vec::new();
        for (moment, event) in events {
            while let Some(segment) = segments.next_if(|segment| segment.stamped < moment.wall) {
                shown.push(Shown::Segment(segment));
            }
            shown.push(Shown::Event(moment, event));
        }
        shown.extend(segments.map(Shown::Segment));
        for item in shown {
            match item {
                Shown::Event(moment, event) => self.show(moment, event),
                Shown::Segment(segment) => self.show_segment(segment),
            }
        }
    }

    /// Behind the lesson's network the server knows a client by the proxy's address for it,
    /// which the proxy reports once its own connect returns: often after the server's accept.
    /// Learned before any of `events` is shown, it names the client in that accept too.
    fn learn_aliases(&mut self, events: &[(Moment, ServerEvent)]) {
        for (_, event) in events {
            if let ServerEvent::Network(ProxyEvent::Relaying { client, upstream }) = event {
                self.aliases.insert(upstream.clone(), client.clone());
            }
        }
    }

    fn emit(&mut self, entry: Entry) {
        // What the server did for the crowd, if anything, came before this entry.
        self.flush_crowd();
        // An empty `#` line separates paragraphs of narration; there is nothing to separate
        // right after the title or another break.
        if entry.kind == EntryKind::Narration
            && entry.text.is_empty()
            && self
                .transcript
                .entries
                .last()
                .is_none_or(|last| last.kind != EntryKind::Narration || last.text.is_empty())
        {
            return;
        }
        (self.observe)(&entry);
        self.transcript.entries.push(entry);
    }

    /// Shows everything the server has reported, and the wire has carried, so far.
    fn catch_up(&mut self) {
        let now = self.timeline.now();
        let events = self.timeline.take_before(now);
        self.show_until(events, now.wall);
        self.flush_crowd();
    }

    fn fail(&mut self, file: &str, line: usize, step: String, error: StepError) -> Failure {
        self.catch_up();
        let hint = self
            .scenario
            .steps
            .iter()
            .find(|candidate| candidate.line == line)
            .and_then(|failed| failed.hint.as_deref().map(Box::from));
        Failure {
            file: file.to_string(),
            line,
            step: step.into(),
            message: error.to_string(),
            symptom: error.symptom(),
            hint,
            transcript: self.transcript.clone(),
        }
    }

    fn timeout(&self) -> std::time::Duration {
        self.scenario.timeout
    }

    /// When a step that starts now must be over: every wait of a step ends by it.
    fn step_deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + self.timeout()
    }

    fn kind(&self) -> ServerKind {
        self.scenario.server.kind
    }

    fn start(&mut self, target: &Target) -> Result<(), StepError> {
        self.config = self.scenario.server.config();
        if let Target::External(endpoint) = target {
            self.endpoint = endpoint.clone();
            self.record(Entry::new(
                EntryKind::Note,
                format!("(client side only, against the server at {endpoint})"),
            ));
            return self.start_network();
        }
        let host = self.scenario.server.host().unwrap_or("127.0.0.1");
        self.endpoint = match self.kind() {
            ServerKind::Tcp | ServerKind::Udp | ServerKind::Http => Endpoint::inet(host, 0),
            ServerKind::Unix | ServerKind::UnixDgram => {
                let dir = TempDir::new()
                    .map_err(|e| format!("cannot create a directory for the socket: {e}"))?;
                let path = dir.path.join("server.sock");
                self._socket_dir = Some(dir);
                Endpoint::Unix(path)
            }
            ServerKind::None => {
                // Bind a free port and close it again: now nobody listens there.
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|listener| listener.local_addr())
                    .map_err(|e| format!("cannot find a free port: {e}"))?
                    .port();
                self.endpoint = Endpoint::inet("127.0.0.1", port);
                self.record(Entry::new(
                    EntryKind::Note,
                    format!("(no server: nothing listens on {})", self.endpoint),
                ));
                return Ok(());
            }
        };
        self.config.endpoint = self.endpoint.clone();
        self.bind_and_spawn(self.scenario.server.accept())
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let what = self.describe_server();
        let text = format!("server listening on {} ({what})", self.endpoint);
        let text = if self.kind().is_datagram() {
            format!("server bound to {} ({what})", self.endpoint)
        } else {
            text
        };
        self.record(Entry::new(EntryKind::Server, text));
        if self.scenario.server.accept() == AcceptMode::Paused {
            self.record(Entry::new(
                EntryKind::Server,
                "      server does not call accept: connections wait in the listen queue",
            ));
        }
        self.start_second()?;
        self.start_network()
    }

    /// What the server is, in a few words: its kind and the settings that shape the lesson.
    /// The engine and the cap on clients are said when the lesson chose them.
    fn describe_server(&self) -> String {
        let chosen = |key: &str| {
            self.scenario
                .server
                .settings
                .iter()
                .any(|setting| setting.key() == key)
                || self.replaced.contains(&key)
        };
        let mut how = String::new();
        if chosen("engine") {
            how.push_str(&format!(", engine {}", self.config.engine));
        }
        if chosen("max-clients") {
            let most = self.config.max_clients;
            how.push_str(&format!(
                ", at most {} client{} at once",
                super::report::thousands(most),
                if most == 1 { "" } else { "s" }
            ));
        }
        match self.kind() {
            ServerKind::Http => format!("the web server{how}"),
            kind if kind.is_datagram() => format!(
                "{} ack server, recv size {}: it binds and waits for datagrams, no listen",
                kind.name(),
                self.config.recv_size
            ),
            kind => format!(
                "{} ack server, recv size {}, listen backlog {}{how}",
                kind.name(),
                self.config.recv_size,
                self.config.backlog
            ),
        }
    }

    /// The lesson's second server, beside the first (`server udp ... as NAME`).
    fn start_second(&mut self) -> Result<(), StepError> {
        let Some((name, spec)) = &self.scenario.second else {
            return Ok(());
        };
        let kind = spec.kind;
        let mut config = spec.config();
        config.endpoint = match kind {
            ServerKind::Unix | ServerKind::UnixDgram => {
                if self._socket_dir.is_none() {
                    self._socket_dir =
                        Some(TempDir::new().map_err(|e| {
                            format!("cannot create a directory for the socket: {e}")
                        })?);
                }
                let dir = self
                    ._socket_dir
                    .as_ref()
                    .map(|dir| dir.path.clone())
                    .unwrap_or_default();
                Endpoint::Unix(dir.join(format!("{name}.sock")))
            }
            _ => Endpoint::inet(spec.host().unwrap_or("127.0.0.1"), 0),
        };
        let running = match kind {
            ServerKind::Udp | ServerKind::UnixDgram => DatagramServer::bind(config.clone())
                .map(|server| server.spawn(forward(&self.timeline))),
            ServerKind::Http => HttpServer::bind(HttpConfig {
                endpoint: config.endpoint.clone(),
                engine: config.engine,
                ..HttpConfig::default()
            })
            .map(|server| server.spawn(forward(&self.timeline))),
            // The parser refuses `server none as NAME`.
            ServerKind::None => return Err("a second server must be one that listens".into()),
            _ => Server::bind(config.clone()).map(|server| server.spawn(forward(&self.timeline))),
        }
        .map_err(|e| format!("cannot start the server {name}: {e}"))?;
        config.endpoint = running.addr.endpoint();
        let what = match kind {
            ServerKind::Http => "a web server".to_string(),
            kind => format!("{} ack server, recv size {}", kind.name(), config.recv_size),
        };
        self.record(Entry::new(
            EntryKind::Server,
            format!(
                "{name} {} {} ({what})",
                if kind.is_datagram() {
                    "bound to"
                } else {
                    "listening on"
                },
                running.addr,
            ),
        ));
        self.second = Some(Second {
            name: name.clone(),
            kind,
            config,
            running,
        });
        Ok(())
    }

    /// Which server a peer talks to: its name as the diagram shows it, and its settings.
    fn server_of(&self, peer: &Address) -> (&str, &ServerConfig) {
        let on_second = self
            .name_of(peer)
            .and_then(|name| self.clients.get(&name))
            .and_then(|client| client.on.as_ref())
            .is_some();
        match &self.second {
            Some(second) if on_second => (second.name.as_str(), &second.config),
            _ => ("server", &self.config),
        }
    }

    /// With `network ...`: a proxy in front of the server, which the clients connect to.
    fn start_network(&mut self) -> Result<(), StepError> {
        let Some(network) = self.scenario.network else {
            return Ok(());
        };
        let listen = match &self.endpoint {
            Endpoint::Inet { .. } => Endpoint::inet("127.0.0.1", 0),
            Endpoint::Unix(path) => Endpoint::Unix(path.with_extension("network.sock")),
        };
        let proxy = Proxy::bind(&listen, self.endpoint.clone(), network)
            .map_err(|e| format!("cannot start the network's proxy: {e}"))?
            .spawn(forward(&self.timeline));
        self.record(Entry::new(
            EntryKind::Wire,
            format!(
                "   network  between the clients and the server, at {}: {network}",
                proxy.addr
            ),
        ));
        self.proxy = Some(proxy);
        Ok(())
    }

    /// Where clients connect: the network's proxy if there is one, else the server.
    fn client_endpoint(&self) -> Endpoint {
        self.proxy
            .as_ref()
            .map_or_else(|| self.endpoint.clone(), |proxy| proxy.addr.endpoint())
    }

    /// Binds the scenario's server at `self.endpoint` and starts it on a thread. Afterwards
    /// `self.endpoint` is the address actually bound (the port the kernel chose).
    fn bind_and_spawn(&mut self, accept: AcceptMode) -> Result<(), Error> {
        self.memory_at_start = process::resident_memory().ok();
        let server = match self.kind() {
            ServerKind::Udp | ServerKind::UnixDgram => {
                DatagramServer::bind(self.config.clone())?.spawn(forward(&self.timeline))
            }
            ServerKind::Http => {
                let config = HttpConfig {
                    endpoint: self.config.endpoint.clone(),
                    engine: self.config.engine,
                    ..HttpConfig::default()
                };
                HttpServer::bind(config)?.spawn(forward(&self.timeline))
            }
            _ => {
                let server = Server::bind(self.config.clone())?;
                if accept == AcceptMode::Paused {
                    server.handle().pause_accept();
                }
                server.spawn(forward(&self.timeline))
            }
        };
        self.endpoint = server.addr.endpoint();
        self.config.endpoint = self.endpoint.clone();
        self.server = Some(server);
        Ok(())
    }

    fn play(&mut self, action: &Action) -> Result<(), StepError> {
        match action {
            Action::Narrate(text) => {
                let entry = Entry::new(EntryKind::Narration, text.clone());
                // A paragraph of narration is one thing said at one moment: the server's
                // events go before it or after it, never between its lines.
                if self
                    .transcript
                    .entries
                    .last()
                    .is_some_and(|last| last.kind == EntryKind::Narration)
                {
                    self.emit(entry);
                } else {
                    self.record(entry);
                }
                Ok(())
            }
            Action::Client { name, call } => self.client_call(name, call),
            Action::Server(call) if self.external => {
                self.record(Entry::new(
                    EntryKind::Note,
                    format!("(skipped against another server: server: {call})"),
                ));
                Ok(())
            }
            Action::Server(call) => self.server_call(call),
            Action::Kernel(call) => self.kernel_call(call),
            Action::Wire(call) => self.wire_call(call),
            Action::Crowd(call) => self.crowd_call(call),
        }
    }

    /// Puts one server event in the transcript and the log book.
    fn show(&mut self, moment: Moment, event: ServerEvent) {
        if let ServerEvent::Ack(Event::Disconnected { peer, .. }) = &event
            && let Some(name) = self.name_of(peer)
        {
            self.ended_by_server.insert(name);
        }
        if self.tally_crowd(moment, &event) {
            return;
        }
        let text = event.log_line();
        let problem = match &event {
            ServerEvent::Ack(event) => event.is_problem(),
            ServerEvent::Http(event) => event.is_problem(),
            ServerEvent::Network(_) => false,
        };
        for entry in self.describe(moment, &event) {
            self.emit(entry);
        }
        let server = match &event {
            ServerEvent::Ack(event) => event.peer().map(|peer| self.server_of(peer).0),
            _ => None,
        }
        .unwrap_or("server")
        .to_string();
        if let ServerEvent::Ack(
            Event::Message { peer, data } | Event::Truncated { peer, data, .. },
        ) = event
        {
            self.log.received.entry(peer).or_default().push(data);
        }
        self.log.lines.push(Logged {
            moment,
            server,
            text,
            matched: false,
            problem,
        });
    }

    /// The diagram's lines for one server event: what the server's socket calls did, in the
    /// walkthrough's words, or the server's own note when it is not a socket call.
    fn describe(&self, moment: Moment, event: &ServerEvent) -> Vec<Entry> {
        let server = |text: String| Entry::new(EntryKind::Server, format!("      {text}"));
        let named = |peer: &Address| self.name_of(peer);
        let shown = |peer: &Address| {
            named(peer).map_or_else(|| peer.to_string(), |name| format!("{name} ({peer})"))
        };
        match event {
            ServerEvent::Ack(Event::Connected { peer }) => {
                // Behind the lesson's network, accept returns the proxy's end, not the
                // client's: the server never learns the client's own address.
                let via = if self.aliases.contains_key(peer) {
                    format!("the network's connection for {}", shown(peer))
                } else {
                    shown(peer)
                };
                let (label, _) = self.server_of(peer);
                let entry = server(format!("{label} accept() → {via}"));
                match named(peer) {
                    Some(client) => vec![entry.with_fact(Fact::Accept { client })],
                    None => vec![entry],
                }
            }
            ServerEvent::Ack(Event::Message { peer, data }) => self.recv_and_ack(peer, data, None),
            ServerEvent::Ack(Event::Truncated {
                peer,
                data,
                datagram_len,
            }) => self.recv_and_ack(peer, data, Some(*datagram_len)),
            ServerEvent::Ack(Event::Disconnected { peer, .. })
                if self
                    .stops
                    .iter()
                    .any(|(from, to)| (*from..=*to).contains(&moment)) =>
            {
                vec![server(format!(
                    "server has shut down and closed its connection with {} (it is stopping)",
                    shown(peer)
                ))]
            }
            ServerEvent::Ack(Event::Disconnected { peer, reason: None }) => {
                let (label, config) = self.server_of(peer);
                let entry = server(format!(
                    "{label} recv({}) from {} → 0 bytes: end of stream; {label} close()",
                    config.recv_size,
                    shown(peer)
                ));
                vec![match named(peer) {
                    Some(client) => entry.with_fact(Fact::ServerSawEnd { client }),
                    None => entry,
                }]
            }
            ServerEvent::Ack(Event::Disconnected {
                peer,
                reason: Some(reason),
            }) => {
                let entry = server(format!(
                    "server: the connection with {} ended: {reason}; server close()",
                    shown(peer)
                ));
                let reset =
                    crate::error::describe(&io::Error::from(io::ErrorKind::ConnectionReset));
                vec![match named(peer) {
                    Some(client) if *reason == reset => {
                        entry.with_fact(Fact::ServerSawEnd { client })
                    }
                    _ => entry,
                }]
            }
            ServerEvent::Http(HttpEvent::Request {
                peer,
                request_line,
                status,
                bytes,
            }) => {
                let (label, _) = self.server_of(peer);
                let received = server(format!(
                    "{label} has a whole request from {} (from its recvs): \"{request_line}\"",
                    shown(peer)
                ));
                let sent = server(format!(
                    "{label} ──{status} response ({bytes} B)──▶ {}",
                    named(peer).unwrap_or_else(|| peer.to_string())
                ));
                match named(peer) {
                    Some(client) => vec![
                        received.with_fact(Fact::ServerRecv {
                            client: client.clone(),
                            len: None,
                        }),
                        sent.with_fact(Fact::ServerSend {
                            client,
                            len: *bytes,
                        }),
                    ],
                    None => vec![received, sent],
                }
            }
            ServerEvent::Network(event) => vec![self.describe_network(event)],
            // Busy, accept failures, refusals, replies that failed: the server's own words.
            other => vec![server(format!("server log: {}", other.log_line()))],
        }
    }

    /// What the hostile network did, named by client.
    fn describe_network(&self, event: &ProxyEvent) -> Entry {
        let who = |client: &Address| self.name_of(client).unwrap_or_else(|| client.to_string());
        let text = match event {
            ProxyEvent::Relaying { client, upstream } => {
                format!(
                    "{}'s connection goes on to the server from {upstream}",
                    who(client)
                )
            }
            ProxyEvent::Forwarded {
                client,
                way,
                from,
                to,
                pieces,
            } => {
                let (source, sink) = match way {
                    Way::ToServer => (who(client), "server".to_string()),
                    Way::ToClient => ("server".to_string(), who(client)),
                };
                format!(
                    "{source} → {sink}: bytes {from}..{to} passed on as {pieces} piece{}",
                    if *pieces == 1 { "" } else { "s" }
                )
            }
            ProxyEvent::Cut {
                client,
                after,
                reset,
            } => format!(
                "cuts {}'s connection after {after} bytes, both ways, with {}",
                who(client),
                if *reset { "RST" } else { "FIN" }
            ),
            ProxyEvent::Failed { client, error } => format!("{}: {error}", who(client)),
        };
        Entry::new(EntryKind::Wire, format!("   network  {text}"))
    }

    /// A recv that returned data, and the ack the server sends for it.
    fn recv_and_ack(&self, peer: &Address, data: &[u8], datagram: Option<usize>) -> Vec<Entry> {
        let name = self.name_of(peer);
        let who = name.clone().unwrap_or_else(|| peer.to_string());
        let (bytes, _) = show_bytes(data);
        let truncated = match datagram {
            Some(whole) => format!(
                " (the datagram had {whole} bytes, recv read {}, the other {} were discarded)",
                data.len(),
                whole.saturating_sub(data.len())
            ),
            None => String::new(),
        };
        let (label, config) = self.server_of(peer);
        let received = Entry::new(
            EntryKind::Server,
            format!(
                "      {label} recv({}) from {who} → {bytes}{truncated}",
                config.recv_size
            ),
        )
        .with_bytes(data);
        let ack = &config.ack;
        let (shown_ack, _) = show_bytes(ack);
        let sent = Entry::new(
            EntryKind::Server,
            format!("      {label} ──{shown_ack} ({} B)──▶ {who}", ack.len()),
        )
        .with_bytes(ack);
        match name {
            Some(client) => vec![
                received.with_fact(Fact::ServerRecv {
                    client: client.clone(),
                    len: Some(data.len()),
                }),
                sent.with_fact(Fact::ServerSend {
                    client,
                    len: ack.len(),
                }),
            ],
            None => vec![received, sent],
        }
    }

    /// The client with this address, if exactly one has it (Unix clients that never bound a
    /// path all share the address `unnamed`).
    fn name_of(&self, address: &Address) -> Option<String> {
        // Through the network's proxy the server sees the proxy's address for a client.
        let address = self.aliases.get(address).unwrap_or(address);
        let mut named = self
            .clients
            .iter()
            .filter(|(_, client)| client.address.as_ref() == Some(address));
        match (named.next(), named.next()) {
            (Some((name, _)), None) => Some(name.clone()),
            _ => None,
        }
    }

    fn client(&mut self, name: &str) -> Result<&mut Client, StepError> {
        self.clients.get_mut(name).ok_or_else(|| {
            StepError::Misuse(format!(
                "there is no client {name}: add `{name}: connect` before this step"
            ))
        })
    }

    fn socket(&mut self, name: &str) -> Result<&mut ClientSocket, StepError> {
        self.client(name)?.socket.as_mut().ok_or_else(|| {
            StepError::Misuse(format!(
                "{name} is closed: add `{name}: connect` before this step"
            ))
        })
    }

    fn stream(&mut self, name: &str) -> Result<&mut Stream, StepError> {
        match self.socket(name)? {
            ClientSocket::Stream(stream) => Ok(stream),
            ClientSocket::Datagram(_) => Err(StepError::Misuse(format!(
                "{name} has a datagram socket: this step needs a stream"
            ))),
            ClientSocket::Connecting(_) => Err(StepError::Misuse(format!(
                "{name}'s connect has not completed: add `{name}: finish-connect` first"
            ))),
        }
    }

    fn add_client(&mut self, name: &str, socket: ClientSocket, address: Option<Address>) {
        let client = Client {
            socket: Some(socket),
            sent: Vec::new(),
            address,
            blocking: true,
            unread: Vec::new(),
            ignores_rest: false,
            on: None,
        };
        self.clients.insert(name.to_string(), client);
    }
}

/// A gap between two segments that the wire's view points out.
const NOTICEABLE_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// A lesson's second server, running beside the first.
struct Second {
    name: String,
    kind: ServerKind,
    config: ServerConfig,
    running: RunningServer,
}

/// A segment in the transcript.
struct Caught {
    segment: Segment,
    /// The window it advertised, scaled as the handshake agreed (TCP only).
    window: Option<u64>,
    /// A `wire:` step has matched it.
    matched: bool,
}

/// One thing to show, from either side of the merge.
enum Shown {
    Event(Moment, ServerEvent),
    Segment(Segment),
}

/// How many requests the web server will answer in `sent`: each whole request, up to and
/// including one it refuses or one that asks it to close (it answers that one, then closes).
fn requests_in(sent: &[u8]) -> usize {
    let limits = crate::http::request::Limits::default();
    let mut rest = sent;
    let mut count = 0;
    loop {
        match crate::http::request::Request::parse(rest, &limits) {
            Ok(crate::http::request::Status::Complete(request)) => {
                count += 1;
                if !request.head.keep_alive() {
                    return count;
                }
                rest = &rest[request.len.min(rest.len())..];
            }
            Ok(crate::http::request::Status::Partial) => return count,
            Err(_) => return count + 1,
        }
    }
}

impl Runner<'_> {
    /// How many of a client's requests the web server has answered, by the transcript.
    fn requests_answered(&self, name: &str) -> usize {
        self.transcript
            .entries
            .iter()
            .filter(|entry| {
                matches!(&entry.fact, Some(Fact::ServerRecv { client, len: None }) if client == name)
            })
            .count()
    }

    /// Bytes a client sent, and bytes the ack server's recvs have returned from it, by the
    /// transcript's facts (the web server does not count request bytes: `None`).
    fn sent_and_received(&self, name: &str) -> (usize, Option<usize>) {
        let mut sent = 0;
        let mut received = Some(0);
        for fact in self
            .transcript
            .entries
            .iter()
            .filter_map(|entry| entry.fact.as_ref())
        {
            match fact {
                Fact::ClientSend { client, len } if client == name => sent += len,
                Fact::ServerRecv { client, len } if client == name => {
                    received = received.zip(*len).map(|(total, len)| total + len);
                }
                _ => {}
            }
        }
        (sent, received)
    }

    /// Waits, up to the step timeout, until the ack server (if it accepts) has received
    /// everything the open clients have sent, and has seen the end of every connection it
    /// accepted whose client closed it (or had it reset): the answers to the last sends may
    /// still be on their way when the file ends, and the strict end must see them; and a
    /// lesson shows the server's side of a close every time, not only when the server was
    /// quick.
    fn settle(&mut self, names: &[String]) {
        // Another server reports nothing to wait for; a paused one will never catch up.
        if self.external || !self.accepting {
            return;
        }
        let accepted: HashSet<String> = self
            .transcript
            .entries
            .iter()
            .filter_map(|entry| match &entry.fact {
                Some(Fact::Accept { client }) => Some(client.clone()),
                _ => None,
            })
            .collect();
        let deadline = self.step_deadline();
        loop {
            let behind = names.iter().any(|name| {
                let client = &self.clients[name];
                let open = matches!(client.socket, Some(ClientSocket::Stream(_)));
                let (sent, received) = self.sent_and_received(name);
                let unreceived = open
                    && !client.ignores_rest
                    && received.is_some_and(|received| received < sent);
                // The web server reports requests, not bytes: count the requests sent.
                let unanswered = open
                    && !client.ignores_rest
                    && self.kind() == ServerKind::Http
                    && client.on.is_none()
                    && self.requests_answered(name) < requests_in(&client.sent);
                let gone = match &client.socket {
                    None => true,
                    Some(ClientSocket::Stream(Stream::Tcp(stream))) => {
                        crate::kernel::TcpInfo::of(stream)
                            .is_ok_and(|info| info.state == Some(crate::kernel::TcpState::Close))
                    }
                    Some(_) => false,
                };
                let end_unseen =
                    gone && accepted.contains(name) && !self.ended_by_server.contains(name);
                unreceived || unanswered || end_unseen
            });
            if !behind {
                return;
            }
            let events = self.timeline.wait_for_events(deadline);
            if events.is_empty() {
                return;
            }
            self.show_events(events);
        }
    }

    /// The strict end, for the server: every problem it reported (a busy server, a failed
    /// accept, a refused or unanswered client, a failed connection) was expected by a `log`
    /// step. A lesson that passed while its server complained would teach the wrong thing.
    fn check_no_unexpected_problem(&self) -> Result<(), StepError> {
        match self
            .log
            .lines
            .iter()
            .find(|line| line.problem && !line.matched)
        {
            Some(line) => Err(StepError::Other(format!(
                "the server reported a problem no step expected:\n  {}\nadd a `server: log` step for it if the lesson expects it",
                line.text
            ))),
            None => Ok(()),
        }
    }

    /// The strict end of a lesson: every byte sent to a client that is still open was read
    /// by a step, unless the file says `ignore-rest`. Without it an extra ack (a server that
    /// answers twice) would pass whenever it arrived after the last `recv`. Two witnesses:
    /// what the server reported sending against what the client's steps read (the server
    /// reports a send before it makes it, so a late one counts too), and the kernel's count
    /// of bytes waiting in the client's receive queue.
    fn check_nothing_left(&mut self) -> Result<(), StepError> {
        let mut names: Vec<String> = self.clients.keys().cloned().collect();
        names.sort();
        self.settle(&names);
        for name in names {
            let client = &self.clients[&name];
            if client.ignores_rest {
                continue;
            }
            // A connection that was reset is gone: nothing more can be read from it, and
            // what the server sent after the reset was lost, not left unread.
            if let Some(ClientSocket::Stream(Stream::Tcp(stream))) = &client.socket
                && crate::kernel::TcpInfo::of(stream)
                    .is_ok_and(|info| info.state == Some(crate::kernel::TcpState::Close))
            {
                continue;
            }
            let waiting = match &client.socket {
                Some(ClientSocket::Stream(Stream::Tcp(stream))) => Queues::of(stream),
                Some(ClientSocket::Stream(Stream::Unix(stream))) => Queues::of(stream),
                Some(ClientSocket::Datagram(socket)) => Queues::of(socket),
                // Closed: what it left unread went with the socket (maybe as an RST, which is
                // a lesson of its own).
                Some(ClientSocket::Connecting(_)) | None => continue,
            }
            .map(|queues| queues.recv)
            .unwrap_or(0);
            // A datagram socket's recv takes one whole datagram, whatever it reads of it
            // (lesson 14): only the kernel's queue counts there.
            let datagrams = matches!(client.socket, Some(ClientSocket::Datagram(_)));
            let (sent, read) = if datagrams {
                (0, 0)
            } else {
                self.transcript
                    .entries
                    .iter()
                    .filter_map(|entry| entry.fact.as_ref())
                    .fold((0, 0), |(sent, read), fact| match fact {
                        Fact::ServerSend { client, len } if *client == name => (sent + len, read),
                        Fact::ClientRecv { client, len } if *client == name => (sent, read + len),
                        _ => (sent, read),
                    })
            };
            let kept = client.unread.len();
            let unread = sent.saturating_sub(read).max(waiting) + kept;
            if unread > 0 {
                return Err(StepError::Other(format!(
                    "{name} has {unread} byte{} left unread at the end of the file{}: read {} with a recv step, or add `{name}: ignore-rest` if the lesson does not care",
                    if unread == 1 { "" } else { "s" },
                    if sent > read {
                        format!(" (the server sent {sent}, {name}'s steps read {read})")
                    } else {
                        String::new()
                    },
                    if unread == 1 { "it" } else { "them" }
                )));
            }
        }
        Ok(())
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("socket-lab-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::requests_in;

    /// The requests the web server will answer: whole ones, up to one it refuses or one
    /// that closes the connection.
    #[test]
    fn requests_are_counted_as_the_web_server_will_answer_them() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(requests_in(b""), 0);
        assert_eq!(requests_in(&get[..10]), 0);
        assert_eq!(requests_in(&get), 1);
        assert_eq!(requests_in(&[get.clone(), get.clone()].concat()), 2);
        assert_eq!(requests_in(&[get.clone(), get[..10].to_vec()].concat()), 1);
        let close = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
        assert_eq!(requests_in(&[close, get.clone()].concat()), 1);
        assert_eq!(
            requests_in(&[get.clone(), b"BAD\r\n\r\n".to_vec(), get].concat()),
            2
        );
    }
}
