//! What a run says: the transcript as a small sequence diagram, the failure that names
//! `file:line`, and how bytes are shown and compared on the way.
//!
//! Each [`Entry`] is one line of the diagram. Bytes in it are escaped (so a peer's bytes
//! cannot drive the terminal) and cut short after 40 characters, saying how many bytes are
//! hidden; the entry keeps every byte, and `socket-lab run --full` prints them all beneath
//! the line ([`View::full`]): text line by line, anything binary as a hex dump.
//!
//! An entry also says what it shows in a form a program can check ([`Fact`]): who sent or
//! received how many bytes, who connected and who was accepted. [`Transcript::check_causality`]
//! uses that to prove the diagram's order is possible: no byte received before it was sent.

use std::fmt;
use std::time::Duration;

use super::lex::quote;

/// What one line of a transcript is about, so a terminal can colour it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Title,
    Narration,
    Client,
    Server,
    /// What the kernel is set to do, or holds.
    Kernel,
    /// A segment that crossed the wire (`run --wire`).
    Wire,
    Note,
}

/// What a line shows, for checks on the order of events. Byte counts are what the socket
/// calls moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The client called `connect` on a stream socket.
    Connect { client: String },
    /// The server's `accept` returned this client's connection.
    Accept { client: String },
    /// The client's send (or sendall) passed this many bytes to the kernel.
    ClientSend { client: String, len: usize },
    /// The server's recv returned this many bytes from the client (`None`: a whole request,
    /// length not reported).
    ServerRecv { client: String, len: Option<usize> },
    /// The server sent this many bytes to the client.
    ServerSend { client: String, len: usize },
    /// The client's recv calls in one step returned this many bytes.
    ClientRecv { client: String, len: usize },
    /// A segment (or a datagram) between this client and a server of the lesson crossed the
    /// wire, carrying `data` bytes the wire had not carried before (a retransmission carries
    /// none), and, if `closing`, a FIN or an RST.
    Wire {
        client: String,
        toward: Toward,
        data: usize,
        closing: bool,
    },
    /// The server's recv on this client's connection found it ended: end of stream (the
    /// client's FIN) or a reset (its RST).
    ServerSawEnd { client: String },
    /// The capture missed frames, or stopped: from here on, the wire's view is incomplete.
    WireIncomplete,
}

/// Which way a segment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    Server,
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub text: String,
    /// Every byte of a payload the line shows cut short; `--full` prints them.
    pub bytes: Option<Vec<u8>>,
    pub fact: Option<Fact>,
}

impl Entry {
    pub fn new(kind: EntryKind, text: impl Into<String>) -> Entry {
        Entry {
            kind,
            text: text.into(),
            bytes: None,
            fact: None,
        }
    }

    /// Keeps `bytes` for `--full` when the line could not show them whole.
    pub(crate) fn with_bytes(mut self, bytes: &[u8]) -> Entry {
        if show_bytes(bytes).1 {
            self.bytes = Some(bytes.to_vec());
        }
        self
    }

    pub(crate) fn with_fact(mut self, fact: Fact) -> Entry {
        self.fact = Some(fact);
        self
    }
}

/// Everything that happened, as a small sequence diagram, in the order it happened.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub entries: Vec<Entry>,
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{}", entry.text)?;
        }
        Ok(())
    }
}

