//! The README documents what the code does: every verb of the scenario language has its row
//! in the README's table, written as the verb table in `src/scenario/syntax.rs` says, and the
//! limits the README states are the code's.

use socket_lab::scenario::syntax::{KERNEL_VERBS, VERBS, WIRE_VERBS};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable")
}

#[test]
fn every_scenario_verb_has_its_row_in_the_readme() {
    let readme = readme();
    let mut missing = Vec::new();
    for verb in VERBS.iter().chain(KERNEL_VERBS).chain(WIRE_VERBS) {
        let actor = verb.actor.name();
        // Markdown tables need `|` escaped inside a cell.
        let row = format!(
            "| {actor} | `{}` | {} |",
            verb.usage.replace('|', "\\|"),
            verb.does.replace('|', "\\|")
        );
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    assert!(
        missing.is_empty(),
        "README.md lacks these rows of the verb table (copy them into \"The format\"):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readme_links_the_claims() {
    assert!(readme().contains("[`CLAIMS.md`](CLAIMS.md)"));
}

/// The limits table states how much unsent output the event loop queues before it stops
/// reading a connection: the number must be the code's.
#[test]
fn the_stated_output_bound_is_the_event_loop_s() {
    let stated = format!(
        "read no further once {} KiB are queued",
        socket_lab::engine::event_loop::HIGH_WATER / 1024
    );
    assert!(
        readme().contains(&stated),
        "README.md's limits table should say \"{stated}\""
    );
}
