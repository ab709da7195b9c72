//! Tests on real KVM with synthetic ring-0 guests (kvm-ioctls' own run-raw-bytes tests are
//! the model). Each test skips, saying why, when /dev/kvm is absent or unusable.

use std::{ops::Range, sync::Arc, time::Duration};

use super::*;
use crate::{
    Direction, Driver, DriverEvent, NitroEvent, Reg, RegChanges, Strategy, SyscallKind, TrapKind,
    TrapPlan, TrapSite,
};
use nitro_mem::{PhysAddr, PhysMemory};

const LOAD: u64 = 0x10000;
const RESULTS: u64 = 0x30000;
const CALLS: u64 = 4;

/// A loop calling a "syscall dispatcher" with the call number in rax, four times per vCPU:
/// ```text
/// start:    mov r13, rdi ; shl r13, 8 ; add r13, 0x30000   ; results of vCPU rdi
///           xor r14d, r14d
/// loop:     mov rax, r14 ; call dispatch
///           mov [r13 + r14*8], rax                         ; store the return value
///           inc r14 ; cmp r14, 4 ; jb loop ; hlt
/// dispatch: mov rcx, rax                 ; +0x28  entry site (rax = number)
///           lea rax, [rax + rax + 1]     ;        the "handler": returns 2n + 1
///           mov rdx, rax                 ; +0x30  return site (rax = return value)
///           ret                          ; +0x33
/// ```
/// (assembled with GNU as, `objdump -d` checked).
const DISPATCHER: [u8; 0x34] = [
    0x49, 0x89, 0xfd, 0x49, 0xc1, 0xe5, 0x08, 0x49, 0x81, 0xc5, 0x00, 0x00, 0x03, 0x00, 0x45, 0x31,
    0xf6, 0x4c, 0x89, 0xf0, 0xe8, 0x0f, 0x00, 0x00, 0x00, 0x4b, 0x89, 0x44, 0xf5, 0x00, 0x49, 0xff,
    0xc6, 0x49, 0x83, 0xfe, 0x04, 0x72, 0xea, 0xf4, 0x48, 0x89, 0xc1, 0x48, 0x8d, 0x44, 0x00, 0x01,
    0x48, 0x89, 0xc2, 0xc3,
];
const ENTRY_SITE: u64 = LOAD + 0x28;
const EXIT_SITE: u64 = LOAD + 0x30;
const RET_SITE: u64 = LOAD + 0x33;

