//! Scenarios: scripted client sessions that read as a story and run as a test.
//!
//! A scenario file in `scenarios/` is a lesson. `#` lines are its narration; the other lines
//! are socket calls in the walkthrough's words, one per line, each with the result it must
//! have (the idea is packetdrill's). For example, the walkthrough's claim 10:
//!
//! ```text
//! # recv(n) takes at most n bytes; the rest waits for the next recv
//! server tcp recv-size=8
//!
//! alice: connect
//! alice: send "hello, wide world!\r\n" = 20
//! server: log "[alice] send a message to server: hello, w"
//! server: log "[alice] send a message to server: ide worl"
//! server: log r"[alice] send a message to server: d!\r\n"
//! alice: recv-exactly 57 = "server recv success" * 3
//! ```
//!
//! [`parse`] turns the text into a [`Scenario`]; [`run`] starts the server it names on a
//! free port (or a fresh Unix socket path), plays every step against it over real sockets,
//! and returns a [`Transcript`] or a [`Failure`] that says `file:line`, the step, what was
//! expected and what happened. Every step waits on readiness (a read, a log line, a connect)
//! for at most the scenario's `timeout`; nothing sleeps.
//!
//! The same file is a test (`tests/scenarios.rs` makes one test per file) and a narrated demo
//! (`socket-lab run scenarios/03-*`), and `socket-lab lessons` lists them as the walkthrough's
//! table of contents.
//!
//! A lesson can be played from a string too, which is how a test of the format itself starts:
//!
//! ```
//! use socket_lab::scenario::{self, Scenario, Target};
//!
//! let lesson = Scenario::parse(
//!     "# One message, one ack\n\
//!      server tcp\n\
//!      alice: connect\n\
//!      alice: send \"hello\" = 5\n\
//!      alice: recv 1024 = \"server recv success\"\n\
//!      server: log \"[alice] send a message to server: hello\"\n",
//! )?;
//! let transcript = scenario::run(&lesson, "example", &Target::OwnServer, &mut |_| {})?;
//! assert!(transcript.to_string().contains("server recv(1024) from alice → \"hello\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod parse;
pub mod report;
pub mod run;

pub use parse::{ParseError, Scenario};
pub use report::{Entry, EntryKind, Failure, Transcript, render};
pub use run::{Target, run};

use std::path::{Path, PathBuf};

/// The lesson files in `dir`, in reading order (their names start with the lesson number).
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    Ok(files)
}

/// The lesson's title: its first `#` line, without parsing the rest.
pub fn title_of(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .and_then(|line| line.strip_prefix('#'))
        .map(str::trim)
}
