//! Engines: how a server waits for its clients, apart from what it says to them.
//!
//! Every server here does the same thing with its listening socket (`accept`, then talk), and
//! the walkthrough's `server.py` shows the simplest way to do it: accept one client, serve it
//! until it leaves, accept the next. What a server *says* (an ack per `recv`, an HTTP
//! response per request) is its protocol; *how it waits* for many clients at once is its
//! engine. This module holds the engines, and [`crate::server`] (the ack protocol) and
//! [`crate::http::server`] (HTTP) are services that run on any of them:
//!
//! | engine | how it waits | one idle connection costs | what stops it |
//! |---|---|---|---|
//! | [`Engine::Iterative`] | one blocking `recv` at a time, on the accepting thread | nothing extra | a second client waits until the first leaves |
//! | [`Engine::Threads`] | a blocking thread per connection, from a pool | a thread: its touched stack pages, a kernel task | threads: memory, context switches, the pool's cap |
//! | [`Engine::Epoll`] | one thread per core asks the kernel which sockets are ready (`epoll`) | a few hundred bytes of state | CPU, and descriptors (`ulimit -n`) |
//!
//! The first is the walkthrough's (lesson 34 shows its surprise: the second client's
//! `connect` succeeds, because the kernel completes the handshake, but nobody reads its
//! messages). The second is how most first "real" servers grow (the Rust Book's last chapter).
//! The third is how nginx works: non-blocking sockets, and for each one a small state machine
//! that says what to do when it becomes readable or writable. `BENCHMARKS.md` measures all
//! three.
//!
//! - [`accept`]: the accept loop the blocking engines share: a cap on connections at once,
//!   a pause, and a stop that works from any thread ([`handle`]).
//! - [`pool`]: the worker threads of [`Engine::Threads`], grown on demand, shrunk when idle.
//! - [`event_loop`]: [`Engine::Epoll`], readiness through `mio`, one loop per core.
//!
//! A protocol implements [`Service`]: `serve` is the blocking form (a loop of `recv` and
//! `send`, one step per line, as the walkthrough writes it). To run on the event loop too it
//! implements [`EventDriven`]: `open` starts the same conversation as a state machine
//! ([`Conversation`]), which must never block. Both are written once per protocol and tested to give the same answers
//! (`tests/engines.rs`).

pub mod accept;
pub mod event_loop;
pub mod handle;
pub mod pool;

use std::io;
use std::time::{Duration, Instant};

use crate::endpoint::{Address, Stream};
use crate::error::Error;

pub use handle::{RunningServer, ServerHandle, ServerThread, ThreadRole};

/// How a server serves its connections: `--engine` and `engine=` in a lesson.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// A worker thread per connection, from a pool, at most `max_clients` at once.
    #[default]
    Threads,
    /// The walkthrough's `server.py`: accept one client, serve it until it leaves, then
    /// accept the next. A second client's connect still completes (the kernel does the
    /// handshake and queues it); its messages wait until the first client is gone.
    Iterative,
    /// An event loop per core on non-blocking sockets: `epoll` says which sockets are ready,
    /// and each connection is a small state machine.
    Epoll,
}

impl Engine {
    /// Every engine, in the order the lessons tell the story.
    pub const ALL: [Engine; 3] = [Engine::Iterative, Engine::Threads, Engine::Epoll];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Threads => "threads",
            Engine::Iterative => "iterative",
            Engine::Epoll => "epoll",
        }
    }

    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|engine| engine.name() == name)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;

    fn from_str(name: &str) -> Result<Engine, Error> {
        Engine::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Engine::ALL.iter().map(|engine| engine.name()).collect();
            Error::Config(format!(
                "there is no engine called \"{}\"; choose one of: {}",
                crate::escape::escape(name.as_bytes()),
                names.join(", ")
            ))
        })
    }
}

