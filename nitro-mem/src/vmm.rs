//! Guest memory of a VM this process runs itself (kvm-ioctls), held in rust-vmm's vm-memory.

use std::fmt;

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, GuestMemoryRegion};

use crate::{MemError, PhysAddr, PhysMemory, Result};

/// A [`PhysMemory`] over vm-memory's guest memory (by default [`GuestMemoryMmap`], the
/// regions an in-process VMM registers with KVM). Reads and writes go straight to the mapped
/// regions; accesses that run into a hole fail without partial effect being reported as
/// success.
pub struct VmMemory<G = GuestMemoryMmap> {
    mem: G,
    size: u64,
}

impl<G: GuestMemory> VmMemory<G> {
    /// Wraps `mem`. Its region layout is read once: vm-memory collections are immutable.
    pub fn new(mem: G) -> Self {
        let size = mem
            .iter()
            .map(|r| r.start_addr().0.saturating_add(r.len()))
            .max()
            .unwrap_or(0);
        VmMemory { mem, size }
    }

    /// The wrapped guest memory.
    pub fn inner(&self) -> &G {
        &self.mem
    }

    /// Gives the wrapped guest memory back.
    pub fn into_inner(self) -> G {
        self.mem
    }
}

impl<G: GuestMemory> fmt::Debug for VmMemory<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmMemory")
            .field("regions", &self.mem.num_regions())
            .field("size", &self.size)
            .finish()
    }
}

impl<G: GuestMemory + Send + Sync> PhysMemory for VmMemory<G> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<()> {
        self.mem
            .read_slice(buf, GuestAddress(addr.0))
            .map_err(|_| MemError::PhysOutOfRange {
                addr,
                len: buf.len(),
            })
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<()> {
        self.mem
            .write_slice(buf, GuestAddress(addr.0))
            .map_err(|_| MemError::PhysOutOfRange {
                addr,
                len: buf.len(),
            })
    }
}
