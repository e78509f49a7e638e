//! The `socket-lab` command: argument parsing and exit codes over the library.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use socket_lab::bench::{self, BenchConfig, Transport};
use socket_lab::client::Client;
use socket_lab::engine::{Engine, LogEvent};
use socket_lab::http::request::Limits;
use socket_lab::http::server::{self as http_server, HttpConfig, HttpEvent, HttpServer};
use socket_lab::namespace;
use socket_lab::proxy::{MOST_HELD, Network, Proxy};
use socket_lab::scenario::syntax::ServerKind;
use socket_lab::scenario::{self, Scenario, Target as ScenarioTarget};
use socket_lab::server::{self, Server, ServerConfig, ServerHandle};
use socket_lab::udp::{self, DatagramClient, DatagramServer};
use socket_lab::wire::Capture;
use socket_lab::{Address, Endpoint, Error};
use socket_lab::{check, claims};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a socket call failed
  2  bad arguments
  3  cannot bind: address already in use (or not available)
  4  cannot bind: permission denied (a port below 1024, or a Unix socket path
     in a directory you cannot write)
  5  cannot resolve the host name
  6  cannot connect (connection refused, timed out)
  7  the connection was lost mid-session
  8  a scenario did not go as its file says (run)
  9  an input file cannot be read or does not parse (run, lessons)
A closed stdout (`socket-lab lessons | head -2`) ends any subcommand quietly with 0.";

/// A lab for learning how programs talk over sockets.
#[derive(Parser)]
// Help wraps to the terminal, but at most 100 columns: long lines are hard to read.
#[command(version, after_help = EXIT_CODES, max_term_width = 100)]
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
    /// Runs scenario files as narrated demos: each step and its result, as a sequence diagram.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Lists the lessons in scenarios/, in reading order, with their titles.
    Lessons(LessonsArgs),
    /// Loads an ack server with many connections and reports msgs/s and p50/p99/max latency.
    #[command(after_help = EXIT_CODES)]
    Bench(BenchArgs),
    /// Grades your own server: runs every lesson that applies to it and prints a report card,
    /// one line per lesson and per walkthrough claim, with a hint for each failure.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// A hostile network between a client and a server: forwards in pieces (each read before
    /// the next leaves), late, merged, or cut short, and logs what it did to which bytes.
    #[command(after_help = EXIT_CODES)]
    Proxy(ProxyArgs),
}

// One flag language for addresses, in every subcommand. Netcat, Python and the walkthrough
// name an address as a host and a port (`nc HOST PORT`, `sock.bind((HOST, PORT))`), a Unix
// socket by its path (`nc -U PATH`, curl's `--unix-socket PATH`), and datagrams with a switch
// (`nc -u`). So: `--host`, `--port`, `--unix PATH` and `--udp`, whether the command listens
// (server, http, proxy), connects (client, check), or may play against a server already
// running instead of its own (run, bench). `proxy` relays to a second address, which takes
// the same three words after `to-`. Each command's group has its own help, since "0 means any
// free port" is true of a port to listen on and false of one to connect to.

/// Where a server listens: the walkthrough's `(HOST, PORT)` pair, or a Unix socket path.
#[derive(Args)]
struct Listen {
    /// The address to listen on: 127.0.0.1 or ::1 (this machine only), or 0.0.0.0 or ::
    /// (every interface: other machines can reach the server).
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// The port to listen on; 0 lets the kernel pick a free one (the first line on stderr,
    /// `listening on ADDR`, says which).
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    port: u16,
    /// Listen on a Unix domain socket at this path instead (AF_UNIX); the file is removed
    /// when the server stops.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    unix: Option<PathBuf>,
}

impl Listen {
    fn endpoint(&self) -> Endpoint {
        match &self.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::inet(self.host.clone(), self.port),
        }
    }
}

/// The server a client talks to.
#[derive(Args)]
struct ConnectTo {
    /// The server's host name or address (127.0.0.1, ::1, localhost).
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// The server's port.
    #[arg(long, default_value_t = server::DEFAULT_PORT, value_parser = port_to_connect_to)]
    port: u16,
    /// Connect to the Unix domain socket at this path instead (AF_UNIX).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    unix: Option<PathBuf>,
    /// The server speaks datagrams (SOCK_DGRAM): UDP, or a Unix datagram socket with --unix.
    #[arg(long)]
    udp: bool,
}

impl ConnectTo {
    fn endpoint(&self) -> Endpoint {
        match &self.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::inet(self.host.clone(), self.port),
        }
    }
}

/// For `run`: a server already running, whose client side the lessons play. Without any of
/// these flags the lessons start their own servers.
#[derive(Args)]
#[command(next_help_heading = "Against a server already running (the client side only)")]
struct RunAgainst {
    /// The server's host name or address [default with --port: 127.0.0.1].
    #[arg(long)]
    host: Option<String>,
    /// The server's port [default with --host: 10000].
    #[arg(long, value_parser = port_to_connect_to)]
    port: Option<u16>,
    /// The server's Unix socket path.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    unix: Option<PathBuf>,
}

