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
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::parse::{
    Action, BindOutcome, ClientCall, ConnectOutcome, Direction, RecvOutcome, Scenario, ServerCall,
    ServerKind, StreamContent, quote,
};
use crate::endpoint::{Address, Endpoint, Stream};
use crate::error::Error;
use crate::server::{Event, EventLog, RunningServer, Server, ServerConfig};

/// Where the client side of a scenario connects.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start the server the scenario names, on a free port.
    OwnServer,
    /// Use a server that is already running (perhaps written in another language). Steps
    /// about the server's log or life are skipped with a note.
    External(Endpoint),
}

/// What one line of a transcript is about, so a terminal can colour it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Title,
    Narration,
    Client,
    Server,
    Note,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub text: String,
}

/// Everything that happened, as a small sequence diagram.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    pub entries: Vec<Entry>,
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{}", entry.text)?;
        }
        Ok(())
    }
}

/// A step whose result was not the one the file expects.
#[derive(Debug)]
pub struct Failure {
    pub file: String,
    pub line: usize,
    /// The step as written (canonical form).
    pub step: String,
    pub message: String,
    pub transcript: Transcript,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}: {}", self.file, self.line, self.step)?;
        for line in self.message.lines() {
            writeln!(f, "    {line}")?;
        }
        writeln!(f, "\ntranscript so far:")?;
        write!(f, "{}", self.transcript)
    }
}

impl std::error::Error for Failure {}

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
        events: None,
        endpoint: Endpoint::tcp("127.0.0.1", 0),
        config: ServerConfig::default(),
        clients: HashMap::new(),
        log: LogBook::default(),
        external: matches!(target, Target::External(_)),
        _socket_dir: None,
    };
    runner.record(EntryKind::Title, scenario.title.clone());
    if let Err(message) = runner.start(target) {
        return Err(runner.fail(file, 1, "server ...".into(), message));
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

struct Client {
    stream: Option<Stream>,
    /// Every byte this client sent, to check `received-all` against.
    sent: Vec<u8>,
    /// The client's address as the server prints it.
    address: Option<Address>,
}

/// The server's log lines, and what its recvs returned per peer.
#[derive(Default)]
struct LogBook {
    unmatched: Vec<Event>,
    received: HashMap<Address, Vec<Vec<u8>>>,
}

impl LogBook {
    fn take(&mut self, event: Event) {
        if let Event::Message { peer, data } = &event {
            self.received
                .entry(peer.clone())
                .or_default()
                .push(data.clone());
        }
        self.unmatched.push(event);
    }
}

struct Runner<'a> {
    scenario: &'a Scenario,
    transcript: Transcript,
    observe: &'a mut dyn FnMut(&Entry),
    server: Option<RunningServer>,
    events: Option<Receiver<Event>>,
    endpoint: Endpoint,
    config: ServerConfig,
    clients: HashMap<String, Client>,
    log: LogBook,
    external: bool,
    /// A Unix socket's directory, removed when the runner is dropped.
    _socket_dir: Option<TempDir>,
}

