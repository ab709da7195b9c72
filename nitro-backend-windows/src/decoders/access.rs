//! ACCESS_MASK rendering: standard and generic rights plus the object-specific bits by name.
//!
//! Values: winnt.h (mingw-w64 10.0.0, checked by the `header_constants` test when the header is
//! available): standard rights (DELETE 0x10000 ... SYNCHRONIZE 0x100000), GENERIC_* and
//! MAXIMUM_ALLOWED, FILE_*, KEY_*, PROCESS_*, THREAD_*, TOKEN_*, SECTION_* specific rights;
//! the object-directory and symbolic-link rights are from ntifs.h/wdm.h (DIRECTORY_QUERY ...).
//!
//! Order of the names follows Nitro's output for its example (`0x80100080` ->
//! `[SYNCHRONIZE, GENERIC_READ, FILE_READ_ATTRIBUTES]`): standard rights, then generic and
//! special rights, then the specific bits from the lowest; bits without a name stay as hex.

use nitro_os::ArgValue;

/// Which object type the specific bits (0-15) belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// Files, directories, pipes, devices.
    File,
    /// Registry keys.
    Key,
    /// Processes.
    Process,
    /// Threads.
    Thread,
    /// Access tokens.
    Token,
    /// Sections.
    Section,
    /// Events.
    Event,
    /// Mutants.
    Mutant,
    /// Semaphores.
    Semaphore,
    /// Object directories.
    Directory,
    /// Symbolic links.
    SymbolicLink,
    /// Unknown type: specific bits as hex.
    Generic,
}

/// DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER, SYNCHRONIZE.
pub const STANDARD: &[(u32, &str)] = &[
    (0x0001_0000, "DELETE"),
    (0x0002_0000, "READ_CONTROL"),
    (0x0004_0000, "WRITE_DAC"),
    (0x0008_0000, "WRITE_OWNER"),
    (0x0010_0000, "SYNCHRONIZE"),
];

/// GENERIC_* and the special request bits.
pub const GENERIC: &[(u32, &str)] = &[
    (0x8000_0000, "GENERIC_READ"),
    (0x4000_0000, "GENERIC_WRITE"),
    (0x2000_0000, "GENERIC_EXECUTE"),
    (0x1000_0000, "GENERIC_ALL"),
    (0x0200_0000, "MAXIMUM_ALLOWED"),
    (0x0100_0000, "ACCESS_SYSTEM_SECURITY"),
];

/// File-specific rights.
pub const FILE: &[(u32, &str)] = &[
    (0x0001, "FILE_READ_DATA"),
    (0x0002, "FILE_WRITE_DATA"),
    (0x0004, "FILE_APPEND_DATA"),
    (0x0008, "FILE_READ_EA"),
    (0x0010, "FILE_WRITE_EA"),
    (0x0020, "FILE_EXECUTE"),
    (0x0040, "FILE_DELETE_CHILD"),
    (0x0080, "FILE_READ_ATTRIBUTES"),
    (0x0100, "FILE_WRITE_ATTRIBUTES"),
];

/// Registry-key rights.
pub const KEY: &[(u32, &str)] = &[
    (0x0001, "KEY_QUERY_VALUE"),
    (0x0002, "KEY_SET_VALUE"),
    (0x0004, "KEY_CREATE_SUB_KEY"),
    (0x0008, "KEY_ENUMERATE_SUB_KEYS"),
    (0x0010, "KEY_NOTIFY"),
    (0x0020, "KEY_CREATE_LINK"),
    (0x0100, "KEY_WOW64_64KEY"),
    (0x0200, "KEY_WOW64_32KEY"),
];

