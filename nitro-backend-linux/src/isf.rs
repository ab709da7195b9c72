//! Volatility 3 ISF ("Intermediate Symbol Format") profiles as an optional source of
//! structure layouts and symbols, for kernels whose BTF is missing or when a user prefers a
//! profile (dwarf2json output). Never required: BTF and kallsyms come from the kernel itself.
//!
//! Format (volatility3 `schemas/schema-6.2.0.json`, produced by dwarf2json): a JSON object with
//! `user_types` (`{NAME: {"kind": "struct"|"union", "size": N, "fields": {FIELD: {"offset": N,
//! "type": {"kind": ..., "name": ...}}}}}`), `symbols` (`{NAME: {"address": N}}`), `base_types`,
//! `enums` and `metadata`. Anonymous members appear as fields whose type names an
//! `unnamed_...` user type.

use std::{collections::HashMap, path::Path};

use serde_json::Value;

use crate::{layout::TypeInfo, LinuxError};

/// Largest profile accepted (dwarf2json output for a distribution kernel is 30-80 MiB).
const MAX_ISF_BYTES: u64 = 512 << 20;
/// Deepest nesting of anonymous members followed.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone)]
struct Field {
    offset: u64,
    /// Name of the struct/union type of the field, when it is one.
    type_name: Option<String>,
}

#[derive(Debug, Clone)]
struct UserType {
    size: u64,
    fields: HashMap<String, Field>,
}

/// A parsed ISF profile.
#[derive(Debug, Clone, Default)]
pub struct IsfProfile {
    types: HashMap<String, UserType>,
    symbols: HashMap<String, u64>,
}

fn bad(why: impl Into<String>) -> LinuxError {
    LinuxError::Layout(format!("ISF profile: {}", why.into()))
}

