//! # socket-lab
//!
//! A lab for learning how programs talk over sockets. It follows the classic Python
//! walkthrough (`socket` → `bind` → `listen(backlog)` → `accept` → `recv`/`send` → `close`)
//! and proves or corrects each of its claims with a test.
//!
//! # Layout
//!
//! - [`endpoint`]: addresses, and the TCP/Unix listener and stream every server shares.
//! - [`engine`]: how servers wait for many clients: one at a time, a thread each, an event loop.
//! - [`server`]: the ack server, the walkthrough's `server.py`.
//! - [`client`]: the interactive client, the walkthrough's `client.py`.
//! - [`udp`]: the same server and client over datagrams (`SOCK_DGRAM`: UDP and Unix).
//! - [`mod@bench`]: `socket-lab bench`, a load generator for the ack protocol: msgs/s, p50/p99.
//! - [`backlog`]: `listen(backlog)` watched from the client side: connects that wait.
//! - [`send`]: `send` returns a count; `send_all` loops until every byte is out.
//! - [`options`]: socket options worth knowing: `SO_REUSEADDR`, `TCP_NODELAY`, buffer sizes.
//! - [`poll`]: waiting on several sockets at once, the one `unsafe` call for it.
//! - [`error`]: every failure in the user's words, with a hint and an exit code.
//! - [`escape`]: showing bytes a peer sent without letting them drive the terminal.
//! - [`kernel`]: what the kernel decides, read on this machine: sysctls, TCP socket states.
//! - [`namespace`]: a private user and network namespace, so an ordinary user may capture.
//! - [`wire`]: every segment on loopback, from a packet socket: the wire's view of a lesson.
//! - [`http`]: HTTP on the raw socket: request parser, response builder, web server.
//! - [`check`]: `socket-lab check`, a report card for a learner's own server.
//! - [`claims`]: the walkthrough's claims, read from `CLAIMS.md`.
//! - [`proxy`]: a hostile network between a client and a server: split, delay, merge, cut.
//! - [`scenario`]: lesson files in `scenarios/`: parsed, run against a real server, narrated.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit codes; tests use
//! this library directly and the binary through `assert_cmd`.

pub mod backlog;
pub mod bench;
pub mod check;
pub mod claims;
pub mod client;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod escape;
pub mod http;
pub mod kernel;
pub mod namespace;
pub mod options;
pub mod poll;
pub mod proxy;
pub mod scenario;
pub mod send;
pub mod server;
pub mod udp;
pub mod wire;

pub use endpoint::{Address, Endpoint, EndpointError};
pub use error::Error;
