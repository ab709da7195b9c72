//! The kernel's BPF Type Format (`.BTF` section of `vmlinux`, `/sys/kernel/btf/vmlinux`):
//! struct sizes, member offsets and enum values of the running kernel build, without
//! per-kernel profiles.
//!
//! Format: Linux `Documentation/bpf/btf.rst` and `include/uapi/linux/btf.h`. A 24-byte header
//! (`magic` 0xeB9F, `version` 1, `flags`, `hdr_len`, then `type_off`, `type_len`, `str_off`,
//! `str_len`, offsets counted from the end of the header), a type section and a string
//! section. Each type is a `struct btf_type` (`name_off`, `info` = vlen bits 0-15, kind bits
//! 24-28, kind_flag bit 31, and `size`/`type`) followed by kind-specific data; type ids start
//! at 1 (0 is `void`) in section order.

use std::collections::HashMap;

use super::{elf::Elf, read, KernelError, Result};

/// `BTF_MAGIC` (`include/uapi/linux/btf.h`).
const BTF_MAGIC: u16 = 0xEB9F;
/// Hops allowed through typedefs/modifiers and nesting levels of anonymous members: hostile
/// data may contain cycles.
const MAX_DEPTH: usize = 64;
/// Structs searched at most for one member lookup through anonymous members.
const MAX_VISITS: usize = 4096;

/// A BTF type kind (`BTF_KIND_*` in `include/uapi/linux/btf.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Type id 0.
    Void,
    /// `BTF_KIND_INT` (1).
    Int,
    /// `BTF_KIND_PTR` (2).
    Ptr,
    /// `BTF_KIND_ARRAY` (3).
    Array,
    /// `BTF_KIND_STRUCT` (4).
    Struct,
    /// `BTF_KIND_UNION` (5).
    Union,
    /// `BTF_KIND_ENUM` (6).
    Enum,
    /// `BTF_KIND_FWD` (7).
    Fwd,
    /// `BTF_KIND_TYPEDEF` (8).
    Typedef,
    /// `BTF_KIND_VOLATILE` (9).
    Volatile,
    /// `BTF_KIND_CONST` (10).
    Const,
    /// `BTF_KIND_RESTRICT` (11).
    Restrict,
    /// `BTF_KIND_FUNC` (12).
    Func,
    /// `BTF_KIND_FUNC_PROTO` (13).
    FuncProto,
    /// `BTF_KIND_VAR` (14).
    Var,
    /// `BTF_KIND_DATASEC` (15).
    Datasec,
    /// `BTF_KIND_FLOAT` (16).
    Float,
    /// `BTF_KIND_DECL_TAG` (17).
    DeclTag,
    /// `BTF_KIND_TYPE_TAG` (18).
    TypeTag,
    /// `BTF_KIND_ENUM64` (19).
    Enum64,
}

impl Kind {
    fn from_raw(k: u32) -> Option<Self> {
        const KINDS: [Kind; 19] = [
            Kind::Int,
            Kind::Ptr,
            Kind::Array,
            Kind::Struct,
            Kind::Union,
            Kind::Enum,
            Kind::Fwd,
            Kind::Typedef,
            Kind::Volatile,
            Kind::Const,
            Kind::Restrict,
            Kind::Func,
            Kind::FuncProto,
            Kind::Var,
            Kind::Datasec,
            Kind::Float,
            Kind::DeclTag,
            Kind::TypeTag,
            Kind::Enum64,
        ];
        KINDS.get((k as usize).checked_sub(1)?).copied()
    }

    /// Number of 4-byte words after `struct btf_type` for `vlen` entries (btf.rst, 2.2).
    fn extra_words(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 1,
            Kind::Array => 3,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 3 * vlen,
            Kind::Enum | Kind::FuncProto => 2 * vlen,
            _ => 0,
        }
    }

    /// Qualifiers and typedefs that [`Btf::resolve`] looks through.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }
}

/// One type record (`struct btf_type`) with an index to its extra words.
#[derive(Debug, Clone, Copy)]
struct TypeRec {
    kind: Kind,
    kind_flag: bool,
    vlen: u16,
    name_off: u32,
    size_or_type: u32,
    /// Index into `Btf::extra` of the first kind-specific word.
    extra: u32,
}

