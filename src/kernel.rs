//! What the kernel decides, read on this machine instead of quoted from memory.
//!
//! Much of what the walkthrough gets wrong is decided below the socket calls, by the kernel,
//! and several of those decisions are settings (sysctls) that differ between machines and
//! kernel versions. A lesson that says "the SYN is resent after 1 s, then 3 s" is wrong
//! somewhere; a lesson that reads `net.ipv4.tcp_syn_retries` and
//! `net.ipv4.tcp_syn_linear_timeouts` and works the schedule out is right everywhere. So:
//!
//! - [`sysctl`] reads one setting from `/proc/sys` (names are checked, so a scenario file
//!   cannot make it read anything else).
//! - [`SynRetries`] is the schedule on which an unanswered SYN is resent, from those two
//!   sysctls (lesson 18: a full listen queue drops SYNs, and the client's kernel resends them).
//! - [`tcp_sockets`] lists the TCP sockets the kernel holds, from `/proc/net/tcp` and
//!   `/proc/net/tcp6`, with their states and the time left on a TIME_WAIT: a bind that fails
//!   with "address already in use" when nobody listens is explained by them (lesson 10).
//!   `/proc/net/tcp` is the old text interface, and lists every socket.
//! - [`tcp_connection`] asks `sock_diag` netlink, the interface `ss` uses, about one
//!   connection named by its two addresses: its state and its receive queue, even when it
//!   belongs to another process. It costs the same with ten sockets or ten thousand, so it
//!   serves the waits that look every millisecond (the split network's "has the receiver
//!   read it yet?", a lesson's `kernel: state`). Where `sock_diag` does not answer,
//!   it reads `/proc/net/tcp` instead.
//! - [`Queues::of`] asks the kernel how many bytes wait in one socket's queues: received
//!   but not yet taken by `recv`, and given to `send` but not yet acknowledged or not yet
//!   even sent (lesson 21: Nagle's algorithm holding a small write back).

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Reads a sysctl such as `net.ipv4.tcp_syn_retries` from `/proc/sys`.
pub fn sysctl(name: &str) -> io::Result<String> {
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a sysctl name such as net.ipv4.tcp_syn_retries"),
        ));
    }
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let value = std::fs::read_to_string(&path)?;
    Ok(value.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Reads a sysctl that holds one whole number.
pub fn sysctl_number(name: &str) -> io::Result<u64> {
    let value = sysctl(name)?;
    value.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is `{value}`, not a number"),
        )
    })
}

/// What this machine does with an unanswered SYN: how many times it is resent, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynRetries {
    /// `net.ipv4.tcp_syn_retries`: resends before connect fails with "timed out".
    pub retries: u64,
    /// `net.ipv4.tcp_syn_linear_timeouts` (Linux 6.5 and later; 0 before): how many
    /// retransmission timeouts stay at the initial one before they start doubling.
    pub linear_timeouts: u64,
}

/// The first retransmission timeout of a SYN: `TCP_TIMEOUT_INIT`, a constant in the kernel
/// (RFC 6298's one second), unless a route sets `initrto`.
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

impl SynRetries {
    /// This machine's settings. A kernel without `tcp_syn_linear_timeouts` (before 6.5)
    /// doubles from the first retry.
    pub fn on_this_machine() -> io::Result<SynRetries> {
        let linear_timeouts = match sysctl_number("net.ipv4.tcp_syn_linear_timeouts") {
            Ok(value) => value,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(SynRetries {
            retries: sysctl_number("net.ipv4.tcp_syn_retries")?,
            linear_timeouts,
        })
    }

    /// The retransmission timeout before the `n`th resend (1-based), and before giving up
    /// (`n = retries + 1`): the initial timeout `linear_timeouts` times, then doubling from it
    /// (the kernel's ip-sysctl documentation: with 4, "1, 1, 1, 1, 1, 2, 4, ...").
    fn timeout(&self, n: u64) -> Duration {
        let doublings = n.saturating_sub(self.linear_timeouts + 1).min(30);
        INITIAL_RTO.saturating_mul(1 << doublings)
    }

    /// When each resend goes out, counted from the first SYN.
    pub fn resends(&self) -> Vec<Duration> {
        let mut at = Duration::ZERO;
        (1..=self.retries.min(255))
            .map(|n| {
                at += self.timeout(n);
                at
            })
            .collect()
    }

    /// When connect gives up with "timed out": one more timeout after the last resend.
    pub fn gives_up_after(&self) -> Duration {
        self.resends().last().copied().unwrap_or_default() + self.timeout(self.retries + 1)
    }
}

/// The bytes waiting in a socket's queues, as the kernel counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queues {
    /// `SIOCINQ`: received, not yet taken by `recv`.
    pub recv: usize,
    /// `SIOCOUTQ`: given to `send` and not yet acknowledged by the peer (sent or not).
    pub send: usize,
    /// `SIOCOUTQNSD`: given to `send` and not yet sent at all; TCP only (`None` elsewhere).
    pub unsent: Option<usize>,
}

