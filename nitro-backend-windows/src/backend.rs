//! [`WindowsBackend`]: the `nitro_os::OsBackend` for Windows guests.

use std::collections::HashMap;

use nitro_listener::{
    Capabilities, Direction, NitroEvent, Regs, SyscallKind, TrapKind, TrapPlan, TrapSite,
};
use nitro_mem::{cr3_root, AddressSpace, PagingMode, PhysMemory};
use nitro_os::{Process, Syscall, TraceScope};

use crate::{
    decoders::{self, Prototype},
    discover::{self, KernelInfo, SyscallSites},
    isf::IsfProfile,
    kpcr,
    layout::{self, Layout},
    ntstatus,
    process::{self, WinProcess},
    tables::SyscallTable,
    Result, WinError,
};

/// Most processes remembered (name, parent, paths); the cache is cleared when full.
const PROCESS_CACHE: usize = 4096;
/// Most calls waiting for their return.
const PENDING_LIMIT: usize = 65_536;

/// Calls that do not come back through the system-call return path.
const NEVER_RETURN: &[&str] = &["NtContinue", "NtCallbackReturn", "NtRaiseException"];

/// Options given before the guest is looked at.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `MSR_LSTAR` when the driver can read it (KVM can; QEMU's gdbstub cannot).
    pub lstar: Option<u64>,
    /// The build, when the user knows better than `NtBuildNumber`.
    pub build: Option<u32>,
    /// A Volatility 3 ISF profile of the guest's ntoskrnl.
    pub isf: Option<IsfProfile>,
}

/// What `plan` found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The kernel image.
    pub kernel: KernelInfo,
    /// The build used for tables and offsets.
    pub build: u32,
    /// Structure offsets in use.
    pub layout: Layout,
    /// Service table in use.
    pub table: SyscallTable,
    /// The trap sites.
    pub sites: SyscallSites,
    /// A CR3 that maps the kernel.
    pub kernel_cr3: u64,
    /// vCPU 0's KPCR at plan time, when it could be found.
    pub kpcr: Option<u64>,
    /// Paging mode of the guest.
    pub paging: PagingMode,
}

#[derive(Debug, Clone)]
struct CachedProcess {
    info: WinProcess,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entry stops decoded.
    pub enters: u64,
    /// Returns matched with their entry.
    pub exits: u64,
    /// Returns without a pending entry (not counted as calls).
    pub unmatched_exits: u64,
    /// Entries whose return was never seen before the thread entered again.
    pub lost_exits: u64,
    /// Stops where the KPCR or thread could not be read.
    pub no_thread: u64,
}

/// The Windows backend.
#[derive(Debug, Default)]
pub struct WindowsBackend {
    config: Config,
    found: Option<Discovered>,
    pending: HashMap<u64, (Syscall, Option<&'static Prototype>, Vec<u64>)>,
    processes: HashMap<(u64, u64), CachedProcess>,
    orphans: Vec<Syscall>,
    stats: Stats,
}

fn space(mem: &dyn PhysMemory, cr3: u64, mode: PagingMode) -> AddressSpace<&dyn PhysMemory> {
    AddressSpace::with_mode(mem, cr3_root(cr3), mode)
}

impl WindowsBackend {
    /// A backend that discovers everything from the guest.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend with options.
    pub fn with_config(config: Config) -> Self {
        WindowsBackend {
            config,
            ..Self::default()
        }
    }

