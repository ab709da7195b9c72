//! The seam between drivers and the facade: an [`OsBackend`] turns a driver's
//! [`NitroEvent`] plus guest memory into a [`Syscall`] record (name, process, decoded
//! arguments, return value). Backends for Linux and Windows implement it; users can write
//! their own against this crate alone.
#![deny(missing_docs, missing_debug_implementations)]

mod record;
mod value;

use nitro_listener::{Capabilities, Direction, NitroEvent, RegChanges, Regs, TrapPlan};
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
    /// Only these syscall names (None = all; an empty list = none: arm nothing).
    pub syscalls: Option<Vec<String>>,
}

impl TraceScope {
    /// Every call.
    pub fn all() -> Self {
        TraceScope::default()
    }

    /// No call at all: nothing needs to be armed.
    pub fn none() -> Self {
        TraceScope {
            syscalls: Some(Vec::new()),
        }
    }

    /// Only the named calls.
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        TraceScope {
            syscalls: Some(names.into_iter().map(Into::into).collect()),
        }
    }

    /// True when no call is in scope.
    pub fn is_none(&self) -> bool {
        self.syscalls.as_ref().is_some_and(Vec::is_empty)
    }

    /// True when `name` is in scope.
    pub fn contains(&self, name: &str) -> bool {
        match &self.syscalls {
            None => true,
            Some(v) => v.iter().any(|n| n == name),
        }
    }
}

/// A change to a system call, asked for by a hook or a fault injection and applied by the
/// backend at the current stop ([`OsBackend::modify`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallChange {
    /// New argument values by index (0-based, in the ABI's argument order). At an entry stop
    /// only: arguments passed in registers are written to the registers, later ones to their
    /// stack slots (where the ABI has any).
    pub args: Vec<(usize, u64)>,
    /// At an entry stop: do not run the call. The kernel is made to reject it without doing
    /// anything; the caller then asks for [`CallChange::ret`] at the exit stop.
    pub skip: bool,
    /// At an exit stop: the value the call returns to the program (negative errno on Linux).
    pub ret: Option<i64>,
    /// The registers at this call's entry stop (needed at the exit stop by backends that
    /// find the call's saved state from them).
    pub entry_regs: Option<Regs>,
}

impl CallChange {
    /// True when nothing is to be changed.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty() && !self.skip && self.ret.is_none()
    }
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

    /// A new set of traps when the backend's needs changed since the last plan (for example
    /// a per-task watchpoint for a task seen for the first time). The tracer arms it, in place
    /// of the previous plan, before the guest resumes. `None` (the default): no change.
    fn take_plan_update(&mut self) -> Option<TrapPlan> {
        None
    }

    /// Calls whose return was never seen, drained when the guest ends (exit, execve...).
    fn drain_pending(&mut self) -> Vec<Syscall> {
        Vec::new()
    }

    /// The syscall table in use: (number, name).
    fn syscall_table(&self) -> Vec<(u64, String)>;

    /// The call number at an entry stop, read cheaply before any decoding so callers can
    /// drop calls they do not trace. The default reads RAX, which holds the number at the
    /// 64-bit entry stop on Linux (`entry_SYSCALL_64`) and Windows (`KiSystemCall64`);
    /// `None` at exit stops.
    fn entry_nr(&self, event: &NitroEvent) -> Option<u64> {
        match event.direction {
            Direction::Enter => Some(event.regs.rax),
            Direction::Exit => None,
        }
    }

    /// Applies `change` to the call stopped at `event` (its record is `call`, as returned
    /// by [`OsBackend::on_event`] for this stop). Memory writes happen at once; the register
    /// writes are returned for the driver to apply before it resumes. The backend updates
    /// `call` where the change shows (e.g. the return value). The default supports nothing.
    fn modify(
        &mut self,
        event: &NitroEvent,
        call: &mut Syscall,
        change: &CallChange,
        mem: &dyn PhysMemory,
    ) -> Result<RegChanges> {
        let _ = (event, call, mem);
        if change.is_empty() {
            return Ok(RegChanges::default());
        }
        Err(OsError::Other(format!(
            "the {} backend cannot change system calls",
            self.os_name()
        )))
    }
}
