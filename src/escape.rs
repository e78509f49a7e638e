//! Showing bytes a peer sent, safely.
//!
//! The walkthrough's server prints whatever `recv` returned. That is fine for `hello`, but a
//! peer controls those bytes: `\x1b]0;pwned\x07` retitles your terminal, `\r` rewrites the line
//! you are reading, `\n` forges a whole log line of its own, and bytes that are not UTF-8 make
//! Python's `decode()` raise. Unicode adds characters that are not drawn at all but change
//! how the rest is drawn: U+202E RIGHT-TO-LEFT OVERRIDE shows `evil\u{202e}txt.exe` as
//! `evilexe.txt`, U+2028 LINE SEPARATOR starts a new line in many viewers, and zero-width
//! characters (U+200B, U+FEFF) make two different strings look the same.
//!
//! So every string a peer controls (a message, a Unix socket path it bound, an HTTP request
//! line) is shown through [`escape`]: printable UTF-8 as itself, everything else as a
//! Rust-style escape (`\r`, `\n`, `\0`, `\x1b`, `\xff`, `\u{202e}`). One log entry is always
//! one line, it contains no control, format or separator character, and it shows exactly
//! which bytes arrived: [`unescape`] gives them back (`tests/properties.rs` checks both for
//! any bytes and any Unix path; `tests/cli.rs` and `tests/unix.rs` end to end).
//!
//! A string printed inside a delimited field (`[peer]`, `"request line"`) also has its
//! closing delimiter escaped, by [`escape_in`], so it cannot end the field early and make the
//! rest of the line read as something else.

use std::fmt::Write as _;
use std::path::Path;

/// Renders `bytes` as one line of printable text: UTF-8 text stays as it is; control,
/// format and separator characters ([`is_hidden`]) and bytes that are not valid UTF-8 become
/// escapes; and `\` becomes `\\`, so [`unescape`] reads it back unambiguously (the scenario
/// format parses the same escapes).
///
/// ```
/// use socket_lab::escape::escape;
///
/// assert_eq!(escape(b"hello"), "hello");
/// // A terminal escape, a line ending and a byte that is not UTF-8: all shown, none obeyed.
/// assert_eq!(escape(b"\x1b[31mred\r\n\xff"), r"\x1b[31mred\r\n\xff");
/// // A right-to-left override and a line separator: shown, not obeyed.
/// assert_eq!(escape("a\u{202e}b\u{2028}c".as_bytes()), r"a\u{202e}b\u{2028}c");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    escape_with(bytes, None)
}

/// [`escape`], and `delimiter` (the character that closes the field the text is printed in,
/// such as `"` or `]`) as `\"` or `\]`, so the text cannot close the field early.
///
/// ```
/// use socket_lab::escape::{escape_in, unescape};
///
/// let forged = b"/tmp/a] send a message to server: hi";
/// assert_eq!(escape_in(forged, ']'), r"/tmp/a\] send a message to server: hi");
/// assert_eq!(unescape(&escape_in(forged, ']')).unwrap(), forged);
/// ```
pub fn escape_in(bytes: &[u8], delimiter: char) -> String {
    escape_with(bytes, Some(delimiter))
}

/// A path as [`escape`] shows it: a Unix socket path is bytes a peer (or a user) chose.
pub fn path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape(path.as_os_str().as_bytes())
}

