//! Hostile input against the web server (issue 7, HTTP half): every case attacks a real
//! server through a real socket, then checks the same server still serves a fresh client.
//!
//! A web server on the open internet meets every shape of broken request: malformed lines,
//! framing tricks meant to make two parsers disagree about where a request ends (request
//! smuggling), peers that send one byte every few seconds to hold a connection (slowloris),
//! lengths meant to make it allocate, markup meant to be echoed into a page. What these tests
//! prove, with the numbers:
//!
//! | attack | what the server does |
//! |---|---|
//! | each parser rule broken | its status (400, 408, 413, 414, 431, 501, 505), `Connection: close`, a clean FIN; a request pipelined after it is never parsed |
//! | 160 requests from RFC 9110/9112 (`tests/http_conformance.txt`) | the parser and the live server both give the table's verdict |
//! | smuggling shapes (CL+TE, two CLs, `+5`, `-1`, `0x10`, `1,2`, bad chunk sizes, obs-fold, space before colon, bare CR, two Hosts, none) | refused, by the parser and the server alike |
//! | bare LF line ends | accepted everywhere, head and chunked body alike, and read as CRLF would be |
//! | 500 slowloris connections, one byte every 0.5 s | a normal client still answered within 1 s; each slow one gets 408 at the request deadline |
//! | `Content-Length: 999999999999` | 413 at once; peak memory of the process stays under 16 MiB |
//! | a body that never arrives | 408 at the request deadline |
//! | 6 pipelined requests in one write | 6 responses, in order, each framed right |
//! | 20 clients that reset mid-response | descriptors back to baseline; at most one pooled worker thread per client |
//! | a client that pipelines 3000 requests and never reads | its worker's `send` times out and frees the slot (one slot: a fresh client served in under 5 s) |
//! | a chunked body trickled in 64-byte pieces | each byte decoded once, not once per `recv` |
//! | markup in the target, a header, a form | shown HTML-escaped |
//! | `%0d%0a` in the path | stays in the body, never becomes a header |
//! | `..`, `%2e%2e`, `%2f`, NUL in the path | 404: the site serves no files, nothing reaches the file system |
//!
//! Timeouts are configured short (a second or two) so each slow case takes a few seconds;
//! the server's defaults (10 s) behave the same, only slower.
//!
//! These cases run on both of the web server's engines: this file on the thread pool,
//! `faults_http_epoll.rs` on the event loop (the cases are in `engines/faults_http.rs`).

mod faults_http_common;

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Threads;

include!("engines/faults_http.rs");
