//! The translator against the reference builder (property tests), plus fixed cases: flags
//! combined over levels, PTI pairs, and the paging-mode split.

mod common;

use common::*;
use nitro_mem::{
    kernel_root, pti_pair, user_root, AddressSpace, MemError, PagingMode, PhysAddr,
    TranslationCache, VecMemory, VirtAddr,
};
use proptest::prelude::*;

/// Physical addresses below 2^46 (well inside the 52-bit field).
const PHYS_BITS: u32 = 46;

fn mode_of(l5: bool) -> PagingMode {
    if l5 {
        PagingMode::Level5
    } else {
        PagingMode::Level4
    }
}

fn size_of(sel: u8) -> u64 {
    [K4, M2, G1][sel as usize % 3]
}

fn check_space(b: &Builder, probes: &[u64]) -> Result<(), TestCaseError> {
    let guest = BigGuest {
        tables: &b.mem,
        size: 1 << PHYS_BITS,
    };
    let space = AddressSpace::with_mode(&guest, PhysAddr(b.root), b.mode);
    let cache = TranslationCache::with_capacity(64);
    let cached = AddressSpace::with_mode(&guest, PhysAddr(b.root), b.mode).cached(&cache);
    for &va in probes {
        let va = canonical(va, b.mode);
        let got = space.translate(VirtAddr(va));
        // Twice through the cache: a miss, then (usually) a hit; both must agree.
        let c1 = cached.translate(VirtAddr(va));
        let c2 = cached.translate(VirtAddr(va));
        prop_assert_eq!(&c1, &got);
        prop_assert_eq!(&c2, &got);
        match b.expect(va) {
            Some((pa, m)) => {
                let t = got.map_err(|e| TestCaseError::fail(format!("{va:#x}: {e}")))?;
                prop_assert_eq!(t.phys, PhysAddr(pa), "va {:#x} in {:?}", va, m);
                prop_assert_eq!(t.page_size, m.size);
                prop_assert_eq!(t.writable, m.writable);
                prop_assert_eq!(t.user, m.user);
                prop_assert_eq!(t.no_execute, m.nx);
            }
            None => {
                prop_assert!(
                    matches!(got, Err(MemError::NotPresent { addr, .. }) if addr == VirtAddr(va)),
                    "va {:#x}: {:?}",
                    va,
                    got
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Random mappings of all three page sizes in both modes; every mapped page is probed at
    /// a random offset and its neighbours (which share upper tables) are probed too.
    #[test]
    fn translator_agrees_with_builder(
        l5 in any::<bool>(),
        maps in prop::collection::vec(
            (any::<u64>(), any::<u64>(), 0u8..3, any::<bool>(), any::<bool>(), any::<bool>(),
             any::<u64>()),
            1..40),
        extra in prop::collection::vec(any::<u64>(), 0..20),
    ) {
        let mode = mode_of(l5);
        let mut b = Builder::new(mode, 2 << 20);
        let mut probes = extra;
        for (va, pa, sel, w, u, nx, off) in maps {
            let size = size_of(sel);
            // Cluster half of the addresses in one 512 GiB slot so upper tables are shared.
            let va = if va & 1 == 0 { va & 0x3f_ffff_ffff } else { va };
            let va = canonical(va, mode) & !(size - 1);
            let pa = (pa & ((1 << PHYS_BITS) - 1)) & !(size - 1);
            if b.map(va, pa, size, w, u, nx) {
                probes.push(va + off % size);
                probes.push(va.wrapping_add(size));
                probes.push(va.wrapping_sub(K4));
                probes.push(va ^ (1 << 21));
            }
        }
        check_space(&b, &probes)?;
    }
}

#[test]
fn five_level_uses_bits_56_48() {
    // Two 4 KiB pages that differ only in the PML5 index: distinct in 5-level mode.
    let mut b = Builder::new(PagingMode::Level5, 1 << 20);
    let lo = 0x0000_1234_5678_9000u64;
    let hi = lo | (3u64 << 48);
    assert!(b.map(lo, 0x10_0000, K4, true, true, false));
    assert!(b.map(hi, 0x20_0000, K4, true, true, false));
    let guest = BigGuest {
        tables: &b.mem,
        size: 1 << 40,
    };
    let s = AddressSpace::with_mode(&guest, PhysAddr(b.root), PagingMode::Level5);
    assert_eq!(
        s.translate(VirtAddr(lo + 5)).unwrap().phys,
        PhysAddr(0x10_0005)
    );
    assert_eq!(
        s.translate(VirtAddr(hi + 5)).unwrap().phys,
        PhysAddr(0x20_0005)
    );
    // A 57-bit address is not canonical under 4-level paging.
    let s4 = AddressSpace::with_mode(&guest, PhysAddr(b.root), PagingMode::Level4);
    assert_eq!(
        s4.translate(VirtAddr(hi)),
        Err(MemError::NonCanonical(VirtAddr(hi)))
    );
    assert!(PagingMode::Level5.is_canonical(VirtAddr(0xff00_0000_0000_0000)));
    assert!(!PagingMode::Level4.is_canonical(VirtAddr(0xff00_0000_0000_0000)));
    assert_eq!(PagingMode::from_cr4(1 << 12), PagingMode::Level5);
    assert_eq!(PagingMode::from_cr4(0x3506f0), PagingMode::Level4);
}

#[test]
fn permissions_combine_over_levels() {
    // SDM 4.6: writable/user only if set at every level; XD if set at any level.
    let mem = VecMemory::new(1 << 20);
    put(&mem, 0x1000, 0x2000 | P | US); // PML4E: read-only
    put(&mem, 0x2000, 0x3000 | P | RW | US | XD); // PDPTE: no-execute
    put(&mem, 0x3000, 0x4000 | P | RW); // PDE: supervisor
    put(&mem, 0x4000, 0x5000 | P | RW | US);
    let t = AddressSpace::new(&mem, PhysAddr(0x1000))
        .translate(VirtAddr(0x123))
        .unwrap();
    assert_eq!((t.writable, t.user, t.no_execute), (false, false, true));
    assert_eq!(t.phys, PhysAddr(0x5123));
}

#[test]
fn cr3_flag_and_pcid_bits_are_ignored() {
    let mem = VecMemory::new(1 << 20);
    put(&mem, 0x1000, 0x2000 | P | RW);
    put(&mem, 0x2000, 0x4000_0000 | P | RW | PS); // 1 GiB page at 1 GiB (outside memory)
    put(&mem, 0x2008, PS | P | RW); // 1 GiB page at 0
    let cr3 = 0x1000 | 0x5 /* PCID */ | (1 << 63) /* no-flush */;
    let s = AddressSpace::new(&mem, PhysAddr(cr3));
    assert_eq!(s.root(), PhysAddr(0x1000));
    let t = s.translate(VirtAddr(G1 + 0x5_4321)).unwrap();
    assert_eq!((t.phys, t.page_size), (PhysAddr(0x5_4321), G1));
    // A page that is mapped but lies outside guest memory names the leaf entry.
    match s.translate(VirtAddr(0x10)) {
        Err(MemError::BrokenTable {
            level: 3,
            entry_addr,
            ..
        }) => {
            assert_eq!(entry_addr, PhysAddr(0x2000))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pti_pair_translates_both_halves() {
    // Linux PTI: kernel PGD at an 8 KiB-aligned page, user PGD 4 KiB above it; the user half
    // maps only what user mode needs. Same VA, different contents.
    let mem = VecMemory::new(1 << 20);
    let (kpgd, upgd) = (0x2000u64, 0x3000u64);
    for (pgd, pdpt, pd, pt, page) in [
        (kpgd, 0x4000, 0x5000, 0x6000, 0x7000),
        (upgd, 0x8000, 0x9000, 0xa000, 0xb000),
    ] {
        put(&mem, pgd, pdpt | P | RW | US);
        put(&mem, pdpt, pd | P | RW | US);
        put(&mem, pd, pt | P | RW | US);
        put(&mem, pt + 8, page | P | RW | US);
        put(&mem, page, page * 3);
    }
    // A kernel-only mapping, absent from the user half.
    put(&mem, kpgd + 511 * 8, 0xc000 | P | RW);
    let user_cr3 = upgd | (1 << 11) | 1 | (1 << 63); // user PCID bit, PCID 1, no-flush
    assert_eq!(kernel_root(user_cr3), PhysAddr(kpgd));
    assert_eq!(user_root(user_cr3), PhysAddr(upgd));
    assert_eq!(pti_pair(kpgd | 1), (PhysAddr(kpgd), PhysAddr(upgd)));
    let (k, u) = pti_pair(user_cr3);
    let (ks, us) = (AddressSpace::new(&mem, k), AddressSpace::new(&mem, u));
    assert_eq!(ks.read_u64(VirtAddr(0x1000)).unwrap(), 0x7000 * 3);
    assert_eq!(us.read_u64(VirtAddr(0x1000)).unwrap(), 0xb000 * 3);
    let kva = VirtAddr(0xffff_ff80_0000_0000);
    assert!(matches!(
        ks.translate(kva),
        Err(MemError::NotPresent { level: 3, .. })
    ));
    assert!(matches!(
        us.translate(kva),
        Err(MemError::NotPresent { level: 4, .. })
    ));
}

#[test]
fn not_present_names_level_and_entry() {
    let mem = VecMemory::new(1 << 20);
    put(&mem, 0x1000, 0x2000 | P);
    put(&mem, 0x2000, 0x3000 | P);
    put(&mem, 0x3000 + 8, 0xdead_0000); // PDE 1: not present, other bits set (swap entry)
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    let err = s.translate(VirtAddr(0x20_1234)).unwrap_err();
    assert_eq!(
        err,
        MemError::NotPresent {
            addr: VirtAddr(0x20_1234),
            level: 2,
            entry_addr: PhysAddr(0x3008),
            entry: 0xdead_0000
        }
    );
    assert!(err.is_not_present());
    let msg = err.to_string();
    assert!(
        msg.contains("0x201234") && msg.contains("level 2") && msg.contains("0x3008"),
        "{msg}"
    );
}
