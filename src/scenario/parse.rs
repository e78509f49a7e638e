//! Reading a scenario file: text in, a [`Scenario`] out, or `file:line: what is wrong`.
//!
//! The grammar, one line at a time:
//!
//! ```text
//! # narration                      the first one is the lesson's title
//! server tcp recv-size=8           which server to start, and its settings (once, first)
//! timeout 2s                       how long any one step may wait (default 5s)
//! alice: send "hello\r\n" = 7      ACTOR: VERB ARGS [= EXPECTED]   # a trailing comment
//! server: log "[alice] send a message to server: hello\r\n"
//! ```
//!
//! Byte strings are Rust string literals: `"a\r\n\0\xff"` with escapes, or `r"\xff"` raw,
//! where the backslash is itself. `"x" * 4096` repeats, `+` joins. Log patterns may use `[..]`
//! for any text and `[alice]` for alice's address as the server prints it.

use std::fmt;
use std::time::Duration;

use crate::escape::escape;
use crate::server::ServerConfig;

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub title: String,
    pub server: ServerSpec,
    pub timeout: Duration,
    pub steps: Vec<Step>,
}

/// The server a scenario starts, as its `server` line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub kind: ServerKind,
    /// `key=value` settings in file order; the runner checks the keys.
    pub settings: Vec<(String, String)>,
}

const SETTINGS: &str = "recv-size, ack, backlog, max-clients, idle-timeout, host, accept";

impl ServerSpec {
    /// The value of a setting, if the file gives it.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The server's settings as a [`ServerConfig`] (the endpoint is the runner's to choose).
    pub fn config(&self) -> Result<ServerConfig, String> {
        let mut config = ServerConfig::default();
        for (key, value) in &self.settings {
            let number = || {
                value
                    .replace('_', "")
                    .parse::<usize>()
                    .map_err(|_| format!("{key}={value}: expected a number"))
            };
            match key.as_str() {
                "recv-size" => config.recv_size = number()?,
                "ack" => config.ack = value.as_bytes().to_vec(),
                "backlog" => {
                    config.backlog = i32::try_from(number()?)
                        .map_err(|_| format!("{key}={value} is too large"))?
                }
                "max-clients" => config.max_clients = number()?,
                "idle-timeout" => config.idle_timeout = Some(parse_duration(value)?),
                // Where to listen, and whether to accept at first: the runner reads these.
                "host" => {}
                "accept" if value == "paused" || value == "on" => {}
                "accept" => {
                    return Err(format!(
                        "accept={value}: expected `accept=paused` or `accept=on`"
                    ));
                }
                other => {
                    return Err(format!(
                        "unknown setting `{other}`; settings are: {SETTINGS}"
                    ));
                }
            }
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The ack server over TCP on 127.0.0.1 (or `host=`), port 0.
    Tcp,
    /// The ack server over UDP: datagrams, no connections.
    Udp,
    /// The ack server on a Unix stream socket in a fresh temporary directory.
    Unix,
    /// The ack server on a Unix datagram socket in a fresh temporary directory.
    UnixDgram,
    /// The web server of `socket-lab http`, on TCP.
    Http,
    /// Nothing listens: for lessons about refused connections.
    None,
}

impl ServerKind {
    const ALL: [ServerKind; 6] = [
        ServerKind::Tcp,
        ServerKind::Udp,
        ServerKind::Unix,
        ServerKind::UnixDgram,
        ServerKind::Http,
        ServerKind::None,
    ];
    const NAMES: &str = "tcp, udp, unix, unix-dgram, http, none";

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Tcp => "tcp",
            ServerKind::Udp => "udp",
            ServerKind::Unix => "unix",
            ServerKind::UnixDgram => "unix-dgram",
            ServerKind::Http => "http",
            ServerKind::None => "none",
        }
    }

    /// Datagram servers have no connections: `connect` only fixes the peer address.
    pub fn is_datagram(self) -> bool {
        matches!(self, ServerKind::Udp | ServerKind::UnixDgram)
    }
}

