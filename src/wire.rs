//! The wire's view: every TCP segment and UDP datagram on the loopback interface, caught by
//! a packet socket, decoded, and timed by the kernel.
//!
//! The socket calls are half the story: `connect` is three segments (SYN, SYN-ACK, ACK),
//! `close` a FIN that the peer acknowledges, a full listen queue a SYN that gets no answer
//! and is sent again. A packet socket (`socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))`,
//! packet(7)) bound to `lo` receives a copy of every frame that crosses it, which is how
//! `tcpdump` and Wireshark see them. Opening one needs `CAP_NET_RAW`; `socket-lab run --wire`
//! gets it without root by entering a network namespace of its own
//! ([`crate::namespace`]), where the only traffic on `lo` is the lesson's.
//!
//! Three details a capture on loopback must get right:
//!
//! - **Each frame is seen twice** on `lo`, once leaving (`PACKET_OUTGOING`) and once arriving
//!   (`PACKET_HOST`): [`Capture`] keeps the outgoing copy only.
//! - **When** a segment crossed the wire is the kernel's timestamp (read back
//!   per frame with the `SIOCGSTAMPNS` ioctl), not the time the capture got round to
//!   reading it; the transcript places segments by that time among the socket calls. For
//!   that, [`Capture::drain`] must hold every segment that crossed before it was called, not
//!   only those the reading thread has got round to: the kernel copies a frame into the
//!   packet socket's queue while it sends it, so the thread reads the queue empty before it
//!   answers. Without this, a server's "connection reset" could be shown before the RST that
//!   caused it (it was, in 2 of 10 runs of lesson 30).
//! - **Which clock**: the kernel stamps frames with the real-time clock, and the rest of a run
//!   measures time on the monotonic one ([`Instant`]). The two need not run together: on the
//!   machine this lab was written on, the real-time clock stepped 0.5 ms ahead every 100 ms,
//!   so a mapping between them taken once put segments 5 ms late after one second, after the
//!   calls they caused. So a segment keeps its real-time stamp, and is placed among events
//!   by a reading of the same clock taken with each event.
//! - **Frames on `lo` carry an Ethernet header** with zero addresses, so they decode like any
//!   Ethernet frame. Decoding is `etherparse`'s job; this module only turns its slices into
//!   the few fields a lesson talks about ([`Segment`]).
//!
//! `--pcap FILE` writes the same frames to a standard pcap file (the `pcap-file` crate), for
//! Wireshark or `tshark -r FILE`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use socket2::{Domain, Protocol as SocketProtocol, Socket, Type};

/// The largest frame kept: loopback's MTU is 64 KiB, and a send on `lo` may leave as one
/// segment that large (the kernel skips splitting it).
const FRAME_MAX: usize = 256 * 1024;
/// `ETH_P_ALL` from `linux/if_ether.h`: every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `SIOCGSTAMPNS` from `linux/sockios.h`: the last received packet's time, as a timespec.
const SIOCGSTAMPNS: libc::Ioctl = 0x8907;
/// How long [`Capture::open_loopback`] waits for the kernel to stamp frames, and how often
/// it looks.
const STAMPS_WAIT: Duration = Duration::from_secs(2);
const STAMPS_POLL: Duration = Duration::from_millis(20);

/// The TCP flags a lesson talks about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

impl Flags {
    /// Flags from their names, as a scenario writes them (`SYN ACK`).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for name in names {
            let flag = match name {
                "SYN" => &mut flags.syn,
                "ACK" => &mut flags.ack,
                "FIN" => &mut flags.fin,
                "RST" => &mut flags.rst,
                "PSH" => &mut flags.psh,
                other => {
                    return Err(format!(
                        "`{other}` is not a TCP flag; the flags are SYN, ACK, FIN, RST and PSH"
                    ));
                }
            };
            *flag = true;
        }
        Ok(flags)
    }
}

impl fmt::Display for Flags {
    /// `SYN`, `SYN-ACK`, `PSH-ACK`, `FIN-ACK`: the names people say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.psh, "PSH"),
            (self.ack, "ACK"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("(no flags)")
        } else {
            f.write_str(&names.join("-"))
        }
    }
}

