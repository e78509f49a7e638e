//! Grade your own server: `socket-lab check` runs every lesson that can run against a
//! learner's server and writes a report card, one line per lesson and per walkthrough claim.
//!
//! The walkthrough's reader ends up with a `server.py` of their own. The lessons already play
//! their client side against any server (`run --port PORT`); what a learner needs on top is to
//! know which lessons apply to their server, which pass, and, for each that fails, why in
//! their words. So:
//!
//! - **Which lessons apply** is read from each lesson file: its `server` line (the kind of
//!   server, its recv size, its ack), the steps only the lab's own server can take part in
//!   (stopping it, pausing its accept, a second bind on its port, watching the wire inside
//!   the lab's private network), and its `needs` lines. A lesson that cannot apply is
//!   skipped with the reason, never run into a timeout ([`why_not`]).
//! - **Why a lesson failed** is the file's own `hint` for the failing step when it has one
//!   (lesson 06: "your server serves one client at a time"), else a hint from what the client
//!   saw: nothing came back, the server closed the connection, it reset it, or it sent other
//!   bytes ([`Symptom`]).
//! - **Claims** come from `CLAIMS.md` ([`crate::claims`]): a claim holds for the server when
//!   every one of its lessons that ran passed.
//!
//! [`Report`] prints as the card, and as JSON for a teacher's grading script (`--json`; the
//! shape is documented in the README and fixed by `tests/check.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::claims::Claim;
use crate::endpoint::{Endpoint, Stream};
use crate::error::Error;
use crate::escape::escape;
use crate::scenario::syntax::{
    Action, KernelCall, Need, Scenario, ServerCall, ServerKind, Setting,
};
use crate::scenario::{self, Symptom, Target};
use crate::server::{ACK, RECV_SIZE};

/// The server being graded, as the learner describes it.
#[derive(Clone, Debug)]
pub struct Subject {
    pub endpoint: Endpoint,
    pub kind: ServerKind,
    /// The `n` in its `recv(n)`: the walkthrough's 1024 unless told otherwise.
    pub recv_size: usize,
    /// What it answers each recv with: the walkthrough's `server recv success` unless told.
    pub ack: Vec<u8>,
    /// A hostile network to put between the lessons' clients and the server
    /// (`--network split=1`), to find framing bugs a quiet loopback hides.
    pub network: Option<crate::proxy::Network>,
    /// The server serves socket-lab's own pages (see [`serves_the_labs_pages`]).
    pub labs_pages: bool,
}

impl Subject {
    pub fn new(endpoint: Endpoint, kind: ServerKind) -> Subject {
        Subject {
            endpoint,
            kind,
            recv_size: RECV_SIZE,
            ack: ACK.to_vec(),
            network: None,
            labs_pages: false,
        }
    }
}

/// How one lesson went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Failed {
        /// `file:line: step` of the step that did not go as the lesson says.
        step: String,
        line: usize,
        /// What happened, as the runner says it.
        what: String,
        /// What it means for the learner's server, and what to try.
        hint: String,
    },
    Skipped {
        reason: String,
    },
}

/// One line of the card.
#[derive(Clone, Debug, Serialize)]
pub struct LessonResult {
    /// The lesson's number, from its file name (`06`).
    pub lesson: String,
    pub file: String,
    pub title: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the lesson needs of a server beyond its claims (`needs` lines): its failure is
    /// about that, and does not count against the claims it cites.
    pub needs: Vec<&'static str>,
}

/// How the lessons of a claim fared on this server. Not whether the claim is true: the
/// lessons of a claim Linux corrects pass when the server behaves as Linux does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimVerdict {
    /// Every lesson of the claim that ran passed.
    Passed,
    /// A lesson of the claim failed (one that needs more than the claim, such as two
    /// clients at once, does not count against it).
    Failed,
    /// None of its lessons could run against this server.
    Unchecked,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClaimResult {
    pub claim: u32,
    pub title: String,
    pub result: ClaimVerdict,
    /// The lesson numbers that ran for it, those that passed, and those whose failure counts
    /// against it.
    pub ran: Vec<String>,
    pub passed: Vec<String>,
    pub failed: Vec<String>,
}