fn escape_with(bytes: &[u8], delimiter: Option<char>) -> String {
    // Most of what peers send (a request line, a header, an ack) is printable ASCII that
    // needs no escape: copied as it is, without looking at each character twice.
    let plain = |&byte: &u8| {
        (0x20..0x7f).contains(&byte)
            && byte != b'\\'
            && delimiter.is_none_or(|delimiter| u32::from(byte) != delimiter as u32)
    };
    if bytes.iter().all(plain) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if Some(c) == delimiter => {
                    out.push('\\');
                    out.push(c);
                }
                // C0 controls and DEL fit in one byte; every other hidden character is shown
                // as its code point, so the escape still names one character.
                c if (c as u32) < 0x80 && is_hidden(c) => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if is_hidden(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Whether `c` is an instruction to whatever displays text rather than something to display:
/// a control character (Unicode category Cc: C0, DEL, C1), a format character (Cf: bidi
/// embeddings, overrides and isolates, zero-width spaces and joiners, the byte-order mark,
/// soft hyphen, tags, ...) or a line or paragraph separator (Zl, Zp).
///
/// `char::is_control` covers only Cc. The Cf list is Unicode 15's, complete (checked against
/// Python's `unicodedata` by a test where Python is installed).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0xAD | 0x600..=0x605
                | 0x61C
                | 0x6DD
                | 0x70F
                | 0x890..=0x891
                | 0x8E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// Why [`unescape`] could not read a text back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnescapeError {
    /// Byte offset of the backslash that starts the bad escape.
    pub at: usize,
    pub message: String,
}

impl std::fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.at, self.message)
    }
}

impl std::error::Error for UnescapeError {}

