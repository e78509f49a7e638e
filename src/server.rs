//! The ack server: the walkthrough's `server.py`, step by step.
//!
//! | walkthrough step | here |
//! |---|---|
//! | 1 `socket(family, type)`, 2 `bind((host, port))`, 3 `listen(backlog)` | [`Server::bind`] (through [`crate::endpoint::Listener::bind`]) |
//! | 4 `connection, address = accept()` | the engine's accept loop ([`crate::engine`]), started by [`Server::run`] |
//! | 5 `recv(bufsize)` / `send` | `serve_connection`: one ack per `recv` that returns data |
//! | 6 `close` | dropping the [`Stream`]; a `recv` of 0 bytes is the peer's close |
//!
//! What the walkthrough leaves out, and a real server cannot:
//!
//! - **Many clients at once.** `server.py` serves one client, then the next; so does
//!   `--engine iterative`. The default, `--engine threads`, gives every accepted connection a
//!   worker thread, and `--engine epoll` serves them all from one event loop per core
//!   ([`crate::engine`]). At most `max_clients` are served at once; beyond that new
//!   connections wait in the kernel's listen queue (the backlog), which is what that queue is
//!   for.
//! - **One `recv` is not one message.** TCP is a byte stream: a 20-byte send read with
//!   `recv(8)` is three recvs and so three acks (claim 10, lesson 03), and two quick sends
//!   can come out of one recv (lesson 05). The server acks each `recv`, exactly as
//!   `server.py` does, and its log shows what each recv returned.
//! - **Hostile or slow peers.** Each connection holds one `recv_size` buffer and no more (on
//!   the event loop, one buffer per loop and the unsent acks, at most
//!   [`crate::engine::event_loop::HIGH_WATER`] bytes), a peer silent for `idle_timeout` is
//!   closed, and bytes are logged through [`crate::escape`] so a peer cannot drive the
//!   terminal.
//! - **Stopping.** [`ServerHandle::stop`] (and Ctrl-C in the binary) stops accepting,
//!   shuts down every open connection so blocked `recv`s return, and joins the workers.
//!
//! The protocol is written twice, on purpose: [`serve_connection`] is the blocking loop the
//! walkthrough describes (`recv`, log, `send`, repeat), and [`AckConversation`] is the same
//! conversation as a state machine for the event loop, which may not block. The cases of
//! `tests/engines/ack_server.rs`, run on every engine, hold them to the same answers.
//!
//! The datagram server in [`crate::udp`] shares this module's [`Event`].

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::endpoint::{Address, AddressReuse, Endpoint, Stream};
use crate::engine::accept::{Acceptor, ListenConfig};
use crate::engine::{
    AcceptNotice, Conversation, EventDriven, Flow, Service, deadline_after, deadline_from,
};
// The handles a server's API returns, and the engine its config names.
pub use crate::engine::{Engine, RunningServer, ServerHandle};
use crate::error::Error;
use crate::escape::escape;

/// The walkthrough's server answers every message with these bytes.
pub const ACK: &[u8] = b"server recv success";
/// The walkthrough's port: `http://localhost:10000/` reaches it.
pub const DEFAULT_PORT: u16 = 10000;
/// `recv(1024)`, as in the walkthrough.
pub const RECV_SIZE: usize = 1024;
/// The largest `--recv-size` accepted: each connection holds one buffer this big.
pub const MAX_RECV_SIZE: usize = 16 * 1024 * 1024;
/// Python's `socketserver` and Rust's std both listen with a backlog of 128.
pub const BACKLOG: i32 = 128;
/// How many clients are served at once before new ones wait in the listen queue.
pub const MAX_CLIENTS: usize = 64;
/// A client silent this long is disconnected, so an idle peer cannot hold a worker forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything `socket-lab server` can be told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub endpoint: Endpoint,
    /// The `n` in `recv(n)`.
    pub recv_size: usize,
    /// The bytes sent back for every recv that returned data.
    pub ack: Vec<u8>,
    /// The `backlog` in `listen(backlog)`.
    pub backlog: i32,
    pub max_clients: usize,
    /// `None` waits forever, as Python does.
    pub idle_timeout: Option<Duration>,
    /// `SO_REUSEADDR` on the listening socket: on by default, as in Rust's std.
    pub address_reuse: AddressReuse,
    /// How connections are served: one at a time, or a worker thread each.
    pub engine: Engine,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            endpoint: Endpoint::inet("127.0.0.1", DEFAULT_PORT),
            recv_size: RECV_SIZE,
            ack: ACK.to_vec(),
            backlog: BACKLOG,
            max_clients: MAX_CLIENTS,
            idle_timeout: Some(IDLE_TIMEOUT),
            address_reuse: AddressReuse::Allowed,
            engine: Engine::Threads,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.recv_size == 0 || self.recv_size > MAX_RECV_SIZE {
            return Err(Error::Config(format!(
                "--recv-size must be between 1 and {MAX_RECV_SIZE} bytes, not {}",
                self.recv_size
            )));
        }
        if self.ack.is_empty() {
            return Err(Error::Config(
                "--ack must not be empty: a client waits for the ack before it sends the next line"
                    .into(),
            ));
        }
        if self.max_clients == 0 {
            return Err(Error::Config("--max-clients must be at least 1".into()));
        }
        // listen(0) is legal on Linux: the queue still holds one connection (lesson 18).
        // A negative backlog means "the most", SOMAXCONN, to the kernel: refuse it rather
        // than surprise anyone.
        if !(0..=65_535).contains(&self.backlog) {
            return Err(Error::Config(format!(
                "--backlog must be between 0 and 65535, not {} (the kernel caps it at net.core.somaxconn)",
                self.backlog
            )));
        }
        Ok(())
    }
}

