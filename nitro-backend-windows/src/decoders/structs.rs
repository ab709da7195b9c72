//! Decoders of the structures NT calls take by pointer (x64 layouts, ntdef.h / wdm.h):
//! `UNICODE_STRING` {u16 Length, u16 MaximumLength, PWSTR Buffer @8}; `OBJECT_ATTRIBUTES`
//! {u32 Length, HANDLE RootDirectory @8, PUNICODE_STRING ObjectName @0x10, u32 Attributes
//! @0x18, SecurityDescriptor @0x20, SecurityQualityOfService @0x28}; `CLIENT_ID` {HANDLE
//! UniqueProcess, HANDLE UniqueThread}; `LARGE_INTEGER` (i64); `IO_STATUS_BLOCK` {NTSTATUS
//! Status / PVOID Pointer @0, ULONG_PTR Information @8}.
//!
//! A WoW64 process's system calls are issued by the 64-bit wow64 layer with 64-bit
//! structures, so only these layouts occur at the `syscall` instruction.

use nitro_mem::{VirtAddr, VirtRead};
use nitro_os::ArgValue;

use super::flags::{render_flags, OBJ_ATTRIBUTES};
use crate::ntstatus;

/// Longest string shown, in bytes of UTF-8 after decoding (strace's default is 32; Windows
/// paths are longer, so more is kept).
pub const STRING_LIMIT: usize = 1024;

/// A HANDLE value: `NULL`, the pseudo handles by name, or hex.
pub fn handle(v: u64) -> ArgValue {
    match v {
        0 => ArgValue::Ptr(0),
        u64::MAX => ArgValue::Sym("NtCurrentProcess()".into()),
        0xffff_ffff_ffff_fffe => ArgValue::Sym("NtCurrentThread()".into()),
        0xffff_ffff_ffff_fffc => ArgValue::Sym("NtCurrentProcessToken()".into()),
        0xffff_ffff_ffff_fffb => ArgValue::Sym("NtCurrentThreadToken()".into()),
        0xffff_ffff_ffff_fffa => ArgValue::Sym("NtCurrentThreadEffectiveToken()".into()),
        v => ArgValue::Sym(format!("{v:#x}")),
    }
}

fn text_value(s: String) -> ArgValue {
    let mut bytes = s.into_bytes();
    let truncated = bytes.len() > STRING_LIMIT;
    if truncated {
        let mut cut = STRING_LIMIT;
        while cut > 0 && (bytes[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        bytes.truncate(cut);
    }
    ArgValue::Str { bytes, truncated }
}

/// The text of the UNICODE_STRING at `ptr` as a string value (`NULL` for a null pointer,
/// the address when unreadable).
pub fn unicode_string(mem: &dyn VirtRead, ptr: u64) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    match mem.read_unicode_string(VirtAddr(ptr), 0xffff) {
        Ok(s) => text_value(s),
        Err(_) => ArgValue::Unreadable(ptr),
    }
}

/// A decoded OBJECT_ATTRIBUTES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// RootDirectory handle.
    pub root_directory: u64,
    /// ObjectName (NULL, text, or unreadable).
    pub object_name: ArgValue,
    /// Attributes (OBJ_*).
    pub attributes: u32,
}

impl ObjectAttributes {
    /// `{ObjectName="\\??\\C:\\x", RootDirectory=NULL, Attributes=OBJ_CASE_INSENSITIVE}`.
    pub fn render(&self) -> String {
        format!(
            "{{ObjectName={}, RootDirectory={}, Attributes={}}}",
            self.object_name.text(),
            handle(self.root_directory).text(),
            render_flags(u64::from(self.attributes), OBJ_ATTRIBUTES)
        )
    }
}

/// Reads the OBJECT_ATTRIBUTES at `ptr`.
pub fn object_attributes(mem: &dyn VirtRead, ptr: u64) -> Option<ObjectAttributes> {
    let mut b = [0u8; 0x20];
    mem.read_virt(VirtAddr(ptr), &mut b).ok()?;
    let q = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let name_ptr = q(0x10);
    Some(ObjectAttributes {
        root_directory: q(8),
        object_name: unicode_string(mem, name_ptr),
        attributes: u32::from_le_bytes(b[0x18..0x1c].try_into().unwrap_or([0; 4])),
    })
}

/// `{UniqueProcess=1234, UniqueThread=0}`.
pub fn client_id(mem: &dyn VirtRead, ptr: u64) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    let mut b = [0u8; 16];
    match mem.read_virt(VirtAddr(ptr), &mut b) {
        Ok(()) => {
            let p = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
            let t = u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
            ArgValue::Struct(format!("{{UniqueProcess={p}, UniqueThread={t}}}"))
        }
        Err(_) => ArgValue::Unreadable(ptr),
    }
}

/// `[-10000000]` for a PLARGE_INTEGER (strace shows pointed-to scalars in brackets).
pub fn large_integer(mem: &dyn VirtRead, ptr: u64) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    match mem.read_u64(VirtAddr(ptr)) {
        Ok(v) => ArgValue::Struct(format!("[{}]", v as i64)),
        Err(_) => ArgValue::Unreadable(ptr),
    }
}

/// `{Status=STATUS_SUCCESS, Information=1}` for an IO_STATUS_BLOCK (read at the return).
pub fn io_status_block(mem: &dyn VirtRead, ptr: u64) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    let mut b = [0u8; 16];
    match mem.read_virt(VirtAddr(ptr), &mut b) {
        Ok(()) => {
            let status = u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]));
            let info = u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
            let st = ntstatus::name(status).map_or_else(|| format!("{status:#x}"), str::to_string);
            ArgValue::Struct(format!("{{Status={st}, Information={info}}}"))
        }
        Err(_) => ArgValue::Unreadable(ptr),
    }
}

/// `[value]` for a pointer to a 64-bit value (PHANDLE, PSIZE_T, PVOID*): handles in hex.
pub fn pointed_u64(mem: &dyn VirtRead, ptr: u64, as_handle: bool) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    match mem.read_u64(VirtAddr(ptr)) {
        Ok(v) if as_handle => ArgValue::Struct(format!("[{}]", handle(v).text())),
        Ok(v) => ArgValue::Struct(format!("[{v:#x}]")),
        Err(_) => ArgValue::Unreadable(ptr),
    }
}

/// `[value]` for a pointer to a 32-bit value (PULONG).
pub fn pointed_u32(mem: &dyn VirtRead, ptr: u64) -> ArgValue {
    if ptr == 0 {
        return ArgValue::Ptr(0);
    }
    match mem.read_u32(VirtAddr(ptr)) {
        Ok(v) => ArgValue::Struct(format!("[{v}]")),
        Err(_) => ArgValue::Unreadable(ptr),
    }
}
