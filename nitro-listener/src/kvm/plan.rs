//! Turning a [`TrapPlan`] into debug-register settings and resume strategies.
//!
//! x86 has four address breakpoints (DR0-DR3, Intel SDM 3A 17.2). An execution breakpoint
//! fires *before* the instruction runs, so resuming means getting past it without the
//! breakpoint firing again. In order of cost:
//! 0. When the trapped instruction is one the tracer can carry out ([`super::emulate`]): a
//!    no-op (`endbr64` at Linux 6.12's syscall entry, the 5-byte `nop` of ftrace-patched
//!    function entries) or a `mov` between registers, immediates and memory (`mov %rsp,
//!    %gs:cpu_tss_rw+TSS_sp2` right after `swapgs` in `entry_SYSCALL_64`): do it on the
//!    `sync_regs` registers and guest RAM. Zero extra exits, no ioctl and no extra guest
//!    instruction on any host. When a stop cannot be emulated (the access would fault, is
//!    not RAM, hits a watchpoint, the guest single-steps itself...), the guest executes the
//!    instruction itself: RFLAGS.RF where honoured, else a single step when the instruction
//!    must run at its own address (it will fault: the guest's handler must see the real
//!    RIP), else (MMIO, a watched address) its out-of-line copy.
//! 1. RFLAGS.RF set on resume (SDM 17.3.1.1): the processor skips instruction breakpoints for
//!    one instruction. Zero extra exits where the host honours it (VMX/SVM).
//! 2. Out of line (kprobes-style): a copy of the trapped instruction followed by a jump
//!    back (`jmp rel32`, or `jmp [rip+0]; .quad addr+len` when out of reach) in a scratch
//!    area; RIP is pointed at the copy, which runs in the guest with no exit.
//!    Position-dependent instructions are fixed (RIP-relative displacements) or refused
//!    (branches, calls, returns, traps).
//! 3. Single-step with breakpoints lifted: two `KVM_SET_GUEST_DEBUG` ioctls and one extra
//!    exit per hit.

use iced_x86::{Decoder, DecoderOptions, FlowControl};
use kvm_bindings::{kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP};
use nitro_mem::{PhysAddr, PhysMemory};
use nitro_sys::x86;

use super::{
    emulate::{self, Op, Watch},
    KvmError,
};
use crate::{Strategy, TrapKind, TrapPlan};

/// Bytes reserved for one out-of-line slot: up to 15 instruction bytes + 14 for the jump.
pub const SLOT_SIZE: u64 = 32;
/// Longest x86 instruction (SDM 2A 2.3.11).
const MAX_INSN: usize = 15;

/// A guest area, mapped executable in the guest, where out-of-line copies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scratch {
    /// Linear address of the area in the guest.
    pub gva: u64,
    /// Its guest physical address.
    pub gpa: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Reads guest bytes at a linear address (for out-of-line copies).
pub type InsnReader<'a> = dyn Fn(u64, &mut [u8]) -> Result<(), KvmError> + 'a;

/// How a vCPU gets past an armed site after a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Data watchpoint: the stop came after the access, nothing to step over.
    Nothing,
    /// Set RFLAGS.RF.
    ResumeFlag,
    /// The tracer carries out the trapped instruction (see [`super::emulate`]).
    Emulate {
        /// Instruction length.
        len: u8,
        /// What it does.
        op: Op,
        /// How to get past it when a stop cannot be emulated.
        fallback: Fallback,
    },
    /// Point RIP at this linear address (the out-of-line copy).
    OutOfLine {
        /// Linear address of the copy.
        slot: u64,
    },
    /// Single-step with breakpoints lifted.
    Step,
}

/// How the guest executes an emulable instruction itself when the tracer refuses to (see
/// [`super::EmulateError::needs_own_address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Set RFLAGS.RF (hosts that honour it).
    ResumeFlag,
    /// Single-step with breakpoints lifted; or, when the refusal is no fault (MMIO, a
    /// watchpoint) and `slot` is given, the out-of-line copy there (no extra exit, and a
    /// watchpoint still fires).
    Step {
        /// Linear address of the out-of-line copy, if one could be made.
        slot: Option<u64>,
    },
}

