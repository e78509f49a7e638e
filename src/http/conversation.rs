//! One HTTP connection as a state machine, for the event loop ([`crate::engine::event_loop`]).
//!
//! The blocking server ([`super::server`]) reads a connection top to bottom: receive until a
//! request is complete, answer, repeat. The event loop cannot wait, so the same steps become
//! reactions: *bytes arrived* (parse what is there, answer every complete request, send
//! `100 Continue` when the head carries `Expect: 100-continue`), *everything queued was sent* (answer the pipelined
//! requests held back meanwhile), *a deadline passed* (408 for a request that did not arrive
//! in time, a quiet close for an idle keep-alive connection, a failure for a response nobody
//! reads), *the peer closed* (answer what is complete, then close).
//!
//! Both forms share the parser ([`RequestReader`], which remembers what it has decoded, so a
//! request trickled in a thousand `recv`s is not parsed a thousand times), the answers
//! (`answer` and `refuse` in [`super::server`]), the limits, the timeouts and the log lines;
//! `tests/engines.rs` sends both the same bytes and compares what comes back.
//!
//! Memory: the unparsed bytes of at most one request beyond what is answered (the parser's
//! [`super::request::Limits`]), plus queued responses. Answering stops while more than
//! [`HIGH_WATER`] bytes are queued, and the event loop stops reading then, so a client that
//! pipelines requests without reading the responses is held back by TCP's window, not by
//! our memory.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{RequestReader, Status};
use super::server::{
    Answer, DRAIN_BYTES, DRAIN_TIME, Handler, HttpConfig, HttpEvent, HttpLog, IDLE_BUFFER, answer,
    refuse, waits_for_continue,
};
use crate::endpoint::Address;
use crate::engine::event_loop::HIGH_WATER;
use crate::engine::{Conversation, Flow, deadline_from};
use crate::http::response::Connection;

/// `Expect: 100-continue` answered: the client may send the body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The response being sent, for the log line if it cannot be.
struct Sending {
    status: u16,
    request_line: String,
    /// `--write-timeout` from when it was queued.
    deadline: Instant,
    /// `--read-timeout` from the last `send` that took bytes: a peer that takes nothing for
    /// that long is let go as soon as an idle one would be, as the blocking server does.
    stalled_after: Instant,
}

/// One HTTP connection, between events.
pub struct HttpConversation {
    peer: Address,
    config: Arc<HttpConfig>,
    log: HttpLog,
    handler: Arc<dyn Handler>,
    /// Bytes received and not yet answered: part of a request, or pipelined requests.
    received: Vec<u8>,
    reader: RequestReader,
    sent_continue: bool,
    /// `--request-timeout` from the current request's first byte.
    request_deadline: Option<Instant>,
    /// `--read-timeout` from the last bytes received (or the accept).
    read_deadline: Instant,
    sending: Option<Sending>,
    /// The peer has closed its side: answer what is complete, then close.
    peer_done: bool,
}

impl HttpConversation {
    pub(crate) fn new(
        peer: Address,
        config: Arc<HttpConfig>,
        log: HttpLog,
        handler: Arc<dyn Handler>,
        now: Instant,
    ) -> HttpConversation {
        let reader = RequestReader::new(config.limits);
        let read_deadline = deadline_from(now, config.read_timeout);
        HttpConversation {
            peer,
            config,
            log,
            handler,
            received: Vec::new(),
            reader,
            sent_continue: false,
            request_deadline: None,
            read_deadline,
            sending: None,
            peer_done: false,
        }
    }

    fn after(&self, now: Instant, timeout: Duration) -> Instant {
        deadline_from(now, timeout)
    }

