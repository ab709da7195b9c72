//! The translation cache: hits agree with walks, invalidation is explicit and exact, entries
//! are tagged by root and mode, and the size is bounded.

mod common;

use std::rc::Rc;

use common::*;
use nitro_mem::{
    AddressSpace, CachedAddressSpace, MemError, PagingMode, PhysAddr, PhysMemory, TranslationCache,
    VecMemory, VirtAddr, VirtRead,
};

/// Two address spaces (roots 0x1000 and 0x5000) mapping VA 0x1000 to different pages, and a
/// 2 MiB page at 0x20_0000 in the first.
fn two_spaces() -> VecMemory {
    let mem = VecMemory::new(8 << 20);
    for (pml4, pdpt, pd, pt, page) in [
        (0x1000u64, 0x2000, 0x3000, 0x4000, 0x10_0000u64),
        (0x5000, 0x6000, 0x7000, 0x8000, 0x11_0000),
    ] {
        put(&mem, pml4, pdpt | P | RW | US);
        put(&mem, pdpt, pd | P | RW | US);
        put(&mem, pd, pt | P | RW | US);
        put(&mem, pt + 8, page | P | RW | US);
        put(&mem, page, page);
    }
    put(&mem, 0x3008, 0x40_0000 | P | RW | PS);
    mem
}

#[test]
fn hits_match_walks_and_stay_until_invalidated() {
    let mem = two_spaces();
    let cache = TranslationCache::new();
    let a = AddressSpace::new(&mem, PhysAddr(0x1000)).cached(&cache);
    let b = AddressSpace::new(&mem, PhysAddr(0x5000)).cached(&cache);
    assert_eq!(a.read_u64(VirtAddr(0x1000)).unwrap(), 0x10_0000);
    assert_eq!(b.read_u64(VirtAddr(0x1000)).unwrap(), 0x11_0000);
    assert_eq!(a.read_u64(VirtAddr(0x1008)).unwrap(), 0);
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(cache.len(), 2);
    assert_eq!(
        a.translate(VirtAddr(0x1234)).unwrap(),
        a.space().translate(VirtAddr(0x1234)).unwrap()
    );

    // The guest remaps a's page: the cache is stale until told.
    put(&mem, 0x4008, 0x12_0000 | P | RW | US);
    assert_eq!(
        a.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x10_0000)
    );
    cache.invalidate_page(PhysAddr(0x1000), VirtAddr(0x1fff));
    assert_eq!(
        a.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x12_0000)
    );
    assert_eq!(
        b.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x11_0000),
        "b untouched"
    );

    // invalidate_root drops only that root.
    put(&mem, 0x8008, 0x13_0000 | P | RW | US);
    cache.invalidate_root(PhysAddr(0x1000));
    assert_eq!(
        b.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x11_0000),
        "still cached"
    );
    b.invalidate();
    assert_eq!(
        b.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x13_0000)
    );

    // invalidate_all drops everything; not-present results are never cached.
    put(&mem, 0x4008, 0);
    cache.invalidate_all();
    assert!(cache.is_empty());
    assert!(a.translate(VirtAddr(0x1000)).unwrap_err().is_not_present());
    put(&mem, 0x4008, 0x10_0000 | P);
    assert_eq!(
        a.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x10_0000)
    );
}

#[test]
fn large_pages_are_invalidated_whole() {
    let mem = two_spaces();
    let cache = TranslationCache::new();
    let a = AddressSpace::new(&mem, PhysAddr(0x1000)).cached(&cache);
    let va = VirtAddr(0x20_0000);
    for i in 0..8 {
        let t = a.translate(va.add(i * 0x1000 + 5)).unwrap();
        assert_eq!(
            (t.phys, t.page_size),
            (PhysAddr(0x40_0005 + i * 0x1000), M2)
        );
        assert!(t.writable && !t.user && !t.no_execute);
    }
    put(&mem, 0x3008, 0x60_0000 | P | PS);
    // INVLPG of one address in the 2 MiB page drops every cached granule of it.
    cache.invalidate_va(va.add(0x1f_f000));
    for i in 0..8 {
        let t = a.translate(va.add(i * 0x1000)).unwrap();
        assert_eq!(t.phys, PhysAddr(0x60_0000 + i * 0x1000));
        assert!(!t.writable);
    }
}

#[test]
fn mode_is_part_of_the_tag() {
    let mem = two_spaces();
    let cache = TranslationCache::new();
    let l4 = AddressSpace::with_mode(&mem, PhysAddr(0x1000), PagingMode::Level4).cached(&cache);
    let l5 = AddressSpace::with_mode(&mem, PhysAddr(0x1000), PagingMode::Level5).cached(&cache);
    assert_eq!(
        l4.translate(VirtAddr(0x1000)).unwrap().phys,
        PhysAddr(0x10_0000)
    );
    // In 5-level mode the same root has one more level: 0x1000 -> PML4 at 0x2000 -> ... the
    // walk reads the PT (0x4000) as a PD entry 0 = not present.
    assert!(l5.translate(VirtAddr(0x1000)).unwrap_err().is_not_present());
}

#[test]
fn size_is_bounded() {
    // One 1 GiB page at physical 0, in a guest that claims 1 GiB of memory.
    let tables = VecMemory::new(0x3000);
    put(&tables, 0x1000, 0x2000 | P | RW);
    put(&tables, 0x2000, P | RW | PS);
    let mem = BigGuest {
        tables: &tables,
        size: 1 << 30,
    };
    let cache = TranslationCache::with_capacity(100);
    assert_eq!(cache.capacity(), 128);
    let s = AddressSpace::new(&mem, PhysAddr(0x1000)).cached(&cache);
    for i in 0..100_000u64 {
        s.translate(VirtAddr(i * 0x1000)).unwrap();
    }
    assert!(cache.len() <= 128);
    assert_eq!(cache.stats().misses, 100_000);
    assert_eq!(
        TranslationCache::with_capacity(usize::MAX).capacity(),
        1 << 20
    );
    assert_eq!(TranslationCache::with_capacity(0).capacity(), 2);
}

#[test]
fn shared_cache_owned_cache_and_writes() {
    let mem = two_spaces();
    // Owned cache.
    let owned: CachedAddressSpace<&VecMemory> = CachedAddressSpace::new(
        AddressSpace::new(&mem, PhysAddr(0x1000)),
        TranslationCache::new(),
    );
    owned.write_virt(VirtAddr(0x1ffc), b"abcdefgh").unwrap_err(); // 0x2000 unmapped: nothing written
    assert_eq!(owned.read_u32(VirtAddr(0x1ffc)).unwrap(), 0);
    owned.write_virt(VirtAddr(0x1ff8), b"abcdefgh").unwrap();
    assert_eq!(
        &owned.read_bytes(VirtAddr(0x1ff8), 8, 8).unwrap(),
        b"abcdefgh"
    );
    let mut buf = [0u8; 8];
    mem.read_phys(PhysAddr(0x10_0ff8), &mut buf).unwrap();
    assert_eq!(&buf, b"abcdefgh");
    // A cache shared through Rc.
    let shared = Rc::new(TranslationCache::with_capacity(8));
    let a = AddressSpace::new(&mem, PhysAddr(0x1000)).cached(Rc::clone(&shared));
    a.translate(VirtAddr(0x1000)).unwrap();
    assert_eq!(shared.len(), 1);
    assert!(matches!(
        a.translate(VirtAddr(1 << 47)),
        Err(MemError::NonCanonical(_))
    ));
}

#[test]
fn cache_is_send() {
    fn send<T: Send>(_: &T) {}
    send(&TranslationCache::new());
}
