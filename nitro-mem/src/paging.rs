//! x86-64 page-table walking (4-level and 5-level paging, 2 MiB and 1 GiB pages).
//!
//! Reference: Intel SDM Vol. 3A, 4.5 "4-Level Paging and 5-Level Paging" (entry formats in
//! Tables 4-15 to 4-20). Bit 0 = present, bit 1 = R/W, bit 2 = U/S, bit 7 = page size (PS) in
//! PDPTE/PDE, bit 63 = execute-disable; the next-level address is bits 51:12.

use crate::{MemError, PhysAddr, PhysMemory, Result, VirtAddr};

/// Physical address bits 51:12 of a paging-structure entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// PAT bit of a 2 MiB or 1 GiB page entry (bit 12; bit 7 in a 4 KiB PTE).
const PAT_LARGE: u64 = 1 << 12;

/// Paging mode of an address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 4-level paging: 48-bit virtual addresses.
    Level4,
    /// 5-level paging (CR4.LA57): 57-bit virtual addresses.
    Level5,
}

impl PagingMode {
    /// The mode CR4 selects (bit 12, LA57).
    pub fn from_cr4(cr4: u64) -> Self {
        if cr4 & (1 << 12) != 0 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        }
    }

    /// Number of paging levels: 4 or 5.
    pub fn levels(self) -> u8 {
        match self {
            PagingMode::Level4 => 4,
            PagingMode::Level5 => 5,
        }
    }

    /// Number of significant virtual-address bits: 48 or 57.
    pub fn va_bits(self) -> u32 {
        match self {
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }

    /// True when `va` is canonical in this mode.
    pub fn is_canonical(self, va: VirtAddr) -> bool {
        let shift = 64 - self.va_bits();
        (((va.0 << shift) as i64) >> shift) as u64 == va.0
    }
}

/// The result of translating one virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to.
    pub phys: PhysAddr,
    /// Size of the page that maps it: 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
    /// Writable at every level.
    pub writable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Execute-disable set at some level.
    pub no_execute: bool,
}

impl Translation {
    /// Bytes from the translated address to the end of its page.
    pub fn bytes_left_in_page(&self) -> u64 {
        self.page_size - (self.phys.0 & (self.page_size - 1))
    }
}

/// A virtual address space: guest memory plus the page-table root (CR3) that maps it.
#[derive(Debug, Clone, Copy)]
pub struct AddressSpace<M> {
    mem: M,
    root: PhysAddr,
    mode: PagingMode,
}

impl<M: PhysMemory> AddressSpace<M> {
    /// A 4-level address space rooted at `cr3` (PCID and flag bits are masked off).
    pub fn new(mem: M, cr3: PhysAddr) -> Self {
        Self::with_mode(mem, cr3, PagingMode::Level4)
    }

    /// An address space rooted at `cr3` in the given paging mode.
    pub fn with_mode(mem: M, cr3: PhysAddr, mode: PagingMode) -> Self {
        AddressSpace {
            mem,
            root: cr3_root(cr3.0),
            mode,
        }
    }

    /// The page-table root.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// The physical memory underneath.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Walks the page tables for `va`. Terminates after at most five reads whatever the
    /// tables contain (a self-referencing entry is followed once per level, as the MMU does).
    pub fn translate(&self, va: VirtAddr) -> Result<Translation> {
        walk(&self.mem, self.root, self.mode, va)
    }
}

/// Anything that turns virtual addresses into physical ones: [`AddressSpace`] (walks every
/// time) and [`CachedAddressSpace`](crate::CachedAddressSpace) (walks on a cache miss).
pub trait Translate {
    /// Translates one virtual address.
    fn translate(&self, va: VirtAddr) -> Result<Translation>;

    /// Translates several virtual addresses; each result is independent of the others.
    fn translate_many(&self, vas: &[VirtAddr]) -> Vec<Result<Translation>> {
        vas.iter().map(|&va| self.translate(va)).collect()
    }
}

impl<M: PhysMemory> Translate for AddressSpace<M> {
    fn translate(&self, va: VirtAddr) -> Result<Translation> {
        AddressSpace::translate(self, va)
    }
}

/// The page-table root in a CR3 value: bits 51:12 (PCID in bits 11:0 and the no-flush bit 63
/// are dropped).
pub fn cr3_root(cr3: u64) -> PhysAddr {
    PhysAddr(cr3 & ADDR_MASK)
}

