//! The `socket-lab` command: argument parsing and exit codes over the library.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use socket_lab::bench::{self, BenchConfig, Transport};
use socket_lab::client::Client;
use socket_lab::http::request::Limits;
use socket_lab::http::server::{self as http_server, HttpConfig, HttpEvent, HttpServer};
use socket_lab::namespace;
use socket_lab::proxy::{Network, Proxy};
use socket_lab::scenario::syntax::ServerKind;
use socket_lab::scenario::{self, Scenario, Target as ScenarioTarget};
use socket_lab::server::{self, Event, Server, ServerConfig, ServerHandle};
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

#[derive(Args)]
struct ProxyArgs {
    /// Where clients connect: HOST:PORT (port 0 for any free one) or a Unix socket path.
    #[arg(long)]
    listen: String,
    /// The server: HOST:PORT or a Unix socket path.
    #[arg(long)]
    to: String,
    /// Forward in pieces of N bytes; each leaves only once the receiver has read the one
    /// before (its receive queue in /proc/net/tcp is empty).
    #[arg(long, value_name = "N")]
    split: Option<usize>,
    /// Hold each piece this long before it leaves, such as 20ms.
    #[arg(long, value_name = "MS")]
    delay: Option<String>,
    /// After bytes arrive, keep collecting this long and forward all at once, such as 20ms.
    #[arg(long, value_name = "MS")]
    merge: Option<String>,
    /// End both connections (FIN) after this many bytes have crossed, either way.
    #[arg(long, value_name = "BYTES")]
    close_after: Option<u64>,
    /// Reset both connections (RST) after this many bytes have crossed, either way.
    #[arg(long, value_name = "BYTES")]
    reset_after: Option<u64>,
}

#[derive(Args)]
struct CheckArgs {
    /// Your server: HOST:PORT (such as 127.0.0.1:10000 or [::1]:10000), or a Unix socket path.
    #[arg(long)]
    target: String,
    /// What your server speaks: tcp (the walkthrough's server.py), udp, unix, unix-dgram, or
    /// http. Default: tcp for HOST:PORT, unix for a path.
    #[arg(long)]
    kind: Option<String>,
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
    /// Stop sending after this many seconds, even if not every message was sent.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Load a server already running at HOST:PORT (or a Unix socket path) instead of
    /// starting one in this process.
    #[arg(long)]
    target: Option<String>,
    /// Use datagrams: UDP, or Unix datagrams with --unix or a socket path as --target.
    #[arg(long)]
    udp: bool,
    /// Start the server on a Unix socket in the temp directory instead of TCP.
    #[arg(long, conflicts_with = "target")]
    unix: bool,
    /// The ack the server answers with; every byte received is checked against it.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// Send every message without waiting for its ack: throughput instead of round trips.
    #[arg(long, conflicts_with = "udp")]
    stream: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Scenario files, e.g. scenarios/03-*.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Play only the client side against a server already running at HOST:PORT (or a Unix
    /// socket path); steps about the server's log are skipped with a note.
    #[arg(long)]
    target: Option<String>,
    /// Print every byte of every payload beneath its line (the diagram cuts them at 40
    /// characters): text line by line, escaped; anything binary as a hex dump.
    #[arg(long)]
    full: bool,
    /// Show every TCP segment and UDP datagram among the socket calls (SYN, ACK, FIN, RST,
    /// sequence numbers, windows), and check `wire:` steps. Needs no root: the run moves
    /// into a private network namespace with its own loopback, where it may capture.
    #[arg(long, conflicts_with = "target")]
    wire: bool,
    /// Show the kernel's view: after each step, every TCP socket of the lesson whose state
    /// changed (ESTABLISHED, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, ...), from /proc/net/tcp.
    #[arg(long, conflicts_with = "target")]
    kernel: bool,
    /// With --wire, also write every frame to this pcap file (for Wireshark or tshark -r).
    #[arg(long, requires = "wire", value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Run the lesson's server on this engine (iterative, threads or epoll), whatever its
    /// `engine=` says: a lesson about sockets holds however the server waits.
    #[arg(long, conflicts_with = "target")]
    engine: Option<String>,
}

#[derive(Args)]
struct LessonsArgs {
    /// Where the lessons are (default: ./scenarios, else the one in the source tree).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct Target {
    /// Host name or address (127.0.0.1, ::1, localhost).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// TCP port (UDP with --udp); the server takes 0 to mean "any free port".
    #[arg(long, default_value_t = server::DEFAULT_PORT)]
    port: u16,
    /// Use a Unix domain socket at this path instead of TCP.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    unix: Option<PathBuf>,
    /// Use datagrams (SOCK_DGRAM): UDP, or a Unix datagram socket with --unix.
    #[arg(long)]
    udp: bool,
}

impl Target {
    fn endpoint(&self) -> Endpoint {
        match &self.unix {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::inet(self.host.clone(), self.port),
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
    #[arg(long, default_value_t = server::BACKLOG, conflicts_with = "udp")]
    backlog: i32,
    /// How many clients are served at once; more wait in the listen queue.
    #[arg(long, default_value_t = server::MAX_CLIENTS, conflicts_with = "udp")]
    max_clients: usize,
    /// Disconnect a client silent for this many seconds (0: never).
    #[arg(long, default_value_t = server::IDLE_TIMEOUT.as_secs(), conflicts_with = "udp")]
    idle_timeout: u64,
    /// Listen but do not accept until Enter is pressed: watch the backlog fill up.
    #[arg(long, conflicts_with = "udp")]
    pause_accept: bool,
    /// How clients are served: `threads` (the default: a worker thread each, up to
    /// --max-clients; blocking code that reads like the walkthrough), `iterative` (the
    /// walkthrough's server.py: one client at a time; the next one's connect completes, but
    /// its messages wait until the first client leaves) or `epoll` (an event loop per core
    /// on non-blocking sockets).
    #[arg(long, default_value = "threads", value_parser = ["threads", "iterative", "epoll"], conflicts_with = "udp")]
    engine: String,
    /// Log only problems (stderr), not every message: for benchmarks, where a log line per
    /// message would cost more than the message.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    target: Target,
    /// The ack the server sends, used to show each ack on its own line.
    #[arg(long, default_value = "server recv success")]
    ack: String,
    /// Turn off Nagle's algorithm (TCP_NODELAY): each line leaves at once.
    #[arg(long, conflicts_with = "udp")]
    nodelay: bool,
    /// With --udp: how long to wait for each ack, in milliseconds.
    #[arg(
        long,
        default_value_t = udp::REPLY_TIMEOUT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..),
        requires = "udp"
    )]
    reply_timeout_ms: u64,
}

