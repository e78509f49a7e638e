//! What a run says: the transcript as a small sequence diagram, the failure that names
//! `file:line`, and how bytes are shown and compared on the way (escaped, shortened, with a
//! hex view and the first differing byte when they are not what the file expects).

use std::fmt;

use super::parse::quote;

/// What one line of a transcript is about, so a terminal can colour it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Title,
    Narration,
    Client,
    Server,
    Note,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub text: String,
}

/// Everything that happened, as a small sequence diagram.
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

/// A step whose result was not the one the file expects.
#[derive(Debug)]
pub struct Failure {
    pub file: String,
    pub line: usize,
    /// The step as written (canonical form).
    pub step: String,
    pub message: String,
    pub transcript: Transcript,
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
    let binary = |bytes: &[u8]| {
        std::str::from_utf8(bytes).map_or(true, |text| text.chars().any(char::is_control))
    };
    if binary(expected) || binary(got) {
        message.push_str(&format!(
            "\nexpected (hex): {}\ngot      (hex): {}",
            hex(expected),
            hex(got)
        ));
    }
    message
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

/// Bytes for a diagram: a quoted literal, written as `"unit" * n` when it is one short piece
/// repeated, and cut short when long.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    if bytes.len() > SHOWN {
        let repeats = |unit: usize| bytes.chunks(unit).all(|chunk| chunk == &bytes[..unit]);
        if let Some(unit) =
            (1..=SHOWN).find(|&unit| bytes.len().is_multiple_of(unit) && repeats(unit))
        {
            return format!("\"{}\" * {}", quote(&bytes[..unit]), bytes.len() / unit);
        }
        return format!("\"{}\"…", quote(&bytes[..SHOWN]));
    }
    format!("\"{}\"", quote(bytes))
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

/// One transcript line as the demo prints it, with ANSI colour when `colour` is set: titles
/// bold, clients cyan, the server yellow, notes dim, narration plain.
pub fn render(entry: &Entry, colour: bool) -> String {
    let text = match entry.kind {
        EntryKind::Title => format!("━━ {} ━━", entry.text),
        EntryKind::Narration => format!("│ {}", entry.text),
        _ => entry.text.clone(),
    };
    if !colour {
        return text;
    }
    let style = match entry.kind {
        EntryKind::Title => "1",
        EntryKind::Narration => "0",
        EntryKind::Client => "36",
        EntryKind::Server => "33",
        EntryKind::Note => "2",
    };
    format!("\x1b[{style}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::matches;

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
}
