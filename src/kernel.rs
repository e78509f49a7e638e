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
//!   `/proc/net/tcp` is the old text interface; `ss` uses `sock_diag` netlink, which also
//!   reports queues and `TCP_INFO`, and which the kernel's view of every lesson will need.
//! - [`Queues::of`] asks the kernel how many bytes wait in one socket's queues: received
//!   but not yet taken by `recv`, and given to `send` but not yet acknowledged or not yet
//!   even sent (lesson 21: Nagle's algorithm holding a small write back).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

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
