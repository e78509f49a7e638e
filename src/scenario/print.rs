//! The scenario printer: a [`Scenario`] back as text that parses to the same scenario
//! (comments aside). Failures quote steps in this form, and `tests/properties.rs` checks that
//! print-then-parse gives back what was printed.

use std::fmt;
use std::time::Duration;

use super::lex::quote;
use super::syntax::*;
use crate::endpoint::AddressReuse;

/// `server KIND key=value ...` for one server line.
fn write_server(f: &mut fmt::Formatter<'_>, spec: &ServerSpec) -> fmt::Result {
    write!(f, "server {}", spec.kind.name())?;
    write_settings(f, &spec.settings)
}

/// ` key=value` for each setting.
fn write_settings(f: &mut fmt::Formatter<'_>, settings: &[Setting]) -> fmt::Result {
    for setting in settings {
        write!(f, " {setting}")?;
    }
    Ok(())
}

/// `key=value`, as a `server` line writes it.
impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.key())?;
        match self {
            Setting::RecvSize(n) | Setting::MaxClients(n) => write!(f, "{n}"),
            Setting::Backlog(n) => write!(f, "{n}"),
            Setting::Ack(bytes) => write!(f, "{}", literal(bytes)),
            Setting::IdleTimeout(duration) => write!(f, "{}", show_duration(*duration)),
            Setting::Host(host) => write!(f, "{}", literal(host.as_bytes())),
            Setting::Accept(AcceptMode::On) => write!(f, "on"),
            Setting::Accept(AcceptMode::Paused) => write!(f, "paused"),
            Setting::Engine(engine) => write!(f, "{}", engine.name()),
        }
    }
}

