//! Physical-memory sources: vm-memory regions, /proc/PID/mem, mapped files, raw and ELF-core
//! dumps (synthetic ones with hostile headers, and a real one written by QEMU when QEMU is
//! installed).

mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use common::*;
use nitro_mem::{
    vm_memory::{GuestAddress, GuestMemoryMmap},
    AddressSpace, DumpFormat, DumpMemory, MappedFileMemory, MemError, PhysAddr, PhysMemory,
    ProcMemory, Region, VirtAddr, VmMemory,
};

fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("nitro-mem-{}-{tag}-{n}", std::process::id()))
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> Self {
        let p = temp_path(tag);
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

/// Checks a source holding [0, 0x10000) and [0x20000, 0x30000): reads, writes, holes.
fn check_two_blocks(m: &dyn PhysMemory) {
    assert_eq!(m.size(), 0x30000);
    m.write_phys(PhysAddr(0xfff0), &[7; 16]).unwrap();
    m.write_phys(PhysAddr(0x2fff0), &[9; 16]).unwrap();
    let mut b = [0u8; 16];
    m.read_phys(PhysAddr(0xfff0), &mut b).unwrap();
    assert_eq!(b, [7; 16]);
    assert_eq!(
        m.read_phys_u64(PhysAddr(0x2fff8)).unwrap(),
        0x0909_0909_0909_0909
    );
    // Into the hole, past the end, wrapping: errors naming the access.
    assert_eq!(
        m.read_phys(PhysAddr(0xfff8), &mut b).unwrap_err(),
        MemError::PhysOutOfRange {
            addr: PhysAddr(0xfff8),
            len: 16
        }
    );
    assert!(m.read_phys(PhysAddr(0x2fff8), &mut b).is_err());
    assert!(m.read_phys(PhysAddr(u64::MAX - 3), &mut b).is_err());
    assert!(m.write_phys(PhysAddr(0x18000), &b).is_err());
    let (mut x, mut y) = ([0u8; 2], [0u8; 2]);
    let r = m.read_phys_many(&mut [
        (PhysAddr(0xfffe), &mut x[..]),
        (PhysAddr(0x10000), &mut y[..]),
    ]);
    assert!(r[0].is_ok() && r[1].is_err());
    assert_eq!(x, [7, 7]);
}

#[test]
fn vm_memory_regions() {
    let gm = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 0x10000),
        (GuestAddress(0x20000), 0x10000),
    ])
    .unwrap();
    let m = VmMemory::new(gm);
    check_two_blocks(&m);
    // Page tables inside vm-memory.
    m.write_phys(PhysAddr(0x1000), &(0x2000u64 | P).to_le_bytes())
        .unwrap();
    m.write_phys(PhysAddr(0x2000), &(0x3000u64 | P).to_le_bytes())
        .unwrap();
    m.write_phys(PhysAddr(0x3000), &(0x4000u64 | P).to_le_bytes())
        .unwrap();
    m.write_phys(PhysAddr(0x4000), &(0x20000u64 | P).to_le_bytes())
        .unwrap();
    m.write_phys(PhysAddr(0x20000), b"vm-memory\0").unwrap();
    let s = AddressSpace::new(&m, PhysAddr(0x1000));
    assert_eq!(s.read_cstring(VirtAddr(0), 64).unwrap(), b"vm-memory");
    assert!(format!("{m:?}").contains("regions: 2"));
}