impl IsfProfile {
    /// Reads a profile file (plain JSON).
    pub fn from_file(path: &Path) -> Result<Self, LinuxError> {
        let len = std::fs::metadata(path)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?
            .len();
        if len > MAX_ISF_BYTES {
            return Err(bad(format!("{}: {len} bytes is too large", path.display())));
        }
        let text = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses a profile.
    pub fn parse(json: &[u8]) -> Result<Self, LinuxError> {
        let v: Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let user_types = v
            .get("user_types")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no user_types object"))?;
        let mut types = HashMap::with_capacity(user_types.len());
        for (name, t) in user_types {
            let size = t.get("size").and_then(Value::as_u64).unwrap_or(0);
            let mut fields = HashMap::new();
            if let Some(fs) = t.get("fields").and_then(Value::as_object) {
                for (fname, f) in fs {
                    let Some(offset) = f.get("offset").and_then(Value::as_u64) else {
                        continue;
                    };
                    let ty = f.get("type");
                    let kind = ty.and_then(|t| t.get("kind")).and_then(Value::as_str);
                    let type_name = match kind {
                        Some("struct" | "union") => ty
                            .and_then(|t| t.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        _ => None,
                    };
                    fields.insert(fname.clone(), Field { offset, type_name });
                }
            }
            types.insert(name.clone(), UserType { size, fields });
        }
        let mut symbols = HashMap::new();
        if let Some(syms) = v.get("symbols").and_then(Value::as_object) {
            for (name, s) in syms {
                if let Some(a) = s.get("address").and_then(Value::as_u64) {
                    symbols.insert(name.clone(), a);
                }
            }
        }
        Ok(IsfProfile { types, symbols })
    }

    /// A symbol's address as the profile records it (link-time, before any KASLR slide).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// Number of user types.
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Offset of `field` in `ty`, looking into anonymous members (depth-bounded).
    fn find_field(&self, ty: &str, field: &str, depth: usize) -> Option<(u64, Option<&str>)> {
        let t = self.types.get(ty)?;
        if let Some(f) = t.fields.get(field) {
            return Some((f.offset, f.type_name.as_deref()));
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        for f in t.fields.values() {
            let Some(inner) = f.type_name.as_deref() else {
                continue;
            };
            if inner.starts_with("unnamed") {
                if let Some((off, tn)) = self.find_field(inner, field, depth + 1) {
                    return Some((f.offset + off, tn));
                }
            }
        }
        None
    }
}

impl TypeInfo for IsfProfile {
    fn source(&self) -> &'static str {
        "ISF profile"
    }

    fn member_offset(&self, name: &str, path: &str) -> Result<u64, String> {
        let mut ty = name.to_owned();
        let mut total = 0u64;
        for part in path.split('.') {
            let (off, next) = self
                .find_field(&ty, part, 0)
                .ok_or_else(|| format!("no member {part} in {ty}"))?;
            total += off;
            match next {
                Some(n) => ty = n.to_owned(),
                None => ty = String::new(),
            }
        }
        Ok(total)
    }

    fn struct_size(&self, name: &str) -> Option<u64> {
        self.types.get(name).map(|t| t.size).filter(|&s| s > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fragment in dwarf2json's shape, with an anonymous union as 6.12's pt_regs has.
    const PROFILE: &str = r#"{
      "metadata": {"format": "6.2.0"},
      "base_types": {"int": {"size": 4, "signed": true, "kind": "int", "endian": "little"}},
      "user_types": {
        "task_struct": {"kind": "struct", "size": 9792, "fields": {
          "pid": {"offset": 2432, "type": {"kind": "base", "name": "int"}},
          "comm": {"offset": 2976, "type": {"kind": "array", "count": 16, "subtype": {"kind": "base", "name": "char"}}}
        }},
        "tss_struct": {"kind": "struct", "size": 20480, "fields": {
          "x86_tss": {"offset": 0, "type": {"kind": "struct", "name": "x86_hw_tss"}}
        }},
        "x86_hw_tss": {"kind": "struct", "size": 104, "fields": {
          "sp0": {"offset": 4, "type": {"kind": "base", "name": "unsigned long"}},
          "sp2": {"offset": 20, "type": {"kind": "base", "name": "unsigned long"}}
        }},
        "pt_regs": {"kind": "struct", "size": 168, "fields": {
          "ax": {"offset": 80, "type": {"kind": "base", "name": "unsigned long"}},
          "unnamed_field_88": {"offset": 136, "type": {"kind": "union", "name": "unnamed_1a2b"}}
        }},
        "unnamed_1a2b": {"kind": "union", "size": 8, "fields": {
          "cs": {"offset": 0, "type": {"kind": "base", "name": "unsigned short"}}
        }}
      },
      "symbols": {"init_task": {"address": 18446744071603033600}}
    }"#;

    #[test]
    fn offsets_through_nested_and_anonymous_members() {
        let p = IsfProfile::parse(PROFILE.as_bytes()).unwrap();
        assert_eq!(p.member_offset("task_struct", "pid").unwrap(), 2432);
        assert_eq!(p.member_offset("tss_struct", "x86_tss.sp2").unwrap(), 20);
        assert_eq!(p.member_offset("pt_regs", "cs").unwrap(), 136);
        assert_eq!(p.struct_size("pt_regs"), Some(168));
        assert_eq!(p.symbol("init_task"), Some(18_446_744_071_603_033_600));
        assert!(p.member_offset("task_struct", "nope").is_err());
        assert!(p.member_offset("nope", "pid").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(IsfProfile::parse(b"not json").is_err());
        assert!(IsfProfile::parse(b"{}").is_err());
        assert!(IsfProfile::parse(b"[1,2]").is_err());
    }

    #[test]
    fn self_nesting_anonymous_types_terminate() {
        let cyc = r#"{"user_types": {"unnamed_x": {"kind": "struct", "size": 8, "fields": {
            "a": {"offset": 0, "type": {"kind": "struct", "name": "unnamed_x"}}}}}}"#;
        let p = IsfProfile::parse(cyc.as_bytes()).unwrap();
        assert!(p.member_offset("unnamed_x", "zzz").is_err());
    }
}
