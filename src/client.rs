//! The interactive client: the walkthrough's `client.py`.
//!
//! `client.py` connects (claim 12), then loops: read a line, `send` it, `recv(1024)` the
//! answer, print it; `q` leaves the loop and `close` ends the connection (claims 11 and 13).
//! That loop has a bug the walkthrough never meets: it assumes one `recv` returns one whole
//! ack. When the server's `recv(8)` cuts a 20-byte line into three pieces it sends three acks,
//! and they may arrive in one `recv` or split anywhere; `client.py` then prints them glued
//! together, or leaves some unread when it closes.
//!
//! This client fixes that in two ways:
//!
//! - A reader thread reads everything the server sends and cuts it into acks by the bytes of
//!   the ack itself ([`AckSplitter`]), so every ack is printed on its own line. Anything that
//!   is not the expected ack (another server, say `nc -l`) is printed as it arrived.
//! - On `q` or end of input it does not just close: it half-closes (`shutdown(SHUT_WR)`), so
//!   the server's `recv` returns 0 and it closes its side, and the reader prints every ack
//!   still in flight until end of stream. Only then is the socket closed.
//!
//! Each line is sent without its newline, as `client.py` sends `input()`, and the next line is
//! sent only after an answer to this one arrived, so two lines do not merge into one recv.

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::endpoint::{Endpoint, Stream};
use crate::error::{Error, describe};
use crate::escape::escape;

/// The line that ends the session, as in the walkthrough.
pub const QUIT: &str = "q";

/// Cuts the byte stream from the server back into acks.
#[derive(Debug)]
pub struct AckSplitter {
    ack: Vec<u8>,
    pending: Vec<u8>,
}

impl AckSplitter {
    pub fn new(ack: &[u8]) -> AckSplitter {
        AckSplitter {
            ack: ack.to_vec(),
            pending: Vec::new(),
        }
    }

    /// Adds bytes just received and returns every reply now complete: each whole ack on its
    /// own, and bytes that cannot be the start of an ack as one reply. A partial ack waits
    /// for the rest.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut replies = Vec::new();
        loop {
            if !self.ack.is_empty() && self.pending.starts_with(&self.ack) {
                replies.push(self.pending.drain(..self.ack.len()).collect());
            } else if self.ack.starts_with(&self.pending) {
                return replies;
            } else {
                // Not our ack: pass it on as it came, up to where an ack (or the start of one,
                // at the very end) begins.
                let end = (1..self.pending.len())
                    .find(|&i| {
                        let rest = &self.pending[i..];
                        rest.starts_with(&self.ack) || self.ack.starts_with(rest)
                    })
                    .unwrap_or(self.pending.len());
                replies.push(self.pending.drain(..end).collect());
            }
        }
    }

    /// Bytes left when the stream ended: a partial ack, shown rather than lost.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// The send loop's read step, shared by the stream and datagram clients: shows the prompt,
/// reads one line of bytes (a line that is not UTF-8 is sent as it is), and returns it
/// without its line ending, or `None` at end of input or on `q`.
pub(crate) fn next_message<'a>(
    input: &mut impl BufRead,
    prompt: &mut Option<&mut dyn Write>,
    line: &'a mut Vec<u8>,
) -> Result<Option<&'a [u8]>, Error> {
    if let Some(prompt) = prompt.as_mut() {
        let _ = write!(prompt, "> ").and_then(|()| prompt.flush());
    }
    line.clear();
    let read = input
        .read_until(b'\n', line)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    let message = strip_line_ending(line);
    if read == 0 || message == QUIT.as_bytes() {
        return Ok(None);
    }
    Ok(Some(message))
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How a session went, for the caller to report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionSummary {
    pub lines_sent: usize,
    pub replies: usize,
}

/// A connected client.
pub struct Client {
    stream: Stream,
    server: String,
    ack: Vec<u8>,
}

impl Client {
    /// `socket` + `connect((host, port))`.
    pub fn connect(endpoint: &Endpoint, ack: &[u8]) -> Result<Client, Error> {
        let stream = Stream::connect(endpoint)?;
        Ok(Client {
            stream,
            server: endpoint.to_string(),
            ack: ack.to_vec(),
        })
    }

    /// `TCP_NODELAY`: send each line at once, even while an earlier one is unacknowledged
    /// (see [`crate::options`] for Nagle's algorithm and why it matters).
    pub fn set_nodelay(&self, nodelay: bool) -> Result<(), Error> {
        self.stream
            .set_nodelay(nodelay)
            .map_err(|e| Error::io(format!("cannot set TCP_NODELAY for {}", self.server), e))
    }

    /// Whether `TCP_NODELAY` is on: what `getsockopt` says, not what was asked.
    pub fn nodelay(&self) -> Result<bool, Error> {
        match &self.stream {
            Stream::Tcp(stream) => stream
                .nodelay()
                .map_err(|e| Error::io(format!("cannot read TCP_NODELAY for {}", self.server), e)),
            Stream::Unix(_) => Ok(false),
        }
    }

