//! The PE parser on real PE32+ images built by Microsoft's toolchain, when one is on the
//! machine: `NITRO_PE_SAMPLE`, or the x64 launchers that pip/setuptools ship (`w64.exe`,
//! `t64.exe`, `cli-64.exe`). The file is mapped section by section at its preferred base in a
//! synthetic address space, as the Windows loader would, and the headers, the image-base scan
//! and the CodeView record are checked against values read from the file here, independently.

mod common;

use std::path::PathBuf;

use common::Guest;
use nitro_backend_windows::pe;

fn samples() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("NITRO_PE_SAMPLE") {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    for root in ["/root/.pyenv/versions", "/usr/lib", "/usr/local/lib"] {
        let Ok(dirs) = std::fs::read_dir(root) else {
            continue;
        };
        for d in dirs.flatten() {
            for rel in [
                "lib/python3.13/site-packages/pip/_vendor/distlib/w64.exe",
                "lib/python3.13/site-packages/pip/_vendor/distlib/t64.exe",
                "lib/python3.7/site-packages/setuptools/cli-64.exe",
                "dist-packages/pip/_vendor/distlib/w64.exe",
            ] {
                let p = d.path().join(rel);
                if p.exists() {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[test]
fn real_images() {
    let files = samples();
    if files.is_empty() {
        eprintln!("no PE32+ sample on this machine: skipped");
        return;
    }
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        let lfanew = u32_at(&raw, 0x3c) as usize;
        let nsec = u16_at(&raw, lfanew + 6) as usize;
        let opt = lfanew + 24;
        assert_eq!(u16_at(&raw, opt), 0x20b, "{f:?} is not PE32+");
        let base =
            u64::from_le_bytes(raw[opt + 24..opt + 32].try_into().unwrap()) | 0xffff_f000_0000_0000;
        let size_of_image = u32_at(&raw, opt + 56);
        let size_of_headers = u32_at(&raw, opt + 60) as usize;
        let sec0 = opt + u16_at(&raw, lfanew + 20) as usize;
        // Map it as the loader would (at a kernel-half address, like ntoskrnl).
        let mut g = Guest::new();
        g.write(base, &raw[..size_of_headers]);
        let mut text = None;
        for i in 0..nsec {
            let s = sec0 + 40 * i;
            let (vsize, va, rsize, rptr) = (
                u32_at(&raw, s + 8),
                u32_at(&raw, s + 12),
                u32_at(&raw, s + 16),
                u32_at(&raw, s + 20),
            );
            let n = rsize.min(vsize) as usize;
            g.map_range(base + u64::from(va), u64::from(vsize.max(1)));
            if n > 0 {
                g.write(base + u64::from(va), &raw[rptr as usize..rptr as usize + n]);
            }
            if &raw[s..s + 5] == b".text" {
                text = Some((va, vsize));
            }
        }
        let space = g.space();
        let img = pe::parse(&space, base).unwrap();
        assert_eq!(img.machine, 0x8664);
        assert_eq!(img.size_of_image, size_of_image);
        assert_eq!(img.sections.len(), nsec);
        let (tva, tsize) = text.expect(".text");
        let inside = base + u64::from(tva) + u64::from(tsize) / 2;
        assert!(img
            .sections
            .iter()
            .any(|s| s.name == ".text" && s.is_executable()));
        assert_eq!(pe::find_image_base(&space, inside, 16 << 20).unwrap(), base);
        // The CodeView record, compared with the bytes found by searching the file (a file
        // without one must give None).
        let Some(at) = raw.windows(4).position(|w| w == b"RSDS") else {
            assert_eq!(img.pdb_info(&space).unwrap(), None, "{f:?}");
            eprintln!("{}: {} sections, no CodeView record", f.display(), nsec);
            continue;
        };
        let guid = format!(
            "{:08X}{:04X}{:04X}{}",
            u32_at(&raw, at + 4),
            u16_at(&raw, at + 8),
            u16_at(&raw, at + 10),
            raw[at + 12..at + 20]
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        );
        let name_end = raw[at + 24..].iter().position(|&b| b == 0).unwrap();
        let pdb = img.pdb_info(&space).unwrap().expect("CodeView record");
        assert_eq!(pdb.guid, guid);
        assert_eq!(pdb.age, u32_at(&raw, at + 20));
        assert_eq!(pdb.file.as_bytes(), &raw[at + 24..at + 24 + name_end]);
        assert!(pdb.file.ends_with(".pdb"), "{}", pdb.file);
        eprintln!(
            "{}: {} sections, PDB {} {}",
            f.display(),
            nsec,
            pdb.file,
            pdb.key()
        );
        // An EXE has no export directory.
        assert_eq!(img.export_rva(&space, "main").unwrap(), None);
    }
}
