//! Linux ioctl request numbers.
//!
//! Source: Linux `include/uapi/asm-generic/ioctl.h` (x86 uses the generic layout): bits 0-7
//! number, 8-15 type, 16-29 argument size, 30-31 direction (`_IOC_NONE` 0, `_IOC_WRITE` 1,
//! `_IOC_READ` 2).

/// No data transfer.
pub const IOC_NONE: u32 = 0;
/// Userspace writes (the kernel reads the argument).
pub const IOC_WRITE: u32 = 1;
/// Userspace reads (the kernel writes the argument).
pub const IOC_READ: u32 = 2;

const NRSHIFT: u32 = 0;
const TYPESHIFT: u32 = 8;
const SIZESHIFT: u32 = 16;
const DIRSHIFT: u32 = 30;
/// Largest argument size the 14-bit size field holds.
pub const IOC_SIZE_MAX: usize = (1 << 14) - 1;

/// `_IOC(dir, type, nr, size)`. A `size` above [`IOC_SIZE_MAX`] fails const evaluation.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(
        size <= IOC_SIZE_MAX,
        "ioctl argument too large for the size field"
    );
    (dir << DIRSHIFT) | (ty << TYPESHIFT) | (nr << NRSHIFT) | ((size as u32) << SIZESHIFT)
}

/// `_IO(type, nr)`.
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// `_IOR(type, nr, T)` with `size = size_of::<T>()`.
pub const fn ior(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}

/// `_IOW(type, nr, T)` with `size = size_of::<T>()`.
pub const fn iow(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}

/// `_IOWR(type, nr, T)` with `size = size_of::<T>()`.
pub const fn iowr(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// KVM's ioctl type, `KVMIO` (Linux `include/uapi/linux/kvm.h`).
pub const KVMIO: u32 = 0xAE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_kvm_requests() {
        // Values from Linux include/uapi/linux/kvm.h as compiled on x86-64:
        // KVM_RUN = _IO(KVMIO, 0x80) = 0xae80,
        // KVM_GET_REGS = _IOR(KVMIO, 0x81, struct kvm_regs /* 144 bytes */) = 0x8090ae81,
        // KVM_SET_GUEST_DEBUG = _IOW(KVMIO, 0x9b, struct kvm_guest_debug /* 72 */) = 0x4048ae9b.
        assert_eq!(io(KVMIO, 0x80), 0xae80);
        assert_eq!(ior(KVMIO, 0x81, 144), 0x8090_ae81);
        assert_eq!(iow(KVMIO, 0x9b, 72), 0x4048_ae9b);
        assert_eq!(iowr(KVMIO, 0x05, 8), 0xc008_ae05);
    }
}
