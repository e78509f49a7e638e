//! [`super::Engine::Epoll`]: one thread per core, each waiting on all of its sockets at once.
//!
//! A blocking server parks a thread in every `recv`. An event loop instead makes every socket
//! non-blocking and asks the kernel one question, over and over: *which of my sockets are
//! ready?* That is `epoll_wait(2)` (reached through `mio`, the crate Rust's async runtimes are
//! built on; the loop and the state machines are the lesson, the syscall wrappers are not).
//! Then, for each ready socket, it does what can be done *without waiting*:
//!
//! - **readable**: `recv` until it says `EAGAIN` ("would block"), or until a `recv` returns
//!   less than it asked for (on a stream socket that means the receive queue was emptied, and
//!   new bytes bring a new event, epoll(7)), and hand each chunk to the connection's
//!   [`Conversation`], a state machine that queues its answer. `mio` registers sockets
//!   *edge-triggered* (`EPOLLET`): the kernel reports a socket when something changes (new
//!   bytes arrive, the peer closes), not because unread bytes are still waiting, so a loop
//!   that stops reading early gets no reminder and must remember it stopped (the `again`
//!   list).
//! - **writable**: `send` what is queued, until `EAGAIN`. A `send` on a non-blocking socket
//!   takes only what fits in the kernel's send buffer; the rest waits for the next
//!   "writable".
//! - **the listener readable**: `accept` until `EAGAIN`, at most `max_clients` connections
//!   open in all. The loops check that cap, accept and count the connection under one lock:
//!   two loops that both saw the last slot free would otherwise both fill it.
//!
//! Three things a blocking server gets for free have to be built by hand:
//!
//! - **Backpressure.** A blocking `send` stops its thread when the peer does not read. Here
//!   nothing stops: a connection whose queued output reaches [`HIGH_WATER`] is simply not
//!   read from until the output drains, so its request bytes stay in the kernel's receive
//!   buffer, the window closes, and the peer's `send` blocks instead of our memory growing.
//! - **Timeouts.** No `SO_RCVTIMEO`: each conversation names its next deadline, kept in one
//!   ordered set per loop, and the earliest one is `epoll_wait`'s timeout. Ten thousand idle
//!   connections are ten thousand entries in a tree, not ten thousand sleeping threads.
//! - **Fairness.** One connection that always has more to read would starve the others, so a
//!   connection gets [`READS_PER_TURN`] `recv`s per turn, then waits for the next one.
//!
//! Every loop registers the same listening socket, so whichever loop wakes first accepts; the
//! others find `EAGAIN` (the "thundering herd" costs one wasted `accept` each). `SO_REUSEPORT`,
//! a listener per loop with the kernel choosing among them, spreads connections more evenly
//! but does not exist for Unix sockets, which the lab serves too.
//!
//! Memory per connection is its state machine (for the ack protocol a few dozen bytes), its
//! slot, socket handle and timer entry (about 0.4 KiB in all for an idle ack connection,
//! measured in `BENCHMARKS.md`), plus its queued output, bounded by [`HIGH_WATER`] plus one
//! answer; the `recv` buffer is one per loop. The kernel's socket and buffers are extra, and
//! do not show in the process's resident memory.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::accept::Acceptor;
use super::handle::Shared;
use super::{AcceptNotice, Conversation, EventDriven, Flow, deadline_from};
use crate::endpoint::{Listener, Stream};
use crate::error::Error;

/// Queued output beyond which a connection is not read from until it drains.
pub const HIGH_WATER: usize = 64 * 1024;
/// The most a connection's emptied output buffer keeps allocated.
const IDLE_OUT_CAPACITY: usize = 1024;
/// `recv`s per connection per turn of the loop.
pub const READS_PER_TURN: usize = 16;
/// The most event loops, whatever the core count.
pub const MAX_LOOPS: usize = 64;
/// Readiness events taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// How many event loops to run: one per core.
pub fn loops() -> usize {
    thread::available_parallelism()
        .map_or(1, |cores| cores.get())
        .min(MAX_LOOPS)
}

/// What the loops of one server share.
struct Common {
    /// The slots of `max_clients`, taken and given back under one lock. A loop checks for a
    /// free slot, accepts and takes the slot without letting go: two loops that each checked
    /// before either took it could both fill the last one (on a busy machine a loop can stop
    /// between its check and its `accept` for milliseconds, time for another loop to fill
    /// the slot and a new client to arrive).
    slots: Mutex<Slots>,
}

