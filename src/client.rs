//! The interactive client: the walkthrough's `client.py`.
//!
//! `client.py` connects (claim 12), then loops: read a line, `send` it, `recv(1024)` the
//! answer, print it; `q` leaves the loop and `close` ends the connection (claims 11 and 13).
//! That loop has two blind spots the walkthrough never meets.
//!
//! **It assumes one `recv` returns one whole ack.** When the server's `recv(8)` cuts a 20-byte
//! line into three pieces it sends three acks, and they may arrive in one `recv` or split
//! anywhere; `client.py` then prints them glued together, or leaves some unread when it
//! closes. Here everything the server sends is cut into acks by the bytes of the ack itself
//! ([`AckSplitter`]), so every ack is printed on its own line. Anything that is not the
//! expected ack (another server, say `nc -l`) is printed as it arrived.
//!
//! **It only looks at the socket when it expects an answer.** While `client.py` waits in
//! `input()`, the server may stop, or send something nobody asked for, and it finds out only
//! at the next `send`. A program that must notice both the keyboard and the socket asks the
//! kernel to wait on the two descriptors at once: [`crate::poll`]. So this client waits in
//! `poll` on standard input and the socket together: a line typed is sent, bytes that arrive
//! unasked are printed at once, and a server that closes the connection (a `recv` of 0 bytes)
//! or resets it is reported at once, not one line later. While a line's answer is due, only
//! the socket is watched: the next line is sent only after an answer to this one arrived, so
//! two lines do not merge into one recv.
//!
//! Each line is sent without its newline, as `client.py` sends `input()`. An empty line is
//! never sent: `send(b"")` puts nothing on the wire, so no ack would come back and the client
//! would wait forever. A last line that input ended without a newline (Ctrl-D after typing
//! text, or a file whose last line has no newline) is sent as it is, and ends the session.
//!
//! On `q` or end of input it does not just close: it half-closes (`shutdown(SHUT_WR)`), so
//! the server's `recv` returns 0 and it closes its side, and every ack still in flight is
//! printed until end of stream. Only then is the socket closed.
//!
//! At a terminal, the kernel's line discipline (canonical mode) holds what you type until
//! Enter, and holds at most 4095 bytes of one line: a longer line pasted there arrives cut.
//! Piped input has no such limit; the client takes lines up to [`MAX_LINE`] bytes.

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::endpoint::{Address, Endpoint, Stream};
use crate::error::{Error, describe};
use crate::escape::escape;
use crate::poll::{self, Want, Watch};

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

/// The longest line the client takes from its input: one line is one message, held whole
/// until it is sent. Lesson 08 sends 1 MiB in one send; a longer line is refused, not buffered
/// without end.
pub const MAX_LINE: usize = 1 << 20;

