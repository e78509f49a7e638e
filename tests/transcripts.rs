//! Every lesson's transcript, compared with the one saved in `tests/transcripts/`: what a
//! learner reads when running `socket-lab run scenarios/NN-name.txt`. A lesson passes on what
//! its steps check (`tests/scenarios.rs`); this file catches a change in what it *says*: a
//! line gone, a line added, a word changed, a byte count or a socket option named wrongly.
//!
//! What may differ from run to run is made the same before comparing: ports, the temporary
//! directories of Unix sockets, durations in milliseconds, and the seconds left in TIME_WAIT;
//! a split network's summaries of the server's answers are left out ([`BUNCHED`]).
//! The lines are compared as a multiset, each line as often as it was saved, not in order: the
//! server's threads report what they did while the clients act, so two runs show the same
//! lines in different orders (lesson 06), and the order is checked by
//! `Transcript::check_causality` in `tests/scenarios.rs`.
//!
//! Not compared, because what they show is this machine's, not the lesson's: the lessons that
//! watch the wire (windows and timers are the kernel's), that measure the process or hold a
//! crowd (threads, memory, context switches), that show sysctls, and the two in
//! [`MACHINE_DEPENDENT`].
//!
//! After changing what a lesson says on purpose, save the new transcripts with
//! `TRANSCRIPTS=overwrite cargo test --test transcripts` and read the diff before committing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use regex::Regex;
use socket_lab::scenario::{self, Scenario, Target, View};

/// Lessons whose transcript depends on how this machine's kernel splits a large send among
/// recvs.
const MACHINE_DEPENDENT: &[(&str, &str)] = &[
    (
        "08-large-message",
        "how 64 KiB arrives across recvs is the kernel's timing",
    ),
    (
        "19-partial-send",
        "how many send calls a sendall takes depends on the buffers",
    ),
];

