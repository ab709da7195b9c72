//! Every Linux argument decoder: the input picks the call (64-bit or compat), the six
//! registers and the return value, and the rest is guest memory mapped at a fixed address.
//! No panic, no single read over 1 MiB.
#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use nitro_backend_linux::syscalls::{self, table, DecodeOptions};
use nitro_mem::{MemError, VirtAddr, VirtRead};

const BASE: u64 = 0x7f00_0000_0000;

struct Mem<'a> {
    bytes: &'a [u8],
    largest: Cell<usize>,
}

impl VirtRead for Mem<'_> {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.largest.set(self.largest.get().max(buf.len()));
        let off = va.0.checked_sub(BASE).ok_or(MemError::NonCanonical(va))? as usize;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(MemError::NonCanonical(va))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<60>() else {
        return;
    };
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[4 + i * 8..12 + i * 8]);
        u64::from_le_bytes(b)
    };
    let all = table::all();
    let pick = u16::from_le_bytes([head[0], head[1]]) as usize;
    let Some(info) = all.get(pick % all.len().max(1)) else {
        return;
    };
    // Registers: a high bit asks for a pointer into the mapped data.
    let reg = |i: usize| {
        let w = word(i);
        if w >> 63 == 1 {
            BASE + (w & 0xffff) % (rest.len() as u64 + 1)
        } else {
            w
        }
    };
    let raw = [reg(0), reg(1), reg(2), reg(3), reg(4), reg(5)];
    let ret = word(6) as i64;
    let opts = DecodeOptions {
        compat: head[2] & 1 == 1,
        verbose: head[2] & 2 == 2,
        string_limit: usize::from(head[3]),
        ..DecodeOptions::default()
    };
    let mem = Mem {
        bytes: rest,
        largest: Cell::new(0),
    };
    let mut args = syscalls::decode_enter(info, &raw, &mem, &opts);
    syscalls::decode_exit(info, &raw, ret, &mut args, &mem, &opts);
    let _ = syscalls::render_call(info.name, &args, Some(&syscalls::format_return(info, ret)));
    assert!(mem.largest.get() <= (1 << 20) + 4096);
});
