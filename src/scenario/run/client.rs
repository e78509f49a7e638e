//! The clients' verbs: the walkthrough's socket calls, made for real, each shown as one line
//! of the diagram and checked against what the file expects.
//!
//! Each line is stamped on the timeline (see [`crate::scenario::timeline`]): a call that
//! sends (`connect`, `send`, `close`, `shutdown`) at the moment it starts, a call that waits
//! (`recv` and its kin, `finish-connect`) at the moment it returns. The labels say what the
//! call puts on the wire for this kind of socket: a TCP close sends FIN, a Unix stream close
//! sends no segment at all (the peer's recv simply returns 0), a datagram socket's close sends
//! nothing.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::{ClientSocket, Runner};
use crate::backlog::{PendingConnect, Progress};
use crate::endpoint::{Address, Stream};
use crate::error::{Error, describe};
use crate::kernel::Queues;
use crate::scenario::lex::{MAX_PAYLOAD, quote};
use crate::scenario::report::{Entry, EntryKind, Fact, StepError, matches, show_bytes};
use crate::scenario::syntax::{
    ClientCall, ConnectOutcome, Direction, Framing, QueueCounts, RecvOutcome, SendOutcome, SockOpt,
    StreamContent,
};
use crate::send;
use crate::udp::DatagramClient;

/// A wait this long is shown beside the response that ended it.
const NOTICEABLE: Duration = Duration::from_millis(10);

/// A client line of the diagram, keeping every byte it shows for `--full`.
fn line(text: String) -> Entry {
    Entry::new(EntryKind::Client, text)
}

/// `server` with its article, as a sentence names it ("the server's recv"); a second
/// server's own name without one ("local's recv").
fn in_a_sentence(server: &str) -> String {
    if server == "server" {
        "the server".to_string()
    } else {
        server.to_string()
    }
}