impl Runner<'_> {
    fn record(&mut self, kind: EntryKind, text: String) {
        let entry = Entry { kind, text };
        (self.observe)(&entry);
        self.transcript.entries.push(entry);
    }

    fn fail(&mut self, file: &str, line: usize, step: String, message: String) -> Failure {
        self.drain_events();
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
        self.endpoint = match self.scenario.server.kind {
            ServerKind::Tcp => Endpoint::tcp("127.0.0.1", 0),
            ServerKind::Unix => {
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
                let endpoint = Endpoint::tcp("127.0.0.1", port);
                self.record(
                    EntryKind::Note,
                    format!("(no server: nothing listens on {endpoint})"),
                );
                return {
                    self.endpoint = endpoint;
                    Ok(())
                };
            }
        };
        self.config.endpoint = self.endpoint.clone();
        let server = Server::bind(self.config.clone())
            .map_err(|e| format!("cannot start the server: {e}"))?;
        self.endpoint = server.local_addr().endpoint();
        self.config.endpoint = self.endpoint.clone();
        let text = format!(
            "server listening on {} (recv size {})",
            server.local_addr(),
            self.config.recv_size
        );
        self.record(EntryKind::Server, text);
        self.spawn(server);
        Ok(())
    }

    fn spawn(&mut self, server: Server) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let log: EventLog = Arc::new(move |event| {
            let _ = tx.lock().map(|tx| tx.send(event));
        });
        self.events = Some(rx);
        self.server = Some(server.spawn(log));
    }

    fn play(&mut self, action: &Action) -> Result<(), String> {
        self.drain_events();
        match action {
            Action::Narrate(text) => {
                self.record(EntryKind::Narration, text.clone());
                Ok(())
            }
            Action::Client { name, call } => {
                let result = self.client_call(name, call);
                self.drain_events();
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
    fn drain_events(&mut self) {
        while let Some(event) = self
            .events
            .as_ref()
            .and_then(|events| events.try_recv().ok())
        {
            self.show_event(event);
        }
    }

    fn show_event(&mut self, event: Event) {
        let text = match &event {
            Event::Message { peer, data } => format!(
                "      server recv({}) from {} → {}",
                self.config.recv_size,
                self.name_of(peer),
                show_bytes(data)
            ),
            other => format!("      server log: {other}"),
        };
        self.record(EntryKind::Server, text);
        self.log.take(event);
    }

    fn name_of(&self, address: &Address) -> String {
        self.clients
            .iter()
            .find(|(_, client)| client.address.as_ref() == Some(address))
            .map_or_else(|| address.to_string(), |(name, _)| name.clone())
    }

    fn stream(&mut self, name: &str) -> Result<&mut Stream, String> {
        self.clients
            .get_mut(name)
            .and_then(|client| client.stream.as_mut())
            .ok_or_else(|| {
                format!("{name} is not connected: add `{name}: connect` before this step")
            })
    }

    fn client_call(&mut self, name: &str, call: &ClientCall) -> Result<(), String> {
        let timeout = self.timeout();
        match call {
            ClientCall::Connect { expect } => {
                let result = Stream::connect(&self.endpoint);
                match (result, expect) {
                    (Ok(stream), ConnectOutcome::Connected) => {
                        stream
                            .set_read_timeout(Some(timeout))
                            .map_err(|e| e.to_string())?;
                        stream
                            .set_write_timeout(Some(timeout))
                            .map_err(|e| e.to_string())?;
                        let address = stream.local_addr().ok();
                        let shown = address.as_ref().map_or("?".into(), Address::to_string);
                        self.clients.insert(
                            name.to_string(),
                            Client {
                                stream: Some(stream),
                                sent: Vec::new(),
                                address,
                            },
                        );
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
                    (Ok(_), ConnectOutcome::Refused) => {
                        Err("expected the connection to be refused, but it was accepted".into())
                    }
                    (Err(e), _) => Err(format!(
                        "expected connect to {}, but: {e}",
                        describe_connect(*expect)
                    )),
                }
            }
            ClientCall::Send { data, expect_count } => {
                let stream = self.stream(name)?;
                // One send call, as the walkthrough's `send`; a short count is shown, not hidden.
                let count = stream
                    .write(data)
                    .map_err(|e| format!("send failed: {}", crate::error::describe(&e)))?;
                if count < data.len() {
                    // Finish like `sendall` so later steps see every byte; the count is checked below.
                    stream
                        .write_all(&data[count..])
                        .map_err(|e| format!("send failed: {}", crate::error::describe(&e)))?;
                }
                if let Some(client) = self.clients.get_mut(name) {
                    client.sent.extend_from_slice(data);
                }
                self.record(
                    EntryKind::Client,
                    format!("{name} ──{} ({} B)──▶ server", show_bytes(data), data.len()),
                );
                match expect_count {
                    Some(expected) if *expected != count => Err(format!(
                        "expected send to return {expected}, but it returned {count}"
                    )),
                    _ => Ok(()),
                }
            }
            ClientCall::Recv { size, expect } => {
                let stream = self.stream(name)?;
                let mut buffer = vec![0; *size];
                let result = stream.read(&mut buffer);
                let got = match result {
                    Ok(0) => RecvOutcome::Eof,
                    Ok(n) => RecvOutcome::Data(buffer[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => RecvOutcome::Reset,
                    Err(e) if timed_out(&e) => {
                        return Err(format!(
                            "expected recv({size}) to return {}, but nothing arrived within {timeout:?}",
                            describe_recv(expect)
                        ));
                    }
                    Err(e) => return Err(format!("recv failed: {}", crate::error::describe(&e))),
                };
                self.record(
                    EntryKind::Client,
                    format!("{name} ◀──{}── server   recv({size})", describe_recv(&got)),
                );
                if &got == expect {
                    Ok(())
                } else {
                    Err(mismatch(
                        &format!("recv({size})"),
                        &describe_recv(expect),
                        &describe_recv(&got),
                        expect,
                        &got,
                    ))
                }
            }
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
                        // Without the server's log the number of recvs is unknown: any whole number of acks.
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
                        // The server logs each recv before it sends its ack, so by end of stream
                        // every recv of this client is in the channel.
                        self.drain_events();
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
            ClientCall::Shutdown(direction) => {
                let how = match direction {
                    Direction::Read => Shutdown::Read,
                    Direction::Write => Shutdown::Write,
                    Direction::Both => Shutdown::Both,
                };
                self.stream(name)?
                    .shutdown(how)
                    .map_err(|e| format!("shutdown failed: {}", crate::error::describe(&e)))?;
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
                self.stream(name)?;
                if let Some(client) = self.clients.get_mut(name) {
                    client.stream = None;
                }
                self.record(EntryKind::Client, format!("{name} ──close (FIN)──▶ server"));
                Ok(())
            }
            ClientCall::Reset => {
                let stream = self.stream(name)?;
                socket2::SockRef::from(&*stream)
                    .set_linger(Some(Duration::ZERO))
                    .map_err(|e| format!("cannot set SO_LINGER: {e}"))?;
                if let Some(client) = self.clients.get_mut(name) {
                    client.stream = None;
                }
                self.record(
                    EntryKind::Client,
                    format!("{name} ──reset (RST)──▶ server   close with SO_LINGER 0"),
                );
                Ok(())
            }
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
                let config = ServerConfig {
                    reuse_address: *reuse_address,
                    ..self.config.clone()
                };
                match Server::bind(config) {
                    Ok(server) => {
                        self.spawn(server);
                        self.expect_bind(
                            &format!("the server again on {}", self.endpoint),
                            Ok(()),
                            expect,
                        )
                    }
                    Err(e) => self.expect_bind(
                        &format!("the server again on {}", self.endpoint),
                        Err(e),
                        expect,
                    ),
                }
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
                .position(|event| matches(&expanded, &event.to_string()))
            {
                self.log.unmatched.remove(index);
                return Ok(());
            }
            match self.next_event(deadline) {
                Some(event) => self.show_event(event),
                None => {
                    let seen: Vec<String> = self
                        .log
                        .unmatched
                        .iter()
                        .map(|event| format!("  {event}"))
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
            match self.next_event(deadline) {
                Some(event) => self.show_event(event),
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

    fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        let events = self.events.as_ref()?;
        let left = deadline.saturating_duration_since(Instant::now());
        // A timeout and a stopped server both mean: no more lines in time.
        events.recv_timeout(left).ok()
    }
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
            Err(e) => return Err(format!("recv failed: {}", crate::error::describe(&e))),
        }
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn describe_connect(outcome: ConnectOutcome) -> &'static str {
    match outcome {
        ConnectOutcome::Connected => "succeed",
        ConnectOutcome::Refused => "be refused",
    }
}

fn describe_recv(outcome: &RecvOutcome) -> String {
    match outcome {
        RecvOutcome::Data(data) => format!("{} ({} B)", show_bytes(data), data.len()),
        RecvOutcome::Eof => "end of stream (0 bytes)".into(),
        RecvOutcome::Reset => "connection reset by peer".into(),
    }
}

fn mismatch(
    what: &str,
    expected: &str,
    got: &str,
    expected_outcome: &RecvOutcome,
    got_outcome: &RecvOutcome,
) -> String {
    if let (RecvOutcome::Data(expected), RecvOutcome::Data(got)) = (expected_outcome, got_outcome) {
        return bytes_mismatch(what, expected, got);
    }
    format!("{what}: expected {expected}\n{what}: but got {got}")
}

/// Expected and actual bytes, escaped, with a hex view where they are not plain text.
fn bytes_mismatch(what: &str, expected: &[u8], got: &[u8]) -> String {
    let mut message = format!(
        "{what}: expected {} B: \"{}\"\n{what}: but got  {} B: \"{}\"",
        expected.len(),
        quote(&expected[..expected.len().min(256)]),
        got.len(),
        quote(&got[..got.len().min(256)])
    );
    if let Some(at) = expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .or((expected.len() != got.len()).then(|| expected.len().min(got.len())))
    {
        message.push_str(&format!("\nfirst difference at byte {at}"));
    }
    let binary = |bytes: &[u8]| {
        std::str::from_utf8(bytes).map_or(true, |text| text.chars().any(char::is_control))
    };
    if binary(expected) || binary(got) {
        message.push_str(&format!(
            "\nexpected (hex): {}\ngot      (hex): {}",
            hex(expected),
            hex(got)
        ));
    }
    message
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(64)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let more = if bytes.len() > 64 { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}

/// Bytes for a diagram: a quoted literal, written as `"unit" * n` when it is one short piece
/// repeated, and cut short when long.
fn show_bytes(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    if bytes.len() > SHOWN {
        let repeats = |unit: usize| bytes.chunks(unit).all(|chunk| chunk == &bytes[..unit]);
        if let Some(unit) =
            (1..=SHOWN).find(|&unit| bytes.len().is_multiple_of(unit) && repeats(unit))
        {
            return format!("\"{}\" * {}", quote(&bytes[..unit]), bytes.len() / unit);
        }
        return format!("\"{}\"…", quote(&bytes[..SHOWN]));
    }
    format!("\"{}\"", quote(bytes))
}

/// Matches `text` against `pattern`, where `[..]` stands for any text (possibly none).
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
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

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_any_text() {
        assert!(matches(
            "[127.0.0.1:[..]] connected",
            "[127.0.0.1:4000] connected"
        ));
        assert!(matches("a[..]b[..]c", "a-b-b-c"));
        assert!(matches("[..]", ""));
        assert!(!matches("a[..]c", "abd"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("ab[..]", "abcd"));
    }
}
