//! The record of one system call.

use std::time::SystemTime;

use nitro_listener::{Direction, NitroEvent, Strategy, SyscallKind};
use serde::Serialize;

use crate::{Arg, ReturnValue};

/// The process (and thread) that made a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id (thread-group id on Linux).
    pub pid: u64,
    /// Thread id.
    pub tid: u64,
    /// Parent process id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u64>,
    /// Short name (`comm` on Linux, image file name on Windows).
    pub name: String,
    /// Full executable path, when it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// A 32-bit process on a 64-bit kernel.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compat: bool,
}

/// One system call: at entry (no `ret`) or completed (with `ret`).
#[derive(Debug, Clone)]
pub struct Syscall {
    /// The vCPU it ran on (at the last stop).
    pub vcpu: u32,
    /// Direction of the stop that produced this record.
    pub direction: Direction,
    /// Gate it entered by.
    pub kind: SyscallKind,
    /// Page-table root at the stop.
    pub cr3: u64,
    /// RAX at the stop.
    pub rax: u64,
    /// System-call number.
    pub nr: u64,
    /// Name.
    pub name: String,
    /// Who made it.
    pub process: Process,
    /// Decoded arguments.
    pub args: Vec<Arg>,
    /// Raw argument registers.
    pub raw_args: [u64; 6],
    /// Return value (on exit).
    pub ret: Option<ReturnValue>,
    /// Host time of the entry stop.
    pub enter_time: SystemTime,
    /// Host time of the exit stop.
    pub exit_time: Option<SystemTime>,
    /// How the traps were taken.
    pub strategy: Strategy,
    /// The entry was seen but the return will never come (exit, successful execve), or the
    /// guest ended first.
    pub unfinished: bool,
    /// Something was lost or inferred (e.g. an entry without exit); said in words.
    pub note: Option<String>,
    /// Key that pairs entry and exit (per task).
    pub task_key: u64,
}

impl Syscall {
    /// The record of a call at its entry stop `ev`: direction `Enter`, no return value yet,
    /// vCPU, gate, CR3, RAX, time and trap strategy taken from the event.
    pub fn entered(
        ev: &NitroEvent,
        nr: u64,
        name: String,
        process: Process,
        args: Vec<Arg>,
        raw_args: [u64; 6],
        task_key: u64,
    ) -> Self {
        Syscall {
            vcpu: ev.vcpu,
            direction: Direction::Enter,
            kind: ev.kind,
            cr3: ev.regs.cr3,
            rax: ev.regs.rax,
            nr,
            name,
            process,
            args,
            raw_args,
            ret: None,
            enter_time: ev.time,
            exit_time: None,
            strategy: ev.strategy,
            unfinished: false,
            note: None,
            task_key,
        }
    }
}
