//! PE32+ images in guest memory: headers, sections, exports and the CodeView debug record.
//!
//! Reference: Microsoft "PE Format" specification (learn.microsoft.com/windows/win32/debug/
//! pe-format): DOS `e_lfanew` at 0x3c; `PE\0\0`; COFF file header (20 bytes); optional header
//! (PE32+ magic 0x20b, `SizeOfImage` at +56, `NumberOfRvaAndSizes` at +108, data directories
//! at +112: export = 0, debug = 6); section headers of 40 bytes; export directory (40 bytes);
//! debug directory entries (28 bytes, type 2 = CodeView); the CodeView "RSDS" record
//! (signature, GUID, age, PDB path) as documented in the Microsoft PDB / DIA notes.
//!
//! Everything is bounded: at most 96 sections, 65536 exported names, 64 debug entries, names of
//! 256 bytes, and every RVA is checked against `SizeOfImage`.

use nitro_mem::{VirtAddr, VirtRead};

use crate::{Result, WinError};

/// IMAGE_SCN_MEM_EXECUTE.
pub const SCN_MEM_EXECUTE: u32 = 0x2000_0000;
const MAX_SECTIONS: usize = 96;
const MAX_NAMES: u32 = 65_536;
const MAX_DEBUG: u32 = 64;

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name (up to 8 bytes).
    pub name: String,
    /// RVA of the section.
    pub rva: u32,
    /// Size in memory.
    pub size: u32,
    /// Characteristics (IMAGE_SCN_*).
    pub characteristics: u32,
}

impl Section {
    /// True for code sections.
    pub fn is_executable(&self) -> bool {
        self.characteristics & SCN_MEM_EXECUTE != 0
    }
}

/// The parsed headers of an image mapped at `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeImage {
    /// Where the image is mapped.
    pub base: u64,
    /// COFF machine (0x8664 for x64).
    pub machine: u16,
    /// COFF TimeDateStamp.
    pub timestamp: u32,
    /// OptionalHeader.SizeOfImage.
    pub size_of_image: u32,
    /// Sections.
    pub sections: Vec<Section>,
    /// Export directory (RVA, size).
    pub export_dir: (u32, u32),
    /// Debug directory (RVA, size).
    pub debug_dir: (u32, u32),
}

/// The CodeView record: what a symbol server needs to find the PDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdbInfo {
    /// GUID as the symbol-server path writes it (`Data1`-`Data4` in upper-case hex).
    pub guid: String,
    /// Age.
    pub age: u32,
    /// PDB file name, e.g. `ntkrnlmp.pdb`.
    pub file: String,
}

impl PdbInfo {
    /// The symbol-server key: GUID followed by the age in hex (`3844DBB9...A2` + `1`).
    pub fn key(&self) -> String {
        format!("{}{:X}", self.guid, self.age)
    }
}

