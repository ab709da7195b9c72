//! Built-in syscall tables of Linux x86: numbers, names, prototypes and strace classes.
//!
//! The lead resolves names from the guest's own `sys_call_table`; these tables are the
//! fallback for numbers and the source of prototypes ([`info_for_name`]).

mod numbers;
mod protos;

use std::{collections::HashMap, sync::OnceLock};

use super::ArgKind;

bitflags::bitflags! {
    /// strace's syscall classes (`-e trace=%file` ...), from strace `src/sysent.h` (`TRACE_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Classes: u32 {
        /// `%file`: takes a file name.
        const FILE = 1 << 0;
        /// `%ipc`: SysV IPC.
        const IPC = 1 << 1;
        /// `%network`: sockets.
        const NETWORK = 1 << 2;
        /// `%process`: process lifecycle (fork, exec, exit, wait).
        const PROCESS = 1 << 3;
        /// `%signal`: signals.
        const SIGNAL = 1 << 4;
        /// `%desc`: takes or returns a file descriptor.
        const DESC = 1 << 5;
        /// `%memory`: memory mapping.
        const MEMORY = 1 << 6;
        /// `%stat`: stat(2) variants taking a path.
        const STAT = 1 << 7;
        /// `%lstat`: lstat(2) variants.
        const LSTAT = 1 << 8;
        /// `%fstat`: fstat(2) and fstatat variants.
        const FSTAT = 1 << 9;
        /// `%statfs`: statfs(2) variants.
        const STATFS = 1 << 10;
        /// `%fstatfs`: fstatfs(2) variants.
        const FSTATFS = 1 << 11;
        /// `%creds`: user/group ids and capabilities.
        const CREDS = 1 << 12;
        /// `%clock`: read or change the clocks.
        const CLOCK = 1 << 13;
        /// `%pure`: no arguments, always succeeds (getpid, getuid...).
        const PURE = 1 << 14;
    }
}

impl Classes {
    /// `%stat_like`: every stat variant.
    pub const STAT_LIKE: Classes = Classes::STAT.union(Classes::LSTAT).union(Classes::FSTAT);
    /// `%statfs_like`: every statfs variant.
    pub const STATFS_LIKE: Classes = Classes::STATFS.union(Classes::FSTATFS);

    /// Parses strace's class name (`%file`, `file`, `%net`...); `None` if unknown.
    pub fn from_strace_name(name: &str) -> Option<Classes> {
        let n = name.strip_prefix('%').unwrap_or(name);
        Some(match n {
            "file" => Classes::FILE,
            "ipc" => Classes::IPC,
            "network" | "net" => Classes::NETWORK,
            "process" => Classes::PROCESS,
            "signal" => Classes::SIGNAL,
            "desc" => Classes::DESC,
            "memory" => Classes::MEMORY,
            "stat" => Classes::STAT,
            "lstat" => Classes::LSTAT,
            "fstat" => Classes::FSTAT,
            "%stat" | "stat_like" => Classes::STAT_LIKE,
            "statfs" => Classes::STATFS,
            "fstatfs" => Classes::FSTATFS,
            "%statfs" | "statfs_like" => Classes::STATFS_LIKE,
            "creds" => Classes::CREDS,
            "clock" => Classes::CLOCK,
            "pure" => Classes::PURE,
            _ => return None,
        })
    }
}

// Short class names for the prototype table.
const F: u32 = Classes::FILE.bits();
const I: u32 = Classes::IPC.bits();
const N: u32 = Classes::NETWORK.bits();
const P: u32 = Classes::PROCESS.bits();
const SG: u32 = Classes::SIGNAL.bits();
const D: u32 = Classes::DESC.bits();
const M: u32 = Classes::MEMORY.bits();
const ST: u32 = Classes::STAT.bits();
const LST: u32 = Classes::LSTAT.bits();
const FST: u32 = Classes::FSTAT.bits();
const SF: u32 = Classes::STATFS.bits();
const FSF: u32 = Classes::FSTATFS.bits();
const CR: u32 = Classes::CREDS.bits();
const CL: u32 = Classes::CLOCK.bits();
const PU: u32 = Classes::PURE.bits();

/// How a syscall's return value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetKind {
    /// A signed decimal (`3`, `-1 ENOENT (...)`).
    Int,
    /// An address in hex (`mmap`, `brk`): `0x7f12a000`.
    Addr,
    /// A hexadecimal value (`personality`).
    Hex,
    /// An octal mode (`umask` returns `022`).
    Octal,
    /// The call does not return on success (`exit`, `exit_group`): `?`.
    NoReturn,
}

/// One argument of a prototype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    /// Parameter name as in the kernel's `SYSCALL_DEFINE`.
    pub name: &'static str,
    /// How to decode and show it.
    pub kind: ArgKind,
}

/// A syscall's name and prototype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallInfo {
    /// Name without the `sys_` prefix (`openat`).
    pub name: &'static str,
    /// Arguments in register order.
    pub args: &'static [ArgSpec],
    /// strace classes.
    pub classes: Classes,
    /// How the return value is shown.
    pub ret: RetKind,
}