/// What the server has to say. The binary prints these; tests and scenarios collect them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Connected {
        peer: Address,
    },
    /// One `recv` returned these bytes (and one ack was sent for them).
    Message {
        peer: Address,
        data: Vec<u8>,
    },
    /// `recv` returned 0 (the peer closed), or the connection failed or timed out.
    Disconnected {
        peer: Address,
        reason: Option<String>,
    },
    /// All `max_clients` workers are busy; new connections wait in the listen queue.
    Busy {
        max_clients: usize,
    },
    /// `accept` itself failed (out of file descriptors, say); the loop backs off and goes on.
    AcceptFailed {
        error: String,
    },
    /// A connection was accepted but could not be served (out of descriptors, say) and was
    /// closed at once.
    Refused {
        peer: Address,
        error: String,
    },
    /// A datagram longer than `recv(n)` allowed: `data` is the first n bytes of
    /// `datagram_len`, and the kernel threw the rest away (TCP would have kept it buffered).
    Truncated {
        peer: Address,
        data: Vec<u8>,
        datagram_len: usize,
    },
    /// The ack could not be sent back: a datagram from an unnamed Unix socket has no return
    /// address, or the sender's socket is already gone.
    ReplyFailed {
        peer: Address,
        reason: String,
    },
}

impl Event {
    /// The client the event is about, if it is about one.
    pub fn peer(&self) -> Option<&Address> {
        match self {
            Event::Connected { peer }
            | Event::Message { peer, .. }
            | Event::Disconnected { peer, .. }
            | Event::Refused { peer, .. }
            | Event::Truncated { peer, .. }
            | Event::ReplyFailed { peer, .. } => Some(peer),
            Event::Busy { .. } | Event::AcceptFailed { .. } => None,
        }
    }
}

impl Event {
    /// Problems go to stderr, the conversation to stdout.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Event::Busy { .. }
                | Event::AcceptFailed { .. }
                | Event::Refused { .. }
                | Event::ReplyFailed { .. }
        )
    }
}

impl crate::engine::LogEvent for Event {
    fn is_problem(&self) -> bool {
        Event::is_problem(self)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected { peer } => write!(f, "[{peer}] connected"),
            Event::Message { peer, data } => {
                write!(f, "[{peer}] send a message to server: {}", escape(data))
            }
            Event::Disconnected { peer, reason: None } => write!(f, "[{peer}] disconnected"),
            Event::Disconnected {
                peer,
                reason: Some(reason),
            } => {
                write!(f, "[{peer}] disconnected ({reason})")
            }
            Event::Busy { max_clients } => AcceptNotice::Busy {
                max_clients: *max_clients,
            }
            .fmt(f),
            Event::AcceptFailed { error } => AcceptNotice::AcceptFailed {
                error: error.clone(),
            }
            .fmt(f),
            Event::Refused { peer, error } => {
                write!(f, "[{peer}] cannot be served: {error}; connection closed")
            }
            Event::Truncated {
                peer,
                data,
                datagram_len,
            } => write!(
                f,
                "[{peer}] send a message to server: {} (truncated: the datagram had {datagram_len} bytes, recv read {}, the other {} were discarded)",
                escape(data),
                data.len(),
                datagram_len.saturating_sub(data.len())
            ),
            Event::ReplyFailed { peer, reason } => {
                write!(f, "[{peer}] cannot send the ack: {reason}")
            }
        }
    }
}

