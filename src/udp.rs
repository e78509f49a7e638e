//! Datagram sockets (`SOCK_DGRAM`): the ack server and client over UDP and Unix datagrams.
//!
//! The walkthrough says `SOCK_STREAM` is "mainly for TCP" and `SOCK_DGRAM` "mainly for UDP"
//! (claim 2), then only ever uses streams. Here is the same ack protocol over datagrams:
//! `recvfrom` returns one datagram and the address it came from, `sendto` answers that
//! address. What changes is exactly what the walkthrough's stream claims do not cover:
//!
//! - **No connection.** There is no `listen`, no `accept`, no "connected" and no
//!   "disconnected": every datagram stands alone and carries its sender's address. A client
//!   learns that nobody is listening only when its ack does not come: on loopback the kernel
//!   turns the ICMP "port unreachable" into `ECONNREFUSED` on a *connected* UDP socket
//!   ([`Error::NoReply`]); elsewhere a lost datagram is silence, so the client waits
//!   [`REPLY_TIMEOUT`] and no longer (`tests/udp.rs`, `a_client_with_no_server_is_told_so`).
//! - **Boundaries are kept.** Two sends are two recvs, never one (`tests/udp.rs`,
//!   `two_sends_are_two_datagrams`), the opposite of TCP's lesson 05.
//! - **Truncation discards.** Claim 10 says data beyond `recv(n)` is buffered for the next
//!   `recv`. That holds for TCP only: a datagram longer than `n` is cut to `n` bytes and the
//!   rest is *gone*. Linux will still tell you how long it was: with the `MSG_TRUNC` flag,
//!   `recvfrom` returns the datagram's real length instead of the bytes copied. We call it
//!   through `socket2`'s `recv_from_with_flags` (the flag is not in std) and log
//!   [`Event::Truncated`] with both numbers (`tests/udp.rs`, `a_long_datagram_is_truncated_and_the_rest_discarded`).
//! - **Zero bytes is a message.** `recv` returning 0 on TCP means the peer closed; a
//!   zero-length datagram is simply an empty message, logged and acked like any other.
//! - **Size has a ceiling.** An IPv4 packet is at most 65,535 bytes; less 20 for the IP header
//!   and 8 for UDP's leaves [`MAX_UDP_PAYLOAD_V4`] = 65,507. One byte more fails with
//!   `EMSGSIZE`, reported as [`Error::DatagramTooLong`].
//!
//! Unix datagram sockets (`--unix PATH --udp`) behave the same, except for addresses: a
//! socket that never called `bind` is *unnamed*, and a server cannot answer an unnamed sender
//! ([`Event::ReplyFailed`]). So [`DatagramClient`] binds a path of its own in the temp
//! directory, removed again when the client is dropped, and the server's log shows that path.
//!
//! Unlike the stream listener, the UDP socket is bound *without* `SO_REUSEADDR`, as std's
//! `UdpSocket::bind` does: on a datagram socket Linux would let a second server bind the same
//! port and silently share the traffic.