impl Transcript {
    /// Checks that the diagram's order is one that could have happened, for every client:
    /// the server accepts a connection only after the client's `connect`; the server's recvs
    /// never return more bytes than the client had sent by then; the client's recvs never
    /// return more than the server had sent by then. With the wire's view, the same holds
    /// against what had crossed the wire by then, and the server sees a connection end only
    /// after the client's FIN or RST crossed it. A runner that printed an effect before its
    /// cause fails here.
    pub fn check_causality(&self) -> Result<(), String> {
        use std::collections::{HashMap, HashSet};
        #[derive(Default)]
        struct Tally {
            connected: bool,
            client_sent: usize,
            server_received: usize,
            server_sent: usize,
            client_received: usize,
            wire_to_server: usize,
            wire_to_client: usize,
            closed_on_wire: bool,
        }
        // The wire's rules hold for a client whose traffic the capture saw (a client behind
        // the lesson's network proxy talks to the proxy, not the server), while the capture
        // missed nothing.
        let on_wire: HashSet<&str> = self
            .entries
            .iter()
            .filter_map(|entry| match &entry.fact {
                Some(Fact::Wire { client, .. }) => Some(client.as_str()),
                _ => None,
            })
            .collect();
        let mut wire_complete = true;
        let mut tallies: HashMap<&str, Tally> = HashMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let fail = |what: String| {
                Err(format!(
                    "transcript line {}: {what}\n    {}\n\n{self}",
                    index + 1,
                    entry.text
                ))
            };
            let Some(fact) = &entry.fact else { continue };
            match fact {
                Fact::Connect { client } => tallies.entry(client).or_default().connected = true,
                Fact::Accept { client } => {
                    if !tallies.entry(client).or_default().connected {
                        return fail(format!(
                            "the server accepted {client} before {client} connected"
                        ));
                    }
                }
                Fact::ClientSend { client, len } => {
                    tallies.entry(client).or_default().client_sent += len;
                }
                Fact::ServerRecv { client, len } => {
                    let watched = wire_complete && on_wire.contains(client.as_str());
                    let tally = tallies.entry(client).or_default();
                    tally.server_received += len.unwrap_or(0);
                    if tally.server_received > tally.client_sent
                        || (len.is_none() && tally.client_sent == 0)
                    {
                        return fail(format!(
                            "the server has received {} bytes from {client}, who had sent only {}",
                            tally.server_received, tally.client_sent
                        ));
                    }
                    if watched && tally.server_received > tally.wire_to_server {
                        return fail(format!(
                            "the server has received {} bytes from {client}, but only {} had crossed the wire",
                            tally.server_received, tally.wire_to_server
                        ));
                    }
                }
                Fact::ServerSend { client, len } => {
                    tallies.entry(client).or_default().server_sent += len;
                }
                Fact::ClientRecv { client, len } => {
                    let watched = wire_complete && on_wire.contains(client.as_str());
                    let tally = tallies.entry(client).or_default();
                    tally.client_received += len;
                    if tally.client_received > tally.server_sent {
                        return fail(format!(
                            "{client} has received {} bytes, but the server had sent only {}",
                            tally.client_received, tally.server_sent
                        ));
                    }
                    if watched && tally.client_received > tally.wire_to_client {
                        return fail(format!(
                            "{client} has received {} bytes, but only {} had crossed the wire to {client}",
                            tally.client_received, tally.wire_to_client
                        ));
                    }
                }
                Fact::Wire {
                    client,
                    toward,
                    data,
                    closing,
                } => {
                    let tally = tallies.entry(client).or_default();
                    match toward {
                        Toward::Server => {
                            tally.wire_to_server += data;
                            tally.closed_on_wire |= closing;
                        }
                        Toward::Client => tally.wire_to_client += data,
                    }
                }
                Fact::ServerSawEnd { client } => {
                    let watched = wire_complete && on_wire.contains(client.as_str());
                    if watched && !tallies.entry(client).or_default().closed_on_wire {
                        return fail(format!(
                            "the server saw {client}'s connection end before {client}'s FIN or RST crossed the wire"
                        ));
                    }
                }
                Fact::WireIncomplete => wire_complete = false,
            }
        }
        Ok(())
    }
}

