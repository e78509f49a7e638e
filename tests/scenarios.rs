//! Every file in `scenarios/` is one test per engine its server runs on, named by its file
//! stem and the engine (`03-recv-size/epoll`), found at run time: adding a lesson is adding a
//! file. `cargo test --test scenarios -- 03-recv` runs one lesson on every engine; a lesson
//! whose `server` line names an engine (`engine=iterative`) runs on that one only. Each starts
//! its own server on a free port, so they run in parallel.
//!
//! A lesson passes when every step goes as the file says *and* its transcript is in an order
//! that could have happened (`Transcript::check_causality`): no byte received before it was
//! sent, no connection accepted before it was made.
//!
//! `tests/must-fail/` holds scenarios that must fail, one per verb and outcome form, each
//! saying where and how (`# expect-failure at line 7: recv(1024): but got ...`): a runner that
//! accepted any bytes, or a pattern that ignored its tail, would let every lesson pass, and
//! these would then fail.
//!
//! A lesson that watches the wire (`wire:` steps) needs a packet socket, which needs a
//! network namespace of its own, which needs a process with one thread: the test harness has
//! many, so such a lesson runs as `socket-lab run --wire FILE` in a child process (which
//! checks causality itself). Where this machine cannot make a user namespace, those lessons
//! are reported as ignored, with the reason printed once.
//!
//! A lesson that measures its own process (`server: memory`) runs as `socket-lab run FILE` in
//! a child process too, so the memory it reads is its own and not the other lessons'. A
//! lesson whose crowd (`crowd: connect 10000`) does not fit this machine's descriptor limit
//! or local ports is reported as ignored, with the reason.

use std::path::Path;
use std::process::Command;

