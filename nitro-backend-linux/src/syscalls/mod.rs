//! Linux x86 syscall knowledge: built-in tables (numbers, names, prototypes, strace classes)
//! and strace-quality decoding of arguments and return values from guest memory.
//!
//! Guest memory is hostile: every read is bounded (paths by `PATH_MAX`, strings and buffers
//! by [`DecodeOptions::string_limit`], arrays by [`DecodeOptions::max_array`], anything else
//! by 1 MiB); a pointer that cannot be read is shown as its address
//! ([`ArgValue::Unreadable`]), never an error or a panic.
//!
//! ```
//! use nitro_backend_linux::syscalls::{self, DecodeOptions};
//! use nitro_mem::{MemError, VirtAddr, VirtRead};
//!
//! // A guest with nothing mapped: pointers are shown as addresses.
//! struct Empty;
//! impl VirtRead for Empty {
//!     fn read_virt(&self, va: VirtAddr, _: &mut [u8]) -> Result<(), MemError> {
//!         Err(MemError::NonCanonical(va))
//!     }
//!     fn read_cstring_prefix(&self, va: VirtAddr, _: usize) -> Result<(Vec<u8>, bool), MemError> {
//!         Err(MemError::NonCanonical(va))
//!     }
//! }
//!
//! let info = syscalls::table::x86_64(257).unwrap();
//! let raw = [(-100i64) as u64, 0x7000, 0o2000000, 0, 0, 0];
//! let args = syscalls::decode_enter(info, &raw, &Empty, &DecodeOptions::default());
//! let ret = syscalls::format_return(info, -2);
//! assert_eq!(
//!     syscalls::render_call(info.name, &args, Some(&ret)),
//!     "openat(AT_FDCWD, 0x7000, O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)"
//! );
//! ```

mod consts;
mod decode;
mod errno;
mod guest;
mod kind;
mod shape;
mod structs;
pub mod table;
mod value;

#[cfg(test)]
mod testmem;
#[cfg(test)]
mod tests;
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests_real;
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests_ptrace;

pub use decode::{decode_enter, decode_exit, futex_op, ioctl_request, open_flags, DecodeOptions};
pub use errno::{errno_from_name, errno_message, errno_name, is_restart_code};
pub use kind::ArgKind;
pub use structs::{mode, signal_name, sigset, wait_status};
pub use table::{ArgSpec, Classes, RetKind, SyscallInfo};
pub use value::{escape_into, ptr_text, Arg, ArgValue};

use serde::Serialize;

/// A return value as strace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnValue {
    /// The raw value (negative errno on failure).
    pub value: i64,
    /// The errno name on failure (`ENOENT`).
    pub errno: Option<&'static str>,
    /// strace's text: `3`, `-1 ENOENT (No such file or directory)`, `0x7f12a000`,
    /// `? ERESTARTSYS (To be restarted if SA_RESTART is set)`.
    pub text: String,
}

/// Formats a return value for `info` (errno name and message on failure, hex for
/// address-returning calls, octal for `umask`). `ret` is the kernel's `rax`; for i386
/// processes pass the zero- or sign-extended `eax` (addresses above 2 GiB should be
/// zero-extended so they are not taken for errors).
pub fn format_return(info: &SyscallInfo, ret: i64) -> ReturnValue {
    if info.ret == RetKind::NoReturn {
        return ReturnValue { value: ret, errno: None, text: "?".into() };
    }
    if (-4095..0).contains(&ret) {
        let n = ret.unsigned_abs();
        let name = errno_name(n);
        let msg = errno_message(n);
        let text = match name {
            Some(e) if is_restart_code(n) => format!("? {e} ({msg})"),
            Some(e) => format!("-1 {e} ({msg})"),
            None => format!("-1 ({msg})"),
        };
        return ReturnValue { value: ret, errno: name, text };
    }
    let text = match info.ret {
        RetKind::Addr | RetKind::Hex => {
            if ret == 0 {
                "0".to_string()
            } else {
                format!("{:#x}", ret as u64)
            }
        }
        RetKind::Octal => structs::octal(ret as u64),
        _ => ret.to_string(),
    };
    ReturnValue { value: ret, errno: None, text }
}

/// strace's names for clone's arguments, in the order it prints them.
const CLONE_NAMES: [(&str, &str); 5] = [
    ("newsp", "child_stack"),
    ("clone_flags", "flags"),
    ("parent_tidptr", "parent_tid"),
    ("child_tidptr", "child_tidptr"),
    ("tls", "tls"),
];

/// One strace-like line: `name(arg, arg) = ret`; without a return value (the call never
/// returned) the line ends in ` = ?` as strace shows `exit_group`.
pub fn render_call(name: &str, args: &[Arg], ret: Option<&ReturnValue>) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(name);
    out.push('(');
    if name == "clone" {
        let mut first = true;
        for (arg_name, shown) in CLONE_NAMES {
            if let Some(a) = args.iter().find(|a| a.name == arg_name) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push_str(shown);
                out.push('=');
                a.value.render_text(&mut out);
            }
        }
    } else {
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            a.value.render_text(&mut out);
        }
    }
    out.push_str(") = ");
    match ret {
        Some(r) => out.push_str(&r.text),
        None => out.push('?'),
    }
    out
}
