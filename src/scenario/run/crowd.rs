//! The crowd: many clients at once, each making the same call (`crowd: connect 10000`).
//!
//! A lesson names its clients one by one (alice, bob), which is right for following a
//! conversation and useless for what a server meets in the field: thousands of connections,
//! most of them idle. The crowd is those thousands, shown as one line each step
//! (`× 10,000`); the server's side of them is counted, not printed line by line.
//!
//! A crowd of 10,000 needs two things one client does not:
//!
//! - **A descriptor table of its own.** Every connection is a descriptor at each end, and here
//!   both ends live in one process: the server's 10,000 and the crowd's 10,000. The limit on
//!   descriptors (`ulimit -n`, `RLIMIT_NOFILE`) is "a value one greater than the maximum file
//!   descriptor number that can be opened" (getrlimit(2)): it caps the numbers in one
//!   descriptor table. Real clients would be other processes, each with a table of its own.
//!   The crowd's thread gets one too: `close_range(3, ~0, CLOSE_RANGE_UNSHARE)` (close_range(2))
//!   makes the thread stop sharing the process's table, keeping only stdin, stdout and stderr.
//!   Its sockets are numbered from 3 again, and exist only for this thread, which is why the
//!   runner sends the crowd commands instead of calling on its sockets itself. (So
//!   `ls /proc/PID/fd` does not show them; `/proc/PID/task/TID/fd` does.)
//! - **Readiness.** One thread cannot block in 10,000 `connect`s or `recv`s at once. Like the
//!   epoll engine it makes its sockets non-blocking and asks the kernel which are ready
//!   (`mio`, over `epoll`): the client side of ten thousand connections is an event loop too.
//!
//! And one thing it must not do: connect faster than the server accepts. A connection whose
//! handshake is done waits in the server's listen queue until `accept` takes it, and a SYN
//! that finds the queue full is dropped, to be resent a second or more later (lesson 18).
//! Against the lab's own ack server the crowd knows how many connections it has accepted (it
//! logs each), and never has more waiting than the queue holds.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::net::TcpStream;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

use super::Runner;
use super::process::open_descriptors;
use crate::endpoint::{Address, Endpoint};
use crate::engine::DescriptorLimit;
use crate::error::describe;
use crate::scenario::report::{Entry, EntryKind, StepError, show_bytes, thousands};
use crate::scenario::syntax::{CrowdCall, ServerKind};
use crate::scenario::timeline::{Moment, ServerEvent, Timeline};
use crate::server::Event;

/// Descriptors the crowd's own table holds besides its connections: stdin, stdout, stderr,
/// its epoll instance, and slack.
const CROWD_SPARE: u64 = 8;
/// Without word from the server of what it accepted, connects under way at once.
const CONNECTS_AT_ONCE: usize = 128;
/// How often a crowd that waits for the server to accept looks at its count again (the count
/// changes without any event on the crowd's own sockets).
const ACCEPT_POLL: Duration = Duration::from_millis(1);
/// How long past the step's deadline the runner waits for the crowd's answer before it
/// decides the crowd's thread is stuck.
const GRACE: Duration = Duration::from_secs(5);

/// The crowd, as the runner holds it: a thread with a table of its own, and the way to it.
pub(super) struct Crowd {
    commands: Option<mpsc::Sender<Command>>,
    replies: mpsc::Receiver<Result<Done, String>>,
    thread: Option<JoinHandle<()>>,
    /// Connections open.
    pub(super) size: usize,
}

/// How far ahead of the server's accepts the crowd may connect.
struct Pace {
    /// Connections the server's listen queue holds: its backlog (as the kernel caps it) + 1.
    queue: usize,
    /// The lab's own ack server counts its accepts on the timeline; another server does not.
    accepted: Option<Arc<Timeline>>,
}

enum Command {
    Connect {
        to: SocketAddr,
        count: usize,
        pace: Pace,
        deadline: Instant,
    },
    Send {
        data: Vec<u8>,
        deadline: Instant,
    },
    Recv {
        size: usize,
        expect: Vec<u8>,
        deadline: Instant,
    },
    Close,
}

enum Done {
    Ready,
    Connected { addresses: Vec<SocketAddr> },
    Sent,
    Received,
    Closed,
}

impl Crowd {
    /// Starts the crowd's thread and waits until it has its own descriptor table.
    fn start() -> Result<Crowd, String> {
        let (commands, inbox) = mpsc::channel();
        let (outbox, replies) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("crowd".into())
            .spawn(move || crowd_thread(&inbox, &outbox))
            .map_err(|e| format!("cannot start the crowd's thread: {}", describe(&e)))?;
        let crowd = Crowd {
            commands: Some(commands),
            replies,
            thread: Some(thread),
            size: 0,
        };
        match crowd.replies.recv_timeout(GRACE) {
            Ok(Ok(_)) => Ok(crowd),
            Ok(Err(why)) => Err(why),
            Err(_) => Err("the crowd's thread did not start".into()),
        }
    }

