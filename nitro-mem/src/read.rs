//! Virtual reads that cross pages, typed reads and batched reads, for any translator.

use crate::{
    strings, AddressSpace, CachedAddressSpace, FromBytes, MemError, PhysMemory, Result, Translate,
    TranslationCache, UnicodeString, VirtAddr,
};

/// Reads `buf.len()` bytes at `va` through translator `t` over `mem`, one page at a time.
fn read_via<T, M>(t: &T, mem: &M, va: VirtAddr, buf: &mut [u8]) -> Result<()>
where
    T: Translate + ?Sized,
    M: PhysMemory + ?Sized,
{
    let mut done = 0usize;
    while done < buf.len() {
        let tr = t.translate(va.add(done as u64))?;
        let n = (tr.bytes_left_in_page() as usize).min(buf.len() - done);
        mem.read_phys(tr.phys, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Writes `buf` at `va` through translator `t` over `mem`, one page at a time. Every page is
/// translated before anything is written, so a write that would fault changes nothing.
fn write_via<T, M>(t: &T, mem: &M, va: VirtAddr, buf: &[u8]) -> Result<()>
where
    T: Translate + ?Sized,
    M: PhysMemory + ?Sized,
{
    let mut parts = Vec::new();
    let mut done = 0usize;
    while done < buf.len() {
        let tr = t.translate(va.add(done as u64))?;
        let n = (tr.bytes_left_in_page() as usize).min(buf.len() - done);
        parts.push((tr.phys, done..done + n));
        done += n;
    }
    for (phys, r) in parts {
        mem.write_phys(phys, &buf[r])?;
    }
    Ok(())
}

/// Bytes from `va` to the end of its 4 KiB virtual page: no read chunk of this size crosses
/// a page of any size, so chunked reads fault exactly where the data ends.
pub(crate) fn page_left(va: VirtAddr) -> usize {
    (0x1000 - (va.0 & 0xfff)) as usize
}

/// Reads `len` bytes (refused above `max`), growing the buffer page by page so that an
/// unmapped range fails before a large allocation is made.
pub(crate) fn read_bytes_bounded<R: VirtRead + ?Sized>(
    r: &R,
    va: VirtAddr,
    len: u64,
    max: usize,
) -> Result<Vec<u8>> {
    if len > max as u64 {
        return Err(MemError::LengthTooLarge { addr: va, len, max });
    }
    let len = len as usize;
    let mut v = Vec::with_capacity(len.min(1 << 16));
    while v.len() < len {
        let at = va.add(v.len() as u64);
        let n = page_left(at).min(len - v.len());
        let start = v.len();
        v.resize(start + n, 0);
        r.read_virt(at, &mut v[start..])?;
    }
    Ok(v)
}

/// Object-safe reads of one virtual address space: what OS backends and argument decoders
/// take, so they do not depend on the memory source or translator behind it.
///
/// Only [`read_virt`](VirtRead::read_virt) is required; every other method is built on it,
/// reads at most what its caller allows, and never reads a page the data does not reach.
pub trait VirtRead {
    /// Reads `buf.len()` bytes at `va`, crossing pages.
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<()>;

    /// Reads up to `max` bytes of a NUL-terminated string; returns the bytes (terminator
    /// excluded) and whether the terminator was found within `max`.
    fn read_cstring_prefix(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        strings::cstring_prefix(self, va, max)
    }

    /// Reads a NUL-terminated string of at most `max` bytes; longer is
    /// [`MemError::StringTooLong`].
    fn read_cstring(&self, va: VirtAddr, max: usize) -> Result<Vec<u8>> {
        match self.read_cstring_prefix(va, max)? {
            (s, true) => Ok(s),
            (_, false) => Err(MemError::StringTooLong { addr: va, max }),
        }
    }

    /// Reads a little-endian `u64`.
    fn read_u64(&self, va: VirtAddr) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_virt(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, va: VirtAddr) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_virt(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u16`.
    fn read_u16(&self, va: VirtAddr) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_virt(va, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads one byte.
    fn read_u8(&self, va: VirtAddr) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_virt(va, &mut b)?;
        Ok(b[0])
    }

    /// Reads a 64-bit pointer.
    fn read_ptr(&self, va: VirtAddr) -> Result<VirtAddr> {
        self.read_u64(va).map(VirtAddr)
    }

    /// Reads `len` bytes, refusing lengths over `max`. The buffer grows as pages are read, so
    /// a guest-given length costs memory only for data that exists.
    fn read_bytes(&self, va: VirtAddr, len: u64, max: usize) -> Result<Vec<u8>> {
        read_bytes_bounded(self, va, len, max)
    }

    /// Reads several ranges; each result is independent of the others.
    fn read_virt_many(&self, reqs: &mut [(VirtAddr, &mut [u8])]) -> Vec<Result<()>> {
        reqs.iter_mut()
            .map(|(va, buf)| self.read_virt(*va, buf))
            .collect()
    }

    /// Reads up to `max_units` UTF-16LE code units of a NUL-terminated wide string; returns
    /// the units (terminator excluded) and whether the terminator was found.
    fn read_utf16_prefix(&self, va: VirtAddr, max_units: usize) -> Result<(Vec<u16>, bool)> {
        strings::utf16_prefix(self, va, max_units)
    }

    /// Reads a NUL-terminated UTF-16LE string of at most `max_units` units (unpaired
    /// surrogates become U+FFFD); longer is [`MemError::StringTooLong`] with `max` in units.
    fn read_utf16(&self, va: VirtAddr, max_units: usize) -> Result<String> {
        match self.read_utf16_prefix(va, max_units)? {
            (s, true) => Ok(String::from_utf16_lossy(&s)),
            (_, false) => Err(MemError::StringTooLong {
                addr: va,
                max: max_units,
            }),
        }
    }

    /// Reads the header of a 64-bit Windows `UNICODE_STRING` at `va`.
    fn read_unicode_string_header(&self, va: VirtAddr) -> Result<UnicodeString> {
        strings::unicode_string_header(self, va, true)
    }

    /// Reads the header of a 32-bit (WOW64 / x86) Windows `UNICODE_STRING` at `va`.
    fn read_unicode_string32_header(&self, va: VirtAddr) -> Result<UnicodeString> {
        strings::unicode_string_header(self, va, false)
    }

    /// Reads the text of the 64-bit `UNICODE_STRING` at `va`: `Length` bytes (an odd last byte
    /// is dropped) at `Buffer`. A `Length` over `max_bytes` is [`MemError::LengthTooLarge`].
    fn read_unicode_string(&self, va: VirtAddr, max_bytes: usize) -> Result<String> {
        let h = self.read_unicode_string_header(va)?;
        strings::unicode_string_text(self, va, &h, max_bytes)
    }

    /// As [`read_unicode_string`](VirtRead::read_unicode_string), for the 32-bit layout.
    fn read_unicode_string32(&self, va: VirtAddr, max_bytes: usize) -> Result<String> {
        let h = self.read_unicode_string32_header(va)?;
        strings::unicode_string_text(self, va, &h, max_bytes)
    }

    /// Follows a pointer to a C string, as in Linux's `struct filename` (first member
    /// `const char *name`): reads the pointer at `va`, then up to `max` bytes of the string.
    /// Returns the bytes and whether the terminator was found.
    fn read_filename_ptr(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        let name = self.read_ptr(va)?;
        self.read_cstring_prefix(name, max)
    }
}

/// Writes to one virtual address space.
pub trait VirtWrite {
    /// Writes `buf` at `va`, crossing pages. Nothing is written unless every page translates.
    fn write_virt(&self, va: VirtAddr, buf: &[u8]) -> Result<()>;
}

/// Typed reads (generic, so outside the object-safe [`VirtRead`]; available on
/// `dyn VirtRead` too).
pub trait VirtReadExt: VirtRead {
    /// Reads a `T` (little-endian) at `va`.
    fn read_obj<T: FromBytes>(&self, va: VirtAddr) -> Result<T> {
        let mut small = [0u8; 64];
        let mut big = Vec::new();
        let buf = match small.get_mut(..T::SIZE) {
            Some(b) => b,
            None => {
                big.resize(T::SIZE, 0);
                &mut big[..]
            }
        };
        self.read_virt(va, buf)?;
        // The buffer has exactly T::SIZE bytes, so decoding cannot fail.
        T::from_le_slice(buf).ok_or(MemError::LengthTooLarge {
            addr: va,
            len: T::SIZE as u64,
            max: T::SIZE,
        })
    }

    /// Reads `count` consecutive `T`s at `va`, refusing counts over `max_count`.
    fn read_array<T: FromBytes>(
        &self,
        va: VirtAddr,
        count: u64,
        max_count: usize,
    ) -> Result<Vec<T>> {
        if count > max_count as u64 {
            return Err(MemError::LengthTooLarge {
                addr: va,
                len: count,
                max: max_count,
            });
        }
        let too_large = MemError::LengthTooLarge {
            addr: va,
            len: count,
            max: max_count,
        };
        let bytes = count.checked_mul(T::SIZE as u64).ok_or(too_large.clone())?;
        let buf = read_bytes_bounded(self, va, bytes, bytes as usize)?;
        if T::SIZE == 0 {
            return (0..count)
                .map(|_| T::from_le_slice(&[]).ok_or(too_large.clone()))
                .collect();
        }
        buf.chunks_exact(T::SIZE)
            .map(|c| T::from_le_slice(c).ok_or(too_large.clone()))
            .collect()
    }
}

impl<R: VirtRead + ?Sized> VirtReadExt for R {}

impl<M: PhysMemory> AddressSpace<M> {
    /// Reads `buf.len()` bytes at `va`, crossing page boundaries as needed.
    pub fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<()> {
        read_via(self, self.memory(), va, buf)
    }

    /// Writes `buf` at `va`, crossing page boundaries as needed. Nothing is written unless
    /// every page translates.
    pub fn write_virt(&self, va: VirtAddr, buf: &[u8]) -> Result<()> {
        write_via(self, self.memory(), va, buf)
    }

    /// Reads `len` bytes at `va`, refusing lengths over `max` (guest-given lengths are not
    /// trusted).
    pub fn read_bytes(&self, va: VirtAddr, len: u64, max: usize) -> Result<Vec<u8>> {
        read_bytes_bounded(self, va, len, max)
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, va: VirtAddr) -> Result<u64> {
        VirtRead::read_u64(self, va)
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, va: VirtAddr) -> Result<u32> {
        VirtRead::read_u32(self, va)
    }

    /// Reads a little-endian `u16`.
    pub fn read_u16(&self, va: VirtAddr) -> Result<u16> {
        VirtRead::read_u16(self, va)
    }

    /// Reads a NUL-terminated byte string of at most `max` bytes (terminator excluded).
    /// Reads page by page, so a string at the end of a mapping is read without touching the
    /// next page.
    pub fn read_cstring(&self, va: VirtAddr, max: usize) -> Result<Vec<u8>> {
        VirtRead::read_cstring(self, va, max)
    }

    /// Reads up to `max` bytes of a NUL-terminated string; returns the bytes and whether the
    /// terminator was found (strace shows an unterminated prefix followed by `...`).
    pub fn read_cstring_prefix(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool)> {
        strings::cstring_prefix(self, va, max)
    }
}

impl<M: PhysMemory> VirtRead for AddressSpace<M> {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<()> {
        read_via(self, self.memory(), va, buf)
    }
}

impl<M: PhysMemory> VirtWrite for AddressSpace<M> {
    fn write_virt(&self, va: VirtAddr, buf: &[u8]) -> Result<()> {
        write_via(self, self.memory(), va, buf)
    }
}

impl<M: PhysMemory, C: std::borrow::Borrow<TranslationCache>> CachedAddressSpace<M, C> {
    /// Reads `buf.len()` bytes at `va`, crossing page boundaries as needed.
    pub fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<()> {
        read_via(self, self.memory(), va, buf)
    }

    /// Writes `buf` at `va`, crossing page boundaries as needed. Nothing is written unless
    /// every page translates.
    pub fn write_virt(&self, va: VirtAddr, buf: &[u8]) -> Result<()> {
        write_via(self, self.memory(), va, buf)
    }
}

impl<M: PhysMemory, C: std::borrow::Borrow<TranslationCache>> VirtRead
    for CachedAddressSpace<M, C>
{
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<()> {
        read_via(self, self.memory(), va, buf)
    }
}

impl<M: PhysMemory, C: std::borrow::Borrow<TranslationCache>> VirtWrite
    for CachedAddressSpace<M, C>
{
    fn write_virt(&self, va: VirtAddr, buf: &[u8]) -> Result<()> {
        write_via(self, self.memory(), va, buf)
    }
}
