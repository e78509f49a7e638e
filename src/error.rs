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
use std::net::{Ipv4Addr, SocketAddr};

use crate::server::DEFAULT_PORT;

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
    /// `connect` failed: nobody listening, timed out, unreachable, ... The hint names the
    /// command that would start a server there, so it needs to know what was tried.
    Connect {
        /// What was asked for, as given: `localhost:10000`, `127.0.0.1:10000`, a socket path.
        addr: String,
        /// Every address `connect` tried, in order: all a host name resolved to (`localhost`
        /// is 127.0.0.1, ::1, or both, as `/etc/hosts` says), the one address given, or none
        /// for a socket path. The error is the last one's.
        tried: Vec<SocketAddr>,
        /// The second argument of `socket(family, type)`: which server would answer.
        socket_type: SocketType,
        source: io::Error,
    },
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

/// `SOCK_STREAM` or `SOCK_DGRAM`: a stream client reaches only a stream server, a datagram
/// client only a datagram one (`socket-lab server --udp`), even at the same port or path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    Stream,
    Datagram,
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
            Error::Connect {
                addr,
                tried,
                socket_type,
                source,
            } => {
                write!(f, "cannot connect to {addr}: {}", describe(source))?;
                // For a host name, which addresses it turned out to be: the likeliest surprise.
                let tried_note = addresses_tried(addr, tried).map(|note| format!("{note}; "));
                let tried_note = tried_note.as_deref().unwrap_or("");
                match source.kind() {
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                        match start_command(addr, tried, *socket_type) {
                            Some(command) => write!(
                                f,
                                " ({tried_note}is the server running? start it with `{command}` in another terminal{})",
                                other_family(addr, tried)
                            ),
                            None => write!(
                                f,
                                " ({tried_note}is a server running on that machine, listening on that address and port?)"
                            ),
                        }
                    }
                    io::ErrorKind::TimedOut => write!(
                        f,
                        " ({tried_note}nothing answered: the server may be too busy to accept, or the address is wrong)"
                    ),
                    _ => match addresses_tried(addr, tried) {
                        Some(note) => write!(f, " ({note})"),
                        None => Ok(()),
                    },
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

/// The addresses a host name resolved to, when `addr` does not already say them: `tried
/// 127.0.0.1:10000, the only address localhost has here`. `None` for an address given as such
/// or a path.
fn addresses_tried(addr: &str, tried: &[SocketAddr]) -> Option<String> {
    let name = addr.rsplit_once(':').map_or(addr, |(name, _port)| name);
    match tried {
        [] => None,
        [only] if only.to_string() == addr => None,
        [only] => Some(format!("tried {only}, the only address {name} has here")),
        several => {
            let listed: Vec<String> = several.iter().map(SocketAddr::to_string).collect();
            Some(format!("tried {}", listed.join(", then ")))
        }
    }
}

/// The command that starts a socket-lab server where this `connect` looked: only the flags
/// that differ from the server's defaults (127.0.0.1, port 10000, a stream socket). `None`
/// when no address tried is on this machine's loopback: a server there is another machine's.
fn start_command(addr: &str, tried: &[SocketAddr], socket_type: SocketType) -> Option<String> {
    let mut command = String::from("socket-lab server");
    match tried.first() {
        // No address: a Unix socket path.
        None => command.push_str(&format!(" --unix {addr}")),
        Some(first) => {
            let on_default_host = tried.iter().any(|a| a.ip() == Ipv4Addr::LOCALHOST);
            if !on_default_host {
                let loopback = tried.iter().find(|a| a.ip().is_loopback())?;
                command.push_str(&format!(" --host {}", loopback.ip()));
            }
            if first.port() != DEFAULT_PORT {
                command.push_str(&format!(" --port {}", first.port()));
            }
        }
    }
    if socket_type == SocketType::Datagram {
        command.push_str(" --udp");
    }
    Some(command)
}

/// A host name that resolved to one family only cannot reach a server listening on the other:
/// `localhost` is often 127.0.0.1 alone in `/etc/hosts`, and a server on `::1` is then not
/// found by that name.
fn other_family(addr: &str, tried: &[SocketAddr]) -> &'static str {
    let was_a_name = addresses_tried(addr, tried).is_some();
    if !was_a_name || !tried.iter().all(|a| a.ip().is_loopback()) {
        ""
    } else if tried.iter().all(SocketAddr::is_ipv4) {
        "; if it listens on ::1, connect with --host ::1"
    } else if tried.iter().all(SocketAddr::is_ipv6) {
        "; if it listens on 127.0.0.1, connect with --host 127.0.0.1"
    } else {
        ""
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(addr: &str, tried: &[&str], socket_type: SocketType) -> String {
        Error::Connect {
            addr: addr.to_string(),
            tried: tried
                .iter()
                .map(|a| a.parse().expect("an address"))
                .collect(),
            socket_type,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        }
        .to_string()
    }

    #[test]
    fn localhost_that_is_only_ipv4_here_says_so_and_how_to_reach_ipv6() {
        // /etc/hosts maps localhost to 127.0.0.1 alone, and the server listens on ::1.
        assert_eq!(
            refused("localhost:10000", &["127.0.0.1:10000"], SocketType::Stream),
            "cannot connect to localhost:10000: connection refused (tried 127.0.0.1:10000, the only address localhost has here; is the server running? start it with `socket-lab server` in another terminal; if it listens on ::1, connect with --host ::1)"
        );
    }

    #[test]
    fn every_address_tried_is_listed_and_the_start_command_fits_them() {
        assert_eq!(
            refused(
                "localhost:10001",
                &["[::1]:10001", "127.0.0.1:10001"],
                SocketType::Stream
            ),
            "cannot connect to localhost:10001: connection refused (tried [::1]:10001, then 127.0.0.1:10001; is the server running? start it with `socket-lab server --port 10001` in another terminal)"
        );
        assert_eq!(
            refused("[::1]:10000", &["[::1]:10000"], SocketType::Datagram),
            "cannot connect to [::1]:10000: connection refused (is the server running? start it with `socket-lab server --host ::1 --udp` in another terminal)"
        );
        // Another machine's address: no command of ours starts a server there.
        assert_eq!(
            refused("192.0.2.7:10000", &["192.0.2.7:10000"], SocketType::Stream),
            "cannot connect to 192.0.2.7:10000: connection refused (is a server running on that machine, listening on that address and port?)"
        );
    }
}
