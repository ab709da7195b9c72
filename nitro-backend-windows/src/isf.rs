//! Volatility 3 ISF (Intermediate Symbol Format) profiles: symbols and structure offsets for a
//! build this crate has no built-in data for.
//!
//! Format (volatility3 `schemas/schema-6.*.json`): a JSON object with `metadata`
//! (`windows.pdb` = {`GUID`, `age`, `database`}), `user_types` (name -> {`kind`, `size`,
//! `fields`: name -> {`offset`, `type`}}), and `symbols` (name -> {`address`: offset from the
//! image base}). Only what this crate uses is kept.
//!
//! With a profile, the service table of any build is read from the guest: `KiServiceTable` is
//! an array of `KiServiceLimit` 32-bit entries, each `(target - KiServiceTable) << 4 | stack
//! argument count` on x64 (Windows Internals 7th ed., ch. 8 "System service dispatching"); each
//! target is named by the profile's `Nt*` symbol at that address.

use std::collections::HashMap;

use nitro_mem::{VirtAddr, VirtRead};
use serde_json::Value;

use crate::{layout::Layout, tables::SyscallTable, Result, WinError};

/// Largest profile accepted, in bytes.
pub const MAX_PROFILE: usize = 512 << 20;
/// Most service-table entries read.
const MAX_SERVICES: u32 = 4096;

/// One structure of the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsfType {
    /// Size in bytes.
    pub size: u64,
    /// Field name -> (offset, type name when the field is a struct/union or points at one).
    pub fields: HashMap<String, (u64, Option<String>)>,
}

/// A parsed profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IsfProfile {
    /// Symbol name -> offset from the image base.
    pub symbols: HashMap<String, u64>,
    /// Structure name -> layout.
    pub types: HashMap<String, IsfType>,
    /// PDB GUID (as in the metadata).
    pub pdb_guid: Option<String>,
    /// PDB age.
    pub pdb_age: Option<u32>,
    /// PDB file name.
    pub pdb_name: Option<String>,
}

fn err(s: impl Into<String>) -> WinError {
    WinError::Isf(s.into())
}

fn type_name(t: &Value) -> Option<String> {
    // {"kind": "struct", "name": "_X"} or {"kind": "pointer", "subtype": {...}}.
    let mut cur = t;
    for _ in 0..4 {
        match cur.get("kind").and_then(Value::as_str) {
            Some("pointer") | Some("array") => cur = cur.get("subtype")?,
            Some("struct") | Some("union") | Some("enum") | Some("base") => {
                return cur.get("name").and_then(Value::as_str).map(str::to_string)
            }
            _ => return None,
        }
    }
    None
}