    /// What `plan` found (None before it ran).
    pub fn discovered(&self) -> Option<&Discovered> {
        self.found.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Finds the kernel, its build, offsets, service table and trap sites. `regs` must be of a
    /// vCPU whose CR3 maps the kernel (any stop in kernel mode; an idle Windows guest is
    /// almost always in kernel mode when interrupted).
    pub fn discover(&mut self, mem: &dyn PhysMemory, regs: &Regs) -> Result<&Discovered> {
        let paging = PagingMode::from_cr4(regs.cr4);
        let kmem = space(mem, regs.cr3, paging);
        let generic = layout::generic();
        let kernel = match self.config.lstar {
            Some(lstar) => discover::kernel_from_lstar(&kmem, lstar)?,
            None => {
                let pcr = kpcr::kpcr_base(&kmem, regs, &generic)?;
                discover::kernel_from_kpcr(&kmem, pcr, generic.kpcr_idt_base)?
            }
        };
        let build = self.config.build.or(kernel.build).unwrap_or(0);
        let layout = match &self.config.isf {
            Some(p) => p.layout()?,
            None => layout::for_build(build).ok_or(WinError::UnknownBuild(build))?,
        };
        let table = match &self.config.isf {
            Some(p) if p.symbol("KiServiceTable").is_some() => {
                p.syscall_table(&kmem, kernel.base())?
            }
            _ => SyscallTable::builtin(build).unwrap_or_default(),
        };
        let sites = discover::syscall_sites(&kmem, &kernel.image, self.config.lstar);
        let kpcr = kpcr::kpcr_base(&kmem, regs, &layout).ok();
        self.found = Some(Discovered {
            kernel,
            build,
            layout,
            table,
            sites,
            kernel_cr3: regs.cr3,
            kpcr,
            paging,
        });
        self.found.as_ref().ok_or(WinError::UnknownBuild(build))
    }

    /// The process and thread current at a stop.
    pub fn current_process(&mut self, mem: &dyn PhysMemory, regs: &Regs) -> Result<WinProcess> {
        let found = self
            .found
            .as_ref()
            .ok_or(WinError::Isf("plan() has not run".into()))?;
        let (layout, paging) = (found.layout, found.paging);
        let kmem = space(mem, found.kernel_cr3, paging);
        let umem = space(mem, regs.cr3, paging);
        let pcr = kpcr::kpcr_base(&kmem, regs, &layout)
            .or_else(|_| kpcr::kpcr_base(&umem, regs, &layout))?;
        let thread = kpcr::current_thread(&kmem, pcr, &layout)?;
        let key = process::process_key(&kmem, &layout, thread)?;
        if let Some(c) = self.processes.get(&key) {
            let tid = process::thread_id(&kmem, &umem, &layout, thread, key.1);
            return Ok(WinProcess {
                thread,
                tid,
                ..c.info.clone()
            });
        }
        let mut p = process::read_kernel_side(&kmem, &layout, thread)?;
        // A process with no readable PEB yet (early in its life) is not cached, so its
        // command line is picked up later.
        if process::read_user_side(&kmem, &umem, &layout, &mut p).is_ok()
            && p.command_line.is_some()
        {
            if self.processes.len() >= PROCESS_CACHE {
                self.processes.clear();
            }
            self.processes
                .insert(key, CachedProcess { info: p.clone() });
        }
        Ok(p)
    }

    fn service_name(&self, nr: u64) -> String {
        let table = self.found.as_ref().map(|f| &f.table);
        match table.and_then(|t| t.name(nr as u32)) {
            Some(n) => n.to_string(),
            None if nr & 0x1000 != 0 => format!("win32k_{:#x}", nr & 0xfff),
            None => format!("NtService_{nr:#x}"),
        }
    }

    fn on_enter(&mut self, ev: &NitroEvent, mem: &dyn PhysMemory) -> Result<Option<Syscall>> {
        let r = &ev.regs;
        let paging = self.found.as_ref().map_or(PagingMode::Level4, |f| f.paging);
        let umem = space(mem, r.cr3, paging);
        let nr = r.rax & 0xffff_ffff;
        let name = self.service_name(nr);
        let (proc_info, key) = match self.current_process(mem, r) {
            Ok(p) => {
                let k = p.thread;
                (p, k)
            }
            Err(_) => {
                self.stats.no_thread += 1;
                (
                    WinProcess::default(),
                    0x8000_0000_0000_0000 | u64::from(ev.vcpu),
                )
            }
        };
        let proto = decoders::prototype(&name);
        let want = proto.map_or(4, |p| p.params.len());
        let raw = decoders::raw_args(r, &umem, want.max(4));
        let args = match proto {
            Some(p) => decoders::decode(&umem, p, &raw, false),
            None => decoders::generic_args(&raw),
        };
        let mut raw6 = [0u64; 6];
        for (d, s) in raw6.iter_mut().zip(&raw) {
            *d = *s;
        }
        let call = Syscall::entered(ev, nr, name, to_process(&proc_info), args, raw6, key);
        self.stats.enters += 1;
        let self_terminate = matches!(
            call.name.as_str(),
            "NtTerminateThread" | "NtTerminateProcess"
        ) && matches!(raw.first(), Some(&h) if h == u64::MAX || h == u64::MAX - 1 || (h == 0 && call.name == "NtTerminateThread"));
        if NEVER_RETURN.contains(&call.name.as_str()) || self_terminate {
            let mut done = call.clone();
            done.unfinished = true;
            self.orphans.push(done);
        } else {
            if self.pending.len() >= PENDING_LIMIT {
                self.pending.clear();
            }
            if let Some((mut lost, _, _)) = self.pending.insert(key, (call.clone(), proto, raw)) {
                self.stats.lost_exits += 1;
                lost.unfinished = true;
                lost.note = Some("the return of this call was not seen".into());
                self.orphans.push(lost);
            }
        }
        Ok(Some(call))
    }

    fn on_exit(&mut self, ev: &NitroEvent, mem: &dyn PhysMemory) -> Result<Option<Syscall>> {
        let r = &ev.regs;
        let Some(found) = self.found.as_ref() else {
            return Ok(None);
        };
        let (layout, paging, kcr3) = (found.layout, found.paging, found.kernel_cr3);
        let kmem = space(mem, kcr3, paging);
        let umem = space(mem, r.cr3, paging);
        let key = kpcr::kpcr_base(&kmem, r, &layout)
            .or_else(|_| kpcr::kpcr_base(&umem, r, &layout))
            .and_then(|pcr| kpcr::current_thread(&kmem, pcr, &layout))
            .unwrap_or(0x8000_0000_0000_0000 | u64::from(ev.vcpu));
        let Some((mut call, proto, raw)) = self.pending.remove(&key) else {
            self.stats.unmatched_exits += 1;
            return Ok(None);
        };
        self.stats.exits += 1;
        if let Some(p) = proto {
            if p.params.iter().any(|(_, k)| k.changes_at_exit()) {
                call.args = decoders::decode(&umem, p, &raw, true);
            }
        }
        call.ret = Some(ntstatus::return_value(r.rax));
        call.direction = Direction::Exit;
        call.vcpu = ev.vcpu;
        call.exit_time = Some(ev.time);
        call.rax = r.rax;
        Ok(Some(call))
    }
}

fn to_process(p: &WinProcess) -> Process {
    Process {
        pid: p.pid,
        tid: p.tid,
        ppid: Some(p.ppid).filter(|&x| x != 0 || p.pid != 0),
        name: p.name.clone(),
        exe: p.image_path.clone().or_else(|| p.peb_image_path.clone()),
        compat: p.wow64,
    }
}

fn site(addr: u64, direction: Direction) -> TrapSite {
    // The stop is reported at the trapped instruction itself.
    let one_byte = addr..addr + 1;
    TrapSite {
        addr,
        kind: TrapKind::Execute,
        direction,
        syscall_kind: SyscallKind::Syscall64,
        rip_ranges: vec![one_byte],
    }
}

impl nitro_os::OsBackend for WindowsBackend {
    fn os_name(&self) -> &str {
        "windows"
    }

