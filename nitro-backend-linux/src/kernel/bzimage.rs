//! Unpacking the ELF `vmlinux` from an x86 `bzImage` (a distribution's `vmlinuz`).
//!
//! Layout (Linux `Documentation/arch/x86/boot.rst`, "The real-mode kernel header"):
//! `setup_sects` (u8) at 0x1f1 (0 means 4), `boot_flag` 0xAA55 at 0x1fe, the magic `"HdrS"` at
//! 0x202, the protocol `version` (u16) at 0x206, and since protocol 2.08 `payload_offset` (u32)
//! at 0x248 and `payload_length` (u32) at 0x24c. The payload starts `payload_offset` bytes after
//! the protected-mode code, which itself starts at `(setup_sects + 1) * 512` in the file.
//!
//! The payload is the compressed `vmlinux.bin` (an ELF file, plus the relocation table when
//! `CONFIG_RANDOMIZE_BASE` is set) followed by its 4-byte uncompressed size
//! (`size_append` in Linux `scripts/Makefile.lib`). Debian's 6.1 cloud kernel compresses with
//! LZ4 (legacy frame format, `lz4 -l`), the 6.12 one with zstd.

use std::io::Read;

use super::{read, KernelError, Result};

/// Default bound on the decompressed size: a hostile image cannot make us allocate more.
pub const MAX_VMLINUX_SIZE: usize = 512 << 20;