/// Where events go: printed by the binary, collected by tests.
pub type EventLog = Arc<dyn Fn(Event) + Send + Sync>;

/// An [`EventLog`] that sends every event down a channel, for tests and scenarios that wait
/// on what the server says.
pub fn channel_log() -> (EventLog, std::sync::mpsc::Receiver<Event>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let log: EventLog = Arc::new(move |event| {
        // The receiver may be gone when a test has finished looking; that is not an error.
        let _ = tx.lock().map(|tx| tx.send(event));
    });
    (log, rx)
}

/// A bound, listening server that has not started accepting yet.
pub struct Server {
    acceptor: Acceptor,
    config: ServerConfig,
}

impl Server {
    /// Creates the socket, binds and listens. Errors here are the walkthrough's bind errors:
    /// port in use, unknown host, reserved port.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        config.validate()?;
        let acceptor = Acceptor::bind(
            &config.endpoint,
            ListenConfig {
                backlog: config.backlog,
                address_reuse: config.address_reuse,
                max_clients: config.max_clients,
                io_timeout: config.idle_timeout,
                engine: config.engine,
            },
        )?;
        Ok(Server { acceptor, config })
    }

    /// The address bound: with `--port 0`, the port the kernel chose.
    pub fn local_addr(&self) -> &Address {
        self.acceptor.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        self.acceptor.handle()
    }

    /// Runs the server on a new thread.
    pub fn spawn(self, log: EventLog) -> RunningServer {
        let addr = self.local_addr().clone();
        let handle = self.handle();
        RunningServer::spawn(addr, handle, move || self.run(log))
    }

    /// Accepts and serves clients until [`ServerHandle::stop`] is called.
    pub fn run(self, log: EventLog) -> Result<(), Error> {
        let service = AckService {
            config: Arc::new(self.config),
            log,
        };
        self.acceptor.run(service)
    }
}

/// The ack protocol as a [`Service`]: what every engine runs for `socket-lab server`.
struct AckService {
    config: Arc<ServerConfig>,
    log: EventLog,
}

impl Service for AckService {
    fn serve(&self, stream: Stream, peer: Address) {
        serve_connection(stream, peer, &self.config, &self.log);
    }

    fn notice(&self, notice: AcceptNotice) {
        (self.log)(match notice {
            AcceptNotice::Accepted { peer } => Event::Connected { peer },
            AcceptNotice::Busy { max_clients } => Event::Busy { max_clients },
            AcceptNotice::AcceptFailed { error } => Event::AcceptFailed { error },
            AcceptNotice::SetupFailed { peer, error } => Event::Refused { peer, error },
        })
    }
}

impl EventDriven for AckService {
    type Conversation = AckConversation;

    fn open(&self, peer: Address) -> AckConversation {
        AckConversation {
            peer,
            config: Arc::clone(&self.config),
            log: Arc::clone(&self.log),
            idle_until: self.config.idle_timeout.map(deadline_after),
            stalled_since: None,
        }
    }

    fn recv_size(&self) -> usize {
        self.config.recv_size
    }
}

/// [`serve_connection`] as a state machine, for the event loop: the same log lines and the
/// same acks, one per `recv` that returned data.
pub struct AckConversation {
    peer: Address,
    config: Arc<ServerConfig>,
    log: EventLog,
    /// A peer silent until then is disconnected (`--idle-timeout`).
    idle_until: Option<Instant>,
    /// Acks are queued and the peer has taken none of them since then. A peer that reads
    /// nothing for `--idle-timeout` is cut off, as a blocking `send` with that timeout is.
    stalled_since: Option<Instant>,
}

impl AckConversation {
    fn disconnected(&self, reason: Option<String>) {
        (self.log)(Event::Disconnected {
            peer: self.peer.clone(),
            reason,
        });
    }
}

