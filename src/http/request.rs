//! The request parser: bytes in, a [`Request`] (or "send more bytes", or a typed error) out.
//!
//! An HTTP/1.1 request is text with a strict shape (RFC 9112):
//!
//! ```text
//! GET /favicon.ico HTTP/1.1\r\n        request line: method SP target SP version CRLF
//! Host: localhost:10000\r\n            header fields: name ":" OWS value OWS CRLF
//! Connection: keep-alive\r\n
//! \r\n                                 the empty line that ends the head
//! ...body...                           Content-Length bytes, or chunked, or nothing
//! ```
//!
//! The walkthrough says "after all header fields an HTTP request must contain an empty line"
//! (claim 14). That line is how a server knows the head is over, and `recv` knows nothing
//! about it: one `recv` may return half a request line or two whole requests. So the parser
//! is *incremental*, like httparse: [`Request::parse`] is called on everything received so
//! far and answers [`Status::Partial`] ("recv more, then call again") until the request is
//! complete. Partial is not an error; it is the normal case on a slow network.
//!
//! It parses bytes, not `&str`: a peer can send anything, and deciding what is text is part
//! of parsing. It is strict where RFC 9112 tells a server to be, because lenient parsers that
//! disagree about where a request ends are how request smuggling works. Each rejection is a
//! [`ParseError`] with the status code a server answers it with ([`ParseError::status`]).
//!
//! Limits belong to the caller ([`Limits`]): the request line (414), the head and the number
//! of header fields (431), the body (413). They are checked on partial input too, so a peer
//! that never sends the empty line is stopped at the limit, not when memory runs out:
//! [`Limits::most_buffered`] is the most bytes that can ever be `Partial`. No buffer is ever
//! sized from a number the peer sent: a body is copied out only once all its bytes have
//! arrived. A server calling again after every `recv` uses a [`RequestReader`], which does
//! not decode the same chunks twice.
//!
//! Trailer fields after a chunked body obey the same rules as header fields, and bare LF is a
//! line end everywhere (head, chunk lines, trailer), bare CR nowhere: one rule in every place,
//! so no two parts of this parser disagree about where a line ends.
//! `tests/faults_http.rs` and `tests/http_conformance.txt` hold the hostile cases; `fuzz/`
//! has the `cargo fuzz` target.
//!
//! Where this differs from httparse on purpose, `tests/http_parser.rs` lists it; that file
//! holds the table of cases (complete, partial, each rejection) and the differential
//! property test against httparse.

use std::fmt;

/// How much of each part of a request the caller accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, CRLF included (414 URI Too Long beyond it).
    pub request_line: usize,
    /// Longest head in bytes, request line and empty line included (431 beyond it).
    pub head: usize,
    /// Most header fields (431 beyond it).
    pub headers: usize,
    /// Largest decoded body in bytes (413 Content Too Large beyond it).
    pub body: usize,
}

impl Limits {
    /// The most bytes [`Request::parse`] can answer [`Status::Partial`] to: past this, every
    /// input is complete or an error. It is what a peer can make a server buffer for one
    /// request (the head, the body with its chunked framing, a trailer), so it is the number
    /// that bounds memory per connection. The fuzz target and `tests/faults_http.rs` check it.
    pub fn most_buffered(&self) -> usize {
        self.head
            .saturating_mul(2)
            .saturating_add(max_encoded_body(self))
            .saturating_add(MAX_CHUNK_LINE)
            .saturating_add(self.body)
            .saturating_add(4)
    }
}

impl Default for Limits {
    /// Generous for browsers (Chromium's heads are about 1 KiB) and small enough that
    /// `max_clients` connections at the limit still fit comfortably in memory.
    fn default() -> Limits {
        Limits {
            request_line: 8 * 1024,
            head: 16 * 1024,
            headers: 64,
            body: 1024 * 1024,
        }
    }
}

/// The answer to "is the request complete?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// Complete, with what was parsed.
    Complete(T),
    /// Everything so far is valid, but the request is not over: recv more and parse again.
    Partial,
}

/// The HTTP versions this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Closes after each response unless the client asks for `Connection: keep-alive`.
    Http10,
    /// Keeps the connection open unless either side says `Connection: close`.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// One header field. The name is a token, so it is ASCII; the value may carry bytes above
/// 0x7F (RFC 9112's `obs-text`), so it stays bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// How the body is delimited, decided from the head alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: the body is empty.
    Empty,
    /// `Content-Length: n`: exactly n bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`: size-prefixed chunks, ended by a chunk of size 0.
    Chunked,
}

