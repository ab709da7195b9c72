//! Bounded string readers: C strings, UTF-16LE wide strings and Windows `UNICODE_STRING`.
//!
//! Every reader takes a caller-given maximum, reads page by page (so a string that ends just
//! before an unmapped page is read without touching it), and allocates only for bytes that
//! were actually read.

use crate::{read::page_left, MemError, Result, VirtAddr, VirtRead};

/// Up to `max` bytes of a NUL-terminated string, and whether the NUL was found.
pub(crate) fn cstring_prefix<R: VirtRead + ?Sized>(
    r: &R,
    va: VirtAddr,
    max: usize,
) -> Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut page = [0u8; 4096];
    while out.len() < max {
        let at = va.add(out.len() as u64);
        let n = page_left(at).min(max - out.len());
        let chunk = &mut page[..n];
        r.read_virt(at, chunk)?;
        if let Some(z) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..z]);
            return Ok((out, true));
        }
        out.extend_from_slice(chunk);
    }
    Ok((out, false))
}

/// Up to `max_units` UTF-16LE units of a NUL-terminated wide string, and whether the NUL unit
/// was found. The string may start at an odd address (a unit may straddle pages).
pub(crate) fn utf16_prefix<R: VirtRead + ?Sized>(
    r: &R,
    va: VirtAddr,
    max_units: usize,
) -> Result<(Vec<u16>, bool)> {
    let max_bytes = max_units.saturating_mul(2);
    let mut out = Vec::new();
    let mut pending: Option<u8> = None;
    let mut read = 0usize;
    let mut page = [0u8; 4096];
    while out.len() < max_units {
        let at = va.add(read as u64);
        let n = page_left(at).min(max_bytes - read);
        let chunk = &mut page[..n];
        r.read_virt(at, chunk)?;
        read += n;
        let mut bytes = chunk.iter().copied();
        loop {
            let lo = match pending.take() {
                Some(b) => b,
                None => match bytes.next() {
                    Some(b) => b,
                    None => break,
                },
            };
            let Some(hi) = bytes.next() else {
                pending = Some(lo);
                break;
            };
            let unit = u16::from_le_bytes([lo, hi]);
            if unit == 0 {
                return Ok((out, true));
            }
            out.push(unit);
        }
    }
    Ok((out, false))
}

/// The header of a Windows `UNICODE_STRING`.
///
/// Layout from the Windows SDK (shared/ntdef.h): `{ USHORT Length; USHORT MaximumLength;
/// PWSTR Buffer; }`, lengths in bytes without a terminator. With natural alignment `Buffer`
/// is at offset 8 on x64 (16-byte struct) and at offset 4 on x86 / WOW64 (8-byte struct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnicodeString {
    /// Length of the text in bytes.
    pub length: u16,
    /// Size of the buffer in bytes.
    pub maximum_length: u16,
    /// Address of the UTF-16LE text.
    pub buffer: VirtAddr,
}

pub(crate) fn unicode_string_header<R: VirtRead + ?Sized>(
    r: &R,
    va: VirtAddr,
    is64: bool,
) -> Result<UnicodeString> {
    let mut b = [0u8; 16];
    let raw = if is64 { &mut b[..] } else { &mut b[..8] };
    r.read_virt(va, raw)?;
    let length = u16::from_le_bytes([b[0], b[1]]);
    let maximum_length = u16::from_le_bytes([b[2], b[3]]);
    let buffer = if is64 {
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
    } else {
        u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
    };
    Ok(UnicodeString {
        length,
        maximum_length,
        buffer: VirtAddr(buffer),
    })
}

pub(crate) fn unicode_string_text<R: VirtRead + ?Sized>(
    r: &R,
    va: VirtAddr,
    h: &UnicodeString,
    max_bytes: usize,
) -> Result<String> {
    let len = u64::from(h.length);
    if len > max_bytes as u64 {
        return Err(MemError::LengthTooLarge {
            addr: va,
            len,
            max: max_bytes,
        });
    }
    let bytes = r.read_bytes(h.buffer, len & !1, max_bytes)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}
