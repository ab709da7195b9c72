//! Shared helpers of the end-to-end tests: the `nitro` binary, the provisioned guests, and
//! the JSON records `nitro trace` writes.
//!
//! The binary is built on first use with `cargo build --release -p nitro` (the cargo that
//! runs the tests, `env!("CARGO")`, in the workspace root), and found in
//! `$CARGO_TARGET_DIR/release` or `<workspace>/target/release`.
#![allow(dead_code)]

use std::{path::PathBuf, process::Command, sync::OnceLock};

use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The `nitro` binary, built once per test process.
pub fn nitro_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "nitro", "--bin", "nitro"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --release -p nitro failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        let target = if target.is_absolute() {
            target
        } else {
            workspace().join(target)
        };
        target.join("release/nitro")
    })
    .clone()
}

/// `$NITRO_CACHE` or `~/.cache/nitro`.
pub fn cache() -> PathBuf {
    std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or("/root".into())).join(".cache/nitro")
        })
}

/// The kernel of a provisioned guest.
pub fn kernel(guest: &str) -> PathBuf {
    cache().join("guests").join(guest).join("vmlinuz")
}

/// True when the guest can run here; otherwise prints why not.
pub fn guest_available(guest: &str) -> bool {
    let k = kernel(guest);
    if !k.exists() || !cache().join("initramfs.cpio.gz").exists() {
        eprintln!(
            "SKIP: {} or the initramfs missing: run scripts/provision.sh",
            k.display()
        );
        return false;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 not installed: run scripts/provision.sh");
        return false;
    }
    true
}

/// What one `nitro trace` run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit status of nitro (the guest command's status).
    pub status: i32,
    /// One JSON record per completed call.
    pub records: Vec<Value>,
    /// Guest output and nitro's messages.
    pub stderr: String,
}

/// `nitro trace --guest GUEST [--kaslr] -- sh -c SCRIPT`, records as JSON.
pub fn trace_sh(guest: &str, kaslr: bool, script: &str) -> Run {
    let mut args = vec!["trace", "--guest", guest, "--string-limit", "256"];
    if kaslr {
        args.push("--kaslr");
    }
    args.extend(["--", "/bin/sh", "-c", script]);
    trace(&args)
}

/// Runs `nitro` with `args`.
pub fn trace(args: &[&str]) -> Run {
    let out = Command::new(nitro_bin())
        .args(args)
        .output()
        .expect("nitro runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect();
    Run {
        status: out.status.code().unwrap_or(-1),
        records,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The string value of argument `name` of a record.
pub fn arg<'a>(rec: &'a Value, name: &str) -> Option<&'a Value> {
    rec["args"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| &a["value"])
}

/// The string form of argument `name` (strings as they are, other values as JSON text).
pub fn arg_str(rec: &Value, name: &str) -> String {
    match arg(rec, name) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The records of calls named `name` whose argument `key` equals `value`.
pub fn find<'a>(recs: &'a [Value], name: &str, key: &str, value: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["name"] == name && arg_str(r, key) == value)
        .collect()
}

/// A record's return value as a number (`ret` is a number, or `{"value":..}`-like text).
pub fn ret(rec: &Value) -> Option<i64> {
    match &rec["ret"] {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => o.get("value").and_then(Value::as_i64),
        _ => None,
    }
}

/// Traces a guest whose init is waiting for GO with `driver` and `backend` until it powers
/// off; returns every completed call and the command's exit status.
pub fn trace_after_go(
    run: &mut nitro::guest::GuestRun,
    driver: nitro_listener::qemu::QemuDriver,
    backend: nitro_backend_linux::LinuxBackend,
) -> (Vec<nitro_os::Syscall>, Option<i32>) {
    use std::sync::{Arc, Mutex};
    let calls: Arc<Mutex<Vec<nitro_os::Syscall>>> = Arc::default();
    let sink_calls = calls.clone();
    let mut nitro = nitro::Nitro::new(Box::new(driver), Box::new(backend));
    nitro.add_sink(Box::new(nitro::sink::CallbackSink(
        move |r: &nitro::Record| sink_calls.lock().expect("lock").push(r.call.clone()),
    )));
    nitro.arm().expect("arm");
    nitro.resume().expect("resume");
    run.go().expect("go");
    nitro.run().expect("trace");
    run.finish(std::time::Duration::from_secs(10));
    let calls = calls.lock().expect("lock").clone();
    (calls, run.exit_status)
}
