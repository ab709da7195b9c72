//! Layout of the legacy Nitro ABI against its published definitions (see `nitro_sys::legacy`).

use std::mem::{align_of, offset_of, size_of};

use nitro_sys::legacy::*;

#[test]
fn nitro_vcpus_layout() {
    // int num_vcpus; int ids[64]; int fds[64]  ->  4 + 256 + 256 bytes, 4-aligned.
    assert_eq!(size_of::<nitro_vcpus>(), 516);
    assert_eq!(align_of::<nitro_vcpus>(), 4);
    assert_eq!(offset_of!(nitro_vcpus, ids), 4);
    assert_eq!(offset_of!(nitro_vcpus, fds), 260);
    assert_eq!(nitro_vcpus::default().fds[63], -1);
}

#[test]
fn nitro_event_layout() {
    // bool present; enum direction; enum type; struct kvm_regs (144); struct kvm_sregs (312).
    assert_eq!(size_of::<kvm_bindings::kvm_regs>(), 144);
    assert_eq!(size_of::<kvm_bindings::kvm_sregs>(), 312);
    assert_eq!(offset_of!(nitro_event, present), 0);
    assert_eq!(offset_of!(nitro_event, direction), 4);
    assert_eq!(offset_of!(nitro_event, type_), 8);
    assert_eq!(offset_of!(nitro_event, regs), 16);
    assert_eq!(offset_of!(nitro_event, sregs), 160);
    assert_eq!(size_of::<nitro_event>(), 472);
    assert_eq!(align_of::<nitro_event>(), 8);
}

#[test]
fn request_numbers() {
    // Hand-encoded from asm-generic/ioctl.h: dir<<30 | size<<16 | 0xAE<<8 | nr.
    assert_eq!(KVM_NITRO_NUM_VMS, 0x0000_aee0);
    assert_eq!(KVM_NITRO_ATTACH_VM, 0x4004_aee1);
    assert_eq!(KVM_NITRO_ATTACH_VCPUS, 0x8204_aee2);
    assert_eq!(KVM_NITRO_SET_SYSCALL_TRAP, 0x4001_aee3);
    assert_eq!(KVM_NITRO_GET_EVENT, 0x81d8_aee5);
    assert_eq!(KVM_NITRO_CONTINUE, 0x0000_aee6);
    assert_eq!(KVM_NITRO_GET_REGS, 0x8090_aee7);
    assert_eq!(KVM_NITRO_SET_REGS, 0x4090_aee8);
    assert_eq!(KVM_NITRO_GET_SREGS, 0x8138_aee9);
    assert_eq!(KVM_NITRO_SET_SREGS, 0x4138_aeea);
    assert_eq!(KVM_NITRO_ADD_SYSCALL_FILTER, 0x8008_aeeb);
    assert_eq!(KVM_NITRO_REMOVE_SYSCALL_FILTER, 0x8008_aeec);
    // Distinct from the stock request sharing number 0xE0: KVM_CREATE_DEVICE =
    // _IOWR(KVMIO, 0xe0, struct kvm_create_device /* 12 bytes */) = 0xc00caee0.
    assert_ne!(KVM_NITRO_NUM_VMS, 0xc00c_aee0);
}
