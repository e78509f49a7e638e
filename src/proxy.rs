//! A hostile network, the same every run: a proxy between a client and a server that splits,
//! holds, merges and cuts what it forwards.
//!
//! Framing bugs pass on a quiet loopback and fail in the field. A server that treats each
//! `recv` as one message works while every message arrives in one segment and is read at
//! once; on a real network a message arrives in pieces, or two arrive together (lesson 05).
//! `socket-lab proxy` (and `network ...` in a lesson, `check --network ...`) makes that
//! happen on purpose:
//!
//! - `split=N`: forward in pieces of N bytes, and send each piece only once the receiver has
//!   *read* the one before. "Has read" is the kernel's count of bytes waiting in the
//!   receiver's socket (asked of `sock_diag`, sock_diag(7): the receiver is on the same
//!   machine, since the lab stays on loopback), so a
//!   receiver's `recv` returns exactly one piece, every run, however loaded the machine.
//!   (For a Unix socket the kernel shows no such count; there the pieces leave 2 ms apart.)
//! - `delay=MS`: hold each piece this long before it leaves.
//! - `merge=MS`: after the first bytes arrive, keep collecting for this long and forward all
//!   of it at once: two sends become one.
//! - `close-after=N` / `reset-after=N`: after N bytes have crossed in either direction, end
//!   both connections, with FIN or with RST (`SO_LINGER` 0): the peer sees a message cut off.
//!
//! Every piece forwarded and every cut is reported as a [`ProxyEvent`], so the transcript (and
//! `socket-lab proxy`'s log) says what the network did to which bytes.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::endpoint::AddressReuse;
use crate::endpoint::{Address, Endpoint, Stream};
use crate::engine::accept::{Acceptor, ListenConfig};
use crate::engine::{AcceptNotice, RunningServer, Service};
use crate::error::Error;
use crate::kernel::tcp_connection;

/// What the proxy does to the bytes it forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Network {
    pub split: Option<usize>,
    pub delay: Option<Duration>,
    pub merge: Option<Duration>,
    pub close_after: Option<u64>,
    pub reset_after: Option<u64>,
}

/// The longest any one setting may hold bytes, so a proxy can never stall a lesson.
pub const MOST_HELD: Duration = Duration::from_secs(10);
/// How often a split waits to see the receiver read a piece, and for how long at most.
const READ_POLL: Duration = Duration::from_millis(1);
const READ_WAIT: Duration = Duration::from_secs(5);
/// The pause between pieces where the receiver's reads cannot be seen (Unix sockets).
const UNIX_PIECE_GAP: Duration = Duration::from_millis(2);
/// How long a cut waits for the other direction to report what it forwarded before it.
const REPORT_WAIT: Duration = Duration::from_secs(1);

impl Network {
    /// `split=1 delay=5ms`: the words a lesson's `network` line and `--network` take.
    pub fn parse(words: &str) -> Result<Network, String> {
        let mut network = Network::default();
        for word in words.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("`{word}`: expected KEY=VALUE, such as split=1"))?;
            let duration = || -> Result<Duration, String> {
                let millis: u64 = value
                    .strip_suffix("ms")
                    .and_then(|ms| ms.parse().ok())
                    .ok_or_else(|| format!("{key}={value}: expected milliseconds, such as 20ms"))?;
                let duration = Duration::from_millis(millis);
                if duration > MOST_HELD {
                    return Err(format!(
                        "{key}={value}: at most {}ms",
                        MOST_HELD.as_millis()
                    ));
                }
                Ok(duration)
            };
            let count = || -> Result<u64, String> {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|count| *count > 0)
                    .ok_or_else(|| format!("{key}={value}: expected a whole number above 0"))
            };
            match key {
                "split" => {
                    network.split = Some(
                        usize::try_from(count()?)
                            .map_err(|_| format!("{key}={value} is too large"))?,
                    )
                }
                "delay" => network.delay = Some(duration()?),
                "merge" => network.merge = Some(duration()?),
                "close-after" => network.close_after = Some(count()?),
                "reset-after" => network.reset_after = Some(count()?),
                other => {
                    return Err(format!(
                        "unknown network setting `{other}`; they are split, delay, merge, close-after, reset-after"
                    ));
                }
            }
        }
        if network.close_after.is_some() && network.reset_after.is_some() {
            return Err("close-after and reset-after cannot both end the connection".into());
        }
        Ok(network)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if let Some(split) = self.split {
            words.push(format!("split={split}"));
        }
        if let Some(delay) = self.delay {
            words.push(format!("delay={}ms", delay.as_millis()));
        }
        if let Some(merge) = self.merge {
            words.push(format!("merge={}ms", merge.as_millis()));
        }
        if let Some(after) = self.close_after {
            words.push(format!("close-after={after}"));
        }
        if let Some(after) = self.reset_after {
            words.push(format!("reset-after={after}"));
        }
        f.write_str(&words.join(" "))
    }
}