impl Common {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The counts are whole after any panic (each change is one assignment).
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Slots {
    /// Connections open across all loops.
    open: usize,
    /// "Busy" was said, and not yet undone by a connection closing.
    busy_said: bool,
}

/// Makes each loop's epoll instance, with its waker and the listening socket registered: done
/// when the server binds, so a server that has said where it listens already holds every
/// descriptor it keeps, and a failure is reported before it says so.
pub(crate) fn prepare(listener: &Listener, shared: &Shared) -> Result<Vec<Poll>, Error> {
    (0..loops())
        .map(|_| {
            let poll = Poll::new().map_err(|e| Error::io("cannot create an epoll instance", e))?;
            let waker = Waker::new(poll.registry(), WAKER)
                .map_err(|e| Error::io("cannot create the event loop's waker", e))?;
            shared.add_waker(Arc::new(waker));
            poll.registry()
                .register(
                    &mut SourceFd(&listener.as_raw_fd()),
                    LISTENER,
                    Interest::READABLE,
                )
                .map_err(|e| Error::io("cannot watch the listening socket with epoll", e))?;
            Ok(poll)
        })
        .collect()
}

/// Runs one event loop per core until the server is stopped.
pub(crate) fn run<S: EventDriven>(mut acceptor: Acceptor, service: Arc<S>) -> Result<(), Error> {
    let polls = std::mem::take(&mut acceptor.polls);
    let acceptor = Arc::new(acceptor);
    let common = Arc::new(Common {
        slots: Mutex::new(Slots {
            open: 0,
            busy_said: false,
        }),
    });
    let mut loops_to_run: Vec<EventLoop<S>> = polls
        .into_iter()
        .map(|poll| {
            EventLoop::new(
                poll,
                Arc::clone(&acceptor),
                Arc::clone(&service),
                Arc::clone(&common),
            )
        })
        .collect();
    let last = loops_to_run.pop();
    let others: Vec<_> = loops_to_run
        .into_iter()
        .map(|event_loop| {
            thread::Builder::new()
                .name("event loop".into())
                .spawn(move || event_loop.run())
        })
        .collect();
    let mut result = last.map_or(Ok(()), EventLoop::run);
    for other in others {
        let outcome = match other {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(Error::Config("an event loop panicked".into()))),
            Err(e) => Err(Error::io("cannot start an event loop thread", e)),
        };
        // The first failure is the one to report; the others followed from it.
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// One connection: its socket, its state machine and what it has yet to send.
struct Connection<C> {
    stream: Stream,
    conversation: C,
    out: Vec<u8>,
    /// How much of `out` has been sent.
    sent: usize,
    phase: Phase,
    /// `recv` returned 0: nothing more will come.
    peer_done: bool,
    /// epoll said the peer has closed its side (`EPOLLRDHUP`) or the socket failed: read
    /// until `recv` says so, since no further edge will come.
    end_announced: bool,
    /// The deadline this connection has in the loop's timer set.
    timer: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Close once `out` is sent.
    Closing,
    /// Once `out` is sent, shut down the write side and drain.
    DrainAfterSending {
        at_most: Duration,
        bytes: usize,
    },
    /// Our side is shut down; reading and discarding until the peer closes or `until`.
    Draining {
        until: Instant,
        bytes_left: usize,
    },
}

impl<C> Connection<C> {
    fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Drops the bytes already sent from `out`, so the conversation, which queues at the
    /// end of `out` and holds back while it is long, sees only what is still to go.
    fn compact(&mut self) {
        if self.sent > 0 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// What driving a connection came to.
enum Outcome {
    Open,
    /// Still open, and it stopped reading with bytes maybe left: drive it again next turn.
    MoreToRead,
    Closed,
}

struct EventLoop<S: EventDriven> {
    poll: Poll,
    acceptor: Arc<Acceptor>,
    service: Arc<S>,
    common: Arc<Common>,
    connections: Vec<Option<Connection<S::Conversation>>>,
    free: Vec<usize>,
    timers: BTreeSet<(Instant, usize)>,
    recv_buffer: Vec<u8>,
    /// Connections that used up their reads for this turn.
    again: Vec<usize>,
    /// Accepting stopped because of `max_clients`, a pause or `EMFILE`: try again when that
    /// changes, since the listener will not report the connections already queued.
    accept_blocked: bool,
    accept_retry_at: Option<Instant>,
}

impl<S: EventDriven> EventLoop<S> {
    fn new(
        poll: Poll,
        acceptor: Arc<Acceptor>,
        service: Arc<S>,
        common: Arc<Common>,
    ) -> EventLoop<S> {
        let recv_size = service.recv_size().max(1);
        EventLoop {
            poll,
            acceptor,
            service,
            common,
            connections: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
            recv_buffer: vec![0; recv_size],
            again: Vec::new(),
            // Connections may have queued before this loop started.
            accept_blocked: true,
            accept_retry_at: None,
        }
    }

    fn run(mut self) -> Result<(), Error> {
        let _on_roll = self.acceptor.shared.enrol(super::ThreadRole::EventLoop);
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            if self.acceptor.shared.is_stopping() {
                self.stop_all();
                return Ok(());
            }
            if self.accept_blocked {
                self.accept_all();
            }
            let timeout = if self.again.is_empty() {
                self.next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("epoll_wait failed", e)),
            }
            for index in std::mem::take(&mut self.again) {
                self.drive(index);
            }
            for event in events.iter() {
                match event.token() {
                    // A stop, or a resume after a pause: both are checked at the loop's top.
                    WAKER => self.accept_blocked = true,
                    LISTENER => self.accept_all(),
                    Token(index) => {
                        if (event.is_read_closed() || event.is_error())
                            && let Some(Some(connection)) = self.connections.get_mut(index)
                        {
                            connection.end_announced = true;
                        }
                        self.drive(index);
                    }
                }
            }
            self.expire_timers();
        }
    }

    /// The earliest of the connections' deadlines and the accept backoff.
    fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|&(at, _)| at);
        match (timer, self.accept_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts every queued connection, as far as `max_clients` allows.
    fn accept_all(&mut self) {
        self.accept_blocked = false;
        let shared = Arc::clone(&self.acceptor.shared);
        if shared.is_paused() {
            self.accept_blocked = true;
            return;
        }
        if let Some(at) = self.accept_retry_at {
            if Instant::now() < at {
                // Still blocked: the loop's wait ends at `at` (`next_deadline`), and the top
                // of the loop tries again.
                self.accept_blocked = true;
                return;
            }
            self.accept_retry_at = None;
        }
        let max_clients = self.acceptor.config.max_clients;
        loop {
            let taken = {
                let mut slots = self.common.slots();
                if slots.open >= max_clients {
                    if !slots.busy_said {
                        slots.busy_said = true;
                        self.service.notice(AcceptNotice::Busy { max_clients });
                    }
                    None
                } else {
                    let accepted = self.acceptor.listener.accept();
                    if let Ok((_, peer)) = &accepted {
                        slots.open += 1;
                        // Said with the slot taken and the lock held, so a "busy" another
                        // loop says on finding the slots full comes after it.
                        self.service
                            .notice(AcceptNotice::Accepted { peer: peer.clone() });
                    }
                    Some(accepted)
                }
            };
            let (stream, peer) = match taken {
                None => {
                    self.accept_blocked = true;
                    return;
                }
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Some(Err(e)) => {
                    // `EMFILE`: the connection stays queued; retrying at once would spin.
                    self.service.notice(AcceptNotice::AcceptFailed {
                        error: crate::error::describe(&e),
                    });
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    self.accept_blocked = true;
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                self.service.notice(AcceptNotice::SetupFailed {
                    peer,
                    error: crate::error::describe(&e),
                });
                self.release_slot();
                continue;
            }
            let index = self.free.pop().unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
            // Registering a socket that is already readable reports it at once, so bytes that
            // arrived before this call are not missed.
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&stream.as_raw_fd()),
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.free.push(index);
                self.release_slot();
                self.service.notice(AcceptNotice::SetupFailed {
                    peer,
                    error: crate::error::describe(&e),
                });
                // epoll_ctl fails only for lack of memory or of watches
                // (`fs.epoll.max_user_watches`, epoll(7)): the next connection would fail
                // the same way, so pause as for EMFILE.
                self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                self.accept_blocked = true;
                return;
            }
            let conversation = self.service.open(peer);
            self.connections[index] = Some(Connection {
                stream,
                conversation,
                out: Vec::new(),
                sent: 0,
                phase: Phase::Open,
                peer_done: false,
                end_announced: false,
                timer: None,
            });
            self.update_timer(index);
        }
    }

    /// Does everything that can be done on one connection without blocking.
    fn drive(&mut self, index: usize) {
        let Some(Some(connection)) = self.connections.get_mut(index) else {
            // A stale event for a connection closed earlier in this turn.
            return;
        };
        let outcome = step(
            connection,
            &mut self.recv_buffer[..],
            self.service.recv_size(),
        );
        match outcome {
            Outcome::Open => self.update_timer(index),
            Outcome::MoreToRead => {
                self.update_timer(index);
                self.again.push(index);
            }
            Outcome::Closed => self.close(index),
        }
    }

    fn expire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(at, index)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(Some(connection)) = self.connections.get_mut(index) else {
                continue;
            };
            connection.timer = None;
            connection.compact();
            let flow = match connection.phase {
                Phase::Draining { .. } => Flow::Abort,
                _ => connection.conversation.timed_out(&mut connection.out, now),
            };
            if apply(connection, flow, now) {
                self.close(index);
            } else {
                self.drive(index);
            }
        }
    }

    /// Keeps the connection's entry in the timer set at its current deadline.
    fn update_timer(&mut self, index: usize) {
        let Some(Some(connection)) = self.connections.get_mut(index) else {
            return;
        };
        let deadline = match connection.phase {
            Phase::Draining { until, .. } => Some(until),
            _ => connection.conversation.deadline(),
        };
        if deadline != connection.timer {
            if let Some(old) = connection.timer {
                self.timers.remove(&(old, index));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, index));
            }
            connection.timer = deadline;
        }
    }

    fn close(&mut self, index: usize) {
        let Some(connection) = self.connections.get_mut(index).and_then(Option::take) else {
            return;
        };
        if let Some(at) = connection.timer {
            self.timers.remove(&(at, index));
        }
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&connection.stream.as_raw_fd()));
        drop(connection);
        self.free.push(index);
        self.release_slot();
    }

    /// Gives back the slot a connection held against `max_clients`.
    fn release_slot(&mut self) {
        let mut slots = self.common.slots();
        let was_full = slots.open >= self.acceptor.config.max_clients;
        slots.open = slots.open.saturating_sub(1);
        if was_full {
            // A slot is free again, and the listener will not report the connections already
            // waiting in its queue: this loop takes the next one, for whichever loop hit the cap.
            slots.busy_said = false;
            self.accept_blocked = true;
        }
    }

    fn stop_all(&mut self) {
        for index in 0..self.connections.len() {
            if let Some(Some(connection)) = self.connections.get_mut(index) {
                connection.conversation.stopped();
                let _ = connection.stream.shutdown(Shutdown::Both);
                self.close(index);
            }
        }
    }
}

