//! Booting a Linux bzImage in the in-process VM, with a serial console.
//!
//! **Not verified on a running kernel.** The development machines' KVM is PVM, a software
//! hypervisor on which a stock kernel does not boot (see `shared/ENVIRONMENT.md`). What is
//! tested here: the image is loaded and the zero page, command line and memory map are laid
//! out as the boot protocol says (on real Debian kernels), the VM with its in-kernel interrupt
//! controller and timer is created, and the serial port answers as a 16550. Run by hand under
//! PVM (`tests::boots_to_console`, ignored), Debian 6.1's decompressor starts and prints
//! `KASLR disabled: 'nokaslr' on cmdline.` on this console, so entry, page tables, zero page
//! and console work; the decompression then runs emulated (about 0.8 us per instruction) and
//! the kernel banner does not appear within 20 s. Booting to a shell is expected to work on
//! VMX/SVM hosts; no test or CI run claims it.
//!
//! Boot protocol: Linux `Documentation/arch/x86/boot.rst`, "64-bit boot protocol": the kernel
//! is entered in long mode at the load address + 0x200 with `rsi` pointing at `struct
//! boot_params` (the zero page), identity-mapped memory, `__BOOT_CS` = 0x10 and `__BOOT_DS` =
//! 0x18, interrupts off. Only one vCPU is supported (no MP table or ACPI tables are built).

use std::{
    fs::File,
    io::{Read, Write},
    path::Path,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex,
    },
};

