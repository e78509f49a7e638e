//! What the transcript says. A lesson passes or fails on what its steps check, but a learner
//! reads the transcript's words too: that the server has "1 accept loop, 2 workers", that a
//! bind was tried "without SO_REUSEADDR, as Python's default", how many times its threads
//! were switched out. A wrong word there teaches something false while every lesson still
//! passes, so these tests run small scenarios against the lab's own server and compare the
//! lines the transcript shows, word for word, with `[..]` where a port, a count the kernel
//! decides or a duration goes.
//!
//! The lines are looked up, not compared in order: the server's threads report what they
//! did while the clients act, so two runs can show the same lines in different orders
//! (lesson 06); the order is checked by `Transcript::check_causality`, in every lesson.

use socket_lab::scenario::report::matches;
use socket_lab::scenario::{self, Scenario, Target, Views};

/// Runs `text` against the lab's own server and returns the transcript's lines.
fn transcript(text: &str) -> Vec<String> {
    transcript_with(text, Views::default())
}

/// [`transcript`], with the kernel's view (`socket-lab run --kernel`) when `views` asks.
fn transcript_with(text: &str, views: Views) -> Vec<String> {
    let text = format!("# narration\n{text}");
    let scenario = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let transcript = scenario::run_with(
        &scenario,
        "narration",
        &Target::OwnServer,
        views,
        &mut |_| {},
    )
    .unwrap_or_else(|failure| panic!("the scenario failed: {failure:?}\n{text}"));
    transcript
        .entries
        .iter()
        .map(|entry| entry.text.clone())
        .collect()
}

/// The lines that match `pattern`.
fn lines_like<'a>(lines: &'a [String], pattern: &str) -> Vec<&'a str> {
    lines
        .iter()
        .map(String::as_str)
        .filter(|line| matches(pattern, line))
        .collect()
}

/// The one line that matches `pattern`; the whole transcript if there is not exactly one.
fn the_line<'a>(lines: &'a [String], pattern: &str) -> &'a str {
    match lines_like(lines, pattern)[..] {
        [line] => line,
        ref found => panic!(
            "{} lines match {pattern:?}; the transcript:\n{}",
            found.len(),
            lines.join("\n")
        ),
    }
}

/// The numbers in `line`, in order (`2,085` read as 2085).
fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit() && c != ',')
        .map(|word| word.replace(',', ""))
        .filter_map(|word| word.parse().ok())
        .collect()
}

/// The context switches a `server: threads` line reports, as (all, waiting, preempted).
fn switches(line: &str) -> (u64, u64, u64) {
    let (_, tail) = line
        .split_once("switched out ")
        .unwrap_or_else(|| panic!("no switches in {line:?}"));
    match numbers(tail)[..] {
        [all, waiting, preempted, ..] => (all, waiting, preempted),
        _ => panic!("not three counts in {line:?}"),
    }
}

#[test]
fn the_threads_engine_is_shown_as_an_accept_loop_and_a_worker_a_client() {
    let lines = transcript(
        "server tcp engine=threads\n\
         alice: connect\n\
         bob: connect\n\
         alice: send \"hi\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         bob: send \"hi\"\n\
         bob: recv 1024 = \"server recv success\"\n\
         server: threads = 3\n",
    );
    let line = the_line(
        &lines,
        "kernel   the server's threads, in /proc/self/task: 3: 1 accept loop, 2 workers (a worker serves one connection at a time, on a stack of 256 KiB it reserved); switched out [..] since they started ([..] waiting, voluntary_ctxt_switches; [..] preempted, nonvoluntary_ctxt_switches)",
    );
    let (all, waiting, preempted) = switches(line);
    // Whether a worker has blocked yet depends on the timing: its client's message may be
    // there before its first recv. The iterative case below has a thread that must have.
    assert_eq!(all, waiting + preempted, "{line}");
}