/// Which way bytes went through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    ToServer,
    ToClient,
}

/// What the proxy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A client connected and the proxy connected on to the server; the server sees
    /// `upstream` where the client is `client`.
    Relaying { client: Address, upstream: Address },
    /// Bytes `from..to` of one direction went on as `pieces` writes.
    Forwarded {
        client: Address,
        way: Way,
        from: u64,
        to: u64,
        pieces: usize,
    },
    /// The proxy ended both connections after `after` bytes, with RST (`reset`) or FIN.
    Cut {
        client: Address,
        after: u64,
        reset: bool,
    },
    /// Connecting on to the server failed; the client's connection is closed.
    Failed { client: Address, error: String },
}

impl fmt::Display for ProxyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyEvent::Relaying { client, upstream } => {
                write!(f, "[{client}] relayed to the server as {upstream}")
            }
            ProxyEvent::Forwarded {
                client,
                way,
                from,
                to,
                pieces,
            } => {
                let arrow = match way {
                    Way::ToServer => "→ server",
                    Way::ToClient => "← server",
                };
                write!(
                    f,
                    "[{client}] {arrow}: bytes {from}..{to} as {pieces} write"
                )?;
                if *pieces != 1 {
                    f.write_str("s")?;
                }
                Ok(())
            }
            ProxyEvent::Cut {
                client,
                after,
                reset,
            } => write!(
                f,
                "[{client}] cut after {after} bytes, with {}",
                if *reset { "RST" } else { "FIN" }
            ),
            ProxyEvent::Failed { client, error } => write!(f, "[{client}] {error}"),
        }
    }
}

pub type ProxyLog = Arc<dyn Fn(ProxyEvent) + Send + Sync>;

/// A bound proxy that has not started accepting yet.
pub struct Proxy {
    acceptor: Acceptor,
    to: Endpoint,
    network: Network,
}

impl Proxy {
    /// Listens on `listen` (port 0: any free port) for clients to relay to `to`.
    pub fn bind(listen: &Endpoint, to: Endpoint, network: Network) -> Result<Proxy, Error> {
        let acceptor = Acceptor::bind(
            listen,
            ListenConfig {
                backlog: 128,
                address_reuse: AddressReuse::Allowed,
                max_clients: 256,
                io_timeout: Some(Duration::from_secs(300)),
                engine: crate::engine::Engine::Threads,
            },
        )?;
        Ok(Proxy {
            acceptor,
            to,
            network,
        })
    }

    pub fn local_addr(&self) -> &Address {
        self.acceptor.local_addr()
    }

    /// Stops the proxy from any thread (Ctrl-C in the binary).
    pub fn acceptor_handle(&self) -> crate::engine::ServerHandle {
        self.acceptor.handle()
    }

    pub fn spawn(self, log: ProxyLog) -> RunningServer {
        let addr = self.local_addr().clone();
        let handle = self.acceptor.handle();
        RunningServer::spawn(addr, handle, move || self.run(log))
    }

    pub fn run(self, log: ProxyLog) -> Result<(), Error> {
        let Proxy {
            acceptor,
            to,
            network,
        } = self;
        acceptor.run_threads(Arc::new(Relay { to, network, log }))
    }
}

/// The proxy as a [`Service`]: each connection relayed on a thread of its own.
struct Relay {
    to: Endpoint,
    network: Network,
    log: ProxyLog,
}

