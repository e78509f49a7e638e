//! `tests/faults.rs`'s hostile clients against the ack server on the event loop
//! (`--engine epoll`): the same attacks, the same answers, the same bounds.

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Epoll;

include!("engines/faults.rs");
