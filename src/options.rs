//! Socket options the walkthrough never sets, and what each one changes.
//!
//! Python's `socket.socket()` and Rust's std make different choices for you, and a few
//! `setsockopt` calls explain most "it works in one and not the other" surprises. The `socket2`
//! crate exposes each option; [`listen`] and [`connect`] take them as a [`TcpOptions`].
//!
//! - **`SO_REUSEADDR` and `TIME_WAIT`.** The side that closes a TCP connection first keeps its
//!   address in `TIME_WAIT` for a minute, so late packets of the old connection cannot be
//!   mistaken for a new one. A server that stops while clients are connected closes first, so
//!   restarting it at once hits "address already in use", *unless* the new socket sets
//!   `SO_REUSEADDR`. Rust's std sets it on Unix; Python does not, which is why
//!   `server.py` often cannot be restarted right away. Two *listening* sockets still cannot
//!   share a port either way. `tests/kinds.rs`,
//!   `reuse_address_lets_a_server_rebind_over_time_wait`, shows both.
//! - **`TCP_NODELAY` and Nagle's algorithm.** To save packets, TCP holds back a small write
//!   while earlier data is unacknowledged. The receiver, meanwhile, delays its ACK hoping to
//!   piggyback it on a reply (up to 40 ms on Linux). A request written in two pieces to a
//!   server that replies only to the whole request stalls: the second piece waits for an ACK
//!   that waits for a reply that waits for the second piece. `TCP_NODELAY` sends at once.
//!   Timing is no thing to assert in a test; `cargo bench --bench nagle` measures
//!   it, and `socket-lab client --nodelay` sets it.
//! - **`SO_SNDBUF` / `SO_RCVBUF`.** The kernel's buffers on each side. Linux doubles the
//!   value asked for (to leave room for its own bookkeeping) and enforces a minimum. Small
//!   buffers make partial sends easy to see: [`crate::send`].
//! - **Timeouts.** Python's `settimeout(t)` is `set_read_timeout` / `set_write_timeout` in
//!   Rust; a `recv` that waits longer fails with "timed out". A connect timeout is a separate
//!   thing: [`crate::endpoint::Stream::connect_timeout`] (`tests/kinds.rs`,
//!   `a_read_timeout_bounds_a_recv`, `a_connect_timeout_gives_up_on_a_full_backlog`).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// The options [`listen`] and [`connect`] set before the socket is used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// `SO_REUSEADDR`: may this socket bind over connections in `TIME_WAIT`?
    pub reuse_address: bool,
    /// `SO_SNDBUF` in bytes, before Linux doubles it; `None` keeps the kernel's default.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` in bytes; accepted sockets inherit the listener's.
    pub recv_buffer: Option<usize>,
    /// `TCP_NODELAY`: turn Nagle's algorithm off.
    pub nodelay: bool,
}

impl TcpOptions {
    /// What `socket.socket()` gives a Python program: no `SO_REUSEADDR`.
    pub fn python() -> TcpOptions {
        TcpOptions::default()
    }

    /// What Rust's `TcpListener::bind` sets on Unix: `SO_REUSEADDR`.
    pub fn rust_std() -> TcpOptions {
        TcpOptions {
            reuse_address: true,
            ..TcpOptions::default()
        }
    }

    fn apply(&self, socket: &Socket) -> io::Result<()> {
        socket.set_reuse_address(self.reuse_address)?;
        if let Some(size) = self.send_buffer {
            socket.set_send_buffer_size(size)?;
        }
        if let Some(size) = self.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.set_tcp_nodelay(self.nodelay)
    }
}

/// `socket` + options + `bind` + `listen(backlog)`.
pub fn listen(addr: SocketAddr, backlog: i32, options: &TcpOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    options.apply(&socket)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// `socket` + options + `connect`, waiting at most `timeout`. Options go on before `connect`
/// because the buffer sizes shape the window the handshake announces.
pub fn connect(addr: SocketAddr, timeout: Duration, options: &TcpOptions) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    options.apply(&socket)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}
