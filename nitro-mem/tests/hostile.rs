//! Hostile page tables and guest-given lengths: every case ends in an error or a correct
//! answer, never a panic, a hang or a huge allocation.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nitro_mem::{
    AddressSpace, MemError, PagingMode, PhysAddr, PhysMemory, TranslationCache, VecMemory,
    VirtAddr, VirtRead, VirtReadExt,
};
use proptest::prelude::*;

#[test]
fn self_referencing_pml4_entry_maps_the_tables_themselves() {
    // A PML4 entry pointing at the PML4 (Windows' self-map does this on purpose): the walk
    // follows it once per level, as the MMU does, and terminates.
    let mem = VecMemory::new(1 << 20);
    let pml4 = 0x1000u64;
    let slot = 0x1edu64;
    put(&mem, pml4 + slot * 8, pml4 | P | RW);
    put(&mem, pml4, 0x2000 | P | RW); // PML4E 0 -> PDPT at 0x2000
    put(&mem, 0x2000, 0x3000 | P | RW);
    let s = AddressSpace::new(&mem, PhysAddr(pml4));
    // Indices (slot, slot, slot, slot): the page is the PML4 itself.
    let va = va_of(PagingMode::Level4, &[slot, slot, slot, slot], 0);
    let t = s.translate(va).unwrap();
    assert_eq!((t.phys, t.page_size), (PhysAddr(pml4), K4));
    assert_eq!(s.read_u64(va.add(slot * 8)).unwrap(), pml4 | P | RW);
    // Indices (slot, slot, slot, 0): the page is the PDPT that PML4E 0 points to.
    let va = va_of(PagingMode::Level4, &[slot, slot, slot, 0], 0);
    assert_eq!(s.read_u64(va).unwrap(), 0x3000 | P | RW);
    // Every entry of a table pointing at the table itself: any address resolves in 4 reads.
    let loopy = VecMemory::new(0x3000);
    for i in 0..512 {
        put(&loopy, 0x1000 + i * 8, 0x1000 | P | RW | US);
    }
    let s = AddressSpace::new(&loopy, PhysAddr(0x1000));
    for va in [
        0u64,
        0x7fff_ffff_f000,
        0xffff_8000_0000_0000,
        0xffff_ffff_ffff_ffff,
    ] {
        let t = s.translate(VirtAddr(va)).unwrap();
        assert_eq!(t.phys, PhysAddr(0x1000 | (va & 0xfff)));
    }
}

#[test]
fn entries_past_the_end_of_memory_are_broken_not_absent() {
    let mem = VecMemory::new(0x10000);
    put(&mem, 0x1000, 0x7_0000_0000 | P); // PML4E 0 -> far outside memory
    put(&mem, 0x1008, 0x2000 | P); // PML4E 1 -> PDPT
    put(&mem, 0x2000, 0x3000 | P);
    put(&mem, 0x3000, 0x4000 | P);
    put(&mem, 0x4000, 0xfff_ffff_f000 | P); // PTE -> page outside memory
    put(&mem, 0x4008, u64::MAX); // PTE with every bit set: address bits 51:12 all ones
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    assert_eq!(
        s.translate(VirtAddr(0x10)).unwrap_err(),
        MemError::BrokenTable {
            addr: VirtAddr(0x10),
            level: 4,
            entry_addr: PhysAddr(0x1000),
            entry: 0x7_0000_0000 | P,
            why: "entry points to a table outside guest memory",
        }
    );
    let va = VirtAddr(1 << 39);
    match s.translate(va) {
        Err(MemError::BrokenTable {
            level: 1,
            entry_addr: PhysAddr(0x4000),
            addr,
            ..
        }) => {
            assert_eq!(addr, va)
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.translate(va.add(0x1000)),
        Err(MemError::BrokenTable { level: 1, .. })
    ));
    assert!(!s.read_u64(va).unwrap_err().is_not_present());
    // A root outside memory.
    let s = AddressSpace::new(&mem, PhysAddr(0xffff_ffff_f000));
    match s.translate(VirtAddr(0)) {
        Err(MemError::BrokenTable {
            level: 4, entry, ..
        }) => assert_eq!(entry, 0xffff_ffff_f000),
        other => panic!("{other:?}"),
    }
    // A root in the last page of memory: its empty entries are simply not present.
    let s = AddressSpace::new(&mem, PhysAddr(0xf000));
    assert!(matches!(
        s.translate(VirtAddr(0xffff_ff80_0000_0000)),
        Err(MemError::NotPresent { .. })
    ));
}

