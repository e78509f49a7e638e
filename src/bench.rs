//! `socket-lab bench`: a load generator for the ack protocol, in the spirit of
//! `redis-benchmark`.
//!
//! The walkthrough's client sends one line and waits for `server recv success` before it
//! sends the next. The bench does exactly that, from `conns` connections at once, each on a
//! thread of its own, and times every round trip:
//!
//! 1. `connect` every connection first (a refused one is an error before any load starts).
//! 2. Each connection: `send` a `size`-byte message, `recv` until the whole ack is back,
//!    record the time it took, repeat `msgs` times or until `duration` is up.
//! 3. Report messages per second and the p50, p99 and max round trip ([`Report`]).
//!
//! **Counting acks is counting bytes.** The server acks every `recv`, not every message, and
//! TCP keeps no message boundaries (claim 10, lessons 03 and 05): one message can come out of
//! two recvs (two acks), and one ack can reach us split across two of our recvs, or glued to
//! the next. So a connection never assumes "one recv, one ack": it counts ack *bytes*, checks
//! each one against the ack it expects ([`AckCounter`]), and a round ends once the acks
//! completed so far cover the messages sent so far. At the end it half-closes
//! (`shutdown(SHUT_WR)`) and reads to end of stream, so every ack the server sent is counted
//! and checked, and [`Report::acks`] may exceed [`Report::messages`] when TCP split messages.
//! Over datagrams (`--udp`) boundaries are kept: one datagram, one ack, checked whole.
//!
//! **Stream mode** (`--stream`) does not wait for acks: a writer sends `msgs` messages
//! back to back while a reader counts the acks as they come. That measures throughput (what
//! `iperf3` measures) rather than round trips; `benches/compare.sh` sends 1 GiB this way.
//! The acks then count the server's recvs, which shows how TCP joins sends into fewer recvs.
//!
//! **Bounded.** Every run stops after `msgs` messages per connection or `duration`, whichever
//! comes first, and every `recv` waits at most [`REPLY_TIMEOUT`], so a silent server is an
//! error within seconds, not a hang.
//!
//! **Progress while it runs.** A run can take as long as `--duration`, so the report's first
//! line ([`Plan`]) is known and printed before the first message, and [`Bench::run`] tells a
//! watcher where the run stands ([`Tally`]) about ten times a second: every connection adds
//! each message to one shared atomic counter, which the thread waiting for them reads. The
//! binary draws that as a live line with `indicatif`, on a terminal only.
//!
//! Without `--host`, `--port` or `--unix PATH`, the bench starts the ack server in this process ([`crate::server`] or
//! [`crate::udp`]) on a free loopback port, with its log switched off, and stops it after.
//! `tests/bench.rs` runs it both ways; `BENCHMARKS.md` has numbers and what they teach.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Stream};
use crate::engine::RunningServer;
use crate::error::Error;
use crate::escape::escape;
use crate::server::{ACK, EventLog, MAX_CLIENTS, MAX_RECV_SIZE, RECV_SIZE, Server, ServerConfig};
use crate::udp::{DatagramClient, DatagramServer, MAX_UDP_PAYLOAD_V4};

/// How long one `recv` waits for an ack before the run fails: far beyond any loopback round
/// trip, short enough that a dead server is reported quickly.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The most connections one run opens: each is a thread and a descriptor here, and one more
/// descriptor (and, for the ack server, a thread) on the server.
pub const MAX_CONNS: usize = 4096;
/// The largest `recv(n)` the bench's own server uses, whatever `--size` is.
const OWN_SERVER_MAX_RECV: usize = 64 * 1024;
/// The longest run allowed, so a typo cannot tie up a shared machine for hours.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// How often [`Bench::run`] tells its watcher where the run stands.
pub const TALLY_INTERVAL: Duration = Duration::from_millis(100);

/// Which kind of socket the bench talks over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// A Unix stream socket.
    Unix,
    /// A Unix datagram socket.
    UnixDatagram,
}

impl Transport {
    fn is_datagram(self) -> bool {
        matches!(self, Transport::Udp | Transport::UnixDatagram)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Unix => "unix",
            Transport::UnixDatagram => "unix datagram",
        })
    }
}

