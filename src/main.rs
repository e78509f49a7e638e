//! The `socket-lab` command: argument parsing and exit codes over the library.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use socket_lab::client::Client;
use socket_lab::http::request::Limits;
use socket_lab::http::server::{self as http_server, HttpConfig, HttpEvent, HttpServer};
use socket_lab::server::{self, Event, Server, ServerConfig};
use socket_lab::{Endpoint, Error};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a socket call failed
  2  bad arguments
  3  cannot bind: address already in use (or not available)
  4  cannot bind: permission denied (ports below 1024)
  5  cannot resolve the host name
  6  cannot connect (connection refused, timed out)
  7  the connection was lost mid-session";

/// A lab for learning how programs talk over sockets.
#[derive(Parser)]
#[command(version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The ack server: logs every message and answers "server recv success".
    #[command(after_help = EXIT_CODES)]
    Server(ServerArgs),
    /// The interactive client: sends each line typed, prints the answer, quits on `q`.
    #[command(after_help = EXIT_CODES)]
    Client(ClientArgs),
    /// The web server: shows a browser its own request, parsed (open http://localhost:10000/).
    #[command(after_help = EXIT_CODES)]
    Http(HttpArgs),
}

#[derive(Args)]
struct Target {
    /// Host name or address (127.0.0.1, ::1, localhost).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// TCP port; the server takes 0 to mean "any free port".
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    port: u16,
    /// Use a Unix domain socket at this path instead of TCP.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    unix: Option<PathBuf>,
}

impl Target {
    fn endpoint(&self) -> Endpoint {
        match &self.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::tcp(self.host.clone(), self.port),
        }
    }
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    target: Target,
    /// The n in recv(n): the most bytes one recv takes.
    #[arg(long, default_value_t = server::RECV_SIZE)]
    recv_size: usize,
    /// The answer sent for every recv that returned data.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// The backlog in listen(backlog): connections the kernel queues before accept takes them.
    #[arg(long, default_value_t = server::BACKLOG)]
    backlog: i32,
    /// How many clients are served at once; more wait in the listen queue.
    #[arg(long, default_value_t = server::MAX_CLIENTS)]
    max_clients: usize,
    /// Disconnect a client silent for this many seconds (0: never).
    #[arg(long, default_value_t = server::IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
}

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    target: Target,
    /// The ack the server sends, used to show each ack on its own line.
    #[arg(long, default_value = "server recv success")]
    ack: String,
}

#[derive(Args)]
struct HttpArgs {
    #[command(flatten)]
    target: Target,
    /// The backlog in listen(backlog).
    #[arg(long, default_value_t = server::BACKLOG)]
    backlog: i32,
    /// How many connections are served at once; more wait in the listen queue.
    #[arg(long, default_value_t = server::MAX_CLIENTS)]
    max_clients: usize,
    /// Seconds one recv may wait; an idle keep-alive connection is closed after this.
    #[arg(long, default_value_t = http_server::READ_TIMEOUT.as_secs())]
    read_timeout: u64,
    /// Seconds a whole request may take from its first byte before it gets 408.
    #[arg(long, default_value_t = http_server::REQUEST_TIMEOUT.as_secs())]
    request_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => run_server(args),
        Command::Client(args) => run_client(args),
        Command::Http(args) => run_http(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

fn run_server(args: ServerArgs) -> Result<(), Error> {
    let endpoint = args.target.endpoint();
    let config = ServerConfig {
        endpoint: endpoint.clone(),
        recv_size: args.recv_size,
        ack: args.ack.into_bytes(),
        backlog: args.backlog,
        max_clients: args.max_clients,
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
    };
    let server = Server::bind(config)?;
    // Scripts and tests read this line to learn the port chosen for --port 0.
    eprintln!("listening on {}", server.local_addr());
    if endpoint.is_all_interfaces() {
        eprintln!(
            "warning: listening on every interface: other machines can reach this server (use --host 127.0.0.1 to stay local)"
        );
    }
    server.handle().stop_on_signals()?;
    server.run(Arc::new(print_event))
}

fn print_event(event: Event) {
    // Line-buffered stdout is flushed per line only on a terminal; flush so a pipe sees each
    // log line as it happens.
    if event.is_problem() {
        eprintln!("{event}");
    } else {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{event}").and_then(|()| stdout.flush());
    }
}

fn run_http(args: HttpArgs) -> Result<(), Error> {
    let endpoint = args.target.endpoint();
    let config = HttpConfig {
        endpoint: endpoint.clone(),
        backlog: args.backlog,
        max_clients: args.max_clients,
        limits: Limits::default(),
        read_timeout: Duration::from_secs(args.read_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let server = HttpServer::bind(config)?;
    // The same first line as the ack server: scripts read the port chosen for --port 0 here.
    eprintln!("listening on {}", server.local_addr());
    if endpoint.is_all_interfaces() {
        eprintln!(
            "warning: listening on every interface: other machines can reach this server (use --host 127.0.0.1 to stay local)"
        );
    }
    server.handle().stop_on_signals()?;
    server.run(Arc::new(print_http_event))
}

fn print_http_event(event: HttpEvent) {
    if event.is_problem() {
        eprintln!("{event}");
    } else {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{event}").and_then(|()| stdout.flush());
    }
}

fn run_client(args: ClientArgs) -> Result<(), Error> {
    let client = Client::connect(&args.target.endpoint(), args.ack.as_bytes())?;
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut stderr = io::stderr();
    let prompt: Option<&mut dyn Write> = if interactive { Some(&mut stderr) } else { None };
    client.run_session(stdin.lock(), io::stdout(), prompt)?;
    Ok(())
}
