//! The web server: `socket-lab http`, the walkthrough's HTTP coda built properly.
//!
//! It runs on the same engines as the ack server ([`crate::engine`]: at most `max_clients`
//! connections served at once, a stop that shuts every connection down), `threads` or `epoll`.
//! What differs is the conversation on each connection, written here as a blocking loop
//! (`serve_connection`, for the thread pool) and in [`super::conversation`] as the same steps
//! for the event loop:
//!
//! 1. `recv` into a buffer until a [`RequestReader`] says the request is complete. One `recv`
//!    can hold half a request or several (pipelining), so bytes left over after a request stay
//!    in the buffer for the next one. The reader remembers what it already decoded, so a
//!    request trickled in a thousand `recv`s is not parsed from the start a thousand times.
//! 2. Answer with one `write` ([`Response::encode`](super::response::Response::encode)), and log one line: peer, request line,
//!    status, bytes sent.
//! 3. Keep the connection for the next request (HTTP/1.1), or close it: the client said
//!    `Connection: close`, or spoke HTTP/1.0 without asking for `keep-alive`.
//!
//! A request that cannot be served gets its status (400, 408, 413, 414, 431, 501, 505) with
//! `Connection: close`, and then the connection is closed: after a framing error nobody
//! knows where the next request would start. `404` and `405` are ordinary answers to a
//! well-formed request, so the connection stays open after them.
//!
//! Slow and idle peers are bounded three ways: every `recv` waits at most `read_timeout` (an
//! idle keep-alive connection is closed quietly then), a request must arrive in full
//! within `request_timeout` of its first byte, or it gets `408`, and a response must be sent
//! in full within `write_timeout`, or the connection is closed. A peer dribbling one byte a
//! second, or reading one byte a second, cannot hold a worker longer than that: a timeout
//! on each `send` would not do, since each `send` that moves a few bytes starts it afresh.
//! Memory per connection is one request at most (the parser's [`Limits`]) plus one `recv`
//! buffer.
//!
//! # Threads or an event loop
//!
//! On `--engine threads` every connection is served by a blocking thread of its own for as
//! long as it lasts, as in the Rust Book's last chapter, but the pool grows on demand up to a
//! high cap ([`MAX_CLIENTS`], 2048) instead of staying small and fixed: a pool of 8 workers
//! cannot serve 64 keep-alive connections, since a worker stays with its connection while the
//! client is idle between requests. Idle timeouts give the threads back: `read_timeout` closes
//! a keep-alive connection silent for 10 s, `request_timeout` bounds a slow request. The price
//! is memory per connection (a thread's touched stack, [`crate::engine::pool::WORKER_STACK_SIZE`]
//! reserved) and a context switch per request, which is where this design stops scaling.
//!
//! `--engine epoll`, the default for `socket-lab http`, is what nginx does: one thread per
//! core watching every socket and serving whichever is ready, each connection a small state
//! machine ([`super::conversation`]). An idle keep-alive connection then costs its buffers, not
//! a thread, so ten thousand of them fit (`BENCHMARKS.md` measures both).
//!
//! `tests/engines/http_server.rs` drives this with raw sockets, curl, Python's `http.client` and
//! headless Chromium.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::endpoint::AddressReuse;
use crate::endpoint::{Address, Endpoint, Stream};
use crate::engine::accept::{Acceptor, ListenConfig};
use crate::engine::{
    AcceptNotice, Engine, EventDriven, RunningServer, ServerHandle, Service, deadline_after,
};
use crate::error::Error;
use crate::escape::escape_in;
use crate::server::{BACKLOG, DEFAULT_PORT};

use super::conversation::HttpConversation;
use super::request::{Framing, Head, Limits, ParseError, Request, RequestReader, Status, Version};
use super::response::{Connection, Response};
use super::site;