/// Everything `socket-lab bench` can be told.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub transport: Transport,
    /// The server to load; `None` starts one in this process.
    pub target: Option<Endpoint>,
    /// Connections open at once, each with one message in flight.
    pub conns: usize,
    /// Messages per connection.
    pub msgs: u64,
    /// Bytes per message.
    pub size: usize,
    /// The run stops sending when this much time has passed, even if `msgs` are not all sent.
    pub duration: Duration,
    /// The ack the server answers with; every byte received is checked against it.
    pub ack: Vec<u8>,
    /// Send without waiting for acks (throughput, not round trips); stream sockets only.
    pub stream: bool,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            transport: Transport::Tcp,
            target: None,
            conns: 1,
            msgs: 10_000,
            size: 64,
            duration: Duration::from_secs(10),
            ack: ACK.to_vec(),
            stream: false,
        }
    }
}

impl BenchConfig {
    pub fn validate(&self) -> Result<(), Error> {
        if self.conns == 0 || self.conns > MAX_CONNS {
            return Err(Error::Config(format!(
                "--conns must be between 1 and {MAX_CONNS}, not {}",
                self.conns
            )));
        }
        if self.msgs == 0 {
            return Err(Error::Config("--msgs must be at least 1".into()));
        }
        let largest = if self.transport.is_datagram() {
            MAX_UDP_PAYLOAD_V4
        } else {
            MAX_RECV_SIZE
        };
        if self.size == 0 || self.size > largest {
            return Err(Error::Config(format!(
                "--size must be between 1 and {largest} bytes for {}, not {}",
                self.transport, self.size
            )));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(Error::Config(format!(
                "--duration must be between 1 and {} seconds",
                MAX_DURATION.as_secs()
            )));
        }
        if self.ack.is_empty() {
            return Err(Error::Config(
                "--ack must not be empty: the bench waits for it after every message".into(),
            ));
        }
        if self.stream && self.transport.is_datagram() {
            return Err(Error::Config(
                "--stream needs a byte stream (tcp or unix): datagrams sent without waiting are simply dropped when the server falls behind".into(),
            ));
        }
        Ok(())
    }
}

/// What a run is about to do: the report's first line, printed before the first message.
#[derive(Clone, Debug)]
pub struct Plan {
    pub transport: Transport,
    /// Where the server is, and whether the bench started it.
    pub server: String,
    pub conns: usize,
    pub size: usize,
    /// Send without waiting for acks (no round trips to time).
    pub stream: bool,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.stream {
            "stream: send without waiting"
        } else {
            "send, wait for the ack, repeat"
        };
        write!(
            f,
            "bench: {} {}, {} connection{}, {}-byte messages ({mode})",
            self.transport,
            self.server,
            self.conns,
            if self.conns == 1 { "" } else { "s" },
            self.size
        )
    }
}

/// Where a running bench stands, for a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Messages sent so far, over every connection.
    pub messages: u64,
    /// The most the run will send: messages per connection times connections.
    pub planned: u64,
    pub elapsed: Duration,
    /// When the run stops even if not every message was sent.
    pub duration: Duration,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.messages as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        write!(
            f,
            "{} of {} messages, {rate:.0} msgs/s, {:.1} s of at most {} s",
            self.messages,
            self.planned,
            self.elapsed.as_secs_f64(),
            self.duration.as_secs()
        )
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run's first line: what was loaded, and how.
    pub plan: Plan,
    /// Messages sent and acked.
    pub messages: u64,
    /// Whole acks received and checked: more than `messages` when TCP split a message across
    /// two of the server's recvs, fewer in stream mode when it joined several into one.
    pub acks: u64,
    /// From the first send to the last ack.
    pub elapsed: Duration,
    /// Round-trip times, `None` in stream mode (nothing waits for an ack there).
    pub latency: Option<Latency>,
}

