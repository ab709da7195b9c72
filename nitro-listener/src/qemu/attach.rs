//! Guest memory of a QEMU that nitro did not start: its RAM file (a `memory-backend-file` or
//! `memory-backend-memfd` that the user shares), or the QEMU process's own address space
//! through `/proc/PID/mem`.
//!
//! RAM is laid out as on QEMU's `pc` machine ([`pc_ram_regions`]); for guests under 2.75 GiB
//! (`q35`) or 3.5 GiB (`pc`) that is one block at physical 0, the same on both machines
//! (QEMU `hw/i386/pc_q35.c`, `hw/i386/pc_piix.c`).

use std::path::Path;

use nitro_mem::{MappedFileMemory, ProcMemory};

use super::{launch::pc_ram_regions, QemuDriver};
use crate::{ListenerError, Result};

fn err(what: &str, why: impl std::fmt::Display) -> ListenerError {
    ListenerError::Io {
        endpoint: what.to_string(),
        source: std::io::Error::other(why.to_string()),
    }
}

/// Maps a guest RAM file (shared with QEMU) whose size is the guest's RAM size.
pub fn open_memory_file(path: &Path) -> Result<MappedFileMemory> {
    let shown = path.display().to_string();
    let len = std::fs::metadata(path).map_err(|e| err(&shown, e))?.len();
    if len < 1 << 20 {
        return Err(err(&shown, "too small to be guest RAM"));
    }
    MappedFileMemory::open(&shown, pc_ram_regions(len >> 20)).map_err(|e| err(&shown, e))
}

/// The guest's base RAM size in bytes, asked through the gdbstub's monitor bridge
/// (`info memory_size_summary`: "base memory: N").
pub fn ram_size(driver: &mut QemuDriver) -> Result<u64> {
    let out = driver.monitor("info memory_size_summary")?;
    parse_memory_summary(&out).ok_or_else(|| {
        ListenerError::Unsupported(format!(
            "cannot read the RAM size from `info memory_size_summary`: {:?}",
            out.chars().take(120).collect::<String>()
        ))
    })
}

/// Parses `info memory_size_summary` output.
pub fn parse_memory_summary(out: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("base memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// One line of `/proc/PID/maps` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsLine {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Permissions, e.g. `rw-s`.
    pub perms: String,
    /// Mapped path, empty for anonymous memory.
    pub path: String,
}

/// Parses `/proc/PID/maps` text, skipping malformed lines.
pub fn parse_maps(text: &str) -> Vec<MapsLine> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let (_off, _dev, _inode) = (f.next()?, f.next()?, f.next()?);
            let path = f.collect::<Vec<_>>().join(" ");
            let (a, b) = range.split_once('-')?;
            Some(MapsLine {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                perms: perms.to_string(),
                path,
            })
        })
        .collect()
}

/// The host address of QEMU's guest RAM block of `size` bytes: a read-write mapping of
/// exactly that size (QEMU maps each RAM block on its own, between guard areas:
/// `util/mmap-alloc.c`), preferring a file-backed one (a memory backend) and then the
/// first anonymous one.
pub fn find_ram_mapping(maps: &[MapsLine], size: u64) -> Option<u64> {
    let fits = |m: &&MapsLine| m.perms.starts_with("rw") && m.end.wrapping_sub(m.start) == size;
    maps.iter()
        .filter(fits)
        .find(|m| m.path.starts_with('/') && !m.path.contains(".so"))
        .or_else(|| maps.iter().filter(fits).find(|m| m.path.is_empty()))
        .or_else(|| maps.iter().find(fits))
        .map(|m| m.start)
}

/// Guest memory of QEMU process `pid` through `/proc/PID/mem`, for RAM of `size` bytes.
pub fn open_proc_memory(pid: u32, size: u64) -> Result<ProcMemory> {
    let maps_path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&maps_path).map_err(|e| err(&maps_path, e))?;
    let base = find_ram_mapping(&parse_maps(&text), size).ok_or_else(|| {
        err(
            &maps_path,
            format!("no read-write mapping of {size:#x} bytes (the guest's RAM)"),
        )
    })?;
    let regions = pc_ram_regions(size >> 20)
        .into_iter()
        .map(|r| (r.guest_start, base + r.file_offset, r.len))
        .collect();
    ProcMemory::open(pid, regions).map_err(|e| err(&format!("/proc/{pid}/mem"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_block_in_maps() {
        let maps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64
7f0000000000-7f0010000000 rw-s 00000000 00:1a 77 /dev/shm/nitro-ram-1 (deleted)
7f0010000000-7f0010001000 ---p 00000000 00:00 0
7f1000000000-7f1010000000 rw-p 00000000 00:00 0
";
        let m = parse_maps(maps);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].path, "/dev/shm/nitro-ram-1 (deleted)");
        assert_eq!(find_ram_mapping(&m, 256 << 20), Some(0x7f00_0000_0000));
        assert_eq!(find_ram_mapping(&m[2..], 256 << 20), Some(0x7f10_0000_0000));
        assert_eq!(find_ram_mapping(&m, 512 << 20), None);
        assert_eq!(
            parse_memory_summary("base memory: 268435456\nplugged memory: 0\n"),
            Some(268_435_456)
        );
        assert_eq!(parse_memory_summary("nonsense"), None);
    }
}