/// Process rights.
pub const PROCESS: &[(u32, &str)] = &[
    (0x0001, "PROCESS_TERMINATE"),
    (0x0002, "PROCESS_CREATE_THREAD"),
    (0x0004, "PROCESS_SET_SESSIONID"),
    (0x0008, "PROCESS_VM_OPERATION"),
    (0x0010, "PROCESS_VM_READ"),
    (0x0020, "PROCESS_VM_WRITE"),
    (0x0040, "PROCESS_DUP_HANDLE"),
    (0x0080, "PROCESS_CREATE_PROCESS"),
    (0x0100, "PROCESS_SET_QUOTA"),
    (0x0200, "PROCESS_SET_INFORMATION"),
    (0x0400, "PROCESS_QUERY_INFORMATION"),
    (0x0800, "PROCESS_SUSPEND_RESUME"),
    (0x1000, "PROCESS_QUERY_LIMITED_INFORMATION"),
    (0x2000, "PROCESS_SET_LIMITED_INFORMATION"),
];

/// Thread rights.
pub const THREAD: &[(u32, &str)] = &[
    (0x0001, "THREAD_TERMINATE"),
    (0x0002, "THREAD_SUSPEND_RESUME"),
    (0x0004, "THREAD_ALERT"),
    (0x0008, "THREAD_GET_CONTEXT"),
    (0x0010, "THREAD_SET_CONTEXT"),
    (0x0020, "THREAD_SET_INFORMATION"),
    (0x0040, "THREAD_QUERY_INFORMATION"),
    (0x0080, "THREAD_SET_THREAD_TOKEN"),
    (0x0100, "THREAD_IMPERSONATE"),
    (0x0200, "THREAD_DIRECT_IMPERSONATION"),
    (0x0400, "THREAD_SET_LIMITED_INFORMATION"),
    (0x0800, "THREAD_QUERY_LIMITED_INFORMATION"),
    (0x1000, "THREAD_RESUME"),
];

/// Token rights.
pub const TOKEN: &[(u32, &str)] = &[
    (0x0001, "TOKEN_ASSIGN_PRIMARY"),
    (0x0002, "TOKEN_DUPLICATE"),
    (0x0004, "TOKEN_IMPERSONATE"),
    (0x0008, "TOKEN_QUERY"),
    (0x0010, "TOKEN_QUERY_SOURCE"),
    (0x0020, "TOKEN_ADJUST_PRIVILEGES"),
    (0x0040, "TOKEN_ADJUST_GROUPS"),
    (0x0080, "TOKEN_ADJUST_DEFAULT"),
    (0x0100, "TOKEN_ADJUST_SESSIONID"),
];

/// Section rights.
pub const SECTION: &[(u32, &str)] = &[
    (0x0001, "SECTION_QUERY"),
    (0x0002, "SECTION_MAP_WRITE"),
    (0x0004, "SECTION_MAP_READ"),
    (0x0008, "SECTION_MAP_EXECUTE"),
    (0x0010, "SECTION_EXTEND_SIZE"),
    (0x0020, "SECTION_MAP_EXECUTE_EXPLICIT"),
];

/// Event rights.
pub const EVENT: &[(u32, &str)] = &[
    (0x0001, "EVENT_QUERY_STATE"),
    (0x0002, "EVENT_MODIFY_STATE"),
];
/// Mutant rights.
pub const MUTANT: &[(u32, &str)] = &[(0x0001, "MUTANT_QUERY_STATE")];
/// Semaphore rights.
pub const SEMAPHORE: &[(u32, &str)] = &[
    (0x0001, "SEMAPHORE_QUERY_STATE"),
    (0x0002, "SEMAPHORE_MODIFY_STATE"),
];
/// Object-directory rights.
pub const DIRECTORY: &[(u32, &str)] = &[
    (0x0001, "DIRECTORY_QUERY"),
    (0x0002, "DIRECTORY_TRAVERSE"),
    (0x0004, "DIRECTORY_CREATE_OBJECT"),
    (0x0008, "DIRECTORY_CREATE_SUBDIRECTORY"),
];
/// Symbolic-link rights.
pub const SYMBOLIC_LINK: &[(u32, &str)] = &[(0x0001, "SYMBOLIC_LINK_QUERY")];

