//! The backend on synthetic guest memory images of each supported build: kernel discovery,
//! the KPCR -> thread -> EPROCESS -> PEB walk, and the decoding of Nitro's NtCreateFile example.

mod common;

use std::time::SystemTime;

use common::*;
use nitro_backend_windows::{discover, kpcr, layout, pe, process, Config, WindowsBackend};
use nitro_listener::{Capabilities, Direction, NitroEvent, Regs, Strategy, SyscallKind, TrapKind};
use nitro_os::{ArgValue, OsBackend, Syscall, TraceScope};

/// A KVM-like driver: four hardware breakpoints, so execution traps.
fn caps() -> Capabilities {
    Capabilities {
        hw_breakpoints: Some(4),
        watchpoints: Some(4),
        zero_copy_memory: true,
        vcpus: 1,
    }
}

/// QEMU TCG: unlimited breakpoints and watchpoints.
fn tcg() -> Capabilities {
    Capabilities {
        hw_breakpoints: None,
        watchpoints: None,
        ..caps()
    }
}

fn event(regs: Regs, direction: Direction) -> NitroEvent {
    NitroEvent {
        vcpu: 0,
        direction,
        kind: SyscallKind::Syscall64,
        regs,
        time: SystemTime::now(),
        site: 0,
        strategy: Strategy::BreakpointEmulated,
    }
}

fn arg<'a>(call: &'a Syscall, name: &str) -> &'a ArgValue {
    &call
        .args
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", call.args))
        .value
}

#[test]
fn kernel_discovery_every_build() {
    for p in ALL {
        let (g, regs) = guest(&p, false);
        let space = g.space();
        // From LSTAR.
        let k = discover::kernel_from_lstar(&space, KBASE + ENTRY_RVA).unwrap();
        assert_eq!(k.base(), KBASE);
        assert_eq!(k.build, Some(p.build));
        assert_eq!(k.build_raw, Some(0xf000_0000 | p.build));
        let pdb = k.pdb.clone().unwrap();
        assert_eq!(pdb.file, "ntkrnlmp.pdb");
        assert_eq!(pdb.key(), "3844DBB920174967BE7AA4A2C20430FA2");
        // From the KPCR's IDT (what a gdbstub-only driver can do).
        let pcr = kpcr::kpcr_base(&space, &regs, &layout::generic()).unwrap();
        assert_eq!(pcr, KPCR);
        let k2 = discover::kernel_from_kpcr(&space, pcr, 0x38).unwrap();
        assert_eq!(k2, k);
        // Entry and return sites found by signature, with an unmapped section in between.
        let sites = discover::syscall_sites(&space, &k.image, None);
        assert_eq!(sites.entries, vec![KBASE + ENTRY_RVA]);
        assert_eq!(sites.exits, vec![KBASE + EXIT_RVA]);
        assert_eq!(
            discover::syscall_sites(&space, &k.image, Some(0x1234)).entries,
            vec![0x1234]
        );
    }
}

#[test]
fn pe_exports_and_sections() {
    let (g, _) = guest(&WIN7, false);
    let space = g.space();
    let img = pe::parse(&space, KBASE).unwrap();
    assert_eq!(img.machine, 0x8664);
    assert_eq!(
        img.sections
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        [".text", "PAGE", ".data", "KVASCODE"]
    );
    assert_eq!(
        img.export_rva(&space, "NtCreateFile").unwrap(),
        Some(0x1200)
    );
    assert_eq!(img.export_rva(&space, "KeBugCheck").unwrap(), Some(0x1000));
    assert_eq!(img.export_rva(&space, "NtNope").unwrap(), None);
    // Scanning down from inside the unmapped PAGE section's neighbour finds the base.
    assert_eq!(
        pe::find_image_base(&space, KBASE + 0x9fff, 0x20000).unwrap(),
        KBASE
    );
    assert!(pe::find_image_base(&space, KBASE + 0x9000, 0x1000).is_err());
}

