//! The server's verbs: checks on what it logged and received, and its life (stop, restart,
//! resume accepting, a second bind on its address).
//!
//! `server: log PATTERN` looks for a line that matches among those no step has matched yet,
//! in any order, waiting for more lines until the step's timeout: two clients served on two
//! threads log in an order the lesson does not fix. `server: log-next PATTERN` is the ordered
//! form: the first unmatched line logged after the one the previous `log` or `log-next` step
//! matched must match, so "the server logs alice's message before bob's" can fail.

use std::time::Instant;

use super::Runner;
use crate::endpoint::AddressReuse;
use crate::engine::RunningServer;
use crate::error::Error;
use crate::scenario::report::{Entry, EntryKind, StepError, matches};
use crate::scenario::syntax::{AcceptMode, BindOutcome, ServerCall};
use crate::server::{Server, ServerConfig};

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

    /// Stops `server`, and shows it stopping; the connections it closes meanwhile are shown
    /// as its own doing, whatever their recvs returned.
    fn stop_server(&mut self, server: RunningServer) -> Result<(), StepError> {
        let started = self.timeline.now();
        server
            .stop()
            .map_err(|e| format!("the server failed: {e}"))?;
        self.stops.push((started, self.timeline.now()));
        self.record_at(
            started,
            line("server stops: it closes the listening socket and every connection".into()),
        );
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
        let deadline = Instant::now() + self.timeout();
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
                // The line itself, as the server printed it: what the lesson says it logs.
                let text = format!("server log: {}", found.text);
                self.record(line(text));
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
        let deadline = Instant::now() + self.timeout();
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
