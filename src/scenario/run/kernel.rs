//! The kernel's verbs: what this machine is set to do, read when the lesson runs.
//!
//! A lesson never quotes a timing or a limit that a sysctl decides; it reads the sysctl and
//! prints it here, with what it decides, so the transcript is true on every machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{ClientSocket, Runner};
use crate::endpoint::Stream;
use crate::kernel::{
    INITIAL_RTO, SynRetries, TcpInfo, TcpSocket, TcpState, sysctl, tcp_connection, tcp_sockets,
};
use crate::scenario::report::{Entry, EntryKind, StepError};
use crate::scenario::syntax::{End, KernelCall};

/// How often a step that waits for what `/proc` shows (a socket's state, the server's
/// threads) asks again.
const STATE_POLL: Duration = Duration::from_millis(2);

/// Reads the kernel's view with `read` until `done` says the reading is the one a step
/// expects, or the deadline passes: the last reading either way, for the step to show. No
/// event tells us that a socket changed state or a thread started, so the step asks again
/// every [`STATE_POLL`].
pub(super) fn poll_until<T, E>(
    deadline: Instant,
    mut read: impl FnMut() -> Result<T, E>,
    done: impl Fn(&T) -> bool,
) -> Result<T, E> {
    loop {
        let reading = read()?;
        if done(&reading) || Instant::now() >= deadline {
            return Ok(reading);
        }
        std::thread::sleep(STATE_POLL);
    }
}

/// The listening socket's accept queue, as `listen(2)` sizes it: the backlog given to
/// `listen`, lowered to `net.core.somaxconn` if it is larger, and Linux lets one connection
/// more than that wait (lesson 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ListenQueue {
    pub(super) backlog: u64,
    /// `None` where the sysctl cannot be read: then nothing is known to lower the backlog.
    pub(super) somaxconn: Option<u64>,
}

impl ListenQueue {
    /// How many connections may wait in it for `accept`.
    pub(super) fn holds(&self) -> u64 {
        self.somaxconn
            .map_or(self.backlog, |cap| cap.min(self.backlog))
            + 1
    }

    /// `listen backlog 4096, lowered to net.core.somaxconn = 128, so up to 129 wait`.
    fn describe(&self) -> String {
        match self.somaxconn {
            Some(cap) if cap < self.backlog => format!(
                "listen backlog {}, lowered to net.core.somaxconn = {cap}, so up to {} wait",
                self.backlog,
                self.holds()
            ),
            _ => format!(
                "listen backlog {}, so up to {} wait",
                self.backlog,
                self.holds()
            ),
        }
    }
}

/// The kernel's TCP sockets as the `--kernel` view last saw them: (local, remote) → state.
pub(super) type Snapshot = HashMap<(SocketAddr, SocketAddr), TcpState>;

/// What the sysctls the lessons read decide, in a learner's words.
const MEANINGS: &[(&str, &str)] = &[
    (
        "net.ipv4.tcp_syn_retries",
        "how many times an unanswered SYN is resent before connect fails with \"timed out\"",
    ),
    (
        "net.ipv4.tcp_syn_linear_timeouts",
        "how many resends keep the first timeout before the timeouts start doubling",
    ),
    (
        "net.core.somaxconn",
        "the largest backlog listen accepts: a larger one is lowered to this",
    ),
    (
        "net.ipv4.tcp_abort_on_overflow",
        "when a handshake's last ACK finds the accept queue full: with 0 it is ignored and the server resends its SYN-ACK later; with 1 it is answered with RST. A SYN that finds the queue full is dropped either way",
    ),
    (
        "net.ipv4.tcp_max_syn_backlog",
        "how many half-open connections (SYN received, handshake not finished) are kept",
    ),
    (
        "net.ipv4.ip_local_port_range",
        "the ports the kernel picks from when a client connects without binding",
    ),
    (
        "net.ipv4.ip_unprivileged_port_start",
        "ports below this need root (or CAP_NET_BIND_SERVICE) to bind",
    ),
    (
        "net.ipv4.tcp_fin_timeout",
        "how long an orphaned connection waits in FIN_WAIT2 (not TIME_WAIT's length)",
    ),
    (
        "net.ipv4.icmp_msgs_per_sec",
        "how many ICMP error messages (such as \"port unreachable\") this host sends per second at most; the ones over it are never sent",
    ),
    (
        "net.ipv4.icmp_msgs_burst",
        "how many ICMP error messages may go out at once before icmp_msgs_per_sec paces them",
    ),
    (
        "net.ipv4.icmp_ratemask",
        "which ICMP types the rate limits cover, one bit per type: bit 3 is \"destination unreachable\", whose codes include \"port unreachable\"",
    ),
    (
        "net.ipv4.icmp_ratelimit",
        "the fewest milliseconds between two such ICMP messages to one destination; loopback is exempt",
    ),
    (
        "net.core.rmem_max",
        "the largest receive buffer SO_RCVBUF may ask for",
    ),
    (
        "net.core.wmem_max",
        "the largest send buffer SO_SNDBUF may ask for",
    ),
];

