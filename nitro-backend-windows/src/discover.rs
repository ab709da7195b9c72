//! Finding ntoskrnl in guest memory and what it is: base, build, PDB identity, and the
//! system-call entry and return instructions to trap.
//!
//! - From `MSR_LSTAR` (the address of `KiSystemCall64`, or `KiSystemCall64Shadow` when KVA
//!   shadowing is on): scan down page by page for the image start.
//! - From any other kernel code address, e.g. an IDT handler: the KPCR's `IdtBase` (KPCR+0x38)
//!   gives the IDT, whose vector-0 gate points into ntoskrnl (`KiDivideErrorFault`). Intel SDM
//!   Vol. 3A 6.14.1 "64-Bit Mode IDT" gives the 16-byte gate layout.
//! - The build is the low 16 bits of the exported variable `NtBuildNumber` (its top nibble is
//!   0xF on free builds, 0xC on checked builds); the PDB GUID/age come from the CodeView record.
//! - Entry sites: every `KiSystemCall64`-style prologue in executable sections,
//!   `0f 01 f8` (swapgs) `65 48 89 24 25 disp32` (`mov gs:[disp32], rsp`)
//!   `65 48 8b 24 25 disp32` (`mov rsp, gs:[disp32]`) — the first instructions of
//!   `KiSystemCall64` (disp32 = KPCR.UserRsp 0x10 and KPRCB.RspBase 0x1a8) and of
//!   `KiSystemCall64Shadow` on every x64 build from Windows 7 to 11 (disassembly of the
//!   public ntoskrnl images, as reproduced in many write-ups; not re-checked here against a
//!   binary). When LSTAR is known it is the only entry site.
//! - Return sites: `0f 01 f8 48 0f 07` (swapgs; sysretq), the tail of `KiSystemServiceExit`
//!   (and of `KiKernelSysretExit` with KVA shadowing). The trap is on the `swapgs`, where GS
//!   still holds the KPCR and RAX the NTSTATUS.

use nitro_mem::{VirtAddr, VirtRead};

use crate::{
    pe::{self, PdbInfo, PeImage},
    Result, WinError,
};

/// How far down from a kernel address to look for the image start (ntoskrnl is 8-16 MiB).
pub const MAX_SCAN: u64 = 64 << 20;
/// Longest stretch of executable sections scanned for signatures.
const MAX_CODE_SCAN: u64 = 48 << 20;

/// What was found about the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// ntoskrnl's headers.
    pub image: PeImage,
    /// `NtBuildNumber & 0xffff`, when the export could be read.
    pub build: Option<u32>,
    /// The raw `NtBuildNumber` value.
    pub build_raw: Option<u32>,
    /// The PDB identity.
    pub pdb: Option<PdbInfo>,
}

impl KernelInfo {
    /// Image base.
    pub fn base(&self) -> u64 {
        self.image.base
    }
}

/// Identifies the kernel image containing `addr` (any ntoskrnl address, e.g. LSTAR).
pub fn kernel_from_address(mem: &dyn VirtRead, addr: u64) -> Result<KernelInfo> {
    if addr >> 47 != 0x1_ffff {
        return Err(WinError::BadPointer {
            what: "kernel code",
            value: addr,
        });
    }
    let base = pe::find_image_base(mem, addr, MAX_SCAN)?;
    let image = pe::parse(mem, base)?;
    let build_raw = match image.export_rva(mem, "NtBuildNumber")? {
        Some(rva) => mem.read_u32(VirtAddr(base + u64::from(rva))).ok(),
        None => None,
    };
    let pdb = image.pdb_info(mem).unwrap_or(None);
    Ok(KernelInfo {
        build: build_raw.map(|b| b & 0xffff),
        build_raw,
        pdb,
        image,
    })
}

/// Identifies the kernel from `MSR_LSTAR`.
pub fn kernel_from_lstar(mem: &dyn VirtRead, lstar: u64) -> Result<KernelInfo> {
    kernel_from_address(mem, lstar)
}