fn kvm_usable() -> bool {
    match open_kvm(KVM_PATH).and_then(|_| probe_resume_flag(KVM_PATH)) {
        Ok(rf) => {
            eprintln!("KVM usable; RFLAGS.RF honoured: {rf}");
            true
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

fn site(addr: u64, direction: Direction) -> TrapSite {
    TrapSite {
        addr,
        kind: TrapKind::Execute,
        direction,
        syscall_kind: SyscallKind::Syscall64,
        rip_ranges: vec![Range {
            start: addr,
            end: addr + 1,
        }],
    }
}

fn dispatcher(vcpus: u32) -> KvmDriver {
    let mut d = KvmDriver::new_synthetic(&DISPATCHER, LOAD, LOAD, vcpus, 4 << 20).unwrap();
    d.set_event_timeout(Some(Duration::from_secs(30)));
    d
}

/// Runs the guest to its end, calling `hook` on each trap; returns the events.
fn run_to_end(
    d: &mut KvmDriver,
    mut hook: impl FnMut(&NitroEvent) -> RegChanges,
) -> Vec<NitroEvent> {
    let mut events = Vec::new();
    d.resume().unwrap();
    loop {
        match d.next_event().unwrap() {
            DriverEvent::Trap(e) => {
                assert!(events.len() < 1000, "runaway traps: {e:?}");
                let changes = hook(&e);
                if !changes.is_empty() {
                    d.set_regs(&changes).unwrap();
                }
                events.push(*e);
                d.resume().unwrap();
            }
            DriverEvent::Spurious { vcpu, rip } => {
                panic!("spurious stop of vCPU {vcpu} at {rip:#x}")
            }
            DriverEvent::GuestEnded { .. } => return events,
        }
    }
}

fn results(d: &KvmDriver, vcpu: u64) -> Vec<u64> {
    let mem = d.memory();
    (0..CALLS)
        .map(|i| {
            mem.read_phys_u64(PhysAddr(RESULTS + vcpu * 0x100 + i * 8))
                .unwrap()
        })
        .collect()
}

/// The dispatcher's sites hold `mov` instructions: emulated in the tracer on every host.
fn breakpoint_strategy(_: &KvmDriver) -> Strategy {
    Strategy::BreakpointEmulated
}

#[test]
fn guest_runs_untraced() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    assert!(run_to_end(&mut d, |_| RegChanges::default()).is_empty());
    assert_eq!(results(&d, 0), vec![1, 3, 5, 7]);
}

#[test]
fn entry_and_return_events_carry_registers() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    let plan = TrapPlan {
        sites: vec![
            site(ENTRY_SITE, Direction::Enter),
            site(EXIT_SITE, Direction::Exit),
        ],
    };
    d.arm(&plan).unwrap();
    let events = run_to_end(&mut d, |_| RegChanges::default());
    assert_eq!(events.len(), 2 * CALLS as usize);
    for (i, pair) in events.chunks(2).enumerate() {
        let (enter, exit) = (&pair[0], &pair[1]);
        let nr = i as u64;
        assert_eq!(
            (enter.direction, enter.site, enter.vcpu),
            (Direction::Enter, 0, 0)
        );
        assert_eq!(enter.regs.rip, ENTRY_SITE);
        assert_eq!(enter.regs.rax, nr, "syscall number in rax at entry");
        assert_eq!(enter.regs.r14, nr);
        assert_eq!((exit.direction, exit.site), (Direction::Exit, 1));
        assert_eq!(exit.regs.rip, EXIT_SITE);
        assert_eq!(exit.regs.rax, 2 * nr + 1, "return value in rax at return");
        assert_eq!(
            exit.regs.rcx, nr,
            "rcx was set by the instruction emulated in the tracer"
        );
        for e in [enter, exit] {
            assert_eq!(e.kind, SyscallKind::Syscall64);
            assert_eq!(e.strategy, breakpoint_strategy(&d));
            assert_eq!(e.regs.cs, u32::from(vm::CODE_SELECTOR));
            assert_eq!(e.regs.cpl(), 0);
            assert_eq!(e.cr3(), 0x2000);
            assert_ne!(e.regs.efer & nitro_sys::x86::EFER_LMA, 0);
            assert_eq!(e.regs.rsp % 8, 0);
        }
    }
    assert_eq!(
        results(&d, 0),
        vec![1, 3, 5, 7],
        "the guest ran correctly under the traps"
    );
}

#[test]
fn hooks_change_what_the_guest_sees() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    let plan = TrapPlan {
        sites: vec![
            site(ENTRY_SITE, Direction::Enter),
            site(EXIT_SITE, Direction::Exit),
        ],
    };
    d.arm(&plan).unwrap();
    run_to_end(&mut d, |e| {
        let mut c = RegChanges::default();
        match (e.direction, e.regs.r14) {
            (Direction::Exit, 1) => c.writes.push((Reg::Rax, 0x1234)), // fake a return value
            (Direction::Enter, 2) => c.writes.push((Reg::Rax, 10)),    // rewrite the number
            _ => {}
        }
        c
    });
    assert_eq!(results(&d, 0), vec![1, 0x1234, 21, 7]);
}

