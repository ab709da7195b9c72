//! The trap planner on real Debian guests under QEMU: with a syscall filter the traced calls'
//! own handlers are trapped, so the guest's other calls never stop it; the records are the
//! ones the common-entry traps give; frequent traced calls make the planner fall back to
//! the common entry without losing a call; 32-bit handlers are trapped too.
//! Needs QEMU and the guests of `scripts/provision.sh` (else each test says why and returns).

mod common;

use std::time::Duration;

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    Nitro, Record, SyscallSet,
};
use nitro_backend_linux::{LinuxBackend, TrapMode};
use nitro_listener::{qemu::QemuDriver, DriverStats, Strategy, SyscallKind};

struct Traced {
    status: i32,
    records: Vec<Record>,
    driver: DriverStats,
}

fn available(guest_name: &str) -> Option<std::path::PathBuf> {
    common::guest_kernel(guest_name)
}

fn trace(guest_name: &str, command: &[&str], set: &str, mode: TrapMode) -> Option<Traced> {
    let kernel = available(guest_name)?;
    let mut backend = LinuxBackend::from_kernel_file(&kernel).unwrap();
    backend.set_trap_mode(mode);
    let spec = GuestSpec::new(
        kernel,
        guest::default_initrd().unwrap(),
        command.iter().map(|s| s.to_string()).collect(),
    );
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).unwrap();
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1).unwrap();
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro.trace(SyscallSet::parse(set).unwrap());
    nitro.resume().unwrap();
    assert_eq!(
        run.wait_control(spec.boot_timeout).unwrap(),
        ControlMessage::Ready
    );
    nitro.arm().unwrap();
    nitro.resume().unwrap();
    run.go().unwrap();
    let records: Vec<Record> = nitro.events().collect::<Result<_, _>>().unwrap();
    run.finish(Duration::from_secs(10));
    Some(Traced {
        status: run.exit_status.unwrap_or(-1),
        records,
        driver: nitro.driver_mut().driver_stats(),
    })
}

/// (process, call, arguments as text, return) of the records of `comm`.
fn calls_of(t: &Traced, comm: &str) -> Vec<(String, String, String, Option<i64>)> {
    t.records
        .iter()
        .filter(|r| r.call.process.name == comm)
        .map(|r| {
            let args: Vec<String> = r.call.args.iter().map(|a| text(&a.value)).collect();
            (
                r.call.process.name.clone(),
                r.call.name.clone(),
                args.join(", "),
                r.call.ret.as_ref().map(|v| v.value),
            )
        })
        .collect()
}

/// An argument as strace shows it.
fn text(v: &nitro_os::ArgValue) -> String {
    let mut s = String::new();
    v.render_text(&mut s);
    s
}

const BLOCKS: u64 = 2000;

fn dd() -> Vec<String> {
    vec![
        "/bin/dd".into(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=1".into(),
        format!("count={BLOCKS}"),
    ]
}

fn rare_call_stops_only_for_itself(guest_name: &str) {
    let cmd = dd();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let Some(h) = trace(guest_name, &cmd, "openat", TrapMode::Handlers) else {
        return;
    };
    let Some(e) = trace(guest_name, &cmd, "openat", TrapMode::Entry) else {
        return;
    };
    assert_eq!((h.status, e.status), (0, 0));
    let (hc, ec) = (calls_of(&h, "dd"), calls_of(&e, "dd"));
    assert!(
        hc.iter().any(|c| c.2.contains("/dev/zero"))
            && hc.iter().any(|c| c.2.contains("/dev/null")),
        "{hc:?}"
    );
    assert_eq!(
        hc, ec,
        "handler traps and entry traps give the same records"
    );
    // The 2 x BLOCKS reads and writes of dd stop the guest only with entry traps.
    let stops = |t: &Traced| t.driver.trap_stops + t.driver.spurious_stops;
    assert!(stops(&e) >= 4 * BLOCKS, "{:?}", e.driver);
    assert!(
        stops(&h) <= 2 * h.records.len() as u64 + 4,
        "{} records, {:?}",
        h.records.len(),
        h.driver
    );
    assert_eq!(h.driver.single_steps, 0, "{:?}", h.driver);
    assert!(h
        .records
        .iter()
        .all(|r| r.call.strategy == Strategy::BreakpointEmulated));
}

#[test]
fn rare_call_stops_only_for_itself_6_1() {
    rare_call_stops_only_for_itself("debian-6.1");
}

#[test]
fn rare_call_stops_only_for_itself_6_12() {
    rare_call_stops_only_for_itself("debian-6.12");
}

#[test]
fn frequent_calls_fall_back_to_the_entry_without_loss() {
    let cmd = dd();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let Some(t) = trace("debian-6.1", &cmd, "read,write", TrapMode::Auto) else {
        return;
    };
    assert_eq!(t.status, 0);
    let dd: Vec<&Record> = t
        .records
        .iter()
        .filter(|r| r.call.process.name == "dd")
        .collect();
    let count = |name: &str| {
        dd.iter()
            .filter(|r| r.call.name == name && r.call.ret.as_ref().map(|v| v.value) == Some(1))
            .count() as u64
    };
    // Every one-byte read and write of dd, before and after the switch.
    assert_eq!((count("read"), count("write")), (BLOCKS, BLOCKS));
    let by = |s: Strategy| dd.iter().filter(|r| r.call.strategy == s).count();
    assert!(by(Strategy::BreakpointEmulated) > 0, "started on handlers");
    assert!(by(Strategy::Watchpoint) > 1000, "went on with the entry");
    assert!(dd.iter().all(|r| !r.call.unfinished), "no call left open");
}

#[test]
fn i386_handlers_on_6_12() {
    let Some(t) = trace(
        "debian-6.12",
        &["/bin32/busybox", "cat", "/proc/version"],
        "openat",
        TrapMode::Handlers,
    ) else {
        return;
    };
    assert_eq!(t.status, 0);
    let open = t
        .records
        .iter()
        .find(|r| r.call.process.compat && r.call.name == "openat")
        .expect("the 32-bit openat");
    assert_eq!(open.call.kind, SyscallKind::Syscall32);
    assert_eq!(text(&open.call.args[1].value), "\"/proc/version\"");
    assert!(open.call.ret.as_ref().is_some_and(|v| v.value >= 0));
}
