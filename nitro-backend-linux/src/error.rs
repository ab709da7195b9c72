//! The errors of the Linux backend.

/// What went wrong understanding a Linux guest.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// The kernel file could not be read or is not a kernel.
    #[error("not a usable Linux kernel: {0}")]
    KernelFile(String),
    /// The kernel's symbols could not be found.
    #[error("kernel symbols: {0}")]
    Symbols(String),
    /// A structure layout or symbol the backend needs is missing.
    #[error("kernel layout: {0}")]
    Layout(String),
}
