//! Fuzz target: the one escape every peer-controlled string goes through before a log line
//! or a terminal. For any bytes: the escaped text is one line with no control, format or
//! separator character a terminal would act on, and unescaping it gives back the bytes.
//!
//! Run: `cargo fuzz run --sanitizer none log_escape` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_lab::escape::{escape, unescape};

fuzz_target!(|data: &[u8]| {
    let shown = escape(data);
    assert!(
        !shown.chars().any(|c| c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')),
        "{shown:?}"
    );
    assert_eq!(unescape(&shown).ok().as_deref(), Some(data));
});