/// How long the client waits, after its half-close, for the server to close its side.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The datagram client's read step: shows the prompt, reads one line of bytes (a line that is
/// not UTF-8 is sent as it is), and returns it without its line ending, or `None` at end of
/// input or on `q`.
///
/// `line` is the caller's buffer, kept from one call to the next: when the last line read had
/// no newline, input ended there (Ctrl-D after text, at a terminal), and this call ends the
/// session instead of waiting at a terminal for a second end of input.
pub(crate) fn next_message<'a>(
    input: &mut impl BufRead,
    prompt: &mut Option<&mut dyn Write>,
    line: &'a mut Vec<u8>,
) -> Result<Option<&'a [u8]>, Error> {
    if !line.is_empty() && !line.ends_with(b"\n") {
        return Ok(None);
    }
    if let Some(prompt) = prompt.as_mut() {
        let _ = write!(prompt, "> ").and_then(|()| prompt.flush());
    }
    line.clear();
    input
        .read_until(b'\n', line)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    if !line.ends_with(b"\n")
        && let Some(prompt) = prompt.as_mut()
    {
        // End of input left the cursor after the prompt or the text typed: what follows
        // starts on a line of its own.
        let _ = writeln!(prompt);
    }
    let message = strip_line_ending(line);
    if line.is_empty() || message == QUIT.as_bytes() {
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

    /// `getsockname`: this end of the connection (for TCP, the port the kernel chose).
    pub fn local_addr(&self) -> Result<Address, Error> {
        self.stream.local_addr().map_err(|e| {
            Error::io(
                format!("cannot read the local address for {}", self.server),
                e,
            )
        })
    }

    /// `getpeername`: the server's end, the address a host name turned out to be.
    pub fn peer_addr(&self) -> Result<Address, Error> {
        self.stream.peer_addr().map_err(|e| {
            Error::io(
                format!("cannot read the peer address for {}", self.server),
                e,
            )
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
    /// of its own. `input` is read with plain `read` calls on its descriptor (a buffered
    /// reader would hide bytes from `poll`), so pass a pipe, a socket, or standard input as a
    /// `File`. `prompt`, when given, is where a person at a terminal sees the prompt (the
    /// binary passes stderr when stdin is a terminal).
    ///
    /// Returns how the session went, or [`Error::ConnectionLost`] when the server closed or
    /// reset the connection before the session ended.
    pub fn run_session(
        self,
        mut input: impl Read + AsFd,
        mut output: impl Write,
        prompt: Option<&mut dyn Write>,
    ) -> Result<SessionSummary, Error> {
        let Client {
            mut stream,
            server,
            ack,
        } = self;
        let lost = |detail: String| Error::ConnectionLost {
            addr: server.clone(),
            detail,
        };
        let mut prompt = Prompt::new(prompt);
        let mut replies = Replies {
            splitter: AckSplitter::new(&ack),
            count: 0,
        };
        let mut summary = SessionSummary::default();
        // Bytes of input not yet sent: a line being typed, or lines typed ahead.
        let mut typed = Vec::new();
        let mut input_ended = false;
        let mut awaiting_reply = false;
        let mut buffer = vec![0; 64 * 1024];
        prompt.show();

        loop {
            if !awaiting_reply {
                match next_line(&mut typed, input_ended) {
                    Some(line) if line == QUIT.as_bytes() => break,
                    Some(line) if line.is_empty() => {
                        eprintln!("(empty line not sent: a 0-byte send carries nothing over TCP)");
                        prompt.show();
                        continue;
                    }
                    Some(line) => {
                        if input_ended {
                            // The last line had no newline: the cursor still follows it.
                            prompt.fresh_line();
                        }
                        stream.write_all(&line).map_err(|e| lost(describe(&e)))?;
                        summary.lines_sent += 1;
                        awaiting_reply = true;
                        continue;
                    }
                    None if input_ended => break,
                    None if typed.len() > MAX_LINE => {
                        return Err(Error::Input {
                            what: format!(
                                "standard input has a line longer than {MAX_LINE} bytes (the client sends each line as one message; split it into lines)"
                            ),
                            source: None,
                        });
                    }
                    None => {}
                }
            }

            // Wait for the server, and, unless an answer is due, for the keyboard too.
            let mut watches = vec![Watch::new(&stream, Want::Read)];
            if !awaiting_reply {
                watches.push(Watch::new(&input, Want::Read));
            }
            match poll::wait(&mut watches, None) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot wait for input or the server", e)),
            }
            let server_ready = watches[0].is_ready();
            let keyboard_ready = watches.get(1).is_some_and(Watch::is_ready);
            drop(watches);

            if server_ready {
                match stream.read(&mut buffer) {
                    Ok(0) => {
                        // A recv of 0 bytes: the server closed its side while we still talk.
                        prompt.fresh_line();
                        replies.finish(&mut output)?;
                        return Err(lost("recv returned 0 bytes, the end of the stream".into()));
                    }
                    Ok(n) => {
                        if !awaiting_reply {
                            // Nobody asked: the prompt is showing, so start a fresh line.
                            prompt.fresh_line();
                        }
                        if replies.print(&buffer[..n], &mut output)? > 0 {
                            awaiting_reply = false;
                            if !input_ended {
                                prompt.show();
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        prompt.fresh_line();
                        return Err(lost(describe(&e)));
                    }
                }
            }
            if keyboard_ready {
                match input.read(&mut buffer) {
                    Ok(0) => input_ended = true,
                    Ok(n) => {
                        typed.extend_from_slice(&buffer[..n]);
                        if typed.ends_with(b"\n") {
                            // The terminal echoed the Enter: the cursor is on a fresh line.
                            prompt.moved_to_fresh_line();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("cannot read standard input", e)),
                }
            }
        }

        prompt.fresh_line();
        summary.replies = half_close_and_drain(stream, &mut replies, &mut output, &lost)?;
        Ok(summary)
    }
}

/// Takes the next whole line out of `typed`, without its line ending. At end of input, what
/// is left without a newline is the last line.
fn next_line(typed: &mut Vec<u8>, input_ended: bool) -> Option<Vec<u8>> {
    let end = match typed.iter().position(|&byte| byte == b'\n') {
        Some(newline) => newline + 1,
        None if input_ended && !typed.is_empty() => typed.len(),
        None => return None,
    };
    let line: Vec<u8> = typed.drain(..end).collect();
    Some(strip_line_ending(&line).to_vec())
}

/// `shutdown(SHUT_WR)`, then read to end of stream: the server's `recv` returns 0, it closes
/// its side, and every ack it sent before that is printed. Returns how many replies were
/// printed in the whole session.
fn half_close_and_drain(
    mut stream: Stream,
    replies: &mut Replies,
    output: &mut impl Write,
    lost: &impl Fn(String) -> Error,
) -> Result<usize, Error> {
    if let Err(e) = stream.shutdown(Shutdown::Write)
        && e.kind() != io::ErrorKind::NotConnected
    {
        return Err(lost(describe(&e)));
    }
    stream
        .set_read_timeout(Some(CLOSE_TIMEOUT))
        .map_err(|e| lost(describe(&e)))?;
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                replies.print(&buffer[..n], output)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                eprintln!(
                    "(the server did not close its side within {} s of ours; closing anyway)",
                    CLOSE_TIMEOUT.as_secs()
                );
                break;
            }
            Err(e) => return Err(lost(describe(&e))),
        }
    }
    replies.finish(output)?;
    Ok(replies.count)
}

/// The server's bytes, cut into replies and printed one a line, escaped.
struct Replies {
    splitter: AckSplitter,
    count: usize,
}

impl Replies {
    /// Prints every reply these bytes complete, and returns how many that was.
    fn print(&mut self, bytes: &[u8], output: &mut impl Write) -> Result<usize, Error> {
        let complete = self.splitter.push(bytes);
        for reply in &complete {
            Replies::show(reply, output)?;
        }
        self.count += complete.len();
        Ok(complete.len())
    }

    /// At end of stream: a partial ack left over is shown rather than lost.
    fn finish(&mut self, output: &mut impl Write) -> Result<(), Error> {
        if let Some(rest) = self.splitter.finish() {
            Replies::show(&rest, output)?;
            self.count += 1;
        }
        Ok(())
    }

    fn show(reply: &[u8], output: &mut impl Write) -> Result<(), Error> {
        writeln!(output, "{}", escape(reply))
            .and_then(|()| output.flush())
            .map_err(|e| Error::io("cannot write the reply", e))
    }
}

/// The prompt at a terminal, and where the cursor is: after the prompt (and whatever was
/// typed there), or at the start of a line. Replies and errors must start a line of their own,
/// and the session must end on one, whatever ended it: Enter, Ctrl-D, or the server.
struct Prompt<'a> {
    terminal: Option<&'a mut dyn Write>,
    cursor_after_prompt: bool,
}

impl<'a> Prompt<'a> {
    fn new(terminal: Option<&'a mut dyn Write>) -> Prompt<'a> {
        Prompt {
            terminal,
            cursor_after_prompt: false,
        }
    }

    fn show(&mut self) {
        if let Some(terminal) = self.terminal.as_mut() {
            let _ = write!(terminal, "> ").and_then(|()| terminal.flush());
            self.cursor_after_prompt = true;
        }
    }

    /// The terminal itself moved the cursor: it echoed an Enter.
    fn moved_to_fresh_line(&mut self) {
        self.cursor_after_prompt = false;
    }

    fn fresh_line(&mut self) {
        if let Some(terminal) = self.terminal.as_mut()
            && self.cursor_after_prompt
        {
            let _ = writeln!(terminal).and_then(|()| terminal.flush());
            self.cursor_after_prompt = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Queues;
    use crate::server::tests::{POLL_CALLS, interrupt, wait_until_blocked_in};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc::{self, Receiver, Sender};
    use std::thread::JoinHandle;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(10);

    /// A client connected to the test's own server socket, and a second handle on the
    /// client's socket, to ask the kernel what is left unread in it.
    fn connected(ack: &[u8]) -> (Client, Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = Stream::Tcp(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        let (server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(WAIT)).unwrap();
        let watch = stream.try_clone().unwrap();
        let client = Client {
            stream,
            server: "the test's server".into(),
            ack: ack.to_vec(),
        };
        (client, watch, server)
    }

    /// Output that reaches the test as it is written, so the test can wait on it.
    struct Shown(Sender<Vec<u8>>);

    impl Write for Shown {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Waits until the output so far is `expected`.
    fn wait_for_output(output: &Receiver<Vec<u8>>, expected: &str) {
        let mut shown = Vec::new();
        while shown.len() < expected.len() {
            shown.extend(output.recv_timeout(WAIT).expect("output in time"));
        }
        assert_eq!(String::from_utf8_lossy(&shown), expected);
    }

    type Session = JoinHandle<(Result<SessionSummary, Error>, String)>;

    /// Runs the session on a thread called `name`, as if at a terminal: what it shows as the
    /// prompt comes back with its result.
    fn session(
        name: &str,
        client: Client,
        input: impl Read + AsFd + Send + 'static,
    ) -> (Session, Receiver<Vec<u8>>) {
        let (shown, output) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut prompt = Vec::new();
                let result = client.run_session(input, Shown(shown), Some(&mut prompt));
                (result, String::from_utf8_lossy(&prompt).into_owned())
            })
            .unwrap();
        (thread, output)
    }

    /// The server's end of the session: `q`, then it closes once the client has half-closed.
    fn quit(keyboard: &mut UnixStream, mut server: TcpStream) {
        keyboard.write_all(b"q\n").unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"", "nothing sent after the last line");
    }

    fn reset(stream: TcpStream) {
        // SO_LINGER with a zero timeout makes close send RST instead of FIN.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    #[test]
    fn a_signal_while_the_client_waits_is_not_an_error() {
        let (client, _, server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let name = "client-eintr";
        let (thread, _output) = session(name, client, input);
        // poll(2) is never restarted after a signal handler: it fails with EINTR.
        interrupt(name, &thread, POLL_CALLS);
        quit(&mut keyboard, server);
        let (result, prompt) = thread.join().unwrap();
        assert_eq!(result.unwrap(), SessionSummary::default());
        assert_eq!(prompt, "> ");
    }

    #[test]
    fn bytes_nobody_asked_for_start_a_line_of_their_own_and_a_reset_is_named() {
        let (client, _, mut server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let (thread, output) = session("client-unasked", client, input);
        server.write_all(b"news").unwrap();
        wait_for_output(&output, "news\n");
        keyboard.write_all(b"hi\n").unwrap();
        let mut line = [0; 2];
        server.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"hi");
        reset(server);
        let (result, prompt) = thread.join().unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            "connection to the test's server lost: connection reset by peer (the server stopped or closed this connection; start it again and reconnect)"
        );
        // The prompt, a newline before `news`, the prompt again; Enter after `hi` was the
        // terminal's own newline.
        assert_eq!(prompt, "> \n> ");
    }

    #[test]
    fn an_ack_in_pieces_is_one_reply_and_the_prompt_waits_for_all_of_it() {
        let (client, watch, mut server) = connected(b"server recv success");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let name = "client-pieces";
        let (thread, output) = session(name, client, input);
        keyboard.write_all(b"one\n").unwrap();
        let mut line = [0; 3];
        server.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"one");

        server.write_all(b"server recv").unwrap();
        // The client has read the piece and waits for more.
        let deadline = Instant::now() + WAIT;
        while Queues::of(&watch).unwrap().recv > 0 {
            assert!(
                Instant::now() < deadline,
                "the client never read the first piece"
            );
            std::thread::yield_now();
        }
        wait_until_blocked_in(name, POLL_CALLS);
        server.write_all(b" success").unwrap();
        wait_for_output(&output, "server recv success\n");

        quit(&mut keyboard, server);
        let (result, prompt) = thread.join().unwrap();
        assert_eq!(
            result.unwrap(),
            SessionSummary {
                lines_sent: 1,
                replies: 1
            }
        );
        assert_eq!(
            prompt, "> > ",
            "one prompt before the line, one after its whole ack"
        );
    }

    /// Waits until the client has taken every byte typed so far and waits in `poll` again.
    fn wait_until_all_typed_is_taken(name: &str, input: &UnixStream) {
        let deadline = Instant::now() + WAIT;
        while Queues::of(input).unwrap().recv > 0 {
            assert!(
                Instant::now() < deadline,
                "the client stopped reading its input"
            );
            std::thread::yield_now();
        }
        wait_until_blocked_in(name, POLL_CALLS);
    }

    #[test]
    fn a_line_of_max_line_bytes_is_sent_and_a_longer_one_refused() {
        let (client, _, mut server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let typed = input.try_clone().unwrap();
        let name = "client-max-line";
        let (thread, output) = session(name, client, input);
        let line = vec![b'x'; MAX_LINE];
        let mut arrived = vec![0; MAX_LINE];
        std::thread::scope(|scope| {
            scope.spawn(|| server.read_exact(&mut arrived).unwrap());
            keyboard.write_all(&line).unwrap();
            // All of it held, no newline yet: not too long, the client waits for the rest.
            wait_until_all_typed_is_taken(name, &typed);
            keyboard.write_all(b"\n").unwrap();
        });
        assert!(arrived == line, "the line arrived changed");
        server.write_all(b"ok").unwrap();
        wait_for_output(&output, "ok\n");
        quit(&mut keyboard, server);
        let (result, _) = thread.join().unwrap();
        assert_eq!(
            result.unwrap(),
            SessionSummary {
                lines_sent: 1,
                replies: 1
            }
        );

        let (client, _, _server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let typed = input.try_clone().unwrap();
        let (thread, _output) = session(name, client, input);
        keyboard.write_all(&line[10..]).unwrap();
        wait_until_all_typed_is_taken(name, &typed);
        // Ten bytes short of the limit, then twenty more: past it, never at it.
        keyboard.write_all(&[b'x'; 20]).unwrap();
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a line past MAX_LINE was not refused"
            );
            std::thread::yield_now();
        }
        let error = thread.join().unwrap().0.unwrap_err();
        assert_eq!(
            error.to_string(),
            "standard input has a line longer than 1048576 bytes (the client sends each line as one message; split it into lines)"
        );
        assert_eq!(error.exit_code(), 9);
    }

    #[test]
    fn a_signal_during_the_drain_is_not_an_error_and_a_partial_ack_is_shown() {
        let (client, _, mut server) = connected(b"server recv success");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let name = "client-drain";
        let (thread, output) = session(name, client, input);
        keyboard.write_all(b"q\n").unwrap();
        // The drain is the one blocking recv of a session, with CLOSE_TIMEOUT as its
        // receive timeout: a signal makes it fail with EINTR.
        interrupt(name, &thread, crate::server::tests::RECV_CALLS);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        server.write_all(b"serv").unwrap();
        drop(server);
        let (result, _) = thread.join().unwrap();
        assert_eq!(
            result.unwrap(),
            SessionSummary {
                lines_sent: 0,
                replies: 1
            },
            "what was left of an ack at the end is a reply too"
        );
        wait_for_output(&output, "serv\n");
    }

    #[test]
    fn a_reset_before_the_half_close_is_reported_as_the_reset() {
        let (client, _, mut server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        // All before the session starts: an ack, the server's reset, and `q`. The ack is
        // read first, then `q` ends the session: the half-close finds the connection gone
        // (ENOTCONN, not an error in itself), and the drain's recv names the reset.
        server.write_all(b"ok").unwrap();
        reset(server);
        keyboard.write_all(b"q\n").unwrap();
        let (thread, output) = session("client-reset", client, input);
        let (result, _) = thread.join().unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            "connection to the test's server lost: connection reset by peer (the server stopped or closed this connection; start it again and reconnect)"
        );
        wait_for_output(&output, "ok\n");
    }

    /// A server that never closes its side costs the client CLOSE_TIMEOUT, then it closes
    /// anyway: the session went well.
    #[test]
    fn a_server_that_never_closes_is_left_after_the_close_timeout() {
        let (client, _, mut server) = connected(b"ok");
        let (input, mut keyboard) = UnixStream::pair().unwrap();
        let (thread, _output) = session("client-linger", client, input);
        keyboard.write_all(b"q\n").unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        let (result, _) = thread.join().unwrap();
        assert_eq!(result.unwrap(), SessionSummary::default());
        assert!(started.elapsed() >= CLOSE_TIMEOUT - Duration::from_millis(100));
        drop(server);
    }

    #[test]
    fn an_input_that_fails_is_an_error_not_the_end_of_input() {
        let (client, _, _server) = connected(b"ok");
        // Standard input can be a socket; this one is reset by its other end.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let keyboard = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (input, _) = listener.accept().unwrap();
        let (thread, _output) = session("client-input", client, input);
        reset(keyboard);
        let (result, _) = thread.join().unwrap();
        assert_eq!(
            result.unwrap_err().to_string(),
            "cannot read standard input: connection reset by peer"
        );
    }

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

    #[test]
    fn other_bytes_end_where_an_ack_or_the_start_of_one_begins() {
        let mut splitter = AckSplitter::new(b"ok!");
        // Two whole acks after the stranger's bytes: the first starts the cut.
        assert_eq!(
            splitter.push(b"xx ok!ok!"),
            vec![b"xx ".to_vec(), b"ok!".to_vec(), b"ok!".to_vec()]
        );
        // The start of an ack at the very end waits for the rest.
        assert_eq!(splitter.push(b"yy o"), vec![b"yy ".to_vec()]);
        assert_eq!(splitter.push(b"k!"), vec![b"ok!".to_vec()]);
        assert_eq!(splitter.finish(), None);
    }
}