/// The request line and header fields: everything up to and including the empty line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent (`/`, `/search?q=x`), not decoded.
    pub target: String,
    pub version: Version,
    /// In the order received, duplicates kept.
    pub headers: Vec<Header>,
    pub framing: Framing,
    /// Bytes from the start of the buffer to the end of the empty line (leading empty lines
    /// included): the body starts here.
    pub len: usize,
}

/// A whole request: head and decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub head: Head,
    /// The body with any chunked framing removed.
    pub body: Vec<u8>,
    /// Bytes of the buffer this request used, head and body. A pipelined next request
    /// starts here.
    pub len: usize,
}

/// Why a request was rejected. Each has the status code to answer it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The method is empty or has a byte that is not a token character.
    Method,
    /// The target is empty or has a space, a control byte or a byte above 0x7E.
    Target,
    /// The version is not `HTTP/` digit `.` digit, or the request line has extra spaces.
    Version,
    /// A well-formed version whose major is not 1 (`HTTP/2.0`, `HTTP/0.9`).
    UnsupportedVersion,
    /// A CR not followed by LF.
    BareCr,
    /// A line starting with a space or tab: the obsolete line folding RFC 9112 forbids.
    ObsFold,
    /// Whitespace between a field name and its colon (`Host : x`).
    SpaceBeforeColon,
    /// A field name that is empty or not a token, or a field line without a colon.
    HeaderName,
    /// A control byte in a field value.
    HeaderValue,
    /// An HTTP/1.1 request without a `Host` field.
    MissingHost,
    /// More than one `Host` field.
    DuplicateHost,
    /// A `Host` value that is not `host[:port]` (RFC 9112 section 3.2: answer 400).
    HostValue,
    /// A `Content-Length` that is not a plain decimal number.
    ContentLength,
    /// Two `Content-Length` fields with different values.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the classic smuggling ambiguity.
    LengthWithTransferEncoding,
    /// `chunked` is not the last transfer coding, or appears twice: the body length cannot be
    /// known (RFC 9112 section 6.3: answer 400 and close).
    ChunkedNotLast,
    /// `Transfer-Encoding` in an HTTP/1.0 request: 1.0 has no transfer codings, so the
    /// framing is faulty (RFC 9112 section 6.1).
    TransferEncodingInHttp10,
    /// A coding this server does not decode (`gzip`) before the final `chunked`.
    UnsupportedTransferEncoding,
    /// Broken chunked framing: a bad size line, or a chunk not followed by CRLF.
    Chunk,
    /// The request line is longer than [`Limits::request_line`].
    RequestLineTooLong,
    /// The head is longer than [`Limits::head`].
    HeadTooLarge,
    /// More header fields than [`Limits::headers`].
    TooManyHeaders,
    /// The body is (or says it will be) larger than [`Limits::body`].
    BodyTooLarge,
}

impl ParseError {
    /// Every rule the parser enforces, one error each: the fault suite breaks each of them
    /// through a live socket.
    pub const ALL: [ParseError; 23] = [
        ParseError::Method,
        ParseError::Target,
        ParseError::Version,
        ParseError::UnsupportedVersion,
        ParseError::BareCr,
        ParseError::ObsFold,
        ParseError::SpaceBeforeColon,
        ParseError::HeaderName,
        ParseError::HeaderValue,
        ParseError::MissingHost,
        ParseError::DuplicateHost,
        ParseError::HostValue,
        ParseError::ContentLength,
        ParseError::ConflictingContentLength,
        ParseError::LengthWithTransferEncoding,
        ParseError::ChunkedNotLast,
        ParseError::TransferEncodingInHttp10,
        ParseError::UnsupportedTransferEncoding,
        ParseError::Chunk,
        ParseError::RequestLineTooLong,
        ParseError::HeadTooLarge,
        ParseError::TooManyHeaders,
        ParseError::BodyTooLarge,
    ];

