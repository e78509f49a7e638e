//! The server's verbs: checks on what it logged and received, and its life (stop, restart,
//! resume accepting, a second bind on its address).
//!
//! `server: log PATTERN` looks for a line that matches among those no step has matched yet,
//! in any order, waiting for more lines until the step's timeout: two clients served on two
//! threads log in an order the lesson does not fix. `server: log-next PATTERN` is the ordered
//! form: the first unmatched line logged after the one the previous `log` or `log-next` step
//! matched must match, so "the server logs alice's message before bob's" can fail.

use super::{Runner, process};
use crate::endpoint::AddressReuse;
use crate::engine::RunningServer;
use crate::engine::ThreadRole;
use crate::error::Error;
use crate::scenario::report::{Entry, EntryKind, StepError, matches, thousands};
use crate::scenario::syntax::{
    AcceptMode, BindOutcome, ServerCall, ServerKind, Setting, ThreadCount,
};
use crate::server::{Server, ServerConfig};

/// `1 accept loop, 2 workers (a worker serves one connection at a time)`: how many
/// threads do what.
fn describe_roles(roles: &[ThreadRole]) -> String {
    let mut counts: Vec<(ThreadRole, usize)> = Vec::new();
    for role in roles {
        match counts.iter_mut().find(|(seen, _)| seen == role) {
            Some((_, count)) => *count += 1,
            None => counts.push((*role, 1)),
        }
    }
    counts.sort();
    let mut what = Vec::new();
    let mut why = Vec::new();
    for (role, count) in counts {
        let plural = if count == 1 { "" } else { "s" };
        let count = thousands(count);
        match role {
            ThreadRole::OneAtATime => {
                what.push(format!("{count} thread{plural}"));
                why.push("it accepts a client and serves it until it leaves".to_string());
            }
            ThreadRole::AcceptLoop => what.push(format!("{count} accept loop{plural}")),
            ThreadRole::Worker => {
                what.push(format!("{count} worker{plural}"));
                why.push(format!(
                    "a worker serves one connection at a time, on a stack of {} KiB it reserved",
                    crate::engine::pool::WORKER_STACK_SIZE / 1024
                ));
            }
            ThreadRole::EventLoop => {
                what.push(format!("{count} event loop{plural}"));
                why.push("an event loop serves every connection it accepted".to_string());
            }
        }
    }
    match (what.is_empty(), why.is_empty()) {
        (true, _) => "none".into(),
        (false, true) => what.join(", "),
        (false, false) => format!("{} ({})", what.join(", "), why.join("; ")),
    }
}

/// `1 time`, `2,085 times`.
fn times(count: usize) -> String {
    if count == 1 {
        "1 time".into()
    } else {
        format!("{} times", thousands(count))
    }
}

fn line(text: String) -> Entry {
    Entry::new(EntryKind::Server, format!("      {text}"))
}

/// How the lesson's bind attempts are labelled, so two attempts that differ only in the
/// option are told apart.
fn reuse_label(address_reuse: AddressReuse) -> &'static str {
    match address_reuse {
        AddressReuse::Allowed => "with SO_REUSEADDR",
        AddressReuse::Refused => "without SO_REUSEADDR, as Python's default",
    }
}

