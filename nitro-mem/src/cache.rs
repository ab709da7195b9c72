//! A software TLB: translations cached per (page-table root, 4 KiB virtual page), with the
//! explicit invalidation a hypervisor-side reader needs (the guest changes its tables
//! without telling us).
//!
//! The cache is two-way set-associative and fixed-size (bounded memory whatever the guest
//! does), and single-threaded: slots are [`Cell`]s, so a hit is a hash, two loads and a few
//! compares, with no lock. It is `Send` (move it to the thread that serves a vCPU) but not `Sync`; give each
//! thread its own. Only successful translations are cached: "not present" is asked again.

use std::{borrow::Borrow, cell::Cell};

use crate::{
    paging::{cr3_root, walk},
    AddressSpace, PagingMode, PhysAddr, PhysMemory, Result, Translate, Translation, VirtAddr,
};

/// Default number of slots (32 bytes each: 128 KiB).
const DEFAULT_SLOTS: usize = 4096;
/// Largest number of slots a cache may have.
const MAX_SLOTS: usize = 1 << 20;

/// Tag bits (the root is 4 KiB-aligned, so bits 11:0 are free).
const TAG_VALID: u64 = 1 << 1;
const TAG_LA57: u64 = 1 << 0;

/// Flag bits kept in bits 11:0 of the cached physical page.
const F_WRITABLE: u64 = 1 << 2;
const F_USER: u64 = 1 << 3;
const F_NX: u64 = 1 << 4;
const F_SIZE_MASK: u64 = 0b11;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Root | TAG_VALID | TAG_LA57; 0 = empty.
    tag: u64,
    /// Virtual address >> 12.
    vpn: u64,
    /// Physical address of the 4 KiB granule | flags | size code (0: 4K, 1: 2M, 2: 1G).
    phys: u64,
    /// Cache epoch the slot was filled in; older slots are dead.
    epoch: u64,
}

/// Hit and miss counts of a [`TranslationCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
}

/// A bounded translation cache tagged by page-table root and paging mode.
pub struct TranslationCache {
    slots: Box<[Cell<Slot>]>,
    mask: usize,
    epoch: Cell<u64>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl std::fmt::Debug for TranslationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslationCache")
            .field("capacity", &self.capacity())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for TranslationCache {
    fn default() -> Self {
        Self::new()
    }
}

fn tag_of(root: PhysAddr, mode: PagingMode) -> u64 {
    cr3_root(root.0).0
        | TAG_VALID
        | if mode == PagingMode::Level5 {
            TAG_LA57
        } else {
            0
        }
}

fn size_code(page_size: u64) -> u64 {
    match page_size {
        0x20_0000 => 1,
        0x4000_0000 => 2,
        _ => 0,
    }
}

impl TranslationCache {
    /// A cache of 4096 slots.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_SLOTS)
    }

    /// A cache of `slots` slots, rounded up to a power of two in `2..=1<<20`.
    pub fn with_capacity(slots: usize) -> Self {
        let n = slots.clamp(2, MAX_SLOTS).next_power_of_two();
        TranslationCache {
            slots: (0..n).map(|_| Cell::new(Slot::default())).collect(),
            mask: n - 1,
            epoch: Cell::new(1),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
        }
    }

