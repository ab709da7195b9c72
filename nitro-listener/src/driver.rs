//! The driver seam: what every hypervisor driver offers the layers above.

use std::{ops::Range, sync::Arc};

use nitro_mem::PhysMemory;

use crate::{Direction, NitroEvent, Reg, Result, SyscallKind};

/// How a trap site is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// Stop before executing the instruction at the address.
    Execute,
    /// Stop after an instruction reads `len` bytes at the address.
    ReadWatch {
        /// Bytes watched (1, 2, 4 or 8).
        len: u8,
    },
    /// Stop after an instruction writes `len` bytes at the address.
    WriteWatch {
        /// Bytes watched (1, 2, 4 or 8).
        len: u8,
    },
}

/// One place to trap, and what a stop there means. Built by an OS backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapSite {
    /// Linear address of the instruction or data.
    pub addr: u64,
    /// Execution or data trap.
    pub kind: TrapKind,
    /// What a stop here is.
    pub direction: Direction,
    /// Which system-call gate the site belongs to.
    pub syscall_kind: SyscallKind,
    /// Instruction-pointer ranges that identify a stop as this site's (a data trap reports
    /// the instruction after the access; hypervisors may report the watched address wrongly
    /// when several vCPUs stop at once, so stops are classified by RIP).
    pub rip_ranges: Vec<Range<u64>>,
}

/// The set of traps a backend wants armed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrapPlan {
    /// The sites.
    pub sites: Vec<TrapSite>,
}

impl TrapPlan {
    /// Index of the site whose RIP ranges contain `rip`.
    pub fn classify(&self, rip: u64) -> Option<usize> {
        self.sites
            .iter()
            .position(|s| s.rip_ranges.iter().any(|r| r.contains(&rip)))
    }
}

/// How a stop was taken and resumed: reported per event so costs can be attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// A data watchpoint: the stop comes after the access, nothing to step over.
    Watchpoint,
    /// An execution breakpoint resumed with the trapped instruction emulated in the tracer.
    BreakpointEmulated,
    /// An execution breakpoint resumed by single-step.
    BreakpointStep,
    /// An execution breakpoint resumed with RFLAGS.RF set (no extra exit; VMX/SVM hosts).
    BreakpointResumeFlag,
    /// An execution breakpoint resumed by running a copy of the trapped instruction out of
    /// line (kprobes-style), then jumping back.
    BreakpointOutOfLine,
    /// A watchpoint hit the hypervisor reported late (QEMU 7.2 under SMP): the site is the
    /// one whose address was reported, but the registers are from a later point, where the
    /// vCPU next touched a watched page. Always delivered with [`Direction::Exit`]: an OS
    /// backend can only use it to notice that the current task has returned to user mode
    /// (and read what it can from memory); it is never an entry.
    LateReport,
}

/// Counters a driver keeps, for costs and for losses the hypervisor causes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverStats {
    /// Stops at armed sites.
    pub trap_stops: u64,
    /// Stops that matched no armed site.
    pub spurious_stops: u64,
    /// Data-watchpoint hits reported late: the reported address is a site's, but the vCPU
    /// had moved on (QEMU 7.2 under SMP reports one of simultaneous hits; the other vCPU's
    /// hit surfaces at its next access to a watched page). When the RIP is at a known
    /// post-access position the stop is delivered as the site's; otherwise the hit's own
    /// registers are gone and the stop is delivered as [`Strategy::LateReport`] (the backend
    /// may still read the call from memory). Not every late report is a loss: the hit may
    /// have been recovered already.
    pub late_stops: u64,
    /// Hits of other vCPUs found parked right after a watched access at another vCPU's
    /// stop (the hypervisor reported only one of simultaneous hits) and delivered as events
    /// of their own.
    pub recovered_stops: u64,
    /// Other vCPUs seen (not at a hit) at a stop and handed on as
    /// [`Strategy::LateReport`] events, for the backend to check their task's saved frame.
    pub observations: u64,
    /// Packets sent to the hypervisor's debug stub (0 for drivers without one).
    pub packets_sent: u64,
    /// Packets received from it (stop replies and replies).
    pub packets_received: u64,
    /// Times the driver waited for a reply (pipelined requests count once).
    pub round_trips: u64,
    /// Stops taken by a data watchpoint.
    pub watchpoint_stops: u64,
    /// Breakpoint stops resumed by emulating the trapped instruction.
    pub emulated_stops: u64,
    /// Breakpoint stops resumed by single-step.
    pub single_steps: u64,
    /// Traps inserted or removed, the first arming included (re-plans such as per-task
    /// watchpoints add to it); each may cost the hypervisor a TLB flush.
    pub trap_changes: u64,
}

impl DriverStats {
    /// Mean packet round trips per trap stop (0 when there were none).
    pub fn round_trips_per_stop(&self) -> f64 {
        let stops = self.trap_stops + self.spurious_stops;
        if stops == 0 {
            0.0
        } else {
            self.round_trips as f64 / stops as f64
        }
    }
}

/// Register writes to apply before the vCPU resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegChanges {
    /// (register, new value), applied in order.
    pub writes: Vec<(Reg, u64)>,
}

impl RegChanges {
    /// True when nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// What a driver can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Hardware execution breakpoints available (None = unlimited, e.g. QEMU TCG).
    pub hw_breakpoints: Option<u32>,
    /// Data watchpoints available (None = unlimited).
    pub watchpoints: Option<u32>,
    /// Guest memory is read without copies through the hypervisor.
    pub zero_copy_memory: bool,
    /// Number of vCPUs.
    pub vcpus: u32,
}

/// What `next_event` returns.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    /// A vCPU stopped at an armed trap; all vCPUs are stopped until `resume`.
    Trap(Box<NitroEvent>),
    /// A vCPU stopped for a reason that belongs to no armed site (counted, then resumed).
    Spurious {
        /// The vCPU.
        vcpu: u32,
        /// Its RIP.
        rip: u64,
    },
    /// The guest ended (powered off, or the hypervisor exited).
    GuestEnded {
        /// The hypervisor's exit code, when it reports one.
        code: Option<i32>,
    },
}

/// A hypervisor driver: arm traps, wait for stops, change registers, resume.
pub trait Driver: Send {
    /// What this driver can do.
    fn capabilities(&self) -> Capabilities;

    /// Guest physical memory.
    fn memory(&self) -> Arc<dyn PhysMemory>;

    /// Stops all vCPUs (if running) and returns the registers of vCPU 0.
    fn interrupt(&mut self) -> Result<crate::Regs>;

    /// Arms the plan's traps (replacing any armed before). The guest must be stopped.
    fn arm(&mut self, plan: &TrapPlan) -> Result<()>;

    /// Removes every armed trap. The guest must be stopped.
    fn disarm(&mut self) -> Result<()>;

    /// Waits for the next stop.
    fn next_event(&mut self) -> Result<DriverEvent>;

    /// Writes registers of the stopped vCPU (the one of the last event).
    fn set_regs(&mut self, changes: &RegChanges) -> Result<()>;

    /// Resumes all vCPUs.
    fn resume(&mut self) -> Result<()>;

    /// Detaches: removes every trap and lets the guest run on.
    fn detach(&mut self) -> Result<()>;

    /// Counters so far (all zero for drivers that keep none).
    fn driver_stats(&self) -> DriverStats {
        DriverStats::default()
    }
}