impl RunAgainst {
    fn endpoint(&self) -> Option<Endpoint> {
        against(self.host.as_deref(), self.port, self.unix.as_deref())
    }
}

/// The server `--host`, `--port` or `--unix PATH` name, if any names one; the other of host
/// and port takes its default.
fn against(host: Option<&str>, port: Option<u16>, unix: Option<&Path>) -> Option<Endpoint> {
    match (host, port, unix) {
        (_, _, Some(path)) => Some(Endpoint::Unix(path.to_path_buf())),
        (None, None, None) => None,
        (host, port, None) => Some(Endpoint::inet(
            host.unwrap_or(DEFAULT_HOST),
            port.unwrap_or(server::DEFAULT_PORT),
        )),
    }
}

/// The ack server's host unless told otherwise: loopback, so nothing is reachable from
/// another machine by accident.
const DEFAULT_HOST: &str = "127.0.0.1";

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    listen: Listen,
    /// Use datagrams (SOCK_DGRAM): UDP, or a Unix datagram socket with --unix.
    #[arg(long)]
    udp: bool,
    /// The n in recv(n): the most bytes one recv takes.
    #[arg(long, default_value_t = server::RECV_SIZE)]
    recv_size: usize,
    /// The answer sent for every recv that returned data.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// The backlog in listen(backlog): connections the kernel queues before accept takes them.
    #[arg(long, default_value_t = server::BACKLOG, conflicts_with = "udp")]
    backlog: i32,
    /// How many clients are served at once; more wait in the listen queue.
    #[arg(long, default_value_t = server::MAX_CLIENTS, conflicts_with = "udp")]
    max_clients: usize,
    /// Disconnect a client silent this long (or whose acks go unread), such as 30s or 5m;
    /// 0s never disconnects one.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = server::IDLE_TIMEOUT.into(),
        value_parser = duration,
        conflicts_with = "udp"
    )]
    idle_timeout: humantime::Duration,
    /// Listen but do not accept until Enter is pressed: watch the backlog fill up.
    #[arg(long, conflicts_with = "udp")]
    pause_accept: bool,
    /// How clients are served: `threads` (the default, blocking code that reads like the
    /// walkthrough) gives each a worker thread, up to --max-clients; `iterative` is the
    /// walkthrough's server.py, one client at a time (the next one's connect completes, but
    /// its messages wait until the first client leaves; lesson 34); `epoll` serves them all
    /// from one event loop per core on non-blocking sockets.
    #[arg(
        long,
        default_value = server::Engine::default().name(),
        value_parser = engine(&Engine::ALL),
        conflicts_with = "udp"
    )]
    engine: server::Engine,
    /// Log only problems (stderr), not every message: for benchmarks, where a log line per
    /// message would cost more than the message.
    #[arg(long)]
    quiet: bool,
}

/// `--engine`: the names come from the library, so a new engine needs nothing here.
fn engine(engines: &[Engine]) -> impl clap::builder::TypedValueParser<Value = Engine> + use<> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(engines.iter().map(|engine| engine.name()))
        .try_map(|name| Engine::from_name(&name).ok_or("no such engine"))
}

/// The engines the web server runs on: not `iterative`, where one browser's idle keep-alive
/// connection would hold every other client.
const HTTP_ENGINES: [Engine; 2] = [Engine::Epoll, Engine::Threads];

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    target: ConnectTo,
    /// The ack the server sends, used to show each ack on its own line.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// Turn off Nagle's algorithm (TCP_NODELAY): each line leaves at once.
    #[arg(long, conflicts_with = "udp")]
    nodelay: bool,
    /// With --udp: how long to wait for each ack before saying none came, such as 500ms.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = udp::REPLY_TIMEOUT.into(),
        value_parser = nonzero_duration("the client would give up on every ack before it could arrive"),
        requires = "udp"
    )]
    reply_timeout: humantime::Duration,
}

#[derive(Args)]
struct HttpArgs {
    #[command(flatten)]
    listen: Listen,
    /// The backlog in listen(backlog).
    #[arg(long, default_value_t = server::BACKLOG)]
    backlog: i32,
    /// How many connections are served at once; more wait in the listen queue [default:
    /// 20000 on epoll, a descriptor each, or fewer if `ulimit -Hn` is lower; 2048 on threads,
    /// a thread each].
    #[arg(long)]
    max_clients: Option<usize>,
    /// How connections are served: `epoll` (the default: one event loop per core, fast, and an
    /// idle keep-alive connection costs a few buffers, not a thread) or `threads` (a blocking
    /// worker thread per connection).
    #[arg(long, default_value = Engine::Epoll.name(), value_parser = engine(&HTTP_ENGINES))]
    engine: Engine,
    /// Log only problems (stderr), not every request: for benchmarks, where a log line per
    /// request would cost more than the request.
    #[arg(long)]
    quiet: bool,
    /// How long one recv may wait; an idle keep-alive connection is closed after this.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = http_server::READ_TIMEOUT.into(),
        value_parser = nonzero_duration(CLOSE_AT_ONCE)
    )]
    read_timeout: humantime::Duration,
    /// How long a whole request may take from its first byte before it gets 408.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = http_server::REQUEST_TIMEOUT.into(),
        value_parser = nonzero_duration(CLOSE_AT_ONCE)
    )]
    request_timeout: humantime::Duration,
    /// How long sending a whole response may take; a client that reads slower is cut off.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = http_server::WRITE_TIMEOUT.into(),
        value_parser = nonzero_duration(CLOSE_AT_ONCE)
    )]
    write_timeout: humantime::Duration,
}

