//! A build without built-in data, handled through a Volatility 3 ISF profile: offsets from
//! `user_types`, the service table read from the guest's `KiServiceTable` and named with the
//! profile's symbols.

mod common;

use std::time::SystemTime;

use common::*;
use nitro_backend_windows::{isf, layout, Config, WindowsBackend};
use nitro_listener::{Capabilities, Direction, NitroEvent, Strategy, SyscallKind};
use nitro_os::{OsBackend, TraceScope};
use serde_json::json;

const TABLE_RVA: u64 = 0x7400;
const LIMIT_RVA: u64 = 0x7500;

fn field(offset: u64) -> serde_json::Value {
    json!({"offset": offset, "type": {"kind": "base", "name": "unsigned long long"}})
}

fn profile() -> Vec<u8> {
    let doc = json!({
        "metadata": {"format": "6.2.0", "windows": {"pdb": {"GUID": "3844DBB920174967BE7AA4A2C20430FA", "age": 2, "database": "ntkrnlmp.pdb", "machine_type": 34404}}},
        "base_types": {},
        "enums": {},
        "symbols": {
            "KiServiceTable": {"address": TABLE_RVA},
            "KiServiceLimit": {"address": LIMIT_RVA},
            "NtClose": {"address": 0x1300},
            "NtCreateFile": {"address": 0x1200},
            "NtOpenFile": {"address": 0x1340},
            "KeBugCheck": {"address": 0x1000}
        },
        "user_types": {
            "_KPCR": {"kind": "struct", "size": 0x3000, "fields": {"Self": field(0x18), "IdtBase": field(0x38), "Prcb": field(0x180)}},
            "_KPRCB": {"kind": "struct", "size": 0x2000, "fields": {"CurrentThread": field(8)}},
            "_KAPC_STATE": {"kind": "struct", "size": 0x30, "fields": {"Process": field(0x20)}},
            "_KTHREAD": {"kind": "struct", "size": 0x430, "fields": {"ApcState": field(0x98), "Process": field(0x220), "Teb": field(0xf0)}},
            "_ETHREAD": {"kind": "struct", "size": 0x898, "fields": {"Cid": field(0x478)}},
            "_KPROCESS": {"kind": "struct", "size": 0x438, "fields": {"DirectoryTableBase": field(0x28)}},
            "_EPROCESS": {"kind": "struct", "size": 0xa40, "fields": {
                "UniqueProcessId": field(0x440),
                "InheritedFromUniqueProcessId": field(0x540),
                "Peb": field(0x550),
                "WoW64Process": {"offset": 0x580, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_EWOW64PROCESS"}}},
                "ImageFileName": field(0x5a8),
                "SeAuditProcessCreationInfo": field(0x5c0)
            }},
            "_EWOW64PROCESS": {"kind": "struct", "size": 0x10, "fields": {"Peb": field(0)}}
        }
    });
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn layout_from_a_profile_equals_the_builtin_one() {
    let p = isf::parse(&profile()).unwrap();
    assert_eq!(
        p.pdb_guid.as_deref(),
        Some("3844DBB920174967BE7AA4A2C20430FA")
    );
    assert_eq!(p.pdb_age, Some(2));
    assert_eq!(p.offset("_EPROCESS", "Peb"), Some(0x550));
    let l = p.layout().unwrap();
    assert_eq!(
        layout::Layout { name: "", ..l },
        layout::Layout {
            name: "",
            ..layout::WIN10_2004_22H2
        }
    );
}

#[test]
fn a_build_without_builtin_data_through_a_profile() {
    // Windows 8.1 (9600): no built-in table or layout; the profile supplies both.
    let mut g = Guest::new();
    write_kernel(&mut g, 0xf000_0000 | 9600);
    write_process(&mut g, &WIN10, false);
    // KiServiceTable: 3 services, entries (target - table) << 4 | stack-argument count.
    let entry =
        |target: u64, argc: u32| ((((target as i64) - TABLE_RVA as i64) << 4) as i32 as u32) | argc;
    g.w32(KBASE + TABLE_RVA, entry(0x1300, 0));
    g.w32(KBASE + TABLE_RVA + 4, entry(0x1200, 7));
    g.w32(KBASE + TABLE_RVA + 8, entry(0x1340, 2));
    g.w32(KBASE + LIMIT_RVA, 3);
    let mut regs = create_file_regs(&mut g, &WIN10);
    regs.rax = 1;
    let isf = isf::parse(&profile()).unwrap();
    let mut b = WindowsBackend::with_config(Config {
        isf: Some(isf),
        ..Config::default()
    });
    let caps = Capabilities {
        hw_breakpoints: None,
        watchpoints: None,
        zero_copy_memory: true,
        vcpus: 1,
    };
    b.plan(&g.mem, &regs, &caps, &TraceScope::default())
        .unwrap();
    assert_eq!(b.discovered().unwrap().build, 9600);
    assert_eq!(
        b.syscall_table(),
        vec![
            (0, "NtClose".to_string()),
            (1, "NtCreateFile".to_string()),
            (2, "NtOpenFile".to_string())
        ]
    );
    let ev = NitroEvent {
        vcpu: 0,
        direction: Direction::Enter,
        kind: SyscallKind::Syscall64,
        regs,
        time: SystemTime::now(),
        site: 0,
        strategy: Strategy::BreakpointStep,
    };
    let call = b.on_event(&ev, &g.mem).unwrap().unwrap();
    assert_eq!(call.name, "NtCreateFile");
    assert_eq!(call.process.name, "powershell.exe");
}

#[test]
fn bad_profiles_are_errors() {
    assert!(isf::parse(b"not json").is_err());
    assert!(isf::parse(b"{}").is_err());
    let p = isf::parse(br#"{"user_types": {"_KPCR": {"size": 8, "fields": {}}}}"#).unwrap();
    let e = p.layout().unwrap_err().to_string();
    assert!(e.contains("_KPCR.Prcb"), "{e}");
}