/// Bit 12 of CR3 selects the user half of a Linux page-table-isolation pair: the kernel
/// allocates the PGD as an 8 KiB-aligned pair, kernel PGD first, user PGD 4 KiB above it.
/// Linux arch/x86/entry/calling.h (`PTI_USER_PGTABLE_BIT` = `PAGE_SHIFT`) and
/// arch/x86/include/asm/pgalloc.h (`PGD_ALLOCATION_ORDER` 1 with PTI).
const PTI_USER_BIT: u64 = 1 << 12;

/// The kernel page-table root of a Linux PTI pair, whichever half `cr3` holds.
pub fn kernel_root(cr3: u64) -> PhysAddr {
    PhysAddr(cr3 & ADDR_MASK & !PTI_USER_BIT)
}

/// The user page-table root of a Linux PTI pair (kernel PGD + 4 KiB), whichever half `cr3`
/// holds. Only meaningful when the guest runs with PTI; otherwise the page is not a PGD.
pub fn user_root(cr3: u64) -> PhysAddr {
    PhysAddr((cr3 & ADDR_MASK) | PTI_USER_BIT)
}

/// `(kernel_root(cr3), user_root(cr3))`.
pub fn pti_pair(cr3: u64) -> (PhysAddr, PhysAddr) {
    (kernel_root(cr3), user_root(cr3))
}

/// Walks the paging structures of `mode` rooted at `root` (already masked) for `va`.
///
/// Intel SDM Vol. 3A 4.5.4 "Linear-Address Translation with 4-Level Paging and 5-Level
/// Paging": each level uses 9 bits of the address, from bit 48 (PML5) down to bit 12 (PT).
pub(crate) fn walk<M: PhysMemory + ?Sized>(
    mem: &M,
    root: PhysAddr,
    mode: PagingMode,
    va: VirtAddr,
) -> Result<Translation> {
    if !mode.is_canonical(va) {
        return Err(MemError::NonCanonical(va));
    }
    let top = mode.levels();
    let mut table = root;
    // The entry that pointed at `table`: (level, address, value).
    let mut parent: Option<(u8, PhysAddr, u64)> = None;
    let (mut writable, mut user, mut nx) = (true, true, false);
    for level in (1..=top).rev() {
        let shift = 12 + 9 * (u32::from(level) - 1);
        let index = (va.0 >> shift) & 0x1ff;
        // `table` has at most 52 bits, so this cannot overflow.
        let entry_addr = PhysAddr(table.0 + index * 8);
        let entry = mem.read_phys_u64(entry_addr).map_err(|_| match parent {
            Some((plevel, paddr, pentry)) => MemError::BrokenTable {
                addr: va,
                level: plevel,
                entry_addr: paddr,
                entry: pentry,
                why: "entry points to a table outside guest memory",
            },
            None => MemError::BrokenTable {
                addr: va,
                level,
                entry_addr,
                entry: root.0,
                why: "page-table root (CR3) lies outside guest memory",
            },
        })?;
        if entry & PRESENT == 0 {
            return Err(MemError::NotPresent {
                addr: va,
                level,
                entry_addr,
                entry,
            });
        }
        let broken = |why| MemError::BrokenTable {
            addr: va,
            level,
            entry_addr,
            entry,
            why,
        };
        writable &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        nx |= entry & NX != 0;
        let large = entry & PAGE_SIZE_BIT != 0;
        if large && level > 3 {
            // SDM Tables 4-14/4-15: bit 7 of a PML5E or PML4E is reserved (must be 0).
            return Err(broken("page-size bit set where it is reserved"));
        }
        if level == 1 || large {
            let page_size = 1u64 << shift;
            let offset_mask = page_size - 1;
            // SDM Tables 4-17 and 4-19: in a PDPTE mapping 1 GiB, bits 29:13 are reserved; in
            // a PDE mapping 2 MiB, bits 20:13 (bit 12 is PAT in both).
            if level > 1 && entry & ADDR_MASK & offset_mask & !PAT_LARGE != 0 {
                return Err(broken("reserved address bits set in a large-page entry"));
            }
            let phys = PhysAddr((entry & ADDR_MASK & !offset_mask) | (va.0 & offset_mask));
            if phys.0 >= mem.size() {
                return Err(broken("page lies outside guest memory"));
            }
            return Ok(Translation {
                phys,
                page_size,
                writable,
                user,
                no_execute: nx,
            });
        }
        parent = Some((level, entry_addr, entry));
        table = PhysAddr(entry & ADDR_MASK);
    }
    // Unreachable: level 1 always returns above. Kept as an error rather than a panic.
    Err(MemError::BrokenTable {
        addr: va,
        level: 1,
        entry_addr: table,
        entry: 0,
        why: "page-table walk ended without a leaf",
    })
}