const CLOSE_AT_ONCE: &str = "a zero timeout would close every connection at once";

#[derive(Args)]
struct RunArgs {
    /// Scenario files, e.g. scenarios/03-*.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print every byte of every payload beneath its line (the diagram cuts them at 40
    /// characters): text line by line, escaped; anything binary as a hex dump.
    #[arg(long)]
    full: bool,
    /// Show every TCP segment and UDP datagram among the socket calls (SYN, ACK, FIN, RST,
    /// sequence numbers, windows), and check `wire:` steps. Needs no root: the run moves
    /// into a private network namespace with its own loopback, where it may capture.
    #[arg(long, conflicts_with_all = ["host", "port", "unix"])]
    wire: bool,
    /// Show the kernel's view: after each step, every TCP socket of the lesson whose state
    /// changed (ESTABLISHED, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, ...), from /proc/net/tcp.
    #[arg(long, conflicts_with_all = ["host", "port", "unix"])]
    kernel: bool,
    /// With --wire, also write every frame to this pcap file (for Wireshark or tshark -r).
    #[arg(long, requires = "wire", value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Run the lesson's server on this engine, whatever its `engine=` says: a lesson about
    /// sockets holds however the server waits (one that needs two clients at once fails on
    /// iterative, which is lesson 34's point).
    #[arg(long, value_parser = engine(&Engine::ALL), conflicts_with_all = ["host", "port", "unix"])]
    engine: Option<Engine>,
    #[command(flatten)]
    against: RunAgainst,
}

#[derive(Args)]
struct LessonsArgs {
    /// Where the lessons are (default: ./scenarios, else the one in the source tree).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// Connections open at once, each with one message in flight.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Messages per connection.
    #[arg(long, default_value_t = 10_000)]
    msgs: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Stop sending after this long, even if not every message was sent (at most 10m).
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = BenchConfig::default().duration.into(),
        value_parser = bench_duration
    )]
    duration: humantime::Duration,
    /// The ack the server answers with; every byte received is checked against it.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// Send every message without waiting for its ack: throughput instead of round trips.
    #[arg(long, conflicts_with = "udp")]
    stream: bool,
    /// Load the server already running on this host [default with --port: 127.0.0.1].
    #[arg(long, help_heading = SERVER_TO_LOAD)]
    host: Option<String>,
    /// Load the server already running on this port [default with --host: 10000].
    #[arg(long, value_parser = port_to_connect_to, help_heading = SERVER_TO_LOAD)]
    port: Option<u16>,
    /// Use a Unix stream socket: the server already listening at PATH, or without PATH one
    /// that bench starts in the temp directory.
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        conflicts_with_all = ["host", "port"],
        help_heading = SERVER_TO_LOAD
    )]
    unix: Option<Option<PathBuf>>,
    /// Use datagrams: UDP, or Unix datagrams with --unix.
    #[arg(long, help_heading = SERVER_TO_LOAD)]
    udp: bool,
}

const SERVER_TO_LOAD: &str =
    "The server to load (default: an ack server bench starts in this process, on a free port)";

