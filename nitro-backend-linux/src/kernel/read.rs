//! Bounds-checked little-endian reads from byte slices (x86-64 kernels are little-endian).

/// `N` bytes at `off`, or `None` past the end.
pub(crate) fn bytes<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Little-endian `u16` at `off`.
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    bytes::<2>(b, off).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `off`.
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    bytes::<4>(b, off).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `off`.
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    bytes::<8>(b, off).map(u64::from_le_bytes)
}

/// `len` bytes at `off`, or `None` past the end.
pub(crate) fn slice(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// The NUL-terminated string at `off` (without the NUL), or `None` when there is no NUL.
pub(crate) fn cstr(b: &[u8], off: usize) -> Option<&[u8]> {
    let rest = b.get(off..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    rest.get(..end)
}

/// Whether `b[from..to]` exists and is all zero bytes (alignment padding).
pub(crate) fn zeros(b: &[u8], from: usize, to: usize) -> bool {
    b.get(from..to).is_some_and(|p| p.iter().all(|&c| c == 0))
}
