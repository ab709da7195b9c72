//! Hostile guests against every argument decoder: random registers over random memory,
//! through `syscalls::decode_enter` / `decode_exit` for every prototype in the table, 64-bit
//! and compat. The property: no panic, no hang, and reads stay bounded (no single read over
//! 1 MiB, a bounded total per call), as `syscalls`' module docs promise.
//!
//! This is the CI form of the `fuzz/` targets (cargo-fuzz needs nightly; this runs on
//! stable in bounded time).

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use nitro_backend_linux::syscalls::{self, table, DecodeOptions};
use nitro_mem::{MemError, VirtAddr, VirtRead};
use proptest::prelude::*;

/// Where the random memory window sits in the guest's address space.
const BASE: u64 = 0x7f00_0000_0000;
/// Largest read one decoder may ask for (`syscalls` bounds "anything else by 1 MiB").
const MAX_ONE_READ: usize = (1 << 20) + 4096;
/// Largest total one call's decoding may read (six arguments, each bounded).
const MAX_TOTAL: u64 = 16 << 20;

/// Random bytes mapped at `BASE`; everything else unreadable. Counts what is asked of it.
struct Hostile {
    bytes: Vec<u8>,
    largest: Cell<usize>,
    total: Cell<u64>,
    reads: Cell<u64>,
}

impl Hostile {
    fn new(bytes: Vec<u8>) -> Self {
        Hostile {
            bytes,
            largest: Cell::new(0),
            total: Cell::new(0),
            reads: Cell::new(0),
        }
    }
}

impl VirtRead for Hostile {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.largest.set(self.largest.get().max(buf.len()));
        self.total.set(self.total.get() + buf.len() as u64);
        self.reads.set(self.reads.get() + 1);
        let off =
            va.0.checked_sub(BASE)
                .and_then(|o| usize::try_from(o).ok())
                .ok_or(MemError::NonCanonical(va))?;
        let end = off
            .checked_add(buf.len())
            .ok_or(MemError::NonCanonical(va))?;
        let src = self.bytes.get(off..end).ok_or(MemError::NonCanonical(va))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Register values that matter: small numbers, negative numbers, pointers into the
/// window (start, middle, near the end), pointers just outside, and anything.
fn register(window: usize) -> impl Strategy<Value = u64> {
    let w = window as u64;
    prop_oneof![
        0u64..64,
        (0u64..w).prop_map(|o| BASE + o),
        (0u64..16).prop_map(move |o| BASE + w - o),
        Just(BASE - 1),
        (-4096i64..0).prop_map(|v| v as u64),
        any::<u64>(),
        any::<u32>().prop_map(u64::from),
    ]
}

/// Memory whose 8-byte words are often pointers back into the window (arrays of pointers,
/// iovecs, msghdrs), often small lengths, and otherwise random.
fn memory(window: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..window as u64).prop_map(|o| BASE + o),
            0u64..256,
            Just(u64::MAX),
            any::<u64>(),
        ],
        window / 8,
    )
    .prop_map(|words| words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

fn check_call(
    info: &syscalls::SyscallInfo,
    raw: &[u64; 6],
    ret: i64,
    mem: &Hostile,
    opts: &DecodeOptions,
) -> Result<(), TestCaseError> {
    mem.total.set(0);
    let start = Instant::now();
    let mut args = syscalls::decode_enter(info, raw, mem, opts);
    syscalls::decode_exit(info, raw, ret, &mut args, mem, opts);
    let line = syscalls::render_call(info.name, &args, Some(&syscalls::format_return(info, ret)));
    let took = start.elapsed();
    prop_assert!(line.starts_with(info.name));
    prop_assert!(
        mem.largest.get() <= MAX_ONE_READ,
        "{}: one read of {} bytes",
        info.name,
        mem.largest.get()
    );
    prop_assert!(
        mem.total.get() <= MAX_TOTAL,
        "{}: {} bytes read for one call",
        info.name,
        mem.total.get()
    );
    // A rendered line is bounded by what was read plus formatting.
    prop_assert!(
        line.len() < 64 * 1024 + 8 * mem.total.get() as usize,
        "{}",
        info.name
    );
    prop_assert!(
        took < Duration::from_secs(2),
        "{}: decoding took {took:?}",
        info.name
    );
    Ok(())
}

const WINDOW: usize = 16 * 1024;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every prototype, 64-bit, default options, random registers and return values.
    #[test]
    fn every_decoder_survives_hostile_memory(
        bytes in memory(WINDOW),
        regs in prop::collection::vec(prop::array::uniform6(register(WINDOW)), 4),
        rets in prop::collection::vec(prop_oneof![-4096i64..4096, any::<i64>()], 4),
        verbose in any::<bool>(),
        string_limit in prop_oneof![Just(32usize), 0usize..8, Just(1 << 20)],
    ) {
        let mem = Hostile::new(bytes);
        let opts = DecodeOptions { string_limit, verbose, ..DecodeOptions::default() };
        for info in table::all() {
            for (raw, ret) in regs.iter().zip(&rets) {
                check_call(info, raw, *ret, &mem, &opts)?;
            }
        }
        prop_assert!(mem.reads.get() > 0, "no decoder read memory at all");
    }

    /// The same for 32-bit (i386) processes: 4-byte pointers and longs.
    #[test]
    fn every_compat_decoder_survives_hostile_memory(
        bytes in memory(WINDOW),
        regs in prop::collection::vec(prop::array::uniform6(register(WINDOW)), 2),
        ret in prop_oneof![-4096i64..4096, any::<i64>()],
    ) {
        let mem = Hostile::new(bytes);
        let opts = DecodeOptions { compat: true, ..DecodeOptions::default() };
        for info in table::all() {
            for raw in &regs {
                check_call(info, raw, ret, &mem, &opts)?;
            }
        }
    }
}

