//! Finding trap sites in the guest's kernel code: the instructions that access one field at a
//! known displacement from a base register (`mov %ecx,0x1480(%rsi)`), located by decoding
//! just enough of the x86 instruction format.
//!
//! Since Linux 6.1.y/6.12.y stable (and 6.18 upstream) the stack-offset randomization state is
//! per task (`task_struct.kstack_offset`, include/linux/randomize_kstack.h): every return to
//! user mode rewrites it in `arch_exit_to_user_mode_prepare()` (through sysret and iret
//! alike, after signal delivery), and every system-call entry reads it in
//! `add_random_kstack_offset()` (`do_syscall_64`, `__do_fast_syscall_32`,
//! `do_int80_emulation`). A data watchpoint on the field of each traced task therefore sees
//! every return to user mode and every compat entry, without an execution breakpoint.

use std::ops::Range;

use nitro_mem::{VirtAddr, VirtRead};

use crate::kernel::kallsyms::Kallsyms;

/// Most bytes of one function read when scanning.
const MAX_FUNCTION: u64 = 0x2000;

/// `mov r32, r/m32` (load) and `mov r/m32, r32` (store), Intel SDM 2B "MOV".
pub const MOV_LOAD: u8 = 0x8b;
/// See [`MOV_LOAD`].
pub const MOV_STORE: u8 = 0x89;

/// The instructions in `code` (linked at `base`) with opcode `opcode` whose ModRM operand
/// is `[reg + disp32]` with `disp32 == disp` (ModRM mod = 10b, Intel SDM 2A 2.1.5), an
/// optional REX prefix included. Each range runs from the instruction's first byte to one
/// past the byte after it: a watchpoint stop reports the next instruction's address.
pub fn find_disp32(code: &[u8], base: u64, opcode: u8, disp: u32) -> Vec<Range<u64>> {
    let want = disp.to_le_bytes();
    let mut out = Vec::new();
    for i in 0..code.len() {
        if code.get(i) != Some(&opcode) {
            continue;
        }
        let Some(&modrm) = code.get(i + 1) else {
            break;
        };
        if modrm >> 6 != 0b10 {
            continue;
        }
        // rm = 100b means a SIB byte follows the ModRM byte.
        let at = if modrm & 7 == 4 { i + 3 } else { i + 2 };
        if code.get(at..at + 4) != Some(&want[..]) {
            continue;
        }
        let start = match i.checked_sub(1).and_then(|p| code.get(p)) {
            Some(&rex) if (0x40..=0x4f).contains(&rex) => i - 1,
            _ => i,
        };
        let end = at + 4;
        out.push(base + start as u64..base + end as u64 + 1);
    }
    out
}

/// The 32-bit `%gs`-relative accesses with `opcode` in `code` (linked at `base`): `65 [REX]
/// opcode ModRM` with a RIP-relative (mod 00, rm 101) or absolute (mod 00, rm 100, SIB 0x25)
/// 32-bit displacement (Intel SDM 2A 2.2.1.6). Each comes with the per-CPU offset it
/// addresses: the displacement itself when absolute, the address of the next instruction
/// plus the displacement when RIP-relative (Linux links per-CPU data at 0 and addresses it
/// this way since 6.x).
pub fn find_gs_disp32(code: &[u8], base: u64, opcode: u8) -> Vec<(Range<u64>, u64)> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        if code.get(i) != Some(&0x65) {
            continue;
        }
        let mut j = i + 1;
        if code
            .get(j)
            .is_some_and(|b| (0x40..=0x4f).contains(b) && b & 0x08 == 0)
        {
            j += 1;
        }
        if code.get(j) != Some(&opcode) {
            continue;
        }
        let Some(&modrm) = code.get(j + 1) else {
            break;
        };
        let (disp_at, rip_rel) = match (modrm >> 6, modrm & 7, code.get(j + 2)) {
            (0, 5, _) => (j + 2, true),
            (0, 4, Some(&0x25)) => (j + 3, false),
            _ => continue,
        };
        let Some(d) = code.get(disp_at..disp_at + 4) else {
            break;
        };
        let disp = i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]]));
        let end = base + (disp_at + 4) as u64;
        let offset = if rip_rel {
            end.wrapping_add(disp as u64)
        } else {
            disp as u64
        };
        out.push((base + i as u64..end + 1, offset));
    }
    out
}