impl BenchArgs {
    /// The socket kind, and the server to load (`None`: bench starts its own).
    fn server(&self) -> (Transport, Option<Endpoint>) {
        let path = self.unix.as_ref().and_then(|path| path.as_deref());
        let target = against(self.host.as_deref(), self.port, path);
        let transport = match (self.unix.is_some(), self.udp) {
            (false, false) => Transport::Tcp,
            (false, true) => Transport::Udp,
            (true, false) => Transport::Unix,
            (true, true) => Transport::UnixDatagram,
        };
        (transport, target)
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    target: ConnectTo,
    /// Your server speaks HTTP (socket-lab http, nginx, python3 -m http.server): run the
    /// HTTP lessons instead of the ack server's.
    #[arg(long, conflicts_with = "udp")]
    http: bool,
    /// The n in your server's recv(n) (the walkthrough's is 1024).
    #[arg(long, default_value_t = server::RECV_SIZE)]
    recv_size: usize,
    /// What your server answers each message with.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// Put a hostile network between the lessons and your server, such as `split=1` (pieces
    /// of one byte) or `merge=20ms`: framing bugs then fail every run.
    #[arg(long, value_name = "SETTINGS")]
    network: Option<String>,
    /// Print the report as JSON, for a grading script (the shape is in the README).
    #[arg(long)]
    json: bool,
    /// Where the lessons are (default: ./scenarios, else the one in the source tree).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ProxyArgs {
    /// The address clients connect to: 127.0.0.1 or ::1 (this machine only), or 0.0.0.0 or
    /// :: (every interface).
    #[arg(long, default_value = DEFAULT_HOST, help_heading = "Where clients connect")]
    host: String,
    /// The port clients connect to; 0 lets the kernel pick a free one (the first line on
    /// stderr, `listening on ADDR`, says which).
    #[arg(long, default_value_t = PROXY_PORT, help_heading = "Where clients connect")]
    port: u16,
    /// Listen on a Unix domain socket at this path instead.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["host", "port"],
        help_heading = "Where clients connect"
    )]
    unix: Option<PathBuf>,
    /// The server's host name or address.
    #[arg(
        long,
        value_name = "HOST",
        default_value = DEFAULT_HOST,
        help_heading = "The server it relays to"
    )]
    to_host: String,
    /// The server's port.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = server::DEFAULT_PORT,
        value_parser = port_to_connect_to,
        help_heading = "The server it relays to"
    )]
    to_port: u16,
    /// The server's Unix socket path.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["to_host", "to_port"],
        help_heading = "The server it relays to"
    )]
    to_unix: Option<PathBuf>,
    /// Forward in pieces of N bytes; each leaves only once the receiver has read the one
    /// before (its receive queue in /proc/net/tcp is empty).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    split: Option<u64>,
    /// Hold each piece this long before it leaves, such as 20ms (at most 10s).
    #[arg(long, value_name = "DURATION", value_parser = held)]
    delay: Option<humantime::Duration>,
    /// After bytes arrive, keep collecting this long and forward all at once, such as 20ms
    /// (at most 10s).
    #[arg(long, value_name = "DURATION", value_parser = held)]
    merge: Option<humantime::Duration>,
    /// End both connections (FIN) after this many bytes have crossed, either way.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    close_after: Option<u64>,
    /// Reset both connections (RST) after this many bytes have crossed, either way.
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "close_after"
    )]
    reset_after: Option<u64>,
}

/// The proxy's port unless told otherwise: next to the ack server's, so `socket-lab proxy`
/// and `socket-lab server` run side by side as they are.
const PROXY_PORT: u16 = server::DEFAULT_PORT + 1;

impl ProxyArgs {
    fn listen(&self) -> Endpoint {
        match &self.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::inet(self.host.clone(), self.port),
        }
    }

    fn to(&self) -> Endpoint {
        match &self.to_unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::inet(self.to_host.clone(), self.to_port),
        }
    }
}

/// A port a client connects to. Port 0 means "any free port" only to `bind`; `connect` to
/// it fails, so say why before trying.
fn port_to_connect_to(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is what a server binds to get any free port; a client needs the port the server chose (its first line says `listening on ADDR`)".into()),
        Ok(port) => Ok(port),
        Err(_) => Err("expected a port number from 1 to 65535, such as 10000".into()),
    }
}

/// A duration as people write one, in humantime's format: `10s`, `200ms`, `2m`, `1h 30m`. A
/// bare number is refused, since `--idle-timeout 5` could mean seconds or minutes. The
/// largest is 2^64 seconds, about 584 billion years: a deadline the clock never reaches,
/// which the servers treat as no deadline rather than overflow (`tests/cli.rs`).
fn duration(text: &str) -> Result<humantime::Duration, String> {
    use humantime::DurationError;
    text.parse::<humantime::Duration>()
        .map_err(|error| match error {
            // "time unit needed, for example 5sec or 5ms", and "unknown time unit "x",
            // supported units: ...": humantime's own words say what to do.
            DurationError::UnknownUnit { .. } => error.to_string(),
            DurationError::NumberOverflow => {
                format!("{error}: the longest duration is 18446744073709551615s")
            }
            _ => format!("{error}; a duration is a number and a unit, such as 10s, 200ms or 2m"),
        })
}

/// A duration above zero; `zero` says what a zero one would do.
fn nonzero_duration(
    zero: &'static str,
) -> impl Fn(&str) -> Result<humantime::Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let parsed = duration(text)?;
        if parsed.is_zero() {
            return Err(format!("it must be more than 0: {zero}"));
        }
        Ok(parsed)
    }
}

/// `bench --duration`: above zero, and short enough not to tie up a shared machine.
fn bench_duration(text: &str) -> Result<humantime::Duration, String> {
    let parsed = nonzero_duration("the run would end before it started")(text)?;
    if *parsed > bench::MAX_DURATION {
        return Err(format!(
            "at most {}, so a typo cannot tie up a machine for hours",
            humantime::format_duration(bench::MAX_DURATION)
        ));
    }
    Ok(parsed)
}