    /// The status code a server answers this error with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Method => "invalid method: it must be a token such as GET",
            ParseError::Target => "invalid request target: no spaces or control bytes",
            ParseError::Version => {
                "invalid request line: expected METHOD SP TARGET SP HTTP/x.y CRLF"
            }
            ParseError::UnsupportedVersion => "HTTP version not supported: use 1.0 or 1.1",
            ParseError::BareCr => "a CR not followed by LF",
            ParseError::ObsFold => "a line starts with whitespace (obsolete line folding)",
            ParseError::SpaceBeforeColon => "whitespace between a field name and its colon",
            ParseError::HeaderName => "invalid header field name, or a line without a colon",
            ParseError::HeaderValue => "a control byte in a header field value",
            ParseError::MissingHost => "an HTTP/1.1 request needs a Host field",
            ParseError::DuplicateHost => "more than one Host field",
            ParseError::HostValue => "the Host field is not a host name with an optional :port",
            ParseError::ContentLength => "Content-Length is not a plain decimal number",
            ParseError::ConflictingContentLength => "two Content-Length fields disagree",
            ParseError::LengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding: the body length is ambiguous"
            }
            ParseError::ChunkedNotLast => {
                "chunked must be the last transfer coding, and appear once: the body length is unknown"
            }
            ParseError::TransferEncodingInHttp10 => {
                "Transfer-Encoding in an HTTP/1.0 request: the body length is unknown"
            }
            ParseError::UnsupportedTransferEncoding => {
                "only Transfer-Encoding: chunked is supported"
            }
            ParseError::Chunk => "invalid chunked body",
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "request head too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::BodyTooLarge => "request body too large",
        })
    }
}

impl std::error::Error for ParseError {}

impl Head {
    /// Parses the head at the start of `buf`.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Status<Head>, ParseError> {
        let mut cursor = Cursor { buf, pos: 0 };

        // RFC 9112 section 2.2: a server SHOULD ignore empty lines before the request line
        // (some clients send a stray CRLF after a POST body).
        loop {
            match cursor.line_end() {
                LineEnd::Found(width) => cursor.pos += width,
                LineEnd::NeedMore => return partial(buf, cursor.pos, limits, false),
                LineEnd::BareCr => return Err(ParseError::BareCr),
                LineEnd::No => break,
            }
        }

        // The request line: method SP target SP version CRLF, exactly one space each.
        let line_start = cursor.pos;
        let method = match cursor.take_while(is_tchar) {
            Taken::Stopped(method) if !method.is_empty() => method,
            Taken::Stopped(_) => return Err(ParseError::Method),
            Taken::NeedMore => return partial(buf, line_start, limits, true),
        };
        match cursor.peek() {
            Some(b' ') => cursor.pos += 1,
            Some(_) => return Err(ParseError::Method),
            None => return partial(buf, line_start, limits, true),
        }
        let target = match cursor.take_while(|byte| (0x21..=0x7e).contains(&byte)) {
            Taken::Stopped(target) if !target.is_empty() => target,
            Taken::Stopped(_) => return Err(ParseError::Target),
            Taken::NeedMore => return partial(buf, line_start, limits, true),
        };
        match cursor.peek() {
            Some(b' ') => cursor.pos += 1,
            Some(_) => return Err(ParseError::Target),
            None => return partial(buf, line_start, limits, true),
        }
        let version = match cursor.version() {
            Taken::Stopped(Some(version)) => version,
            Taken::Stopped(None) => return Err(ParseError::Version),
            Taken::NeedMore => return partial(buf, line_start, limits, true),
        };
        match cursor.line_end() {
            LineEnd::Found(width) => cursor.pos += width,
            LineEnd::NeedMore => return partial(buf, line_start, limits, true),
            LineEnd::BareCr => return Err(ParseError::BareCr),
            LineEnd::No => return Err(ParseError::Version),
        }
        if cursor.pos - line_start > limits.request_line {
            return Err(ParseError::RequestLineTooLong);
        }
        // Only now that the line is known to be well formed: an unknown version is 505, not 400.
        // RFC 9110 section 2.5: a higher minor version of a major version we speak is treated
        // as the highest minor we know, so `HTTP/1.2` is served as 1.1. Only the major is fatal.
        let version = match version {
            (1, 0) => Version::Http10,
            (1, _) => Version::Http11,
            _ => return Err(ParseError::UnsupportedVersion),
        };

        // Header fields, until the empty line.
        let mut headers = Vec::new();
        loop {
            let line_start = cursor.pos;
            let (name, value) = match cursor.field_line()? {
                FieldLine::End => break,
                FieldLine::Field { name, value } => (name, value),
                FieldLine::NeedMore => return partial(buf, line_start, limits, false),
            };
            if headers.len() == limits.headers {
                return Err(ParseError::TooManyHeaders);
            }
            headers.push(Header {
                name: ascii(name),
                value: value.to_vec(),
            });
        }
        if cursor.pos > limits.head {
            return Err(ParseError::HeadTooLarge);
        }

