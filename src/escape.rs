//! Showing bytes a peer sent, safely.
//!
//! The walkthrough's server prints whatever `recv` returned. That is fine for `hello`, but a
//! peer controls those bytes: `\x1b]0;pwned\x07` retitles your terminal, `\r` rewrites the line
//! you are reading, `\n` forges a whole log line of its own, and bytes that are not UTF-8 make
//! Python's `decode()` raise. So every byte a peer sent is shown through [`escape`]: printable
//! UTF-8 as itself, everything else as a Rust-style escape (`\r`, `\n`, `\0`, `\x1b`, `\xff`).
//! One message is always one log line, and the line shows exactly which bytes arrived
//! (`tests/cli.rs` checks NUL, invalid UTF-8 and an escape sequence end to end).

/// Renders `bytes` as one line of printable text: UTF-8 text stays as it is, control
/// characters and bytes that are not valid UTF-8 become escapes, and `\` becomes `\\` so the
/// result can be read back unambiguously (the scenario format parses the same escapes).
///
/// ```
/// use socket_lab::escape::escape;
///
/// assert_eq!(escape(b"hello"), "hello");
/// // A terminal escape, a line ending and a byte that is not UTF-8: all shown, none obeyed.
/// assert_eq!(escape(b"\x1b[31mred\r\n\xff"), r"\x1b[31mred\r\n\xff");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    // C0 controls and DEL fit in one byte; C1 controls (U+0080..U+009F) are
                    // shown as code points so the escape still names one character.
                    if (c as u32) < 0x80 {
                        out.push_str(&format!("\\x{:02x}", c as u32));
                    } else {
                        out.push_str(&format!("\\u{{{:x}}}", c as u32));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

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
    fn a_truncated_utf8_sequence_is_shown_byte_by_byte() {
        // "你" is e4 bd a0: a recv that stops after two of its bytes shows both as escapes.
        assert_eq!(escape(b"ok\xe4\xbd"), "ok\\xe4\\xbd");
    }
}
