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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Caught, ClientSocket, NOTICEABLE_GAP, Runner, ServerEvent};
use crate::endpoint::Address;
use crate::scenario::report::{Entry, EntryKind, Fact, StepError, Toward, show_bytes};
use crate::scenario::syntax::{SegmentKind, WireCall};
use crate::scenario::timeline::Moment;
use crate::wire::{Flags, Header, Segment};

/// What the transcript says when the capture's buffer overflowed and the kernel dropped
/// `dropped` frames since the last time: the wire's view is incomplete from here, so the
/// checks that compare it with the socket calls stop.
fn dropped_note(dropped: u64) -> Option<Entry> {
    (dropped > 0).then(|| {
        Entry::new(
            EntryKind::Note,
            format!(
                "(the capture missed {dropped} frame{} here: its buffer was full, so the wire's view is incomplete)",
                if dropped == 1 { "" } else { "s" }
            ),
        )
        .with_fact(Fact::WireIncomplete)
    })
}

/// A wait between segments is the kernel's doing (a retransmission timer, a delayed ACK):
/// shown after a segment's line when a person would notice it.
fn gap_note(previous: Option<Instant>, at: Instant) -> String {
    previous
        .map(|previous| at.saturating_duration_since(previous))
        .filter(|gap| *gap >= NOTICEABLE_GAP)
        .map_or(String::new(), |gap| format!("   (+{} ms)", gap.as_millis()))
}

/// One direction of a TCP connection: (from, to).
type Direction = (SocketAddr, SocketAddr);

/// What the wire's view remembers of each direction of each TCP connection: its first
/// sequence number and window scale, to show numbers and windows as Wireshark does, and how
/// far its sequence numbers have reached, to tell new data from data sent again.
#[derive(Default)]
pub(super) struct Sequences {
    first_seq: HashMap<Direction, u32>,
    scale: HashMap<Direction, u8>,
    /// The end of what each direction has sent so far, relative to its first sequence
    /// number, counting SYN and FIN as one each.
    sent_up_to: HashMap<Direction, u32>,
    /// The window each direction last advertised, scaled.
    window: HashMap<Direction, u64>,
}

/// A TCP segment as the transcript shows it.
#[derive(Debug, PartialEq)]
struct TcpReading {
    flags: Flags,
    /// `seq=1 ack=1 win=65536 len=5 "hello"`, relative and scaled.
    fields: String,
    again: Again,
    /// The payload's bytes the wire had not carried before: none for a retransmission.
    new_data: usize,
    /// The window it advertises, scaled.
    window: u64,
}

/// Why a segment carries nothing new.
#[derive(Debug, PartialEq)]
enum Again {
    /// New sequence space, or a bare ACK.
    No,
    /// Sequence space sent before, sent again because it was not acknowledged in time.
    Retransmission,
    /// An empty segment one below the next byte, to a receiver whose window was 0: the
    /// sender asks for its window now (tcp(7), RFC 9293 section 3.8.6.1).
    WindowProbe,
    /// The same shape to a receiver with room: a keepalive (`SO_KEEPALIVE`, tcp(7)), which
    /// the peer answers with an ACK if it is still there.
    Keepalive,
}

impl Again {
    fn label(&self) -> &'static str {
        match self {
            Again::No => "",
            Again::Retransmission => "   retransmission: sent before, not acknowledged in time",
            Again::WindowProbe => {
                "   window probe: one below the next byte, to ask a receiver whose window was 0 for its window"
            }
            Again::Keepalive => {
                "   keepalive: one below the next byte, to ask whether the peer is still there"
            }
        }
    }
}

