//! End-to-end: a shell workload traced on Debian 6.1 and 6.12, with and without KASLR;
//! the DECODED arguments and return values are checked, not only the names.
//!
//! Needs QEMU and the guests of `scripts/provision.sh`; without them each test prints SKIP.

mod common;

use common::*;
use serde_json::Value;

/// Files, pipes, stat, rename, symlinks, a failing open, a signal to itself, a TCP connect,
/// a large buffer (mmap), execve with arguments.
const WORKLOAD: &str = "ip link set lo up
mkdir -p /tmp/w/d
echo hello > /tmp/w/f
cat /tmp/w/f | wc -c
stat -c %s /tmp/w/f
mv /tmp/w/f /tmp/w/g
ln -s /tmp/w/g /tmp/w/l
readlink /tmp/w/l
rm /tmp/w/g /tmp/w/l
rmdir /tmp/w/d
cat /tmp/w/missing
trap 'echo got-usr1' USR1
kill -USR1 $$
nc 127.0.0.1 9 </dev/null
dd if=/dev/zero of=/dev/null bs=200000 count=1
true";

fn one<'a>(recs: &'a [Value], what: &str, f: impl Fn(&Value) -> bool) -> &'a Value {
    recs.iter()
        .find(|r| f(r))
        .unwrap_or_else(|| panic!("no record for {what}"))
}

