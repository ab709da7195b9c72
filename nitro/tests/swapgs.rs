//! The QEMU driver's execution-breakpoint strategy: a breakpoint on the `swapgs` that starts
//! Linux 6.1's `entry_SYSCALL_64`, resumed by emulating it in the tracer (GS base and kernel
//! GS base swapped with `P` writes, RIP += 3) instead of single-stepping. Runs a real guest
//! under TCG through its whole workload with the breakpoint armed, and checks that every
//! stop was emulated and the guest's command finished correctly.
//!
//! Needs QEMU and the provisioned debian-6.1 guest; skips (saying why) without them.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use nitro::guest::{self, ControlMessage, GuestRun, GuestSpec};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::{
    qemu::QemuDriver, Direction, Driver, DriverEvent, Strategy, SyscallKind, TrapKind, TrapPlan,
    TrapSite,
};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn breakpoint_on_swapgs_is_emulated_not_stepped() {
    let Ok(kernel) = guest::guest_kernel("debian-6.1") else {
        eprintln!("SKIP: debian-6.1 guest missing: run scripts/provision.sh");
        return;
    };
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: QEMU missing: run scripts/provision.sh");
        return;
    }
    let backend = LinuxBackend::from_kernel_file(&kernel).expect("kernel parses");
    // 6.1 has no IBT: entry_SYSCALL_64 starts with swapgs (ENVIRONMENT.md); the guest boots
    // with nokaslr, so the linked address is the running one.
    let entry = backend
        .kallsyms()
        .lookup("entry_SYSCALL_64")
        .expect("entry_SYSCALL_64 in kallsyms");
    let spec = GuestSpec::new(
        kernel,
        guest::default_initrd().expect("initrd"),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "for i in 1 2 3 4 5; do cat /proc/version; done".into(),
        ],
    );
    let output = Shared::default();
    let mut run = GuestRun::start(&spec, Box::new(output.clone())).expect("QEMU starts");
    let mut driver =
        QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1).expect("gdbstub");
    driver.resume().unwrap();
    assert_eq!(
        run.wait_control(Duration::from_secs(120)).unwrap(),
        ControlMessage::Ready
    );
    driver.interrupt().unwrap();
    driver
        .arm(&TrapPlan {
            sites: vec![TrapSite {
                addr: entry,
                kind: TrapKind::Execute,
                direction: Direction::Enter,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: std::iter::once(entry..entry + 1).collect(),
            }],
        })
        .expect("breakpoint armed");
    driver.resume().unwrap();
    run.go().unwrap();
    let mut stops = 0u64;
    let mut syscall_numbers = std::collections::BTreeSet::new();
    loop {
        match driver.next_event().expect("driver") {
            DriverEvent::Trap(ev) => {
                assert_eq!(ev.strategy, Strategy::BreakpointEmulated);
                assert_eq!(ev.regs.rip, entry);
                // Stopped before swapgs: still the user's GS base (a user address).
                assert!(ev.regs.gs_base < 1 << 47, "gs_base {:#x}", ev.regs.gs_base);
                syscall_numbers.insert(ev.regs.rax);
                stops += 1;
                driver.resume().unwrap();
            }
            DriverEvent::Spurious { rip, .. } => panic!("spurious stop at {rip:#x}"),
            DriverEvent::GuestEnded { .. } => break,
        }
    }
    run.finish(Duration::from_secs(20));
    assert_eq!(run.exit_status, Some(0), "console: {}", run.console());
    let st = driver.stats();
    assert!(stops > 50, "only {stops} stops");
    assert_eq!(st.emulated_stops, stops);
    assert_eq!(st.single_steps, 0);
    // openat (257) and read (0) at least.
    assert!(syscall_numbers.contains(&257) && syscall_numbers.contains(&0));
    let text = String::from_utf8_lossy(&output.0.lock().unwrap()).into_owned();
    assert_eq!(text.matches("Linux version").count(), 5, "output: {text}");
    eprintln!(
        "{stops} swapgs stops emulated, {:.2} round trips per stop",
        st.round_trips_per_stop()
    );
}
