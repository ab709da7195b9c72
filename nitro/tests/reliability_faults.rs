//! Guest faults mid-trace (issue 9): a kernel panic, a power-off and a hang. In each case
//! nitro ends promptly with a one-line message naming what happened and a non-zero status,
//! and every record made before the fault is in the output (records are flushed one by one).
//!
//! They need QEMU and the guests provisioned by `scripts/provision.sh`; when those are
//! missing each test says why and returns.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    Nitro,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::QemuDriver;
use serde_json::Value;

const GUEST: &str = "debian-6.1";

fn available() -> bool {
    let kernel = guest::cache_dir()
        .join("guests")
        .join(GUEST)
        .join("vmlinuz");
    if !kernel.exists() || !guest::cache_dir().join("initramfs.cpio.gz").exists() {
        eprintln!(
            "SKIP: {} missing: run scripts/provision.sh",
            kernel.display()
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

struct Outcome {
    status: i32,
    stderr: String,
    records: Vec<Value>,
    elapsed: Duration,
}

/// Runs `nitro trace -o FILE -- command...` and reads FILE back.
fn trace_to_file(tag: &str, command: &[&str]) -> Outcome {
    let file: PathBuf = std::env::temp_dir().join(format!(
        "nitro-reliability-{tag}-{}.jsonl",
        std::process::id()
    ));
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_nitro"))
        .args(["trace", "--guest", GUEST, "-o"])
        .arg(&file)
        .arg("--")
        .args(command)
        .output()
        .expect("nitro runs");
    let elapsed = start.elapsed();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let records = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect();
    Outcome {
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        records,
        elapsed,
    }
}

/// The last line of stderr that is nitro's own (the guest's output goes to stderr too).
fn nitro_message(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains("nitro: "))
        .unwrap_or_else(|| panic!("no nitro message in stderr: {stderr}"))
}

/// A `write(1, "<text>\n", n)` by the shell that completed before the fault.
fn has_completed_write(records: &[Value], text: &str) -> bool {
    let want = format!("{text}\\n");
    records.iter().any(|r| {
        r["name"] == "write"
            && r["event"]["direction"] == "exit"
            && r["args"][1]["value"].as_str() == Some(want.as_str())
            && r["ret"].as_i64() == Some(text.len() as i64 + 1)
    })
}

#[test]
fn kernel_panic_mid_trace_ends_nitro_with_the_panic_line() {
    if !available() {
        return;
    }
    // Debian's config has CONFIG_MAGIC_SYSRQ=y; writing to /proc/sysrq-trigger works for
    // root whatever the sysrq mask says. The guest runs with panic=-1: QEMU exits at once.
    let o = trace_to_file(
        "panic",
        &[
            "sh",
            "-c",
            "echo before-panic; echo c > /proc/sysrq-trigger; echo after",
        ],
    );
    assert_ne!(o.status, 0, "stderr: {}", o.stderr);
    let msg = nitro_message(&o.stderr);
    assert!(msg.contains("Kernel panic"), "message: {msg}");
    assert!(msg.contains("sysrq triggered crash"), "message: {msg}");
    assert!(o.elapsed < Duration::from_secs(60), "took {:?}", o.elapsed);
    assert!(
        has_completed_write(&o.records, "before-panic"),
        "the write before the panic is missing from {} records",
        o.records.len()
    );
    // The fatal write itself was entered: its entry is reported (unfinished), not lost.
    assert!(
        o.records
            .iter()
            .any(|r| r["name"] == "write" && r["args"][1]["value"].as_str() == Some("c\\n")),
        "the write that panicked the kernel is missing"
    );
    assert!(!o
        .records
        .iter()
        .any(|r| r["args"][1]["value"].as_str() == Some("after\\n")));
}

#[test]
fn power_off_mid_trace_ends_nitro_saying_so() {
    if !available() {
        return;
    }
    let o = trace_to_file(
        "poweroff",
        &["sh", "-c", "echo before-off; poweroff -f; echo after"],
    );
    assert_ne!(o.status, 0, "stderr: {}", o.stderr);
    let msg = nitro_message(&o.stderr);
    assert!(msg.contains("powered off"), "message: {msg}");
    assert!(o.elapsed < Duration::from_secs(60), "took {:?}", o.elapsed);
    assert!(has_completed_write(&o.records, "before-off"));
    // busybox poweroff -f calls reboot(LINUX_REBOOT_MAGIC1, ..., LINUX_REBOOT_CMD_POWER_OFF).
    assert!(
        o.records
            .iter()
            .any(|r| r["name"] == "reboot" && r["process"]["name"] == "poweroff"),
        "the reboot call is missing"
    );
}

/// A hung guest command: the time limit stops the guest, tracing ends, and the records
/// made before are all there. Through the library (what `nitro trace` runs), with
/// [`GuestRun::set_time_limit`] as the watchdog.
#[test]
fn hung_guest_is_stopped_by_the_time_limit() {
    if !available() {
        return;
    }
    let kernel = guest::guest_kernel(GUEST).expect("provisioned");
    let initrd = guest::default_initrd().expect("provisioned");
    let backend = LinuxBackend::from_kernel_file(&kernel).expect("kernel parses");
    let command = ["sh", "-c", "echo before-hang; exec sleep 100000"];
    let spec = GuestSpec::new(
        kernel,
        initrd,
        command.iter().map(|s| s.to_string()).collect(),
    );
    let output = Arc::new(Mutex::new(Vec::<u8>::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut run = GuestRun::start(&spec, Box::new(Shared(output.clone()))).expect("guest starts");
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1)
        .expect("gdbstub answers");
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    let records = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = records.clone();
    nitro.on_record(move |r| sink.lock().expect("not poisoned").push(r.json()));
    nitro.resume().expect("resume");
    assert_eq!(
        run.wait_control(spec.boot_timeout).expect("boots"),
        ControlMessage::Ready
    );
    nitro.arm().expect("arm");
    nitro.resume().expect("resume");
    run.go().expect("go");
    let limit = Duration::from_secs(6);
    run.set_time_limit(limit);
    let start = Instant::now();
    let end = nitro.run();
    let took = start.elapsed();
    run.finish(Duration::from_secs(5));
    assert!(end.is_ok(), "tracing failed instead of ending: {end:?}");
    assert!(took >= limit, "ended before the limit: {took:?}");
    assert!(
        took < limit + Duration::from_secs(10),
        "ended late: {took:?}"
    );
    assert!(run.time_limit_hit());
    assert_eq!(run.exit_status, None);
    let why = run.console_problem().expect("a reason");
    assert!(why.starts_with("time limit of 6 s reached"), "{why}");
    assert!(!why.contains('\n'));
    let records = records.lock().expect("not poisoned");
    assert!(
        has_completed_write(&records, "before-hang"),
        "{} records",
        records.len()
    );
    assert!(
        records.iter().any(|r| r["name"] == "execve"
            && r["ret"] == 0
            && r["args"][1]["value"] == serde_json::json!(["sleep", "100000"])),
        "execve of sleep missing: {:?}",
        records
            .iter()
            .filter(|r| r["name"] == "execve")
            .collect::<Vec<_>>()
    );
    assert!(String::from_utf8_lossy(&output.lock().expect("not poisoned")).contains("before-hang"));
}

/// Without a limit the watchdog never fires: a run that ends by itself is not blamed on it.
#[test]
fn time_limit_is_cancelled_by_a_normal_end() {
    if !available() {
        return;
    }
    let kernel = guest::guest_kernel(GUEST).expect("provisioned");
    let initrd = guest::default_initrd().expect("provisioned");
    let spec = GuestSpec::new(kernel, initrd, vec!["true".into()]);
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).expect("guest starts");
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1)
        .expect("gdbstub answers");
    let backend = LinuxBackend::from_kernel_file(&spec.kernel).expect("kernel parses");
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro.resume().expect("resume");
    assert_eq!(
        run.wait_control(spec.boot_timeout).expect("boots"),
        ControlMessage::Ready
    );
    run.set_time_limit(Duration::from_secs(120));
    nitro.arm().expect("arm");
    nitro.resume().expect("resume");
    run.go().expect("go");
    nitro.run().expect("runs to the end");
    run.finish(Duration::from_secs(5));
    assert_eq!(run.exit_status, Some(0));
    assert!(!run.time_limit_hit());
}
