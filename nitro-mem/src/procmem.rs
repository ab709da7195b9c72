//! Guest memory read from the hypervisor process through `/proc/PID/mem`: for a QEMU whose RAM
//! is not in a shareable file. The file offset of `/proc/PID/mem` is a virtual address in that
//! process (proc(5)), so each guest RAM block is a region whose "file offset" is the host
//! virtual address QEMU mapped it at.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
};

use crate::{regions::RegionMap, MemError, PhysAddr, PhysMemory, Region, Result};

/// Guest memory in another process's address space, read with `pread` and written with
/// `pwrite` on `/proc/PID/mem` (needs ptrace permission over the process).
#[derive(Debug)]
pub struct ProcMemory {
    file: File,
    writable: bool,
    map: RegionMap,
    pid: u32,
    path: String,
}

impl ProcMemory {
    /// Opens `/proc/<pid>/mem` with the guest RAM blocks in `regions`, each
    /// `(guest physical start, host virtual address, length)`. Opens read-write if allowed,
    /// else read-only (writes then fail with [`MemError::Source`]).
    pub fn open(pid: u32, regions: Vec<(PhysAddr, u64, u64)>) -> Result<Self> {
        let path = format!("/proc/{pid}/mem");
        let err = |why: String| MemError::Source {
            path: path.clone(),
            why,
        };
        let (file, writable) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => (f, true),
            Err(_) => (File::open(&path).map_err(|e| err(e.to_string()))?, false),
        };
        let regions = regions
            .into_iter()
            .map(|(guest_start, host, len)| Region {
                guest_start,
                file_offset: host,
                len,
            })
            .collect();
        // Host user addresses are below 2^63 (/proc/PID/mem offsets are signed loff_t).
        let map = RegionMap::new(regions, i64::MAX as u64).map_err(err)?;
        Ok(ProcMemory {
            file,
            writable,
            map,
            pid,
            path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True when writes are possible.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// `(guest physical start, host virtual address, length)` of each block, sorted.
    pub fn regions(&self) -> Vec<(PhysAddr, u64, u64)> {
        self.map
            .regions()
            .iter()
            .map(|r| (r.guest_start, r.file_offset, r.len))
            .collect()
    }

    fn io_error(&self, what: &str, addr: PhysAddr, host: u64, e: std::io::Error) -> MemError {
        MemError::Source {
            path: self.path.clone(),
            why: format!("{what} at guest {addr} (host {host:#x}): {e}"),
        }
    }
}

impl PhysMemory for ProcMemory {
    fn size(&self) -> u64 {
        self.map.size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        self.map.for_each_part(addr, buf.len(), |host, r| {
            let part = buf
                .get_mut(r)
                .ok_or(MemError::PhysOutOfRange { addr, len: 0 })?;
            self.file
                .read_exact_at(part, host)
                .map_err(|e| self.io_error("read", addr, host, e))
        })
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(MemError::Source {
                path: self.path.clone(),
                why: format!("opened read-only; cannot write at guest {addr}"),
            });
        }
        self.map.for_each_part(addr, buf.len(), |host, r| {
            let part = buf
                .get(r)
                .ok_or(MemError::PhysOutOfRange { addr, len: 0 })?;
            self.file
                .write_all_at(part, host)
                .map_err(|e| self.io_error("write", addr, host, e))
        })
    }
}
