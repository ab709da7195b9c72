//! Plain little-endian values that can be decoded from guest bytes.

use crate::{PhysAddr, VirtAddr};

/// A value decodable from exactly [`SIZE`](FromBytes::SIZE) little-endian bytes (x86 guests
/// are little-endian). Implemented for the integer types, the address newtypes and arrays of
/// them; implement it for a guest struct to read it with
/// [`VirtReadExt::read_obj`](crate::VirtReadExt::read_obj).
pub trait FromBytes: Sized {
    /// Number of bytes the value occupies in guest memory.
    const SIZE: usize;

    /// Decodes the value; `None` when `bytes.len() != SIZE`.
    fn from_le_slice(bytes: &[u8]) -> Option<Self>;
}

macro_rules! int_from_bytes {
    ($($t:ty),*) => {$(
        impl FromBytes for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn from_le_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(<$t>::from_le_bytes)
            }
        }
    )*};
}
int_from_bytes!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128);

impl FromBytes for VirtAddr {
    const SIZE: usize = 8;
    fn from_le_slice(bytes: &[u8]) -> Option<Self> {
        u64::from_le_slice(bytes).map(VirtAddr)
    }
}

impl FromBytes for PhysAddr {
    const SIZE: usize = 8;
    fn from_le_slice(bytes: &[u8]) -> Option<Self> {
        u64::from_le_slice(bytes).map(PhysAddr)
    }
}

impl<T: FromBytes + Copy + Default, const N: usize> FromBytes for [T; N] {
    const SIZE: usize = T::SIZE * N;
    fn from_le_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        let mut out = [T::default(); N];
        if T::SIZE == 0 {
            return Some(out);
        }
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(T::SIZE)) {
            *o = T::from_le_slice(c)?;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_little_endian_and_checks_length() {
        assert_eq!(u32::from_le_slice(&[1, 2, 3, 4]), Some(0x0403_0201));
        assert_eq!(u32::from_le_slice(&[1, 2, 3]), None);
        assert_eq!(
            <[u16; 3]>::from_le_slice(&[1, 0, 2, 0, 0xff, 0xff]),
            Some([1, 2, 0xffff])
        );
        assert_eq!(<[u16; 3]>::from_le_slice(&[1, 0, 2, 0]), None);
        assert_eq!(<[[u8; 2]; 2]>::SIZE, 4);
        assert_eq!(
            VirtAddr::from_le_slice(&0xffff_8880u64.to_le_bytes()),
            Some(VirtAddr(0xffff_8880))
        );
    }
}