    /// Sends a command and waits for the answer, at most a little past `deadline`.
    fn ask(&self, command: Command, deadline: Instant) -> Result<Done, String> {
        let gone = || "the crowd's thread has stopped".to_string();
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send(command)
            .map_err(|_| gone())?;
        let wait = deadline.saturating_duration_since(Instant::now()) + GRACE;
        match self.replies.recv_timeout(wait) {
            Ok(done) => done,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err("the crowd did not answer in time: its thread is stuck".into())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        // Closing the connections explicitly, before the thread exits, means they are closed
        // when this returns: a thread's descriptor table is released only after its joiner
        // may already have been woken.
        if let Some(commands) = self.commands.take() {
            if commands.send(Command::Close).is_ok() {
                let _ = self.replies.recv_timeout(GRACE);
            }
            drop(commands);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The crowd's thread: its own descriptor table, then one command at a time.
fn crowd_thread(inbox: &mpsc::Receiver<Command>, outbox: &mpsc::Sender<Result<Done, String>>) {
    // SAFETY: close_range takes plain numbers. With CLOSE_RANGE_UNSHARE and a range up to the
    // largest descriptor, the kernel gives this thread a new table holding copies of
    // descriptors 0, 1 and 2 only: the process's other descriptors are not touched, and are
    // never duplicated (which would keep a socket another thread closes open).
    let unshared = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        )
    };
    if unshared != 0 {
        let error = io::Error::last_os_error();
        let _ = outbox.send(Err(format!(
            "cannot give the crowd a descriptor table of its own (close_range with CLOSE_RANGE_UNSHARE, Linux 5.9 or later): {}",
            describe(&error)
        )));
        return;
    }
    let mut members = match Members::new() {
        Ok(members) => members,
        Err(e) => {
            let _ = outbox.send(Err(format!(
                "cannot create the crowd's epoll instance: {}",
                describe(&e)
            )));
            return;
        }
    };
    if outbox.send(Ok(Done::Ready)).is_err() {
        return;
    }
    for command in inbox {
        let done = match command {
            Command::Connect {
                to,
                count,
                pace,
                deadline,
            } => members.connect(to, count, &pace, deadline),
            Command::Send { data, deadline } => members.send(&data, deadline),
            Command::Recv {
                size,
                expect,
                deadline,
            } => members.recv(size, &expect, deadline),
            Command::Close => {
                members.all.clear();
                Ok(Done::Closed)
            }
        };
        if outbox.send(done).is_err() {
            return;
        }
    }
}

/// One connection of the crowd.
struct Member {
    stream: TcpStream,
    connected: bool,
    /// Bytes this connection has yet to send.
    unsent: Vec<u8>,
    /// Bytes received in the current `recv` step.
    got: Vec<u8>,
    /// The current `recv` step is over for this connection: it has its bytes, or its stream
    /// ended or failed.
    done: Option<Ending>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ending {
    Bytes,
    Eof,
    Failed(String),
}

/// The crowd's connections and the epoll instance watching them.
struct Members {
    poll: Poll,
    events: Events,
    all: Vec<Member>,
}

impl Members {
    fn new() -> io::Result<Members> {
        Ok(Members {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            all: Vec::new(),
        })
    }

    /// Waits for readiness, at most until `deadline` (and at most `most`); the ready
    /// connections' indexes.
    fn wait(&mut self, deadline: Instant, most: Option<Duration>) -> io::Result<Vec<usize>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = most.map_or(left, |most| most.min(left));
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        Ok(self.events.iter().map(|event| event.token().0).collect())
    }

    fn connect(
        &mut self,
        to: SocketAddr,
        count: usize,
        pace: &Pace,
        deadline: Instant,
    ) -> Result<Done, String> {
        let accepted = || pace.accepted.as_ref().map(|timeline| timeline.accepted());
        let accepted_before = accepted();
        let mut connecting = 0;
        let mut open = 0;
        while open < count {
            // Start connects while the server's listen queue has room for them.
            loop {
                let started = self.all.len();
                let room = match (accepted(), accepted_before) {
                    (Some(now), Some(before)) => {
                        let waiting = started.saturating_sub(now.saturating_sub(before));
                        waiting < pace.queue
                    }
                    _ => connecting < CONNECTS_AT_ONCE,
                };
                if started == count || !room {
                    break;
                }
                let stream = start_connect(to).map_err(|e| {
                    format!(
                        "the crowd's connect number {} failed at once: {}{}",
                        thousands(started + 1),
                        describe(&e),
                        if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                            " (no local port left: see net.ipv4.ip_local_port_range)"
                        } else {
                            ""
                        }
                    )
                })?;
                self.poll
                    .registry()
                    .register(
                        &mut SourceFd(&stream.as_raw_fd()),
                        Token(started),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(|e| format!("cannot watch the crowd's socket: {}", describe(&e)))?;
                self.all.push(Member {
                    stream,
                    connected: false,
                    unsent: Vec::new(),
                    got: Vec::new(),
                    done: None,
                });
                connecting += 1;
            }
            if open == count {
                break;
            }
            if Instant::now() >= deadline {
                let accepted = match (accepted(), accepted_before) {
                    (Some(now), Some(before)) => format!(
                        "; the server accepted {} of them, and its listen queue holds {}",
                        thousands(now.saturating_sub(before)),
                        thousands(pace.queue)
                    ),
                    _ => String::new(),
                };
                return Err(format!(
                    "the crowd opened {} of {} connections in time ({} still in their handshake, {} not started{accepted})",
                    thousands(open),
                    thousands(count),
                    thousands(connecting),
                    thousands(count - self.all.len()),
                ));
            }
            // Waiting for room in the queue, not for a handshake: look at the count again soon.
            let most = (self.all.len() < count).then_some(ACCEPT_POLL);
            let ready = self
                .wait(deadline, most)
                .map_err(|e| format!("epoll_wait failed: {}", describe(&e)))?;
            for index in ready {
                let Some(member) = self.all.get_mut(index) else {
                    continue;
                };
                if member.connected {
                    continue;
                }
                // A non-blocking connect is over when the socket is writable: SO_ERROR says
                // whether it failed, and a peer address that it succeeded.
                if let Ok(Some(error)) | Err(error) = member.stream.take_error() {
                    return Err(format!(
                        "the crowd's connect number {} failed: {}",
                        thousands(index + 1),
                        describe(&error)
                    ));
                }
                match member.stream.peer_addr() {
                    Ok(_) => {
                        member.connected = true;
                        connecting -= 1;
                        open += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => {
                        return Err(format!(
                            "the crowd's connect number {} failed: {}",
                            thousands(index + 1),
                            describe(&e)
                        ));
                    }
                }
            }
        }
        let addresses = self
            .all
            .iter()
            .filter_map(|member| member.stream.local_addr().ok())
            .collect();
        Ok(Done::Connected { addresses })
    }

    fn send(&mut self, data: &[u8], deadline: Instant) -> Result<Done, String> {
        let mut waiting = 0;
        for index in 0..self.all.len() {
            self.all[index].unsent = data.to_vec();
            if !self.flush(index)? {
                waiting += 1;
            }
        }
        while waiting > 0 {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} of the crowd's connections could not send everything in time: their send buffers stayed full",
                    thousands(waiting)
                ));
            }
            let ready = self
                .wait(deadline, None)
                .map_err(|e| format!("epoll_wait failed: {}", describe(&e)))?;
            for index in ready {
                if self.all.get(index).is_some_and(|m| !m.unsent.is_empty()) && self.flush(index)? {
                    waiting -= 1;
                }
            }
        }
        Ok(Done::Sent)
    }

    /// Sends what connection `index` has yet to send, as far as its send buffer takes it:
    /// true once all of it is sent.
    fn flush(&mut self, index: usize) -> Result<bool, String> {
        let member = &mut self.all[index];
        while !member.unsent.is_empty() {
            match member.stream.write(&member.unsent) {
                Ok(n) => {
                    member.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "the crowd's connection number {} could not send: {}",
                        thousands(index + 1),
                        describe(&e)
                    ));
                }
            }
        }
        Ok(true)
    }

    fn recv(&mut self, size: usize, expect: &[u8], deadline: Instant) -> Result<Done, String> {
        let mut buffer = vec![0; size];
        let mut pending = 0;
        // What arrived before this step is read first: an edge-triggered epoll reported it
        // once already, and will not again.
        for index in 0..self.all.len() {
            self.all[index].got.clear();
            self.all[index].done = None;
            if !self.read(index, &mut buffer, expect.len()) {
                pending += 1;
            }
        }
        while pending > 0 && Instant::now() < deadline {
            let ready = self
                .wait(deadline, None)
                .map_err(|e| format!("epoll_wait failed: {}", describe(&e)))?;
            for index in ready {
                if self.all.get(index).is_some_and(|m| m.done.is_none())
                    && self.read(index, &mut buffer, expect.len())
                {
                    pending -= 1;
                }
            }
        }
        let wrong: Vec<(usize, &Member)> = self
            .all
            .iter()
            .enumerate()
            .filter(|(_, member)| member.done != Some(Ending::Bytes) || member.got != expect)
            .collect();
        let Some((index, first)) = wrong.first() else {
            return Ok(Done::Received);
        };
        let what = match &first.done {
            None if first.got.is_empty() => "nothing within the step's timeout".to_string(),
            None => format!(
                "only {} within the step's timeout",
                show_bytes(&first.got).0
            ),
            Some(Ending::Eof) if first.got.is_empty() => "end of stream".to_string(),
            Some(Ending::Eof) => format!("{}, then end of stream", show_bytes(&first.got).0),
            Some(Ending::Failed(why)) => format!("an error: {why}"),
            Some(Ending::Bytes) => show_bytes(&first.got).0,
        };
        Err(format!(
            "{} of the crowd's {} connections did not receive {}; the first of them, number {}, got {what}",
            thousands(wrong.len()),
            thousands(self.all.len()),
            show_bytes(expect).0,
            thousands(index + 1)
        ))
    }

    /// Reads what connection `index` has, by `recv(buffer.len())` calls, until it has
    /// `wanted` bytes or would block: true once its step is over.
    fn read(&mut self, index: usize, buffer: &mut [u8], wanted: usize) -> bool {
        let member = &mut self.all[index];
        while member.got.len() < wanted {
            match member.stream.read(buffer) {
                Ok(0) => {
                    member.done = Some(Ending::Eof);
                    return true;
                }
                Ok(n) => member.got.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    member.done = Some(Ending::Failed(describe(&e)));
                    return true;
                }
            }
        }
        member.done = Some(Ending::Bytes);
        true
    }
}