#[test]
fn process_walk_every_build() {
    for p in ALL {
        let (g, regs) = guest(&p, false);
        let space = g.space();
        let l = layout::for_build(p.build).unwrap();
        let pcr = kpcr::kpcr_base(&space, &regs, &l).unwrap();
        let thread = kpcr::current_thread(&space, pcr, &l).unwrap();
        assert_eq!(thread, ETHREAD);
        let mut info = process::read_kernel_side(&space, &l, thread).unwrap();
        process::read_user_side(&space, &space, &l, &mut info).unwrap();
        assert_eq!(
            (info.pid, info.ppid, info.tid),
            (PID, PPID, TID),
            "{}",
            p.build
        );
        assert_eq!(info.name, "powershell.exe");
        assert_eq!(info.image_path.as_deref(), Some(PS_PATH));
        assert_eq!(info.peb_image_path.as_deref(), Some(PS_WIN32));
        assert_eq!(info.command_line.as_deref(), Some(PS_CMD));
        assert!(!info.wow64);
        assert_eq!(info.dtb, g.cr3);
    }
}

#[test]
fn wow64_process_every_build() {
    for p in ALL {
        let (g, regs) = guest(&p, true);
        let mut b = WindowsBackend::new();
        b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
            .unwrap();
        let info = b.current_process(&g.mem, &regs).unwrap();
        assert!(info.wow64, "{}", p.build);
        assert_eq!(
            info.command_line.as_deref(),
            Some(
                r"C:\Windows\SysWOW64\WindowsPowerShell\v1.0\powershell.exe -NoProfile -Command x"
            )
        );
        let call = b
            .on_event(&event(regs, Direction::Enter), &g.mem)
            .unwrap()
            .unwrap();
        assert!(call.process.compat);
    }
}

#[test]
fn thread_id_from_the_teb_when_the_ethread_has_none() {
    let (mut g, regs) = guest(&WIN10, false);
    g.w64(ETHREAD + WIN10.cid + 8, 0);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    assert_eq!(b.current_process(&g.mem, &regs).unwrap().tid, TID);
    // A Cid offset that is wrong for the build (its first half is not the pid) is not
    // trusted either.
    let (mut g, regs) = guest(&WIN11, false);
    g.w64(ETHREAD + WIN11.cid, 0xffff_fa80_0000_1234);
    g.w64(ETHREAD + WIN11.cid + 8, 0xffff_fa80_0000_5678);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    assert_eq!(b.current_process(&g.mem, &regs).unwrap().tid, TID);
    // Again, now from the process cache.
    let again = b.current_process(&g.mem, &regs).unwrap();
    assert_eq!(
        (again.tid, again.pid, again.name.as_str()),
        (TID, PID, "powershell.exe")
    );
}

