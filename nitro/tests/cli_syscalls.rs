//! `nitro syscalls`: the tables it prints.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nitro"))
        .args(args)
        .output()
        .expect("nitro runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn has(table: &str, line: &str) -> bool {
    table.lines().any(|l| l == line)
}

#[test]
fn builtin_linux_tables() {
    let (st, out, _) = run(&["syscalls", "--os", "linux"]);
    assert_eq!(st, 0);
    // arch/x86/entry/syscalls/syscall_64.tbl
    for l in [
        "0 read",
        "2 open",
        "59 execve",
        "63 uname",
        "257 openat",
        "334 rseq",
    ] {
        assert!(has(&out, l), "missing {l:?}");
    }
    let (_, out32, _) = run(&["syscalls", "--os", "linux", "--abi", "i386"]);
    // arch/x86/entry/syscalls/syscall_32.tbl
    for l in ["1 exit", "5 open", "11 execve", "192 mmap2", "295 openat"] {
        assert!(has(&out32, l), "missing {l:?}");
    }
}

#[test]
fn linux_table_read_from_the_guest_kernel() {
    let cache = std::env::var("NITRO_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/nitro",
            std::env::var("HOME").unwrap_or("/root".into())
        )
    });
    for (guest, newest) in [
        ("debian-6.1", "450 set_mempolicy_home_node"),
        ("debian-6.12", "462 mseal"),
    ] {
        if !std::path::Path::new(&format!("{cache}/guests/{guest}/vmlinuz")).exists() {
            eprintln!("SKIP: {guest} not provisioned: run scripts/provision.sh");
            continue;
        }
        let (st, out, err) = run(&["syscalls", "--os", "linux", "--guest", guest]);
        assert_eq!(st, 0, "{err}");
        assert!(has(&out, "257 openat") && has(&out, "63 uname"), "{guest}");
        assert!(has(&out, newest), "{guest}: newest call {newest:?} missing");
        assert!(
            !out.lines().any(|l| l.ends_with(' ')),
            "{guest}: unnamed slot printed"
        );
    }
}

#[test]
fn windows_tables_and_errors() {
    let (st, out, _) = run(&["syscalls", "--os", "windows", "--build", "7601"]);
    assert_eq!(st, 0);
    // j00ru/windows-syscalls, x64 nt, Windows 7 SP1: NtCreateFile = 0x52.
    assert!(has(&out, "82 NtCreateFile"), "NtCreateFile is 0x52 on 7601");
    let (st, _, err) = run(&["syscalls", "--os", "windows", "--build", "1234"]);
    assert_ne!(st, 0);
    assert!(
        err.contains("no built-in table for Windows build 1234"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
}
