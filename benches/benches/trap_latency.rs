//! Cost of one trap on the in-process KVM driver against the physical floor, a bare VM exit.
//!
//! Group `kvm`:
//! * `bare_exit`: the guest loops on `out 0x80, al; jmp`; one iteration is one `KVM_RUN`
//!   returning to userspace on the `out` and re-entering.
//! * `hw_breakpoint_trap`: the guest loops on `mov rcx, rax; jmp` with a hardware execution
//!   breakpoint on the `mov`; one iteration is one breakpoint exit with the registers handed
//!   to the handler (from `sync_regs`: no ioctl) and the resume past the breakpoint (RFLAGS.RF
//!   where honoured, else the out-of-line copy of the `mov`).
//! * `hw_breakpoint_trap_emulated`: the same with the breakpoint on an `endbr64` (how Linux
//!   6.12's `entry_SYSCALL_64` starts), which the tracer skips by advancing RIP.
//! * `driver_trap`: the same trap through [`nitro_listener::Driver`] (`next_event` +
//!   `resume`): adds the hand-off between the vCPU thread and the caller's thread.
//!
//! Skips (printing why) when /dev/kvm is absent or unusable.

use std::{hint::black_box, sync::Arc};

use criterion::{criterion_group, Criterion};
use nitro_listener::{
    kvm::{
        open_kvm, probe_resume_flag, KvmDriver, KvmVm, PortLog, SyntheticGuest, VcpuStop, KVM_PATH,
    },
    Direction, Driver, DriverEvent, SyscallKind, TrapKind, TrapPlan, TrapSite,
};

const LOAD: u64 = 0x10000;
/// loop: out 0x80, al ; jmp loop
const OUT_LOOP: [u8; 4] = [0xe6, 0x80, 0xeb, 0xfc];
/// loop: mov rcx, rax ; jmp loop
const MOV_LOOP: [u8; 5] = [0x48, 0x89, 0xc1, 0xeb, 0xfb];
/// loop: endbr64 ; jmp loop
const ENDBR_LOOP: [u8; 6] = [0xf3, 0x0f, 0x1e, 0xfa, 0xeb, 0xfa];

fn plan() -> TrapPlan {
    TrapPlan {
        sites: vec![TrapSite {
            addr: LOAD,
            kind: TrapKind::Execute,
            direction: Direction::Enter,
            syscall_kind: SyscallKind::Syscall64,
            rip_ranges: vec![std::ops::Range {
                start: LOAD,
                end: LOAD + 1,
            }],
        }],
    }
}

fn guest(code: &[u8]) -> SyntheticGuest<'_> {
    SyntheticGuest {
        code,
        load_gpa: LOAD,
        entry: LOAD,
        vcpus: 1,
        memory_size: 1 << 20,
    }
}

fn kvm(c: &mut Criterion) {
    let rf = match open_kvm(KVM_PATH).and_then(|_| probe_resume_flag(KVM_PATH)) {
        Ok(rf) => rf,
        Err(e) => {
            eprintln!("trap_latency: skipping the kvm group: {e}");
            return;
        }
    };
    eprintln!("trap_latency: RFLAGS.RF honoured by this host: {rf}");
    let mut group = c.benchmark_group("kvm");

    let mut out_vm = KvmVm::synthetic(&guest(&OUT_LOOP)).expect("out-loop guest");
    let out_vcpu = &mut out_vm.vcpus_mut()[0];
    out_vcpu.set_port_io(Arc::new(PortLog::new(0).stop_on(0x80)));
    group.bench_function("bare_exit", |b| {
        b.iter(|| match out_vcpu.run() {
            Ok(VcpuStop::PortOut { port, .. }) => black_box(port),
            other => panic!("unexpected stop {other:?}"),
        })
    });

    let mut bp_vm = KvmVm::synthetic(&guest(&MOV_LOOP)).expect("breakpoint guest");
    let armed = bp_vm.prepare(&plan(), rf).expect("plan");
    let strategy = armed.sites()[0].resume.strategy();
    let bp_vcpu = &mut bp_vm.vcpus_mut()[0];
    bp_vcpu.arm(armed).expect("arm");
    eprintln!("trap_latency: breakpoint resume strategy: {strategy:?}");
    group.bench_function("hw_breakpoint_trap", |b| {
        b.iter(|| match bp_vcpu.run() {
            Ok(VcpuStop::Trap { regs, .. }) => black_box(regs.rax ^ regs.rip),
            other => panic!("unexpected stop {other:?}"),
        })
    });

    let mut nop_vm = KvmVm::synthetic(&guest(&ENDBR_LOOP)).expect("endbr64 guest");
    let armed = nop_vm.prepare(&plan(), rf).expect("plan");
    let nop_vcpu = &mut nop_vm.vcpus_mut()[0];
    nop_vcpu.arm(armed).expect("arm");
    group.bench_function("hw_breakpoint_trap_emulated", |b| {
        b.iter(|| match nop_vcpu.run() {
            Ok(VcpuStop::Trap { regs, .. }) => black_box(regs.rax ^ regs.rip),
            other => panic!("unexpected stop {other:?}"),
        })
    });

    let mut driver = KvmDriver::new_synthetic(&MOV_LOOP, LOAD, LOAD, 1, 1 << 20).expect("driver");
    driver.arm(&plan()).expect("arm");
    driver.resume().expect("resume");
    group.bench_function("driver_trap", |b| {
        b.iter(|| {
            match driver.next_event() {
                Ok(DriverEvent::Trap(e)) => {
                    black_box(e.regs.rax);
                }
                other => panic!("unexpected event {other:?}"),
            }
            driver.resume().expect("resume");
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = kvm
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