/// The report card.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub kind: String,
    pub lessons: Vec<LessonResult>,
    pub claims: Vec<ClaimResult>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Report {
    /// Everything that ran passed (and something ran).
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Why `scenario` cannot run against another server at all: it takes part in the server's
/// life, or it looks where only the lab's own server can be seen.
pub fn own_server_only(scenario: &Scenario) -> Option<String> {
    for setting in &scenario.server.settings {
        let why = match setting {
            Setting::Accept(_) => {
                "it holds the server's accept (accept=paused), which only the lab's own server can be told to do"
            }
            Setting::Backlog(_) => "it sets the server's listen backlog",
            Setting::MaxClients(_) => "it sets how many clients the server serves at once",
            Setting::IdleTimeout(_) => "it sets the server's idle timeout",
            Setting::Engine(_) => "it chooses how the lab's own server serves its clients",
            Setting::RecvSize(_) | Setting::Ack(_) | Setting::Host(_) => continue,
        };
        return Some(why.into());
    }
    if scenario.second.is_some() {
        return Some("it runs two of the lab's own servers side by side".into());
    }
    if scenario.server.kind == ServerKind::None {
        return Some("it is about a port where nobody listens, not about a server".into());
    }
    for step in &scenario.steps {
        let why = match &step.action {
            Action::Server(
                ServerCall::Stop | ServerCall::Restart { .. } | ServerCall::Replace(_),
            ) => "it stops (or restarts, or replaces) the server",
            Action::Server(ServerCall::BindAgain { .. }) => {
                "it binds a second server on the server's own port"
            }
            Action::Server(ServerCall::ResumeAccept) => "it holds and resumes the server's accept",
            Action::Wire(_) => {
                "it watches the wire, which needs the server inside the lab's private network"
            }
            Action::Kernel(KernelCall::AcceptQueue(_)) => {
                "it counts the lab's own listening socket's queue"
            }
            _ => continue,
        };
        return Some(why.into());
    }
    None
}

/// Why `scenario` cannot run against `subject`, if it cannot.
pub fn why_not(scenario: &Scenario, subject: &Subject) -> Option<String> {
    if let Some(why) = own_server_only(scenario) {
        return Some(why);
    }
    let kind = scenario.server.kind;
    if kind != subject.kind {
        return Some(format!(
            "it needs {} server; yours is {}",
            with_article(describe_kind(kind)),
            with_article(describe_kind(subject.kind))
        ));
    }
    let config = scenario.server.config();
    if kind != ServerKind::Http && config.recv_size != subject.recv_size {
        return Some(format!(
            "it needs a server that reads with recv({}); yours reads with recv({}) (tell check with --recv-size if it does not)",
            config.recv_size, subject.recv_size
        ));
    }
    if kind != ServerKind::Http && config.ack != subject.ack {
        return Some(format!(
            "it needs a server that answers \"{}\"; yours answers \"{}\" (tell check with --ack if it does not)",
            escape(&config.ack),
            escape(&subject.ack)
        ));
    }
    if scenario.needs.contains(&Need::TheLabsPages) && !subject.labs_pages {
        return Some(
            "it checks what socket-lab's own web pages say (the page at / that shows the request); yours are your own".into(),
        );
    }
    if let (Some(host), Endpoint::Inet { host: theirs, .. }) =
        (scenario.server.host(), &subject.endpoint)
    {
        let wants_v6 = host.contains(':');
        let is_v6 = theirs.contains(':');
        if wants_v6 != is_v6 {
            return Some(format!("it needs a server on {host}; yours is on {theirs}"));
        }
    }
    None
}

/// What a lesson expects of a server that `run` against it cannot check before it starts,
/// said up front instead of after a timeout.
pub fn expectations(scenario: &Scenario) -> Vec<String> {
    let mut said = Vec::new();
    let config = scenario.server.config();
    if scenario.server.kind != ServerKind::Http {
        if config.recv_size != RECV_SIZE {
            said.push(format!(
                "this lesson expects a server that reads with recv({}); if yours reads more at a time, the steps that count recvs will fail",
                config.recv_size
            ));
        }
        if config.ack != ACK {
            said.push(format!(
                "this lesson expects the ack \"{}\"",
                escape(&config.ack)
            ));
        }
    }
    for need in &scenario.needs {
        match need {
            Need::TwoClientsAtOnce => said.push(
                "this lesson needs a server that serves a second client while the first stays connected".into(),
            ),
            Need::TheLabsPages => said.push(
                "this lesson checks what socket-lab's own web pages say; another web server's pages differ".into(),
            ),
        }
    }
    said
}

fn describe_kind(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Tcp => "TCP",
        ServerKind::Udp => "UDP",
        ServerKind::Unix => "Unix stream",
        ServerKind::UnixDgram => "Unix datagram",
        ServerKind::Http => "HTTP",
        ServerKind::None => "(no)",
    }
}

/// "a TCP", "an HTTP", "a UDP", "a Unix stream".
fn with_article(kind: &str) -> String {
    // "an HTTP" (aitch), "a UDP" (you).
    let article = if kind.starts_with('H') { "an" } else { "a" };
    format!("{article} {kind}")
}

