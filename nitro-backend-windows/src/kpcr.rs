//! The processor control region: which of GS base and KERNEL_GS_BASE holds the KPCR, and the
//! current thread.
//!
//! On x64 Windows GS points at the KPCR in kernel mode and at the TEB in user mode; `swapgs`
//! exchanges GS base with the KERNEL_GS_BASE MSR (Intel SDM Vol. 2B, SWAPGS). A stop at
//! `KiSystemCall64`'s first instruction is in ring 0 but before its `swapgs`, so the KPCR is in
//! KERNEL_GS_BASE; a stop after it, in GS base. Rather than trust the CPL, both are tried and
//! the one whose `KPCR.Self` (KPCR+0x18) points back at itself wins.

use nitro_listener::Regs;
use nitro_mem::{VirtAddr, VirtRead};

use crate::{layout::Layout, Result, WinError};

/// True for an address in the upper (kernel) canonical half.
pub fn is_kernel_address(a: u64) -> bool {
    a >> 47 == 0x1_ffff
}

/// True for a non-null address in the lower (user) canonical half.
pub fn is_user_address(a: u64) -> bool {
    a != 0 && a >> 47 == 0
}

/// The KPCR address at a stop.
pub fn kpcr_base(mem: &dyn VirtRead, regs: &Regs, layout: &Layout) -> Result<u64> {
    let order = if regs.cpl() == 0 {
        [regs.gs_base, regs.k_gs_base]
    } else {
        [regs.k_gs_base, regs.gs_base]
    };
    for cand in order {
        if is_kernel_address(cand)
            && mem.read_u64(VirtAddr(cand + layout.kpcr_self)).ok() == Some(cand)
        {
            return Ok(cand);
        }
    }
    Err(WinError::NoKpcr {
        gs_base: regs.gs_base,
        kernel_gs_base: regs.k_gs_base,
    })
}

/// `KPCR.Prcb.CurrentThread`.
pub fn current_thread(mem: &dyn VirtRead, kpcr: u64, layout: &Layout) -> Result<u64> {
    let t = mem.read_u64(VirtAddr(kpcr + layout.kpcr_current_thread))?;
    if !is_kernel_address(t) {
        return Err(WinError::BadPointer {
            what: "KPRCB.CurrentThread",
            value: t,
        });
    }
    Ok(t)
}
