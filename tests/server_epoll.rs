//! `tests/server.rs`'s cases for the ack server, on the event loop (`--engine epoll`).
//!
//! The cases are in `engines/ack_server.rs`, compiled once per engine.

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Epoll;

include!("engines/ack_server.rs");
