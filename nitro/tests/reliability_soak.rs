//! Load (issue 9): a bounded multi-process, syscall-heavy workload traced end to end, with
//! the counts nitro reports checked against the workload's own.
//!
//! Four shell workers run in parallel. Worker `w` writes `N` lines `w<w> <i>` with the
//! shell's builtin `echo` (one `write(1, ...)` each, in its own process) and starts `M`
//! `cat /proc/self/stat` children (one `fork` + `execve` each). nitro must report exactly
//! those writes, with the right text, by the right process, each completed with its
//! length, and exactly those `execve`s.
//!
//! The CI test is short (1 vCPU, under a minute); the `#[ignore]`d one is longer and runs on
//! 2 vCPUs (`cargo test --release -p nitro --test reliability_soak -- --ignored`).

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

const GUEST: &str = "debian-6.1";

fn available() -> bool {
    let cache = nitro::guest::cache_dir();
    let kernel = cache.join("guests").join(GUEST).join("vmlinuz");
    if !kernel.exists() || !cache.join("initramfs.cpio.gz").exists() {
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

/// The workload: `workers` parallel loops, each `n` echo lines and `m` cat children.
fn script(workers: u32, n: u32, m: u32) -> String {
    let every = (n / m.max(1)).max(1);
    format!(
        "for w in $(seq 1 {workers}); do \
           (i=0; while [ $i -lt {n} ]; do \
              echo \"w$w $i\"; \
              if [ $((i % {every})) -eq 0 ] && [ $((i / {every})) -lt {m} ]; then cat /proc/self/stat >/dev/null; fi; \
              i=$((i+1)); \
            done >/dev/null) & \
         done; wait"
    )
}

fn soak(tag: &str, cpus: u32, workers: u32, n: u32, m: u32, budget: Duration) {
    if !available() {
        return;
    }
    let file = std::env::temp_dir().join(format!("nitro-soak-{tag}-{}.jsonl", std::process::id()));
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_nitro"))
        .args(["trace", "--guest", GUEST, "--cpus", &cpus.to_string(), "-o"])
        .arg(&file)
        .args(["--", "sh", "-c", &script(workers, n, m)])
        .output()
        .expect("nitro runs");
    let took = start.elapsed();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(took < budget, "took {took:?}");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect();

    // Lines written, per worker: (pid, index) pairs, all completed with the full length.
    let mut lines: BTreeMap<u32, (BTreeSet<u64>, BTreeSet<u32>)> = BTreeMap::new();
    let mut short = Vec::new();
    for r in records.iter().filter(|r| r["name"] == "write") {
        let Some(s) = r["args"][1]["value"].as_str() else {
            continue;
        };
        let Some(rest) = s.strip_prefix('w').and_then(|s| s.strip_suffix("\\n")) else {
            continue;
        };
        let Some((w, i)) = rest.split_once(' ') else {
            continue;
        };
        let (Ok(w), Ok(i)) = (w.parse::<u32>(), i.parse::<u32>()) else {
            continue;
        };
        if r["ret"].as_i64() != Some(s.len() as i64 - 1) || r["event"]["direction"] != "exit" {
            short.push(r.clone());
        }
        let e = lines.entry(w).or_default();
        e.0.insert(r["process"]["pid"].as_u64().unwrap_or(0));
        assert!(e.1.insert(i), "worker {w} line {i} reported twice");
    }
    if !short.is_empty() {
        let mut why: BTreeMap<String, usize> = BTreeMap::new();
        for r in &short {
            *why.entry(r["note"].as_str().unwrap_or("no note").to_string())
                .or_default() += 1;
        }
        panic!(
            "{} of {} writes not completed as written, by note: {why:?}; first: {}",
            short.len(),
            workers * n,
            short[0]
        );
    }
    assert_eq!(
        lines.len() as u32,
        workers,
        "workers seen: {:?}",
        lines.keys()
    );
    let mut pids = BTreeSet::new();
    for (w, (p, idx)) in &lines {
        assert_eq!(p.len(), 1, "worker {w} wrote from pids {p:?}");
        pids.extend(p);
        assert_eq!(
            idx.len() as u32,
            n,
            "worker {w}: {} of {n} lines",
            idx.len()
        );
        assert_eq!(idx.iter().next_back().copied(), Some(n - 1));
    }
    assert_eq!(
        pids.len() as u32,
        workers,
        "the workers share pids: {pids:?}"
    );

    // Children: one execve of cat per (worker, j < m), all successful.
    let cats: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["name"] == "execve"
                && r["args"][1]["value"] == serde_json::json!(["cat", "/proc/self/stat"])
        })
        .collect();
    assert_eq!(cats.len() as u32, workers * m, "execve of cat");
    assert!(cats.iter().all(|r| r["ret"] == 0), "a cat execve failed");
    let parents: BTreeSet<u64> = cats
        .iter()
        .filter_map(|r| r["process"]["ppid"].as_u64())
        .collect();
    assert_eq!(parents, pids, "cat children's parents are the workers");
    eprintln!(
        "soak {tag}: {} records, {} writes checked, {} execs, {:.1} s",
        records.len(),
        workers * n,
        cats.len(),
        took.as_secs_f64()
    );
}

#[test]
fn four_workers_counts_match_the_workload() {
    soak("ci", 1, 4, 1000, 25, Duration::from_secs(90));
}

#[test]
#[ignore = "minutes long: run with --ignored"]
fn four_workers_two_vcpus_long() {
    soak("long", 2, 4, 5000, 100, Duration::from_secs(300));
}
