//! `nitro attach` against a QEMU that nitro did not start: the test starts the guest itself
//! (QEMU with a gdbstub and a shared RAM file, through `nitro::guest`), lets the workload
//! run, attaches with `--qemu-pid` (RAM through /proc/PID/mem), detaches after a while,
//! attaches again with `--memory-file`, detaches, and checks that the guest finishes its
//! workload normally: exit status 0 through the control channel and every line of output.
//!
//! Needs QEMU and the guests provisioned by `scripts/provision.sh`; skips (saying why)
//! without them.

use std::{
    io::Write,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use nitro::guest::{self, ControlMessage, GuestRun, GuestSpec};
use nitro_listener::{qemu::QemuDriver, Driver};
use serde_json::Value;

const ITERATIONS: usize = 400;

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn kernel() -> Option<PathBuf> {
    let k = guest::guest_kernel("debian-6.1").ok()?;
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    (qemu.is_ok() && guest::default_initrd().is_ok()).then_some(k)
}

fn attach(args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nitro"))
        .arg("attach")
        .args(args)
        .output()
        .expect("nitro runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let recs = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl {l:?}: {e}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        recs,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn attach_trace_detach_and_the_guest_finishes() {
    let Some(kernel) = kernel() else {
        eprintln!("SKIP: QEMU or the debian-6.1 guest is missing: run scripts/provision.sh");
        return;
    };
    let script = format!(
        "i=0; while [ $i -lt {ITERATIONS} ]; do cat /proc/version; i=$((i+1)); done; echo loop-done"
    );
    let spec = GuestSpec::new(
        kernel.clone(),
        guest::default_initrd().expect("initrd"),
        vec!["/bin/sh".into(), "-c".into(), script],
    );
    let output = Shared::default();
    let mut run = GuestRun::start(&spec, Box::new(output.clone())).expect("QEMU starts");
    // QEMU starts with its vCPUs stopped: let it run without nitro.
    let mut kick = QemuDriver::connect(&run.gdb_endpoint, None, 1).expect("gdbstub answers");
    kick.detach().expect("detach starts the guest");
    drop(kick);
    assert_eq!(
        run.wait_control(Duration::from_secs(120)).expect("boots"),
        ControlMessage::Ready
    );
    run.go().expect("control channel");

    let k = kernel.display().to_string();
    let pid = run.qemu_pid().to_string();
    let (status, recs, stderr) = attach(&[
        "--gdb",
        &run.gdb_endpoint,
        "--qemu-pid",
        &pid,
        "--kernel",
        &k,
        "--duration",
        "1.5",
    ]);
    assert_eq!(status, 0, "nitro attach failed: {stderr}");
    assert!(stderr.contains("detached from"), "{stderr}");
    let opened = recs
        .iter()
        .filter(|r| r["name"] == "openat" && r["args"][1]["value"] == "/proc/version")
        .count();
    assert!(opened > 0, "no openat(/proc/version) traced: {recs:?}");
    assert!(
        recs.iter().any(|r| r["process"]["name"] == "cat"),
        "no call attributed to cat"
    );

    // Attach again, this time through the shared RAM file and without a kernel file (symbols
    // and layouts from guest memory): the first detach left the stub usable and the guest
    // running.
    run.poll_control();
    if run.exit_status.is_none() {
        let file = run.memory.path().to_string();
        let (status, recs2, stderr) = attach(&[
            "--gdb",
            &run.gdb_endpoint,
            "--memory-file",
            &file,
            "--duration",
            "1",
        ]);
        assert_eq!(status, 0, "second attach failed: {stderr}");
        assert!(!recs2.is_empty(), "second attach traced nothing: {stderr}");
    }

    // The guest finishes on its own, with no traps left.
    let status = run
        .wait_exit(Duration::from_secs(120))
        .expect("guest runs on");
    assert_eq!(status, Some(0), "console: {}", run.console());
    run.finish(Duration::from_secs(20));
    let text = String::from_utf8_lossy(&output.0.lock().expect("lock")).into_owned();
    assert_eq!(
        text.matches("Linux version").count(),
        ITERATIONS,
        "guest output incomplete"
    );
    assert!(text.contains("loop-done"));
}