/// `proxy --delay` and `--merge`: how long bytes are held, in whole milliseconds (the log says
/// what was done in milliseconds) and at most [`MOST_HELD`], so a proxy never stalls for long.
fn held(text: &str) -> Result<humantime::Duration, String> {
    let parsed = nonzero_duration("leave the flag out to forward at once")(text)?;
    if *parsed > MOST_HELD {
        return Err(format!(
            "at most {}, so a proxy never stalls a connection for long",
            humantime::format_duration(MOST_HELD)
        ));
    }
    if parsed.subsec_nanos() % 1_000_000 != 0 {
        return Err("it must be whole milliseconds, such as 1ms or 20ms".into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => run_server(args),
        Command::Client(args) => run_client(args),
        Command::Http(args) => run_http(args),
        Command::Run(args) => run_scenarios(args),
        Command::Lessons(args) => list_lessons(args),
        Command::Bench(args) => run_bench(args),
        Command::Check(args) => run_check(args),
        Command::Proxy(args) => run_proxy(args),
    };
    // Whoever read stdout has gone (`socket-lab lessons | head -2`): whatever happened after
    // that is nobody's business. End quietly, with 0, as `head` expects of a writer.
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            print_error(&error);
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

/// `error: ...` on stderr, styled as clap styles its own (`socket-lab server --port x`), so
/// every error looks alike: `error:` in bold red on a terminal that takes colour, plain
/// anywhere else. `anstream` decides, as it does for clap: a pipe or a file gets no colour,
/// nor does a terminal where `NO_COLOR` is set; `CLICOLOR_FORCE` forces it.
fn print_error(error: &Error) {
    let style = *clap::builder::Styles::default().get_error();
    let mut stderr = anstream::AutoStream::new(io::stderr().lock(), anstream::ColorChoice::Auto);
    let _ = writeln!(stderr, "{style}error:{style:#} {error}");
}

/// Set once a write to stdout failed with `EPIPE`: the reader closed its end.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Standard output for every subcommand. Rust ignores `SIGPIPE`, so a write to a closed pipe
/// is an `EPIPE` error (and `println!` panics on it, exit 101 with a backtrace). Here the
/// error is returned as usual and also noted in [`STDOUT_CLOSED`]: each subcommand stops
/// at its next write (servers stop serving, cleanly) and `main` exits 0 without a word.
struct Stdout;

impl Stdout {
    fn note<T>(result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stdout::note(io::stdout().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Stdout::note(io::stdout().lock().write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Stdout::note(io::stdout().lock().flush())
    }

    /// One `write!` is one write under one lock: servers log from many threads, and a line
    /// written piece by piece could be interleaved with another's.
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        self.write_all(args.to_string().as_bytes())
    }
}

/// One line on stdout, whole, flushed so a pipe sees it as it happens.
fn print_line(line: impl std::fmt::Display) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    Stdout::note(writeln!(stdout, "{line}").and_then(|()| stdout.flush()))
        .map_err(|e| Error::io("cannot write to stdout", e))
}

fn run_server(args: ServerArgs) -> Result<(), Error> {
    let endpoint = args.listen.endpoint();
    let config = ServerConfig {
        endpoint: endpoint.clone(),
        recv_size: args.recv_size,
        ack: args.ack.into_bytes(),
        backlog: args.backlog,
        max_clients: args.max_clients,
        // 0s: never.
        idle_timeout: Some(*args.idle_timeout).filter(|timeout| !timeout.is_zero()),
        engine: args.engine,
        ..ServerConfig::default()
    };
    if args.udp {
        let server = DatagramServer::bind(config)?;
        server.handle().stop_on_signals()?;
        announce(server.local_addr(), &endpoint);
        let log = event_printer(args.quiet, server.handle());
        return server.run(log);
    }
    let max_clients = config.max_clients;
    let server = Server::bind(config)?;
    server.handle().stop_on_signals()?;
    announce(server.local_addr(), &endpoint);
    warn_if_descriptors_are_short(max_clients);
    if args.pause_accept {
        pause_until_enter(server.handle());
    }
    let log = event_printer(args.quiet, server.handle());
    server.run(log)
}

/// Raises the descriptor limit as far as allowed, and says so when `max_clients` still does not
/// fit: a connection is a descriptor, and `ulimit -n` is often 1024.
fn warn_if_descriptors_are_short(max_clients: usize) {
    match socket_lab::engine::raise_descriptor_limit() {
        Ok(limit) => {
            if let Some(warning) = limit.too_low_for(max_clients) {
                eprintln!("warning: {warning}");
            }
        }
        Err(e) => eprintln!("warning: cannot read the descriptor limit (getrlimit): {e}"),
    }
}

/// The first line on stderr: scripts and tests read it to learn the port chosen for --port 0.
/// It comes after the Ctrl-C handler is installed, so whoever waits for it can stop the server
/// cleanly at once.
fn announce(local_addr: &Address, endpoint: &Endpoint) {
    eprintln!("listening on {local_addr}");
    if endpoint.is_all_interfaces() {
        eprintln!(
            "warning: listening on every interface: other machines can reach this server (use --host 127.0.0.1 to stay local)"
        );
    }
}

/// `--pause-accept`: the socket listens, but `accept` waits for a line on stdin.
fn pause_until_enter(handle: ServerHandle) {
    handle.pause_accept();
    eprintln!("accept paused: connections wait in the listen queue; press Enter to accept them");
    std::thread::spawn(move || {
        let mut line = String::new();
        // End of input counts too, so `< /dev/null` does not pause forever.
        let _ = io::stdin().read_line(&mut line);
        eprintln!("accepting");
        handle.resume_accept();
    });
}

/// The server's log: every event, or with `--quiet` only the problems. Once stdout is
/// closed the server stops, as any writer to a closed pipe would.
/// Where a server's log goes: problems to stderr, the rest to stdout unless `quiet`. One
/// printer for the ack server, the datagram server and the web server.
fn event_printer<E: LogEvent>(quiet: bool, handle: ServerHandle) -> Arc<dyn Fn(E) + Send + Sync> {
    if quiet {
        Arc::new(|event: E| {
            if event.is_problem() {
                eprintln!("{event}");
            }
        })
    } else {
        Arc::new(move |event: E| {
            if STDOUT_CLOSED.load(Ordering::SeqCst) {
                // Stopping: what the stop itself causes is not news.
            } else if event.is_problem() {
                eprintln!("{event}");
            } else {
                print_event(event, &handle);
            }
        })
    }
}

/// One log line on stdout; a closed stdout stops the server.
fn print_event(event: impl std::fmt::Display, handle: &ServerHandle) {
    if print_line(event).is_err() && STDOUT_CLOSED.load(Ordering::SeqCst) {
        handle.stop();
    }
}

fn run_http(args: HttpArgs) -> Result<(), Error> {
    let endpoint = args.listen.endpoint();
    let defaults = HttpConfig::for_engine(args.engine);
    // The default cap fits this machine's descriptor limit; a cap asked for is kept, with a
    // warning if it does not fit.
    let limit = socket_lab::engine::raise_descriptor_limit().ok();
    let max_clients = match (args.max_clients, limit) {
        (Some(asked), _) => asked,
        (None, Some(limit)) => limit.fitting(defaults.max_clients),
        (None, None) => defaults.max_clients,
    };
    let config = HttpConfig {
        endpoint: endpoint.clone(),
        backlog: args.backlog,
        max_clients,
        limits: Limits::default(),
        read_timeout: args.read_timeout.into(),
        request_timeout: args.request_timeout.into(),
        write_timeout: args.write_timeout.into(),
        ..defaults
    };
    let server = HttpServer::bind(config)?;
    server.handle().stop_on_signals()?;
    announce(server.local_addr(), &endpoint);
    if args.max_clients.is_some() {
        warn_if_descriptors_are_short(max_clients);
    }
    if let Address::Inet(addr) = server.local_addr() {
        // What a learner does next; the first line stays `listening on ADDR` for scripts.
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        eprintln!("open http://{host}:{}/ in a browser", addr.port());
    }
    let log = event_printer::<HttpEvent>(args.quiet, server.handle());
    server.run(log)
}

fn run_client(args: ClientArgs) -> Result<(), Error> {
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut stderr = io::stderr();
    let prompt: Option<&mut dyn Write> = if interactive { Some(&mut stderr) } else { None };
    if args.target.udp {
        let reply_timeout = args.reply_timeout.into();
        let client = DatagramClient::connect(&args.target.endpoint(), reply_timeout)?;
        client.run_session(stdin.lock(), Stdout, prompt)?;
        return Ok(());
    }
    let client = Client::connect(&args.target.endpoint(), args.ack.as_bytes())?;
    client.set_nodelay(args.nodelay)?;
    // What the socket says, not what was asked: getsockopt reads it back.
    let nodelay = if client.nodelay()? {
        ", TCP_NODELAY on"
    } else {
        ""
    };
    let local = match client.local_addr()? {
        Address::Unix(None) => "an unnamed socket".to_string(),
        local => local.to_string(),
    };
    eprintln!(
        "connected to {} from {local}{nodelay}; type a line and press Enter to send it; q or Ctrl-D ends the session",
        client.peer_addr()?
    );
    // The session waits on stdin with poll, so it reads the descriptor itself: a copy of fd 0
    // as a File, without the buffer of io::Stdin, whose bytes poll could not see.
    let input = std::os::fd::AsFd::as_fd(&stdin)
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| Error::io("cannot duplicate standard input", e))?;
    client.run_session(input, Stdout, prompt)?;
    Ok(())
}

/// The capture for `run --wire`: inside a private network namespace where possible, on the
/// machine's own loopback for root where not, else none (said in one line).
fn open_wire(args: &RunArgs) -> Result<Option<Capture>, Error> {
    if !args.wire {
        return Ok(None);
    }
    if let Err(reason) = namespace::enter_private() {
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("wire: {reason}; running without the wire");
            return Ok(None);
        }
        eprintln!(
            "wire: {reason}; capturing on this machine's loopback instead (as root), where other programs' traffic shows too"
        );
    }
    let capture = Capture::open_loopback(args.pcap.as_deref()).map_err(|e| {
        Error::io(
            "cannot open a packet socket on lo for --wire (or the --pcap file)".to_string(),
            e,
        )
    })?;
    Ok(Some(capture))
}

