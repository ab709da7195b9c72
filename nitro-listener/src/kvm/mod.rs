//! The `kvm` driver: nitro runs the VM itself on KVM (kvm-ioctls, vm-memory) and catches
//! system calls with hardware execution breakpoints.
//!
//! The fast path is one VM exit per trap and no extra ioctl: the breakpoint exits
//! `KVM_RUN` with `KVM_EXIT_DEBUG`, the registers are already in the shared `kvm_run` page
//! (`KVM_CAP_SYNC_REGS`), a hook's register changes go back the same way, and the vCPU
//! resumes past the breakpoint with RFLAGS.RF (VMX/SVM) or, where the host ignores RF, by
//! running a copy of the trapped instruction out of line (see [`plan`]).
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
pub use port::{NoPorts, PortIo, PortLog, PortWrite};
pub use probe::probe_resume_flag;
pub use vcpu::{to_regs, KvmVcpu, VcpuKicker, VcpuStop};
pub use vm::{open_kvm, KvmVm, SyntheticGuest, KVM_PATH};

#[cfg(test)]
mod tests;