/// The per-CPU offset of `kstack_offset` on kernels that keep it per CPU (5.13 to 6.17):
/// the 32-bit `%gs` store that follows an `rdtsc` in the exit code
/// (`choose_random_kstack_offset(rdtsc())`), confirmed by a 32-bit `%gs` load of the same
/// offset in `do_syscall_64` (`add_random_kstack_offset()`). Returns the offset and the
/// store's range (slid).
pub fn percpu_kstack_offset(
    mem: &dyn VirtRead,
    syms: &Kallsyms,
    exit_functions: &[&str],
    slide: i64,
) -> Option<(u64, Range<u64>)> {
    let read = |start: u64, end: u64| -> Option<(u64, Vec<u8>)> {
        let at = start.wrapping_add(slide as u64);
        let len = end.saturating_sub(start).min(MAX_FUNCTION) as usize;
        let mut code = vec![0u8; len];
        mem.read_virt(VirtAddr(at), &mut code).ok()?;
        Some((at, code))
    };
    let loads: Vec<u64> = functions(syms, "do_syscall_64")
        .into_iter()
        .filter_map(|(a, b)| read(a, b))
        .flat_map(|(at, code)| find_gs_disp32(&code, at, MOV_LOAD))
        .map(|(_, off)| off)
        .collect();
    for name in exit_functions {
        for (a, b) in functions(syms, name) {
            let Some((at, code)) = read(a, b) else {
                continue;
            };
            for (range, off) in find_gs_disp32(&code, at, MOV_STORE) {
                let pos = (range.start - at) as usize;
                let after_rdtsc = code
                    .get(pos.saturating_sub(16)..pos)
                    .is_some_and(|w| w.windows(2).any(|p| p == [0x0f, 0x31]));
                if after_rdtsc && loads.contains(&off) {
                    return Some((off, range));
                }
            }
        }
    }
    None
}

/// The functions whose names are `name` or start with `name.` (compiler clones such as
/// `arch_exit_to_user_mode_prepare.constprop.0`): link-time `[start, end)`.
pub fn functions(syms: &Kallsyms, name: &str) -> Vec<(u64, u64)> {
    let clone = format!("{name}.");
    let mut starts: Vec<u64> = syms
        .symbols()
        .filter(|s| !s.is_percpu && (s.name == name || s.name.starts_with(&clone)))
        .map(|s| s.addr)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts
        .into_iter()
        .filter_map(|a| crate::layout::symbol_range_at(syms, a, MAX_FUNCTION))
        .collect()
}

/// Scans the named functions (as linked, `slide` added to read the guest) for accesses to
/// `disp` with `opcode`; ranges are returned as the guest sees them (slid).
pub fn scan(
    mem: &dyn VirtRead,
    syms: &Kallsyms,
    names: &[&str],
    slide: i64,
    opcode: u8,
    disp: u32,
) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for name in names {
        for (start, end) in functions(syms, name) {
            let at = start.wrapping_add(slide as u64);
            let len = end.saturating_sub(start).min(MAX_FUNCTION) as usize;
            let mut code = vec![0u8; len];
            if mem.read_virt(VirtAddr(at), &mut code).is_err() {
                continue;
            }
            out.extend(find_disp32(&code, at, opcode, disp));
        }
    }
    out.sort_by_key(|r| r.start);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_store_with_and_without_rex() {
        // Debian 6.12 arch_exit_to_user_mode_prepare: rdtsc; xor %eax,%ecx;
        // mov %ecx,0x1480(%rsi)
        let code = [
            0x0f, 0x31, 0x31, 0xc1, 0x89, 0x8e, 0x80, 0x14, 0x00, 0x00, 0xc3,
        ];
        let r = find_disp32(&code, 0x1000, MOV_STORE, 0x1480);
        assert_eq!(r, vec![0x1004..0x100b]);
        // mov %edi,0x1480(%r12): REX.B, SIB (rm = 100b).
        let code = [0x41, 0x89, 0xbc, 0x24, 0x80, 0x14, 0x00, 0x00];
        assert_eq!(
            find_disp32(&code, 0, MOV_STORE, 0x1480),
            vec![0..9],
            "REX and SIB"
        );
        // A load is not a store; another displacement is not ours.
        let code = [0x41, 0x8b, 0x86, 0x80, 0x14, 0x00, 0x00];
        assert!(find_disp32(&code, 0, MOV_STORE, 0x1480).is_empty());
        assert_eq!(find_disp32(&code, 0, MOV_LOAD, 0x1480), vec![0..8]);
        assert!(find_disp32(&code, 0, MOV_LOAD, 0x1478).is_empty());
        // Per-CPU stores: `mov %ecx,%gs:0x1234(%rip)` and `mov %ecx,%gs:0x1f190` (SIB 0x25).
        let code = [
            0x0f, 0x31, 0x65, 0x89, 0x0d, 0x10, 0x00, 0x00, 0x00, 0x65, 0x89, 0x0c, 0x25, 0x90,
            0xf1, 0x01, 0x00,
        ];
        let found = find_gs_disp32(&code, 0x1000, MOV_STORE);
        assert_eq!(
            found,
            vec![(0x1002..0x100a, 0x1009 + 0x10), (0x1009..0x1012, 0x1f190)]
        );
        assert!(find_gs_disp32(&code[..7], 0, MOV_STORE).is_empty());
        // Truncated input does not panic.
        assert!(find_disp32(&[0x89, 0x8e, 0x80], 0, MOV_STORE, 0x1480).is_empty());
        assert!(find_disp32(&[0x89], 0, MOV_STORE, 0x1480).is_empty());
    }
}
