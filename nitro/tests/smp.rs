//! Tracing a guest with 2 vCPUs (QEMU TCG, `--cpus 2`): per-vCPU traps, events tagged with
//! the vCPU, entries and exits matched per task even when tasks migrate, and every call of a
//! multi-process workload whose own count of calls is known accounted for.
//!
//! QEMU 7.2 under SMP reports one of simultaneous watchpoint hits (QEMU's `c_cpu` names the
//! last vCPU to stop; the others keep their `watchpoint_hit`, which surfaces at their next
//! access to any watched page, at the end of that translation block, with the old address,
//! and swallows a real hit made by that access: QEMU 7.2 softmmu/physmem.c
//! `cpu_check_watchpoint`, gdbstub/gdbstub.c `gdb_vm_state_change`). The driver recovers the
//! others' hits when their vCPU is parked right after the access (`recovered_stops`), hands
//! every late report on, and hands on every other vCPU it finds at a stop
//! (`observations`, in kernel or user mode); the backend reads the current task's saved
//! frame (`pt_regs`) at each: an entry under way, a return on its way out, a call over while
//! the task runs in user mode, a return value at the task's next entry, and marks calls it
//! could not complete. The first test checks tagging, matching, that at least 99 calls in
//! 100 are recorded and that losses are detected; the second that every call is recorded
//! or marked.
//!
//! Needs QEMU and the provisioned guests; skips (saying why) without them.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use serde_json::Value;

const PROCS: usize = 3;
const BLOCKS: usize = 300;

fn available(guest: &str) -> bool {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/nitro"));
    let ok = cache.join("guests").join(guest).join("vmlinuz").exists()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok();
    if !ok {
        eprintln!("SKIP: QEMU or the {guest} guest is missing: run scripts/provision.sh");
    }
    ok
}

/// What one traced run of the workload showed.
struct Counts {
    missing_entries: usize,
    missing_returns: usize,
    marked: usize,
    late: u64,
}

#[test]
fn two_vcpus_tagged_matched_and_losses_detected() {
    if !available("debian-6.1") {
        return;
    }
    let c = run_workload("debian-6.1", PROCS);
    // At least 99 calls in 100 recorded with their return value (all of them in most runs).
    let calls = 2 * PROCS * BLOCKS;
    assert!(
        c.missing_entries * 100 <= calls && c.missing_returns * 100 <= calls,
        "{} entries and {} returns of {calls} calls missing",
        c.missing_entries,
        c.missing_returns
    );
    // Whatever QEMU drops, the driver notices: missing calls come with detected losses.
    if c.missing_entries + c.missing_returns > 0 {
        assert!(
            c.late + c.marked as u64 > 0,
            "calls missing and no loss detected"
        );
    }
}

/// The full goal: every call of the workload recorded, with its arguments and its return
/// value, and where a call could not be completed, its loss marked on the record. Runs of
/// 2026-12-06: this assertion held in 20 runs of 20 (Debian 6.1, 3 processes), and the
/// CLI recorded all 1,800 calls in 10 runs of 10 and, on Debian 6.12 with 4 processes,
/// all 2,400 in 3 of 3. Before the backend read late reports and observations against the
/// saved frames: 651-802 of 900 per call. What could still escape: QEMU swallowing every
/// stop of two calls in a row of one task while no other vCPU's stop observes it (the
/// kernel's `kstack_offset` says that a task returned, not how often).
/// Single-threaded TCG (`-accel tcg,thread=single`) was tried and refused: it makes QEMU
/// 7.2 lose more (404/900 read entries).
#[test]
fn two_vcpus_every_call_accounted_for() {
    if !available("debian-6.1") {
        return;
    }
    let c = run_workload("debian-6.1", PROCS);
    assert!(
        c.missing_entries + c.missing_returns <= c.marked,
        "{} entries and {} returns missing, {} marked as lost",
        c.missing_entries,
        c.missing_returns,
        c.marked
    );
}