/// A lesson with a crowd (`crowd: connect 10000`) runs in a private network namespace where
/// the machine allows one, as `--wire` does: its thousands of connections, and the TIME_WAIT
/// sockets they leave behind for a minute, are then on a loopback of its own, not in every
/// other program's `/proc/net/tcp`.
fn keep_crowds_to_themselves(args: &RunArgs) {
    if args.wire || args.against.endpoint().is_some() {
        return;
    }
    let has_crowd = args.files.iter().any(|path| {
        scenario::read_lesson(path)
            .ok()
            .and_then(|text| Scenario::parse(&text).ok())
            .is_some_and(|lesson| lesson.largest_crowd().is_some())
    });
    if has_crowd && let Err(reason) = namespace::enter_private() {
        eprintln!("note: the crowd connects over this machine's own loopback: {reason}");
    }
}

fn run_scenarios(args: RunArgs) -> Result<(), Error> {
    // First, while the process has one thread: entering a user namespace needs that.
    keep_crowds_to_themselves(&args);
    let mut capture = open_wire(&args)?;
    let target = match args.against.endpoint() {
        None => ScenarioTarget::OwnServer,
        Some(endpoint) => ScenarioTarget::External(endpoint),
    };
    let view = scenario::View {
        colour: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        full: args.full,
    };
    for (index, path) in args.files.iter().enumerate() {
        let shown = path.display().to_string();
        let text = scenario::read_lesson(path)
            .map_err(|e| Error::input(format!("cannot read {shown}"), e))?;
        let mut scenario = Scenario::parse(&text).map_err(|e| Error::Input {
            what: format!("{shown}:{}: {}", e.line, e.message),
            source: None,
        })?;
        if let Some(engine) = args.engine {
            scenario = scenario.on_engine(engine).map_err(|why| Error::Input {
                what: format!("{shown}: --engine {engine}: {why}"),
                source: None,
            })?;
        }
        if let ScenarioTarget::External(endpoint) = &target {
            // Say what the lesson needs before it runs, not after a timeout.
            if let Some(why) = check::own_server_only(&scenario) {
                return Err(Error::Scenario(format!(
                    "{shown}: this lesson cannot run against the server at {endpoint}: {why}"
                )));
            }
            for expectation in check::expectations(&scenario) {
                eprintln!("note: {expectation}");
            }
        }
        if index > 0 {
            print_line("")?;
        }
        let mut stdout = Stdout;
        let mut in_narration = false;
        let views = scenario::Views {
            wire: capture.as_mut(),
            kernel: args.kernel,
            private_network: namespace::entered(),
        };
        let transcript = scenario::run_with(&scenario, &shown, &target, views, &mut |entry| {
            // A blank line before each block of narration separates the lesson's phases.
            let narration = entry.kind == scenario::EntryKind::Narration;
            if narration && !in_narration {
                let _ = writeln!(stdout);
            }
            in_narration = narration;
            // A closed stdout is noted by `Stdout`; the lesson ends, then the run stops.
            let _ = writeln!(stdout, "{}", scenario::render(entry, view));
        });
        if STDOUT_CLOSED.load(Ordering::SeqCst) {
            return Ok(());
        }
        let transcript = transcript.map_err(|failure| {
            Error::Scenario(format!(
                "{}:{}: {}\n    {}",
                failure.file,
                failure.line,
                failure.step,
                failure.message.replace('\n', "\n    ")
            ))
        })?;
        // A transcript in an impossible order is the lab's bug, not the lesson's: say so.
        // (Against another server there is no server side to order against.)
        if matches!(target, ScenarioTarget::External(_)) {
            continue;
        }
        transcript.check_causality().map_err(|problem| {
            Error::Scenario(format!(
                "{shown}: the transcript is out of order, which is a bug in socket-lab: {problem}"
            ))
        })?;
    }
    Ok(())
}

