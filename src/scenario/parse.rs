//! The scenario parser: text in, a [`Scenario`] out, or `line N: what is wrong`.
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
//! Words, strings and numbers come from [`super::lex`]; the verbs, from [`VERBS`]. Everything
//! a file can get wrong is found here, before any socket is opened: an unknown verb, a setting
//! the server kind does not take, a number out of range.

use std::fmt;
use std::time::Duration;

use super::lex::{MAX_PAYLOAD, Token, Tokens, parse_duration};
use super::syntax::*;
use crate::endpoint::AddressReuse;
use crate::server::MAX_RECV_SIZE;

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

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ParseError> {
        let mut title = None;
        let mut server = None;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut steps = Vec::new();
        let mut built = 0;
        let mut last_line = 1;
        let mut needs = Vec::new();
        let mut network = None;
        let mut second = None;
        let mut hint: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            last_line = line;
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
                        hint: None,
                    });
                }
                continue;
            }
            let mut tokens = Tokens::new(trimmed, &mut built).map_err(error)?;
            match tokens.peek_word() {
                Some("server") if tokens.peek_is_directive() => {
                    if server.is_some() {
                        if second.is_some() {
                            return Err(error(
                                "a third `server` line: a scenario starts at most two servers"
                                    .into(),
                            ));
                        }
                        let (spec, name) = parse_server(&mut tokens).map_err(error)?;
                        let name = name.ok_or_else(|| {
                            error(
                                "a second server needs a name: `server udp recv-size=8 as dgram`"
                                    .into(),
                            )
                        })?;
                        if spec.kind == ServerKind::None {
                            return Err(error(format!(
                                "a second server must be one that listens: `server none as {name}` has nothing to connect to"
                            )));
                        }
                        if !steps
                            .iter()
                            .all(|s: &Step| matches!(s.action, Action::Narrate(_)))
                        {
                            return Err(error(
                                "the `server` lines must come before the first step".into(),
                            ));
                        }
                        second = Some((name, spec));
                        continue;
                    }
                    if !steps
                        .iter()
                        .all(|s: &Step| matches!(s.action, Action::Narrate(_)))
                    {
                        return Err(error(
                            "the `server` line must come before the first step".into(),
                        ));
                    }
                    let (spec, name) = parse_server(&mut tokens).map_err(error)?;
                    if name.is_some() {
                        return Err(error(
                            "the first server is `server`; only a second one takes `as NAME`"
                                .into(),
                        ));
                    }
                    server = Some(spec);
                }
                Some("timeout") if tokens.peek_is_directive() => {
                    tokens.next();
                    timeout = tokens.duration().map_err(error)?;
                    tokens.end().map_err(error)?;
                }
                Some("network") if tokens.peek_is_directive() => {
                    if network.is_some() {
                        return Err(error("a second `network` line: say it all on one".into()));
                    }
                    let words = trimmed
                        .strip_prefix("network")
                        .unwrap_or_default()
                        .split('#')
                        .next()
                        .unwrap_or_default();
                    network = Some((crate::proxy::Network::parse(words).map_err(error)?, line));
                }
                Some("needs") if tokens.peek_is_directive() => {
                    tokens.next();
                    let need = match tokens
                        .word("what the lesson needs: two-clients-at-once or the-labs-pages")
                        .map_err(error)?
                        .as_str()
                    {
                        "two-clients-at-once" => Need::TwoClientsAtOnce,
                        "the-labs-pages" => Need::TheLabsPages,
                        other => {
                            return Err(error(format!(
                                "unknown need `{other}`; a lesson can need: two-clients-at-once, the-labs-pages"
                            )));
                        }
                    };
                    tokens.end().map_err(error)?;
                    needs.push(need);
                }
                Some("hint") if tokens.peek_is_directive() => {
                    tokens.next();
                    if hint.is_some() {
                        return Err(error(
                            "two `hint` lines in a row: a hint belongs to the step after it".into(),
                        ));
                    }
                    hint = Some(tokens.text("the hint, as a string").map_err(error)?);
                    tokens.end().map_err(error)?;
                }
                _ => {
                    let action = parse_step(&mut tokens).map_err(error)?;
                    steps.push(Step {
                        line,
                        action,
                        hint: hint.take(),
                    });
                }
            }
        }
        let title = title.ok_or(ParseError {
            line: 1,
            message: "a scenario opens with a `# title` line".into(),
        })?;
        if let Some((_, network_line)) = &network
            && let Some(spec) = &server
            && (spec.kind.is_datagram() || spec.kind == ServerKind::None)
        {
            return Err(ParseError {
                line: *network_line,
                message: "a `network` line needs a stream server (tcp, unix or http): the proxy relays connections".into(),
            });
        }
        let server = server.ok_or(ParseError {
            line: 1,
            message: format!(
                "no `server` line: say which server to start, e.g. `server tcp` or `server tcp recv-size=8` (kinds: {})",
                ServerKind::NAMES
            ),
        })?;
        if hint.is_some() {
            return Err(ParseError {
                line: last_line,
                message: "a `hint` line with no step after it".into(),
            });
        }
        for step in &steps {
            if let Action::Server(ServerCall::Replace(settings)) = &step.action {
                check_fits(server.kind, settings).map_err(|message| ParseError {
                    line: step.line,
                    message,
                })?;
            }
        }
        Ok(Scenario {
            title,
            server,
            timeout,
            steps,
            last_line,
            needs,
            network: network.map(|(network, _)| network),
            second,
        })
    }
}

