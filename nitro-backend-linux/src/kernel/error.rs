//! Errors of the kernel-file parsers (bzImage, ELF, kallsyms, BTF).
//!
//! Every input parsed here (a kernel image file, guest memory) is untrusted: each failure
//! says what was wrong and where, none panics.

use thiserror::Error;

/// Why a kernel image, ELF file, kallsyms table or BTF blob could not be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// The input is neither an x86 bzImage nor an ELF file.
    #[error("not a bzImage or ELF vmlinux: {reason}")]
    NotBzImage {
        /// What check failed.
        reason: &'static str,
    },
    /// The bzImage uses a boot protocol older than 2.08 (no payload_offset field).
    #[error("bzImage boot protocol {version:#06x} is older than 2.08 (no payload fields)")]
    OldBootProtocol {
        /// The `version` field at offset 0x206.
        version: u16,
    },
    /// The payload's compression is not known or not supported.
    #[error("unknown or unsupported payload compression (magic {magic:02x?})")]
    UnknownCompression {
        /// The first bytes of the payload.
        magic: [u8; 6],
    },
    /// The payload's compression is recognised but not supported by this build.
    #[error("payload compression {format} is not supported")]
    UnsupportedCompression {
        /// The format's name.
        format: &'static str,
    },
    /// The compressed payload is corrupt.
    #[error("{format} decompression failed at input offset {offset:#x}: {reason}")]
    Decompress {
        /// `"lz4"`, `"gzip"` or `"zstd"`.
        format: &'static str,
        /// Offset in the payload where it failed (0 when the decoder does not say).
        offset: usize,
        /// What the decoder reported.
        reason: String,
    },
    /// Decompression would produce more than the allowed output.
    #[error("decompressed kernel exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The ELF file is malformed.
    #[error("bad ELF file: {reason} (at offset {offset:#x})")]
    BadElf {
        /// What check failed.
        reason: &'static str,
        /// File offset of the offending structure.
        offset: u64,
    },
    /// The ELF file has no section of that name.
    #[error("ELF section {0:?} not found")]
    NoSection(String),
    /// The kallsyms tables were not found in the image.
    #[error("kallsyms tables not found: {reason}")]
    KallsymsNotFound {
        /// What structural check ruled out the last candidate.
        reason: &'static str,
    },
    /// A kallsyms table was found but is inconsistent.
    #[error("corrupt kallsyms table at image offset {offset:#x}: {reason}")]
    KallsymsCorrupt {
        /// Offset in the image.
        offset: usize,
        /// What is inconsistent.
        reason: &'static str,
    },
    /// The BTF blob is malformed.
    #[error("bad BTF data: {reason} (at offset {offset:#x})")]
    BadBtf {
        /// What check failed.
        reason: &'static str,
        /// Offset in the blob (or type id, where noted in the reason).
        offset: u64,
    },
    /// No BTF type of that name (and kind) exists.
    #[error("BTF type {0:?} not found")]
    NoType(String),
    /// The BTF struct or union has no member of that name.
    #[error("BTF type {ty:?} has no member {member:?}")]
    NoMember {
        /// The struct or union searched.
        ty: String,
        /// The path component that was not found.
        member: String,
    },
    /// The member is a bitfield that does not start on a byte boundary.
    #[error("member {member:?} is at bit offset {bits}, not a byte boundary")]
    NotByteAligned {
        /// The member path.
        member: String,
        /// Its bit offset from the start of the outer struct.
        bits: u64,
    },
}