fn run_bench(args: BenchArgs) -> Result<(), Error> {
    let (transport, target) = args.server();
    let config = BenchConfig {
        transport,
        target,
        conns: args.conns,
        msgs: args.msgs,
        size: args.size,
        duration: args.duration.into(),
        ack: args.ack.into_bytes(),
        stream: args.stream,
    };
    // Bad settings first, before anything is said about a run that will not happen.
    config.validate()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build, several times slower than a release one: its numbers are not representative (cargo run --release -- bench ...)"
        );
    }
    let bench = bench::Bench::start(&config)?;
    // Said at once: a run can take as long as --duration.
    print_line(bench.plan())?;
    // A live line on stderr, drawn only when stderr is a terminal (indicatif hides it
    // otherwise), so a pipe or a file never gets progress in it. It is cleared at the end.
    let progress = indicatif::ProgressBar::with_draw_target(
        Some(config.msgs.saturating_mul(config.conns as u64)),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {msg}") {
        progress.set_style(style.progress_chars("=> "));
    }
    let report = bench.run(|tally| {
        progress.set_position(tally.messages);
        progress.set_message(tally.to_string());
    });
    progress.finish_and_clear();
    print_line(report?.results())
}

/// The lessons folder: the one given, else ./scenarios, else the one in the source tree.
fn lessons_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let here = PathBuf::from("scenarios");
        if here.is_dir() {
            here
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
        }
    })
}

