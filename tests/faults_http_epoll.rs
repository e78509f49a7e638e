//! `tests/faults_http.rs`'s hostile clients, against the web server on the event loop
//! (`--engine epoll`): the same attacks, the same answers, the same bounds.

mod faults_http_common;

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Epoll;

include!("engines/faults_http.rs");