    /// Answers every complete request in `received`, while the queue has room.
    fn answer_ready(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        while !self.received.is_empty() && out.len() < HIGH_WATER {
            match self.reader.parse(&self.received) {
                Ok(Status::Complete(request)) => {
                    let answer = answer(
                        &request,
                        &self.received[..request.len],
                        &self.peer,
                        &*self.handler,
                    );
                    self.received.drain(..request.len);
                    if self.received.capacity() > IDLE_BUFFER && self.received.len() <= IDLE_BUFFER
                    {
                        self.received.shrink_to(IDLE_BUFFER);
                    }
                    self.reader = RequestReader::new(self.config.limits);
                    self.sent_continue = false;
                    // Pipelined bytes already here start the next request's clock.
                    self.request_deadline = (!self.received.is_empty())
                        .then(|| self.after(now, self.config.request_timeout));
                    let flow = self.queue(answer, out, now);
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
                Ok(Status::Partial) => {
                    if !self.sent_continue && self.reader.head().is_some_and(waits_for_continue) {
                        // curl waits a second for this go-ahead before a large body.
                        self.sent_continue = true;
                        out.extend_from_slice(CONTINUE);
                    }
                    break;
                }
                Err(error) => {
                    let answer = refuse(
                        error.status(),
                        &error.to_string(),
                        &self.received,
                        &*self.handler,
                    );
                    self.received.clear();
                    return self.queue(answer, out, now);
                }
            }
        }
        if self.received.is_empty() {
            self.request_deadline = None;
        }
        Flow::Continue
    }

    /// Logs the answer and queues its bytes; says whether the connection ends after it.
    fn queue(&mut self, answer: Answer, out: &mut Vec<u8>, now: Instant) -> Flow {
        // Logged before it is sent, as the blocking server does (see `scenario::timeline`).
        (self.log)(HttpEvent::Request {
            peer: self.peer.clone(),
            request_line: answer.request_line.clone(),
            status: answer.status,
            bytes: answer.bytes.len(),
        });
        if out.is_empty() {
            // The usual case: nothing else queued, so the response's own buffer is the queue.
            *out = answer.bytes;
        } else {
            out.extend_from_slice(&answer.bytes);
        }
        if self.sending.is_none() {
            self.sending = Some(Sending {
                status: answer.status,
                request_line: answer.request_line,
                deadline: self.after(now, self.config.write_timeout),
                stalled_after: self.after(now, self.config.read_timeout),
            });
        }
        match answer.connection {
            Connection::Close if answer.status >= 400 => Flow::DrainThenClose {
                at_most: DRAIN_TIME,
                bytes: DRAIN_BYTES,
            },
            Connection::Close => Flow::Close,
            Connection::KeepAlive | Connection::KeepAliveHttp10 => Flow::Continue,
        }
    }

    /// What is left to do once the peer has closed its side and the queue has room.
    fn finish_after_peer_closed(&mut self, out: &[u8]) -> Flow {
        if self.received.is_empty() {
            return Flow::Close;
        }
        if out.len() >= HIGH_WATER {
            // Complete requests wait for the queue to drain ([`Conversation::sent`]).
            return Flow::Continue;
        }
        self.lost("the peer closed the connection");
        Flow::Close
    }

    fn lost(&self, reason: &str) {
        (self.log)(HttpEvent::ConnectionFailed {
            peer: self.peer.clone(),
            error: format!("connection lost mid-request: {reason}"),
        });
    }
}

impl Conversation for HttpConversation {
    fn received(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Flow {
        self.received.extend_from_slice(bytes);
        self.read_deadline = self.after(now, self.config.read_timeout);
        if self.request_deadline.is_none() {
            self.request_deadline = Some(self.after(now, self.config.request_timeout));
        }
        self.answer_ready(out, now)
    }

    fn peer_closed(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        self.peer_done = true;
        let flow = self.answer_ready(out, now);
        if flow != Flow::Continue {
            return flow;
        }
        self.finish_after_peer_closed(out)
    }

    fn sent(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        self.sending = None;
        let flow = self.answer_ready(out, now);
        if flow != Flow::Continue || !self.peer_done {
            return flow;
        }
        self.finish_after_peer_closed(out)
    }

    fn progressed(&mut self, now: Instant) {
        let read_timeout = self.config.read_timeout;
        if let Some(sending) = &mut self.sending {
            sending.stalled_after = deadline_from(now, read_timeout);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if let Some(sending) = &self.sending {
            return Some(sending.deadline.min(sending.stalled_after));
        }
        Some(match self.request_deadline {
            Some(request) => request.min(self.read_deadline),
            None => self.read_deadline,
        })
    }

    fn timed_out(&mut self, out: &mut Vec<u8>, now: Instant) -> Flow {
        if let Some(sending) = self.sending.take() {
            let why = if now >= sending.deadline {
                format!(
                    "the peer did not read it in full within {:?} (--write-timeout); connection closed",
                    self.config.write_timeout
                )
            } else {
                format!(
                    "the peer took no byte of it for {:?} (--read-timeout)",
                    self.config.read_timeout
                )
            };
            (self.log)(HttpEvent::ConnectionFailed {
                peer: self.peer.clone(),
                error: format!(
                    "cannot send the {} response to \"{}\": {why}",
                    sending.status, sending.request_line
                ),
            });
            return Flow::Abort;
        }
        if self.received.is_empty() {
            // An idle keep-alive connection: closed without a word, as the blocking server does.
            return Flow::Abort;
        }
        let answer = refuse(
            408,
            "the request did not arrive in time; the connection is closed",
            &self.received,
            &*self.handler,
        );
        self.received.clear();
        self.queue(answer, out, now)
    }

    fn failed(&mut self, error: &io::Error) {
        let why = crate::error::describe(error);
        match self.sending.take() {
            Some(sending) => (self.log)(HttpEvent::ConnectionFailed {
                peer: self.peer.clone(),
                error: format!(
                    "cannot send the {} response to \"{}\": {why}",
                    sending.status, sending.request_line
                ),
            }),
            None => self.lost(&why),
        }
    }

    fn stopped(&mut self) {
        if !self.received.is_empty() {
            self.lost("the peer closed the connection");
        }
    }
}