/// Round-trip percentiles over every message of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Report {
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Message bytes per second, in MiB.
    pub fn mib_per_second(&self) -> f64 {
        self.messages_per_second() * self.plan.size as f64 / (1024.0 * 1024.0)
    }

    /// Every line but the first, for a caller that printed the [`Plan`] when the run started.
    pub fn results(&self) -> Results<'_> {
        Results(self)
    }
}

/// The lines of a [`Report`] after its [`Plan`].
pub struct Results<'a>(&'a Report);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.plan)?;
        write!(f, "{}", self.results())
    }
}

impl fmt::Display for Results<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        writeln!(
            f,
            "messages: {} in {:.3} s",
            report.messages,
            report.elapsed.as_secs_f64()
        )?;
        writeln!(f, "msgs/s: {:.0}", report.messages_per_second())?;
        writeln!(f, "MiB/s: {:.1}", report.mib_per_second())?;
        if let Some(latency) = report.latency {
            writeln!(
                f,
                "latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                millis(latency.p50),
                millis(latency.p99),
                millis(latency.max)
            )?;
        }
        write!(f, "acks: {}, every byte checked", report.acks)
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs the load described by `config` and reports what it measured.
pub fn run(config: &BenchConfig) -> Result<Report, Error> {
    Bench::start(config)?.run(|_| {})
}

/// A run ready to start: its settings checked, its server up (or named), nothing sent yet.
pub struct Bench {
    config: BenchConfig,
    endpoint: Endpoint,
    own_server: Option<RunningServer>,
    plan: Plan,
}

impl Bench {
    /// Checks the settings and, without `--target`, starts the ack server in this process.
    pub fn start(config: &BenchConfig) -> Result<Bench, Error> {
        config.validate()?;
        let (endpoint, own_server) = match &config.target {
            Some(target) => (target.clone(), None),
            None => {
                let running = start_own_server(config)?;
                (running.addr.endpoint(), Some(running))
            }
        };
        let server = match &own_server {
            Some(_) => format!("{endpoint} (own server, in this process)"),
            None => endpoint.to_string(),
        };
        let plan = Plan {
            transport: config.transport,
            server,
            conns: config.conns,
            size: config.size,
            stream: config.stream,
        };
        Ok(Bench {
            config: config.clone(),
            endpoint,
            own_server,
            plan,
        })
    }

    /// What the run will do: the report's first line.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the load, calls `watch` with where it stands every [`TALLY_INTERVAL`], and
    /// reports what it measured. The bench's own server, if any, is stopped after.
    pub fn run(self, watch: impl FnMut(Tally)) -> Result<Report, Error> {
        let Bench {
            config,
            endpoint,
            own_server,
            plan,
        } = self;
        let result = load(&config, &endpoint, watch);
        if let Some(running) = own_server {
            running.stop()?;
        }
        let outcome = result?;
        let latency = (!config.stream).then(|| percentiles(outcome.round_trips));
        Ok(Report {
            plan,
            messages: outcome.messages,
            acks: outcome.acks,
            elapsed: outcome.elapsed,
            latency,
        })
    }
}

/// The ack server on a free loopback port (or a fresh Unix socket path), in this process.
fn start_own_server(config: &BenchConfig) -> Result<RunningServer, Error> {
    let endpoint = match config.transport {
        Transport::Tcp | Transport::Udp => Endpoint::inet("127.0.0.1", 0),
        Transport::Unix | Transport::UnixDatagram => Endpoint::Unix(own_socket_path()),
    };
    let server_config = ServerConfig {
        endpoint,
        // One message per recv, so acks normally match messages one to one; but no more than
        // 64 KiB per connection, as bigger messages just take several recvs (and acks).
        recv_size: config.size.clamp(RECV_SIZE, OWN_SERVER_MAX_RECV),
        ack: config.ack.clone(),
        max_clients: config.conns.max(MAX_CLIENTS),
        ..ServerConfig::default()
    };
    // The server's log would cost a line per message; the bench only wants the acks.
    let quiet: EventLog = Arc::new(|_| {});
    Ok(if config.transport.is_datagram() {
        DatagramServer::bind(server_config)?.spawn(quiet)
    } else {
        Server::bind(server_config)?.spawn(quiet)
    })
}