#[test]
fn the_iterative_engine_is_shown_as_one_thread_that_serves_one_client() {
    let lines = transcript(
        "server tcp engine=iterative\n\
         alice: connect\n\
         alice: send \"hi\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         bob: connect\n\
         bob: send \"anyone?\"\n\
         bob: settimeout 300ms\n\
         bob: recv 1024 = timeout\n\
         server: threads = 1\n\
         alice: close\n\
         bob: settimeout 5s\n\
         bob: recv 1024 = \"server recv success\"\n",
    );
    let line = the_line(
        &lines,
        "kernel   the server's threads, in /proc/self/task: 1: 1 thread (it accepts a client and serves it until it leaves); switched out [..] since they started ([..] waiting, voluntary_ctxt_switches; [..] preempted, nonvoluntary_ctxt_switches)",
    );
    let (all, waiting, preempted) = switches(line);
    assert_eq!(all, waiting + preempted, "{line}");
    // The one thread has been in recv on alice's idle connection for bob's 300 ms.
    assert!(waiting >= 1, "{line}");
    let times = if all == 1 { "time" } else { "times" };
    assert!(line.contains(&format!("switched out {all} {times} since")));
}

#[test]
fn the_epoll_engine_is_shown_as_one_event_loop_a_core() {
    let lines = transcript("server tcp engine=epoll\nserver: threads = cores\n");
    let cores = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(socket_lab::engine::event_loop::MAX_LOOPS);
    let loops = if cores == 1 { "loop" } else { "loops" };
    the_line(
        &lines,
        &format!(
            "kernel   the server's threads, in /proc/self/task: {cores}: {cores} event {loops} (an event loop serves every connection it accepted); switched out [..]; `cores` is {cores} here: the epoll engine runs one event loop per core (std::thread::available_parallelism)"
        ),
    );
}

#[test]
fn a_second_bind_says_which_socket_option_it_tried() {
    let lines = transcript(
        "server tcp\n\
         server: bind-again = error \"cannot bind 127.0.0.1:[..]: address already in use[..]\"\n\
         server: bind-again reuseaddr=off = error \"cannot bind 127.0.0.1:[..]: address already in use[..]\"\n",
    );
    the_line(
        &lines,
        "      bind a second server on 127.0.0.1:[..] (with SO_REUSEADDR): cannot bind 127.0.0.1:[..]: address already in use (is another server still running?[..]",
    );
    the_line(
        &lines,
        "      bind a second server on 127.0.0.1:[..] (without SO_REUSEADDR, as Python's default): cannot bind 127.0.0.1:[..]: address already in use (is another server still running?[..]",
    );
}

#[test]
fn a_restart_says_which_socket_option_it_tried() {
    let lines = transcript(
        "server tcp\n\
         alice: connect\n\
         alice: send \"hello\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         server: stop\n\
         alice: recv 1024 = eof\n\
         alice: close\n\
         server: restart reuseaddr=off = error \"cannot bind 127.0.0.1:[..]: address already in use[..]\"\n\
         server: restart = bound\n",
    );
    the_line(
        &lines,
        "      bind the server again on 127.0.0.1:[..] (without SO_REUSEADDR, as Python's default): cannot bind 127.0.0.1:[..]: address already in use (nothing listens there, but 1 connection of a server that stopped is in TIME_WAIT[..]",
    );
    the_line(
        &lines,
        "      bind the server again on 127.0.0.1:[..] (with SO_REUSEADDR): bound",
    );
}

/// What the server did for the crowd, summed over the lines that count it: each kind of
/// event once per line, as `(kind, times, bytes)`.
fn crowd_tallies(lines: &[String]) -> Vec<(String, u64, u64)> {
    let mut tallies: Vec<(String, u64, u64)> = Vec::new();
    for line in lines_like(
        lines,
        "      server, for the crowd (counted, not shown one by one): [..]",
    ) {
        let (_, parts) = line.split_once(": ").expect("the counts follow a colon");
        let mut kinds = Vec::new();
        for part in parts.split("; ") {
            let (kind, rest) = part.split_once(" × ").unwrap_or((part, ""));
            assert!(
                !kinds.contains(&kind),
                "{kind} is counted twice in one line: {line}"
            );
            kinds.push(kind);
            let counts = numbers(rest);
            let (times, bytes) = match kind {
                "recv(1024)" => (counts[0], counts[1]),
                _ => (counts.first().copied().unwrap_or(1), 0),
            };
            match tallies.iter_mut().find(|(seen, ..)| seen == kind) {
                Some((_, all, total)) => {
                    *all += times;
                    *total += bytes;
                }
                None => tallies.push((kind.to_string(), times, bytes)),
            }
        }
    }
    tallies
}