#[test]
fn proc_mem_of_this_process() {
    // Our own heap, seen through /proc/self's mem file as if it were a QEMU process's RAM.
    let mut lo = vec![0u8; 0x10000];
    let hi = vec![0u8; 0x10000];
    lo[0x1234] = 0x5a;
    let pid = std::process::id();
    let m = ProcMemory::open(
        pid,
        vec![
            (PhysAddr(0x20000), hi.as_ptr() as u64, 0x10000),
            (PhysAddr(0), lo.as_mut_ptr() as u64, 0x10000),
        ],
    )
    .unwrap();
    assert_eq!(m.pid(), pid);
    assert_eq!(m.regions()[0].0, PhysAddr(0));
    assert_eq!(m.read_phys_u64(PhysAddr(0x1230)).unwrap(), 0x5a << 32);
    assert!(m.is_writable(), "root may write /proc/self/mem");
    {
        check_two_blocks(&m);
        // The writes reached our own memory.
        assert_eq!(std::hint::black_box(&lo)[0xfff0..], [7; 16]);
        assert_eq!(std::hint::black_box(&hi)[0xfff0..], [9; 16]);
    }
    // A block at a host address nothing is mapped at: an error, not a crash.
    let bad = ProcMemory::open(pid, vec![(PhysAddr(0), 0x1000, 0x1000)]).unwrap();
    let mut b = [0u8; 8];
    assert!(matches!(
        bad.read_phys(PhysAddr(0), &mut b),
        Err(MemError::Source { .. })
    ));
    // Overlapping blocks are refused; a missing process is an error.
    assert!(ProcMemory::open(
        pid,
        vec![(PhysAddr(0), 0x1000, 0x2000), (PhysAddr(0x1000), 0x9000, 1)]
    )
    .is_err());
    assert!(ProcMemory::open(u32::MAX, vec![]).is_err());
}

#[test]
fn mapped_file_with_regions() {
    let f = TempFile::new("mapped", &vec![0u8; 0x20000]);
    // Guest [0, 0x10000) at file 0x10000, [0x20000, 0x30000) at file 0.
    let m = MappedFileMemory::open(
        f.path(),
        vec![
            Region {
                guest_start: PhysAddr(0),
                file_offset: 0x10000,
                len: 0x10000,
            },
            Region {
                guest_start: PhysAddr(0x20000),
                file_offset: 0,
                len: 0x10000,
            },
        ],
    )
    .unwrap();
    check_two_blocks(&m);
    drop(m);
    let bytes = std::fs::read(&f.0).unwrap();
    assert_eq!(
        bytes[0x1fff0..0x20000],
        [7; 16],
        "shared mapping writes reach the file"
    );
    assert_eq!(bytes[0xfff0..0x10000], [9; 16]);
    let flat = MappedFileMemory::open_flat(f.path()).unwrap();
    assert_eq!(flat.size(), 0x20000);
    assert_eq!(flat.path(), f.path());
    // Regions outside the file are refused.
    let r = MappedFileMemory::open(
        f.path(),
        vec![Region {
            guest_start: PhysAddr(0),
            file_offset: 0x1f000,
            len: 0x2000,
        }],
    );
    assert!(matches!(r, Err(MemError::Source { .. })));
}

/// An ELF64 core: a PT_NOTE, PT_LOADs for `loads` (paddr, data), optionally with PN_XNUM.
fn elf_core(loads: &[(u64, &[u8])], xnum: bool) -> Vec<u8> {
    let phnum = 1 + loads.len();
    let phoff = 64u64;
    let shoff = phoff + 56 * phnum as u64;
    let note_off = shoff + 64;
    let mut note = vec![];
    note.extend_from_slice(&5u32.to_le_bytes()); // namesz "CORE\0"
    note.extend_from_slice(&3u32.to_le_bytes()); // descsz
    note.extend_from_slice(&1u32.to_le_bytes()); // NT_PRSTATUS
    note.extend_from_slice(b"CORE\0\0\0\0");
    note.extend_from_slice(&[1, 2, 3, 0]);
    let mut data_off = note_off + note.len() as u64;
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[32..40].copy_from_slice(&phoff.to_le_bytes());
    f[40..48].copy_from_slice(&(if xnum { shoff } else { 0 }).to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&(if xnum { 0xffff } else { phnum as u16 }).to_le_bytes());
    f[58..60].copy_from_slice(&64u16.to_le_bytes());
    f[60..62].copy_from_slice(&(xnum as u16).to_le_bytes());
    let ph = |kind: u32, off: u64, paddr: u64, size: u64| {
        let mut p = vec![0u8; 56];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&paddr.wrapping_add(0xffff_8880_0000_0000).to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p[40..48].copy_from_slice(&size.to_le_bytes());
        p
    };
    f.extend(ph(4, note_off, 0, note.len() as u64));
    for (paddr, data) in loads {
        f.extend(ph(1, data_off, *paddr, data.len() as u64));
        data_off += data.len() as u64;
    }
    let mut sh = vec![0u8; 64];
    sh[44..48].copy_from_slice(&(phnum as u32).to_le_bytes()); // sh_info
    f.extend(sh);
    f.extend(note);
    for (_, data) in loads {
        f.extend_from_slice(data);
    }
    f
}