/// A struct or union member as stored (`struct btf_member`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// Member name (empty for anonymous structs/unions).
    pub name: &'a str,
    /// Type id of the member.
    pub type_id: u32,
    /// Bit offset from the start of the enclosing struct or union.
    pub bit_offset: u64,
    /// Bitfield width in bits, 0 when not a bitfield (or not known to be one).
    pub bitfield_size: u32,
}

/// A parsed BTF blob.
#[derive(Clone)]
pub struct Btf {
    strings: Vec<u8>,
    /// `types[i]` is type id `i + 1`.
    types: Vec<TypeRec>,
    extra: Vec<u32>,
    /// Named struct/union/enum/enum64/typedef/fwd types, by name.
    by_name: HashMap<Box<str>, Vec<u32>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.types.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

fn bad(reason: &'static str, offset: usize) -> KernelError {
    KernelError::BadBtf {
        reason,
        offset: offset as u64,
    }
}

impl Btf {
    /// Parses the `.BTF` section of an ELF `vmlinux`.
    pub fn from_vmlinux(elf: &[u8]) -> Result<Self> {
        Self::parse(Elf::parse(elf)?.section_data(".BTF")?)
    }

    /// Parses a BTF blob (header, type section, string section).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if read::u16_at(bytes, 0) != Some(BTF_MAGIC) {
            return Err(bad("no 0xeB9F magic", 0));
        }
        if bytes.get(2) != Some(&1) {
            return Err(bad("unsupported version (expected 1)", 2));
        }
        let word = |o| read::u32_at(bytes, o).ok_or(bad("truncated header", o));
        let hdr_len = word(4)? as usize;
        if hdr_len < 24 {
            return Err(bad("hdr_len below 24", 4));
        }
        let (type_off, type_len) = (word(8)? as usize, word(12)? as usize);
        let (str_off, str_len) = (word(16)? as usize, word(20)? as usize);
        let section = |off: usize, len: usize, at| {
            hdr_len
                .checked_add(off)
                .and_then(|o| read::slice(bytes, o, len))
                .ok_or(bad("section outside the blob", at))
        };
        let tsec = section(type_off, type_len, 8)?;
        let strings = section(str_off, str_len, 16)?;
        if strings.first().is_some_and(|&b| b != 0) {
            return Err(bad(
                "string section does not start with an empty string",
                hdr_len + str_off,
            ));
        }

        let mut types = Vec::with_capacity(type_len / 16);
        let mut extra = Vec::with_capacity(type_len / 4);
        let mut pos = 0;
        while pos < tsec.len() {
            let at = hdr_len + type_off + pos;
            let w = |i: usize| read::u32_at(tsec, pos + 4 * i).ok_or(bad("truncated type", at));
            let (name_off, info, size_or_type) = (w(0)?, w(1)?, w(2)?);
            let kind = Kind::from_raw((info >> 24) & 0x1f).ok_or(bad("unknown type kind", at))?;
            let vlen = (info & 0xffff) as u16;
            let n = kind.extra_words(usize::from(vlen));
            let words = read::slice(tsec, pos + 12, 4 * n)
                .ok_or(bad("type data runs past the section", at))?;
            types.push(TypeRec {
                kind,
                kind_flag: info >> 31 != 0,
                vlen,
                name_off,
                size_or_type,
                extra: u32::try_from(extra.len()).map_err(|_| bad("too many types", at))?,
            });
            extra.extend(
                words
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            pos += 12 + 4 * n;
        }

        let mut btf = Self {
            strings: strings.to_vec(),
            types,
            extra,
            by_name: HashMap::new(),
        };
        let mut by_name: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        for (i, t) in btf.types.iter().enumerate() {
            if matches!(
                t.kind,
                Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Typedef | Kind::Fwd
            ) {
                let name = btf.str_at(t.name_off);
                if !name.is_empty() {
                    by_name.entry(name.into()).or_default().push(i as u32 + 1);
                }
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    /// Number of types (ids `1..=len`).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether the blob has no types.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    fn str_at(&self, off: u32) -> &str {
        read::cstr(&self.strings, off as usize)
            .and_then(|s| std::str::from_utf8(s).ok())
            .unwrap_or("")
    }

    fn rec(&self, id: u32) -> Option<&TypeRec> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    fn words(&self, t: &TypeRec, n: usize) -> &[u32] {
        let s = t.extra as usize;
        self.extra.get(s..s + n).unwrap_or(&[])
    }

    /// Kind of type `id` (`Void` for 0), `None` for an id out of range.
    pub fn kind(&self, id: u32) -> Option<Kind> {
        if id == 0 {
            return Some(Kind::Void);
        }
        self.rec(id).map(|t| t.kind)
    }

    /// Name of type `id` (empty for anonymous types).
    pub fn name(&self, id: u32) -> Option<&str> {
        self.rec(id).map(|t| self.str_at(t.name_off))
    }

    /// Ids of the named struct/union/enum/enum64/typedef/fwd types called `name`.
    pub fn find(&self, name: &str) -> &[u32] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The first type called `name` of one of the given kinds.
    pub fn find_kind(&self, name: &str, kinds: &[Kind]) -> Option<u32> {
        self.find(name)
            .iter()
            .copied()
            .find(|&id| self.kind(id).is_some_and(|k| kinds.contains(&k)))
    }

    /// Follows typedefs, `const`, `volatile`, `restrict` and type tags to the underlying type.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..MAX_DEPTH {
            match self.rec(id) {
                Some(t) if t.kind.is_alias() => id = t.size_or_type,
                _ => return id,
            }
        }
        id
    }