/// Magic of an ELF file (`\x7fELF`).
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Magic of the LZ4 legacy frame (`0x184C2102`, little-endian; lz4 `doc/lz4_Frame_format.md`,
/// "Legacy frame").
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Uncompressed size of one LZ4 legacy block (8 MiB, same document).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// Compression of a bzImage payload, recognised by its first bytes (the magics of Linux
/// `lib/decompress.c`, `compressed_formats[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`1f 8b`).
    Gzip,
    /// bzip2 (`BZh`), not supported.
    Bzip2,
    /// raw LZMA (`5d 00 00`), not supported.
    Lzma,
    /// xz (`fd 37 7a 58 5a 00`), not supported (the kernel adds a BCJ filter).
    Xz,
    /// LZO (`89 4c 5a 4f`), not supported.
    Lzo,
    /// LZ4 legacy frame (`02 21 4c 18`).
    Lz4,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Recognises the compression from the start of a payload.
    pub fn detect(payload: &[u8]) -> Option<Self> {
        let m = |magic: &[u8]| payload.starts_with(magic);
        if m(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if m(b"BZh") {
            Some(Self::Bzip2)
        } else if m(&[0x5d, 0, 0]) {
            Some(Self::Lzma)
        } else if m(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            Some(Self::Xz)
        } else if m(&[0x89, 0x4c, 0x5a, 0x4f]) {
            Some(Self::Lzo)
        } else if m(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Some(Self::Lz4)
        } else if m(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Lzma => "lzma",
            Self::Xz => "xz",
            Self::Lzo => "lzo",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// The compressed payload of a bzImage (a slice of `bz`), checked against the header.
pub fn payload(bz: &[u8]) -> Result<&[u8]> {
    let not = |reason| KernelError::NotBzImage { reason };
    if bz.len() < 0x250 {
        return Err(not("shorter than the boot header"));
    }
    if read::bytes::<4>(bz, 0x202) != Some(*b"HdrS") {
        return Err(not("no \"HdrS\" magic at 0x202"));
    }
    if read::u16_at(bz, 0x1fe) != Some(0xAA55) {
        return Err(not("no 0xAA55 boot_flag at 0x1fe"));
    }
    let version = read::u16_at(bz, 0x206).unwrap_or(0);
    if version < 0x0208 {
        return Err(KernelError::OldBootProtocol { version });
    }
    let setup_sects = match bz.get(0x1f1).copied().unwrap_or(0) {
        0 => 4,
        n => usize::from(n),
    };
    let pm_start = (setup_sects + 1) * 512;
    let off = read::u32_at(bz, 0x248).unwrap_or(0) as usize;
    let len = read::u32_at(bz, 0x24c).unwrap_or(0) as usize;
    pm_start
        .checked_add(off)
        .and_then(|start| read::slice(bz, start, len))
        .filter(|p| !p.is_empty())
        .ok_or(not("payload_offset/payload_length point outside the file"))
}

/// Returns the ELF `vmlinux` inside a bzImage, or the input itself when it already is ELF.
///
/// The output is bounded by [`MAX_VMLINUX_SIZE`].
///
/// # Example
/// ```no_run
/// use nitro_backend_linux::kernel::bzimage::extract_vmlinux;
/// let bz = std::fs::read("/boot/vmlinuz").unwrap();
/// let vmlinux = extract_vmlinux(&bz).unwrap();
/// assert!(vmlinux.starts_with(b"\x7fELF"));
/// ```
pub fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>> {
    extract_vmlinux_limited(bz, MAX_VMLINUX_SIZE)
}

/// [`extract_vmlinux`] with an explicit bound (bytes) on the output.
pub fn extract_vmlinux_limited(bz: &[u8], limit: usize) -> Result<Vec<u8>> {
    if bz.starts_with(ELF_MAGIC) {
        if bz.len() > limit {
            return Err(KernelError::OutputTooLarge { limit });
        }
        return Ok(bz.to_vec());
    }
    let data = payload(bz)?;
    let out = decompress(data, limit)?;
    if !out.starts_with(ELF_MAGIC) {
        return Err(KernelError::NotBzImage {
            reason: "the decompressed payload is not ELF",
        });
    }
    Ok(out)
}

/// Decompresses a payload whose format is recognised by [`Compression::detect`].
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let format = Compression::detect(data).ok_or_else(|| KernelError::UnknownCompression {
        magic: read::bytes::<6>(data, 0).unwrap_or_else(|| {
            let mut m = [0u8; 6];
            m.iter_mut().zip(data).for_each(|(d, s)| *d = *s);
            m
        }),
    })?;
    match format {
        Compression::Lz4 => lz4_legacy(data, limit),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(data), "gzip", limit),
        Compression::Zstd => {
            let mut src = data;
            let dec = ruzstd::decoding::StreamingDecoder::new(&mut src).map_err(|e| {
                KernelError::Decompress {
                    format: "zstd",
                    offset: 0,
                    reason: e.to_string(),
                }
            })?;
            read_bounded(dec, "zstd", limit)
        }
        other => Err(KernelError::UnsupportedCompression {
            format: other.name(),
        }),
    }
}

/// Reads a decoder to the end, failing when it would produce more than `limit` bytes.
fn read_bounded(r: impl Read, format: &'static str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| KernelError::Decompress {
            format,
            offset: 0,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(KernelError::OutputTooLarge { limit });
    }
    Ok(out)
}

/// Decodes an LZ4 legacy frame: the magic, then blocks of `u32` compressed size + LZ4 block
/// data (each up to 8 MiB uncompressed). A repeated magic starts a new frame; the trailing
/// 4-byte size of `size_append` ends the stream (as in Linux `lib/decompress_unlz4.c`).
fn lz4_legacy(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut pos = 4;
    while data.len().saturating_sub(pos) > 4 {
        let size = read::u32_at(data, pos).unwrap_or(0);
        pos += 4;
        if size == LZ4_LEGACY_MAGIC {
            continue;
        }
        let block = read::slice(data, pos, size as usize).ok_or(KernelError::Decompress {
            format: "lz4",
            offset: pos - 4,
            reason: format!("block of {size} bytes runs past the end"),
        })?;
        let start = out.len();
        let room = LZ4_LEGACY_BLOCK.min(limit.saturating_sub(start));
        out.resize(start + room, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..]).map_err(|e| {
            if room < LZ4_LEGACY_BLOCK {
                KernelError::OutputTooLarge { limit }
            } else {
                KernelError::Decompress {
                    format: "lz4",
                    offset: pos,
                    reason: e.to_string(),
                }
            }
        })?;
        out.truncate(start + n);
        pos += size as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bzImage around `payload` (boot protocol 2.15, setup_sects = 1).
    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let mut bz = vec![0u8; 1024];
        bz[0x1f1] = 1;
        bz[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bz.extend_from_slice(&[0u8; 16]);
        bz.extend_from_slice(payload);
        bz
    }

    fn elf_like() -> Vec<u8> {
        let mut v = b"\x7fELF".to_vec();
        v.extend((0..100_000u32).map(|i| (i % 251) as u8));
        v
    }

    fn lz4_legacy_stream(data: &[u8]) -> Vec<u8> {
        let mut s = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            s.extend_from_slice(&(c.len() as u32).to_le_bytes());
            s.extend_from_slice(&c);
        }
        s.extend_from_slice(&(data.len() as u32).to_le_bytes());
        s
    }

    #[test]
    fn lz4_round_trip() {
        let elf = elf_like();
        let bz = fake_bzimage(&lz4_legacy_stream(&elf));
        assert_eq!(extract_vmlinux(&bz).unwrap(), elf);
        assert_eq!(
            extract_vmlinux_limited(&bz, 1000),
            Err(KernelError::OutputTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn gzip_round_trip() {
        use std::io::Write;
        let elf = elf_like();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&elf).unwrap();
        let mut gz = enc.finish().unwrap();
        gz.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(extract_vmlinux(&fake_bzimage(&gz)).unwrap(), elf);
        assert_eq!(
            extract_vmlinux_limited(&fake_bzimage(&gz), 10),
            Err(KernelError::OutputTooLarge { limit: 10 })
        );
    }

    #[test]
    fn elf_passes_through() {
        let elf = elf_like();
        assert_eq!(extract_vmlinux(&elf).unwrap(), elf);
    }

    #[test]
    fn rejects_text_and_unknown_compression() {
        let text = b"#!/bin/sh\necho this is not a kernel\n".repeat(40);
        assert!(matches!(
            extract_vmlinux(&text),
            Err(KernelError::NotBzImage { .. })
        ));
        let bz = fake_bzimage(b"\x11\x22\x33\x44\x55\x66\x77 unknown");
        assert!(matches!(
            extract_vmlinux(&bz),
            Err(KernelError::UnknownCompression { .. })
        ));
        let bz = fake_bzimage(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]);
        assert_eq!(
            extract_vmlinux(&bz),
            Err(KernelError::UnsupportedCompression { format: "xz" })
        );
        let mut old = fake_bzimage(b"x");
        old[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
        assert_eq!(
            extract_vmlinux(&old),
            Err(KernelError::OldBootProtocol { version: 0x206 })
        );
    }

    proptest::proptest! {
        #[test]
        fn random_payloads_never_panic(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            magic in 0usize..4,
        ) {
            let mut p = [&[0x02, 0x21, 0x4c, 0x18][..], &[0x1f, 0x8b, 8, 0], &[0x28, 0xb5, 0x2f, 0xfd], &[]][magic].to_vec();
            p.extend_from_slice(&payload);
            let _ = extract_vmlinux_limited(&fake_bzimage(&p), 1 << 20);
            let _ = extract_vmlinux(&payload);
        }
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let elf = elf_like();
        let stream = lz4_legacy_stream(&elf);
        let gz = {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&elf).unwrap();
            enc.finish().unwrap()
        };
        for s in [stream, gz] {
            for cut in [5, 9, 100, s.len() / 2, s.len() - 5] {
                let _ = extract_vmlinux(&fake_bzimage(&s[..cut]));
            }
            let mut flipped = s.clone();
            for i in (8..flipped.len()).step_by(97) {
                flipped[i] ^= 0x5a;
            }
            let _ = extract_vmlinux(&fake_bzimage(&flipped));
        }
    }
}
