//! Translations of a live guest checked against QEMU's own `gva2gpa` monitor command.
//!
//! Boots the provisioned Debian 6.1 kernel under QEMU TCG with a busybox shell as init, stops
//! it through the gdbstub, and for a sample of kernel and user addresses that the guest's own
//! page tables map (found by walking them), compares `AddressSpace::translate` and the cached
//! translator with `gva2gpa` (HMP, sent through the gdbstub's `qRcmd`). Skips, saying why, if
//! QEMU or the provisioned kernel is missing.

use std::{path::PathBuf, sync::Arc, time::Duration};

use nitro_listener::{
    qemu::{free_port, Accel, QemuCommand, QemuDriver},
    Driver,
};
use nitro_mem::{
    AddressSpace, MappedFileMemory, PagingMode, PhysAddr, PhysMemory, TranslationCache, VirtAddr,
};

fn cache_dir() -> PathBuf {
    std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/nitro")
        })
}

/// Canonical virtual addresses of mapped pages, sampled from the top levels of the tables.
fn sample_mapped(mem: &dyn PhysMemory, root: u64, want: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let rd = |pa: u64| mem.read_phys_u64(PhysAddr(pa)).unwrap_or(0);
    let addr_of = |e: u64| e & 0x000f_ffff_ffff_f000;
    for (half, range) in [(0u64, 0..256u64), (1, 256..512)] {
        let mut taken = 0;
        for i4 in range {
            let e4 = rd(root + i4 * 8);
            if e4 & 1 == 0 {
                continue;
            }
            for i3 in (0..512u64).step_by(if half == 0 { 1 } else { 7 }) {
                let e3 = rd(addr_of(e4) + i3 * 8);
                if e3 & 1 == 0 {
                    continue;
                }
                let base = (i4 << 39) | (i3 << 30);
                let va = if half == 1 {
                    base | 0xffff_0000_0000_0000
                } else {
                    base
                };
                if e3 & 0x80 != 0 {
                    out.push(va + 0x1234);
                    taken += 1;
                    continue;
                }
                for i2 in (0..512u64).step_by(if half == 0 { 1 } else { 13 }) {
                    let e2 = rd(addr_of(e3) + i2 * 8);
                    if e2 & 1 == 0 {
                        continue;
                    }
                    let va2 = va | (i2 << 21);
                    if e2 & 0x80 != 0 {
                        out.push(va2 + 0x5678);
                        taken += 1;
                        continue;
                    }
                    for i1 in (0..512u64).step_by(if half == 0 { 3 } else { 29 }) {
                        let e1 = rd(addr_of(e2) + i1 * 8);
                        if e1 & 1 != 0 && taken < want / 2 {
                            out.push(va2 | (i1 << 12) | 0x9a);
                            taken += 1;
                        }
                    }
                }
                if taken >= want / 2 {
                    break;
                }
            }
            if taken >= want / 2 {
                break;
            }
        }
    }
    out
}

/// QEMU's human monitor on a UNIX socket: one command, output up to the next prompt.
struct Hmp(std::os::unix::net::UnixStream);