#[test]
fn a_crowd_is_counted_and_a_named_client_beside_it_is_shown() {
    let lines = transcript(
        "server tcp\n\
         alice: connect\n\
         crowd: connect 3\n\
         crowd: send \"hello\"\n\
         crowd: recv 1024 = \"server recv success\"\n\
         alice: send \"hi\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         alice: close\n\
         crowd: close\n",
    );
    the_line(
        &lines,
        "kernel   descriptors: at most [..] per table (RLIMIT_NOFILE, raised to its hard limit, `ulimit -Hn`[..]); the crowd's 3 go in a table of its own, the server's in the process's table ([..] open now); local ports for them: [..] (net.ipv4.ip_local_port_range = [..])",
    );
    the_line(
        &lines,
        "crowd ──connect (SYN, SYN-ACK, ACK) × 3──▶ server   all open after [..] ms, from local ports [..] to [..]",
    );
    the_line(
        &lines,
        "crowd ──\"hello\" (5 B) × 3──▶ server   each connection sends it once",
    );
    the_line(
        &lines,
        "crowd ◀──\"server recv success\" (19 B) × 3── server   every connection has it, by recv(1024), within [..] ms",
    );
    the_line(&lines, "crowd ──close (FIN) × 3──▶ server");
    // alice is no member of the crowd: her calls are shown one by one.
    the_line(&lines, "      server accept() → alice (127.0.0.1:[..])");
    the_line(&lines, "      server recv(1024) from alice → \"hi\"");
    let tallies = crowd_tallies(&lines);
    let tally = |kind: &str| {
        tallies
            .iter()
            .find(|(seen, ..)| seen == kind)
            .map(|(_, times, bytes)| (*times, *bytes))
    };
    assert_eq!(tally("accept()"), Some((3, 0)), "{tallies:?}");
    assert_eq!(tally("recv(1024)"), Some((3, 15)), "{tallies:?}");
    assert_eq!(tally("recv(1024) → 0 bytes"), Some((3, 0)), "{tallies:?}");
    let acked = the_line(
        &lines,
        "      server, for the crowd (counted, not shown one by one): [..]recv(1024) × [..] B in all), an ack (19 B) for each[..]",
    );
    // What the server did for the crowd is said when it happened: its acks before the
    // crowd's recvs of them.
    let place = |line: &str| lines.iter().position(|said| said == line);
    let crowd_got = lines_like(&lines, "crowd ◀──[..]");
    assert!(
        place(acked) < place(crowd_got[0]),
        "the acks are counted after the crowd received them:\n{}",
        lines.join("\n")
    );
}

#[test]
fn a_crowd_that_the_server_leaves_is_counted_as_the_server_stopping() {
    let lines = transcript(
        "server tcp\n\
         crowd: connect 3\n\
         crowd: send \"hello\"\n\
         crowd: recv 1024 = \"server recv success\"\n\
         server: stop\n",
    );
    let tallies = crowd_tallies(&lines);
    assert!(
        tallies.contains(&("close()".to_string(), 3, 0)),
        "{tallies:?}"
    );
    the_line(
        &lines,
        "      server, for the crowd (counted, not shown one by one): [..]close() × [..]: the server is stopping",
    );
}

