//! Memory dumps: a raw image of guest physical memory, or the ELF core QEMU's
//! `dump-guest-memory` writes (one `PT_LOAD` segment per RAM block, `p_paddr` = guest physical
//! address, plus `PT_NOTE` segments with the vCPUs' registers).
//!
//! ELF layouts: the System V gABI "ELF Header" and "Program Header" chapters, as in
//! /usr/include/elf.h (`Elf64_Ehdr`, `Elf64_Phdr`, `Elf32_*`, `PN_XNUM`); QEMU's writer is
//! dump/dump.c (`write_elf64_load`, which sets `p_paddr` to the guest physical address).

use std::fs::File;

use crate::{file::FileMapping, MemError, PhysAddr, PhysMemory, Region, Result};

/// How a dump file lays out guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// The file is guest physical memory from address 0.
    Raw,
    /// An ELF core file; guest memory is in its `PT_LOAD` segments.
    Elf,
}

/// One ELF note from a core dump (QEMU writes `CORE`/`NT_PRSTATUS` and `QEMU` notes per vCPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfNote {
    /// Owner name, without the terminating NUL.
    pub name: Vec<u8>,
    /// Note type (`n_type`).
    pub kind: u32,
    /// The descriptor bytes.
    pub desc: Vec<u8>,
}

/// One vCPU's registers from the `QEMU` note of a `dump-guest-memory` core.
///
/// Layout: QEMU target/i386/arch_dump.c, `QEMUCPUState` version 1: `u32 version, u32 size`,
/// rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8-r15, rip, rflags (u64 each, from offset 8), ten
/// segments {u32 selector, limit, flags, pad; u64 base} (cs, ds, es, fs, gs, ss, ldt, tr,
/// gdt, idt, from offset 152), `u64 cr[5]` (offset 392), `u64 kernel_gs_base` (offset 432);
/// 440 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuCpuState {
    /// rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, ..., r15, in that order.
    pub gprs: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags.
    pub rflags: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// The MSR swapped in by `swapgs`.
    pub kernel_gs_base: u64,
    /// CR0 to CR4 (CR1 is reserved and reads 0).
    pub cr: [u64; 5],
}

impl QemuCpuState {
    /// Owner name of the note (its type is 0).
    const NOTE_NAME: &'static [u8] = b"QEMU";
    const SIZE: usize = 440;

    /// Decodes a `QEMU` note descriptor; `None` if it is too short or not version 1.
    pub fn parse(desc: &[u8]) -> Option<Self> {
        let d = Le(desc);
        if d.u32(0)? != 1 || desc.len() < Self::SIZE {
            return None;
        }
        let mut gprs = [0u64; 16];
        for (i, g) in gprs.iter_mut().enumerate() {
            *g = d.u64(8 + 8 * i)?;
        }
        let seg_base = |i: usize| d.u64(152 + 24 * i + 16);
        let mut cr = [0u64; 5];
        for (i, c) in cr.iter_mut().enumerate() {
            *c = d.u64(392 + 8 * i)?;
        }
        Some(QemuCpuState {
            gprs,
            rip: d.u64(136)?,
            rflags: d.u64(144)?,
            fs_base: seg_base(3)?,
            gs_base: seg_base(4)?,
            kernel_gs_base: d.u64(432)?,
            cr,
        })
    }
}

/// Guest memory from a dump file, mapped privately: writes change this process's copy only.
#[derive(Debug)]
pub struct DumpMemory {
    mapping: FileMapping,
    format: DumpFormat,
    notes: Vec<(u64, u64)>,
    path: String,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PN_XNUM: u16 = 0xffff;
/// The kdump-compressed format `dump-guest-memory -z/-l/-s` writes (makedumpfile's
/// `KDUMP_SIGNATURE`).
const KDUMP_MAGIC: &[u8; 8] = b"KDUMP   ";
/// Upper bound on program headers we accept (QEMU writes one per RAM block plus notes).
const MAX_PHDRS: u64 = 1 << 16;
/// Upper bound on notes returned by [`DumpMemory::notes`].
const MAX_NOTES: usize = 4096;

/// A little-endian reader over a byte slice that never panics.
struct Le<'a>(&'a [u8]);

impl Le<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.0.get(off..off.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, off: usize) -> Option<u16> {
        self.bytes(off).map(u16::from_le_bytes)
    }
    fn u32(&self, off: usize) -> Option<u32> {
        self.bytes(off).map(u32::from_le_bytes)
    }
    fn u64(&self, off: usize) -> Option<u64> {
        self.bytes(off).map(u64::from_le_bytes)
    }
    /// A 32- or 64-bit word.
    fn word(&self, off: usize, is64: bool) -> Option<u64> {
        if is64 {
            self.u64(off)
        } else {
            self.u32(off).map(u64::from)
        }
    }
}

