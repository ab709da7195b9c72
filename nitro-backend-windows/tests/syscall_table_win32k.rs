//! The win32k (GUI, numbers from 0x1000) service tables of Windows 10 22H2, 11 23H2 and 11 24H2
//! against their public source.
//!
//! Expected values are copied from j00ru/windows-syscalls, not from the tables under test:
//! - 10 22H2 and 11 23H2: x64/csv/win32k.csv at commit f84a02528f5320bbb3eb37f3c58a327c2954d582,
//!   columns "Windows 10 (22H2)" and "Windows 11 and Server (11 23H2)" (hex, as the file writes
//!   them);
//! - 11 24H2: x64/json/win32k-per-system.json at commit 8a6806ac9148633e8afbbdb42e6002930b002741,
//!   object "Windows 11 and Server" / "11 24H2" (decimal, as the file writes them).

use std::collections::HashSet;

use nitro_backend_windows::syscall_table;
use nitro_backend_windows::tables::{table_for, SyscallTable};

/// Column "Windows 10 (22H2)".
const WIN10_22H2: &[(&str, u32)] = &[
    ("NtUserGetThreadState", 0x1000),
    ("NtUserPeekMessage", 0x1001),
    ("NtUserCallOneParam", 0x1002),
    ("NtUserGetKeyState", 0x1003),
    ("NtUserCallNoParam", 0x1005),
    ("NtUserGetMessage", 0x1006),
    ("NtGdiBitBlt", 0x1008),
    ("NtUserPostMessage", 0x100f),
    ("NtGdiExtTextOutW", 0x1038),
    ("NtUserGetAsyncKeyState", 0x1044),
    ("NtGdiCreateCompatibleBitmap", 0x104b),
    ("NtUserFindWindowEx", 0x106c),
    ("NtUserCreateWindowEx", 0x1074),
    ("NtUserSendInput", 0x107f),
    ("NtUserSetWindowsHookEx", 0x1089),
    ("NtDCompositionCreateChannel", 0x1124),
    ("NtUserGetOwnerTransformedMonitorRect", 0x130f),
    ("NtUserBlockInput", 0x13a1),
    ("NtUserSetSensorPresence", 0x13d2),
    ("NtUserYieldTask", 0x141f),
    ("NtUserSetClassWord", 0x14c3),
    ("NtVisualCaptureBits", 0x1521),
    ("NtUserSetClassLongPtr", 0x1522),
    ("NtUserSetWindowLongPtr", 0x1523),
];

/// Column "Windows 11 and Server (11 23H2)".
const WIN11_23H2: &[(&str, u32)] = &[
    ("NtUserGetThreadState", 0x1000),
    ("NtUserPeekMessage", 0x1001),
    ("NtUserGetKeyState", 0x1002),
    ("NtUserGetMessage", 0x1004),
    ("NtGdiBitBlt", 0x1006),
    ("NtUserPostMessage", 0x100d),
    ("NtGdiExtTextOutW", 0x1033),
    ("NtUserGetAsyncKeyState", 0x103f),
    ("NtGdiCreateCompatibleBitmap", 0x1046),
    ("NtUserFindWindowEx", 0x1067),
    ("NtUserCreateWindowEx", 0x106f),
    ("NtUserSendInput", 0x107a),
    ("NtUserSetWindowsHookEx", 0x1084),
    ("NtDCompositionCreateChannel", 0x111c),
    ("NtDxgkCreateNativeFence", 0x114c),
    ("NtUserGetOwnerTransformedMonitorRect", 0x132b),
    ("NtUserBlockInput", 0x13a7),
    ("NtUserSetSensorPresence", 0x140d),
    ("NtUserSetClassWord", 0x1526),
    ("NtVisualCaptureBits", 0x15ad),
    ("NtUserSetClassLongPtr", 0x15ae),
    ("NtUserSetWindowLongPtr", 0x15af),
];

/// Object "11 24H2".
const WIN11_24H2: &[(&str, u32)] = &[
    ("NtUserGetThreadState", 4096),
    ("NtUserPeekMessage", 4097),
    ("NtUserGetKeyState", 4098),
    ("NtUserGetMessage", 4100),
    ("NtGdiBitBlt", 4102),
    ("NtUserPostMessage", 4109),
    ("NtGdiExtTextOutW", 4147),
    ("NtUserGetAsyncKeyState", 4159),
    ("NtGdiCreateCompatibleBitmap", 4166),
    ("NtUserFindWindowEx", 4199),
    ("NtUserCreateWindowEx", 4207),
    ("NtUserSendInput", 4218),
    ("NtUserSetWindowsHookEx", 4228),
    ("NtDCompositionCreateChannel", 4382),
    ("NtDxgkCreateNativeFence", 4426),
    ("NtUserGetOwnerTransformedMonitorRect", 4912),
    ("NtUserBlockInput", 5038),
    ("NtUserSetSensorPresence", 5140),
    ("NtUserSetClassWord", 5430),
    ("NtVisualCaptureBits", 5570),
    ("NtUserSetClassLongPtr", 5571),
    ("NtUserSetWindowLongPtr", 5572),
];