fn line(text: String) -> Entry {
    Entry::new(EntryKind::Kernel, format!("kernel   {text}"))
}

impl Runner<'_> {
    pub(super) fn kernel_call(&mut self, call: &KernelCall) -> Result<(), StepError> {
        if self.private_network
            && matches!(call, KernelCall::Sysctl(_) | KernelCall::SynSchedule)
            && !self.said_private
        {
            self.said_private = true;
            self.record(line(
                "(read inside the lab's private network namespace, where the lesson's sockets live: many network sysctls there start from the kernel's defaults rather than the machine's settings, so `sysctl` outside it may print other values)".into(),
            ));
        }
        match call {
            KernelCall::Sysctl(names) => {
                for name in names {
                    let value =
                        sysctl(name).map_err(|e| format!("cannot read the sysctl {name}: {e}"))?;
                    let meaning = MEANINGS
                        .iter()
                        .find(|(known, _)| known == name)
                        .map_or(String::new(), |(_, meaning)| format!("   ({meaning})"));
                    self.record(line(format!("{name} = {value}{meaning}")));
                }
                Ok(())
            }
            KernelCall::State { end, state } => self.expect_state(end, *state),
            KernelCall::AcceptQueue(expected) => self.expect_accept_queue(*expected),
            KernelCall::SynSchedule => {
                let syn = SynRetries::on_this_machine()
                    .map_err(|e| format!("cannot read the SYN retry sysctls: {e}"))?;
                let resends: Vec<String> = syn
                    .resends()
                    .iter()
                    .map(|at| format!("{}", at.as_secs()))
                    .collect();
                self.record(line(format!(
                    "on this machine (net.ipv4.tcp_syn_retries = {}, net.ipv4.tcp_syn_linear_timeouts = {}, first timeout {} s), an unanswered SYN is resent {} s after the first; connect gives up after {} s",
                    syn.retries,
                    syn.linear_timeouts,
                    INITIAL_RTO.as_secs(),
                    if resends.is_empty() {
                        "never".to_string()
                    } else {
                        resends.join(", ")
                    },
                    syn.gives_up_after().as_secs()
                )));
                Ok(())
            }
        }
    }
}

