//! Addresses and the two kinds of stream socket: `AF_INET`/`AF_INET6` and `AF_UNIX`.
//!
//! The walkthrough's first step is `socket.socket(family, type)` and its second is
//! `bind(address)`, where "an `AF_INET` address is a `(host, port)` pair" (claims 1 and 3).
//! This module is where those words become sockets:
//!
//! - [`Endpoint`] is what a user types: `127.0.0.1:10000`, `[::1]:10000`, `localhost:10000`
//!   (a host *name*, resolved to every address it has), or a Unix socket path. The command
//!   line takes it as `--host`, `--port` and `--unix PATH`; as one word (what `listening on`
//!   prints) it parses with `str::parse`, and a malformed one is an [`EndpointError`] that
//!   says what is wrong and shows a word that works.
//! - [`Listener`] and [`Stream`] hide which family is underneath, so the server and client are
//!   written once (the idea is tiny-http's `enum Listener { Tcp, Unix }`).
//! - [`Address`] is what `accept` returns as the peer's address: `(host, port)` for TCP, and
//!   for `AF_UNIX` a path, or nothing at all: a client that never called `bind` is `unnamed`.
//!
//! Rust's `TcpListener::bind` does socket + bind + listen in one call and fixes the backlog at
//! 128. The walkthrough calls `listen(backlog)` itself, so [`Listener::bind`] goes through the
//! `socket2` crate, which exposes each step. It also sets `SO_REUSEADDR`, as Rust's std does on
//! Unix (Python does not): a server can be restarted at once while old connections sit in
//! `TIME_WAIT`, yet two live servers still cannot share a port (`tests/cli.rs`,
//! `bind_reports_port_in_use`; `tests/kinds.rs`, `reuse_address_lets_a_server_rebind_over_time_wait`,
//! shows the rebind failing without it, as in Python).
//!
//! A Unix socket path lives in `sun_path`, 108 bytes with the final NUL, so a path may be at
//! most [`MAX_UNIX_PATH`] bytes; [`check_unix_path`] says so before the kernel would refuse
//! (`tests/unix.rs`, `a_path_too_long_is_a_clear_error`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{Error, SocketType};
use crate::escape;

/// How long `connect` waits for the server's answer before giving up. Python waits for the
/// kernel's own limit (about two minutes on Linux); a learner would rather hear sooner.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest path a Unix socket can have on Linux: `sun_path` is 108 bytes, and the last one
/// is the NUL that ends the string.
pub const MAX_UNIX_PATH: usize = 107;

/// Refuses a Unix socket path the kernel cannot hold, in words instead of `EINVAL`.
pub fn check_unix_path(path: &Path) -> Result<(), Error> {
    let len = path.as_os_str().len();
    if len > MAX_UNIX_PATH {
        return Err(Error::Config(format!(
            "the Unix socket path {} is {len} bytes long, but Linux allows at most {MAX_UNIX_PATH} (sun_path is 108 bytes including the final NUL); choose a shorter path, such as one in /tmp",
            escape::path(path)
        )));
    }
    Ok(())
}

/// Where a server listens or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `(host, port)`: the host may be an IPv4 or IPv6 literal or a name to resolve. An
    /// internet address, for TCP and UDP alike (`AF_INET`, `AF_INET6`).
    Inet { host: String, port: u16 },
    /// A path in the file system (`AF_UNIX`).
    Unix(PathBuf),
}

impl Endpoint {
    pub fn inet(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint::Inet {
            host: host.into(),
            port,
        }
    }

    /// Every address the host name stands for, in the order the resolver gives them.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, Error> {
        let Endpoint::Inet { host, port } = self else {
            return Ok(Vec::new());
        };
        // A bracketed IPv6 literal ("[::1]") is how URLs spell it; the resolver wants "::1".
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (bare, *port)
            .to_socket_addrs()
            .map_err(|source| Error::Resolve {
                host: host.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Resolve {
                host: host.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"),
            });
        }
        Ok(addrs)
    }

    /// True for `0.0.0.0` and `::`: every interface, reachable from other machines.
    pub fn is_all_interfaces(&self) -> bool {
        match self {
            Endpoint::Inet { host, .. } => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified()),
            Endpoint::Unix(_) => false,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inet { host, port } if host.contains(':') && !host.starts_with('[') => {
                write!(f, "[{host}]:{port}")
            }
            Endpoint::Inet { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => f.write_str(&escape::path(path)),
        }
    }
}

