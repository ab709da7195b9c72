//! System-service tables by Windows build: service number -> `Nt*` name.
//!
//! The numbers are data, one file per build and table, transcribed from the public reference
//! j00ru/windows-syscalls (x64/csv/nt.csv and x64/csv/win32k.csv; for 24H2,
//! x64/json/nt-per-system.json and x64/json/win32k-per-system.json of a later commit; for the
//! Windows 7 win32k table, x64/json/win32k-per-system.json of an earlier one). See each file's
//! header for the exact column and for what was verified. x64 Windows dispatches service numbers
//! below 0x1000 to the nt table (ntoskrnl) and numbers from 0x1000 up to the win32k table
//! (`number & 0xfff` indexes it). Every built-in build has both tables: Windows 7 SP1, 10 22H2,
//! 11 23H2 and 11 24H2.
//!
//! Any other build is handled by [`crate::isf`]: a Volatility 3 ISF profile of its ntoskrnl
//! gives `KiServiceTable`, whose entries resolve to `Nt*` symbols.

mod win10_22h2;
mod win10_22h2_win32k;
mod win11_23h2;
mod win11_23h2_win32k;
mod win11_24h2;
mod win11_24h2_win32k;
mod win7_sp1;
mod win7_sp1_win32k;

/// One built-in table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildTable {
    /// Release name.
    pub release: &'static str,
    /// The build numbers (`NtBuildNumber & 0xffff`) this table applies to.
    pub builds: &'static [u32],
    /// The nt services, ascending and contiguous from 0.
    pub nt: &'static [(u32, &'static str)],
    /// The win32k services (numbers from 0x1000), when known.
    pub win32k: &'static [(u32, &'static str)],
    /// nt then win32k services: what [`syscall_table`] returns.
    pub all: &'static [(u32, &'static str)],
    /// True when the table holds every service of the release; false for a partial table.
    pub complete: bool,
    /// Where the numbers come from.
    pub source: &'static str,
}