    /// Entry traps: with a driver whose watchpoints are unlimited (QEMU TCG, where execution
    /// breakpoints flush the translation cache at every stop) and one vCPU, a write watchpoint
    /// on vCPU 0's `KPCR + disp32`, the store the entry prologue makes right after `swapgs`
    /// (the stop comes after it, at `entry + 12`); otherwise execution traps on every entry
    /// site (`swapgs` of `KiSystemCall64[Shadow]`). Returns: execution traps on every `swapgs`
    /// before `sysretq`. Filtering by name is left to the caller: every call passes the same
    /// entry, and per-function traps would need the kernel-side convention.
    fn plan(
        &mut self,
        mem: &dyn PhysMemory,
        regs: &Regs,
        caps: &Capabilities,
        _scope: &TraceScope,
    ) -> nitro_os::Result<TrapPlan> {
        let found = self.discover(mem, regs)?;
        if found.sites.entries.is_empty() {
            return Err(nitro_os::OsError::Discovery(
                "no KiSystemCall64 entry found in ntoskrnl; give MSR_LSTAR".into(),
            ));
        }
        let kmem = space(mem, found.kernel_cr3, found.paging);
        let watch = caps.watchpoints.is_none() && caps.hw_breakpoints.is_none() && caps.vcpus == 1;
        let mut sites: Vec<TrapSite> = Vec::new();
        for &entry in &found.sites.entries {
            let store = discover::entry_store_offset(&kmem, entry);
            match (watch, found.kpcr, store) {
                (true, Some(pcr), Some(disp)) => {
                    let after = entry + 12;
                    let stop_at = after..after + 1;
                    sites.push(TrapSite {
                        addr: pcr + u64::from(disp),
                        kind: TrapKind::WriteWatch { len: 8 },
                        direction: Direction::Enter,
                        syscall_kind: SyscallKind::Syscall64,
                        rip_ranges: vec![stop_at],
                    });
                }
                _ => sites.push(site(entry, Direction::Enter)),
            }
        }
        sites.extend(found.sites.exits.iter().map(|&a| site(a, Direction::Exit)));
        Ok(TrapPlan { sites })
    }

    fn on_event(
        &mut self,
        event: &NitroEvent,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<Option<Syscall>> {
        if self.found.is_none() {
            return Err(nitro_os::OsError::Discovery("plan() has not run".into()));
        }
        if event.strategy == nitro_listener::Strategy::LateReport {
            // A hit reported late (QEMU SMP): its registers are from later; nothing here
            // can be read from them.
            return Ok(None);
        }
        Ok(match event.direction {
            Direction::Enter => self.on_enter(event, mem)?,
            Direction::Exit => self.on_exit(event, mem)?,
        })
    }

    fn take_orphans(&mut self) -> Vec<Syscall> {
        std::mem::take(&mut self.orphans)
    }

    fn drain_pending(&mut self) -> Vec<Syscall> {
        let mut out = std::mem::take(&mut self.orphans);
        let mut rest: Vec<Syscall> = self.pending.drain().map(|(_, c)| c.0).collect();
        rest.sort_by_key(|c| c.enter_time);
        for mut c in rest {
            c.unfinished = true;
            out.push(c);
        }
        out
    }

    fn syscall_table(&self) -> Vec<(u64, String)> {
        match &self.found {
            Some(f) => f
                .table
                .entries()
                .iter()
                .map(|(n, s)| (u64::from(*n), s.clone()))
                .collect(),
            None => Vec::new(),
        }
    }
}