/// A fresh path in the temp directory, unique to this process.
fn own_socket_path() -> PathBuf {
    std::env::temp_dir().join(format!("socket-lab-bench-{}.sock", std::process::id()))
}

/// What the connections measured together.
struct Outcome {
    messages: u64,
    acks: u64,
    elapsed: Duration,
    round_trips: Vec<Duration>,
}

/// What one connection measured.
#[derive(Default)]
struct ConnectionOutcome {
    messages: u64,
    acks: u64,
    round_trips: Vec<Duration>,
}

/// A connected socket of the kind the transport asks for.
enum Connection {
    Stream(Stream),
    Datagram(DatagramClient),
}

fn connect(config: &BenchConfig, endpoint: &Endpoint) -> Result<Connection, Error> {
    if config.transport.is_datagram() {
        return DatagramClient::connect(endpoint, REPLY_TIMEOUT).map(Connection::Datagram);
    }
    let stream = Stream::connect(endpoint)?;
    let setup = |e| Error::io(format!("cannot set up the connection to {endpoint}"), e);
    // One message in flight per connection: Nagle would never hold it back, but a message
    // bigger than one segment would wait for an ACK without this.
    stream.set_nodelay(true).map_err(setup)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(setup)?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(setup)?;
    Ok(Connection::Stream(stream))
}

fn load(
    config: &BenchConfig,
    endpoint: &Endpoint,
    mut watch: impl FnMut(Tally),
) -> Result<Outcome, Error> {
    // Every connection is made before the clock starts, so a refused connect fails the run
    // before any load, and connect time is not counted as round-trip time.
    let connections = (0..config.conns)
        .map(|_| connect(config, endpoint))
        .collect::<Result<Vec<_>, Error>>()?;
    let message = vec![b'x'; config.size];
    // Every connection adds each message it sends; only the progress line reads it, so no
    // ordering with other memory is needed (Relaxed).
    let sent = Arc::new(AtomicU64::new(0));
    let (finished_tx, finished_rx) = mpsc::channel();
    let started = Instant::now();
    let deadline = started + config.duration;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let config = config.clone();
            let message = message.clone();
            let server = endpoint.to_string();
            let sent = Arc::clone(&sent);
            let finished = finished_tx.clone();
            thread::spawn(move || {
                let outcome = match connection {
                    Connection::Stream(stream) if config.stream => {
                        stream_without_waiting(stream, &config, &message, deadline, &server, &sent)
                    }
                    Connection::Stream(stream) => {
                        ping_pong_stream(stream, &config, &message, deadline, &server, &sent)
                    }
                    Connection::Datagram(client) => {
                        ping_pong_datagram(&client, &config, &message, deadline, &sent)
                    }
                };
                let _ = finished.send(());
                outcome
            })
        })
        .collect();
    drop(finished_tx);

    // Wait for every connection to finish, telling the watcher where the run stands meanwhile.
    let tally = |elapsed| Tally {
        messages: sent.load(Ordering::Relaxed),
        planned: config.msgs.saturating_mul(config.conns as u64),
        elapsed,
        duration: config.duration,
    };
    let mut running = workers.len();
    while running > 0 {
        match finished_rx.recv_timeout(TALLY_INTERVAL) {
            Ok(()) => running -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => watch(tally(started.elapsed())),
            // A worker that panicked never sent; its join below reports it.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut total = Outcome {
        messages: 0,
        acks: 0,
        elapsed: Duration::ZERO,
        round_trips: Vec::new(),
    };
    let mut first_error = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok(outcome)) => {
                total.messages += outcome.messages;
                total.acks += outcome.acks;
                total.round_trips.extend(outcome.round_trips);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Config("a bench connection panicked".into()));
            }
        }
    }
    total.elapsed = started.elapsed();
    watch(tally(total.elapsed));
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Send one message, wait until its ack is in, repeat.
fn ping_pong_stream(
    mut stream: Stream,
    config: &BenchConfig,
    message: &[u8],
    deadline: Instant,
    server: &str,
    sent: &AtomicU64,
) -> Result<ConnectionOutcome, Error> {
    let lost = |e: &io::Error| lost_connection(server, e);
    let mut counter = AckCounter::new(&config.ack, server);
    let mut outcome = ConnectionOutcome::default();
    let mut buffer = vec![0u8; 64 * 1024];
    while outcome.messages < config.msgs && Instant::now() < deadline {
        let sent_at = Instant::now();
        stream.write_all(message).map_err(|e| lost(&e))?;
        outcome.messages += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        // Acks received so far may already cover this message (TCP split an earlier one into
        // two recvs, so two acks came for it); otherwise wait for the next one.
        while counter.acks < outcome.messages {
            let n = read_some(&mut stream, &mut buffer).map_err(|e| lost(&e))?;
            if n == 0 {
                return Err(closed_early(server));
            }
            counter.push(&buffer[..n])?;
        }
        outcome.round_trips.push(sent_at.elapsed());
    }
    finish(stream, counter, &mut buffer, server).map(|acks| ConnectionOutcome { acks, ..outcome })
}

