//! Errors a learner meets, in the learner's words.
//!
//! The walkthrough says `bind` "raises socket.error" when the port is in use, the host name is
//! wrong or the port is reserved, and `connect` raises one when it fails. Python shows
//! `OSError: [Errno 98] Address already in use` and a traceback. Here every failure is an
//! [`Error`] whose `Display` names the action, the address, the cause and what to try:
//!
//! ```text
//! cannot bind 127.0.0.1:10000: address already in use (is another server still running? pick another port with --port, or --port 0 for any free one)
//! ```
//!
//! and whose [`Error::exit_code`] tells scripts which of them happened. `tests/cli.rs` provokes
//! each one through the real binary.

use std::fmt;
use std::io;

/// Everything that can stop a server or a client.
#[derive(Debug)]
pub enum Error {
    /// The host name did not resolve to any address (`--host nosuch.invalid`).
    Resolve { host: String, source: io::Error },
    /// `bind` failed: port in use, permission denied, address not on this machine, ...
    Bind { addr: String, source: io::Error },
    /// `bind` of a TCP port failed with "address already in use" although nothing listens
    /// there: connections of a server that stopped still hold it in TIME_WAIT, and the new
    /// listening socket did not set `SO_REUSEADDR` (lesson 10).
    BindTimeWait {
        addr: String,
        /// Connections in TIME_WAIT on that port, as `/proc/net/tcp` lists them.
        connections: usize,
        /// How long until the kernel frees the last of them.
        left: Option<std::time::Duration>,
    },
    /// `connect` failed: nobody listening, timed out, unreachable, ...
    Connect { addr: String, source: io::Error },
    /// The peer went away in the middle of a conversation.
    ConnectionLost { addr: String, detail: String },
    /// A setting that cannot work, caught before any socket is made.
    Config(String),
    /// A scenario step that did not go as the file says.
    Scenario(String),
    /// An input file that cannot be read or does not parse: a scenario file, the lessons'
    /// directory. Not a socket failure, nor a lesson that failed.
    Input {
        what: String,
        source: Option<io::Error>,
    },
    /// Any other socket call that failed: `what` names the call.
    Io { what: String, source: io::Error },
    /// A datagram client heard nothing back. UDP has no connection, so "nobody is there" only
    /// shows up now: as an ICMP port-unreachable turned into "connection refused", or as silence.
    NoReply { addr: String, detail: String },
    /// One datagram cannot carry this many bytes (`EMSGSIZE`); `limit` says what the limit is.
    DatagramTooLong {
        addr: String,
        len: usize,
        limit: String,
    },
}

