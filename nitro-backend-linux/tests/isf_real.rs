//! An ISF profile standing in for BTF gives the backend exactly the layouts BTF gives, on the
//! real Debian kernels. The profile is written in dwarf2json's shape from the kernel's own BTF
//! (no dwarf2json output for these kernels is at hand), for every member the backend reads.

use std::collections::BTreeMap;

use nitro_backend_linux::{
    isf::IsfProfile,
    kernel::{btf::Btf, bzimage, kallsyms::Kallsyms},
    layout::Offsets,
};
use serde_json::{json, Value};

/// Every (struct, member path) `Offsets::from_kernel` asks for.
const WANTED: &[(&str, &str)] = &[
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "comm"),
    ("task_struct", "real_parent"),
    ("task_struct", "mm"),
    ("task_struct", "kstack_offset"),
    ("task_struct", "stack"),
    ("mm_struct", "exe_file"),
    ("file", "f_path"),
    ("path", "dentry"),
    ("path", "mnt"),
    ("dentry", "d_parent"),
    ("dentry", "d_name"),
    ("qstr", "name"),
    ("pcpu_hot", "current_task"),
    ("tss_struct", "x86_tss"),
    ("x86_hw_tss", "sp0"),
    ("x86_hw_tss", "sp2"),
    ("rt_sigframe", "uc.uc_mcontext.ax"),
    ("pt_regs", "sp"),
    ("pt_regs", "di"),
    ("pt_regs", "orig_ax"),
    ("pt_regs", "ax"),
    ("pt_regs", "ip"),
    ("pt_regs", "bx"),
    ("pt_regs", "cx"),
    ("pt_regs", "dx"),
    ("pt_regs", "si"),
    ("pt_regs", "bp"),
    ("pt_regs", "r10"),
    ("pt_regs", "r8"),
    ("pt_regs", "r9"),
    ("pt_regs", "cs"),
];

fn profile_from_btf(btf: &Btf) -> Value {
    let mut types: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (s, path) in WANTED {
        let mut ty = s.to_string();
        for part in path.split('.') {
            let Ok(off) = btf.member_offset(&ty, part) else {
                break;
            };
            let tn = btf.member_type_name(&ty, part).unwrap_or_default();
            let (kind, name) = match tn.split_once(' ') {
                Some(("struct", n)) => ("struct", n.to_string()),
                Some(("union", n)) => ("union", n.to_string()),
                _ => ("base", tn.clone()),
            };
            types.entry(ty.clone()).or_default().insert(
                part.to_string(),
                json!({"offset": off, "type": {"kind": kind, "name": name}}),
            );
            ty = name;
        }
    }
    let user_types: serde_json::Map<String, Value> = types
        .into_iter()
        .map(|(name, fields)| {
            let size = btf.struct_size(&name).unwrap_or(0);
            (
                name,
                json!({"kind": "struct", "size": size, "fields": fields}),
            )
        })
        .collect();
    json!({"metadata": {"format": "6.2.0"}, "base_types": {}, "user_types": user_types, "symbols": {}})
}

#[test]
fn isf_layouts_equal_btf_layouts_on_real_kernels() {
    let cache = std::env::var("NITRO_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/nitro",
            std::env::var("HOME").unwrap_or("/root".into())
        )
    });
    for guest in ["debian-6.1", "debian-6.12"] {
        let path = format!("{cache}/guests/{guest}/vmlinuz");
        let Ok(bz) = std::fs::read(&path) else {
            eprintln!("SKIP: {path} missing: run scripts/provision.sh");
            continue;
        };
        let vmlinux = bzimage::extract_vmlinux(&bz).unwrap();
        let btf = Btf::from_vmlinux(&vmlinux).unwrap();
        let syms = Kallsyms::from_vmlinux(&vmlinux).unwrap();
        let json = serde_json::to_vec(&profile_from_btf(&btf)).unwrap();
        let isf = IsfProfile::parse(&json).unwrap();
        let from_btf = Offsets::from_kernel(&btf, &syms).unwrap();
        let from_isf = Offsets::from_kernel(&isf, &syms).unwrap();
        assert_eq!(from_isf, from_btf, "{guest}");
    }
}
