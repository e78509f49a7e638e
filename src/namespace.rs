//! A network of the lab's own: a private user and network namespace, so that an ordinary
//! user may watch every packet on its loopback interface.
//!
//! Capturing packets needs `CAP_NET_RAW`, which an ordinary user does not have over the
//! machine's network. But Linux lets an unprivileged process create a *user namespace*, in
//! which it is root, together with a *network namespace* owned by it: a fresh network stack
//! with nothing in it but a loopback interface, over which that root holds every capability
//! (user_namespaces(7), network_namespaces(7)). So `socket-lab run --wire`:
//!
//! 1. calls `unshare(CLONE_NEWUSER | CLONE_NEWNET)`, which must happen before the process
//!    starts any thread (unshare(2): `CLONE_NEWUSER` fails with `EINVAL` in a multithreaded
//!    process);
//! 2. maps its own user and group to root inside the namespace (`/proc/self/uid_map`,
//!    `gid_map`, after writing `deny` to `/proc/self/setgroups`, as user_namespaces(7)
//!    requires of an unprivileged process);
//! 3. brings the namespace's `lo` up (it starts down), with the `SIOCSIFFLAGS` ioctl `ip link
//!    set lo up` uses.
//!
//! Every socket the scenario then makes lives in that namespace: 127.0.0.1 there is a
//! different loopback from the machine's, with only the lesson's traffic on it. Where user
//! namespaces are turned off (`/proc/sys/user/max_user_namespaces` is 0, or a security module
//! forbids them) [`enter_private`] says why in one line and the caller goes on without the
//! wire.

use std::fmt;
use std::io;

/// Why a private namespace could not be entered.
#[derive(Debug)]
pub enum NamespaceError {
    /// The process already runs more than one thread.
    Threaded(usize),
    /// `unshare` refused: user namespaces are off or restricted here.
    Unshare(io::Error),
    /// Writing the uid or gid map failed.
    Map {
        file: &'static str,
        source: io::Error,
    },
    /// The namespace's loopback interface could not be brought up.
    LoopbackUp(io::Error),
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceError::Threaded(threads) => write!(
                f,
                "cannot enter a private network namespace: the process already runs {threads} threads (unshare(CLONE_NEWUSER) needs a single-threaded process)"
            ),
            NamespaceError::Unshare(source) => write!(
                f,
                "cannot enter a private network namespace: unshare failed ({source}); user namespaces may be off here (see /proc/sys/user/max_user_namespaces, or kernel.apparmor_restrict_unprivileged_userns on Ubuntu)"
            ),
            NamespaceError::Map { file, source } => write!(
                f,
                "cannot enter a private network namespace: writing {file} failed ({source})"
            ),
            NamespaceError::LoopbackUp(source) => write!(
                f,
                "cannot bring up lo in the private network namespace: {source}"
            ),
        }
    }
}

impl std::error::Error for NamespaceError {}

/// Moves this process into a new user and network namespace of its own, with `lo` up.
/// Call it before starting any thread.
pub fn enter_private() -> Result<(), NamespaceError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(NamespaceError::Threaded(threads));
    }
    // Read before unshare: afterwards our ids are "unmapped" until the maps are written.
    // SAFETY: getuid and getgid cannot fail and touch no memory of ours.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: unshare takes flags only; on failure it changes nothing.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        return Err(NamespaceError::Unshare(io::Error::last_os_error()));
    }
    let write = |file: &'static str, text: String| {
        std::fs::write(file, text).map_err(|source| NamespaceError::Map { file, source })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    loopback_up().map_err(NamespaceError::LoopbackUp)?;
    ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process moved into a private network namespace with [`enter_private`].
pub fn entered() -> bool {
    ENTERED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The threads of this process, from `/proc/self/status` (1 if it cannot be read: then
/// unshare itself will say).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|count| count.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// `ip link set lo up`: read the interface's flags, add `IFF_UP`, write them back.
fn loopback_up() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq that `request` points
    // to, which lives across both calls; the name is NUL-terminated.
    unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