fn line(text: String) -> Entry {
    Entry::new(EntryKind::Client, text)
}

impl Runner<'_> {
    pub(super) fn crowd_call(&mut self, call: &CrowdCall) -> Result<(), StepError> {
        match call {
            CrowdCall::Connect(count) => self.crowd_connect(*count),
            CrowdCall::Send(data) => {
                let crowd = self.crowd.as_ref().ok_or_else(no_crowd)?;
                let size = crowd.size;
                let started = self.timeline.now();
                let deadline = self.step_deadline();
                let result = crowd.ask(
                    Command::Send {
                        data: data.clone(),
                        deadline,
                    },
                    deadline,
                );
                self.record_at(
                    started,
                    line(format!(
                        "crowd ──{} ({} B) × {}──▶ server   each connection sends it once",
                        show_bytes(data).0,
                        data.len(),
                        thousands(size)
                    )),
                );
                result.map(drop).map_err(StepError::Other)
            }
            CrowdCall::Recv { size, expect } => {
                let crowd = self.crowd.as_ref().ok_or_else(no_crowd)?;
                let members = crowd.size;
                let began = Instant::now();
                let deadline = self.step_deadline();
                crowd
                    .ask(
                        Command::Recv {
                            size: *size,
                            expect: expect.clone(),
                            deadline,
                        },
                        deadline,
                    )
                    .map_err(StepError::Other)?;
                self.record(line(format!(
                    "crowd ◀──{} ({} B) × {}── server   every connection has it, by recv({size}), within {} ms",
                    show_bytes(expect).0,
                    expect.len(),
                    thousands(members),
                    began.elapsed().as_millis()
                )));
                Ok(())
            }
            CrowdCall::Close => {
                let crowd = self.crowd.take().ok_or_else(no_crowd)?;
                let size = crowd.size;
                let started = self.timeline.now();
                drop(crowd);
                self.record_at(
                    started,
                    line(format!(
                        "crowd ──close (FIN) × {}──▶ server",
                        thousands(size)
                    )),
                );
                self.await_crowd_gone(size)
            }
        }
    }

    /// Waits until the lab's own ack server has seen every connection of a closed crowd end,
    /// so that nothing it does about them comes after the lesson's next steps (and a port the
    /// crowd used can be a named client's again).
    fn await_crowd_gone(&mut self, size: usize) -> Result<(), StepError> {
        if self.external || self.kind() != ServerKind::Tcp || self.server.is_none() {
            self.crowd_members.clear();
            return Ok(());
        }
        let deadline = self.step_deadline();
        while self.crowd_tally.ended_in_all < size {
            let events = self.timeline.wait_for_events(deadline);
            if events.is_empty() {
                return Err(format!(
                    "the server saw {} of the crowd's {} connections end within {:?}",
                    thousands(self.crowd_tally.ended_in_all),
                    thousands(size),
                    self.timeout()
                )
                .into());
            }
            self.show_events(events);
        }
        self.flush_crowd();
        self.crowd_members.clear();
        Ok(())
    }

    /// Counts a server event about the crowd instead of showing it: false if the event is
    /// not about the crowd. While a crowd is connected, the server's "all slots are busy",
    /// said again each time a slot frees and fills, is counted too (and still logged, for
    /// `server: log` to find).
    pub(super) fn tally_crowd(&mut self, moment: Moment, event: &ServerEvent) -> bool {
        let part = match event {
            ServerEvent::Ack(
                Event::Connected { peer }
                | Event::Message { peer, .. }
                | Event::Disconnected { peer, .. },
            ) if self.crowd_members.contains(peer) && self.name_of(peer).is_none() => match event {
                ServerEvent::Ack(Event::Connected { .. }) => Part::Accepted,
                ServerEvent::Ack(Event::Message { data, .. }) => Part::Received(data.len()),
                ServerEvent::Ack(Event::Disconnected { reason, .. }) => {
                    let stopping = self
                        .stops
                        .iter()
                        .any(|(from, to)| (*from..=*to).contains(&moment));
                    self.crowd_tally.ended_in_all += 1;
                    Part::Ended(match reason {
                        _ if stopping => Ended::ServerStopping,
                        None => Ended::EndOfStream,
                        Some(reason) => Ended::Other(reason.clone()),
                    })
                }
                _ => return false,
            },
            ServerEvent::Ack(Event::Busy { .. }) if !self.crowd_members.is_empty() => {
                let text = event.log_line();
                // Said in the crowd's own line. How often depends on how the crowd's
                // connections and closes interleave with the accept loop, so no step could
                // expect an exact count: the strict end does not ask for one.
                self.log.lines.push(super::Logged {
                    moment,
                    server: "server".into(),
                    text: text.clone(),
                    matched: false,
                    problem: false,
                });
                Part::Said(text)
            }
            _ => return false,
        };
        let bytes = match part {
            Part::Received(bytes) => bytes,
            _ => 0,
        };
        let key = match part {
            Part::Received(_) => Part::Received(0),
            other => other,
        };
        match self
            .crowd_tally
            .parts
            .iter_mut()
            .find(|(seen, ..)| *seen == key)
        {
            Some((_, count, total)) => {
                *count += 1;
                *total += bytes;
            }
            None => self.crowd_tally.parts.push((key, 1, bytes)),
        }
        true
    }

    /// Says what the server did for the crowd since the last time, in one line: the counts of
    /// each kind of event, in the order each kind first came (events of different kinds may
    /// have come interleaved).
    pub(super) fn flush_crowd(&mut self) {
        let parts = std::mem::take(&mut self.crowd_tally.parts);
        if parts.is_empty() {
            return;
        }
        let recv_size = self.config.recv_size;
        let ack = self.config.ack.len();
        let said: Vec<String> = parts
            .iter()
            .map(|(part, count, bytes)| part.counted(*count, *bytes, recv_size, ack))
            .collect();
        self.emit(Entry::new(
            EntryKind::Server,
            format!(
                "      server, for the crowd (counted, not shown one by one): {}",
                said.join("; ")
            ),
        ));
    }

    fn crowd_connect(&mut self, count: usize) -> Result<(), StepError> {
        if let Some(crowd) = &self.crowd {
            return Err(StepError::Misuse(format!(
                "the crowd already holds {} connections: add `crowd: close` before this step",
                thousands(crowd.size)
            )));
        }
        let to = match self.client_endpoint() {
            Endpoint::Inet { .. } if !self.kind().is_datagram() => *self
                .client_endpoint()
                .resolve()
                .map_err(|e| e.to_string())?
                .first()
                .ok_or("the server's address did not resolve")?,
            _ => {
                return Err(StepError::Misuse(
                    "a crowd connects over TCP: this lesson's server is not a TCP server".into(),
                ));
            }
        };
        self.crowd_fits(count)?;
        let own_ack_server = !self.external && self.kind() == ServerKind::Tcp;
        let pace = Pace {
            queue: usize::try_from(self.listen_queue().holds()).unwrap_or(usize::MAX),
            accepted: own_ack_server.then(|| Arc::clone(&self.timeline)),
        };
        let crowd = Crowd::start()?;
        let started = self.timeline.now();
        let began = Instant::now();
        let deadline = self.step_deadline();
        let connected = crowd.ask(
            Command::Connect {
                to,
                count,
                pace,
                deadline,
            },
            deadline,
        );
        let took = began.elapsed();
        // Even a crowd that did not all connect is held until the lesson ends.
        let mut crowd = crowd;
        let addresses = match connected {
            Ok(Done::Connected { addresses }) => addresses,
            Ok(_) => return Err("the crowd answered something else".into()),
            Err(why) => {
                self.crowd = Some(crowd);
                return Err(StepError::Other(why));
            }
        };
        crowd.size = addresses.len();
        let ports: Vec<u16> = addresses.iter().map(SocketAddr::port).collect();
        let (low, high) = (
            ports.iter().min().copied().unwrap_or(0),
            ports.iter().max().copied().unwrap_or(0),
        );
        self.crowd_members
            .extend(addresses.into_iter().map(Address::Inet));
        self.crowd_tally.ended_in_all = 0;
        self.crowd = Some(crowd);
        self.record_at(
            started,
            line(format!(
                "crowd ──connect (SYN, SYN-ACK, ACK) × {}──▶ server   all open after {} ms, from local ports {low} to {high}",
                thousands(count),
                took.as_millis()
            )),
        );
        Ok(())
    }

    /// Whether this process can hold `count` more connections at both ends, and this machine
    /// has the local ports for them: said before any connect, with what to change, and shown.
    fn crowd_fits(&mut self, count: usize) -> Result<(), StepError> {
        let room = Room::here()?;
        let server_here = !self.external;
        room.check(count, server_here)?;
        let said = room.describe(count, server_here);
        self.record(Entry::new(EntryKind::Kernel, said));
        Ok(())
    }
}