fn parse_server(tokens: &mut Tokens) -> Result<(ServerSpec, Option<String>), String> {
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
    let mut settings: Vec<Setting> = Vec::new();
    while !tokens.at_end() {
        if tokens.peek_word() == Some("as") {
            tokens.next();
            let name = tokens.word("the second server's name")?;
            if name == "server" || name == "kernel" || name == "wire" {
                return Err(format!("`{name}` names something else; pick another name"));
            }
            tokens.end()?;
            return Ok((ServerSpec { kind, settings }, Some(name)));
        }
        let key = tokens.word("a setting such as recv-size=8")?;
        tokens.expect(&Token::Equals, &format!("`=` after `{key}`"))?;
        let value = match tokens.next() {
            Some(Token::Word(word)) => word,
            Some(Token::Bytes(bytes)) => String::from_utf8(bytes)
                .map_err(|_| format!("the value of `{key}` must be UTF-8 text"))?,
            _ => return Err(format!("a value after `{key}=`")),
        };
        let takes = kind.settings().join(", ");
        let known = ServerKind::ALL
            .iter()
            .any(|kind| kind.settings().contains(&key.as_str()));
        if !known {
            return Err(format!(
                "unknown setting `{key}`; a {} server takes: {takes}",
                kind.name()
            ));
        }
        if !kind.settings().contains(&key.as_str()) {
            let takes = if takes.is_empty() {
                "no settings".to_string()
            } else {
                format!("it takes: {takes}")
            };
            return Err(format!(
                "the {} server does not take `{key}`; {takes}",
                kind.name()
            ));
        }
        if settings.iter().any(|setting| setting.key() == key) {
            return Err(format!("`{key}` is given twice"));
        }
        let setting = setting(&key, &value)?;
        if let Setting::Engine(engine) = setting
            && !kind.engines().contains(&engine)
        {
            let names: Vec<&str> = kind.engines().iter().map(|e| e.name()).collect();
            return Err(format!(
                "the {} server does not run on engine={engine}; it runs on: {}",
                kind.name(),
                names.join(", ")
            ));
        }
        settings.push(setting);
    }
    Ok((ServerSpec { kind, settings }, None))
}

/// Whether a server of `kind` takes each of `settings` (for `server: replace`, whose line
/// does not name the kind).
fn check_fits(kind: ServerKind, settings: &[Setting]) -> Result<(), String> {
    for setting in settings {
        if !kind.settings().contains(&setting.key()) {
            return Err(format!(
                "the {} server does not take `{}`",
                kind.name(),
                setting.key()
            ));
        }
        if let Setting::Engine(engine) = setting
            && !kind.engines().contains(engine)
        {
            return Err(format!(
                "the {} server does not run on engine={engine}",
                kind.name()
            ));
        }
    }
    Ok(())
}

