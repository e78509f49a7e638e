//! Helpers for tests that drive the real `socket-lab` binary.
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary, for one-shot runs with `write_stdin` and `assert`.
pub fn socket_lab() -> assert_cmd::Command {
    assert_cmd::cargo::cargo_bin_cmd!("socket-lab")
}

/// The binary as a plain process, for long-running servers and interactive clients.
pub fn socket_lab_process() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("socket-lab"))
}

/// A `socket-lab server` process whose output is read line by line as it appears.
pub struct ServerProcess {
    pub child: Child,
    /// The address from its first stderr line, `listening on ADDR`.
    pub addr: String,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl ServerProcess {
    /// Starts `socket-lab <args>` and waits for `listening on ADDR` on its stderr.
    pub fn start(args: &[&str]) -> ServerProcess {
        let mut command = socket_lab_process();
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ServerProcess::from_command(command)
    }

    /// Starts a prepared command (stdout and stderr piped) and waits for its address.
    pub fn from_command(mut command: Command) -> ServerProcess {
        let mut child = command.spawn().expect("spawn socket-lab");
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        let first = stderr
            .recv_timeout(WAIT)
            .expect("the server printed nothing on stderr");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("first stderr line should be `listening on ADDR`, got {first:?}")
            })
            .to_string();
        ServerProcess {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    pub fn port(&self) -> String {
        self.addr
            .rsplit(':')
            .next()
            .expect("ADDR has a port")
            .to_string()
    }

    /// The next line the server prints on stdout, waiting at most [`WAIT`].
    pub fn next_line(&self) -> String {
        self.stdout
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no log line from the server within {WAIT:?}: {e}"))
    }

    /// Reads log lines until one equals `expected`, returning the lines before it.
    pub fn wait_for_line(&self, expected: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let line = self.stdout.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("server never logged {expected:?}; it logged {before:#?}")
            });
            if line == expected {
                return before;
            }
            before.push(line);
        }
    }

    /// Reads log lines until one ends with `suffix`.
    pub fn wait_for_line_ending(&self, suffix: &str) -> String {
        self.wait_for_line_ending_with(&[suffix])
    }

    /// Reads log lines until one ends with any of `suffixes`, and returns it.
    pub fn wait_for_line_ending_with(&self, suffixes: &[&str]) -> String {
        loop {
            let line = self
                .stdout
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("server never logged a line ending with {suffixes:?}"));
            if suffixes.iter().any(|suffix| line.ends_with(suffix)) {
                return line;
            }
        }
    }

    /// The next stderr line, if one comes within `wait`.
    pub fn try_stderr_line(&self, wait: Duration) -> Option<String> {
        self.stderr.recv_timeout(wait).ok()
    }

    /// Every stdout line still to come, once the process has exited and closed its output.
    pub fn remaining_lines(&self) -> Vec<String> {
        std::iter::from_fn(|| self.stdout.recv_timeout(WAIT).ok()).collect()
    }

    pub fn next_stderr_line(&self) -> String {
        self.stderr
            .recv_timeout(WAIT)
            .expect("a line on the server's stderr")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid has no memory-safety preconditions.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards each line of `reader` to a channel, so tests can wait on output with a timeout.
pub fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Splits what a server sent before closing into whole HTTP responses, framed by their
/// `Content-Length`, and returns their status codes. A response cut short, or bytes that are
/// not a response, are an error: "it starts with HTTP/1.1" would pass a truncated one.
pub fn whole_responses(mut bytes: &[u8]) -> Result<Vec<u16>, String> {
    let mut statuses = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(bytes) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "response {} is cut short in its head: {:?}",
                    statuses.len() + 1,
                    String::from_utf8_lossy(bytes)
                ));
            }
            Err(e) => return Err(format!("response {}: {e}", statuses.len() + 1)),
        };
        let length: usize = response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("content-length"))
            .and_then(|header| std::str::from_utf8(header.value).ok()?.trim().parse().ok())
            .ok_or_else(|| format!("response {} has no Content-Length", statuses.len() + 1))?;
        let end = head + length;
        if bytes.len() < end {
            return Err(format!(
                "response {} is cut short: {} of its {length} body bytes",
                statuses.len() + 1,
                bytes.len() - head
            ));
        }
        statuses.push(response.code.unwrap_or(0));
        bytes = &bytes[end..];
    }
    Ok(statuses)
}

#[test]
fn whole_responses_finds_a_truncated_one() {
    let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(whole_responses(one), Ok(vec![200]));
    assert_eq!(
        whole_responses(&[&one[..], &one[..]].concat()),
        Ok(vec![200, 200])
    );
    assert!(whole_responses(&one[..one.len() - 1]).is_err());
    assert!(whole_responses(b"HTTP/1.1 200").is_err());
    assert_eq!(whole_responses(b""), Ok(vec![]));
}

/// How the tests start headless Chromium (Debian's, `/usr/bin/chromium`): no sandbox (CI runs
/// as root), no GPU, and none of the background connections that this machine's closed
/// network refuses, many at a time.
pub const HEADLESS_CHROMIUM: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
