//! Guest memory in a mapped file: QEMU's shared memory backend (and, privately mapped, dumps).

use std::{fs::File, os::fd::AsRawFd};

use crate::{regions::RegionMap, MemError, PhysAddr, PhysMemory, Region, Result};

/// A whole file mapped into this process, with guest physical ranges laid over it.
#[derive(Debug)]
pub(crate) struct FileMapping {
    base: *mut u8,
    map_len: usize,
    map: RegionMap,
}

// SAFETY: the mapping is owned by this value and only accessed through raw-pointer copies
// bounded by `map_len`; concurrent guest writes only change byte values.
unsafe impl Send for FileMapping {}
// SAFETY: as above; no references into the mapping are ever handed out.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// Maps all of `file` (`shared`: writes reach the file and the hypervisor; otherwise they
    /// stay in a private copy-on-write copy) and lays `regions` over it. `Err` is the reason.
    pub(crate) fn new(
        file: &File,
        regions: Vec<Region>,
        shared: bool,
    ) -> std::result::Result<Self, String> {
        let file_len = file.metadata().map_err(|e| e.to_string())?.len();
        if file_len == 0 {
            return Err("file is empty".into());
        }
        let map_len = usize::try_from(file_len).map_err(|_| "file too large to map")?;
        let map = RegionMap::new(regions, file_len)?;
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        // SAFETY: a fresh mapping of a file we hold open; the length is the file's; the result
        // is checked against MAP_FAILED before use. A private writable mapping of a read-only
        // descriptor is allowed (copy-on-write); a shared one needs a read-write descriptor,
        // which `MappedFileMemory::open` provides.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(FileMapping {
            base: base.cast(),
            map_len,
            map,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.map.size()
    }

    pub(crate) fn regions(&self) -> &[Region] {
        self.map.regions()
    }

    pub(crate) fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        let (base, map_len) = (self.base, self.map_len);
        let dst = buf.as_mut_ptr();
        self.map.for_each_part(addr, buf.len(), |off, r| {
            debug_assert!(off as usize + r.len() <= map_len);
            // SAFETY: `off + r.len()` is inside the mapping (RegionMap checked every region
            // against the file length, which is `map_len`); `r` is inside `buf`.
            unsafe {
                std::ptr::copy_nonoverlapping(base.add(off as usize), dst.add(r.start), r.len())
            };
            Ok(())
        })
    }

    /// A little-endian u64 with a single unaligned load when one region holds it (the
    /// page-table walker's access).
    #[inline]
    pub(crate) fn read_u64(&self, addr: PhysAddr) -> Result<u64> {
        match self.map.offset_of(addr, 8) {
            // SAFETY: `off + 8` is inside the mapping (RegionMap checked the region against
            // the file length); an unaligned read of plain bytes.
            Some(off) => Ok(u64::from_le(unsafe {
                std::ptr::read_unaligned(self.base.add(off as usize).cast::<u64>())
            })),
            None => {
                let mut b = [0u8; 8];
                self.read(addr, &mut b)?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    pub(crate) fn write(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        let (base, map_len) = (self.base, self.map_len);
        let src = buf.as_ptr();
        self.map.for_each_part(addr, buf.len(), |off, r| {
            debug_assert!(off as usize + r.len() <= map_len);
            // SAFETY: as in `read`, with source and destination swapped.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(r.start), base.add(off as usize), r.len())
            };
            Ok(())
        })
    }

    /// The mapped file's bytes `[off, off+len)`, copied out (for headers); `None` if outside.
    pub(crate) fn file_bytes(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        let end = off.checked_add(len as u64)?;
        if end > self.map_len as u64 {
            return None;
        }
        let mut v = vec![0u8; len];
        // SAFETY: `[off, end)` was just checked to lie inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(off as usize), v.as_mut_ptr(), len) };
        Some(v)
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `new`; nothing borrows it.
        unsafe {
            libc::munmap(self.base.cast(), self.map_len);
        }
    }
}

/// Guest memory shared with the hypervisor through a mapped file: QEMU's
/// `memory-backend-file,share=on`. Reads are zero-copy from the hypervisor's own pages.
#[derive(Debug)]
pub struct MappedFileMemory {
    mapping: FileMapping,
    path: String,
}

impl MappedFileMemory {
    /// Maps `path` (shared, read-write) and lays guest physical memory over it as `regions`
    /// describe. Regions must lie inside the file and must not overlap.
    pub fn open(path: &str, regions: Vec<Region>) -> Result<Self> {
        let err = |why: String| MemError::Source {
            path: path.to_string(),
            why,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        let mapping = FileMapping::new(&file, regions, true).map_err(err)?;
        Ok(MappedFileMemory {
            mapping,
            path: path.to_string(),
        })
    }

    /// Maps a whole file as guest memory starting at physical address 0.
    pub fn open_flat(path: &str) -> Result<Self> {
        let len = std::fs::metadata(path)
            .map_err(|e| MemError::Source {
                path: path.to_string(),
                why: e.to_string(),
            })?
            .len();
        Self::open(
            path,
            vec![Region {
                guest_start: PhysAddr(0),
                file_offset: 0,
                len,
            }],
        )
    }

    /// The path that was mapped.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The guest physical regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        self.mapping.regions()
    }
}

impl PhysMemory for MappedFileMemory {
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