#[test]
fn two_vcpus_trap_at_once() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(2);
    assert_eq!(d.capabilities().vcpus, 2);
    let plan = TrapPlan {
        sites: vec![
            site(ENTRY_SITE, Direction::Enter),
            site(EXIT_SITE, Direction::Exit),
        ],
    };
    d.arm(&plan).unwrap();
    let events = run_to_end(&mut d, |e| {
        // vCPU 1's return values are doubled by the hook.
        let mut c = RegChanges::default();
        if e.vcpu == 1 && e.direction == Direction::Exit {
            c.writes.push((Reg::Rax, e.regs.rax * 2));
        }
        c
    });
    for v in 0..2u32 {
        let mine: Vec<_> = events.iter().filter(|e| e.vcpu == v).collect();
        assert_eq!(mine.len(), 2 * CALLS as usize, "vCPU {v}");
        // Each vCPU sees its own calls in order, whatever the interleaving.
        for (i, pair) in mine.chunks(2).enumerate() {
            assert_eq!(
                (pair[0].direction, pair[0].regs.rax),
                (Direction::Enter, i as u64)
            );
            assert_eq!(
                (pair[1].direction, pair[1].regs.rax),
                (Direction::Exit, 2 * i as u64 + 1)
            );
            assert_eq!(pair[0].regs.rdi, u64::from(v));
        }
    }
    assert_eq!(results(&d, 0), vec![1, 3, 5, 7]);
    assert_eq!(results(&d, 1), vec![2, 6, 10, 14]);
}

#[test]
fn unrelocatable_site_falls_back_to_single_step() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    d.arm(&TrapPlan {
        sites: vec![site(RET_SITE, Direction::Exit)],
    })
    .unwrap();
    let expected = if d.resume_flag_honoured() {
        Strategy::BreakpointResumeFlag
    } else {
        Strategy::BreakpointStep
    };
    assert_eq!(d.armed()[0].resume.strategy(), expected);
    let events = run_to_end(&mut d, |_| RegChanges::default());
    assert_eq!(events.len(), CALLS as usize);
    assert!(events
        .iter()
        .all(|e| e.strategy == expected && e.regs.rip == RET_SITE));
    assert_eq!(results(&d, 0), vec![1, 3, 5, 7]);
}

#[test]
fn write_watchpoint_stops_after_the_store() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    let addr = RESULTS + 2 * 8; // result slot of call 2
    let plan = TrapPlan {
        sites: vec![TrapSite {
            addr,
            kind: TrapKind::WriteWatch { len: 8 },
            direction: Direction::Exit,
            syscall_kind: SyscallKind::Syscall64,
            rip_ranges: vec![Range {
                start: LOAD,
                end: LOAD + 0x40,
            }],
        }],
    };
    d.arm(&plan).unwrap();
    let events = run_to_end(&mut d, |_| RegChanges::default());
    if events.is_empty() {
        eprintln!("note: this host does not report data watchpoints on ring-0 stores");
    } else {
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].strategy, Strategy::Watchpoint);
        assert_eq!(events[0].regs.rip, LOAD + 0x1e, "stop after the store");
        assert_eq!(events[0].regs.rax, 5);
    }
    assert_eq!(results(&d, 0), vec![1, 3, 5, 7]);
}

#[test]
fn interrupt_stops_a_spinning_guest() {
    if !kvm_usable() {
        return;
    }
    // 0x10000: jmp $
    let mut d = KvmDriver::new_synthetic(&[0xeb, 0xfe], LOAD, LOAD, 2, 1 << 20).unwrap();
    d.resume().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let regs = d.interrupt().unwrap();
    assert_eq!(regs.rip, LOAD);
    // Stopped: arming is allowed now, and resuming again works.
    d.arm(&TrapPlan::default()).unwrap();
    d.resume().unwrap();
    assert_eq!(d.interrupt().unwrap().rip, LOAD);
}

#[test]
fn guest_the_host_cannot_run_is_a_clear_error() {
    if !kvm_usable() {
        return;
    }
    // ud2 with no IDT: #UD -> #DF -> triple fault.
    let mut d = KvmDriver::new_synthetic(&[0x0f, 0x0b], LOAD, LOAD, 1, 1 << 20).unwrap();
    d.set_event_timeout(Some(Duration::from_secs(30)));
    d.resume().unwrap();
    let err = d.next_event().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, crate::ListenerError::GuestGone(_)), "{msg}");
    assert!(msg.contains("cannot run this guest"), "{msg}");
}