/// How many connections are served at once: far more than the ack server's 64, because an
/// HTTP client holds its keep-alive connections open and idle between requests (a browser
/// keeps six per site). Each costs one thread, about 27 KiB of memory measured (see the
/// module doc). Beyond it, new connections wait in the listen queue.
pub const MAX_CLIENTS: usize = 2048;
/// The most bytes one `recv` takes.
pub const RECV_SIZE: usize = 8 * 1024;
/// How long one `recv` may wait, and so how long an idle keep-alive connection stays open.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request (head and body) may take from its first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing a whole response may take, however slowly the peer reads.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an error response, how long to keep reading (and discarding) before closing; see
/// [`close_after_error`]. (Not `SO_LINGER`, which makes `close` wait for unsent data.)
pub(super) const DRAIN_TIME: Duration = Duration::from_secs(1);
/// ... and how many bytes at most.
pub(super) const DRAIN_BYTES: usize = 64 * 1024;
/// `--max-clients` by default on the event loop: a connection costs a descriptor and a few
/// hundred bytes there, not a thread, so the cap is the descriptor limit's business.
pub const MAX_CLIENTS_EVENT_LOOP: usize = 20_000;

/// Everything `socket-lab http` can be told.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub endpoint: Endpoint,
    pub backlog: i32,
    pub max_clients: usize,
    pub limits: Limits,
    pub read_timeout: Duration,
    pub request_timeout: Duration,
    /// The deadline for sending one whole response (`100 Continue` included).
    pub write_timeout: Duration,
    /// How connections are served: [`Engine::Epoll`] by default, since a web server's clients
    /// keep idle connections open ([`Engine::Iterative`] is refused: one browser would hold
    /// the server).
    pub engine: Engine,
}

impl HttpConfig {
    /// The default configuration for `engine`, with its default `max_clients`.
    pub fn for_engine(engine: Engine) -> HttpConfig {
        HttpConfig {
            engine,
            max_clients: match engine {
                Engine::Epoll => MAX_CLIENTS_EVENT_LOOP,
                Engine::Threads | Engine::Iterative => MAX_CLIENTS,
            },
            ..HttpConfig::default()
        }
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            endpoint: Endpoint::inet("127.0.0.1", DEFAULT_PORT),
            backlog: BACKLOG,
            max_clients: MAX_CLIENTS,
            limits: Limits::default(),
            read_timeout: READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            engine: Engine::Threads,
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.engine == Engine::Iterative {
            return Err(Error::Config(
                "the web server runs on --engine threads or epoll: with iterative, one browser's idle keep-alive connection would keep every other client waiting".into(),
            ));
        }
        if self.max_clients == 0 {
            return Err(Error::Config("--max-clients must be at least 1".into()));
        }
        // listen(0) is legal on Linux: the queue still holds one connection (lesson 18).
        // A negative backlog means "the most", SOMAXCONN, to the kernel: refuse it rather
        // than surprise anyone.
        if !(0..=65_535).contains(&self.backlog) {
            return Err(Error::Config(format!(
                "--backlog must be between 0 and 65535, not {} (the kernel caps it at net.core.somaxconn)",
                self.backlog
            )));
        }
        if self.read_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.write_timeout.is_zero()
        {
            return Err(Error::Config(
                "--read-timeout, --request-timeout and --write-timeout must each be more than 0: a zero timeout would close every connection at once".into(),
            ));
        }
        Ok(())
    }
}

/// What the web server has to say. The binary prints these; tests collect them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpEvent {
    /// One request read and answered: the request line (escaped; `-` if none was read), the
    /// status, and the bytes of the response. Reported just before the response is written;
    /// a write that then fails adds a [`HttpEvent::ConnectionFailed`].
    Request {
        peer: Address,
        request_line: String,
        status: u16,
        bytes: usize,
    },
    /// All `max_clients` workers are busy; new connections wait in the listen queue.
    Busy { max_clients: usize },
    /// `accept` failed; the loop backs off and goes on.
    AcceptFailed { error: String },
    /// A connection failed outside a request: setting it up, or writing a response.
    ConnectionFailed { peer: Address, error: String },
}

impl HttpEvent {
    /// Problems go to stderr, requests to stdout.
    pub fn is_problem(&self) -> bool {
        !matches!(self, HttpEvent::Request { .. })
    }
}

impl crate::engine::LogEvent for HttpEvent {
    fn is_problem(&self) -> bool {
        HttpEvent::is_problem(self)
    }
}

impl fmt::Display for HttpEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpEvent::Request {
                peer,
                request_line,
                status,
                bytes,
            } => write!(f, "[{peer}] \"{request_line}\" {status} {bytes}"),
            HttpEvent::Busy { max_clients } => AcceptNotice::Busy {
                max_clients: *max_clients,
            }
            .fmt(f),
            HttpEvent::AcceptFailed { error } => AcceptNotice::AcceptFailed {
                error: error.clone(),
            }
            .fmt(f),
            HttpEvent::ConnectionFailed { peer, error } => write!(f, "[{peer}] {error}"),
        }
    }
}