use kvm_bindings::{
    kvm_fpu, kvm_pit_config, kvm_regs, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use linux_loader::{
    cmdline::Cmdline,
    configurator::{linux::LinuxBootConfigurator, BootConfigurator, BootParams},
    loader::{bootparam::boot_params, bzimage::BzImage, load_cmdline, KernelLoader},
};
use nitro_mem::{PhysAddr, PhysMemory};
use nitro_sys::x86;
use vm_memory::GuestAddress;

use super::{
    memory::GuestRam,
    port::{PortAction, PortIo},
    vm::{long_mode_sregs, open_kvm, register_memory, write_tables, KvmVm, Parts, PML4_GPA},
    KvmError, KvmVcpu,
};

/// Guest physical address of the zero page (`struct boot_params`).
pub const ZERO_PAGE_GPA: u64 = 0x7000;
/// Guest physical address of the kernel command line.
pub const CMDLINE_GPA: u64 = 0x20000;
/// Longest command line accepted (bytes, without the terminating NUL).
pub const CMDLINE_MAX: usize = 4095;
/// Where the kernel's protected-mode part is loaded (the bzImage default, `code32_start`).
pub const KERNEL_GPA: u64 = 0x10_0000;
/// Initial stack pointer (below the zero page's neighbours, as other VMMs use).
const BOOT_STACK: u64 = 0x8ff0;
/// Start of the extended BIOS data area: RAM below it is usable (e820 type 1).
const EBDA_START: u64 = 0x9fc00;
/// e820 type of usable RAM (ACPI spec, "Address Range Types").
const E820_RAM: u32 = 1;
/// `hdr.header` magic "HdrS" and `hdr.boot_flag` (boot.rst).
const HDR_MAGIC: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader` 0xff: undefined loader (boot.rst).
const LOADER_UNDEFINED: u8 = 0xff;
/// Offset of the 64-bit entry point from the load address (boot.rst, 64-bit boot protocol).
const ENTRY_64: u64 = 0x200;
/// TSS address KVM needs on Intel before an in-kernel irqchip (three pages below 4 GiB).
const TSS_ADDRESS: usize = 0xfffb_d000;
/// Smallest and largest RAM for a Linux guest here.
const LINUX_MEMORY_MIN: u64 = 64 << 20;
const LINUX_MEMORY_MAX: u64 = 1 << 30;

/// A Linux guest to boot.
#[derive(Debug, Clone, Copy)]
pub struct LinuxGuest<'a> {
    /// The bzImage.
    pub kernel: &'a Path,
    /// An initramfs, if any.
    pub initrd: Option<&'a Path>,
    /// Kernel command line, e.g. `console=ttyS0 reboot=k panic=-1`.
    pub cmdline: &'a str,
    /// RAM in bytes (64 MiB to 1 GiB, a multiple of 4 KiB).
    pub memory_size: u64,
}

/// Where things were put by [`load_linux`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxBoot {
    /// 64-bit entry point.
    pub entry: u64,
    /// Guest physical address of the zero page (`rsi` at entry).
    pub zero_page: u64,
    /// End of the loaded kernel.
    pub kernel_end: u64,
    /// Initramfs (guest physical address, length).
    pub initrd: Option<(u64, u64)>,
}

fn boot_err(what: &Path, why: impl std::fmt::Display) -> KvmError {
    KvmError::Layout(format!("{}: {why}", what.display()))
}

/// Loads the kernel, initramfs, command line, zero page and identity page tables into
/// `mem`. Pure memory work: no KVM needed.
pub fn load_linux(mem: &GuestRam, guest: &LinuxGuest<'_>) -> Result<LinuxBoot, KvmError> {
    let size = guest.memory_size;
    if !(LINUX_MEMORY_MIN..=LINUX_MEMORY_MAX).contains(&size)
        || size & 0xfff != 0
        || mem.size() < size
    {
        return Err(KvmError::Layout(format!(
            "Linux guest memory {size:#x}: 64 MiB to 1 GiB in 4 KiB pages"
        )));
    }
    if guest.cmdline.len() > CMDLINE_MAX {
        return Err(KvmError::Layout(format!(
            "command line longer than {CMDLINE_MAX} bytes"
        )));
    }
    write_tables(mem)?;

    let mut image = File::open(guest.kernel).map_err(|e| boot_err(guest.kernel, e))?;
    let loaded = BzImage::load(
        mem.guest_memory(),
        None,
        &mut image,
        Some(GuestAddress(KERNEL_GPA)),
    )
    .map_err(|e| boot_err(guest.kernel, format!("not a loadable bzImage: {e}")))?;
    let Some(header) = loaded.setup_header else {
        return Err(boot_err(guest.kernel, "no setup header"));
    };

    let mut cmdline = Cmdline::new(CMDLINE_MAX + 1).map_err(|e| boot_err(guest.kernel, e))?;
    cmdline
        .insert_str(guest.cmdline)
        .map_err(|e| KvmError::Layout(format!("command line: {e}")))?;
    load_cmdline(mem.guest_memory(), GuestAddress(CMDLINE_GPA), &cmdline)
        .map_err(|e| KvmError::Layout(format!("command line: {e}")))?;

    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.header = HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_GPA as u32;
    params.hdr.cmdline_size = guest.cmdline.len() as u32 + 1;

    let kernel_end = loaded.kernel_load.0 + loaded.kernel_end;
    let mut initrd = None;
    if let Some(path) = guest.initrd {
        let mut f = File::open(path).map_err(|e| boot_err(path, e))?;
        let len = f.metadata().map_err(|e| boot_err(path, e))?.len();
        // Highest page-aligned place below both the end of RAM and initrd_addr_max.
        let limit = size.min(u64::from(params.hdr.initrd_addr_max) + 1);
        let at = limit
            .checked_sub(len)
            .map(|a| a & !0xfff)
            .filter(|&a| a >= kernel_end);
        let Some(at) = at else {
            return Err(boot_err(
                path,
                format!("{len} bytes do not fit between the kernel and {limit:#x}"),
            ));
        };
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes).map_err(|e| boot_err(path, e))?;
        if bytes.len() as u64 != len {
            return Err(boot_err(path, "changed size while being read"));
        }
        mem.write_phys(PhysAddr(at), &bytes)?;
        params.hdr.ramdisk_image = at as u32;
        params.hdr.ramdisk_size = len as u32;
        initrd = Some((at, len));
    }

    params.e820_table[0].addr = 0;
    params.e820_table[0].size = EBDA_START;
    params.e820_table[0].r#type = E820_RAM;
    params.e820_table[1].addr = KERNEL_GPA;
    params.e820_table[1].size = size - KERNEL_GPA;
    params.e820_table[1].r#type = E820_RAM;
    params.e820_entries = 2;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_GPA)),
        mem.guest_memory(),
    )
    .map_err(|e| KvmError::Layout(format!("zero page: {e}")))?;

    Ok(LinuxBoot {
        entry: loaded.kernel_load.0 + ENTRY_64,
        zero_page: ZERO_PAGE_GPA,
        kernel_end,
        initrd,
    })
}

impl KvmVm {
    /// A one-vCPU VM that boots `guest` (not verified on a running kernel: see the module
    /// docs). The serial console (COM1, port 0x3f8) writes to `console`; a reset through the
    /// keyboard controller (`reboot=k`) ends the guest.
    pub fn linux(guest: &LinuxGuest<'_>, console: Box<dyn Write + Send>) -> Result<Self, KvmError> {
        let kvm = open_kvm(super::KVM_PATH)?;
        let vm = kvm
            .create_vm()
            .map_err(|e| KvmError::ioctl("KVM_CREATE_VM", e))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(|e| KvmError::ioctl("KVM_SET_TSS_ADDR", e))?;
        vm.create_irq_chip()
            .map_err(|e| KvmError::ioctl("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| KvmError::ioctl("KVM_CREATE_PIT2", e))?;
        let memory = Arc::new(GuestRam::new(guest.memory_size)?);
        register_memory(&vm, &memory)?;
        let boot = load_linux(&memory, guest)?;

        let fd = vm
            .create_vcpu(0)
            .map_err(|e| KvmError::ioctl("KVM_CREATE_VCPU", e))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| KvmError::ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
        fd.set_cpuid2(&cpuid)
            .map_err(|e| KvmError::ioctl("KVM_SET_CPUID2", e))?;
        // x87 control word and MXCSR at their reset values (Intel SDM 1, 8.1.5 and 10.2.3).
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        fd.set_fpu(&fpu)
            .map_err(|e| KvmError::ioctl("KVM_SET_FPU", e))?;
        let mut lapic = fd
            .get_lapic()
            .map_err(|e| KvmError::ioctl("KVM_GET_LAPIC", e))?;
        // LVT LINT0 (offset 0x350) = ExtINT, LINT1 (0x360) = NMI: delivery mode in bits 8-10
        // (Intel SDM 3A 11.5.1), as the PC/AT wiring of the legacy PIC and NMI expects.
        for (off, mode) in [(0x350usize, 0b111u32), (0x360, 0b100)] {
            if let Some(reg) = lapic.regs.get_mut(off..off + 4) {
                let mut b = [0u8; 4];
                for (d, s) in b.iter_mut().zip(reg.iter()) {
                    *d = *s as u8;
                }
                let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
                for (d, s) in reg.iter_mut().zip(v.to_le_bytes()) {
                    *d = s as _;
                }
            }
        }
        fd.set_lapic(&lapic)
            .map_err(|e| KvmError::ioctl("KVM_SET_LAPIC", e))?;
        let mut sregs = fd
            .get_sregs()
            .map_err(|e| KvmError::ioctl("KVM_GET_SREGS", e))?;
        long_mode_sregs(&mut sregs);
        let regs = kvm_regs {
            rip: boot.entry,
            rsi: boot.zero_page,
            rsp: BOOT_STACK,
            rbp: BOOT_STACK,
            rflags: x86::RFLAGS_FIXED_1,
            ..Default::default()
        };
        let serial: Arc<dyn PortIo> = Arc::new(Serial8250::new(console));
        let mut vcpu = KvmVcpu::new(0, fd, serial, Arc::clone(&memory));
        vcpu.set_initial_state(&regs, &sregs)?;
        // No scratch area: nothing of ours is mapped in the kernel's page tables, so
        // execution breakpoints resume by emulating the instruction in the tracer (no-ops,
        // `mov`: see `emulate`), else by RF (VMX/SVM), else by stepping.
        Ok(KvmVm::from_parts(Parts {
            vcpus: vec![vcpu],
            vm,
            kvm,
            memory,
            scratch: None,
            cr3: PML4_GPA,
        }))
    }
}

/// COM1 as a 16550 UART that is always ready to send (polled output only), plus the
/// keyboard controller's reset line.
///
/// Registers (National Semiconductor PC16550D datasheet): THR at base+0 (when LCR.DLAB = 0),
/// LCR at base+3 (bit 7 DLAB), LSR at base+5 (bit 5 THRE, bit 6 TEMT), MSR at base+6
/// (bits 4, 5, 7: CTS, DSR, DCD). Reset: writing 0xfe to the i8042 command port 0x64 pulses
/// the CPU reset line (Linux `reboot=k`).
pub struct Serial8250 {
    out: Mutex<Box<dyn Write + Send>>,
    lcr: AtomicU8,
}

impl std::fmt::Debug for Serial8250 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial8250")
            .field("lcr", &self.lcr)
            .finish_non_exhaustive()
    }
}

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;

impl Serial8250 {
    /// A UART writing what the guest sends to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Serial8250 {
            out: Mutex::new(out),
            lcr: AtomicU8::new(0),
        }
    }
}

impl PortIo for Serial8250 {
    fn out(&self, _vcpu: u32, port: u16, data: &[u8]) -> PortAction {
        let Some(&byte) = data.first() else {
            return PortAction::Continue;
        };
        match port {
            COM1 if self.lcr.load(Ordering::Relaxed) & 0x80 == 0 => {
                if let Ok(mut out) = self.out.lock() {
                    let _ = out.write_all(&[byte]);
                    if byte == b'\n' {
                        let _ = out.flush();
                    }
                }
            }
            p if p == COM1 + 3 => self.lcr.store(byte, Ordering::Relaxed),
            I8042_COMMAND if byte == I8042_RESET => return PortAction::EndGuest,
            _ => {}
        }
        PortAction::Continue
    }

    fn input(&self, _vcpu: u32, port: u16, data: &mut [u8]) {
        let value = match port {
            p if p == COM1 + 3 => self.lcr.load(Ordering::Relaxed),
            p if p == COM1 + 5 => 0x60, // THRE | TEMT: always ready
            p if p == COM1 + 6 => 0xb0, // CTS | DSR | DCD
            p if (COM1..COM1 + 8).contains(&p) => 0,
            I8042_COMMAND => 0, // no data, input buffer empty
            _ => 0xff,
        };
        data.fill(value);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn serial_port_behaves_like_a_16550() {
        let sink = Sink::default();
        let uart = Serial8250::new(Box::new(sink.clone()));
        let mut b = [0u8];
        uart.input(0, COM1 + 5, &mut b);
        assert_eq!(b[0] & 0x60, 0x60, "transmitter ready");
        for &c in b"ok\n" {
            assert_eq!(uart.out(0, COM1, &[c]), PortAction::Continue);
        }
        // With DLAB set, port 0 is the divisor latch, not output.
        uart.out(0, COM1 + 3, &[0x80]);
        uart.out(0, COM1, &[0x01]);
        uart.out(0, COM1 + 3, &[0x03]);
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
        assert_eq!(
            uart.out(0, I8042_COMMAND, &[I8042_RESET]),
            PortAction::EndGuest
        );
    }

    fn debian_kernel(name: &str) -> Option<PathBuf> {
        let cache = std::env::var_os("NITRO_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nitro")))?;
        let p = cache.join("guests").join(name).join("vmlinuz");
        p.exists().then_some(p)
    }

    #[test]
    fn loads_real_debian_kernels_per_the_boot_protocol() {
        let mut any = false;
        for name in ["debian-6.1", "debian-6.12"] {
            let Some(kernel) = debian_kernel(name) else {
                eprintln!("skipping {name}: not provisioned (scripts/provision.sh)");
                continue;
            };
            any = true;
            let initrd_path =
                std::env::temp_dir().join(format!("nitro-kvm-initrd-{}", std::process::id()));
            std::fs::write(&initrd_path, vec![0x5au8; 10_000]).unwrap();
            let size = 256u64 << 20;
            let mem = GuestRam::new(size).unwrap();
            let guest = LinuxGuest {
                kernel: &kernel,
                initrd: Some(&initrd_path),
                cmdline: "console=ttyS0 reboot=k panic=-1",
                memory_size: size,
            };
            let boot = load_linux(&mem, &guest).unwrap();
            std::fs::remove_file(&initrd_path).ok();
            assert_eq!(boot.entry, KERNEL_GPA + 0x200, "{name}");
            let mut zp = [0u8; 4096];
            mem.read_phys(PhysAddr(ZERO_PAGE_GPA), &mut zp).unwrap();
            let u32_at = |o: usize| u32::from_le_bytes(zp[o..o + 4].try_into().unwrap());
            // Offsets from boot.rst / arch/x86/include/uapi/asm/bootparam.h.
            assert_eq!(u32_at(0x202), HDR_MAGIC, "{name}: header magic");
            assert_eq!(zp[0x210], LOADER_UNDEFINED, "{name}: type_of_loader");
            assert_eq!(u32_at(0x228), CMDLINE_GPA as u32, "{name}: cmd_line_ptr");
            assert_eq!(zp[0x1e8], 2, "{name}: e820 entries");
            let (at, len) = boot.initrd.unwrap();
            assert_eq!(
                (u32_at(0x218), u32_at(0x21c)),
                (at as u32, len as u32),
                "{name}: ramdisk"
            );
            assert!(at >= boot.kernel_end && at + len <= size && at % 4096 == 0);
            assert_eq!(
                mem.read_phys_u64(PhysAddr(at)).unwrap(),
                0x5a5a_5a5a_5a5a_5a5a
            );
            let mut cmd = vec![0u8; guest.cmdline.len() + 1];
            mem.read_phys(PhysAddr(CMDLINE_GPA), &mut cmd).unwrap();
            assert_eq!(&cmd[..cmd.len() - 1], guest.cmdline.as_bytes());
            assert_eq!(cmd[cmd.len() - 1], 0);
            // The protected-mode kernel is the file after the (setup_sects + 1) * 512 setup.
            let file = std::fs::read(&kernel).unwrap();
            let setup = (usize::from(file[0x1f1]).max(4) + 1) * 512;
            let mut start = [0u8; 64];
            mem.read_phys(PhysAddr(KERNEL_GPA), &mut start).unwrap();
            assert_eq!(
                &start[..],
                &file[setup..setup + 64],
                "{name}: kernel at 1 MiB"
            );
        }
        if !any {
            eprintln!("no Debian kernel provisioned: nothing loaded");
        }
    }

    #[test]
    fn rejects_what_cannot_boot() {
        let mem = GuestRam::new(64 << 20).unwrap();
        let not_a_kernel =
            std::env::temp_dir().join(format!("nitro-kvm-notkernel-{}", std::process::id()));
        std::fs::write(&not_a_kernel, vec![0u8; 8192]).unwrap();
        let guest = LinuxGuest {
            kernel: &not_a_kernel,
            initrd: None,
            cmdline: "",
            memory_size: 64 << 20,
        };
        let err = load_linux(&mem, &guest).unwrap_err().to_string();
        std::fs::remove_file(&not_a_kernel).ok();
        assert!(err.contains("not a loadable bzImage"), "{err}");
        let small = LinuxGuest {
            memory_size: 1 << 20,
            ..guest
        };
        assert!(load_linux(&mem, &small).is_err());
    }

    #[test]
    fn linux_vm_is_created_but_not_claimed_to_boot_here() {
        let Some(kernel) = debian_kernel("debian-6.1") else {
            eprintln!("skipping: debian-6.1 not provisioned");
            return;
        };
        if let Err(e) = open_kvm(super::super::KVM_PATH) {
            eprintln!("skipping: {e}");
            return;
        }
        let guest = LinuxGuest {
            kernel: &kernel,
            initrd: None,
            cmdline: "console=ttyS0",
            memory_size: 128 << 20,
        };
        match KvmVm::linux(&guest, Box::new(std::io::sink())) {
            Ok(mut vm) => {
                let regs = vm.vcpus_mut()[0].regs();
                assert_eq!((regs.rip, regs.rsi), (KERNEL_GPA + 0x200, ZERO_PAGE_GPA));
                assert_eq!(regs.cs, u32::from(super::super::vm::CODE_SELECTOR));
            }
            // PVM may lack the in-kernel irqchip or PIT: a clear error is what we check.
            Err(e) => eprintln!("this host cannot build a Linux VM: {e}"),
        }
    }

    /// Boots Debian's kernel until it prints on the serial console. Needs a VMX/SVM host
    /// (under PVM the decompressor stalls); run by hand there with
    /// `cargo test -p nitro-listener kvm::linux::tests::boots_to_console -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs a VMX/SVM host; a stock kernel does not boot under PVM"]
    fn boots_to_console() {
        use crate::{Driver, DriverEvent};
        let kernel = debian_kernel("debian-6.1").expect("debian-6.1 provisioned");
        let sink = Sink::default();
        let guest = LinuxGuest {
            kernel: &kernel,
            initrd: None,
            cmdline: "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 nokaslr",
            memory_size: 256 << 20,
        };
        let mut d = crate::kvm::KvmDriver::new_linux(&guest, Box::new(sink.clone())).unwrap();
        d.set_event_timeout(Some(std::time::Duration::from_secs(20)));
        d.resume().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while sink.0.lock().unwrap().len() < 64 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let regs = d.interrupt().unwrap();
        let out = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
        eprintln!("rip {:#x} after 20 s; console: {out:?}", regs.rip);
        assert!(
            out.contains("Linux version"),
            "no kernel banner on the console"
        );
        let _ = d
            .next_event()
            .map(|e| matches!(e, DriverEvent::GuestEnded { .. }));
    }
}
