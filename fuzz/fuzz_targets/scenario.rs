//! Fuzz target: the scenario-file parser on arbitrary text. It must return `Ok` or a
//! `file:line` error for anything, never panic.
//!
//! Run: `cargo fuzz run --sanitizer none scenario` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_lab::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    // Scenario files are text: the runner reads them with `read_to_string`.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scenario::parse(text);
    }
});