use libtest_mimic::{Arguments, Failed, Trial};
use socket_lab::engine::Engine;
use socket_lab::scenario::report::matches;
use socket_lab::scenario::{self, Scenario, Target};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let files =
        scenario::discover(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    let mut wire = None;
    let mut trials = Vec::new();
    for path in files {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scenario = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Scenario::parse(&text).ok());
        let watches_wire = scenario.as_ref().is_some_and(Scenario::watches_the_wire);
        let measures_process = scenario
            .as_ref()
            .is_some_and(Scenario::measures_its_process);
        let crowd_room = match scenario.as_ref().and_then(Scenario::largest_crowd) {
            Some(count) => scenario::run::room_for_crowd(count),
            None => Ok(()),
        };
        if let Err(why) = &crowd_room {
            eprintln!("{stem} is ignored: {why}");
        }
        // One trial per engine the lesson runs on; a file that does not parse is one trial,
        // which fails and says why.
        let engines = scenario.map(|scenario| scenario.engines_to_test());
        let engines: Vec<Option<Engine>> = match engines {
            Some(engines) if !engines.is_empty() => engines.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        for engine in engines {
            let name = match engine {
                Some(engine) => format!("{stem}/{engine}"),
                None => stem.clone(),
            };
            let path = path.clone();
            if watches_wire {
                let available = *wire.get_or_insert_with(wire_available);
                trials.push(
                    Trial::test(name, move || run_with_wire(&path, engine))
                        .with_ignored_flag(!available),
                );
            } else if measures_process {
                trials.push(
                    Trial::test(name, move || run_alone(&path, engine))
                        .with_ignored_flag(crowd_room.is_err()),
                );
            } else {
                trials.push(
                    Trial::test(name, move || run_file(&path, engine))
                        .with_ignored_flag(crowd_room.is_err()),
                );
            }
        }
    }
    let must_fail = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/must-fail");
    let cases = scenario::discover(&must_fail)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", must_fail.display()));
    assert!(
        !cases.is_empty(),
        "no must-fail cases in {}",
        must_fail.display()
    );
    let trials = trials
        .into_iter()
        .chain(cases.into_iter().map(|path| {
            let name = format!(
                "must-fail/{}",
                path.file_stem().unwrap_or_default().to_string_lossy()
            );
            Trial::test(name, move || must_fail_as_it_says(&path))
        }))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Runs a case that must fail, and checks it fails at the line and with the words its
/// `# expect-failure at line N: TEXT` says (`\n` a line break, `[..]` any text).
fn must_fail_as_it_says(path: &Path) -> Result<(), Failed> {
    let shown = format!(
        "tests/must-fail/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let (line, words) = text
        .lines()
        .find_map(|line| line.strip_prefix("# expect-failure at line "))
        .and_then(|rest| rest.split_once(": "))
        .and_then(|(line, words)| Some((line.parse::<usize>().ok()?, words)))
        .ok_or_else(|| format!("{shown}: no `# expect-failure at line N: TEXT` line"))?;
    // The words are found anywhere in the message; `\n` in them is a line break and `[..]`
    // any text, so a case can pin down a message of several lines around a port it cannot
    // know.
    let words = format!("[..]{}[..]", words.replace("\\n", "\n"));
    let scenario =
        Scenario::parse(&text).map_err(|e| format!("{shown}:{}: {}", e.line, e.message))?;
    match scenario::run(&scenario, &shown, &Target::OwnServer, &mut |_| {}) {
        Ok(transcript) => {
            Err(format!("{shown}: passed, but it must fail at line {line}:\n{transcript}").into())
        }
        Err(failure) if failure.line == line && matches(&words, &failure.message) => Ok(()),
        Err(failure) => Err(format!(
            "{shown}: must fail at line {line} with {words:?}, but failed like this:\n{failure}"
        )
        .into()),
    }
}

fn shown(path: &Path) -> String {
    format!(
        "scenarios/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

fn run_file(path: &Path, engine: Option<Engine>) -> Result<(), Failed> {
    let shown = shown(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mut scenario =
        Scenario::parse(&text).map_err(|e| format!("{shown}:{}: {}", e.line, e.message))?;
    if let Some(engine) = engine {
        scenario = scenario
            .on_engine(engine)
            .map_err(|why| format!("{shown}: {why}"))?;
    }
    let shown = match engine {
        Some(engine) => format!("{shown} (engine={engine})"),
        None => shown,
    };
    // libtest-mimic does not capture output, so the narration travels in the failure message.
    let transcript = scenario::run(&scenario, &shown, &Target::OwnServer, &mut |_| {})
        .map_err(|failure| failure.to_string())?;
    transcript
        .check_causality()
        .map_err(|problem| format!("{shown}: the transcript is out of order: {problem}").into())
}

/// `socket-lab run --wire FILE`, in a child process of its own.
fn run_with_wire(path: &Path, engine: Option<Engine>) -> Result<(), Failed> {
    run_in_child(path, engine, &["--wire", "--kernel"])
}

/// `socket-lab run FILE`, in a child process of its own (which checks causality itself).
fn run_alone(path: &Path, engine: Option<Engine>) -> Result<(), Failed> {
    run_in_child(path, engine, &[])
}

/// `socket-lab run VIEWS [--engine E] FILE` in a child process; its output is the failure.
fn run_in_child(path: &Path, engine: Option<Engine>, views: &[&str]) -> Result<(), Failed> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socket-lab"));
    command.arg("run").args(views);
    if let Some(engine) = engine {
        command.args(["--engine", engine.name()]);
    }
    let output = command
        .arg(path)
        .output()
        .map_err(|e| format!("cannot start socket-lab: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let shown_command = std::iter::once("socket-lab run")
        .chain(views.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    Err(format!(
        "{}: `{shown_command}` failed ({}):\n{}\n{}",
        shown(path),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
    .into())
}

/// Whether `socket-lab run --wire` can capture here: it enters a private network namespace
/// and says in one line on stderr when it cannot. The probe has no `wire:` step, so a
/// runner whose wire steps are broken fails the wire lessons instead of having them ignored.
fn wire_available() -> bool {
    let dir = std::env::temp_dir().join(format!("socket-lab-probe-{}", std::process::id()));
    let probe = dir.join("probe.txt");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe, "# probe\nserver tcp\nalice: connect\n"));
    let output = written.and_then(|()| {
        Command::new(env!("CARGO_BIN_EXE_socket-lab"))
            .args(["run", "--wire"])
            .arg(&probe)
            .output()
    });
    let _ = std::fs::remove_dir_all(&dir);
    match output {
        Ok(output)
            if output.status.success()
                && !String::from_utf8_lossy(&output.stderr)
                    .contains("running without the wire") =>
        {
            true
        }
        Ok(output) => {
            eprintln!(
                "lessons that watch the wire are ignored: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("lessons that watch the wire are ignored: cannot run socket-lab: {e}");
            false
        }
    }
}
