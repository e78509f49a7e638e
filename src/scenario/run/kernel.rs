//! The kernel's verbs: what this machine is set to do, read when the lesson runs.
//!
//! A lesson never quotes a timing or a limit that a sysctl decides; it reads the sysctl and
//! prints it here, with what it decides, so the transcript is true on every machine.

use super::Runner;
use crate::kernel::{INITIAL_RTO, SynRetries, sysctl};
use crate::scenario::report::{Entry, EntryKind, StepError};
use crate::scenario::syntax::KernelCall;

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
        "with 0, a handshake that finds the accept queue full is ignored and the client retries; with 1, it is answered with RST",
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