fn run_workload(guest: &str, procs: usize) -> Counts {
    // `procs` dd processes in parallel, each BLOCKS reads of fd 0 and BLOCKS writes to fd 1
    // of one byte (busybox dd: read(0, buf, 1) then write(1, buf, 1) per block).
    let script = format!(
        "for p in $(seq {procs}); do dd if=/dev/zero of=/dev/null bs=1 count={BLOCKS} 2>/dev/null & done; wait"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_nitro"))
        // NITRO_DEBUG=1: the driver prints its counters (late_stops: hits it detected as
        // lost) at the end.
        .env("NITRO_DEBUG", "1")
        .args([
            "trace",
            "--guest",
            guest,
            "--cpus",
            "2",
            "--events",
            "enter,exit",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
        .output()
        .expect("nitro runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl {l:?}: {e}")))
        .collect();
    let dd = |r: &&Value| r["process"]["name"] == "dd";
    let is = |r: &Value, name: &str, fd: u64| {
        r["name"] == name && r["args"][0]["value"].as_u64() == Some(fd)
    };
    let vcpus: BTreeSet<u64> = recs
        .iter()
        .filter_map(|r| r["event"]["vcpu"].as_u64())
        .collect();
    assert_eq!(
        vcpus,
        BTreeSet::from([0, 1]),
        "events not tagged with both vCPUs"
    );
    let pids: BTreeSet<u64> = recs
        .iter()
        .filter(dd)
        .filter_map(|r| r["process"]["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), procs, "dd processes seen: {pids:?}");

    let counter = |name: &str| -> u64 {
        let key = format!("{name}: ");
        stderr
            .split(&key)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the driver's counters: {stderr}"))
    };
    let late = counter("late_stops");
    let recovered = counter("recovered_stops");
    let (mut missing_entries, mut missing_returns, mut marked) = (0, 0, 0);
    for (name, fd) in [("read", 0), ("write", 1)] {
        let calls: Vec<&Value> = recs.iter().filter(dd).filter(|r| is(r, name, fd)).collect();
        // A call whose entry stop QEMU lost and the backend recovered later from the saved
        // frame has its exit record only, saying so.
        let recovered_entry = |r: &&&Value| {
            r["event"]["direction"] == "exit"
                && r["note"].as_str().is_some_and(|n| {
                    n.starts_with("entry stop not reported")
                        || n.starts_with("entry and exit stops not reported")
                })
        };
        let enters = calls
            .iter()
            .filter(|r| r["event"]["direction"] == "enter" && r["unfinished"] != true)
            .count()
            + calls.iter().filter(recovered_entry).count();
        let exits = calls
            .iter()
            .filter(|r| r["event"]["direction"] == "exit" && r["ret"] == 1)
            .count();
        assert!(exits <= procs * BLOCKS, "{name}: more returns than calls");
        let returns_lost = calls
            .iter()
            .filter(|r| r["unfinished"] == true && r["note"].is_string())
            .count();
        // A record saying a whole call may be missing before it stands for a lost entry and
        // a lost return (of this call or the other: the two alternate).
        let calls_lost = calls
            .iter()
            .filter(|r| {
                r["event"]["direction"] == "enter"
                    && r["note"]
                        .as_str()
                        .is_some_and(|n| n.contains("a call may be missing"))
            })
            .count();
        let lost = returns_lost + 2 * calls_lost;
        eprintln!(
            "{name}: {enters} entries, {exits} returns of 1, {returns_lost} marked return-not-seen, \
             {calls_lost} marked call-may-be-missing"
        );
        assert!(enters <= procs * BLOCKS, "{name}: more entries than calls");
        assert!(
            enters * 5 >= procs * BLOCKS * 4,
            "{name}: more than a fifth of the entries missing"
        );

        missing_entries += procs * BLOCKS - enters;
        missing_returns += procs * BLOCKS - exits;
        marked += lost;
    }
    eprintln!(
        "driver: {late} hits detected late (lost), {recovered} recovered from other vCPUs; \
         missing: {missing_entries} entries, {missing_returns} returns; {marked} marked"
    );
    Counts {
        missing_entries,
        missing_returns,
        marked,
        late,
    }
}

/// The same on Debian 6.12 (IBT, `pcpu_hot`, another layout of the exit code) with 4
/// processes: held in 6 runs of 6 here (all 2,400 calls recorded in 3 of 3 CLI runs).
#[test]
fn two_vcpus_every_call_accounted_for_on_6_12() {
    if !available("debian-6.12") {
        return;
    }
    let c = run_workload("debian-6.12", 4);
    assert!(
        c.missing_entries + c.missing_returns <= c.marked,
        "{} entries and {} returns missing, {} marked as lost",
        c.missing_entries,
        c.missing_returns,
        c.marked
    );
}