impl Runner<'_> {
    /// The lesson's server's accept queue, with this machine's `net.core.somaxconn`.
    pub(super) fn listen_queue(&self) -> ListenQueue {
        ListenQueue {
            backlog: u64::try_from(self.config.backlog).unwrap_or(0),
            somaxconn: crate::kernel::sysctl_number("net.core.somaxconn").ok(),
        }
    }

    /// `kernel: accept-queue = N`: the connections waiting in the listening socket's queue,
    /// as `/proc/net/tcp` counts them, waiting up to the step's timeout for the count (a
    /// handshake's last ACK, or an `accept`, may still be on its way).
    fn expect_accept_queue(&mut self, expected: usize) -> Result<(), StepError> {
        let server = self
            .server_address()
            .ok_or_else(|| StepError::Misuse("the accept queue belongs to a TCP server".into()))?;
        let listener = poll_until(
            self.step_deadline(),
            || {
                tcp_sockets()
                    .map_err(|e| StepError::from(format!("cannot read /proc/net/tcp: {e}")))?
                    .into_iter()
                    .find(|socket| socket.local == server && socket.state == TcpState::Listen)
                    .ok_or_else(|| StepError::from("the server has no listening socket"))
            },
            |listener| listener.rx_queue == expected,
        )?;
        let limit = self.listen_queue().describe();
        self.record(line(format!(
            "server's listening socket: {} connection{} in the accept queue ({limit})",
            listener.rx_queue,
            if listener.rx_queue == 1 { "" } else { "s" },
        )));
        if listener.rx_queue == expected {
            Ok(())
        } else {
            Err(StepError::Mismatch {
                call: "accept-queue".into(),
                expected: expected.to_string(),
                got: listener.rx_queue.to_string(),
            })
        }
    }

    /// The (local, remote) addresses of one end of a client's connection.
    fn end_addresses(&self, end: &End) -> Result<(SocketAddr, SocketAddr), StepError> {
        let server = self.address_of("server")?;
        Ok(match end {
            End::Client(name) => (self.address_of(name)?, server),
            End::ServerOf(name) => (server, self.address_of(name)?),
        })
    }

    fn expect_state(&mut self, end: &End, expected: TcpState) -> Result<(), StepError> {
        let (local, remote) = self.end_addresses(end)?;
        let shown = match end {
            End::Client(name) => format!("{name}'s socket"),
            End::ServerOf(name) => format!("the server's socket for {name}"),
        };
        let found = poll_until(
            self.step_deadline(),
            || {
                tcp_connection(local, remote)
                    .map_err(|e| StepError::from(format!("cannot read /proc/net/tcp: {e}")))
            },
            |found| found.as_ref().map(|socket| socket.state) == Some(expected),
        )?;
        let state = found.as_ref().map(|socket| socket.state);
        let left = found
            .as_ref()
            .and_then(|socket| socket.time_wait_left)
            .map_or(String::new(), |left| {
                format!(
                    " (the kernel frees it in about {} s)",
                    left.as_secs().max(1)
                )
            });
        // For a socket the runner holds, what TCP_INFO says of the connection.
        let held = match end {
            End::Client(name) => self
                .clients
                .get(name)
                .and_then(|client| client.socket.as_ref()),
            End::ServerOf(_) => None,
        };
        let info = match held {
            Some(ClientSocket::Stream(Stream::Tcp(stream))) => {
                TcpInfo::of(stream).map_or(String::new(), |info| format!("; {info}"))
            }
            _ => String::new(),
        };
        self.record(line(format!(
            "{shown}: {}{left}{info}",
            state.map_or("gone: the kernel holds nothing for it", TcpState::name)
        )));
        if state == Some(expected) {
            Ok(())
        } else {
            Err(StepError::Mismatch {
                call: format!("the state of {shown}"),
                expected: expected.name().into(),
                got: state.map_or("no socket at all".into(), |state| state.name().into()),
            })
        }
    }

    /// The scenario's TCP sockets as the kernel holds them now: those with the server's or a
    /// client's address at either end.
    pub(super) fn kernel_snapshot(&self) -> Snapshot {
        let Ok(sockets) = tcp_sockets() else {
            return Snapshot::new();
        };
        let mut ends: Vec<SocketAddr> = self
            .clients
            .keys()
            .filter_map(|name| self.address_of(name).ok())
            .collect();
        ends.extend(self.server_address());
        sockets
            .into_iter()
            .filter(|socket: &TcpSocket| ends.contains(&socket.local))
            .map(|socket| ((socket.local, socket.remote), socket.state))
            .collect()
    }

    /// With `--kernel`: a line for every socket whose state changed since the last look.
    pub(super) fn show_kernel_changes(&mut self) {
        let Some(before) = self.kernel_view.take() else {
            return;
        };
        let now = self.kernel_snapshot();
        let mut changes: Vec<(String, String)> = Vec::new();
        for (&(local, remote), &state) in &now {
            let was = before.get(&(local, remote)).copied();
            if was != Some(state) {
                // Read after each step, not as it happens: states in between can pass unseen.
                let what = match was {
                    Some(was) => {
                        format!("{} (after the step before: {})", state.name(), was.name())
                    }
                    None => state.name().to_string(),
                };
                changes.push((self.socket_name(local, remote), what));
            }
        }
        for (&(local, remote), &was) in &before {
            if !now.contains_key(&(local, remote)) {
                changes.push((
                    self.socket_name(local, remote),
                    format!("gone (after the step before: {})", was.name()),
                ));
            }
        }
        changes.sort();
        for (socket, change) in changes {
            self.record(line(format!("{socket}: {change}")));
        }
        self.kernel_view = Some(now);
    }

    fn socket_name(&self, local: SocketAddr, remote: SocketAddr) -> String {
        let (local, remote) = (self.end_name(local), self.end_name(remote));
        match (local.as_str(), remote.as_str()) {
            ("server", "0.0.0.0:0" | "[::]:0") => "server's listening socket".into(),
            ("server", client) => format!("server's socket for {client}"),
            (client, _) => format!("{client}'s socket"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far enough that no test here reaches it unless it waits on purpose.
    const FAR: Duration = Duration::from_secs(60);

    #[test]
    fn the_accept_queue_holds_one_more_than_the_backlog_somaxconn_leaves() {
        let queue = |backlog, somaxconn| ListenQueue { backlog, somaxconn };
        assert_eq!(queue(5, Some(4096)).holds(), 6);
        assert_eq!(queue(0, Some(4096)).holds(), 1);
        assert_eq!(queue(4096, Some(4096)).holds(), 4097);
        assert_eq!(queue(5000, Some(4096)).holds(), 4097);
        assert_eq!(queue(5000, None).holds(), 5001);
        assert_eq!(
            queue(4096, Some(4096)).describe(),
            "listen backlog 4096, so up to 4097 wait"
        );
        assert_eq!(
            queue(5000, Some(4096)).describe(),
            "listen backlog 5000, lowered to net.core.somaxconn = 4096, so up to 4097 wait"
        );
        assert_eq!(
            queue(5, None).describe(),
            "listen backlog 5, so up to 6 wait"
        );
    }

    #[test]
    fn a_wait_for_a_state_returns_the_first_reading_that_is_the_one_expected() {
        let mut readings = 0;
        let got = poll_until(
            Instant::now() + FAR,
            || {
                readings += 1;
                Ok::<_, ()>(readings)
            },
            |&reading| reading == 3,
        );
        assert_eq!(got, Ok(3));
        assert_eq!(readings, 3);
    }

    #[test]
    fn a_wait_for_a_state_that_never_comes_ends_at_the_deadline_with_the_last_reading() {
        let deadline = Instant::now() + STATE_POLL * 5;
        let mut readings = 0;
        let got = poll_until(
            deadline,
            || {
                readings += 1;
                Ok::<_, ()>(readings)
            },
            |_| false,
        );
        assert!(Instant::now() >= deadline, "it gave up before the deadline");
        assert_eq!(got, Ok(readings));
        assert!(readings > 1, "it read once and gave up");
    }

    #[test]
    fn a_wait_for_a_state_stops_at_the_first_failed_reading() {
        let mut readings = 0;
        let got = poll_until(
            Instant::now() + FAR,
            || {
                readings += 1;
                Err::<u32, _>("cannot read /proc/net/tcp")
            },
            |_| false,
        );
        assert_eq!(got, Err("cannot read /proc/net/tcp"));
        assert_eq!(readings, 1);
    }
}