/// Program headers of interest: (PT_LOAD regions, PT_NOTE (offset, size) pairs).
type Segments = (Vec<Region>, Vec<(u64, u64)>);

impl DumpMemory {
    /// Opens a dump, detecting its format: an ELF core (`\x7fELF`, little-endian, `ET_CORE`)
    /// or else a raw image. Refuses kdump-compressed dumps and ELF files that are not cores.
    pub fn open(path: &str) -> Result<Self> {
        let err = |why: String| MemError::Source {
            path: path.to_string(),
            why,
        };
        let file = File::open(path).map_err(|e| err(e.to_string()))?;
        let len = file.metadata().map_err(|e| err(e.to_string()))?.len();
        // Map once flat to look at the headers; ELF cores are then mapped with their regions.
        let flat = vec![Region {
            guest_start: PhysAddr(0),
            file_offset: 0,
            len,
        }];
        let mapping = FileMapping::new(&file, flat.clone(), false).map_err(err)?;
        let head = mapping
            .file_bytes(0, 64.min(len as usize))
            .unwrap_or_default();
        if head.starts_with(KDUMP_MAGIC) {
            return Err(err(
                "kdump-compressed dumps are not supported; dump as ELF".into()
            ));
        }
        if !head.starts_with(ELF_MAGIC) {
            return Ok(DumpMemory {
                mapping,
                format: DumpFormat::Raw,
                notes: vec![],
                path: path.to_string(),
            });
        }
        let (regions, notes) = parse_elf(&mapping, len).map_err(|why| err(why.to_string()))?;
        drop(mapping);
        let mapping = FileMapping::new(&file, regions, false).map_err(err)?;
        Ok(DumpMemory {
            mapping,
            format: DumpFormat::Elf,
            notes,
            path: path.to_string(),
        })
    }

    /// The path that was opened.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The detected format.
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// The guest physical regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        self.mapping.regions()
    }

    /// The registers of each vCPU, from the core's `QEMU` notes, in vCPU order. Empty for a
    /// raw dump or a core without such notes.
    pub fn qemu_cpu_states(&self) -> Vec<QemuCpuState> {
        self.notes()
            .iter()
            .filter(|n| n.name == QemuCpuState::NOTE_NAME)
            .filter_map(|n| QemuCpuState::parse(&n.desc))
            .collect()
    }

    /// The notes of an ELF core's `PT_NOTE` segments (at most 4096; malformed notes end the
    /// list). Empty for a raw dump.
    pub fn notes(&self) -> Vec<ElfNote> {
        let mut out = Vec::new();
        for &(off, size) in &self.notes {
            let Some(bytes) = usize::try_from(size)
                .ok()
                .and_then(|n| self.mapping.file_bytes(off, n))
            else {
                continue;
            };
            parse_notes(&bytes, &mut out);
        }
        out
    }
}