#[test]
fn reserved_bits_are_broken() {
    let mem = VecMemory::new(0x10000);
    put(&mem, 0x1000, 0x2000 | P | PS); // PS in a PML4E is reserved
    put(&mem, 0x1008, 0x2000 | P);
    put(&mem, 0x2000, 0x0010_1000 | P | PS); // 1 GiB page with bits 29:13 set
    put(&mem, 0x2008, 0x3000 | P);
    put(&mem, 0x3000, 0x0010_1000 | P | PS); // 2 MiB page with bit 20 set
    put(&mem, 0x3008, 0x1000 | P | PS); // 2 MiB page with only the PAT bit: valid
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    let why = |va: u64| match s.translate(VirtAddr(va)) {
        Err(MemError::BrokenTable { why, level, .. }) => (level, why),
        other => panic!("{other:?}"),
    };
    assert_eq!(why(0).0, 4);
    assert_eq!(
        why(1 << 39),
        (3, "reserved address bits set in a large-page entry")
    );
    assert_eq!(why((1 << 39) | (1 << 30)).0, 2);
    let t = s
        .translate(VirtAddr((1 << 39) | (1 << 30) | (1 << 21) | 0x1234))
        .unwrap();
    assert_eq!((t.phys, t.page_size), (PhysAddr(0x1234), M2));
}

/// A guest whose every 1 GiB of virtual memory maps physical 0, in 2 MiB of real memory:
/// a hostile way to make huge virtual ranges "exist".
fn mirror_guest() -> VecMemory {
    let mem = VecMemory::new(2 << 20);
    put(&mem, 0x1000, 0x2000 | P | RW | US);
    for i in 0..512 {
        put(&mem, 0x2000 + i * 8, P | RW | US | PS);
    }
    mem
}