/// What kind of segment, with the header fields a lesson shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    Tcp {
        flags: Flags,
        /// Sequence and acknowledgment numbers as on the wire; the transcript shows them
        /// relative to each side's first sequence number, as Wireshark does.
        seq: u32,
        ack: u32,
        /// The receive window the sender advertises, unscaled (as in the header).
        window: u16,
        /// A SYN's window-scale option: later windows from this side are `window << scale`.
        window_scale: Option<u8>,
    },
    Udp,
}

/// One TCP segment or UDP datagram that crossed the loopback interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// When it crossed: the kernel's timestamp, on the real-time clock it stamps frames
    /// with. Order segments against other events by this and a reading of the same clock
    /// (the timeline's `Moment::wall`), not by [`Segment::at`]: the real-time clock can
    /// step against the monotonic one (on the machine this lab was written on, by 0.5 ms
    /// every 100 ms), which no single mapping between the two survives.
    pub stamped: SystemTime,
    /// The same time on the clock [`Instant`] uses, mapped from a reading of both clocks
    /// taken when the frame was read (microseconds later): for durations, such as the gap
    /// since the last segment.
    pub at: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Segment {
    /// Decodes one Ethernet frame; anything but TCP or UDP over IP is not a segment.
    pub fn decode(frame: &[u8], stamped: SystemTime, at: Instant) -> Option<Segment> {
        let packet = SlicedPacket::from_ethernet(frame).ok()?;
        let (source, destination): (IpAddr, IpAddr) = match packet.net? {
            NetSlice::Ipv4(ip) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            NetSlice::Ipv6(ip) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            _ => return None,
        };
        let (from_port, to_port, header, payload) = match packet.transport? {
            TransportSlice::Tcp(tcp) => (
                tcp.source_port(),
                tcp.destination_port(),
                Header::Tcp {
                    flags: Flags {
                        syn: tcp.syn(),
                        ack: tcp.ack(),
                        fin: tcp.fin(),
                        rst: tcp.rst(),
                        psh: tcp.psh(),
                    },
                    seq: tcp.sequence_number(),
                    ack: tcp.acknowledgment_number(),
                    window: tcp.window_size(),
                    window_scale: tcp.options_iterator().find_map(|option| match option {
                        Ok(etherparse::TcpOptionElement::WindowScale(scale)) => Some(scale),
                        _ => None,
                    }),
                },
                tcp.payload(),
            ),
            TransportSlice::Udp(udp) => (
                udp.source_port(),
                udp.destination_port(),
                Header::Udp,
                udp.payload(),
            ),
            _ => return None,
        };
        Some(Segment {
            stamped,
            at,
            from: SocketAddr::new(source, from_port),
            to: SocketAddr::new(destination, to_port),
            header,
            payload: payload.to_vec(),
        })
    }
}

/// Maps the kernel's packet timestamps (the real-time clock) onto [`Instant`] (the
/// monotonic clock the rest of the run uses), from one reading of both taken together.
#[derive(Clone, Copy, Debug)]
struct Clock {
    instant: Instant,
    system: SystemTime,
}

/// How many times [`Clock::now`] reads the two clocks, keeping the reading whose bracket of
/// monotonic readings is narrowest: a thread preempted between the two reads would shift
/// every segment of the lesson by as long as it waited.
const CLOCK_READINGS: usize = 16;

impl Clock {
    fn now() -> Clock {
        let (_, clock) =
            (1..CLOCK_READINGS)
                .map(|_| Clock::read())
                .fold(Clock::read(), |narrowest, reading| {
                    if reading.0 < narrowest.0 {
                        reading
                    } else {
                        narrowest
                    }
                });
        clock
    }

    /// One reading of the real-time clock, between two of the monotonic clock: the pair,
    /// and how far apart the two monotonic readings were.
    fn read() -> (Duration, Clock) {
        let before = Instant::now();
        let system = SystemTime::now();
        let width = before.elapsed();
        (
            width,
            Clock {
                instant: before + width / 2,
                system,
            },
        )
    }

    fn instant_of(&self, since_epoch: Duration) -> Instant {
        let system = UNIX_EPOCH + since_epoch;
        match system.duration_since(self.system) {
            Ok(after) => self.instant + after,
            Err(before) => self
                .instant
                .checked_sub(before.duration())
                .unwrap_or(self.instant),
        }
    }
}

