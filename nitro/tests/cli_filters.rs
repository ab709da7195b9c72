//! End-to-end tests of `nitro trace` filters, fault injection, policies and outputs on the
//! real Debian 6.1 guest under QEMU (each boots a guest: about 3-5 s).
//!
//! They need QEMU and the guests provisioned by `scripts/provision.sh`; when those are
//! missing each test says why and returns.

mod common;

use common::{records, run, Run};
use serde_json::Value;

const GUEST: &str = "debian-6.1";

fn guest_available() -> bool {
    common::guest_available(GUEST)
}

fn trace(args: &[&str], command: &[&str]) -> Run {
    trace_on(GUEST, args, command)
}

fn trace_on(guest: &str, args: &[&str], command: &[&str]) -> Run {
    let mut all = vec!["trace", "--guest", guest];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(command);
    run(&all)
}

fn by<'a>(recs: &'a [Value], comm: &str, name: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|v| v["process"]["name"] == comm && v["name"] == name)
        .collect()
}

#[test]
fn inject_enoent_into_openat() {
    if !guest_available() {
        return;
    }
    let r = trace(
        &["-e", "trace=openat", "--inject", "openat:error=ENOENT"],
        &["/bin/cat", "/proc/version"],
    );
    // The program fails as if the file were missing.
    assert_eq!(r.status, 1, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("No such file or directory"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Linux version"), "{}", r.stderr);
    let recs = records(&r.stdout);
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|v| v["name"] == "openat"), "{}", r.stdout);
    let cat = by(&recs, "cat", "openat");
    assert_eq!(cat.len(), 1, "{}", r.stdout);
    assert_eq!(cat[0]["args"][1]["value"], "/proc/version");
    assert_eq!(cat[0]["ret"], -2);
    assert_eq!(cat[0]["error"], "ENOENT");
    assert_eq!(cat[0]["injected"], true);
    // Only the command is injected into, not the guest's init.
    assert!(recs
        .iter()
        .filter(|v| v["process"]["name"] != "cat")
        .all(|v| v.get("injected").is_none()));
}

#[test]
fn inject_when_second_call_only() {
    if !guest_available() {
        return;
    }
    let r = trace(
        &[
            "-e",
            "inject=openat:error=EACCES:when=2",
            "-e",
            "trace=openat,%process",
        ],
        &["/bin/cat", "/proc/version", "/proc/cmdline"],
    );
    assert_eq!(r.status, 1, "stderr: {}", r.stderr);
    // The first file is read, the second open fails.
    assert!(r.stderr.contains("Linux version"), "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    let recs = records(&r.stdout);
    let opens = by(&recs, "cat", "openat");
    assert_eq!(opens.len(), 2, "{}", r.stdout);
    assert!(opens[0]["ret"].as_i64().unwrap() >= 0 && opens[0].get("injected").is_none());
    assert_eq!(opens[1]["ret"], -13);
    assert_eq!(opens[1]["injected"], true);
    // %process brought execve and exit_group in.
    assert!(!by(&recs, "cat", "execve").is_empty() && !by(&recs, "cat", "exit_group").is_empty());
}

#[test]
fn inject_on_debian_6_12() {
    if !common::guest_available("debian-6.12") {
        return;
    }
    let r = trace_on(
        "debian-6.12",
        &[
            "-e",
            "trace=openat",
            "--inject",
            "openat:error=ENOENT:when=2",
        ],
        &["/bin/cat", "/proc/version", "/proc/cmdline"],
    );
    assert_eq!(r.status, 1, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("Linux version 6.12"), "{}", r.stderr);
    assert!(
        r.stderr.contains("No such file or directory"),
        "{}",
        r.stderr
    );
    let recs = records(&r.stdout);
    let opens = by(&recs, "cat", "openat");
    assert_eq!(opens.len(), 2, "{}", r.stdout);
    assert_eq!(opens[1]["ret"], -2);
    assert_eq!(opens[1]["injected"], true);
}

#[test]
fn trace_class_and_comm_filters_text() {
    if !guest_available() {
        return;
    }
    let r = trace(
        &[
            "-e",
            "trace=%file",
            "--comm",
            "cat",
            "--format",
            "text",
            "-v",
        ],
        &["/bin/cat", "/proc/version"],
    );
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.contains(" cat] ")), "{}", r.stdout);
    assert!(lines
        .iter()
        .any(|l| l.contains("openat(AT_FDCWD, \"/proc/version\", O_RDONLY) = ")));
    // -v: the environment in full, not `0x... /* 6 vars */`.
    assert!(
        r.stdout
            .contains("execve(\"/bin/cat\", [\"/bin/cat\", \"/proc/version\"], [\""),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(" vars */"), "{}", r.stdout);
    // %file: no read/sendfile/close.
    assert!(
        !r.stdout.contains("sendfile(") && !r.stdout.contains("close("),
        "{}",
        r.stdout
    );
}

