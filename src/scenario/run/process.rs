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
    let status = match std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) {
        Ok(status) => status,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let missing = || io::Error::new(io::ErrorKind::InvalidData, "no ctxt_switches lines");
    Ok(Some(Switches {
        voluntary: field(&status, "voluntary_ctxt_switches").ok_or_else(missing)?,
        involuntary: field(&status, "nonvoluntary_ctxt_switches").ok_or_else(missing)?,
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