impl Conversation for AckConversation {
    fn received(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Flow {
        (self.log)(Event::Message {
            peer: self.peer.clone(),
            data: bytes.to_vec(),
        });
        out.extend_from_slice(&self.config.ack);
        self.stalled_since.get_or_insert(now);
        self.idle_until = self
            .config
            .idle_timeout
            .map(|idle| deadline_from(now, idle));
        Flow::Continue
    }

    fn peer_closed(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        self.disconnected(None);
        Flow::Close
    }

    fn sent(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        self.stalled_since = None;
        Flow::Continue
    }

    fn progressed(&mut self, now: Instant) {
        if self.stalled_since.is_some() {
            self.stalled_since = Some(now);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let idle = self.config.idle_timeout?;
        match self.stalled_since {
            Some(since) => Some(deadline_from(since, idle)),
            None => self.idle_until,
        }
    }

    fn timed_out(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        if self.stalled_since.is_some() {
            // The words a blocking `send` that timed out gives (EAGAIN).
            let timed_out = io::Error::from_raw_os_error(libc::EAGAIN);
            self.disconnected(Some(crate::error::describe(&timed_out)));
            return Flow::Abort;
        }
        let idle = self.config.idle_timeout.unwrap_or_default();
        self.disconnected(Some(format!("idle for {idle:?}, closed by the server")));
        Flow::Abort
    }

    fn failed(&mut self, error: &io::Error) {
        self.disconnected(Some(crate::error::describe(error)));
    }

    fn stopped(&mut self) {
        // What the blocking engines log too: their `recv` returns 0 after the stop's shutdown.
        self.disconnected(None);
    }
}

/// Step five for one client: `recv`, log, ack, until the peer closes.
pub fn serve_connection(mut stream: Stream, peer: Address, config: &ServerConfig, log: &EventLog) {
    let mut buffer = vec![0; config.recv_size];
    let reason = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break None,
            Ok(n) => {
                log(Event::Message {
                    peer: peer.clone(),
                    data: buffer[..n].to_vec(),
                });
                if let Err(e) = stream.write_all(&config.ack) {
                    break Some(crate::error::describe(&e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let idle = config.idle_timeout.unwrap_or_default();
                break Some(format!("idle for {idle:?}, closed by the server"));
            }
            Err(e) => break Some(crate::error::describe(&e)),
        }
    };
    log(Event::Disconnected { peer, reason });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::ThreadRole;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn refusal(config: ServerConfig) -> String {
        match config.validate() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn each_limit_admits_its_edge_and_refuses_one_past_it() {
        let default = ServerConfig::default;
        for accepted in [
            ServerConfig {
                recv_size: 1,
                ..default()
            },
            ServerConfig {
                recv_size: MAX_RECV_SIZE,
                ..default()
            },
            ServerConfig {
                backlog: 0,
                ..default()
            },
            ServerConfig {
                backlog: 65_535,
                ..default()
            },
            ServerConfig {
                max_clients: 1,
                ack: b"k".to_vec(),
                ..default()
            },
        ] {
            assert!(accepted.validate().is_ok(), "{accepted:?}");
        }
        assert_eq!(
            refusal(ServerConfig {
                recv_size: MAX_RECV_SIZE + 1,
                ..default()
            }),
            "--recv-size must be between 1 and 16777216 bytes, not 16777217"
        );
        assert_eq!(
            refusal(ServerConfig {
                recv_size: 0,
                ..default()
            }),
            "--recv-size must be between 1 and 16777216 bytes, not 0"
        );
        for backlog in [-1, 65_536] {
            assert_eq!(
                refusal(ServerConfig {
                    backlog,
                    ..default()
                }),
                format!(
                    "--backlog must be between 0 and 65535, not {backlog} (the kernel caps it at net.core.somaxconn)"
                )
            );
        }
    }

    #[test]
    fn every_event_prints_as_the_log_line_the_binary_shows() {
        let peer = Address::Inet("127.0.0.1:40370".parse().unwrap());
        let cases = [
            (
                Event::Connected { peer: peer.clone() },
                "[127.0.0.1:40370] connected",
                false,
            ),
            (
                Event::Message {
                    peer: peer.clone(),
                    data: b"hi\r\n\x1b".to_vec(),
                },
                r"[127.0.0.1:40370] send a message to server: hi\r\n\x1b",
                false,
            ),
            (
                Event::Disconnected {
                    peer: peer.clone(),
                    reason: None,
                },
                "[127.0.0.1:40370] disconnected",
                false,
            ),
            (
                Event::Disconnected {
                    peer: peer.clone(),
                    reason: Some("connection reset by peer".into()),
                },
                "[127.0.0.1:40370] disconnected (connection reset by peer)",
                false,
            ),
            (
                Event::Busy { max_clients: 2 },
                "all 2 client slots are busy; new connections wait in the listen queue (raise --max-clients to serve more at once)",
                true,
            ),
            (
                Event::AcceptFailed {
                    error: "too many open files".into(),
                },
                "accept failed: too many open files; retrying",
                true,
            ),
            (
                Event::Refused {
                    peer: peer.clone(),
                    error: "too many open files".into(),
                },
                "[127.0.0.1:40370] cannot be served: too many open files; connection closed",
                true,
            ),
            (
                Event::Truncated {
                    peer: peer.clone(),
                    data: b"abc".to_vec(),
                    datagram_len: 10,
                },
                "[127.0.0.1:40370] send a message to server: abc (truncated: the datagram had 10 bytes, recv read 3, the other 7 were discarded)",
                false,
            ),
            (
                Event::ReplyFailed {
                    peer: Address::Unix(None),
                    reason: "no return address".into(),
                },
                "[unnamed] cannot send the ack: no return address",
                true,
            ),
        ];
        for (event, line, is_problem) in cases {
            assert_eq!(event.to_string(), line);
            assert_eq!(event.is_problem(), is_problem, "{event:?}");
        }
    }

    /// The kernel's id of the thread `name` (at most 15 bytes, the kernel's limit for a
    /// thread name) of this process, from `/proc/self/task/TID/comm`.
    fn tid_of(name: &str) -> Option<i32> {
        std::fs::read_dir("/proc/self/task")
            .ok()?
            .flatten()
            .find(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })?
            .file_name()
            .to_str()?
            .parse()
            .ok()
    }

    /// Which system call the thread `tid` of this process is blocked in, from
    /// `/proc/self/task/TID/syscall` (its first field; `running` while it runs).
    fn blocked_in(tid: i32) -> Option<i64> {
        let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
        syscall.split(' ').next()?.parse().ok()
    }

    /// The system calls that wait in `recv`: std's and socket2's reads call one of these.
    pub(crate) const RECV_CALLS: &[i64] = &[libc::SYS_read, libc::SYS_recvfrom, libc::SYS_recvmsg];
    /// The system calls `poll(2)` may be, by architecture.
    #[cfg(target_arch = "x86_64")]
    pub(crate) const POLL_CALLS: &[i64] = &[libc::SYS_poll, libc::SYS_ppoll];
    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) const POLL_CALLS: &[i64] = &[libc::SYS_ppoll];
    /// The system calls `epoll_wait(2)` (mio's `Poll::poll`) may be, by architecture.
    #[cfg(target_arch = "x86_64")]
    pub(crate) const EPOLL_CALLS: &[i64] = &[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    pub(crate) const EPOLL_CALLS: &[i64] = &[libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];

    /// The kernel's id of the thread `name`, waited for until the thread has its name.
    fn tid_named(name: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(tid) = tid_of(name) {
                return tid;
            }
            assert!(Instant::now() < deadline, "no thread is named {name}");
            std::thread::yield_now();
        }
    }

    /// Waits until the thread `name` is blocked in one of `calls`.
    pub(crate) fn wait_until_blocked_in(name: &str, calls: &[i64]) {
        wait_until_tid_blocked_in(tid_named(name), calls);
    }

    /// Waits until the thread `tid` is blocked in one of `calls`.
    fn wait_until_tid_blocked_in(tid: i32, calls: &[i64]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !blocked_in(tid).is_some_and(|call| calls.contains(&call)) {
            assert!(
                Instant::now() < deadline,
                "thread {tid} never blocked in {calls:?}"
            );
            std::thread::yield_now();
        }
    }

    /// [`interrupt_tid`] for the thread `name`, whose handle says it has not been joined.
    pub(crate) fn interrupt<T>(name: &str, _alive: &std::thread::JoinHandle<T>, calls: &[i64]) {
        interrupt_tid(tid_named(name), calls);
    }

    /// Waits until the thread `tid` is blocked in one of `calls`, then interrupts the call
    /// with a signal that has a handler, and waits until the handler ran. `poll` and
    /// `epoll_wait` then fail with EINTR, always; so does `recv` on a socket with a receive
    /// timeout, whatever `SA_RESTART` says (signal(7)): what a loop around any of them must
    /// take in its stride.
    pub(crate) fn interrupt_tid(tid: i32, calls: &[i64]) {
        // One interruption at a time, so the flag below is this call's signal, no other's.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        static DELIVERED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let delivered = DELIVERED.get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(libc::SIGUSR1, Arc::clone(&flag)).unwrap();
            flag
        });
        delivered.store(false, Ordering::SeqCst);
        wait_until_tid_blocked_in(tid, calls);
        // SAFETY: tgkill only sends a signal; SIGUSR1 has a handler, registered above, so it
        // cannot end the process.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::pid_t::from(tid),
                libc::SIGUSR1,
            )
        };
        assert_eq!(sent, 0, "tgkill of thread {tid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !delivered.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "SIGUSR1 never reached thread {tid}"
            );
            std::thread::yield_now();
        }
    }

    /// [`interrupt`] a thread waiting in `recv`.
    pub(crate) fn interrupt_recv<T>(name: &str, thread: &std::thread::JoinHandle<T>) {
        interrupt(name, thread, RECV_CALLS);
    }

    /// A signal that arrives while `recv` waits makes it fail with EINTR (always, on a socket
    /// with a receive timeout, as every engine sets for `--idle-timeout`): the loop must
    /// `recv` again, not take it for a broken connection.
    #[test]
    fn a_signal_during_recv_is_not_a_disconnect() {
        let (server_side, mut client) = UnixStream::pair().unwrap();
        server_side
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (log, events) = channel_log();
        let name = "serve-eintr";
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let config = ServerConfig::default();
                serve_connection(
                    Stream::Unix(server_side),
                    Address::Unix(None),
                    &config,
                    &log,
                )
            })
            .unwrap();
        interrupt_recv(name, &worker);

        client.write_all(b"after the signal").unwrap();
        let mut ack = [0; ACK.len()];
        client.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, ACK);
        drop(client);
        worker.join().unwrap();
        let logged: Vec<Event> = events.try_iter().collect();
        assert_eq!(
            logged,
            [
                Event::Message {
                    peer: Address::Unix(None),
                    data: b"after the signal".to_vec()
                },
                Event::Disconnected {
                    peer: Address::Unix(None),
                    reason: None
                }
            ]
        );
    }

    /// A signal that interrupts a server's thread while it waits for clients (`poll` in the
    /// blocking engines' accept loops, `epoll_wait` in every event loop) fails that wait
    /// with EINTR. That is no reason to stop: the loop must wait again, and serve the next
    /// client.
    #[test]
    fn a_signal_to_a_server_waiting_for_clients_is_not_a_stop() {
        for engine in Engine::ALL {
            let server = Server::bind(ServerConfig {
                endpoint: Endpoint::inet("127.0.0.1", 0),
                engine,
                ..ServerConfig::default()
            })
            .unwrap();
            let (log, _events) = channel_log();
            let running = server.spawn(log);
            let (waiter, calls, count) = match engine {
                Engine::Iterative => (ThreadRole::OneAtATime, POLL_CALLS, 1),
                Engine::Threads => (ThreadRole::AcceptLoop, POLL_CALLS, 1),
                Engine::Epoll => (
                    ThreadRole::EventLoop,
                    EPOLL_CALLS,
                    crate::engine::event_loop::loops(),
                ),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let waiting = loop {
                let waiting: Vec<i32> = running
                    .handle
                    .threads()
                    .iter()
                    .filter(|thread| thread.role == waiter)
                    .map(|thread| thread.tid)
                    .collect();
                if waiting.len() == count {
                    break waiting;
                }
                assert!(
                    Instant::now() < deadline,
                    "{engine}: {waiting:?} {waiter:?}"
                );
                std::thread::yield_now();
            };
            for tid in waiting {
                interrupt_tid(tid, calls);
            }

            let Address::Inet(addr) = running.addr else {
                panic!("{engine}: not an Internet address: {}", running.addr)
            };
            let mut client = std::net::TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("{engine}: no server after the signal: {e}"));
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            client.write_all(b"after the signal").unwrap();
            let mut ack = [0; ACK.len()];
            client
                .read_exact(&mut ack)
                .unwrap_or_else(|e| panic!("{engine}: no ack after the signal: {e}"));
            assert_eq!(&ack, ACK, "{engine}");
            drop(client);
            running
                .stop()
                .unwrap_or_else(|e| panic!("{engine}: the server failed: {e}"));
        }
    }
}
