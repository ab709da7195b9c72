//! Pick-and-choose layering: trace system-call entries with nothing but `nitro-listener`
//! (a driver and a hand-made trap plan) and `nitro-mem` (guest RAM), no OS backend.
//!
//! Boots the provisioned Debian 6.1 kernel and initramfs under QEMU (`nokaslr`), watches the
//! per-CPU `cpu_tss_rw.sp2` slot that `entry_SYSCALL_64` pushes on every 64-bit syscall, and
//! counts the syscall numbers (RAX at the stop) until the guest powers off. Without a command
//! the guest's init reports an error and powers off, which is enough boot-time traffic.
//!
//! ```text
//! cargo run -p nitro-listener --example raw_watch [KERNEL INITRD]
//! ```
//!
//! The addresses are facts of Debian's 6.1.0 cloud kernel booted with `nokaslr` on one vCPU
//! (what the Linux backend's plan finds for 6.1.0-56-cloud-amd64): per-CPU base of cpu 0
//! 0xffff88800f600000 (with 256 MiB of RAM), `cpu_tss_rw.sp2` at per-CPU offset 0x6014, `entry_SYSCALL_64` at
//! 0xffffffff81c00080. An OS backend finds them itself; here they are given by hand.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use nitro_listener::{
    qemu::{free_port, Accel, QemuCommand, QemuDriver},
    Direction, Driver, DriverEvent, SyscallKind, TrapKind, TrapPlan, TrapSite,
};
use nitro_mem::{AddressSpace, MappedFileMemory, PagingMode, PhysAddr, PhysMemory, VirtAddr};

const PERCPU0: u64 = 0xffff_8880_0f60_0000;
const TSS_SP2: u64 = 0x6014;
const ENTRY_SYSCALL_64: u64 = 0xffff_ffff_81c0_0080;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/nitro")
        });
    let mut args = std::env::args().skip(1);
    let kernel = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("guests/debian-6.1/vmlinuz"));
    let initrd = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("initramfs.cpio.gz"));
    let dir = std::env::temp_dir();
    let cmd = QemuCommand {
        binary: "qemu-system-x86_64".into(),
        accel: Accel::Tcg,
        memory_mib: 256,
        cpus: 1,
        kernel,
        initrd: Some(initrd),
        append: "console=ttyS0 panic=-1 nokaslr".into(),
        memory_file: dir.join(format!("raw-watch-ram-{}", std::process::id())),
        gdb_port: free_port()?,
        gdb_socket: None,
        serials: vec![
            format!("file:{}", dir.join("raw-watch-console.log").display()),
            "null".into(),
            "null".into(),
        ],
        extra: vec![],
        start_stopped: true,
        log_file: None,
    };
    let mut qemu = cmd.spawn()?;
    qemu.wait_for_memory_file(Duration::from_secs(20))?;
    let ram = Arc::new(MappedFileMemory::open(
        &qemu.memory_file.display().to_string(),
        qemu.regions.clone(),
    )?);
    let mut driver = QemuDriver::connect(&qemu.gdb_endpoint, Some(ram.clone()), 1)?;

    // Arm before the guest runs at all: a watchpoint is on a linear address, so it fires
    // once the kernel has paging and per-CPU areas and a process makes a syscall.
    driver.interrupt()?;
    let watched = PERCPU0 + TSS_SP2;
    let plan = TrapPlan {
        sites: vec![TrapSite {
            addr: watched,
            kind: TrapKind::ReadWatch { len: 8 },
            direction: Direction::Enter,
            syscall_kind: SyscallKind::Syscall64,
            rip_ranges: std::iter::once(ENTRY_SYSCALL_64..ENTRY_SYSCALL_64 + 0x100).collect(),
        }],
    };
    driver.arm(&plan)?;
    driver.resume()?;

    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut user_sps = 0u64;
    loop {
        match driver.next_event()? {
            DriverEvent::Trap(ev) => {
                *counts.entry(ev.regs.rax).or_default() += 1;
                // nitro-mem: read the user RSP the entry code just saved, through the
                // guest's page tables.
                let space = AddressSpace::with_mode(
                    ram.as_ref() as &dyn PhysMemory,
                    PhysAddr(ev.regs.cr3),
                    PagingMode::from_cr4(ev.regs.cr4),
                );
                if space
                    .read_u64(VirtAddr(watched))
                    .is_ok_and(|sp| sp < 0x8000_0000_0000)
                {
                    user_sps += 1;
                }
                driver.resume()?;
            }
            DriverEvent::Spurious { .. } => driver.resume()?,
            DriverEvent::GuestEnded { .. } => break,
        }
    }
    let total: u64 = counts.values().sum();
    let mut top: Vec<_> = counts.into_iter().collect();
    top.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    println!("{total} syscall entries ({user_sps} with a user stack pointer in sp2)");
    for (nr, n) in top.iter().take(10) {
        println!("  nr {nr:3}: {n}");
    }
    let _ = qemu.wait_or_kill(Duration::from_secs(5));
    let _ = std::fs::remove_file(&cmd.memory_file);
    Ok(())
}