/// What this process and this machine allow a crowd.
struct Room {
    limit: DescriptorLimit,
    /// Descriptors open in the calling thread's table.
    open: usize,
    /// `net.ipv4.ip_local_port_range` as written, and how many ports it holds.
    ports: Option<(String, usize)>,
}

impl Room {
    /// Raises the descriptor limit to the hard limit, and reads the rest.
    fn here() -> Result<Room, String> {
        let limit = crate::engine::raise_descriptor_limit()
            .map_err(|e| format!("cannot read the descriptor limit (getrlimit): {e}"))?;
        Ok(Room {
            limit,
            open: open_descriptors().unwrap_or(0),
            ports: local_ports(),
        })
    }

    /// The kernel's line that says where a crowd of `count` goes, and what limits it.
    fn describe(&self, count: usize, server_here: bool) -> String {
        let raised = if self.limit.was < self.limit.now {
            format!(", raised from {}", thousands(self.limit.was as usize))
        } else {
            String::new()
        };
        let server_side = if server_here {
            format!(
                ", the server's in the process's table ({} open now)",
                thousands(self.open)
            )
        } else {
            String::new()
        };
        let mut said = format!(
            "kernel   descriptors: at most {} per table (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`{raised}); the crowd's {} go in a table of its own{server_side}",
            thousands(self.limit.now as usize),
            thousands(count)
        );
        if let Some((range, ports)) = &self.ports {
            said.push_str(&format!(
                "; local ports for them: {} (net.ipv4.ip_local_port_range = {range})",
                thousands(*ports)
            ));
        }
        said
    }