impl Resume {
    /// The [`Strategy`] reported in events.
    pub fn strategy(self) -> Strategy {
        match self {
            Resume::Nothing => Strategy::Watchpoint,
            Resume::ResumeFlag => Strategy::BreakpointResumeFlag,
            Resume::Emulate { .. } => Strategy::BreakpointEmulated,
            Resume::OutOfLine { .. } => Strategy::BreakpointOutOfLine,
            Resume::Step => Strategy::BreakpointStep,
        }
    }
}

/// One armed debug register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmedSite {
    /// Index of the site in the [`TrapPlan`].
    pub site: usize,
    /// Linear address.
    pub addr: u64,
    /// How to resume after a stop here.
    pub resume: Resume,
}

/// A plan in debug-register form, shared by all vCPUs.
#[derive(Debug, Clone)]
pub struct ArmedPlan {
    sites: Vec<ArmedSite>,
    watches: Vec<Watch>,
    debug: kvm_guest_debug,
}

impl ArmedPlan {
    /// No traps: debugging disabled.
    pub fn empty() -> Self {
        ArmedPlan {
            sites: Vec::new(),
            watches: Vec::new(),
            debug: kvm_guest_debug::default(),
        }
    }

    /// Builds the debug registers for `plan`.
    ///
    /// `read_insn` reads guest bytes at a linear address (for out-of-line copies);
    /// `scratch`, when given, is where copies go (written through `mem`). `rf_honoured`
    /// says whether the host honours RFLAGS.RF (see [`super::probe_resume_flag`]).
    pub fn build(
        plan: &TrapPlan,
        read_insn: &InsnReader<'_>,
        mem: &dyn PhysMemory,
        scratch: Option<Scratch>,
        rf_honoured: bool,
    ) -> Result<Self, KvmError> {
        if plan.sites.len() > x86::NUM_HW_BREAKPOINTS {
            let addr = plan
                .sites
                .get(x86::NUM_HW_BREAKPOINTS)
                .map_or(0, |s| s.addr);
            return Err(KvmError::Arm {
                addr,
                why: format!(
                    "{} sites requested, the CPU has {} debug registers",
                    plan.sites.len(),
                    x86::NUM_HW_BREAKPOINTS
                ),
            });
        }
        let mut debug = kvm_guest_debug::default();
        let mut dr7 = x86::DR7_FIXED_1;
        let mut sites = Vec::with_capacity(plan.sites.len());
        let mut watches = Vec::new();
        for (n, site) in plan.sites.iter().enumerate() {
            let (rw, len, resume) = match site.kind {
                TrapKind::Execute => {
                    let resume = execute_resume(n, site.addr, read_insn, mem, scratch, rf_honoured);
                    (x86::DR7_RW_EXECUTE, x86::DR7_LEN_1, resume)
                }
                TrapKind::WriteWatch { len } => {
                    watches.push(Watch {
                        addr: site.addr,
                        len: u64::from(len),
                        writes_only: true,
                    });
                    (x86::DR7_RW_WRITE, dr7_len(site.addr, len)?, Resume::Nothing)
                }
                TrapKind::ReadWatch { len } => {
                    watches.push(Watch {
                        addr: site.addr,
                        len: u64::from(len),
                        writes_only: false,
                    });
                    (
                        x86::DR7_RW_READ_WRITE,
                        dr7_len(site.addr, len)?,
                        Resume::Nothing,
                    )
                }
            };
            debug.arch.debugreg[n] = site.addr;
            dr7 |= x86::dr7_global_enable(n) | x86::dr7_rw_len(n, rw, len);
            sites.push(ArmedSite {
                site: n,
                addr: site.addr,
                resume,
            });
        }
        if !sites.is_empty() {
            debug.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
            debug.arch.debugreg[7] = dr7;
        }
        Ok(ArmedPlan {
            sites,
            watches,
            debug,
        })
    }

    /// The `KVM_SET_GUEST_DEBUG` argument.
    pub fn debug(&self) -> &kvm_guest_debug {
        &self.debug
    }

    /// The plan's data watchpoints (an emulated access that overlaps one is left to the guest,
    /// so that the watchpoint fires).
    pub fn watches(&self) -> &[Watch] {
        &self.watches
    }