/// Sends what is queued, reads what has come, feeds the conversation, until something would
/// block. Returns what became of the connection.
fn step<C: Conversation>(
    connection: &mut Connection<C>,
    recv_buffer: &mut [u8],
    recv_size: usize,
) -> Outcome {
    let recv_size = recv_size.clamp(1, recv_buffer.len());
    let mut reads = 0;
    // A `recv` that returned less than it could took everything the kernel had: reading again
    // would only say `EAGAIN`, and new bytes bring a new edge. This saves a syscall per
    // request, as nginx does, but only while epoll has not announced the peer's end: that
    // edge may already have been spent on the event being handled.
    let mut took_all = false;
    loop {
        let now = Instant::now();
        // 1. Send what is queued.
        while connection.unsent() > 0 {
            match connection.stream.write(&connection.out[connection.sent..]) {
                Ok(0) => {
                    connection
                        .conversation
                        .failed(&io::Error::from(io::ErrorKind::WriteZero));
                    return Outcome::Closed;
                }
                Ok(n) => {
                    connection.sent += n;
                    connection.conversation.progressed(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    connection.conversation.failed(&e);
                    return Outcome::Closed;
                }
            }
        }
        if connection.unsent() == 0 && !connection.out.is_empty() {
            // An idle connection should not keep its last answer's buffer: with ten thousand
            // of them that is most of the server's memory.
            if connection.out.capacity() > IDLE_OUT_CAPACITY {
                connection.out = Vec::new();
            } else {
                connection.out.clear();
            }
            connection.sent = 0;
            let flow = match connection.phase {
                Phase::Open => connection.conversation.sent(&mut connection.out, now),
                _ => Flow::Continue,
            };
            if apply(connection, flow, now) {
                return Outcome::Closed;
            }
            if connection.unsent() > 0 {
                continue;
            }
        }
        // Once everything is sent, a closing connection is done and one that drains after
        // sending starts draining (`apply` checks both).
        if apply(connection, Flow::Continue, now) {
            return Outcome::Closed;
        }
        // 2. Read, unless the output is backed up or nothing more can come.
        let backed_up = connection.unsent() >= HIGH_WATER;
        let reading = matches!(connection.phase, Phase::Open | Phase::Draining { .. });
        if backed_up || !reading || connection.peer_done {
            return Outcome::Open;
        }
        if took_all {
            return Outcome::Open;
        }
        if reads == READS_PER_TURN {
            return Outcome::MoreToRead;
        }
        reads += 1;
        connection.compact();
        let received = match connection.stream.read(&mut recv_buffer[..recv_size]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if !matches!(connection.phase, Phase::Draining { .. }) {
                    connection.conversation.failed(&e);
                }
                return Outcome::Closed;
            }
        };
        if let Phase::Draining { until, bytes_left } = connection.phase {
            if received == 0 || received >= bytes_left {
                return Outcome::Closed;
            }
            connection.phase = Phase::Draining {
                until,
                bytes_left: bytes_left - received,
            };
            continue;
        }
        took_all = received > 0 && received < recv_size && !connection.end_announced;
        let flow = if received == 0 {
            connection.peer_done = true;
            connection
                .conversation
                .peer_closed(&mut connection.out, now)
        } else {
            connection
                .conversation
                .received(&recv_buffer[..received], &mut connection.out, now)
        };
        if apply(connection, flow, now) {
            return Outcome::Closed;
        }
    }
}

