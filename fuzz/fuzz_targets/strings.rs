//! The bounded string and buffer readers over arbitrary page tables and data: every read
//! returns at most what the caller allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_mem::{AddressSpace, PhysAddr, VecMemory, VirtAddr, VirtRead, VirtReadExt};

fuzz_target!(|data: &[u8]| {
    let Some((head, ram)) = data.split_first_chunk::<24>() else {
        return;
    };
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let mem = VecMemory::from_vec(ram.to_vec());
    let s = AddressSpace::new(&mem, PhysAddr(word(0) & 0xffff_f000));
    let va = VirtAddr(word(1));
    let max = (word(2) % 0x4000) as usize;
    if let Ok((v, _)) = s.read_cstring_prefix(va, max) {
        assert!(v.len() <= max);
    }
    if let Ok((v, _)) = s.read_utf16_prefix(va, max) {
        assert!(v.len() <= max);
    }
    let _ = s.read_unicode_string(va, max);
    let _ = s.read_unicode_string32(va, max);
    let _ = s.read_filename_ptr(va, max);
    if let Ok(v) = s.read_bytes(va, word(2) >> 32, max) {
        assert!(v.len() <= max);
    }
    if let Ok(v) = s.read_array::<u32>(va, word(2) >> 40, max) {
        assert!(v.len() <= max);
    }
});