use std::io::{self, BufRead, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::client::{SessionSummary, next_message};
use crate::endpoint::{Address, Endpoint, check_unix_path, remove_stale_socket};
use crate::engine::accept::{Ready, wait_readable};
use crate::engine::{RunningServer, ServerHandle};
use crate::error::{Error, SocketType, describe};
use crate::escape::escape;
use crate::server::{Event, EventLog, ServerConfig};

/// The largest UDP payload over IPv4: 65,535 (IP total length) - 20 (IP header) - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// Over IPv6 the 40-byte header is not counted in the payload length: 65,535 - 8.
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;
/// How long a datagram client waits for each ack before deciding none is coming.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// A receive buffer big enough for any datagram the client could be sent.
const LARGEST_DATAGRAM: usize = 65_536;
/// How many temp-directory names a client tries for its own Unix socket before giving up.
const CLIENT_PATH_ATTEMPTS: u32 = 100;

/// A bound datagram socket of either family. A Unix socket's file is removed on drop.
#[derive(Debug)]
pub struct DatagramSocket {
    socket: Socket,
    /// The file `bind` created, for `AF_UNIX`; `None` for UDP.
    path: Option<PathBuf>,
}

/// One datagram as `recvfrom` saw it.
#[derive(Debug)]
pub struct Received {
    /// Bytes copied into the buffer: at most its length.
    pub len: usize,
    /// The datagram's real length, reported thanks to `MSG_TRUNC`; more than `len` means
    /// the rest was discarded.
    pub datagram_len: usize,
    /// Where it came from, which is also where an answer goes.
    pub from: SockAddr,
}

impl DatagramSocket {
    /// `socket(family, SOCK_DGRAM)` + `bind(address)`: all a datagram server needs, since there
    /// is no `listen`. A stale Unix socket file is replaced only if nobody is using it.
    pub fn bind(endpoint: &Endpoint) -> Result<DatagramSocket, Error> {
        match endpoint {
            Endpoint::Inet { .. } => {
                let addr = endpoint.resolve()?[0];
                let bind_error = |source| Error::Bind {
                    addr: addr.to_string(),
                    source,
                };
                let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)
                    .map_err(bind_error)?;
                socket.bind(&addr.into()).map_err(bind_error)?;
                Ok(DatagramSocket { socket, path: None })
            }
            Endpoint::Unix(path) => {
                check_unix_path(path)?;
                let bind_error = |source| Error::Bind {
                    addr: crate::escape::path(path),
                    source,
                };
                remove_stale_socket(path).map_err(bind_error)?;
                let socket = bind_unix_datagram(path).map_err(bind_error)?;
                Ok(DatagramSocket {
                    socket,
                    path: Some(path.clone()),
                })
            }
        }
    }

    /// The address bound: with port 0, the port the kernel chose.
    pub fn local_addr(&self) -> io::Result<Address> {
        Ok(address_of(&self.socket.local_addr()?))
    }

    /// `recvfrom(buffer)` with `MSG_TRUNC`, so a datagram cut short still reports its length.
    pub fn recv_from(&self, buffer: &mut [u8]) -> io::Result<Received> {
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and `recvfrom` only ever
        // writes initialised bytes into the buffer, so `buffer` stays fully initialised.
        let uninit = unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let (datagram_len, from) = self.socket.recv_from_with_flags(uninit, libc::MSG_TRUNC)?;
        Ok(Received {
            len: datagram_len.min(buffer.len()),
            datagram_len,
            from,
        })
    }

    /// `sendto(bytes, address)`: one datagram, sent whole or not at all.
    pub fn send_to(&self, bytes: &[u8], to: &SockAddr) -> io::Result<usize> {
        self.socket.send_to(bytes, to)
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }
}

impl std::os::fd::AsFd for DatagramSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for DatagramSocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            // As with stream sockets, the file outlives the socket unless we remove it.
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_unix_datagram(path: &Path) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    Ok(socket)
}

/// The address a datagram came from, in the form the log shows.
fn address_of(addr: &SockAddr) -> Address {
    match addr.as_socket() {
        Some(inet) => Address::Inet(inet),
        // An unbound Unix sender has no path: `Address::Unix(None)` shows as `unnamed`.
        None => Address::Unix(addr.as_pathname().map(Path::to_path_buf)),
    }
}

/// The ack server over datagrams: bound, not yet receiving. Takes the same [`ServerConfig`] as
/// the stream server; only `endpoint`, `recv_size` and `ack` apply, since there are no
/// connections to queue, count or time out.
pub struct DatagramServer {
    socket: DatagramSocket,
    local_addr: Address,
    config: ServerConfig,
    handle: ServerHandle,
    wake_rx: UnixStream,
}

