//! Stopping, pausing and joining a server from another thread.
//!
//! `server.py` stops when its process is killed. A server that can be stopped cleanly must be
//! woken wherever it waits: in `poll` for the next client (a byte on a wake-up socket it polls
//! beside the listener), in `epoll` (a [`mio::Waker`] per event loop), in a worker's blocking
//! `recv` (a `shutdown(SHUT_RDWR)` of that worker's socket, which makes the `recv` return 0),
//! or waiting for a free slot (a condition variable). [`ServerHandle::stop`] does all four.
//!
//! The handle also keeps the server's *roll*: every thread that works for the server puts
//! itself on it while it runs ([`ServerThread`]), by the id the kernel knows it by, so the
//! cost of an engine can be counted from outside: `/proc/self/task/TID` is that thread, and
//! its `status` says how often it was switched out (lessons 26 and 38, `server: threads`).

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crate::endpoint::{Address, Stream};
use crate::error::Error;

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A server running on a thread of its own, as tests use it.
pub struct RunningServer {
    pub addr: Address,
    pub handle: ServerHandle,
    thread: JoinHandle<Result<(), Error>>,
}

/// What a server's threads and its handles share.
pub(crate) struct Shared {
    pub(crate) stopping: AtomicBool,
    /// Set by [`ServerHandle::pause_accept`]: the socket listens, but nobody calls `accept`.
    pub(crate) accept_paused: AtomicBool,
    wake_tx: UnixStream,
    /// The event loops' wakers, registered as each loop starts.
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
    /// The blocking engines' open connections, so a stop can shut each one down under its
    /// worker.
    clients: Mutex<HashMap<u64, Stream>>,
    pub(crate) slot_freed: Condvar,
    /// The threads working for this server now.
    roll: Mutex<Vec<ServerThread>>,
}

/// One thread working for a server, as the kernel knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerThread {
    /// The kernel's id for the thread (`gettid(2)`): `/proc/self/task/TID` describes it.
    pub tid: i32,
    pub role: ThreadRole,
}

/// What a server's thread is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadRole {
    /// The iterative engine's only thread: it accepts a client, then serves it until it
    /// leaves.
    OneAtATime,
    /// The threads engine's accept loop, which hands each connection to a worker.
    AcceptLoop,
    /// A worker of the threads engine's pool: it serves one connection at a time, blocking in
    /// its `recv`, and waits for the next when that one ends.
    Worker,
    /// One of the epoll engine's event loops: it serves every connection it accepted.
    EventLoop,
}

/// A thread's place on a server's roll; dropping it (as the thread's work for the server
/// ends, or it unwinds) takes the thread off.
pub(crate) struct OnRoll {
    shared: Arc<Shared>,
    tid: i32,
}

impl Drop for OnRoll {
    fn drop(&mut self) {
        self.shared.roll().retain(|thread| thread.tid != self.tid);
    }
}

impl Shared {
    pub(crate) fn clients(&self) -> MutexGuard<'_, HashMap<u64, Stream>> {
        // A worker that panicked while holding the lock leaves the table usable: it is only a
        // list of sockets to shut down.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.accept_paused.load(Ordering::SeqCst)
    }

    fn roll(&self) -> MutexGuard<'_, Vec<ServerThread>> {
        self.roll
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts the calling thread on the server's roll, as `role`, until the returned guard is
    /// dropped.
    pub(crate) fn enrol(self: &Arc<Shared>, role: ThreadRole) -> OnRoll {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        self.roll().push(ServerThread { tid, role });
        OnRoll {
            shared: Arc::clone(self),
            tid,
        }
    }

    pub(crate) fn add_waker(&self, waker: Arc<mio::Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(waker);
    }

    fn wake_everyone(&self) {
        let _ = (&self.wake_tx).write(&[1]);
        for waker in self
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            let _ = waker.wake();
        }
        // Taking the lock orders this notify after any wait for a free slot.
        drop(self.clients());
        self.slot_freed.notify_all();
    }
}

