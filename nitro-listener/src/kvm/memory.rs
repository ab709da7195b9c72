//! Guest RAM: a `vm-memory` mapping registered with KVM, seen by nitro as [`PhysMemory`].

use nitro_mem::{MemError, PhysAddr, PhysMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, GuestMemoryRegion};

/// Guest physical memory of an in-process VM: anonymous host memory mapped by `vm-memory`
/// and registered with KVM as memory slots. Reads and writes go straight to the pages the
/// guest uses (zero copy, no ioctl).
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    size: u64,
}

impl GuestRam {
    /// `size` bytes of zeroed RAM at guest physical address 0.
    pub fn new(size: u64) -> Result<Self, MemError> {
        let err = |why: String| MemError::Source {
            path: "anonymous guest RAM".into(),
            why,
        };
        let len = usize::try_from(size).map_err(|_| err(format!("size {size:#x} too large")))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(|e| err(e.to_string()))?;
        Ok(GuestRam { mem, size })
    }

    /// The `vm-memory` view, for code that wants its API.
    pub fn guest_memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// (guest physical start, length, host address) of each region, for KVM memory slots.
    pub(crate) fn regions(&self) -> Vec<(u64, u64, u64)> {
        self.mem
            .iter()
            .filter_map(|r| {
                let host = self.mem.get_host_address(r.start_addr()).ok()?;
                Some((r.start_addr().0, r.len(), host as u64))
            })
            .collect()
    }
}

impl PhysMemory for GuestRam {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> nitro_mem::Result<()> {
        self.mem
            .read_slice(buf, GuestAddress(addr.0))
            .map_err(|_| MemError::PhysOutOfRange {
                addr,
                len: buf.len(),
            })
    }

    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> nitro_mem::Result<()> {
        self.mem
            .write_slice(buf, GuestAddress(addr.0))
            .map_err(|_| MemError::PhysOutOfRange {
                addr,
                len: buf.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_bounds() {
        let ram = GuestRam::new(0x10000).unwrap();
        ram.write_phys(PhysAddr(0xfff8), &7u64.to_le_bytes())
            .unwrap();
        assert_eq!(ram.read_phys_u64(PhysAddr(0xfff8)).unwrap(), 7);
        let mut b = [0u8; 16];
        assert!(matches!(
            ram.read_phys(PhysAddr(0xfff8), &mut b),
            Err(MemError::PhysOutOfRange { len: 16, .. })
        ));
        assert!(ram.read_phys(PhysAddr(u64::MAX), &mut b).is_err());
        assert_eq!(ram.regions().len(), 1);
    }
}