/// A hint from what the client saw, for a step whose file has none.
fn hint_for(symptom: Symptom, scenario: &Scenario) -> String {
    let two_clients = scenario.needs.contains(&Need::TwoClientsAtOnce);
    match symptom {
        Symptom::NothingArrived if two_clients => "nothing came back while another client stayed connected: your server seems to serve one client at a time (the walkthrough's server.py does too); give each connection a thread of its own, or use selectors".into(),
        Symptom::NothingArrived => "nothing came back in time: does your server answer every recv that returns data? (the walkthrough's server answers each with `server recv success`)".into(),
        Symptom::Closed => "your server closed the connection here: does it handle only one message per connection? To serve more, keep calling recv in a loop until it returns b'' (0 bytes), and close only then (lesson 02)".into(),
        Symptom::Reset => "your server reset the connection: it closed its socket while a message was still unread (does it stop after one message? To serve more, keep calling recv in a loop until it returns b''), or the process ended (lessons 12 and 30)".into(),
        Symptom::WrongBytes => "your server sent other bytes than the lesson expects: `socket-lab run --port PORT` (or `--unix PATH`) on this lesson shows both side by side".into(),
        Symptom::Refused => STOPPED.into(),
        Symptom::Other => "see the step and what happened above".into(),
    }
}

