//! The wire's view in the transcript, and the `wire:` steps that check it.
//!
//! Segments come from a packet socket ([`crate::wire::Capture`]) with the kernel's time of
//! crossing; the runner places each among the socket calls by that time. A line shows who
//! sent it to whom, its flags, its sequence and acknowledgment numbers relative to each
//! side's first (as Wireshark shows them), the window (scaled, once the handshake has said by
//! how much) and the payload's length:
//!
//! ```text
//!    wire   alice → server   SYN       seq=0 win=65495
//!    wire   server → alice   SYN-ACK   seq=0 ack=1 win=65483
//!    wire   alice → server   ACK       seq=1 ack=1 win=65536
//! ```
//!
//! `wire: alice → server SYN` looks for a segment from alice to the server with exactly those
//! flags, after the one the previous `wire:` step matched, waiting for it up to the step's
//! timeout; `wire: no segment for 300ms` waits that long and fails if anything crosses.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Caught, ClientSocket, NOTICEABLE_GAP, Runner, ServerEvent};
use crate::endpoint::Address;
use crate::scenario::report::{Entry, EntryKind, Fact, StepError, Toward, show_bytes};
use crate::scenario::syntax::{SegmentKind, WireCall};
use crate::scenario::timeline::Moment;
use crate::wire::{Header, Segment};

