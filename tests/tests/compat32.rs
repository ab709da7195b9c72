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
