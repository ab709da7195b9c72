//! End-to-end tests of `nitro trace` on real Debian guests under QEMU.
//!
//! They need QEMU and the guests provisioned by `scripts/provision.sh`; when those are
//! missing each test says why and returns (CI runs provisioning first, so there they run).

mod common;

use common::{guest_available, nitro, records, run};

fn cat_proc_version(guest: &str) {
    if !guest_available(guest) {
        return;
    }
    let r = run(&["trace", "--guest", guest, "--", "/bin/cat", "/proc/version"]);
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("Linux version"),
        "guest output missing: {}",
        r.stderr
    );
    let recs = records(&r.stdout);
    let open = recs
        .iter()
        .find(|v| {
            v["name"] == "openat"
                && v["process"]["name"] == "cat"
                && v["args"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["value"] == "/proc/version"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no openat of /proc/version by cat in {} records",
                recs.len()
            )
        });
    let fd = open["ret"].as_i64().expect("openat has a return value");
    assert!(fd >= 0, "openat failed: {open}");
    assert!(open["process"]["pid"].as_u64().unwrap_or(0) > 1);
    assert_eq!(open["event"]["direction"], "exit");
    // busybox cat copies with sendfile(1, fd, ...) (or read/write): the bytes moved are > 0.
    let copied = recs.iter().any(|v| {
        (v["name"] == "sendfile" || v["name"] == "read")
            && v["process"]["name"] == "cat"
            && v["ret"].as_i64().unwrap_or(0) > 0
    });
    assert!(copied, "no sendfile/read by cat returned data");
    assert!(
        recs.iter().any(|v| v["name"] == "execve"
            && v["process"]["name"] == "cat"
            && v["ret"] == 0
            && v["args"][1]["value"] == serde_json::json!(["/bin/cat", "/proc/version"])),
        "execve of cat with its argv not seen"
    );
}

#[test]
fn debian_6_1_cat_proc_version_jsonl() {
    cat_proc_version("debian-6.1");
}

#[test]
fn debian_6_12_cat_proc_version_jsonl() {
    cat_proc_version("debian-6.12");
}

#[test]
fn text_format_is_strace_like() {
    if !guest_available("debian-6.1") {
        return;
    }
    let r = run(&[
        "trace",
        "--guest",
        "debian-6.1",
        "--format",
        "text",
        "--",
        "/bin/cat",
        "/proc/version",
        "/nonexistent",
    ]);
    assert_eq!(
        r.status, 1,
        "cat of a missing file exits 1; stderr: {}",
        r.stderr
    );
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("] openat(") && l.contains("\"/proc/version\""))
        .unwrap_or_else(|| panic!("no openat line in:\n{}", r.stdout));
    assert!(
        line.contains(" cat] openat(AT_FDCWD, \"/proc/version\", O_RDONLY"),
        "{line}"
    );
    assert!(
        line.trim_end()
            .rsplit(" = ")
            .next()
            .is_some_and(|v| v.parse::<i32>().is_ok_and(|fd| fd >= 0)),
        "{line}"
    );
    let missing = r
        .stdout
        .lines()
        .find(|l| l.contains("] openat(") && l.contains("\"/nonexistent\""))
        .unwrap_or_else(|| panic!("no openat of /nonexistent in:\n{}", r.stdout));
    assert!(
        missing.ends_with("= -1 ENOENT (No such file or directory)"),
        "{missing}"
    );
}

#[test]
fn unknown_guest_is_a_clear_error() {
    let r = run(&["trace", "--guest", "windows-95", "--", "/bin/true"]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("unknown guest 'windows-95'"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn a_kernel_that_is_not_a_kernel_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("nitro-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("vmlinuz");
    std::fs::write(&fake, b"this is a text file, not a kernel\n").unwrap();
    let r = run(&[
        "trace",
        "--kernel",
        fake.to_str().unwrap(),
        "--initrd",
        fake.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    assert_ne!(r.status, 0);
    assert!(
        r.stderr.contains("not a usable Linux kernel"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_qemu_is_a_clear_error() {
    if !guest_available("debian-6.1") {
        return;
    }
    let out = nitro()
        .args(["trace", "--guest", "debian-6.1", "--", "/bin/true"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("qemu-system-x86_64") && stderr.contains("not found"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn command_missing_in_guest_is_a_clear_error() {
    if !guest_available("debian-6.1") {
        return;
    }
    let r = run(&[
        "trace",
        "--guest",
        "debian-6.1",
        "--",
        "/bin/no-such-program",
    ]);
    assert_eq!(r.status, 127, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("command not found in the guest: /bin/no-such-program"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn a_command_that_hangs_is_stopped_by_the_timeout() {
    if !guest_available("debian-6.1") {
        return;
    }
    let start = std::time::Instant::now();
    let r = run(&[
        "trace",
        "--guest",
        "debian-6.1",
        "--timeout",
        "3",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    assert_eq!(r.status, 124, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("did not finish within the 3 s time limit"),
        "{}",
        r.stderr
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    // What happened before the limit is there: sleep's own calls.
    let recs = records(&r.stdout);
    assert!(recs
        .iter()
        .any(|v| v["name"] == "execve" && v["process"]["name"] == "sleep"));
}

#[test]
fn a_broken_isf_profile_is_a_clear_error() {
    if !guest_available("debian-6.1") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nitro-isf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let isf = dir.join("profile.json");
    std::fs::write(
        &isf,
        br#"{"user_types": {"task_struct": {"size": 8, "fields": {}}}}"#,
    )
    .unwrap();
    let r = run(&[
        "trace",
        "--guest",
        "debian-6.1",
        "--isf",
        isf.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("ISF profile has no "), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    let _ = std::fs::remove_dir_all(dir);
}