    /// Whether a crowd of `count` fits: its own table, the server's ends in this process's
    /// table (`server_here`), a local port for each connection.
    fn check(&self, count: usize, server_here: bool) -> Result<(), String> {
        let crowd_needs = count as u64 + CROWD_SPARE;
        let server_needs = if server_here {
            (self.open + count) as u64 + DescriptorLimit::SPARE
        } else {
            0
        };
        if self.limit.now < crowd_needs.max(server_needs) {
            return Err(format!(
                "a crowd of {} needs as many descriptors in its own table, and the server as many again in the process's table (which has {} open already); each table may hold {} (ulimit -n, already raised to the hard limit, ulimit -Hn): raise the hard limit (as root, `ulimit -Hn 65536`, or LimitNOFILE= for a service) or make the crowd smaller",
                thousands(count),
                thousands(self.open),
                thousands(self.limit.now as usize)
            ));
        }
        // Each connection to the one server address needs a local port of its own.
        if let Some((range, ports)) = &self.ports
            && count > *ports
        {
            return Err(format!(
                "a crowd of {} needs a local port for each connection, and net.ipv4.ip_local_port_range ({range}) gives {}: make the crowd smaller",
                thousands(count),
                thousands(*ports)
            ));
        }
        Ok(())
    }
}

/// Whether a crowd of `count` connections, and the lab's own server's ends of them, fit in
/// this process on this machine; if not, why, and what to change. The test suite asks before
/// it runs a lesson with a crowd, and reports the lesson as ignored when the answer is no.
pub fn room_for_crowd(count: usize) -> Result<(), String> {
    Room::here()?.check(count, true)
}

