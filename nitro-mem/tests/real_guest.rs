//! Translation on real Linux page tables: a Debian kernel (from scripts/provision.sh) boots
//! under QEMU TCG without a root file system and panics; QEMU's `dump-guest-memory` then
//! writes its memory and vCPU state, and the translator walks the kernel's own tables from
//! the dumped CR3, in 4-level (`-cpu qemu64`) and 5-level (`-cpu max`, LA57) paging.
//! Skipped when QEMU or the kernel is not installed.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nitro_mem::{
    AddressSpace, DumpMemory, PagingMode, PhysAddr, PhysMemory, TranslationCache, VirtAddr,
};

/// With `nokaslr` the kernel image is mapped at `__START_KERNEL_map` + 16 MiB and loaded at
/// physical 16 MiB (Linux arch/x86/Kconfig PHYSICAL_START = 0x1000000), and the direct map
/// starts at `__PAGE_OFFSET_BASE_L4` / `_L5` (Linux arch/x86/include/asm/page_64_types.h;
/// Documentation/arch/x86/x86_64/mm.rst).
const KERNEL_TEXT: u64 = 0xffff_ffff_8100_0000;
const KERNEL_PHYS: u64 = 0x100_0000;
const DIRECT_MAP_L4: u64 = 0xffff_8880_0000_0000;
const DIRECT_MAP_L5: u64 = 0xff11_0000_0000_0000;
/// `entry_SYSCALL_64` in 6.1.0-56-cloud-amd64 with nokaslr; it starts with `swapgs`
/// (0f 01 f8). Measured, see /work/shared/ENVIRONMENT.md.
const ENTRY_SYSCALL_61: u64 = 0xffff_ffff_81c0_0080;

struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn guest_dir() -> PathBuf {
    let cache = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nitro")
        });
    cache.join("guests/debian-6.1")
}

/// Boots the kernel until it panics and dumps the guest; `None` when something is missing.
fn boot_and_dump(cpu: &str, cleanup: &mut Cleanup) -> Option<PathBuf> {
    let kernel = guest_dir().join("vmlinuz");
    if !kernel.exists() {
        eprintln!("skipped: no {}", kernel.display());
        return None;
    }
    let tmp = std::env::temp_dir();
    let tag = format!("{}-{cpu}", std::process::id());
    let serial = tmp.join(format!("nitro-mem-serial-{tag}"));
    let dump = tmp.join(format!("nitro-mem-linux-{tag}.elf"));
    cleanup.0.extend([serial.clone(), dump.clone()]);
    let child = Command::new("qemu-system-x86_64")
        .args(["-m", "128", "-cpu", cpu, "-nodefaults", "-display", "none"])
        .args(["-machine", "pc,accel=tcg", "-monitor", "stdio"])
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "console=ttyS0 nokaslr panic=0"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("skipped: no qemu-system-x86_64");
        return None;
    };
    let t0 = Instant::now();
    loop {
        let log = std::fs::read(&serial).unwrap_or_default();
        if log.windows(16).any(|w| w == b"end Kernel panic") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{cpu}: the kernel did not reach its panic in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cmd = format!("dump-guest-memory {}\nquit\n", dump.display());
    child.stdin.take()?.write_all(cmd.as_bytes()).ok()?;
    assert!(child.wait().ok()?.success());
    Some(dump)
}

fn check_guest(cpu: &str, mode: PagingMode) {
    let mut cleanup = Cleanup(vec![]);
    let Some(dump) = boot_and_dump(cpu, &mut cleanup) else {
        return;
    };
    let m = DumpMemory::open(dump.to_str().unwrap()).unwrap();
    let cpus = m.qemu_cpu_states();
    let regs = cpus.first().expect("a QEMU CPU note");
    assert_eq!(
        PagingMode::from_cr4(regs.cr[4]),
        mode,
        "cr4 {:#x}",
        regs.cr[4]
    );
    assert!(regs.cr[0] & (1 << 31) != 0, "paging on");
    let space = AddressSpace::with_mode(&m, PhysAddr(regs.cr[3]), mode);

    // The kernel image: 2 MiB pages at the link address, loaded at 16 MiB.
    let t = space.translate(VirtAddr(KERNEL_TEXT + 0x1234)).unwrap();
    assert_eq!(
        (t.phys, t.page_size),
        (PhysAddr(KERNEL_PHYS + 0x1234), 0x20_0000)
    );
    assert!(
        !t.user && !t.no_execute,
        "kernel text: supervisor, executable"
    );
    // The same bytes through the direct map (another branch of the tables).
    let direct = if mode == PagingMode::Level5 {
        DIRECT_MAP_L5
    } else {
        DIRECT_MAP_L4
    };
    let d = space
        .translate(VirtAddr(direct + KERNEL_PHYS + 0x1234))
        .unwrap();
    assert_eq!(d.phys, PhysAddr(KERNEL_PHYS + 0x1234));
    assert!(d.no_execute && d.writable, "direct map: data, NX");
    let via_text = space
        .read_bytes(VirtAddr(KERNEL_TEXT), 0x3000, 0x3000)
        .unwrap();
    let via_direct = space
        .read_bytes(VirtAddr(direct + KERNEL_PHYS), 0x3000, 0x3000)
        .unwrap();
    let mut phys = vec![0u8; 0x3000];
    m.read_phys(PhysAddr(KERNEL_PHYS), &mut phys).unwrap();
    assert!(via_text == phys && via_direct == phys);
    assert!(phys.iter().any(|&b| b != 0));
    // The vCPU was executing kernel code: its RIP translates into the kernel image.
    let rip = space.translate(VirtAddr(regs.rip)).unwrap();
    assert!(
        (KERNEL_PHYS..KERNEL_PHYS + (64 << 20)).contains(&rip.phys.0),
        "{rip:?}"
    );
    // No user process ran: the low half is empty.
    assert!(space
        .translate(VirtAddr(0x40_0000))
        .unwrap_err()
        .is_not_present());
    if std::fs::read_to_string(guest_dir().join("release"))
        .unwrap_or_default()
        .trim()
        == "6.1.0-56-cloud-amd64"
    {
        let mut b = [0u8; 3];
        space.read_virt(VirtAddr(ENTRY_SYSCALL_61), &mut b).unwrap();
        assert_eq!(b, [0x0f, 0x01, 0xf8], "swapgs at entry_SYSCALL_64");
    }
    // Cached and uncached walks agree on 4096 kernel addresses (text, data, direct map).
    let cache = TranslationCache::with_capacity(256);
    let cached = AddressSpace::with_mode(&m, PhysAddr(regs.cr[3]), mode).cached(&cache);
    for i in 0..4096u64 {
        for va in [
            KERNEL_TEXT + i * 0x3011,
            direct + i * 0x1_0007,
            regs.rip ^ (i << 12),
        ] {
            assert_eq!(
                cached.translate(VirtAddr(va)),
                space.translate(VirtAddr(va))
            );
        }
    }
}

#[test]
fn linux_4_level_tables() {
    check_guest("qemu64", PagingMode::Level4);
}

#[test]
fn linux_5_level_tables() {
    check_guest("max", PagingMode::Level5);
}
