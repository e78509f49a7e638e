//! The wire's view through the real command: `socket-lab run --wire` as an ordinary user,
//! the pcap file it writes read back by `tshark`, and `wire:` steps that fail when the wire
//! says otherwise.
//!
//! A harness of its own (libtest-mimic) so that a test whose tool is missing, or whose
//! machine cannot make a user namespace, is reported as *ignored*, not passed: `.ci/run`
//! installs tshark, so there it runs.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::{Arguments, Failed, Trial};

/// The unprivileged user the handshake is captured as when the tests run as root.
const NOBODY: u32 = 65534;

fn main() {
    let args = Arguments::from_args();
    let wire = wire_unavailable();
    if let Some(reason) = &wire {
        eprintln!("wire tests are ignored: {reason}");
    }
    let tshark = which("tshark");
    if !tshark {
        eprintln!("the pcap test is ignored: tshark is not installed (apt-get install tshark)");
    }
    let trials = vec![
        Trial::test(
            "the_handshake_is_on_the_wire_for_an_ordinary_user",
            the_handshake_is_on_the_wire_for_an_ordinary_user,
        )
        .with_ignored_flag(wire.is_some()),
        Trial::test(
            "the_pcap_file_opens_in_tshark",
            the_pcap_file_opens_in_tshark,
        )
        .with_ignored_flag(wire.is_some() || !tshark),
        Trial::test(
            "a_wire_step_the_wire_contradicts_fails",
            a_wire_step_the_wire_contradicts_fails,
        )
        .with_ignored_flag(wire.is_some()),
        Trial::test(
            "the_private_namespace_is_said_once_before_its_sysctls",
            the_private_namespace_is_said_once_before_its_sysctls,
        )
        .with_ignored_flag(wire.is_some()),
        Trial::test(
            "a_silence_holds_on_a_quiet_connection_and_breaks_on_a_fin",
            a_silence_holds_on_a_quiet_connection_and_breaks_on_a_fin,
        )
        .with_ignored_flag(wire.is_some()),
        Trial::test(
            "a_connect_still_pending_is_named_for_its_client",
            a_connect_still_pending_is_named_for_its_client,
        )
        .with_ignored_flag(wire.is_some()),
        Trial::test(
            "wire_steps_without_the_wire_say_how_to_run_them",
            wire_steps_without_the_wire_say_how_to_run_them,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn socket_lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socket-lab"))
}

fn lesson(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn which(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// Why the wire cannot be watched here, if it cannot: `run --wire` says so on stderr.
fn wire_unavailable() -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let probe = dir.path().join("probe.txt");
    std::fs::write(&probe, "# probe\nserver tcp\nalice: connect\n").ok()?;
    // No `wire:` step in the probe: broken wire steps must fail the tests below, not have
    // them ignored.
    let output = socket_lab().args(["run", "--wire"]).arg(&probe).output();
    match output {
        Ok(output)
            if output.status.success()
                && !String::from_utf8_lossy(&output.stderr)
                    .contains("running without the wire") =>
        {
            None
        }
        Ok(output) => Some(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run socket-lab: {e}")),
    }
}

/// A directory an unprivileged user may write, for the pcap file.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("the directory opened to every user");
    dir
}

/// `socket-lab run --wire` as `nobody` when the tests run as root, so the capture is proved
/// to need no privilege; as the current user otherwise.
fn run_unprivileged(extra: &[&str], file: &str) -> Output {
    let mut command = socket_lab();
    command.args(["run", "--wire"]).args(extra).arg(file);
    if is_root() {
        command.uid(NOBODY).gid(NOBODY);
    }
    command.output().expect("socket-lab runs")
}

fn stdout_of(output: &Output) -> Result<String, Failed> {
    if !output.status.success() {
        return Err(format!(
            "socket-lab failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn the_handshake_is_on_the_wire_for_an_ordinary_user() -> Result<(), Failed> {
    let stdout = stdout_of(&run_unprivileged(
        &[],
        &lesson("28-handshake-and-close.txt"),
    ))?;
    let position = |line: &str| {
        stdout
            .find(line)
            .ok_or_else(|| format!("no line with {line:?} in:\n{stdout}"))
    };
    let syn = position("   wire   alice → server   SYN       seq=0 win=")?;
    let syn_ack = position("   wire   server → alice   SYN-ACK   seq=0 ack=1 win=")?;
    let ack = position("   wire   alice → server   ACK       seq=1 ack=1 win=")?;
    let accept = position("      server accept() → alice")?;
    if !(syn < syn_ack && syn_ack < ack && ack < accept) {
        return Err(format!("the handshake is out of order, or after accept:\n{stdout}").into());
    }
    position("kernel   alice's socket: TIME_WAIT")?;
    // Sequence numbers relative to each side's first, as Wireshark shows them: data moves
    // them by its length, a FIN by one; windows are scaled as the handshake agreed.
    for line in [
        "   wire   alice → server   PSH-ACK   seq=1 ack=1 win=",
        "   wire   server → alice   PSH-ACK   seq=1 ack=6 win=",
        "   wire   alice → server   FIN-ACK   seq=6 ack=20 win=",
        "   wire   server → alice   FIN-ACK   seq=20 ack=7 win=",
        "   wire   alice → server   ACK       seq=7 ack=21 win=",
    ] {
        let at = position(line)?;
        let window: String = stdout[at + line.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        // An unscaled window would read 512 or so; loopback's scaled one is tens of KiB.
        if window
            .parse::<u64>()
            .map_or(true, |window| window < 16 * 1024)
        {
            return Err(format!("a window of {window:?} in {line:?}:\n{stdout}").into());
        }
    }
    position(r#"len=5 "hello""#)?;
    position(r#"len=19 "server recv success""#)?;
    Ok(())
}

fn the_pcap_file_opens_in_tshark() -> Result<(), Failed> {
    let dir = shared_dir();
    let pcap = dir.path().join("handshake.pcap");
    let pcap = pcap.to_str().expect("a UTF-8 path");
    stdout_of(&run_unprivileged(
        &["--pcap", pcap],
        &lesson("28-handshake-and-close.txt"),
    ))?;
    let output = Command::new("tshark")
        .args([
            "-r",
            pcap,
            "-T",
            "fields",
            "-e",
            "tcp.flags.str",
            "-e",
            "tcp.len",
        ])
        .output()
        .map_err(|e| format!("cannot run tshark: {e}"))?;
    let listing = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "tshark -r failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let flags: Vec<&str> = listing
        .lines()
        .map(|line| line.split('\t').next().unwrap_or_default())
        .collect();
    // tshark writes flags as ········S· (SYN), ·······A··S· (SYN, ACK), ·······A···· (ACK).
    let first_three: Vec<String> = flags
        .iter()
        .take(3)
        .map(|flags| flags.chars().filter(|c| c.is_ascii_alphabetic()).collect())
        .collect();
    if first_three != ["S", "AS", "A"] {
        return Err(format!("the pcap does not open with the handshake:\n{listing}").into());
    }
    if !listing.lines().any(|line| line.ends_with("\t5")) {
        return Err(format!("no segment carries the 5 bytes of \"hello\":\n{listing}").into());
    }
    Ok(())
}

fn scenario_file(dir: &Path, text: &str) -> String {
    let path = dir.join("case.txt");
    std::fs::write(&path, text).expect("the scenario is written");
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Inside the lab's namespace, the network sysctls are the namespace's: the lesson says so
/// once, before the first one it shows.
fn the_private_namespace_is_said_once_before_its_sysctls() -> Result<(), Failed> {
    let dir = shared_dir();
    let file = scenario_file(
        dir.path(),
        "# sysctls\nserver tcp\nkernel: sysctl net.core.somaxconn\nkernel: sysctl net.ipv4.tcp_syn_retries\n",
    );
    let stdout = stdout_of(&run_unprivileged(&[], &file))?;
    let note = "kernel   (read inside the lab's private network namespace";
    let first = stdout.find("kernel   net.core.somaxconn = ");
    if stdout.matches(note).count() != 1
        || first.is_none()
        || stdout.find(note) > first
        || !stdout.contains("kernel   net.ipv4.tcp_syn_retries = ")
    {
        return Err(format!("the note once, before the sysctls:\n{stdout}").into());
    }
    Ok(())
}

/// A client whose connect is still pending (its SYN dropped by a full accept queue) has no
/// address a step has seen yet: its SYNs are named for it all the same, from the socket's
/// own local address, as are the wire lines after its connect completes.
fn a_connect_still_pending_is_named_for_its_client() -> Result<(), Failed> {
    let dir = shared_dir();
    let file = scenario_file(
        dir.path(),
        "# pending\nserver tcp backlog=0 accept=paused\nalice: connect\nbob: connect = pending 300ms\nwire: bob → server SYN\nserver: resume-accept\nbob: finish-connect\nwire: server → bob SYN ACK\n",
    );
    let stdout = stdout_of(&run_unprivileged(&[], &file))?;
    let syns = stdout
        .matches("   wire   bob → server   SYN       seq=0 win=")
        .count();
    if syns < 2 || stdout.contains("wire   127.0.0.1:") {
        return Err(
            format!("bob's first SYN, and the one resent, named for bob:\n{stdout}").into(),
        );
    }
    Ok(())
}

fn a_wire_step_the_wire_contradicts_fails() -> Result<(), Failed> {
    let dir = shared_dir();
    let file = scenario_file(
        dir.path(),
        "# no reset\nserver tcp\ntimeout 500ms\nalice: connect\nbob: connect\nwire: alice → server SYN\nwire: server → alice RST\n",
    );
    let output = run_unprivileged(&[], &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(8)
        || !stderr.contains(&format!("{file}:7: wire: server → alice RST"))
        || !stderr.contains("expected a RST segment from server to alice within 500ms; from server to alice the wire carried:\n      SYN-ACK len=0 win=")
        // Only what went that way: alice's SYN and ACK went the other, bob's SYN-ACK to bob.
        || stderr.contains("      SYN len=")
        || stderr.contains("      ACK len=")
        || stderr.matches("SYN-ACK len=").count() != 1
    {
        return Err(format!(
            "expected exit 8 naming line 7, got {}:\n{stderr}",
            output.status
        )
        .into());
    }
    Ok(())
}

fn a_silence_holds_on_a_quiet_connection_and_breaks_on_a_fin() -> Result<(), Failed> {
    let dir = shared_dir();
    let quiet = scenario_file(
        dir.path(),
        "# quiet\nserver tcp\nalice: connect\nwire: alice → server ACK\nwire: no segment for 200ms\n",
    );
    let output = run_unprivileged(&[], &quiet);
    if !output.status.success() {
        return Err(format!(
            "a quiet connection should pass `no segment`:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    // The server closes a connection idle for 100 ms: its FIN crosses during the silence.
    let broken = scenario_file(
        dir.path(),
        "# closed while quiet\nserver tcp idle-timeout=100ms\nalice: connect\nwire: alice → server ACK\nwire: no segment for 2s\n",
    );
    let output = run_unprivileged(&[], &broken);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() != Some(8)
        || !stderr.contains("expected no segment for 2s, but one crossed after")
        || !stdout.contains("server → alice   FIN-ACK")
    {
        return Err(format!(
            "expected the FIN to break the silence, got {}:\n{stderr}\n{stdout}",
            output.status
        )
        .into());
    }
    Ok(())
}

fn wire_steps_without_the_wire_say_how_to_run_them() -> Result<(), Failed> {
    let output = socket_lab()
        .args(["run", &lesson("28-handshake-and-close.txt")])
        .output()
        .map_err(|e| format!("cannot run socket-lab: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(8)
        || !stderr.contains("run the lesson with `socket-lab run --wire`")
    {
        return Err(format!(
            "expected exit 8 and how to run it, got {}:\n{stderr}",
            output.status
        )
        .into());
    }
    Ok(())
}
