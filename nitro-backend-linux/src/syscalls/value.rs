//! Decoded argument values: the types live in `nitro-os`, shared by every OS backend.

pub use nitro_os::{escape_into, ptr_text, Arg, ArgValue, ReturnValue};
