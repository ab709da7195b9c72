//! Hostile guests against every NT argument decoder, with every read counted: random
//! arguments (pointers into random memory, near its end, outside it, anything) through
//! `decoders::decode` at entry and exit for every prototype, and random registers and stacks
//! through `decoders::raw_args`. No panic, no hang, no read over 64 KiB (a
//! `UNICODE_STRING` is at most 65535 bytes), a bounded total per call.
//!
//! This is the CI form of the `fuzz/` Windows target (cargo-fuzz needs nightly).

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use nitro_backend_windows::{decoders, ntstatus};
use nitro_listener::Regs;
use nitro_mem::{MemError, VirtAddr, VirtRead};
use proptest::prelude::*;

const BASE: u64 = 0x0000_7ff6_0000_0000;
const WINDOW: usize = 16 * 1024;
/// `UNICODE_STRING.Length` is a u16: no string read needs more.
const MAX_ONE_READ: usize = 64 * 1024;
const MAX_TOTAL: u64 = 4 << 20;

struct Hostile {
    bytes: Vec<u8>,
    largest: Cell<usize>,
    total: Cell<u64>,
}

impl VirtRead for Hostile {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.largest.set(self.largest.get().max(buf.len()));
        self.total.set(self.total.get() + buf.len() as u64);
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

fn value() -> impl Strategy<Value = u64> {
    let w = WINDOW as u64;
    prop_oneof![
        0u64..64,
        (0u64..w).prop_map(|o| BASE + o),
        (0u64..24).prop_map(move |o| BASE + w - o),
        any::<u64>(),
        any::<u32>().prop_map(u64::from),
    ]
}

/// Memory of pointers back into the window, small and maximal lengths, and noise: shapes
/// of `UNICODE_STRING`, `OBJECT_ATTRIBUTES`, `CLIENT_ID`, `IO_STATUS_BLOCK`.
fn memory() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (0u64..WINDOW as u64).prop_map(|o| BASE + o),
            (0u64..0x10000).prop_map(|l| l | (l << 16)),
            Just(0xffff_ffffu64),
            any::<u64>(),
        ],
        WINDOW / 8,
    )
    .prop_map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_nt_decoder_survives_hostile_memory(
        bytes in memory(),
        raws in prop::collection::vec(prop::collection::vec(value(), decoders::MAX_ARGS), 3),
        status in any::<u64>(),
    ) {
        let mem = Hostile { bytes, largest: Cell::new(0), total: Cell::new(0) };
        for p in decoders::prototypes::PROTOTYPES {
            for raw in &raws {
                let raw = raw.get(..p.params.len()).unwrap_or(raw);
                mem.total.set(0);
                let start = Instant::now();
                for at_exit in [false, true] {
                    let args = decoders::decode(&mem, p, raw, at_exit);
                    prop_assert!(args.len() >= p.params.len(), "{}", p.name);
                    for a in &args {
                        let _ = a.value.text();
                    }
                }
                prop_assert!(mem.largest.get() <= MAX_ONE_READ, "{}: read of {}", p.name, mem.largest.get());
                prop_assert!(mem.total.get() <= MAX_TOTAL, "{}: {} bytes", p.name, mem.total.get());
                prop_assert!(start.elapsed() < Duration::from_secs(1), "{}", p.name);
            }
        }
        let _ = ntstatus::return_value(status);
        let _ = ntstatus::name(status as u32);
        let _ = decoders::generic_args(&raws[0]);
    }

    /// Stack arguments come from `[RSP+0x28+8*i]`: a stack pointer anywhere.
    #[test]
    fn raw_args_from_any_stack(bytes in memory(), rsp in value(), count in 0usize..64) {
        let mem = Hostile { bytes, largest: Cell::new(0), total: Cell::new(0) };
        let regs = Regs { rsp, r10: 1, rdx: 2, r8: 3, r9: 4, ..Regs::default() };
        let v = decoders::raw_args(&regs, &mem, count);
        prop_assert!(v.len() <= decoders::MAX_ARGS);
        prop_assert!(mem.total.get() <= 8 * decoders::MAX_ARGS as u64);
    }
}
