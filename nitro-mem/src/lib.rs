//! Guest memory for nitro: physical-memory sources, x86-64 address translation and bounded,
//! typed reads of guest virtual memory.
//!
//! Guest memory is attacker-controlled: every read here is bounded, every page-table walk
//! terminates after at most five reads, lengths and counts taken from the guest are checked
//! against a caller-given maximum before anything is allocated, and failures are errors that
//! name the address (and for page-table walks the level and entry) that failed, never panics.
//!
//! # Layers
//!
//! 1. **Physical memory** — the [`PhysMemory`] trait (read, write, batched read) with one
//!    source per way of reaching a guest:
//!    - [`MappedFileMemory`]: QEMU's `memory-backend-file,share=on` file, mapped zero-copy;
//!    - [`ProcMemory`]: a QEMU process's RAM through `pread`/`pwrite` on `/proc/PID/mem`;
//!    - [`VmMemory`]: an in-process VM's `vm_memory::GuestMemoryMmap` (the `kvm` driver);
//!    - [`DumpMemory`]: a raw image or the ELF core of QEMU's `dump-guest-memory` (with the
//!      vCPUs' registers from its notes: [`QemuCpuState`]);
//!    - [`VecMemory`]: a vector, for tests and synthetic guests.
//! 2. **Translation** — [`AddressSpace`] walks x86-64 page tables (4-level and 5-level
//!    paging, 4 KiB / 2 MiB / 1 GiB pages) from a root ([`PagingMode::from_cr4`] picks the
//!    mode) and reports writable/user/no-execute in a [`Translation`]. [`TranslationCache`] is
//!    a bounded software TLB tagged by root with explicit invalidation;
//!    [`CachedAddressSpace`] puts it in front of a walk. [`kernel_root`], [`user_root`] and
//!    [`pti_pair`] give both halves of a Linux page-table-isolation CR3. Both address-space
//!    types implement [`Translate`].
//! 3. **Reads** — [`VirtRead`] (object-safe; what OS backends take as `&dyn VirtRead`):
//!    reads that cross pages, integers, batched reads, and bounded string readers (C strings,
//!    UTF-16LE, Windows `UNICODE_STRING` in both layouts, Linux `struct filename`-style
//!    pointers). [`VirtReadExt`] adds typed reads of any [`FromBytes`] value or array.
//!    [`VirtWrite`] writes.
//!
//! Errors are one enum, [`MemError`]: [`MemError::NotPresent`] (unmapped or paged out:
//! normal in a live guest, see [`MemError::is_not_present`]) is kept apart from
//! [`MemError::BrokenTable`] (entries pointing outside memory or with reserved bits set) and
//! from out-of-range physical accesses and over-long guest lengths.
//!
//! ```
//! use nitro_mem::{AddressSpace, PhysAddr, PhysMemory, TranslationCache, VecMemory, VirtAddr, VirtRead};
//!
//! // A 1 MiB guest with one 4 KiB page mapped at virtual 0x400000 -> physical 0x5000.
//! let mem = VecMemory::new(1 << 20);
//! let (pml4, pdpt, pd, pt) = (0x1000u64, 0x2000u64, 0x3000u64, 0x4000u64);
//! mem.write_phys(PhysAddr(pml4), &(pdpt | 0x7).to_le_bytes()).unwrap();
//! mem.write_phys(PhysAddr(pdpt), &(pd | 0x7).to_le_bytes()).unwrap();
//! mem.write_phys(PhysAddr(pd + 2 * 8), &(pt | 0x7).to_le_bytes()).unwrap();
//! mem.write_phys(PhysAddr(pt), &(0x5000u64 | 0x7).to_le_bytes()).unwrap();
//! mem.write_phys(PhysAddr(0x5000), b"hello\0").unwrap();
//!
//! let space = AddressSpace::new(&mem, PhysAddr(pml4));
//! assert_eq!(space.read_cstring(VirtAddr(0x400000), 64).unwrap(), b"hello");
//!
//! // The same space behind a translation cache: the second walk is a cache hit.
//! let cache = TranslationCache::new();
//! let cached = space.cached(&cache);
//! assert_eq!(cached.translate(VirtAddr(0x400001)).unwrap().phys, PhysAddr(0x5001));
//! assert_eq!(cached.read_u32(VirtAddr(0x400000)).unwrap(), u32::from_le_bytes(*b"hell"));
//! assert_eq!(cache.stats().hits, 1);
//! // Unmapped is "not present", not an error in the tables.
//! assert!(cached.read_u64(VirtAddr(0x7000_0000)).unwrap_err().is_not_present());
//! ```
#![deny(missing_docs, missing_debug_implementations)]

mod addr;
mod cache;
mod dump;
mod error;
mod file;
mod paging;
mod phys;
mod pod;
mod procmem;
mod read;
mod regions;
mod strings;
mod vmm;

pub use addr::{PhysAddr, VirtAddr};
pub use cache::{CacheStats, CachedAddressSpace, TranslationCache};
pub use dump::{DumpFormat, DumpMemory, ElfNote, QemuCpuState};
pub use error::{MemError, Result};
pub use file::MappedFileMemory;
pub use paging::{
    cr3_root, kernel_root, pti_pair, user_root, AddressSpace, PagingMode, Translate, Translation,
};
pub use phys::{PhysMemory, Region, VecMemory};
pub use pod::FromBytes;
pub use procmem::ProcMemory;
pub use read::{VirtRead, VirtReadExt, VirtWrite};
pub use strings::UnicodeString;
pub use vm_memory;
pub use vmm::VmMemory;
