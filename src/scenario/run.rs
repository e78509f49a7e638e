//! Playing a scenario against a real server, over real sockets.
//!
//! The runner starts the server the file names (port 0, or a Unix socket in a fresh
//! temporary directory), then plays each step in order. Every wait is bounded by the
//! scenario's `timeout` and ends on readiness: a `recv` returns, a log line arrives, a
//! connect completes. Nothing sleeps "long enough".
//!
//! Server log lines arrive on their own threads, so their order between two clients is not
//! fixed. A `server: log` step therefore looks for the first matching line among those not
//! yet matched, waiting for more if none matches, and leaves the others for later steps.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::parse::{
    Action, BindOutcome, ClientCall, ConnectOutcome, Direction, RecvOutcome, Scenario, SendOutcome,
    ServerCall, ServerKind, SockOpt, StreamContent, quote,
};
use super::report::{Entry, EntryKind, Failure, Transcript, bytes_mismatch, matches, show_bytes};
use crate::backlog::{PendingConnect, Progress};
use crate::endpoint::{Address, Endpoint, Stream};
use crate::error::{Error, describe};
use crate::http::server::{HttpConfig, HttpEvent, HttpServer};
use crate::send;
use crate::server::{Event, RunningServer, Server, ServerConfig};
use crate::udp::{DatagramClient, DatagramServer};

/// Where the client side of a scenario connects.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start the server the scenario names, on a free port.
    OwnServer,
    /// Use a server that is already running (perhaps written in another language). Steps
    /// about the server's log or life are skipped with a note.
    External(Endpoint),
}

/// Runs `scenario` (read from `file`, named in messages) and returns its transcript. Each
/// transcript line is also passed to `observe` as it happens, for a live demo.
pub fn run(
    scenario: &Scenario,
    file: &str,
    target: &Target,
    observe: &mut dyn FnMut(&Entry),
) -> Result<Transcript, Failure> {
    let mut runner = Runner {
        scenario,
        transcript: Transcript::default(),
        observe,
        server: None,
        log_lines: None,
        endpoint: Endpoint::tcp("127.0.0.1", 0),
        config: ServerConfig::default(),
        clients: HashMap::new(),
        log: LogBook::default(),
        external: matches!(target, Target::External(_)),
        _socket_dir: None,
    };
    runner.record(EntryKind::Title, scenario.title.clone());
    if let Err(message) = runner.start(target) {
        return Err(runner.fail(
            file,
            1,
            format!("server {}", scenario.server.kind.name()),
            message,
        ));
    }
    for step in &scenario.steps {
        if let Err(message) = runner.play(&step.action) {
            return Err(runner.fail(file, step.line, step.action.to_string(), message));
        }
    }
    if let Some(server) = runner.server.take() {
        server
            .stop()
            .map_err(|e| runner.fail(file, 0, "(end)".into(), format!("the server failed: {e}")))?;
    }
    Ok(runner.transcript)
}

/// A client's socket: a stream, a datagram socket, or a connect still under way.
enum ClientSocket {
    Stream(Stream),
    Datagram(DatagramClient),
    Connecting(PendingConnect),
}

struct Client {
    socket: Option<ClientSocket>,
    /// Every byte this client sent, to check `received-all` against.
    sent: Vec<u8>,
    /// The client's address as the server prints it.
    address: Option<Address>,
    /// False after `setblocking false`: calls that would wait fail with "would block".
    blocking: bool,
    /// Bytes read past the end of one HTTP response, kept for the next `recv-response`.
    unread: Vec<u8>,
}

/// One line the server printed, and for a recv, who sent which bytes.
struct LogLine {
    text: String,
    recv: Option<(Address, Vec<u8>)>,
}

impl From<Event> for LogLine {
    fn from(event: Event) -> LogLine {
        let recv = match &event {
            Event::Message { peer, data } | Event::Truncated { peer, data, .. } => {
                Some((peer.clone(), data.clone()))
            }
            _ => None,
        };
        LogLine {
            text: event.to_string(),
            recv,
        }
    }
}

impl From<HttpEvent> for LogLine {
    fn from(event: HttpEvent) -> LogLine {
        LogLine {
            text: event.to_string(),
            recv: None,
        }
    }
}

/// The server's log lines not yet matched, and what its recvs returned per peer.
#[derive(Default)]
struct LogBook {
    unmatched: Vec<String>,
    received: HashMap<Address, Vec<Vec<u8>>>,
}