#[test]
fn elf_core_dumps() {
    let lo = vec![0xaau8; 0x3000];
    let hi = vec![0xbbu8; 0x1000];
    for xnum in [false, true] {
        let f = TempFile::new("core", &elf_core(&[(0x10_0000, &hi), (0, &lo)], xnum));
        let m = DumpMemory::open(f.path()).unwrap();
        assert_eq!(m.format(), DumpFormat::Elf);
        assert_eq!(m.size(), 0x10_1000);
        assert_eq!(m.regions().len(), 2);
        assert_eq!(
            m.read_phys_u64(PhysAddr(0x2ff8)).unwrap(),
            0xaaaa_aaaa_aaaa_aaaa
        );
        assert_eq!(
            m.read_phys_u64(PhysAddr(0x10_0ff8)).unwrap(),
            0xbbbb_bbbb_bbbb_bbbb
        );
        assert!(
            m.read_phys_u64(PhysAddr(0x3000)).is_err(),
            "hole between segments"
        );
        let notes = m.notes();
        assert_eq!(notes.len(), 1);
        assert_eq!(
            (
                notes[0].name.as_slice(),
                notes[0].kind,
                notes[0].desc.as_slice()
            ),
            (&b"CORE"[..], 1, &[1u8, 2, 3][..])
        );
        // Writes go to a private copy, never to the file.
        m.write_phys(PhysAddr(0), &[1; 8]).unwrap();
        assert_eq!(m.read_phys_u64(PhysAddr(0)).unwrap(), 0x0101_0101_0101_0101);
        drop(m);
        assert_eq!(
            DumpMemory::open(f.path())
                .unwrap()
                .read_phys_u64(PhysAddr(0))
                .unwrap(),
            0xaaaa_aaaa_aaaa_aaaa
        );
    }
}

