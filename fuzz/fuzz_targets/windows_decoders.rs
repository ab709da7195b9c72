//! Every NT argument decoder: the input picks the prototype and the arguments; the rest is
//! guest memory mapped at a fixed address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_backend_windows::decoders;
use nitro_mem::{MemError, VirtAddr, VirtRead};

const BASE: u64 = 0x7ff6_0000_0000;

struct Mem<'a>(&'a [u8]);

impl VirtRead for Mem<'_> {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        assert!(buf.len() <= 64 * 1024, "read of {} bytes", buf.len());
        let off = va.0.checked_sub(BASE).ok_or(MemError::NonCanonical(va))? as usize;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| self.0.get(off..end))
            .ok_or(MemError::NonCanonical(va))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let n = decoders::MAX_ARGS * 8 + 2;
    if data.len() < n {
        return;
    }
    let (head, rest) = data.split_at(n);
    let protos = decoders::prototypes::PROTOTYPES;
    let pick = u16::from_le_bytes([head[0], head[1]]) as usize;
    let Some(p) = protos.get(pick % protos.len().max(1)) else {
        return;
    };
    let raw: Vec<u64> = head[2..]
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let w = u64::from_le_bytes(b);
            if w >> 63 == 1 {
                BASE + (w & 0xffff) % (rest.len() as u64 + 1)
            } else {
                w
            }
        })
        .take(p.params.len())
        .collect();
    let mem = Mem(rest);
    for at_exit in [false, true] {
        for a in decoders::decode(&mem, p, &raw, at_exit) {
            let _ = a.value.text();
        }
    }
});
