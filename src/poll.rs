//! `poll(2)`: wait until one of several sockets is ready, the one `unsafe` call for it.
//!
//! A blocking `recv` waits on one socket. A program that must also notice something else (a
//! stop request, the keyboard, a connect that may never finish) asks the kernel to wait on
//! several descriptors at once and say which are ready: `poll`. The walkthrough never needs
//! it (`server.py` blocks in `accept`, then in `recv`), and that is exactly why its server
//! cannot be stopped cleanly or serve two clients.
//!
//! Here it is used by the accept loop (the listener and a wake-up socket), the datagram
//! server, the client (the keyboard and the server's socket), the backlog lesson (a connect
//! that may never complete) and [`crate::send`] (room in the send buffer). The event loop
//! engine waits with `epoll` instead, through `mio`: `poll` hands the kernel the whole list on
//! every call, which is fine for two descriptors and not for ten thousand.
//!
//! Readiness is a hint, not a promise: "readable" means a `recv` could proceed when `poll`
//! returned. It may still block (another thread took the data or the connection first, or
//! the readiness was spurious: select(2), accept(2)), so a socket that must never block is
//! also made non-blocking, as the listener is; and the `recv` may return 0 (the peer closed)
//! or an error. `POLLHUP` and `POLLERR` are reported whether asked
//! for or not, and count as ready here, so the caller's next call finds out what happened.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// What to wait for on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// `POLLIN`: a `recv` (or `accept`) would not block.
    Read,
    /// `POLLOUT`: the send buffer has room, or a non-blocking connect has finished.
    Write,
}

/// One descriptor to watch, and after [`wait`], whether it is ready. It borrows the
/// descriptor, so the socket cannot be closed while it is watched.
#[repr(transparent)]
pub struct Watch<'fd> {
    pollfd: libc::pollfd,
    socket: PhantomData<std::os::fd::BorrowedFd<'fd>>,
}

impl<'fd> Watch<'fd> {
    pub fn new(socket: &'fd impl AsFd, want: Want) -> Watch<'fd> {
        let events = match want {
            Want::Read => libc::POLLIN,
            Want::Write => libc::POLLOUT,
        };
        Watch {
            pollfd: libc::pollfd {
                fd: socket.as_fd().as_raw_fd(),
                events,
                revents: 0,
            },
            socket: PhantomData,
        }
    }

    /// Ready for what was asked, or hung up, or failed: the next call will not block.
    pub fn is_ready(&self) -> bool {
        self.pollfd.revents != 0
    }

    /// `POLLHUP`: the peer closed both directions (or a Unix socket's peer is gone).
    pub fn hung_up(&self) -> bool {
        self.pollfd.revents & libc::POLLHUP != 0
    }
}

/// Waits until at least one watched descriptor is ready, or `timeout` passes (`None`: no
/// limit). Returns how many are ready: 0 means the time ran out. A signal that interrupts
/// the wait is an [`io::ErrorKind::Interrupted`] error, for the caller to retry or not.
pub fn wait(watches: &mut [Watch<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    for watch in watches.iter_mut() {
        watch.pollfd.revents = 0;
    }
    let millis = match timeout {
        None => -1,
        // Rounded up, so a wait shorter than a millisecond is not a zero-length busy poll.
        Some(timeout) => {
            let millis = timeout.as_nanos().div_ceil(1_000_000);
            i32::try_from(millis).unwrap_or(i32::MAX)
        }
    };
    let count = libc::nfds_t::try_from(watches.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors to poll"))?;
    // SAFETY: `Watch` is `repr(transparent)` over `libc::pollfd`, so the slice is a valid array
    // of `count` pollfd structs, borrowed mutably for the call; each fd is borrowed from a live
    // socket for as long as its `Watch` exists.
    let ready = unsafe { libc::poll(watches.as_mut_ptr().cast::<libc::pollfd>(), count, millis) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(ready).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_with_nothing_to_read_times_out_and_one_with_bytes_is_ready() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let mut watches = [Watch::new(&b, Want::Read), Watch::new(&d, Want::Read)];
        assert_eq!(
            wait(&mut watches, Some(Duration::from_millis(1))).unwrap(),
            0
        );
        assert!(!watches[0].is_ready() && !watches[1].is_ready());
        a.write_all(b"x").unwrap();
        assert_eq!(wait(&mut watches, None).unwrap(), 1);
        assert!(watches[0].is_ready());
        assert!(!watches[1].is_ready());
        assert!(!watches[0].hung_up());
    }

    #[test]
    fn a_closed_peer_is_reported_as_hung_up() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let mut watches = [Watch::new(&b, Want::Read)];
        assert_eq!(wait(&mut watches, None).unwrap(), 1);
        assert!(watches[0].is_ready() && watches[0].hung_up());
    }

    #[test]
    fn an_empty_send_buffer_is_writable() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut watches = [Watch::new(&a, Want::Write)];
        assert_eq!(wait(&mut watches, Some(Duration::ZERO)).unwrap(), 1);
    }
}