    /// The armed sites, in debug-register order.
    pub fn sites(&self) -> &[ArmedSite] {
        &self.sites
    }

    /// The site a debug exit belongs to: by DR6's B0-B3 bits, else by address.
    pub fn classify(&self, dr6: u64, pc: u64) -> Option<ArmedSite> {
        self.sites
            .iter()
            .find(|s| dr6 & x86::dr6_hit(s.site) != 0)
            .or_else(|| {
                self.sites
                    .iter()
                    .find(|s| s.addr == pc && s.resume != Resume::Nothing)
            })
            .copied()
    }
}

fn dr7_len(addr: u64, len: u8) -> Result<u64, KvmError> {
    let (field, n) = match len {
        1 => (x86::DR7_LEN_1, 1),
        2 => (x86::DR7_LEN_2, 2),
        4 => (x86::DR7_LEN_4, 4),
        8 => (x86::DR7_LEN_8, 8),
        _ => {
            return Err(KvmError::Arm {
                addr,
                why: format!("watch length {len} is not 1, 2, 4 or 8"),
            })
        }
    };
    if addr & (n - 1) != 0 {
        return Err(KvmError::Arm {
            addr,
            why: format!("a {n}-byte watchpoint must be {n}-aligned"),
        });
    }
    Ok(field)
}

/// The cheapest way past the execution breakpoint `n` at `addr`: emulate the instruction in
/// the tracer, else set RF where honoured, else run a copy out of line (written into slot `n`
/// of the scratch area), else single-step.
fn execute_resume(
    n: usize,
    addr: u64,
    read_insn: &InsnReader<'_>,
    mem: &dyn PhysMemory,
    scratch: Option<Scratch>,
    rf_honoured: bool,
) -> Resume {
    let mut bytes = [0u8; MAX_INSN];
    // The instruction may end before a page we cannot read: retry shorter.
    let Some(got) = (1..=MAX_INSN)
        .rev()
        .find(|&l| read_insn(addr, &mut bytes[..l]).is_ok())
    else {
        return if rf_honoured {
            Resume::ResumeFlag
        } else {
            Resume::Step
        };
    };
    let bytes = &bytes[..got];
    let guest = guest_resume(n, addr, bytes, mem, scratch, rf_honoured);
    if let Some((len, op)) = emulate::decode(addr, bytes) {
        let fallback = match guest {
            Resume::ResumeFlag => Fallback::ResumeFlag,
            Resume::OutOfLine { slot } => Fallback::Step { slot: Some(slot) },
            _ => Fallback::Step { slot: None },
        };
        return Resume::Emulate { len, op, fallback };
    }
    guest
}

/// How the guest itself gets past the instruction: RF where honoured, else its out-of-line
/// copy (written into slot `n` of the scratch area), else a single step.
fn guest_resume(
    n: usize,
    addr: u64,
    bytes: &[u8],
    mem: &dyn PhysMemory,
    scratch: Option<Scratch>,
    rf_honoured: bool,
) -> Resume {
    if rf_honoured {
        return Resume::ResumeFlag;
    }
    let Some(scratch) = scratch else {
        return Resume::Step;
    };
    let off = n as u64 * SLOT_SIZE;
    if off + SLOT_SIZE > scratch.len {
        return Resume::Step;
    }
    let Ok(code) = relocate(addr, bytes, scratch.gva + off) else {
        return Resume::Step;
    };
    match mem.write_phys(PhysAddr(scratch.gpa + off), &code) {
        Ok(()) => Resume::OutOfLine {
            slot: scratch.gva + off,
        },
        Err(_) => Resume::Step,
    }
}

/// Length of the first instruction of `bytes` if it has no architectural effect besides
/// advancing RIP: `nop` in all its forms, `pause`, `endbr64`/`endbr32` (CET end-branch
/// markers, which Linux places at function and entry points when built with IBT).
pub fn no_op_len(bytes: &[u8]) -> Option<u8> {
    match emulate::decode(0, bytes) {
        Some((len, Op::NoOp)) => Some(len),
        _ => None,
    }
}