/// A packet socket on `lo`, read on a thread of its own so that no frame is lost while a
/// lesson's step is busy (a `sendall` of a megabyte makes frames faster than a step ends):
/// the thread keeps each segment, stamped by the kernel, until the runner takes it.
pub struct Capture {
    shared: Arc<Caught>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// A byte written here wakes the reader, to answer an ask or to stop.
    wake: UnixStream,
}

/// What the reading thread has caught and the runner has not taken yet.
#[derive(Default)]
struct Caught {
    state: Mutex<CaughtState>,
    arrived: Condvar,
}

#[derive(Default)]
struct CaughtState {
    segments: Vec<Segment>,
    /// Frames the kernel dropped because the socket's buffer was full.
    dropped: u64,
    error: Option<String>,
    /// How many times [`Capture::drain`] asked the reader to read its queue empty, and the
    /// last of those asks the reader has answered.
    asked: u64,
    answered: u64,
}

impl Caught {
    fn lock(&self) -> std::sync::MutexGuard<'_, CaughtState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the reader until `done` holds, the reader failed, or `deadline` passes.
    fn wait_until<'a>(
        &'a self,
        state: std::sync::MutexGuard<'a, CaughtState>,
        deadline: Instant,
        done: impl Fn(&CaughtState) -> bool,
    ) -> std::sync::MutexGuard<'a, CaughtState> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.arrived
            .wait_timeout_while(state, left, |state| !done(state) && state.error.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
    }
}

/// The packet socket itself, owned by the reading thread.
struct Reader {
    socket: Socket,
    /// Readable when the [`Capture`] has asked for something.
    woken: UnixStream,
    /// Unbuffered: a lesson makes few frames, and a file that is whole after every frame
    /// survives a failing step.
    pcap: Option<PcapWriter<File>>,
    buffer: Vec<u8>,
}

/// How long the reading thread waits for a frame or a wake-up before it looks again.
const READ_POLL: Duration = Duration::from_millis(50);
/// How long [`Capture::drain`] waits for the reader to read its queue empty: the reader is
/// busy at most as long as a burst of frames takes to read.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// The receive buffer asked for: room for several megabytes of lesson in flight.
const CAPTURE_BUFFER: usize = 32 * 1024 * 1024;

impl Capture {
    /// Opens a packet socket on the loopback interface, writing every frame also to a pcap
    /// file at `pcap` if given, and starts reading. Needs `CAP_NET_RAW` over this network
    /// namespace: root, or any user inside [`crate::namespace::enter_private`].
    pub fn open_loopback(pcap: Option<&std::path::Path>) -> io::Result<Capture> {
        let protocol = SocketProtocol::from(i32::from(ETH_P_ALL.to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol))?;
        let index = loopback_index()?;
        // SAFETY: sockaddr_ll is plain old data; all zeroes is valid before the fields are set.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::sa_family_t;
        address.sll_protocol = ETH_P_ALL.to_be();
        address.sll_ifindex = index;
        // SAFETY: `address` is a complete sockaddr_ll and the length given is its size.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                &address as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        // As much buffer as the kernel allows (net.core.rmem_max caps SO_RCVBUF; the forced
        // form needs CAP_NET_ADMIN), so that a burst waits for the reader instead of being
        // dropped. Drops are counted and reported all the same.
        if force_receive_buffer(&socket, CAPTURE_BUFFER).is_err() {
            socket.set_recv_buffer_size(CAPTURE_BUFFER)?;
        }
        set_timestamps(&socket)?;
        socket.set_nonblocking(true)?;
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let mut reader = Reader {
            socket,
            woken,
            pcap: None,
            buffer: vec![0; FRAME_MAX],
        };
        reader.wait_for_stamps()?;
        if let Some(path) = pcap {
            let file = File::create(path)?;
            let header = PcapHeader {
                snaplen: FRAME_MAX as u32,
                ts_resolution: pcap_file::TsResolution::NanoSecond,
                ..PcapHeader::default()
            };
            reader.pcap = Some(PcapWriter::with_header(file, header).map_err(io::Error::other)?);
        }
        let shared = Arc::new(Caught::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || reader.run(&shared, &stop))?
        };
        Ok(Capture {
            shared,
            stop,
            reader: Some(thread),
            wake,
        })
    }

    /// Every segment that crossed the wire before this call and was not taken yet, oldest
    /// first. The reader is asked to read the packet socket's queue empty first, and waited
    /// for (up to 2 s; a reader that takes longer leaves the rest for the next
    /// call).
    pub fn drain(&mut self) -> io::Result<Vec<Segment>> {
        let deadline = Instant::now() + CATCH_UP_WAIT;
        let mut state = self.shared.lock();
        state.asked += 1;
        let ask = state.asked;
        // Full means a wake-up is already waiting to be read, which serves as well.
        let _ = (&self.wake).write(&[1]);
        let mut state = self
            .shared
            .wait_until(state, deadline, |state| state.answered >= ask);
        if let Some(error) = state.error.take() {
            return Err(io::Error::other(error));
        }
        Ok(std::mem::take(&mut state.segments))
    }

    /// Waits until a segment is caught or `deadline` passes; then [`Capture::drain`].
    pub fn wait(&mut self, deadline: Instant) -> io::Result<Vec<Segment>> {
        let state = self.shared.lock();
        drop(
            self.shared
                .wait_until(state, deadline, |state| !state.segments.is_empty()),
        );
        self.drain()
    }

    /// Frames the kernel dropped since the last call, because the reader fell behind.
    pub fn dropped(&mut self) -> u64 {
        std::mem::take(&mut self.shared.lock().dropped)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(&[1]);
        if let Some(thread) = self.reader.take() {
            let _ = thread.join();
        }
    }
}