/// `*_ALL_ACCESS` masks shown as one name when the whole mask equals them.
const ALL_ACCESS: &[(AccessKind, u32, &str)] = &[
    (AccessKind::File, 0x001f_01ff, "FILE_ALL_ACCESS"),
    (AccessKind::Key, 0x000f_003f, "KEY_ALL_ACCESS"),
    (AccessKind::Process, 0x001f_ffff, "PROCESS_ALL_ACCESS"),
    (AccessKind::Thread, 0x001f_ffff, "THREAD_ALL_ACCESS"),
    (AccessKind::Token, 0x000f_01ff, "TOKEN_ALL_ACCESS"),
    (AccessKind::Section, 0x000f_001f, "SECTION_ALL_ACCESS"),
    (AccessKind::Event, 0x001f_0003, "EVENT_ALL_ACCESS"),
    (AccessKind::Mutant, 0x001f_0001, "MUTANT_ALL_ACCESS"),
    (AccessKind::Semaphore, 0x001f_0003, "SEMAPHORE_ALL_ACCESS"),
    (AccessKind::Directory, 0x000f_000f, "DIRECTORY_ALL_ACCESS"),
    (
        AccessKind::SymbolicLink,
        0x000f_0001,
        "SYMBOLIC_LINK_ALL_ACCESS",
    ),
];

fn specific(kind: AccessKind) -> &'static [(u32, &'static str)] {
    match kind {
        AccessKind::File => FILE,
        AccessKind::Key => KEY,
        AccessKind::Process => PROCESS,
        AccessKind::Thread => THREAD,
        AccessKind::Token => TOKEN,
        AccessKind::Section => SECTION,
        AccessKind::Event => EVENT,
        AccessKind::Mutant => MUTANT,
        AccessKind::Semaphore => SEMAPHORE,
        AccessKind::Directory => DIRECTORY,
        AccessKind::SymbolicLink => SYMBOLIC_LINK,
        AccessKind::Generic => &[],
    }
}

/// The names of the bits of `mask`, in Nitro's order; leftover bits as one hex value.
pub fn access_names(mask: u32, kind: AccessKind) -> Vec<String> {
    if let Some(&(_, _, n)) = ALL_ACCESS.iter().find(|(k, m, _)| *k == kind && *m == mask) {
        return vec![n.to_string()];
    }
    let mut left = mask;
    let mut out = Vec::new();
    let spec = specific(kind);
    for &(bit, name) in STANDARD.iter().chain(GENERIC).chain(spec) {
        if left & bit != 0 {
            out.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        out.push(format!("{left:#x}"));
    }
    out
}

/// An ACCESS_MASK argument: an array of right names (`[]` for 0).
pub fn access_mask(mask: u32, kind: AccessKind) -> ArgValue {
    ArgValue::Array(
        access_names(mask, kind)
            .into_iter()
            .map(ArgValue::Sym)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nitro_example() {
        assert_eq!(
            access_names(0x8010_0080, AccessKind::File),
            ["SYNCHRONIZE", "GENERIC_READ", "FILE_READ_ATTRIBUTES"]
        );
        assert_eq!(
            access_mask(0x8010_0080, AccessKind::File).text(),
            "[SYNCHRONIZE, GENERIC_READ, FILE_READ_ATTRIBUTES]"
        );
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            access_names(0x001f_01ff, AccessKind::File),
            ["FILE_ALL_ACCESS"]
        );
        assert_eq!(
            access_names(0x0002_0019, AccessKind::Key),
            [
                "READ_CONTROL",
                "KEY_QUERY_VALUE",
                "KEY_ENUMERATE_SUB_KEYS",
                "KEY_NOTIFY"
            ]
        );
        assert_eq!(
            access_names(0x1410, AccessKind::Process),
            [
                "PROCESS_VM_READ",
                "PROCESS_QUERY_INFORMATION",
                "PROCESS_QUERY_LIMITED_INFORMATION"
            ]
        );
        assert_eq!(
            access_names(0x0200_0000, AccessKind::Token),
            ["MAXIMUM_ALLOWED"]
        );
        assert_eq!(
            access_names(0x8000_4001, AccessKind::Generic),
            ["GENERIC_READ", "0x4001"]
        );
        assert!(access_names(0, AccessKind::File).is_empty());
    }
}
