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
mod tests_ptrace;
#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests_real;

pub use decode::{decode_enter, decode_exit, futex_op, ioctl_request, open_flags, DecodeOptions};
pub use errno::{errno_from_name, errno_message, errno_name, is_restart_code};
pub use kind::ArgKind;
pub use structs::{mode, signal_name, sigset, wait_status};
pub use table::{ArgSpec, Classes, RetKind, SyscallInfo};
pub use value::{escape_into, ptr_text, Arg, ArgValue, ReturnValue};

/// Formats a return value for `info` (errno name and message on failure, hex for
/// address-returning calls, octal for `umask`). `ret` is the kernel's `rax`; for i386
/// processes pass the zero- or sign-extended `eax` (addresses above 2 GiB should be
/// zero-extended so they are not taken for errors).
pub fn format_return(info: &SyscallInfo, ret: i64) -> ReturnValue {
    if info.ret == RetKind::NoReturn {
        return ReturnValue {
            value: ret,
            errno: None,
            text: "?".into(),
        };
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
        return ReturnValue {
            value: ret,
            errno: name,
            text,
        };
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
    ReturnValue {
        value: ret,
        errno: None,
        text,
    }
}

/// [`format_return`] plus the notes strace adds from the arguments and memory:
/// `fcntl(3, F_GETFL) = 0x8002 (flags O_RDWR|O_LARGEFILE)`, `F_GETFD` -> `0x1 (flags
/// FD_CLOEXEC)`, `poll(...) = 1 ([{fd=5, revents=POLLOUT}])` and `= 0 (Timeout)`.
/// Call it at the exit, while the arguments' memory is still the call's.
pub fn format_return_full(
    info: &SyscallInfo,
    raw: &[u64; 6],
    ret: i64,
    mem: &dyn nitro_mem::VirtRead,
    opts: &DecodeOptions,
) -> ReturnValue {
    let mut r = format_return(info, ret);
    if r.errno.is_some() || ret < 0 {
        return r;
    }
    let cmd = raw[1] & 0xffff_ffff;
    match info.name {
        "fcntl" | "fcntl64" if cmd == 1 && ret != 0 => {
            r.text = format!(
                "{ret:#x} (flags {})",
                consts::flags(ret as u64, consts::FD_FLAGS, "0")
            );
        }
        "fcntl" | "fcntl64" if cmd == 3 => {
            let hex = if ret == 0 {
                "0".to_string()
            } else {
                format!("{ret:#x}")
            };
            r.text = format!("{hex} (flags {})", open_flags(ret as u64));
        }
        "poll" if ret == 0 => r.text = "0 (Timeout)".into(),
        "poll" => {
            let g = guest::Guest {
                mem,
                compat: opts.compat,
            };
            let n = (raw[1] & 0xffff_ffff).min(opts.max_array as u64);
            let mut parts = Vec::new();
            for i in 0..n {
                let at = raw[0].wrapping_add(i * 8);
                let (Some(fd), Some(ev)) = (g.i32(at), g.u32(at.wrapping_add(4))) else {
                    break;
                };
                let rev = u64::from(ev >> 16);
                if rev != 0 {
                    parts.push(format!(
                        "{{fd={fd}, revents={}}}",
                        consts::flags(rev, consts::POLL_EVENTS, "0")
                    ));
                }
            }
            if !parts.is_empty() {
                r.text = format!("{ret} ([{}])", parts.join(", "));
            }
        }
        _ => {}
    }
    r
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