impl Runner<'_> {
    pub(super) fn server_call(&mut self, call: &ServerCall) -> Result<(), StepError> {
        match call {
            ServerCall::Log(pattern) => self.expect_log(pattern, Order::Any),
            ServerCall::LogNext(pattern) => self.expect_log(pattern, Order::Next),
            ServerCall::ReceivedAll { client } => self.expect_received_all(client),
            ServerCall::Stop => {
                let server = self.server.take().ok_or("the server is not running")?;
                self.stop_server(server)
            }
            ServerCall::ResumeAccept => {
                let started = self.timeline.now();
                self.server
                    .as_ref()
                    .ok_or("the server is not running")?
                    .handle
                    .resume_accept();
                self.accepting = true;
                self.record_at(
                    started,
                    line("server starts calling accept: the queued connections are taken, oldest first".into()),
                );
                Ok(())
            }
            ServerCall::BindAgain {
                address_reuse,
                expect,
            } => {
                let config = ServerConfig {
                    address_reuse: *address_reuse,
                    ..self.config.clone()
                };
                let result = Server::bind(config).map(drop);
                let what = format!(
                    "a second server on {} ({})",
                    self.endpoint,
                    reuse_label(*address_reuse)
                );
                self.expect_bind(&what, result, expect)
            }
            ServerCall::Threads(count) => self.expect_threads(*count),
            ServerCall::Memory { below } => self.show_memory(*below),
            ServerCall::Replace(settings) => self.replace(settings),
            ServerCall::Restart {
                address_reuse,
                expect,
            } => {
                if let Some(server) = self.server.take() {
                    self.stop_server(server)?;
                }
                let what = format!(
                    "the server again on {} ({})",
                    self.endpoint,
                    reuse_label(*address_reuse)
                );
                let reuse = self.config.address_reuse;
                self.config.address_reuse = *address_reuse;
                let result = self.bind_and_spawn(AcceptMode::On);
                self.config.address_reuse = reuse;
                self.expect_bind(&what, result, expect)
            }
        }
    }

    /// `server: replace engine=epoll`: the same address, the same clients, another server.
    fn replace(&mut self, settings: &[Setting]) -> Result<(), StepError> {
        if let Some(crowd) = &self.crowd {
            return Err(StepError::Misuse(format!(
                "the crowd still holds {} connections: add `crowd: close` before replacing the server",
                crate::scenario::report::thousands(crowd.size)
            )));
        }
        let server = self.server.take().ok_or("the server is not running")?;
        self.stop_server(server)?;
        for setting in settings {
            setting.apply_to(&mut self.config);
            self.replaced.push(setting.key());
        }
        let changed: Vec<String> = settings.iter().map(ToString::to_string).collect();
        self.config.address_reuse = AddressReuse::Allowed;
        self.bind_and_spawn(AcceptMode::On)
            .map_err(|e| format!("cannot start the new server on {}: {e}", self.endpoint))?;
        self.accepting = true;
        let description = self.describe_server();
        self.record(line(format!(
            "server starts again on {} with {}: {description}",
            self.endpoint,
            changed.join(" ")
        )));
        Ok(())
    }

    /// `server: threads = N`: counts the server's threads as the kernel lists them, waiting
    /// for the count (a thread starts a moment after the connection that needs it).
    fn expect_threads(&mut self, expected: ThreadCount) -> Result<(), StepError> {
        if self.kind().is_datagram() {
            return Err(StepError::Misuse(
                "a datagram server has no engine: it is one thread, reading datagrams".into(),
            ));
        }
        // Counted here from the machine, not asked of the engine: the lesson checks the
        // engine's claim of one event loop per core (up to its cap).
        let loops = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(crate::engine::event_loop::MAX_LOOPS);
        let wanted = match expected {
            ThreadCount::Exactly(count) => count,
            ThreadCount::Cores => loops,
        };
        let server = self.server.as_ref().ok_or("the server is not running")?;
        let (found, switches) = super::kernel::poll_until(
            self.step_deadline(),
            || {
                // The engine's roll names the threads; the kernel's list says they exist.
                let mut found = Vec::new();
                let mut of_threads = Vec::new();
                for thread in server.handle.threads() {
                    let of_thread = process::switches_of(thread.tid).map_err(|e| {
                        StepError::from(format!("cannot read /proc/self/task/{}: {e}", thread.tid))
                    })?;
                    if let Some(of_thread) = of_thread {
                        of_threads.push(of_thread);
                        found.push(thread.role);
                    }
                }
                Ok::<_, StepError>((found, of_threads.into_iter().sum::<process::Switches>()))
            },
            |(found, _)| found.len() == wanted,
        )?;
        let cores = match expected {
            ThreadCount::Cores => format!(
                "; `cores` is {loops} here: the epoll engine runs one event loop per core (std::thread::available_parallelism)"
            ),
            ThreadCount::Exactly(_) => String::new(),
        };
        self.record(Entry::new(
            EntryKind::Kernel,
            format!(
                "kernel   the server's threads, in /proc/self/task: {}: {}; switched out {} since they started ({} waiting, voluntary_ctxt_switches; {} preempted, nonvoluntary_ctxt_switches){cores}",
                thousands(found.len()),
                describe_roles(&found),
                times((switches.voluntary + switches.involuntary) as usize),
                thousands(switches.voluntary as usize),
                thousands(switches.involuntary as usize),
            ),
        ));
        if found.len() == wanted {
            Ok(())
        } else {
            Err(StepError::Mismatch {
                call: "the server's threads".into(),
                expected: match expected {
                    ThreadCount::Exactly(count) => count.to_string(),
                    ThreadCount::Cores => format!("cores ({loops})"),
                },
                got: found.len().to_string(),
            })
        }
    }

    /// `server: memory < 64 MiB`: this process's resident memory, and how much it grew since
    /// the server started.
    fn show_memory(&mut self, below: Option<u64>) -> Result<(), StepError> {
        let now = process::resident_memory()
            .map_err(|e| format!("cannot read Rss in /proc/self/smaps_rollup: {e}"))?;
        let start = self
            .memory_at_start
            .ok_or("the server's starting memory was not read")?;
        let growth = now.saturating_sub(start);
        let change = if now >= start {
            format!("{} more", process::show_size(growth))
        } else {
            format!("{} less", process::show_size(start - now))
        };
        let bound = below.map_or(String::new(), |below| {
            format!(
                " (the lesson expects less than {} more)",
                crate::scenario::print::memory_bound(below)
            )
        });
        self.record(Entry::new(
            EntryKind::Kernel,
            format!(
                "kernel   this process's resident memory (Rss in /proc/self/smaps_rollup; the process holds the server and the lesson's clients): {}, {change} than when the server started{bound}",
                process::show_size(now)
            ),
        ));
        match below {
            Some(below) if growth >= below => Err(StepError::Mismatch {
                call: "the growth of resident memory".into(),
                expected: format!("less than {}", crate::scenario::print::memory_bound(below)),
                got: process::show_size(growth),
            }),
            _ => Ok(()),
        }
    }

    /// Stops `server`, and shows it stopping; the connections it closes meanwhile are shown
    /// as its own doing, whatever their recvs returned.
    fn stop_server(&mut self, server: RunningServer) -> Result<(), StepError> {
        let started = self.timeline.now();
        server
            .stop()
            .map_err(|e| format!("the server failed: {e}"))?;
        self.stops.push((started, self.timeline.now()));
        let what = match self.kind() {
            ServerKind::Udp | ServerKind::UnixDgram => {
                "server stops: it closes its one socket (a datagram server has no connections)"
            }
            _ => "server stops: it closes the listening socket and every connection",
        };
        self.record_at(started, line(what.into()));
        Ok(())
    }

    fn expect_bind(
        &mut self,
        what: &str,
        result: Result<(), Error>,
        expect: &BindOutcome,
    ) -> Result<(), StepError> {
        match (&result, expect) {
            (Ok(()), BindOutcome::Bound) => {
                self.record(line(format!("bind {what}: bound")));
                Ok(())
            }
            (Err(error), BindOutcome::Error(pattern)) => {
                let message = error.to_string();
                self.record(line(format!("bind {what}: {message}")));
                if matches(&self.expand(pattern), &message) {
                    Ok(())
                } else {
                    Err(StepError::Mismatch {
                        call: "bind".into(),
                        expected: format!("the error\n  {pattern}"),
                        got: format!("the error\n  {message}"),
                    })
                }
            }
            (Ok(()), BindOutcome::Error(pattern)) => {
                self.record(line(format!("bind {what}: bound")));
                Err(StepError::Mismatch {
                    call: "bind".into(),
                    expected: format!("to fail with\n  {pattern}"),
                    got: "bound".into(),
                })
            }
            (Err(error), BindOutcome::Bound) => Err(StepError::Mismatch {
                call: "bind".into(),
                expected: "to succeed".into(),
                got: error.to_string(),
            }),
        }
    }

    /// `[alice]` in a pattern stands for alice's address in brackets, as the server prints it.
    fn expand(&self, pattern: &str) -> String {
        let mut expanded = pattern.to_string();
        for (name, client) in &self.clients {
            if let Some(address) = &client.address {
                // Through the network's proxy, the server knows the client by the proxy's
                // address for it.
                let seen = self
                    .aliases
                    .iter()
                    .find(|(_, client)| *client == address)
                    .map_or(address, |(upstream, _)| upstream);
                expanded = expanded.replace(&format!("[{name}]"), &format!("[{seen}]"));
            }
        }
        expanded
    }

    fn expect_log(&mut self, pattern: &str, order: Order) -> Result<(), StepError> {
        let expanded = self.expand(pattern);
        let deadline = self.step_deadline();
        loop {
            let cursor = self.log.cursor;
            let mut candidates = self.log.lines.iter_mut().filter(|line| {
                !line.matched && (order == Order::Any || cursor.is_none_or(|c| line.moment > c))
            });
            let found = match order {
                Order::Any => candidates.find(|line| matches(&expanded, &line.text)),
                Order::Next => match candidates.next() {
                    Some(line) if matches(&expanded, &line.text) => Some(line),
                    Some(line) => {
                        return Err(StepError::WrongNextLine {
                            pattern: expanded,
                            next: line.text.clone(),
                        });
                    }
                    None => None,
                },
            };
            if let Some(found) = found {
                found.matched = true;
                self.log.cursor = Some(found.moment);
                // The line itself, as the server printed it: what the lesson says it logs. A
                // problem is already shown where it happened, in the server's own words.
                if !found.problem {
                    let text = format!("{} log: {}", found.server, found.text);
                    self.record(line(text));
                }
                return Ok(());
            }
            let events = self.timeline.wait_for_events(deadline);
            if events.is_empty() {
                let earlier = self
                    .log
                    .lines
                    .iter()
                    .find(|line| !line.matched && matches(&expanded, &line.text));
                let previous = self
                    .log
                    .lines
                    .iter()
                    .find(|line| Some(line.moment) == self.log.cursor);
                if order == Order::Next
                    && let (Some(earlier), Some(previous)) = (earlier, previous)
                {
                    return Err(StepError::WrongOrder {
                        pattern: expanded,
                        line: earlier.text.clone(),
                        previous: previous.text.clone(),
                    });
                }
                return Err(StepError::NoLogLine {
                    pattern: expanded,
                    waited: self.timeout(),
                    unmatched: self
                        .log
                        .lines
                        .iter()
                        .filter(|line| !line.matched)
                        .map(|line| line.text.clone())
                        .collect(),
                });
            }
            self.show_events(events);
        }
    }

    fn expect_received_all(&mut self, name: &str) -> Result<(), StepError> {
        let sent = self
            .clients
            .get(name)
            .map(|client| client.sent.clone())
            .ok_or_else(|| StepError::Misuse(format!("no client named {name}")))?;
        let deadline = self.step_deadline();
        loop {
            let recvs = self.recvs_of(name);
            let received: Vec<u8> = recvs.concat();
            if !sent.starts_with(&received) {
                return Err(StepError::Bytes {
                    what: "the bytes the server received".into(),
                    expected: sent[..received.len().min(sent.len())].to_vec(),
                    got: received,
                });
            }
            if let Some(too_big) = recvs.iter().find(|data| data.len() > self.config.recv_size) {
                return Err(format!(
                    "a recv({}) returned {} bytes",
                    self.config.recv_size,
                    too_big.len()
                )
                .into());
            }
            if received.len() == sent.len() {
                self.record(line(format!(
                    "server received all {} bytes from {name}, in order, in {} recvs",
                    sent.len(),
                    recvs.len()
                )));
                return Ok(());
            }
            let events = self.timeline.wait_for_events(deadline);
            if events.is_empty() {
                return Err(format!(
                    "{name} sent {} bytes, but within {:?} the server's recvs returned only {}",
                    sent.len(),
                    self.timeout(),
                    received.len()
                )
                .into());
            }
            self.show_events(events);
        }
    }
}

/// Whether a `log` step may match any unmatched line or only the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Any,
    Next,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_of_times_is_singular_only_for_one() {
        assert_eq!(times(0), "0 times");
        assert_eq!(times(1), "1 time");
        assert_eq!(times(2), "2 times");
        assert_eq!(times(2085), "2,085 times");
    }

    #[test]
    fn the_roll_counts_each_role_once_in_a_fixed_order() {
        assert_eq!(describe_roles(&[]), "none");
        assert_eq!(
            describe_roles(&[ThreadRole::AcceptLoop]),
            "1 accept loop",
            "an accept loop needs no why: it only accepts"
        );
        assert_eq!(
            describe_roles(&[
                ThreadRole::Worker,
                ThreadRole::AcceptLoop,
                ThreadRole::Worker,
            ]),
            "1 accept loop, 2 workers (a worker serves one connection at a time, on a stack of 256 KiB it reserved)"
        );
        assert_eq!(
            describe_roles(&[ThreadRole::EventLoop, ThreadRole::OneAtATime]),
            "1 thread, 1 event loop (it accepts a client and serves it until it leaves; an event loop serves every connection it accepted)"
        );
    }
}
