//! Events: what a driver reports when a vCPU stops at a trap.

use std::time::SystemTime;

use serde::Serialize;

/// Whether a stop is a system call's entry or its return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The call is entering the kernel.
    Enter,
    /// The call is returning to user mode.
    Exit,
}

/// The instruction or gate by which a system call entered the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyscallKind {
    /// 64-bit `syscall`.
    Syscall64,
    /// `syscall` from 32-bit (compatibility) mode.
    Syscall32,
    /// `int 0x80`.
    Int80,
    /// `sysenter`.
    Sysenter,
}

impl SyscallKind {
    /// True for the 32-bit ABIs.
    pub fn is_compat(self) -> bool {
        !matches!(self, SyscallKind::Syscall64)
    }
}

/// The vCPU registers a driver hands to a backend (x86-64).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cs: u32,
    pub ss: u32,
    pub ds: u32,
    pub es: u32,
    pub fs: u32,
    pub gs: u32,
    pub fs_base: u64,
    pub gs_base: u64,
    pub k_gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
}

/// A register that hooks may change.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reg {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    Rip,
    Rflags,
    GsBase,
    KernelGsBase,
}

impl Regs {
    /// Value of one register.
    pub fn get(&self, reg: Reg) -> u64 {
        match reg {
            Reg::Rax => self.rax,
            Reg::Rbx => self.rbx,
            Reg::Rcx => self.rcx,
            Reg::Rdx => self.rdx,
            Reg::Rsi => self.rsi,
            Reg::Rdi => self.rdi,
            Reg::Rbp => self.rbp,
            Reg::Rsp => self.rsp,
            Reg::R8 => self.r8,
            Reg::R9 => self.r9,
            Reg::R10 => self.r10,
            Reg::R11 => self.r11,
            Reg::R12 => self.r12,
            Reg::R13 => self.r13,
            Reg::R14 => self.r14,
            Reg::R15 => self.r15,
            Reg::Rip => self.rip,
            Reg::Rflags => self.rflags,
            Reg::GsBase => self.gs_base,
            Reg::KernelGsBase => self.k_gs_base,
        }
    }

    /// Sets one register.
    pub fn set(&mut self, reg: Reg, value: u64) {
        let slot = match reg {
            Reg::Rax => &mut self.rax,
            Reg::Rbx => &mut self.rbx,
            Reg::Rcx => &mut self.rcx,
            Reg::Rdx => &mut self.rdx,
            Reg::Rsi => &mut self.rsi,
            Reg::Rdi => &mut self.rdi,
            Reg::Rbp => &mut self.rbp,
            Reg::Rsp => &mut self.rsp,
            Reg::R8 => &mut self.r8,
            Reg::R9 => &mut self.r9,
            Reg::R10 => &mut self.r10,
            Reg::R11 => &mut self.r11,
            Reg::R12 => &mut self.r12,
            Reg::R13 => &mut self.r13,
            Reg::R14 => &mut self.r14,
            Reg::R15 => &mut self.r15,
            Reg::Rip => &mut self.rip,
            Reg::Rflags => &mut self.rflags,
            Reg::GsBase => &mut self.gs_base,
            Reg::KernelGsBase => &mut self.k_gs_base,
        };
        *slot = value;
    }

    /// Current privilege level, from the low bits of CS.
    pub fn cpl(&self) -> u8 {
        (self.cs & 3) as u8
    }
}

/// One stop of one vCPU at a trap.
#[derive(Debug, Clone)]
pub struct NitroEvent {
    /// Index of the vCPU that stopped (0-based).
    pub vcpu: u32,
    /// Entry or return.
    pub direction: Direction,
    /// How the call entered the kernel (as the trap site says).
    pub kind: SyscallKind,
    /// Registers at the stop.
    pub regs: Regs,
    /// Host time of the stop.
    pub time: SystemTime,
    /// Index of the [`crate::TrapSite`] in the armed plan that caught the stop.
    pub site: usize,
    /// How the trap was taken and resumed.
    pub strategy: crate::Strategy,
}

impl NitroEvent {
    /// Page-table root at the stop.
    pub fn cr3(&self) -> u64 {
        self.regs.cr3
    }
}