impl ServerHandle {
    /// A new handle, and the socket its [`ServerHandle::stop`] writes a byte to: a server loop
    /// polls that socket beside its own, so a stop wakes it at once.
    pub(crate) fn with_wake_socket() -> Result<(ServerHandle, UnixStream), Error> {
        let (wake_tx, wake_rx) = UnixStream::pair()
            .map_err(|e| Error::io("cannot create the wake-up socket pair", e))?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            accept_paused: AtomicBool::new(false),
            wake_tx,
            wakers: Mutex::new(Vec::new()),
            clients: Mutex::new(HashMap::new()),
            slot_freed: Condvar::new(),
            roll: Mutex::new(Vec::new()),
        });
        Ok((ServerHandle { shared }, wake_rx))
    }

    /// Keeps listening but stops calling `accept`: new connections wait in the listen queue,
    /// and once it holds more than `backlog` of them the kernel ignores new ones. Call it
    /// before the server starts; on a running blocking server it takes effect after the next
    /// accept.
    pub fn pause_accept(&self) {
        self.shared.accept_paused.store(true, Ordering::SeqCst);
    }

    /// Starts accepting again: the queued connections are served, oldest first.
    pub fn resume_accept(&self) {
        self.shared.accept_paused.store(false, Ordering::SeqCst);
        // Only the event loops and the slot waiters need waking; the byte on the wake-up
        // socket would stop the blocking accept loop, so it is not written.
        for waker in self
            .shared
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            let _ = waker.wake();
        }
        drop(self.shared.clients());
        self.shared.slot_freed.notify_all();
    }

    /// Stops accepting, closes every connection and lets the server's `run` return.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Shutting the connections down here, not only in the accept loop, also stops a
        // server that serves on its accept thread (the iterative engine), blocked in a
        // client's recv.
        for stream in self.shared.clients().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.shared.wake_everyone();
    }

    /// The threads working for the server now, oldest first: what its engine costs in
    /// threads. The threads engine's grow with its connections (up to `max_clients`, plus
    /// the accept loop); the epoll engine's are one per core, however many connections.
    pub fn threads(&self) -> Vec<ServerThread> {
        self.shared.roll().clone()
    }

    /// Calls [`ServerHandle::stop`] on the first SIGINT (Ctrl-C) or SIGTERM.
    pub fn stop_on_signals(&self) -> Result<(), Error> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| Error::io("cannot install the Ctrl-C handler", e))?;
        let handle = self.clone();
        thread::spawn(move || {
            if signals.forever().next().is_some() {
                handle.stop();
            }
        });
        Ok(())
    }
}

impl RunningServer {
    /// Runs `run` on a new thread.
    pub(crate) fn spawn(
        addr: Address,
        handle: ServerHandle,
        run: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> RunningServer {
        RunningServer {
            addr,
            handle,
            thread: thread::spawn(run),
        }
    }

    /// Stops the server and waits until every connection is closed.
    pub fn stop(self) -> Result<(), Error> {
        self.handle.stop();
        self.thread
            .join()
            .unwrap_or_else(|_| Err(Error::Config("the server thread panicked".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A thread is on the server's roll while its guard lives and off it once the guard is
    /// dropped: a worker that exits when idle is no longer counted.
    #[test]
    fn a_thread_is_on_the_roll_while_it_works_for_the_server() {
        let (handle, _wake) = ServerHandle::with_wake_socket().unwrap();
        let roles = |handle: &ServerHandle| -> Vec<ThreadRole> {
            handle.threads().iter().map(|thread| thread.role).collect()
        };
        let accepting = handle.shared.enrol(ThreadRole::AcceptLoop);
        let (enrolled_tx, enrolled) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let shared = Arc::clone(&handle.shared);
        let worker = thread::spawn(move || {
            let _on_roll = shared.enrol(ThreadRole::Worker);
            enrolled_tx.send(()).unwrap();
            let _ = released.recv();
        });
        enrolled.recv().unwrap();
        assert_eq!(roles(&handle), [ThreadRole::AcceptLoop, ThreadRole::Worker]);
        release.send(()).unwrap();
        worker.join().unwrap();
        assert_eq!(roles(&handle), [ThreadRole::AcceptLoop]);
        drop(accepting);
        assert_eq!(roles(&handle), []);
    }
}
