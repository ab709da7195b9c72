//! The errors of this crate.

use crate::{PhysAddr, VirtAddr};

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MemError>;

/// What went wrong reading or translating guest memory.
///
/// `NotPresent` (a paged-out or unmapped address: normal in a live guest) is kept apart from
/// the variants that mean the guest's tables or values are broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// A physical range lies (partly) outside guest memory.
    #[error("physical address {addr} (+{len} bytes) is outside guest memory")]
    PhysOutOfRange {
        /// First byte of the access.
        addr: PhysAddr,
        /// Length of the access.
        len: usize,
    },
    /// The page-table walk met an entry without the present bit.
    #[error("virtual address {addr} not present: level {level} entry {entry:#x} at {entry_addr}")]
    NotPresent {
        /// The virtual address being translated.
        addr: VirtAddr,
        /// Paging level of the entry (5 = PML5, 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT).
        level: u8,
        /// Physical address of the entry.
        entry_addr: PhysAddr,
        /// The entry's value.
        entry: u64,
    },
    /// The page-table walk met an entry pointing outside guest memory, or reserved bits set.
    ///
    /// `level`, `entry_addr` and `entry` name the entry whose value is wrong. When the root
    /// itself lies outside memory, they name the first entry that could not be read: the top
    /// level, its would-be address, and the root as `entry`.
    #[error("broken page table for {addr}: level {level} entry {entry:#x} at {entry_addr}: {why}")]
    BrokenTable {
        /// The virtual address being translated.
        addr: VirtAddr,
        /// Paging level of the entry (5 = PML5, 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT).
        level: u8,
        /// Physical address of the entry.
        entry_addr: PhysAddr,
        /// The entry's value.
        entry: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A virtual address that is not canonical for the paging mode.
    #[error("virtual address {0} is not canonical")]
    NonCanonical(VirtAddr),
    /// A string had no terminator within the caller's maximum.
    #[error("string at {addr} longer than the {max}-byte limit")]
    StringTooLong {
        /// Where the string starts.
        addr: VirtAddr,
        /// The caller's maximum.
        max: usize,
    },
    /// A length read from the guest exceeds the caller's maximum.
    #[error("length {len} at {addr} exceeds the {max}-byte limit")]
    LengthTooLarge {
        /// Where the object starts.
        addr: VirtAddr,
        /// The length the guest claims.
        len: u64,
        /// The caller's maximum.
        max: usize,
    },
    /// A memory source could not be opened or mapped.
    #[error("memory source {path}: {why}")]
    Source {
        /// Path of the file or process.
        path: String,
        /// The operating system's reason.
        why: String,
    },
}

impl MemError {
    /// True when the failure means "not mapped / paged out" rather than broken data.
    pub fn is_not_present(&self) -> bool {
        matches!(self, MemError::NotPresent { .. })
    }
}
