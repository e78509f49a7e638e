//! HTTP on the raw socket: the walkthrough's coda, built properly.
//!
//! The walkthrough ends by pointing a browser at its ack server. The browser connects and
//! sends a request (claim 14: request line, header fields, "an empty line after all header
//! fields"); the server prints it and answers `server recv success`. Then it claims a web
//! server can be written on the same socket: parse the request by the spec, build the HTML
//! response, send it back (claim 17). This module does exactly that, in three parts:
//!
//! - [`request`]: an incremental, strict HTTP/1.1 request parser over bytes. "Need more
//!   bytes" is [`request::Status::Partial`], not an error; each rejection is a
//!   [`request::ParseError`] that knows its status code; limits stop peers that never finish.
//! - [`response`]: status line, `Date`, `Content-Type`, `Content-Length`, `Connection`, the
//!   empty line and the body, encoded into one buffer and sent with one write (claim 16).
//! - [`server`]: `socket-lab http`, built on the same accept loop as the ack server, with
//!   keep-alive, pipelining, HTTP/1.0, timeouts, and one log line per request.
//! - [`site`]: the pages: `/` shows the browser its own request, parsed and explained.
//!
//! What the walkthrough's ack reply actually does in a browser: it has no status line, so it
//! is an HTTP/0.9 response, and Chromium refuses HTTP/0.9 on ports other than 80; `curl`
//! only shows it with `--http0.9`. A status line is what makes a reply HTTP/1.x.
//!
//! Proofs: `tests/http_parser.rs` (a table of parser cases and a differential property test
//! against the `httparse` crate) and `tests/engines/http_server.rs` (raw sockets with exact bytes,
//! then curl, Python's `http.client` and headless Chromium against a server on port 0).

pub mod conversation;
pub mod request;
pub mod response;
pub mod server;
pub mod site;