#[test]
fn hostile_elf_headers_are_errors() {
    let good = elf_core(&[(0, &[1u8; 0x1000])], false);
    let patch = |at: usize, bytes: &[u8]| {
        let mut f = good.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("phoff past the end", patch(32, &u64::MAX.to_le_bytes())),
        ("phnum huge", patch(56, &0xfffeu16.to_le_bytes())),
        (
            "PN_XNUM without section headers",
            patch(56, &0xffffu16.to_le_bytes()),
        ),
        ("bad phentsize", patch(54, &57u16.to_le_bytes())),
        ("not a core", patch(16, &2u16.to_le_bytes())),
        ("big endian", patch(5, &[2])),
        ("bad class", patch(4, &[9])),
        (
            "segment past the end",
            patch(64 + 56 + 32, &u64::MAX.to_le_bytes()),
        ),
        (
            "segment offset past the end",
            patch(64 + 56 + 8, &(1u64 << 40).to_le_bytes()),
        ),
        (
            "segment wraps",
            patch(64 + 56 + 24, &(u64::MAX - 10).to_le_bytes()),
        ),
        ("truncated", good[..100].to_vec()),
        ("kdump", b"KDUMP   \x06\0\0\0".to_vec()),
    ];
    for (what, bytes) in cases {
        let f = TempFile::new("bad", &bytes);
        match DumpMemory::open(f.path()) {
            Err(MemError::Source { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // A note segment with lying sizes gives no notes rather than a panic.
    let mut f = good.clone();
    let note_at = 64 + 56 * 2 + 64;
    f[note_at..note_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let t = TempFile::new("notes", &f);
    assert!(DumpMemory::open(t.path()).unwrap().notes().is_empty());
}

#[test]
fn raw_dumps() {
    let mut bytes = vec![0u8; 0x2000];
    bytes[0x1ff8..].copy_from_slice(&0x1122_3344u64.to_le_bytes());
    let f = TempFile::new("raw", &bytes);
    let m = DumpMemory::open(f.path()).unwrap();
    assert_eq!(
        (m.format(), m.size(), m.path()),
        (DumpFormat::Raw, 0x2000, f.path())
    );
    assert_eq!(m.read_phys_u64(PhysAddr(0x1ff8)).unwrap(), 0x1122_3344);
    assert!(m.notes().is_empty());
    assert!(DumpMemory::open(TempFile::new("empty", &[]).path()).is_err());
    assert!(DumpMemory::open("/nonexistent/dump").is_err());
}

/// A dump written by QEMU's own `dump-guest-memory`, of a machine stopped at reset (`-S`):
/// RAM segments at their guest physical addresses, the BIOS ROM at 0xfffc0000, and a QEMU
/// note holding the CPU state. Skipped when QEMU or SeaBIOS is not installed.
#[test]
fn real_qemu_dump() {
    let bios = "/usr/share/seabios/bios-256k.bin";
    let Ok(rom) = std::fs::read(bios) else {
        return eprintln!("skipped: no {bios}");
    };
    let out = temp_path("qemu.elf");
    let _cleanup = TempFile(out.clone());
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-S",
            "-m",
            "16",
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "pc,accel=tcg",
        ])
        .args(["-bios", bios, "-monitor", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return eprintln!("skipped: no qemu-system-x86_64");
    };
    use std::io::Write;
    let cmd = format!("dump-guest-memory {}\nquit\n", out.display());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cmd.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let m = DumpMemory::open(out.to_str().unwrap()).unwrap();
    assert_eq!(m.format(), DumpFormat::Elf);
    // 16 MiB of RAM from 0 (split around the legacy VGA/ROM window) plus the BIOS flash.
    let ram: u64 = m
        .regions()
        .iter()
        .filter(|r| r.guest_start.0 < 0x8000_0000)
        .map(|r| r.len)
        .sum();
    assert!(ram >= 16 << 20, "{:?}", m.regions());
    assert_eq!(m.size(), 1 << 32);
    let mut flash = vec![0u8; rom.len()];
    m.read_phys(PhysAddr((1 << 32) - rom.len() as u64), &mut flash)
        .unwrap();
    assert!(flash == rom, "BIOS image at the top of the 4 GiB space");
    // The reset vector (physical 0xfffffff0) is a far jump (EA) in SeaBIOS.
    assert_eq!(m.read_phys_u64(PhysAddr(0xffff_fff0)).unwrap() & 0xff, 0xea);
    // Notes: NT_PRSTATUS from "CORE" and QEMU's CPU state ("QEMU", type 0); the CPU state
    // starts with {u32 version = 1, u32 size}. QEMU target/i386/arch_dump.c QEMUCPUState.
    let notes = m.notes();
    assert!(notes.iter().any(|n| n.name == b"CORE" && n.kind == 1));
    let q = notes.iter().find(|n| n.name == b"QEMU").expect("QEMU note");
    assert_eq!(u32::from_le_bytes(q.desc[0..4].try_into().unwrap()), 1);
    assert_eq!(
        u32::from_le_bytes(q.desc[4..8].try_into().unwrap()) as usize,
        q.desc.len()
    );
    // Decoded: the x86 reset state (Intel SDM 3A 9.1.1: CR0 = 0x60000010, EIP = 0xfff0).
    let cpu = m.qemu_cpu_states();
    assert_eq!(cpu.len(), 1);
    assert_eq!(
        (cpu[0].cr[0], cpu[0].rip, cpu[0].cr[3]),
        (0x6000_0010, 0xfff0, 0)
    );
    assert_eq!(cpu[0].rflags, 2);
}