/// One line of the file that does something: narration, or a socket call and its expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line number in the file, for error messages.
    pub line: usize,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Narrate(String),
    Client { name: String, call: ClientCall },
    Server(ServerCall),
}

/// What a client does, in the walkthrough's words (and Python's, for the socket options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCall {
    /// `connect((host, port))`, expecting success, refusal, or no answer yet.
    Connect {
        expect: ConnectOutcome,
    },
    /// Wait for a connect that was left pending (`connect = pending 300ms`) to complete.
    FinishConnect,
    /// One `send` call, and what it must return if the file says.
    Send {
        data: Vec<u8>,
        expect: Option<SendOutcome>,
    },
    /// `sendall`: send until every byte is out, waiting whenever the socket is full.
    SendAll {
        data: Vec<u8>,
    },
    /// One `recv(size)` call.
    Recv {
        size: usize,
        expect: RecvOutcome,
    },
    /// `recv` repeated until exactly `size` bytes have arrived.
    RecvExactly {
        size: usize,
        expect: Vec<u8>,
    },
    /// `recv` repeated until end of stream.
    RecvUntilEof {
        expect: StreamContent,
    },
    /// `recv` until one whole HTTP response (head, then `Content-Length` bytes of body) is in,
    /// matched against a pattern with `[..]`.
    RecvResponse {
        pattern: String,
    },
    Shutdown(Direction),
    Close,
    /// Close with `SO_LINGER` 0: the peer sees a reset (RST) instead of an orderly close.
    Reset,
    /// Python's `settimeout`: how long a recv or send may wait before it fails with
    /// "timed out". (`none`, Python's "forever", is not offered: every step is bounded.)
    SetTimeout(Duration),
    /// Python's `setblocking`: a non-blocking socket never waits; it says "would block".
    SetBlocking(bool),
    /// `setsockopt` for the options the lessons use.
    SetSockOpt {
        option: SockOpt,
        value: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    Refused,
    /// Still not complete after this long: the server's listen queue is full and the kernel
    /// ignores the SYN. The connect goes on; `finish-connect` waits for it.
    Pending(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// `send` returned exactly this count.
    Count(usize),
    /// `send` returned fewer bytes than it was given (but some).
    Partial,
    /// A non-blocking `send` found no room at all.
    WouldBlock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockOpt {
    /// `SO_SNDBUF`: the kernel's send buffer for this socket.
    SndBuf,
    /// `SO_RCVBUF`: the kernel's receive buffer.
    RcvBuf,
    /// `TCP_NODELAY`: 1 turns off Nagle's algorithm.
    NoDelay,
}

impl SockOpt {
    const ALL: [SockOpt; 3] = [SockOpt::SndBuf, SockOpt::RcvBuf, SockOpt::NoDelay];

    pub fn name(self) -> &'static str {
        match self {
            SockOpt::SndBuf => "SO_SNDBUF",
            SockOpt::RcvBuf => "SO_RCVBUF",
            SockOpt::NoDelay => "TCP_NODELAY",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvOutcome {
    /// These bytes. Empty only for a datagram: on a stream, 0 bytes is `eof`.
    Data(Vec<u8>),
    /// `recv` returned 0 bytes: the peer closed its side.
    Eof,
    /// `recv` failed with "connection reset by peer".
    Reset,
    /// Nothing arrived within the socket's timeout (`settimeout`).
    Timeout,
    /// A non-blocking `recv` found nothing to read.
    WouldBlock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamContent {
    Data(Vec<u8>),
    /// The ack, once for every recv the server logged for this client.
    Acks,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
    Both,
}

/// What the scenario checks or does on the server's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCall {
    /// The server prints a line matching this pattern.
    Log(String),
    /// Every byte the client sent arrived, in order, across the server's recvs.
    ReceivedAll { client: String },
    /// Stop the server: it closes every connection.
    Stop,
    /// Start calling `accept` on a server started with `accept=paused`.
    ResumeAccept,
    /// Try to bind a second server on the same address while the first still runs.
    BindAgain {
        reuse_address: bool,
        expect: BindOutcome,
    },
    /// Stop the server and bind a new one on the same address at once.
    Restart {
        reuse_address: bool,
        expect: BindOutcome,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// The error message, as a pattern with `[..]`.
    Error(String),
}

/// What went wrong reading a file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The default for `timeout`: long enough for a loaded CI machine, short enough to fail fast.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest payload one expression may build: 64 MiB.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const CLIENT_VERBS: &str = "connect, finish-connect, send, sendall, recv, recv-exactly, \
     recv-until-eof, recv-response, shutdown, close, reset, settimeout, setblocking, setsockopt";
const SERVER_VERBS: &str = "log, received-all, stop, resume-accept, bind-again, restart";

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ParseError> {
        let mut title = None;
        let mut server = None;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut steps = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| ParseError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Some(narration) = trimmed.strip_prefix('#') {
                let narration = narration.strip_prefix(' ').unwrap_or(narration).trim_end();
                if title.is_none() {
                    title = Some(narration.to_string());
                } else {
                    steps.push(Step {
                        line,
                        action: Action::Narrate(narration.to_string()),
                    });
                }
                continue;
            }
            let tokens = tokenize(trimmed).map_err(error)?;
            let mut tokens = Tokens {
                tokens,
                position: 0,
            };
            match tokens.peek_word() {
                Some("server") if tokens.peek_is_directive() => {
                    if server.is_some() {
                        return Err(error(
                            "a second `server` line: a scenario starts one server".into(),
                        ));
                    }
                    if !steps
                        .iter()
                        .all(|s: &Step| matches!(s.action, Action::Narrate(_)))
                    {
                        return Err(error(
                            "the `server` line must come before the first step".into(),
                        ));
                    }
                    let spec = parse_server(&mut tokens).map_err(error)?;
                    spec.config().map_err(error)?;
                    server = Some(spec);
                }
                Some("timeout") if tokens.peek_is_directive() => {
                    tokens.next();
                    timeout = tokens.duration().map_err(error)?;
                    tokens.end().map_err(error)?;
                }
                _ => {
                    let action = parse_step(&mut tokens).map_err(error)?;
                    steps.push(Step { line, action });
                }
            }
        }
        let title = title.ok_or(ParseError {
            line: 1,
            message: "a scenario opens with a `# title` line".into(),
        })?;
        let server = server.ok_or(ParseError {
            line: 1,
            message: "no `server` line: say which server to start, e.g. `server tcp` or `server tcp recv-size=8` (kinds: tcp, udp, unix, unix-dgram, http, none)".into(),
        })?;
        Ok(Scenario {
            title,
            server,
            timeout,
            steps,
        })
    }

    /// The names of the clients, in order of first appearance.
    pub fn clients(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for step in &self.steps {
            if let Action::Client { name, .. } = &step.action
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }
}

fn parse_server(tokens: &mut Tokens) -> Result<ServerSpec, String> {
    tokens.next(); // "server"
    let word = tokens.word(&format!("a server kind ({})", ServerKind::NAMES))?;
    let kind = ServerKind::ALL
        .into_iter()
        .find(|kind| kind.name() == word)
        .ok_or_else(|| {
            format!(
                "unknown server kind `{word}`; expected one of: {}",
                ServerKind::NAMES
            )
        })?;
    let mut settings = Vec::new();
    while !tokens.at_end() {
        let key = tokens.word("a setting such as recv-size=8")?;
        tokens.expect(&Token::Equals, &format!("`=` after `{key}`"))?;
        let value = match tokens.next() {
            Some(Token::Word(word)) => word,
            Some(Token::Bytes(bytes)) => String::from_utf8(bytes)
                .map_err(|_| format!("the value of `{key}` must be UTF-8 text"))?,
            _ => return Err(format!("a value after `{key}=`")),
        };
        settings.push((key, value));
    }
    Ok(ServerSpec { kind, settings })
}

fn parse_step(tokens: &mut Tokens) -> Result<Action, String> {
    let actor = tokens.word("a step `NAME: VERB ...`, a `server` line, or `# narration`")?;
    tokens.expect(
        &Token::Colon,
        &format!("`:` after `{actor}` (steps look like `alice: send \"hello\"`)"),
    )?;
    if !actor
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{actor}` is not a name: use letters, digits, `-` and `_`"
        ));
    }
    let action = if actor == "server" {
        Action::Server(parse_server_call(tokens)?)
    } else {
        Action::Client {
            name: actor,
            call: parse_client_call(tokens)?,
        }
    };
    tokens.end()?;
    Ok(action)
}

fn parse_client_call(tokens: &mut Tokens) -> Result<ClientCall, String> {
    let verb = tokens.word(&format!("a verb: {CLIENT_VERBS}"))?;
    let call = match verb.as_str() {
        "connect" => {
            let expect = if tokens.eat(&Token::Equals) {
                match tokens
                    .word("`connected`, `refused` or `pending DURATION`")?
                    .as_str()
                {
                    "connected" => ConnectOutcome::Connected,
                    "refused" => ConnectOutcome::Refused,
                    "pending" => ConnectOutcome::Pending(tokens.duration()?),
                    other => {
                        return Err(format!(
                            "`connect` ends in `connected`, `refused` or `pending 300ms`, not `{other}`"
                        ));
                    }
                }
            } else {
                ConnectOutcome::Connected
            };
            ClientCall::Connect { expect }
        }
        "finish-connect" => ClientCall::FinishConnect,
        "send" => {
            let data = tokens.bytes_expr()?;
            let expect = if tokens.eat(&Token::Equals) {
                Some(match tokens.peek_word() {
                    Some("partial") => {
                        tokens.next();
                        SendOutcome::Partial
                    }
                    Some("wouldblock") => {
                        tokens.next();
                        SendOutcome::WouldBlock
                    }
                    _ => SendOutcome::Count(tokens.number()?),
                })
            } else {
                None
            };
            ClientCall::Send { data, expect }
        }
        "sendall" => ClientCall::SendAll {
            data: tokens.bytes_expr()?,
        },
        "recv" => {
            let size = tokens.number()?;
            tokens.expect(
                &Token::Equals,
                "`= \"bytes\"`, `= eof`, `= reset`, `= timeout` or `= wouldblock` after `recv N`",
            )?;
            let expect = match tokens.peek_word() {
                Some("eof") => RecvOutcome::Eof,
                Some("reset") => RecvOutcome::Reset,
                Some("timeout") => RecvOutcome::Timeout,
                Some("wouldblock") => RecvOutcome::WouldBlock,
                _ => RecvOutcome::Data(tokens.bytes_expr()?),
            };
            if !matches!(expect, RecvOutcome::Data(_)) {
                tokens.next();
            }
            if let RecvOutcome::Data(data) = &expect
                && data.len() > size
            {
                return Err(format!(
                    "recv {size} returns at most {size} bytes, so it cannot return {}",
                    data.len()
                ));
            }
            ClientCall::Recv { size, expect }
        }
        "recv-exactly" => {
            let size = tokens.number()?;
            tokens.expect(&Token::Equals, "`= \"bytes\"` after `recv-exactly N`")?;
            let expect = tokens.bytes_expr()?;
            if expect.len() != size {
                return Err(format!(
                    "recv-exactly {size} expects {size} bytes, but the expectation has {}",
                    expect.len()
                ));
            }
            ClientCall::RecvExactly { size, expect }
        }
        "recv-until-eof" => {
            tokens.expect(
                &Token::Equals,
                "`= \"bytes\"` or `= acks` after `recv-until-eof`",
            )?;
            let expect = if tokens.peek_word() == Some("acks") {
                tokens.next();
                StreamContent::Acks
            } else {
                StreamContent::Data(tokens.bytes_expr()?)
            };
            ClientCall::RecvUntilEof { expect }
        }
        "recv-response" => {
            tokens.expect(
                &Token::Equals,
                "`= \"HTTP/1.1 200 OK\\r\\n[..]\"` after `recv-response`",
            )?;
            ClientCall::RecvResponse {
                pattern: tokens.text("the response to expect")?,
            }
        }
        "shutdown" => ClientCall::Shutdown(match tokens.word("read, write or both")?.as_str() {
            "read" => Direction::Read,
            "write" => Direction::Write,
            "both" => Direction::Both,
            other => return Err(format!("shutdown takes read, write or both, not `{other}`")),
        }),
        "close" => ClientCall::Close,
        "reset" => ClientCall::Reset,
        "settimeout" => ClientCall::SetTimeout(tokens.duration()?),
        "setblocking" => ClientCall::SetBlocking(match tokens.word("true or false")?.as_str() {
            "true" => true,
            "false" => false,
            other => return Err(format!("setblocking takes true or false, not `{other}`")),
        }),
        "setsockopt" => {
            let names: Vec<&str> = SockOpt::ALL.iter().map(|option| option.name()).collect();
            let word = tokens.word(&format!("an option: {}", names.join(", ")))?;
            let option = SockOpt::ALL
                .into_iter()
                .find(|option| option.name() == word)
                .ok_or_else(|| {
                    format!(
                        "unknown option `{word}`; the lessons use: {}",
                        names.join(", ")
                    )
                })?;
            ClientCall::SetSockOpt {
                option,
                value: tokens.number()?,
            }
        }
        other => {
            return Err(format!(
                "unknown verb `{other}`; a client can: {CLIENT_VERBS}"
            ));
        }
    };
    Ok(call)
}

fn parse_server_call(tokens: &mut Tokens) -> Result<ServerCall, String> {
    let verb = tokens.word(&format!("a verb: {SERVER_VERBS}"))?;
    let call = match verb.as_str() {
        "log" => ServerCall::Log(tokens.text("the log line to expect, as a string")?),
        "received-all" => ServerCall::ReceivedAll {
            client: tokens.word("a client name")?,
        },
        "stop" => ServerCall::Stop,
        "resume-accept" => ServerCall::ResumeAccept,
        "bind-again" | "restart" => {
            let mut reuse_address = true;
            if tokens.peek_word() == Some("reuseaddr") {
                tokens.next();
                tokens.expect(&Token::Equals, "`=` after `reuseaddr`")?;
                reuse_address = match tokens.word("on or off")?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("`reuseaddr` is on or off, not `{other}`")),
                };
            }
            tokens.expect(&Token::Equals, "`= bound` or `= error \"...\"`")?;
            let expect = match tokens.word("`bound` or `error`")?.as_str() {
                "bound" => BindOutcome::Bound,
                "error" => BindOutcome::Error(tokens.text("the error message to expect")?),
                other => {
                    return Err(format!(
                        "expected `bound` or `error \"...\"`, not `{other}`"
                    ));
                }
            };
            if verb == "restart" {
                ServerCall::Restart {
                    reuse_address,
                    expect,
                }
            } else {
                ServerCall::BindAgain {
                    reuse_address,
                    expect,
                }
            }
        }
        other => {
            return Err(format!(
                "unknown server verb `{other}`; the server can: {SERVER_VERBS}"
            ));
        }
    };
    Ok(call)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Bytes(Vec<u8>),
    Equals,
    Colon,
    Star,
    Plus,
}