impl DatagramServer {
    /// `socket` + `bind`. Errors are the walkthrough's bind errors, as for the stream server.
    pub fn bind(config: ServerConfig) -> Result<DatagramServer, Error> {
        config.validate()?;
        let socket = DatagramSocket::bind(&config.endpoint)?;
        let local_addr = socket.local_addr().map_err(|e| {
            Error::io(
                format!("cannot read the address bound for {}", config.endpoint),
                e,
            )
        })?;
        // Non-blocking so a wake-up from poll that finds nothing to read cannot hang the loop.
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::io("cannot make the datagram socket non-blocking", e))?;
        let (handle, wake_rx) = ServerHandle::with_wake_socket()?;
        Ok(DatagramServer {
            socket,
            local_addr,
            config,
            handle,
            wake_rx,
        })
    }

    /// The address bound: with `--port 0`, the port the kernel chose.
    pub fn local_addr(&self) -> &Address {
        &self.local_addr
    }

    /// Stops the server from any thread ([`ServerHandle::stop`]).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Runs the server on a new thread; [`RunningServer::stop`] ends it.
    pub fn spawn(self, log: EventLog) -> RunningServer {
        let addr = self.local_addr.clone();
        let handle = self.handle();
        RunningServer::spawn(addr, handle, move || self.run(log))
    }

    /// `recvfrom`, log, `sendto` the ack, until [`ServerHandle::stop`] is called.
    pub fn run(self, log: EventLog) -> Result<(), Error> {
        let mut buffer = vec![0; self.config.recv_size];
        loop {
            // The same poll as the stream server's accept loop: our socket, or a stop request.
            match wait_readable(&self.socket, &self.wake_rx) {
                Ok(Ready::Socket) => {}
                Ok(Ready::Wake) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("poll failed", e)),
            }
            let received = match self.socket.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                // An ICMP error about an earlier ack (the client went away) may surface here on
                // some systems. It concerns that client only; the server carries on.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("recvfrom on {} failed", self.local_addr),
                        e,
                    ));
                }
            };
            let peer = address_of(&received.from);
            let data = buffer[..received.len].to_vec();
            log(if received.datagram_len > received.len {
                Event::Truncated {
                    peer: peer.clone(),
                    data,
                    datagram_len: received.datagram_len,
                }
            } else {
                Event::Message {
                    peer: peer.clone(),
                    data,
                }
            });
            self.reply(&received.from, peer, &log);
        }
    }

    /// Sends the ack to whoever sent the datagram, and says so when that is impossible.
    fn reply(&self, to: &SockAddr, peer: Address, log: &EventLog) {
        if peer == Address::Unix(None) {
            log(Event::ReplyFailed {
                peer,
                reason: "the sender is unnamed (it never bound a path), so there is no address to answer".into(),
            });
            return;
        }
        if let Err(e) = self.socket.send_to(&self.config.ack, to) {
            log(Event::ReplyFailed {
                peer,
                reason: describe(&e),
            });
        }
    }
}

/// A datagram client: one socket, "connected" to the server so the kernel drops datagrams
/// from anyone else and reports ICMP errors to us.
#[derive(Debug)]
pub struct DatagramClient {
    socket: DatagramSocket,
    server: String,
    /// What one datagram to this server can carry, for the error message.
    limit: String,
}