/// `HOST:PORT`, `[IPV6]:PORT`, or a path to a Unix socket: an endpoint written as one word,
/// as `ss`, `socat` and a URL's authority write one.
///
/// A word with a `/` in it is a path (`/tmp/lab.sock`, `./lab.sock`): `AF_UNIX` addresses are
/// file names, and a file in this directory is written `./lab.sock`, as a shell would run
/// `./program`. Anything else is a host and a port split at the last `:`; an IPv6 address has
/// colons of its own, so it goes in brackets (`[::1]:10000`), as in a URL. The host is not
/// resolved here: `localhost:10000` stays a name until [`Endpoint::resolve`].
impl std::str::FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        let owned = || text.to_string();
        if text.is_empty() {
            return Err(EndpointError::Empty);
        }
        if text.contains('/') {
            return Ok(Endpoint::Unix(PathBuf::from(text)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| EndpointError::NoColon(owned()))?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => bracketed
                .strip_suffix(']')
                .ok_or_else(|| EndpointError::UnclosedBracket(owned()))?,
            // `::1:80`: which colon ends the address? Only brackets say.
            None if host.contains(':') => return Err(EndpointError::Ipv6WithoutBrackets(owned())),
            None => host,
        };
        if host.is_empty() {
            return Err(EndpointError::NoHost(owned()));
        }
        if port.is_empty() {
            return Err(EndpointError::NoPort(owned()));
        }
        // Digits only: `u16::from_str` would take `+80`, which no one means.
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EndpointError::PortNotANumber(owned()));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| EndpointError::PortOutOfRange(owned()))?;
        Ok(Endpoint::inet(host, port))
    }
}

/// Why a word is not an [`Endpoint`]. Each message quotes the word and shows one that works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointError {
    /// Nothing at all.
    Empty,
    /// No `:` at all (`localhost`), or a file name without a `/` (`lab.sock`).
    NoColon(String),
    /// Nothing after the `:` (`localhost:`).
    NoPort(String),
    /// Nothing before the `:` (`:80`).
    NoHost(String),
    /// Something other than digits after the last `:` (`localhost:http`).
    PortNotANumber(String),
    /// A port above 65535 (`localhost:99999`).
    PortOutOfRange(String),
    /// An IPv6 address with a port but no brackets (`::1:80`).
    Ipv6WithoutBrackets(String),
    /// `[::1:80`: a `[` with no `]`.
    UnclosedBracket(String),
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EXAMPLES: &str = "such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock";
        match self {
            EndpointError::Empty => write!(
                f,
                "the address is empty: expected HOST:PORT or a Unix socket path, {EXAMPLES}"
            ),
            EndpointError::NoColon(text) => write!(
                f,
                "`{text}` is neither HOST:PORT nor a path: expected one {EXAMPLES} (a Unix socket in this directory is ./{text})"
            ),
            EndpointError::NoPort(text) => write!(
                f,
                "`{text}` has no port after the colon: write one, such as {text}10000"
            ),
            EndpointError::NoHost(text) => {
                let port = text.rsplit_once(':').map_or("", |(_, port)| port);
                write!(
                    f,
                    "`{text}` has no host before the port: write 127.0.0.1:{port} for this machine over IPv4, or [::1]:{port} over IPv6"
                )
            }
            EndpointError::PortNotANumber(text) => write!(
                f,
                "`{text}`: the port must be a number from 0 to 65535, {EXAMPLES}"
            ),
            EndpointError::PortOutOfRange(text) => write!(
                f,
                "`{text}`: a port is 16 bits, from 0 to 65535, {EXAMPLES}"
            ),
            EndpointError::Ipv6WithoutBrackets(text) => write!(
                f,
                "`{text}`: an IPv6 address has colons of its own, so it goes in brackets before the port, such as [::1]:10000"
            ),
            EndpointError::UnclosedBracket(text) => write!(
                f,
                "`{text}`: the `[` of an IPv6 address needs its `]` before the port, such as [::1]:10000"
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

/// A socket's address as `accept`, `getsockname` or `getpeername` report it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port, of a TCP or a UDP socket.
    Inet(SocketAddr),
    /// `None` for an unnamed Unix socket: a client that never bound a path has no address.
    Unix(Option<PathBuf>),
}

impl Address {
    /// The TCP port, for callers that need it (tests connecting to a server on port 0).
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Inet(addr) => Some(addr.port()),
            Address::Unix(_) => None,
        }
    }

    /// The endpoint a client would use to reach this address.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Address::Inet(addr) => Endpoint::inet(addr.ip().to_string(), addr.port()),
            Address::Unix(path) => Endpoint::Unix(path.clone().unwrap_or_default()),
        }
    }

    fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Address {
        Address::Unix(addr.as_pathname().map(Path::to_path_buf))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => write!(f, "{addr}"),
            // A client chooses the path it binds: escaped, and `]` too, since logs print the
            // peer as `[peer]` (a path such as `/tmp/x] connected` must not end that field).
            Address::Unix(Some(path)) => {
                use std::os::unix::ffi::OsStrExt;
                f.write_str(&escape::escape_in(path.as_os_str().as_bytes(), ']'))
            }
            Address::Unix(None) => f.write_str("unnamed"),
        }
    }
}