impl Sequences {
    /// Reads one segment, in the order they crossed: `None` if it is not TCP.
    fn read(&mut self, segment: &Segment) -> Option<TcpReading> {
        let Header::Tcp {
            flags,
            seq,
            ack,
            window,
            window_scale,
        } = segment.header
        else {
            return None;
        };
        let direction = (segment.from, segment.to);
        let reverse = (segment.to, segment.from);
        if flags.syn {
            self.first_seq.insert(direction, seq);
            if let Some(scale) = window_scale {
                self.scale.insert(direction, scale);
            }
        }
        let first = *self.first_seq.entry(direction).or_insert(seq);
        let mut fields = format!("seq={}", seq.wrapping_sub(first));
        if flags.ack {
            let ack = match self.first_seq.get(&reverse) {
                Some(first) => ack.wrapping_sub(*first),
                None => ack,
            };
            fields.push_str(&format!(" ack={ack}"));
        }
        // A SYN's own window is never scaled (RFC 7323 section 2.2).
        let scale = if flags.syn {
            0
        } else {
            self.scale.get(&direction).copied().unwrap_or(0)
        };
        let window = u64::from(window) << scale;
        fields.push_str(&format!(" win={window}"));
        self.window.insert(direction, window);
        // Sequence space this segment covers: its payload, and one each for SYN and FIN.
        // Covering nothing new means it was sent before.
        let start = seq.wrapping_sub(first);
        let covers = segment.payload.len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
        let end = start.wrapping_add(covers);
        let sent = self.sent_up_to.get(&direction).copied();
        let again = if covers > 0 && sent.is_some_and(|sent| end <= sent) {
            Again::Retransmission
        } else if covers == 0
            && !flags.rst
            && sent.is_some_and(|sent| start.wrapping_add(1) == sent)
        {
            if self.window.get(&reverse) == Some(&0) {
                Again::WindowProbe
            } else {
                Again::Keepalive
            }
        } else {
            Again::No
        };
        if covers > 0 {
            let highest = sent.map_or(end, |sent| sent.max(end));
            self.sent_up_to.insert(direction, highest);
        }
        if !segment.payload.is_empty() {
            fields.push_str(&format!(
                " len={} {}",
                segment.payload.len(),
                show_bytes(&segment.payload).0
            ));
        }
        Some(TcpReading {
            flags,
            fields,
            new_data: if again == Again::Retransmission {
                0
            } else {
                segment.payload.len()
            },
            again,
            window,
        })
    }
}

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
                if let Some(note) = dropped_note(dropped) {
                    self.emit(note);
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
        let gap = gap_note(
            self.wire.shown.last().map(|last| last.segment.at),
            segment.at,
        );
        let (text, window, new_data, closing) = match self.wire.sequences.read(&segment) {
            Some(tcp) => {
                let flags = tcp.flags;
                (
                    format!(
                        "   wire   {from} → {to}   {:<9} {}{}{gap}",
                        flags.to_string(),
                        tcp.fields,
                        tcp.again.label()
                    ),
                    Some(tcp.window),
                    tcp.new_data,
                    flags.fin || flags.rst,
                )
            }
            None => (
                format!(
                    "   wire   {from} → {to}   UDP       len={} {}{gap}",
                    segment.payload.len(),
                    show_bytes(&segment.payload).0
                ),
                None,
                segment.payload.len(),
                false,
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
        let deadline = self.step_deadline();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const ALICE: &str = "127.0.0.1:40000";
    const SERVER: &str = "127.0.0.1:7000";

    /// A TCP segment from `from` to `to` with the flags named in `flags`.
    fn tcp(from: &str, to: &str, flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Segment {
        let flags = Flags::from_names(flags.split(' ')).expect("flag names");
        Segment {
            stamped: SystemTime::UNIX_EPOCH,
            at: Instant::now(),
            from: from.parse().expect("an address"),
            to: to.parse().expect("an address"),
            header: Header::Tcp {
                flags,
                seq,
                ack,
                window: 512,
                window_scale: flags.syn.then_some(7),
            },
            payload: payload.to_vec(),
        }
    }

    /// What each segment shows, read in order: its fields and label, and its new bytes.
    fn read_all(segments: &[Segment]) -> Vec<(String, usize)> {
        let mut sequences = Sequences::default();
        segments
            .iter()
            .map(|segment| {
                let tcp = sequences.read(segment).expect("a TCP segment");
                (format!("{}{}", tcp.fields, tcp.again.label()), tcp.new_data)
            })
            .collect()
    }

    /// What each segment shows, read in order, without the count of new bytes.
    fn lines(segments: &[Segment]) -> Vec<String> {
        read_all(segments)
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    }

    /// A handshake from alice (first sequence number 1000) and the server (5000).
    fn handshake() -> Vec<Segment> {
        vec![
            tcp(ALICE, SERVER, "SYN", 1000, 0, b""),
            tcp(SERVER, ALICE, "SYN ACK", 5000, 1001, b""),
            tcp(ALICE, SERVER, "ACK", 1001, 5001, b""),
        ]
    }

    #[test]
    fn numbers_are_relative_to_each_side_and_windows_scaled_after_the_syn() {
        let mut segments = handshake();
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1001, 5001, b"hello"));
        segments.push(tcp(SERVER, ALICE, "ACK", 5001, 1006, b""));
        assert_eq!(
            read_all(&segments),
            [
                // A SYN's own window is not scaled; later ones are, by 2^7.
                ("seq=0 win=512".to_string(), 0),
                ("seq=0 ack=1 win=512".to_string(), 0),
                ("seq=1 ack=1 win=65536".to_string(), 0),
                ("seq=1 ack=1 win=65536 len=5 \"hello\"".to_string(), 5),
                ("seq=1 ack=6 win=65536".to_string(), 0),
            ]
        );
    }

    #[test]
    fn an_ack_for_a_side_whose_syn_was_not_seen_is_shown_as_on_the_wire() {
        let shown = read_all(&[tcp(ALICE, SERVER, "ACK", 1001, 5001, b"")]);
        assert_eq!(shown, [("seq=0 ack=5001 win=512".to_string(), 0)]);
    }

    #[test]
    fn data_sent_again_is_a_retransmission_and_carries_nothing_new() {
        let mut segments = handshake();
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1001, 5001, b"hello"));
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1001, 5001, b"hello"));
        // The tail of it again, and one byte past it: something new.
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1004, 5001, b"lo!"));
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1004, 5001, b"lo"));
        let shown = read_all(&segments);
        assert_eq!(
            shown[4],
            (
                "seq=1 ack=1 win=65536 len=5 \"hello\"   retransmission: sent before, not acknowledged in time".to_string(),
                0
            )
        );
        assert_eq!(
            shown[5],
            ("seq=4 ack=1 win=65536 len=3 \"lo!\"".to_string(), 3)
        );
        assert_eq!(
            shown[6],
            (
                "seq=4 ack=1 win=65536 len=2 \"lo\"   retransmission: sent before, not acknowledged in time".to_string(),
                0
            )
        );
    }

    #[test]
    fn a_syn_and_a_fin_each_take_one_number_and_can_be_sent_again() {
        let mut segments = handshake();
        segments.push(tcp(ALICE, SERVER, "SYN", 1000, 0, b""));
        segments.push(tcp(ALICE, SERVER, "FIN ACK", 1001, 5001, b""));
        segments.push(tcp(ALICE, SERVER, "FIN ACK", 1001, 5001, b""));
        // After the FIN (number 1), alice's next number is 2: an empty ACK there is new.
        segments.push(tcp(ALICE, SERVER, "ACK", 1002, 5002, b""));
        let shown = lines(&segments);
        assert_eq!(
            shown[3..],
            [
                "seq=0 win=512   retransmission: sent before, not acknowledged in time",
                "seq=1 ack=1 win=65536",
                "seq=1 ack=1 win=65536   retransmission: sent before, not acknowledged in time",
                "seq=2 ack=2 win=65536",
            ]
        );
    }

    /// The segment with another window.
    fn with_window(mut segment: Segment, advertised: u16) -> Segment {
        if let Header::Tcp { window, .. } = &mut segment.header {
            *window = advertised;
        }
        segment
    }

    #[test]
    fn an_empty_segment_one_below_the_next_byte_is_a_probe_and_a_reset_is_not() {
        let mut segments = handshake();
        segments.push(tcp(ALICE, SERVER, "PSH ACK", 1001, 5001, b"hello"));
        // The server's window is full: alice has sent up to number 6, and an empty segment
        // at 5 asks for the window.
        segments.push(with_window(tcp(SERVER, ALICE, "ACK", 5001, 1006, b""), 0));
        segments.push(tcp(ALICE, SERVER, "ACK", 1005, 5001, b""));
        segments.push(tcp(ALICE, SERVER, "ACK", 1006, 5001, b""));
        segments.push(tcp(ALICE, SERVER, "RST ACK", 1005, 5001, b""));
        // With room in the server's window, the same shape is a keepalive.
        segments.push(tcp(SERVER, ALICE, "ACK", 5001, 1006, b""));
        segments.push(tcp(ALICE, SERVER, "ACK", 1005, 5001, b""));
        let shown = lines(&segments);
        assert_eq!(
            shown[4..],
            [
                "seq=1 ack=6 win=0",
                "seq=5 ack=1 win=65536   window probe: one below the next byte, to ask a receiver whose window was 0 for its window",
                "seq=6 ack=1 win=65536",
                "seq=5 ack=1 win=65536",
                "seq=1 ack=6 win=65536",
                "seq=5 ack=1 win=65536   keepalive: one below the next byte, to ask whether the peer is still there",
            ]
        );
    }

    /// Only sequence space marks how far a side has sent: caught mid-connection, with no SYN
    /// seen, an empty ACK marks nothing, so an empty segment one below it is not taken for a
    /// probe of data nobody saw.
    #[test]
    fn an_empty_segment_marks_nothing_as_sent() {
        let shown = read_all(&[
            tcp(ALICE, SERVER, "ACK", 1000, 5000, b""),
            tcp(ALICE, SERVER, "ACK", 999, 5000, b""),
        ]);
        assert_eq!(shown[1], ("seq=4294967295 ack=5000 win=512".to_string(), 0));
    }

    #[test]
    fn a_datagram_has_no_sequence_numbers() {
        let mut datagram = tcp(ALICE, SERVER, "SYN", 1, 0, b"hi");
        datagram.header = Header::Udp;
        assert_eq!(Sequences::default().read(&datagram), None);
    }

    #[test]
    fn frames_the_capture_missed_are_said_and_stop_the_wire_checks() {
        assert!(dropped_note(0).is_none());
        for (dropped, text) in [
            (
                1,
                "(the capture missed 1 frame here: its buffer was full, so the wire's view is incomplete)",
            ),
            (
                3,
                "(the capture missed 3 frames here: its buffer was full, so the wire's view is incomplete)",
            ),
        ] {
            let note = dropped_note(dropped).expect("a note");
            assert_eq!(note.text, text);
            assert_eq!(note.fact, Some(Fact::WireIncomplete));
        }
    }

    #[test]
    fn a_gap_between_segments_is_shown_from_ten_milliseconds() {
        let at = Instant::now();
        let before = |ms| Some(at - Duration::from_millis(ms));
        assert_eq!(gap_note(None, at), "");
        assert_eq!(gap_note(before(9), at), "");
        assert_eq!(gap_note(before(10), at), "   (+10 ms)");
        assert_eq!(gap_note(before(250), at), "   (+250 ms)");
        // Stamped out of order by a microsecond: no gap, not a panic.
        assert_eq!(gap_note(Some(at + Duration::from_micros(1)), at), "");
    }
}
