//! Cost of one trap on the in-process KVM driver against the physical floor, a bare VM exit.
//!
//! Group `kvm`:
//! * `bare_exit`: the guest loops on `out 0x80, al; jmp`; one iteration is one `KVM_RUN`
//!   returning to userspace on the `out` and re-entering.
//! * `hw_breakpoint_trap`: the guest loops on `mov %rsp, %gs:0x100; jmp` (GS base set up
//!   as a kernel's per-CPU base) with a hardware execution breakpoint on the `mov`: the first
//!   store of Linux's `entry_SYSCALL_64` after `swapgs` (`mov %rsp, %gs:cpu_tss_rw+TSS_sp2`).
//!   One iteration is one breakpoint exit with the registers handed to the handler (from
//!   `sync_regs`: no ioctl) and the resume past the breakpoint: the tracer emulates the store
//!   (page walk from the synced CR3 and GS base, write into guest RAM, RIP advanced in
//!   `sync_regs`): no extra exit, no ioctl, no extra guest instruction.
//! * `hw_breakpoint_trap_out_of_line`: the same with the breakpoint on an instruction the
//!   tracer does not emulate (`lea rcx, [rax+1]`): RFLAGS.RF where honoured, else the
//!   out-of-line copy of the `lea` (what every non-emulable site costs).
//! * `hw_breakpoint_trap_emulated`: the same with the breakpoint on an `endbr64` (how Linux
//!   6.12's `entry_SYSCALL_64` starts), which the tracer skips by advancing RIP.
//! * `driver_trap`: a trap on `mov rcx, rax` (emulated register move) through
//!   [`nitro_listener::Driver`] (`next_event` + `resume`): adds the hand-off between the vCPU
//!   thread and the caller's thread.
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
use nitro_mem::{PhysAddr, PhysMemory};

const LOAD: u64 = 0x10000;
/// loop: out 0x80, al ; jmp loop
const OUT_LOOP: [u8; 4] = [0xe6, 0x80, 0xeb, 0xfc];
/// loop: mov rcx, rax ; jmp loop
const MOV_LOOP: [u8; 5] = [0x48, 0x89, 0xc1, 0xeb, 0xfb];
/// loop: mov %rsp, %gs:0x100 ; jmp loop
const GS_STORE_LOOP: [u8; 11] = [
    0x65, 0x48, 0x89, 0x24, 0x25, 0x00, 0x01, 0x00, 0x00, 0xeb, 0xf5,
];
/// loop: lea rcx, [rax+1] ; jmp loop
const LEA_LOOP: [u8; 6] = [0x48, 0x8d, 0x48, 0x01, 0xeb, 0xfa];
/// GS base of the `GS_STORE_LOOP` guest (inside its RAM).
const GS_BASE: u64 = 0x2_0000;
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

    let mut bp_vm = KvmVm::synthetic(&guest(&GS_STORE_LOOP)).expect("breakpoint guest");
    {
        // GS base as a kernel's per-CPU base (set before the first run).
        let vcpu = &mut bp_vm.vcpus_mut()[0];
        let regs = vcpu.fd().get_regs().expect("regs");
        let mut sregs = vcpu.fd().get_sregs().expect("sregs");
        sregs.gs.base = GS_BASE;
        vcpu.set_initial_state(&regs, &sregs).expect("GS base");
    }
    let armed = bp_vm.prepare(&plan(), rf).expect("plan");
    let strategy = armed.sites()[0].resume.strategy();
    let bp_vcpu = &mut bp_vm.vcpus_mut()[0];
    bp_vcpu.arm(armed).expect("arm");
    eprintln!("trap_latency: resume strategy on mov %rsp, %gs:0x100: {strategy:?}");
    group.bench_function("hw_breakpoint_trap", |b| {
        b.iter(|| match bp_vcpu.run() {
            Ok(VcpuStop::Trap { regs, .. }) => black_box(regs.rsp ^ regs.rip),
            other => panic!("unexpected stop {other:?}"),
        })
    });
    let (fallbacks, why) = bp_vcpu.emulation_fallbacks();
    assert_eq!(fallbacks, 0, "emulation refused: {why:?}");
    let stored = bp_vm
        .memory()
        .read_phys_u64(PhysAddr(GS_BASE + 0x100))
        .expect("read");
    assert_eq!(
        stored,
        bp_vm.vcpus_mut()[0].regs().rsp,
        "the emulated store reached guest RAM"
    );

    let mut ool_vm = KvmVm::synthetic(&guest(&LEA_LOOP)).expect("lea guest");
    let armed = ool_vm.prepare(&plan(), rf).expect("plan");
    let strategy = armed.sites()[0].resume.strategy();
    let ool_vcpu = &mut ool_vm.vcpus_mut()[0];
    ool_vcpu.arm(armed).expect("arm");
    eprintln!("trap_latency: resume strategy on lea rcx, [rax+1]: {strategy:?}");
    group.bench_function("hw_breakpoint_trap_out_of_line", |b| {
        b.iter(|| match ool_vcpu.run() {
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