/// `SIOCOUTQNSD` from `linux/sockios.h`; the libc crate does not name it.
const SIOCOUTQNSD: libc::Ioctl = 0x894B;

impl Queues {
    /// Asks the kernel about `socket`'s queues (three `ioctl` calls).
    pub fn of(socket: &impl AsRawFd) -> io::Result<Queues> {
        let fd = socket.as_raw_fd();
        Ok(Queues {
            recv: ioctl_count(fd, libc::FIONREAD)?,
            send: ioctl_count(fd, libc::TIOCOUTQ)?,
            // A Unix socket has no "sent but unacknowledged": the kernel refuses the question.
            unsent: ioctl_count(fd, SIOCOUTQNSD).ok(),
        })
    }
}

/// One of the socket ioctls that answer with a byte count.
fn ioctl_count(fd: RawFd, request: libc::Ioctl) -> io::Result<usize> {
    let mut count: libc::c_int = 0;
    // SAFETY: these requests write one int through the pointer, which points at `count` and
    // lives across the call; an invalid descriptor or request only makes ioctl return -1.
    let result = unsafe { libc::ioctl(fd, request, &mut count as *mut libc::c_int) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(count).map_err(|_| io::Error::other("the kernel reported a negative count"))
}

/// What the kernel knows of one TCP connection it is carrying (`getsockopt(TCP_INFO)`, the
/// numbers `ss -ti` prints): its round-trip time, the retransmission timeout that follows
/// from it, and how many segments are unacknowledged or were sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// The connection's state; `None` for a code this module does not know.
    pub state: Option<TcpState>,
    pub rtt: Duration,
    pub rto: Duration,
    pub unacked: u32,
    /// Segments sent again over the connection's life.
    pub retransmitted: u32,
}

impl TcpInfo {
    pub fn of(socket: &impl AsRawFd) -> io::Result<TcpInfo> {
        // SAFETY: tcp_info is plain old data; all zeroes is valid, and the kernel fills in as
        // much of it as it knows (the length says how much).
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the pointer and length describe `info`, which outlives the call.
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut libc::tcp_info as *mut libc::c_void,
                &mut length,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpInfo {
            state: TcpState::from_code(info.tcpi_state),
            rtt: Duration::from_micros(u64::from(info.tcpi_rtt)),
            rto: Duration::from_micros(u64::from(info.tcpi_rto)),
            unacked: info.tcpi_unacked,
            retransmitted: info.tcpi_total_retrans,
        })
    }
}

impl std::fmt::Display for TcpInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rtt {:.3} ms, retransmission timeout {} ms, {} unacknowledged, {} sent again",
            self.rtt.as_secs_f64() * 1000.0,
            self.rto.as_millis(),
            self.unacked,
            self.retransmitted
        )
    }
}

/// A TCP state as the kernel names it (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state `ss` calls `name`.
    pub fn from_name(name: &str) -> Option<TcpState> {
        TcpState::ALL.into_iter().find(|state| state.name() == name)
    }

    fn from_code(code: u8) -> Option<TcpState> {
        use TcpState::*;
        Some(match code {
            0x01 => Established,
            0x02 => SynSent,
            0x03 => SynRecv,
            0x04 => FinWait1,
            0x05 => FinWait2,
            0x06 => TimeWait,
            0x07 => Close,
            0x08 => CloseWait,
            0x09 => LastAck,
            0x0A => Listen,
            0x0B => Closing,
            0x0C => NewSynRecv,
            _ => return None,
        })
    }

    /// The name `ss` and `netstat` print.
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