        let framing = framing(version, &headers, limits)?;
        Ok(Status::Complete(Head {
            method: ascii(method),
            target: ascii(target),
            version,
            headers,
            framing,
            len: cursor.pos,
        }))
    }

    /// The value of the first field called `name` (compared ignoring ASCII case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_slice())
    }

    /// Whether the client lets the connection stay open after this request: HTTP/1.1 unless
    /// it says `Connection: close`, HTTP/1.0 only if it says `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let says = |option: &str| {
            self.headers
                .iter()
                .filter(|header| header.name.eq_ignore_ascii_case("connection"))
                .flat_map(|header| header.value.split(|&byte| byte == b','))
                .any(|token| trim_whitespace(token).eq_ignore_ascii_case(option.as_bytes()))
        };
        match self.version {
            Version::Http11 => !says("close"),
            Version::Http10 => says("keep-alive"),
        }
    }

    /// The request line without its CRLF, as logs show it: `GET / HTTP/1.1`.
    pub fn request_line(&self) -> String {
        format!("{} {} {}", self.method, self.target, self.version)
    }

    /// Which of RFC 9112's four forms the target has (section 3.2).
    pub fn target_form(&self) -> Target<'_> {
        Target::of(&self.target)
    }

    /// The host the client asked for. RFC 9112 section 3.2.2: with an absolute-form target,
    /// the host is the target's authority and the Host field is ignored; otherwise it is the
    /// Host field (absent only in HTTP/1.0).
    pub fn host(&self) -> Option<&[u8]> {
        match self.target_form() {
            Target::Absolute { authority, .. } => Some(authority.as_bytes()),
            _ => self.header("host"),
        }
    }
}

/// The four forms of request target (RFC 9112 section 3.2), and none of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`, what browsers send to a server (section 3.2.1).
    Origin(&'a str),
    /// `http://host:port/path?query` (section 3.2.2): what a client sends to a proxy, and a
    /// server MUST accept it too. `path` is the origin-form inside it: the path and query,
    /// `/` when the URI has no path.
    Absolute {
        scheme: &'a str,
        authority: &'a str,
        path: String,
    },
    /// `host:port` (section 3.2.3), only for CONNECT.
    Authority(&'a str),
    /// `*` (section 3.2.4), only for a server-wide OPTIONS.
    Asterisk,
    /// Visible ASCII, but none of the above (`http://a b`, `a:b:c`): 400.
    Invalid(&'a str),
}

impl<'a> Target<'a> {
    /// Classifies a target the parser accepted (visible ASCII, no spaces).
    pub fn of(target: &'a str) -> Target<'a> {
        if target == "*" {
            return Target::Asterisk;
        }
        if target.starts_with('/') {
            return Target::Origin(target);
        }
        // absolute-URI = scheme ":" hier-part; HTTP's is "//" authority path-abempty.
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 section 3.1).
        if let Some((scheme, rest)) = target.split_once("://")
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"+-.".contains(&byte))
        {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            // A fragment is never sent in a request target (RFC 9110 section 4.2.5).
            if authority.is_empty() || !is_host_value(authority.as_bytes()) || path.contains('#') {
                return Target::Invalid(target);
            }
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            return Target::Absolute {
                scheme,
                authority,
                path,
            };
        }
        if is_host_value(target.as_bytes()) && target.contains(':') {
            return Target::Authority(target);
        }
        Target::Invalid(target)
    }
}

impl Request {
    /// Parses a whole request, head and body, at the start of `buf`. Stateless: a caller
    /// that calls again with more bytes should use a [`RequestReader`] instead, which does
    /// not decode the same chunks again on every call.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Status<Request>, ParseError> {
        RequestReader::new(*limits).parse(buf)
    }
}

/// One request read from a buffer that grows between calls, as a server's receive buffer
/// does. Same answers as [`Request::parse`] on the same bytes (`tests/faults_http.rs`
/// checks it), but it remembers the head and the chunks already decoded, so each `recv`
/// costs the bytes it brought, not the whole request so far.
///
/// Why it matters: a peer trickling a 2 MiB chunked body in small segments makes tens of
/// thousands of `recv`s; decoding from the start each time is quadratic, and one such peer
/// kept a core busy for the whole request timeout (found by the fault suite, issue 7).
///
/// One reader per request, and the buffer must only grow at the end between calls.
#[derive(Debug)]
pub struct RequestReader {
    limits: Limits,
    head: Option<Head>,
    chunks: Chunks,
}