impl Reader {
    /// Reads frames until told to stop, keeping each segment for the runner, and answers
    /// each ask of [`Capture::drain`] once the socket's queue has been read empty.
    fn run(mut self, shared: &Caught, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            // Read before the queue is: a frame that crossed before the ask was made is in
            // the queue by then, so the reading below takes it.
            let asked = shared.lock().asked;
            if let Err(e) = self.read_queue(shared) {
                shared.lock().error = Some(e.to_string());
                shared.arrived.notify_all();
                return;
            }
            if let Ok(dropped) = packet_drops(&self.socket) {
                shared.lock().dropped += dropped;
            }
            shared.lock().answered = asked;
            shared.arrived.notify_all();
            if let Err(e) = self.wait_for_work() {
                shared.lock().error = Some(e.to_string());
                shared.arrived.notify_all();
                return;
            }
        }
    }

    /// Reads every frame in the socket's queue, until it says it has none.
    fn read_queue(&mut self, shared: &Caught) -> io::Result<()> {
        loop {
            match self.next_frame() {
                Ok(Some(segment)) => {
                    shared.lock().segments.push(segment);
                    shared.arrived.notify_all();
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sleeps until a frame arrives, the [`Capture`] wakes the reader, or [`READ_POLL`]
    /// passes; then empties the wake-up socket.
    fn wait_for_work(&mut self) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.woken.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: the pointer and count describe `fds`, which outlives the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, READ_POLL.as_millis() as i32) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        let mut bytes = [0u8; 64];
        while matches!((&self.woken).read(&mut bytes), Ok(n) if n > 0) {}
        Ok(())
    }

    fn next_frame(&mut self) -> io::Result<Option<Segment>> {
        let Some((whole, stamp)) = self.read_frame()? else {
            return Ok(None);
        };
        let frame = &self.buffer[..whole.min(self.buffer.len())];
        if let Some(pcap) = &mut self.pcap {
            pcap.write_packet(&PcapPacket::new(stamp, whole as u32, frame))
                .map_err(io::Error::other)?;
        }
        // The two clocks are read again for every frame, so a step of the real-time clock
        // since the capture opened does not move the segment.
        let at = Clock::now().instant_of(stamp);
        Ok(Segment::decode(frame, UNIX_EPOCH + stamp, at))
    }

    /// One frame into the buffer: its whole length and its timestamp, or `None` for the
    /// incoming copy of a frame (kept: the outgoing one).
    fn read_frame(&mut self) -> io::Result<Option<(usize, Duration)>> {
        // SAFETY: sockaddr_ll is plain old data; recvfrom fills it in.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the buffer and the address are valid for the lengths given and outlive the
        // call; MSG_TRUNC makes it return the frame's whole length even when cut.
        let length = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                self.buffer.as_mut_ptr() as *mut libc::c_void,
                self.buffer.len(),
                libc::MSG_TRUNC,
                &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut from_len,
            )
        };
        if length < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.sll_pkttype != libc::PACKET_OUTGOING {
            return Ok(None);
        }
        Ok(Some((length as usize, self.last_timestamp()?)))
    }

    /// Waits until the kernel stamps frames as they cross. Turning stamps on takes effect a
    /// little later (the kernel flips a switch from a work queue), and until then the time of
    /// a frame reads as the time it is *read*, which would put the first segments of a lesson
    /// in the wrong place. So: send datagrams to ourselves until one comes back with a time
    /// from before we read it, then drop what was caught.
    fn wait_for_stamps(&mut self) -> io::Result<()> {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let to = probe.local_addr()?;
        let deadline = Instant::now() + STAMPS_WAIT;
        while Instant::now() < deadline {
            probe.send_to(b"socket-lab: are frames stamped yet?", to)?;
            let sent = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.socket.set_nonblocking(false)?;
            self.socket.set_read_timeout(Some(STAMPS_POLL))?;
            let result = self.read_frame();
            self.socket.set_nonblocking(true)?;
            match result {
                Ok(Some((_, stamp))) if stamp <= sent => {
                    while self.read_frame().is_ok() {}
                    return Ok(());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "the kernel did not start stamping frames within 2 s",
        ))
    }

    /// The kernel's timestamp of the frame just received, as time since the epoch.
    fn last_timestamp(&self) -> io::Result<Duration> {
        let mut stamp = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: SIOCGSTAMPNS writes one timespec through the pointer, which outlives the
        // call.
        if unsafe { libc::ioctl(self.socket.as_raw_fd(), SIOCGSTAMPNS, &mut stamp) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Duration::new(stamp.tv_sec as u64, stamp.tv_nsec as u32))
    }
}