fn describe_token(token: Option<&Token>) -> String {
    match token {
        None => "the end of the line".into(),
        Some(Token::Word(word)) => format!("`{word}`"),
        Some(Token::Bytes(bytes)) => format!("the string \"{}\"", quote(bytes)),
        Some(Token::Equals) => "`=`".into(),
        Some(Token::Colon) => "`:`".into(),
        Some(Token::Star) => "`*`".into(),
        Some(Token::Plus) => "`+`".into(),
    }
}

struct Tokens {
    tokens: Vec<Token>,
    position: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(word)) => Some(word),
            _ => None,
        }
    }

    /// `server tcp` is a directive; `server: log ...` is a step.
    fn peek_is_directive(&self) -> bool {
        self.tokens.get(self.position + 1) != Some(&Token::Colon)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn at_end(&self) -> bool {
        self.position >= self.tokens.len()
    }

    fn eat(&mut self, token: &Token) -> bool {
        let matched = self.peek() == Some(token);
        if matched {
            self.position += 1;
        }
        matched
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!(
                "expected {what}, found {}",
                describe_token(self.peek())
            ))
        }
    }

    fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            token => Err(format!(
                "unexpected {} after the step",
                describe_token(token)
            )),
        }
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(Token::Word(word)) => {
                let word = word.clone();
                self.position += 1;
                Ok(word)
            }
            token => Err(format!("expected {what}, found {}", describe_token(token))),
        }
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.bytes_expr().map_err(|e| format!("{what}: {e}"))?;
        String::from_utf8(bytes).map_err(|_| {
            format!("{what} must be UTF-8 text; write r\"\\xff\" to match an escaped byte")
        })
    }

    fn number(&mut self) -> Result<usize, String> {
        let word = self.word("a number")?;
        let digits = word.replace('_', "");
        digits
            .parse()
            .map_err(|_| format!("expected a number, found `{word}`"))
    }

    fn duration(&mut self) -> Result<Duration, String> {
        parse_duration(&self.word("a duration such as 5s or 300ms")?)
    }

    /// `"abc"`, `"x" * 4096`, `"GET / HTTP/1.1\r\n" + "Host: a\r\n" * 2`.
    fn bytes_expr(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let piece = match self.next() {
                Some(Token::Bytes(bytes)) => bytes,
                token => {
                    return Err(format!(
                        "expected a string such as \"hello\\r\\n\", found {}",
                        describe_token(token.as_ref())
                    ));
                }
            };
            let times = if self.eat(&Token::Star) {
                self.number()?
            } else {
                1
            };
            if piece.len().saturating_mul(times).saturating_add(out.len()) > MAX_PAYLOAD {
                return Err(format!("payloads are limited to {MAX_PAYLOAD} bytes"));
            }
            for _ in 0..times {
                out.extend_from_slice(&piece);
            }
            if !self.eat(&Token::Plus) {
                return Ok(out);
            }
        }
    }
}

