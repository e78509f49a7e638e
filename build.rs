//! Tells the tests what this machine has, so that a test whose tool or kernel feature is
//! missing is compiled with `#[ignore]` and reported as *ignored*, never as passed:
//! `cfg(has_curl)`, `has_chromium`, `has_python3`, `ipv6_loopback`, `localhost_is_ipv6`,
//! `low_ports_privileged`. `.ci/run` installs the tools, so in CI they all run.
//!
//! The script runs again whenever one of the files it looked at changes (a tool installed
//! later, /etc/hosts edited), or on every build while one of them is missing.

use std::path::Path;
use std::process::Command;

const CFGS: [&str; 6] = [
    "has_curl",
    "has_chromium",
    "has_python3",
    "ipv6_loopback",
    "localhost_is_ipv6",
    "low_ports_privileged",
];

fn main() {
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for (cfg, tool) in [
        ("has_curl", "curl"),
        ("has_chromium", "chromium"),
        ("has_python3", "python3"),
    ] {
        watch(&format!("/usr/bin/{tool}"));
        if runs(tool) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    watch("/proc/net/if_inet6");
    let ipv6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|interfaces| {
        interfaces
            .lines()
            .any(|line| line.starts_with("00000000000000000000000000000001"))
    });
    if ipv6 {
        println!("cargo::rustc-cfg=ipv6_loopback");
    }
    watch("/etc/hosts");
    let localhost_v6 = std::fs::read_to_string("/etc/hosts").is_ok_and(|hosts| {
        hosts.lines().any(|line| {
            let mut words = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace();
            words.next() == Some("::1") && words.any(|name| name == "localhost")
        })
    });
    if ipv6 && localhost_v6 {
        println!("cargo::rustc-cfg=localhost_is_ipv6");
    }
    let start = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    watch(start);
    let low_ports_privileged = std::fs::read_to_string(start)
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .is_none_or(|first| first > 1);
    if low_ports_privileged {
        println!("cargo::rustc-cfg=low_ports_privileged");
    }
}

fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Re-run this script when `path` changes; a path that does not exist counts as changed on
/// every build, so a tool installed later is found.
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo::rerun-if-changed={path}");
    } else {
        println!("cargo::rerun-if-changed={path}.socket-lab-absent");
    }
}
