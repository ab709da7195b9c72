//! Hostile kernel files: the bzImage, ELF, kallsyms and BTF parsers on random bytes, on
//! random headers over small bodies, and on real Debian kernels with bytes flipped. Every
//! case ends in an error or a value, never a panic, a hang or a huge allocation (the
//! decompressor is given a limit; the others work in place over the input).
//!
//! The real-kernel cases need `scripts/provision.sh`'s kernels and say why they skip.
//! This is the CI form of the `fuzz/` targets (cargo-fuzz needs nightly).

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use nitro_backend_linux::kernel::{
    btf::Btf,
    bzimage::{decompress, extract_vmlinux, extract_vmlinux_limited, payload},
    elf::Elf,
    kallsyms::Kallsyms,
};
use proptest::prelude::*;

fn kernel_path() -> Option<PathBuf> {
    let cache = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/nitro")
        });
    let p = cache.join("guests/debian-6.1/vmlinuz");
    p.exists().then_some(p)
}

/// The real 6.1 bzImage and its vmlinux, read once.
fn real() -> Option<&'static (Vec<u8>, Vec<u8>)> {
    static REAL: OnceLock<Option<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    REAL.get_or_init(|| {
        let bz = std::fs::read(kernel_path()?).ok()?;
        let vmlinux = extract_vmlinux(&bz).ok()?;
        Some((bz, vmlinux))
    })
    .as_ref()
}

fn flip(data: &mut [u8], flips: &[(usize, u8)], window: usize) {
    let window = window.min(data.len()).max(1);
    for &(at, v) in flips {
        if let Some(b) = data.get_mut(at % window) {
            *b ^= v | 1;
        }
    }
}

/// Uses a parsed BTF the way the backend does; answers may be anything, but must come.
fn query_btf(btf: &Btf) {
    for s in [
        "task_struct",
        "pt_regs",
        "tss_struct",
        "mm_struct",
        "file",
        "nope",
    ] {
        let _ = btf.struct_size(s);
        let _ = btf.member_offset(s, "comm");
        let _ = btf.member_offset(s, "thread_info.flags");
        let _ = btf.member_type_name(s, "mm");
    }
    let _ = btf.enum_variants("pid_type");
    let n = btf.len().min(4096) as u32;
    for id in 0..n {
        let _ = btf.type_size(id);
        let _ = btf.type_name(id);
        let _ = btf.members(id).take(64).count();
    }
}