    /// The send loop: each line of `input` is sent, each reply printed to `output` on a line
    /// of its own. `prompt`, when given, is written before each line is read (the binary
    /// passes stderr when stdin is a terminal).
    pub fn run_session(
        self,
        input: impl BufRead,
        output: impl Write + Send + 'static,
        mut prompt: Option<&mut dyn Write>,
    ) -> Result<SessionSummary, Error> {
        let Client {
            stream,
            server,
            ack,
        } = self;
        let reader_stream = stream
            .try_clone()
            .map_err(|e| Error::io("cannot clone the client socket", e))?;
        let we_closed = Arc::new(AtomicBool::new(false));
        let (replied_tx, replied_rx) = mpsc::channel();
        let reader = {
            let we_closed = Arc::clone(&we_closed);
            let ack = ack.clone();
            thread::spawn(move || {
                print_replies(reader_stream, &ack, output, replied_tx, &we_closed)
            })
        };

        let mut stream = stream;
        let mut summary = SessionSummary::default();
        let lost = |detail: String| Error::ConnectionLost {
            addr: server.clone(),
            detail,
        };
        let mut input = input;
        let mut line = Vec::new();
        while let Some(message) = next_message(&mut input, &mut prompt, &mut line)? {
            if message.is_empty() {
                // send(b"") puts nothing on the wire, so no ack would ever come back.
                eprintln!("(empty line not sent: a 0-byte send carries nothing over TCP)");
                continue;
            }
            stream.write_all(message).map_err(|e| lost(describe(&e)))?;
            summary.lines_sent += 1;
            // Wait for the first reply to this line before reading the next one.
            match replied_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(detail)) => return Err(lost(detail)),
                Err(_) => return Err(lost("the reader stopped".into())),
            }
        }

        // Half-close, then drain: every ack the server still sends is read and printed.
        we_closed.store(true, Ordering::SeqCst);
        if let Err(e) = stream.shutdown(Shutdown::Write)
            && e.kind() != io::ErrorKind::NotConnected
        {
            return Err(lost(describe(&e)));
        }
        let replies = reader
            .join()
            .map_err(|_| lost("the reader thread panicked".into()))?
            .map_err(lost)?;
        summary.replies = replies;
        Ok(summary)
    }
}

/// The reader thread: prints each reply, tells the sender one arrived, and returns how many
/// replies it printed, or why the connection ended early.
fn print_replies(
    mut stream: Stream,
    ack: &[u8],
    mut output: impl Write,
    replied: mpsc::Sender<Result<(), String>>,
    we_closed: &AtomicBool,
) -> Result<usize, String> {
    let mut splitter = AckSplitter::new(ack);
    let mut buffer = [0; 4096];
    let mut count = 0;
    let mut show = |reply: &[u8], output: &mut dyn Write| -> Result<(), String> {
        count += 1;
        writeln!(output, "{}", escape(reply))
            .and_then(|()| output.flush())
            .map_err(|e| format!("cannot write the reply: {e}"))
    };
    let outcome = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                let replies = splitter.push(&buffer[..n]);
                for reply in &replies {
                    show(reply, &mut output)?;
                }
                if !replies.is_empty() {
                    let _ = replied.send(Ok(()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(describe(&e)),
        }
    };
    if let Some(rest) = splitter.finish() {
        show(&rest, &mut output)?;
    }
    let outcome = match outcome {
        Ok(()) if we_closed.load(Ordering::SeqCst) => return Ok(count),
        Ok(()) => "the server closed the connection".to_string(),
        Err(detail) => detail,
    };
    let _ = replied.send(Err(outcome.clone()));
    Err(outcome)
}

#[cfg(test)]
mod tests {
    use super::AckSplitter;

    #[test]
    fn acks_split_anywhere_come_out_whole_and_one_each() {
        let mut splitter = AckSplitter::new(b"ok!");
        assert_eq!(splitter.push(b"o"), Vec::<Vec<u8>>::new());
        assert_eq!(
            splitter.push(b"k!ok!o"),
            vec![b"ok!".to_vec(), b"ok!".to_vec()]
        );
        assert_eq!(splitter.push(b"k!"), vec![b"ok!".to_vec()]);
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn replies_that_are_not_the_ack_are_passed_on_as_they_came() {
        let mut splitter = AckSplitter::new(b"ok!");
        assert_eq!(
            splitter.push(b"hello ok!"),
            vec![b"hello ".to_vec(), b"ok!".to_vec()]
        );
        assert_eq!(splitter.push(b"ok"), Vec::<Vec<u8>>::new());
        assert_eq!(
            splitter.finish(),
            Some(b"ok".to_vec()),
            "a partial ack at the end is shown"
        );
    }
}