impl SyscallInfo {
    const fn ret(self, ret: RetKind) -> SyscallInfo {
        SyscallInfo { ret, ..self }
    }

    /// True when this call has at least one argument with a typed (non-numeric) decoder.
    pub fn is_typed(&self) -> bool {
        self.args.iter().any(|a| a.kind.is_typed())
    }
}

const fn s(name: &'static str, classes: u32, args: &'static [ArgSpec]) -> SyscallInfo {
    SyscallInfo {
        name,
        args,
        classes: Classes::from_bits_retain(classes),
        ret: RetKind::Int,
    }
}

const fn a(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec { name, kind }
}

fn by_name_map() -> &'static HashMap<&'static str, &'static SyscallInfo> {
    static MAP: OnceLock<HashMap<&'static str, &'static SyscallInfo>> = OnceLock::new();
    MAP.get_or_init(|| protos::PROTOS.iter().map(|i| (i.name, i)).collect())
}

fn by_nr(
    names: &'static [&'static str],
    overrides: &'static [SyscallInfo],
) -> Vec<Option<&'static SyscallInfo>> {
    names
        .iter()
        .map(|n| {
            if n.is_empty() {
                return None;
            }
            overrides
                .iter()
                .find(|o| o.name == *n)
                .or_else(|| by_name_map().get(n).copied())
        })
        .collect()
}

/// The x86-64 syscall `nr` (Linux 6.12 `syscall_64.tbl`).
pub fn x86_64(nr: u64) -> Option<&'static SyscallInfo> {
    static T: OnceLock<Vec<Option<&'static SyscallInfo>>> = OnceLock::new();
    let t = T.get_or_init(|| by_nr(&numbers::X86_64, &[]));
    usize::try_from(nr)
        .ok()
        .and_then(|n| t.get(n).copied().flatten())
}

/// The i386 syscall `nr` (Linux 6.12 `syscall_32.tbl`), with i386 prototypes where they
/// differ (`mmap` is `old_mmap`, `clone` has tls before child_tidptr...).
pub fn i386(nr: u64) -> Option<&'static SyscallInfo> {
    static T: OnceLock<Vec<Option<&'static SyscallInfo>>> = OnceLock::new();
    let t = T.get_or_init(|| by_nr(&numbers::I386, protos::I386_OVERRIDES));
    usize::try_from(nr)
        .ok()
        .and_then(|n| t.get(n).copied().flatten())
}

/// The x86-64 number and prototype of `name`.
pub fn by_name_x86_64(name: &str) -> Option<(u64, &'static SyscallInfo)> {
    let nr = numbers::X86_64.iter().position(|n| *n == name)?;
    Some((nr as u64, x86_64(nr as u64)?))
}

/// The i386 number and prototype of `name`.
pub fn by_name_i386(name: &str) -> Option<(u64, &'static SyscallInfo)> {
    let nr = numbers::I386.iter().position(|n| *n == name)?;
    Some((nr as u64, i386(nr as u64)?))
}

/// The prototype of a syscall by name. Accepts the bare name (`openat`) and the kernel's
/// symbol names (`__x64_sys_openat`, `__ia32_sys_openat`, `__ia32_compat_sys_...`,
/// `__se_sys_...`, `__do_sys_...`, `sys_openat`, `ksys_...`).
pub fn info_for_name(name: &str) -> Option<&'static SyscallInfo> {
    by_name_map().get(strip_symbol_prefix(name)).copied()
}

/// The syscall name inside a kernel symbol name (`__x64_sys_openat` -> `openat`).
pub fn strip_symbol_prefix(name: &str) -> &str {
    const PREFIXES: [&str; 9] = [
        "__x64_sys_",
        "__ia32_compat_sys_",
        "__ia32_sys_",
        "__x32_compat_sys_",
        "__se_sys_",
        "__do_sys_",
        "compat_sys_",
        "sys_",
        "ksys_",
    ];
    for p in PREFIXES {
        if let Some(rest) = name.strip_prefix(p) {
            // A few kernel entry points carry other names than their table entries.
            return match rest {
                "newstat" => "stat",
                "newlstat" => "lstat",
                "newfstat" => "fstat",
                "newuname" => "uname",
                "ni_syscall" => "",
                "mmap_pgoff" => "mmap2",
                "old_mmap" => "mmap",
                "old_select" => "select",
                "oldumount" => "umount",
                "ia32_pread64" => "pread64",
                "ia32_pwrite64" => "pwrite64",
                other => other,
            };
        }
    }
    name
}

/// strace classes of a syscall by name (empty if unknown).
pub fn classes_of(name: &str) -> Classes {
    info_for_name(name)
        .map(|i| i.classes)
        .unwrap_or(Classes::empty())
}

/// Every prototype known (x86-64 and i386 names).
pub fn all() -> &'static [SyscallInfo] {
    protos::PROTOS
}

/// The x86-64 names indexed by number (empty strings for holes).
pub fn x86_64_names() -> &'static [&'static str] {
    &numbers::X86_64
}

/// The i386 names indexed by number (empty strings for holes).
pub fn i386_names() -> &'static [&'static str] {
    &numbers::I386
}