/// One TCP socket the kernel holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// For a listening socket, the connections waiting in its accept queue; for any other,
    /// the bytes received and not yet read.
    pub rx_queue: usize,
    /// For a socket in TIME_WAIT, how long until the kernel frees it.
    pub time_wait_left: Option<Duration>,
}

impl TcpSocket {
    /// For a connected socket, the bytes received and not yet read by its program.
    ///
    /// `rx_queue` is not quite that. The kernel counts it in sequence numbers (the next one
    /// expected less the next one to be read), and a FIN takes a sequence number of its own
    /// (RFC 9293, 3.4). So a socket that has received its peer's FIN, and whose program has
    /// not yet read the end of the stream (a `recv` that returns 0), shows one more than the
    /// bytes waiting: `ss` prints `Recv-Q 1` for a CLOSE_WAIT socket whose program has read
    /// every byte but not yet the end (0 once it has).
    /// The `FIONREAD` ioctl ([`Queues::of`]) leaves the FIN out; so does this.
    ///
    /// One case neither count sees: a socket that had sent its own FIN first goes to
    /// TIME_WAIT when the peer's arrives, and the kernel's tables then hold a TIME_WAIT
    /// stand-in for the connection, which reports 0, even while the program still has bytes
    /// to read from its own socket.
    pub fn unread_bytes(&self) -> usize {
        let fin_received = matches!(
            self.state,
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
        );
        if fin_received {
            self.rx_queue.saturating_sub(1)
        } else {
            self.rx_queue
        }
    }
}

