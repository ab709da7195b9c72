//! nitro-mem translation and virtual-read throughput on seeded synthetic page tables.
//!
//! Goals (issue 3): a cached translation under 20 ns, an uncached 4-level walk under 200 ns.
//! Run: `cargo bench -p nitro-benches --bench translate -- --warm-up-time 1 --measurement-time 3`
//! Each translation benchmark translates a batch of `BATCH` addresses per iteration, so the
//! time per translation is the reported time divided by `BATCH` (criterion also prints
//! elements per second).
//!
//! Times are this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the build
//! machines are shared, and time spent preempted by other jobs is not the code's cost. On an
//! idle machine the two agree.

use std::hint::black_box;

use std::time::Duration;

use criterion::{
    criterion_group, criterion_main,
    measurement::{Measurement, ValueFormatter, WallTime},
    Criterion, Throughput,
};
use nitro_mem::{
    AddressSpace, MappedFileMemory, PagingMode, PhysAddr, PhysMemory, TranslationCache, VecMemory,
    VirtAddr,
};

/// Fixed seed: every run builds the same tables.
const SEED: u64 = 0x6e69_7472_6f2d_6d65;
/// Guest size: tables and data pages are allocated from this.
const GUEST: usize = 64 << 20;
/// Number of random 4 KiB mappings (spread over many tables).
const PAGES: usize = 4096;
/// Addresses translated per iteration.
const BATCH: usize = 1024;
/// Working set of the cache-hit benchmark (random pages; a few collide in the two-way sets).
const HOT: usize = 256;
/// Contiguous virtual range for the read-bandwidth benchmarks (4 KiB pages, scattered
/// physically).
const READ_LEN: usize = 64 << 10;
const READ_BASE: u64 = 0x7f12_3400_0000;

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;