/// A chunked body decoded so far: the whole chunks (each with its line end) at the start of
/// the body bytes, and their data.
#[derive(Debug, Default)]
struct Chunks {
    decoded_up_to: usize,
    body: Vec<u8>,
}

impl RequestReader {
    pub fn new(limits: Limits) -> RequestReader {
        RequestReader {
            limits,
            head: None,
            chunks: Chunks::default(),
        }
    }

    /// The head, once it is complete (a server looks for `Expect: 100-continue` here).
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Parses the request at the start of `buf`: everything received so far.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Status<Request>, ParseError> {
        let RequestReader {
            limits,
            head,
            chunks,
        } = self;
        let head = match head {
            Some(head) => head,
            None => match Head::parse(buf, limits)? {
                Status::Complete(parsed) => head.insert(parsed),
                Status::Partial => return Ok(Status::Partial),
            },
        };
        let after_head = &buf[head.len..];
        let (body, body_len) = match head.framing {
            // Only chunked framing has progress worth keeping; a length is one slice.
            Framing::Chunked => match decode_chunked(after_head, limits, chunks)? {
                Status::Complete(used) => (std::mem::take(&mut chunks.body), used),
                Status::Partial => return Ok(Status::Partial),
            },
            framing => match decode_body(framing, after_head, limits)? {
                Status::Complete(body) => body,
                Status::Partial => return Ok(Status::Partial),
            },
        };
        Ok(Status::Complete(Request {
            len: head.len + body_len,
            head: head.clone(),
            body,
        }))
    }
}

/// Decodes the body framed by `framing` at the start of `buf` (the bytes after the head).
/// Returns the body and how many bytes of `buf` it used.
pub fn decode_body(
    framing: Framing,
    buf: &[u8],
    limits: &Limits,
) -> Result<Status<(Vec<u8>, usize)>, ParseError> {
    match framing {
        Framing::Empty => Ok(Status::Complete((Vec::new(), 0))),
        Framing::Length(length) => {
            // `framing` already checked length against limits.body, so it fits in usize.
            let length = usize::try_from(length).map_err(|_| ParseError::BodyTooLarge)?;
            match buf.get(..length) {
                Some(body) => Ok(Status::Complete((body.to_vec(), length))),
                None => Ok(Status::Partial),
            }
        }
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            Ok(match decode_chunked(buf, limits, &mut chunks)? {
                Status::Complete(used) => Status::Complete((chunks.body, used)),
                Status::Partial => Status::Partial,
            })
        }
    }
}

/// The longest chunk-size line accepted, extensions included. Real clients send a few hex
/// digits; this keeps a peer from hiding an endless line there.
const MAX_CHUNK_LINE: usize = 1024;

/// Framing can make the encoded body much longer than the decoded one (tiny chunks, long
/// extensions); this caps what the caller has to buffer for it.
fn max_encoded_body(limits: &Limits) -> usize {
    limits.body.saturating_mul(2).saturating_add(4096)
}