/// Whether a TCP listener may bind over connections in `TIME_WAIT` (`SO_REUSEADDR`,
/// [`crate::options`]). Rust's std always allows it; Python's `socket.socket()` does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressReuse {
    /// `SO_REUSEADDR` set: a restarted server binds at once.
    #[default]
    Allowed,
    /// `SO_REUSEADDR` not set: "address already in use" until `TIME_WAIT` ends.
    Refused,
}

/// A listening socket of either family: socket + bind + listen done.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    /// The path is removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// The walkthrough's steps one to three: `socket`, `bind`, `listen(backlog)`.
    /// `address_reuse` decides `SO_REUSEADDR` on TCP sockets (Unix sockets have no
    /// `TIME_WAIT`).
    pub fn bind(
        endpoint: &Endpoint,
        backlog: i32,
        address_reuse: AddressReuse,
    ) -> Result<Listener, Error> {
        match endpoint {
            Endpoint::Inet { .. } => {
                // Like Python's bind, use the first address the name resolves to.
                let addr = endpoint.resolve()?[0];
                let bind_error = |source| Error::Bind {
                    addr: addr.to_string(),
                    source,
                };
                let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
                    .map_err(bind_error)?;
                socket
                    .set_reuse_address(address_reuse == AddressReuse::Allowed)
                    .map_err(bind_error)?;
                socket
                    .bind(&addr.into())
                    .map_err(|source| explain_port_in_use(addr, source))?;
                socket.listen(backlog).map_err(bind_error)?;
                Ok(Listener::Tcp(socket.into()))
            }
            Endpoint::Unix(path) => {
                check_unix_path(path)?;
                let bind_error = |source| Error::Bind {
                    addr: escape::path(path),
                    source,
                };
                remove_stale_socket(path).map_err(bind_error)?;
                let addr = SockAddr::unix(path).map_err(bind_error)?;
                let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(bind_error)?;
                socket.bind(&addr).map_err(bind_error)?;
                let listener = Listener::Unix(socket.into(), path.clone());
                // From here on, dropping `listener` removes the file again.
                if let Listener::Unix(socket, _) = &listener {
                    socket2::SockRef::from(socket)
                        .listen(backlog)
                        .map_err(bind_error)?;
                }
                Ok(listener)
            }
        }
    }

    /// The address actually bound: with port 0 this is where the kernel's choice shows.
    pub fn local_addr(&self) -> io::Result<Address> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(Address::Inet),
            Listener::Unix(listener, _) => listener.local_addr().map(|a| Address::from_unix(&a)),
        }
    }

    /// Step four: a new connected socket and the peer's address.
    pub fn accept(&self) -> io::Result<(Stream, Address)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                Ok((Stream::Tcp(stream), Address::Inet(peer)))
            }
            Listener::Unix(listener, _) => {
                let (stream, peer) = listener.accept()?;
                Ok((Stream::Unix(stream), Address::from_unix(&peer)))
            }
        }
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(listener) => listener.set_nonblocking(nonblocking),
            Listener::Unix(listener, _) => listener.set_nonblocking(nonblocking),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(listener) => listener.as_fd(),
            Listener::Unix(listener, _) => listener.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(listener) => listener.as_raw_fd(),
            Listener::Unix(listener, _) => listener.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            // Unix sockets leave their file behind after close; the next bind would fail on it.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A file left at `path` by a server that crashed blocks `bind` with "address in use". Remove
/// it only if nobody answers on it: a live server's socket is never taken over. The probe is a
/// non-blocking stream `connect`, so it never waits: a dead socket file refuses it, a live
/// stream server accepts it, a live server whose listen queue is full answers `EAGAIN` (a
/// blocking connect would wait there until the server accepts, which may be never), and a live
/// datagram server answers "protocol wrong type" (`EPROTOTYPE`). All but the first mean
/// someone is there.
pub(crate) fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way; choose another path",
        ));
    }
    match connect_unix(path, Duration::ZERO) {
        Ok(_) => Err(io::Error::from(io::ErrorKind::AddrInUse)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "someone is listening on that path but not accepting: its listen queue is full",
        )),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
            Err(io::Error::from(io::ErrorKind::AddrInUse))
        }
        Err(e) => Err(e),
    }
}