/// Nitro's example, for every supported build: an NtCreateFile by powershell.exe.
#[test]
fn nitro_example_every_build() {
    for p in ALL {
        for lstar in [None, Some(KBASE + ENTRY_RVA)] {
            let (mut g, regs) = guest(&p, false);
            let mut b = WindowsBackend::with_config(Config {
                lstar,
                ..Config::default()
            });
            let plan = b
                .plan(&g.mem, &regs, &caps(), &TraceScope::default())
                .unwrap();
            let addrs: Vec<_> = plan.sites.iter().map(|s| (s.addr, s.direction)).collect();
            assert_eq!(
                addrs,
                vec![
                    (KBASE + ENTRY_RVA, Direction::Enter),
                    (KBASE + EXIT_RVA, Direction::Exit)
                ]
            );
            assert_eq!(plan.classify(KBASE + EXIT_RVA), Some(1));
            assert_eq!(b.discovered().unwrap().build, p.build);

            let enter = b
                .on_event(&event(regs, Direction::Enter), &g.mem)
                .unwrap()
                .unwrap();
            assert_eq!(enter.name, "NtCreateFile", "{}", p.build);
            assert_eq!(enter.nr, p.create_file_nr);
            assert_eq!(enter.process.pid, PID);
            assert_eq!(enter.process.tid, TID);
            assert_eq!(enter.process.ppid, Some(PPID));
            assert_eq!(enter.process.name, "powershell.exe");
            assert_eq!(enter.process.exe.as_deref(), Some(PS_PATH));
            assert_eq!(arg(&enter, "object_name").text(), format!("{:?}", GADGET));
            assert_eq!(
                *arg(&enter, "object_name"),
                ArgValue::Str {
                    bytes: GADGET.as_bytes().to_vec(),
                    truncated: false
                }
            );
            assert_eq!(
                arg(&enter, "desired_access").text(),
                "[SYNCHRONIZE, GENERIC_READ, FILE_READ_ATTRIBUTES]"
            );
            assert_eq!(
                arg(&enter, "object_attributes").text(),
                format!(
                    "{{ObjectName={:?}, RootDirectory=NULL, Attributes=OBJ_CASE_INSENSITIVE}}",
                    GADGET
                )
            );
            assert_eq!(
                arg(&enter, "file_attributes").text(),
                "FILE_ATTRIBUTE_NORMAL"
            );
            assert_eq!(arg(&enter, "share_access").text(), "FILE_SHARE_READ");
            assert_eq!(arg(&enter, "create_disposition").text(), "FILE_OPEN");
            assert_eq!(
                arg(&enter, "create_options").text(),
                "FILE_SYNCHRONOUS_IO_NONALERT|FILE_NON_DIRECTORY_FILE"
            );
            assert_eq!(*arg(&enter, "file_handle"), ArgValue::Pending);
            assert_eq!(*arg(&enter, "allocation_size"), ArgValue::Ptr(0));
            assert_eq!(enter.raw_args[1], 0x8010_0080);
            let json = serde_json::to_string(&enter.args).unwrap();
            assert!(json.contains(r#"{"name":"desired_access","value":["SYNCHRONIZE","GENERIC_READ","FILE_READ_ATTRIBUTES"]}"#), "{json}");
            // nitro-os serializes printable UTF-8 strings as they are: the path comes back whole.
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let name = v
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == "object_name")
                .unwrap();
            assert_eq!(name["value"], GADGET);

            // The kernel fills the handle and the I/O status block, then returns through the
            // sysret path: the stop is at its swapgs, GS still the KPCR.
            g.w64(PHANDLE, 0x1a4);
            g.w64(IOSB, 0);
            g.w64(IOSB + 8, 1);
            let exit_regs = Regs {
                rax: 0,
                rip: KBASE + EXIT_RVA,
                gs_base: KPCR,
                k_gs_base: TEB,
                ..regs
            };
            let done = b
                .on_event(&event(exit_regs, Direction::Exit), &g.mem)
                .unwrap()
                .unwrap();
            assert_eq!(done.direction, Direction::Exit);
            let ret = done.ret.clone().unwrap();
            assert_eq!(
                (ret.value, ret.errno, ret.text.as_str()),
                (0, None, "0 STATUS_SUCCESS")
            );
            assert_eq!(arg(&done, "file_handle").text(), "[0x1a4]");
            assert_eq!(
                arg(&done, "io_status_block").text(),
                "{Status=STATUS_SUCCESS, Information=1}"
            );
            assert_eq!(arg(&done, "object_name"), arg(&enter, "object_name"));
            // No second return for the same call.
            assert!(b
                .on_event(&event(exit_regs, Direction::Exit), &g.mem)
                .unwrap()
                .is_none());
            assert_eq!(b.stats().unmatched_exits, 1);
        }
    }
}

#[test]
fn failed_open_names_the_status() {
    let (g, regs) = guest(&WIN7, false);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    b.on_event(&event(regs, Direction::Enter), &g.mem).unwrap();
    let exit_regs = Regs {
        rax: 0xc000_0034,
        rip: KBASE + EXIT_RVA,
        gs_base: KPCR,
        k_gs_base: TEB,
        ..regs
    };
    let done = b
        .on_event(&event(exit_regs, Direction::Exit), &g.mem)
        .unwrap()
        .unwrap();
    let ret = done.ret.unwrap();
    assert_eq!(ret.errno, Some("STATUS_OBJECT_NAME_NOT_FOUND"));
    assert_eq!(ret.text, "0xc0000034 STATUS_OBJECT_NAME_NOT_FOUND");
}

#[test]
fn calls_that_do_not_return_are_orphans() {
    let (g, mut regs) = guest(&WIN10, false);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    // NtTerminateProcess(NtCurrentProcess(), 0) = 0x2c on 19045.
    regs.rax = 0x2c;
    regs.r10 = u64::MAX;
    regs.rdx = 0;
    let call = b
        .on_event(&event(regs, Direction::Enter), &g.mem)
        .unwrap()
        .unwrap();
    assert_eq!(call.name, "NtTerminateProcess");
    assert_eq!(arg(&call, "process_handle").text(), "NtCurrentProcess()");
    assert_eq!(arg(&call, "exit_status").text(), "STATUS_SUCCESS");
    let orphans = b.take_orphans();
    assert_eq!(orphans.len(), 1);
    assert!(orphans[0].unfinished);
    assert!(b.drain_pending().is_empty());
    // An unknown service number gets a placeholder name and raw arguments.
    regs.rax = 0x1fff;
    let call = b
        .on_event(&event(regs, Direction::Enter), &g.mem)
        .unwrap()
        .unwrap();
    assert_eq!(call.name, "win32k_0xfff");
    assert_eq!(call.args.len(), 4);
    assert_eq!(b.drain_pending().len(), 1);
}

#[test]
fn syscall_table_of_the_backend() {
    let (g, regs) = guest(&WIN11, false);
    let mut b = WindowsBackend::new();
    assert!(b.syscall_table().is_empty());
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    let t = b.syscall_table();
    // 486 nt + 1456 win32k services (j00ru's "11 23H2" columns).
    assert_eq!(t.len(), 486 + 1456);
    assert!(t.contains(&(0x55, "NtCreateFile".to_string())));
    assert!(t.contains(&(0x1006, "NtGdiBitBlt".to_string())));
}

#[test]
fn unknown_build_needs_a_profile() {
    let mut g = Guest::new();
    write_kernel(&mut g, 0xf000_0000 | 9600);
    write_process(&mut g, &WIN10, false);
    let regs = create_file_regs(&mut g, &WIN10);
    let mut b = WindowsBackend::new();
    let e = b
        .plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap_err();
    assert!(e.to_string().contains("9600"), "{e}");
    // Forcing a build works.
    let mut b = WindowsBackend::with_config(Config {
        build: Some(19045),
        ..Config::default()
    });
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    assert_eq!(b.current_process(&g.mem, &regs).unwrap().pid, PID);
}

#[test]
fn no_kpcr_is_an_error_not_a_panic() {
    let (g, mut regs) = guest(&WIN10, false);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    regs.k_gs_base = 0xffff_f800_0000_0000;
    regs.gs_base = 0;
    // The call is still named; the process is unknown.
    let call = b
        .on_event(&event(regs, Direction::Enter), &g.mem)
        .unwrap()
        .unwrap();
    assert_eq!(call.name, "NtCreateFile");
    assert_eq!(call.process.pid, 0);
    assert_eq!(b.stats().no_thread, 1);
    // plan() on a guest without a kernel fails cleanly.
    let empty = Guest::new();
    let mut b = WindowsBackend::new();
    assert!(b
        .plan(
            &empty.mem,
            &Regs {
                cr3: empty.cr3,
                ..regs
            },
            &caps(),
            &TraceScope::default()
        )
        .is_err());
}

#[test]
fn win32k_calls_on_windows_7_are_named() {
    let (g, mut regs) = guest(&WIN7, false);
    let mut b = WindowsBackend::new();
    b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
        .unwrap();
    regs.rax = 0x1008;
    let call = b
        .on_event(&event(regs, Direction::Enter), &g.mem)
        .unwrap()
        .unwrap();
    assert_eq!((call.nr, call.name.as_str()), (0x1008, "NtGdiBitBlt"));
    assert_eq!(call.process.name, "powershell.exe");
    assert_eq!(b.syscall_table().len(), 401 + 827);
}

#[test]
fn win32k_calls_on_windows_10_and_11_are_named() {
    // (profile, number, name) from j00ru/windows-syscalls: x64/csv/win32k.csv (commit f84a0252)
    // "Windows 10 (22H2)" / "Windows 11 and Server (11 23H2)", and
    // x64/json/win32k-per-system.json (commit 8a6806ac) "11 24H2" (4100 = 0x1004).
    for (p, nr, name) in [
        (&WIN10, 0x1006, "NtUserGetMessage"),
        (&WIN10, 0x1008, "NtGdiBitBlt"),
        (&WIN11, 0x1004, "NtUserGetMessage"),
        (&WIN11, 0x15af, "NtUserSetWindowLongPtr"),
        (&WIN11_24H2, 0x1004, "NtUserGetMessage"),
        (&WIN11_24H2, 0x15c4, "NtUserSetWindowLongPtr"),
    ] {
        let (g, mut regs) = guest(p, false);
        let mut b = WindowsBackend::new();
        b.plan(&g.mem, &regs, &caps(), &TraceScope::default())
            .unwrap();
        regs.rax = nr;
        let call = b
            .on_event(&event(regs, Direction::Enter), &g.mem)
            .unwrap()
            .unwrap();
        assert_eq!((call.nr, call.name.as_str()), (nr, name), "{}", p.build);
        // A number past the end of the published table keeps a placeholder name.
        regs.rax = 0x1fff;
        let call = b
            .on_event(&event(regs, Direction::Enter), &g.mem)
            .unwrap()
            .unwrap();
        assert_eq!(call.name, "win32k_0xfff", "{}", p.build);
    }
}

#[test]
fn tcg_entry_by_write_watchpoint() {
    for p in ALL {
        let (g, regs) = guest(&p, false);
        let mut b = WindowsBackend::new();
        let plan = b
            .plan(&g.mem, &regs, &tcg(), &TraceScope::default())
            .unwrap();
        let entry = &plan.sites[0];
        assert_eq!(entry.kind, TrapKind::WriteWatch { len: 8 });
        assert_eq!(entry.addr, KPCR + 0x10, "KPCR.UserRsp");
        assert_eq!(entry.direction, Direction::Enter);
        assert_eq!(plan.classify(KBASE + ENTRY_RVA + 12), Some(0));
        assert_eq!(plan.sites[1].kind, TrapKind::Execute);
        // The stop after the store: swapgs done (GS = KPCR), RSP still the user stack.
        let stop = Regs {
            rip: KBASE + ENTRY_RVA + 12,
            gs_base: KPCR,
            k_gs_base: TEB,
            ..regs
        };
        let call = b
            .on_event(&event(stop, Direction::Enter), &g.mem)
            .unwrap()
            .unwrap();
        assert_eq!(call.name, "NtCreateFile");
        assert_eq!(call.process.name, "powershell.exe");
        assert_eq!(
            arg(&call, "desired_access").text(),
            "[SYNCHRONIZE, GENERIC_READ, FILE_READ_ATTRIBUTES]"
        );
        // Several vCPUs: only vCPU 0's KPCR is known, so execution traps.
        let mut b = WindowsBackend::new();
        let plan = b
            .plan(
                &g.mem,
                &regs,
                &Capabilities { vcpus: 2, ..tcg() },
                &TraceScope::default(),
            )
            .unwrap();
        assert_eq!(plan.sites[0].kind, TrapKind::Execute);
    }
}
