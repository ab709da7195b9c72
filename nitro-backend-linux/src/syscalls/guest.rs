//! Bounded reads of the traced process's memory, in its ABI's word size.

use nitro_mem::{VirtAddr, VirtRead};

/// `PATH_MAX` (`include/uapi/linux/limits.h`): strace shows whole paths, up to this.
pub const PATH_MAX: usize = 4096;

/// Upper bound of any single structure or buffer read here, whatever the guest claims.
pub const MAX_READ: usize = 1 << 20;

/// A view of guest memory for one process (64-bit or i386 compat).
#[derive(Clone, Copy)]
pub struct Guest<'a> {
    pub mem: &'a dyn VirtRead,
    /// i386 process: pointers and longs are 4 bytes.
    pub compat: bool,
}

impl<'a> Guest<'a> {
    /// Size of a pointer / `long`.
    pub fn word_size(&self) -> u64 {
        if self.compat {
            4
        } else {
            8
        }
    }

    /// Reads `n` bytes (`n` is bounded by [`MAX_READ`]).
    pub fn bytes(&self, addr: u64, n: usize) -> Option<Vec<u8>> {
        if addr == 0 {
            return None;
        }
        self.mem.read_bytes(VirtAddr(addr), n as u64, MAX_READ).ok()
    }

    pub fn u32(&self, addr: u64) -> Option<u32> {
        if addr == 0 {
            return None;
        }
        self.mem.read_u32(VirtAddr(addr)).ok()
    }

    pub fn i32(&self, addr: u64) -> Option<i32> {
        self.u32(addr).map(|v| v as i32)
    }

    pub fn u64(&self, addr: u64) -> Option<u64> {
        if addr == 0 {
            return None;
        }
        self.mem.read_u64(VirtAddr(addr)).ok()
    }

    /// Reads a pointer-sized value.
    pub fn word(&self, addr: u64) -> Option<u64> {
        if self.compat {
            self.u32(addr).map(u64::from)
        } else {
            self.u64(addr)
        }
    }

    /// Reads a signed `long`.
    pub fn long(&self, addr: u64) -> Option<i64> {
        if self.compat {
            self.i32(addr).map(i64::from)
        } else {
            self.u64(addr).map(|v| v as i64)
        }
    }

    /// Reads a NUL-terminated string of at most `limit` bytes; returns the bytes and whether
    /// the string went on past the limit.
    pub fn cstring(&self, addr: u64, limit: usize) -> Option<(Vec<u8>, bool)> {
        if addr == 0 {
            return None;
        }
        let limit = limit.min(MAX_READ);
        let (mut s, terminated) = self
            .mem
            .read_cstring_prefix(VirtAddr(addr), limit.saturating_add(1))
            .ok()?;
        if terminated {
            return Some((s, false));
        }
        if s.len() <= limit {
            // The read ended at the limit + 1 without a NUL: more follows.
            return Some((s, true));
        }
        s.truncate(limit);
        Some((s, true))
    }

    /// Reads up to `n` bytes as a buffer shown with `limit` bytes at most.
    pub fn buffer(&self, addr: u64, n: u64, limit: usize) -> Option<(Vec<u8>, bool)> {
        let take = n.min(limit as u64).min(MAX_READ as u64) as usize;
        if addr == 0 {
            return None;
        }
        let b = self.bytes(addr, take)?;
        Some((b, n > take as u64))
    }
}