/// A writer sends every message back to back; this thread reads and counts acks meanwhile.
/// Reading concurrently matters: a server blocked writing acks nobody reads stops reading too.
fn stream_without_waiting(
    stream: Stream,
    config: &BenchConfig,
    message: &[u8],
    deadline: Instant,
    server: &str,
    sent_overall: &Arc<AtomicU64>,
) -> Result<ConnectionOutcome, Error> {
    let mut writer = stream
        .try_clone()
        .map_err(|e| Error::io(format!("cannot clone the connection to {server}"), e))?;
    let msgs = config.msgs;
    let message = message.to_vec();
    let writer_server = server.to_string();
    let sent_overall = Arc::clone(sent_overall);
    let sender = thread::spawn(move || -> Result<u64, Error> {
        let mut sent = 0;
        while sent < msgs && Instant::now() < deadline {
            writer
                .write_all(&message)
                .map_err(|e| lost_connection(&writer_server, &e))?;
            sent += 1;
            sent_overall.fetch_add(1, Ordering::Relaxed);
        }
        // The end of our messages: the server's recv returns 0, it closes, we read EOF.
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| lost_connection(&writer_server, &e))?;
        Ok(sent)
    });
    let mut reader = stream;
    let mut counter = AckCounter::new(&config.ack, server);
    let mut buffer = vec![0u8; 64 * 1024];
    let read_result = loop {
        match read_some(&mut reader, &mut buffer) {
            Ok(0) => break counter.finish(),
            Ok(n) => {
                if let Err(e) = counter.push(&buffer[..n]) {
                    break Err(e);
                }
            }
            Err(e) => break Err(lost_connection(server, &e)),
        }
    };
    if read_result.is_err() {
        // Unblock the writer so its thread can be joined.
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(Error::Config("the bench writer panicked".into())));
    let acks = read_result?;
    Ok(ConnectionOutcome {
        messages: sent?,
        acks,
        round_trips: Vec::new(),
    })
}

/// Half-close and read to end of stream: every ack the server sent is counted and checked.
fn finish(
    mut stream: Stream,
    mut counter: AckCounter,
    buffer: &mut [u8],
    server: &str,
) -> Result<u64, Error> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| lost_connection(server, &e))?;
    loop {
        match read_some(&mut stream, buffer).map_err(|e| lost_connection(server, &e))? {
            0 => return counter.finish(),
            n => counter.push(&buffer[..n])?,
        }
    }
}

/// One datagram, one ack: boundaries are kept, so the ack is checked whole.
fn ping_pong_datagram(
    client: &DatagramClient,
    config: &BenchConfig,
    message: &[u8],
    deadline: Instant,
    sent: &AtomicU64,
) -> Result<ConnectionOutcome, Error> {
    let mut outcome = ConnectionOutcome::default();
    let mut buffer = vec![0u8; config.ack.len() + 1];
    while outcome.messages < config.msgs && Instant::now() < deadline {
        let sent_at = Instant::now();
        client.send(message)?;
        outcome.messages += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        let n = client.recv_reply_into(&mut buffer)?;
        if buffer[..n] != config.ack[..] {
            return Err(not_the_ack(
                client.server(),
                &config.ack,
                &buffer[..n.min(buffer.len())],
            ));
        }
        outcome.acks += 1;
        outcome.round_trips.push(sent_at.elapsed());
    }
    Ok(outcome)
}