fn parse_duration(word: &str) -> Result<Duration, String> {
    let split = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (number, unit) = word.split_at(split);
    let not_a_duration = || format!("`{word}` is not a duration such as 5s or 300ms");
    let number: u64 = number.parse().map_err(|_| not_a_duration())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        _ => Err(not_a_duration()),
    }
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => break, // a trailing comment
            '=' | ':' | '*' | '+' => {
                chars.next();
                tokens.push(match c {
                    '=' => Token::Equals,
                    ':' => Token::Colon,
                    '*' => Token::Star,
                    _ => Token::Plus,
                });
            }
            '"' => {
                chars.next();
                tokens.push(Token::Bytes(string_literal(&mut chars, false)?));
            }
            'r' if line[start..].starts_with("r\"") => {
                chars.next();
                chars.next();
                tokens.push(Token::Bytes(string_literal(&mut chars, true)?));
            }
            _ => {
                let mut end = start;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '"' | '=' | ':' | '*' | '+' | '#') {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                tokens.push(Token::Word(line[start..end].to_string()));
            }
        }
    }
    Ok(tokens)
}

fn string_literal(
    chars: &mut std::iter::Peekable<std::str::CharIndices>,
    raw: bool,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some((_, c)) = chars.next() else {
            return Err("a string is missing its closing `\"`".into());
        };
        match c {
            '"' => return Ok(out),
            '\\' if !raw => {
                let Some((_, escape)) = chars.next() else {
                    return Err("a string ends in a lone `\\`".into());
                };
                match escape {
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    '0' => out.push(0),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let byte = u8::from_str_radix(&hex, 16).map_err(|_| {
                            format!("`\\x{hex}` is not a byte: write two hex digits, as in \\xff")
                        })?;
                        out.push(byte);
                    }
                    'u' => {
                        if chars.next().map(|(_, c)| c) != Some('{') {
                            return Err("write a code point as \\u{85}".into());
                        }
                        let mut hex = String::new();
                        loop {
                            match chars.next() {
                                Some((_, '}')) => break,
                                Some((_, c)) if hex.len() < 6 => hex.push(c),
                                _ => return Err("write a code point as \\u{85}".into()),
                            }
                        }
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("`\\u{{{hex}}}` is not a character"))?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    other => {
                        return Err(format!(
                            "unknown escape `\\{other}`; use \\n \\r \\t \\0 \\\\ \\\" \\xNN or \\u{{N}}"
                        ));
                    }
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// `bytes` as the inside of a scenario string literal: what [`escape`] shows, with `"`
/// escaped too, so parsing it back gives the same bytes.
pub fn quote(bytes: &[u8]) -> String {
    escape(bytes).replace('"', "\\\"")
}

/// Prints the scenario back as a file that parses to the same scenario (comments aside).
impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {}", self.title)?;
        write!(f, "server {}", self.server.kind.name())?;
        for (key, value) in &self.server.settings {
            write!(f, " {key}={}", literal(value.as_bytes()))?;
        }
        writeln!(f)?;
        writeln!(f, "timeout {}", show_duration(self.timeout))?;
        for step in &self.steps {
            writeln!(f, "{}", step.action)?;
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Narrate(text) => write!(f, "# {text}"),
            Action::Client { name, call } => write!(f, "{name}: {call}"),
            Action::Server(call) => write!(f, "server: {call}"),
        }
    }
}

/// A string literal for `bytes`, written `"unit" * n` when it is one short piece repeated,
/// so a megabyte of `x` prints as one short line.
fn literal(bytes: &[u8]) -> String {
    const UNIT: usize = 16;
    if bytes.len() > 4 * UNIT
        && let Some(unit) = (1..=UNIT).find(|&unit| {
            bytes.len().is_multiple_of(unit)
                && bytes.chunks(unit).all(|chunk| chunk == &bytes[..unit])
        })
    {
        return format!("\"{}\" * {}", quote(&bytes[..unit]), bytes.len() / unit);
    }
    format!("\"{}\"", quote(bytes))
}

fn show_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

impl fmt::Display for ClientCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCall::Connect { expect } => match expect {
                ConnectOutcome::Connected => write!(f, "connect"),
                ConnectOutcome::Refused => write!(f, "connect = refused"),
                ConnectOutcome::Pending(wait) => {
                    write!(f, "connect = pending {}", show_duration(*wait))
                }
            },
            ClientCall::FinishConnect => write!(f, "finish-connect"),
            ClientCall::Send { data, expect } => {
                write!(f, "send {}", literal(data))?;
                match expect {
                    None => Ok(()),
                    Some(SendOutcome::Count(count)) => write!(f, " = {count}"),
                    Some(SendOutcome::Partial) => write!(f, " = partial"),
                    Some(SendOutcome::WouldBlock) => write!(f, " = wouldblock"),
                }
            }
            ClientCall::SendAll { data } => write!(f, "sendall {}", literal(data)),
            ClientCall::Recv { size, expect } => {
                write!(f, "recv {size} = ")?;
                match expect {
                    RecvOutcome::Data(data) => write!(f, "{}", literal(data)),
                    RecvOutcome::Eof => write!(f, "eof"),
                    RecvOutcome::Reset => write!(f, "reset"),
                    RecvOutcome::Timeout => write!(f, "timeout"),
                    RecvOutcome::WouldBlock => write!(f, "wouldblock"),
                }
            }
            ClientCall::RecvExactly { size, expect } => {
                write!(f, "recv-exactly {size} = {}", literal(expect))
            }
            ClientCall::RecvUntilEof {
                expect: StreamContent::Acks,
            } => write!(f, "recv-until-eof = acks"),
            ClientCall::RecvUntilEof {
                expect: StreamContent::Data(data),
            } => write!(f, "recv-until-eof = {}", literal(data)),
            ClientCall::RecvResponse { pattern } => {
                write!(f, "recv-response = {}", literal(pattern.as_bytes()))
            }
            ClientCall::Shutdown(Direction::Read) => write!(f, "shutdown read"),
            ClientCall::Shutdown(Direction::Write) => write!(f, "shutdown write"),
            ClientCall::Shutdown(Direction::Both) => write!(f, "shutdown both"),
            ClientCall::Close => write!(f, "close"),
            ClientCall::Reset => write!(f, "reset"),
            ClientCall::SetTimeout(timeout) => write!(f, "settimeout {}", show_duration(*timeout)),
            ClientCall::SetBlocking(blocking) => write!(f, "setblocking {blocking}"),
            ClientCall::SetSockOpt { option, value } => {
                write!(f, "setsockopt {} {value}", option.name())
            }
        }
    }
}

