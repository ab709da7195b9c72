//! A sparse fake guest address space for the decoder tests.

use std::collections::HashMap;

use nitro_mem::{MemError, PhysAddr, VirtAddr, VirtRead};

const PAGE: u64 = 4096;

/// Pages mapped on demand by `put`; reads of unmapped pages fail as "not present".
#[derive(Default)]
pub struct FakeMem {
    pages: HashMap<u64, Vec<u8>>,
    /// Next free address of `alloc`.
    next: u64,
}

impl FakeMem {
    pub fn new() -> Self {
        FakeMem {
            pages: HashMap::new(),
            next: 0x7ffd_0000_1000,
        }
    }

    /// Writes `bytes` at `addr`, mapping the pages it touches.
    pub fn put(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr + i as u64;
            let page = self
                .pages
                .entry(a / PAGE)
                .or_insert_with(|| vec![0; PAGE as usize]);
            page[(a % PAGE) as usize] = *b;
        }
    }

    /// Copies `bytes` to fresh memory (16-byte aligned) and returns the address.
    pub fn alloc(&mut self, bytes: &[u8]) -> u64 {
        let at = self.next;
        self.put(at, bytes);
        self.next = (at + bytes.len().max(1) as u64 + 15) & !15;
        at
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self, s: &str) -> u64 {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.alloc(&v)
    }

    /// An array of 8-byte pointers ending in NULL.
    pub fn ptrs(&mut self, p: &[u64]) -> u64 {
        let mut v: Vec<u8> = p.iter().flat_map(|x| x.to_le_bytes()).collect();
        v.extend_from_slice(&[0; 8]);
        self.alloc(&v)
    }

    fn byte(&self, a: u64) -> Result<u8, MemError> {
        self.pages
            .get(&(a / PAGE))
            .map(|p| p[(a % PAGE) as usize])
            .ok_or(MemError::NotPresent {
                addr: VirtAddr(a),
                level: 1,
                entry_addr: PhysAddr(0),
                entry: 0,
            })
    }
}

impl VirtRead for FakeMem {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(va.0.wrapping_add(i as u64))?;
        }
        Ok(())
    }

    fn read_cstring_prefix(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool), MemError> {
        let mut out = Vec::new();
        while out.len() < max {
            let c = self.byte(va.0.wrapping_add(out.len() as u64))?;
            if c == 0 {
                return Ok((out, true));
            }
            out.push(c);
        }
        Ok((out, false))
    }
}