/// What the accept loop has to report, whichever server it runs for.
pub enum AcceptNotice {
    /// `accept` returned this client's connection. Reported by the accept loop itself, so it
    /// comes before anything the connection's worker reports (and before a "busy" the
    /// accept loop says next).
    Accepted { peer: Address },
    /// All `max_clients` slots are taken; new connections wait in the listen queue.
    Busy { max_clients: usize },
    /// `accept` failed (out of file descriptors, say); the loop backs off and goes on.
    AcceptFailed { error: String },
    /// A connection was accepted but could not be set up (timeouts, a second handle).
    SetupFailed { peer: Address, error: String },
}

/// A line a server logs: the binary prints it on stdout, or on stderr when it is a problem.
pub trait LogEvent: std::fmt::Display + Send + 'static {
    fn is_problem(&self) -> bool;
}

/// The accept loop's news as the servers log it: the same words from every server.
impl std::fmt::Display for AcceptNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcceptNotice::Accepted { peer } => write!(f, "[{peer}] connected"),
            AcceptNotice::Busy { max_clients } => write!(
                f,
                "all {max_clients} client slots are busy; new connections wait in the listen queue (raise --max-clients to serve more at once)"
            ),
            AcceptNotice::AcceptFailed { error } => write!(f, "accept failed: {error}; retrying"),
            AcceptNotice::SetupFailed { peer, error } => {
                write!(f, "[{peer}] cannot be served: {error}; connection closed")
            }
        }
    }
}

/// A protocol served by the blocking engines: the ack server, the web server, the proxy.
pub trait Service: Send + Sync + 'static {
    /// Serve this connection until it ends (iterative and threads engines). The socket is
    /// blocking, with the read and write timeouts the engine was given.
    fn serve(&self, stream: Stream, peer: Address);

    /// The accept loop's news (a connection accepted, all slots busy, accept failed).
    fn notice(&self, notice: AcceptNotice);
}

/// A protocol that can also run on the event loop, as a state machine per connection.
pub trait EventDriven: Service {
    /// One connection's state.
    type Conversation: Conversation;

    /// A new connection's state machine.
    fn open(&self, peer: Address) -> Self::Conversation;

    /// The event loop reads with `recv` of at most this many bytes (the `n` in `recv(n)`).
    fn recv_size(&self) -> usize;
}

/// What a [`Conversation`] wants to happen next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep the connection: read more, send what is queued.
    Continue,
    /// Send what is queued, then close.
    Close,
    /// Send what is queued, then `shutdown(SHUT_WR)` so the peer reads the end, and read and
    /// throw away what the peer still sends, for at most this long and this many bytes, before
    /// the close. Closing with unread bytes makes the kernel send RST, which can reach the peer
    /// before it has read our last words (HTTP after an error, RFC 9112 §9.6).
    DrainThenClose { at_most: Duration, bytes: usize },
    /// Close now, dropping anything still queued.
    Abort,
}

