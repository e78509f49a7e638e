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
    Answer, DRAIN_BYTES, DRAIN_TIME, Handler, HttpConfig, HttpEvent, HttpLog, answer,
    forget_answered, refuse, waits_for_continue,
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
                    forget_answered(&mut self.received, request.len);
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

/// The state machine driven by hand: bytes in, a clock that moves only when a test says so,
/// and what it queues, logs and asks for next. No socket, so every deadline is exact.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::http::request::Request;
    use crate::http::response::Response;
    use crate::http::server::IDLE_BUFFER;

    /// A site of one page, `.0` bytes of body, whatever is asked.
    struct OnePage(usize);

    impl Handler for OnePage {
        fn respond(&self, _: &Request, _: &[u8], _: &Address) -> Response {
            Response::html(200, "x".repeat(self.0))
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";
    const PEER: &str = "[127.0.0.1:40000]";

    /// One conversation, the lines it logged, and the moment it began.
    struct Talk {
        conversation: HttpConversation,
        logged: Arc<Mutex<Vec<String>>>,
        start: Instant,
    }

    impl Talk {
        /// `--read-timeout 10s --request-timeout 2s --write-timeout 5s`: each clock its own.
        fn new(page: usize) -> Talk {
            Talk::with_timeouts(page, 10, 2, 5)
        }

        fn with_timeouts(page: usize, read: u64, request: u64, write: u64) -> Talk {
            let config = HttpConfig {
                read_timeout: Duration::from_secs(read),
                request_timeout: Duration::from_secs(request),
                write_timeout: Duration::from_secs(write),
                ..HttpConfig::default()
            };
            let logged = Arc::new(Mutex::new(Vec::new()));
            let log: HttpLog = {
                let logged = Arc::clone(&logged);
                Arc::new(move |event: HttpEvent| {
                    logged.lock().expect("not poisoned").push(event.to_string())
                })
            };
            let start = Instant::now();
            let conversation = HttpConversation::new(
                Address::Inet("127.0.0.1:40000".parse().expect("an address")),
                Arc::new(config),
                log,
                Arc::new(OnePage(page)),
                start,
            );
            Talk {
                conversation,
                logged,
                start,
            }
        }

        /// `seconds` after the start.
        fn at(&self, seconds: f64) -> Instant {
            self.start + Duration::from_secs_f64(seconds)
        }

        fn logged(&self) -> Vec<String> {
            self.logged.lock().expect("not poisoned").clone()
        }
    }

    #[test]
    fn a_request_is_answered_and_then_only_the_idle_clock_runs() {
        let mut talk = Talk::new(10);
        assert_eq!(talk.conversation.deadline(), Some(talk.at(10.0)));
        let mut out = Vec::new();
        let flow = talk.conversation.received(GET, &mut out, talk.at(1.0));
        assert_eq!(flow, Flow::Continue);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"), "{out:?}");
        assert_eq!(
            talk.logged(),
            [format!("{PEER} \"GET / HTTP/1.1\" 200 {}", out.len())]
        );
        // Sending: the write deadline (5 s), which comes before the stall clock (10 s).
        assert_eq!(talk.conversation.deadline(), Some(talk.at(6.0)));
        out.clear();
        assert_eq!(
            talk.conversation.sent(&mut out, talk.at(2.0)),
            Flow::Continue
        );
        assert!(out.is_empty());
        // Sent, nothing pending: only the idle clock, from the last bytes received.
        assert_eq!(talk.conversation.deadline(), Some(talk.at(11.0)));
        // An idle keep-alive connection is closed without a word.
        assert_eq!(
            talk.conversation.timed_out(&mut out, talk.at(11.0)),
            Flow::Abort
        );
        assert!(out.is_empty());
        assert_eq!(talk.logged().len(), 1);
    }

    #[test]
    fn pipelined_bytes_start_the_next_requests_clock() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        let bytes = [GET, b"GET / HT"].concat();
        talk.conversation.received(&bytes, &mut out, talk.at(1.0));
        assert_eq!(talk.logged().len(), 1);
        out.clear();
        talk.conversation.sent(&mut out, talk.at(1.5));
        // The half-request came with the first: its 2 s run from then, not from a later recv.
        assert_eq!(talk.conversation.deadline(), Some(talk.at(3.0)));
        let flow = talk.conversation.timed_out(&mut out, talk.at(3.0));
        assert_eq!(
            flow,
            Flow::DrainThenClose {
                at_most: DRAIN_TIME,
                bytes: DRAIN_BYTES
            }
        );
        assert!(
            out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
            "{out:?}"
        );
        assert_eq!(
            talk.logged()[1],
            format!("{PEER} \"GET / HT\" 408 {}", out.len())
        );
    }

    #[test]
    fn a_request_that_arrives_in_pieces_keeps_the_clock_of_its_first_byte() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        talk.conversation
            .received(b"GET / HT", &mut out, talk.at(1.0));
        talk.conversation
            .received(b"TP/1.1\r\n", &mut out, talk.at(2.5));
        // The request clock from 1 s (2 s long), not from 2.5 s; the idle clock from 2.5 s.
        assert_eq!(talk.conversation.deadline(), Some(talk.at(3.0)));
        talk.conversation
            .received(b"Host: lab\r\n\r\n", &mut out, talk.at(2.9));
        assert_eq!(talk.logged().len(), 1);
        out.clear();
        talk.conversation.sent(&mut out, talk.at(3.0));
        assert_eq!(talk.conversation.deadline(), Some(talk.at(12.9)));
    }

    #[test]
    fn at_the_high_water_mark_a_complete_request_waits_for_the_queue_to_drain() {
        let mut talk = Talk::new(10);
        let mut out = vec![0; HIGH_WATER];
        let flow = talk.conversation.received(GET, &mut out, talk.at(1.0));
        assert_eq!(flow, Flow::Continue);
        assert_eq!(
            out.len(),
            HIGH_WATER,
            "nothing may be queued on a full queue"
        );
        assert!(talk.logged().is_empty());
        out.clear();
        talk.conversation.sent(&mut out, talk.at(2.0));
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(talk.logged().len(), 1);
    }

    #[test]
    fn pipelined_requests_are_answered_a_queue_at_a_time() {
        let mut talk = Talk::new(4000);
        let mut out = Vec::new();
        talk.conversation
            .received(&GET.repeat(40), &mut out, talk.at(1.0));
        let one = out.len() / talk.logged().len();
        let mut rounds = vec![talk.logged().len()];
        while talk.logged().len() < 40 {
            // Each round stops at the first answer that reaches the mark: never more.
            assert!(
                out.len() >= HIGH_WATER && out.len() < HIGH_WATER + one,
                "{} bytes queued",
                out.len()
            );
            out.clear();
            talk.conversation.sent(&mut out, talk.at(1.0));
            rounds.push(talk.logged().len() - rounds.iter().sum::<usize>());
            assert!(rounds.len() < 10, "{rounds:?}");
        }
        let per_round = HIGH_WATER.div_ceil(one);
        assert_eq!(rounds, [per_round, per_round, 40 - 2 * per_round]);
    }

    /// A long pipeline grows the buffer of unanswered bytes; once what is left fits the idle
    /// size, the buffer is given back, and not before (that would move it on every answer).
    #[test]
    fn the_buffer_of_unanswered_bytes_shrinks_once_it_is_small_again() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        let pipeline = GET.repeat(2 * IDLE_BUFFER / GET.len());
        talk.conversation
            .received(&pipeline, &mut out, talk.at(1.0));
        let grown = talk.conversation.received.capacity();
        assert!(grown >= pipeline.len());
        while !talk.conversation.received.is_empty() {
            let left = talk.conversation.received.len();
            let capacity = talk.conversation.received.capacity();
            if left > IDLE_BUFFER {
                assert_eq!(capacity, grown, "moved with {left} bytes left");
            }
            out.clear();
            talk.conversation.sent(&mut out, talk.at(1.0));
        }
        assert!(
            talk.conversation.received.capacity() <= IDLE_BUFFER,
            "{} bytes kept",
            talk.conversation.received.capacity()
        );
    }

    #[test]
    fn expect_100_continue_gets_its_go_ahead_once() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        let head =
            b"POST / HTTP/1.1\r\nHost: lab\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
        talk.conversation.received(head, &mut out, talk.at(1.0));
        assert_eq!(out, CONTINUE);
        talk.conversation.received(b"he", &mut out, talk.at(1.1));
        assert_eq!(out, CONTINUE);
        talk.conversation.received(b"llo", &mut out, talk.at(1.2));
        assert!(out[CONTINUE.len()..].starts_with(b"HTTP/1.1 200 OK\r\n"));
        // The next request on the connection gets its own go-ahead.
        out.clear();
        talk.conversation.received(head, &mut out, talk.at(1.3));
        assert_eq!(out, CONTINUE);
    }

    #[test]
    fn how_each_answer_ends_the_connection() {
        let mut out = Vec::new();
        let mut talk = Talk::new(10);
        let close = b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
        assert_eq!(
            talk.conversation.received(close, &mut out, talk.at(1.0)),
            Flow::Close
        );
        let mut talk = Talk::new(10);
        assert_eq!(
            talk.conversation
                .received(b"BAD\r\n\r\n", &mut out, talk.at(1.0)),
            Flow::DrainThenClose {
                at_most: DRAIN_TIME,
                bytes: DRAIN_BYTES
            }
        );
        assert!(talk.logged()[0].contains("\" 400 "), "{:?}", talk.logged());
    }

    #[test]
    fn a_peer_that_closes_gets_its_complete_requests_answered_then_the_close() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        talk.conversation.received(GET, &mut out, talk.at(1.0));
        assert_eq!(
            talk.conversation.peer_closed(&mut out, talk.at(1.0)),
            Flow::Close
        );
        // Mid-request: what was lost is said.
        let mut talk = Talk::new(10);
        talk.conversation
            .received(b"GET / HT", &mut out, talk.at(1.0));
        assert_eq!(
            talk.conversation.peer_closed(&mut out, talk.at(1.0)),
            Flow::Close
        );
        assert_eq!(
            talk.logged(),
            [format!(
                "{PEER} connection lost mid-request: the peer closed the connection"
            )]
        );
        // A full queue: the complete requests wait for it to drain, then the close.
        let mut talk = Talk::new(10);
        let mut full = vec![0; HIGH_WATER];
        talk.conversation.received(GET, &mut full, talk.at(1.0));
        assert_eq!(
            talk.conversation.peer_closed(&mut full, talk.at(1.0)),
            Flow::Continue
        );
        full.clear();
        assert_eq!(talk.conversation.sent(&mut full, talk.at(1.0)), Flow::Close);
        assert!(full.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(talk.logged().len(), 1, "{:?}", talk.logged());
    }

    #[test]
    fn a_response_nobody_reads_ends_on_the_clock_that_ran_out() {
        let mut talk = Talk::new(10);
        let mut out = Vec::new();
        talk.conversation.received(GET, &mut out, talk.at(1.0));
        assert_eq!(
            talk.conversation.timed_out(&mut out, talk.at(6.0)),
            Flow::Abort
        );
        assert_eq!(
            talk.logged()[1],
            format!(
                "{PEER} cannot send the 200 response to \"GET / HTTP/1.1\": the peer did not read it in full within 5s (--write-timeout); connection closed"
            )
        );
        // A read timeout shorter than the write timeout: a peer that takes nothing for 2 s is
        // let go; one that takes some bytes restarts that clock.
        let mut talk = Talk::with_timeouts(10, 2, 2, 5);
        talk.conversation.received(GET, &mut out, talk.at(1.0));
        assert_eq!(talk.conversation.deadline(), Some(talk.at(3.0)));
        talk.conversation.progressed(talk.at(2.5));
        assert_eq!(talk.conversation.deadline(), Some(talk.at(4.5)));
        talk.conversation.timed_out(&mut out, talk.at(4.5));
        assert_eq!(
            talk.logged()[1],
            format!(
                "{PEER} cannot send the 200 response to \"GET / HTTP/1.1\": the peer took no byte of it for 2s (--read-timeout)"
            )
        );
    }

    #[test]
    fn failures_and_stops_say_what_was_lost() {
        let refused = io::Error::from(io::ErrorKind::ConnectionReset);
        let mut out = Vec::new();
        let mut talk = Talk::new(10);
        talk.conversation.received(GET, &mut out, talk.at(1.0));
        talk.conversation.failed(&refused);
        assert!(
            talk.logged()[1].starts_with(&format!(
                "{PEER} cannot send the 200 response to \"GET / HTTP/1.1\": "
            )),
            "{:?}",
            talk.logged()
        );
        let mut talk = Talk::new(10);
        talk.conversation.received(b"GET", &mut out, talk.at(1.0));
        talk.conversation.failed(&refused);
        assert!(
            talk.logged()[0].starts_with(&format!("{PEER} connection lost mid-request: ")),
            "{:?}",
            talk.logged()
        );
        let mut talk = Talk::new(10);
        talk.conversation.stopped();
        assert!(talk.logged().is_empty());
        talk.conversation.received(b"GET", &mut out, talk.at(1.0));
        talk.conversation.stopped();
        assert_eq!(
            talk.logged(),
            [format!(
                "{PEER} connection lost mid-request: the peer closed the connection"
            )]
        );
    }
}