#[derive(Args)]
struct HttpArgs {
    #[command(flatten)]
    target: Target,
    /// The backlog in listen(backlog).
    #[arg(long, default_value_t = server::BACKLOG)]
    backlog: i32,
    /// How many connections are served at once; more wait in the listen queue. Default:
    /// 20000 on epoll (a descriptor each), 2048 on threads (a thread each).
    #[arg(long)]
    max_clients: Option<usize>,
    /// How connections are served: `epoll` (the default: an event loop per core, fast, and
    /// idle keep-alive connections cost almost nothing) or `threads` (a blocking thread
    /// per connection).
    #[arg(long, default_value = "epoll", value_parser = ["threads", "epoll"])]
    engine: String,
    /// Log only problems (stderr), not every request: for benchmarks, where a log line per
    /// request would cost more than the request.
    #[arg(long)]
    quiet: bool,
    /// Seconds one recv may wait; an idle keep-alive connection is closed after this.
    #[arg(long, default_value_t = http_server::READ_TIMEOUT.as_secs())]
    read_timeout: u64,
    /// Seconds a whole request may take from its first byte before it gets 408.
    #[arg(long, default_value_t = http_server::REQUEST_TIMEOUT.as_secs())]
    request_timeout: u64,
    /// Seconds sending a whole response may take; a client that reads slower is cut off.
    #[arg(long, default_value_t = http_server::WRITE_TIMEOUT.as_secs())]
    write_timeout: u64,
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
            let _ = writeln!(io::stderr(), "error: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
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
    let endpoint = args.target.endpoint();
    let config = ServerConfig {
        endpoint: endpoint.clone(),
        recv_size: args.recv_size,
        ack: args.ack.into_bytes(),
        backlog: args.backlog,
        max_clients: args.max_clients,
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        engine: args.engine.parse()?,
        ..ServerConfig::default()
    };
    let max_clients = config.max_clients;
    if args.target.udp {
        let server = DatagramServer::bind(config)?;
        server.handle().stop_on_signals()?;
        announce(server.local_addr(), &endpoint);
        let log = event_printer(args.quiet, server.handle());
        return server.run(log);
    }
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
fn event_printer(quiet: bool, handle: ServerHandle) -> server::EventLog {
    if quiet {
        Arc::new(|event: Event| {
            if event.is_problem() {
                eprintln!("{event}");
            }
        })
    } else {
        Arc::new(move |event: Event| {
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
    if args.target.udp {
        return Err(Error::Config(
            "http runs over TCP or a Unix stream socket: HTTP/1.1 needs a byte stream, not datagrams (drop --udp)".into(),
        ));
    }
    let endpoint = args.target.endpoint();
    let defaults = HttpConfig::for_engine(args.engine.parse()?);
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
        read_timeout: Duration::from_secs(args.read_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
        write_timeout: Duration::from_secs(args.write_timeout),
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
    if args.quiet {
        return server.run(Arc::new(|event: HttpEvent| {
            if event.is_problem() {
                eprintln!("{event}");
            }
        }));
    }
    let handle = server.handle();
    server.run(Arc::new(move |event: HttpEvent| {
        if STDOUT_CLOSED.load(Ordering::SeqCst) {
            // Stopping: what the stop itself causes is not news.
        } else if event.is_problem() {
            eprintln!("{event}");
        } else {
            print_event(event, &handle);
        }
    }))
}

fn run_client(args: ClientArgs) -> Result<(), Error> {
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut stderr = io::stderr();
    let prompt: Option<&mut dyn Write> = if interactive { Some(&mut stderr) } else { None };
    if args.target.udp {
        let reply_timeout = Duration::from_millis(args.reply_timeout_ms);
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

fn run_scenarios(args: RunArgs) -> Result<(), Error> {
    // First, while the process has one thread: entering a user namespace needs that.
    let mut capture = open_wire(&args)?;
    let target = match &args.target {
        None => ScenarioTarget::OwnServer,
        Some(text) => ScenarioTarget::External(parse_target(text)?),
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
        if let Some(engine) = &args.engine {
            scenario = scenario
                .on_engine(engine.parse()?)
                .map_err(|why| Error::Input {
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

/// `HOST:PORT`, `[::1]:PORT`, or a path to a Unix socket.
fn parse_target(text: &str) -> Result<Endpoint, Error> {
    if text.contains('/') {
        return Ok(Endpoint::Unix(PathBuf::from(text)));
    }
    let bad = || {
        Error::Config(format!(
            "--target {text}: expected HOST:PORT such as 127.0.0.1:10000, or a socket path"
        ))
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok(Endpoint::inet(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
    ))
}

fn run_bench(args: BenchArgs) -> Result<(), Error> {
    let target = args.target.as_deref().map(parse_target).transpose()?;
    let unix = args.unix || matches!(target, Some(Endpoint::Unix(_)));
    let transport = match (unix, args.udp) {
        (false, false) => Transport::Tcp,
        (false, true) => Transport::Udp,
        (true, false) => Transport::Unix,
        (true, true) => Transport::UnixDatagram,
    };
    let config = BenchConfig {
        transport,
        target,
        conns: args.conns,
        msgs: args.msgs,
        size: args.size,
        duration: Duration::from_secs(args.duration),
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
    let endpoint = parse_target(&args.target)?;
    let kind = match args.kind.as_deref() {
        None if matches!(endpoint, Endpoint::Unix(_)) => ServerKind::Unix,
        None => ServerKind::Tcp,
        Some(name) => ServerKind::from_name(name)
            .filter(|kind| *kind != ServerKind::None)
            .ok_or_else(|| {
                Error::Config(format!(
                    "--kind {name}: expected tcp, udp, unix, unix-dgram or http"
                ))
            })?,
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
    let mut words = Vec::new();
    if let Some(split) = args.split {
        words.push(format!("split={split}"));
    }
    if let Some(delay) = &args.delay {
        words.push(format!("delay={}", with_ms(delay)));
    }
    if let Some(merge) = &args.merge {
        words.push(format!("merge={}", with_ms(merge)));
    }
    if let Some(after) = args.close_after {
        words.push(format!("close-after={after}"));
    }
    if let Some(after) = args.reset_after {
        words.push(format!("reset-after={after}"));
    }
    let network = Network::parse(&words.join(" ")).map_err(Error::Config)?;
    let listen = parse_target(&args.listen)?;
    let to = parse_target(&args.to)?;
    let proxy = Proxy::bind(&listen, to.clone(), network)?;
    proxy.acceptor_handle().stop_on_signals()?;
    eprintln!("listening on {}", proxy.local_addr());
    eprintln!(
        "relaying to {to} ({})",
        if words.is_empty() {
            "as it is".to_string()
        } else {
            network.to_string()
        }
    );
    proxy.run(Arc::new(|event| {
        let _ = print_line(event);
    }))
}

/// `20` or `20ms`: the flags take milliseconds either way.
fn with_ms(value: &str) -> String {
    if value.ends_with("ms") {
        value.to_string()
    } else {
        format!("{value}ms")
    }
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
