//! What the kernel says about this process: its resident memory, its threads, its open
//! descriptors. The lesson's server runs in this process, so this is where its cost shows.
//!
//! Everything here is read from `/proc` (proc(5)):
//!
//! - `/proc/self/smaps_rollup`, `Rss`: the memory of this process that is in RAM now, in
//!   KiB, summed over all its mappings. (`VmRSS` in `/proc/self/status` says the same more
//!   cheaply, but proc(5) warns that it is inaccurate, "because of a kernel-internal scalability
//!   optimization".) Memory the kernel holds *for* the process, such as its sockets' buffers and
//!   each thread's kernel stack, is the kernel's own and is not in it.
//! - `/proc/self/task/TID/status`, `voluntary_ctxt_switches` and
//!   `nonvoluntary_ctxt_switches`: how often that thread left the CPU because it waited
//!   (for a `recv`, a lock, `epoll_wait`), and how often the scheduler took the CPU from it.
//!   A thread that no longer exists has no directory there.
//! - `/proc/thread-self/fd`: one entry per open descriptor of the table this thread uses.

use std::io;

/// How often one thread was switched out, as its `status` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Switches {
    /// It waited: blocked in a call until something happened.
    pub(super) voluntary: u64,
    /// The scheduler took the CPU from it to run another thread.
    pub(super) involuntary: u64,
}

/// The switches of several threads, added up.
impl std::iter::Sum for Switches {
    fn sum<I: Iterator<Item = Switches>>(threads: I) -> Switches {
        threads.fold(Switches::default(), |all, thread| Switches {
            voluntary: all.voluntary + thread.voluntary,
            involuntary: all.involuntary + thread.involuntary,
        })
    }
}

/// One `Name:   value` field of a `/proc/.../status` file, as a number.
fn field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// This process's resident memory (`Rss` in `smaps_rollup`), in bytes.
pub(super) fn resident_memory() -> io::Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    field(&rollup, "Rss")
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Rss line"))
}

/// The context switches of this process's thread `tid`, or `None` if it has exited.
pub(super) fn switches_of(tid: i32) -> io::Result<Option<Switches>> {
    match std::fs::File::open(format!("/proc/self/task/{tid}/status")) {
        Ok(status) => switches_in(status),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The context switches in a thread's open `status` file, or `None` if the thread exited
/// since it was opened: the read then fails with ESRCH.
fn switches_in(mut status: std::fs::File) -> io::Result<Option<Switches>> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    status.rewind()?;
    match status.read_to_string(&mut text) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(e),
    }
    let missing = || io::Error::new(io::ErrorKind::InvalidData, "no ctxt_switches lines");
    Ok(Some(Switches {
        voluntary: field(&text, "voluntary_ctxt_switches").ok_or_else(missing)?,
        involuntary: field(&text, "nonvoluntary_ctxt_switches").ok_or_else(missing)?,
    }))
}

/// How many descriptors are open in this thread's descriptor table.
pub(super) fn open_descriptors() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/thread-self/fd")?.count())
}

/// Bytes as a person reads them: `812 KiB`, `23.4 MiB`.
pub(super) fn show_size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes < 1024 * 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_field_is_read_as_its_number() {
        let status = "Name:\tx\nVmRSS:\t   5120 kB\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t2\n";
        assert_eq!(field(status, "VmRSS"), Some(5120));
        assert_eq!(field(status, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(field(status, "nonvoluntary_ctxt_switches"), Some(2));
        assert_eq!(field(status, "VmHWM"), None);
    }

    #[test]
    fn this_thread_and_this_process_are_found() {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        assert!(switches_of(tid).unwrap().is_some());
        assert!(resident_memory().unwrap() > 0);
        assert!(open_descriptors().unwrap() >= 3);
        assert_eq!(switches_of(i32::MAX).unwrap(), None);
    }

    /// A thread can exit between the open of its `status` and the read: that is a thread
    /// gone, not a failure. Its task lingers for a moment after the join, so the file is
    /// read again until the kernel says so, within a deadline.
    #[test]
    fn a_thread_that_exits_after_its_status_is_opened_is_gone() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid takes no arguments and cannot fail.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = go_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let status = std::fs::File::open(format!("/proc/self/task/{tid}/status")).unwrap();
        assert!(switches_in(status.try_clone().unwrap()).unwrap().is_some());
        drop(go_tx);
        thread.join().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match switches_in(status.try_clone().unwrap()) {
                Ok(None) => break,
                Ok(Some(_)) if std::time::Instant::now() < deadline => std::thread::yield_now(),
                other => panic!("the exited thread's status read as {other:?}"),
            }
        }
        assert_eq!(switches_of(tid).unwrap(), None);
    }

    #[test]
    fn the_switches_of_several_threads_add_up() {
        let threads = [
            Switches {
                voluntary: 3,
                involuntary: 1,
            },
            Switches {
                voluntary: 4,
                involuntary: 2,
            },
        ];
        assert_eq!(
            threads.into_iter().sum::<Switches>(),
            Switches {
                voluntary: 7,
                involuntary: 3,
            }
        );
        assert_eq!(std::iter::empty().sum::<Switches>(), Switches::default());
    }

    #[test]
    fn sizes_read_as_a_person_says_them() {
        assert_eq!(show_size(812 * 1024), "812 KiB");
        assert_eq!(show_size(23 * 1024 * 1024 + 400 * 1024), "23.4 MiB");
        // A MiB is said as one, not as 1024 KiB.
        assert_eq!(show_size(1024 * 1024 - 1), "1023 KiB");
        assert_eq!(show_size(1024 * 1024), "1.0 MiB");
    }
}
