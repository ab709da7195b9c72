//! End-to-end: a 32-bit (i386) static busybox traced inside the 6.1 and 6.12 guests. Its
//! calls enter through the compat gates, are named from the i386 table, decoded with 32-bit
//! layouts, and attributed to a process marked `compat`.

mod common;

use common::*;
use serde_json::Value;

fn check(guest: &str, kaslr: bool) {
    if !guest_available(guest) {
        return;
    }
    let mut args = vec!["trace", "--guest", guest, "--string-limit", "256"];
    if kaslr {
        args.push("--kaslr");
    }
    args.extend([
        "--",
        "/bin32/busybox",
        "sh",
        "-c",
        "cat /proc/version; ls /nonexistent; echo done",
    ]);
    let run = trace(&args);
    assert_eq!(run.status, 0, "nitro failed: {}", run.stderr);
    assert!(run.stderr.contains("Linux version") && run.stderr.contains("done"));
    let r = &run.records;
    let compat: Vec<&Value> = r
        .iter()
        .filter(|v| v["process"]["compat"] == true)
        .collect();
    assert!(compat.len() > 20, "few compat records: {}", compat.len());
    for v in &compat {
        let kind = v["event"]["type"].as_str().unwrap_or("");
        assert!(
            matches!(kind, "syscall32" | "int80" | "sysenter"),
            "kind {kind}"
        );
        assert_eq!(v["process"]["exe"], "/bin32/busybox");
    }
    // i386 numbers: openat is 295 there (257 on x86-64), flags carry O_LARGEFILE.
    let open = compat
        .iter()
        .find(|v| v["name"] == "openat" && arg_str(v, "filename") == "/proc/version")
        .expect("openat of /proc/version");
    assert_eq!(open["nr"], 295);
    assert_eq!(arg_str(open, "flags"), "O_RDONLY|O_LARGEFILE");
    assert!(ret(open).unwrap_or(-1) >= 3);
    // The file's bytes leave through sendfile64 (i386 239) or write.
    assert!(compat
        .iter()
        .any(|v| (v["name"] == "sendfile64" || v["name"] == "read") && ret(v).unwrap_or(0) > 100));
    // A failing 32-bit call: errno by name.
    let miss = compat
        .iter()
        .find(|v| v.to_string().contains("/nonexistent") && v.get("error").is_some())
        .expect("failing call on /nonexistent");
    assert_eq!(miss["error"], "ENOENT");
    // Names only i386 has, decoded with 32-bit structures.
    assert!(compat.iter().any(|v| v["name"] == "set_thread_area"));
    let fork = compat
        .iter()
        .find(|v| matches!(v["name"].as_str(), Some("clone" | "fork" | "vfork")))
        .expect("the 32-bit shell forks");
    assert!(ret(fork).unwrap_or(0) > 0);
    // The 32-bit child (found at its first context switch) execs the 32-bit binary again:
    // argv decoded from 4-byte pointers, the return seen.
    let ex = compat
        .iter()
        .find(|v| {
            v["name"] == "execve"
                && arg(v, "argv").is_some_and(|a| a[0] == "cat" && a[1] == "/proc/version")
        })
        .expect("32-bit execve of cat");
    assert_eq!(ret(ex), Some(0));
    assert_eq!(ex["nr"], 11, "i386 execve");
    // The child's own calls are seen from its first one on.
    let child = ex["process"]["pid"].clone();
    assert!(
        compat
            .iter()
            .filter(|v| v["process"]["pid"] == child)
            .count()
            > 10
    );
}

#[test]
fn i386_busybox_6_1() {
    check("debian-6.1", false);
}

#[test]
fn i386_busybox_6_12_kaslr() {
    check("debian-6.12", true);
}

/// With the 32-bit vDSO off (`vdso32=0`), i386 glibc falls back to `int $0x80`: the calls
/// come through the int 0x80 emulation path instead of the fast path.
fn int80(guest: &str) {
    use nitro::guest::{default_initrd, ControlMessage, GuestRun, GuestSpec};
    use nitro_backend_linux::LinuxBackend;
    use nitro_listener::{qemu::QemuDriver, Driver, SyscallKind};
    use nitro_os::{ArgValue, Syscall};

    if !guest_available(guest) {
        return;
    }
    let kernel = kernel(guest);
    let mut spec = GuestSpec::new(
        kernel.clone(),
        default_initrd().expect("initramfs"),
        vec![
            "/bin32/busybox".into(),
            "cat".into(),
            "/proc/version".into(),
        ],
    );
    spec.append = "vdso32=0".into();
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).expect("guest starts");
    let mut driver =
        QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1).expect("gdbstub");
    driver.resume().expect("resume");
    assert_eq!(
        run.wait_control(spec.boot_timeout).expect("control"),
        ControlMessage::Ready
    );
    let backend = LinuxBackend::from_kernel_file(&kernel).expect("kernel file");
    let (calls, status) = trace_after_go(&mut run, driver, backend);
    assert_eq!(status, Some(0));
    let compat: Vec<&Syscall> = calls.iter().filter(|c| c.process.compat).collect();
    assert!(compat.len() > 10, "few compat calls: {}", compat.len());
    assert!(
        compat.iter().all(|c| c.kind == SyscallKind::Int80),
        "not all through int 0x80: {:?}",
        compat.iter().map(|c| c.kind).collect::<Vec<_>>()
    );
    let open = compat
        .iter()
        .find(|c| {
            c.name == "openat"
                && c.args.iter().any(|a| {
                    matches!(&a.value, ArgValue::Str { bytes, .. } if bytes == b"/proc/version")
                })
        })
        .expect("openat of /proc/version through int 0x80");
    assert_eq!(open.nr, 295);
    assert!(open.ret.as_ref().is_some_and(|r| r.value >= 3));
}

#[test]
fn i386_int80_6_1() {
    int80("debian-6.1");
}

#[test]
fn i386_int80_6_12() {
    int80("debian-6.12");
}