/// A split network's summaries of what the server sent, not compared. The network reports
/// each read it made from the sender, and the server writes once per recv, so whether one
/// read took one answer or two is the threads' timing (`bytes 0..21`, or `bytes 0..42`); the
/// last summary may even come after the lesson's last step. What the pieces did, one byte
/// per recv, the lesson's steps check.
static BUNCHED: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"^   network  server → \w+: bytes \d+\.\.\d+ passed on as \d+ pieces$")
        .expect("the pattern is valid")
});

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lessons = scenario::discover(&root.join("scenarios")).expect("the lessons are listed");
    let saved = root.join("tests/transcripts");
    let overwrite = std::env::var_os("TRANSCRIPTS").is_some_and(|value| value == "overwrite");
    let mut trials = Vec::new();
    for path in lessons {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("the lesson is readable");
        let Ok(scenario) = Scenario::parse(&text) else {
            // tests/scenarios.rs reports it.
            continue;
        };
        let the_machines = scenario.watches_the_wire()
            || scenario.measures_its_process()
            || scenario.largest_crowd().is_some()
            || text.lines().any(|line| line.starts_with("kernel: sysctl"))
            || MACHINE_DEPENDENT.iter().any(|(name, _)| *name == stem);
        if the_machines {
            continue;
        }
        let file = saved.join(format!("{stem}.txt"));
        trials.push(Trial::test(format!("transcript/{stem}"), move || {
            compare(&path, &scenario, &file, overwrite)
        }));
    }
    trials.push(Trial::test(
        "the-comparison-counts-every-line",
        the_comparison_counts_every_line,
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// Runs the lesson and compares its transcript with the saved one (or saves it).
fn compare(
    lesson: &Path,
    scenario: &Scenario,
    saved: &PathBuf,
    overwrite: bool,
) -> Result<(), Failed> {
    let shown = lesson.display().to_string();
    let transcript = scenario::run(scenario, &shown, &Target::OwnServer, &mut |_| {})
        .map_err(|failure| failure.to_string())?;
    let lines: Vec<String> = transcript
        .entries
        .iter()
        .map(|entry| scenario::render(entry, View::default()))
        .collect();
    let lines = same_every_run(&lines);
    let lines: Vec<String> = lines
        .into_iter()
        .filter(|line| !BUNCHED.is_match(line))
        .collect();
    let expected = std::fs::read_to_string(saved);
    if overwrite {
        // The same lines in another order are the same transcript: the file is left as it
        // was, so a diff shows only what a change changed.
        let same = expected.as_ref().is_ok_and(|expected| {
            difference(expected.lines(), lines.iter().map(String::as_str)) == (vec![], vec![])
        });
        if !same {
            std::fs::write(saved, lines.join("\n") + "\n")
                .map_err(|e| format!("cannot write {}: {e}", saved.display()))?;
        }
        return Ok(());
    }
    let expected = expected.map_err(|e| {
        format!(
            "cannot read {} ({e}): save it with `TRANSCRIPTS=overwrite cargo test --test transcripts`",
            saved.display()
        )
    })?;
    let (missing, extra) = difference(expected.lines(), lines.iter().map(String::as_str));
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let list = |lines: &[String]| {
        lines
            .iter()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Err(format!(
        "{shown} no longer says what {} says.\nSaved, but not said now:\n{}\nSaid now, but not saved:\n{}\nIf the change is meant, save it: TRANSCRIPTS=overwrite cargo test --test transcripts",
        saved.display(),
        list(&missing),
        list(&extra)
    )
    .into())
}

/// The lines of `expected` that `actual` lacks, and the lines of `actual` that `expected`
/// lacks, each as often as it is lacking.
fn difference<'a>(
    expected: impl Iterator<Item = &'a str>,
    actual: impl Iterator<Item = &'a str>,
) -> (Vec<String>, Vec<String>) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for line in expected {
        *count.entry(line).or_default() += 1;
    }
    for line in actual {
        *count.entry(line).or_default() -= 1;
    }
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    for (line, n) in count {
        for _ in 0..n.unsigned_abs() {
            if n > 0 {
                missing.push(line.to_string());
            } else {
                extra.push(line.to_string());
            }
        }
    }
    (missing, extra)
}

/// The transcript with what differs from run to run replaced: each port by the name of
/// whoever holds it (`127.0.0.1:{alice}`, so a line that shows alice's address where bob's
/// belongs still fails), other ports by `PORT`, the temporary directories of Unix sockets,
/// how long a recv waited, other milliseconds, and the seconds left in TIME_WAIT. Only ports of four or five digits are
/// ports the kernel picked; a payload's `127.0.0.1:1` is left alone.
fn same_every_run(lines: &[String]) -> Vec<String> {
    let address = r"(127\.0\.0\.1|\[::1\]):(\d{4,5})\b";
    let holders = [
        format!(r"^server listening on {address}"),
        format!(r"^(?:\w+) bound to {address}"),
        format!(r"between the clients and the server, at {address}"),
        format!(r"\((?P<name>\w+) is {address}\)"),
        format!(r"(?P<name>\w+)'s connection goes on to the server from {address}"),
    ];
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (index, holder) in holders.iter().enumerate() {
        let holder = Regex::new(holder).expect("the pattern is valid");
        for line in lines {
            for found in holder.captures_iter(line) {
                let port = found[found.len() - 1].to_string();
                let name = match (index, found.name("name")) {
                    (_, Some(name)) if index == 4 => format!("{} via the network", name.as_str()),
                    (_, Some(name)) => name.as_str().to_string(),
                    (0, None) => "server".to_string(),
                    (1, None) => line.split(' ').next().unwrap_or("server").to_string(),
                    _ => "network".to_string(),
                };
                names.entry(port).or_insert(name);
            }
        }
    }
    let port = Regex::new(address).expect("the pattern is valid");
    let rules = [
        // How long a recv waited is shown only when a person would notice, which on a busy
        // machine is sometimes.
        (r"   after \d+ ms\b", ""),
        (r"socket-lab(-client)?-\d+-\d+", "socket-lab$1-N"),
        (r"\d+(\.\d+)? ms\b", "N ms"),
        (r"about \d+ s\b", "about N s"),
    ];
    lines
        .iter()
        .map(|line| {
            let line = port.replace_all(line, |found: &regex::Captures| {
                let name = names.get(&found[2]).map_or("PORT", String::as_str);
                format!("{}:{{{name}}}", &found[1])
            });
            rules
                .iter()
                .fold(line.into_owned(), |line, (pattern, with)| {
                    Regex::new(pattern)
                        .expect("the pattern is valid")
                        .replace_all(&line, *with)
                        .into_owned()
                })
        })
        .collect()
}

/// The comparison itself must be able to fail: a line missing, one added, one said twice.
fn the_comparison_counts_every_line() -> Result<(), Failed> {
    let saved = ["a", "b", "b"];
    let (missing, extra) = difference(saved.into_iter(), ["b", "a", "b"].into_iter());
    if !(missing.is_empty() && extra.is_empty()) {
        return Err("the same lines in another order differ".into());
    }
    let (missing, extra) = difference(saved.into_iter(), ["a", "b", "c"].into_iter());
    if missing != ["b"] || extra != ["c"] {
        return Err(format!("missing {missing:?}, extra {extra:?}").into());
    }
    let lines = [
        "server listening on 127.0.0.1:40000 (tcp ack server)",
        "alice ──connect──▶ server   (alice is 127.0.0.1:40370) after 12 ms, about 59 s",
        "      server log: [127.0.0.1:40370] send a message to server: [127.0.0.1:1]",
        "      server accept() → 127.0.0.1:40999",
    ]
    .map(String::from);
    let same = same_every_run(&lines);
    let expected = [
        "server listening on 127.0.0.1:{server} (tcp ack server)",
        "alice ──connect──▶ server   (alice is 127.0.0.1:{alice}) after N ms, about N s",
        "      server log: [127.0.0.1:{alice}] send a message to server: [127.0.0.1:1]",
        "      server accept() → 127.0.0.1:{PORT}",
    ];
    if same != expected {
        return Err(format!("normalised to {same:#?}").into());
    }
    Ok(())
}