impl Runner<'_> {
    pub(super) fn client_call(&mut self, name: &str, call: &ClientCall) -> Result<(), StepError> {
        match call {
            ClientCall::Connect { expect } => self.connect(name, *expect),
            ClientCall::FinishConnect => self.finish_connect(name),
            ClientCall::ConnectTo(server) => self.connect_to(name, server),
            ClientCall::Send { data, expect } => self.send(name, data, *expect),
            ClientCall::SendAll { data } => self.send_all(name, data),
            ClientCall::Recv { size, expect } => self.recv(name, *size, expect),
            ClientCall::RecvExactly { size, expect } => self.recv_exactly(name, *size, expect),
            ClientCall::RecvUntilEof { expect } => self.recv_until_eof(name, expect),
            ClientCall::RecvResponse { pattern, framing } => {
                self.recv_response(name, pattern, *framing)
            }
            ClientCall::Shutdown(direction) => self.shutdown(name, *direction),
            ClientCall::Close => self.close(name),
            ClientCall::Reset => self.reset(name),
            ClientCall::SetTimeout(timeout) => self.set_timeout(name, *timeout),
            ClientCall::SetBlocking(blocking) => self.set_blocking(name, *blocking),
            ClientCall::SetSockOpt {
                option,
                value,
                expect,
            } => self.set_sock_opt(name, *option, *value, *expect),
            ClientCall::IgnoreRest => {
                self.client(name)?.ignores_rest = true;
                self.record(line(format!(
                    "{name}   (what is left for {name} to read is not checked at the end)"
                )));
                Ok(())
            }
            ClientCall::Queued(expect) => self.queued(name, expect),
        }
    }

    /// Read and write timeouts bound every later step on this stream.
    fn prepare(&self, stream: &Stream) -> Result<(), StepError> {
        let timeout = Some(self.timeout());
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| format!("cannot set timeouts: {}", describe(&e)).into())
    }

    fn connect(&mut self, name: &str, expect: ConnectOutcome) -> Result<(), StepError> {
        if let ConnectOutcome::Pending(wait) = expect {
            let addr = *self
                .client_endpoint()
                .resolve()
                .map_err(|e| e.to_string())?
                .first()
                .ok_or("a pending connect needs a TCP server")?;
            let started = self.timeline.now();
            let pending = PendingConnect::start(addr).map_err(|e| e.to_string())?;
            return match pending.wait(wait).map_err(|e| e.to_string())? {
                Progress::Pending => {
                    self.add_client(name, ClientSocket::Connecting(pending), None);
                    self.record_at(
                        started,
                        line(format!(
                            "{name} ──connect (SYN)──▶ server   no answer within {wait:?}: still pending"
                        ))
                        .with_fact(Fact::Connect {
                            client: name.to_string(),
                        }),
                    );
                    Ok(())
                }
                Progress::Connected => Err(StepError::Mismatch {
                    call: "connect".into(),
                    expected: format!("to be still pending after {wait:?}"),
                    got: "a completed connection".into(),
                }),
            };
        }
        if self.kind().is_datagram() {
            let socket = DatagramClient::connect(&self.endpoint, self.timeout())
                .map_err(|e| e.to_string())?;
            let address = socket.local_addr().ok();
            let shown = address.as_ref().map_or("?".into(), Address::to_string);
            self.add_client(name, ClientSocket::Datagram(socket), address);
            self.record(line(format!(
                "{name}   connect on a datagram socket: nothing is sent, it only fixes the peer ({name} is {shown})"
            )));
            return Ok(());
        }
        let started = self.timeline.now();
        let result = Stream::connect_timeout(&self.client_endpoint(), self.timeout());
        let fact = Fact::Connect {
            client: name.to_string(),
        };
        match (result, expect) {
            (Ok(stream), ConnectOutcome::Connected) => {
                self.prepare(&stream)?;
                let address = stream.local_addr().ok();
                let shown = address.as_ref().map_or("?".into(), Address::to_string);
                let handshake = match stream {
                    Stream::Tcp(_) => " (SYN, SYN-ACK, ACK)",
                    Stream::Unix(_) => "",
                };
                self.add_client(name, ClientSocket::Stream(stream), address.clone());
                self.record_at(
                    started,
                    line(format!(
                        "{name} ──connect{handshake}──▶ server   ({name} is {shown})"
                    ))
                    .with_fact(fact),
                );
                if let Some(address) = address {
                    self.await_relay(&address)?;
                }
                Ok(())
            }
            (Err(Error::Connect { source, .. }), ConnectOutcome::Refused)
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                self.record_at(
                    started,
                    line(format!(
                        "{name} ──connect──✗ refused: nobody listens there (the kernel answered the SYN with RST)"
                    )),
                );
                Ok(())
            }
            (Ok(_), _) => Err(StepError::Mismatch {
                call: "connect".into(),
                expected: describe_connect(expect),
                got: "a connection (the server accepted it)".into(),
            }),
            (Err(e), _) => Err(StepError::Mismatch {
                call: "connect".into(),
                expected: describe_connect(expect),
                got: e.to_string(),
            }),
        }
    }

    /// Through the network's proxy, waits until it has connected on to the server for the
    /// client at `address`, so the server's events can be told to be that client's.
    fn await_relay(&mut self, address: &Address) -> Result<(), StepError> {
        if self.proxy.is_none() {
            return Ok(());
        }
        let deadline = self.step_deadline();
        // Held back until the proxy names the connection, so that the server's accept, which
        // may come first, is shown as this client's.
        let mut held = Vec::new();
        while !self.aliases.values().any(|client| client == address) {
            let events = self.timeline.wait_for_events(deadline);
            if events.is_empty() {
                self.show_events(held);
                return Err("the network's proxy did not connect on to the server in time".into());
            }
            self.learn_aliases(&events);
            held.extend(events);
        }
        self.show_events(held);
        Ok(())
    }

    /// Who a client talks to, as its lines name it: `server`, or the second server's name.
    fn peer_name(&self, name: &str) -> String {
        self.clients
            .get(name)
            .and_then(|client| client.on.clone())
            .unwrap_or_else(|| "server".to_string())
    }

    /// `connect` to the lesson's second server.
    fn connect_to(&mut self, name: &str, server: &str) -> Result<(), StepError> {
        let Some(second) = self.second.as_ref().filter(|second| second.name == server) else {
            return Err(StepError::Misuse(format!(
                "there is no server {server}: a lesson names its second server with `server KIND ... as {server}`"
            )));
        };
        let endpoint = second.running.addr.endpoint();
        let kind = second.kind;
        let started = self.timeline.now();
        let (socket, address) = if kind.is_datagram() {
            let socket =
                DatagramClient::connect(&endpoint, self.timeout()).map_err(|e| e.to_string())?;
            let address = socket.local_addr().ok();
            (ClientSocket::Datagram(socket), address)
        } else {
            let stream = Stream::connect_timeout(&endpoint, self.timeout())
                .map_err(|e| format!("connect to {server} failed: {e}"))?;
            self.prepare(&stream)?;
            let address = stream.local_addr().ok();
            (ClientSocket::Stream(stream), address)
        };
        let shown = address.as_ref().map_or("?".into(), Address::to_string);
        let datagram = kind.is_datagram();
        self.add_client(name, socket, address);
        self.client(name)?.on = Some(server.to_string());
        let text = if datagram {
            format!(
                "{name}   connect to {server} on a datagram socket: nothing is sent, it only fixes the peer ({name} is {shown})"
            )
        } else {
            format!("{name} ──connect──▶ {server}   ({name} is {shown})")
        };
        let entry = line(text);
        let entry = if datagram {
            entry
        } else {
            entry.with_fact(Fact::Connect {
                client: name.to_string(),
            })
        };
        self.record_at(started, entry);
        Ok(())
    }

    fn finish_connect(&mut self, name: &str) -> Result<(), StepError> {
        let timeout = self.timeout();
        let client = self.client(name)?;
        let Some(ClientSocket::Connecting(pending)) = client.socket.take() else {
            return Err(StepError::Misuse(format!(
                "{name} has no connect under way: use `{name}: connect = pending 300ms` first"
            )));
        };
        let started = Instant::now();
        match pending.wait(timeout).map_err(|e| e.to_string())? {
            Progress::Pending => {
                self.client(name)?.socket = Some(ClientSocket::Connecting(pending));
                Err(format!("the connect did not complete within {timeout:?}").into())
            }
            Progress::Connected => {
                let stream = Stream::Tcp(pending.into_stream().map_err(|e| e.to_string())?);
                self.prepare(&stream)?;
                let address = stream.local_addr().ok();
                self.add_client(name, ClientSocket::Stream(stream), address);
                let waited = started.elapsed().as_millis();
                self.record(line(format!(
                    "{name} ──connect──▶ server   completed (after {waited} ms more)"
                )));
                Ok(())
            }
        }
    }

    fn send(
        &mut self,
        name: &str,
        data: &[u8],
        expect: Option<SendOutcome>,
    ) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let blocking = self.client(name)?.blocking;
        let started = self.timeline.now();
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
                return Err(StepError::Misuse(format!(
                    "{name}'s connect has not completed"
                )));
            }
        };
        let outcome = match result {
            Ok(count) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !blocking => {
                Err(SendOutcome::WouldBlock)
            }
            Err(e) => return Err(format!("send failed: {}", describe(&e)).into()),
        };
        let entry = match outcome {
            Ok(count) if count == data.len() => line(format!(
                "{name} ──{} ({} B)──▶ {to}",
                show_bytes(data).0,
                data.len()
            ))
            .with_bytes(data),
            Ok(count) => line(format!(
                "{name} ──{} ({count} of {} B)──▶ {to}   send returned {count}: only part fit",
                show_bytes(&data[..count]).0,
                data.len()
            ))
            .with_bytes(&data[..count]),
            Err(_) => line(format!(
                "{name} ──✗ send({} B) would block: no room in the send buffer",
                data.len()
            )),
        };
        let entry = match outcome {
            Ok(count) => entry.with_fact(Fact::ClientSend {
                client: name.to_string(),
                len: count,
            }),
            Err(_) => entry,
        };
        self.record_at(started, entry);
        if let Ok(count) = outcome {
            self.client(name)?.sent.extend_from_slice(&data[..count]);
        }
        match (expect, outcome) {
            (None, _) => Ok(()),
            (Some(SendOutcome::Count(expected)), Ok(count)) if expected == count => Ok(()),
            (Some(SendOutcome::Partial), Ok(count)) if count > 0 && count < data.len() => Ok(()),
            (Some(SendOutcome::WouldBlock), Err(SendOutcome::WouldBlock)) => Ok(()),
            (Some(expected), got) => Err(StepError::Mismatch {
                call: format!("send({} B)", data.len()),
                expected: match expected {
                    SendOutcome::Count(count) => format!("to return {count}"),
                    SendOutcome::Partial => format!("to return fewer than {} bytes", data.len()),
                    SendOutcome::WouldBlock => "to say it would block".into(),
                },
                got: match got {
                    Ok(count) => format!("{count}"),
                    Err(_) => "would block".into(),
                },
            }),
        }
    }

    fn send_all(&mut self, name: &str, data: &[u8]) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let timeout = self.timeout();
        let started = self.timeline.now();
        let stream = self.stream(name)?;
        let report = send::send_all(stream, data, timeout)
            .map_err(|e| format!("sendall failed: {}", describe(&e)))?;
        self.client(name)?.sent.extend_from_slice(data);
        let calls = report.counts.len();
        self.record_at(
            started,
            line(format!(
                "{name} ──{} ({} B)──▶ {to}   sendall: {calls} send calls, waited {} times for room",
                show_bytes(data).0,
                data.len(),
                report.waits
            ))
            .with_bytes(data)
            .with_fact(Fact::ClientSend {
                client: name.to_string(),
                len: data.len(),
            }),
        );
        Ok(())
    }

    fn recv(&mut self, name: &str, size: usize, expect: &RecvOutcome) -> Result<(), StepError> {
        let to = self.peer_name(name);
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
                return Err(StepError::Misuse(format!(
                    "{name}'s connect has not completed"
                )));
            }
        };
        let got = match result {
            Ok(None) => RecvOutcome::Eof,
            Ok(Some(data)) => RecvOutcome::Data(data),
            Err(e) => match recv_failure(&e, blocking) {
                Some(outcome) => outcome,
                None => return Err(format!("recv failed: {}", describe(&e)).into()),
            },
        };
        // ECONNREFUSED on a datagram socket is the local kernel passing on an ICMP error:
        // nothing came from the peer, which may not exist any more.
        let from = if got == RecvOutcome::Refused {
            "kernel".to_string()
        } else {
            to
        };
        let mut entry = line(format!(
            "{name} ◀──{}── {from}   recv({size})",
            describe_recv(&got)
        ));
        if let RecvOutcome::Data(data) = &got {
            entry = entry.with_bytes(data).with_fact(Fact::ClientRecv {
                client: name.to_string(),
                len: data.len(),
            });
        }
        self.record(entry);
        match (&got, expect) {
            (got, expect) if got == expect => Ok(()),
            (RecvOutcome::Data(got), RecvOutcome::Data(expected)) => Err(StepError::Bytes {
                what: format!("recv({size})"),
                expected: expected.clone(),
                got: got.clone(),
            }),
            _ => Err(StepError::Mismatch {
                call: format!("recv({size})"),
                expected: describe_recv(expect),
                got: describe_recv(&got),
            }),
        }
    }

    /// The line for bytes a client's recvs returned in one step (`then` says what ended it).
    fn record_received(&mut self, name: &str, got: &[u8], then: &str) {
        let to = self.peer_name(name);
        self.record(
            line(format!(
                "{name} ◀──{} ({} B){then}── {to}",
                show_bytes(got).0,
                got.len()
            ))
            .with_bytes(got)
            .with_fact(Fact::ClientRecv {
                client: name.to_string(),
                len: got.len(),
            }),
        );
    }

    fn recv_exactly(&mut self, name: &str, size: usize, expect: &[u8]) -> Result<(), StepError> {
        let deadline = self.step_deadline();
        let stream = self.stream(name)?;
        let mut got = Vec::with_capacity(size);
        let outcome = read_until(stream, &mut got, Some(size), deadline);
        self.record_received(name, &got, "");
        match outcome {
            Ok(()) if got == expect => Ok(()),
            Ok(()) => Err(StepError::Bytes {
                what: format!("recv-exactly {size}"),
                expected: expect.to_vec(),
                got,
            }),
            Err(reason) => Err(format!(
                "after {} of {size} bytes: {reason}\n{}",
                got.len(),
                StepError::Bytes {
                    what: "so far".into(),
                    expected: expect.to_vec(),
                    got: got.clone(),
                }
            )
            .into()),
        }
    }

    fn recv_until_eof(&mut self, name: &str, expect: &StreamContent) -> Result<(), StepError> {
        let deadline = self.step_deadline();
        let stream = self.stream(name)?;
        let mut got = Vec::new();
        let outcome = read_until(stream, &mut got, None, deadline);
        self.record_received(name, &got, " then end of stream");
        outcome.map_err(|reason| format!("expected the stream to end, but {reason}"))?;
        let expected = match expect {
            StreamContent::Data(data) => data.clone(),
            StreamContent::Acks if self.external => {
                // Without the server's log the number of recvs is unknown: any whole number
                // of acks will do.
                let ack = &self.config.ack;
                let whole =
                    !got.is_empty() && got.chunks(ack.len()).all(|chunk| chunk == ack.as_slice());
                return if whole {
                    Ok(())
                } else {
                    Err(StepError::Bytes {
                        what: "whole acks".into(),
                        expected: ack.clone(),
                        got,
                    })
                };
            }
            StreamContent::Acks => {
                // The server reports each recv before it sends its ack, so by end of stream
                // every recv of this client is on the timeline.
                self.catch_up();
                let recvs = self.recvs_of(name).len();
                self.config.ack.repeat(recvs)
            }
        };
        if got == expected {
            Ok(())
        } else {
            Err(StepError::Bytes {
                what: "recv-until-eof".into(),
                expected,
                got,
            })
        }
    }

    /// Reads one HTTP response: the head up to the blank line, then `Content-Length` bytes of
    /// body (or, without one, everything until the server closes).
    fn recv_response(
        &mut self,
        name: &str,
        pattern: &str,
        framing: Framing,
    ) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let started = Instant::now();
        let deadline = self.step_deadline();
        let mut buffered = std::mem::take(&mut self.client(name)?.unread);
        let already = buffered.len();
        let stream = self.stream(name)?;
        // The head, then the body as the head frames it: (where the response ends, how many
        // body bytes Content-Length announced and how many of them arrived).
        let read = (|| -> Result<(usize, Option<(usize, usize)>), String> {
            let head_end = loop {
                if let Some(at) = find(&buffered, b"\r\n\r\n") {
                    break at + 4;
                }
                read_some(stream, &mut buffered, deadline)
                    .map_err(|reason| format!("expected a response, but {reason}"))?;
            };
            let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            match length {
                Some(length) => {
                    while buffered.len() < head_end.saturating_add(length) {
                        if let Err(reason) = read_some(stream, &mut buffered, deadline) {
                            let arrived = buffered.len() - head_end;
                            if framing == Framing::Short {
                                return Ok((buffered.len(), Some((length, arrived))));
                            }
                            return Err(format!(
                                "the body ended early: {reason} ({arrived} of the {length} bytes Content-Length announced)"
                            ));
                        }
                    }
                    Ok((head_end + length, Some((length, length))))
                }
                None => {
                    read_until(stream, &mut buffered, None, deadline)?;
                    Ok((buffered.len(), None))
                }
            }
        })();
        let received = buffered.len() - already;
        let (end, body) = match read {
            Ok(read) => read,
            Err(reason) => {
                self.record(
                    line(format!(
                        "{name} ◀──{} ({} B)── {to}   not a whole response",
                        show_bytes(&buffered).0,
                        buffered.len()
                    ))
                    .with_bytes(&buffered)
                    .with_fact(Fact::ClientRecv {
                        client: name.to_string(),
                        len: received,
                    }),
                );
                return Err(format!(
                    "{reason} after {} bytes: \"{}\"",
                    buffered.len(),
                    quote(&buffered[..buffered.len().min(2048)])
                )
                .into());
            }
        };
        let rest = buffered.split_off(end);
        self.client(name)?.unread = rest;
        let status_line =
            String::from_utf8_lossy(&buffered[..find(&buffered, b"\r\n").unwrap_or(0)])
                .into_owned();
        // A wait a person would notice is worth a word: it is what lesson 21 is about.
        let waited = started.elapsed();
        let waited = if waited >= NOTICEABLE {
            format!("   after {} ms", waited.as_millis())
        } else {
            String::new()
        };
        let short = match body {
            Some((announced, arrived)) if arrived < announced => format!(
                "   the body stopped at {arrived} of the {announced} bytes Content-Length announced"
            ),
            _ => String::new(),
        };
        self.record(
            line(format!(
                "{name} ◀──\"{}\" … ({} B)── {to}{waited}{short}",
                quote(status_line.as_bytes()),
                buffered.len()
            ))
            .with_bytes(&buffered)
            .with_fact(Fact::ClientRecv {
                client: name.to_string(),
                len: received,
            }),
        );
        if framing == Framing::Short && short.is_empty() {
            return Err(StepError::Mismatch {
                call: "recv-response".into(),
                expected: "a body that stops short of its Content-Length".into(),
                got: match body {
                    Some((announced, _)) => format!("all {announced} bytes it announced"),
                    None => "a response without Content-Length".into(),
                },
            });
        }
        let text = String::from_utf8_lossy(&buffered);
        if matches(pattern, &text) {
            Ok(())
        } else {
            Err(format!(
                "expected a response matching\n  \"{}\"\nbut got\n  \"{}\"",
                quote(pattern.as_bytes()),
                quote(&buffered[..buffered.len().min(2048)])
            )
            .into())
        }
    }

    fn shutdown(&mut self, name: &str, direction: Direction) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let how = match direction {
            Direction::Read => Shutdown::Read,
            Direction::Write => Shutdown::Write,
            Direction::Both => Shutdown::Both,
        };
        let started = self.timeline.now();
        let stream = self.stream(name)?;
        stream
            .shutdown(how)
            .map_err(|e| format!("shutdown failed: {}", describe(&e)))?;
        let end = match stream {
            Stream::Tcp(_) => "end of stream (FIN)",
            Stream::Unix(_) => "end of stream",
        };
        let text = match direction {
            Direction::Write | Direction::Both => {
                format!("{name} ──{end}──▶ {to}   shutdown({direction:?})")
            }
            Direction::Read => format!("{name}   shutdown(Read): no more reading; nothing is sent"),
        };
        self.record_at(started, line(text));
        Ok(())
    }

    fn close(&mut self, name: &str) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let started = self.timeline.now();
        let text = match self.socket(name)? {
            // Closing with received bytes unread aborts the connection (RFC 1122 section
            // 4.2.2.13, RFC 2525 section 2.17): the kernel sends RST, not FIN, and the peer's next recv fails.
            ClientSocket::Stream(Stream::Tcp(stream)) => match Queues::of(stream) {
                Ok(queues) if queues.recv > 0 => format!(
                    "{name} ──close (RST)──▶ {to}   {} unread byte{} were waiting, so the kernel sends RST instead of FIN (RFC 1122 4.2.2.13)",
                    queues.recv,
                    if queues.recv == 1 { "" } else { "s" }
                ),
                _ => format!("{name} ──close (FIN)──▶ {to}"),
            },
            ClientSocket::Stream(Stream::Unix(_)) => format!(
                "{name} ──close──▶ {to}   (no segment on a Unix socket: {}'s recv returns 0)",
                in_a_sentence(&to)
            ),
            ClientSocket::Datagram(_) => format!(
                "{name}   close: nothing is sent (a datagram socket has no connection to end)"
            ),
            ClientSocket::Connecting(_) => {
                format!("{name}   close: the connect under way is abandoned")
            }
        };
        self.client(name)?.socket = None;
        self.record_at(started, line(text));
        Ok(())
    }

    fn reset(&mut self, name: &str) -> Result<(), StepError> {
        let to = self.peer_name(name);
        let started = self.timeline.now();
        let stream = self.stream(name)?;
        socket2::SockRef::from(&*stream)
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| format!("cannot set SO_LINGER: {e}"))?;
        let text = match stream {
            Stream::Tcp(_) => format!("{name} ──reset (RST)──▶ {to}   close with SO_LINGER 0"),
            Stream::Unix(_) => format!(
                "{name} ──close──▶ {to}   close with SO_LINGER 0 (a Unix socket has no RST: {}'s recv returns 0)",
                in_a_sentence(&to)
            ),
        };
        self.client(name)?.socket = None;
        self.record_at(started, line(text));
        Ok(())
    }

    fn set_timeout(&mut self, name: &str, timeout: Duration) -> Result<(), StepError> {
        let result = match self.socket(name)? {
            ClientSocket::Stream(stream) => stream
                .set_read_timeout(Some(timeout))
                .and_then(|()| stream.set_write_timeout(Some(timeout))),
            ClientSocket::Datagram(socket) => socket.set_read_timeout(Some(timeout)),
            ClientSocket::Connecting(_) => {
                return Err(StepError::Misuse(format!("{name} is still connecting")));
            }
        };
        result.map_err(|e| format!("settimeout failed: {}", describe(&e)))?;
        self.record(line(format!("{name}   settimeout({timeout:?})")));
        Ok(())
    }

    fn set_blocking(&mut self, name: &str, blocking: bool) -> Result<(), StepError> {
        let result = match self.socket(name)? {
            ClientSocket::Stream(stream) => stream.set_nonblocking(!blocking),
            ClientSocket::Datagram(socket) => socket.set_nonblocking(!blocking),
            ClientSocket::Connecting(_) => {
                return Err(StepError::Misuse(format!("{name} is still connecting")));
            }
        };
        result.map_err(|e| format!("setblocking failed: {}", describe(&e)))?;
        self.client(name)?.blocking = blocking;
        let shown = if blocking { "True" } else { "False" };
        self.record(line(format!("{name}   setblocking({shown})")));
        Ok(())
    }

    fn set_sock_opt(
        &mut self,
        name: &str,
        option: SockOpt,
        value: usize,
        expect: Option<usize>,
    ) -> Result<(), StepError> {
        let stream = self.stream(name)?;
        let socket = socket2::SockRef::from(&*stream);
        let effective = match option {
            SockOpt::SndBuf => socket
                .set_send_buffer_size(value)
                .and_then(|()| socket.send_buffer_size()),
            SockOpt::RcvBuf => socket
                .set_recv_buffer_size(value)
                .and_then(|()| socket.recv_buffer_size()),
            SockOpt::NoDelay => socket
                .set_tcp_nodelay(value != 0)
                .and_then(|()| socket.tcp_nodelay())
                .map(usize::from),
        };
        let effective = effective
            .map_err(|e| format!("setsockopt {} failed: {}", option.name(), describe(&e)))?;
        let note = if effective == value {
            String::new()
        } else {
            format!(
                " (getsockopt says {effective}: Linux doubles buffer sizes for its own bookkeeping)"
            )
        };
        self.record(line(format!(
            "{name}   setsockopt({}, {value}){note}",
            option.name()
        )));
        match expect {
            Some(expected) if expected != effective => Err(StepError::Mismatch {
                call: format!("getsockopt({})", option.name()),
                expected: expected.to_string(),
                got: effective.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn queued(&mut self, name: &str, expect: &QueueCounts) -> Result<(), StepError> {
        let queues = match self.socket(name)? {
            ClientSocket::Stream(Stream::Tcp(stream)) => Queues::of(stream),
            ClientSocket::Stream(Stream::Unix(stream)) => Queues::of(stream),
            ClientSocket::Datagram(socket) => Queues::of(socket),
            ClientSocket::Connecting(_) => {
                return Err(StepError::Misuse(format!("{name} is still connecting")));
            }
        }
        .map_err(|e| {
            format!(
                "cannot ask the kernel about {name}'s queues: {}",
                describe(&e)
            )
        })?;
        let unsent = match queues.unsent {
            Some(unsent) => format!(", {unsent} B of it not yet sent"),
            None => String::new(),
        };
        self.record(Entry::new(
            EntryKind::Kernel,
            format!(
                "kernel   {name}'s queues: receive {} B (arrived, not yet read); send {} B (not yet acknowledged{unsent})",
                queues.recv, queues.send
            ),
        ));
        let checks = [
            ("recv", expect.recv, Some(queues.recv)),
            ("send", expect.send, Some(queues.send)),
            ("unsent", expect.unsent, queues.unsent),
        ];
        for (key, expected, got) in checks {
            if let Some(expected) = expected
                && got != Some(expected)
            {
                return Err(StepError::Mismatch {
                    call: format!("queued {key}"),
                    expected: format!("{expected} B"),
                    got: got.map_or("no such count for this socket".into(), |got| {
                        format!("{got} B")
                    }),
                });
            }
        }
        Ok(())
    }

    pub(super) fn recvs_of(&self, name: &str) -> Vec<Vec<u8>> {
        self.clients
            .get(name)
            .and_then(|client| client.address.as_ref())
            .and_then(|address| self.log.received.get(address))
            .cloned()
            .unwrap_or_default()
    }
}

/// One `recv` into `buffered`; end of stream, a timeout or the step's deadline is an error
/// here.
fn read_some(stream: &mut Stream, buffered: &mut Vec<u8>, deadline: Instant) -> Result<(), String> {
    let mut buffer = [0; 16 * 1024];
    loop {
        if Instant::now() > deadline {
            return Err("the step's timeout passed".into());
        }
        if buffered.len() >= MAX_PAYLOAD {
            return Err(format!("more than {MAX_PAYLOAD} bytes arrived"));
        }
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

/// Reads until `limit` bytes (or, with no limit, until end of stream), within `deadline` and
/// never more than [`MAX_PAYLOAD`] bytes: a peer that never stops sending cannot hold a step.
fn read_until(
    stream: &mut Stream,
    got: &mut Vec<u8>,
    limit: Option<usize>,
    deadline: Instant,
) -> Result<(), String> {
    let mut buffer = [0; 64 * 1024];
    loop {
        if limit.is_some_and(|limit| got.len() >= limit) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the step's timeout passed".into());
        }
        if got.len() >= MAX_PAYLOAD {
            return Err(format!("more than {MAX_PAYLOAD} bytes arrived"));
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

/// The outcome a lesson can name for a failed `recv`, or `None` for an error no lesson expects
/// (which then fails the step with its own words).
fn recv_failure(error: &io::Error, blocking: bool) -> Option<RecvOutcome> {
    match error.kind() {
        io::ErrorKind::ConnectionReset => Some(RecvOutcome::Reset),
        io::ErrorKind::ConnectionRefused => Some(RecvOutcome::Refused),
        // SO_RCVTIMEO and a non-blocking socket both end a recv with EAGAIN.
        _ if timed_out(error) && !blocking => Some(RecvOutcome::WouldBlock),
        _ if timed_out(error) => Some(RecvOutcome::Timeout),
        _ => None,
    }
}

/// A recv that ended because its wait ran out: Linux reports `SO_RCVTIMEO` (and a
/// non-blocking socket with nothing to read) as EAGAIN, never as ETIMEDOUT. ETIMEDOUT means
/// the connection itself died, its retransmissions or keepalive probes unanswered (tcp(7)),
/// and no lesson's `timeout` may hide that.
fn timed_out(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

fn describe_connect(outcome: ConnectOutcome) -> String {
    match outcome {
        ConnectOutcome::Connected => "to succeed".into(),
        ConnectOutcome::Refused => "to be refused".into(),
        ConnectOutcome::Pending(wait) => format!("to be still pending after {wait:?}"),
    }
}

fn describe_recv(outcome: &RecvOutcome) -> String {
    match outcome {
        RecvOutcome::Data(data) => format!("{} ({} B)", show_bytes(data).0, data.len()),
        RecvOutcome::Eof => "end of stream (0 bytes)".into(),
        RecvOutcome::Reset => "connection reset by peer".into(),
        RecvOutcome::Refused => {
            "connection refused (an ICMP \"port unreachable\" came back)".into()
        }
        RecvOutcome::Timeout => "timed out (nothing arrived)".into(),
        RecvOutcome::WouldBlock => "would block (nothing to read yet)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tests::interrupt_recv;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;

    const FAR: Duration = Duration::from_secs(60);

    /// A connected pair: the runner's end (with a receive timeout, so a silent peer ends a
    /// read) and the peer's.
    fn pair(timeout: Duration) -> (Stream, UnixStream) {
        let (ours, peer) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(timeout)).unwrap();
        (Stream::Unix(ours), peer)
    }

    #[test]
    fn find_gives_where_the_needle_first_starts() {
        assert_eq!(find(b"HTTP/1.1 200 OK\r\n\r\nbody", b"\r\n\r\n"), Some(15));
        assert_eq!(find(b"abab", b"b"), Some(1));
        assert_eq!(find(b"\r\n\r\n", b"\r\n\r\n"), Some(0));
        assert_eq!(find(b"HTTP/1.1 200 OK\r\n", b"\r\n\r\n"), None);
    }

    #[test]
    fn read_until_a_limit_reads_no_byte_past_it() {
        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"llo world").unwrap();
        // Bytes already read count towards the limit.
        let mut got = b"he".to_vec();
        let deadline = Instant::now() + FAR;
        assert_eq!(read_until(&mut ours, &mut got, Some(5), deadline), Ok(()));
        assert_eq!(got, b"hello");
        // The rest is still in the socket, for the next read.
        got.clear();
        assert_eq!(read_until(&mut ours, &mut got, Some(6), deadline), Ok(()));
        assert_eq!(got, b" world");
    }

    #[test]
    fn read_until_the_end_takes_everything_and_a_limit_short_of_it_fails() {
        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"all of it").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + FAR;
        assert_eq!(read_until(&mut ours, &mut got, None, deadline), Ok(()));
        assert_eq!(got, b"all of it");

        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"short").unwrap();
        drop(peer);
        let mut got = Vec::new();
        assert_eq!(
            read_until(&mut ours, &mut got, Some(10), deadline),
            Err("the stream ended".to_string())
        );
        assert_eq!(got, b"short");
    }

    #[test]
    fn a_silent_peer_and_a_passed_deadline_end_a_read_with_different_words() {
        let (mut ours, _peer) = pair(Duration::from_millis(20));
        let mut got = Vec::new();
        let deadline = Instant::now() + FAR;
        assert_eq!(
            read_until(&mut ours, &mut got, None, deadline),
            Err("nothing more arrived in time".to_string())
        );
        assert_eq!(
            read_some(&mut ours, &mut got, deadline),
            Err("nothing more arrived in time".to_string())
        );

        // Bytes are waiting, but the step's time is up: the deadline is checked first.
        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"too late").unwrap();
        let passed = Instant::now() - Duration::from_secs(1);
        assert_eq!(
            read_until(&mut ours, &mut got, None, passed),
            Err("the step's timeout passed".to_string())
        );
        assert_eq!(
            read_some(&mut ours, &mut got, passed),
            Err("the step's timeout passed".to_string())
        );
        assert!(got.is_empty());
    }

    /// One recv takes what has arrived, up to the whole buffer: the limit is checked between
    /// recvs, so a read may pass it by what one recv returned, and no more.
    #[test]
    fn the_payload_limit_is_checked_between_recvs() {
        let arrived = vec![b'x'; 2000];
        let deadline = Instant::now() + FAR;
        let too_much = Err(format!("more than {MAX_PAYLOAD} bytes arrived"));

        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(&arrived).unwrap();
        let mut got = vec![0; MAX_PAYLOAD - 1];
        assert_eq!(read_until(&mut ours, &mut got, None, deadline), too_much);
        assert_eq!(got.len(), MAX_PAYLOAD - 1 + 2000);

        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(&arrived).unwrap();
        let mut got = vec![0; MAX_PAYLOAD - 1];
        assert_eq!(read_some(&mut ours, &mut got, deadline), Ok(()));
        assert_eq!(got.len(), MAX_PAYLOAD - 1 + 2000);
        assert_eq!(read_some(&mut ours, &mut got, deadline), too_much);
    }

    /// Lesson 27's server: the walkthrough's response, whose body is 97 bytes where its
    /// Content-Length says 122. `short` expects exactly that, and the line says how long the
    /// client waited for the rest (until its 300 ms timeout) and how much came.
    #[test]
    fn a_body_that_stops_short_is_shown_with_the_wait_and_the_count() {
        let text = r#"# a body that stops short
server tcp ack="HTTP/1.1 200 OK\r\nContent-Length: 122\r\n\r\n<html>\n<head>\n<title>Wrox Homepage</title>\n</head>\n<body>\n<!-- body goes here -->\n</body>\n</html>"
alice: connect
alice: settimeout 300ms
alice: send "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
alice: recv-response = short "HTTP/1.1 200 OK\r\n[..]</html>"
"#;
        let scenario = crate::scenario::Scenario::parse(text).unwrap();
        let transcript = crate::scenario::run(
            &scenario,
            "short-body",
            &crate::scenario::Target::OwnServer,
            &mut |_| {},
        )
        .unwrap();
        let line = transcript
            .entries
            .iter()
            .map(|entry| entry.text.as_str())
            .find(|text| text.starts_with("alice ◀──\"HTTP/1.1 200 OK"))
            .expect("the response's line");
        let (before, waited) = line.split_once("   after ").expect("the wait is shown");
        assert!(before.ends_with("… (137 B)── server"), "{line}");
        let (ms, rest) = waited.split_once(" ms").expect("in milliseconds");
        assert!(ms.parse::<u64>().unwrap() >= 300, "{line}");
        assert_eq!(
            rest,
            "   the body stopped at 97 of the 122 bytes Content-Length announced"
        );
    }

    #[test]
    fn a_peer_that_never_stops_is_cut_off_at_the_payload_limit() {
        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"more").unwrap();
        // vec! of zeros is calloc'd: 64 MiB of address space, not of touched memory.
        let mut got = vec![0; MAX_PAYLOAD];
        let deadline = Instant::now() + FAR;
        let too_much = Err(format!("more than {MAX_PAYLOAD} bytes arrived"));
        assert_eq!(read_until(&mut ours, &mut got, None, deadline), too_much);
        assert_eq!(read_some(&mut ours, &mut got, deadline), too_much);
        assert_eq!(got.len(), MAX_PAYLOAD, "nothing was read past the limit");
    }

    #[test]
    fn read_some_takes_what_one_recv_returns_and_names_the_end() {
        let (mut ours, mut peer) = pair(FAR);
        peer.write_all(b"HTTP/1.1 ").unwrap();
        let mut buffered = b"[before]".to_vec();
        let deadline = Instant::now() + FAR;
        assert_eq!(read_some(&mut ours, &mut buffered, deadline), Ok(()));
        assert_eq!(buffered, b"[before]HTTP/1.1 ");
        drop(peer);
        assert_eq!(
            read_some(&mut ours, &mut buffered, deadline),
            Err("the stream ended".to_string())
        );
    }

    /// The runner's end of a TCP connection whose peer has reset it.
    fn reset_by_peer(listener: &TcpListener) -> Stream {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(FAR)).unwrap();
        let (server, _) = listener.accept().unwrap();
        // SO_LINGER with a zero timeout makes close send RST instead of FIN.
        socket2::SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        Stream::Tcp(client)
    }

    #[test]
    fn a_reset_is_a_failed_recv_not_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + FAR;
        let reset = Err("recv failed: connection reset by peer".to_string());
        let mut ours = reset_by_peer(&listener);
        assert_eq!(read_some(&mut ours, &mut Vec::new(), deadline), reset);

        let mut ours = reset_by_peer(&listener);
        assert_eq!(
            read_until(&mut ours, &mut Vec::new(), None, deadline),
            reset
        );
    }

    #[test]
    fn a_signal_during_a_read_is_not_the_end_of_it() {
        for (name, until) in [("until-eintr", true), ("some-eintr", false)] {
            let (mut ours, mut peer) = pair(FAR);
            let reading = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let mut got = Vec::new();
                    let deadline = Instant::now() + FAR;
                    let outcome = if until {
                        read_until(&mut ours, &mut got, Some(5), deadline)
                    } else {
                        read_some(&mut ours, &mut got, deadline)
                    };
                    outcome.map(|()| got)
                })
                .unwrap();
            interrupt_recv(name, &reading);
            peer.write_all(b"after").unwrap();
            assert_eq!(reading.join().unwrap(), Ok(b"after".to_vec()), "{name}");
        }
    }

    #[test]
    fn every_recv_outcome_has_its_words() {
        assert_eq!(
            describe_recv(&RecvOutcome::Data(b"hi\n".to_vec())),
            format!("{} (3 B)", show_bytes(b"hi\n").0)
        );
        assert_eq!(describe_recv(&RecvOutcome::Eof), "end of stream (0 bytes)");
        assert_eq!(
            describe_recv(&RecvOutcome::Reset),
            "connection reset by peer"
        );
        assert_eq!(
            describe_recv(&RecvOutcome::Timeout),
            "timed out (nothing arrived)"
        );
        assert_eq!(
            describe_recv(&RecvOutcome::WouldBlock),
            "would block (nothing to read yet)"
        );
        assert_eq!(
            describe_recv(&RecvOutcome::Refused),
            "connection refused (an ICMP \"port unreachable\" came back)"
        );
    }

    #[test]
    fn a_failed_recv_is_named_only_for_the_errors_lessons_expect() {
        let error = |errno| io::Error::from_raw_os_error(errno);
        let blocking = true;
        for socket in [blocking, !blocking] {
            let refused = recv_failure(&error(libc::ECONNREFUSED), socket);
            assert_eq!(refused, Some(RecvOutcome::Refused));
            let reset = recv_failure(&error(libc::ECONNRESET), socket);
            assert_eq!(reset, Some(RecvOutcome::Reset));
            // Any other error fails the step in its own words, on either kind of socket: a
            // non-blocking socket's "not connected" is not "nothing to read yet".
            assert_eq!(recv_failure(&error(libc::ENOTCONN), socket), None);
            assert_eq!(recv_failure(&error(libc::ETIMEDOUT), socket), None);
        }
        // EAGAIN is the socket's receive timeout on a blocking socket, and "would block" on
        // a non-blocking one.
        let eagain = error(libc::EAGAIN);
        assert_eq!(recv_failure(&eagain, blocking), Some(RecvOutcome::Timeout));
        assert_eq!(
            recv_failure(&eagain, !blocking),
            Some(RecvOutcome::WouldBlock)
        );
    }
}
