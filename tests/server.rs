//! The ack server through the library: started in-process on port 0, driven over real sockets.
//!
//! The cases are in `engines/ack_server.rs`, compiled once per engine.

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Threads;

include!("engines/ack_server.rs");