/// A server with fewer slots than the crowd says once that all its slots are busy: counted
/// with the crowd's events ("logged:" for once), and shown in its own words when a step
/// asks for the log line. How often it is said after the crowd closes depends on how the
/// closes and accepts interleave, so only the first count is exact.
#[test]
fn a_server_too_small_for_the_crowd_says_once_that_its_slots_are_busy() {
    const BUSY: &str = "all 2 client slots are busy; new connections wait in the listen queue (raise --max-clients to serve more at once)";
    let lines = transcript(
        "server tcp max-clients=2\n\
         crowd: connect 5\n\
         server: log \"[..]busy[..]\"\n\
         crowd: close\n",
    );
    let counted = lines_like(
        &lines,
        "      server, for the crowd (counted, not shown one by one): [..]",
    );
    assert_eq!(
        counted.first().copied(),
        Some(
            format!("      server, for the crowd (counted, not shown one by one): accept() × 2; logged: {BUSY}")
                .as_str()
        ),
        "{}",
        lines.join("\n")
    );
    the_line(&lines, &format!("      server log: {BUSY}"));
}

/// The kernel's view: each step's state changes, named by whose socket it is, and the accept
/// queue with its limit worked out from the backlog.
#[test]
fn the_kernel_view_names_each_socket_and_its_change() {
    let kernel = || Views {
        kernel: true,
        ..Views::default()
    };
    let lines = transcript_with(
        "server tcp accept=paused backlog=3\n\
         alice: connect\n\
         kernel: state alice = ESTABLISHED\n\
         kernel: state server of alice = ESTABLISHED\n\
         kernel: accept-queue = 1\n\
         server: resume-accept\n\
         kernel: accept-queue = 0\n\
         alice: send \"hello\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         alice: close\n\
         server: log \"[alice] disconnected\"\n\
         kernel: state alice = TIME_WAIT\n",
        kernel(),
    );
    the_line(&lines, "kernel   server's listening socket: LISTEN");
    the_line(&lines, "kernel   alice's socket: ESTABLISHED");
    the_line(&lines, "kernel   server's socket for alice: ESTABLISHED");
    the_line(
        &lines,
        "kernel   alice's socket: ESTABLISHED; rtt [..] ms, retransmission timeout [..] ms, [..] unacknowledged, [..] sent again",
    );
    the_line(
        &lines,
        "kernel   the server's socket for alice: ESTABLISHED",
    );
    the_line(
        &lines,
        "kernel   server's listening socket: 1 connection in the accept queue (listen backlog 3, so up to 4 wait)",
    );
    the_line(
        &lines,
        "kernel   server's listening socket: 0 connections in the accept queue (listen backlog 3, so up to 4 wait)",
    );
    the_line(
        &lines,
        "kernel   alice's socket: TIME_WAIT (the kernel frees it in about [..] s)[..]",
    );
    // A socket that is still there is never said to be gone.
    assert!(
        lines_like(&lines, "kernel   server's listening socket: gone[..]").is_empty(),
        "{}",
        lines.join("\n")
    );
    // After the close, one step saw both ends change.
    assert!(
        lines.iter().any(|line| line
            .starts_with("kernel   server's socket for alice: gone (after the step before: ")),
        "{}",
        lines.join("\n")
    );
    // A backlog above net.core.somaxconn is lowered to it, and one more waits.
    let lines = transcript_with(
        "server tcp accept=paused backlog=65535\n\
         alice: connect\n\
         kernel: accept-queue = 1\n",
        kernel(),
    );
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let limit = if somaxconn < 65535 {
        format!(
            "listen backlog 65535, lowered to net.core.somaxconn = {somaxconn}, so up to {} wait",
            somaxconn + 1
        )
    } else {
        "listen backlog 65535, so up to 65536 wait".to_string()
    };
    the_line(
        &lines,
        &format!("kernel   server's listening socket: 1 connection in the accept queue ({limit})"),
    );
    // A backlog equal to somaxconn is not lowered.
    let lines = transcript_with(
        &format!(
            "server tcp accept=paused backlog={}\nalice: connect\nkernel: accept-queue = 1\n",
            somaxconn.min(65535)
        ),
        kernel(),
    );
    the_line(
        &lines,
        &format!(
            "kernel   server's listening socket: 1 connection in the accept queue (listen backlog {}, so up to {} wait)",
            somaxconn.min(65535),
            somaxconn.min(65535) + 1
        ),
    );
}

