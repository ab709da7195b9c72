//! The Linux backend of nitro: zero-configuration discovery of a guest kernel (kallsyms and
//! BTF from the kernel itself), trap planning on the 64-bit syscall entry and return paths,
//! process attribution from `task_struct`, and strace-style decoding of arguments.
#![deny(missing_docs, missing_debug_implementations)]

mod backend;
mod discover;
mod error;
pub mod layout;
mod modify;
pub mod sites;
pub mod task;

pub use backend::{BackendStats, LinuxBackend};
pub use discover::find_btf;
pub use error::LinuxError;
pub mod kernel;
pub mod syscalls;