#[test]
fn huge_lengths_fail_fast_without_huge_allocations() {
    let mem = mirror_guest();
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    let four_gib = 4u64 << 30;
    // Over the caller's maximum: refused before reading.
    assert_eq!(
        s.read_bytes(VirtAddr(0), four_gib, 1 << 20).unwrap_err(),
        MemError::LengthTooLarge {
            addr: VirtAddr(0),
            len: four_gib,
            max: 1 << 20
        }
    );
    assert!(matches!(
        VirtRead::read_bytes(&s, VirtAddr(0), u64::MAX, usize::MAX),
        Err(MemError::BrokenTable { .. })
    ));
    // Allowed by the caller: the read stops at the first unbacked byte (2 MiB in), having
    // allocated only what it read.
    let t0 = Instant::now();
    let err = s.read_bytes(VirtAddr(0), four_gib, usize::MAX).unwrap_err();
    assert!(
        matches!(err, MemError::BrokenTable { level: 3, .. }),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Array counts: overflowing byte counts and over-limit counts are refused.
    assert!(matches!(
        s.read_array::<u64>(VirtAddr(0), u64::MAX, usize::MAX),
        Err(MemError::LengthTooLarge { .. })
    ));
    assert!(matches!(
        s.read_array::<u32>(VirtAddr(0), 1 << 32, 4096),
        Err(MemError::LengthTooLarge {
            len: 0x1_0000_0000,
            max: 4096,
            ..
        })
    ));
    // Strings with an unbounded maximum end where memory ends.
    mem.write_phys(PhysAddr(0), &vec![b'A'; 2 << 20]).unwrap();
    let err = s.read_cstring(VirtAddr(0), usize::MAX).unwrap_err();
    assert!(matches!(err, MemError::BrokenTable { .. }), "{err:?}");
    assert!(s.read_utf16(VirtAddr(1), usize::MAX).is_err());
}

#[test]
fn unicode_string_with_huge_length() {
    let mem = mirror_guest();
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    // {Length 0xffff, MaximumLength 0xffff, Buffer 0x100} at 0x40.
    mem.write_phys(PhysAddr(0x40), &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        .unwrap();
    mem.write_phys(PhysAddr(0x48), &0x100u64.to_le_bytes())
        .unwrap();
    assert_eq!(
        s.read_unicode_string(VirtAddr(0x40), 4096).unwrap_err(),
        MemError::LengthTooLarge {
            addr: VirtAddr(0x40),
            len: 0xffff,
            max: 4096
        }
    );
    // Allowed: an odd length reads 0x7fff units.
    assert_eq!(
        s.read_unicode_string(VirtAddr(0x40), 0x10000)
            .unwrap()
            .encode_utf16()
            .count(),
        0x7fff
    );
    // A buffer pointer that is not canonical, or that wraps the address space.
    mem.write_phys(PhysAddr(0x48), &0x8000_0000_0000_0000u64.to_le_bytes())
        .unwrap();
    assert!(matches!(
        s.read_unicode_string(VirtAddr(0x40), 0x10000),
        Err(MemError::NonCanonical(_))
    ));
    mem.write_phys(PhysAddr(0x48), &0xffff_ffff_ffff_fff0u64.to_le_bytes())
        .unwrap();
    assert!(s.read_unicode_string(VirtAddr(0x40), 0x10000).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random bytes as page tables and data: every reader returns, none panics, and reads
    /// that succeed return exactly what was asked for.
    #[test]
    fn random_tables_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0x4000),
        root in 0u64..0x6000,
        l5 in any::<bool>(),
        vas in prop::collection::vec(any::<u64>(), 8),
        len in 0u64..0x3000,
    ) {
        // Bias entries towards "present, pointing inside memory" so walks go deep.
        let mut bytes = bytes;
        for e in bytes.chunks_exact_mut(8) {
            if e[0] & 0x3 == 1 {
                e[1] &= 0x3f;
                e[2] = 0;
                e[3..7].fill(0);
                e[7] &= 0x80;
            }
        }
        let mem = VecMemory::from_vec(bytes);
        let mode = if l5 { PagingMode::Level5 } else { PagingMode::Level4 };
        let s = AddressSpace::with_mode(&mem, PhysAddr(root), mode);
        let cache = TranslationCache::with_capacity(16);
        let c = AddressSpace::with_mode(&mem, PhysAddr(root), mode).cached(&cache);
        for va in vas {
            let va = VirtAddr(va);
            let t = s.translate(va);
            prop_assert_eq!(&t, &c.translate(va));
            if let Ok(t) = t {
                prop_assert!(t.phys.0 < 0x4000);
            }
            if let Ok(v) = s.read_bytes(va, len, 0x2000) {
                prop_assert_eq!(v.len() as u64, len);
            }
            if let Ok((v, _)) = s.read_cstring_prefix(va, 0x1800) {
                prop_assert!(v.len() <= 0x1800);
            }
            if let Ok((v, _)) = c.read_utf16_prefix(va, 0x900) {
                prop_assert!(v.len() <= 0x900);
            }
            let _ = c.read_unicode_string(va, 0x1000);
            let _ = c.read_unicode_string32(va, 0x1000);
            let _ = c.read_filename_ptr(va, 0x1000);
            let _ = c.read_array::<u32>(va, len, 0x1000);
        }
    }
}
