//! The Linux OS backend: trap planning and turning stops into [`Syscall`] records.

use std::{collections::HashMap, path::Path};

use nitro_listener::{
    Capabilities, Direction, NitroEvent, Regs, SyscallKind, TrapKind, TrapPlan, TrapSite,
};
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr, VirtRead};
use nitro_os::{Arg, ArgValue, OsBackend, OsError, ReturnValue, Syscall, TraceScope};

use crate::{
    kernel::{btf::Btf, bzimage, kallsyms::Kallsyms},
    layout::{Offsets, Symbols},
    syscalls::{self, DecodeOptions},
    task, LinuxError,
};

/// Most entries read from `sys_call_table` (x86-64 has under 512).
const MAX_TABLE: usize = 1024;
/// Most vCPUs whose per-CPU areas are watched.
const MAX_CPUS: u32 = 256;
/// Entries listed from the built-in table when the guest's table is unknown.
const BUILTIN_TABLE_LEN: usize = 463;

/// Counters of what the backend saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Entries recorded.
    pub enters: u64,
    /// Exits matched with their entry.
    pub exits: u64,
    /// Returns to user mode with no pending entry (interrupts, exceptions, new tasks).
    pub unmatched_exits: u64,
    /// Entries whose task entered again before its exit was seen (a lost stop).
    pub lost_exits: u64,
}

/// The Linux backend. Everything comes from the kernel image itself: kallsyms for symbols,
/// BTF for structure offsets, the guest's `sys_call_table` for names.
#[derive(Debug)]
pub struct LinuxBackend {
    syms: Kallsyms,
    offsets: Offsets,
    symbols: Symbols,
    /// KASLR slide of kernel text and data (0 with `nokaslr`).
    slide: i64,
    names: Vec<Option<String>>,
    pending: HashMap<u64, Syscall>,
    orphans: Vec<Syscall>,
    /// Decoding options (string limit...).
    pub decode: DecodeOptions,
    stats: BackendStats,
}

fn os(e: LinuxError) -> OsError {
    OsError::Discovery(e.to_string())
}

impl LinuxBackend {
    /// Reads symbols and structure layouts from a kernel file (bzImage or vmlinux).
    pub fn from_kernel_file(path: &Path) -> Result<Self, LinuxError> {
        let bytes = std::fs::read(path)
            .map_err(|e| LinuxError::KernelFile(format!("{}: {e}", path.display())))?;
        let vmlinux = bzimage::extract_vmlinux(&bytes)
            .map_err(|e| LinuxError::KernelFile(format!("{}: {e}", path.display())))?;
        Self::from_vmlinux(&vmlinux)
    }

    /// Reads symbols and layouts from an uncompressed ELF vmlinux.
    pub fn from_vmlinux(vmlinux: &[u8]) -> Result<Self, LinuxError> {
        let syms =
            Kallsyms::from_vmlinux(vmlinux).map_err(|e| LinuxError::Symbols(e.to_string()))?;
        let btf = Btf::from_vmlinux(vmlinux).map_err(|e| LinuxError::Layout(e.to_string()))?;
        Self::new(syms, &btf)
    }

