//! What the end-to-end tests of the `nitro` binary share: running it, reading its records,
//! and skipping (with the reason printed) when QEMU or a provisioned guest is missing.
#![allow(dead_code)] // each test file uses its own part

use std::process::Command;

use serde_json::Value;

/// The `nitro` binary under test.
pub fn nitro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nitro"))
}

/// True when `guest` can run here; otherwise prints why not.
pub fn guest_available(guest: &str) -> bool {
    guest_kernel(guest).is_some()
}

/// The provisioned kernel of `guest` when it and QEMU are there; otherwise prints why not.
pub fn guest_kernel(guest: &str) -> Option<std::path::PathBuf> {
    let kernel = nitro::guest::cache_dir()
        .join("guests")
        .join(guest)
        .join("vmlinuz");
    if !kernel.exists() {
        eprintln!(
            "SKIP: {} missing: run scripts/provision.sh",
            kernel.display()
        );
        return None;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 not installed: run scripts/provision.sh");
        return None;
    }
    Some(kernel)
}

/// What one run of the binary gave.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `nitro ARGS...`.
pub fn run(args: &[&str]) -> Run {
    let out = nitro().args(args).output().expect("nitro binary runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The jsonl records of a run's stdout.
pub fn records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect()
}