    /// Size in bytes of type `id` (through typedefs and modifiers; arrays multiply).
    pub fn type_size(&self, id: u32) -> Option<u64> {
        self.type_size_depth(id, 0)
    }

    fn type_size_depth(&self, id: u32, depth: usize) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        let id = self.resolve(id);
        let t = self.rec(id)?;
        match t.kind {
            Kind::Int
            | Kind::Struct
            | Kind::Union
            | Kind::Enum
            | Kind::Enum64
            | Kind::Float
            | Kind::Datasec => Some(u64::from(t.size_or_type)),
            Kind::Ptr => Some(8),
            Kind::Array => {
                let w = self.words(t, 3);
                let elem = self.type_size_depth(*w.first()?, depth + 1)?;
                elem.checked_mul(u64::from(*w.get(2)?))
            }
            _ => None,
        }
    }

    /// Size in bytes of the struct or union (or typedef of one) called `name`.
    pub fn struct_size(&self, name: &str) -> Option<u64> {
        let id = self.struct_id(name).ok()?;
        self.type_size(id)
    }

    /// The struct or union called `name`, or the one a typedef of that name stands for.
    pub fn struct_id(&self, name: &str) -> Result<u32> {
        self.find_kind(name, &[Kind::Struct, Kind::Union])
            .or_else(|| {
                let td = self.find_kind(name, &[Kind::Typedef])?;
                let id = self.resolve(td);
                matches!(self.kind(id), Some(Kind::Struct | Kind::Union)).then_some(id)
            })
            .ok_or_else(|| KernelError::NoType(name.to_owned()))
    }

    /// Offset of variable `var` within data section `section` (`BTF_KIND_DATASEC` entries
    /// are `{type, offset, size}` triples, btf.rst "BTF_KIND_DATASEC"). For `.data..percpu`
    /// this is the variable's per-CPU offset: pahole records per-CPU variables there, also
    /// those that kallsyms does not list.
    pub fn datasec_var_offset(&self, section: &str, var: &str) -> Option<u64> {
        let sec = self
            .types
            .iter()
            .find(|t| t.kind == Kind::Datasec && self.str_at(t.name_off) == section)?;
        self.words(sec, 3 * usize::from(sec.vlen))
            .chunks_exact(3)
            .find_map(|e| {
                let v = self.rec(e[0])?;
                (v.kind == Kind::Var && self.str_at(v.name_off) == var).then_some(u64::from(e[1]))
            })
    }

    /// Members of struct/union `id` (after resolving typedefs), as stored.
    pub fn members(&self, id: u32) -> impl Iterator<Item = Member<'_>> + '_ {
        let t = self
            .rec(self.resolve(id))
            .filter(|t| matches!(t.kind, Kind::Struct | Kind::Union));
        let (words, kflag) = t.map_or((&[][..], false), |t| {
            (self.words(t, 3 * usize::from(t.vlen)), t.kind_flag)
        });
        words.chunks_exact(3).map(move |m| {
            // With kind_flag set, the offset word is bitfield_size << 24 | bit_offset
            // (btf.rst, "BTF_KIND_STRUCT").
            let (bit_offset, bitfield_size) = if kflag {
                (m[2] & 0xff_ffff, m[2] >> 24)
            } else {
                (m[2], 0)
            };
            Member {
                name: self.str_at(m[0]),
                type_id: m[1],
                bit_offset: u64::from(bit_offset),
                bitfield_size,
            }
        })
    }

    /// Finds member `name` of struct/union `id`, looking into anonymous struct/union members.
    /// Returns the member and its bit offset from the start of `id`.
    pub fn find_member(&self, id: u32, name: &str) -> Option<(Member<'_>, u64)> {
        let mut budget = MAX_VISITS;
        self.find_member_in(id, name, 0, &mut budget)
    }

    /// Depth-first search through anonymous members; `budget` bounds the total work, since
    /// hostile data can make a struct contain itself anonymously more than once.
    fn find_member_in(
        &self,
        id: u32,
        name: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Option<(Member<'_>, u64)> {
        if depth > MAX_DEPTH || *budget == 0 {
            return None;
        }
        *budget -= 1;
        if let Some(m) = self.members(id).find(|m| m.name == name) {
            return Some((m, m.bit_offset));
        }
        for anon in self.members(id).filter(|m| m.name.is_empty()) {
            if let Some((m, off)) = self.find_member_in(anon.type_id, name, depth + 1, budget) {
                return Some((m, anon.bit_offset.checked_add(off)?));
            }
        }
        None
    }

    /// Walks `path` (`mm`, `thread_info.flags`, `x86_tss.sp0`, `comm[3]`) from the struct
    /// called `struct_name`; returns (bit offset, type id of the last member).
    pub fn member_bit_offset(&self, struct_name: &str, path: &str) -> Result<(u64, u32)> {
        let mut ty = self.struct_id(struct_name)?;
        let mut ty_name = struct_name.to_owned();
        let mut bits = 0u64;
        for comp in path.split('.') {
            let (field, index) = split_index(comp);
            let no_member = || KernelError::NoMember {
                ty: ty_name.clone(),
                member: comp.to_owned(),
            };
            let (m, off) = self.find_member(ty, field).ok_or_else(no_member)?;
            bits = bits.checked_add(off).ok_or_else(no_member)?;
            ty = m.type_id;
            if let Some(index) = index {
                let idx = index.ok_or_else(no_member)?;
                let arr = self.resolve(ty);
                let t = self
                    .rec(arr)
                    .filter(|t| t.kind == Kind::Array)
                    .ok_or_else(no_member)?;
                let elem = *self.words(t, 3).first().ok_or_else(no_member)?;
                let size = self.type_size(elem).ok_or_else(no_member)?;
                let step = size
                    .checked_mul(idx)
                    .and_then(|b| b.checked_mul(8))
                    .ok_or_else(no_member)?;
                bits = bits.checked_add(step).ok_or_else(no_member)?;
                ty = elem;
            }
            ty_name = format!("{ty_name}.{comp}");
        }
        Ok((bits, ty))
    }

    /// Byte offset of `path` inside the struct called `struct_name` (see
    /// [`Btf::member_bit_offset`]); an error when it is not on a byte boundary.
    ///
    /// # Example
    /// ```no_run
    /// # use nitro_backend_linux::kernel::btf::Btf;
    /// # let btf: Btf = unimplemented!();
    /// let sp0 = btf.member_offset("tss_struct", "x86_tss.sp0")?;
    /// # Ok::<(), nitro_backend_linux::kernel::KernelError>(())
    /// ```
    pub fn member_offset(&self, struct_name: &str, path: &str) -> Result<u64> {
        let (bits, _) = self.member_bit_offset(struct_name, path)?;
        if bits & 7 != 0 {
            return Err(KernelError::NotByteAligned {
                member: format!("{struct_name}.{path}"),
                bits,
            });
        }
        Ok(bits / 8)
    }

    /// C-like name of the type of `path` in `struct_name` (e.g. `"pid_t"`,
    /// `"struct mm_struct *"`, `"char[16]"`).
    pub fn member_type_name(&self, struct_name: &str, path: &str) -> Result<String> {
        let (_, ty) = self.member_bit_offset(struct_name, path)?;
        Ok(self.type_name(ty))
    }

    /// C-like name of type `id`.
    pub fn type_name(&self, id: u32) -> String {
        self.type_name_depth(id, 0)
    }

    fn type_name_depth(&self, id: u32, depth: usize) -> String {
        let Some(t) = self.rec(id).filter(|_| depth <= MAX_DEPTH) else {
            return if id == 0 { "void".into() } else { "?".into() };
        };
        let name = self.str_at(t.name_off);
        let inner = |id| self.type_name_depth(id, depth + 1);
        match t.kind {
            Kind::Struct => format!("struct {}", or_anon(name)),
            Kind::Union => format!("union {}", or_anon(name)),
            Kind::Enum | Kind::Enum64 => format!("enum {}", or_anon(name)),
            Kind::Fwd => format!("{} {name}", if t.kind_flag { "union" } else { "struct" }),
            Kind::Ptr => format!("{} *", inner(t.size_or_type)),
            Kind::Const => format!("const {}", inner(t.size_or_type)),
            Kind::Volatile => format!("volatile {}", inner(t.size_or_type)),
            Kind::Restrict => format!("{} restrict", inner(t.size_or_type)),
            Kind::TypeTag => inner(t.size_or_type),
            Kind::Array => {
                let w = self.words(t, 3);
                let (elem, n) = (
                    w.first().copied().unwrap_or(0),
                    w.get(2).copied().unwrap_or(0),
                );
                format!("{}[{n}]", inner(elem))
            }
            Kind::FuncProto => "fn".into(),
            _ => name.to_owned(),
        }
    }

    /// Value of `variant` in the enum (or enum64) called `enum_name`.
    pub fn enum_value(&self, enum_name: &str, variant: &str) -> Option<i64> {
        self.find(enum_name).iter().find_map(|&id| {
            self.enum_variants_of(id)
                .find(|(n, _)| *n == variant)
                .map(|(_, v)| v)
        })
    }

    /// Value of the enumerator `variant` in any enum, named or anonymous (many kernel
    /// constants live in anonymous enums).
    pub fn enumerator(&self, variant: &str) -> Option<i64> {
        (1..=self.types.len() as u32).find_map(|id| {
            self.enum_variants_of(id)
                .find(|(n, _)| *n == variant)
                .map(|(_, v)| v)
        })
    }

    /// All (name, value) pairs of the enum called `enum_name` (empty when there is none).
    pub fn enum_variants(&self, enum_name: &str) -> Vec<(&str, i64)> {
        self.find(enum_name)
            .iter()
            .find_map(|&id| {
                let v: Vec<_> = self.enum_variants_of(id).collect();
                (!v.is_empty() || matches!(self.kind(id), Some(Kind::Enum | Kind::Enum64)))
                    .then_some(v)
            })
            .unwrap_or_default()
    }

    /// (name, value) pairs of enum type `id`; values are sign-extended when the enum is
    /// signed (kind_flag) and zero-extended otherwise.
    pub fn enum_variants_of(&self, id: u32) -> impl Iterator<Item = (&str, i64)> + '_ {
        let t = self.rec(id);
        let (words, per, signed, kind) = match t {
            Some(t) if t.kind == Kind::Enum => (
                self.words(t, 2 * usize::from(t.vlen)),
                2,
                t.kind_flag,
                Kind::Enum,
            ),
            Some(t) if t.kind == Kind::Enum64 => (
                self.words(t, 3 * usize::from(t.vlen)),
                3,
                t.kind_flag,
                Kind::Enum64,
            ),
            _ => (&[][..], 2, false, Kind::Void),
        };
        words.chunks_exact(per).map(move |w| {
            let v = match (kind, signed) {
                (Kind::Enum, true) => i64::from(w[1] as i32),
                (Kind::Enum, false) => i64::from(w[1]),
                _ => (u64::from(w[1]) | u64::from(w[2]) << 32) as i64,
            };
            (self.str_at(w[0]), v)
        })
    }
}

#[cfg(test)]
mod tests;

fn or_anon(name: &str) -> &str {
    if name.is_empty() {
        "(anon)"
    } else {
        name
    }
}

/// Splits `"comm[3]"` into `("comm", Some(Some(3)))`; a malformed index gives `Some(None)`.
fn split_index(comp: &str) -> (&str, Option<Option<u64>>) {
    match comp.split_once('[') {
        Some((field, rest)) => (
            field,
            Some(rest.strip_suffix(']').and_then(|n| n.parse().ok())),
        ),
        None => (comp, None),
    }
}