/// Moves the connection to the phase `flow` asks for. Returns true when it must close now.
fn apply<C>(connection: &mut Connection<C>, flow: Flow, now: Instant) -> bool {
    match flow {
        Flow::Abort => return true,
        Flow::Continue => {}
        Flow::Close => connection.phase = Phase::Closing,
        Flow::DrainThenClose { at_most, bytes } => {
            connection.phase = Phase::DrainAfterSending { at_most, bytes }
        }
    }
    if let Phase::DrainAfterSending { at_most, bytes } = connection.phase
        && connection.unsent() == 0
    {
        // Everything said: the peer reads our FIN after the last byte, and whatever it still
        // sends is read and dropped, so the close that follows sends FIN, not RST.
        if connection.stream.shutdown(Shutdown::Write).is_err() || connection.peer_done {
            return true;
        }
        connection.phase = Phase::Draining {
            until: deadline_from(now, at_most),
            bytes_left: bytes,
        };
    }
    connection.phase == Phase::Closing && connection.unsent() == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn connection(out: &[u8], sent: usize) -> (Connection<()>, UnixStream) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let connection = Connection {
            stream: Stream::Unix(ours),
            conversation: (),
            out: out.to_vec(),
            sent,
            phase: Phase::Open,
            peer_done: false,
            end_announced: false,
            timer: None,
        };
        (connection, peer)
    }

    /// The conversation holds back while `out` is long, so `out` must hold only what is
    /// still to go once a `recv` or a timer hands it to the conversation.
    #[test]
    fn compacting_drops_the_bytes_already_sent_and_keeps_the_rest() {
        let (mut partly, _peer) = connection(b"sent|unsent", 5);
        partly.compact();
        assert_eq!((partly.out.as_slice(), partly.sent), (&b"unsent"[..], 0));
        assert_eq!(partly.unsent(), 6);

        let (mut none_sent, _peer) = connection(b"all unsent", 0);
        none_sent.compact();
        assert_eq!(
            (none_sent.out.as_slice(), none_sent.sent),
            (&b"all unsent"[..], 0)
        );
    }
}