/// Turns on the kernel's timestamp for every frame this socket receives. Asking for the last
/// frame's time (`SIOCGSTAMPNS`) turns it on, and says "no such time" (`ENOENT`) the first
/// time, when nothing was stamped yet. (`SO_TIMESTAMPNS` would deliver the time in a control
/// message with each frame instead, and then `SIOCGSTAMPNS` has nothing to report.)
fn set_timestamps(socket: &Socket) -> io::Result<()> {
    let mut stamp = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: SIOCGSTAMPNS writes one timespec through the pointer, which outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSTAMPNS, &mut stamp) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOENT) {
            return Err(error);
        }
    }
    Ok(())
}

/// `SO_RCVBUFFORCE`: a receive buffer beyond `net.core.rmem_max`, for a process with
/// `CAP_NET_ADMIN` (root, or the root of the lab's private namespace where the kernel allows).
fn force_receive_buffer(socket: &Socket, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is one int, valid for the length given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Frames dropped since the last call (`PACKET_STATISTICS`, which resets on each read).
fn packet_drops(socket: &Socket) -> io::Result<u64> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut length = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `stats`, which outlives the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut length,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(stats.tp_drops))
}

/// The loopback interface's index (`if_nametoindex("lo")`).
fn loopback_index() -> io::Result<i32> {
    // SAFETY: the name is a NUL-terminated string literal.
    let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_people_say_them() {
        let flags = |names: &[&str]| Flags::from_names(names.iter().copied()).unwrap();
        assert_eq!(flags(&["SYN"]).to_string(), "SYN");
        assert_eq!(flags(&["ACK", "SYN"]).to_string(), "SYN-ACK");
        assert_eq!(flags(&["FIN", "ACK"]).to_string(), "FIN-ACK");
        assert_eq!(flags(&["PSH", "ACK"]).to_string(), "PSH-ACK");
        assert!(
            Flags::from_names(["URG"])
                .unwrap_err()
                .contains("not a TCP flag")
        );
    }

    #[test]
    fn a_tcp_frame_decodes_to_its_segment() {
        use etherparse::PacketBuilder;
        let builder = PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .tcp(40000, 10000, 1000, 65495)
            .syn();
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).unwrap();
        let now = Instant::now();
        let segment = Segment::decode(&frame, SystemTime::now(), now).unwrap();
        assert_eq!(segment.from, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(segment.to, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(
            segment.header,
            Header::Tcp {
                flags: Flags {
                    syn: true,
                    ..Flags::default()
                },
                seq: 1000,
                ack: 0,
                window: 65495,
                window_scale: None,
            }
        );
        assert!(segment.payload.is_empty());
    }
}