    /// From already parsed symbols and BTF.
    pub fn new(syms: Kallsyms, btf: &Btf) -> Result<Self, LinuxError> {
        let offsets = Offsets::from_kernel(btf, &syms)?;
        let symbols = Symbols::from_kallsyms(&syms)?;
        Ok(LinuxBackend {
            syms,
            offsets,
            symbols,
            slide: 0,
            names: Vec::new(),
            pending: HashMap::new(),
            orphans: Vec::new(),
            decode: DecodeOptions::default(),
            stats: BackendStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> BackendStats {
        self.stats
    }

    /// The structure offsets in use.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// The kernel's symbols.
    pub fn kallsyms(&self) -> &Kallsyms {
        &self.syms
    }

    fn slid(&self, addr: u64) -> u64 {
        addr.wrapping_add(self.slide as u64)
    }

    /// Name of syscall `nr` (64-bit ABI): from the guest's table, else the built-in one.
    pub fn name_of(&self, nr: u64) -> String {
        if let Some(Some(n)) = self.names.get(nr as usize) {
            return n.clone();
        }
        match syscalls::table::x86_64(nr) {
            Some(info) => info.name.to_string(),
            None => format!("syscall_{nr}"),
        }
    }

    /// Reads `sys_call_table` from the guest and names each entry by its handler's symbol
    /// (`__x64_sys_openat` -> `openat`).
    fn read_names(&mut self, space: &dyn VirtRead) {
        let Some(table) = self.symbols.sys_call_table else {
            return;
        };
        let table = self.slid(table);
        let mut names = Vec::new();
        for nr in 0..MAX_TABLE as u64 {
            let Ok(ptr) = space.read_u64(VirtAddr(table + nr * 8)) else {
                break;
            };
            let unslid = ptr.wrapping_sub(self.slide as u64);
            let name = match self.syms.symbolize(unslid) {
                Some((sym, 0)) => sym.to_string(),
                _ => break, // past the end of the table
            };
            let short = name
                .strip_prefix("__x64_sys_")
                .or_else(|| name.strip_prefix("__x64_compat_sys_"))
                .or_else(|| name.strip_prefix("sys_"));
            names.push(match short {
                Some("ni_syscall") | None => None,
                Some(s) => Some(s.to_string()),
            });
        }
        self.names = names;
    }

    fn space<'m>(&self, mem: &'m dyn PhysMemory, regs: &Regs) -> AddressSpace<&'m dyn PhysMemory> {
        AddressSpace::with_mode(mem, PhysAddr(regs.cr3), PagingMode::from_cr4(regs.cr4))
    }

    fn on_enter(&mut self, ev: &NitroEvent, space: &dyn VirtRead) -> Option<Syscall> {
        let r = &ev.regs;
        let key = r.rsp.wrapping_sub(self.offsets.pt_regs_sp);
        let nr = r.rax;
        let name = self.name_of(nr);
        let raw = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
        let process = match task::current_task(space, r.gs_base, &self.offsets) {
            Some(t) => task::process(space, t, &self.offsets),
            None => Default::default(),
        };
        let info = syscalls::table::info_for_name(&name).or_else(|| syscalls::table::x86_64(nr));
        let args = match info {
            Some(info) => conv::args_out(syscalls::decode_enter(info, &raw, space, &self.decode)),
            None => raw_args(&raw),
        };
        let call = Syscall {
            vcpu: ev.vcpu,
            direction: Direction::Enter,
            kind: ev.kind,
            cr3: r.cr3,
            rax: r.rax,
            nr,
            name,
            process,
            args,
            raw_args: raw,
            ret: None,
            enter_time: ev.time,
            exit_time: None,
            strategy: ev.strategy,
            unfinished: false,
            note: None,
            task_key: key,
        };
        self.stats.enters += 1;
        if never_returns(&call.name) {
            let mut done = call.clone();
            done.unfinished = true;
            self.orphans.push(done);
        } else if let Some(mut lost) = self.pending.insert(key, call.clone()) {
            // The same task entered again: its previous return was not seen.
            self.stats.lost_exits += 1;
            lost.unfinished = true;
            lost.note = Some("return not seen: the task entered the kernel again".into());
            self.orphans.push(lost);
        }
        Some(call)
    }

    fn on_exit(&mut self, ev: &NitroEvent, space: &dyn VirtRead) -> Option<Syscall> {
        let r = &ev.regs;
        let key = r.rdi.wrapping_sub(self.offsets.pt_regs_di);
        let Some(mut call) = self.pending.remove(&key) else {
            self.stats.unmatched_exits += 1;
            return None;
        };
        self.stats.exits += 1;
        let ret = r.rax as i64;
        let info =
            syscalls::table::info_for_name(&call.name).or_else(|| syscalls::table::x86_64(call.nr));
        let rv = match info {
            Some(info) => {
                let mut args = conv::args_in(std::mem::take(&mut call.args));
                syscalls::decode_exit(info, &call.raw_args, ret, &mut args, space, &self.decode);
                call.args = conv::args_out(args);
                conv::ret_out(syscalls::format_return(info, ret))
            }
            None => ReturnValue::plain(ret),
        };
        if call.name == "execve" || call.name == "execveat" {
            // After a successful exec the task has its new name.
            if let Some(t) = task::current_task(space, r.gs_base, &self.offsets) {
                call.process.name = task::comm(space, t, &self.offsets);
            }
        }
        call.ret = Some(rv);
        call.direction = Direction::Exit;
        call.vcpu = ev.vcpu;
        call.exit_time = Some(ev.time);
        call.rax = r.rax;
        Some(call)
    }
}

/// Calls that never come back to user mode when they succeed... or at all.
fn never_returns(name: &str) -> bool {
    matches!(name, "exit" | "exit_group")
}

/// Arguments of an unknown call: six raw registers.
fn raw_args(raw: &[u64; 6]) -> Vec<Arg> {
    const NAMES: [&str; 6] = ["arg0", "arg1", "arg2", "arg3", "arg4", "arg5"];
    raw.iter()
        .zip(NAMES)
        .map(|(&v, name)| Arg {
            name,
            value: ArgValue::Ptr(v),
        })
        .collect()
}

impl OsBackend for LinuxBackend {
    fn os_name(&self) -> &str {
        "linux"
    }