/// `chunked`: `size-in-hex [;ext] CRLF data CRLF`, repeated, then `0 CRLF`, optional trailer
/// fields, and an empty line. It resumes after the chunks `chunks` already holds, and adds
/// each chunk only once its line end has arrived, so a `Partial` leaves `chunks` at a chunk
/// boundary for the next call. Returns how many bytes of `buf` the body used.
fn decode_chunked(
    buf: &[u8],
    limits: &Limits,
    chunks: &mut Chunks,
) -> Result<Status<usize>, ParseError> {
    let max_encoded = max_encoded_body(limits);
    let mut cursor = Cursor {
        buf,
        pos: chunks.decoded_up_to,
    };
    loop {
        if cursor.pos > max_encoded {
            return Err(ParseError::BodyTooLarge);
        }
        let line_start = cursor.pos;
        // Fifteen hex digits already exceed any sane limit; more could overflow a u64. Checked
        // on partial input too: an endless run of digits must not be buffered forever.
        const MAX_SIZE_DIGITS: usize = 15;
        let digits = match cursor.take_while(|byte| byte.is_ascii_hexdigit()) {
            Taken::Stopped(digits) if digits.len() > MAX_SIZE_DIGITS => {
                return Err(ParseError::BodyTooLarge);
            }
            Taken::Stopped(digits) if !digits.is_empty() => digits,
            Taken::Stopped(_) => return Err(ParseError::Chunk),
            Taken::NeedMore if cursor.pos - line_start > MAX_SIZE_DIGITS => {
                return Err(ParseError::BodyTooLarge);
            }
            Taken::NeedMore => return Ok(Status::Partial),
        };
        let size = digits
            .iter()
            .fold(0u64, |size, &digit| size * 16 + hex_value(digit));
        // Chunk extensions (`;name=value`) have no meaning here; skip them, bounded.
        if cursor.peek() == Some(b';') {
            match cursor.take_while(is_field_byte) {
                Taken::Stopped(_) => {}
                Taken::NeedMore if cursor.pos - line_start > MAX_CHUNK_LINE => {
                    return Err(ParseError::Chunk);
                }
                Taken::NeedMore => return Ok(Status::Partial),
            }
        }
        if cursor.pos - line_start > MAX_CHUNK_LINE {
            return Err(ParseError::Chunk);
        }
        match cursor.line_end() {
            LineEnd::Found(width) => cursor.pos += width,
            LineEnd::NeedMore => return Ok(Status::Partial),
            LineEnd::BareCr | LineEnd::No => return Err(ParseError::Chunk),
        }
        if size == 0 {
            return finish_trailer(cursor, limits);
        }
        // Checked before waiting for the data: a peer announcing a huge chunk is answered now.
        if size > (limits.body - chunks.body.len()) as u64 {
            return Err(ParseError::BodyTooLarge);
        }
        let size = size as usize; // fits: it is at most limits.body
        let Some(data) = buf.get(cursor.pos..).and_then(|rest| rest.get(..size)) else {
            return Ok(Status::Partial);
        };
        cursor.pos += size;
        match cursor.line_end() {
            LineEnd::Found(width) => cursor.pos += width,
            LineEnd::NeedMore => return Ok(Status::Partial),
            LineEnd::BareCr | LineEnd::No => return Err(ParseError::Chunk),
        }
        // The whole chunk is in: keep it, and never look at its bytes again.
        chunks.body.extend_from_slice(data);
        chunks.decoded_up_to = cursor.pos;
    }
}

/// After the last chunk: trailer fields until the empty line. They are checked by the same
/// rules as header fields (a lenient trailer would be a second, weaker head parser) and then
/// dropped. Their size counts against [`Limits::head`] and their number against
/// [`Limits::headers`], checked whether or not the input stops at a line end, so the verdict
/// does not depend on how the bytes were split across `recv`s.
fn finish_trailer(mut cursor: Cursor<'_>, limits: &Limits) -> Result<Status<usize>, ParseError> {
    let trailer_start = cursor.pos;
    let mut fields = 0;
    loop {
        let line = cursor.field_line()?;
        // On partial input, everything received so far belongs to the trailer.
        let end = match line {
            FieldLine::NeedMore => cursor.buf.len(),
            _ => cursor.pos,
        };
        if end - trailer_start > limits.head {
            return Err(ParseError::HeadTooLarge);
        }
        match line {
            FieldLine::End => return Ok(Status::Complete(cursor.pos)),
            FieldLine::NeedMore => return Ok(Status::Partial),
            FieldLine::Field { .. } if fields == limits.headers => {
                return Err(ParseError::TooManyHeaders);
            }
            FieldLine::Field { .. } => fields += 1,
        }
    }
}

