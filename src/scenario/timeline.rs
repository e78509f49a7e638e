//! The order things happened in: one clock for the clients and the server.
//!
//! A scenario has two sides that run at once. The runner makes the clients' calls on its own
//! thread; the server answers on threads of its own. A transcript that printed each side's
//! lines when the runner got round to reading them would show effects before causes (an ack
//! arriving before the recv that caused it). So every event takes a [`Moment`] where it
//! happens, from one [`Timeline`] that both sides share, and the transcript is printed in
//! that order.
//!
//! A moment is a place in one sequence, handed out under one lock, so no two events share one
//! and their order is the order in which the two threads reached the lock. Which point of a
//! call takes it matters:
//!
//! - **A call that sends takes its moment before it starts** (`send`, `connect`, `close`,
//!   `shutdown`): on loopback the peer can receive the bytes and log them before `send` has
//!   even returned to its caller.
//! - **A call that waits takes its moment when it returns** (`recv`, `accept`): what it
//!   returns arrived before that.
//! - **The server takes its moment when it reports the event**, which it does right after the
//!   call returns and before it acts on it: the ack server reports a recv before it sends the
//!   ack, the web server reports a request before it writes the response.
//!
//! So a client's send comes before the server's recv of those bytes, the server's recv before
//! its ack, the ack before the client's recv of it; `tests/scenarios.rs` checks this on every
//! lesson (see [`super::report::Transcript::check_causality`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::http::server::HttpEvent;
use crate::server::Event;

/// When something happened: its place in the order of the run, and the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment {
    /// Unique within a run's timeline; later events have larger numbers.
    pub seq: u64,
    pub at: Instant,
    /// The real-time clock at the same moment: the clock the kernel stamps captured frames
    /// with, so the wire's segments are placed among events by it (see
    /// [`crate::wire::Segment::stamped`]).
    pub wall: SystemTime,
}

/// What a server reported, as the server built it (not the log line printed from it).
#[derive(Clone, Debug)]
pub enum ServerEvent {
    /// The ack server, over a stream or datagrams.
    Ack(Event),
    /// The web server.
    Http(HttpEvent),
    /// The hostile network between the clients and the server (`network ...`).
    Network(crate::proxy::ProxyEvent),
}

impl From<crate::proxy::ProxyEvent> for ServerEvent {
    fn from(event: crate::proxy::ProxyEvent) -> ServerEvent {
        ServerEvent::Network(event)
    }
}

impl From<Event> for ServerEvent {
    fn from(event: Event) -> ServerEvent {
        ServerEvent::Ack(event)
    }
}

impl From<HttpEvent> for ServerEvent {
    fn from(event: HttpEvent) -> ServerEvent {
        ServerEvent::Http(event)
    }
}

impl ServerEvent {
    /// The line the server prints for it, which `server: log` matches.
    pub fn log_line(&self) -> String {
        match self {
            ServerEvent::Ack(event) => event.to_string(),
            ServerEvent::Http(event) => event.to_string(),
            ServerEvent::Network(event) => format!("network: {event}"),
        }
    }
}

/// The shared clock, and the server's events that the runner has not shown yet.
#[derive(Default)]
pub struct Timeline {
    state: Mutex<State>,
    arrived: Condvar,
    /// Connections the ack server has reported accepting, so a crowd can keep pace with them.
    accepted: AtomicUsize,
}

#[derive(Default)]
struct State {
    next: u64,
    inbox: Vec<(Moment, ServerEvent)>,
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A server thread that panicked mid-push leaves nothing half-written: the vector
        // either has the event or not.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stamp(state: &mut State) -> Moment {
        let moment = Moment {
            seq: state.next,
            at: Instant::now(),
            wall: SystemTime::now(),
        };
        state.next += 1;
        moment
    }

    /// A moment for something happening now.
    pub fn now(&self) -> Moment {
        Timeline::stamp(&mut self.lock())
    }

    /// Called on a server thread: stamps the event now and keeps it for the runner. Stamping
    /// and keeping happen under one lock, so once the runner holds a moment, every server
    /// event before it is already in the inbox.
    pub fn server_event(&self, event: ServerEvent) {
        if let ServerEvent::Ack(Event::Connected { .. }) = event {
            self.accepted.fetch_add(1, Ordering::SeqCst);
        }
        let mut state = self.lock();
        let moment = Timeline::stamp(&mut state);
        state.inbox.push((moment, event));
        drop(state);
        self.arrived.notify_all();
    }

    /// How many connections the ack server has reported accepting so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The server's events from before `moment`, oldest first, taken out of the inbox.
    pub fn take_before(&self, moment: Moment) -> Vec<(Moment, ServerEvent)> {
        let mut state = self.lock();
        let split = state
            .inbox
            .partition_point(|(stamped, _)| *stamped < moment);
        let later = state.inbox.split_off(split);
        std::mem::replace(&mut state.inbox, later)
    }

    /// Every event in the inbox, waiting until there is one or `deadline` passes (then the
    /// list is empty).
    pub fn wait_for_events(&self, deadline: Instant) -> Vec<(Moment, ServerEvent)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut state = self
            .arrived
            .wait_timeout_while(self.lock(), left, |state| state.inbox.is_empty())
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        std::mem::take(&mut state.inbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Event;
    use std::sync::Arc;
    use std::time::Duration;

    fn busy() -> ServerEvent {
        ServerEvent::Ack(Event::Busy { max_clients: 1 })
    }

    #[test]
    fn events_before_a_moment_are_taken_and_later_ones_kept() {
        let timeline = Timeline::default();
        timeline.server_event(busy());
        let between = timeline.now();
        timeline.server_event(busy());
        let taken = timeline.take_before(between);
        assert_eq!(taken.len(), 1);
        assert!(taken[0].0 < between);
        let rest = timeline.wait_for_events(Instant::now());
        assert_eq!(rest.len(), 1);
        assert!(rest[0].0 > between);
    }

    #[test]
    fn a_wait_ends_when_a_server_thread_reports() {
        let timeline = Arc::new(Timeline::default());
        let reporter = Arc::clone(&timeline);
        let thread = std::thread::spawn(move || reporter.server_event(busy()));
        let events = timeline.wait_for_events(Instant::now() + Duration::from_secs(10));
        thread.join().unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn moments_from_many_threads_are_unique_and_ordered() {
        let timeline = Arc::new(Timeline::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let timeline = Arc::clone(&timeline);
                std::thread::spawn(move || (0..100).map(|_| timeline.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Moment> = threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        all.sort();
        all.dedup_by_key(|moment| moment.seq);
        assert_eq!(all.len(), 400);
        assert!(all.windows(2).all(|pair| pair[0].at <= pair[1].at));
    }
}
