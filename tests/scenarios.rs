//! Every file in `scenarios/` is one test, named by its file stem and found at run time:
//! adding a lesson is adding a file. `cargo test --test scenarios -- truncation` runs one.
//! Each starts its own server on a free port, so they run in parallel.
//!
//! A lesson passes when every step goes as the file says *and* its transcript is in an order
//! that could have happened (`Transcript::check_causality`): no byte received before it was
//! sent, no connection accepted before it was made.

use std::path::Path;

use libtest_mimic::{Arguments, Failed, Trial};
use socket_lab::scenario::{self, Scenario, Target};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let files =
        scenario::discover(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || run_file(&path))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn run_file(path: &Path) -> Result<(), Failed> {
    let shown = format!(
        "scenarios/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let scenario =
        Scenario::parse(&text).map_err(|e| format!("{shown}:{}: {}", e.line, e.message))?;
    // libtest-mimic does not capture output, so the narration travels in the failure message.
    let transcript = scenario::run(&scenario, &shown, &Target::OwnServer, &mut |_| {})
        .map_err(|failure| failure.to_string())?;
    transcript
        .check_causality()
        .map_err(|problem| format!("{shown}: the transcript is out of order: {problem}").into())
}