/// Where events go.
pub type HttpLog = Arc<dyn Fn(HttpEvent) + Send + Sync>;

/// What answers a request that parsed: the lab's pages ([`LabSite`]), or a test's own.
pub trait Handler: Send + Sync + 'static {
    /// The response to `request`; `raw` is its bytes as received.
    fn respond(&self, request: &Request, raw: &[u8], peer: &Address) -> Response;

    /// The page that goes with an error status (400, 408, 413...).
    fn error_page(&self, status: u16, detail: &str) -> Response {
        site::error_page(status, detail)
    }
}

/// The lab's own pages: [`site`].
pub struct LabSite;

impl Handler for LabSite {
    fn respond(&self, request: &Request, raw: &[u8], peer: &Address) -> Response {
        site::respond(request, raw, peer)
    }
}

/// A bound, listening web server that has not started accepting yet.
pub struct HttpServer {
    acceptor: Acceptor,
    config: HttpConfig,
    handler: Arc<dyn Handler>,
}

/// A web server running on a thread of its own is the same handle as the ack server's.
pub type RunningHttpServer = RunningServer;

impl HttpServer {
    /// `socket`, `bind`, `listen(backlog)`.
    pub fn bind(config: HttpConfig) -> Result<HttpServer, Error> {
        HttpServer::bind_with(config, Arc::new(LabSite))
    }

    /// As [`HttpServer::bind`], answering with `handler` instead of the lab's pages.
    pub fn bind_with(config: HttpConfig, handler: Arc<dyn Handler>) -> Result<HttpServer, Error> {
        config.validate()?;
        // Timeouts are set per recv and per send below (`write_timeout` bounds each whole
        // response); until then the read timeout bounds both.
        let acceptor = Acceptor::bind(
            &config.endpoint,
            ListenConfig {
                backlog: config.backlog,
                address_reuse: AddressReuse::Allowed,
                max_clients: config.max_clients,
                io_timeout: Some(config.read_timeout),
                engine: config.engine,
            },
        )?;
        Ok(HttpServer {
            acceptor,
            config,
            handler,
        })
    }

    /// The address bound: with `--port 0`, the port the kernel chose.
    pub fn local_addr(&self) -> &Address {
        self.acceptor.local_addr()
    }

    pub fn handle(&self) -> ServerHandle {
        self.acceptor.handle()
    }

    /// Runs the server on a new thread.
    pub fn spawn(self, log: HttpLog) -> RunningHttpServer {
        let addr = self.local_addr().clone();
        let handle = self.handle();
        RunningServer::spawn(addr, handle, move || self.run(log))
    }

    /// Accepts and serves until [`ServerHandle::stop`] is called.
    pub fn run(self, log: HttpLog) -> Result<(), Error> {
        let service = HttpService {
            config: Arc::new(self.config),
            log,
            handler: self.handler,
        };
        self.acceptor.run(service)
    }
}

/// HTTP as a [`Service`]: what every engine runs for `socket-lab http`.
struct HttpService {
    config: Arc<HttpConfig>,
    log: HttpLog,
    handler: Arc<dyn Handler>,
}

impl Service for HttpService {
    fn serve(&self, stream: Stream, peer: Address) {
        serve_connection(stream, peer, &self.config, &self.log, &*self.handler);
    }

    fn notice(&self, notice: AcceptNotice) {
        (self.log)(match notice {
            // The web server logs requests, not connections.
            AcceptNotice::Accepted { .. } => return,
            AcceptNotice::Busy { max_clients } => HttpEvent::Busy { max_clients },
            AcceptNotice::AcceptFailed { error } => HttpEvent::AcceptFailed { error },
            AcceptNotice::SetupFailed { peer, error } => {
                HttpEvent::ConnectionFailed { peer, error }
            }
        })
    }
}

impl EventDriven for HttpService {
    type Conversation = HttpConversation;

    fn open(&self, peer: Address) -> HttpConversation {
        HttpConversation::new(
            peer,
            Arc::clone(&self.config),
            Arc::clone(&self.log),
            Arc::clone(&self.handler),
            Instant::now(),
        )
    }

