use nitro_listener::{qemu::*, *};
use nitro_mem::MappedFileMemory;
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    sync::Arc,
    time::{Duration, Instant},
};

fn main() {
    let dir = std::path::PathBuf::from("/tmp/scratch");
    let _ = std::fs::remove_file(dir.join("out.sock"));
    let _ = std::fs::remove_file(dir.join("ctl.sock"));
    let cmd = QemuCommand {
        binary: "qemu-system-x86_64".into(),
        accel: Accel::Tcg,
        memory_mib: 256,
        cpus: 1,
        kernel: "/root/.cache/nitro/guests/debian-6.1/vmlinuz".into(),
        initrd: Some(dir.join("initrd.img")),
        append: "console=ttyS0 quiet panic=-1 nokaslr".into(),
        memory_file: "/dev/shm/nitro-scratch".into(),
        gdb_port: free_port().unwrap(),
        serials: vec![
            format!("file:{}", dir.join("console.log").display()),
            format!("unix:{},server=on,wait=off", dir.join("out.sock").display()),
            format!("unix:{},server=on,wait=off", dir.join("ctl.sock").display()),
        ],
        extra: vec![],
        start_stopped: true,
        log_file: Some(dir.join("qemu.log")),
    };
    let mut q = cmd.spawn().unwrap();
    q.wait_for_memory_file(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut out = UnixStream::connect(dir.join("out.sock")).unwrap();
    let ctl = UnixStream::connect(dir.join("ctl.sock")).unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            eprint!("{}", String::from_utf8_lossy(&b[..n]));
        }
    });
    let mem =
        Arc::new(MappedFileMemory::open("/dev/shm/nitro-scratch", q.regions.clone()).unwrap());
    let mut d = QemuDriver::connect(&q.gdb_endpoint, Some(mem), 1).unwrap();
    d.resume().unwrap();
    let mut ctlw = ctl.try_clone().unwrap();
    let mut r = BufReader::new(ctl);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    eprintln!("ctl: {line:?}");
    let regs = d.interrupt().unwrap();
    eprintln!(
        "rip {:#x} gs {:#x} kgs {:#x} cr3 {:#x}",
        regs.rip, regs.gs_base, regs.k_gs_base, regs.cr3
    );
    let base = regs.gs_base;
    let plan = TrapPlan {
        sites: vec![
            TrapSite {
                addr: base + 0x6014,
                kind: TrapKind::ReadWatch { len: 8 },
                direction: Direction::Enter,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: vec![0xffffffff81c00080..0xffffffff81c00100],
            },
            TrapSite {
                addr: base + 0x6004,
                kind: TrapKind::ReadWatch { len: 8 },
                direction: Direction::Exit,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: vec![0xffffffff81c00000..0xffffffff81c01000],
            },
        ],
    };
    d.arm(&plan).unwrap();
    d.resume().unwrap();
    ctlw.write_all(b"GO\n").unwrap();
    let t = Instant::now();
    let (mut en, mut ex, mut sp) = (0, 0, 0);
    loop {
        match d.next_event().unwrap() {
            DriverEvent::Trap(e) => {
                if e.direction == Direction::Enter {
                    en += 1;
                    if en < 5 {
                        eprintln!(
                            "enter nr {} rip {:#x} rsp {:#x}",
                            e.regs.rax, e.regs.rip, e.regs.rsp
                        );
                    }
                } else {
                    ex += 1;
                    if ex < 5 {
                        eprintln!(
                            "exit rax {:#x} rip {:#x} rdi {:#x}",
                            e.regs.rax, e.regs.rip, e.regs.rdi
                        );
                    }
                }
                d.resume().unwrap();
            }
            DriverEvent::Spurious { rip, .. } => {
                sp += 1;
                if sp < 5 {
                    eprintln!("spurious rip {rip:#x}");
                }
                d.resume().unwrap();
            }
            DriverEvent::GuestEnded { code } => {
                eprintln!("ended {code:?}");
                break;
            }
        }
    }
    eprintln!(
        "enters {en} exits {ex} spurious {sp} in {:?}; stats {:?}",
        t.elapsed(),
        d.stats()
    );
}
