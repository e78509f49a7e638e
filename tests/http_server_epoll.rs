//! `tests/http_server.rs`'s cases, on the event loop (`--engine epoll`): the web server must
//! answer the same bytes with the same bytes, and log the same lines, whichever engine runs it.

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Epoll;

include!("engines/http_server.rs");
