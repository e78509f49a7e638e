//! The README's examples, run: every ```` ```console ```` block in `README.md` is a list of
//! `$ socket-lab ...` commands, each followed by what it prints (stdout and stderr together)
//! and, after `? N`, its exit code. trycmd runs each one and fails on any difference, so an
//! example cannot drift from the program. `[..]` in an expected line matches what varies (a
//! port), a line `...` any lines (or lines whose order varies: the server's threads). Blocks
//! marked `console,ignore` need a server already running, or time something, and are not run.
//!
//! Two habits of trycmd show in the README: a block's last output ends with an empty line
//! (trycmd drops the last newline of what it expects), and a line of output with a `\` in
//! it is left out with `...` or `[..]`, since trycmd turns every `\` the program prints into
//! `/` (Windows paths) before comparing, and `"d!\r\n"` would never match.
//!
//! To see what the program prints now: `TRYCMD=dump cargo test --test readme` writes it to
//! `dump/`.

use std::time::Duration;

#[test]
fn every_console_example_in_the_readme_prints_what_it_says() {
    trycmd::TestCases::new()
        .register_bin(
            "socket-lab",
            std::path::Path::new(env!("CARGO_BIN_EXE_socket-lab")),
        )
        // Help wraps at the terminal's width (100 columns at most): the README shows 100.
        .env("COLUMNS", "100")
        // No colour, whatever the environment asks for: the README shows plain text.
        .env("NO_COLOR", "1")
        // A lesson's steps wait 5 s at most; a hung example fails rather than stalls.
        .timeout(Duration::from_secs(60))
        .case("README.md");
}