impl Runner<'_> {
    /// Takes what the capture has caught into the pending list. A capture that fails is
    /// reported once and given up: the lesson goes on without the wire.
    pub(super) fn pull_wire(&mut self) {
        let Some(capture) = self.wire.capture.as_mut() else {
            return;
        };
        let dropped = capture.dropped();
        match capture.drain() {
            Ok(segments) => {
                self.wire.pending.extend(segments);
                self.wire.pending.sort_by_key(|segment| segment.stamped);
                if dropped > 0 {
                    self.emit(
                        Entry::new(
                            EntryKind::Note,
                            format!(
                                "(the capture missed {dropped} frame{} here: its buffer was full, so the wire's view is incomplete)",
                                if dropped == 1 { "" } else { "s" }
                            ),
                        )
                        .with_fact(Fact::WireIncomplete),
                    );
                }
            }
            Err(error) => {
                self.wire.capture = None;
                self.emit(
                    Entry::new(
                        EntryKind::Note,
                        format!("(the capture failed and stops here: {error})"),
                    )
                    .with_fact(Fact::WireIncomplete),
                );
            }
        }
    }

    /// Shows server events that arrived while a step waited, with the segments before them.
    pub(super) fn show_events(&mut self, events: Vec<(Moment, ServerEvent)>) {
        let until = events
            .last()
            .map_or_else(std::time::SystemTime::now, |(moment, _)| moment.wall);
        self.show_until(events, until);
    }

    /// Who sent or received on this address: `server`, a client's name, or the address.
    pub(super) fn end_name(&self, address: SocketAddr) -> String {
        if self.server_address() == Some(address) {
            return "server".into();
        }
        if let Some(second) = &self.second
            && second.running.addr == Address::Inet(address)
        {
            return second.name.clone();
        }
        let pending_name = self.clients.iter().find_map(|(name, client)| {
            let own = match (&client.address, &client.socket) {
                (Some(Address::Inet(own)), _) => Some(*own),
                (_, Some(ClientSocket::Connecting(pending))) => pending.local_addr(),
                _ => None,
            };
            (own == Some(address)).then(|| name.clone())
        });
        pending_name.unwrap_or_else(|| address.to_string())
    }

    pub(super) fn server_address(&self) -> Option<SocketAddr> {
        match &self.server {
            Some(server) => match &server.addr {
                Address::Inet(address) => Some(*address),
                Address::Unix(_) => None,
            },
            None => self.endpoint.resolve().ok()?.first().copied(),
        }
    }

    pub(super) fn address_of(&self, name: &str) -> Result<SocketAddr, StepError> {
        if name == "server" {
            return self.server_address().ok_or_else(|| {
                StepError::Misuse(
                    "the server has no IP address: the wire shows TCP and UDP only".into(),
                )
            });
        }
        let client = self.clients.get(name).ok_or_else(|| {
            StepError::Misuse(format!(
                "there is no client {name}: add `{name}: connect` before this step"
            ))
        })?;
        match (&client.address, &client.socket) {
            (Some(Address::Inet(address)), _) => Ok(*address),
            (_, Some(ClientSocket::Connecting(pending))) => pending
                .local_addr()
                .ok_or_else(|| StepError::Misuse(format!("{name}'s connect has no address yet"))),
            _ => Err(StepError::Misuse(format!(
                "{name} has no IP address: the wire shows TCP and UDP only"
            ))),
        }
    }

    /// The client at one end of `segment` and the way it went, if its other end is one of
    /// the lesson's servers.
    fn client_and_way(&self, segment: &Segment) -> Option<(String, Toward)> {
        let is_server = |address: SocketAddr| {
            self.server_address() == Some(address)
                || self
                    .second
                    .as_ref()
                    .is_some_and(|second| second.running.addr == Address::Inet(address))
        };
        let named = |address: SocketAddr| {
            let name = self.end_name(address);
            self.clients.contains_key(&name).then_some(name)
        };
        if is_server(segment.to) {
            named(segment.from).map(|client| (client, Toward::Server))
        } else if is_server(segment.from) {
            named(segment.to).map(|client| (client, Toward::Client))
        } else {
            None
        }
    }

    pub(super) fn show_segment(&mut self, segment: Segment) {
        let from = self.end_name(segment.from);
        let to = self.end_name(segment.to);
        let between = self.client_and_way(&segment);
        let direction = (segment.from, segment.to);
        let reverse = (segment.to, segment.from);
        // A wait between segments is the kernel's doing (a retransmission timer, a delayed
        // ACK): worth showing when a person would notice it.
        let gap = self
            .wire
            .shown
            .last()
            .map(|last| segment.at.saturating_duration_since(last.segment.at))
            .filter(|gap| *gap >= NOTICEABLE_GAP)
            .map_or(String::new(), |gap| format!("   (+{} ms)", gap.as_millis()));
        // The bytes this segment carries that the wire had not carried before: all of them,
        // unless it is a retransmission.
        let mut new_data = segment.payload.len();
        let mut closing = false;
        let (text, window) = match segment.header {
            Header::Tcp {
                flags,
                seq,
                ack,
                window,
                window_scale,
            } => {
                if flags.syn {
                    self.wire.first_seq.insert(direction, seq);
                    if let Some(scale) = window_scale {
                        self.wire.scale.insert(direction, scale);
                    }
                }
                let first = *self.wire.first_seq.entry(direction).or_insert(seq);
                let mut fields = format!("seq={}", seq.wrapping_sub(first));
                if flags.ack {
                    let ack = match self.wire.first_seq.get(&reverse) {
                        Some(first) => ack.wrapping_sub(*first),
                        None => ack,
                    };
                    fields.push_str(&format!(" ack={ack}"));
                }
                // A SYN's own window is never scaled (RFC 7323 section 2.2).
                let scale = if flags.syn {
                    0
                } else {
                    self.wire.scale.get(&direction).copied().unwrap_or(0)
                };
                let window = u64::from(window) << scale;
                fields.push_str(&format!(" win={window}"));
                // Sequence space this segment covers: its payload, and one each for SYN and
                // FIN. Covering nothing new means it was sent before.
                let start = seq.wrapping_sub(first);
                let covers =
                    segment.payload.len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
                let end = start.wrapping_add(covers);
                let sent = self.wire.sent_up_to.get(&direction).copied();
                let retransmitted = covers > 0 && sent.is_some_and(|sent| end <= sent);
                let again = if retransmitted {
                    new_data = 0;
                    "   retransmission: sent before, not acknowledged in time"
                } else if covers == 0
                    && !flags.rst
                    && sent.is_some_and(|sent| start.wrapping_add(1) == sent)
                {
                    "   probe: one below the next byte, to ask the receiver for its window"
                } else {
                    ""
                };
                closing = flags.fin || flags.rst;
                if covers > 0 {
                    let highest = sent.map_or(end, |sent| sent.max(end));
                    self.wire.sent_up_to.insert(direction, highest);
                }
                if !segment.payload.is_empty() {
                    fields.push_str(&format!(
                        " len={} {}",
                        segment.payload.len(),
                        show_bytes(&segment.payload).0
                    ));
                }
                (
                    format!(
                        "   wire   {from} → {to}   {:<9} {fields}{again}{gap}",
                        flags.to_string()
                    ),
                    Some(window),
                )
            }
            Header::Udp => (
                format!(
                    "   wire   {from} → {to}   UDP       len={} {}{gap}",
                    segment.payload.len(),
                    show_bytes(&segment.payload).0
                ),
                None,
            ),
        };
        let mut entry = Entry::new(EntryKind::Wire, text).with_bytes(&segment.payload);
        if let Some((client, toward)) = between {
            entry = entry.with_fact(Fact::Wire {
                client,
                toward,
                data: new_data,
                closing,
            });
        }
        self.emit(entry);
        self.wire.shown.push(Caught {
            segment,
            window,
            matched: false,
        });
    }

    pub(super) fn wire_call(&mut self, call: &WireCall) -> Result<(), StepError> {
        if self.wire.capture.is_none() {
            return Err(StepError::Misuse(
                "this step looks at the wire: run the lesson with `socket-lab run --wire`, which captures on a private loopback".into(),
            ));
        }
        match call {
            WireCall::Segment {
                from,
                to,
                kind,
                len,
                window,
            } => self.expect_segment(
                from,
                to,
                SegmentSpec {
                    kind: *kind,
                    len: *len,
                    window: *window,
                },
            ),
            WireCall::Silence(wait) => {
                self.catch_up();
                let started = Instant::now();
                let deadline = started + *wait;
                while Instant::now() < deadline {
                    let caught = match self.wire.capture.as_mut() {
                        Some(capture) => capture
                            .wait(deadline)
                            .map_err(|e| format!("the capture failed: {e}"))?,
                        None => break,
                    };
                    if let Some(first) = caught.first() {
                        let after = first.at.saturating_duration_since(started).as_millis();
                        self.wire.pending.extend(caught);
                        self.catch_up();
                        return Err(format!(
                            "expected no segment for {wait:?}, but one crossed after {after} ms (shown above)"
                        )
                        .into());
                    }
                }
                self.record(Entry::new(
                    EntryKind::Wire,
                    format!("   wire   (nothing crossed for {} ms)", wait.as_millis()),
                ));
                Ok(())
            }
        }
    }

    fn expect_segment(&mut self, from: &str, to: &str, spec: SegmentSpec) -> Result<(), StepError> {
        let SegmentSpec { kind, len, window } = spec;
        let source = self.address_of(from)?;
        let destination = self.address_of(to)?;
        let deadline = Instant::now() + self.timeout();
        loop {
            self.catch_up();
            let cursor = self.wire.cursor;
            let found = self.wire.shown.iter_mut().find(|caught| {
                !caught.matched
                    && cursor.is_none_or(|cursor| caught.segment.stamped > cursor)
                    && caught.segment.from == source
                    && caught.segment.to == destination
                    && kind_of(&caught.segment) == kind
                    && len.is_none_or(|len| caught.segment.payload.len() == len)
                    && window.is_none_or(|window| caught.window == Some(window))
            });
            if let Some(caught) = found {
                caught.matched = true;
                self.wire.cursor = Some(caught.segment.stamped);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .wire
                    .shown
                    .iter()
                    .filter(|caught| {
                        caught.segment.from == source && caught.segment.to == destination
                    })
                    .map(|caught| {
                        format!(
                            "  {} len={}{}{}",
                            describe_kind(kind_of(&caught.segment)),
                            caught.segment.payload.len(),
                            caught
                                .window
                                .map_or(String::new(), |window| format!(" win={window}")),
                            if caught.matched {
                                " (matched by an earlier step)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                return Err(format!(
                    "expected a {} segment from {from} to {to}{}{} within {:?}; from {from} to {to} the wire carried:\n{}",
                    describe_kind(kind),
                    len.map_or(String::new(), |len| format!(" with {len} bytes")),
                    window.map_or(String::new(), |window| format!(" advertising a window of {window}")),
                    self.timeout(),
                    if seen.is_empty() {
                        "  (nothing)".to_string()
                    } else {
                        seen.join("\n")
                    }
                )
                .into());
            }
            let caught = match self.wire.capture.as_mut() {
                Some(capture) => capture
                    .wait(deadline)
                    .map_err(|e| format!("the capture failed: {e}"))?,
                None => Vec::new(),
            };
            self.wire.pending.extend(caught);
        }
    }
}

/// What a `wire:` step asks of a segment besides its ends.
struct SegmentSpec {
    kind: SegmentKind,
    len: Option<usize>,
    window: Option<u64>,
}

fn kind_of(segment: &Segment) -> SegmentKind {
    match segment.header {
        Header::Tcp { flags, .. } => SegmentKind::Tcp(flags),
        Header::Udp => SegmentKind::Udp,
    }
}

fn describe_kind(kind: SegmentKind) -> String {
    match kind {
        SegmentKind::Tcp(flags) => flags.to_string(),
        SegmentKind::Udp => "UDP".into(),
    }
}