/// A Unix stream `connect` that waits at most `timeout` (not at all for zero). unix(7): a
/// blocking connect to a listener whose queue is full waits until the server accepts, which
/// may be never; the kernel bounds that wait by the socket's send timeout (`SO_SNDTIMEO`), and
/// a non-blocking connect fails at once, both with `EAGAIN`. That is reported as `TimedOut`:
/// someone is listening but not accepting. The returned stream is blocking, with no timeout.
pub fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let addr = SockAddr::unix(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    if timeout.is_zero() {
        socket.set_nonblocking(true)?;
    } else {
        socket.set_write_timeout(Some(timeout))?;
    }
    match socket.connect(&addr) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the listener is not accepting: its listen queue is full",
            ));
        }
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(None)?;
    Ok(socket.into())
}

/// A bind error, told apart from the usual "another server is running" when nothing listens
/// on the port and only connections in TIME_WAIT hold it (what the kernel says decides the
/// hint, not a guess).
fn explain_port_in_use(addr: SocketAddr, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::AddrInUse
        && let Ok(sockets) = crate::kernel::tcp_sockets_on_port(addr.port())
        && !sockets
            .iter()
            .any(|socket| socket.state == crate::kernel::TcpState::Listen)
    {
        let waiting: Vec<_> = sockets
            .iter()
            .filter(|socket| socket.state == crate::kernel::TcpState::TimeWait)
            .collect();
        if !waiting.is_empty() {
            return Error::BindTimeWait {
                addr: addr.to_string(),
                connections: waiting.len(),
                left: waiting
                    .iter()
                    .filter_map(|socket| socket.time_wait_left)
                    .max(),
            };
        }
    }
    Error::Bind {
        addr: addr.to_string(),
        source,
    }
}

/// Tries each address in turn and returns the first connection made, or the last failure.
/// `localhost` is often both `::1` and `127.0.0.1`, and a server may listen on only one of them.
pub fn connect_first(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last_error = Error::Config("there is no address to connect to".into());
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(source) => {
                last_error = Error::Connect {
                    addr: addr.to_string(),
                    tried: addrs.to_vec(),
                    socket_type: SocketType::Stream,
                    source,
                }
            }
        }
    }
    Err(last_error)
}

