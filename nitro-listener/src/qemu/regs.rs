//! QEMU's x86-64 register layout in the gdbstub `g` packet.
//!
//! Reference: QEMU 7.2 `target/i386/gdbstub.c` and `gdb-xml/i386-64bit.xml`: registers 0-15
//! are rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15 (8 bytes each), 16 rip (8), 17 eflags (4),
//! 18-23 cs, ss, ds, es, fs, gs (4 each), 24 fs_base, 25 gs_base, 26 k_gs_base, 27-31 cr0, cr2,
//! cr3, cr4, cr8, 32 efer (8 each); the x87/SSE registers follow (608 bytes in all).

use crate::{Reg, Regs};

/// Bytes of the general part of the `g` packet that this driver needs.
pub const G_MIN_LEN: usize = 236;

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .unwrap_or(0)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
        .unwrap_or(0)
}

/// Decodes the binary contents of a `g` reply (at least [`G_MIN_LEN`] bytes).
pub fn parse_g(b: &[u8]) -> Regs {
    let q = |i: usize| u64_at(b, i * 8);
    Regs {
        rax: q(0),
        rbx: q(1),
        rcx: q(2),
        rdx: q(3),
        rsi: q(4),
        rdi: q(5),
        rbp: q(6),
        rsp: q(7),
        r8: q(8),
        r9: q(9),
        r10: q(10),
        r11: q(11),
        r12: q(12),
        r13: q(13),
        r14: q(14),
        r15: q(15),
        rip: q(16),
        rflags: u32_at(b, 136) as u64,
        cs: u32_at(b, 140),
        ss: u32_at(b, 144),
        ds: u32_at(b, 148),
        es: u32_at(b, 152),
        fs: u32_at(b, 156),
        gs: u32_at(b, 160),
        fs_base: u64_at(b, 164),
        gs_base: u64_at(b, 172),
        k_gs_base: u64_at(b, 180),
        cr0: u64_at(b, 188),
        cr2: u64_at(b, 196),
        cr3: u64_at(b, 204),
        cr4: u64_at(b, 212),
        cr8: u64_at(b, 220),
        efer: u64_at(b, 228),
    }
}

/// Decodes a `g` reply straight from its hex text, without allocating; None when it is
/// malformed or shorter than [`G_MIN_LEN`] bytes.
pub fn parse_g_hex(hex: &[u8]) -> Option<Regs> {
    let mut b = [0u8; G_MIN_LEN];
    let n = super::rsp::decode_hex_into(hex.get(..2 * G_MIN_LEN)?, &mut b)?;
    (n == G_MIN_LEN).then(|| parse_g(&b))
}

/// The gdb register number and size in bytes of a writable register.
pub fn reg_number(reg: Reg) -> (u32, usize) {
    match reg {
        Reg::Rax => (0, 8),
        Reg::Rbx => (1, 8),
        Reg::Rcx => (2, 8),
        Reg::Rdx => (3, 8),
        Reg::Rsi => (4, 8),
        Reg::Rdi => (5, 8),
        Reg::Rbp => (6, 8),
        Reg::Rsp => (7, 8),
        Reg::R8 => (8, 8),
        Reg::R9 => (9, 8),
        Reg::R10 => (10, 8),
        Reg::R11 => (11, 8),
        Reg::R12 => (12, 8),
        Reg::R13 => (13, 8),
        Reg::R14 => (14, 8),
        Reg::R15 => (15, 8),
        Reg::Rip => (16, 8),
        Reg::Rflags => (17, 4),
        Reg::GsBase => (25, 8),
        Reg::KernelGsBase => (26, 8),
    }
}

/// Builds a `P` packet writing `value` to `reg`.
pub fn p_packet(reg: Reg, value: u64) -> Vec<u8> {
    let (n, size) = reg_number(reg);
    let mut s = format!("P{n:x}=");
    for b in &value.to_le_bytes()[..size] {
        s.push_str(&format!("{b:02x}"));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trip() {
        let mut b = vec![0u8; 608];
        b[16 * 8..17 * 8].copy_from_slice(&0xffff_ffff_81c0_0080u64.to_le_bytes());
        b[172..180].copy_from_slice(&0xffff_8880_0f80_0000u64.to_le_bytes());
        b[204..212].copy_from_slice(&0x0123_4000_u64.to_le_bytes());
        b[140..144].copy_from_slice(&0x10u32.to_le_bytes());
        let r = parse_g(&b);
        assert_eq!(r.rip, 0xffff_ffff_81c0_0080);
        assert_eq!(r.gs_base, 0xffff_8880_0f80_0000);
        assert_eq!(r.cr3, 0x0123_4000);
        assert_eq!(r.cpl(), 0);
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(parse_g_hex(hex.as_bytes()), Some(r));
        assert_eq!(parse_g_hex(&hex.as_bytes()[..100]), None);
        assert_eq!(
            p_packet(Reg::Rax, 0xfffffffffffffffe),
            b"P0=feffffffffffffff"
        );
        assert_eq!(p_packet(Reg::Rflags, 0x246), b"P11=46020000");
    }
}