impl Service for Relay {
    fn serve(&self, client: Stream, peer: Address) {
        relay(client, peer, &self.to, self.network, &self.log);
    }

    fn notice(&self, notice: AcceptNotice) {
        if let AcceptNotice::SetupFailed { peer, error } = notice {
            (self.log)(ProxyEvent::Failed {
                client: peer,
                error,
            });
        }
    }
}

/// What the two directions of one relayed connection share.
#[derive(Default)]
struct Crossed {
    tally: Mutex<Tally>,
    /// Signalled when a direction has reported what it forwarded.
    reported: Condvar,
}

#[derive(Default)]
struct Tally {
    /// Bytes that crossed so far, both ways, for `close-after`/`reset-after`.
    bytes: u64,
    /// Forwards counted in `bytes` and not yet reported: a cut waits for them (up to
    /// [`REPORT_WAIT`]), so that what crossed before the cut is told before it, and is not
    /// lost when the lesson ends with the cut.
    unreported: usize,
}

impl Crossed {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn relay(client: Stream, peer: Address, to: &Endpoint, network: Network, log: &ProxyLog) {
    let server = match Stream::connect_timeout(to, Duration::from_secs(10)) {
        Ok(server) => server,
        Err(e) => {
            log(ProxyEvent::Failed {
                client: peer,
                error: format!("cannot reach the server: {e}"),
            });
            return;
        }
    };
    // Pieces must leave one by one, not wait to be merged by Nagle's algorithm.
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    if let Ok(upstream) = server.local_addr() {
        log(ProxyEvent::Relaying {
            client: peer.clone(),
            upstream,
        });
    }
    let crossed = Arc::new(Crossed::default());
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let back = {
        let (server, client, peer, log, crossed) = (
            server_reader,
            client.try_clone(),
            peer.clone(),
            Arc::clone(log),
            Arc::clone(&crossed),
        );
        thread::spawn(move || {
            if let Ok(client) = client {
                pump(
                    server,
                    client,
                    Way::ToClient,
                    network,
                    &peer,
                    &log,
                    &crossed,
                );
            }
        })
    };
    pump(
        client_reader,
        server,
        Way::ToServer,
        network,
        &peer,
        log,
        &crossed,
    );
    let _ = back.join();
    drop(client);
}

/// Forwards `from` to `to` until `from` ends, as the network says.
fn pump(
    mut from: Stream,
    mut to: Stream,
    way: Way,
    network: Network,
    peer: &Address,
    log: &ProxyLog,
    crossed: &Crossed,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset: u64 = 0;
    while let Ok(n) = read_retrying(&mut from, &mut buffer) {
        if n == 0 {
            break;
        }
        let mut chunk = buffer[..n].to_vec();
        if let Some(merge) = network.merge {
            // Collect whatever else comes within the window, then forward it as one.
            let until = Instant::now() + merge;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if left.is_zero() || from.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(more) => chunk.extend_from_slice(&buffer[..more]),
                }
            }
            let _ = from.set_read_timeout(None);
        }
        // close-after/reset-after: forward up to the limit, then cut.
        let limit = network.close_after.or(network.reset_after);
        let (allowed, cut_now) = {
            let mut tally = crossed.tally();
            let room = limit.map_or(u64::MAX, |limit| limit.saturating_sub(tally.bytes));
            let allowed = (chunk.len() as u64).min(room) as usize;
            tally.bytes += allowed as u64;
            if allowed > 0 {
                tally.unreported += 1;
            }
            (allowed, limit.is_some_and(|limit| tally.bytes >= limit))
        };
        chunk.truncate(allowed);
        let pieces = forward(&chunk, &mut to, &network);
        if !chunk.is_empty() {
            log(ProxyEvent::Forwarded {
                client: peer.clone(),
                way,
                from: offset,
                to: offset + chunk.len() as u64,
                pieces,
            });
            crossed.tally().unreported -= 1;
            crossed.reported.notify_all();
        }
        offset += chunk.len() as u64;
        if cut_now {
            // The other direction may have forwarded bytes and not told of them yet.
            drop(
                crossed
                    .reported
                    .wait_timeout_while(crossed.tally(), REPORT_WAIT, |tally| tally.unreported > 0),
            );
            let reset = network.reset_after.is_some();
            // Reported before it is done, as a send is: the peers' calls that see the cut
            // come after it.
            log(ProxyEvent::Cut {
                client: peer.clone(),
                after: limit.unwrap_or_default(),
                reset,
            });
            for stream in [&from, &to] {
                if reset {
                    abort(stream);
                } else {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
            return;
        }
    }
    // The sender half-closed: pass that on, so the other side's recv returns 0 too.
    let _ = to.shutdown(Shutdown::Write);
}

/// Aborts a TCP connection at once with RST, whoever else holds its socket: `connect` with
/// the address family `AF_UNSPEC` disconnects a TCP socket (connect(2)), and the kernel resets
/// a connection it drops that way. A Unix socket has no RST: it is shut down instead.
fn abort(stream: &Stream) {
    use std::os::fd::AsRawFd;
    if let Stream::Tcp(tcp) = stream {
        // SAFETY: sockaddr is plain old data; an all-zero one with AF_UNSPEC is what
        // connect(2) documents for dissolving the association.
        let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
        unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        // SAFETY: the address is valid for the length given; the call only acts on the fd.
        let result = unsafe {
            libc::connect(
                tcp.as_raw_fd(),
                &unspec,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
        if result == 0 {
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_retrying(stream: &mut Stream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Writes `chunk` to `to` as the network says; returns how many writes it took.
fn forward(chunk: &[u8], to: &mut Stream, network: &Network) -> usize {
    let size = network.split.unwrap_or(chunk.len().max(1));
    let mut pieces = 0;
    for piece in chunk.chunks(size) {
        if let Some(delay) = network.delay {
            thread::sleep(delay);
        }
        if pieces > 0 && network.split.is_some() {
            wait_until_read(to);
        }
        if to.write_all(piece).is_err() {
            break;
        }
        pieces += 1;
    }
    if network.split.is_some() {
        // The last piece too: the next chunk must not join it in the receiver's buffer.
        wait_until_read(to);
    }
    pieces
}

/// Waits until the receiver at the other end of `to` has read everything sent to it: its
/// socket's receive queue, as the kernel counts it, is empty. Bounded by [`READ_WAIT`].
fn wait_until_read(to: &Stream) {
    let (Ok(Address::Inet(local)), Ok(Address::Inet(remote))) = (to.local_addr(), to.peer_addr())
    else {
        thread::sleep(UNIX_PIECE_GAP);
        return;
    };
    let deadline = Instant::now() + READ_WAIT;
    while Instant::now() < deadline {
        if receiver_queue(remote, local).is_none_or(|waiting| waiting == 0) {
            return;
        }
        thread::sleep(READ_POLL);
    }
}

/// Bytes waiting to be read in the socket at `local` connected to `remote`, if the kernel
/// shows it (it must be on this machine). Not counting a FIN: when the lesson ends, the
/// proxy's own shutdown can reach the receiver while this waits, and a receiver that has
/// read every byte must not look as if it had one left. One `sock_diag` lookup, not a read of all of
/// `/proc/net/tcp`: this is asked every millisecond, beside lessons that hold ten thousand
/// sockets.
fn receiver_queue(local: SocketAddr, remote: SocketAddr) -> Option<usize> {
    tcp_connection(local, remote)
        .ok()
        .flatten()
        .map(|socket| socket.unread_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_settings_parse_and_print_back() {
        let network = Network::parse("split=1 delay=5ms merge=20ms close-after=10").unwrap();
        assert_eq!(network.split, Some(1));
        assert_eq!(network.delay, Some(Duration::from_millis(5)));
        assert_eq!(
            network.to_string(),
            "split=1 delay=5ms merge=20ms close-after=10"
        );
        for (bad, says) in [
            ("split=0", "above 0"),
            ("delay=5", "milliseconds"),
            ("delay=60000ms", "at most"),
            ("jitter=1", "unknown network setting"),
            ("close-after=1 reset-after=1", "cannot both"),
        ] {
            let error = Network::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
