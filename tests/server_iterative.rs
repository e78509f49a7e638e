//! `tests/server.rs`'s cases for the ack server, on the walkthrough's one-client-at-a-time loop (`--engine iterative`).
//!
//! The cases are in `engines/ack_server.rs`, compiled once per engine.

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Iterative;

include!("engines/ack_server.rs");
