//! The Windows 11 24H2 (build 26100) nt service table against its public source.
//!
//! Expected values are copied from j00ru/windows-syscalls, x64/json/nt-per-system.json at commit
//! 8a6806ac9148633e8afbbdb42e6002930b002741, object "Windows 11 and Server" / "11 24H2" (decimal
//! numbers, as the file writes them), not from the table under test.

use std::collections::HashSet;

use nitro_backend_windows::tables::{table_for, SyscallTable};

/// (name, number) pairs read from the source section.
const FROM_SOURCE: &[(&str, u32)] = &[
    ("NtAccessCheck", 0),
    ("NtClose", 15),
    ("NtAllocateVirtualMemory", 24),
    ("NtOpenProcess", 38),
    ("NtWriteVirtualMemory", 58),
    ("NtProtectVirtualMemory", 80),
    ("NtCreateFile", 85),
    ("NtAccessCheckByTypeResultListAndAuditAlarmByHandle", 102),
    ("NtAcquireCrossVmMutant", 103),
    ("NtAlertMultipleThreadByThreadId", 110),
    ("NtAlertThreadByThreadIdEx", 114),
    ("NtCopyFileChunk", 167),
    ("NtCreateCpuPartition", 168),
    ("NtCreateThreadEx", 201),
    ("NtCreateUserProcess", 209),
    ("NtGetContextThread", 251),
    ("NtLoadKey3", 274),
    ("NtManageHotPatch", 282),
    ("NtOpenCpuPartition", 294),
    ("NtOpenProcessToken", 307),
    ("NtOpenThread", 313),
    ("NtQueryInformationCpuPartition", 340),
    ("NtQueryMutant", 354),
    ("NtQuerySystemInformationEx", 366),
    ("NtResumeProcess", 394),
    ("NtSetContextThread", 410),
    ("NtSetEventEx", 417),
    ("NtSetInformationCpuPartition", 421),
    ("NtSetInformationSymbolicLink", 428),
    ("NtSubmitIoRing", 460),
    ("NtSuspendProcess", 462),
    ("NtWaitLowEventPair", 488),
];

fn t24() -> SyscallTable {
    SyscallTable::builtin(26100).expect("26100 has a built-in table")
}

#[test]
fn spot_values_match_the_source() {
    let t = t24();
    for &(name, nr) in FROM_SOURCE {
        assert_eq!(t.number(name), Some(nr), "{name}");
        assert_eq!(t.name(nr), Some(name), "{nr:#x}");
    }
}

#[test]
fn whole_and_unique() {
    let bt = table_for(26100).expect("26100 is registered");
    assert!(bt.complete);
    // win32k: tests/syscall_table_win32k.rs.
    assert_eq!(bt.win32k.len(), 1477);
    // The source section holds 489 services, 0..=488.
    assert_eq!(bt.nt.len(), 489);
    let mut numbers = HashSet::new();
    let mut names = HashSet::new();
    for (i, &(nr, name)) in bt.nt.iter().enumerate() {
        assert_eq!(nr as usize, i, "gap or disorder before {name}");
        assert!(numbers.insert(nr), "duplicate number {nr:#x}");
        assert!(names.insert(name), "duplicate name {name}");
        assert!(name.starts_with("Nt"), "{name}");
    }
    assert_eq!(t24().name(489), None);
}

/// Calls that did not move between 23H2 and 24H2 agree with the 23H2 table, and the ones that
/// moved did so only by the three services new in 24H2 that sort before them.
#[test]
fn agrees_with_23h2_where_nothing_moved() {
    let t23 = SyscallTable::builtin(22631).expect("22631 has a built-in table");
    let t24 = t24();
    // New in 24H2, per the source (absent from the 23H2 section of the same file).
    let new: [(&str, u32); 3] = [
        ("NtAlertMultipleThreadByThreadId", 110),
        ("NtAlertThreadByThreadIdEx", 114),
        ("NtSetEventEx", 417),
    ];
    for (name, nr) in new {
        assert_eq!(t23.number(name), None, "{name}");
        assert_eq!(t24.number(name), Some(nr), "{name}");
    }
    // Nothing was removed. (nt services only: the win32k tables, from 0x1000, are checked in
    // tests/syscall_table_win32k.rs.)
    let nt23 = || t23.entries().iter().filter(|e| e.0 < 0x1000);
    for (_, name) in nt23() {
        assert!(t24.number(name).is_some(), "{name} missing from 24H2");
    }
    let mut unchanged = 0;
    for (nr23, name) in nt23() {
        let nr24 = t24.number(name).unwrap_or(u32::MAX);
        let shift = new.iter().filter(|&&(_, n)| n <= nr24).count() as u32;
        assert_eq!(nr24, nr23 + shift, "{name}");
        if shift == 0 {
            unchanged += 1;
        }
    }
    // 0x00..=0x6d keep their numbers.
    assert_eq!(unchanged, 0x6e);
    assert_eq!(t23.number("NtAlertResumeThread"), Some(0x6e));
    assert_eq!(t24.number("NtAlertResumeThread"), Some(111));
}