/// Decides the body's framing from the fields, rejecting every ambiguous combination.
fn framing(version: Version, headers: &[Header], limits: &Limits) -> Result<Framing, ParseError> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
    };
    // RFC 9112 section 3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
    match named("host").count() {
        0 if version == Version::Http11 => return Err(ParseError::MissingHost),
        0 | 1 => {}
        _ => return Err(ParseError::DuplicateHost),
    }
    if named("host").any(|host| !is_host_value(&host.value)) {
        return Err(ParseError::HostValue);
    }

    let mut content_length = None;
    for header in named("content-length") {
        let value = &header.value;
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::ContentLength);
        }
        // Too many digits for a u64 is certainly too large; never an overflow panic.
        let length = value
            .iter()
            .try_fold(0u64, |length, &digit| {
                length.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            })
            .ok_or(ParseError::BodyTooLarge)?;
        if content_length.is_some_and(|first| first != length) {
            return Err(ParseError::ConflictingContentLength);
        }
        content_length = Some(length);
    }

    // RFC 9112 section 6.1 and 6.3. The field is a list: empty elements (`chunked,`) are
    // allowed and ignored; several fields are one list in order.
    let mut transfer_encoding = named("transfer-encoding").peekable();
    if transfer_encoding.peek().is_some() {
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingInHttp10);
        }
        // A server MAY instead drop Content-Length and use chunked; refusing is the one
        // choice no front end can disagree with.
        if content_length.is_some() {
            return Err(ParseError::LengthWithTransferEncoding);
        }
        let codings: Vec<&[u8]> = transfer_encoding
            .flat_map(|header| header.value.split(|&byte| byte == b','))
            .map(trim_whitespace)
            .filter(|coding| !coding.is_empty())
            .collect();
        let is_chunked = |coding: &&[u8]| coding.eq_ignore_ascii_case(b"chunked");
        return match codings.split_last() {
            // Without chunked last, only closing the connection would end the body: a
            // server MUST answer 400. Chunked twice is framing applied twice: also 400.
            Some((last, before)) if is_chunked(last) && !before.iter().any(is_chunked) => {
                if before.is_empty() {
                    Ok(Framing::Chunked)
                } else {
                    Err(ParseError::UnsupportedTransferEncoding)
                }
            }
            _ => Err(ParseError::ChunkedNotLast),
        };
    }
    match content_length {
        Some(length) if length > limits.body as u64 => Err(ParseError::BodyTooLarge),
        Some(length) => Ok(Framing::Length(length)),
        None => Ok(Framing::Empty),
    }
}

/// Every parse that runs out of input ends here: `Partial`, or an error if what has arrived
/// is already over a limit, so a peer that never finishes is stopped at the limit. On partial
/// input every byte received belongs to the head.
fn partial<T>(
    received: &[u8],
    line_start: usize,
    limits: &Limits,
    in_request_line: bool,
) -> Result<Status<T>, ParseError> {
    if in_request_line && received.len() - line_start > limits.request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    if received.len() > limits.head {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(Status::Partial)
}

/// A read position in the received bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Taken<T> {
    /// Stopped at a byte that did not match (not consumed).
    Stopped(T),
    /// Ran out of input while still matching.
    NeedMore,
}

/// One line of a field section (the head's header fields, or a chunked body's trailer).
enum FieldLine<'a> {
    /// The empty line that ends the section, consumed.
    End,
    /// `name: value`, consumed; the value without its surrounding whitespace.
    Field { name: &'a [u8], value: &'a [u8] },
    /// The line is not over yet; the cursor is left somewhere inside it.
    NeedMore,
}