/// The local ports `connect` may pick from, as `net.ipv4.ip_local_port_range` says, and how
/// many they are.
fn local_ports() -> Option<(String, usize)> {
    let range = crate::kernel::sysctl("net.ipv4.ip_local_port_range").ok()?;
    let range = range.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut bounds = range.split(' ').map(str::parse::<usize>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    Some((range.clone(), high.saturating_sub(low) + 1))
}

/// Sends the SYN and returns at once: a non-blocking `connect` says `EINPROGRESS`, and the
/// kernel carries on with the handshake; the socket becomes writable when it ends.
fn start_connect(to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// What the server did for the crowd and has not been said yet: counted, not shown line by
/// line.
#[derive(Default)]
pub(super) struct Tally {
    /// Each kind of event, how many, and the bytes they carried, in the order first seen.
    parts: Vec<(Part, usize, usize)>,
    /// Connections of this crowd the server has seen end, said or not.
    ended_in_all: usize,
}

/// A kind of server event about the crowd.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Accepted,
    /// A recv that returned this many bytes (counted under `Received(0)`).
    Received(usize),
    Ended(Ended),
    /// A log line not about one connection.
    Said(String),
}

impl Part {
    /// The part's share of the crowd's line: `count` events of this kind, which received
    /// `bytes` in all, from a server that reads by `recv(recv_size)` and acks with `ack` bytes.
    fn counted(&self, count: usize, bytes: usize, recv_size: usize, ack: usize) -> String {
        let times = format!("× {}", thousands(count));
        match self {
            Part::Accepted => format!("accept() {times}"),
            Part::Received(_) => format!(
                "recv({recv_size}) {times} ({} B in all), an ack ({ack} B) for each",
                thousands(bytes)
            ),
            Part::Ended(Ended::EndOfStream) => {
                format!("recv({recv_size}) → 0 bytes {times}: end of stream, close() each")
            }
            Part::Ended(Ended::ServerStopping) => {
                format!("close() {times}: the server is stopping")
            }
            Part::Ended(Ended::Other(reason)) => format!("ended {times}: {reason}; close() each"),
            Part::Said(text) if count == 1 => format!("logged: {text}"),
            Part::Said(text) => format!("logged {times}: {text}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ended {
    EndOfStream,
    ServerStopping,
    Other(String),
}

fn no_crowd() -> StepError {
    StepError::Misuse("there is no crowd: add `crowd: connect N` before this step".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tests::{EPOLL_CALLS, interrupt, wait_until_blocked_in};
    use std::net::TcpListener;

    #[test]
    fn each_kind_of_the_servers_events_for_the_crowd_is_counted_in_its_own_words() {
        let said = |part: Part, count| part.counted(count, 15_000, 1024, 19);
        assert_eq!(said(Part::Accepted, 3), "accept() × 3");
        assert_eq!(
            said(Part::Received(0), 3_000),
            "recv(1024) × 3,000 (15,000 B in all), an ack (19 B) for each"
        );
        assert_eq!(
            said(Part::Ended(Ended::EndOfStream), 3),
            "recv(1024) → 0 bytes × 3: end of stream, close() each"
        );
        assert_eq!(
            said(Part::Ended(Ended::ServerStopping), 3),
            "close() × 3: the server is stopping"
        );
        assert_eq!(
            said(Part::Ended(Ended::Other("connection reset".into())), 2),
            "ended × 2: connection reset; close() each"
        );
        assert_eq!(said(Part::Said("busy".into()), 1), "logged: busy");
        assert_eq!(said(Part::Said("busy".into()), 2), "logged × 2: busy");
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// A crowd of `count` connections to a listener of the test's own (with room in its
    /// queue for all of them), and the server's ends of them, in the crowd's order.
    /// A listener on a free loopback port with `backlog`, and its address.
    fn listening(backlog: i32) -> (TcpListener, SocketAddr) {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(backlog).unwrap();
        let listener: TcpListener = socket.into();
        let to = listener.local_addr().unwrap();
        (listener, to)
    }

    fn crowd_and_server(count: usize, pace: &Pace) -> (Members, Vec<TcpStream>) {
        let (listener, to) = listening(1024);
        let mut members = Members::new().unwrap();
        let Done::Connected { addresses } = members.connect(to, count, pace, far()).unwrap() else {
            panic!("the crowd did not connect");
        };
        let mut ends: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
        for _ in 0..count {
            let (stream, peer) = listener.accept().unwrap();
            let index = addresses.iter().position(|at| *at == peer).unwrap();
            ends[index] = Some(stream);
        }
        (members, ends.into_iter().map(Option::unwrap).collect())
    }

    fn unpaced() -> Pace {
        Pace {
            queue: 1025,
            accepted: None,
        }
    }

    fn room(limit: u64, open: usize, ports: usize) -> Room {
        Room {
            limit: DescriptorLimit {
                was: limit,
                now: limit,
            },
            open,
            ports: Some(("1000 1099".into(), ports)),
        }
    }

    /// A crowd fits when its own table, the server's table and the local ports each have
    /// room for it, to the descriptor: 8 spare in the crowd's table, 32 in the server's.
    #[test]
    fn a_crowd_fits_to_the_last_descriptor_and_port() {
        assert_eq!(room(108, 0, 1000).check(100, false), Ok(()));
        assert!(
            room(107, 0, 1000)
                .check(100, false)
                .unwrap_err()
                .contains("a crowd of 100 needs as many descriptors")
        );
        // The server's ends go in this process's table, beside what it holds open already.
        assert_eq!(room(142, 10, 1000).check(100, true), Ok(()));
        assert!(
            room(141, 10, 1000)
                .check(100, true)
                .unwrap_err()
                .contains("which has 10 open already")
        );
        assert_eq!(room(10_000, 0, 100).check(100, true), Ok(()));
        assert_eq!(
            room(10_000, 0, 99).check(100, true),
            Err("a crowd of 100 needs a local port for each connection, and net.ipv4.ip_local_port_range (1000 1099) gives 99: make the crowd smaller".into())
        );
    }

    #[test]
    fn where_a_crowd_goes_is_said_with_the_limits_that_apply() {
        let mut here = room(20_000, 9, 28_232);
        assert_eq!(
            here.describe(1_000, true),
            "kernel   descriptors: at most 20,000 per table (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`); the crowd's 1,000 go in a table of its own, the server's in the process's table (9 open now); local ports for them: 28,232 (net.ipv4.ip_local_port_range = 1000 1099)"
        );
        here.limit.was = 1024;
        here.ports = None;
        assert_eq!(
            here.describe(1_000, false),
            "kernel   descriptors: at most 20,000 per table (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`, raised from 1,024); the crowd's 1,000 go in a table of its own"
        );
    }

    /// The local ports are this machine's, as its sysctl says.
    #[test]
    fn the_local_ports_are_read_from_the_sysctl() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let bounds: Vec<usize> = range
            .split_whitespace()
            .map(|bound| bound.parse().unwrap())
            .collect();
        let (shown, count) = local_ports().expect("the sysctl is readable");
        assert_eq!(shown, format!("{} {}", bounds[0], bounds[1]));
        assert_eq!(count, bounds[1] - bounds[0] + 1);
        assert!(room_for_crowd(100_000_000).is_err());
        assert_eq!(room_for_crowd(10), Ok(()));
    }

    /// Without word of the server's accepts, at most 128 connects are under way at once; a
    /// crowd larger than that still connects, as the first ones complete.
    #[test]
    fn a_crowd_larger_than_its_connects_at_once_connects_in_full() {
        let (members, ends) = crowd_and_server(CONNECTS_AT_ONCE + 72, &unpaced());
        assert_eq!(members.all.len(), 200);
        assert!(members.all.iter().all(|member| member.connected));
        assert_eq!(ends.len(), 200);
    }

    /// A send bigger than the send buffers: the first write takes part of it, and the rest
    /// goes as the peer reads. Every byte arrives, in order.
    #[test]
    fn a_send_that_fills_the_buffers_is_finished_as_they_drain() {
        let (mut members, ends) = crowd_and_server(3, &unpaced());
        for member in &members.all {
            socket2::SockRef::from(&member.stream)
                .set_send_buffer_size(4096)
                .unwrap();
        }
        let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        let sending = {
            let payload = payload.clone();
            thread::Builder::new()
                .name("crowd-send-test".into())
                .spawn(move || {
                    let done = members.send(&payload, far());
                    (done, members)
                })
                .unwrap()
        };
        // The crowd waits for room only once the send buffers are full: nobody reads yet.
        wait_until_blocked_in("crowd-send-test", EPOLL_CALLS);
        interrupt("crowd-send-test", &sending, EPOLL_CALLS);
        let readers: Vec<_> = ends
            .into_iter()
            .map(|mut end| {
                thread::spawn(move || {
                    let mut got = Vec::new();
                    end.read_to_end(&mut got).unwrap();
                    got
                })
            })
            .collect();
        let (done, members) = sending.join().unwrap();
        assert!(matches!(done, Ok(Done::Sent)));
        assert!(members.all.iter().all(|member| member.unsent.is_empty()));
        drop(members);
        for reader in readers {
            assert!(reader.join().unwrap() == payload, "the bytes differ");
        }
    }

    /// Against a server that accepts nothing, the crowd starts no more connects than the
    /// listen queue holds (backlog 1: two, lesson 18), and says so when the step's time is
    /// up; each accept the server reports makes room for one more.
    #[test]
    fn a_crowd_connects_no_faster_than_the_listen_queue_takes_them() {
        let (_listener, to) = listening(1);
        let timeline = Arc::new(Timeline::default());
        let pace = Pace {
            queue: 2,
            accepted: Some(Arc::clone(&timeline)),
        };
        let soon = Instant::now() + Duration::from_millis(300);
        let error = Members::new()
            .unwrap()
            .connect(to, 5, &pace, soon)
            .err()
            .expect("the crowd cannot all connect");
        assert_eq!(
            error,
            "the crowd opened 2 of 5 connections in time (0 still in their handshake, 3 not started; the server accepted 0 of them, and its listen queue holds 2)"
        );
        // Accepted and reported one by one, all five get in.
        let (listener, to) = listening(1);
        let serving = thread::spawn(move || {
            let mut ends = Vec::new();
            while ends.len() < 5 {
                let (end, peer) = listener.accept().unwrap();
                timeline.server_event(ServerEvent::Ack(crate::server::Event::Connected {
                    peer: crate::endpoint::Address::Inet(peer),
                }));
                ends.push(end);
            }
            ends
        });
        let mut members = Members::new().unwrap();
        let done = members.connect(to, 5, &pace, far());
        assert!(
            matches!(done, Ok(Done::Connected { .. })),
            "{:?}",
            done.err()
        );
        assert_eq!(serving.join().unwrap().len(), 5);
    }

    /// A connect the kernel refuses before sending anything fails the step at once, named.
    /// TCP does not connect to a broadcast address: connect(2) fails with ENETUNREACH
    /// without a packet leaving, so this stays on the machine.
    #[test]
    fn a_connect_that_fails_at_once_is_said_at_once() {
        let to = SocketAddr::from(([255, 255, 255, 255], 80));
        let error = Members::new()
            .unwrap()
            .connect(to, 3, &unpaced(), far())
            .err()
            .expect("no connection to a broadcast address");
        assert!(
            error.starts_with("the crowd's connect number 1 failed at once: "),
            "{error}"
        );
    }

    /// A connection the server reset cannot send: the step fails at once and says which
    /// connection, instead of waiting for room that never comes.
    #[test]
    fn a_send_on_a_reset_connection_fails_and_says_which() {
        let (mut members, ends) = crowd_and_server(2, &unpaced());
        socket2::SockRef::from(&ends[1])
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(ends);
        // The RST has arrived once a recv on the crowd's end says so.
        let mut buffer = [0u8; 8];
        let reset = (&members.all[1].stream).read(&mut buffer);
        assert!(reset.is_err(), "{reset:?}");
        let error = members.send(b"hello", far()).err().expect("the send fails");
        assert!(
            error.starts_with("the crowd's connection number 2 could not send: "),
            "{error}"
        );
    }

    /// Answers that come after the recv began, in pieces smaller than the answer, are waited
    /// for (and a signal during the wait is no failure); the step ends as soon as every
    /// connection has its answer.
    #[test]
    fn answers_that_come_later_and_in_pieces_are_awaited() {
        let (mut members, mut ends) = crowd_and_server(3, &unpaced());
        let started = Instant::now();
        let receiving = thread::Builder::new()
            .name("crowd-recv-test".into())
            .spawn(move || {
                let done = members.recv(4, b"ack!ack!", far());
                (done, members)
            })
            .unwrap();
        wait_until_blocked_in("crowd-recv-test", EPOLL_CALLS);
        interrupt("crowd-recv-test", &receiving, EPOLL_CALLS);
        for end in &mut ends {
            end.write_all(b"ack!").unwrap();
        }
        wait_until_blocked_in("crowd-recv-test", EPOLL_CALLS);
        for end in &mut ends {
            end.write_all(b"ack!").unwrap();
        }
        let (done, members) = receiving.join().unwrap();
        assert!(matches!(done, Ok(Done::Received)), "{:?}", done.err());
        assert!(members.all.iter().all(|member| member.got == b"ack!ack!"));
        // Well before the deadline a minute away: the step does not wait it out.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// What a connection got instead is said for the first one that got it wrong.
    #[test]
    fn a_wrong_answer_is_named_for_the_first_connection_that_got_it() {
        let expect = |members: &mut Members, deadline| {
            members
                .recv(1024, b"ack!", deadline)
                .err()
                .expect("the step fails")
        };
        let (mut members, mut ends) = crowd_and_server(3, &unpaced());
        ends[0].write_all(b"ack!").unwrap();
        ends[1].write_all(b"no").unwrap();
        ends[1].shutdown(std::net::Shutdown::Write).unwrap();
        ends[2].shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            expect(&mut members, far()),
            "2 of the crowd's 3 connections did not receive \"ack!\"; the first of them, number 2, got \"no\", then end of stream"
        );
        let (mut members, mut ends) = crowd_and_server(2, &unpaced());
        ends[0].write_all(b"ack!").unwrap();
        ends[1].write_all(b"ac").unwrap();
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            expect(&mut members, soon),
            "1 of the crowd's 2 connections did not receive \"ack!\"; the first of them, number 2, got only \"ac\" within the step's timeout"
        );
        let (mut members, ends) = crowd_and_server(1, &unpaced());
        ends[0].shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            expect(&mut members, far()),
            "1 of the crowd's 1 connections did not receive \"ack!\"; the first of them, number 1, got end of stream"
        );
        let (mut members, ends) = crowd_and_server(1, &unpaced());
        socket2::SockRef::from(&ends[0])
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(ends);
        assert_eq!(
            expect(&mut members, far()),
            "1 of the crowd's 1 connections did not receive \"ack!\"; the first of them, number 1, got an error: connection reset by peer"
        );
        let (mut members, _ends) = crowd_and_server(1, &unpaced());
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            expect(&mut members, soon),
            "1 of the crowd's 1 connections did not receive \"ack!\"; the first of them, number 1, got nothing within the step's timeout"
        );
    }
}