impl Error {
    /// The process exit code for this error; `README.md` lists them.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            Error::Bind { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => 4,
                _ => 3,
            },
            Error::BindTimeWait { .. } => 3,
            Error::Resolve { .. } => 5,
            Error::Connect { .. } | Error::NoReply { .. } => 6,
            Error::ConnectionLost { .. } => 7,
            Error::Scenario(_) => 8,
            Error::Input { .. } => 9,
            Error::Io { .. } | Error::DatagramTooLong { .. } => 1,
        }
    }

    /// An input file that cannot be read: `what` says which, and what for.
    pub fn input(what: impl Into<String>, source: io::Error) -> Error {
        Error::Input {
            what: what.into(),
            source: Some(source),
        }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve { host, source } => write!(
                f,
                "cannot resolve host {host:?}: {} (check the spelling, or use an address such as 127.0.0.1 or ::1)",
                describe(source)
            ),
            Error::BindTimeWait {
                addr,
                connections,
                left,
            } => {
                let (count, verb) = if *connections == 1 {
                    ("1 connection".to_string(), "is")
                } else {
                    (format!("{connections} connections"), "are")
                };
                let left = left.map_or(String::new(), |left| {
                    format!(
                        ", which the kernel frees in about {} s",
                        left.as_secs().max(1)
                    )
                });
                write!(
                    f,
                    "cannot bind {addr}: address already in use (nothing listens there, but {count} of a server that stopped {verb} in TIME_WAIT{left}; a listening socket binds over them only with SO_REUSEADDR, which socket-lab and Rust's std set, and Python needs: sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1))"
                )
            }
            Error::Bind { addr, source } => {
                write!(f, "cannot bind {addr}: {}", describe(source))?;
                let is_unix_path = addr.parse::<std::net::SocketAddr>().is_err();
                match source.kind() {
                    // The stale-socket check says why, when it knows more than "in use".
                    io::ErrorKind::AddrInUse if is_unix_path => match source.get_ref() {
                        Some(why) => {
                            write!(f, " ({why}; stop it, or choose another path with --unix)")
                        }
                        None => write!(
                            f,
                            " (a server is still listening on that path; stop it, or choose another path with --unix)"
                        ),
                    },
                    io::ErrorKind::AddrInUse => write!(
                        f,
                        " (is another server still running? pick another port with --port, or --port 0 for any free one)"
                    ),
                    io::ErrorKind::PermissionDenied if is_unix_path => write!(
                        f,
                        " (bind creates the socket file, which needs write permission in its directory; choose a path in a directory you can write, such as /tmp)"
                    ),
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        " (ports below 1024 are reserved for root on Linux; use a port from 1024 up, such as the default 10000)"
                    ),
                    io::ErrorKind::NotFound if is_unix_path => write!(
                        f,
                        " (the directory for the socket file does not exist; create it, or choose a path in one that does, such as /tmp)"
                    ),
                    io::ErrorKind::AddrNotAvailable => write!(
                        f,
                        " (that address does not belong to this machine; use 127.0.0.1 or ::1)"
                    ),
                    _ => Ok(()),
                }
            }
            Error::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {}", describe(source))?;
                match source.kind() {
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => write!(
                        f,
                        " (is the server running? start it with `socket-lab server` in another terminal)"
                    ),
                    io::ErrorKind::TimedOut => write!(
                        f,
                        " (nothing answered: the server may be too busy to accept, or the address is wrong)"
                    ),
                    _ => Ok(()),
                }
            }
            Error::ConnectionLost { addr, detail } => write!(
                f,
                "connection to {addr} lost: {detail} (the server stopped or closed this connection; start it again and reconnect)"
            ),
            Error::Config(message) | Error::Scenario(message) => f.write_str(message),
            Error::Io { what, source }
            | Error::Input {
                what,
                source: Some(source),
            } => write!(f, "{what}: {}", describe(source)),
            Error::Input { what, source: None } => f.write_str(what),
            Error::NoReply { addr, detail } => write!(
                f,
                "no reply from {addr}: {detail} (UDP has no connection, so nothing could fail earlier: is a datagram server running there? start one with `socket-lab server --udp`)"
            ),
            Error::DatagramTooLong { addr, len, limit } => write!(
                f,
                "cannot send a {len}-byte datagram to {addr}: message too long ({limit}; send less per datagram, or use TCP, whose byte stream has no such limit)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Resolve { source, .. }
            | Error::Bind { source, .. }
            | Error::Connect { source, .. }
            | Error::Io { source, .. } => Some(source),
            Error::Input { source, .. } => source.as_ref().map(|e| e as _),
            Error::ConnectionLost { .. }
            | Error::BindTimeWait { .. }
            | Error::Config(_)
            | Error::Scenario(_)
            | Error::NoReply { .. }
            | Error::DatagramTooLong { .. } => None,
        }
    }
}

/// An `io::Error` in plain lower-case words: "address already in use" rather than
/// "Address already in use (os error 98)". The errno is kept for the rare ones we do not name,
/// since that is what a learner would search for.
pub fn describe(error: &io::Error) -> String {
    use io::ErrorKind::*;
    // std has no ErrorKind for EMSGSIZE ("a datagram too big for one send").
    match error.raw_os_error() {
        Some(libc::EMSGSIZE) => return "message too long".to_string(),
        Some(libc::EMFILE) => {
            return "too many open files (this process reached its descriptor limit, `ulimit -n`)"
                .to_string();
        }
        Some(libc::ENFILE) => return "too many open files in the system".to_string(),
        _ => {}
    }
    let words = match error.kind() {
        AddrInUse => "address already in use",
        AddrNotAvailable => "address not available",
        PermissionDenied => "permission denied",
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        BrokenPipe => "broken pipe",
        TimedOut | WouldBlock => "timed out",
        NotFound => "no such file or directory",
        _ => return error.to_string(),
    };
    words.to_string()
}
