//! The legacy Nitro KVM ioctl ABI (Nitro for KVM-VMI: a patched KVM that traps system calls
//! itself and reports them as events).
//!
//! **Needs Nitro's patched kernel.** A stock kernel does not know these requests and fails
//! them with `ENOTTY` (`0xE0` even collides in number space with `KVM_CREATE_DEVICE`, which
//! differs in direction and size, so the request numbers stay distinct). No driver in nitro
//! issues them: nitro's own `kvm` driver gets the same events from hardware breakpoints on a
//! stock kernel. The layouts are kept, with tests against the published sizes, for a future
//! driver on such a kernel.
//!
//! Sources (the ABI is defined by these files; nothing here is copied from them):
//! * `include/linux/nitro.h` of the KVM-VMI/kvm kernel tree (commit 19e4dd42830f): the
//!   structures, event codes and requests `0xE0`-`0xEA`;
//! * `nitro/kvm.py` of KVM-VMI/nitro (the userspace side, ctypes mirror of the same
//!   structures): `KVM_NITRO_ADD_SYSCALL_FILTER = IOR(KVMIO, 0xEB, c_ulonglong)` and
//!   `KVM_NITRO_REMOVE_SYSCALL_FILTER = IOR(KVMIO, 0xEC, c_ulonglong)`, which the kernel
//!   header of that commit does not list yet.
//!
//! A later fork (`include/uapi/linux/nitro.h` in pvmi-linux) extended `struct event` with
//! `nr`, `args[6]` and `ret`; that layout is different and is not the one described here.
#![allow(non_camel_case_types)]

use std::os::raw::c_int;

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::ioctl::{io, ior, iow, KVMIO};

/// Most vCPUs one `KVM_NITRO_ATTACH_VCPUS` reports.
pub const NITRO_MAX_VCPUS: usize = 64;

/// `struct nitro_vcpus`: filled by `KVM_NITRO_ATTACH_VCPUS` with one fd per vCPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct nitro_vcpus {
    /// Number of valid entries in `ids` and `fds`.
    pub num_vcpus: c_int,
    /// vCPU ids.
    pub ids: [c_int; NITRO_MAX_VCPUS],
    /// A new file descriptor for each vCPU (the target of the vCPU requests below).
    pub fds: [c_int; NITRO_MAX_VCPUS],
}

impl Default for nitro_vcpus {
    fn default() -> Self {
        nitro_vcpus {
            num_vcpus: 0,
            ids: [0; NITRO_MAX_VCPUS],
            fds: [-1; NITRO_MAX_VCPUS],
        }
    }
}

/// `enum syscall_direction`: `ENTER`.
pub const NITRO_DIRECTION_ENTER: u32 = 0;
/// `enum syscall_direction`: `EXIT`.
pub const NITRO_DIRECTION_EXIT: u32 = 1;
/// `enum syscall_type`: `SYSENTER`.
pub const NITRO_TYPE_SYSENTER: u32 = 0;
/// `enum syscall_type`: `SYSCALL`.
pub const NITRO_TYPE_SYSCALL: u32 = 1;

/// `KVM_NITRO_EVENT_ERROR`.
pub const KVM_NITRO_EVENT_ERROR: u32 = 1;
/// `KVM_NITRO_EVENT_SYSCALL`.
pub const KVM_NITRO_EVENT_SYSCALL: u32 = 2;
/// `KVM_NITRO_EVENT_SYSRET`.
pub const KVM_NITRO_EVENT_SYSRET: u32 = 3;

/// `struct event`: what `KVM_NITRO_GET_EVENT` returns. C `bool` is one byte, the enums are
/// `int`-sized (x86-64 SysV ABI).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct nitro_event {
    /// Nonzero when an event is present.
    pub present: u8,
    /// [`NITRO_DIRECTION_ENTER`] or [`NITRO_DIRECTION_EXIT`].
    pub direction: u32,
    /// [`NITRO_TYPE_SYSENTER`] or [`NITRO_TYPE_SYSCALL`].
    pub type_: u32,
    /// General registers at the event.
    pub regs: kvm_regs,
    /// Special registers at the event.
    pub sregs: kvm_sregs,
}

/// System ioctl: number of VMs (`_IO(KVMIO, 0xE0)`).
pub const KVM_NITRO_NUM_VMS: u32 = io(KVMIO, 0xE0);
/// System ioctl: attach to the VM created by a process; argument `pid_t` (4 bytes); returns a
/// VM fd.
pub const KVM_NITRO_ATTACH_VM: u32 = iow(KVMIO, 0xE1, std::mem::size_of::<i32>());
/// VM ioctl: fill a [`nitro_vcpus`].
pub const KVM_NITRO_ATTACH_VCPUS: u32 = ior(KVMIO, 0xE2, std::mem::size_of::<nitro_vcpus>());
/// VM ioctl: enable or disable the system-call trap; argument C `bool` (1 byte).
pub const KVM_NITRO_SET_SYSCALL_TRAP: u32 = iow(KVMIO, 0xE3, 1);
/// vCPU ioctl: wait for and return the next [`nitro_event`].
pub const KVM_NITRO_GET_EVENT: u32 = ior(KVMIO, 0xE5, std::mem::size_of::<nitro_event>());
/// vCPU ioctl: let the vCPU continue after an event.
pub const KVM_NITRO_CONTINUE: u32 = io(KVMIO, 0xE6);
/// vCPU ioctl: read `kvm_regs` of a vCPU stopped at an event.
pub const KVM_NITRO_GET_REGS: u32 = ior(KVMIO, 0xE7, std::mem::size_of::<kvm_regs>());
/// vCPU ioctl: write `kvm_regs`.
pub const KVM_NITRO_SET_REGS: u32 = iow(KVMIO, 0xE8, std::mem::size_of::<kvm_regs>());
/// vCPU ioctl: read `kvm_sregs`.
pub const KVM_NITRO_GET_SREGS: u32 = ior(KVMIO, 0xE9, std::mem::size_of::<kvm_sregs>());
/// vCPU ioctl: write `kvm_sregs`.
pub const KVM_NITRO_SET_SREGS: u32 = iow(KVMIO, 0xEA, std::mem::size_of::<kvm_sregs>());
/// VM ioctl: trap only the listed system-call numbers; argument a `u64` number (encoded
/// `_IOR` by the userspace library).
pub const KVM_NITRO_ADD_SYSCALL_FILTER: u32 = ior(KVMIO, 0xEB, std::mem::size_of::<u64>());
/// VM ioctl: remove a number added by [`KVM_NITRO_ADD_SYSCALL_FILTER`].
pub const KVM_NITRO_REMOVE_SYSCALL_FILTER: u32 = ior(KVMIO, 0xEC, std::mem::size_of::<u64>());