/// A datagram server has one socket, and stopping closes it: no listening socket, no
/// connections.
#[test]
fn a_stopping_datagram_server_closes_its_one_socket() {
    let lines = transcript("server udp\nserver: stop\n");
    the_line(
        &lines,
        "      server stops: it closes its one socket (a datagram server has no connections)",
    );
    assert!(lines_like(&lines, "[..]listening socket[..]").is_empty());
}

/// A lesson's second server is named in every line about it: how it started, what it
/// accepted, received and answered.
#[test]
fn a_second_server_is_named_in_its_own_lines() {
    let lines = transcript(
        "server tcp\n\
         server unix as local\n\
         alice: connect-to local\n\
         alice: send \"hi\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         alice: close\n",
    );
    the_line(
        &lines,
        "local listening on /[..]/local.sock (unix ack server, recv size 1024)",
    );
    the_line(&lines, "alice ──connect──▶ local   (alice is unnamed)");
    the_line(&lines, "      local accept() → alice (unnamed)");
    the_line(&lines, "      local recv(1024) from alice → \"hi\"");
    the_line(
        &lines,
        "      local ──\"server recv success\" (19 B)──▶ alice",
    );
    the_line(
        &lines,
        "      local recv(1024) from alice (unnamed) → 0 bytes: end of stream; local close()",
    );
    the_line(
        &lines,
        "alice ──close──▶ local   (no segment on a Unix socket: local's recv returns 0)",
    );
    assert!(
        lines_like(&lines, "[..]the server[..]").is_empty(),
        "no line gives the first server what the second did:\n{}",
        lines.join("\n")
    );
    assert!(
        lines_like(&lines, "      server [..]").is_empty(),
        "the first server did nothing here:\n{}",
        lines.join("\n")
    );
    let lines = transcript(
        "server tcp\n\
         server http as web\n\
         alice: connect-to web\n\
         alice: send \"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\n\
         alice: recv-response = \"HTTP/1.1 200 OK\\r\\n[..]\"\n",
    );
    the_line(&lines, "web listening on 127.0.0.1:[..] (a web server)");
    the_line(
        &lines,
        "      web has a whole request from alice (127.0.0.1:[..]) (from its recvs): \"GET / HTTP/1.1\"",
    );
    the_line(&lines, "      web ──200 response ([..] B)──▶ alice");
}

