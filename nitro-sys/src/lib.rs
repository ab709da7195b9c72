//! Raw FFI for nitro: the parts of the KVM and x86 ABI that `kvm-bindings` does not carry.
//!
//! * [`x86`]: architectural bit layouts the in-process KVM driver programs directly: debug
//!   registers DR6/DR7, RFLAGS, control registers, EFER, page-table entries, segment
//!   descriptors (Intel SDM volume 3A). `kvm-bindings` has the KVM structures
//!   (`kvm_guest_debug`, `kvm_sync_regs`, `KVM_GUESTDBG_*`, `KVM_SYNC_X86_*`) but none of
//!   these bits.
//! * [`ioctl`]: the Linux ioctl request-number encoding (`_IO`, `_IOR`, `_IOW`, `_IOWR`).
//! * [`legacy`]: the ioctl ABI of the original Nitro project for KVM-VMI (a patched KVM that
//!   reports system calls itself). **It needs Nitro's patched kernel**; a stock kernel answers
//!   these requests with `ENOTTY`. No driver in nitro uses it yet: the layouts are here, with
//!   tests against their published sizes, so that one can be written when such a kernel can be
//!   tested.
//!
//! This crate holds data and layouts only; it has no logic and performs no system calls.
#![deny(missing_docs, missing_debug_implementations)]

pub mod ioctl;
pub mod legacy;
pub mod x86;