    fn recv_size(&self) -> usize {
        RECV_SIZE
    }
}

/// Why no request came out of the connection.
enum NoRequest {
    /// The peer closed, or stayed silent, between requests: close without a word.
    Quiet,
    /// The request is malformed or over a limit: answer with its status, then close.
    Invalid(ParseError),
    /// The request did not arrive in time: answer 408, then close.
    TimedOut,
    /// The peer closed mid-request or the socket failed: nobody left to answer.
    Lost(String),
}

/// Requests and responses on one connection, until one side closes it.
fn serve_connection(
    mut stream: Stream,
    peer: Address,
    config: &HttpConfig,
    log: &HttpLog,
    handler: &dyn Handler,
) {
    // Bytes received and not yet used: part of a request, or pipelined requests after one.
    let mut received: Vec<u8> = Vec::new();
    loop {
        let answer = match read_request(&mut stream, &mut received, config) {
            Ok(request) => {
                let answer = answer(&request, &received[..request.len], &peer, handler);
                forget_answered(&mut received, request.len);
                answer
            }
            Err(NoRequest::Quiet) => return,
            Err(NoRequest::Lost(reason)) => {
                log(HttpEvent::ConnectionFailed {
                    peer,
                    error: format!("connection lost mid-request: {reason}"),
                });
                return;
            }
            Err(NoRequest::Invalid(error)) => {
                refuse(error.status(), &error.to_string(), &received, handler)
            }
            Err(NoRequest::TimedOut) => refuse(
                408,
                "the request did not arrive in time; the connection is closed",
                &received,
                handler,
            ),
        };
        // The request is logged before its response is written, not after: on loopback the
        // client can read the response before `write_all` returns here, and a log that comes
        // after the effect it caused tells the story backwards (see `scenario::timeline`).
        log(HttpEvent::Request {
            peer: peer.clone(),
            request_line: answer.request_line.clone(),
            status: answer.status,
            bytes: answer.bytes.len(),
        });
        // One write for the whole response (see `Response::encode`), within the deadline.
        if let Err(e) = send_within(&mut stream, &answer.bytes, config) {
            let why = match e.get_ref() {
                Some(timed_out) if e.kind() == io::ErrorKind::TimedOut => {
                    format!("{timed_out}; connection closed")
                }
                _ => crate::error::describe(&e),
            };
            log(HttpEvent::ConnectionFailed {
                peer,
                error: format!(
                    "cannot send the {} response to \"{}\": {why}",
                    answer.status, answer.request_line,
                ),
            });
            return;
        }
        if answer.connection == Connection::Close {
            // Error statuses may leave unread request bytes behind; see close_after_error.
            if answer.status >= 400 {
                close_after_error(&mut stream);
            }
            return;
        }
    }
}

/// Drops an answered request's `len` bytes from the front of `received`. A large request,
/// or a long pipeline, grew the buffer: once what is left fits [`IDLE_BUFFER`] the memory
/// is given back, so an idle keep-alive connection keeps no more than that (the limits
/// table in the README states the bound). Not before: with more left, shrinking would move
/// the bytes again after every answer.
pub(super) fn forget_answered(received: &mut Vec<u8>, len: usize) {
    received.drain(..len);
    if received.capacity() > IDLE_BUFFER && received.len() <= IDLE_BUFFER {
        received.shrink_to(IDLE_BUFFER);
    }
}

/// A response ready to send, and what the log and the connection need to know about it.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) bytes: Vec<u8>,
    /// Escaped for the log.
    pub(super) request_line: String,
    pub(super) connection: Connection,
}

/// The answer to a request that parsed: the handler's response, framed for this connection.
pub(super) fn answer(
    request: &Request,
    raw: &[u8],
    peer: &Address,
    handler: &dyn Handler,
) -> Answer {
    let head = &request.head;
    let response = handler.respond(request, raw, peer);
    // 404 and 405 are ordinary answers; after any other error (501 for a method we do not
    // know, say) it is safer not to guess what the client sends next.
    let failed = response.status >= 400 && !matches!(response.status, 404 | 405);
    let connection = match (head.keep_alive(), head.version) {
        _ if failed => Connection::Close,
        (false, _) => Connection::Close,
        (true, Version::Http11) => Connection::KeepAlive,
        (true, Version::Http10) => Connection::KeepAliveHttp10,
    };
    let head_only = head.method == "HEAD";
    Answer {
        status: response.status,
        bytes: response.encode(SystemTime::now(), connection, head_only),
        request_line: log_text(head.request_line().as_bytes()),
        connection,
    }
}

