//! Physical-memory sources.

use std::sync::RwLock;

use crate::{MemError, PhysAddr, Result};

/// Guest physical memory: the seam between a memory source and everything that reads it.
///
/// Implementations must be safe to call with any address and length the guest can make up:
/// an access outside memory is [`MemError::PhysOutOfRange`], never a panic.
pub trait PhysMemory: Send + Sync {
    /// Total size of guest physical memory covered by this source, in bytes (the highest
    /// address plus one; holes may exist below it).
    fn size(&self) -> u64;

    /// Reads `buf.len()` bytes at `addr`.
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()>;

    /// Writes `buf` at `addr`.
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()>;

    /// Reads a little-endian `u64` at `addr`.
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_phys(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads several ranges; each result is independent of the others.
    fn read_phys_many(&self, reqs: &mut [(PhysAddr, &mut [u8])]) -> Vec<Result<()>> {
        reqs.iter_mut()
            .map(|(a, b)| self.read_phys(*a, b))
            .collect()
    }
}

impl<T: PhysMemory + ?Sized> PhysMemory for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        (**self).write_phys(addr, buf)
    }
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        (**self).read_phys_u64(addr)
    }
    fn read_phys_many(&self, reqs: &mut [(PhysAddr, &mut [u8])]) -> Vec<Result<()>> {
        (**self).read_phys_many(reqs)
    }
}

impl<T: PhysMemory + ?Sized> PhysMemory for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        (**self).write_phys(addr, buf)
    }
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        (**self).read_phys_u64(addr)
    }
    fn read_phys_many(&self, reqs: &mut [(PhysAddr, &mut [u8])]) -> Vec<Result<()>> {
        (**self).read_phys_many(reqs)
    }
}

impl<T: PhysMemory + ?Sized> PhysMemory for std::sync::Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        (**self).read_phys(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        (**self).write_phys(addr, buf)
    }
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        (**self).read_phys_u64(addr)
    }
    fn read_phys_many(&self, reqs: &mut [(PhysAddr, &mut [u8])]) -> Vec<Result<()>> {
        (**self).read_phys_many(reqs)
    }
}

/// Guest memory held in a vector: for tests and synthetic guests.
#[derive(Debug)]
pub struct VecMemory {
    bytes: RwLock<Vec<u8>>,
    /// The vector's length, which never changes.
    size: u64,
}

impl VecMemory {
    /// Zeroed memory of `size` bytes.
    pub fn new(size: usize) -> Self {
        VecMemory {
            bytes: RwLock::new(vec![0; size]),
            size: size as u64,
        }
    }

    /// Memory holding `bytes`.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        VecMemory {
            size: bytes.len() as u64,
            bytes: RwLock::new(bytes),
        }
    }
}

pub(crate) fn range(addr: PhysAddr, len: usize, size: u64) -> Result<std::ops::Range<usize>> {
    let end = addr.0.checked_add(len as u64).filter(|&e| e <= size);
    match end {
        Some(end) => Ok(addr.0 as usize..end as usize),
        None => Err(MemError::PhysOutOfRange { addr, len }),
    }
}

impl PhysMemory for VecMemory {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        let bytes = self.bytes.read().unwrap_or_else(|e| e.into_inner());
        let r = range(addr, buf.len(), bytes.len() as u64)?;
        buf.copy_from_slice(&bytes[r]);
        Ok(())
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        let mut bytes = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        let r = range(addr, buf.len(), bytes.len() as u64)?;
        bytes[r].copy_from_slice(buf);
        Ok(())
    }
    fn read_phys_u64(&self, addr: PhysAddr) -> Result<u64> {
        let bytes = self.bytes.read().unwrap_or_else(|e| e.into_inner());
        let r = range(addr, 8, bytes.len() as u64)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[r]);
        Ok(u64::from_le_bytes(b))
    }
    fn read_phys_many(&self, reqs: &mut [(PhysAddr, &mut [u8])]) -> Vec<Result<()>> {
        // One lock for the whole batch.
        let bytes = self.bytes.read().unwrap_or_else(|e| e.into_inner());
        reqs.iter_mut()
            .map(|(a, b)| {
                let r = range(*a, b.len(), bytes.len() as u64)?;
                b.copy_from_slice(&bytes[r]);
                Ok(())
            })
            .collect()
    }
}

/// One contiguous range of guest physical memory backed by a range of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First guest physical address of the range.
    pub guest_start: PhysAddr,
    /// Offset of that address in the file.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
}