/// One setting's value, checked against the same limits the command line has.
fn setting(key: &str, value: &str) -> Result<Setting, String> {
    let number = |max: usize| -> Result<usize, String> {
        let number: usize = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{key}={value}: expected a number"))?;
        if number > max {
            return Err(format!("{key}={value} is too large: at most {max}"));
        }
        Ok(number)
    };
    Ok(match key {
        "recv-size" => {
            let size = number(MAX_RECV_SIZE)?;
            if size == 0 {
                return Err(format!(
                    "{key}={value}: the server's recv size is 1 to {MAX_RECV_SIZE} bytes"
                ));
            }
            Setting::RecvSize(size)
        }
        "ack" if value.is_empty() => {
            return Err(
                "ack=\"\": the ack must not be empty, or no client would know its message arrived"
                    .into(),
            );
        }
        "ack" => Setting::Ack(value.as_bytes().to_vec()),
        // SOMAXCONN caps it in the kernel anyway; an int is the most listen takes.
        "backlog" => Setting::Backlog(number(65_535)? as i32),
        "max-clients" => {
            let max = number(100_000)?;
            if max == 0 {
                return Err(format!("{key}=0: a server must serve at least 1 client"));
            }
            Setting::MaxClients(max)
        }
        "idle-timeout" => Setting::IdleTimeout(parse_duration(value)?),
        "host" => Setting::Host(value.to_string()),
        "engine" => Setting::Engine(crate::engine::Engine::from_name(value).ok_or_else(|| {
            format!(
                "engine={value}: expected `engine=threads`, `engine=iterative` or `engine=epoll`"
            )
        })?),
        "accept" => Setting::Accept(match value {
            "on" => AcceptMode::On,
            "paused" => AcceptMode::Paused,
            _ => {
                return Err(format!(
                    "accept={value}: expected `accept=paused` or `accept=on`"
                ));
            }
        }),
        _ => return Err(format!("unknown setting `{key}`")),
    })
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
    // A verb follows the actor, except on the wire, whose steps have a shape of their own.
    let verb =
        |tokens: &mut Tokens, who: Actor| tokens.word(&format!("a verb: {}", verb_names(who)));
    let action = match actor.as_str() {
        "wire" => Action::Wire(parse_wire_call(tokens)?),
        "server" => {
            let verb = verb(tokens, Actor::Server)?;
            Action::Server(parse_server_call(tokens, &verb)?)
        }
        "kernel" => {
            let verb = verb(tokens, Actor::Kernel)?;
            Action::Kernel(parse_kernel_call(tokens, &verb)?)
        }
        "crowd" => {
            let verb = verb(tokens, Actor::Crowd)?;
            Action::Crowd(parse_crowd_call(tokens, &verb)?)
        }
        _ => {
            let verb = verb(tokens, Actor::Client)?;
            Action::Client {
                call: parse_client_call(tokens, &verb)?,
                name: actor,
            }
        }
    };
    tokens.end()?;
    Ok(action)
}

