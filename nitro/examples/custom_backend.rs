//! A custom OS backend written against the `nitro_os::OsBackend` trait, outside the
//! workspace's backend crates, driving the real facade on a real guest.
//!
//! `CountingBackend` builds its own records at every stop: it names calls from its own small
//! table, keys processes by page-table root (CR3), shows raw arguments and pairs entries
//! with exits itself. The hard parts are borrowed from the Linux backend: finding the kernel
//! and where to trap (`plan()`, and the per-task exit traps it asks for as tasks appear,
//! `take_plan_update()`), and the return value, which lives in the kernel's saved registers
//! at the exit stop. Another backend could plan its own sites from a profile.
//!
//! ```text
//! cargo run --release -p nitro --example custom_backend [-- /bin/cat /proc/version]
//! ```

use std::{collections::HashMap, time::Duration};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::TextSink,
    Nitro,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::{qemu::QemuDriver, Capabilities, Direction, NitroEvent, Regs, TrapPlan};
use nitro_mem::PhysMemory;
use nitro_os::{Arg, ArgValue, OsBackend, Process, ReturnValue, Syscall, TraceScope};

/// A few x86-64 syscall numbers (Linux arch/x86/entry/syscalls/syscall_64.tbl).
const NAMES: &[(u64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (3, "close"),
    (9, "mmap"),
    (40, "sendfile"),
    (59, "execve"),
    (231, "exit_group"),
    (257, "openat"),
];

/// Argument names shown for every call.
const ARG_NAMES: [&str; 6] = ["a0", "a1", "a2", "a3", "a4", "a5"];

struct CountingBackend {
    planner: LinuxBackend,
    pending: HashMap<u64, Syscall>,
    calls: u64,
}

impl std::fmt::Debug for CountingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingBackend")
            .field("calls", &self.calls)
            .finish()
    }
}

fn name_of(nr: u64) -> String {
    NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("syscall_{nr}"), |(_, s)| s.to_string())
}

impl OsBackend for CountingBackend {
    fn os_name(&self) -> &str {
        "counting"
    }

    fn plan(
        &mut self,
        mem: &dyn PhysMemory,
        regs: &Regs,
        caps: &Capabilities,
        scope: &TraceScope,
    ) -> nitro_os::Result<TrapPlan> {
        self.planner.plan(mem, regs, caps, scope)
    }

    fn take_plan_update(&mut self) -> Option<TrapPlan> {
        self.planner.take_plan_update()
    }

    fn on_event(
        &mut self,
        ev: &NitroEvent,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<Option<Syscall>> {
        // The Linux backend keeps its traps up to date from every stop; its record gives the
        // return value.
        let linux = self.planner.on_event(ev, mem)?;
        let r = &ev.regs;
        // One call in flight per address space: enough for single-threaded programs.
        let key = r.cr3 & !0xfff;
        match ev.direction {
            Direction::Enter => {
                self.calls += 1;
                let raw = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
                let process = Process {
                    pid: key,
                    tid: key,
                    name: format!("as-{key:x}"),
                    ..Default::default()
                };
                let args = raw
                    .iter()
                    .zip(ARG_NAMES)
                    .map(|(&v, name)| Arg {
                        name,
                        value: ArgValue::Ptr(v),
                    })
                    .collect();
                let call = Syscall::entered(ev, r.rax, name_of(r.rax), process, args, raw, key);
                self.pending.insert(key, call.clone());
                Ok(Some(call))
            }
            Direction::Exit => {
                let Some(mut call) = self.pending.remove(&key) else {
                    return Ok(None);
                };
                call.direction = Direction::Exit;
                call.exit_time = Some(ev.time);
                let ret = linux.and_then(|c| c.ret).map_or(r.rax as i64, |v| v.value);
                call.ret = Some(ReturnValue::plain(ret));
                Ok(Some(call))
            }
        }
    }

    fn syscall_table(&self) -> Vec<(u64, String)> {
        NAMES.iter().map(|(n, s)| (*n, s.to_string())).collect()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut command: Vec<String> = std::env::args().skip(1).collect();
    if command.is_empty() {
        command = vec!["/bin/cat".into(), "/proc/version".into()];
    }
    let kernel = guest::guest_kernel("debian-6.1")?;
    let backend = CountingBackend {
        planner: LinuxBackend::from_kernel_file(&kernel)?,
        pending: HashMap::new(),
        calls: 0,
    };
    let spec = GuestSpec::new(kernel, guest::default_initrd()?, command);
    let mut run = GuestRun::start(&spec, Box::new(std::io::stderr()))?;
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1)?;
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro.add_sink(Box::new(TextSink::new(std::io::stdout())));
    nitro.resume()?;
    if run.wait_control(spec.boot_timeout)? != ControlMessage::Ready {
        return Err("the guest did not reach the command".into());
    }
    nitro.arm()?;
    nitro.resume()?;
    run.go()?;
    nitro.run()?;
    run.finish(Duration::from_secs(10));
    eprintln!("{:?}", nitro.stats());
    Ok(())
}