#[test]
fn too_many_sites_are_refused() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    let sites = (0..5).map(|i| site(LOAD + i, Direction::Enter)).collect();
    let err = d.arm(&TrapPlan { sites }).unwrap_err();
    assert!(
        matches!(err, crate::ListenerError::ArmFailed { .. }),
        "{err}"
    );
}

#[test]
fn missing_device_is_a_clear_error() {
    let guest = SyntheticGuest {
        code: &[0xf4],
        load_gpa: LOAD,
        entry: LOAD,
        vcpus: 1,
        memory_size: 1 << 20,
    };
    let err = KvmVm::synthetic_at("/nonexistent/kvm", &guest).unwrap_err();
    assert!(matches!(err, KvmError::NoDevice { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/kvm"));
}

#[test]
fn vcpu_api_reports_port_writes_and_traps() {
    if !kvm_usable() {
        return;
    }
    // loop: lea rcx, [rax+1] ; out 0x80, al ; inc rax ; jmp loop   (lea: not emulated)
    let code = [
        0x48, 0x8d, 0x48, 0x01, 0xe6, 0x80, 0x48, 0xff, 0xc0, 0xeb, 0xf5,
    ];
    let guest = SyntheticGuest {
        code: &code,
        load_gpa: LOAD,
        entry: LOAD,
        vcpus: 1,
        memory_size: 1 << 20,
    };
    let mut vm = KvmVm::synthetic(&guest).unwrap();
    let armed = vm
        .prepare(
            &TrapPlan {
                sites: vec![site(LOAD, Direction::Enter)],
            },
            false,
        )
        .unwrap();
    let vcpu = &mut vm.vcpus_mut()[0];
    vcpu.set_port_io(Arc::new(PortLog::new(16).stop_on(0x80)));
    vcpu.arm(armed).unwrap();
    for i in 0..3u64 {
        match vcpu.run().unwrap() {
            VcpuStop::Trap { site, regs } => {
                assert_eq!((site.addr, regs.rax), (LOAD, i));
                assert!(matches!(site.resume, Resume::OutOfLine { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            vcpu.run().unwrap(),
            VcpuStop::PortOut {
                port: 0x80,
                value: i & 0xff
            }
        );
    }
}

/// Interleaved timing of a bare `out` exit and a breakpoint trap (same process, alternating
/// rounds, so load drift on a shared machine hits both). Prints the figures; run with
/// `cargo test -p nitro-listener --release kvm::tests::trap_to_exit_ratio -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check; run by hand"]
fn trap_to_exit_ratio() {
    if !kvm_usable() {
        return;
    }
    use std::time::Instant;
    let out_loop = [0xe6, 0x80, 0xeb, 0xfc]; // out 0x80, al ; jmp
    let mov_loop = [0x48, 0x89, 0xc1, 0xeb, 0xfb]; // mov rcx, rax ; jmp (emulated)
    let lea_loop = [0x48, 0x8d, 0x48, 0x01, 0xeb, 0xfa]; // lea rcx, [rax+1] ; jmp (out of line)
    let mk = |code: &[u8]| {
        KvmVm::synthetic(&SyntheticGuest {
            code,
            load_gpa: LOAD,
            entry: LOAD,
            vcpus: 1,
            memory_size: 1 << 20,
        })
        .unwrap()
    };
    let mut bare = mk(&out_loop);
    bare.vcpus_mut()[0].set_port_io(Arc::new(PortLog::new(0).stop_on(0x80)));
    let mut trap = mk(&lea_loop);
    let rf = probe_resume_flag(KVM_PATH).unwrap();
    let armed = trap
        .prepare(
            &TrapPlan {
                sites: vec![site(LOAD, Direction::Enter)],
            },
            rf,
        )
        .unwrap();
    trap.vcpus_mut()[0].arm(armed).unwrap();
    let mut step = mk(&mov_loop);
    let mut plan = ArmedPlan::build(
        &TrapPlan {
            sites: vec![site(LOAD, Direction::Enter)],
        },
        &|_, _| Err(KvmError::Layout("no copy".into())),
        &**step.memory(),
        None,
        false,
    )
    .unwrap();
    assert_eq!(plan.sites()[0].resume, Resume::Step);
    step.vcpus_mut()[0]
        .arm(Arc::new(std::mem::replace(&mut plan, ArmedPlan::empty())))
        .unwrap();
    let mut driver = KvmDriver::new_synthetic(&mov_loop, LOAD, LOAD, 1, 1 << 20).unwrap();
    driver
        .arm(&TrapPlan {
            sites: vec![site(LOAD, Direction::Enter)],
        })
        .unwrap();
    driver.resume().unwrap();
    let endbr_loop = [0xf3, 0x0f, 0x1e, 0xfa, 0xeb, 0xfa]; // endbr64 ; jmp
    let mut emul = mk(&endbr_loop);
    let armed = emul
        .prepare(
            &TrapPlan {
                sites: vec![site(LOAD, Direction::Enter)],
            },
            rf,
        )
        .unwrap();
    emul.vcpus_mut()[0].arm(armed).unwrap();
    let mut sleeper = KvmDriver::new_synthetic(&mov_loop, LOAD, LOAD, 1, 1 << 20).unwrap();
    sleeper.set_spin(Duration::ZERO);
    sleeper
        .arm(&TrapPlan {
            sites: vec![site(LOAD, Direction::Enter)],
        })
        .unwrap();
    sleeper.resume().unwrap();
    const N: u32 = 2000;
    let mut rounds: Vec<[f64; 6]> = Vec::new();
    for _ in 0..15 {
        let mut r = [0f64; 6];
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(
                bare.vcpus_mut()[0].run().unwrap(),
                VcpuStop::PortOut { .. }
            ));
        }
        r[0] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(
                trap.vcpus_mut()[0].run().unwrap(),
                VcpuStop::Trap { .. }
            ));
        }
        r[1] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(
                step.vcpus_mut()[0].run().unwrap(),
                VcpuStop::Trap { .. }
            ));
        }
        r[2] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(driver.next_event().unwrap(), DriverEvent::Trap(_)));
            driver.resume().unwrap();
        }
        r[3] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(
                sleeper.next_event().unwrap(),
                DriverEvent::Trap(_)
            ));
            sleeper.resume().unwrap();
        }
        r[4] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        let t = Instant::now();
        for _ in 0..N {
            assert!(matches!(
                emul.vcpus_mut()[0].run().unwrap(),
                VcpuStop::Trap { .. }
            ));
        }
        r[5] = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        rounds.push(r);
    }
    let median = |k: usize| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut ratios: Vec<f64> = rounds.iter().map(|r| r[1] / r[0]).collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "bare exit {:.2} us, trap: out-of-line (lea) {:.2} us, emulated no-op {:.2} us, single-step {:.2} us, trap via Driver (emulated mov) {:.2} us (no spin {:.2} us); \
         trap/exit ratio per round: median {:.2}, min {:.2}",
        median(0),
        median(1),
        median(5),
        median(2),
        median(3),
        median(4),
        ratios[ratios.len() / 2],
        ratios[0]
    );
}

