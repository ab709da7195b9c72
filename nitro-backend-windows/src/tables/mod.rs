//! System-service tables by Windows build: service number -> `Nt*` name.
//!
//! The numbers are data, one file per build, transcribed from the public reference
//! j00ru/windows-syscalls (x64/csv/nt.csv). See each file's header for the exact column and
//! for what was verified. x64 Windows dispatches service numbers below 0x1000 to the nt table
//! (ntoskrnl) and numbers from 0x1000 up to the win32k table (`number & 0xfff` indexes it).
//! The win32k table is built in for Windows 7 SP1 only (j00ru's x64 win32k data, JSON form).
//!
//! Any other build is handled by [`crate::isf`]: a Volatility 3 ISF profile of its ntoskrnl
//! gives `KiServiceTable`, whose entries resolve to `Nt*` symbols.

mod win10_22h2;
mod win11_23h2;
mod win11_24h2;
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

const J00RU: &str = "j00ru/windows-syscalls x64/csv/nt.csv (commit f84a0252)";

/// Every built-in table.
pub const TABLES: &[BuildTable] = &[
    BuildTable {
        release: "Windows 7 SP1 x64",
        builds: &[7601, 7600],
        nt: win7_sp1::NT,
        win32k: win7_sp1_win32k::WIN32K,
        all: &WIN7_ALL,
        complete: true,
        source: J00RU,
    },
    BuildTable {
        release: "Windows 10 22H2 x64",
        builds: &[19045, 19044],
        nt: win10_22h2::NT,
        win32k: &[],
        all: win10_22h2::NT,
        complete: true,
        source: J00RU,
    },
    BuildTable {
        release: "Windows 11 23H2 x64",
        builds: &[22631, 22621],
        nt: win11_23h2::NT,
        win32k: &[],
        all: win11_23h2::NT,
        complete: true,
        source: J00RU,
    },
    BuildTable {
        release: "Windows 11 24H2 x64 (partial: 0x00-0x66 only)",
        builds: &[26100],
        nt: win11_24h2::NT,
        win32k: &[],
        all: win11_24h2::NT,
        complete: false,
        source: "services unchanged in every x64 column of j00ru's table from 1507 to Server 23H2",
    },
];

/// The built-in table for `build` (the low 16 bits of `NtBuildNumber`).
pub fn table_for(build: u32) -> Option<&'static BuildTable> {
    TABLES.iter().find(|t| t.builds.contains(&(build & 0xffff)))
}

/// The built-in service table of `build`: (service number, name), ascending; nt services
/// below 0x1000, then win32k services from 0x1000 where known (Windows 7 SP1).
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
            for (i, &(n, name)) in t.win32k.iter().enumerate() {
                assert_eq!(n as usize, 0x1000 + i, "{}: gap before {name}", t.release);
                assert!(
                    name.starts_with("NtUser") || name.starts_with("NtGdi"),
                    "{name}"
                );
            }
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
        assert_eq!(syscall_table(19045).map(<[_]>::len), Some(473));
        assert_eq!(syscall_table(22631).map(<[_]>::len), Some(486));
        assert_eq!(syscall_table(26100).map(<[_]>::len), Some(0x67));
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
        assert_eq!(SyscallTable::builtin(26100).unwrap().name(0xc9), None);
    }
}
