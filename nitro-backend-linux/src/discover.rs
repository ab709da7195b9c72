//! Zero configuration without a kernel file: the running kernel's own kallsyms tables and BTF,
//! found in guest memory.
//!
//! The IDT (at the fixed `CPU_ENTRY_AREA_RO_IDT`) points into the kernel's entry text; the
//! kernel's read-only data (`__start_rodata`) starts at the next 2 MiB boundary or a few
//! after it (arch/x86/kernel/vmlinux.lds.S aligns it to `PMD_SIZE`), and holds the kallsyms
//! tables (kernel/kallsyms_internal.h) and the `.BTF` section (`__start_BTF`..`__stop_BTF`,
//! include/asm-generic/vmlinux.lds.h). Addresses read from a running kernel are runtime ones:
//! the KASLR slide is already in them.

use nitro_listener::Regs;
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr, VirtRead};

use crate::{
    kernel::{btf::Btf, kallsyms::Kallsyms},
    LinuxBackend, LinuxError,
};

/// `CPU_ENTRY_AREA_RO_IDT` (arch/x86/include/asm/pgtable_areas.h), as in the backend.
const IDT_BASE: u64 = 0xffff_fe00_0000_0000;
/// How much kernel image after the entry text is read to find kallsyms: read-only data of a
/// distribution kernel ends well within this (Debian 6.12: 26 MiB after `_text`).
const SCAN_BYTES: u64 = 40 << 20;
/// Largest `.BTF` section accepted (Debian's are 4-5 MiB).
const MAX_BTF: u64 = 32 << 20;
const PAGE: u64 = 4096;
const ALIGN_2M: u64 = 0x20_0000;

/// Reads `[start, start + len)`, unmapped pages as zeros.
fn read_sparse(space: &dyn VirtRead, start: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    for (i, chunk) in out.chunks_mut(PAGE as usize).enumerate() {
        let _ = space.read_virt(VirtAddr(start + i as u64 * PAGE), chunk);
    }
    out
}

/// The handler of IDT vector 0 (Intel SDM 3A 6.14.1 gate layout).
fn divide_error_handler(space: &dyn VirtRead) -> Result<u64, LinuxError> {
    let mut gate = [0u8; 16];
    space
        .read_virt(VirtAddr(IDT_BASE), &mut gate)
        .map_err(|e| LinuxError::Layout(format!("cannot read the IDT at {IDT_BASE:#x}: {e}")))?;
    Ok(u64::from(u16::from_le_bytes([gate[0], gate[1]]))
        | u64::from(u16::from_le_bytes([gate[6], gate[7]])) << 16
        | u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32)
}

/// The kernel's address space as the stopped vCPU sees it; under page-table isolation a
/// vCPU in user mode runs on the user half of the PGD pair, which maps little of the kernel.
fn kernel_space<'m>(mem: &'m dyn PhysMemory, regs: &Regs) -> AddressSpace<&'m dyn PhysMemory> {
    let mode = PagingMode::from_cr4(regs.cr4);
    let space = AddressSpace::with_mode(mem, PhysAddr(regs.cr3), mode);
    if space.read_u64(VirtAddr(IDT_BASE)).is_ok() {
        return space;
    }
    AddressSpace::with_mode(mem, PhysAddr(regs.cr3 & !0x1fff), mode)
}

/// Finds a BTF blob by its header: magic 0xeB9F, version 1, `hdr_len` 24 (include/uapi/
/// linux/btf.h), type and string sections inside a bounded length.
pub fn find_btf(image: &[u8]) -> Option<&[u8]> {
    const HEAD: [u8; 8] = [0x9f, 0xeb, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00];
    let mut from = 0;
    while let Some(pos) = image
        .get(from..)?
        .windows(HEAD.len())
        .position(|w| w == HEAD)
    {
        let at = from + pos;
        let word = |o: usize| {
            image
                .get(at + o..at + o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        if let (Some(to), Some(tl), Some(so), Some(sl)) = (word(8), word(12), word(16), word(20)) {
            let end = 24usize
                .saturating_add(to.max(so))
                .saturating_add(if so > to { sl } else { tl });
            if tl > 0 && sl > 0 && end as u64 <= MAX_BTF {
                if let Some(blob) = image.get(at..at + end) {
                    if Btf::parse(blob).is_ok() {
                        return Some(blob);
                    }
                }
            }
        }
        from = at + 1;
    }
    None
}

impl LinuxBackend {
    /// Finds the running kernel in a stopped guest from memory alone: kallsyms and BTF are
    /// read from the kernel image the IDT points into. `regs` are those of any vCPU (kernel
    /// or user mode). No kernel file, System.map or profile is needed.
    pub fn from_guest(mem: &dyn PhysMemory, regs: &Regs) -> Result<Self, LinuxError> {
        let space = kernel_space(mem, regs);
        let handler = divide_error_handler(&space)?;
        if handler < 0xffff_ffff_8000_0000 {
            return Err(LinuxError::Layout(format!(
                "IDT vector 0 points to {handler:#x}, outside the kernel image"
            )));
        }
        // Read-only data follows the text at a 2 MiB boundary past the entry code.
        let start = (handler + ALIGN_2M - 1) & !(ALIGN_2M - 1);
        let len = SCAN_BYTES.min(0u64.wrapping_sub(start));
        let image = read_sparse(&space, start, len);
        let syms = Kallsyms::from_image(&image, start)
            .map_err(|e| LinuxError::Symbols(format!("kallsyms in guest memory: {e}")))?;
        let btf = match (syms.lookup("__start_BTF"), syms.lookup("__stop_BTF")) {
            (Some(a), Some(b)) if b > a && b - a <= MAX_BTF => {
                Btf::parse(&read_sparse(&space, a, b - a)).ok()
            }
            _ => None,
        };
        let btf = match btf {
            Some(b) => b,
            None => find_btf(&image)
                .ok_or_else(|| LinuxError::Layout("no BTF found in guest memory".into()))
                .and_then(|blob| Btf::parse(blob).map_err(|e| LinuxError::Layout(e.to_string())))?,
        };
        Self::new(syms, &btf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btf_header_search_is_bounded() {
        assert!(find_btf(&[]).is_none());
        // A header whose sections point past the data.
        let mut bad = vec![0x9f, 0xeb, 0x01, 0x00, 0x18, 0, 0, 0];
        bad.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert!(find_btf(&bad).is_none());
    }
}