/// Prints the scenario back as a file that parses to the same scenario (comments aside).
impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {}", self.title)?;
        write_server(f, &self.server)?;
        writeln!(f)?;
        if let Some((name, spec)) = &self.second {
            write_server(f, spec)?;
            writeln!(f, " as {name}")?;
        }
        writeln!(f, "timeout {}", show_duration(self.timeout))?;
        if let Some(network) = &self.network {
            writeln!(f, "network {network}")?;
        }
        for need in &self.needs {
            writeln!(f, "needs {}", need.name())?;
        }
        for step in &self.steps {
            if let Some(hint) = &step.hint {
                writeln!(f, "hint {}", literal(hint.as_bytes()))?;
            }
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
            Action::Kernel(KernelCall::Sysctl(names)) => {
                write!(f, "kernel: sysctl {}", names.join(" "))
            }
            Action::Kernel(KernelCall::SynSchedule) => write!(f, "kernel: syn-schedule"),
            Action::Kernel(KernelCall::State { end, state }) => match end {
                End::Client(name) => write!(f, "kernel: state {name} = {}", state.name()),
                End::ServerOf(name) => {
                    write!(f, "kernel: state server of {name} = {}", state.name())
                }
            },
            Action::Kernel(KernelCall::AcceptQueue(count)) => {
                write!(f, "kernel: accept-queue = {count}")
            }
            Action::Crowd(CrowdCall::Connect(count)) => write!(f, "crowd: connect {count}"),
            Action::Crowd(CrowdCall::Send(data)) => write!(f, "crowd: send {}", literal(data)),
            Action::Crowd(CrowdCall::Recv { size, expect }) => {
                write!(f, "crowd: recv {size} = {}", literal(expect))
            }
            Action::Crowd(CrowdCall::Close) => write!(f, "crowd: close"),
            Action::Wire(WireCall::Silence(wait)) => {
                write!(f, "wire: no segment for {}", show_duration(*wait))
            }
            Action::Wire(WireCall::Segment {
                from,
                to,
                kind,
                len,
                window,
            }) => {
                write!(f, "wire: {from} → {to} ")?;
                match kind {
                    SegmentKind::Udp => write!(f, "UDP")?,
                    SegmentKind::Tcp(flags) => {
                        write!(f, "{}", flags.to_string().replace('-', " "))?
                    }
                }
                if let Some(len) = len {
                    write!(f, " len={len}")?;
                }
                match window {
                    Some(window) => write!(f, " win={window}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A string literal for `bytes`, written `"unit" * n` when it is one short piece repeated,
/// so a megabyte of `x` prints as one short line.
pub(crate) fn literal(bytes: &[u8]) -> String {
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

/// A bound as the file writes it: MiB when it is a whole number of them, else KiB.
pub(crate) fn memory_bound(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

fn show_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

impl fmt::Display for ClientCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCall::Connect { expect } => match expect {
                ConnectOutcome::Connected => write!(f, "connect"),
                ConnectOutcome::Refused => write!(f, "connect = error ECONNREFUSED"),
                ConnectOutcome::Pending(wait) => {
                    write!(f, "connect = pending {}", show_duration(*wait))
                }
            },
            ClientCall::FinishConnect => write!(f, "finish-connect"),
            ClientCall::ConnectTo(server) => write!(f, "connect-to {server}"),
            ClientCall::Send { data, expect } => {
                write!(f, "send {}", literal(data))?;
                match expect {
                    None => Ok(()),
                    Some(SendOutcome::Count(count)) => write!(f, " = {count}"),
                    Some(SendOutcome::Partial) => write!(f, " = partial"),
                    Some(SendOutcome::WouldBlock) => write!(f, " = error EAGAIN"),
                }
            }
            ClientCall::SendAll { data } => write!(f, "sendall {}", literal(data)),
            ClientCall::Recv { size, expect } => {
                write!(f, "recv {size} = ")?;
                match expect {
                    RecvOutcome::Data(data) => write!(f, "{}", literal(data)),
                    RecvOutcome::Eof => write!(f, "eof"),
                    RecvOutcome::Reset => write!(f, "error ECONNRESET"),
                    RecvOutcome::Refused => write!(f, "error ECONNREFUSED"),
                    RecvOutcome::Timeout => write!(f, "timeout"),
                    RecvOutcome::WouldBlock => write!(f, "error EAGAIN"),
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
            ClientCall::RecvResponse { pattern, framing } => {
                let short = match framing {
                    Framing::Whole => "",
                    Framing::Short => "short ",
                };
                write!(f, "recv-response = {short}{}", literal(pattern.as_bytes()))
            }
            ClientCall::Shutdown(Direction::Read) => write!(f, "shutdown read"),
            ClientCall::Shutdown(Direction::Write) => write!(f, "shutdown write"),
            ClientCall::Shutdown(Direction::Both) => write!(f, "shutdown both"),
            ClientCall::Close => write!(f, "close"),
            ClientCall::Reset => write!(f, "reset"),
            ClientCall::SetTimeout(timeout) => write!(f, "settimeout {}", show_duration(*timeout)),
            ClientCall::SetBlocking(blocking) => write!(f, "setblocking {blocking}"),
            ClientCall::SetSockOpt {
                option,
                value,
                expect,
            } => {
                write!(f, "setsockopt {} {value}", option.name())?;
                match expect {
                    Some(expect) => write!(f, " = {expect}"),
                    None => Ok(()),
                }
            }
            ClientCall::IgnoreRest => write!(f, "ignore-rest"),
            ClientCall::Queued(counts) => {
                write!(f, "queued")?;
                for (key, count) in [
                    ("recv", counts.recv),
                    ("send", counts.send),
                    ("unsent", counts.unsent),
                ] {
                    if let Some(count) = count {
                        write!(f, " {key}={count}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for ServerCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bind =
            |f: &mut fmt::Formatter<'_>, verb: &str, reuse: AddressReuse, expect: &BindOutcome| {
                write!(f, "{verb}")?;
                if reuse == AddressReuse::Refused {
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
            ServerCall::LogNext(pattern) => write!(f, "log-next {}", literal(pattern.as_bytes())),
            ServerCall::ReceivedAll { client } => write!(f, "received-all {client}"),
            ServerCall::Stop => write!(f, "stop"),
            ServerCall::ResumeAccept => write!(f, "resume-accept"),
            ServerCall::BindAgain {
                address_reuse,
                expect,
            } => bind(f, "bind-again", *address_reuse, expect),
            ServerCall::Restart {
                address_reuse,
                expect,
            } => bind(f, "restart", *address_reuse, expect),
            ServerCall::Threads(ThreadCount::Exactly(count)) => write!(f, "threads = {count}"),
            ServerCall::Threads(ThreadCount::Cores) => write!(f, "threads = cores"),
            ServerCall::Memory { below: None } => write!(f, "memory"),
            ServerCall::Memory { below: Some(bytes) } => {
                write!(f, "memory < {}", memory_bound(*bytes))
            }
            ServerCall::Replace(settings) => {
                write!(f, "replace")?;
                write_settings(f, settings)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short piece repeated is printed as `"unit" * n` once the bytes are longer than four
    /// pieces of the longest unit (64 bytes); shorter ones are spelled out.
    #[test]
    fn a_long_repeated_payload_prints_as_its_unit_times_a_count() {
        assert_eq!(literal(&[b'x'; 64]), format!("\"{}\"", "x".repeat(64)));
        assert_eq!(literal(&[b'x'; 65]), "\"x\" * 65");
        assert_eq!(literal(&b"ab".repeat(40)), "\"ab\" * 40");
        // Not a whole number of any unit up to 16 bytes: spelled out.
        let odd = [&b"ab".repeat(40)[..], b"a"].concat();
        assert_eq!(literal(&odd), format!("\"{}a\"", "ab".repeat(40)));
        assert_eq!(literal(b"say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    }

    #[test]
    fn a_memory_bound_prints_in_mib_when_it_is_whole_ones() {
        assert_eq!(memory_bound(64 * 1024 * 1024), "64 MiB");
        assert_eq!(memory_bound(3 * 1024), "3 KiB");
        assert_eq!(memory_bound(1024 * 1024 + 1024), "1025 KiB");
    }
}