/// One connection of a [`Service`] as a state machine: the event loop calls one method per
/// thing that happened and sends what it queues in `out`. No method may block or do I/O.
pub trait Conversation: Send {
    /// One `recv` returned these bytes (never empty).
    fn received(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Flow;

    /// `recv` returned 0: the peer closed its side. Anything queued is still sent, unless
    /// the answer is [`Flow::Abort`].
    fn peer_closed(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow;

    /// Everything queued has reached the kernel's send buffer. A conversation that stopped
    /// answering pipelined requests to let the output drain goes on here.
    fn sent(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow;

    /// A `send` took some of the queued bytes (the peer is reading): a conversation that
    /// gives up on a peer that stops reading starts counting again.
    fn progressed(&mut self, _now: Instant) {}

    /// When [`Conversation::timed_out`] is due, if ever. Asked again after every call.
    fn deadline(&self) -> Option<Instant>;

    /// [`Conversation::deadline`] has passed.
    fn timed_out(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow;

    /// A `recv` or `send` on this connection failed; it is closed after this call.
    fn failed(&mut self, error: &io::Error);

    /// The server is stopping; the connection is closed after this call.
    fn stopped(&mut self);
}

/// `Instant::now() + timeout`, saturated: a timeout longer than the clock can count
/// (`--request-timeout 18446744073709551615`) is a deadline a century away, which never
/// comes, rather than an overflow panic on every connection.
pub fn deadline_after(timeout: Duration) -> Instant {
    deadline_from(Instant::now(), timeout)
}

/// [`deadline_after`] from a given moment.
pub fn deadline_from(now: Instant, timeout: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    // The monotonic clock counts seconds since boot in an i64: a century more cannot overflow.
    now + timeout.min(CENTURY)
}

/// What [`raise_descriptor_limit`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The soft limit before, as `ulimit -n` showed it.
    pub was: u64,
    /// The soft limit now: the hard limit, or `was` if raising failed.
    pub now: u64,
}

impl DescriptorLimit {
    /// Descriptors a server needs besides its connections: the listener, the wake-up pair,
    /// epoll's own, stdin/stdout/stderr, and some slack for the accept that fails with
    /// `EMFILE` without losing the connection.
    pub const SPARE: u64 = 32;

    /// `wanted`, or fewer if that many connections would not fit in the limit: a default
    /// should never be a number this machine cannot serve.
    pub fn fitting(&self, wanted: usize) -> usize {
        let room = self.now.saturating_sub(Self::SPARE).max(1);
        wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    /// A warning for the user when `max_clients` connections would not fit, or `None`.
    pub fn too_low_for(&self, max_clients: usize) -> Option<String> {
        let needed = max_clients as u64 + Self::SPARE;
        (self.now < needed).then(|| {
            format!(
                "this process may open {} descriptors (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`), and {max_clients} clients need about {needed}: connections beyond about {} will wait in the listen queue. Raise the hard limit (ulimit -Hn, or LimitNOFILE= for a service) or lower --max-clients",
                self.now,
                self.now.saturating_sub(Self::SPARE)
            )
        })
    }
}

/// Raises this process's soft limit on open descriptors (`RLIMIT_NOFILE`) to its hard limit.
/// Each connection is a descriptor, and the soft limit is often 1,024: a server holding
/// 10,000 connections needs more. Raising the soft limit up to the hard one needs no
/// privilege.
pub fn raise_descriptor_limit() -> io::Result<DescriptorLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit, read above, with only the soft limit raised.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Ok(DescriptorLimit { was, now: was });
        }
    }
    Ok(DescriptorLimit {
        was,
        now: limit.rlim_cur,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip_and_an_unknown_name_lists_the_choices() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>().unwrap(), engine);
            // What the transcripts and errors print is the name that parses back.
            assert_eq!(engine.to_string(), engine.name());
        }
        assert_eq!(Engine::Epoll.name(), "epoll");
        let error = "fibers".parse::<Engine>().unwrap_err().to_string();
        assert_eq!(
            error,
            "there is no engine called \"fibers\"; choose one of: iterative, threads, epoll"
        );
    }

    /// A deadline is the timeout from now, however long (fifty years is a wait, not an
    /// error); only beyond a century is it cut, so that no timeout overflows the clock.
    #[test]
    fn a_deadline_is_the_timeout_from_now_up_to_a_century() {
        let now = Instant::now();
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        assert_eq!(deadline_from(now, Duration::ZERO), now);
        assert_eq!(deadline_from(now, 50 * year), now + 50 * year);
        assert_eq!(deadline_from(now, 100 * year), now + 100 * year);
        assert_eq!(deadline_from(now, Duration::MAX), now + 100 * year);
    }

    #[test]
    fn a_limit_below_max_clients_is_explained() {
        let limit = DescriptorLimit {
            was: 1024,
            now: 1024,
        };
        assert_eq!(limit.fitting(20_000), 992);
        assert_eq!(limit.fitting(64), 64);
        assert_eq!(limit.too_low_for(992), None);
        let warning = limit.too_low_for(993).unwrap();
        assert!(
            warning.starts_with("this process may open 1024 descriptors"),
            "{warning}"
        );
        assert!(warning.contains("beyond about 992"), "{warning}");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limit = raise_descriptor_limit().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_descriptor_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(limit.now, now.rlim_cur);
        assert_eq!(now.rlim_cur, now.rlim_max);
        assert!(limit.now >= limit.was);
    }
}