/// Reads the program headers of an ELF core.
fn parse_elf(mapping: &FileMapping, file_len: u64) -> std::result::Result<Segments, &'static str> {
    let ehdr = mapping
        .file_bytes(0, 64.min(file_len as usize))
        .ok_or("short ELF header")?;
    let h = Le(&ehdr);
    let class = *ehdr.get(4).ok_or("short ELF header")?;
    let is64 = match class {
        ELFCLASS64 => true,
        ELFCLASS32 => false,
        _ => return Err("unknown ELF class"),
    };
    if ehdr.get(5) != Some(&ELFDATA2LSB) {
        return Err("big-endian ELF is not an x86 dump");
    }
    if h.u16(16) != Some(ET_CORE) {
        return Err("ELF file is not a core dump");
    }
    // Elf64_Ehdr: e_phoff @32, e_shoff @40, e_phentsize @54, e_phnum @56.
    // Elf32_Ehdr: e_phoff @28, e_shoff @32, e_phentsize @42, e_phnum @44.
    let (phoff, shoff, phentsize, phnum) = if is64 {
        (h.u64(32), h.u64(40), h.u16(54), h.u16(56))
    } else {
        (
            h.u32(28).map(u64::from),
            h.u32(32).map(u64::from),
            h.u16(42),
            h.u16(44),
        )
    };
    let (phoff, phentsize, mut phnum) = (
        phoff.ok_or("short ELF header")?,
        u64::from(phentsize.ok_or("short ELF header")?),
        u64::from(phnum.ok_or("short ELF header")?),
    );
    let want_entsize = if is64 { 56 } else { 32 };
    if phentsize != want_entsize {
        return Err("unexpected program header size");
    }
    if phnum == u64::from(PN_XNUM) {
        // gABI: with PN_XNUM the real count is sh_info of section header 0 (QEMU does this
        // for guests with many RAM blocks). sh_info: Elf64_Shdr @44, Elf32_Shdr @28.
        let shoff = shoff.ok_or("short ELF header")?;
        let at = if is64 { 44 } else { 28 };
        let sh = mapping.file_bytes(shoff.checked_add(at).ok_or("bad e_shoff")?, 4);
        phnum = u64::from(
            sh.and_then(|b| Le(&b).u32(0))
                .ok_or("bad section header 0")?,
        );
    }
    if phnum > MAX_PHDRS {
        return Err("too many program headers");
    }
    let table = mapping
        .file_bytes(phoff, (phnum * phentsize) as usize)
        .ok_or("program headers lie outside the file")?;
    let (mut loads, mut notes) = (Vec::new(), Vec::new());
    for ph in table.chunks_exact(phentsize as usize) {
        let p = Le(ph);
        // Elf64_Phdr: p_type @0, p_offset @8, p_paddr @24, p_filesz @32.
        // Elf32_Phdr: p_type @0, p_offset @4, p_paddr @12, p_filesz @16.
        let (o_off, o_paddr, o_filesz) = if is64 { (8, 24, 32) } else { (4, 12, 16) };
        let kind = p.u32(0).ok_or("short program header")?;
        let off = p.word(o_off, is64).ok_or("short program header")?;
        let paddr = p.word(o_paddr, is64).ok_or("short program header")?;
        let filesz = p.word(o_filesz, is64).ok_or("short program header")?;
        match kind {
            PT_LOAD if filesz > 0 => loads.push(Region {
                guest_start: PhysAddr(paddr),
                file_offset: off,
                len: filesz,
            }),
            PT_NOTE => notes.push((off, filesz)),
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err("ELF core has no PT_LOAD segment with file data");
    }
    Ok((loads, notes))
}

/// Appends the notes in one `PT_NOTE` segment: `Elf_Nhdr` {namesz, descsz, type} (three u32
/// for both classes), then the name and the descriptor, each padded to 4 bytes.
fn parse_notes(bytes: &[u8], out: &mut Vec<ElfNote>) {
    let pad4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut at = 0usize;
    let p = Le(bytes);
    while out.len() < MAX_NOTES {
        let (Some(namesz), Some(descsz), Some(kind)) = (p.u32(at), p.u32(at + 4), p.u32(at + 8))
        else {
            return;
        };
        let name_at = at + 12;
        let Some(desc_at) = pad4(namesz as usize).and_then(|n| name_at.checked_add(n)) else {
            return;
        };
        let Some(next) = pad4(descsz as usize).and_then(|n| desc_at.checked_add(n)) else {
            return;
        };
        let (Some(name), Some(desc)) = (
            bytes.get(name_at..name_at + namesz as usize),
            bytes.get(desc_at..desc_at + descsz as usize),
        ) else {
            return;
        };
        let name = name.strip_suffix(b"\0").unwrap_or(name).to_vec();
        out.push(ElfNote {
            name,
            kind,
            desc: desc.to_vec(),
        });
        at = next;
    }
}

impl PhysMemory for DumpMemory {
    fn size(&self) -> u64 {
        self.mapping.size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        self.mapping.read(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        self.mapping.write(addr, buf)
    }
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        self.mapping.read_u64(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_state_needs_version_1_and_440_bytes() {
        let mut d = vec![0u8; 440];
        d[0] = 1;
        d[136..144].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes()); // rip
        d[416..424].copy_from_slice(&0x2a1_0000u64.to_le_bytes()); // cr3
        d[152 + 4 * 24 + 16..152 + 4 * 24 + 24].copy_from_slice(&7u64.to_le_bytes()); // gs.base
        let s = QemuCpuState::parse(&d).unwrap();
        assert_eq!(
            (s.rip, s.cr[3], s.gs_base, s.fs_base),
            (0xffff_ffff_8100_0000, 0x2a1_0000, 7, 0)
        );
        assert_eq!(QemuCpuState::parse(&d[..439]), None);
        d[0] = 2;
        assert_eq!(QemuCpuState::parse(&d), None);
        assert_eq!(QemuCpuState::parse(&[]), None);
    }

    #[test]
    fn notes_with_lying_sizes_end_the_list() {
        let mut out = vec![];
        // namesz 4, descsz 0xffffffff: the descriptor runs past the segment.
        let mut b = vec![];
        for v in [4u32, u32::MAX, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"QEMU");
        parse_notes(&b, &mut out);
        assert!(out.is_empty());
        parse_notes(&[1, 2, 3], &mut out);
        assert!(out.is_empty());
    }
}