enum LineEnd {
    /// A line ends here, this many bytes wide: CRLF (2) or a bare LF (1).
    Found(usize),
    /// A CR is the last byte so far: it may be half a CRLF.
    NeedMore,
    /// A CR followed by something other than LF.
    BareCr,
    /// No line end here.
    No,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Consumes bytes while `matches` holds.
    fn take_while(&mut self, matches: impl Fn(u8) -> bool) -> Taken<&'a [u8]> {
        let start = self.pos;
        while let Some(byte) = self.peek() {
            if !matches(byte) {
                return Taken::Stopped(&self.buf[start..self.pos]);
            }
            self.pos += 1;
        }
        Taken::NeedMore
    }

    /// Whether a line ends at the cursor. RFC 9112 lets a recipient accept a bare LF as a line
    /// end (`nc` without `-C` sends those); a bare CR it must reject.
    fn line_end(&self) -> LineEnd {
        match (self.peek(), self.buf.get(self.pos + 1)) {
            (Some(b'\n'), _) => LineEnd::Found(1),
            (Some(b'\r'), Some(b'\n')) => LineEnd::Found(2),
            (Some(b'\r'), None) => LineEnd::NeedMore,
            (Some(b'\r'), Some(_)) => LineEnd::BareCr,
            (None, _) => LineEnd::NeedMore,
            (Some(_), _) => LineEnd::No,
        }
    }

    /// One field line or the empty line, by RFC 9112 section 5: `name ":" OWS value OWS`, the
    /// name a token with no space before the colon, no line folding, no control bytes.
    fn field_line(&mut self) -> Result<FieldLine<'a>, ParseError> {
        match self.line_end() {
            LineEnd::Found(width) => {
                self.pos += width;
                return Ok(FieldLine::End);
            }
            LineEnd::NeedMore => return Ok(FieldLine::NeedMore),
            LineEnd::BareCr => return Err(ParseError::BareCr),
            LineEnd::No => {}
        }
        if matches!(self.peek(), Some(b' ' | b'\t')) {
            return Err(ParseError::ObsFold);
        }
        let name = match self.take_while(is_tchar) {
            Taken::Stopped(name) => name,
            Taken::NeedMore => return Ok(FieldLine::NeedMore),
        };
        match self.peek() {
            Some(b':') if !name.is_empty() => self.pos += 1,
            Some(b' ' | b'\t') => return Err(ParseError::SpaceBeforeColon),
            Some(_) => return Err(ParseError::HeaderName),
            None => return Ok(FieldLine::NeedMore),
        }
        let value = match self.take_while(is_field_byte) {
            Taken::Stopped(value) => value,
            Taken::NeedMore => return Ok(FieldLine::NeedMore),
        };
        match self.line_end() {
            LineEnd::Found(width) => self.pos += width,
            LineEnd::NeedMore => return Ok(FieldLine::NeedMore),
            LineEnd::BareCr => return Err(ParseError::BareCr),
            LineEnd::No => return Err(ParseError::HeaderValue),
        }
        Ok(FieldLine::Field {
            name,
            value: trim_whitespace(value),
        })
    }

    /// `HTTP/` DIGIT `.` DIGIT, as (major, minor); `None` if the bytes are not that shape.
    fn version(&mut self) -> Taken<Option<(u8, u8)>> {
        const SHAPE: &[u8] = b"HTTP/0.0";
        for (offset, &expected) in SHAPE.iter().enumerate() {
            let Some(&byte) = self.buf.get(self.pos + offset) else {
                self.pos += offset;
                return Taken::NeedMore;
            };
            let fits = match expected {
                b'0' => byte.is_ascii_digit(),
                _ => byte == expected,
            };
            if !fits {
                return Taken::Stopped(None);
            }
        }
        let major = self.buf[self.pos + 5] - b'0';
        let minor = self.buf[self.pos + 7] - b'0';
        self.pos += SHAPE.len();
        Taken::Stopped(Some((major, minor)))
    }
}

/// RFC 9112 section 3.2 / RFC 3986: `uri-host [ ":" port ]`, or empty (a client MUST send an
/// empty Host when the target has no authority). The host is a name or IPv4 address
/// (`reg-name`: unreserved, `%XX`, sub-delims) or an IPv6 literal in brackets; the port is
/// digits. Anything else (spaces, `/`, `@`, a second colon) is a 400.
fn is_host_value(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(close) = literal.iter().position(|&byte| byte == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let fits = |byte: &u8| byte.is_ascii_hexdigit() || b":.".contains(byte);
        if inside.is_empty() || !inside.iter().all(fits) {
            return false;
        }
        (&[][..], &literal[close + 1..])
    } else {
        match value.iter().position(|&byte| byte == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &[][..]),
        }
    };
    let reg_name = |byte: &u8| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(byte);
    // Each `%` starts a `%XX` escape: two hex digits.
    let mut rest = host;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = match (byte, tail) {
            (b'%', [high, low, after @ ..])
                if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
            {
                after
            }
            (byte, tail) if reg_name(&byte) => tail,
            _ => return false,
        };
    }
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// RFC 9110 `tchar`: the bytes allowed in a method or a field name.
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Bytes allowed in a field value: visible ASCII, space, tab and `obs-text` (0x80 and up).
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn hex_value(digit: u8) -> u64 {
    u64::from(match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    })
}

/// Bytes the parser has already checked are ASCII (tokens and targets).
fn ascii(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

#[cfg(test)]
mod target_tests {
    use super::Target;

    #[test]
    fn each_form_of_target_is_told_apart() {
        assert_eq!(Target::of("/a?b"), Target::Origin("/a?b"));
        assert_eq!(Target::of("*"), Target::Asterisk);
        assert_eq!(Target::of("a:443"), Target::Authority("a:443"));
        assert_eq!(
            Target::of("http://a:80/x?y"),
            Target::Absolute {
                scheme: "http",
                authority: "a:80",
                path: "/x?y".into()
            }
        );
        assert_eq!(
            Target::of("HTTP://a?q"),
            Target::Absolute {
                scheme: "HTTP",
                authority: "a",
                path: "/?q".into()
            }
        );
        for invalid in [
            "http://",
            "http://a b",
            "http://u@a/",
            "http://a/#f",
            "1http://a/",
            "a",
        ] {
            assert_eq!(Target::of(invalid), Target::Invalid(invalid), "{invalid}");
        }
    }
}