/// The handler address of IDT vector `vector` of the IDT at `idt_base`.
pub fn idt_handler(mem: &dyn VirtRead, idt_base: u64, vector: u8) -> Result<u64> {
    let mut g = [0u8; 16];
    mem.read_virt(VirtAddr(idt_base + 16 * u64::from(vector)), &mut g)?;
    let low = u64::from(u16::from_le_bytes([g[0], g[1]]));
    let mid = u64::from(u16::from_le_bytes([g[6], g[7]]));
    let high = u64::from(u32::from_le_bytes([g[8], g[9], g[10], g[11]]));
    Ok(low | mid << 16 | high << 32)
}

/// Identifies the kernel starting from a KPCR: its IDT's vector-0 handler lies in ntoskrnl.
pub fn kernel_from_kpcr(mem: &dyn VirtRead, kpcr: u64, idt_base_offset: u64) -> Result<KernelInfo> {
    let idt = mem.read_u64(VirtAddr(kpcr + idt_base_offset))?;
    let handler = idt_handler(mem, idt, 0)?;
    kernel_from_address(mem, handler)
}

/// Where to trap system calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyscallSites {
    /// Entry instructions (`swapgs` at `KiSystemCall64[Shadow]`).
    pub entries: Vec<u64>,
    /// Return instructions (the `swapgs` right before `sysretq`).
    pub exits: Vec<u64>,
}

fn is_entry_prologue(b: &[u8]) -> bool {
    b.len() >= 21
        && b[..3] == [0x0f, 0x01, 0xf8]
        && b[3..8] == [0x65, 0x48, 0x89, 0x24, 0x25]
        && b[12..17] == [0x65, 0x48, 0x8b, 0x24, 0x25]
}

/// The `disp32` of the entry prologue's `mov gs:[disp32], rsp` at `entry` (0x10, KPCR.UserRsp,
/// in `KiSystemCall64`; a KPRCB shadow field in `KiSystemCall64Shadow`), when the bytes there
/// are the prologue. A write watchpoint on `KPCR + disp32` stops right after that store, at
/// `entry + 12`, with every argument register intact.
pub fn entry_store_offset(mem: &dyn VirtRead, entry: u64) -> Option<u32> {
    let mut b = [0u8; 21];
    mem.read_virt(VirtAddr(entry), &mut b).ok()?;
    is_entry_prologue(&b).then(|| u32::from_le_bytes([b[8], b[9], b[10], b[11]]))
}

fn is_sysret_tail(b: &[u8]) -> bool {
    b.len() >= 6 && b[..6] == [0x0f, 0x01, 0xf8, 0x48, 0x0f, 0x07]
}

/// Scans the executable sections of `image` for the entry prologue and the sysret tail.
/// With `lstar`, the entry is LSTAR itself. At most 32 of each are kept.
pub fn syscall_sites(mem: &dyn VirtRead, image: &PeImage, lstar: Option<u64>) -> SyscallSites {
    const CHUNK: usize = 0x10000;
    const OVERLAP: usize = 32;
    let mut sites = SyscallSites::default();
    let mut budget = MAX_CODE_SCAN;
    let mut buf = vec![0u8; CHUNK + OVERLAP];
    for s in image.sections.iter().filter(|s| s.is_executable()) {
        let start = image.base + u64::from(s.rva);
        let len =
            u64::from(s.size).min(u64::from(image.size_of_image).saturating_sub(u64::from(s.rva)));
        let mut off = 0u64;
        while off < len && budget > 0 {
            let n = ((len - off) as usize).min(CHUNK + OVERLAP);
            let chunk = &mut buf[..n];
            // Unmapped pages (paged-out code) are skipped a page at a time.
            if mem.read_virt(VirtAddr(start + off), chunk).is_err() {
                off += 0x1000;
                budget = budget.saturating_sub(0x1000);
                continue;
            }
            let scan = n.min(CHUNK);
            for i in 0..scan {
                let at = start + off + i as u64;
                let rest = &chunk[i..];
                if lstar.is_none() && is_entry_prologue(rest) && sites.entries.len() < 32 {
                    sites.entries.push(at);
                }
                if is_sysret_tail(rest) && sites.exits.len() < 32 {
                    sites.exits.push(at);
                }
            }
            off += scan as u64;
            budget = budget.saturating_sub(scan as u64);
        }
    }
    if let Some(l) = lstar {
        sites.entries = vec![l];
    }
    sites.entries.dedup();
    sites.exits.dedup();
    sites
}