    fn plan(
        &mut self,
        mem: &dyn PhysMemory,
        regs: &Regs,
        caps: &Capabilities,
        _scope: &TraceScope,
    ) -> nitro_os::Result<TrapPlan> {
        // Under page-table isolation a vCPU stopped in user mode runs on the user half of the
        // PGD pair (kernel PGD + 4 KiB), which maps little of the kernel: try both.
        let mut kregs = *regs;
        let probe = self.slid(self.symbols.per_cpu_offset);
        let mut space = self.space(mem, &kregs);
        if space.read_u64(VirtAddr(probe)).is_err() {
            kregs.cr3 &= !0x1000;
            space = self.space(mem, &kregs);
        }
        let vcpus = caps.vcpus.clamp(1, MAX_CPUS);
        let mut bases = Vec::new();
        for cpu in 0..vcpus as u64 {
            let base = space
                .read_u64(VirtAddr(probe + cpu * 8))
                .map_err(|e| os(LinuxError::Layout(format!("__per_cpu_offset[{cpu}]: {e}"))))?;
            bases.push(base);
        }
        self.read_names(&space);

        let entry = self.symbols.entry_syscall_64;
        let mut exit_ranges =
            vec![self.slid(self.symbols.iret_exit.0)..self.slid(self.symbols.iret_exit.1)];
        if let Some((a, b)) = self.symbols.sysret_exit {
            exit_ranges.push(self.slid(a)..self.slid(b));
        }
        let mut plan = TrapPlan::default();
        for base in bases {
            let tss = base.wrapping_add(self.offsets.percpu_cpu_tss_rw);
            // entry_SYSCALL_64 stores the user RSP in cpu_tss_rw.sp2 and pushes it back as
            // pt_regs->sp: a read watchpoint there stops every 64-bit syscall entry once.
            plan.sites.push(TrapSite {
                addr: tss + self.offsets.tss_sp2,
                kind: TrapKind::ReadWatch { len: 8 },
                direction: Direction::Enter,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: vec![self.slid(entry.0)..self.slid(entry.1)],
            });
            // Both return paths to user mode load the trampoline stack from cpu_tss_rw.sp0.
            plan.sites.push(TrapSite {
                addr: tss + self.offsets.tss_sp0,
                kind: TrapKind::ReadWatch { len: 8 },
                direction: Direction::Exit,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: exit_ranges.clone(),
            });
        }
        Ok(plan)
    }

    fn on_event(
        &mut self,
        ev: &NitroEvent,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<Option<Syscall>> {
        let space = self.space(mem, &ev.regs);
        Ok(match ev.direction {
            Direction::Enter => self.on_enter(ev, &space),
            Direction::Exit => self.on_exit(ev, &space),
        })
    }

    fn take_orphans(&mut self) -> Vec<Syscall> {
        std::mem::take(&mut self.orphans)
    }

    fn drain_pending(&mut self) -> Vec<Syscall> {
        let mut out = std::mem::take(&mut self.orphans);
        let mut rest: Vec<Syscall> = self.pending.drain().map(|(_, c)| c).collect();
        rest.sort_by_key(|c| c.enter_time);
        for mut c in rest {
            c.unfinished = true;
            out.push(c);
        }
        out
    }

    fn syscall_table(&self) -> Vec<(u64, String)> {
        let n = self.names.len().max(BUILTIN_TABLE_LEN);
        (0..n as u64).map(|nr| (nr, self.name_of(nr))).collect()
    }
}

/// Temporary bridge between the decoder's value types and nitro-os's (same shape).
mod conv {
    use nitro_os::{Arg, ArgValue, ReturnValue};

    use crate::syscalls::{self as sc};

    fn v_out(v: sc::ArgValue) -> ArgValue {
        match v {
            sc::ArgValue::Int(x) => ArgValue::Int(x),
            sc::ArgValue::UInt(x) => ArgValue::UInt(x),
            sc::ArgValue::Ptr(x) => ArgValue::Ptr(x),
            sc::ArgValue::Str { bytes, truncated } => ArgValue::Str { bytes, truncated },
            sc::ArgValue::Sym(s) => ArgValue::Sym(s),
            sc::ArgValue::Struct(s) => ArgValue::Struct(s),
            sc::ArgValue::Array(a) => ArgValue::Array(a.into_iter().map(v_out).collect()),
            sc::ArgValue::Unreadable(x) => ArgValue::Unreadable(x),
            sc::ArgValue::Pending => ArgValue::Pending,
        }
    }
    fn v_in(v: ArgValue) -> sc::ArgValue {
        match v {
            ArgValue::Int(x) => sc::ArgValue::Int(x),
            ArgValue::UInt(x) => sc::ArgValue::UInt(x),
            ArgValue::Ptr(x) => sc::ArgValue::Ptr(x),
            ArgValue::Str { bytes, truncated } => sc::ArgValue::Str { bytes, truncated },
            ArgValue::Sym(s) => sc::ArgValue::Sym(s),
            ArgValue::Struct(s) => sc::ArgValue::Struct(s),
            ArgValue::Array(a) => sc::ArgValue::Array(a.into_iter().map(v_in).collect()),
            ArgValue::Unreadable(x) => sc::ArgValue::Unreadable(x),
            ArgValue::Pending => sc::ArgValue::Pending,
        }
    }
    pub fn args_out(a: Vec<sc::Arg>) -> Vec<Arg> {
        a.into_iter()
            .map(|a| Arg {
                name: a.name,
                value: v_out(a.value),
            })
            .collect()
    }
    pub fn args_in(a: Vec<Arg>) -> Vec<sc::Arg> {
        a.into_iter()
            .map(|a| sc::Arg {
                name: a.name,
                value: v_in(a.value),
            })
            .collect()
    }
    pub fn ret_out(r: sc::ReturnValue) -> ReturnValue {
        ReturnValue {
            value: r.value,
            errno: r.errno,
            text: r.text,
        }
    }
}