impl AsRawFd for DatagramClient {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl DatagramClient {
    /// `socket(family, SOCK_DGRAM)`, then `connect`: for UDP this sends nothing; it only fixes
    /// the peer address, so it cannot tell whether a server is there. Over Unix the kernel
    /// does check, and a missing server is an error at once.
    pub fn connect(endpoint: &Endpoint, reply_timeout: Duration) -> Result<DatagramClient, Error> {
        let server = endpoint.to_string();
        let io_error = |what: &str, source| Error::io(format!("{what} for {server}"), source);
        let (socket, limit) = match endpoint {
            Endpoint::Inet { .. } => {
                // "Try each address in turn" needs an answer to judge by, and UDP's connect gives
                // none: use the first address, as Python's sendto would.
                let addr: SocketAddr = endpoint.resolve()?[0];
                let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)
                    .map_err(|e| io_error("cannot create a UDP socket", e))?;
                socket
                    .connect(&addr.into())
                    .map_err(|source| Error::Connect {
                        addr: addr.to_string(),
                        tried: vec![addr],
                        socket_type: SocketType::Datagram,
                        source,
                    })?;
                let limit = if addr.is_ipv4() {
                    format!("one UDP datagram over IPv4 carries at most {MAX_UDP_PAYLOAD_V4} bytes")
                } else {
                    format!("one UDP datagram over IPv6 carries at most {MAX_UDP_PAYLOAD_V6} bytes")
                };
                (DatagramSocket { socket, path: None }, limit)
            }
            Endpoint::Unix(path) => {
                check_unix_path(path)?;
                let socket = bind_client_path()?;
                socket
                    .socket
                    .connect(
                        &SockAddr::unix(path)
                            .map_err(|e| io_error("cannot make a Unix socket address", e))?,
                    )
                    .map_err(|source| Error::Connect {
                        addr: crate::escape::path(path),
                        tried: Vec::new(),
                        socket_type: SocketType::Datagram,
                        source,
                    })?;
                let limit = "a Unix datagram must fit in the socket's send buffer (SO_SNDBUF)";
                (socket, limit.to_string())
            }
        };
        socket
            .socket
            .set_read_timeout(Some(reply_timeout))
            .map_err(|e| io_error("cannot set the reply timeout", e))?;
        Ok(DatagramClient {
            socket,
            server,
            limit,
        })
    }

    /// This client's own address: the port the kernel picked, or the Unix path it bound.
    pub fn local_addr(&self) -> io::Result<Address> {
        self.socket.local_addr()
    }

    /// `send(message)`: one datagram, zero bytes included.
    pub fn send(&self, message: &[u8]) -> Result<(), Error> {
        match (&self.socket.socket).write(message) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Err(Error::DatagramTooLong {
                addr: self.server.clone(),
                len: message.len(),
                limit: self.limit.clone(),
            }),
            Err(e) => Err(self.no_reply(&e)),
        }
    }

    /// `recv`: the next datagram from the server, waiting at most the reply timeout.
    pub fn recv_reply(&self) -> Result<Vec<u8>, Error> {
        let mut buffer = vec![0; LARGEST_DATAGRAM];
        let n = self.recv_reply_into(&mut buffer)?;
        Ok(buffer[..n].to_vec())
    }

    /// [`DatagramClient::recv_reply`] into the caller's buffer, for a loop that must not
    /// allocate per message (`socket-lab bench`). A datagram longer than the buffer is cut
    /// to its length, the rest discarded.
    pub fn recv_reply_into(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        loop {
            match (&self.socket.socket).read(buffer) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.no_reply(&e)),
            }
        }
    }

    /// One `recv(size)`: the next datagram, cut to `size` bytes if it is longer (the rest is
    /// discarded, as lesson 14 shows), waiting at most the reply timeout.
    pub fn recv(&self, size: usize) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0; size];
        let received = self.socket.recv_from(&mut buffer)?;
        buffer.truncate(received.len);
        Ok(buffer)
    }

    /// Python's `settimeout` for this socket's reads.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.socket.set_read_timeout(timeout)
    }

    /// Python's `setblocking(not nonblocking)`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }

    /// The server this client sends to, as the user named it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// One message and its ack.
    pub fn request(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.send(message)?;
        self.recv_reply()
    }

    /// The send loop of `client.py` over datagrams: each line of `input` is one datagram
    /// (an empty line too: over UDP it is a real, empty message), each ack is printed to
    /// `output`, and `q` ends the session.
    pub fn run_session(
        &self,
        mut input: impl BufRead,
        mut output: impl Write,
        mut prompt: Option<&mut dyn Write>,
    ) -> Result<SessionSummary, Error> {
        let mut summary = SessionSummary::default();
        let mut line = Vec::new();
        while let Some(message) = next_message(&mut input, &mut prompt, &mut line)? {
            let reply = self.request(message)?;
            summary.lines_sent += 1;
            summary.replies += 1;
            writeln!(output, "{}", escape(&reply))
                .and_then(|()| output.flush())
                .map_err(|e| Error::io("cannot write the reply", e))?;
        }
        Ok(summary)
    }

    fn no_reply(&self, error: &io::Error) -> Error {
        let detail = match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "no ack arrived in time (the datagram or its ack was lost, or nobody is listening)"
                    .to_string()
            }
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                if self.socket.path.is_some() =>
            {
                "connection refused (no socket is bound at that path any more)".to_string()
            }
            io::ErrorKind::ConnectionRefused => {
                "connection refused (the kernel got an ICMP \"port unreachable\": nobody is listening on that port)".to_string()
            }
            _ => describe(error),
        };
        Error::NoReply {
            addr: self.server.clone(),
            detail,
        }
    }
}

