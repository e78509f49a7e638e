//! The web server, end to end: a real server on port 0, real sockets on 127.0.0.1.
//!
//! First raw sockets, writing request bytes by hand and asserting the exact response bytes
//! (only the `Date` value varies, so it is matched as `[..]`). Then the clients a learner
//! would use: curl, Python's `http.client` and headless Chromium. A test whose tool is not
//! installed says so and returns; `.ci/run` installs them.
//!
//! No test sleeps to wait for something: each waits on a read, a process exit or a join, and
//! every wait is bounded (socket timeouts, curl's `--max-time`, `timeout(1)`).
//!
//! These cases run on every engine the web server has: this file on the thread pool,
//! `http_server_epoll.rs` on the event loop (the cases are in `engines/http_server.rs`).

mod common;

const ENGINE: socket_lab::engine::Engine = socket_lab::engine::Engine::Threads;

include!("engines/http_server.rs");
