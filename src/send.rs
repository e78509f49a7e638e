//! `send` returns a count, and the count can be less than you asked for.
//!
//! The walkthrough says `send` "returns the number of bytes sent" (claim 8) and moves on. The
//! number matters: `send` copies what fits into the kernel's send buffer and returns how much
//! that was. With a blocking socket it usually waits until everything fit, which hides the
//! point; a non-blocking socket, a small `SO_SNDBUF` and a peer that does not read show it at
//! once: the first `send` of a megabyte returns a few kilobytes, the next one fails with
//! `WouldBlock` ("nothing fits now, try later"). Python's `sendall` and Rust's `write_all`
//! are the loop that sends the rest; [`send_all`] is that loop written out, waiting with
//! `poll` for room in the buffer instead of spinning, and recording every count so a lesson
//! can print them.
//!
//! `tests/kinds.rs`: `send_returns_fewer_bytes_than_asked_when_the_buffer_is_full` and
//! `send_all_finishes_once_the_peer_reads`, and the property test
//! `send_all_delivers_every_byte` over many sizes.

use crate::poll::{self, Want, Watch};
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// What [`send_all`] did on the way.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// What each `send` that succeeded returned, in order: these add up to the bytes given.
    pub counts: Vec<usize>,
    /// How many times `send` said `WouldBlock` and the loop waited for room.
    pub waits: usize,
}

/// Sends every byte of `bytes`, however many `send` calls it takes, waiting at most `timeout`
/// in all. Works on blocking and non-blocking sockets alike: a blocking one simply never says
/// `WouldBlock`. Fails with `TimedOut` if the peer stops reading for longer than that.
pub fn send_all<S: Write + std::os::fd::AsFd>(
    socket: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<SendReport> {
    let deadline = crate::engine::deadline_after(timeout);
    let mut report = SendReport::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match socket.write(rest) {
            // A stream socket never accepts zero bytes of a non-empty buffer unless it is
            // broken; treat it as write_all does, or this loop would never end.
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(count) => {
                report.counts.push(count);
                rest = &rest[count..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                report.waits += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !wait_writable(socket, left)? {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} of {} bytes still unsent after {timeout:?}: the peer is not reading",
                            rest.len(),
                            bytes.len()
                        ),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// `poll(POLLOUT)`: true once the send buffer has room, false if `timeout` passed first.
fn wait_writable(socket: &impl std::os::fd::AsFd, timeout: Duration) -> io::Result<bool> {
    let mut watches = [Watch::new(socket, Want::Write)];
    match poll::wait(&mut watches, Some(timeout)) {
        // A signal interrupted the wait: report "ready" and let the send loop try again.
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(error) => Err(error),
        Ok(0) => Ok(false),
        // POLLERR and POLLHUP count as ready too: the next send reports the real error.
        Ok(_) => Ok(true),
    }
}