fn run_check(args: CheckArgs) -> Result<(), Error> {
    let endpoint = args.target.endpoint();
    let unix = matches!(endpoint, Endpoint::Unix(_));
    let kind = match (args.http, unix, args.target.udp) {
        (true, _, _) => ServerKind::Http,
        (false, false, false) => ServerKind::Tcp,
        (false, false, true) => ServerKind::Udp,
        (false, true, false) => ServerKind::Unix,
        (false, true, true) => ServerKind::UnixDgram,
    };
    if args.recv_size == 0 || args.recv_size > server::MAX_RECV_SIZE {
        return Err(Error::Config(format!(
            "--recv-size must be between 1 and {}, not {}",
            server::MAX_RECV_SIZE,
            args.recv_size
        )));
    }
    let dir = lessons_dir(args.dir);
    let lessons = scenario::discover(&dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    let claims_file = claims::locate(&dir);
    let claims = std::fs::read_to_string(&claims_file)
        .map(|text| claims::parse(&text))
        .map_err(|e| Error::io(format!("cannot read {}", claims_file.display()), e))?;
    let network = args
        .network
        .as_deref()
        .map(Network::parse)
        .transpose()
        .map_err(|e| Error::Config(format!("--network: {e}")))?;
    let subject = check::Subject {
        recv_size: args.recv_size,
        ack: args.ack.into_bytes(),
        network,
        labs_pages: kind == ServerKind::Http && check::serves_the_labs_pages(&endpoint),
        ..check::Subject::new(endpoint.clone(), kind)
    };
    let mut stdout = io::stdout();
    if !args.json {
        let _ = writeln!(
            stdout,
            "socket-lab check: your {} server at {}\n\nlessons",
            kind.name(),
            subject.endpoint
        );
    }
    let report = check::check(&lessons, &claims, &subject, &mut |result| {
        if !args.json {
            let _ = writeln!(stdout, "{}", check::lesson_line(result));
        }
    });
    if args.json {
        let _ = writeln!(stdout, "{}", report.to_json());
    } else {
        let card = report.to_string();
        // The lesson lines are printed as they finish; the rest of the card follows.
        let rest = card.split_once("\nclaims").map_or("", |(_, rest)| rest);
        print_line(format_args!("\nclaims{rest}"))?;
    }
    if report.all_passed() {
        Ok(())
    } else {
        Err(Error::Scenario(format!(
            "{} of the {} lessons that ran failed against {}",
            report.failed,
            report.passed + report.failed,
            subject.endpoint
        )))
    }
}

fn run_proxy(args: ProxyArgs) -> Result<(), Error> {
    let network =
        Network {
            split: args.split.map(usize::try_from).transpose().map_err(|_| {
                Error::Config("--split is larger than this machine's memory".into())
            })?,
            delay: args.delay.map(Into::into),
            merge: args.merge.map(Into::into),
            close_after: args.close_after,
            reset_after: args.reset_after,
        };
    let to = args.to();
    let proxy = Proxy::bind(&args.listen(), to.clone(), network)?;
    proxy.acceptor_handle().stop_on_signals()?;
    eprintln!("listening on {}", proxy.local_addr());
    eprintln!(
        "relaying to {to} ({})",
        if network == Network::default() {
            "as it is".to_string()
        } else {
            network.to_string()
        }
    );
    proxy.run(Arc::new(|event| {
        let _ = print_line(event);
    }))
}

fn list_lessons(args: LessonsArgs) -> Result<(), Error> {
    let dir = lessons_dir(args.dir);
    let files = scenario::discover(&dir)
        .map_err(|e| Error::input(format!("cannot list {}", dir.display()), e))?;
    let mut first = None;
    for path in files {
        let text = scenario::read_lesson(&path)
            .map_err(|e| Error::input(format!("cannot read {}", path.display()), e))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // The file name, then the title on its own indented line: titles are long.
        print_line(format_args!(
            "{name}\n    {}",
            scenario::title_of(&text).unwrap_or("(no title)")
        ))?;
        first.get_or_insert(path);
    }
    if let Some(first) = first {
        print_line(format_args!(
            "\nRun one: socket-lab run {} (add --full to see every byte)",
            first.display()
        ))?;
    }
    print_line("Which claim of the walkthrough each lesson proves or corrects: CLAIMS.md")
}