/// A connected stream socket of either family.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// The client's steps one and two: `socket` and `connect((host, port))`. A name with
    /// several addresses (`localhost` is 127.0.0.1 and ::1) is tried address by address, the
    /// way Python's `socket.create_connection` does.
    pub fn connect(endpoint: &Endpoint) -> Result<Stream, Error> {
        Stream::connect_timeout(endpoint, CONNECT_TIMEOUT)
    }

    /// [`Stream::connect`] with a timeout of the caller's choosing for each address tried
    /// (Python's `create_connection(address, timeout)`). A Unix `connect` is bounded too: it
    /// waits only when the listener's queue is full ([`connect_unix`]).
    pub fn connect_timeout(endpoint: &Endpoint, timeout: Duration) -> Result<Stream, Error> {
        match endpoint {
            Endpoint::Inet { .. } => match connect_first(&endpoint.resolve()?, timeout) {
                // Named as asked (`localhost:10000`); the error lists the addresses tried.
                Err(Error::Connect {
                    tried,
                    socket_type,
                    source,
                    ..
                }) => Err(Error::Connect {
                    addr: endpoint.to_string(),
                    tried,
                    socket_type,
                    source,
                }),
                result => result.map(Stream::Tcp),
            },
            Endpoint::Unix(path) => {
                check_unix_path(path)?;
                connect_unix(path, timeout)
                    .map(Stream::Unix)
                    .map_err(|source| Error::Connect {
                        addr: escape::path(path),
                        tried: Vec::new(),
                        socket_type: SocketType::Stream,
                        source,
                    })
            }
        }
    }

    /// Turns Nagle's algorithm off (`TCP_NODELAY`) or on; see [`crate::options`]. Unix stream
    /// sockets have no Nagle: there is nothing to turn off.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nodelay(nodelay),
            Stream::Unix(_) => Ok(()),
        }
    }

    pub fn peer_addr(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(stream) => stream.peer_addr().map(Address::Inet),
            Stream::Unix(stream) => stream.peer_addr().map(|a| Address::from_unix(&a)),
        }
    }

    pub fn local_addr(&self) -> io::Result<Address> {
        match self {
            Stream::Tcp(stream) => stream.local_addr().map(Address::Inet),
            Stream::Unix(stream) => stream.local_addr().map(|a| Address::from_unix(&a)),
        }
    }

    /// `shutdown(how)`: `Write` sends end-of-stream but keeps reading (a half-close).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.shutdown(how),
            Stream::Unix(stream) => stream.shutdown(how),
        }
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(stream) => stream.try_clone().map(Stream::Tcp),
            Stream::Unix(stream) => stream.try_clone().map(Stream::Unix),
        }
    }

    /// Python's `settimeout` for reads: a `recv` that waits longer fails with "timed out".
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_read_timeout(timeout),
            Stream::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_write_timeout(timeout),
            Stream::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nonblocking(nonblocking),
            Stream::Unix(stream) => stream.set_nonblocking(nonblocking),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        text.parse()
    }

    #[test]
    fn host_and_port_split_at_the_last_colon() {
        assert_eq!(parse("127.0.0.1:80"), Ok(Endpoint::inet("127.0.0.1", 80)));
        assert_eq!(
            parse("localhost:10000"),
            Ok(Endpoint::inet("localhost", 10000))
        );
        // Port 0 is a server's "any free port".
        assert_eq!(parse("127.0.0.1:0"), Ok(Endpoint::inet("127.0.0.1", 0)));
    }

    #[test]
    fn an_ipv6_address_goes_in_brackets_and_comes_out_without_them() {
        assert_eq!(parse("[::1]:80"), Ok(Endpoint::inet("::1", 80)));
        // Display puts them back: what is printed can be typed again.
        assert_eq!(Endpoint::inet("::1", 80).to_string(), "[::1]:80");
        assert_eq!(
            parse("[::1]:80").map(|e| e.to_string()),
            Ok("[::1]:80".into())
        );
    }

    #[test]
    fn a_word_with_a_slash_is_a_unix_socket_path() {
        assert_eq!(
            parse("/tmp/x.sock"),
            Ok(Endpoint::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(parse("./x.sock"), Ok(Endpoint::Unix("./x.sock".into())));
        // A colon in a path is just a byte of the file name.
        assert_eq!(parse("/tmp/a:1"), Ok(Endpoint::Unix("/tmp/a:1".into())));
    }

    /// Each error names the word, what is wrong with it, and shows one that works.
    #[test]
    fn each_malformed_word_gets_its_own_error_with_an_example() {
        let cases = [
            (
                "",
                EndpointError::Empty,
                "the address is empty: expected HOST:PORT or a Unix socket path, such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock",
            ),
            (
                "host:",
                EndpointError::NoPort("host:".into()),
                "`host:` has no port after the colon: write one, such as host:10000",
            ),
            (
                ":80",
                EndpointError::NoHost(":80".into()),
                "`:80` has no host before the port: write 127.0.0.1:80 for this machine over IPv4, or [::1]:80 over IPv6",
            ),
            (
                "host:99999",
                EndpointError::PortOutOfRange("host:99999".into()),
                "`host:99999`: a port is 16 bits, from 0 to 65535, such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock",
            ),
            (
                "host:http",
                EndpointError::PortNotANumber("host:http".into()),
                "`host:http`: the port must be a number from 0 to 65535, such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock",
            ),
            (
                "host:+80",
                EndpointError::PortNotANumber("host:+80".into()),
                "`host:+80`: the port must be a number from 0 to 65535, such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock",
            ),
            (
                "lab.sock",
                EndpointError::NoColon("lab.sock".into()),
                "`lab.sock` is neither HOST:PORT nor a path: expected one such as 127.0.0.1:10000, [::1]:10000 or /tmp/lab.sock (a Unix socket in this directory is ./lab.sock)",
            ),
            (
                "::1:80",
                EndpointError::Ipv6WithoutBrackets("::1:80".into()),
                "`::1:80`: an IPv6 address has colons of its own, so it goes in brackets before the port, such as [::1]:10000",
            ),
            (
                "[::1:80",
                EndpointError::UnclosedBracket("[::1:80".into()),
                "`[::1:80`: the `[` of an IPv6 address needs its `]` before the port, such as [::1]:10000",
            ),
            (
                "[]:80",
                EndpointError::NoHost("[]:80".into()),
                "`[]:80` has no host before the port: write 127.0.0.1:80 for this machine over IPv4, or [::1]:80 over IPv6",
            ),
        ];
        for (text, error, message) in cases {
            assert_eq!(parse(text), Err(error.clone()), "{text:?}");
            assert_eq!(error.to_string(), message, "{text:?}");
        }
    }
}