impl Hmp {
    fn connect(path: &std::path::Path) -> Self {
        let s = std::os::unix::net::UnixStream::connect(path).expect("HMP socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut h = Hmp(s);
        h.until_prompt();
        h
    }

    fn until_prompt(&mut self) -> String {
        use std::io::Read;
        let mut out = Vec::new();
        let mut b = [0u8; 512];
        while !out.ends_with(b"(qemu) ") {
            let n = self.0.read(&mut b).expect("HMP output");
            assert!(n > 0, "HMP closed");
            out.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn command(&mut self, cmd: &str) -> String {
        use std::io::Write;
        self.0.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let out = self.until_prompt();
        // The monitor echoes the command line (with terminal escapes) before the answer.
        out.lines()
            .filter(|l| l.contains("gpa:") || l.contains("Unmapped"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn translations_agree_with_qemu_gva2gpa() {
    let kernel = cache_dir().join("guests/debian-6.1/vmlinuz");
    let initrd = cache_dir().join("initramfs.cpio.gz");
    if !kernel.exists() || !initrd.exists() {
        eprintln!(
            "SKIP: {} missing: run scripts/provision.sh",
            kernel.display()
        );
        return;
    }
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 not installed: run scripts/provision.sh");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nitro-gva2gpa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cmd = QemuCommand {
        binary: "qemu-system-x86_64".into(),
        accel: Accel::Tcg,
        memory_mib: 256,
        cpus: 1,
        kernel,
        initrd: Some(initrd),
        // A shell as init that stays in user mode spinning, so CR3 holds a user address space.
        append:
            "console=ttyS0 quiet nokaslr panic=-1 rdinit=/bin/sh -- -c \"while true; do :; done\""
                .into(),
        memory_file: PathBuf::from(format!("/dev/shm/nitro-gva2gpa-{}", std::process::id())),
        gdb_port: free_port().unwrap(),
        gdb_socket: None,
        serials: vec![format!("file:{}", dir.join("console.log").display())],
        extra: vec![
            "-monitor".into(),
            format!("unix:{},server=on,wait=off", dir.join("hmp.sock").display()),
        ],
        start_stopped: true,
        log_file: Some(dir.join("qemu.log")),
    };
    let mut qemu = cmd.spawn().unwrap();
    qemu.wait_for_memory_file(Duration::from_secs(20)).unwrap();
    let mem: Arc<dyn PhysMemory> = Arc::new(
        MappedFileMemory::open(
            &qemu.memory_file.display().to_string(),
            qemu.regions.clone(),
        )
        .unwrap(),
    );
    let mut driver = QemuDriver::connect(&qemu.gdb_endpoint, Some(mem.clone()), 1).unwrap();
    driver.resume().unwrap();
    // Let the guest boot to its shell.
    std::thread::sleep(Duration::from_secs(8));
    let regs = driver.interrupt().unwrap();
    let mut hmp = Hmp::connect(&dir.join("hmp.sock"));
    let mode = PagingMode::from_cr4(regs.cr4);
    let root = regs.cr3 & 0x000f_ffff_ffff_f000;
    let space = AddressSpace::with_mode(mem.as_ref(), PhysAddr(regs.cr3), mode);
    let cache = TranslationCache::new();
    let cached = space.cached(&cache);

    let mut addrs = sample_mapped(mem.as_ref(), root, 200);
    addrs.push(regs.rip);
    addrs.push(regs.rsp);
    addrs.push(0xffff_ffff_81c0_0080); // entry_SYSCALL_64 with nokaslr (6.1)
    let (mut kernel_n, mut user_n) = (0, 0);
    for va in addrs {
        let ours = space.translate(VirtAddr(va)).map(|t| t.phys.0);
        let again = cached.translate(VirtAddr(va)).map(|t| t.phys.0);
        assert_eq!(
            ours.clone().ok(),
            again.ok(),
            "cached and uncached differ at {va:#x}"
        );
        let out = hmp.command(&format!("gva2gpa {va:#x}"));
        // "gpa: 0x1234", or "Unmapped" for an address the CPU would fault on.
        let qemu_pa = out
            .trim()
            .rsplit("gpa: ")
            .next()
            .filter(|_| out.contains("gpa: "))
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
        match (ours, qemu_pa) {
            (Ok(pa), Some(q)) => assert_eq!(pa, q, "translation of {va:#x}"),
            (Err(e), None) => assert!(e.is_not_present(), "{va:#x}: {e}"),
            (ours, q) => panic!("{va:#x}: nitro {ours:?}, QEMU {q:?} ({out:?})"),
        }
        if va >= 0xffff_8000_0000_0000 {
            kernel_n += 1;
        } else {
            user_n += 1;
        }
    }
    eprintln!("checked {kernel_n} kernel and {user_n} user addresses against gva2gpa");
    assert!(
        kernel_n >= 20,
        "too few kernel addresses sampled: {kernel_n}"
    );
    assert!(user_n >= 5, "too few user addresses sampled: {user_n}");
    let _ = driver.detach();
    drop(qemu);
    let _ = std::fs::remove_dir_all(dir);
}