/// The answer to a request that could not be read: its status, a short page, and a close.
pub(super) fn refuse(status: u16, detail: &str, received: &[u8], handler: &dyn Handler) -> Answer {
    Answer {
        status,
        bytes: handler.error_page(status, detail).encode(
            SystemTime::now(),
            Connection::Close,
            false,
        ),
        request_line: first_line(received),
        connection: Connection::Close,
    }
}

/// What a connection's receive buffer shrinks back to between requests.
pub(super) const IDLE_BUFFER: usize = 16 * 1024;

/// Receives until `received` starts with a complete request.
fn read_request(
    stream: &mut Stream,
    received: &mut Vec<u8>,
    config: &HttpConfig,
) -> Result<Request, NoRequest> {
    let mut recv_buffer = [0u8; RECV_SIZE];
    // Starts with the request's first byte: an idle keep-alive connection only has the read
    // timeout, a request in progress also has this deadline.
    let mut deadline: Option<Instant> = None;
    let mut sent_continue = false;
    let mut reader = RequestReader::new(config.limits);
    loop {
        if !received.is_empty() {
            match reader.parse(received) {
                Ok(Status::Complete(request)) => return Ok(request),
                Ok(Status::Partial) => {}
                Err(error) => return Err(NoRequest::Invalid(error)),
            }
            if !sent_continue && reader.head().is_some_and(waits_for_continue) {
                // curl sends `Expect: 100-continue` before a large body and waits a second
                // for this go-ahead; answering at once saves that second.
                sent_continue = true;
                if let Err(e) = send_within(stream, b"HTTP/1.1 100 Continue\r\n\r\n", config) {
                    return Err(NoRequest::Lost(crate::error::describe(&e)));
                }
            }
        }
        let wait = match deadline {
            None => config.read_timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(NoRequest::TimedOut);
                }
                left.min(config.read_timeout)
            }
        };
        if let Err(e) = stream.set_read_timeout(Some(wait)) {
            return Err(NoRequest::Lost(crate::error::describe(&e)));
        }
        match stream.read(&mut recv_buffer) {
            // `recv` returning 0 is the peer's close: clean between requests, a loss within one.
            Ok(0) if received.is_empty() => return Err(NoRequest::Quiet),
            Ok(0) => return Err(NoRequest::Lost("the peer closed the connection".into())),
            Ok(n) => {
                received.extend_from_slice(&recv_buffer[..n]);
                deadline.get_or_insert_with(|| deadline_after(config.request_timeout));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if received.is_empty() {
                    return Err(NoRequest::Quiet);
                }
                return Err(NoRequest::TimedOut);
            }
            Err(e) => return Err(NoRequest::Lost(crate::error::describe(&e))),
        }
    }
}

/// Sends every byte of `bytes` within the config's `write_timeout` in all, or fails with
/// `TimedOut`. Each `send` waits at most what is left (`SO_SNDTIMEO`), so a peer that reads a
/// little now and then cannot stretch one response past the deadline; and at most
/// `read_timeout`, so a peer that reads nothing at all is let go as soon as an idle one is.
fn send_within(stream: &mut Stream, bytes: &[u8], config: &HttpConfig) -> io::Result<()> {
    let deadline = deadline_after(config.write_timeout);
    let mut rest = bytes;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer did not read it in full within {:?} (--write-timeout; {} of {} bytes unsent)",
                    config.write_timeout,
                    rest.len(),
                    bytes.len()
                ),
            ));
        }
        let wait = left.min(config.read_timeout);
        stream.set_write_timeout(Some(wait))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(sent) => rest = &rest[sent..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The send timeout fired with no byte taken: the deadline check above decides,
            // unless the peer stalled for a whole read timeout first.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if wait < left {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the peer took no byte of it for {:?} (--read-timeout)",
                            config.read_timeout
                        ),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a complete head asks for `100 Continue` before its body.
pub(super) fn waits_for_continue(head: &Head) -> bool {
    head.version == Version::Http11
        && head.framing != Framing::Empty
        && head
            .header("expect")
            .is_some_and(|expect| expect.eq_ignore_ascii_case(b"100-continue"))
}

