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
//! The module is laid out as the work flows:
//!
//! - [`lex`] splits a line into words, punctuation and byte strings, and range-checks numbers;
//! - [`parse`] turns the text into a [`Scenario`] ([`syntax`] is its tree, and [`syntax::VERBS`]
//!   the one list of verbs); [`mod@print`] writes a scenario back as text;
//! - [`mod@run`] starts the server the file names on a free port (or a fresh Unix socket path),
//!   plays every step against it over real sockets, and returns a [`Transcript`] or a
//!   [`Failure`] that says `file:line`, the step, what was expected and what happened;
//! - [`timeline`] stamps every event, the clients' and the server's, where it happens, so the
//!   transcript is in the order things happened;
//! - [`report`] is the transcript itself and how it is printed (`--full` shows every byte).
//!
//! Every step waits on readiness (a read, a log line, a connect) for at most the scenario's
//! `timeout`; nothing sleeps.
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
//! transcript.check_causality()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod lex;
pub mod parse;
pub mod print;
pub mod report;
pub mod run;
pub mod syntax;
pub mod timeline;

pub use parse::ParseError;
pub use report::{Entry, EntryKind, Fact, Failure, Symptom, Toward, Transcript, View, render};
pub use run::{Target, Views, run, run_with};
pub use syntax::Scenario;

use std::path::{Path, PathBuf};

/// The largest lesson file read: the longest lesson is a few KiB, and a file is read whole.
pub const MAX_FILE: u64 = 1024 * 1024;

/// Reads a lesson file: a regular file of at most [`MAX_FILE`] bytes, as UTF-8 text.
/// `socket-lab run /dev/zero` is an error at once, not a run until memory is gone.
pub fn read_lesson(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file: a lesson is a text file such as scenarios/01-one-message.txt",
        ));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("longer than {MAX_FILE} bytes, the most a lesson file may be"),
        ));
    }
    Ok(text)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lesson_file_is_read_whole_up_to_its_limit() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let at_most = dir.path().join("at-most.txt");
        let text = "# a\n".repeat(usize::try_from(MAX_FILE).expect("small") / 4);
        std::fs::write(&at_most, &text).expect("written");
        assert_eq!(read_lesson(&at_most).expect("read"), text);
        let over = dir.path().join("over.txt");
        std::fs::write(&over, format!("{text}#")).expect("written");
        let error = read_lesson(&over).expect_err("one byte over");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            error.to_string(),
            "longer than 1048576 bytes, the most a lesson file may be"
        );
    }

    #[test]
    fn the_lessons_in_a_folder_are_its_text_files_in_order() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for name in ["02-b.txt", "01-a.txt", "notes.md", "10-c.txt", "README"] {
            std::fs::write(dir.path().join(name), "# x\n").expect("written");
        }
        let found: Vec<String> = discover(dir.path())
            .expect("listed")
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["01-a.txt", "02-b.txt", "10-c.txt"]);
    }

    #[test]
    fn a_lessons_title_is_its_first_line_if_that_is_a_comment() {
        assert_eq!(
            title_of("\n  # One message  \nserver tcp\n"),
            Some("One message")
        );
        assert_eq!(title_of("server tcp\n# later\n"), None);
        assert_eq!(title_of("\n\n"), None);
    }

    #[test]
    fn a_lesson_that_is_not_a_regular_file_is_refused_at_once() {
        for path in ["/dev/zero", "/tmp"] {
            let error = read_lesson(Path::new(path)).expect_err(path);
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{path}");
            assert!(
                error.to_string().starts_with("not a regular file"),
                "{error}"
            );
        }
    }
}
