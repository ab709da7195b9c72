//! A minimal, bounds-checked ELF64 little-endian reader: enough to find `vmlinux` sections
//! (`.BTF`, `.rodata`) and to map virtual addresses to file offsets.
//!
//! Field layout: System V ABI, "ELF-64 Object File Format" (`Elf64_Ehdr`, `Elf64_Shdr`,
//! `Elf64_Phdr`; also `/usr/include/elf.h`).

use super::{read, KernelError, Result};

/// `PT_LOAD`: a loadable segment (`/usr/include/elf.h`).
pub const PT_LOAD: u32 = 1;
/// `SHT_NOBITS`: a section with no file data (`.bss`).
pub const SHT_NOBITS: u32 = 8;

/// Size of `Elf64_Ehdr`, `Elf64_Shdr`, `Elf64_Phdr`.
const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// One section header (`Elf64_Shdr`), with its name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name from the section-header string table (empty when unreadable).
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_addr`: virtual address when loaded.
    pub addr: u64,
    /// `sh_offset`: file offset.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
}

/// One program header (`Elf64_Phdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_type` (e.g. [`PT_LOAD`]).
    pub kind: u32,
    /// `p_flags` (1 = X, 2 = W, 4 = R).
    pub flags: u32,
    /// `p_offset`: file offset.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

/// A parsed ELF64 file borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Elf<'a> {
    data: &'a [u8],
    entry: u64,
    sections: Vec<Section>,
    segments: Vec<Segment>,
}

fn bad(reason: &'static str, offset: u64) -> KernelError {
    KernelError::BadElf { reason, offset }
}

impl<'a> Elf<'a> {
    /// Parses the ELF header, section headers and program headers of `data`.
    ///
    /// Only 64-bit little-endian files are accepted.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if data.len() < EHDR_SIZE || !data.starts_with(b"\x7fELF") {
            return Err(bad("no ELF magic or short header", 0));
        }
        // e_ident[EI_CLASS] = ELFCLASS64 (2), e_ident[EI_DATA] = ELFDATA2LSB (1).
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err(bad("not a 64-bit little-endian ELF file", 4));
        }
        let u16f = |o| read::u16_at(data, o).unwrap_or(0);
        let u64f = |o| read::u64_at(data, o).unwrap_or(0);
        let entry = u64f(0x18);
        let (phoff, shoff) = (u64f(0x20), u64f(0x28));
        let (phentsize, phnum) = (usize::from(u16f(0x36)), usize::from(u16f(0x38)));
        let (shentsize, shnum, shstrndx) = (
            usize::from(u16f(0x3a)),
            usize::from(u16f(0x3c)),
            usize::from(u16f(0x3e)),
        );

        let segments = if phnum == 0 {
            Vec::new()
        } else {
            if phentsize != PHDR_SIZE {
                return Err(bad("e_phentsize is not 56", 0x36));
            }
            let table = table(data, phoff, phnum, PHDR_SIZE)?;
            table.chunks_exact(PHDR_SIZE).map(parse_phdr).collect()
        };

        let sections = if shnum == 0 {
            Vec::new()
        } else {
            if shentsize != SHDR_SIZE {
                return Err(bad("e_shentsize is not 64", 0x3a));
            }
            let table = table(data, shoff, shnum, SHDR_SIZE)?;
            let mut secs: Vec<Section> = table.chunks_exact(SHDR_SIZE).map(parse_shdr).collect();
            let names = secs
                .get(shstrndx)
                .filter(|s| s.kind != SHT_NOBITS)
                .and_then(|s| file_range(data, s.offset, s.size));
            let name_offs: Vec<usize> = table
                .chunks_exact(SHDR_SIZE)
                .map(|h| read::u32_at(h, 0).unwrap_or(0) as usize)
                .collect();
            if let Some(strtab) = names {
                for (s, off) in secs.iter_mut().zip(name_offs) {
                    if let Some(n) = read::cstr(strtab, off) {
                        s.name = String::from_utf8_lossy(n).into_owned();
                    }
                }
            }
            secs
        };
        Ok(Self {
            data,
            entry,
            sections,
            segments,
        })
    }

    /// The whole file.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// `e_entry`.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// All section headers, in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The file bytes of the section called `name` (empty for `SHT_NOBITS`).
    pub fn section_data(&self, name: &str) -> Result<&'a [u8]> {
        let s = self
            .section(name)
            .ok_or_else(|| KernelError::NoSection(name.to_owned()))?;
        if s.kind == SHT_NOBITS {
            return Ok(&[]);
        }
        file_range(self.data, s.offset, s.size)
            .ok_or(bad("section runs past the end of the file", s.offset))
    }

    /// All program headers.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The file offset holding virtual address `va`, from the `PT_LOAD` segments (only
    /// addresses backed by file data, i.e. below `p_vaddr + p_filesz`).
    pub fn vaddr_to_offset(&self, va: u64) -> Option<usize> {
        self.segments
            .iter()
            .filter(|s| s.kind == PT_LOAD)
            .find_map(|s| {
                let delta = va.checked_sub(s.vaddr)?;
                if delta >= s.filesz {
                    return None;
                }
                let off = usize::try_from(s.offset.checked_add(delta)?).ok()?;
                (off < self.data.len()).then_some(off)
            })
    }

    /// `len` bytes at virtual address `va`, when they are all file-backed in one segment.
    pub fn read_at_vaddr(&self, va: u64, len: usize) -> Option<&'a [u8]> {
        self.segments
            .iter()
            .filter(|s| s.kind == PT_LOAD)
            .find_map(|s| {
                let delta = va.checked_sub(s.vaddr)?;
                let end = delta.checked_add(len as u64)?;
                if end > s.filesz {
                    return None;
                }
                file_range(self.data, s.offset.checked_add(delta)?, len as u64)
            })
    }
}

/// `len` bytes at file offset `off`, or `None` outside the file.
fn file_range(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    read::slice(data, usize::try_from(off).ok()?, usize::try_from(len).ok()?)
}

/// A header table of `n` entries of `size` bytes at `off`.
fn table(data: &[u8], off: u64, n: usize, size: usize) -> Result<&[u8]> {
    file_range(data, off, (n * size) as u64)
        .ok_or(bad("header table runs past the end of the file", off))
}

fn parse_shdr(h: &[u8]) -> Section {
    let u32f = |o| read::u32_at(h, o).unwrap_or(0);
    let u64f = |o| read::u64_at(h, o).unwrap_or(0);
    Section {
        name: String::new(),
        kind: u32f(4),
        flags: u64f(8),
        addr: u64f(0x10),
        offset: u64f(0x18),
        size: u64f(0x20),
    }
}

fn parse_phdr(h: &[u8]) -> Segment {
    let u32f = |o| read::u32_at(h, o).unwrap_or(0);
    let u64f = |o| read::u64_at(h, o).unwrap_or(0);
    Segment {
        kind: u32f(0),
        flags: u32f(4),
        offset: u64f(8),
        vaddr: u64f(0x10),
        paddr: u64f(0x18),
        filesz: u64f(0x20),
        memsz: u64f(0x28),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a small ELF64 file with one PT_LOAD segment (`.text` at `0xffffffff81000000`)
    /// and the given extra (name, data) sections, all non-allocated except `.text`.
    pub(crate) fn build_elf(text: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut f = vec![0u8; EHDR_SIZE + PHDR_SIZE];
        let mut secs: Vec<(String, u32, u64, u64, u64)> = vec![(String::new(), 0, 0, 0, 0)];
        let text_off = f.len() as u64;
        f.extend_from_slice(text);
        secs.push((
            ".text".into(),
            1,
            0xffff_ffff_8100_0000,
            text_off,
            text.len() as u64,
        ));
        for (name, d) in extra {
            let off = f.len() as u64;
            f.extend_from_slice(d);
            secs.push(((*name).into(), 1, 0, off, d.len() as u64));
        }
        let mut strtab = vec![0u8];
        let mut name_offs = vec![0u32];
        for (n, ..) in secs.iter().skip(1) {
            name_offs.push(strtab.len() as u32);
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        name_offs.push(strtab.len() as u32);
        strtab.extend_from_slice(b".shstrtab\0");
        let str_off = f.len() as u64;
        f.extend_from_slice(&strtab);
        secs.push((".shstrtab".into(), 3, 0, str_off, strtab.len() as u64));
        let shoff = f.len() as u64;
        for ((_, kind, addr, off, size), name) in secs.iter().zip(&name_offs) {
            let mut h = [0u8; SHDR_SIZE];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x10..0x18].copy_from_slice(&addr.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&h);
        }
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[0x20..0x28].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&(secs.len() as u16).to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&((secs.len() - 1) as u16).to_le_bytes());
        let p = EHDR_SIZE;
        f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[p + 8..p + 16].copy_from_slice(&text_off.to_le_bytes());
        f[p + 0x10..p + 0x18].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        f[p + 0x20..p + 0x28].copy_from_slice(&(text.len() as u64).to_le_bytes());
        f[p + 0x28..p + 0x30].copy_from_slice(&(text.len() as u64).to_le_bytes());
        f
    }

    #[test]
    fn sections_and_addresses() {
        let elf_bytes = build_elf(&[0x0f, 0x01, 0xf8, 0xc3], &[(".BTF", b"btfdata")]);
        let elf = Elf::parse(&elf_bytes).unwrap();
        assert_eq!(elf.section_data(".BTF").unwrap(), b"btfdata");
        assert_eq!(elf.section(".text").unwrap().addr, 0xffff_ffff_8100_0000);
        assert!(matches!(
            elf.section_data(".nope"),
            Err(KernelError::NoSection(_))
        ));
        assert_eq!(
            elf.read_at_vaddr(0xffff_ffff_8100_0000, 3),
            Some(&[0x0f, 0x01, 0xf8][..])
        );
        assert_eq!(elf.read_at_vaddr(0xffff_ffff_8100_0002, 3), None);
        assert_eq!(
            elf.vaddr_to_offset(0xffff_ffff_8100_0003),
            Some(EHDR_SIZE + PHDR_SIZE + 3)
        );
        assert_eq!(elf.vaddr_to_offset(0xffff_ffff_8100_0004), None);
        assert_eq!(elf.vaddr_to_offset(0), None);
    }

    #[test]
    fn truncated_and_garbage_do_not_panic() {
        let elf_bytes = build_elf(&[0x90; 64], &[(".BTF", &[1, 2, 3])]);
        for cut in 0..elf_bytes.len() {
            if let Ok(e) = Elf::parse(&elf_bytes[..cut]) {
                let _ = e.section_data(".BTF");
                let _ = e.read_at_vaddr(0xffff_ffff_8100_0000, 64);
            }
        }
        let mut x = 0x1234_5678_u32;
        let mut buf = elf_bytes.clone();
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = 6 + x as usize % (buf.len() - 6);
            buf[i] = (x >> 8) as u8;
            if let Ok(e) = Elf::parse(&buf) {
                let _ = e.section_data(".BTF");
                let _ = e.read_at_vaddr(0xffff_ffff_8100_0000, 64);
                let _ = e.vaddr_to_offset(x as u64);
            }
        }
    }
}