/// Whether a web server serves socket-lab's own pages: its `/about` page names the lab's
/// source file for it. One request, asked once before the lessons.
pub fn serves_the_labs_pages(endpoint: &Endpoint) -> bool {
    let Ok(mut stream) = Stream::connect_timeout(endpoint, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    use std::io::{Read, Write};
    if stream
        .write_all(b"GET /about HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut page = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut page);
    page.windows(LABS_MARK.len())
        .any(|window| window == LABS_MARK)
}

/// What socket-lab's `/about` page says of itself (`src/http/pages/about.html`).
const LABS_MARK: &[u8] = b"<code>socket-lab</code> binary with <code>include_str!</code>";

/// Why the lessons after a server stopped answering are skipped.
const STOPPED: &str = "your server is not answering any more (connection refused): it stopped during an earlier lesson. Did an exception end it? A client that vanishes makes send or recv raise ConnectionResetError or BrokenPipeError: catch them for that client and go on to the next";

/// Whether a stream server still listens: a connect that is refused says it does not (a
/// datagram server cannot be asked without a protocol of its own).
fn still_listening(subject: &Subject) -> bool {
    if subject.kind.is_datagram() {
        return true;
    }
    !matches!(
        Stream::connect_timeout(&subject.endpoint, PROBE_TIMEOUT),
        Err(Error::Connect { source, .. }) if source.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// How long the probe for a stopped server waits.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs every lesson in `lessons` that can run against `subject`, telling `progress` about
/// each as it finishes, and grades the claims in `claims`.
pub fn check(
    lessons: &[PathBuf],
    claims: &[Claim],
    subject: &Subject,
    progress: &mut dyn FnMut(&LessonResult),
) -> Report {
    let mut results = Vec::new();
    let mut stopped = false;
    for path in lessons {
        let mut result = check_lesson(path, subject, stopped);
        // A server that crashed fails every lesson after it, each for no reason of its own:
        // say it once, and skip the rest.
        if matches!(result.verdict, Verdict::Failed { .. }) && !still_listening(subject) {
            stopped = true;
            if let Verdict::Failed { hint, .. } = &mut result.verdict {
                hint.push_str(". Then your server stopped answering (connection refused): did this lesson's client make it crash?");
            }
        }
        progress(&result);
        results.push(result);
    }
    let count = |wanted: fn(&Verdict) -> bool| {
        results
            .iter()
            .filter(|result| wanted(&result.verdict))
            .count()
    };
    let passed = count(|verdict| matches!(verdict, Verdict::Passed));
    let failed = count(|verdict| matches!(verdict, Verdict::Failed { .. }));
    let skipped = count(|verdict| matches!(verdict, Verdict::Skipped { .. }));
    let claims = claims
        .iter()
        .map(|claim| grade_claim(claim, &results))
        .collect();
    Report {
        target: subject.endpoint.to_string(),
        kind: describe_kind(subject.kind).to_string(),
        lessons: results,
        claims,
        passed,
        failed,
        skipped,
    }
}

fn grade_claim(claim: &Claim, results: &[LessonResult]) -> ClaimResult {
    let mine: Vec<&LessonResult> = results
        .iter()
        .filter(|result| claim.lessons.contains(&result.file))
        .collect();
    let ran: Vec<String> = mine
        .iter()
        .filter(|result| !matches!(result.verdict, Verdict::Skipped { .. }))
        .map(|result| result.lesson.clone())
        .collect();
    let failed: Vec<String> = mine
        .iter()
        .filter(|result| {
            matches!(result.verdict, Verdict::Failed { .. }) && result.needs.is_empty()
        })
        .map(|result| result.lesson.clone())
        .collect();
    let passed: Vec<String> = mine
        .iter()
        .filter(|result| matches!(result.verdict, Verdict::Passed))
        .map(|result| result.lesson.clone())
        .collect();
    let result = if !failed.is_empty() {
        ClaimVerdict::Failed
    } else if ran.is_empty() {
        ClaimVerdict::Unchecked
    } else {
        ClaimVerdict::Passed
    };
    ClaimResult {
        claim: claim.number,
        title: claim.title.clone(),
        result,
        ran,
        passed,
        failed,
    }
}

fn check_lesson(path: &Path, subject: &Subject, stopped: bool) -> LessonResult {
    let file = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lesson = file.split('-').next().unwrap_or_default().to_string();
    let mut result = LessonResult {
        lesson,
        file: file.clone(),
        title: String::new(),
        verdict: Verdict::Passed,
        needs: Vec::new(),
    };
    let text = match scenario::read_lesson(path) {
        Ok(text) => text,
        Err(e) => {
            result.verdict = Verdict::Skipped {
                reason: format!("cannot read it: {e}"),
            };
            return result;
        }
    };
    let scenario = match Scenario::parse(&text) {
        Ok(scenario) => scenario,
        Err(e) => {
            result.verdict = Verdict::Skipped {
                reason: format!("it does not parse: line {}: {}", e.line, e.message),
            };
            return result;
        }
    };
    result.title = scenario.title.clone();
    result.needs = scenario.needs.iter().map(Need::name).collect();
    if let Some(reason) = why_not(&scenario, subject) {
        result.verdict = Verdict::Skipped { reason };
        return result;
    }
    if stopped {
        result.verdict = Verdict::Skipped {
            reason: STOPPED.into(),
        };
        return result;
    }
    let shown = format!("scenarios/{file}");
    let target = Target::External(subject.endpoint.clone());
    let mut scenario = scenario;
    if let Some(network) = subject.network {
        if subject.kind.is_datagram() {
            result.verdict = Verdict::Skipped {
                reason: "the network's proxy relays connections, and a datagram server has none"
                    .into(),
            };
            return result;
        }
        scenario.network = Some(network);
    }
    if let Err(failure) = scenario::run(&scenario, &shown, &target, &mut |_| {}) {
        // "expected X" and "but got Y": the first two lines say it.
        let what = failure
            .message
            .lines()
            .take(2)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        result.verdict = Verdict::Failed {
            step: format!("{}:{}: {}", failure.file, failure.line, failure.step),
            line: failure.line,
            what,
            hint: match (subject.network, failure.symptom) {
                // Under a hostile network the usual failure is framing, whatever the step.
                (Some(network), Symptom::WrongBytes | Symptom::NothingArrived) => format!(
                    "through a network that does this ({network}) the bytes arrived in other pieces than they were sent: a program that takes one recv for one message breaks here. Frame the messages (a length in front, or a line end) and read until a whole one is in (lessons 33 and 35)"
                ),
                _ => failure
                    .hint
                    .as_deref()
                    .map_or_else(|| hint_for(failure.symptom, &scenario), str::to_string),
            },
        };
    }
    result
}

impl fmt::Display for Report {
    /// The card: a line per lesson, then per claim, then the count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lessons")?;
        for result in &self.lessons {
            writeln!(f, "{}", lesson_line(result))?;
        }
        writeln!(
            f,
            "\nclaims of the walkthrough: ✔ says the lessons that prove or correct a claim passed on your server, not that the claim is true (CLAIMS.md says which ones Linux corrects)"
        )?;
        for claim in &self.claims {
            let (mark, note) = match claim.result {
                ClaimVerdict::Passed => (
                    "✔",
                    format!("its lessons passed: {}", claim.passed.join(", ")),
                ),
                ClaimVerdict::Failed => {
                    ("✘", format!("failed in lesson {}", claim.failed.join(", ")))
                }
                ClaimVerdict::Unchecked => (
                    "–",
                    "not checked: none of its lessons can run against this server".into(),
                ),
            };
            writeln!(
                f,
                "  {mark} claim {:<2}  {}   ({note})",
                claim.claim, claim.title
            )?;
        }
        write!(
            f,
            "\ncheck: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// One lesson's line of the card (and, when it failed, the lines that say why).
pub fn lesson_line(result: &LessonResult) -> String {
    match &result.verdict {
        Verdict::Passed => format!("  ✔ {}  {}", result.lesson, result.title),
        Verdict::Skipped { reason } => {
            format!(
                "  – {}  {} — skipped: {reason}",
                result.lesson, result.title
            )
        }
        Verdict::Failed {
            step, what, hint, ..
        } => format!(
            "  ✘ {}  {} — {hint}\n        at {step}\n        {what}",
            result.lesson, result.title
        ),
    }
}
