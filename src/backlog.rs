//! `listen(backlog)`, seen from the client: connections that wait, and how long.
//!
//! The walkthrough says the backlog is "the most clients allowed to connect" and that "when
//! the queue is full, requests are refused" (claims 5 and 6). On Linux neither is quite so:
//!
//! - The backlog bounds the queue of connections the kernel has *completed* but the program
//!   has not yet `accept`ed. Accepted clients do not count: a server with backlog 1 can serve
//!   thousands, one accept at a time.
//! - Linux lets the queue hold `backlog + 1` connections, and `listen` silently lowers a
//!   backlog above `net.core.somaxconn` to that value.
//! - When it is full, the SYN of a new connection is *dropped*, not refused: the client hears
//!   nothing, retransmits its SYN and its `connect` waits. It completes on a retransmission
//!   after the server accepts, or fails with `ETIMEDOUT` when the retransmissions run out;
//!   "connection refused" only ever means nobody listens on that port at all.
//!
//! How long the client waits is not in this code: sysctls decide it (tcp(7) and the kernel's
//! `ip-sysctl` documentation), and they differ between kernels and machines.
//!
//! - `net.ipv4.tcp_syn_retries` (default 6; `TCP_SYNCNT` overrides it for one socket): how
//!   many times the SYN is retransmitted before `connect` gives up. tcp(7)'s total for the
//!   default assumes the timeout doubles after every retransmission, as it did before
//!   Linux 6.5.
//! - `net.ipv4.tcp_syn_linear_timeouts` (Linux 6.5 and later, default 4): how many of those
//!   retransmissions keep the initial timeout before it starts doubling. With it, giving up
//!   takes far less time than tcp(7) says.
//! - `net.core.somaxconn` (default 4096 since Linux 5.4, 128 before): the cap on `backlog`.
//! - `net.ipv4.tcp_abort_on_overflow` (default 0): what happens when the queue fills between
//!   a client's SYN and the handshake's last ACK. With 0 that ACK is dropped and the server
//!   retransmits its SYN-ACK later; with 1 it answers with a reset. Either way, a SYN that
//!   finds the queue already full is dropped.
//!
//! To watch this without timing guesses, [`PendingConnect`] starts a non-blocking `connect`
//! and asks, with a bounded wait, whether the handshake has finished. With a server paused by
//! [`crate::server::ServerHandle::pause_accept`], `tests/kinds.rs`,
//! `connections_beyond_the_backlog_wait_until_the_server_accepts`, fills the queue, sees the
//! next connect not complete within 300 ms, resumes accepting, and sees that same connect
//! complete.

use crate::poll::{self, Want, Watch};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::error::{Error, SocketType};

/// Where a non-blocking `connect` has got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The three-way handshake finished: the connection sits in the server's queue or has
    /// been accepted.
    Connected,
    /// No answer yet: the SYN was dropped or is still on its way.
    Pending,
}

/// A `connect` that has been started and not yet waited for.
#[derive(Debug)]
pub struct PendingConnect {
    socket: Socket,
    addr: SocketAddr,
}

impl PendingConnect {
    /// Sends the SYN and returns at once: a non-blocking `connect` says `EINPROGRESS`, and the
    /// kernel carries on with the handshake (and its retransmissions) in the background.
    pub fn start(addr: SocketAddr) -> Result<PendingConnect, Error> {
        let connect_error = |source| Error::Connect {
            addr: addr.to_string(),
            tried: vec![addr],
            socket_type: SocketType::Stream,
            source,
        };
        let socket =
            Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(connect_error)?;
        socket.set_nonblocking(true).map_err(connect_error)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(connect_error(e)),
        }
        Ok(PendingConnect { socket, addr })
    }

    /// Waits at most `timeout` for the handshake to finish. A refused or failed connect is an
    /// error; silence is [`Progress::Pending`].
    pub fn wait(&self, timeout: Duration) -> Result<Progress, Error> {
        let connect_error = |source| Error::Connect {
            addr: self.addr.to_string(),
            tried: vec![self.addr],
            socket_type: SocketType::Stream,
            source,
        };
        // A connecting socket becomes writable when the handshake ends, either way.
        let mut watches = [Watch::new(&self.socket, Want::Write)];
        if poll::wait(&mut watches, Some(timeout)).map_err(connect_error)? == 0 {
            return Ok(Progress::Pending);
        }
        // SO_ERROR holds the outcome: none means connected.
        match self.socket.take_error().map_err(connect_error)? {
            None => Ok(Progress::Connected),
            Some(error) => Err(connect_error(error)),
        }
    }

    /// The connected socket, blocking again, once [`PendingConnect::wait`] said so.
    /// The client's own address: the kernel picked its port at `connect`, before any answer.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
    }

    pub fn into_stream(self) -> Result<TcpStream, Error> {
        self.socket.set_nonblocking(false).map_err(|e| {
            Error::io(
                format!("cannot make the socket to {} blocking", self.addr),
                e,
            )
        })?;
        Ok(self.socket.into())
    }
}
