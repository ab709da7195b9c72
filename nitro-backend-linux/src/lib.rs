//! The Linux backend of nitro: zero-configuration discovery of a guest kernel (kallsyms and
//! BTF from the kernel file, or from guest memory with [`LinuxBackend::from_guest`]), trap
//! planning with data watchpoints only (64-bit entries on the per-CPU `cpu_tss_rw.sp2`;
//! returns to user mode and 32-bit entries on each traced task's `kstack_offset`, see
//! [`sites`]), process attribution from `task_struct` (pid, tid, ppid, comm, executable,
//! 32-bit or not), and strace-style decoding of 64-bit and i386 arguments.
#![deny(missing_docs, missing_debug_implementations)]

mod backend;
mod discover;
mod error;
pub mod isf;
pub mod layout;
mod modify;
pub mod sites;
pub mod sysmap;
pub mod task;

pub use backend::{BackendStats, LinuxBackend, TrapMode, MAX_HANDLER_SITES};
pub use discover::find_btf;
pub use error::LinuxError;
pub mod kernel;
pub mod syscalls;
