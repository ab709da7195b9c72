//! Discovery of what a Linux kernel build looks like, from the kernel itself.
//!
//! - [`bzimage`]: unpack the ELF `vmlinux` from a compressed x86 `bzImage` (`vmlinuz`).
//! - [`elf`]: a minimal, bounds-checked ELF64 reader (sections, program headers, addresses).
//! - [`kallsyms`]: the kernel's own compressed symbol table, found by its structure in a
//!   stripped `vmlinux` or in a raw memory image (no `System.map` needed).
//! - [`btf`]: the kernel's BPF Type Format (`.BTF`), for struct sizes, member offsets and
//!   enum values.
//!
//! All parsers treat their input as hostile: every read is bounds-checked and every failure
//! is a [`KernelError`].

pub mod btf;
pub mod bzimage;
pub mod elf;
mod error;
pub mod kallsyms;
mod read;

pub use error::KernelError;

/// Result type of the kernel-file parsers.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;
