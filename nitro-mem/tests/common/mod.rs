//! A reference page-table builder: allocates x86-64 paging structures in a `VecMemory` and
//! records what it mapped, so the translator can be checked against an independent model.
//!
//! Entry format: Intel SDM Vol. 3A 4.5, Tables 4-15 to 4-20 (P = bit 0, R/W = bit 1,
//! U/S = bit 2, PS = bit 7, XD = bit 63, address in bits 51:12).
#![allow(dead_code)]

use nitro_mem::{MemError, PagingMode, PhysAddr, PhysMemory, VecMemory, VirtAddr};

pub const P: u64 = 1;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PS: u64 = 1 << 7;
pub const XD: u64 = 1 << 63;
pub const K4: u64 = 0x1000;
pub const M2: u64 = 0x20_0000;
pub const G1: u64 = 0x4000_0000;

/// One mapping the builder made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub va: u64,
    pub pa: u64,
    pub size: u64,
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
}

/// Page tables in a `VecMemory`, plus the list of mappings made.
pub struct Builder {
    pub mem: VecMemory,
    pub root: u64,
    pub mode: PagingMode,
    pub maps: Vec<Mapping>,
    next: u64,
    limit: u64,
}

fn levels(mode: PagingMode) -> u32 {
    match mode {
        PagingMode::Level4 => 4,
        PagingMode::Level5 => 5,
    }
}

/// Sign-extends a `bits`-bit address to a canonical one.
pub fn canonical(va: u64, mode: PagingMode) -> u64 {
    let shift = 64 - if mode == PagingMode::Level5 { 57 } else { 48 };
    (((va << shift) as i64) >> shift) as u64
}

impl Builder {
    /// Tables are allocated from 0x1000 up within `table_bytes` of memory.
    pub fn new(mode: PagingMode, table_bytes: usize) -> Self {
        let mut b = Builder {
            mem: VecMemory::new(table_bytes),
            root: 0,
            mode,
            maps: vec![],
            next: 0x1000,
            limit: table_bytes as u64,
        };
        b.root = b.alloc().expect("room for the root");
        b
    }

    /// A zeroed 4 KiB table.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.next + K4 > self.limit {
            return None;
        }
        let t = self.next;
        self.next += K4;
        Some(t)
    }

    pub fn entry(&self, addr: u64) -> u64 {
        self.mem.read_phys_u64(PhysAddr(addr)).unwrap()
    }

    pub fn set_entry(&self, addr: u64, v: u64) {
        self.mem
            .write_phys(PhysAddr(addr), &v.to_le_bytes())
            .unwrap();
    }

    /// Maps the `size`-page at `va` (aligned, canonical) to `pa` (aligned). Returns false,
    /// changing nothing visible, if it would overlap an existing mapping or tables run out.
    pub fn map(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        writable: bool,
        user: bool,
        nx: bool,
    ) -> bool {
        assert_eq!(va % size, 0);
        assert_eq!(pa % size, 0);
        let leaf_level = match size {
            K4 => 1,
            M2 => 2,
            G1 => 3,
            _ => panic!("bad size"),
        };
        let mut table = self.root;
        for level in (leaf_level + 1..=levels(self.mode)).rev() {
            let slot = table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
            let e = self.entry(slot);
            if e & P == 0 {
                let Some(t) = self.alloc() else { return false };
                self.set_entry(slot, t | P | RW | US);
                table = t;
            } else if e & PS != 0 {
                return false; // a large page already covers it
            } else {
                table = e & 0x000f_ffff_ffff_f000;
            }
        }
        let slot = table + ((va >> (12 + 9 * (leaf_level - 1))) & 0x1ff) * 8;
        if self.entry(slot) & P != 0 {
            return false; // a page or a table of smaller pages is there
        }
        let mut e = pa | P;
        if writable {
            e |= RW;
        }
        if user {
            e |= US;
        }
        if nx {
            e |= XD;
        }
        if size != K4 {
            e |= PS;
        }
        self.set_entry(slot, e);
        self.maps.push(Mapping {
            va,
            pa,
            size,
            writable,
            user,
            nx,
        });
        true
    }

    /// What the model says `va` maps to.
    pub fn expect(&self, va: u64) -> Option<(u64, Mapping)> {
        self.maps
            .iter()
            .find(|m| va >= m.va && va - m.va < m.size)
            .map(|m| (m.pa + (va - m.va), *m))
    }
}

/// The builder's tables seen as a big guest: `size()` claims `size` bytes so that leaves may
/// point anywhere below it, while only the tables are backed.
pub struct BigGuest<'a> {
    pub tables: &'a VecMemory,
    pub size: u64,
}

impl PhysMemory for BigGuest<'_> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> nitro_mem::Result<()> {
        self.tables.read_phys(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, _buf: &[u8]) -> nitro_mem::Result<()> {
        Err(MemError::PhysOutOfRange { addr, len: 0 })
    }
}

/// Writes a u64 into memory.
pub fn put(mem: &VecMemory, addr: u64, v: u64) {
    mem.write_phys(PhysAddr(addr), &v.to_le_bytes()).unwrap();
}

/// The virtual address whose indices are `idx` (top level first), offset `off`, canonical.
pub fn va_of(mode: PagingMode, idx: &[u64], off: u64) -> VirtAddr {
    let mut va = off;
    let n = idx.len() as u32;
    for (i, &x) in idx.iter().enumerate() {
        va |= x << (12 + 9 * (n - 1 - i as u32));
    }
    VirtAddr(canonical(va, mode))
}