/// (name, number) pairs read from one source column.
type Column = &'static [(&'static str, u32)];

/// (builds, expected values, number of win32k services in the source column).
const CASES: &[(&[u32], Column, usize)] = &[
    (&[19045, 19044], WIN10_22H2, 1316),
    (&[22631, 22621], WIN11_23H2, 1456),
    (&[26100], WIN11_24H2, 1477),
];

#[test]
fn spot_values_match_the_source() {
    for &(builds, expected, _) in CASES {
        for &b in builds {
            let t = SyscallTable::builtin(b).expect("built-in table");
            for &(name, nr) in expected {
                assert_eq!(t.number(name), Some(nr), "{b}: {name}");
                assert_eq!(t.name(nr), Some(name), "{b}: {nr:#x}");
            }
        }
    }
}

#[test]
fn counts_and_contiguity() {
    for &(builds, _, count) in CASES {
        for &b in builds {
            let bt = table_for(b).expect("registered build");
            assert_eq!(bt.win32k.len(), count, "{b}");
            let mut names = HashSet::new();
            for (i, &(nr, name)) in bt.win32k.iter().enumerate() {
                assert_eq!(
                    nr as usize,
                    0x1000 + i,
                    "{b}: gap or disorder before {name}"
                );
                assert!(names.insert(name), "{b}: duplicate name {name}");
            }
            // The whole table is nt then win32k.
            let all = syscall_table(b).expect("built-in table");
            assert_eq!(all.len(), bt.nt.len() + count, "{b}");
            let last = 0x1000 + count as u32 - 1;
            assert_eq!(all.last().map(|e| e.0), Some(last), "{b}");
            let t = SyscallTable::builtin(b).unwrap();
            assert!(t.name(last).is_some(), "{b}");
            assert_eq!(t.name(last + 1), None, "{b}");
        }
    }
}

/// What the source leaves out of a column is not in the table either.
#[test]
fn absent_services_are_absent() {
    let w10 = SyscallTable::builtin(19045).unwrap();
    let w11 = SyscallTable::builtin(22631).unwrap();
    let w24 = SyscallTable::builtin(26100).unwrap();
    // Gone in Windows 11 (empty in the 11 columns, present in 22H2).
    for name in ["NtUserCallOneParam", "NtUserCallNoParam", "NtUserYieldTask"] {
        assert!(w10.number(name).is_some(), "{name}");
        assert_eq!(w11.number(name), None, "{name}");
        assert_eq!(w24.number(name), None, "{name}");
    }
    // New in Windows 11 (empty in the 22H2 column).
    assert_eq!(w10.number("NtDxgkCreateNativeFence"), None);
    // New in 24H2: absent from the 23H2 column, present in the 24H2 object.
    assert_eq!(w11.number("NtDxgkGetNativeFenceLogDetail"), None);
    assert_eq!(w24.number("NtDxgkGetNativeFenceLogDetail"), Some(4439));
    // Windows 7 names that no longer exist.
    assert_eq!(w10.number("NtGdiD3dDrawPrimitives2"), None);
}

/// `syscall_table(19045)` names every number from 0x1000 up to the end of the win32k table,
/// and the nt numbers below 0x1000 keep their names.
#[test]
fn syscall_table_19045_resolves_win32k_numbers() {
    let all = syscall_table(19045).expect("19045 is built in");
    let by_nr: std::collections::HashMap<u32, &str> = all.iter().copied().collect();
    for n in 0..1316u32 {
        let name = by_nr.get(&(0x1000 + n)).copied();
        assert!(
            name.is_some_and(|s| s.starts_with("Nt")),
            "{:#x}: {name:?}",
            0x1000 + n
        );
    }
    assert_eq!(by_nr.get(&0x1006), Some(&"NtUserGetMessage"));
    assert_eq!(by_nr.get(&0x1008), Some(&"NtGdiBitBlt"));
    assert_eq!(by_nr.get(&0x1002), Some(&"NtUserCallOneParam"));
    assert_eq!(by_nr.get(&0x55), Some(&"NtCreateFile"));
    assert_eq!(by_nr.get(&0x1524), None);
}

/// 22H2 (22621) and 23H2 (22631) share one table: the source's two columns are identical.
#[test]
fn windows_11_22h2_and_23h2_share_the_table() {
    assert_eq!(syscall_table(22621), syscall_table(22631));
    assert_eq!(syscall_table(19044), syscall_table(19045));
}