/// Binds a fresh path in the temp directory so the server has an address to answer.
/// The name holds the process id and a counter, so clients in one process or many never clash.
fn bind_client_path() -> Result<DatagramSocket, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut last_error = None;
    for _ in 0..CLIENT_PATH_ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("socket-lab-client-{}-{n}.sock", std::process::id()));
        check_unix_path(&path)?;
        match bind_unix_datagram(&path) {
            Ok(socket) => {
                return Ok(DatagramSocket {
                    socket,
                    path: Some(path),
                });
            }
            // A file left by an earlier process with the same id: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some((path, e)),
            Err(source) => {
                return Err(Error::Bind {
                    addr: crate::escape::path(&path),
                    source,
                });
            }
        }
    }
    let (path, source) = last_error.unwrap_or_else(|| {
        (
            std::env::temp_dir(),
            io::Error::from(io::ErrorKind::AddrInUse),
        )
    });
    Err(Error::Bind {
        addr: crate::escape::path(&path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tests::interrupt_recv;
    use std::net::UdpSocket;

    /// The reply timeout is a receive timeout, so a signal makes the client's `recv` fail
    /// with EINTR: it must wait on for the ack, not report "no reply".
    #[test]
    fn a_signal_while_waiting_for_the_ack_is_not_a_lost_ack() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let endpoint = Endpoint::inet("127.0.0.1", server.local_addr().unwrap().port());
        let client = DatagramClient::connect(&endpoint, Duration::from_secs(60)).unwrap();
        let Address::Inet(client_addr) = client.local_addr().unwrap() else {
            panic!("a UDP client has an IP address");
        };
        let name = "udp-ack-eintr";
        let waiting = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || client.recv_reply())
            .unwrap();
        interrupt_recv(name, &waiting);
        server.send_to(b"late ack", client_addr).unwrap();
        assert_eq!(waiting.join().unwrap().unwrap(), b"late ack");
    }

    /// A name in the temp directory already taken (by a file a crashed client left, say) is
    /// skipped for the next one. Only this test binds client paths in the unit tests, so the
    /// names follow one another.
    #[test]
    fn a_client_path_already_taken_is_skipped() {
        let first = bind_client_path().unwrap();
        let first_path = first.path.clone().unwrap();
        let name = first_path.file_name().unwrap().to_str().unwrap();
        let n: u32 = name
            .strip_suffix(".sock")
            .and_then(|rest| rest.rsplit('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let named = |n: u32| {
            std::env::temp_dir().join(format!("socket-lab-client-{}-{n}.sock", std::process::id()))
        };
        assert_eq!(first_path, named(n));
        // The next two names are taken by plain files: bind says EADDRINUSE for both.
        let taken = [named(n + 1), named(n + 2)];
        for path in &taken {
            std::fs::write(path, b"").unwrap();
        }
        let next = bind_client_path();
        for path in &taken {
            std::fs::remove_file(path).unwrap();
        }
        assert_eq!(next.unwrap().path, Some(named(n + 3)));
        drop(first);
        assert!(
            !first_path.exists(),
            "a client's socket file is removed with it"
        );
    }
}
