//! Hostile page tables and lengths, with every physical access counted: a translation reads
//! at most one entry per paging level, a read never touches a physical byte it was not
//! asked for (beyond the page-table entries), no single physical read spans more than a
//! page, and a guest-given length over the caller's maximum reads nothing at all.
//!
//! This is the CI form of the `fuzz/` translator and string-reader targets (cargo-fuzz needs
//! nightly).

use std::sync::atomic::{AtomicU64, Ordering};

use nitro_mem::{
    AddressSpace, MemError, PagingMode, PhysAddr, PhysMemory, TranslationCache, VecMemory,
    VirtAddr, VirtRead, VirtReadExt,
};
use proptest::prelude::*;

/// A `PhysMemory` that counts what is asked of it.
struct Counting {
    inner: VecMemory,
    reads: AtomicU64,
    bytes: AtomicU64,
    largest: AtomicU64,
}

impl Counting {
    fn new(inner: VecMemory) -> Self {
        Counting {
            inner,
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        }
    }
    fn reset(&self) {
        self.reads.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.largest.store(0, Ordering::Relaxed);
    }
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    fn largest(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }
}

impl PhysMemory for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_phys(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.largest.fetch_max(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_phys(addr, buf)
    }
    fn write_phys(&self, addr: PhysAddr, buf: &[u8]) -> Result<(), MemError> {
        self.inner.write_phys(addr, buf)
    }
}

/// Random tables biased so entries are often present and point inside memory (walks go
/// deep), some with the large-page bit.
fn hostile_tables(size: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..(size as u64 / 4096)).prop_map(|f| (f << 12) | 0x7),
            (0u64..(size as u64 / 4096)).prop_map(|f| (f << 12) | 0x87),
            any::<u64>(),
            Just(0u64),
        ],
        size / 8,
    )
    .prop_map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect())
}

const SIZE: usize = 0x8000;
/// Page-table bytes one walk may read: one 8-byte entry per level, five levels at most.
const WALK: u64 = 5 * 8;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reads_touch_only_what_they_need(
        bytes in hostile_tables(SIZE),
        root in 0u64..(SIZE as u64 / 4096),
        l5 in any::<bool>(),
        vas in prop::collection::vec(any::<u64>(), 6),
        len in 0u64..0x3000,
        max in 0usize..0x3000,
    ) {
        let mem = Counting::new(VecMemory::from_vec(bytes));
        let mode = if l5 { PagingMode::Level5 } else { PagingMode::Level4 };
        let s = AddressSpace::with_mode(&mem, PhysAddr(root << 12), mode);
        let cache = TranslationCache::with_capacity(8);
        let c = AddressSpace::with_mode(&mem, PhysAddr(root << 12), mode).cached(&cache);
        for va in vas {
            let va = VirtAddr(va);

            mem.reset();
            let _ = s.translate(va);
            prop_assert!(mem.reads() <= u64::from(mode.levels()), "{} reads for one walk", mem.reads());
            prop_assert!(mem.bytes() <= WALK);

            // Pages touched by a read of n bytes at va: at most n / 4096 + 2.
            let pages = |n: u64| n / 4096 + 2;

            mem.reset();
            let r = s.read_bytes(va, len, max);
            if len > max as u64 {
                let refused = matches!(r, Err(MemError::LengthTooLarge { .. }));
                prop_assert!(refused, "length {} over max {} not refused", len, max);
                prop_assert_eq!(mem.reads(), 0, "an over-long length was read");
            }
            prop_assert!(mem.bytes() <= len + pages(len) * WALK);
            prop_assert!(mem.largest() <= 4096);

            mem.reset();
            if let Ok((v, _)) = c.read_cstring_prefix(va, max) {
                prop_assert!(v.len() <= max);
            }
            prop_assert!(mem.bytes() <= max as u64 + pages(max as u64) * WALK);
            prop_assert!(mem.largest() <= 4096);

            mem.reset();
            if let Ok((v, _)) = c.read_utf16_prefix(va, max / 2) {
                prop_assert!(v.len() <= max / 2);
            }
            prop_assert!(mem.bytes() <= max as u64 + 2 + pages(max as u64 + 2) * WALK);

            mem.reset();
            let _ = c.read_unicode_string(va, max);
            // The 16-byte header, then at most `max` bytes of text.
            prop_assert!(mem.bytes() <= 16 + max as u64 + (pages(max as u64) + 2) * WALK);

            mem.reset();
            let _ = c.read_filename_ptr(va, max);
            prop_assert!(mem.bytes() <= 8 + max as u64 + (pages(max as u64) + 2) * WALK);

            mem.reset();
            let _ = c.read_array::<u64>(va, len, max);
            if len > max as u64 {
                prop_assert_eq!(mem.reads(), 0, "an over-long array was read");
            }
        }
    }
}

/// Lengths and counts that would allocate terabytes are refused before any read.
#[test]
fn huge_guest_lengths_read_nothing() {
    let mem = Counting::new(VecMemory::new(0x4000));
    let s = AddressSpace::new(&mem, PhysAddr(0x1000));
    for len in [u64::MAX, 1 << 40, (1 << 20) + 1] {
        mem.reset();
        assert!(matches!(
            s.read_bytes(VirtAddr(0x1000), len, 1 << 20),
            Err(MemError::LengthTooLarge { .. })
        ));
        assert!(s.read_array::<u64>(VirtAddr(0x1000), len, 1 << 20).is_err());
        assert_eq!(mem.reads(), 0);
    }
}
