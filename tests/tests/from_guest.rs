//! End-to-end: zero configuration without a kernel file. The backend finds kallsyms and BTF
//! in the memory of a running guest (`LinuxBackend::from_guest`), agrees with what the
//! kernel file says, and traces with them.

mod common;

use common::*;
use nitro::guest::{default_initrd, ControlMessage, GuestRun, GuestSpec};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::{qemu::QemuDriver, Driver};
use nitro_os::ArgValue;

fn check(guest: &str, kaslr: bool) {
    if !guest_available(guest) {
        return;
    }
    let kernel = kernel(guest);
    let initrd = default_initrd().expect("initramfs");
    let mut spec = GuestSpec::new(
        kernel.clone(),
        initrd,
        vec!["/bin/cat".into(), "/proc/version".into()],
    );
    spec.kaslr = kaslr;
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).expect("guest starts");
    let mut driver =
        QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1).expect("gdbstub");
    driver.resume().expect("resume");
    assert_eq!(
        run.wait_control(spec.boot_timeout).expect("control"),
        ControlMessage::Ready
    );
    let regs = driver.interrupt().expect("stop");
    let mem = driver.memory();
    let t0 = std::time::Instant::now();
    let found = LinuxBackend::from_guest(mem.as_ref(), &regs).expect("kernel found in memory");
    eprintln!("{guest} kaslr={kaslr}: from_guest took {:?}", t0.elapsed());

    // Same layouts as the file's BTF; symbols are runtime addresses: the file's plus the slide.
    let file = LinuxBackend::from_kernel_file(&kernel).expect("kernel file");
    assert_eq!(found.offsets(), file.offsets());
    let at = |b: &LinuxBackend, n: &str| b.kallsyms().lookup(n).expect(n);
    let slide = at(&found, "entry_SYSCALL_64").wrapping_sub(at(&file, "entry_SYSCALL_64"));
    assert_eq!(slide % 0x20_0000, 0);
    assert_eq!(slide == 0, !kaslr, "slide {slide:#x}");
    for n in [
        "do_syscall_64",
        "sys_call_table",
        "__per_cpu_offset",
        "asm_exc_divide_error",
    ] {
        assert_eq!(at(&found, n).wrapping_sub(at(&file, n)), slide, "{n}");
    }

    // And it traces.
    let (calls, status) = trace_after_go(&mut run, driver, found);
    assert_eq!(status, Some(0));
    let open = calls
        .iter()
        .find(|c| {
            c.name == "openat"
                && c.args.iter().any(|a| {
                    matches!(&a.value, ArgValue::Str { bytes, .. } if bytes == b"/proc/version")
                })
        })
        .expect("openat of /proc/version traced");
    assert!(open.ret.as_ref().is_some_and(|r| r.value >= 3));
    assert_eq!(open.process.name, "cat");
}

#[test]
fn from_guest_6_1() {
    check("debian-6.1", false);
}

#[test]
fn from_guest_6_12_kaslr() {
    check("debian-6.12", true);
}