struct Runner<'a> {
    scenario: &'a Scenario,
    transcript: Transcript,
    observe: &'a mut dyn FnMut(&Entry),
    server: Option<RunningServer>,
    log_lines: Option<Receiver<LogLine>>,
    endpoint: Endpoint,
    config: ServerConfig,
    clients: HashMap<String, Client>,
    log: LogBook,
    external: bool,
    /// A Unix socket's directory, removed when the runner is dropped.
    _socket_dir: Option<TempDir>,
}

/// A log callback for a server whose events become [`LogLine`]s on `tx`.
fn forward<E: Into<LogLine>>(tx: &mpsc::Sender<LogLine>) -> Arc<dyn Fn(E) + Send + Sync> {
    let tx = Mutex::new(tx.clone());
    Arc::new(move |event: E| {
        // The runner may have finished and dropped its receiver; that is not an error.
        let _ = tx.lock().map(|tx| tx.send(event.into()));
    })
}

impl Runner<'_> {
    fn record(&mut self, kind: EntryKind, text: String) {
        let entry = Entry { kind, text };
        (self.observe)(&entry);
        self.transcript.entries.push(entry);
    }

    fn fail(&mut self, file: &str, line: usize, step: String, message: String) -> Failure {
        self.drain_log();
        Failure {
            file: file.to_string(),
            line,
            step,
            message,
            transcript: self.transcript.clone(),
        }
    }

    fn timeout(&self) -> Duration {
        self.scenario.timeout
    }

    fn kind(&self) -> ServerKind {
        self.scenario.server.kind
    }

    fn start(&mut self, target: &Target) -> Result<(), String> {
        self.config = self.scenario.server.config()?;
        if let Target::External(endpoint) = target {
            self.endpoint = endpoint.clone();
            self.record(
                EntryKind::Note,
                format!("(client side only, against the server at {endpoint})"),
            );
            return Ok(());
        }
        let host = self.scenario.server.setting("host").unwrap_or("127.0.0.1");
        self.endpoint = match self.kind() {
            ServerKind::Tcp | ServerKind::Udp | ServerKind::Http => Endpoint::tcp(host, 0),
            ServerKind::Unix | ServerKind::UnixDgram => {
                let dir = TempDir::new()
                    .map_err(|e| format!("cannot create a directory for the socket: {e}"))?;
                let path = dir.path.join("server.sock");
                self._socket_dir = Some(dir);
                Endpoint::Unix(path)
            }
            ServerKind::None => {
                // Bind a free port and close it again: now nobody listens there.
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|listener| listener.local_addr())
                    .map_err(|e| format!("cannot find a free port: {e}"))?
                    .port();
                self.endpoint = Endpoint::tcp("127.0.0.1", port);
                self.record(
                    EntryKind::Note,
                    format!("(no server: nothing listens on {})", self.endpoint),
                );
                return Ok(());
            }
        };
        self.config.endpoint = self.endpoint.clone();
        self.bind_and_spawn(true)
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let what = match self.kind() {
            ServerKind::Http => "the web server".to_string(),
            kind => format!(
                "{} ack server, recv size {}",
                kind.name(),
                self.config.recv_size
            ),
        };
        let text = format!("server listening on {} ({what})", self.endpoint);
        self.record(EntryKind::Server, text);
        if self.scenario.server.setting("accept") == Some("paused") {
            self.record(
                EntryKind::Server,
                "      server does not call accept: connections wait in the listen queue".into(),
            );
        }
        Ok(())
    }

    /// Binds the scenario's server at `self.endpoint` and starts it on a thread. Afterwards
    /// `self.endpoint` is the address actually bound (the port the kernel chose).
    fn bind_and_spawn(&mut self, first: bool) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        let server = match self.kind() {
            ServerKind::Udp | ServerKind::UnixDgram => {
                let server = DatagramServer::bind(self.config.clone())?;
                server.spawn(forward(&tx))
            }
            ServerKind::Http => {
                let config = HttpConfig {
                    endpoint: self.config.endpoint.clone(),
                    ..HttpConfig::default()
                };
                HttpServer::bind(config)?.spawn(forward(&tx))
            }
            _ => {
                let server = Server::bind(self.config.clone())?;
                if first && self.scenario.server.setting("accept") == Some("paused") {
                    server.handle().pause_accept();
                }
                server.spawn(forward(&tx))
            }
        };
        self.endpoint = server.addr.endpoint();
        self.config.endpoint = self.endpoint.clone();
        self.log_lines = Some(rx);
        self.server = Some(server);
        Ok(())
    }

    fn play(&mut self, action: &Action) -> Result<(), String> {
        self.drain_log();
        match action {
            Action::Narrate(text) => {
                self.record(EntryKind::Narration, text.clone());
                Ok(())
            }
            Action::Client { name, call } => {
                let result = self.client_call(name, call);
                self.drain_log();
                result
            }
            Action::Server(call) if self.external => {
                self.record(
                    EntryKind::Note,
                    format!("(skipped with --target: server: {call})"),
                );
                Ok(())
            }
            Action::Server(call) => self.server_call(call),
        }
    }

    /// Moves log lines the server has printed so far into the log book, showing each one.
    fn drain_log(&mut self) {
        while let Some(line) = self
            .log_lines
            .as_ref()
            .and_then(|lines| lines.try_recv().ok())
        {
            self.take_line(line);
        }
    }

    fn take_line(&mut self, line: LogLine) {
        let text = match &line.recv {
            Some((peer, data)) => format!(
                "      server recv({}) from {} → {}",
                self.config.recv_size,
                self.name_of(peer),
                show_bytes(data)
            ),
            None => format!("      server log: {}", line.text),
        };
        self.record(EntryKind::Server, text);
        if let Some((peer, data)) = line.recv {
            self.log.received.entry(peer).or_default().push(data);
        }
        self.log.unmatched.push(line.text);
    }

    fn name_of(&self, address: &Address) -> String {
        self.clients
            .iter()
            .find(|(_, client)| client.address.as_ref() == Some(address))
            .map_or_else(|| address.to_string(), |(name, _)| name.clone())
    }

    fn client(&mut self, name: &str) -> Result<&mut Client, String> {
        self.clients.get_mut(name).ok_or_else(|| {
            format!("there is no client {name}: add `{name}: connect` before this step")
        })
    }

    fn socket(&mut self, name: &str) -> Result<&mut ClientSocket, String> {
        self.client(name)?
            .socket
            .as_mut()
            .ok_or_else(|| format!("{name} is closed: add `{name}: connect` before this step"))
    }

    fn stream(&mut self, name: &str) -> Result<&mut Stream, String> {
        match self.socket(name)? {
            ClientSocket::Stream(stream) => Ok(stream),
            ClientSocket::Datagram(_) => Err(format!(
                "{name} has a datagram socket: this step needs a stream"
            )),
            ClientSocket::Connecting(_) => Err(format!(
                "{name}'s connect has not completed: add `{name}: finish-connect` first"
            )),
        }
    }

    fn add_client(&mut self, name: &str, socket: ClientSocket, address: Option<Address>) {
        let client = Client {
            socket: Some(socket),
            sent: Vec::new(),
            address,
            blocking: true,
            unread: Vec::new(),
        };
        self.clients.insert(name.to_string(), client);
    }

    fn client_call(&mut self, name: &str, call: &ClientCall) -> Result<(), String> {
        match call {
            ClientCall::Connect { expect } => self.connect(name, *expect),
            ClientCall::FinishConnect => {
                let timeout = self.timeout();
                let Some(ClientSocket::Connecting(pending)) = self.client(name)?.socket.take()
                else {
                    return Err(format!(
                        "{name} has no connect under way: use `{name}: connect = pending 300ms` first"
                    ));
                };
                let started = Instant::now();
                match pending.wait(timeout).map_err(|e| e.to_string())? {
                    Progress::Pending => {
                        Err(format!("the connect did not complete within {timeout:?}"))
                    }
                    Progress::Connected => {
                        let stream = Stream::Tcp(pending.into_stream().map_err(|e| e.to_string())?);
                        self.prepare(&stream)?;
                        let address = stream.local_addr().ok();
                        self.add_client(name, ClientSocket::Stream(stream), address);
                        let waited = started.elapsed().as_millis();
                        self.record(
                            EntryKind::Client,
                            format!(
                                "{name} ──connect──▶ server   completed (after {waited} ms more)"
                            ),
                        );
                        Ok(())
                    }
                }
            }
            ClientCall::Send { data, expect } => self.send(name, data, *expect),
            ClientCall::SendAll { data } => {
                let timeout = self.timeout();
                let stream = self.stream(name)?;
                let report = send::send_all(stream, data, timeout)
                    .map_err(|e| format!("sendall failed: {}", describe(&e)))?;
                self.client(name)?.sent.extend_from_slice(data);
                let calls = report.counts.len();
                self.record(
                    EntryKind::Client,
                    format!(
                        "{name} ──{} ({} B)──▶ server   sendall: {calls} send calls, waited {} times for room",
                        show_bytes(data),
                        data.len(),
                        report.waits
                    ),
                );
                Ok(())
            }
            ClientCall::Recv { size, expect } => self.recv(name, *size, expect),
            ClientCall::RecvExactly { size, expect } => {
                let stream = self.stream(name)?;
                let mut got = Vec::with_capacity(*size);
                let outcome = read_until(stream, &mut got, Some(*size));
                self.record(
                    EntryKind::Client,
                    format!("{name} ◀──{} ({} B)── server", show_bytes(&got), got.len()),
                );
                match outcome {
                    Ok(()) if &got == expect => Ok(()),
                    Ok(()) => Err(bytes_mismatch(
                        &format!("recv-exactly {size}"),
                        expect,
                        &got,
                    )),
                    Err(reason) => Err(format!(
                        "after {} of {size} bytes: {reason}\n{}",
                        got.len(),
                        bytes_mismatch("so far", expect, &got)
                    )),
                }
            }
            ClientCall::RecvUntilEof { expect } => {
                let stream = self.stream(name)?;
                let mut got = Vec::new();
                let outcome = read_until(stream, &mut got, None);
                self.record(
                    EntryKind::Client,
                    format!(
                        "{name} ◀──{} ({} B) then end of stream── server",
                        show_bytes(&got),
                        got.len()
                    ),
                );
                outcome.map_err(|reason| format!("expected the stream to end, but {reason}"))?;
                let expected = match expect {
                    StreamContent::Data(data) => data.clone(),
                    StreamContent::Acks if self.external => {
                        // Without the server's log the number of recvs is unknown: any whole
                        // number of acks will do.
                        let ack = &self.config.ack;
                        let whole = !got.is_empty()
                            && got.chunks(ack.len()).all(|chunk| chunk == ack.as_slice());
                        return if whole {
                            Ok(())
                        } else {
                            Err(bytes_mismatch("whole acks", ack, &got))
                        };
                    }
                    StreamContent::Acks => {
                        // The server logs each recv before it sends its ack, so by end of
                        // stream every recv of this client is in the channel.
                        self.drain_log();
                        let recvs = self.recvs_of(name).len();
                        self.config.ack.repeat(recvs)
                    }
                };
                if got == expected {
                    Ok(())
                } else {
                    Err(bytes_mismatch("recv-until-eof", &expected, &got))
                }
            }
            ClientCall::RecvResponse { pattern } => self.recv_response(name, pattern),
            ClientCall::Shutdown(direction) => {
                let how = match direction {
                    Direction::Read => Shutdown::Read,
                    Direction::Write => Shutdown::Write,
                    Direction::Both => Shutdown::Both,
                };
                self.stream(name)?
                    .shutdown(how)
                    .map_err(|e| format!("shutdown failed: {}", describe(&e)))?;
                let arrow = match direction {
                    Direction::Write | Direction::Both => {
                        format!("{name} ──end of stream (FIN)──▶ server   shutdown({direction:?})")
                    }
                    Direction::Read => format!("{name}   shutdown(Read): no more reading"),
                };
                self.record(EntryKind::Client, arrow);
                Ok(())
            }
            ClientCall::Close => {
                self.socket(name)?;
                self.client(name)?.socket = None;
                self.record(EntryKind::Client, format!("{name} ──close (FIN)──▶ server"));
                Ok(())
            }
            ClientCall::Reset => {
                let stream = self.stream(name)?;
                socket2::SockRef::from(&*stream)
                    .set_linger(Some(Duration::ZERO))
                    .map_err(|e| format!("cannot set SO_LINGER: {e}"))?;
                self.client(name)?.socket = None;
                self.record(
                    EntryKind::Client,
                    format!("{name} ──reset (RST)──▶ server   close with SO_LINGER 0"),
                );
                Ok(())
            }
            ClientCall::SetTimeout(timeout) => {
                let result = match self.socket(name)? {
                    ClientSocket::Stream(stream) => stream
                        .set_read_timeout(Some(*timeout))
                        .and_then(|()| stream.set_write_timeout(Some(*timeout))),
                    ClientSocket::Datagram(socket) => socket.set_read_timeout(Some(*timeout)),
                    ClientSocket::Connecting(_) => {
                        return Err(format!("{name} is still connecting"));
                    }
                };
                result.map_err(|e| format!("settimeout failed: {}", describe(&e)))?;
                self.record(
                    EntryKind::Client,
                    format!("{name}   settimeout({timeout:?})"),
                );
                Ok(())
            }
            ClientCall::SetBlocking(blocking) => {
                let result = match self.socket(name)? {
                    ClientSocket::Stream(stream) => stream.set_nonblocking(!blocking),
                    ClientSocket::Datagram(socket) => socket.set_nonblocking(!blocking),
                    ClientSocket::Connecting(_) => {
                        return Err(format!("{name} is still connecting"));
                    }
                };
                result.map_err(|e| format!("setblocking failed: {}", describe(&e)))?;
                self.client(name)?.blocking = *blocking;
                let shown = if *blocking { "True" } else { "False" };
                self.record(EntryKind::Client, format!("{name}   setblocking({shown})"));
                Ok(())
            }
            ClientCall::SetSockOpt { option, value } => {
                let stream = self.stream(name)?;
                let socket = socket2::SockRef::from(&*stream);
                let effective = match option {
                    SockOpt::SndBuf => socket
                        .set_send_buffer_size(*value)
                        .and_then(|()| socket.send_buffer_size()),
                    SockOpt::RcvBuf => socket
                        .set_recv_buffer_size(*value)
                        .and_then(|()| socket.recv_buffer_size()),
                    SockOpt::NoDelay => socket
                        .set_tcp_nodelay(*value != 0)
                        .and_then(|()| socket.tcp_nodelay())
                        .map(usize::from),
                };
                let effective = effective.map_err(|e| {
                    format!("setsockopt {} failed: {}", option.name(), describe(&e))
                })?;
                let note = if effective == *value {
                    String::new()
                } else {
                    format!(
                        " (getsockopt says {effective}: Linux doubles buffer sizes for its own bookkeeping)"
                    )
                };
                self.record(
                    EntryKind::Client,
                    format!("{name}   setsockopt({}, {value}){note}", option.name()),
                );
                Ok(())
            }
        }
    }

    /// Read and write timeouts bound every later step on this stream.
    fn prepare(&self, stream: &Stream) -> Result<(), String> {
        let timeout = Some(self.timeout());
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| format!("cannot set timeouts: {}", describe(&e)))
    }

    fn connect(&mut self, name: &str, expect: ConnectOutcome) -> Result<(), String> {
        if let ConnectOutcome::Pending(wait) = expect {
            let addr = *self
                .endpoint
                .resolve()
                .map_err(|e| e.to_string())?
                .first()
                .ok_or("a pending connect needs a TCP server")?;
            let pending = PendingConnect::start(addr).map_err(|e| e.to_string())?;
            return match pending.wait(wait).map_err(|e| e.to_string())? {
                Progress::Pending => {
                    self.add_client(name, ClientSocket::Connecting(pending), None);
                    self.record(
                        EntryKind::Client,
                        format!("{name} ──connect (SYN)──▶ server   no answer within {wait:?}: still pending"),
                    );
                    Ok(())
                }
                Progress::Connected => Err(format!(
                    "expected the connect to be still pending after {wait:?}, but it completed"
                )),
            };
        }
        if self.kind().is_datagram() && !self.external {
            let socket = DatagramClient::connect(&self.endpoint, self.timeout())
                .map_err(|e| e.to_string())?;
            let address = socket.local_addr().ok();
            let shown = address.as_ref().map_or("?".into(), Address::to_string);
            self.add_client(name, ClientSocket::Datagram(socket), address);
            self.record(
                EntryKind::Client,
                format!("{name}   connect on a datagram socket: nothing is sent, it only fixes the peer ({name} is {shown})"),
            );
            return Ok(());
        }
        match (Stream::connect(&self.endpoint), expect) {
            (Ok(stream), ConnectOutcome::Connected) => {
                self.prepare(&stream)?;
                let address = stream.local_addr().ok();
                let shown = address.as_ref().map_or("?".into(), Address::to_string);
                self.add_client(name, ClientSocket::Stream(stream), address);
                self.record(
                    EntryKind::Client,
                    format!("{name} ──connect──▶ server   ({name} is {shown})"),
                );
                Ok(())
            }
            (Err(Error::Connect { source, .. }), ConnectOutcome::Refused)
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                self.record(
                    EntryKind::Client,
                    format!("{name} ──connect──✗ refused (nobody listens)"),
                );
                Ok(())
            }
            (Ok(_), _) => Err("expected the connection to be refused, but it was accepted".into()),
            (Err(e), _) => Err(format!(
                "expected connect to {}, but: {e}",
                describe_connect(expect)
            )),
        }
    }

    fn send(&mut self, name: &str, data: &[u8], expect: Option<SendOutcome>) -> Result<(), String> {
        // One send call, as the walkthrough's `send`: a short count is shown, not hidden.
        let result = match self.socket(name)? {
            ClientSocket::Stream(stream) => stream.write(data),
            ClientSocket::Datagram(socket) => {
                socket.send(data).map(|()| data.len()).map_err(|e| match e {
                    Error::Io { source, .. } | Error::Connect { source, .. } => source,
                    other => io::Error::other(other.to_string()),
                })
            }
            ClientSocket::Connecting(_) => {
                return Err(format!("{name}'s connect has not completed"));
            }
        };
        let outcome = match result {
            Ok(count) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.client(name)?.blocking => {
                Err(SendOutcome::WouldBlock)
            }
            Err(e) => return Err(format!("send failed: {}", describe(&e))),
        };
        let shown = match outcome {
            Ok(count) if count == data.len() => {
                format!("{name} ──{} ({} B)──▶ server", show_bytes(data), data.len())
            }
            Ok(count) => format!(
                "{name} ──{} ({count} of {} B)──▶ server   send returned {count}: only part fit",
                show_bytes(&data[..count]),
                data.len()
            ),
            Err(_) => format!(
                "{name} ──✗ send({} B) would block: no room in the send buffer",
                data.len()
            ),
        };
        self.record(EntryKind::Client, shown);
        if let Ok(count) = outcome {
            self.client(name)?.sent.extend_from_slice(&data[..count]);
        }
        match (expect, outcome) {
            (None, _) => Ok(()),
            (Some(SendOutcome::Count(expected)), Ok(count)) if expected == count => Ok(()),
            (Some(SendOutcome::Partial), Ok(count)) if count > 0 && count < data.len() => Ok(()),
            (Some(SendOutcome::WouldBlock), Err(SendOutcome::WouldBlock)) => Ok(()),
            (Some(expected), got) => Err(format!(
                "expected send to {}, but it {}",
                match expected {
                    SendOutcome::Count(count) => format!("return {count}"),
                    SendOutcome::Partial => format!("return fewer than {} bytes", data.len()),
                    SendOutcome::WouldBlock => "say it would block".into(),
                },
                match got {
                    Ok(count) => format!("returned {count}"),
                    Err(_) => "said it would block".into(),
                }
            )),
        }
    }

    fn recv(&mut self, name: &str, size: usize, expect: &RecvOutcome) -> Result<(), String> {
        let blocking = self.client(name)?.blocking;
        let result = match self.socket(name)? {
            ClientSocket::Stream(stream) => {
                let mut buffer = vec![0; size];
                match stream.read(&mut buffer) {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some(buffer[..n].to_vec())),
                    Err(e) => Err(e),
                }
            }
            // A datagram of 0 bytes is a message, not the end of anything.
            ClientSocket::Datagram(socket) => socket.recv(size).map(Some),
            ClientSocket::Connecting(_) => {
                return Err(format!("{name}'s connect has not completed"));
            }
        };
        let got = match result {
            Ok(None) => RecvOutcome::Eof,
            Ok(Some(data)) => RecvOutcome::Data(data),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => RecvOutcome::Reset,
            // SO_RCVTIMEO and a non-blocking socket both end a recv with EAGAIN.
            Err(e) if timed_out(&e) && !blocking => RecvOutcome::WouldBlock,
            Err(e) if timed_out(&e) => RecvOutcome::Timeout,
            Err(e) => return Err(format!("recv failed: {}", describe(&e))),
        };
        self.record(
            EntryKind::Client,
            format!("{name} ◀──{}── server   recv({size})", describe_recv(&got)),
        );
        match (&got, expect) {
            (got, expect) if got == expect => Ok(()),
            (RecvOutcome::Data(got), RecvOutcome::Data(expected)) => {
                Err(bytes_mismatch(&format!("recv({size})"), expected, got))
            }
            _ => Err(format!(
                "recv({size}): expected {}\nrecv({size}): but got {}",
                describe_recv(expect),
                describe_recv(&got)
            )),
        }
    }

    /// Reads one HTTP response: the head up to the blank line, then `Content-Length` bytes of
    /// body (or, without one, everything until the server closes).
    fn recv_response(&mut self, name: &str, pattern: &str) -> Result<(), String> {
        let mut buffered = std::mem::take(&mut self.client(name)?.unread);
        let stream = self.stream(name)?;
        let head_end = loop {
            if let Some(at) = find(&buffered, b"\r\n\r\n") {
                break at + 4;
            }
            read_some(stream, &mut buffered).map_err(|reason| {
                format!(
                    "expected a response, but {reason} after {} bytes: \"{}\"",
                    buffered.len(),
                    quote(&buffered)
                )
            })?;
        };
        let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok());
        let end = match length {
            Some(length) => {
                while buffered.len() < head_end + length {
                    read_some(stream, &mut buffered)
                        .map_err(|reason| format!("the body ended early: {reason}"))?;
                }
                head_end + length
            }
            None => {
                read_until(stream, &mut buffered, None)?;
                buffered.len()
            }
        };
        let rest = buffered.split_off(end);
        self.client(name)?.unread = rest;
        let status_line =
            String::from_utf8_lossy(&buffered[..find(&buffered, b"\r\n").unwrap_or(0)])
                .into_owned();
        self.record(
            EntryKind::Client,
            format!(
                "{name} ◀──{} … ({} B)── server",
                quote(status_line.as_bytes()),
                buffered.len()
            ),
        );
        let text = String::from_utf8_lossy(&buffered);
        if matches(pattern, &text) {
            Ok(())
        } else {
            Err(format!(
                "expected a response matching\n  \"{}\"\nbut got\n  \"{}\"",
                quote(pattern.as_bytes()),
                quote(&buffered[..buffered.len().min(2048)])
            ))
        }
    }

    fn recvs_of(&self, name: &str) -> Vec<Vec<u8>> {
        self.clients
            .get(name)
            .and_then(|client| client.address.as_ref())
            .and_then(|address| self.log.received.get(address))
            .cloned()
            .unwrap_or_default()
    }

    fn server_call(&mut self, call: &ServerCall) -> Result<(), String> {
        match call {
            ServerCall::Log(pattern) => self.expect_log(pattern),
            ServerCall::ReceivedAll { client } => self.expect_received_all(client),
            ServerCall::Stop => {
                let server = self.server.take().ok_or("the server is not running")?;
                server
                    .stop()
                    .map_err(|e| format!("the server failed: {e}"))?;
                self.record(
                    EntryKind::Server,
                    "      server stopped: every connection closed".into(),
                );
                Ok(())
            }
            ServerCall::ResumeAccept => {
                self.server
                    .as_ref()
                    .ok_or("the server is not running")?
                    .handle
                    .resume_accept();
                self.record(
                    EntryKind::Server,
                    "      server calls accept again: the queued connections are served".into(),
                );
                Ok(())
            }
            ServerCall::BindAgain {
                reuse_address,
                expect,
            } => {
                let config = ServerConfig {
                    reuse_address: *reuse_address,
                    ..self.config.clone()
                };
                let result = Server::bind(config).map(drop);
                self.expect_bind(
                    &format!("a second server on {}", self.endpoint),
                    result,
                    expect,
                )
            }
            ServerCall::Restart {
                reuse_address,
                expect,
            } => {
                if let Some(server) = self.server.take() {
                    server
                        .stop()
                        .map_err(|e| format!("the server failed: {e}"))?;
                }
                let what = format!("the server again on {}", self.endpoint);
                let reuse = self.config.reuse_address;
                self.config.reuse_address = *reuse_address;
                let result = self.bind_and_spawn(false);
                self.config.reuse_address = reuse;
                self.expect_bind(&what, result, expect)
            }
        }
    }

    fn expect_bind(
        &mut self,
        what: &str,
        result: Result<(), Error>,
        expect: &BindOutcome,
    ) -> Result<(), String> {
        match (&result, expect) {
            (Ok(()), BindOutcome::Bound) => {
                self.record(EntryKind::Server, format!("      bind {what}: bound"));
                Ok(())
            }
            (Err(error), BindOutcome::Error(pattern)) => {
                let message = error.to_string();
                self.record(EntryKind::Server, format!("      bind {what}: {message}"));
                if matches(&self.expand(pattern), &message) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected the error\n  {pattern}\nbut got\n  {message}"
                    ))
                }
            }
            (Ok(()), BindOutcome::Error(pattern)) => Err(format!(
                "expected bind to fail with\n  {pattern}\nbut it succeeded"
            )),
            (Err(error), BindOutcome::Bound) => {
                Err(format!("expected bind to succeed, but: {error}"))
            }
        }
    }

    /// `[alice]` in a pattern stands for alice's address in brackets, as the server prints it.
    fn expand(&self, pattern: &str) -> String {
        let mut expanded = pattern.to_string();
        for (name, client) in &self.clients {
            if let Some(address) = &client.address {
                expanded = expanded.replace(&format!("[{name}]"), &format!("[{address}]"));
            }
        }
        expanded
    }

    fn expect_log(&mut self, pattern: &str) -> Result<(), String> {
        let expanded = self.expand(pattern);
        let deadline = Instant::now() + self.timeout();
        loop {
            if let Some(index) = self
                .log
                .unmatched
                .iter()
                .position(|line| matches(&expanded, line))
            {
                self.log.unmatched.remove(index);
                return Ok(());
            }
            match self.next_line(deadline) {
                Some(line) => self.take_line(line),
                None => {
                    let seen: Vec<String> = self
                        .log
                        .unmatched
                        .iter()
                        .map(|line| format!("  {line}"))
                        .collect();
                    return Err(format!(
                        "expected the server to log\n  {expanded}\nwithin {:?}; the lines not yet matched are:\n{}",
                        self.timeout(),
                        if seen.is_empty() {
                            "  (none)".to_string()
                        } else {
                            seen.join("\n")
                        }
                    ));
                }
            }
        }
    }

    fn expect_received_all(&mut self, name: &str) -> Result<(), String> {
        let sent = self
            .clients
            .get(name)
            .map(|client| client.sent.clone())
            .ok_or_else(|| format!("no client named {name}"))?;
        let deadline = Instant::now() + self.timeout();
        loop {
            let recvs = self.recvs_of(name);
            let received: Vec<u8> = recvs.concat();
            if !sent.starts_with(&received) {
                return Err(bytes_mismatch(
                    "the bytes the server received",
                    &sent[..received.len().min(sent.len())],
                    &received,
                ));
            }
            if let Some(too_big) = recvs.iter().find(|data| data.len() > self.config.recv_size) {
                return Err(format!(
                    "a recv({}) returned {} bytes",
                    self.config.recv_size,
                    too_big.len()
                ));
            }
            if received.len() == sent.len() {
                self.record(
                    EntryKind::Server,
                    format!(
                        "      server received all {} bytes from {name}, in order, in {} recvs",
                        sent.len(),
                        recvs.len()
                    ),
                );
                return Ok(());
            }
            match self.next_line(deadline) {
                Some(line) => self.take_line(line),
                None => {
                    return Err(format!(
                        "{name} sent {} bytes, but within {:?} the server's recvs returned only {}",
                        sent.len(),
                        self.timeout(),
                        received.len()
                    ));
                }
            }
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Option<LogLine> {
        let lines = self.log_lines.as_ref()?;
        let left = deadline.saturating_duration_since(Instant::now());
        // A timeout and a stopped server both mean: no more lines in time.
        lines.recv_timeout(left).ok()
    }
}

/// One `recv` into `buffered`; end of stream or a timeout is an error here.
fn read_some(stream: &mut Stream, buffered: &mut Vec<u8>) -> Result<(), String> {
    let mut buffer = [0; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Err("the stream ended".into()),
            Ok(n) => {
                buffered.extend_from_slice(&buffer[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err("nothing more arrived in time".into()),
            Err(e) => return Err(format!("recv failed: {}", describe(&e))),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Reads until `limit` bytes (or, with no limit, until end of stream).
fn read_until(stream: &mut Stream, got: &mut Vec<u8>, limit: Option<usize>) -> Result<(), String> {
    let mut buffer = [0; 64 * 1024];
    loop {
        if limit.is_some_and(|limit| got.len() >= limit) {
            return Ok(());
        }
        let room = limit.map_or(buffer.len(), |limit| (limit - got.len()).min(buffer.len()));
        match stream.read(&mut buffer[..room]) {
            Ok(0) if limit.is_none() => return Ok(()),
            Ok(0) => return Err("the stream ended".into()),
            Ok(n) => got.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err("nothing more arrived in time".into()),
            Err(e) => return Err(format!("recv failed: {}", describe(&e))),
        }
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn describe_connect(outcome: ConnectOutcome) -> String {
    match outcome {
        ConnectOutcome::Connected => "succeed".into(),
        ConnectOutcome::Refused => "be refused".into(),
        ConnectOutcome::Pending(wait) => format!("be still pending after {wait:?}"),
    }
}

fn describe_recv(outcome: &RecvOutcome) -> String {
    match outcome {
        RecvOutcome::Data(data) => format!("{} ({} B)", show_bytes(data), data.len()),
        RecvOutcome::Eof => "end of stream (0 bytes)".into(),
        RecvOutcome::Reset => "connection reset by peer".into(),
        RecvOutcome::Timeout => "timed out (nothing arrived)".into(),
        RecvOutcome::WouldBlock => "would block (nothing to read yet)".into(),
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("socket-lab-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