impl fmt::Display for ServerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bind = |f: &mut fmt::Formatter<'_>, verb: &str, reuse: bool, expect: &BindOutcome| {
            write!(f, "{verb}")?;
            if !reuse {
                write!(f, " reuseaddr=off")?;
            }
            match expect {
                BindOutcome::Bound => write!(f, " = bound"),
                BindOutcome::Error(pattern) => {
                    write!(f, " = error {}", literal(pattern.as_bytes()))
                }
            }
        };
        match self {
            ServerCall::Log(pattern) => write!(f, "log {}", literal(pattern.as_bytes())),
            ServerCall::ReceivedAll { client } => write!(f, "received-all {client}"),
            ServerCall::Stop => write!(f, "stop"),
            ServerCall::ResumeAccept => write!(f, "resume-accept"),
            ServerCall::BindAgain {
                reuse_address,
                expect,
            } => bind(f, "bind-again", *reuse_address, expect),
            ServerCall::Restart {
                reuse_address,
                expect,
            } => bind(f, "restart", *reuse_address, expect),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        Scenario::parse(text)
            .expect_err("should not parse")
            .to_string()
    }

    #[test]
    fn a_small_scenario_parses() {
        let scenario = Scenario::parse(
            "# One message\nserver tcp recv-size=8\n\nalice: connect\nalice: send \"hi\\r\\n\" * 2 = 8 # why\nserver: log r\"[alice] send a message to server: hi\\r\"\n",
        )
        .unwrap();
        assert_eq!(scenario.title, "One message");
        assert_eq!(scenario.server.setting("recv-size"), Some("8"));
        assert_eq!(
            scenario.steps[1].action,
            Action::Client {
                name: "alice".into(),
                call: ClientCall::Send {
                    data: b"hi\r\nhi\r\n".to_vec(),
                    expect: Some(SendOutcome::Count(8))
                }
            }
        );
        assert_eq!(scenario.steps[1].line, 5);
        assert_eq!(
            scenario.steps[2].action,
            Action::Server(ServerCall::Log(
                "[alice] send a message to server: hi\\r".into()
            ))
        );
    }

    #[test]
    fn mistakes_name_the_line_and_what_was_expected() {
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: sned \"x\""),
            format!("line 3: unknown verb `sned`; a client can: {CLIENT_VERBS}")
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: send \"x"),
            "line 3: a string is missing its closing `\"`"
        );
        assert_eq!(
            parse_err("# t\nserver sctp"),
            "line 2: unknown server kind `sctp`; expected one of: tcp, udp, unix, unix-dgram, http, none"
        );
        assert!(parse_err("# t\nalice: connect").starts_with("line 1: no `server` line"));
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: recv 4 = \"server\""),
            "line 3: recv 4 returns at most 4 bytes, so it cannot return 6"
        );
        assert_eq!(
            parse_err("# t\nserver tcp colour=red"),
            format!("line 2: unknown setting `colour`; settings are: {SETTINGS}")
        );
    }
}
