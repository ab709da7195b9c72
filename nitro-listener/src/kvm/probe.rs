//! Probing whether the host honours RFLAGS.RF for hardware execution breakpoints.
//!
//! On VMX/SVM hosts KVM delivers the breakpoint as a #DB intercept and the processor honours
//! RF on resume (Intel SDM 3A 17.3.1.1): the breakpoint does not fire again for the next
//! instruction. A software hypervisor may not (PVM here re-fires it). The probe runs a
//! three-instruction guest — `lea rcx, [rax+1]; out 0x80, al; hlt` — with a breakpoint on the
//! `lea`, resumes once with RF set, and looks at what comes next: the `out` (RF honoured) or
//! the same breakpoint again (ignored).

use std::{
    ops::Range,
    sync::{Arc, OnceLock},
};

use super::{
    port::PortLog,
    vm::{KvmVm, SyntheticGuest},
    KvmError, VcpuStop,
};
use crate::{Direction, SyscallKind, TrapKind, TrapPlan, TrapSite};

static PROBED: OnceLock<bool> = OnceLock::new();

/// Whether this host honours RFLAGS.RF after a hardware execution breakpoint (probed once
/// per process on the device at `path`; later calls return the first answer).
pub fn probe_resume_flag(path: &str) -> Result<bool, KvmError> {
    if let Some(&v) = PROBED.get() {
        return Ok(v);
    }
    let v = run_probe(path)?;
    Ok(*PROBED.get_or_init(|| v))
}

fn run_probe(path: &str) -> Result<bool, KvmError> {
    const AT: u64 = 0x8000;
    // Not an instruction the tracer emulates (no-ops, `mov`): those are resumed in the tracer
    // whatever the host does.
    let code = [0x48, 0x8d, 0x48, 0x01, 0xe6, 0x80, 0xf4]; // lea rcx, [rax+1]; out 0x80, al; hlt
    let guest = SyntheticGuest {
        code: &code,
        load_gpa: AT,
        entry: AT,
        vcpus: 1,
        memory_size: 1 << 20,
    };
    let mut vm = KvmVm::synthetic_at(path, &guest)?;
    let plan = TrapPlan {
        sites: vec![TrapSite {
            addr: AT,
            kind: TrapKind::Execute,
            direction: Direction::Enter,
            syscall_kind: SyscallKind::Syscall64,
            rip_ranges: vec![Range {
                start: AT,
                end: AT + 1,
            }],
        }],
    };
    let armed = vm.prepare(&plan, true)?;
    let Some(vcpu) = vm.vcpus_mut().first_mut() else {
        return Err(KvmError::Layout("probe VM has no vCPU".into()));
    };
    vcpu.set_port_io(Arc::new(PortLog::new(0).stop_on(0x80)));
    vcpu.arm(armed)?;
    match vcpu.run()? {
        VcpuStop::Trap { .. } => {}
        other => {
            return Err(KvmError::GuestCannotRun {
                vcpu: 0,
                why: format!(
                    "probe: no breakpoint exit ({other:?}): hardware breakpoints do not work here"
                ),
                rip: AT,
            })
        }
    }
    Ok(!matches!(vcpu.run()?, VcpuStop::Trap { .. }))
}
