//! The accept loop of the blocking engines: `poll` for a client, `accept` it, serve it.
//!
//! The walkthrough's step 4 is one line, `connection, address = accept()`, in a loop. A real
//! accept loop also has to:
//!
//! - **be stoppable**: it waits with `poll(2)` on two descriptors, the listener and a wake-up
//!   socket, so a stop request never has to wait for the next client to arrive;
//! - **cap the connections served at once** (`max_clients`): when all slots are taken it stops
//!   accepting, and new connections wait in the kernel's listen queue, which is what that
//!   queue (the backlog) is for;
//! - **survive running out of descriptors**: `accept` fails with `EMFILE` but the connection
//!   stays queued, so retrying at once would spin at full CPU; it backs off instead;
//! - **pause** ([`super::ServerHandle::pause_accept`]): the socket keeps listening but nobody
//!   calls `accept`, so the listen queue can be watched filling up (lesson 18,
//!   `tests/kinds.rs`).
//!
//! [`Acceptor::run_threads`] hands each connection to a worker from the [`super::pool`];
//! [`Acceptor::run_iterative`] serves it on the accepting thread, as `server.py` does.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::handle::{ServerHandle, Shared, ThreadRole};
use super::pool::WorkerPool;
use super::{AcceptNotice, EventDriven, Service};
use crate::endpoint::{Address, AddressReuse, Endpoint, Listener, Stream};
use crate::error::Error;
use crate::poll::{self, Want, Watch};

/// How long the accept loop waits after running out of descriptors before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// How to listen, and how many connections to serve at once.
#[derive(Clone, Copy, Debug)]
pub struct ListenConfig {
    /// The `backlog` in `listen(backlog)`.
    pub backlog: i32,
    pub address_reuse: AddressReuse,
    /// Connections served at once; more wait in the listen queue.
    pub max_clients: usize,
    /// Set on every accepted socket as its read and write timeout (blocking engines).
    pub io_timeout: Option<Duration>,
    /// How the connections will be served.
    pub engine: super::Engine,
}

/// A listener, a cap on connections served at once, and a stop that works from any thread.
/// What to do with each connection is the [`Service`]'s.
pub struct Acceptor {
    pub(crate) listener: Listener,
    local_addr: Address,
    pub(crate) config: ListenConfig,
    pub(crate) shared: Arc<Shared>,
    wake_rx: UnixStream,
    /// The event loops' epoll instances, made at bind ([`super::Engine::Epoll`] only).
    pub(crate) polls: Vec<mio::Poll>,
}