/// The bytes [`escape`] or [`escape_in`] showed: `unescape(&escape(x)) == x` for any bytes.
/// It reads `\\ \n \r \t \0 \" \]`, `\xNN` (one byte, which may be on its own invalid UTF-8)
/// and `\u{N}` (one character, as UTF-8); other text is taken as it is.
///
/// ```
/// use socket_lab::escape::{escape, unescape};
///
/// let bytes = b"\x1b]0;title\x07\xff\xe2\x80\xae";
/// assert_eq!(unescape(&escape(bytes)).unwrap(), bytes);
/// ```
pub fn unescape(text: &str) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        let fail = |message: String| UnescapeError { at, message };
        match chars.next().map(|(_, c)| c) {
            Some('\\') => out.push(b'\\'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('"') => out.push(b'"'),
            Some(']') => out.push(b']'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| fail(format!("`\\x{hex}` is not two hex digits")))?;
                out.push(byte);
            }
            Some('u') => {
                let rest = &text[at + 2..];
                let code = rest
                    .strip_prefix('{')
                    .and_then(|rest| rest.split_once('}'))
                    .map(|(hex, _)| hex)
                    .filter(|hex| (1..=6).contains(&hex.len()))
                    .ok_or_else(|| fail("write a code point as \\u{85}".into()))?;
                let c = u32::from_str_radix(code, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| fail(format!("`\\u{{{code}}}` is not a character")))?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                // Skip `{`, the digits and `}`.
                for _ in 0..code.len() + 2 {
                    chars.next();
                }
            }
            Some(other) => return Err(fail(format!("unknown escape `\\{other}`"))),
            None => return Err(fail("a lone `\\` at the end".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{escape, escape_in, is_hidden, unescape};

    #[test]
    fn text_stays_text() {
        assert_eq!(escape(b"hello, world"), "hello, world");
        assert_eq!(escape("你好".as_bytes()), "你好");
    }

    #[test]
    fn controls_and_invalid_utf8_are_escaped() {
        assert_eq!(
            escape(b"a\r\nb\0\x1b[31m\xff\\"),
            "a\\r\\nb\\0\\x1b[31m\\xff\\\\"
        );
        assert_eq!(escape("\u{85}".as_bytes()), "\\u{85}");
        assert_eq!(escape(b"\x7f"), "\\x7f");
    }

    #[test]
    fn format_and_separator_characters_are_escaped() {
        // Bidi embeddings, overrides and isolates; zero-width characters; the byte-order
        // mark; the line and paragraph separators. `char::is_control` flags none of them.
        for (c, shown) in [
            ('\u{202a}', r"\u{202a}"),
            ('\u{202e}', r"\u{202e}"),
            ('\u{2066}', r"\u{2066}"),
            ('\u{2069}', r"\u{2069}"),
            ('\u{2028}', r"\u{2028}"),
            ('\u{2029}', r"\u{2029}"),
            ('\u{200b}', r"\u{200b}"),
            ('\u{200f}', r"\u{200f}"),
            ('\u{feff}', r"\u{feff}"),
            ('\u{e0041}', r"\u{e0041}"),
        ] {
            assert!(!c.is_control());
            assert_eq!(escape(c.to_string().as_bytes()), shown);
        }
        // Visible neighbours stay as they are.
        assert_eq!(escape("‐ — € ‰".as_bytes()), "‐ — € ‰");
    }

    #[test]
    fn a_delimiter_cannot_close_its_field() {
        assert_eq!(escape_in(b"a\"b", '"'), r#"a\"b"#);
        assert_eq!(escape_in(b"a]b\n", ']'), r"a\]b\n");
        assert_eq!(escape(b"a]b\""), "a]b\"");
    }

    #[test]
    fn a_unix_socket_path_is_shown_as_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        // A path is bytes, not text: a newline and a byte that is not UTF-8 are both allowed.
        let bound = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/tmp/a\nb\xff.sock"));
        assert_eq!(super::path(bound), r"/tmp/a\nb\xff.sock");
    }

    #[test]
    fn a_truncated_utf8_sequence_is_shown_byte_by_byte() {
        // "你" is e4 bd a0: a recv that stops after two of its bytes shows both as escapes.
        assert_eq!(escape(b"ok\xe4\xbd"), "ok\\xe4\\xbd");
    }

    #[test]
    fn unescape_reads_back_every_escape() {
        let bytes = "a\\\n\r\t\0\x1b\x7f\u{85}\u{202e}\u{e007f}]\"".as_bytes();
        assert_eq!(unescape(&escape(bytes)).unwrap(), bytes);
        assert_eq!(unescape(&escape_in(bytes, ']')).unwrap(), bytes);
        assert_eq!(unescape(&escape_in(bytes, '"')).unwrap(), bytes);
        assert_eq!(unescape(r"\xff\xe4").unwrap(), b"\xff\xe4");
        for bad in [
            r"\",
            r"\q",
            r"\x4",
            r"\xzz",
            r"\u{}",
            r"\u{110000}",
            r"\u{d800}",
            r"\u85",
        ] {
            assert!(unescape(bad).is_err(), "{bad:?} should not unescape");
        }
        // The error names where the bad escape starts and what is wrong with it.
        assert_eq!(
            unescape(r"ab\q").unwrap_err().to_string(),
            r"at byte 2: unknown escape `\q`"
        );
        assert_eq!(
            unescape(r"\x4").unwrap_err().to_string(),
            r"at byte 0: `\x4` is not two hex digits"
        );
    }

    /// The Cf, Zl and Zp lists are written out by hand; Python's `unicodedata` is a second
    /// opinion where Python is installed (its Unicode may be older than ours, never newer
    /// than the list, which is Unicode 15's).
    #[test]
    fn every_control_format_and_separator_character_python_knows_is_hidden() {
        let script = "import unicodedata\n\
             print(' '.join(str(c) for c in range(0x110000) \
             if unicodedata.category(chr(c)) in ('Cc', 'Cf', 'Zl', 'Zp')))";
        let Ok(output) = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
        else {
            eprintln!("skipped: python3 is not installed");
            return;
        };
        assert!(output.status.success(), "{output:?}");
        let listed = String::from_utf8(output.stdout).unwrap();
        let missing: Vec<String> = listed
            .split_whitespace()
            .map(|code| code.parse::<u32>().unwrap())
            .filter_map(char::from_u32)
            .filter(|&c| !is_hidden(c))
            .map(|c| format!("U+{:04X}", c as u32))
            .collect();
        assert!(listed.len() > 100, "python listed too little: {listed}");
        assert!(missing.is_empty(), "not escaped: {missing:?}");
    }
}