/// Criterion measurement by this thread's CPU time, formatted like wall time.
struct ThreadCpuTime {
    wall: WallTime,
}

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, writable `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

type Crit = Criterion<ThreadCpuTime>;

/// xorshift64*: small, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Synthetic x86-64 page tables in a `VecMemory`.
struct Guest {
    mem: VecMemory,
    next: u64,
    root: u64,
    mode: PagingMode,
}

impl Guest {
    fn new(mode: PagingMode) -> Self {
        let mut g = Guest {
            mem: VecMemory::new(GUEST),
            next: 0x1000,
            root: 0,
            mode,
        };
        g.root = g.alloc();
        g
    }

    fn alloc(&mut self) -> u64 {
        let p = self.next;
        self.next += 0x1000;
        assert!(self.next <= GUEST as u64, "synthetic guest full");
        p
    }

    fn entry(&self, at: u64) -> u64 {
        self.mem.read_phys_u64(PhysAddr(at)).unwrap()
    }

    /// Maps the 4 KiB page at `va` to a fresh physical page; false if already mapped.
    fn map4k(&mut self, va: u64) -> bool {
        let levels = if self.mode == PagingMode::Level5 {
            5
        } else {
            4
        };
        let mut table = self.root;
        for level in (2..=levels).rev() {
            let slot = table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
            let e = self.entry(slot);
            table = if e & P == 0 {
                let t = self.alloc();
                self.mem
                    .write_phys(PhysAddr(slot), &(t | P | RW | US).to_le_bytes())
                    .unwrap();
                t
            } else {
                e & 0x000f_ffff_ffff_f000
            };
        }
        let slot = table + ((va >> 12) & 0x1ff) * 8;
        if self.entry(slot) & P != 0 {
            return false;
        }
        let page = self.alloc();
        self.mem
            .write_phys(PhysAddr(slot), &(page | P | RW | US).to_le_bytes())
            .unwrap();
        true
    }
}

/// A guest with `PAGES` random user pages (within 16 PML4 slots, so upper tables are shared
/// as in a real process) and the contiguous read range; returns the mapped addresses in a
/// random order.
fn build(mode: PagingMode) -> (Guest, Vec<VirtAddr>) {
    let mut rng = Rng(SEED);
    let mut g = Guest::new(mode);
    let mut vas = Vec::with_capacity(PAGES);
    while vas.len() < PAGES {
        let va = (rng.next() & 0x0000_07ff_ffff_f000) | 0x0000_7000_0000_0000;
        if g.map4k(va) {
            vas.push(VirtAddr(va | (rng.next() & 0xfff)));
        }
    }
    for i in 0..(READ_LEN as u64 / 0x1000) {
        g.map4k(READ_BASE + i * 0x1000);
    }
    (g, vas)
}

/// Translates the next `BATCH` addresses of `vas` (whose length is a multiple of `BATCH`),
/// wrapping around; the loop itself costs about one load per address.
fn walk_batch<F: Fn(VirtAddr)>(vas: &[VirtAddr], at: &mut usize, f: F) {
    let start = *at % vas.len();
    *at = start + BATCH;
    for &va in vas.get(start..start + BATCH).unwrap_or(&[]) {
        f(black_box(va));
    }
}

/// `vas` repeated to `BATCH` entries.
fn repeat(vas: &[VirtAddr]) -> Vec<VirtAddr> {
    vas.iter().copied().cycle().take(BATCH).collect()
}

fn translation(c: &mut Crit) {
    let mut group = c.benchmark_group("translate");
    group.throughput(Throughput::Elements(BATCH as u64));
    for mode in [PagingMode::Level4, PagingMode::Level5] {
        let (g, vas) = build(mode);
        let space = AddressSpace::with_mode(&g.mem, PhysAddr(g.root), mode);
        let name = if mode == PagingMode::Level4 {
            "4level"
        } else {
            "5level"
        };
        // Full walks over PAGES distinct random pages: the tables do not all fit in the CPU
        // caches, as in a real guest.
        let mut at = 0usize;
        group.bench_function(format!("uncached_{name}"), |b| {
            b.iter(|| {
                walk_batch(&vas, &mut at, |va| {
                    black_box(space.translate(va).unwrap());
                })
            })
        });
        // Full walks of one address: the tables stay in L1, so this is the walker's own cost.
        let one = repeat(&vas[..1]);
        if mode == PagingMode::Level4 {
            group.bench_function(format!("uncached_{name}_hot_tables"), |b| {
                b.iter(|| {
                    walk_batch(&one, &mut at, |va| {
                        black_box(space.translate(va).unwrap());
                    })
                })
            });
        }
        // Cache hits: HOT random pages in a default-size cache (4096 slots, two-way).
        let cache = TranslationCache::new();
        let cached = AddressSpace::with_mode(&g.mem, PhysAddr(g.root), mode).cached(&cache);
        let hot = repeat(&vas[..HOT]);
        for &va in &hot {
            cached.translate(va).unwrap();
        }
        group.bench_function(format!("cached_hit_{name}"), |b| {
            b.iter(|| {
                walk_batch(&hot, &mut at, |va| {
                    black_box(cached.translate(va).unwrap());
                })
            })
        });
        let s = cache.stats();
        eprintln!(
            "translate/cached_hit_{name}: hit rate {:.4} over {} lookups",
            s.hits as f64 / (s.hits + s.misses).max(1) as f64,
            s.hits + s.misses
        );
    }
    // The same 4-level walks over a lock-free source (a mapped file, as QEMU's shared memory
    // backend is read).
    let (g, vas) = build(PagingMode::Level4);
    if let Some((file, path)) = to_shm_file(&g.mem) {
        let space = AddressSpace::new(&file, PhysAddr(g.root));
        let mut at = 0usize;
        group.bench_function("uncached_4level_mapped_file", |b| {
            b.iter(|| {
                walk_batch(&vas, &mut at, |va| {
                    black_box(space.translate(va).unwrap());
                })
            })
        });
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    group.finish();
}

/// Copies guest memory into a file under /dev/shm (or the temp dir) and maps it.
fn to_shm_file(mem: &VecMemory) -> Option<(MappedFileMemory, String)> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("nitro-bench-translate-{}", std::process::id()));
    let path = path.to_str()?.to_string();
    let mut bytes = vec![0u8; GUEST];
    mem.read_phys(PhysAddr(0), &mut bytes).ok()?;
    std::fs::write(&path, &bytes).ok()?;
    Some((MappedFileMemory::open_flat(&path).ok()?, path))
}

fn virtual_reads(c: &mut Crit) {
    let mut group = c.benchmark_group("read_virt");
    group.throughput(Throughput::Bytes(READ_LEN as u64));
    let (g, _) = build(PagingMode::Level4);
    let mut buf = vec![0u8; READ_LEN];
    let space = AddressSpace::new(&g.mem, PhysAddr(g.root));
    group.bench_function("uncached_64KiB", |b| {
        b.iter(|| {
            space
                .read_virt(black_box(VirtAddr(READ_BASE)), &mut buf)
                .unwrap()
        })
    });
    let cache = TranslationCache::new();
    let cached = AddressSpace::new(&g.mem, PhysAddr(g.root)).cached(&cache);
    group.bench_function("cached_64KiB", |b| {
        b.iter(|| {
            cached
                .read_virt(black_box(VirtAddr(READ_BASE)), &mut buf)
                .unwrap()
        })
    });
    // Small reads (a syscall argument: one u64) through the cache.
    group.throughput(Throughput::Bytes(8));
    group.bench_function("cached_u64", |b| {
        b.iter(|| {
            let mut v = [0u8; 8];
            cached
                .read_virt(black_box(VirtAddr(READ_BASE + 0x1230)), &mut v)
                .unwrap();
            v
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = translation, virtual_reads
}
criterion_main!(benches);