/// `recv`, retried when a signal interrupts it.
fn read_some(stream: &mut Stream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Counts whole acks in a byte stream, checking every byte against the ack expected. The
/// stream is acks back to back, so byte `i` must equal `ack[i % ack.len()]`, wherever TCP
/// happened to cut it into recvs.
pub struct AckCounter {
    ack: Vec<u8>,
    server: String,
    /// Where in the ack the next byte falls.
    position: usize,
    /// Whole acks received so far.
    pub acks: u64,
}

impl AckCounter {
    pub fn new(ack: &[u8], server: &str) -> AckCounter {
        AckCounter {
            ack: ack.to_vec(),
            server: server.to_string(),
            position: 0,
            acks: 0,
        }
    }

    /// Adds bytes just received; fails on the first byte that is not where the ack says.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        for (index, &byte) in bytes.iter().enumerate() {
            if byte != self.ack[self.position] {
                let shown = &bytes[index..bytes.len().min(index + self.ack.len())];
                return Err(not_the_ack(&self.server, &self.ack, shown));
            }
            self.position += 1;
            if self.position == self.ack.len() {
                self.position = 0;
                self.acks += 1;
            }
        }
        Ok(())
    }

    /// The count at end of stream; a partial ack left over is an error.
    pub fn finish(&self) -> Result<u64, Error> {
        if self.position != 0 {
            return Err(Error::ConnectionLost {
                addr: self.server.clone(),
                detail: format!("the stream ended {} bytes into an ack", self.position),
            });
        }
        Ok(self.acks)
    }
}

fn not_the_ack(server: &str, ack: &[u8], got: &[u8]) -> Error {
    Error::io(
        format!("the reply from {server} is not the ack"),
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected \"{}\", got \"{}\" (is it an ack server? pass its ack with --ack)",
                escape(ack),
                escape(got)
            ),
        ),
    )
}

fn lost_connection(server: &str, error: &io::Error) -> Error {
    let detail = match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no ack within {} s", REPLY_TIMEOUT.as_secs())
        }
        _ => crate::error::describe(error),
    };
    Error::ConnectionLost {
        addr: server.to_string(),
        detail,
    }
}

fn closed_early(server: &str) -> Error {
    Error::ConnectionLost {
        addr: server.to_string(),
        detail: "the server closed the connection before the ack came".into(),
    }
}

/// p50, p99 and max of the round trips (nearest rank).
fn percentiles(mut round_trips: Vec<Duration>) -> Latency {
    round_trips.sort_unstable();
    let rank = |fraction: f64| -> Duration {
        if round_trips.is_empty() {
            return Duration::ZERO;
        }
        let index = ((fraction * round_trips.len() as f64).ceil() as usize).saturating_sub(1);
        round_trips[index.min(round_trips.len() - 1)]
    };
    Latency {
        p50: rank(0.50),
        p99: rank(0.99),
        max: rank(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_split_and_joined_anywhere_are_counted_whole() {
        let mut counter = AckCounter::new(b"ok!", "test");
        counter.push(b"o").unwrap();
        counter.push(b"k!ok").unwrap();
        assert_eq!(counter.acks, 1);
        counter.push(b"!").unwrap();
        assert_eq!(counter.finish().unwrap(), 2);
    }

    #[test]
    fn a_wrong_byte_is_an_error_and_a_partial_ack_at_the_end_too() {
        let mut counter = AckCounter::new(b"ok!", "test");
        assert!(counter.push(b"ok?").is_err());
        let mut counter = AckCounter::new(b"ok!", "test");
        counter.push(b"ok!o").unwrap();
        assert!(counter.finish().is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let trips: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = percentiles(trips);
        assert_eq!(latency.p50, Duration::from_millis(50));
        assert_eq!(latency.p99, Duration::from_millis(99));
        assert_eq!(latency.max, Duration::from_millis(100));
    }
}