/// Parses an ISF JSON document.
pub fn parse(bytes: &[u8]) -> Result<IsfProfile> {
    if bytes.len() > MAX_PROFILE {
        return Err(err(format!(
            "{} bytes is over the {MAX_PROFILE}-byte limit",
            bytes.len()
        )));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    let mut p = IsfProfile::default();
    if let Some(syms) = v.get("symbols").and_then(Value::as_object) {
        for (name, s) in syms {
            if let Some(a) = s.get("address").and_then(Value::as_u64) {
                p.symbols.insert(name.clone(), a);
            }
        }
    }
    let types = v
        .get("user_types")
        .and_then(Value::as_object)
        .ok_or_else(|| err("no user_types"))?;
    for (name, t) in types {
        let mut ty = IsfType {
            size: t.get("size").and_then(Value::as_u64).unwrap_or(0),
            ..Default::default()
        };
        if let Some(fields) = t.get("fields").and_then(Value::as_object) {
            for (fname, f) in fields {
                if let Some(off) = f.get("offset").and_then(Value::as_u64) {
                    ty.fields
                        .insert(fname.clone(), (off, f.get("type").and_then(type_name)));
                }
            }
        }
        p.types.insert(name.clone(), ty);
    }
    let pdb = v.pointer("/metadata/windows/pdb");
    p.pdb_guid = pdb
        .and_then(|x| x.get("GUID"))
        .and_then(Value::as_str)
        .map(str::to_string);
    p.pdb_age = pdb
        .and_then(|x| x.get("age"))
        .and_then(Value::as_u64)
        .map(|a| a as u32);
    p.pdb_name = pdb
        .and_then(|x| x.get("database"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(p)
}

impl IsfProfile {
    /// Offset of `ty.field`.
    pub fn offset(&self, ty: &str, field: &str) -> Option<u64> {
        self.types.get(ty)?.fields.get(field).map(|f| f.0)
    }

    fn need(&self, ty: &str, field: &str) -> Result<u64> {
        self.offset(ty, field)
            .ok_or_else(|| err(format!("{ty}.{field} missing")))
    }

    /// Symbol offset from the image base.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }

    /// The structure offsets the process walk needs.
    pub fn layout(&self) -> Result<Layout> {
        let base = crate::layout::generic();
        let prcb = self.need("_KPCR", "Prcb")?;
        let wow = self
            .offset("_EPROCESS", "WoW64Process")
            .or_else(|| self.offset("_EPROCESS", "Wow64Process"))
            .ok_or_else(|| err("_EPROCESS.WoW64Process missing"))?;
        let wow_type = self
            .types
            .get("_EPROCESS")
            .and_then(|t| {
                t.fields
                    .get("WoW64Process")
                    .or_else(|| t.fields.get("Wow64Process"))
            })
            .and_then(|f| f.1.clone());
        Ok(Layout {
            name: "ISF profile",
            kpcr_self: self.need("_KPCR", "Self")?,
            kpcr_idt_base: self.need("_KPCR", "IdtBase")?,
            kpcr_current_thread: prcb + self.need("_KPRCB", "CurrentThread")?,
            kthread_apc_process: self.need("_KTHREAD", "ApcState")?
                + self.need("_KAPC_STATE", "Process")?,
            kthread_process: self.need("_KTHREAD", "Process")?,
            kthread_teb: self.need("_KTHREAD", "Teb")?,
            ethread_cid: self.need("_ETHREAD", "Cid")?,
            kprocess_dtb: self.need("_KPROCESS", "DirectoryTableBase")?,
            eprocess_pid: self.need("_EPROCESS", "UniqueProcessId")?,
            eprocess_ppid: self.need("_EPROCESS", "InheritedFromUniqueProcessId")?,
            eprocess_peb: self.need("_EPROCESS", "Peb")?,
            eprocess_wow64: wow,
            wow64_is_ewow64: wow_type.as_deref() == Some("_EWOW64PROCESS"),
            eprocess_image_file_name: self.need("_EPROCESS", "ImageFileName")?,
            eprocess_se_audit: self.need("_EPROCESS", "SeAuditProcessCreationInfo")?,
            ..base
        })
    }

    /// Reads the nt service table from guest memory and names its entries with the profile's
    /// `Nt*` symbols. `kernel_base` is where ntoskrnl is mapped.
    pub fn syscall_table(&self, mem: &dyn VirtRead, kernel_base: u64) -> Result<SyscallTable> {
        let table = self
            .symbol("KiServiceTable")
            .ok_or_else(|| err("no KiServiceTable symbol"))?;
        let limit = self
            .symbol("KiServiceLimit")
            .ok_or_else(|| err("no KiServiceLimit symbol"))?;
        let count = mem
            .read_u32(VirtAddr(kernel_base + limit))?
            .min(MAX_SERVICES);
        let by_addr: HashMap<u64, &str> = self
            .symbols
            .iter()
            .filter(|(n, _)| n.starts_with("Nt"))
            .map(|(n, a)| (*a, n.as_str()))
            .collect();
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count {
            let e = mem.read_u32(VirtAddr(kernel_base + table + 4 * u64::from(i)))? as i32;
            let target = (table as i64).wrapping_add(i64::from(e >> 4)) as u64;
            let name = by_addr
                .get(&target)
                .map_or_else(|| format!("svc_{i:#x}"), |n| n.to_string());
            entries.push((i, name));
        }
        Ok(SyscallTable::from_entries(entries))
    }
}
