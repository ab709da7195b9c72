//! The errors of this crate.

use nitro_mem::MemError;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, WinError>;

/// What went wrong understanding a Windows guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WinError {
    /// Reading guest memory failed.
    #[error("guest memory: {0}")]
    Memory(#[from] MemError),
    /// No PE image (`MZ` + `PE\0\0`) was found scanning down from an address.
    #[error("no kernel image found below {from:#x} (scanned {scanned:#x} bytes)")]
    KernelNotFound {
        /// Where the downward scan started.
        from: u64,
        /// How many bytes were scanned.
        scanned: u64,
    },
    /// A PE header field is inconsistent.
    #[error("bad PE image at {base:#x}: {why}")]
    BadImage {
        /// Image base.
        base: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// Neither GS base nor KERNEL_GS_BASE points at a KPCR whose `Self` field points back.
    #[error("no KPCR at gs_base {gs_base:#x} or kernel_gs_base {kernel_gs_base:#x}")]
    NoKpcr {
        /// GS base at the stop.
        gs_base: u64,
        /// KERNEL_GS_BASE at the stop.
        kernel_gs_base: u64,
    },
    /// The build is not one this crate has offsets for, and no profile was given.
    #[error("no structure layout for Windows build {0}; give an ISF profile")]
    UnknownBuild(u32),
    /// An ISF profile could not be used.
    #[error("ISF profile: {0}")]
    Isf(String),
    /// A pointer read from the guest is not a plausible kernel/user address.
    #[error("implausible {what} pointer {value:#x}")]
    BadPointer {
        /// Which field held it.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

impl From<WinError> for nitro_os::OsError {
    fn from(e: WinError) -> Self {
        match e {
            WinError::Memory(m) => nitro_os::OsError::Memory(m),
            other => nitro_os::OsError::Discovery(other.to_string()),
        }
    }
}