#[test]
fn pid_filter_and_follow_children() {
    if !guest_available() {
        return;
    }
    let cmd = ["/bin/sh", "-c", "/bin/cat /proc/version; /bin/echo done"];
    // Without -f: only sh itself.
    let r = trace(&["--comm", "sh", "-e", "trace=execve,openat,write"], &cmd);
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    let recs = records(&r.stdout);
    let sh_pid = recs
        .iter()
        .find(|v| v["process"]["name"] == "sh")
        .map(|v| v["process"]["pid"].clone())
        .expect("sh traced");
    assert!(
        recs.iter().all(|v| v["process"]["name"] == "sh"),
        "{}",
        r.stdout
    );
    // With -f: the children (cat, echo) too.
    let r = trace(
        &["--comm", "sh", "-f", "-e", "trace=execve,openat,write"],
        &cmd,
    );
    let recs = records(&r.stdout);
    assert!(!by(&recs, "cat", "openat").is_empty(), "{}", r.stdout);
    assert!(recs.iter().all(|v| v["process"]["name"] != "poweroff"));
    // --pid: the same pid is taken by sh on every boot of this guest.
    let r = trace(&["--pid", &sh_pid.to_string(), "-e", "trace=execve"], &cmd);
    let recs = records(&r.stdout);
    assert!(!recs.is_empty(), "{}", r.stdout);
    assert!(
        recs.iter().all(|v| v["process"]["pid"] == sh_pid),
        "{}",
        r.stdout
    );
}

#[test]
fn trace_none_arms_nothing_and_summary() {
    if !guest_available() {
        return;
    }
    let r = trace(
        &["-e", "trace=none", "-d", "1"],
        &["/bin/cat", "/proc/version"],
    );
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("Linux version"));
    // Nothing armed: the guest never stopped (the last stats line is written at the end).
    assert!(r.stderr.contains(" stops=0 "), "{}", r.stderr);

    // -c: strace's table on stderr instead of records; -d: stats lines.
    let r = trace(&["-c", "-d", "0.5"], &["/bin/cat", "/proc/version"]);
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r
        .stderr
        .contains("% time     seconds  usecs/call     calls    errors syscall"));
    let total = r
        .stderr
        .lines()
        .find(|l| l.ends_with(" total"))
        .expect("total line");
    let calls: u64 = total.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(calls > 50, "{total}");
    assert!(r.stderr.lines().any(|l| l.contains(" openat")));
    assert!(r.stderr.contains("nitro: stats t="), "{}", r.stderr);
}

#[test]
fn policies_trigger_exec_and_budget_and_silent() {
    if !guest_available() {
        return;
    }
    let r = trace(
        &["--trigger-exec", "cat", "--max-events-per-proc", "3"],
        &["/bin/sh", "-c", "/bin/cat /proc/version; /bin/echo x"],
    );
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    let recs = records(&r.stdout);
    // Nothing before cat's exec (sh is not traced, nor is echo: not a descendant of cat).
    assert!(
        recs.iter().all(|v| v["process"]["name"] == "cat"),
        "{}",
        r.stdout
    );
    assert_eq!(recs.len(), 3, "{}", r.stdout);
    assert_eq!(recs[0]["name"], "execve");

    let r = trace(&["-s"], &["/bin/cat", "/proc/version"]);
    assert_eq!(r.status, 0);
    assert!(r.stdout.is_empty());
}
