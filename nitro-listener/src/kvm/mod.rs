//! The `kvm` driver: nitro runs the VM itself on KVM (kvm-ioctls, vm-memory) and catches
//! system calls with hardware execution breakpoints.
//!
//! The fast path is one VM exit per trap and no extra ioctl: the breakpoint exits
//! `KVM_RUN` with `KVM_EXIT_DEBUG`, the registers are already in the shared `kvm_run` page
//! (`KVM_CAP_SYNC_REGS`), a hook's register changes go back the same way, and the vCPU
//! resumes past the breakpoint with RFLAGS.RF (VMX/SVM) or, where the host ignores RF, by
//! running a copy of the trapped instruction out of line (see [`plan`]).
//!
//! # Cost of a trap (measured on the development machine, PVM, 2 shared cores)
//!
//! `cargo bench -p nitro-benches --bench trap_latency` (group `kvm`), all in one run, medians;
//! the machine was shared with other builds, so absolute figures drift by up to 2x between
//! runs while the ratios hold:
//!
//! | function | time | / bare exit |
//! |---|---|---|
//! | `bare_exit` (`out` exit round trip) | 8.05 us | 1 |
//! | `hw_breakpoint_trap` (out-of-line resume, registers read) | 12.19 us | 1.51 |
//! | `hw_breakpoint_trap_emulated` (breakpoint on `endbr64`, skipped) | 9.58 us | 1.19 |
//! | `driver_trap` (same trap through `Driver::next_event` + `resume`) | 17.55 us | 2.18 |
//!
//! An interleaved run (`kvm::tests::trap_to_exit_ratio`, ignored by default) on a quieter
//! machine: bare exit 5.53 us, out-of-line trap 8.71 us (1.58x), single-step 15.35 us (2.8x),
//! through the driver 9.57 us.
//!
//! Why not 1.0 here: the host (PVM, a software hypervisor) ignores RFLAGS.RF, so the
//! breakpoint would fire again on resume. Out-of-line resume costs no second exit, but the
//! copy and its jump back are extra ring-0 instructions, which PVM emulates at about 0.8 us
//! each, on a page the emulator has to fetch from anew. When the trapped instruction is a
//! no-op (Linux 6.12 starts `entry_SYSCALL_64` with `endbr64`), the tracer skips it and the
//! trap costs 1.1-1.2 bare exits. On VMX/SVM hosts RF is honoured (the probe detects it):
//! the resume is a flag bit in the `sync_regs` page, the guest re-executes the instruction
//! natively, and a trap is one exit with the registers already in userspace: the cost of a
//! bare exit. `driver_trap` adds two thread hand-offs (the vCPU thread to the caller and
//! back); both sides poll briefly (yielding) before they sleep, see [`KvmDriver::set_spin`].
//!
//! What runs where:
//! * Synthetic ring-0 guests ([`KvmDriver::new_synthetic`]) run on any KVM host, including
//!   the PVM software hypervisor of the development machines (tested there).
//! * Real Linux guests need a bzImage loader with a serial console; that is not written yet,
//!   because no stock kernel boots under PVM and it could not be tested. On VMX/SVM hosts it
//!   is the next step; nothing in CI claims it.
//!
//! Errors: [`KvmError`] says which of "no /dev/kvm", "permission denied", "capability
//! missing", "the host cannot run this guest" happened, and converts into
//! [`crate::ListenerError`].

mod driver;
mod error;
mod memory;
pub mod plan;
mod port;
mod probe;
mod vcpu;
pub mod vm;

pub use driver::KvmDriver;
pub use error::KvmError;
pub use memory::GuestRam;
pub use plan::{ArmedPlan, ArmedSite, Resume, Scratch};
pub use port::{NoPorts, PortAction, PortIo, PortLog, PortWrite};
pub use probe::probe_resume_flag;
pub use vcpu::{to_regs, KvmVcpu, VcpuKicker, VcpuStop};
pub use vm::{open_kvm, KvmVm, SyntheticGuest, KVM_PATH};

#[cfg(test)]
mod tests;