/// A BTF header (`include/uapi/linux/btf.h`, `struct btf_header`: magic 0xeb9f, version 1,
/// flags, hdr_len, type_off, type_len, str_off, str_len) over `body`.
fn btf_blob(h: [u32; 5], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(24 + body.len());
    v.extend_from_slice(&0xeb9fu16.to_le_bytes());
    v.push(1);
    v.push(0);
    for x in h {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(body);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused_or_parsed(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = payload(&data);
        let _ = extract_vmlinux_limited(&data, 1 << 20);
        let _ = decompress(&data, 1 << 20);
        if let Ok(elf) = Elf::parse(&data) {
            for s in elf.sections() {
                let _ = elf.section_data(&s.name);
            }
            let _ = elf.read_at_vaddr(elf.entry(), 64);
        }
        let _ = Kallsyms::from_vmlinux(&data);
        let _ = Kallsyms::from_image(&data, 0xffff_ffff_8100_0000);
        if let Ok(btf) = Btf::parse(&data) {
            query_btf(&btf);
        }
    }

    /// Valid magic, random offsets and lengths, random types: the header is believed only
    /// as far as the bytes go.
    #[test]
    fn btf_with_lying_header(
        h in prop::array::uniform5(prop_oneof![0u32..256, any::<u32>()]),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut h = h;
        h[0] = if h[0] % 4 == 0 { 24 } else { h[0] };
        let blob = btf_blob(h, &body);
        let start = Instant::now();
        if let Ok(btf) = Btf::parse(&blob) {
            query_btf(&btf);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(1));
    }

    /// An ELF header (`e_ident` 0x7f 'E' 'L' 'F', 64-bit, little-endian) with random fields
    /// and section/program header tables.
    #[test]
    fn elf_with_lying_header(rest in prop::collection::vec(any::<u8>(), 64..4096)) {
        let mut data = rest;
        data[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        if let Ok(elf) = Elf::parse(&data) {
            for s in elf.sections() {
                let _ = elf.section_data(&s.name);
            }
            for seg in elf.segments() {
                let _ = seg;
            }
            let _ = elf.vaddr_to_offset(elf.entry());
        }
        let _ = Kallsyms::from_vmlinux(&data);
        let _ = Btf::from_vmlinux(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// The real kernel's BTF with bytes flipped anywhere in its first 64 KiB (header, early
    /// types) or anywhere at all.
    #[test]
    fn real_btf_with_flipped_bytes(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        early in any::<bool>(),
    ) {
        let Some((_, vmlinux)) = real() else {
            eprintln!("SKIP: debian-6.1 kernel missing: run scripts/provision.sh");
            return Ok(());
        };
        let elf = Elf::parse(vmlinux).expect("the real vmlinux parses");
        let mut btf = elf.section_data(".BTF").expect("has .BTF").to_vec();
        flip(&mut btf, &flips, if early { 64 * 1024 } else { usize::MAX });
        let start = Instant::now();
        if let Ok(b) = Btf::parse(&btf) {
            query_btf(&b);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// The real vmlinux with its ELF header, section headers or kallsyms tables damaged.
    #[test]
    fn real_vmlinux_with_flipped_bytes(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        in_header in any::<bool>(),
    ) {
        let Some((_, vmlinux)) = real() else {
            eprintln!("SKIP: debian-6.1 kernel missing: run scripts/provision.sh");
            return Ok(());
        };
        let mut v = vmlinux.clone();
        if in_header {
            // e_shoff and the section headers live at the end of the file; the ELF header
            // and program headers at the start.
            let n = v.len();
            let head: Vec<(usize, u8)> = flips.iter().map(|&(a, b)| (a % 512, b)).collect();
            flip(&mut v, &head, 512);
            let tail: Vec<(usize, u8)> =
                flips.iter().map(|&(a, b)| (n - 1 - a % (64 * 1024).min(n), b)).collect();
            flip(&mut v, &tail, usize::MAX);
        } else {
            flip(&mut v, &flips, usize::MAX);
        }
        let start = Instant::now();
        if let Ok(k) = Kallsyms::from_vmlinux(&v) {
            let _ = k.lookup("entry_SYSCALL_64");
            let _ = k.symbolize(0xffff_ffff_81c0_0080);
        }
        let _ = Btf::from_vmlinux(&v).map(|b| b.struct_size("task_struct"));
        prop_assert!(start.elapsed() < Duration::from_secs(10));
    }

    /// The real bzImage with its setup header or compressed payload damaged: extraction
    /// fails or returns at most the limit.
    #[test]
    fn real_bzimage_with_flipped_bytes(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        in_header in any::<bool>(),
    ) {
        let Some((bz, _)) = real() else {
            eprintln!("SKIP: debian-6.1 kernel missing: run scripts/provision.sh");
            return Ok(());
        };
        let mut v = bz.clone();
        flip(&mut v, &flips, if in_header { 0x1000 } else { usize::MAX });
        let limit = 96 << 20;
        let start = Instant::now();
        if let Ok(out) = extract_vmlinux_limited(&v, limit) {
            prop_assert!(out.len() <= limit);
        }
        prop_assert!(start.elapsed() < Duration::from_secs(10));
    }
}

/// A decompression bomb: a tiny LZ4/gzip payload that would expand far past the limit is
/// cut at the limit, not allocated in full.
#[test]
fn decompression_is_bounded_by_the_limit() {
    let Some((bz, _)) = real() else {
        eprintln!("SKIP: debian-6.1 kernel missing: run scripts/provision.sh");
        return;
    };
    let p = payload(bz).expect("the real bzImage has a payload");
    // Refusing an over-long output is fine too.
    if let Ok(out) = decompress(p, 1 << 20) {
        assert!(out.len() <= 1 << 20, "{} bytes", out.len());
    }
}
