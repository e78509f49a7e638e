//! A pseudo-terminal for tests: what a person at a terminal types and sees, with the kernel's
//! line discipline in between (echo, Enter, Ctrl-D as end of input, `\n` shown as `\r\n`).
//!
//! `openpty` gives two ends: the program under test gets the *terminal* end as its stdin,
//! stdout or stderr (so `isatty` says yes), and the test holds the *controller* end, where it
//! writes keystrokes and reads the screen.
#![allow(dead_code)] // each test file uses a different part of this module

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Ctrl-D: at the start of a line, end of input; after text, "send what is typed so far".
pub const CTRL_D: &[u8] = b"\x04";

pub struct Pty {
    keyboard: File,
    screen: Receiver<Vec<u8>>,
    terminal: OwnedFd,
    /// Everything shown so far.
    seen: Vec<u8>,
}

impl Pty {
    /// A terminal 160 columns wide, so no line the tests wait for wraps.
    pub fn open() -> Pty {
        let last_error = std::io::Error::last_os_error;
        // O_CLOEXEC on both ends from the start: tests run on parallel threads, and a child
        // another test spawns must not inherit (and so hold open) this terminal.
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: posix_openpt takes flags only and returns a new descriptor or -1.
        let controller = unsafe { libc::posix_openpt(flags) };
        assert!(controller >= 0, "posix_openpt: {}", last_error());
        // SAFETY: the descriptor was just opened, and nothing else owns it.
        let controller = unsafe { OwnedFd::from_raw_fd(controller) };
        let fd = controller.as_raw_fd();
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: fd is an open pty controller; `name` is valid for writes of its length.
        unsafe {
            assert_eq!(libc::grantpt(fd), 0, "grantpt: {}", last_error());
            assert_eq!(libc::unlockpt(fd), 0, "unlockpt: {}", last_error());
            assert_eq!(
                libc::ptsname_r(fd, name.as_mut_ptr(), name.len()),
                0,
                "ptsname_r"
            );
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
        let terminal = unsafe { libc::open(name.as_ptr(), flags) };
        assert!(terminal >= 0, "open the terminal end: {}", last_error());
        // SAFETY: as above, a fresh descriptor nothing else owns.
        let terminal = unsafe { OwnedFd::from_raw_fd(terminal) };
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the valid pointer given.
        let result = unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(result, 0, "set the window size: {}", last_error());
        let keyboard = File::from(controller.try_clone().expect("dup the controller"));
        let mut display = File::from(controller);
        let (tx, screen) = mpsc::channel();
        thread::spawn(move || {
            let mut buffer = [0; 4096];
            // Once every copy of the terminal end is closed, read fails with EIO: the end.
            while let Ok(n @ 1..) = display.read(&mut buffer) {
                if tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Pty {
            keyboard,
            screen,
            terminal,
            seen: Vec::new(),
        }
    }

    /// The terminal end, for a child's stdin, stdout or stderr.
    pub fn stdio(&self) -> Stdio {
        Stdio::from(self.terminal.try_clone().expect("dup the terminal end"))
    }

    /// Closes the test's own copy of the terminal end, once the child has its copies: the
    /// screen then ends when the child exits.
    pub fn close_terminal_end(&mut self) {
        let placeholder = File::open("/dev/null").expect("open /dev/null");
        drop(std::mem::replace(
            &mut self.terminal,
            OwnedFd::from(placeholder),
        ));
    }

    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.keyboard
            .write_all(bytes)
            .expect("type on the terminal");
    }

    /// Waits (at most `wait`) until the screen shows `expected`, and returns all it showed.
    pub fn wait_for(&mut self, expected: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let shown = String::from_utf8_lossy(&self.seen).into_owned();
            if shown.contains(expected) {
                return shown;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(_) => panic!("the terminal never showed {expected:?}; it showed {shown:?}"),
            }
        }
    }

    /// Everything the screen shows until the child closes the terminal (exits), at most `wait`.
    pub fn until_closed(&mut self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return String::from_utf8_lossy(&self.seen).into_owned();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the terminal was still open after {wait:?}; it showed {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }
}