/// Peer bytes as they appear between the quotes of a log line: [`escape_in`] (no control,
/// format or separator character reaches the terminal), and `"` as `\"`, so a target like
/// `/" 200 1 "` cannot end the quoted field early and make the line read as a different
/// status (found by the fault suite).
fn log_text(bytes: &[u8]) -> String {
    escape_in(bytes, '"')
}

/// The first line of what a failed request sent, escaped and cut short, for the log.
fn first_line(received: &[u8]) -> String {
    const SHOWN: usize = 100;
    let line = received
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return "-".into();
    }
    let mut shown = log_text(&line[..line.len().min(SHOWN)]);
    if line.len() > SHOWN {
        shown.push_str("...");
    }
    shown
}

/// Closing a socket that still has unread bytes makes the kernel send RST instead of FIN, and
/// an RST can reach the client before it has read the error response, which then vanishes.
/// So: `shutdown(Write)` (the client sees the end of the response), then read and discard
/// what is still coming, for a bounded time and size, before the close.
fn close_after_error(stream: &mut Stream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DRAIN_TIME));
    let started = Instant::now();
    let mut discarded = 0;
    let mut scratch = [0u8; RECV_SIZE];
    while discarded < DRAIN_BYTES && started.elapsed() < DRAIN_TIME {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting the server cannot run with is refused, each with what to change.
    #[test]
    fn a_config_it_cannot_run_with_is_refused_with_the_reason() {
        let refused = |adjust: &dyn Fn(&mut HttpConfig)| {
            let mut config = HttpConfig::default();
            adjust(&mut config);
            config.validate().map_err(|error| error.to_string())
        };
        assert!(refused(&|_| {}).is_ok());
        // Half a second is a timeout; only zero is refused.
        assert!(refused(&|config| config.read_timeout = Duration::from_millis(500)).is_ok());
        type Adjust = dyn Fn(&mut HttpConfig);
        let cases: [(&Adjust, &str); 7] = [
            (
                &|config| config.engine = Engine::Iterative,
                "--engine threads or epoll",
            ),
            (
                &|config| config.max_clients = 0,
                "--max-clients must be at least 1",
            ),
            (&|config| config.backlog = -1, "between 0 and 65535, not -1"),
            (
                &|config| config.backlog = 65_536,
                "between 0 and 65535, not 65536",
            ),
            (
                &|config| config.read_timeout = Duration::ZERO,
                "more than 0",
            ),
            (
                &|config| config.request_timeout = Duration::ZERO,
                "more than 0",
            ),
            (
                &|config| config.write_timeout = Duration::ZERO,
                "more than 0",
            ),
        ];
        for (adjust, says) in cases {
            let error = refused(adjust).expect_err(says);
            assert!(error.contains(says), "{error}");
        }
        assert!(refused(&|config| config.backlog = 0).is_ok());
        assert!(refused(&|config| config.backlog = 65_535).is_ok());
    }

    /// What a refused request's log line quotes: its first line, escaped, cut at 100 bytes.
    #[test]
    fn a_refused_requests_first_line_is_quoted_escaped_and_cut() {
        assert_eq!(first_line(b""), "-");
        assert_eq!(first_line(b"\r\nHost: a"), "-");
        assert_eq!(
            first_line(b"GET /\" 200 HTTP/1.1\r\nHost"),
            "GET /\\\" 200 HTTP/1.1"
        );
        let exactly = [b'a'; 100];
        assert_eq!(first_line(&exactly), "a".repeat(100));
        let longer = [b'a'; 101];
        assert_eq!(first_line(&longer), format!("{}...", "a".repeat(100)));
    }

    /// `socket-lab http --engine E` starts from these: the event loop's cap is its own.
    #[test]
    fn each_engine_starts_from_its_own_connection_cap() {
        let epoll = HttpConfig::for_engine(Engine::Epoll);
        assert_eq!(
            (epoll.engine, epoll.max_clients),
            (Engine::Epoll, MAX_CLIENTS_EVENT_LOOP)
        );
        let threads = HttpConfig::for_engine(Engine::Threads);
        assert_eq!(
            (threads.engine, threads.max_clients),
            (Engine::Threads, MAX_CLIENTS)
        );
    }
}
