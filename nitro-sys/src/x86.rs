//! x86-64 architectural bits the KVM driver programs: not in `kvm-bindings`.
//!
//! Source for every value: Intel 64 and IA-32 Architectures Software Developer's Manual,
//! volume 3A (section numbers per the 2023 edition, order number 253668): 17.2 debug
//! registers, 2.3 EFLAGS, 2.5 control registers, 2.2.1 IA32_EFER, 4.5 4-level paging,
//! 3.4.5 segment descriptors. The same bits appear in Linux
//! `arch/x86/include/uapi/asm/{debugreg.h,processor-flags.h}`.

/// DR7: the local-enable bit of breakpoint `n` (L0..L3 = bits 0, 2, 4, 6). SDM 17.2.4.
pub const fn dr7_local_enable(n: usize) -> u64 {
    1 << (n * 2)
}

/// DR7: the global-enable bit of breakpoint `n` (G0..G3 = bits 1, 3, 5, 7). SDM 17.2.4.
pub const fn dr7_global_enable(n: usize) -> u64 {
    1 << (n * 2 + 1)
}

/// DR7 LE (bit 8) and GE (bit 9): exact breakpoint detection (recommended set). SDM 17.2.4.
pub const DR7_LE: u64 = 1 << 8;
/// DR7 GE, see [`DR7_LE`].
pub const DR7_GE: u64 = 1 << 9;
/// DR7 bit 10 reads as 1 (reserved). SDM 17.2.4.
pub const DR7_FIXED_1: u64 = 1 << 10;

/// DR7 R/W field value: break on instruction execution. SDM 17.2.4.
pub const DR7_RW_EXECUTE: u64 = 0b00;
/// DR7 R/W field value: break on data writes.
pub const DR7_RW_WRITE: u64 = 0b01;
/// DR7 R/W field value: break on data reads or writes (not instruction fetches).
pub const DR7_RW_READ_WRITE: u64 = 0b11;

/// DR7 LEN field value for a 1-byte range (the only legal length for execute breakpoints).
pub const DR7_LEN_1: u64 = 0b00;
/// DR7 LEN field value for 2 bytes.
pub const DR7_LEN_2: u64 = 0b01;
/// DR7 LEN field value for 8 bytes (64-bit mode).
pub const DR7_LEN_8: u64 = 0b10;
/// DR7 LEN field value for 4 bytes.
pub const DR7_LEN_4: u64 = 0b11;

/// DR7: the R/W and LEN fields of breakpoint `n` placed at bits 16 + 4n (R/W) and
/// 18 + 4n (LEN). SDM 17.2.4.
pub const fn dr7_rw_len(n: usize, rw: u64, len: u64) -> u64 {
    ((rw & 3) << (16 + n * 4)) | ((len & 3) << (18 + n * 4))
}

/// Number of address breakpoint registers (DR0-DR3).
pub const NUM_HW_BREAKPOINTS: usize = 4;

/// DR6: B0..B3, breakpoint `n` condition detected (bits 0-3). SDM 17.2.3.
pub const fn dr6_hit(n: usize) -> u64 {
    1 << n
}
/// DR6 BS (bit 14): the #DB came from single-step (RFLAGS.TF). SDM 17.2.3.
pub const DR6_BS: u64 = 1 << 14;

/// RFLAGS bit 1 always reads as 1. SDM 2.3.
pub const RFLAGS_FIXED_1: u64 = 1 << 1;
/// RFLAGS.TF (bit 8): single-step trap. SDM 2.3.
pub const RFLAGS_TF: u64 = 1 << 8;
/// RFLAGS.IF (bit 9): maskable interrupts enabled. SDM 2.3.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.RF (bit 16): resume flag, suppresses instruction breakpoints for one instruction.
/// SDM 2.3 and 17.3.1.1.
pub const RFLAGS_RF: u64 = 1 << 16;

/// CR0.PE (bit 0): protected mode. SDM 2.5.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP (bit 1).
pub const CR0_MP: u64 = 1 << 1;
/// CR0.ET (bit 4), hard-wired to 1 on modern processors.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE (bit 5): native FPU error reporting.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP (bit 16): supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.AM (bit 18).
pub const CR0_AM: u64 = 1 << 18;
/// CR0.PG (bit 31): paging.
pub const CR0_PG: u64 = 1 << 31;

/// CR4.DE (bit 3): debugging extensions. SDM 2.5.
pub const CR4_DE: u64 = 1 << 3;
/// CR4.PAE (bit 5): physical-address extension, required for long mode.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR (bit 9).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT (bit 10).
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// IA32_EFER.SCE (bit 0): `syscall`/`sysret` enabled. SDM 2.2.1.
pub const EFER_SCE: u64 = 1 << 0;
/// IA32_EFER.LME (bit 8): long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// IA32_EFER.LMA (bit 10): long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// IA32_EFER.NXE (bit 11): execute-disable bit enabled.
pub const EFER_NXE: u64 = 1 << 11;

/// Page-table entry P (bit 0): present. SDM 4.5, tables 4-14 to 4-20.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Page-table entry R/W (bit 1): writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Page-table entry U/S (bit 2): user accessible.
pub const PTE_USER: u64 = 1 << 2;
/// PDPTE/PDE PS (bit 7): the entry maps a 1 GiB / 2 MiB page.
pub const PTE_PAGE_SIZE: u64 = 1 << 7;

/// Code/data segment type field values (descriptor bits 40-43, S = 1). SDM 3.4.5.1, table 3-1.
/// Execute/read, accessed.
pub const SEG_TYPE_CODE_XR_ACCESSED: u8 = 0b1011;
/// Read/write data, accessed.
pub const SEG_TYPE_DATA_RW_ACCESSED: u8 = 0b0011;
/// System segment type: 64-bit TSS (busy). SDM 3.5, table 3-2.
pub const SEG_TYPE_TSS64_BUSY: u8 = 0b1011;

/// Exception vector of #DB (debug). SDM 6.3.1, table 6-1.
pub const VECTOR_DB: u32 = 1;
/// Exception vector of #BP (`int3`).
pub const VECTOR_BP: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_layout_matches_linux_debugreg_h() {
        // Linux arch/x86/include/uapi/asm/debugreg.h: DR_CONTROL_SHIFT 16, DR_CONTROL_SIZE 4,
        // DR_LOCAL_ENABLE_SHIFT 0, DR_GLOBAL_ENABLE_SHIFT 1, DR_ENABLE_SIZE 2.
        assert_eq!(dr7_local_enable(0), 0x1);
        assert_eq!(dr7_global_enable(3), 0x80);
        // Execute breakpoint, 1 byte, slot 2: both fields zero.
        assert_eq!(dr7_rw_len(2, DR7_RW_EXECUTE, DR7_LEN_1), 0);
        // Write watchpoint, 8 bytes, slot 1: R/W at bits 20-21, LEN at 22-23.
        assert_eq!(
            dr7_rw_len(1, DR7_RW_WRITE, DR7_LEN_8),
            (0b01 << 20) | (0b10 << 22)
        );
        assert_eq!(dr6_hit(0) | DR6_BS, 0x4001);
        assert_eq!(RFLAGS_RF, 0x10000);
    }
}