fn check(guest: &str, kaslr: bool) {
    if !guest_available(guest) {
        return;
    }
    let run = trace_sh(guest, kaslr, WORKLOAD);
    assert_eq!(run.status, 0, "nitro failed: {}", run.stderr);
    for out in ["got-usr1", "/tmp/w/g", "Connection refused"] {
        assert!(
            run.stderr.contains(out),
            "guest output lacks {out}: {}",
            run.stderr
        );
    }
    let r = &run.records;
    let named = |n: &'static str| move |v: &Value| v["name"] == n;

    // mkdir -p: the missing levels are created with mode 0777.
    let mk = find(r, "mkdir", "pathname", "/tmp/w/d");
    assert_eq!(mk.len(), 1, "mkdir /tmp/w/d");
    assert_eq!(arg_str(mk[0], "mode"), "0777");
    assert_eq!(ret(mk[0]), Some(0));

    // The redirection: flags and mode as names, then the data written.
    let open = find(r, "openat", "filename", "/tmp/w/f");
    let create = open
        .iter()
        .find(|o| arg_str(o, "flags") == "O_WRONLY|O_CREAT|O_TRUNC")
        .expect("openat O_WRONLY|O_CREAT|O_TRUNC of /tmp/w/f");
    assert_eq!(arg_str(create, "dfd"), "AT_FDCWD");
    assert_eq!(arg_str(create, "mode"), "0666");
    assert!(ret(create).unwrap_or(-1) >= 3);
    let w = one(r, "write of hello", |v| {
        v["name"] == "write" && arg_str(v, "buf") == r"hello\n"
    });
    assert_eq!(ret(w), Some(6));

    // The pipe: both descriptors decoded at exit.
    let p = one(r, "pipe2", named("pipe2"));
    let fds = arg(p, "fildes").expect("fildes").to_string();
    assert!(fds.starts_with("[") && fds.contains(','), "pipe fds {fds}");

    // execve of the pipeline's cat: argv, and (the 6.12 iret return) a real exit value.
    let ex = one(r, "execve cat /tmp/w/f", |v| {
        v["name"] == "execve" && arg(v, "argv").is_some_and(|a| a[0] == "cat" && a[1] == "/tmp/w/f")
    });
    assert_eq!(ret(ex), Some(0));
    assert!(ex.get("note").is_none(), "execve return inferred: {ex}");

    // stat: the structure's mode and size.
    let st = find(r, "newfstatat", "filename", "/tmp/w/f");
    let st = st
        .iter()
        .find(|s| ret(s) == Some(0))
        .expect("successful newfstatat of /tmp/w/f");
    let buf = arg_str(st, "statbuf");
    assert!(
        buf.contains("st_mode=S_IFREG|0644") && buf.contains("st_size=6"),
        "{buf}"
    );

    // rename, symlink, readlink, unlink, rmdir with their paths.
    let mv = one(r, "rename", named("rename"));
    assert_eq!(
        (arg_str(mv, "oldname"), arg_str(mv, "newname")),
        ("/tmp/w/f".into(), "/tmp/w/g".into())
    );
    assert_eq!(ret(mv), Some(0));
    let ln = one(r, "symlink", named("symlink"));
    assert_eq!(ret(ln), Some(0));
    let rl = find(r, "readlink", "path", "/tmp/w/l");
    assert_eq!(rl.len(), 1);
    assert_eq!(arg_str(rl[0], "buf"), "/tmp/w/g");
    assert_eq!(ret(rl[0]), Some(8));
    assert_eq!(find(r, "unlink", "pathname", "/tmp/w/g").len(), 1);
    assert_eq!(ret(find(r, "rmdir", "pathname", "/tmp/w/d")[0]), Some(0));

    // A failure: errno by name.
    let miss = find(r, "openat", "filename", "/tmp/w/missing");
    assert_eq!(miss.len(), 1);
    assert_eq!(ret(miss[0]), Some(-2));
    assert_eq!(miss[0]["error"], "ENOENT");

    // kill to itself, the handler run, rt_sigreturn.
    let k = one(r, "kill SIGUSR1", |v| {
        v["name"] == "kill" && arg_str(v, "sig") == "SIGUSR1"
    });
    assert_eq!(ret(k), Some(0));
    assert_eq!(
        arg(k, "pid").and_then(Value::as_i64),
        k["process"]["pid"].as_i64()
    );
    assert!(
        r.iter().any(|v| v["name"] == "rt_sigreturn"),
        "no rt_sigreturn"
    );

    // The socket calls: the sockaddr decoded, ECONNREFUSED.
    let s = one(r, "socket", |v| {
        v["name"] == "socket" && arg_str(v, "type") == "SOCK_STREAM"
    });
    assert_eq!(arg_str(s, "family"), "AF_INET");
    assert!(ret(s).unwrap_or(-1) >= 3);
    let c = one(r, "connect", named("connect"));
    let sa = arg_str(c, "uservaddr");
    assert!(
        sa.contains("sin_port=htons(9)") && sa.contains("inet_addr(\"127.0.0.1\")"),
        "{sa}"
    );
    assert_eq!(c["error"], "ECONNREFUSED");

    // dd's 200000-byte buffer comes from mmap: PROT_ and MAP_ names.
    let m = one(r, "mmap 200000", |v| {
        v["name"] == "mmap" && arg(v, "len").and_then(Value::as_u64) == Some(200000)
    });
    assert_eq!(arg_str(m, "prot"), "PROT_READ|PROT_WRITE");
    assert_eq!(arg_str(m, "flags"), "MAP_PRIVATE|MAP_ANONYMOUS");

    // Attribution: every record has a pid and a parent; the executable is read.
    assert!(r
        .iter()
        .all(|v| v["process"]["pid"].as_u64().is_some_and(|p| p > 0)));
    assert!(r.iter().all(|v| v["process"]["ppid"].as_u64().is_some()));
    assert!(r.iter().any(|v| v["process"]["exe"] == "/bin/busybox"));
    // No record of the workload's shell has a return inferred or lost.
    let sh = ex["process"]["ppid"].clone();
    let lost: Vec<_> = r
        .iter()
        .filter(|v| {
            v["process"]["pid"] == sh
                && v.get("note")
                    .is_some_and(|n| n.to_string().contains("not seen"))
        })
        .collect();
    assert!(lost.is_empty(), "returns lost: {lost:?}");
}

#[test]
fn debian_6_1() {
    check("debian-6.1", false);
}

#[test]
fn debian_6_1_kaslr() {
    check("debian-6.1", true);
}

#[test]
fn debian_6_12() {
    check("debian-6.12", false);
}

#[test]
fn debian_6_12_kaslr() {
    check("debian-6.12", true);
}