/// Why a step did not go as the file says.
#[derive(Debug)]
pub enum StepError {
    /// The file asks for something that cannot be done at this point: a client that never
    /// connected, a stream verb on a datagram socket.
    Misuse(String),
    /// A call returned something other than the file expects.
    Mismatch {
        call: String,
        expected: String,
        got: String,
    },
    /// Bytes other than the ones the file expects.
    Bytes {
        what: String,
        expected: Vec<u8>,
        got: Vec<u8>,
    },
    /// No log line matched within the step's timeout.
    NoLogLine {
        pattern: String,
        waited: Duration,
        /// The lines no step has matched yet, oldest first.
        unmatched: Vec<String>,
    },
    /// With `log-next`, the next line was another one.
    WrongNextLine { pattern: String, next: String },
    /// With `log-next`, the line was logged, but before the one the previous step matched.
    WrongOrder {
        pattern: String,
        line: String,
        previous: String,
    },
    /// Anything else, said in full.
    Other(String),
}

impl From<String> for StepError {
    fn from(message: String) -> StepError {
        StepError::Other(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> StepError {
        StepError::Other(message.to_string())
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Misuse(message) | StepError::Other(message) => f.write_str(message),
            StepError::Mismatch {
                call,
                expected,
                got,
            } => write!(f, "{call}: expected {expected}\n{call}: but got {got}"),
            StepError::Bytes {
                what,
                expected,
                got,
            } => f.write_str(&bytes_mismatch(what, expected, got)),
            StepError::NoLogLine {
                pattern,
                waited,
                unmatched,
            } => {
                write!(
                    f,
                    "expected the server to log\n  {pattern}\nwithin {waited:?}; the lines not yet matched are:"
                )?;
                if unmatched.is_empty() {
                    write!(f, "\n  (none)")?;
                }
                for line in unmatched {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            StepError::WrongOrder {
                pattern,
                line,
                previous,
            } => write!(
                f,
                "expected the server's next log line to match\n  {pattern}\nbut the server logged that line before the one the previous step matched, not after it:\n  {line}\ncame before\n  {previous}"
            ),
            StepError::WrongNextLine { pattern, next } => write!(
                f,
                "expected the server's next log line to match\n  {pattern}\nbut the next line it logged is\n  {next}"
            ),
        }
    }
}

/// A step whose result was not the one the file expects.
#[derive(Debug)]
pub struct Failure {
    pub file: String,
    pub line: usize,
    /// The step as written (canonical form).
    pub step: Box<str>,
    pub message: String,
    /// What the failure looked like from the client's side, for `socket-lab check`'s hints.
    pub symptom: Symptom,
    /// The file's own hint for this step (`hint "..."`), if it has one.
    pub hint: Option<Box<str>>,
    pub transcript: Transcript,
}

/// What a failed step saw, in the terms a learner's server can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symptom {
    /// The step waited and nothing (or not enough) came.
    NothingArrived,
    /// The server closed the connection (a recv returned 0 bytes).
    Closed,
    /// The connection was reset.
    Reset,
    /// Bytes came, but not the ones the lesson expects.
    WrongBytes,
    /// Nobody listens at the server's address any more.
    Refused,
    /// The server's log or anything else.
    Other,
}

impl StepError {
    /// How the failure looked from the client's side.
    pub fn symptom(&self) -> Symptom {
        let said = |text: &str| {
            if text.contains("timed out")
                || text.contains("nothing more arrived in time")
                || text.contains("the step's timeout passed")
            {
                Some(Symptom::NothingArrived)
            } else if text.contains("end of stream") || text.contains("the stream ended") {
                Some(Symptom::Closed)
            } else if text.contains("reset by peer") {
                Some(Symptom::Reset)
            } else if text.contains("connection refused") {
                Some(Symptom::Refused)
            } else {
                None
            }
        };
        match self {
            StepError::Mismatch { got, .. } => said(got).unwrap_or(Symptom::WrongBytes),
            StepError::Bytes { .. } => Symptom::WrongBytes,
            StepError::Other(message) => said(message).unwrap_or(Symptom::Other),
            _ => Symptom::Other,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A step with a long literal is cut: the line number points at the whole of it.
        let step: String = self.step.chars().take(200).collect();
        let cut = if step.len() < self.step.len() {
            " …"
        } else {
            ""
        };
        writeln!(f, "{}:{}: {step}{cut}", self.file, self.line)?;
        for line in self.message.lines() {
            writeln!(f, "    {line}")?;
        }
        writeln!(f, "\ntranscript so far:")?;
        write!(f, "{}", self.transcript)
    }
}

impl std::error::Error for Failure {}

/// Expected and actual bytes, escaped, with a hex view where they are not plain text.
pub(crate) fn bytes_mismatch(what: &str, expected: &[u8], got: &[u8]) -> String {
    let mut message = format!(
        "{what}: expected {} B: \"{}\"\n{what}: but got  {} B: \"{}\"",
        expected.len(),
        quote(&expected[..expected.len().min(256)]),
        got.len(),
        quote(&got[..got.len().min(256)])
    );
    if let Some(at) = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .or((expected.len() != got.len()).then(|| expected.len().min(got.len())))
    {
        message.push_str(&format!("\nfirst difference at byte {at}"));
    }
    if is_binary(expected) || is_binary(got) {
        message.push_str(&format!(
            "\nexpected (hex): {}\ngot      (hex): {}",
            hex(expected),
            hex(got)
        ));
    }
    message
}

/// Not text a person reads line by line: invalid UTF-8, or control characters other than
/// the line ends and tabs that text protocols use.
fn is_binary(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).map_or(true, |text| {
        text.chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
    })
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(64)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let more = if bytes.len() > 64 { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

/// How many characters of a payload a diagram line shows.
const SHOWN: usize = 40;

/// Bytes for a diagram line: a quoted literal, written as `"unit" * n` when it is one short
/// piece repeated (exact, however long), else cut after [`SHOWN`] bytes with the number of
/// bytes left out. The flag says whether anything was left out.
pub(crate) fn show_bytes(bytes: &[u8]) -> (String, bool) {
    if bytes.len() <= SHOWN {
        return (format!("\"{}\"", quote(bytes)), false);
    }
    let repeats = |unit: usize| bytes.chunks(unit).all(|chunk| chunk == &bytes[..unit]);
    if let Some(unit) = (1..=SHOWN).find(|&unit| bytes.len().is_multiple_of(unit) && repeats(unit))
    {
        return (
            format!("\"{}\" * {}", quote(&bytes[..unit]), bytes.len() / unit),
            false,
        );
    }
    let hidden = bytes.len() - SHOWN;
    (
        format!(
            "\"{}\" … {} more byte{}",
            quote(&bytes[..SHOWN]),
            thousands(hidden),
            if hidden == 1 { "" } else { "s" }
        ),
        true,
    )
}

/// `1703` as `1,703`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Matches `text` against `pattern`, where `[..]` stands for any text (possibly none).
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// How a transcript is printed.
#[derive(Clone, Copy, Debug, Default)]
pub struct View {
    /// ANSI colour, readable on dark and light terminals alike: titles bold, clients cyan,
    /// the server green, the kernel magenta, the wire blue, notes dim.
    pub colour: bool,
    /// Every byte of every payload, beneath the line that shows it cut short.
    pub full: bool,
}

/// Where the bytes of `--full` start: under the arrow, clear of the actors' names.
const FULL_INDENT: &str = "        ┊ ";
/// Characters of escaped text per line of `--full`.
const FULL_WIDTH: usize = 72;

/// One transcript entry as the demo prints it (with `--full`, several lines).
pub fn render(entry: &Entry, view: View) -> String {
    let text = match entry.kind {
        EntryKind::Title => format!("━━ {} ━━", entry.text),
        EntryKind::Narration if entry.text.is_empty() => "│".to_string(),
        EntryKind::Narration => format!("│ {}", entry.text),
        _ => entry.text.clone(),
    };
    let mut text = if view.colour {
        let style = match entry.kind {
            EntryKind::Title => "1",
            EntryKind::Narration => "0",
            EntryKind::Client => "36",
            // Not yellow: it fades on a light background.
            EntryKind::Server => "32",
            EntryKind::Kernel => "35",
            EntryKind::Wire => "34",
            EntryKind::Note => "2",
        };
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text
    };
    if view.full
        && let Some(bytes) = &entry.bytes
    {
        for line in full_lines(bytes) {
            text.push('\n');
            text.push_str(FULL_INDENT);
            text.push_str(&line);
        }
    }
    text
}

/// Every byte, for `--full`: text escaped and broken after each `\n` (and wrapped when a
/// line is long), or a hex dump with the printable bytes beside it when it is binary.
fn full_lines(bytes: &[u8]) -> Vec<String> {
    if is_binary(bytes) {
        return bytes
            .chunks(16)
            .enumerate()
            .map(|(row, chunk)| {
                let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
                let shown: String = chunk
                    .iter()
                    .map(|&byte| {
                        if byte.is_ascii_graphic() || byte == b' ' {
                            byte as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                format!("{:06x}  {:<47}  {shown}", row * 16, hex.join(" "))
            })
            .collect();
    }
    let mut lines = Vec::new();
    for line in bytes.split_inclusive(|&byte| byte == b'\n') {
        let escaped = quote(line);
        let mut rest = escaped.as_str();
        while rest.chars().count() > FULL_WIDTH {
            let cut = rest
                .char_indices()
                .nth(FULL_WIDTH)
                .map_or(rest.len(), |(at, _)| at);
            lines.push(format!("{}↩", &rest[..cut]));
            rest = &rest[cut..];
        }
        lines.push(rest.to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_any_text() {
        assert!(matches(
            "[127.0.0.1:[..]] connected",
            "[127.0.0.1:4000] connected"
        ));
        assert!(matches("a[..]b[..]c", "a-b-b-c"));
        assert!(matches("[..]", ""));
        assert!(!matches("a[..]c", "abd"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("ab[..]", "abcd"));
    }

    #[test]
    fn long_bytes_say_how_many_are_hidden_and_full_shows_them_all() {
        let request = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n", "x".repeat(1733));
        let (short, cut) = show_bytes(request.as_bytes());
        assert!(cut);
        assert_eq!(
            short,
            "\"GET / HTTP/1.1\\r\\nHost: a\\r\\nxxxxxxxxxxxxxxx\" … 1,722 more bytes"
        );
        let entry = Entry::new(EntryKind::Client, "alice").with_bytes(request.as_bytes());
        let full = render(
            &entry,
            View {
                colour: false,
                full: true,
            },
        );
        let shown: String = full
            .lines()
            .skip(1)
            .map(|line| line.trim_start_matches(FULL_INDENT).trim_end_matches('↩'))
            .collect();
        assert_eq!(shown, quote(request.as_bytes()));
        // The blank line that ends the head is a line of its own.
        assert_eq!(
            full.lines().last(),
            Some(format!("{FULL_INDENT}\\r\\n").as_str())
        );
        assert_eq!(render(&entry, View::default()), "alice");
    }

    #[test]
    fn repeated_bytes_are_exact_and_need_no_full_view() {
        assert_eq!(
            show_bytes(&[b'x'; 1000]),
            ("\"x\" * 1000".to_string(), false)
        );
        let entry = Entry::new(EntryKind::Client, "alice").with_bytes(&[b'x'; 1000]);
        assert_eq!(entry.bytes, None);
    }

    #[test]
    fn binary_payloads_are_shown_as_a_hex_dump() {
        let bytes: Vec<u8> = (0u8..=40).collect();
        let lines = full_lines(&bytes);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("000000  00 01 02"));
        assert!(lines[2].starts_with("000020  20 21 22"));
        assert!(lines[2].ends_with(" !\"#$%&'("));
    }

    #[test]
    fn a_wildcard_in_the_middle_needs_every_part_in_order() {
        assert!(!matches("a[..]b[..]c", "a-c-b"));
        assert!(!matches("a[..]b[..]c", "a-b-c-d"));
        assert!(matches("[..]c", "abc"));
        assert!(!matches("[..]c", "abcd"));
        assert!(!matches("x[..]", "abc"));
    }

    #[test]
    fn a_bytes_mismatch_says_both_lengths_and_where_they_first_differ() {
        assert_eq!(
            bytes_mismatch("recv(8)", b"hello", b"help"),
            "recv(8): expected 5 B: \"hello\"\nrecv(8): but got  4 B: \"help\"\n\
             first difference at byte 3"
        );
        // One is the start of the other: they differ where the shorter one ends.
        assert_eq!(
            bytes_mismatch("recv(8)", b"abc", b"abcd"),
            "recv(8): expected 3 B: \"abc\"\nrecv(8): but got  4 B: \"abcd\"\n\
             first difference at byte 3"
        );
        // Bytes that are not text get a hex view of both sides.
        assert_eq!(
            bytes_mismatch("so far", b"\x00\x01", b"\x00\x02"),
            "so far: expected 2 B: \"\\0\\x01\"\nso far: but got  2 B: \"\\0\\x02\"\n\
             first difference at byte 1\n\
             expected (hex): 00 01\n\
             got      (hex): 00 02"
        );
        // One binary side is enough.
        assert_eq!(
            bytes_mismatch("recv(8)", b"ok", b"o\x1b"),
            "recv(8): expected 2 B: \"ok\"\nrecv(8): but got  2 B: \"o\\x1b\"\n\
             first difference at byte 1\n\
             expected (hex): 6f 6b\n\
             got      (hex): 6f 1b"
        );
    }

    #[test]
    fn text_with_line_ends_is_text_and_control_bytes_are_binary() {
        assert!(!is_binary(b"GET / HTTP/1.1\r\n\tx"));
        assert!(is_binary(b"a\x1b[31m"));
        assert!(is_binary(b"\xff"));
        assert_eq!(hex(&[0xab; 64]), ["ab"; 64].join(" "));
        assert_eq!(hex(&[0xab; 65]), format!("{} …", ["ab"; 64].join(" ")));
    }

    #[test]
    fn a_failure_is_classified_by_what_the_client_saw() {
        let mismatch = |got: &str| StepError::Mismatch {
            call: "recv(8)".into(),
            expected: "\"hi\"".into(),
            got: got.into(),
        };
        assert_eq!(mismatch("timed out").symptom(), Symptom::NothingArrived);
        assert_eq!(
            mismatch("nothing more arrived in time").symptom(),
            Symptom::NothingArrived
        );
        assert_eq!(mismatch("end of stream").symptom(), Symptom::Closed);
        assert_eq!(
            mismatch("connection reset by peer").symptom(),
            Symptom::Reset
        );
        assert_eq!(mismatch("\"ho\"").symptom(), Symptom::WrongBytes);
        let other = |text: &str| StepError::Other(text.into()).symptom();
        assert_eq!(other("the step's timeout passed"), Symptom::NothingArrived);
        assert_eq!(other("the stream ended"), Symptom::Closed);
        assert_eq!(other("connection refused"), Symptom::Refused);
        assert_eq!(other("something else"), Symptom::Other);
        let bytes = StepError::Bytes {
            what: "recv".into(),
            expected: b"a".to_vec(),
            got: b"b".to_vec(),
        };
        assert_eq!(bytes.symptom(), Symptom::WrongBytes);
        assert_eq!(StepError::Misuse("x".into()).symptom(), Symptom::Other);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1703), "1,703");
        assert_eq!(thousands(1048576), "1,048,576");
    }

    fn line(fact: Fact) -> Entry {
        Entry::new(EntryKind::Client, format!("{fact:?}")).with_fact(fact)
    }

    #[test]
    fn an_effect_before_its_cause_fails_the_causality_check() {
        let client = || "alice".to_string();
        let good = Transcript {
            entries: vec![
                line(Fact::Connect { client: client() }),
                line(Fact::Accept { client: client() }),
                line(Fact::ClientSend {
                    client: client(),
                    len: 5,
                }),
                line(Fact::ServerRecv {
                    client: client(),
                    len: Some(5),
                }),
                line(Fact::ServerSend {
                    client: client(),
                    len: 19,
                }),
                line(Fact::ClientRecv {
                    client: client(),
                    len: 19,
                }),
            ],
        };
        assert_eq!(good.check_causality(), Ok(()));
        let swap = |a: usize, b: usize| {
            let mut bad = good.clone();
            bad.entries.swap(a, b);
            bad.check_causality().expect_err("out of order")
        };
        assert!(swap(0, 1).contains("accepted alice before alice connected"));
        assert!(swap(2, 3).contains("received 5 bytes from alice, who had sent only 0"));
        assert!(swap(4, 5).contains("alice has received 19 bytes, but the server had sent only 0"));
    }

    /// The wire's view adds causes of its own: a recv returns only bytes that crossed the wire
    /// before it, and the server sees a connection end only after the client's FIN or RST.
    #[test]
    fn an_effect_before_its_segment_fails_the_causality_check() {
        let client = || "alice".to_string();
        let wire = |toward: Toward, data: usize, closing: bool| {
            line(Fact::Wire {
                client: client(),
                toward,
                data,
                closing,
            })
        };
        let good = Transcript {
            entries: vec![
                line(Fact::Connect { client: client() }),
                wire(Toward::Server, 0, false),
                line(Fact::Accept { client: client() }),
                line(Fact::ClientSend {
                    client: client(),
                    len: 5,
                }),
                wire(Toward::Server, 5, false),
                line(Fact::ServerRecv {
                    client: client(),
                    len: Some(5),
                }),
                line(Fact::ServerSend {
                    client: client(),
                    len: 19,
                }),
                wire(Toward::Client, 19, false),
                line(Fact::ClientRecv {
                    client: client(),
                    len: 19,
                }),
                wire(Toward::Server, 0, true),
                line(Fact::ServerSawEnd { client: client() }),
            ],
        };
        assert_eq!(good.check_causality(), Ok(()));
        let swap = |a: usize, b: usize| {
            let mut bad = good.clone();
            bad.entries.swap(a, b);
            bad.check_causality()
        };
        assert!(swap(4, 5).unwrap_err().contains(
            "the server has received 5 bytes from alice, but only 0 had crossed the wire"
        ));
        assert!(
            swap(7, 8)
                .unwrap_err()
                .contains("alice has received 19 bytes, but only 0 had crossed the wire to alice")
        );
        assert!(swap(9, 10).unwrap_err().contains(
            "the server saw alice's connection end before alice's FIN or RST crossed the wire"
        ));
        // A retransmission carries no new bytes: the recv it would explain is too early.
        let mut resent = good.clone();
        resent.entries[4] = wire(Toward::Server, 0, false);
        resent.entries.insert(6, wire(Toward::Server, 5, false));
        assert!(resent.check_causality().is_err());
        // Once the capture missed frames, the wire proves nothing.
        let mut incomplete = good.clone();
        incomplete.entries.remove(4);
        assert!(incomplete.check_causality().is_err());
        incomplete.entries.insert(1, line(Fact::WireIncomplete));
        assert_eq!(incomplete.check_causality(), Ok(()));
        // A client the capture never saw (one behind the lesson's proxy) has no wire rules.
        let unseen = Transcript {
            entries: good
                .entries
                .iter()
                .filter(|entry| !matches!(entry.fact, Some(Fact::Wire { .. })))
                .cloned()
                .collect(),
        };
        assert_eq!(unseen.check_causality(), Ok(()));
    }
}