fn parse_client_call(tokens: &mut Tokens, verb: &str) -> Result<ClientCall, String> {
    let call = match verb {
        "connect" => {
            let expect = if tokens.eat(&Token::Equals) {
                match tokens
                    .word("`connected`, `error ECONNREFUSED` or `pending DURATION`")?
                    .as_str()
                {
                    "connected" => ConnectOutcome::Connected,
                    "error" => {
                        errno(tokens, &["ECONNREFUSED"])?;
                        ConnectOutcome::Refused
                    }
                    "pending" => ConnectOutcome::Pending(tokens.duration()?),
                    other => return Err(old_outcome(other).unwrap_or_else(|| format!(
                        "`connect` ends in `connected`, `error ECONNREFUSED` or `pending 300ms`, not `{other}`"
                    ))),
                }
            } else {
                ConnectOutcome::Connected
            };
            ClientCall::Connect { expect }
        }
        "finish-connect" => ClientCall::FinishConnect,
        "connect-to" => ClientCall::ConnectTo(tokens.word("the second server's name")?),
        "send" => {
            let data = tokens.bytes_expr()?;
            let expect = if tokens.eat(&Token::Equals) {
                Some(match tokens.peek_word() {
                    Some("partial") => {
                        tokens.next();
                        SendOutcome::Partial
                    }
                    Some("error") => {
                        tokens.next();
                        errno(tokens, &["EAGAIN"])?;
                        SendOutcome::WouldBlock
                    }
                    Some(word) if old_outcome(word).is_some() => {
                        return Err(old_outcome(word).unwrap_or_default());
                    }
                    _ => SendOutcome::Count(tokens.number(MAX_PAYLOAD)?),
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
            let size = tokens.number(MAX_PAYLOAD)?;
            tokens.expect(
                &Token::Equals,
                "`= \"bytes\"`, `= eof`, `= timeout` or `= error ECONNRESET|ECONNREFUSED|EAGAIN` after `recv N`",
            )?;
            let expect = match tokens.peek_word() {
                Some("eof") => {
                    tokens.next();
                    RecvOutcome::Eof
                }
                Some("timeout") => {
                    tokens.next();
                    RecvOutcome::Timeout
                }
                Some("error") => {
                    tokens.next();
                    match errno(tokens, &["ECONNRESET", "ECONNREFUSED", "EAGAIN"])? {
                        "ECONNRESET" => RecvOutcome::Reset,
                        "ECONNREFUSED" => RecvOutcome::Refused,
                        _ => RecvOutcome::WouldBlock,
                    }
                }
                Some(word) if old_outcome(word).is_some() => {
                    return Err(old_outcome(word).unwrap_or_default());
                }
                _ => RecvOutcome::Data(tokens.bytes_expr()?),
            };
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
            let size = tokens.number(MAX_PAYLOAD)?;
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
            let framing = if tokens.peek_word() == Some("short") {
                tokens.next();
                Framing::Short
            } else {
                Framing::Whole
            };
            ClientCall::RecvResponse {
                pattern: tokens.text("the response to expect")?,
                framing,
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
                // The kernel caps buffer sizes itself (net.core.rmem_max); an int is the most
                // setsockopt takes.
                value: tokens.number(i32::MAX as usize)?,
                expect: if tokens.eat(&Token::Equals) {
                    Some(tokens.number(i32::MAX as usize)?)
                } else {
                    None
                },
            }
        }
        "ignore-rest" => ClientCall::IgnoreRest,
        "queued" => {
            let mut counts = QueueCounts::default();
            while !tokens.at_end() {
                let key = tokens.word("recv=N, send=N or unsent=N")?;
                tokens.expect(&Token::Equals, &format!("`=` after `{key}`"))?;
                let count = Some(tokens.number(MAX_PAYLOAD)?);
                let slot = match key.as_str() {
                    "recv" => &mut counts.recv,
                    "send" => &mut counts.send,
                    "unsent" => &mut counts.unsent,
                    other => {
                        return Err(format!(
                            "`queued` counts recv, send and unsent, not `{other}`"
                        ));
                    }
                };
                if slot.is_some() {
                    return Err(format!("`{key}` is given twice"));
                }
                *slot = count;
            }
            ClientCall::Queued(counts)
        }
        other => {
            return Err(format!(
                "unknown verb `{other}`; a client can: {}",
                verb_names(Actor::Client)
            ));
        }
    };
    Ok(call)
}

/// `alice → server SYN ACK len=0` (or `->`), or `no segment for 300ms`.
fn parse_wire_call(tokens: &mut Tokens) -> Result<WireCall, String> {
    let from = tokens.word("`FROM → TO FLAGS` or `no segment for 300ms`")?;
    if from == "no" {
        for word in ["segment", "for"] {
            if tokens.word(&format!("`{word}`"))? != word {
                return Err("write it `no segment for 300ms`".into());
            }
        }
        return Ok(WireCall::Silence(tokens.duration()?));
    }
    let arrow = tokens.word("`→` (or `->`) between the two ends")?;
    if arrow != "→" && arrow != "->" {
        return Err(format!(
            "expected `→` (or `->`) after `{from}`, found `{arrow}`"
        ));
    }
    let to = tokens.word("the receiving end: a client's name or `server`")?;
    let mut names = Vec::new();
    let mut len = None;
    let mut window = None;
    while !tokens.at_end() {
        let word = tokens.word("a TCP flag (SYN ACK FIN RST PSH), UDP, len=N or win=N")?;
        match word.as_str() {
            "len" => {
                tokens.expect(&Token::Equals, "`=` after `len`")?;
                len = Some(tokens.number(MAX_PAYLOAD)?);
            }
            "win" => {
                tokens.expect(&Token::Equals, "`=` after `win`")?;
                // A window is at most 65535 << 14 (RFC 7323).
                window = Some(tokens.number(65_535 << 14)? as u64);
            }
            _ => names.push(word),
        }
    }
    let kind = if names == ["UDP"] {
        SegmentKind::Udp
    } else if names.is_empty() {
        return Err("say which flags the segment has, e.g. `SYN` or `SYN ACK`, or `UDP`".into());
    } else {
        SegmentKind::Tcp(crate::wire::Flags::from_names(
            names.iter().map(String::as_str),
        )?)
    };
    Ok(WireCall::Segment {
        from,
        to,
        kind,
        len,
        window,
    })
}

/// The error name after `= error`, one of `allowed` (the errno names of errno(3), as
/// packetdrill writes them: `= error ECONNREFUSED`).
fn errno(tokens: &mut Tokens, allowed: &[&'static str]) -> Result<&'static str, String> {
    let name = tokens.word(&format!("an error name: {}", allowed.join(" or ")))?;
    allowed
        .iter()
        .find(|known| **known == name)
        .copied()
        .ok_or_else(|| {
            format!(
                "this call's errors are written {}, not `{name}`",
                allowed.join(" or ")
            )
        })
}

/// The words earlier lessons used for errors, and the one form they are written in now.
fn old_outcome(word: &str) -> Option<String> {
    let errno = match word {
        "refused" => "ECONNREFUSED",
        "reset" => "ECONNRESET",
        "wouldblock" => "EAGAIN",
        _ => return None,
    };
    Some(format!(
        "an error is written `= error {errno}` (the errno name), not `= {word}`"
    ))
}

fn parse_kernel_call(tokens: &mut Tokens, verb: &str) -> Result<KernelCall, String> {
    match verb {
        "sysctl" => {
            let mut names = vec![tokens.word("a sysctl name such as net.ipv4.tcp_syn_retries")?];
            while !tokens.at_end() {
                names.push(tokens.word("a sysctl name")?);
            }
            for name in &names {
                let valid = name.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
                });
                if !valid {
                    return Err(format!(
                        "`{name}` is not a sysctl name such as net.ipv4.tcp_syn_retries"
                    ));
                }
            }
            Ok(KernelCall::Sysctl(names))
        }
        "syn-schedule" => Ok(KernelCall::SynSchedule),
        "state" => {
            let first = tokens.word("a client's name, or `server of CLIENT`")?;
            let end = if first == "server" {
                if tokens.word("`of`")? != "of" {
                    return Err("write the server's end as `server of alice`".into());
                }
                End::ServerOf(tokens.word("a client's name")?)
            } else {
                End::Client(first)
            };
            tokens.expect(&Token::Equals, "`= STATE` such as `= TIME_WAIT`")?;
            let name = tokens.word("a TCP state such as ESTABLISHED or TIME_WAIT")?;
            let state = crate::kernel::TcpState::from_name(&name).ok_or_else(|| {
                let names: Vec<&str> = crate::kernel::TcpState::ALL
                    .iter()
                    .map(|state| state.name())
                    .collect();
                format!(
                    "`{name}` is not a TCP state; the kernel's are: {}",
                    names.join(", ")
                )
            })?;
            Ok(KernelCall::State { end, state })
        }
        "accept-queue" => {
            tokens.expect(&Token::Equals, "`= N` after `accept-queue`")?;
            Ok(KernelCall::AcceptQueue(tokens.number(65_536)?))
        }
        other => Err(format!(
            "unknown kernel verb `{other}`; the kernel can: {}",
            verb_names(Actor::Kernel)
        )),
    }
}

fn parse_crowd_call(tokens: &mut Tokens, verb: &str) -> Result<CrowdCall, String> {
    Ok(match verb {
        "connect" => {
            let count = tokens.number(MAX_CROWD)?;
            if count == 0 {
                return Err("a crowd of 0 is nobody: `crowd: connect 10000`".into());
            }
            CrowdCall::Connect(count)
        }
        "send" => CrowdCall::Send(tokens.bytes_expr()?),
        "recv" => {
            let size = tokens.number(MAX_PAYLOAD)?;
            if size == 0 {
                return Err("recv 0 reads nothing: give the most one recv may take".into());
            }
            tokens.expect(&Token::Equals, "`= \"bytes\"` after `recv N`")?;
            let expect = tokens.bytes_expr()?;
            if expect.is_empty() {
                return Err(
                    "say what every connection receives: `= \"server recv success\"`".into(),
                );
            }
            CrowdCall::Recv { size, expect }
        }
        "close" => CrowdCall::Close,
        other => {
            return Err(format!(
                "unknown crowd verb `{other}`; the crowd can: {}",
                verb_names(Actor::Crowd)
            ));
        }
    })
}

/// `< 64 MiB`: a memory bound in bytes.
fn memory_bound(tokens: &mut Tokens) -> Result<u64, String> {
    let less = tokens.word("`<` before the bound, as in `memory < 64 MiB`")?;
    if less != "<" {
        return Err(format!("write the bound as `< 64 MiB`, not `{less}`"));
    }
    // A bound above 64 GiB would not be a bound a lesson could mean.
    let number = tokens.number(64 * 1024)? as u64;
    let unit = match tokens.word("a unit: KiB or MiB")?.as_str() {
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        other => return Err(format!("memory is counted in KiB or MiB, not `{other}`")),
    };
    Ok(number * unit)
}

fn parse_server_call(tokens: &mut Tokens, verb: &str) -> Result<ServerCall, String> {
    let call = match verb {
        "log" => ServerCall::Log(tokens.text("the log line to expect, as a string")?),
        "log-next" => ServerCall::LogNext(tokens.text("the log line to expect, as a string")?),
        "received-all" => ServerCall::ReceivedAll {
            client: tokens.word("a client name")?,
        },
        "stop" => ServerCall::Stop,
        "resume-accept" => ServerCall::ResumeAccept,
        "threads" => {
            tokens.expect(&Token::Equals, "`= N` or `= cores` after `threads`")?;
            if tokens.peek_word() == Some("cores") {
                tokens.next();
                ServerCall::Threads(ThreadCount::Cores)
            } else {
                ServerCall::Threads(ThreadCount::Exactly(tokens.number(MAX_CROWD + 1)?))
            }
        }
        "memory" => ServerCall::Memory {
            below: if tokens.at_end() {
                None
            } else {
                Some(memory_bound(tokens)?)
            },
        },
        "replace" => {
            let mut settings: Vec<Setting> = Vec::new();
            while !tokens.at_end() {
                let key = tokens.word("a setting such as engine=epoll")?;
                tokens.expect(&Token::Equals, &format!("`=` after `{key}`"))?;
                let value = match tokens.next() {
                    Some(Token::Word(word)) => word,
                    Some(Token::Bytes(bytes)) => String::from_utf8(bytes)
                        .map_err(|_| format!("the value of `{key}` must be UTF-8 text"))?,
                    _ => return Err(format!("a value after `{key}=`")),
                };
                if !REPLACEABLE.contains(&key.as_str()) {
                    return Err(format!(
                        "`replace` keeps the server's address and changes only: {}",
                        REPLACEABLE.join(", ")
                    ));
                }
                if settings.iter().any(|setting| setting.key() == key) {
                    return Err(format!("`{key}` is given twice"));
                }
                settings.push(setting(&key, &value)?);
            }
            if settings.is_empty() {
                return Err("say what changes: `server: replace engine=epoll`".into());
            }
            ServerCall::Replace(settings)
        }
        "bind-again" | "restart" => {
            let mut address_reuse = AddressReuse::Allowed;
            if tokens.peek_word() == Some("reuseaddr") {
                tokens.next();
                tokens.expect(&Token::Equals, "`=` after `reuseaddr`")?;
                address_reuse = match tokens.word("on or off")?.as_str() {
                    "on" => AddressReuse::Allowed,
                    "off" => AddressReuse::Refused,
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
                    address_reuse,
                    expect,
                }
            } else {
                ServerCall::BindAgain {
                    address_reuse,
                    expect,
                }
            }
        }
        other => {
            return Err(format!(
                "unknown server verb `{other}`; the server can: {}",
                verb_names(Actor::Server)
            ));
        }
    };
    Ok(call)
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
        assert_eq!(scenario.server.settings, vec![Setting::RecvSize(8)]);
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

    /// A directive's word is a client's name when a `:` follows it: `timeout: connect` is a
    /// client named timeout.
    #[test]
    fn clients_may_be_named_like_directives() {
        let scenario = Scenario::parse(
            "# t\nserver tcp\ntimeout: connect\nnetwork: connect\nneeds: connect\nhint: connect\nserver: stop\n",
        )
        .unwrap();
        let names: Vec<&str> = scenario
            .steps
            .iter()
            .filter_map(|step| match &step.action {
                Action::Client { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["timeout", "network", "needs", "hint"]);
    }

    #[test]
    fn a_network_needs_a_server_that_takes_connections() {
        for kind in ["udp", "unix-dgram", "none"] {
            assert_eq!(
                parse_err(&format!("# t\nserver {kind}\n\nnetwork split=1\n")),
                "line 4: a `network` line needs a stream server (tcp, unix or http): the proxy relays connections",
                "{kind}"
            );
        }
        for kind in ["tcp", "unix", "http"] {
            assert!(
                Scenario::parse(&format!("# t\nserver {kind}\nnetwork split=1\n"))
                    .unwrap()
                    .network
                    .is_some(),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_second_server_may_not_take_a_name_the_file_uses_for_something_else() {
        for name in ["server", "kernel", "wire"] {
            assert_eq!(
                parse_err(&format!("# t\nserver tcp\nserver udp as {name}\n")),
                format!("line 3: `{name}` names something else; pick another name")
            );
        }
    }

    #[test]
    fn a_replacement_server_takes_only_what_its_kind_takes() {
        assert_eq!(
            parse_err("# t\nserver http\nserver: replace recv-size=8\n"),
            "line 3: the http server does not take `recv-size`"
        );
        assert_eq!(
            parse_err("# t\nserver http\nserver: replace engine=iterative\n"),
            "line 3: the http server does not run on engine=iterative"
        );
        assert!(
            Scenario::parse("# t\nserver tcp\nserver: replace engine=iterative recv-size=8\n")
                .is_ok()
        );
    }

    #[test]
    fn a_settings_number_may_reach_its_limit_and_not_pass_it() {
        let max = crate::server::MAX_RECV_SIZE;
        assert!(Scenario::parse(&format!("# t\nserver tcp recv-size={max}\n")).is_ok());
        assert_eq!(
            parse_err(&format!("# t\nserver tcp recv-size={}\n", max + 1)),
            format!("line 2: recv-size={} is too large: at most {max}", max + 1)
        );
    }

    /// An outcome written the old way (`= reset`) is told the errno form; another word is
    /// told what the verb takes.
    #[test]
    fn an_outcome_written_as_a_word_is_told_its_errno_form() {
        for (step, said) in [
            (
                "connect = refused",
                "an error is written `= error ECONNREFUSED` (the errno name), not `= refused`",
            ),
            (
                "connect = foo",
                "`connect` ends in `connected`, `error ECONNREFUSED` or `pending 300ms`, not `foo`",
            ),
            (
                "send \"x\" = reset",
                "an error is written `= error ECONNRESET` (the errno name), not `= reset`",
            ),
            (
                "send \"x\" = wouldblock",
                "an error is written `= error EAGAIN` (the errno name), not `= wouldblock`",
            ),
            ("send \"x\" = foo", "expected a number, found `foo`"),
            (
                "recv 4 = reset",
                "an error is written `= error ECONNRESET` (the errno name), not `= reset`",
            ),
            (
                "recv 4 = foo",
                "expected a string such as \"hello\\r\\n\", found `foo`",
            ),
        ] {
            assert_eq!(
                parse_err(&format!("# t\nserver tcp\nalice: {step}\n")),
                format!("line 3: {said}")
            );
        }
    }

    #[test]
    fn an_empty_ack_is_refused() {
        assert_eq!(
            parse_err("# t\nserver tcp ack=\"\"\n"),
            "line 2: ack=\"\": the ack must not be empty, or no client would know its message arrived"
        );
        assert_eq!(
            Scenario::parse("# t\nserver tcp ack=ok\n")
                .unwrap()
                .server
                .settings,
            vec![Setting::Ack(b"ok".to_vec())]
        );
    }

    /// The one step of `text` after a `server tcp` line.
    fn step(text: &str) -> Result<Action, String> {
        Scenario::parse(&format!("# t\nserver tcp\n{text}\n"))
            .map(|scenario| scenario.steps[0].action.clone())
            .map_err(|error| error.message)
    }

    #[test]
    fn wire_steps_read_their_silence_and_their_window() {
        assert_eq!(
            step("wire: no segment for 300ms"),
            Ok(Action::Wire(WireCall::Silence(Duration::from_millis(300))))
        );
        assert_eq!(
            step("wire: no segments for 300ms"),
            Err("write it `no segment for 300ms`".into())
        );
        assert_eq!(
            step("wire: alice -> server SYN"),
            step("wire: alice → server SYN")
        );
        assert!(step("wire: alice → server SYN").is_ok());
        assert_eq!(
            step("wire: alice => server SYN"),
            Err("expected `→` (or `->`) between the two ends, found `=`".into())
        );
        assert_eq!(
            step("wire: alice to server SYN"),
            Err("expected `→` (or `->`) after `alice`, found `to`".into())
        );
        // The largest window TCP can advertise: 65535 scaled by 2^14 (RFC 7323).
        assert!(step("wire: alice → server ACK win=1073725440").is_ok());
        assert_eq!(
            step("wire: alice → server ACK win=1073725441"),
            Err("1073725441 is too large here: at most 1073725440".into())
        );
    }

    #[test]
    fn a_sysctl_name_is_dotted_words() {
        assert_eq!(
            step("kernel: sysctl net.ipv4.tcp_syn_retries net.core.somaxconn"),
            Ok(Action::Kernel(KernelCall::Sysctl(vec![
                "net.ipv4.tcp_syn_retries".into(),
                "net.core.somaxconn".into()
            ])))
        );
        for name in [
            "net..somaxconn",
            "net.core.",
            "net/core",
            "net.core.some-thing",
        ] {
            assert_eq!(
                step(&format!("kernel: sysctl {name}")),
                Err(format!(
                    "`{name}` is not a sysctl name such as net.ipv4.tcp_syn_retries"
                ))
            );
        }
    }

    #[test]
    fn server_steps_read_their_numbers_and_values() {
        assert_eq!(
            step("server: memory < 3 KiB"),
            Ok(Action::Server(ServerCall::Memory {
                below: Some(3 * 1024)
            }))
        );
        assert_eq!(
            step("server: memory < 64 MiB"),
            Ok(Action::Server(ServerCall::Memory {
                below: Some(64 * 1024 * 1024)
            }))
        );
        let most = MAX_CROWD + 1;
        assert_eq!(
            step(&format!("server: threads = {most}")),
            Ok(Action::Server(ServerCall::Threads(ThreadCount::Exactly(
                most
            ))))
        );
        assert_eq!(
            step(&format!("server: threads = {}", most + 1)),
            Err(format!("{} is too large here: at most {most}", most + 1))
        );
        // A value may be written as a string.
        assert_eq!(
            step("server: replace engine=\"epoll\""),
            step("server: replace engine=epoll")
        );
        assert!(step("server: replace engine=epoll").is_ok());
    }

    #[test]
    fn mistakes_name_the_line_and_what_was_expected() {
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: sned \"x\""),
            // Spelled out: the list built by the code under test would agree with itself.
            "line 3: unknown verb `sned`; a client can: connect, connect-to, finish-connect, send, sendall, recv, recv-exactly, recv-until-eof, recv-response, shutdown, close, reset, settimeout, setblocking, setsockopt, ignore-rest, queued"
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
            "line 2: unknown setting `colour`; a tcp server takes: recv-size, ack, backlog, max-clients, idle-timeout, host, accept, engine"
        );
    }

    #[test]
    fn a_setting_the_server_kind_does_not_take_is_an_error() {
        assert_eq!(
            parse_err("# t\nserver http accept=paused recv-size=8"),
            "line 2: the http server does not take `accept`; it takes: host, engine"
        );
        assert_eq!(
            parse_err("# t\nserver udp backlog=1"),
            "line 2: the udp server does not take `backlog`; it takes: recv-size, ack, host"
        );
        assert_eq!(
            parse_err("# t\nserver tcp recv-size=8 recv-size=9"),
            "line 2: `recv-size` is given twice"
        );
        assert_eq!(
            parse_err("# t\nserver tcp recv-size=0"),
            "line 2: recv-size=0: the server's recv size is 1 to 16777216 bytes"
        );
    }

    #[test]
    fn a_second_server_has_a_name_and_there_is_no_third() {
        let scenario = Scenario::parse(
            "# t\nserver tcp recv-size=8\nserver udp recv-size=8 as dgram\nbob: connect-to dgram\n",
        )
        .unwrap();
        let (name, spec) = scenario.second.clone().unwrap();
        assert_eq!((name.as_str(), spec.kind), ("dgram", ServerKind::Udp));
        let printed = scenario.to_string();
        assert_eq!(Scenario::parse(&printed).unwrap().to_string(), printed);
        assert_eq!(
            parse_err("# t\nserver tcp\nserver udp"),
            "line 3: a second server needs a name: `server udp recv-size=8 as dgram`"
        );
        assert_eq!(
            parse_err("# t\nserver tcp as main"),
            "line 2: the first server is `server`; only a second one takes `as NAME`"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nserver none as nobody"),
            "line 3: a second server must be one that listens: `server none as nobody` has nothing to connect to"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nserver udp as a\nserver unix as b"),
            "line 4: a third `server` line: a scenario starts at most two servers"
        );
    }

    #[test]
    fn errors_are_written_with_their_errno_name() {
        let call = |line: &str| {
            let scenario = Scenario::parse(&format!("# t\nserver tcp\n{line}\n")).unwrap();
            scenario.steps[0].action.clone()
        };
        assert_eq!(
            call("alice: connect = error ECONNREFUSED"),
            Action::Client {
                name: "alice".into(),
                call: ClientCall::Connect {
                    expect: ConnectOutcome::Refused
                }
            }
        );
        assert_eq!(
            call("alice: recv 8 = error ECONNRESET"),
            Action::Client {
                name: "alice".into(),
                call: ClientCall::Recv {
                    size: 8,
                    expect: RecvOutcome::Reset
                }
            }
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: recv 8 = reset"),
            "line 3: an error is written `= error ECONNRESET` (the errno name), not `= reset`"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: recv 8 = error EPIPE"),
            "line 3: this call's errors are written ECONNRESET or ECONNREFUSED or EAGAIN, not `EPIPE`"
        );
    }

    #[test]
    fn numbers_and_durations_are_range_checked() {
        assert_eq!(
            parse_err("# t\nserver tcp\ntimeout 18446744073709551615s"),
            "line 3: `18446744073709551615s` is longer than any wait a scenario may have (600s)"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\ntimeout 99999999999999999999999ms"),
            "line 3: `99999999999999999999999ms` is not a duration such as 5s or 300ms"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\ntimeout 3600s"),
            "line 3: `3600s` is longer than any wait a scenario may have (600s)"
        );
        assert_eq!(
            parse_err("# t\nserver tcp\nalice: recv 1000000000000 = eof"),
            format!("line 3: 1000000000000 is too large here: at most {MAX_PAYLOAD}")
        );
        let many = "alice: send \"x\" * 67108864\n".repeat(2);
        assert_eq!(
            parse_err(&format!("# t\nserver tcp\n{many}")),
            format!(
                "line 4: the file's byte strings add up to more than {MAX_PAYLOAD} bytes, the most one scenario may build"
            )
        );
    }
}