fn bad(base: u64, why: &'static str) -> WinError {
    WinError::BadImage { base, why }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// True when `base` starts with `MZ` and a `PE\0\0` signature at `e_lfanew`.
pub fn looks_like_pe(mem: &dyn VirtRead, base: u64) -> bool {
    let mut dos = [0u8; 0x40];
    if mem.read_virt(VirtAddr(base), &mut dos).is_err() || &dos[..2] != b"MZ" {
        return false;
    }
    let lfanew = u64::from(u32_at(&dos, 0x3c));
    if lfanew > 0x1000 - 24 {
        return false;
    }
    matches!(mem.read_u32(VirtAddr(base + lfanew)), Ok(0x0000_4550))
}

/// Parses the headers of the image at `base`.
pub fn parse(mem: &dyn VirtRead, base: u64) -> Result<PeImage> {
    // DOS, file and optional headers and the section table all lie in the first page of
    // ntoskrnl; read it whole (SizeOfHeaders is 0x400..0x1000 in practice).
    let mut hdr = vec![0u8; 0x1000];
    mem.read_virt(VirtAddr(base), &mut hdr)?;
    if hdr.get(..2) != Some(b"MZ".as_slice()) {
        return Err(bad(base, "no MZ signature"));
    }
    let lfanew = u32_at(&hdr, 0x3c) as usize;
    if lfanew > 0x1000 - 24 - 112 || u32_at(&hdr, lfanew) != 0x0000_4550 {
        return Err(bad(base, "no PE signature"));
    }
    let coff = lfanew + 4;
    let machine = u16_at(&hdr, coff);
    let nsections = u16_at(&hdr, coff + 2) as usize;
    let timestamp = u32_at(&hdr, coff + 4);
    let opt_size = u16_at(&hdr, coff + 16) as usize;
    let opt = coff + 20;
    if u16_at(&hdr, opt) != 0x20b {
        return Err(bad(base, "not a PE32+ image"));
    }
    let size_of_image = u32_at(&hdr, opt + 56);
    if size_of_image == 0 || size_of_image > 0x1000_0000 {
        return Err(bad(base, "implausible SizeOfImage"));
    }
    let ndirs = u32_at(&hdr, opt + 108).min(16) as usize;
    let dir = |i: usize| -> (u32, u32) {
        if i < ndirs {
            (
                u32_at(&hdr, opt + 112 + 8 * i),
                u32_at(&hdr, opt + 116 + 8 * i),
            )
        } else {
            (0, 0)
        }
    };
    let export_dir = dir(0);
    let debug_dir = dir(6);
    if nsections > MAX_SECTIONS {
        return Err(bad(base, "too many sections"));
    }
    let sec0 = opt + opt_size;
    let mut sections = Vec::with_capacity(nsections);
    for i in 0..nsections {
        let s = sec0 + 40 * i;
        let Some(raw) = hdr.get(s..s + 40) else {
            return Err(bad(base, "section table beyond the first page"));
        };
        let name_len = raw[..8].iter().position(|&b| b == 0).unwrap_or(8);
        sections.push(Section {
            name: String::from_utf8_lossy(&raw[..name_len]).into_owned(),
            size: u32_at(raw, 8),
            rva: u32_at(raw, 12),
            characteristics: u32_at(raw, 36),
        });
    }
    Ok(PeImage {
        base,
        machine,
        timestamp,
        size_of_image,
        sections,
        export_dir,
        debug_dir,
    })
}

impl PeImage {
    /// True when `addr` lies inside the image.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < u64::from(self.size_of_image)
    }

    fn rva_ok(&self, rva: u32, len: u32) -> bool {
        u64::from(rva) + u64::from(len) <= u64::from(self.size_of_image)
    }

    /// The RVA of the export `name` (bounded binary search over the sorted name table).
    pub fn export_rva(&self, mem: &dyn VirtRead, name: &str) -> Result<Option<u32>> {
        let (rva, size) = self.export_dir;
        if rva == 0 || size < 40 || !self.rva_ok(rva, 40) {
            return Ok(None);
        }
        let mut d = [0u8; 40];
        mem.read_virt(VirtAddr(self.base + u64::from(rva)), &mut d)?;
        let nfuncs = u32_at(&d, 20);
        let nnames = u32_at(&d, 24).min(MAX_NAMES);
        let (funcs, names, ords) = (u32_at(&d, 28), u32_at(&d, 32), u32_at(&d, 36));
        if !self.rva_ok(names, nnames * 4) || !self.rva_ok(ords, nnames * 2) {
            return Err(bad(self.base, "export name table outside the image"));
        }
        let (mut lo, mut hi) = (0u32, nnames);
        let mut steps = 0;
        while lo < hi && steps < 32 {
            steps += 1;
            let mid = lo + (hi - lo) / 2;
            let name_rva =
                mem.read_u32(VirtAddr(self.base + u64::from(names) + 4 * u64::from(mid)))?;
            if !self.rva_ok(name_rva, 1) {
                return Err(bad(self.base, "export name outside the image"));
            }
            let (s, _) = mem.read_cstring_prefix(VirtAddr(self.base + u64::from(name_rva)), 256)?;
            match s.as_slice().cmp(name.as_bytes()) {
                std::cmp::Ordering::Equal => {
                    let ord =
                        mem.read_u16(VirtAddr(self.base + u64::from(ords) + 2 * u64::from(mid)))?;
                    if u32::from(ord) >= nfuncs || !self.rva_ok(funcs, (u32::from(ord) + 1) * 4) {
                        return Err(bad(self.base, "export ordinal out of range"));
                    }
                    let f =
                        mem.read_u32(VirtAddr(self.base + u64::from(funcs) + 4 * u64::from(ord)))?;
                    return Ok(Some(f));
                }
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// The CodeView (RSDS) record named by the debug directory, if any.
    pub fn pdb_info(&self, mem: &dyn VirtRead) -> Result<Option<PdbInfo>> {
        let (rva, size) = self.debug_dir;
        if rva == 0 || size < 28 || !self.rva_ok(rva, size) {
            return Ok(None);
        }
        let n = (size / 28).min(MAX_DEBUG);
        for i in 0..n {
            let mut e = [0u8; 28];
            mem.read_virt(
                VirtAddr(self.base + u64::from(rva) + 28 * u64::from(i)),
                &mut e,
            )?;
            let (kind, len, data) = (u32_at(&e, 12), u32_at(&e, 16), u32_at(&e, 20));
            if kind != 2 || len < 24 || data == 0 || !self.rva_ok(data, 24) {
                continue;
            }
            let mut r = [0u8; 24];
            mem.read_virt(VirtAddr(self.base + u64::from(data)), &mut r)?;
            if &r[..4] != b"RSDS" {
                continue;
            }
            let guid = format!(
                "{:08X}{:04X}{:04X}{}",
                u32_at(&r, 4),
                u16_at(&r, 8),
                u16_at(&r, 10),
                r[12..20]
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>()
            );
            let age = u32_at(&r, 20);
            let (file, _) =
                mem.read_cstring_prefix(VirtAddr(self.base + u64::from(data) + 24), 256)?;
            return Ok(Some(PdbInfo {
                guid,
                age,
                file: String::from_utf8_lossy(&file).into_owned(),
            }));
        }
        Ok(None)
    }
}

/// Scans down from `addr`, one page at a time, for the start of the PE image containing it;
/// at most `max_scan` bytes. Pages that are not mapped (discarded INIT sections) are skipped.
pub fn find_image_base(mem: &dyn VirtRead, addr: u64, max_scan: u64) -> Result<u64> {
    let start = addr & !0xfff;
    let mut off = 0u64;
    while off <= max_scan {
        let Some(base) = start.checked_sub(off) else {
            break;
        };
        if looks_like_pe(mem, base) {
            if let Ok(img) = parse(mem, base) {
                if img.contains(addr) {
                    return Ok(base);
                }
            }
        }
        off += 0x1000;
    }
    Err(WinError::KernelNotFound {
        from: addr,
        scanned: max_scan,
    })
}