/// A step that waits for something stops as soon as there is nothing left to wait for: an
/// accept queue already at its count, and, at the end of the file, a server that does not
/// accept (it will never read what alice sent). With a timeout of 30 s, a wait that ran to
/// the deadline would take a minute; the whole file takes milliseconds.
#[test]
fn waits_end_when_there_is_nothing_left_to_wait_for() {
    let started = std::time::Instant::now();
    transcript(
        "server tcp accept=paused\n\
         timeout 30s\n\
         alice: connect\n\
         kernel: accept-queue = 1\n\
         alice: send \"x\"\n",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// The accept queue's limit, worked out as `listen` does: a backlog above
/// `net.core.somaxconn` is lowered to it, a backlog equal to it is not.
#[test]
fn the_accept_queue_says_when_somaxconn_lowers_the_backlog() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("/proc/sys/net/core/somaxconn")
        .trim()
        .parse()
        .expect("somaxconn is a number");
    let queue = |backlog: u64| {
        let lines = transcript(&format!(
            "server tcp accept=paused backlog={backlog}\nalice: connect\nkernel: accept-queue = 1\n"
        ));
        the_line(&lines, "kernel   server's listening socket: [..]").to_string()
    };
    assert_eq!(
        queue(somaxconn),
        format!(
            "kernel   server's listening socket: 1 connection in the accept queue (listen backlog {somaxconn}, so up to {} wait)",
            somaxconn + 1
        )
    );
    // A lesson's backlog is at most 65,535, so where somaxconn is that high it lowers nothing.
    if somaxconn >= 65_535 {
        eprintln!("net.core.somaxconn is {somaxconn} here: no backlog a lesson takes exceeds it");
        return;
    }
    assert_eq!(
        queue(somaxconn + 1),
        format!(
            "kernel   server's listening socket: 1 connection in the accept queue (listen backlog {}, lowered to net.core.somaxconn = {somaxconn}, so up to {} wait)",
            somaxconn + 1,
            somaxconn + 1
        )
    );
}

/// Inside the lab's private network namespace (`run --wire`), a lesson's first sysctl says
/// that the values are the namespace's, once; outside it, nothing is said.
#[test]
fn sysctls_read_in_the_private_network_say_so_once() {
    const NOTICE: &str = "kernel   (read inside the lab's private network namespace[..]";
    let steps = "server tcp\n\
                 kernel: sysctl net.ipv4.tcp_fin_timeout\n\
                 kernel: syn-schedule\n\
                 kernel: sysctl net.core.somaxconn\n";
    let inside = transcript_with(
        steps,
        Views {
            private_network: true,
            ..Views::default()
        },
    );
    the_line(&inside, NOTICE);
    let outside = transcript(steps);
    assert_eq!(lines_like(&outside, NOTICE), Vec::<&str>::new());
}

/// A Unix socket's path is made in a directory of the run's own, and the run leaves
/// nothing behind: the directory is gone when the run returns.
#[test]
fn a_unix_sockets_directory_is_removed_when_the_run_ends() {
    let lines = transcript(
        "server unix\n\
         alice: connect\n\
         alice: send \"hi\"\n\
         alice: recv 1024 = \"server recv success\"\n\
         alice: close\n",
    );
    let listening = the_line(
        &lines,
        "server listening on [..]/server.sock (unix ack server[..]",
    );
    let path = listening
        .strip_prefix("server listening on ")
        .and_then(|rest| rest.split_once(" ("))
        .map(|(path, _)| std::path::Path::new(path))
        .expect("a path");
    let dir = path.parent().expect("the socket's directory");
    assert!(
        dir.starts_with(std::env::temp_dir()) && dir != std::env::temp_dir(),
        "{dir:?}"
    );
    assert!(!dir.exists(), "{dir:?} is still there");
}

/// Against another server, which reports no accepts to keep pace with, a crowd larger than
/// its listen queue (128 + 1) still connects in full, 128 connects at a time, and its close
/// is not waited for: that server's log is not ours to read.
#[test]
fn a_crowd_larger_than_the_listen_queue_connects_to_another_server() {
    use socket_lab::endpoint::{Address, Endpoint};
    use socket_lab::server::{Server, ServerConfig};
    let server = Server::bind(ServerConfig {
        endpoint: Endpoint::inet("127.0.0.1", 0),
        max_clients: 400,
        ..ServerConfig::default()
    })
    .expect("the other server binds")
    .spawn(std::sync::Arc::new(|_| {}));
    let Address::Inet(addr) = server.addr.clone() else {
        panic!("a TCP server has an IP address");
    };
    let text = "# another server\n\
                server tcp\n\
                crowd: connect 150\n\
                crowd: send \"hi\"\n\
                crowd: recv 1024 = \"server recv success\"\n\
                crowd: close\n";
    let scenario = Scenario::parse(text).expect("the scenario parses");
    let transcript = scenario::run_with(
        &scenario,
        "another-server",
        &Target::External(Endpoint::inet("127.0.0.1", addr.port())),
        Views::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|failure| panic!("the scenario failed: {failure:?}"));
    let lines: Vec<String> = transcript.entries.iter().map(|e| e.text.clone()).collect();
    the_line(&lines, "crowd ──close (FIN) × 150──▶ server");
    assert_eq!(crowd_tallies(&lines), Vec::new());
    let _ = server.stop();
}

/// The web server reports neither its accepts nor the ends of connections (the ack server
/// does), so a crowd larger than its listen queue (128 + 1) connects without keeping pace
/// with accepts, and its close is not waited for.
#[test]
fn a_crowd_on_the_web_server_waits_for_no_count_of_its_own() {
    let lines = transcript(
        "server http\n\
         crowd: connect 200\n\
         crowd: close\n",
    );
    the_line(&lines, "crowd ──close (FIN) × 200──▶ server");
}
