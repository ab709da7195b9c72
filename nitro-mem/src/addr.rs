//! Address newtypes: a virtual address can never be passed where a physical one is expected.

use std::fmt;

/// A guest physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A guest virtual (linear) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub u64);

macro_rules! addr_impls {
    ($t:ident) => {
        impl $t {
            /// The address plus `off`, wrapping on overflow (guest values may be anything).
            // Not `ops::Add`: the wrapping is deliberate and should be visible at call sites.
            #[allow(clippy::should_implement_trait)]
            pub fn add(self, off: u64) -> Self {
                $t(self.0.wrapping_add(off))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($t), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}
addr_impls!(PhysAddr);
addr_impls!(VirtAddr);
