//! # socket-lab
//!
//! A lab for learning how programs talk over sockets. It follows the classic Python
//! walkthrough (`socket` → `bind` → `listen(backlog)` → `accept` → `recv`/`send` → `close`)
//! and proves or corrects each of its claims with a test.
//!
//! # Layout
//!
//! - [`endpoint`]: addresses, and the TCP/Unix listener and stream every server shares.
//! - [`server`]: the ack server, the walkthrough's `server.py`.
//! - [`client`]: the interactive client, the walkthrough's `client.py`.
//! - [`error`]: every failure in the user's words, with a hint and an exit code.
//! - [`escape`]: showing bytes a peer sent without letting them drive the terminal.
//! - [`http`]: HTTP on the raw socket: request parser, response builder, web server.
//!
//! The binary (`src/main.rs`) only parses arguments and maps errors to exit codes; tests use
//! this library directly and the binary through `assert_cmd`.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod escape;
pub mod http;
pub mod server;

pub use endpoint::{Address, Endpoint};
pub use error::Error;