/// The out-of-line copy of the first instruction of `bytes` (at linear `addr`), to run at
/// `slot`: the instruction, fixed for its new address, then a jump to the next one.
pub fn relocate(addr: u64, bytes: &[u8], slot: u64) -> Result<Vec<u8>, String> {
    let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Err(format!("no valid instruction in {bytes:02x?}"));
    }
    if insn.flow_control() != FlowControl::Next {
        return Err(format!("{:?} changes control flow", insn.code()));
    }
    let len = insn.len();
    let mut code = bytes
        .get(..len)
        .ok_or("instruction longer than the bytes read")?
        .to_vec();
    if insn.is_ip_rel_memory_operand() {
        let offsets = decoder.get_constant_offsets(&insn);
        if offsets.displacement_size() != 4 {
            return Err("RIP-relative operand without a 32-bit displacement".into());
        }
        let next = slot.wrapping_add(len as u64);
        let disp = insn.ip_rel_memory_address().wrapping_sub(next) as i64;
        let disp =
            i32::try_from(disp).map_err(|_| "RIP-relative target out of reach of the slot")?;
        let at = offsets.displacement_offset();
        code.get_mut(at..at + 4)
            .ok_or("displacement outside the instruction")?
            .copy_from_slice(&disp.to_le_bytes());
    }
    let back = addr.wrapping_add(len as u64);
    // jmp rel32 (E9 cd, SDM 2A JMP) when the way back is within reach: no memory operand
    // for a software hypervisor to emulate; else jmp qword ptr [rip+0] (FF /4) + target.
    let after = slot.wrapping_add(code.len() as u64 + 5);
    match i32::try_from(back.wrapping_sub(after) as i64) {
        Ok(rel) => {
            code.push(0xe9);
            code.extend_from_slice(&rel.to_le_bytes());
        }
        Err(_) => {
            code.extend_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
            code.extend_from_slice(&back.to_le_bytes());
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocates_plain_and_rip_relative() {
        // swapgs (0f 01 f8): copied as is.
        let c = relocate(0x1000, &[0x0f, 0x01, 0xf8, 0x90], 0x5000).unwrap();
        assert_eq!(&c[..3], &[0x0f, 0x01, 0xf8]);
        // jmp rel32 back to 0x1003 from the end of the slot code (0x5008).
        assert_eq!(c[3], 0xe9);
        let rel = i32::from_le_bytes(c[4..8].try_into().unwrap());
        assert_eq!(0x5008i64 + i64::from(rel), 0x1003);
        assert_eq!(c.len(), 8);
        // Out of rel32 reach: the absolute form.
        let far = 0x7fff_0000_0000u64;
        let c = relocate(far, &[0x0f, 0x01, 0xf8], 0x5000).unwrap();
        assert_eq!(&c[3..9], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(c[9..17].try_into().unwrap()), far + 3);
        // mov rax, [rip+0x10] (48 8b 05 10 00 00 00) at 0x1000 reads 0x1017; from 0x5000 the
        // displacement becomes 0x1017 - 0x5007.
        let c = relocate(0x1000, &[0x48, 0x8b, 0x05, 0x10, 0, 0, 0], 0x5000).unwrap();
        let disp = i32::from_le_bytes(c[3..7].try_into().unwrap());
        assert_eq!(0x5007i64 + disp as i64, 0x1017);
    }

    #[test]
    fn recognises_no_ops() {
        assert_eq!(no_op_len(&[0xf3, 0x0f, 0x1e, 0xfa]), Some(4)); // endbr64
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x44, 0x00, 0x00]), Some(5)); // nopl 0(%rax,%rax)
        assert_eq!(no_op_len(&[0x90]), Some(1));
        assert_eq!(no_op_len(&[0x0f, 0x01, 0xf8]), None); // swapgs
        assert_eq!(no_op_len(&[0x48, 0x89, 0xc1]), None); // mov rcx, rax
        assert_eq!(no_op_len(&[0x0f]), None);
    }

    #[test]
    fn refuses_control_flow() {
        assert!(relocate(0x1000, &[0xe8, 0, 0, 0, 0], 0x5000).is_err()); // call rel32
        assert!(relocate(0x1000, &[0xc3], 0x5000).is_err()); // ret
        assert!(relocate(0x1000, &[0x0f, 0x05], 0x5000).is_err()); // syscall
        assert!(relocate(0x1000, &[0x0f], 0x5000).is_err()); // truncated
    }
}