#[test]
fn no_op_sites_are_skipped_in_the_tracer() {
    if !kvm_usable() {
        return;
    }
    // loop: endbr64 ; inc rax ; out 0x80, al ; jmp loop   (Linux 6.12's entry starts so)
    let code = [
        0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0xff, 0xc0, 0xe6, 0x80, 0xeb, 0xf5,
    ];
    let guest = SyntheticGuest {
        code: &code,
        load_gpa: LOAD,
        entry: LOAD,
        vcpus: 1,
        memory_size: 1 << 20,
    };
    let mut vm = KvmVm::synthetic(&guest).unwrap();
    let armed = vm
        .prepare(
            &TrapPlan {
                sites: vec![site(LOAD, Direction::Enter)],
            },
            false,
        )
        .unwrap();
    assert!(matches!(
        armed.sites()[0].resume,
        Resume::Emulate {
            len: 4,
            op: emulate::Op::NoOp,
            ..
        }
    ));
    assert_eq!(
        armed.sites()[0].resume.strategy(),
        Strategy::BreakpointEmulated
    );
    let vcpu = &mut vm.vcpus_mut()[0];
    vcpu.set_port_io(Arc::new(PortLog::new(0).stop_on(0x80)));
    vcpu.arm(armed).unwrap();
    for i in 0..3u64 {
        match vcpu.run().unwrap() {
            VcpuStop::Trap { regs, .. } => assert_eq!((regs.rip, regs.rax), (LOAD, i)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            vcpu.run().unwrap(),
            VcpuStop::PortOut {
                port: 0x80,
                value: i + 1
            }
        );
    }
}

#[test]
fn dropping_a_running_driver_stops_its_threads() {
    if !kvm_usable() {
        return;
    }
    let mut d = KvmDriver::new_synthetic(&[0xeb, 0xfe], LOAD, LOAD, 2, 1 << 20).unwrap();
    d.resume().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let t = std::time::Instant::now();
    drop(d);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn misuse_is_reported_not_hung() {
    if !kvm_usable() {
        return;
    }
    let mut d = dispatcher(1);
    // Nothing is running yet: no event can come.
    assert!(matches!(
        d.next_event(),
        Err(crate::ListenerError::Unsupported(_))
    ));
    // No stopped vCPU of an event: nothing to write registers of.
    assert!(d
        .set_regs(&RegChanges {
            writes: vec![(Reg::Rax, 1)]
        })
        .is_err());
    d.resume().unwrap();
    // Arming while running is refused.
    let plan = TrapPlan {
        sites: vec![site(ENTRY_SITE, Direction::Enter)],
    };
    match d.arm(&plan) {
        Err(crate::ListenerError::Unsupported(_)) => {}
        // The guest may already have halted (it is short): then arming is fine.
        Ok(()) => {}
        Err(e) => panic!("{e}"),
    }
}

/// GS base of the emulation tests' guests (a per-CPU area, as Linux's GS base in the kernel).
const GS_BASE: u64 = 0x2_0000;

/// A one-vCPU synthetic guest whose GS base is `gs_base` and stack pointer 0x40000 (set
/// before the first run, as a kernel's `wrmsr` to IA32_GS_BASE would).
fn gs_guest(code: &[u8], gs_base: u64, memory_size: u64) -> KvmVm {
    let mut vm = KvmVm::synthetic(&SyntheticGuest {
        code,
        load_gpa: LOAD,
        entry: LOAD,
        vcpus: 1,
        memory_size,
    })
    .unwrap();
    let vcpu = &mut vm.vcpus_mut()[0];
    let mut regs = vcpu.fd().get_regs().unwrap();
    let mut sregs = vcpu.fd().get_sregs().unwrap();
    regs.rsp = 0x4_0000;
    sregs.gs.base = gs_base;
    vcpu.set_initial_state(&regs, &sregs).unwrap();
    vm
}

/// What a run shows: at each `out 0x80` stop the registers and all of guest RAM, then how it
/// ended (halt, or the error's text without the vCPU-specific part).
#[derive(Debug, PartialEq)]
struct Outcome {
    stops: Vec<(crate::Regs, Vec<u8>)>,
    end: String,
}

/// Runs `vm` to `rounds` `out` stops (or its end), stepping over traps; counts the traps and
/// checks each stopped before its site's instruction. The tracer's scratch page (out-of-line
/// copies) is left out of the memory compared.
fn observe(vm: &mut KvmVm, rounds: usize) -> (Outcome, usize) {
    let memory = Arc::clone(vm.memory());
    let scratch = vm
        .scratch()
        .map(|s| s.gpa as usize..(s.gpa + s.len) as usize);
    let vcpu = &mut vm.vcpus_mut()[0];
    vcpu.set_port_io(Arc::new(PortLog::new(0).stop_on(0x80)));
    let mut stops = Vec::new();
    let mut traps = 0;
    let end = loop {
        if stops.len() == rounds {
            break "rounds done".to_string();
        }
        match vcpu.run() {
            Ok(VcpuStop::Trap { site, regs }) => {
                assert_eq!(regs.rip, site.addr, "stopped before the instruction");
                traps += 1;
                assert!(traps < 1000, "runaway traps");
            }
            Ok(VcpuStop::PortOut { .. }) => {
                let mut ram = vec![0u8; memory.size() as usize];
                memory.read_phys(PhysAddr(0), &mut ram).unwrap();
                if let Some(r) = scratch.clone() {
                    ram[r].fill(0);
                }
                stops.push((vcpu.regs(), ram));
            }
            Ok(VcpuStop::Halted) => break "halted".to_string(),
            Ok(other) => panic!("unexpected stop {other:?}"),
            Err(e) => break format!("error: {e}").replace(" while single-stepping", ""),
        }
    };
    (Outcome { stops, end }, traps)
}

/// The first difference between two outcomes, readable.
fn first_difference(a: &Outcome, b: &Outcome) -> String {
    for (i, ((ra, ma), (rb, mb))) in a.stops.iter().zip(&b.stops).enumerate() {
        if ra != rb {
            return format!("round {i}: registers\n  {ra:?}\n  {rb:?}");
        }
        if let Some(at) = ma.iter().zip(mb).position(|(x, y)| x != y) {
            return format!(
                "round {i}: memory at {at:#x}: {:02x?} vs {:02x?}",
                &ma[at & !7..(at & !7) + 8],
                &mb[at & !7..(at & !7) + 8]
            );
        }
    }
    format!(
        "{} vs {} rounds, ends {:?} vs {:?}",
        a.stops.len(),
        b.stops.len(),
        a.end,
        b.end
    )
}

/// ```text
/// loop: mov %rsp, %gs:0x100        +0x00  store, %gs:disp32 (entry_SYSCALL_64's first store)
///       mov %gs:0x100, %rbx        +0x09  load, %gs:disp32
///       mov %rax, %rcx             +0x12  register to register
///       mov %rax, 0x18(%rbx)       +0x15  store, [base + disp]
///       mov 0x18(%rbx), %rdx       +0x19  load, [base + disp]
///       sub $8, %rsp ; inc %rax ; out %al, $0x80 ; jmp loop
/// ```
/// (assembled with GNU as, `objdump -d` checked).
const MOVS: [u8; 40] = [
    0x65, 0x48, 0x89, 0x24, 0x25, 0x00, 0x01, 0x00, 0x00, 0x65, 0x48, 0x8b, 0x1c, 0x25, 0x00, 0x01,
    0x00, 0x00, 0x48, 0x89, 0xc1, 0x48, 0x89, 0x43, 0x18, 0x48, 0x8b, 0x53, 0x18, 0x48, 0x83, 0xec,
    0x08, 0x48, 0xff, 0xc0, 0xe6, 0x80, 0xeb, 0xd8,
];

#[test]
fn emulated_movs_leave_the_state_native_execution_would() {
    if !kvm_usable() {
        return;
    }
    const ROUNDS: usize = 5;
    let mut native_vm = gs_guest(&MOVS, GS_BASE, 1 << 20);
    let (native, traps) = observe(&mut native_vm, ROUNDS);
    assert_eq!((native.stops.len(), traps), (ROUNDS, 0));
    // The loop did what it says: rbx = rsp stored through %gs, rdx = rax stored at rbx+0x18.
    let (last, ram) = native.stops.last().unwrap();
    assert_eq!(last.rbx, last.rsp + 8);
    assert_eq!(last.rdx, last.rax - 1);
    let at = |a: u64| u64::from_le_bytes(ram[a as usize..a as usize + 8].try_into().unwrap());
    assert_eq!(at(GS_BASE + 0x100), last.rbx);
    for sites in [
        &[0x00][..],
        &[0x09],
        &[0x12],
        &[0x15],
        &[0x19],
        &[0x00, 0x09, 0x12, 0x15],
    ] {
        let mut vm = gs_guest(&MOVS, GS_BASE, 1 << 20);
        let plan = TrapPlan {
            sites: sites
                .iter()
                .map(|&o| site(LOAD + o, Direction::Enter))
                .collect(),
        };
        let armed = vm
            .prepare(&plan, probe_resume_flag(KVM_PATH).unwrap())
            .unwrap();
        for s in armed.sites() {
            assert!(
                matches!(s.resume, Resume::Emulate { .. }),
                "site {:#x}: {:?}",
                s.addr,
                s.resume
            );
            assert_eq!(s.resume.strategy(), Strategy::BreakpointEmulated);
        }
        vm.vcpus_mut()[0].arm(armed).unwrap();
        let (traced, traps) = observe(&mut vm, ROUNDS);
        assert_eq!(traps, ROUNDS * sites.len(), "sites {sites:x?}");
        assert_eq!(
            vm.vcpus_mut()[0].emulation_fallbacks().0,
            0,
            "sites {sites:x?}: {:?}",
            vm.vcpus_mut()[0].emulation_fallbacks().1
        );
        assert!(
            traced == native,
            "sites {sites:x?}: {}",
            first_difference(&traced, &native)
        );
    }
}

/// Runs `code` natively and with a breakpoint on its first instruction (which must be
/// emulable); both must end alike, and the emulation must have been refused once.
fn falls_back_like_native(code: &[u8], gs_base: u64, memory_size: u64, prepare: impl Fn(&KvmVm)) {
    let mut native_vm = gs_guest(code, gs_base, memory_size);
    prepare(&native_vm);
    let (native, _) = observe(&mut native_vm, 1);
    let mut vm = gs_guest(code, gs_base, memory_size);
    prepare(&vm);
    let armed = vm
        .prepare(
            &TrapPlan {
                sites: vec![site(LOAD, Direction::Enter)],
            },
            probe_resume_flag(KVM_PATH).unwrap(),
        )
        .unwrap();
    assert!(matches!(armed.sites()[0].resume, Resume::Emulate { .. }));
    vm.vcpus_mut()[0].arm(armed).unwrap();
    let (traced, traps) = observe(&mut vm, 1);
    let (fallbacks, why) = vm.vcpus_mut()[0].emulation_fallbacks();
    eprintln!("native: {:?}; refused: {why:?}", native.end);
    assert_eq!((traps, fallbacks), (1, 1));
    assert!(traced == native, "{}", first_difference(&traced, &native));
}

#[test]
fn emulated_access_that_faults_falls_back() {
    if !kvm_usable() {
        return;
    }
    // mov %rsp, %gs:0x100 ; out %al, $0x80 ; hlt  -- with GS base in a 2 MiB page made
    // not present: native execution faults (no IDT here: a triple fault), and so must the
    // traced run, at the same place, after the tracer refused to emulate.
    let code = [
        0x65, 0x48, 0x89, 0x24, 0x25, 0x00, 0x01, 0x00, 0x00, 0xe6, 0x80, 0xf4,
    ];
    let unmap_second_2m = |vm: &KvmVm| {
        let pde = 0x4000 + 8; // the synthetic guest's PD, entry 1 (2-4 MiB)
        let v = vm.memory().read_phys_u64(PhysAddr(pde)).unwrap();
        vm.memory()
            .write_phys(
                PhysAddr(pde),
                &(v & !nitro_sys::x86::PTE_PRESENT).to_le_bytes(),
            )
            .unwrap();
    };
    falls_back_like_native(&code, 0x20_0000, 4 << 20, unmap_second_2m);
}

#[test]
fn emulated_store_crossing_into_nowhere_falls_back() {
    if !kvm_usable() {
        return;
    }
    // The same store, 8 bytes at the last 4 bytes of RAM: the page tables map what follows
    // (the identity map spans 1 GiB), but no RAM backs it. The tracer refuses; the guest
    // executes the store itself, whatever the host makes of it.
    let code = [
        0x65, 0x48, 0x89, 0x24, 0x25, 0x00, 0x01, 0x00, 0x00, 0xe6, 0x80, 0xf4,
    ];
    let size = 1u64 << 20;
    falls_back_like_native(&code, size - 4 - 0x100, size, |_| {});
}