/// Every TCP socket in this network namespace, IPv4 and IPv6.
pub fn tcp_sockets() -> io::Result<Vec<TcpSocket>> {
    let mut sockets = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(file) {
            Ok(text) => sockets.extend(text.lines().skip(1).filter_map(parse_proc_line)),
            // A kernel without IPv6 has no tcp6 file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sockets)
}

/// The sockets whose local port is `port`.
pub fn tcp_sockets_on_port(port: u16) -> io::Result<Vec<TcpSocket>> {
    Ok(tcp_sockets()?
        .into_iter()
        .filter(|socket| socket.local.port() == port)
        .collect())
}

/// The one TCP connection from `local` to `remote`, as the kernel holds it now; `None` if it
/// holds none.
///
/// [`tcp_sockets`] reads every line of `/proc/net/tcp`: with ten thousand sockets open
/// (lesson 38), one look costs milliseconds, and a loop that looks every millisecond falls
/// behind. This asks `sock_diag` netlink instead (sock_diag(7)), the interface `ss` uses:
/// one `SOCK_DIAG_BY_FAMILY` request that names the connection by its two addresses, which
/// the kernel looks up as it would for an arriving segment. It sees what `/proc/net/tcp`
/// sees (this network namespace, TIME_WAIT included), and needs no privilege. That lookup
/// ends, like a segment's, at a socket listening on the port when no connection matches:
/// an answer about any socket but the one asked for is taken as "none".
///
/// Where `sock_diag` does not answer, `/proc/net/tcp` does: a kernel whose TCP support for
/// `sock_diag` is a module it could not load answers "no such socket" to every request
/// (`ENOENT`), and a sandbox may forbid netlink. So "none" is always `/proc/net/tcp`'s word.
pub fn tcp_connection(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TcpSocket>> {
    if let Ok(Some(socket)) = diag_connection(local, remote) {
        return Ok(Some(socket));
    }
    Ok(tcp_sockets()?
        .into_iter()
        .find(|socket| socket.local == local && socket.remote == remote))
}

/// [`tcp_connection`]'s question, asked of `sock_diag` alone.
fn diag_connection(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TcpSocket>> {
    let family = match local {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let netlink = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    // The kernel answers within the send; the timeout only bounds a kernel that does not.
    netlink.set_read_timeout(Some(Duration::from_secs(1)))?;
    // An unbound, unconnected netlink socket sends to the kernel (port id 0).
    let request = diag_request(family, local, remote);
    let sent = netlink.send(&request)?;
    if sent != request.len() {
        return Err(io::Error::other("sock_diag: the request was cut short"));
    }
    let mut answer = [0u8; 1024];
    let length = (&netlink).read(&mut answer)?;
    let found = parse_diag_answer(&answer[..length])?;
    Ok(found.filter(|socket| socket.local == local && socket.remote == remote))
}

/// `NETLINK_SOCK_DIAG` and `SOCK_DIAG_BY_FAMILY` from `linux/netlink.h` and
/// `linux/sock_diag.h`; `NLMSG_ERROR` from `linux/netlink.h`.
const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
/// Our request's sequence number; the answer carries it back.
const DIAG_SEQUENCE: u32 = 1;
/// A netlink header (`struct nlmsghdr`): length, type, flags, sequence, port id.
const NETLINK_HEADER: usize = 16;
/// `struct inet_diag_sockid`: two ports, two 16-byte addresses, an interface, a cookie.
const DIAG_SOCKET_ID: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, extensions, padding, states, socket id.
const DIAG_REQUEST: usize = 8 + DIAG_SOCKET_ID;
/// `struct inet_diag_msg` up to `idiag_rqueue`, the last field read here.
const DIAG_MESSAGE_READ: usize = 4 + DIAG_SOCKET_ID + 8;

/// A `SOCK_DIAG_BY_FAMILY` request for one TCP connection. Netlink's own fields are in the
/// machine's byte order; ports and addresses are in network order, as on the wire.
fn diag_request(family: libc::c_int, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let mut request = Vec::with_capacity(NETLINK_HEADER + DIAG_REQUEST);
    let length = (NETLINK_HEADER + DIAG_REQUEST) as u32;
    request.extend_from_slice(&length.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    // Not NLM_F_DUMP: a dump lists every socket, which is the cost this call avoids.
    request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request.extend_from_slice(&DIAG_SEQUENCE.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    // `family` is AF_INET (2) or AF_INET6 (10), and IPPROTO_TCP is 6: each fits a byte.
    request.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    // Every state, as `ss` asks. Only a dump filters by state; a lookup by address ignores it.
    request.extend_from_slice(&u32::MAX.to_ne_bytes());
    request.extend_from_slice(&local.port().to_be_bytes());
    request.extend_from_slice(&remote.port().to_be_bytes());
    for address in [local, remote] {
        let mut bytes = [0u8; 16];
        match address.ip() {
            IpAddr::V4(ip) => bytes[..4].copy_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.copy_from_slice(&ip.octets()),
        }
        request.extend_from_slice(&bytes);
    }
    // Any interface; no cookie (INET_DIAG_NOCOOKIE, all ones), so the kernel checks none.
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]);
    request
}

/// The kernel's answer: an `inet_diag_msg`, or an error message whose code is `ENOENT` when
/// no socket has those addresses.
fn parse_diag_answer(answer: &[u8]) -> io::Result<Option<TcpSocket>> {
    let malformed = || io::Error::other("sock_diag: the kernel's answer is too short");
    let u16_at = |at: usize| -> io::Result<u16> {
        let bytes = answer.get(at..at + 2).ok_or_else(malformed)?;
        Ok(u16::from_ne_bytes([bytes[0], bytes[1]]))
    };
    let u32_at = |at: usize| -> io::Result<u32> {
        let bytes = answer.get(at..at + 4).ok_or_else(malformed)?;
        Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let kind = u16_at(4)?;
    if u32_at(8)? != DIAG_SEQUENCE {
        return Err(io::Error::other("sock_diag: an answer to another request"));
    }
    if kind == NLMSG_ERROR {
        // `struct nlmsgerr`: a negative errno, then the request it answers.
        let code = u32_at(NETLINK_HEADER)? as i32;
        return match code.checked_neg() {
            Some(libc::ENOENT) => Ok(None),
            Some(errno) if errno > 0 => Err(io::Error::from_raw_os_error(errno)),
            // 0 is an acknowledgement, which this request did not ask for.
            _ => Err(io::Error::other(format!(
                "sock_diag: an error message with code {code}"
            ))),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(io::Error::other(format!(
            "sock_diag: an answer of type {kind}, not SOCK_DIAG_BY_FAMILY"
        )));
    }
    let message = answer.get(NETLINK_HEADER..).ok_or_else(malformed)?;
    if message.len() < DIAG_MESSAGE_READ {
        return Err(malformed());
    }
    let family = libc::c_int::from(message[0]);
    let code = message[1];
    let state = TcpState::from_code(code)
        .ok_or_else(|| io::Error::other(format!("sock_diag: unknown TCP state {code}")))?;
    let id = &message[4..4 + DIAG_SOCKET_ID];
    let address = |port: &[u8], ip: &[u8]| -> io::Result<SocketAddr> {
        let port = u16::from_be_bytes([port[0], port[1]]);
        let ip = match family {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            libc::AF_INET6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&ip[..16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            other => {
                return Err(io::Error::other(format!(
                    "sock_diag: address family {other}"
                )));
            }
        };
        Ok(SocketAddr::new(ip, port))
    };
    let at = |offset: usize| -> io::Result<u32> { u32_at(NETLINK_HEADER + offset) };
    let expires = at(4 + DIAG_SOCKET_ID)?;
    let rx_queue = at(4 + DIAG_SOCKET_ID + 4)?;
    Ok(Some(TcpSocket {
        local: address(&id[0..2], &id[4..20])?,
        remote: address(&id[2..4], &id[20..36])?,
        state,
        rx_queue: rx_queue as usize,
        // For a TIME_WAIT socket the kernel reports its timer (code 3) and the milliseconds
        // left on it.
        time_wait_left: (state == TcpState::TimeWait && message[2] == DIAG_TIMER_TIME_WAIT)
            .then(|| Duration::from_millis(u64::from(expires))),
    }))
}

/// `idiag_timer`'s code for the TIME_WAIT timer (sock_diag(7)).
const DIAG_TIMER_TIME_WAIT: u8 = 3;

/// `/proc/net/tcp` reports timers in `USER_HZ` ticks, 100 a second on Linux.
const USER_HZ: u64 = 100;
/// `/proc/net/tcp`'s timer code for the TIME_WAIT timer.
const TIMER_TIME_WAIT: &str = "03";

/// One line of `/proc/net/tcp`: `sl local rem st tx:rx tr:when ...`, addresses as hex in the
/// kernel's byte order.
fn parse_proc_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = parse_address(fields.get(1)?)?;
    let remote = parse_address(fields.get(2)?)?;
    let state = TcpState::from_code(u8::from_str_radix(fields.get(3)?, 16).ok()?)?;
    let rx_queue = usize::from_str_radix(fields.get(4)?.split_once(':')?.1, 16).ok()?;
    let (timer, when) = fields.get(5)?.split_once(':')?;
    let time_wait_left = (state == TcpState::TimeWait && timer == TIMER_TIME_WAIT)
        .then(|| u64::from_str_radix(when, 16).ok())
        .flatten()
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ));
    Some(TcpSocket {
        local,
        remote,
        state,
        rx_queue,
        time_wait_left,
    })
}

/// `0100007F:1F90` is 127.0.0.1:8080: the address is 32-bit words in host byte order, the
/// port big-endian.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |at: usize| -> Option<[u8; 4]> {
        let hex = address.get(at..at + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for index in 0..4 {
                bytes[index * 4..index * 4 + 4].copy_from_slice(&word(index * 8)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syn_schedule_follows_the_two_sysctls() {
        let seconds = |schedule: Vec<Duration>| -> Vec<u64> {
            schedule.iter().map(Duration::as_secs).collect()
        };
        // Before Linux 6.5: doubling from the start; tcp(7): 6 retries is about 127 s.
        let doubling = SynRetries {
            retries: 6,
            linear_timeouts: 0,
        };
        assert_eq!(seconds(doubling.resends()), [1, 3, 7, 15, 31, 63]);
        assert_eq!(doubling.gives_up_after(), Duration::from_secs(127));
        // Linux 6.5's default: four linear timeouts, "1, 1, 1, 1, 1, 2, 4".
        let linear = SynRetries {
            retries: 6,
            linear_timeouts: 4,
        };
        assert_eq!(seconds(linear.resends()), [1, 2, 3, 4, 5, 7]);
        assert_eq!(linear.gives_up_after(), Duration::from_secs(11));
    }

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let line = "   1: 0100007F:AB7B 0100007F:D79C 06 00000000:00000000 03:00000300 00000000     0        0 0 3 000000009b629891";
        let socket = parse_proc_line(line).unwrap();
        assert_eq!(socket.local, "127.0.0.1:43899".parse().unwrap());
        assert_eq!(socket.remote, "127.0.0.1:55196".parse().unwrap());
        assert_eq!(socket.state, TcpState::TimeWait);
        assert_eq!(socket.time_wait_left, Some(Duration::from_millis(7680)));
        let v6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0";
        let socket = parse_proc_line(v6).unwrap();
        assert_eq!(socket.local, "[::1]:8080".parse().unwrap());
        assert_eq!(socket.state, TcpState::Listen);
        assert_eq!(socket.time_wait_left, None);
    }

    #[test]
    fn a_listener_is_found_on_its_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sockets = tcp_sockets_on_port(port).unwrap();
        assert!(
            sockets
                .iter()
                .any(|socket| socket.state == TcpState::Listen),
            "{sockets:?}"
        );
    }

    #[test]
    fn queues_count_what_waits_to_be_received() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(Queues::of(&server).unwrap().recv, 0);
        client.write_all(b"hello").unwrap();
        // Wait on readiness, not on time: a peek returns once the bytes are there, and leaves
        // them queued.
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.peek(&mut [0; 5]).unwrap(), 5);
        let queues = Queues::of(&server).unwrap();
        assert_eq!(queues.recv, 5);
        assert_eq!(queues.unsent, Some(0));
    }

    #[test]
    fn sock_diag_finds_one_connection_as_proc_net_tcp_shows_it() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (near, far) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        client.write_all(b"hello").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.peek(&mut [0; 5]).unwrap(), 5);
        let found = diag_connection(near, far)
            .unwrap()
            .expect("the server's socket");
        let listed = tcp_sockets()
            .unwrap()
            .into_iter()
            .find(|socket| socket.local == near && socket.remote == far);
        assert_eq!(Some(&found), listed.as_ref());
        assert_eq!(found.state, TcpState::Established);
        assert_eq!(found.rx_queue, 5);
        // The other end, named from its side.
        let other = diag_connection(far, near)
            .unwrap()
            .expect("the client's socket");
        assert_eq!((other.local, other.rx_queue), (far, 0));
    }

    #[test]
    fn sock_diag_follows_a_closed_connection_to_time_wait_and_finds_none_after() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (near, far) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        // The client closes first, so its side goes to TIME_WAIT once the server closes too.
        drop(client);
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(server.read(&mut [0; 1]).unwrap(), 0);
        drop(server);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let waiting = loop {
            let found = diag_connection(near, far).unwrap();
            if let Some(socket) = found.filter(|socket| socket.state == TcpState::TimeWait) {
                break socket;
            }
            assert!(std::time::Instant::now() < deadline, "no TIME_WAIT");
            std::thread::sleep(Duration::from_millis(1));
        };
        let left = waiting.time_wait_left.expect("a TIME_WAIT timer");
        // Linux holds TIME_WAIT for TCP_TIMEWAIT_LEN, 60 s; not a sysctl.
        assert!(left <= Duration::from_secs(60), "{left:?}");
        // A connection that never existed: port 9 (discard) from a port nobody bound.
        let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(diag_connection(nowhere, far).unwrap(), None);
        assert_eq!(tcp_connection(nowhere, far).unwrap(), None);
    }

    #[test]
    fn a_received_fin_counts_in_the_receive_queue_but_is_no_unread_byte() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The client sends, then half-closes; the server reads only after the FIN is in.
        let closed_after = |read_first: usize| {
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.write_all(b"bye").unwrap();
            server.read_exact(&mut vec![0; read_first]).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let (near, far) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
            let look = move || {
                diag_connection(near, far)
                    .unwrap()
                    .expect("the server's socket")
            };
            // Loopback delivers the FIN within the shutdown; wait for the state all the same.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while look().state != TcpState::CloseWait {
                assert!(std::time::Instant::now() < deadline, "{:?}", look());
                std::thread::sleep(Duration::from_millis(1));
            }
            (server, look)
        };
        // Three bytes and the FIN unread: four sequence numbers, three bytes.
        let (server, look) = closed_after(0);
        let socket = look();
        assert_eq!((socket.rx_queue, socket.unread_bytes()), (4, 3));
        assert_eq!(Queues::of(&server).unwrap().recv, 3);
        // Every byte read before the FIN came: the FIN alone, no byte.
        let (mut server, look) = closed_after(3);
        let socket = look();
        assert_eq!((socket.rx_queue, socket.unread_bytes()), (1, 0));
        assert_eq!(Queues::of(&server).unwrap().recv, 0);
        // Reading the end (recv returns 0) takes the FIN's sequence number too.
        assert_eq!(server.read(&mut [0; 1]).unwrap(), 0);
        assert_eq!(look().rx_queue, 0);
    }

    /// The kernel looks a connection up as it would an arriving segment's, and that lookup
    /// ends at a listening socket on the port when no connection matches.
    #[test]
    fn sock_diag_answers_none_for_a_connection_gone_from_a_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap();
        let never: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(diag_connection(port, never).unwrap(), None);
        assert_eq!(tcp_connection(port, never).unwrap(), None);
    }

    #[test]
    fn sock_diag_answers_that_are_cut_short_are_errors() {
        let request = diag_request(
            libc::AF_INET,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(request.len(), NETLINK_HEADER + DIAG_REQUEST);
        assert_eq!(&request[..4], &(72u32).to_ne_bytes());
        // A whole answer for an ESTABLISHED (1) socket with 5 bytes unread: the request's
        // header and socket id around the message's own first four fields.
        let mut answer = request[..NETLINK_HEADER].to_vec();
        answer.extend_from_slice(&[libc::AF_INET as u8, 1, 0, 0]);
        answer.extend_from_slice(&request[NETLINK_HEADER + 8..]);
        answer.extend_from_slice(&0u32.to_ne_bytes());
        answer.extend_from_slice(&5u32.to_ne_bytes());
        assert_eq!(answer.len(), NETLINK_HEADER + DIAG_MESSAGE_READ);
        let socket = parse_diag_answer(&answer).unwrap().unwrap();
        assert_eq!(socket.local, "127.0.0.1:1".parse().unwrap());
        assert_eq!(socket.remote, "127.0.0.1:2".parse().unwrap());
        assert_eq!(socket.state, TcpState::Established);
        assert_eq!(socket.rx_queue, 5);
        for cut in [0, 3, 10, NETLINK_HEADER + DIAG_MESSAGE_READ - 1] {
            let error = parse_diag_answer(&answer[..cut]).unwrap_err();
            assert!(error.to_string().contains("too short"), "{cut}: {error}");
        }
        // NLMSG_DONE (3) is not an answer to a lookup.
        answer[4..6].copy_from_slice(&3u16.to_ne_bytes());
        let error = parse_diag_answer(&answer).unwrap_err();
        assert!(
            error.to_string().contains("not SOCK_DIAG_BY_FAMILY"),
            "{error}"
        );
        let mut request = answer;
        request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request[8..12].copy_from_slice(&7u32.to_ne_bytes());
        let error = parse_diag_answer(&request).unwrap_err();
        assert!(error.to_string().contains("another request"), "{error}");
        let mut refused = request[..NETLINK_HEADER + 4].to_vec();
        refused[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        refused[8..12].copy_from_slice(&DIAG_SEQUENCE.to_ne_bytes());
        refused[NETLINK_HEADER..].copy_from_slice(&(-libc::EACCES).to_ne_bytes());
        assert_eq!(
            parse_diag_answer(&refused).unwrap_err().raw_os_error(),
            Some(libc::EACCES)
        );
        refused[NETLINK_HEADER..].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_diag_answer(&refused).unwrap(), None);
        // No code a kernel could send makes it panic: not the one with no negative, not 0.
        for code in [i32::MIN, 0, 5] {
            refused[NETLINK_HEADER..].copy_from_slice(&code.to_ne_bytes());
            let error = parse_diag_answer(&refused).unwrap_err();
            assert!(
                error.to_string().contains(&format!("code {code}")),
                "{error}"
            );
        }
    }

    #[test]
    fn tcp_info_reads_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let info = TcpInfo::of(&client).unwrap();
        assert_eq!(info.unacked, 0);
        assert_eq!(info.retransmitted, 0);
        // The RFC 6298 floor on Linux is 200 ms (TCP_RTO_MIN), however short the rtt.
        assert!(info.rto >= Duration::from_millis(200), "{info}");
        assert!(TcpInfo::of(&listener).is_ok());
    }

    #[test]
    fn sysctl_names_cannot_leave_proc_sys() {
        assert!(sysctl("net.ipv4.tcp_syn_retries").is_ok());
        for bad in ["", "../etc/passwd", "net..ipv4", "net/ipv4/x", "net.ipv4.*"] {
            assert_eq!(
                sysctl(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