/// `a` followed by `b`, at compile time.
const fn concat<const N: usize>(
    a: &[(u32, &'static str)],
    b: &[(u32, &'static str)],
) -> [(u32, &'static str); N] {
    let mut out = [(0u32, ""); N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[i + j] = b[j];
        j += 1;
    }
    out
}

static WIN7_ALL: [(u32, &str); win7_sp1::NT.len() + win7_sp1_win32k::WIN32K.len()] =
    concat(win7_sp1::NT, win7_sp1_win32k::WIN32K);
static WIN10_ALL: [(u32, &str); win10_22h2::NT.len() + win10_22h2_win32k::WIN32K.len()] =
    concat(win10_22h2::NT, win10_22h2_win32k::WIN32K);
static WIN11_ALL: [(u32, &str); win11_23h2::NT.len() + win11_23h2_win32k::WIN32K.len()] =
    concat(win11_23h2::NT, win11_23h2_win32k::WIN32K);
static WIN11_24H2_ALL: [(u32, &str); win11_24h2::NT.len() + win11_24h2_win32k::WIN32K.len()] =
    concat(win11_24h2::NT, win11_24h2_win32k::WIN32K);

const J00RU_WIN7: &str = "j00ru/windows-syscalls x64/csv/nt.csv (commit f84a0252) and \
                          x64/json/win32k-per-system.json \"Windows 7\"/\"SP1\" (commit 0c48cd8f)";
const J00RU_WIN32K: &str =
    "j00ru/windows-syscalls x64/csv/nt.csv and x64/csv/win32k.csv (commit f84a0252)";
const J00RU_24H2: &str = "j00ru/windows-syscalls x64/json/nt-per-system.json and \
                          win32k-per-system.json \"11 24H2\" (commit 8a6806ac)";

/// Every built-in table.
pub const TABLES: &[BuildTable] = &[
    BuildTable {
        release: "Windows 7 SP1 x64",
        builds: &[7601, 7600],
        nt: win7_sp1::NT,
        win32k: win7_sp1_win32k::WIN32K,
        all: &WIN7_ALL,
        complete: true,
        source: J00RU_WIN7,
    },
    BuildTable {
        release: "Windows 10 22H2 x64",
        builds: &[19045, 19044],
        nt: win10_22h2::NT,
        win32k: win10_22h2_win32k::WIN32K,
        all: &WIN10_ALL,
        complete: true,
        source: J00RU_WIN32K,
    },
    BuildTable {
        release: "Windows 11 23H2 x64",
        builds: &[22631, 22621],
        nt: win11_23h2::NT,
        win32k: win11_23h2_win32k::WIN32K,
        all: &WIN11_ALL,
        complete: true,
        source: J00RU_WIN32K,
    },
    BuildTable {
        release: "Windows 11 24H2 x64",
        builds: &[26100],
        nt: win11_24h2::NT,
        win32k: win11_24h2_win32k::WIN32K,
        all: &WIN11_24H2_ALL,
        complete: true,
        source: J00RU_24H2,
    },
];

/// The built-in table for `build` (the low 16 bits of `NtBuildNumber`).
pub fn table_for(build: u32) -> Option<&'static BuildTable> {
    TABLES.iter().find(|t| t.builds.contains(&(build & 0xffff)))
}

/// The built-in service table of `build`: (service number, name), ascending; nt services
/// below 0x1000, then win32k services from 0x1000.
pub fn syscall_table(build: u32) -> Option<&'static [(u32, &'static str)]> {
    table_for(build).map(|t| t.all)
}

/// Every build number that has a built-in table, ascending.
pub fn supported_builds() -> Vec<u32> {
    let mut v: Vec<u32> = TABLES
        .iter()
        .flat_map(|t| t.builds.iter().copied())
        .collect();
    v.sort_unstable();
    v
}

/// A service table in use: the built-in one, or one resolved from an ISF profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyscallTable {
    entries: Vec<(u32, String)>,
}

impl SyscallTable {
    /// The built-in table of `build`.
    pub fn builtin(build: u32) -> Option<Self> {
        syscall_table(build).map(|t| SyscallTable {
            entries: t.iter().map(|&(n, s)| (n, s.to_string())).collect(),
        })
    }

    /// A table from (number, name) pairs (sorted here).
    pub fn from_entries(mut entries: Vec<(u32, String)>) -> Self {
        entries.sort_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        SyscallTable { entries }
    }

    /// The name of service `nr`.
    pub fn name(&self, nr: u32) -> Option<&str> {
        self.entries
            .binary_search_by_key(&nr, |e| e.0)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|e| e.1.as_str())
    }

    /// The number of service `name`.
    pub fn number(&self, name: &str) -> Option<u32> {
        self.entries.iter().find(|e| e.1 == name).map(|e| e.0)
    }

    /// All entries, ascending.
    pub fn entries(&self) -> &[(u32, String)] {
        &self.entries
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_contiguous_and_unique() {
        for t in TABLES {
            for (i, &(n, name)) in t.nt.iter().enumerate() {
                assert_eq!(n as usize, i, "{}: gap before {name}", t.release);
                assert!(name.starts_with("Nt"), "{name}");
            }
            assert!(!t.win32k.is_empty(), "{}: no win32k table", t.release);
            for (i, &(n, name)) in t.win32k.iter().enumerate() {
                assert_eq!(n as usize, 0x1000 + i, "{}: gap before {name}", t.release);
                // Windows 7's GUI services are all NtUser*/NtGdi*; 8 and later add others
                // (NtDComposition*, NtDxgk*, NtMIT*, NtRIM*...), all still Nt*.
                assert!(name.starts_with("Nt"), "{name}");
                if t.builds.contains(&7601) {
                    assert!(
                        name.starts_with("NtUser") || name.starts_with("NtGdi"),
                        "{name}"
                    );
                }
            }
            // The nt and win32k parts of `all` are the two tables, in that order.
            assert_eq!(&t.all[..t.nt.len()], t.nt);
            assert_eq!(&t.all[t.nt.len()..], t.win32k);
            assert_eq!(t.all.len(), t.nt.len() + t.win32k.len());
            assert!(t.all.windows(2).all(|w| w[0].0 < w[1].0));
            let mut names: Vec<_> = t.all.iter().map(|e| e.1).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), t.all.len(), "{}: duplicate names", t.release);
        }
    }

    #[test]
    fn counts_match_the_reference() {
        // Counts of the j00ru columns (checked when transcribing).
        assert_eq!(syscall_table(7601).map(<[_]>::len), Some(401 + 827));
        assert_eq!(table_for(7601).map(|t| t.nt.len()), Some(401));
        assert_eq!(syscall_table(19045).map(<[_]>::len), Some(473 + 1316));
        assert_eq!(syscall_table(22631).map(<[_]>::len), Some(486 + 1456));
        assert_eq!(syscall_table(26100).map(<[_]>::len), Some(489 + 1477));
        let win32k = |b| table_for(b).map(|t| t.win32k.len());
        assert_eq!(win32k(7600), Some(827));
        assert_eq!(win32k(19044), Some(1316));
        assert_eq!(win32k(22621), Some(1456));
        assert_eq!(win32k(26100), Some(1477));
        assert_eq!(syscall_table(9200), None);
        assert_eq!(
            supported_builds(),
            vec![7600, 7601, 19044, 19045, 22621, 22631, 26100]
        );
    }

    #[test]
    fn spot_values() {
        // Spot values cross-checked with a second public source: Bitdefender hvmi
        // cami/sources/windows/opaque_fields/km/windows_7601_x64_kpti_OFF.yaml ("SyscallNumbers").
        let w7 = SyscallTable::builtin(7601).unwrap();
        assert_eq!(w7.number("NtWriteVirtualMemory"), Some(0x37));
        assert_eq!(w7.number("NtProtectVirtualMemory"), Some(0x4d));
        assert_eq!(w7.number("NtCreateThreadEx"), Some(0xa5));
        assert_eq!(w7.name(0x52), Some("NtCreateFile"));
        assert_eq!(w7.name(0x1000), Some("NtUserGetThreadState"));
        assert_eq!(w7.name(0x1008), Some("NtGdiBitBlt"));
        assert_eq!(w7.name(0x133a), Some("NtUserSetWindowLongPtr"));
        assert_eq!(w7.name(0x133b), None);
        for b in [19045, 22631, 26100] {
            let t = SyscallTable::builtin(b).unwrap();
            assert_eq!(t.name(0x55), Some("NtCreateFile"), "{b}");
            assert_eq!(t.name(0x0f), Some("NtClose"), "{b}");
            assert_eq!(t.name(0x18), Some("NtAllocateVirtualMemory"), "{b}");
        }
        assert_eq!(
            SyscallTable::builtin(22621)
                .unwrap()
                .number("NtCreateUserProcess"),
            Some(0xcf)
        );
        assert_eq!(
            SyscallTable::builtin(19045)
                .unwrap()
                .number("NtCreateUserProcess"),
            Some(0xc9)
        );
        assert_eq!(
            SyscallTable::builtin(26100)
                .unwrap()
                .number("NtCreateUserProcess"),
            Some(0xd1)
        );
        // win32k: the first and last services of each table (j00ru win32k.csv / JSON).
        for (b, last, last_nr) in [
            (19045, "NtUserSetWindowLongPtr", 0x1523),
            (22631, "NtUserSetWindowLongPtr", 0x15af),
            (26100, "NtUserSetWindowLongPtr", 0x15c4),
        ] {
            let t = SyscallTable::builtin(b).unwrap();
            assert_eq!(t.name(0x1000), Some("NtUserGetThreadState"), "{b}");
            assert_eq!(t.name(last_nr), Some(last), "{b}");
            assert_eq!(t.name(last_nr + 1), None, "{b}");
        }
        assert!(TABLES.iter().all(|t| t.complete));
    }
}
