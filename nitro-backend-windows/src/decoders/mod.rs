//! Argument decoding: the x64 system-call convention, the prototype table, and the decoders
//! of each argument kind.
//!
//! At the `syscall` instruction the user stub has done `mov r10, rcx` (the instruction itself
//! overwrites RCX with the return RIP), so the arguments are R10, RDX, R8, R9, then the user
//! stack from RSP+0x28 (the stub is called, so `[RSP]` is the return address and RSP+8..0x28 is
//! the 32-byte home area of the Microsoft x64 calling convention).

pub mod access;
pub mod flags;
pub mod prototypes;
pub mod structs;

use nitro_listener::Regs;
use nitro_mem::{VirtAddr, VirtRead};
use nitro_os::{Arg, ArgValue};

pub use access::AccessKind;
use flags::{render_enum, render_flags, Table};

/// Most arguments read for a call.
pub const MAX_ARGS: usize = 17;

/// How an argument is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HANDLE value.
    Handle,
    /// PHANDLE receiving a handle (read at the return).
    HandleOut,
    /// ACCESS_MASK of an object type.
    Access(AccessKind),
    /// POBJECT_ATTRIBUTES (also adds an `object_name` argument).
    ObjAttr,
    /// PIO_STATUS_BLOCK (read at the return).
    IoStatus,
    /// PLARGE_INTEGER input.
    LargeInt,
    /// PLARGE_INTEGER output.
    LargeIntOut,
    /// ULONG, decimal.
    ULong,
    /// PULONG output.
    ULongOut,
    /// LONG, decimal.
    Int,
    /// A number shown in hex (flags without a table, control codes).
    Hex,
    /// SIZE_T, decimal.
    Size,
    /// PSIZE_T output.
    SizeOut,
    /// PSIZE_T input and output.
    SizeInOut,
    /// An input pointer (buffer), shown as an address.
    Ptr,
    /// An output buffer, shown as an address.
    PtrOut,
    /// PVOID* input and output (a base address).
    PtrInOut,
    /// PCLIENT_ID input.
    ClientId,
    /// PCLIENT_ID output.
    ClientIdOut,
    /// PUNICODE_STRING input.
    UStr,
    /// PUNICODE_STRING output.
    UStrOut,
    /// Bit flags.
    Flags(Table),
    /// Pointer to bit flags, output.
    FlagsOut(Table),
    /// An enumeration value.
    Enum(Table),
    /// Pointer to an enumeration value, output.
    EnumOut(Table),
    /// BOOLEAN.
    Bool,
    /// An NTSTATUS value.
    Status,
}

impl Kind {
    /// True for pure outputs (decoded at the return; `?` at the entry).
    pub fn is_output(self) -> bool {
        matches!(
            self,
            Kind::HandleOut
                | Kind::IoStatus
                | Kind::LargeIntOut
                | Kind::ULongOut
                | Kind::SizeOut
                | Kind::ClientIdOut
                | Kind::UStrOut
                | Kind::FlagsOut(_)
                | Kind::EnumOut(_)
        )
    }

    /// True for arguments worth decoding again at the return (outputs and in/out values).
    pub fn changes_at_exit(self) -> bool {
        self.is_output() || matches!(self, Kind::SizeInOut | Kind::PtrInOut)
    }
}

/// A call's prototype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prototype {
    /// `Nt*` name.
    pub name: &'static str,
    /// (parameter name, kind), in order.
    pub params: &'static [(&'static str, Kind)],
}

/// The prototype of `name` (`Zw*` names are looked up as `Nt*`).
pub fn prototype(name: &str) -> Option<&'static Prototype> {
    let nt;
    let key = match name.strip_prefix("Zw") {
        Some(rest) => {
            nt = format!("Nt{rest}");
            nt.as_str()
        }
        None => name,
    };
    prototypes::PROTOTYPES
        .binary_search_by(|p| p.name.cmp(key))
        .ok()
        .and_then(|i| prototypes::PROTOTYPES.get(i))
}

/// Number of prototypes known.
pub fn prototype_count() -> usize {
    prototypes::PROTOTYPES.len()
}

/// The raw argument values at a `syscall` entry: R10, RDX, R8, R9, then `[RSP+0x28+8*i]`.
/// Stack slots that cannot be read are 0 (and `count` says how many were wanted).
pub fn raw_args(regs: &Regs, mem: &dyn VirtRead, count: usize) -> Vec<u64> {
    let count = count.min(MAX_ARGS);
    let mut v: Vec<u64> = [regs.r10, regs.rdx, regs.r8, regs.r9]
        .into_iter()
        .take(count)
        .collect();
    for i in 4..count {
        let at = regs.rsp.wrapping_add(0x28 + 8 * (i as u64 - 4));
        v.push(mem.read_u64(VirtAddr(at)).unwrap_or(0));
    }
    v
}