/// Every 8-byte word of memory a pointer to the next word: lists and arrays of pointers
/// that never end must stop at the caller's bounds.
#[test]
fn endless_pointer_chains_are_cut() {
    let words: Vec<u8> = (0..WINDOW as u64 / 8)
        .flat_map(|i| (BASE + (i + 1) * 8).to_le_bytes())
        .collect();
    let mem = Hostile::new(words);
    let opts = DecodeOptions::default();
    for info in table::all() {
        let raw = [BASE, BASE + 8, 64, BASE, BASE + 16, 1 << 40];
        check_call(info, &raw, 0, &mem, &opts).unwrap_or_else(|e| panic!("{e}"));
    }
    // execve's argv here is an endless array of non-NULL pointers: shown up to max_array.
    let (_, execve) = table::by_name_x86_64("execve").expect("execve known");
    let args = syscalls::decode_enter(execve, &[BASE, BASE, BASE, 0, 0, 0], &mem, &opts);
    let line = syscalls::render_call("execve", &args, None);
    assert!(line.contains("..."), "{line}");
}

/// Memory that is one long run of non-NUL bytes: strings are cut at the limit.
#[test]
fn unterminated_strings_are_cut() {
    let mem = Hostile::new(vec![b'A'; 1 << 20]);
    let opts = DecodeOptions::default();
    let (_, openat) = table::by_name_x86_64("openat").expect("openat known");
    let args = syscalls::decode_enter(openat, &[0, BASE, 0, 0, 0, 0], &mem, &opts);
    let line = syscalls::render_call("openat", &args, None);
    // A path is read up to PATH_MAX (4096) and shown cut.
    assert!(line.len() < 8192, "{} bytes", line.len());
    assert!(mem.largest.get() <= MAX_ONE_READ);
    let (_, write) = table::by_name_x86_64("write").expect("write known");
    let args = syscalls::decode_enter(write, &[1, BASE, 1 << 40, 0, 0, 0], &mem, &opts);
    let line = syscalls::render_call("write", &args, None);
    assert!(line.contains("\"AAAA"), "{line}");
    assert!(line.len() < 256, "{line}");
}