impl Acceptor {
    /// `socket`, `bind`, `listen(backlog)`, and the wake-up pair a stop request writes to.
    pub fn bind(endpoint: &Endpoint, config: ListenConfig) -> Result<Acceptor, Error> {
        let listener = Listener::bind(endpoint, config.backlog, config.address_reuse)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("cannot read the address bound for {endpoint}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("cannot make the listener non-blocking", e))?;
        let (handle, wake_rx) = ServerHandle::with_wake_socket()?;
        let polls = match config.engine {
            super::Engine::Epoll => super::event_loop::prepare(&listener, &handle.shared)?,
            super::Engine::Threads | super::Engine::Iterative => Vec::new(),
        };
        Ok(Acceptor {
            listener,
            local_addr,
            config,
            shared: handle.shared,
            wake_rx,
            polls,
        })
    }

    pub fn local_addr(&self) -> &Address {
        &self.local_addr
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs `service` on the configured engine until [`ServerHandle::stop`] is called.
    pub fn run<S: EventDriven>(self, service: S) -> Result<(), Error> {
        match self.config.engine {
            super::Engine::Iterative => self.run_iterative(&service),
            super::Engine::Threads => self.run_threads(Arc::new(service)),
            super::Engine::Epoll => super::event_loop::run(self, Arc::new(service)),
        }
    }

    /// Accepts until [`ServerHandle::stop`] is called, serving each connection on a thread of
    /// the pool, at most `max_clients` at once. On stop, every open connection is shut down
    /// so blocked reads return, and the workers are joined.
    pub fn run_threads<S: Service>(self, service: Arc<S>) -> Result<(), Error> {
        let _on_roll = self.shared.enrol(ThreadRole::AcceptLoop);
        let mut workers =
            WorkerPool::new(self.config.max_clients).on_roll_of(Arc::clone(&self.shared));
        let mut next_id: u64 = 0;
        while self.wait_for_free_slot(&*service) {
            let (stream, peer) = match self.next_client(&*service)? {
                Next::Client(stream, peer) => (stream, peer),
                Next::Again => continue,
                Next::Stop => break,
            };
            let id = next_id;
            next_id += 1;
            if let Err(e) = self.register(id, &stream) {
                service.notice(AcceptNotice::SetupFailed {
                    peer,
                    error: crate::error::describe(&e),
                });
                if out_of_descriptors(&e) {
                    // As for accept: wait for a worker to give a descriptor back.
                    thread::sleep(ACCEPT_BACKOFF);
                }
                continue;
            }
            let slot = Slot {
                shared: Arc::clone(&self.shared),
                id,
            };
            let worker_service = Arc::clone(&service);
            let setup_peer = peer.clone();
            let job = Box::new(move || {
                worker_service.serve(stream, peer);
                drop(slot);
            });
            // Out of threads or memory with no worker to wait for: this connection is closed
            // (the job, its stream and its slot are dropped), the server goes on.
            if let Err(e) = workers.execute(job) {
                service.notice(AcceptNotice::SetupFailed {
                    peer: setup_peer,
                    error: format!(
                        "cannot start a thread for this connection: {}",
                        crate::error::describe(&e)
                    ),
                });
            }
        }
        // Stop: wake every worker blocked in recv or send, then wait for them to log and exit.
        for stream in self.shared.clients().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        workers.join();
        Ok(())
    }

    /// The walkthrough's `server.py`: accept one client, serve it on this thread until it
    /// leaves, then accept the next. Meanwhile another client's connect still completes: the
    /// kernel does the handshake and queues the connection, up to the backlog (lesson 34).
    pub fn run_iterative<S: Service>(self, service: &S) -> Result<(), Error> {
        let _on_roll = self.shared.enrol(ThreadRole::OneAtATime);
        // The client table (which a stop shuts down) never holds more than this one client,
        // so one id serves them all.
        let id: u64 = 0;
        while self.wait_for_free_slot(service) {
            let (stream, peer) = match self.next_client(service)? {
                Next::Client(stream, peer) => (stream, peer),
                Next::Again => continue,
                Next::Stop => break,
            };
            if let Err(e) = self.register(id, &stream) {
                service.notice(AcceptNotice::SetupFailed {
                    peer,
                    error: crate::error::describe(&e),
                });
                continue;
            }
            // A stop that came after `accept` but before `register` shut down every socket in
            // the table except this one, so serving it would wait in `recv` for the idle
            // timeout. The stop flag is set before that shutdown, so it is seen here; the
            // socket is shut down here instead, and served all the same: its `recv` returns 0
            // at once, so the log says `disconnected` for this `connected` too.
            if self.shared.is_stopping() {
                self.shared.clients().remove(&id);
                let _ = stream.shutdown(Shutdown::Both);
                service.serve(stream, peer);
                break;
            }
            service.serve(stream, peer);
            self.shared.clients().remove(&id);
        }
        Ok(())
    }

    /// Waits for a client (or a stop) and accepts it.
    fn next_client(&self, service: &impl Service) -> Result<Next, Error> {
        match wait_readable(&self.listener, &self.wake_rx) {
            Ok(Ready::Socket) => {}
            Ok(Ready::Wake) => return Ok(Next::Stop),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Next::Again),
            Err(e) => return Err(Error::io("poll failed", e)),
        }
        match self.listener.accept() {
            Ok((stream, peer)) => {
                service.notice(AcceptNotice::Accepted { peer: peer.clone() });
                Ok(Next::Client(stream, peer))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Next::Again)
            }
            Err(e) => {
                // EMFILE and friends: the connection stays queued, so retrying at once would
                // spin at full CPU. Back off and let a worker free a descriptor.
                service.notice(AcceptNotice::AcceptFailed {
                    error: crate::error::describe(&e),
                });
                thread::sleep(ACCEPT_BACKOFF);
                Ok(Next::Again)
            }
        }
    }

    /// Blocks while all client slots are taken or accepting is paused. Returns false once the
    /// server is stopping.
    fn wait_for_free_slot(&self, service: &impl Service) -> bool {
        let max_clients = self.config.max_clients;
        let mut clients = self.shared.clients();
        let mut announced = false;
        let must_wait = |clients: &HashMap<u64, Stream>| {
            (clients.len() >= max_clients || self.shared.is_paused()) && !self.shared.is_stopping()
        };
        while must_wait(&clients) {
            if !announced && clients.len() >= max_clients {
                service.notice(AcceptNotice::Busy { max_clients });
                announced = true;
            }
            clients = self
                .shared
                .slot_freed
                .wait(clients)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        !self.shared.is_stopping()
    }

    /// Makes the socket blocking with the configured timeouts, and keeps a second handle to it
    /// so a stop can shut it down under its worker.
    fn register(&self, id: u64, stream: &Stream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(self.config.io_timeout)?;
        stream.set_write_timeout(self.config.io_timeout)?;
        self.shared.clients().insert(id, stream.try_clone()?);
        Ok(())
    }
}

/// What waiting for the next client came to.
enum Next {
    Client(Stream, Address),
    /// Nothing to accept after all (another thread took it, a signal): wait again.
    Again,
    Stop,
}

/// A connection's place in the client table. Dropping it frees the place, also when the
/// worker panics and unwinds: a bug then costs one connection, not one of `max_clients`.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.clients().remove(&self.id);
        self.shared.slot_freed.notify_one();
    }
}

pub(crate) enum Ready {
    /// The socket waited on is readable: a client to accept, a datagram to read.
    Socket,
    Wake,
}

/// Waits until a socket is readable or a stop was requested: `poll(2)` on both.
pub(crate) fn wait_readable(socket: &impl AsFd, wake: &impl AsFd) -> io::Result<Ready> {
    let mut watches = [Watch::new(socket, Want::Read), Watch::new(wake, Want::Read)];
    poll::wait(&mut watches, None)?;
    if watches[1].is_ready() {
        Ok(Ready::Wake)
    } else {
        Ok(Ready::Socket)
    }
}
