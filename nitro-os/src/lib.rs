//! The seam between drivers and the facade: an [`OsBackend`] turns a driver's
//! [`NitroEvent`] plus guest memory into a [`Syscall`] record (name, process, decoded
//! arguments, return value). Backends for Linux and Windows implement it; users can write
//! their own against this crate alone.
#![deny(missing_docs, missing_debug_implementations)]

mod record;
mod value;

use nitro_listener::{Capabilities, NitroEvent, Regs, TrapPlan};
use nitro_mem::PhysMemory;
pub use record::{Process, Syscall};
pub use value::{escape_into, ptr_text, Arg, ArgValue, ReturnValue};

/// Errors of OS backends.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    /// The guest's kernel could not be identified or understood.
    #[error("kernel discovery failed: {0}")]
    Discovery(String),
    /// Reading guest memory failed.
    #[error("guest memory: {0}")]
    Memory(#[from] nitro_mem::MemError),
    /// Something else the backend reports.
    #[error("{0}")]
    Other(String),
}

/// Result alias for backends.
pub type Result<T> = std::result::Result<T, OsError>;

/// What a backend wants traced, so it can plan its traps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceScope {
    /// Only these syscall names (None = all).
    pub syscalls: Option<Vec<String>>,
}

/// An operating-system backend.
pub trait OsBackend: Send {
    /// Short name ("linux", "windows").
    fn os_name(&self) -> &str;

    /// Finds the kernel in a stopped guest (`regs` of vCPU 0) and decides where to trap.
    fn plan(
        &mut self,
        mem: &dyn PhysMemory,
        regs: &Regs,
        caps: &Capabilities,
        scope: &TraceScope,
    ) -> Result<TrapPlan>;

    /// Turns one stop into a record. `None` when the stop is not a traced call (an interrupt
    /// return, an exit whose entry was not seen...).
    fn on_event(&mut self, event: &NitroEvent, mem: &dyn PhysMemory) -> Result<Option<Syscall>>;

    /// Records completed without a stop of their own (calls that never return such as
    /// `exit_group`, entries whose return was lost), to be written after the current event.
    fn take_orphans(&mut self) -> Vec<Syscall> {
        Vec::new()
    }

    /// Calls whose return was never seen, drained when the guest ends (exit, execve...).
    fn drain_pending(&mut self) -> Vec<Syscall> {
        Vec::new()
    }

    /// The syscall table in use: (number, name).
    fn syscall_table(&self) -> Vec<(u64, String)>;
}
