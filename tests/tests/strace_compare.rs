//! The comparison the issue asks for: the same static busybox (Debian's busybox-static,
//! the binary the guest initramfs carries as /bin/busybox) runs the same shell workload once
//! under `strace -f` on the host and once in the guest under nitro. The path-taking calls
//! on a scratch directory created identically on both sides, `/tmp/nitro-cmp`, must agree as
//! a multiset of (syscall, path arguments, success).
//!
//! Skips (with a message) when QEMU, the guests, strace or /bin/busybox is missing, or when
//! the host binary is not the guest's.

mod common;

use std::{collections::BTreeMap, path::Path, process::Command, sync::OnceLock};

use common::*;
use serde_json::Value;

const SCRATCH: &str = "/tmp/nitro-cmp";

/// Files, directories, links, a failing open and a failing access, copies, a recursive rm.
const WORKLOAD: &str = "D=/tmp/nitro-cmp; rm -rf $D; mkdir -p $D/sub; echo x > $D/a; \
cat $D/a $D/nope; cp $D/a $D/b; ls $D >/dev/null; stat $D/b >/dev/null; mv $D/b $D/c; \
ln -s $D/c $D/l; readlink $D/l; test -e $D/zz; test -w $D/c; rm $D/c $D/l; rmdir $D/sub; \
touch $D/t; chmod 600 $D/t; truncate -s 10 $D/t; ln $D/t $D/h; rm -r $D; true";

/// The calls compared: those whose arguments are paths.
const PATH_CALLS: &[&str] = &[
    "open",
    "openat",
    "creat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "chmod",
    "fchmodat",
    "chown",
    "fchownat",
    "lchown",
    "utimensat",
    "truncate",
    "execve",
    "chdir",
    "mknod",
    "mknodat",
];

/// How many path arguments of a call are inputs (readlink's buffer is an output).
fn inputs(name: &str) -> usize {
    match name {
        "rename" | "renameat" | "renameat2" | "link" | "linkat" | "symlink" | "symlinkat" => 2,
        _ => 1,
    }
}

type Key = (String, Vec<String>, bool);

fn add(set: &mut BTreeMap<Key, u32>, name: &str, strings: Vec<String>, ok: bool) {
    if !PATH_CALLS.contains(&name) {
        return;
    }
    let paths: Vec<String> = strings.into_iter().take(inputs(name)).collect();
    if paths.iter().any(|p| p.starts_with(SCRATCH)) {
        *set.entry((name.to_string(), paths, ok)).or_default() += 1;
    }
}

/// The quoted strings of a strace argument list, in order (escapes kept as written).
fn quoted(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut esc = false;
    for c in args.chars() {
        match (&mut cur, c) {
            (Some(s), _) if esc => {
                s.push(c);
                esc = false;
            }
            (Some(s), '\\') => {
                s.push(c);
                esc = true;
            }
            (Some(_), '"') => out.extend(cur.take()),
            (Some(s), _) => s.push(c),
            (None, '"') => cur = Some(String::new()),
            (None, _) => {}
        }
    }
    out
}

fn from_strace(text: &str) -> BTreeMap<Key, u32> {
    let mut set = BTreeMap::new();
    for line in text.lines() {
        // "PID  name(args) = ret"
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let Some(open) = rest.find('(') else { continue };
        // strace pads short calls with spaces before " = ".
        let Some(eq) = rest.rfind(" = ") else {
            continue;
        };
        let call = rest[..eq].trim_end();
        let Some(args) = call.get(open + 1..call.len().saturating_sub(1)) else {
            continue;
        };
        let name = &rest[..open];
        let ok = !rest[eq + 3..].starts_with('-');
        add(&mut set, name, quoted(args), ok);
    }
    set
}

fn from_nitro(recs: &[Value]) -> BTreeMap<Key, u32> {
    let mut set = BTreeMap::new();
    for r in recs {
        let Some(name) = r["name"].as_str() else {
            continue;
        };
        let strings = r["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["value"].as_str())
                    .filter(|s| s.starts_with('/'))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let ok = r.get("error").is_none() && ret(r).is_some_and(|v| v >= 0);
        add(&mut set, name, strings, ok);
    }
    set
}

fn same_busybox() -> bool {
    let host = Path::new("/bin/busybox");
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIP: strace not installed");
        return false;
    }
    if !host.exists() {
        eprintln!("SKIP: /bin/busybox (busybox-static) not installed on the host");
        return false;
    }
    true
}

/// The host side, run once per test process (both tests share the scratch directory).
fn host_calls() -> BTreeMap<Key, u32> {
    static HOST: OnceLock<BTreeMap<Key, u32>> = OnceLock::new();
    HOST.get_or_init(|| {
        let log = std::env::temp_dir().join(format!("nitro-cmp-strace-{}.txt", std::process::id()));
        let st = Command::new("strace")
            .args(["-f", "-qq", "-s", "256", "-o"])
            .arg(&log)
            .args(["/bin/busybox", "sh", "-c", WORKLOAD])
            .output()
            .expect("strace runs");
        assert!(st.status.success(), "strace run failed: {st:?}");
        let host = from_strace(&std::fs::read_to_string(&log).expect("strace log"));
        let _ = std::fs::remove_file(&log);
        host
    })
    .clone()
}

fn compare(guest: &str) {
    if !guest_available(guest) || !same_busybox() {
        return;
    }
    let host = host_calls();

    let run = trace(&[
        "trace",
        "--guest",
        guest,
        "--string-limit",
        "256",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        WORKLOAD,
    ]);
    assert_eq!(run.status, 0, "nitro failed: {}", run.stderr);
    let traced = from_nitro(&run.records);

    assert!(
        host.len() >= 20,
        "too few path calls under strace: {host:?}"
    );
    let mut diff = Vec::new();
    for k in host.keys().chain(traced.keys()) {
        let (a, b) = (host.get(k), traced.get(k));
        if a != b {
            diff.push(format!("{k:?}: strace {a:?}, nitro {b:?}"));
        }
    }
    diff.dedup();
    assert!(
        diff.is_empty(),
        "{guest}: path calls differ:\n{}",
        diff.join("\n")
    );
    eprintln!(
        "{guest}: {} distinct (call, paths, success) keys, {} calls, agree with strace",
        host.len(),
        host.values().sum::<u32>()
    );
    // Failures are part of the comparison.
    assert!(host.keys().any(|k| !k.2), "no failing call compared");
}

#[test]
fn same_path_calls_as_strace_6_1() {
    compare("debian-6.1");
}

#[test]
fn same_path_calls_as_strace_6_12() {
    compare("debian-6.12");
}