fn extra_name(param: &'static str) -> &'static str {
    match param {
        "process_object_attributes" => "process_object_name",
        "thread_object_attributes" => "thread_object_name",
        "target_key" => "target_key_name",
        "source_file" => "source_file_name",
        _ => "object_name",
    }
}

fn decode_one(
    mem: &dyn VirtRead,
    kind: Kind,
    v: u64,
    at_exit: bool,
    out: &mut Vec<Arg>,
    name: &'static str,
) {
    use structs::*;
    let value = match kind {
        k if k.is_output() && !at_exit => ArgValue::Pending,
        Kind::Handle => handle(v),
        Kind::HandleOut => pointed_u64(mem, v, true),
        Kind::Access(a) => access::access_mask(v as u32, a),
        Kind::ObjAttr => {
            if v == 0 {
                ArgValue::Ptr(0)
            } else if let Some(oa) = object_attributes(mem, v) {
                out.push(Arg {
                    name,
                    value: ArgValue::Struct(oa.render()),
                });
                out.push(Arg {
                    name: extra_name(name),
                    value: oa.object_name,
                });
                return;
            } else {
                ArgValue::Unreadable(v)
            }
        }
        Kind::IoStatus => io_status_block(mem, v),
        Kind::LargeInt | Kind::LargeIntOut => large_integer(mem, v),
        Kind::ULong => ArgValue::UInt(v & 0xffff_ffff),
        Kind::ULongOut => pointed_u32(mem, v),
        Kind::Int => ArgValue::Int(i64::from(v as i32)),
        Kind::Hex => ArgValue::Sym(format!("{v:#x}")),
        Kind::Size => ArgValue::UInt(v),
        Kind::SizeOut | Kind::SizeInOut | Kind::PtrInOut => pointed_u64(mem, v, false),
        Kind::Ptr | Kind::PtrOut => ArgValue::Ptr(v),
        Kind::ClientId | Kind::ClientIdOut => client_id(mem, v),
        Kind::UStr | Kind::UStrOut => unicode_string(mem, v),
        Kind::Flags(t) => ArgValue::Sym(render_flags(v & 0xffff_ffff, t)),
        Kind::FlagsOut(t) => match (v, mem.read_u32(VirtAddr(v))) {
            (0, _) => ArgValue::Ptr(0),
            (_, Ok(x)) => ArgValue::Struct(format!("[{}]", render_flags(u64::from(x), t))),
            (_, Err(_)) => ArgValue::Unreadable(v),
        },
        Kind::Enum(t) => ArgValue::Sym(render_enum(v & 0xffff_ffff, t)),
        Kind::EnumOut(t) => match (v, mem.read_u32(VirtAddr(v))) {
            (0, _) => ArgValue::Ptr(0),
            (_, Ok(x)) => ArgValue::Struct(format!("[{}]", render_enum(u64::from(x), t))),
            (_, Err(_)) => ArgValue::Unreadable(v),
        },
        Kind::Bool => ArgValue::Sym(if v & 0xff != 0 { "TRUE" } else { "FALSE" }.into()),
        Kind::Status => {
            let s = v as u32;
            ArgValue::Sym(
                crate::ntstatus::name(s).map_or_else(|| format!("{s:#x}"), str::to_string),
            )
        }
    };
    out.push(Arg { name, value });
}

/// Decodes the arguments of `proto` at the entry (`at_exit` false: outputs are `?`) or at the
/// return (`at_exit` true: every argument is read again, so outputs show their results).
pub fn decode(mem: &dyn VirtRead, proto: &Prototype, raw: &[u64], at_exit: bool) -> Vec<Arg> {
    let mut out = Vec::with_capacity(proto.params.len() + 1);
    for (i, &(name, kind)) in proto.params.iter().enumerate() {
        let v = raw.get(i).copied().unwrap_or(0);
        decode_one(mem, kind, v, at_exit, &mut out, name);
    }
    out
}

/// Arguments of a call without a prototype: the four register arguments in hex.
pub fn generic_args(raw: &[u64]) -> Vec<Arg> {
    const NAMES: [&str; 4] = ["arg1", "arg2", "arg3", "arg4"];
    NAMES
        .iter()
        .zip(raw)
        .map(|(&name, &v)| Arg {
            name,
            value: ArgValue::Sym(format!("{v:#x}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_large_enough() {
        let names: Vec<_> = prototypes::PROTOTYPES.iter().map(|p| p.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "PROTOTYPES must be sorted and unique");
        assert!(prototype_count() >= 60);
        assert!(prototypes::PROTOTYPES
            .iter()
            .all(|p| p.params.len() <= MAX_ARGS));
        assert_eq!(prototype("ZwCreateFile").map(|p| p.params.len()), Some(11));
        assert!(prototype("NtNoSuchCall").is_none());
    }

    #[test]
    fn every_prototype_names_a_real_service() {
        // Each decoded call exists in at least one built-in table.
        for p in prototypes::PROTOTYPES {
            let known = crate::tables::TABLES
                .iter()
                .any(|t| t.nt.iter().any(|e| e.1 == p.name));
            assert!(known, "{} is in no service table", p.name);
        }
    }
}
