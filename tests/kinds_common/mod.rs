//! Helpers shared by `tests/udp.rs`, `tests/unix.rs` and `tests/kinds.rs`.
//!
//! Nothing here sleeps: every wait is on something that happens (a printed line, an event, a
//! process exit) and every wait has a deadline, so a broken build fails fast instead of hanging.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use socket_lab::server::{Event, EventLog};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_socket-lab");

/// The longest any single step may take before the test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// An event log that hands each event to the test through a channel.
pub fn channel_log() -> (EventLog, Receiver<Event>) {
    let (sender, receiver) = mpsc::channel();
    let log: EventLog = Arc::new(move |event| {
        // The test may have finished and dropped the receiver: nothing to do then.
        let _ = sender.send(event);
    });
    (log, receiver)
}

/// The next event the server logs, or a test failure after [`STEP_TIMEOUT`].
pub fn next_event(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("the server logged nothing within {STEP_TIMEOUT:?}: {e}"))
}

/// A `socket-lab server` process, killed when dropped.
pub struct ServerProcess {
    /// `None` once [`ServerProcess::terminate`] has taken it to wait for.
    child: Option<Child>,
    /// What followed `listening on ` in the first stderr line.
    pub addr: String,
    /// The rest of stderr, line by line, read on a thread of its own.
    pub stderr_lines: Receiver<String>,
}

impl ServerProcess {
    /// Starts the server with `args` and waits for its `listening on ADDR` line.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_command("server", args)
    }

    /// [`ServerProcess::start`] for another subcommand that serves (`http`).
    pub fn start_command(command: &str, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(BINARY)
            .arg(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start socket-lab server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_lines = read_lines_on_a_thread(stderr);
        let first = match stderr_lines.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the server printed no `listening on` line within {STEP_TIMEOUT:?}");
            }
        };
        let Some(addr) = first.strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the server's first stderr line should be `listening on ADDR`, not {first:?}");
        };
        ServerProcess {
            addr: addr.to_string(),
            child: Some(child),
            stderr_lines,
        }
    }

    /// The port from `listening on 127.0.0.1:PORT` (or `[::1]:PORT`).
    pub fn port(&self) -> String {
        let (_, port) = self
            .addr
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("no port in {:?}", self.addr));
        port.to_string()
    }

    /// The next stderr line, waiting at most [`STEP_TIMEOUT`].
    pub fn next_stderr_line(&self) -> String {
        self.stderr_lines
            .recv_timeout(STEP_TIMEOUT)
            .unwrap_or_else(|e| panic!("no further stderr line from the server: {e}"))
    }

    /// Writes to the server's stdin (`--pause-accept` waits for a line there).
    pub fn press_enter(&mut self) {
        use std::io::Write;
        let child = self.child.as_mut().expect("the server is running");
        let stdin = child.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(b"\n")
            .expect("cannot write to the server's stdin");
        stdin.flush().expect("cannot flush the server's stdin");
    }

    /// Stops the server (SIGKILL: these tests check the log, not the shutdown) and returns
    /// everything it wrote to stdout.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().expect("the server is running");
        let _ = child.kill();
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut stdout)
                .expect("cannot read the server's stdout");
        }
        let _ = child.wait();
        stdout
    }

    /// Sends SIGTERM, as Ctrl-C would, waits for the process to exit by itself, and returns
    /// how it exited and everything it wrote to stdout.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("the server is running");
        let pid = i32::try_from(child.id()).expect("process ids fit in an i32");
        // SAFETY: kill(2) with the id of a child we started and have not yet reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "cannot send SIGTERM to the server");
        // Wait on a thread so the wait itself can time out.
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = String::new();
            if let Some(mut pipe) = child.stdout.take() {
                let _ = pipe.read_to_string(&mut stdout);
            }
            let _ = done_tx.send(child.wait().map(|status| (status, stdout)));
        });
        done_rx
            .recv_timeout(STEP_TIMEOUT)
            .expect("the server did not exit within the timeout after SIGTERM")
            .expect("cannot wait for the server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_lines_on_a_thread(stderr: ChildStderr) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}