    /// Number of live entries (walks every slot).
    pub fn len(&self) -> usize {
        let epoch = self.epoch.get();
        self.slots
            .iter()
            .filter(|s| s.get().tag != 0 && s.get().epoch == epoch)
            .count()
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The two slots of the set `va`'s page maps to in the space tagged `tag`.
    #[inline]
    fn set(&self, tag: u64, vpn: u64) -> Option<(&Cell<Slot>, &Cell<Slot>)> {
        // Fibonacci hashing of the root so that two address spaces do not collide on every
        // page; consecutive pages of one space land in consecutive sets.
        let h = vpn ^ (tag >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i = (h as usize & (self.mask >> 1)) << 1;
        Some((self.slots.get(i)?, self.slots.get(i + 1)?))
    }

    #[inline]
    fn live(&self, s: &Slot, tag: u64, vpn: u64) -> bool {
        s.tag == tag && s.vpn == vpn && s.epoch == self.epoch.get()
    }

    /// The cached translation of `va` in the space rooted at `root`, if any.
    #[inline]
    pub fn lookup(&self, root: PhysAddr, mode: PagingMode, va: VirtAddr) -> Option<Translation> {
        let (tag, vpn) = (tag_of(root, mode), va.0 >> 12);
        let (a, b) = self.set(tag, vpn)?;
        let mut s = a.get();
        if !self.live(&s, tag, vpn) {
            s = b.get();
            if !self.live(&s, tag, vpn) {
                self.misses.set(self.misses.get() + 1);
                return None;
            }
        }
        self.hits.set(self.hits.get() + 1);
        let page_size = match s.phys & F_SIZE_MASK {
            1 => 0x20_0000,
            2 => 0x4000_0000,
            _ => 0x1000,
        };
        Some(Translation {
            phys: PhysAddr((s.phys & !0xfff) | (va.0 & 0xfff)),
            page_size,
            writable: s.phys & F_WRITABLE != 0,
            user: s.phys & F_USER != 0,
            no_execute: s.phys & F_NX != 0,
        })
    }

    /// Caches `t`, the translation of `va` in the space rooted at `root`. The new entry goes
    /// first in its two-slot set; the entry it displaces moves to the second slot, whose
    /// occupant is dropped (least recently inserted).
    pub fn insert(&self, root: PhysAddr, mode: PagingMode, va: VirtAddr, t: &Translation) {
        let (tag, vpn) = (tag_of(root, mode), va.0 >> 12);
        let phys = (t.phys.0 & !0xfff)
            | size_code(t.page_size)
            | if t.writable { F_WRITABLE } else { 0 }
            | if t.user { F_USER } else { 0 }
            | if t.no_execute { F_NX } else { 0 };
        let Some((a, b)) = self.set(tag, vpn) else {
            return;
        };
        let new = Slot {
            tag,
            vpn,
            phys,
            epoch: self.epoch.get(),
        };
        let first = a.get();
        if self.live(&b.get(), tag, vpn) {
            b.set(Slot::default());
        }
        if !self.live(&first, tag, vpn) && first.tag != 0 && first.epoch == self.epoch.get() {
            b.set(first);
        }
        a.set(new);
    }

    /// Drops every entry (constant time: the epoch moves on).
    pub fn invalidate_all(&self) {
        self.epoch.set(self.epoch.get() + 1);
    }

    /// Drops every entry of the space rooted at `root` (both paging modes; walks every slot).
    pub fn invalidate_root(&self, root: PhysAddr) {
        let root = cr3_root(root.0).0;
        for cell in self.slots.iter() {
            if cell.get().tag & !0xfff == root && cell.get().tag != 0 {
                cell.set(Slot::default());
            }
        }
    }

    /// Drops the entries of the space rooted at `root` that cover `va`: the 4 KiB granule and
    /// any granule cached from the same 2 MiB or 1 GiB page (what INVLPG does; walks every
    /// slot).
    pub fn invalidate_page(&self, root: PhysAddr, va: VirtAddr) {
        self.invalidate_where(|tag| tag & !0xfff == cr3_root(root.0).0, va);
    }

    /// Drops the entries covering `va` in every address space (walks every slot).
    pub fn invalidate_va(&self, va: VirtAddr) {
        self.invalidate_where(|_| true, va);
    }

    fn invalidate_where(&self, root_matches: impl Fn(u64) -> bool, va: VirtAddr) {
        for cell in self.slots.iter() {
            let s = cell.get();
            if s.tag == 0 || !root_matches(s.tag) {
                continue;
            }
            let size: u64 = match s.phys & F_SIZE_MASK {
                1 => 0x20_0000,
                2 => 0x4000_0000,
                _ => 0x1000,
            };
            let page_mask = !(size - 1);
            if (s.vpn << 12) & page_mask == va.0 & page_mask {
                cell.set(Slot::default());
            }
        }
    }
}

/// An [`AddressSpace`] that consults a [`TranslationCache`] before walking the tables.
///
/// `C` is the cache or anything that borrows one (`&TranslationCache`, `Rc<..>`), so that
/// many address spaces (one per guest process) can share one cache: entries are tagged by
/// root. Invalidation is the caller's job (see [`TranslationCache`]).
#[derive(Debug)]
pub struct CachedAddressSpace<M, C = TranslationCache> {
    space: AddressSpace<M>,
    cache: C,
}

impl<M: PhysMemory, C: Borrow<TranslationCache>> CachedAddressSpace<M, C> {
    /// `space`, cached in `cache`.
    pub fn new(space: AddressSpace<M>, cache: C) -> Self {
        CachedAddressSpace { space, cache }
    }

    /// The uncached address space.
    pub fn space(&self) -> &AddressSpace<M> {
        &self.space
    }

    /// The cache.
    pub fn cache(&self) -> &TranslationCache {
        self.cache.borrow()
    }

    /// The page-table root.
    pub fn root(&self) -> PhysAddr {
        self.space.root()
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.space.mode()
    }

    /// The physical memory underneath.
    pub fn memory(&self) -> &M {
        self.space.memory()
    }

    /// Drops this space's cached entries.
    pub fn invalidate(&self) {
        self.cache().invalidate_root(self.space.root());
    }

    /// Translates `va`, from the cache when possible.
    #[inline]
    pub fn translate(&self, va: VirtAddr) -> Result<Translation> {
        let (root, mode) = (self.space.root(), self.space.mode());
        let cache = self.cache.borrow();
        if let Some(t) = cache.lookup(root, mode, va) {
            return Ok(t);
        }
        let t = walk(self.space.memory(), root, mode, va)?;
        cache.insert(root, mode, va, &t);
        Ok(t)
    }
}

impl<M: PhysMemory, C: Borrow<TranslationCache>> Translate for CachedAddressSpace<M, C> {
    fn translate(&self, va: VirtAddr) -> Result<Translation> {
        CachedAddressSpace::translate(self, va)
    }
}

impl<M: PhysMemory> AddressSpace<M> {
    /// This space, cached in `cache` (a [`TranslationCache`] or a borrow of one).
    pub fn cached<C: Borrow<TranslationCache>>(self, cache: C) -> CachedAddressSpace<M, C> {
        CachedAddressSpace::new(self, cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(phys: u64) -> Translation {
        Translation {
            phys: PhysAddr(phys),
            page_size: 0x1000,
            writable: true,
            user: false,
            no_execute: true,
        }
    }

    #[test]
    fn a_set_keeps_the_two_latest_entries() {
        // Capacity 2 = one set: every page competes for it.
        let c = TranslationCache::with_capacity(2);
        let (root, m) = (PhysAddr(0x1000), PagingMode::Level4);
        let va = |n: u64| VirtAddr(n << 12);
        c.insert(root, m, va(1), &t(0x10_000));
        c.insert(root, m, va(2), &t(0x20_000));
        assert_eq!(c.lookup(root, m, va(1).add(0x123)), Some(t(0x10_123)));
        assert_eq!(c.lookup(root, m, va(2)), Some(t(0x20_000)));
        // Re-inserting an entry does not duplicate it.
        c.insert(root, m, va(2), &t(0x21_000));
        assert_eq!(c.lookup(root, m, va(1)), Some(t(0x10_000)));
        assert_eq!(c.lookup(root, m, va(2)), Some(t(0x21_000)));
        assert_eq!(c.len(), 2);
        c.insert(root, m, va(3), &t(0x30_000));
        assert_eq!(c.lookup(root, m, va(2)), Some(t(0x21_000)));
        assert_eq!(c.lookup(root, m, va(3)), Some(t(0x30_000)));
        assert_eq!(c.lookup(root, m, va(1)), None, "oldest entry dropped");
        // Another root or mode is another tag.
        assert_eq!(c.lookup(PhysAddr(0x2000), m, va(3)), None);
        assert_eq!(c.lookup(root, PagingMode::Level5, va(3)), None);
        c.invalidate_all();
        assert_eq!(c.lookup(root, m, va(3)), None);
        assert!(c.is_empty());
    }
}
