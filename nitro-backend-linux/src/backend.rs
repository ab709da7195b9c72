//! The Linux OS backend: trap planning and turning stops into [`Syscall`] records.

use std::{
    collections::{BTreeSet, HashMap},
    ops::Range,
    path::Path,
};

use nitro_listener::{
    Capabilities, Direction, NitroEvent, Regs, Strategy, SyscallKind, TrapKind, TrapPlan, TrapSite,
};
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr, VirtRead};
use nitro_os::{Arg, ArgValue, OsBackend, OsError, ReturnValue, Syscall, TraceScope};

mod frames;
mod handlers;
mod pertask;

use frames::straight_line_after;
use handlers::HandlerPlan;
pub use handlers::{TrapMode, MAX_HANDLER_SITES};
use pertask::info_of;

use crate::{
    kernel::{btf::Btf, bzimage, elf::Elf, kallsyms::Kallsyms},
    layout::{self, Offsets, Symbols},
    sites,
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
    /// Of the exits not seen, those completed from the task's saved frame at its next entry
    /// (return value intact): not counted in `lost_exits`.
    pub exits_from_frame: u64,
    /// Calls whose entry stop was lost, recovered at their return from the saved frame.
    pub entries_from_frame: u64,
    /// Calls whose entry and exit stops were both lost, recovered from the saved frame at
    /// the task's next entry.
    pub calls_from_frame: u64,
    /// Returns to user mode that no stop showed and no saved frame explained: a call (or an
    /// interrupt's return) was lost there; the next record of the task says so.
    pub possibly_lost: u64,
    /// Times handler traps were given up for the common entry because the traced calls
    /// were too frequent for breakpoints (see [`TrapMode::Auto`]).
    pub handler_fallbacks: u64,
}

/// The Linux backend. Everything comes from the kernel image itself: kallsyms for symbols,
/// BTF for structure offsets, the guest's `sys_call_table` for names.
#[derive(Debug)]
pub struct LinuxBackend {
    syms: Kallsyms,
    offsets: Offsets,
    pub(crate) symbols: Symbols,
    /// KASLR slide of kernel text and data (0 with `nokaslr`).
    slide: i64,
    names: Vec<Option<String>>,
    /// The first bytes of `entry_SYSCALL_64` in the kernel file.
    entry_bytes: Vec<u8>,
    pending: HashMap<u64, Syscall>,
    /// pt_regs address and user return address (RCX at `syscall`) of each task seen
    /// entering.
    pub(crate) pt_regs: HashMap<u64, (u64, u64)>,
    orphans: Vec<Syscall>,
    /// Decoding options (string limit...).
    pub decode: DecodeOptions,
    stats: BackendStats,
    /// Per-task traps, when the kernel keeps `task_struct.kstack_offset`.
    per_task: Option<PerTask>,
    /// The per-CPU sites of the last plan (entries, and exits when not per task).
    base_plan: TrapPlan,
    /// Tasks whose `kstack_offset` is watched.
    watched: BTreeSet<u64>,
    /// Per task, `kstack_offset` as last read (see `kstack_changed`).
    last_return: HashMap<u64, u32>,
    /// Watched tasks running 32-bit code: their compat entries are watched too.
    compat_tasks: BTreeSet<u64>,
    /// The traps changed since the last plan handed out.
    plan_dirty: bool,
    /// Executable path per `mm_struct` (one walk per address space).
    exe_cache: HashMap<u64, Option<String>>,
    /// Per-CPU area bases found when planning.
    cpu_bases: Vec<u64>,
    /// `pt_regs` address minus `task_struct.stack`, learnt from the first 64-bit entry.
    stack_delta: Option<u64>,
    /// Index in the last plan of the first context-switch site (see `pertask.rs`).
    switch_sites: Option<std::ops::Range<usize>>,
    /// `__switch_to` as the guest sees it.
    switch_to: Option<Range<u64>>,
    /// How calls are trapped.
    trap_mode: TrapMode,
    /// The guest's `sys_call_table` entries (0 where `sys_ni_syscall` or unknown).
    handlers: Vec<u64>,
    /// The handler traps, when the last plan trapped handlers instead of the common entry.
    handler_plan: Option<HandlerPlan>,
    /// Calls in progress under handler traps: task -> (its `pt_regs`, 32-bit).
    ax_watch: std::collections::BTreeMap<u64, (u64, bool)>,
    /// The task of each exit watchpoint of the last plan, in plan order.
    ax_sites: Vec<u64>,
    /// The common-entry plan kept while handlers are trapped, to fall back to.
    entry_fallback: Option<(TrapPlan, Option<PerTask>)>,
    /// Breakpoint stops cost far more than watchpoint stops (no hardware breakpoint
    /// limit: QEMU TCG, which flushes translated code at breakpoint stops).
    breakpoints_costly: bool,
    /// The last stop was a handler trap or a handler-traced call's exit watchpoint.
    pub(crate) handler_stop: bool,
    /// Handler entries in the current one-second window, and the window's start.
    handler_window: (u32, Option<std::time::SystemTime>),
}

/// Where the per-task traps are, from the code of the running kernel.
#[derive(Debug, Clone)]
struct PerTask {
    /// `task_struct.kstack_offset`.
    field: u64,
    /// The store in `arch_exit_to_user_mode_prepare()`.
    exit: Vec<Range<u64>>,
    /// The load in `do_int80_emulation()` / `do_int80_syscall_32()`.
    int80: Vec<Range<u64>>,
    /// The load in `__do_fast_syscall_32()` (sysenter and 32-bit syscall).
    fast: Vec<Range<u64>>,
    /// From each exit store to the end of the straight-line code that follows it (up to
    /// the first unconditional jump or return), as the guest's patched code reads: a vCPU
    /// stopped in there is past the store of the return it is making.
    after_exit: Vec<Range<u64>>,
}

/// The functions where `arch_exit_to_user_mode_prepare()` is, or is inlined.
const EXIT_FUNCTIONS: [&str; 4] = [
    "arch_exit_to_user_mode_prepare",
    "exit_to_user_mode_prepare",
    "syscall_exit_to_user_mode",
    "irqentry_exit_to_user_mode",
];

/// Most tasks given a watchpoint of their own.
const MAX_WATCHED: usize = 1024;
/// `__USER32_CS` (arch/x86/include/asm/segment.h: GDT entry 4, RPL 3).
const USER32_CS: u64 = 0x23;
/// `__USER_CS` (arch/x86/include/asm/segment.h: GDT entry 6, RPL 3).
const USER_CS: u64 = 0x33;

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
        let entry = syms.lookup("entry_SYSCALL_64");
        let mut backend = Self::new(syms, &btf)?;
        if let (Some(entry), Ok(elf)) = (entry, Elf::parse(vmlinux)) {
            if let Some(code) = elf.read_at_vaddr(entry, 16) {
                backend.entry_bytes = code.to_vec();
            }
        }
        Ok(backend)
    }

    /// Takes structure layouts from a Volatility 3 ISF profile instead of BTF (an optional
    /// input, e.g. for a kernel built without BTF); symbols stay the kernel's own kallsyms.
    pub fn with_isf(mut self, path: &Path) -> Result<Self, LinuxError> {
        let isf = crate::isf::IsfProfile::from_file(path)?;
        self.offsets = Offsets::from_kernel(&isf, &self.syms)?;
        Ok(self)
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
            entry_bytes: Vec::new(),
            pending: HashMap::new(),
            pt_regs: HashMap::new(),
            orphans: Vec::new(),
            decode: DecodeOptions::default(),
            stats: BackendStats::default(),
            per_task: None,
            base_plan: TrapPlan::default(),
            watched: BTreeSet::new(),
            last_return: HashMap::new(),
            compat_tasks: BTreeSet::new(),
            plan_dirty: false,
            exe_cache: HashMap::new(),
            cpu_bases: Vec::new(),
            stack_delta: None,
            switch_sites: None,
            switch_to: None,
            trap_mode: TrapMode::default(),
            handlers: Vec::new(),
            handler_plan: None,
            ax_watch: std::collections::BTreeMap::new(),
            ax_sites: Vec::new(),
            entry_fallback: None,
            breakpoints_costly: false,
            handler_window: (0, None),
            handler_stop: false,
        })
    }

    /// Chooses how calls are trapped (see [`TrapMode`]); takes effect at the next plan.
    pub fn set_trap_mode(&mut self, mode: TrapMode) {
        self.trap_mode = mode;
    }

    /// True when the last plan trapped the traced calls' handlers rather than the common
    /// entry.
    pub fn traps_handlers(&self) -> bool {
        self.handler_plan.is_some()
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

    /// Name of syscall `nr` (64-bit ABI). x86-64 syscall numbers are a stable ABI, so the
    /// built-in table (named as in `syscall_64.tbl` and strace: `uname`, not the kernel's
    /// `newuname` handler) is authoritative where it has the number; the guest's own
    /// `sys_call_table` names calls newer than the table.
    pub fn name_of(&self, nr: u64) -> String {
        if let Some(info) = syscalls::table::x86_64(nr) {
            return info.name.to_string();
        }
        match self.names.get(nr as usize) {
            Some(Some(n)) => n.clone(),
            _ => format!("syscall_{nr}"),
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
        let mut handlers = Vec::new();
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
            let known = !matches!(short, Some("ni_syscall") | None);
            handlers.push(if known { ptr } else { 0 });
            names.push(short.filter(|_| known).map(str::to_string));
        }
        self.names = names;
        self.handlers = handlers;
    }

    fn space<'m>(&self, mem: &'m dyn PhysMemory, regs: &Regs) -> AddressSpace<&'m dyn PhysMemory> {
        AddressSpace::with_mode(mem, PhysAddr(regs.cr3), PagingMode::from_cr4(regs.cr4))
    }

    fn on_enter(&mut self, ev: &NitroEvent, space: &dyn VirtRead) -> Option<Syscall> {
        let r = &ev.regs;
        // At the entry stop RSP points at pt_regs->sp, just pushed.
        let pt_regs = r.rsp.wrapping_sub(self.offsets.pt_regs_sp);
        let nr = r.rax;
        let name = self.name_of(nr);
        let raw = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
        let task = task::current_task(space, r.gs_base, &self.offsets);
        let key = task.unwrap_or(pt_regs);
        let returned = self.kstack_changed(key, space).unwrap_or(false);
        if self.per_task.is_some()
            && !returned
            && self.pending.get(&key).is_some_and(|p| p.nr == nr)
        {
            // Not returned to user mode since its pending call was recorded: this is the same
            // call, recorded already from its frame (another vCPU's stop saw it first).
            return None;
        }
        let process = match task {
            Some(t) => self.process_of(space, t),
            None => Default::default(),
        };
        if let Some(t) = task {
            self.watch_task(t);
        }
        let info = syscalls::table::info_for_name(&name).or_else(|| syscalls::table::x86_64(nr));
        let args = match info {
            Some(info) => syscalls::decode_enter(info, &raw, space, &self.decode),
            None => raw_args(&raw),
        };
        let call = Syscall::entered(ev, nr, name, process, args, raw, key);
        if let Some(done) = self.previous_call_at_entry(key, returned, ev, space) {
            self.orphans.push(done);
        }
        self.pt_regs.insert(key, (pt_regs, r.rcx));
        if let (None, Some(t), Some(off)) = (self.stack_delta, task, self.offsets.task_stack) {
            if let Ok(stack) = space.read_u64(VirtAddr(t.wrapping_add(off))) {
                self.stack_delta = Some(pt_regs.wrapping_sub(stack)).filter(|&d| d < 1 << 20);
            }
        }
        Some(self.record_entry(call, key))
    }

    /// Remembers an entry until its exit (or writes it at once when it never returns).
    fn record_entry(&mut self, call: Syscall, key: u64) -> Syscall {
        self.stats.enters += 1;
        if never_returns(&call.name) {
            let mut done = call.clone();
            done.unfinished = true;
            self.orphans.push(done);
            self.unwatch_task(key);
        } else if let Some(mut lost) = self.pending.insert(key, call.clone()) {
            // The same task entered again: its previous return was not seen (with the exit
            // trap on cpu_tss_rw.sp0, kernels from about 6.4 on return through iret without
            // touching it when page-table isolation is off). A successful execve returns
            // that way, and returns 0 (a failed one returns through sysret).
            self.stats.lost_exits += 1;
            if matches!(lost.name.as_str(), "execve" | "execveat") {
                lost.ret = Some(ReturnValue::plain(0));
                lost.direction = Direction::Exit;
                lost.exit_time = Some(call.enter_time);
                lost.process.name = call.process.name.clone();
                lost.note =
                    Some("returned through iret: success inferred from the next entry".into());
            } else {
                lost.unfinished = true;
                lost.note = Some("return not seen: the task entered the kernel again".into());
            }
            self.orphans.push(lost);
        }
        call
    }

    fn on_exit(&mut self, ev: &NitroEvent, space: &dyn VirtRead) -> Option<Syscall> {
        let r = &ev.regs;
        // Every return to user mode passes here (interrupts and exceptions too); it is a
        // system call's return when the current task has an entry pending.
        let key = match task::current_task(space, r.gs_base, &self.offsets) {
            Some(t) => t,
            None => r.rdi.wrapping_sub(self.offsets.pt_regs_di),
        };
        let returned = self.kstack_changed(key, space).unwrap_or(true);
        let Some(call) = self.pending.remove(&key) else {
            if returned {
                if let Some(done) = self.call_at_exit(key, ev, space) {
                    return Some(done);
                }
            }
            self.stats.unmatched_exits += 1;
            return None;
        };
        self.stats.exits += 1;
        Some(self.finish_call(call, key, ev, space))
    }

    /// Fills in a call's return from its task's saved frame (`pt_regs`) and decodes what the
    /// call wrote; `ev` is the stop it is completed at.
    fn finish_call(
        &mut self,
        mut call: Syscall,
        key: u64,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Syscall {
        let r = &ev.regs;
        // The return value is pt_regs->ax, which the exit path pops into RAX; reading it from
        // memory works at every exit trap, before or after the pop.
        let (pt_regs, user_rip) = self.pt_regs.get(&key).copied().unwrap_or((0, 0));
        let field = |off: u64| space.read_u64(VirtAddr(pt_regs.wrapping_add(off))).ok();
        let mut ret = field(self.offsets.pt_regs_ax).unwrap_or(r.rax) as i64;
        // A signal delivered on the way out: the kernel has pointed pt_regs at the handler and
        // saved the call's result in the signal frame it built on the user stack.
        let redirected = field(self.offsets.pt_regs_ip).is_some_and(|ip| ip != user_rip);
        if redirected && !matches!(call.name.as_str(), "execve" | "execveat" | "rt_sigreturn") {
            if let Some(sp) = field(self.offsets.pt_regs_sp) {
                if let Ok(saved) =
                    space.read_u64(VirtAddr(sp.wrapping_add(self.offsets.sigframe_ax)))
                {
                    ret = saved as i64;
                    call.note = Some("signal handler entered on return".into());
                }
            }
        }
        let info = info_of(&call);
        let opts = self.options(call.kind);
        if call.kind.is_compat() {
            // 32-bit results: -4095..-1 are errors, anything else is unsigned (addresses
            // above 2 GiB from mmap2 or brk).
            let low = ret as u32;
            ret = if low >= 0xffff_f001 {
                i64::from(low as i32)
            } else {
                i64::from(low)
            };
        }
        let rv = match info {
            Some(info) => {
                retry_unreadable(info, &mut call, space, &opts);
                syscalls::decode_exit(info, &call.raw_args, ret, &mut call.args, space, &opts);
                syscalls::format_return_full(info, &call.raw_args, ret, space, &opts)
            }
            None => ReturnValue::plain(ret),
        };
        if call.name == "execve" || call.name == "execveat" {
            // After a successful exec the task has its new name, image and perhaps ABI.
            if let Some(t) = task::current_task(space, r.gs_base, &self.offsets) {
                call.process.name = task::comm(space, t, &self.offsets);
                call.process.exe = self.exe_of(space, t);
                let cs = field(self.offsets.pt_regs_cs).unwrap_or(0);
                self.set_compat(t, cs == USER32_CS);
            }
        }
        call.ret = Some(rv);
        call.direction = Direction::Exit;
        call.vcpu = ev.vcpu;
        call.exit_time = Some(ev.time);
        call.rax = ret as u64;
        call
    }
}

/// The read-only IDT mapping in the CPU entry area, fixed on x86-64 since Linux 4.15:
/// `CPU_ENTRY_AREA_RO_IDT` = `CPU_ENTRY_AREA_BASE` = -4 << P4D_SHIFT (39)
/// (arch/x86/include/asm/pgtable_areas.h), the same with 4- and 5-level paging.
const IDT_BASE: u64 = 0xffff_fe00_0000_0000;
/// KASLR moves the kernel in units of CONFIG_PHYSICAL_ALIGN (2 MiB on x86-64 distributions).
const SLIDE_ALIGN: i64 = 0x20_0000;

impl LinuxBackend {
    /// The KASLR slide: where the guest's IDT sends vector 0 (divide error) minus where
    /// kallsyms says `asm_exc_divide_error` was linked; checked against the code bytes of
    /// `entry_SYSCALL_64` read from the file.
    fn find_slide(&self, space: &dyn VirtRead) -> Result<i64, LinuxError> {
        let linked = self
            .syms
            .lookup("asm_exc_divide_error")
            .or_else(|| self.syms.lookup("divide_error"))
            .ok_or_else(|| LinuxError::Symbols("no divide-error handler in kallsyms".into()))?;
        let mut gate = [0u8; 16];
        space
            .read_virt(VirtAddr(IDT_BASE), &mut gate)
            .map_err(|e| {
                LinuxError::Layout(format!("cannot read the IDT at {IDT_BASE:#x}: {e}"))
            })?;
        // 64-bit interrupt gate: offset 15:0 at 0, 31:16 at 6, 63:32 at 8 (Intel SDM 3A 6.14.1).
        let handler = u64::from(u16::from_le_bytes([gate[0], gate[1]]))
            | u64::from(u16::from_le_bytes([gate[6], gate[7]])) << 16
            | u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32;
        let slide = handler.wrapping_sub(linked) as i64;
        if slide % SLIDE_ALIGN != 0 {
            return Err(LinuxError::Layout(format!(
                "IDT vector 0 points to {handler:#x}, {slide:#x} from asm_exc_divide_error: not a \
                 KASLR slide (is this the kernel that was given?)"
            )));
        }
        // Compare code up to and including the entry's `swapgs` (0f 01 f8): the instructions
        // after it address per-CPU data RIP-relatively on 6.x kernels, and KASLR relocates
        // those displacements.
        let swapgs = self
            .entry_bytes
            .windows(3)
            .position(|w| w == [0x0f, 0x01, 0xf8]);
        if let Some(pos) = swapgs {
            let expect = &self.entry_bytes[..pos + 3];
            let entry = self.symbols.entry_syscall_64.0.wrapping_add(slide as u64);
            let mut code = vec![0u8; expect.len()];
            let same = space.read_virt(VirtAddr(entry), &mut code).is_ok() && code == expect;
            if !same {
                return Err(LinuxError::Layout(format!(
                    "the guest's code at entry_SYSCALL_64 ({entry:#x}) differs from the kernel \
                     file: the guest runs another kernel"
                )));
            }
        }
        Ok(slide)
    }

    /// The KASLR slide found when planning (0 before).
    pub fn slide(&self) -> i64 {
        self.slide
    }
}

/// Where returns to user mode are caught.
enum ExitTrap {
    /// A write watchpoint on the per-CPU `kstack_offset`, which
    /// `arch_exit_to_user_mode_prepare()` rewrites on every return to user mode, through
    /// sysret and iret alike, after signal handling (include/linux/randomize_kstack.h,
    /// arch/x86/include/asm/entry-common.h; enabled by CONFIG_RANDOMIZE_KSTACK_OFFSET_DEFAULT
    /// or `randomize_kstack_offset=on`).
    KstackOffset {
        percpu: u64,
        text: std::ops::Range<u64>,
    },
    /// A read watchpoint on `cpu_tss_rw.sp0`, loaded by the sysret path, and by the iret path
    /// where it switches to the trampoline stack (always on 6.1; on later kernels only with
    /// page-table isolation active).
    TssSp0 { ranges: Vec<std::ops::Range<u64>> },
    /// A write watchpoint per traced task on `task_struct.kstack_offset`, which the same
    /// function rewrites on every return to user mode where the kernel keeps it per task
    /// (see [`crate::sites`]).
    TaskKstack(PerTask),
}

impl LinuxBackend {
    fn exit_trap(&self, space: &dyn VirtRead) -> ExitTrap {
        let key_on = self
            .symbols
            .randomize_kstack_offset
            .and_then(|k| space.read_u32(VirtAddr(self.slid(k))).ok())
            .is_some_and(|enabled| (enabled as i32) > 0);
        // NITRO_EXIT_TRAP=sp0 forces the older trap (for comparisons).
        let forced_sp0 = std::env::var("NITRO_EXIT_TRAP").is_ok_and(|v| v == "sp0");
        if let (Some(field), true, false) = (self.offsets.task_kstack_offset, key_on, forced_sp0) {
            let disp = field as u32;
            let scan =
                |names: &[&str], op| sites::scan(space, &self.syms, names, self.slide, op, disp);
            let exit = scan(&EXIT_FUNCTIONS, sites::MOV_STORE);
            if !exit.is_empty() {
                let after_exit = exit
                    .iter()
                    .flat_map(|r| straight_line_after(space, r))
                    .collect();
                return ExitTrap::TaskKstack(PerTask {
                    field,
                    after_exit,
                    exit,
                    int80: scan(
                        &["do_int80_emulation", "do_int80_syscall_32"],
                        sites::MOV_LOAD,
                    ),
                    fast: scan(&["__do_fast_syscall_32"], sites::MOV_LOAD),
                });
            }
        }
        // Per-CPU state (kernels 5.13 to 6.17): the offset from the symbol tables, else
        // decoded from the exit code.
        let percpu = self.offsets.percpu_kstack_offset.map(|p| {
            let (a, b) = self.symbols.text;
            (p, self.slid(a)..self.slid(b))
        });
        let percpu = percpu.or_else(|| {
            sites::percpu_kstack_offset(space, &self.syms, &EXIT_FUNCTIONS, self.slide)
        });
        if let (Some((percpu, text)), true, false) = (percpu, key_on, forced_sp0) {
            return ExitTrap::KstackOffset { percpu, text };
        }
        let mut ranges: Vec<_> = std::iter::once(
            self.slid(self.symbols.iret_exit.0)..self.slid(self.symbols.iret_exit.1),
        )
        .collect();
        if let Some((a, b)) = self.symbols.sysret_exit {
            ranges.push(self.slid(a)..self.slid(b));
        }
        ExitTrap::TssSp0 { ranges }
    }
}

/// Input strings the entry could not read, read again at the exit: a page of a just-executed
/// binary is often not mapped yet when the call enters, and the kernel has faulted it in by
/// the time the call returns (`readlink("/proc/self/exe", ...)` right after an execve).
fn retry_unreadable(
    info: &syscalls::SyscallInfo,
    call: &mut Syscall,
    space: &dyn VirtRead,
    opts: &DecodeOptions,
) {
    if !call
        .args
        .iter()
        .any(|a| matches!(a.value, ArgValue::Unreadable(_)))
    {
        return;
    }
    let again = syscalls::decode_enter(info, &call.raw_args, space, opts);
    for arg in &mut call.args {
        if !matches!(arg.value, ArgValue::Unreadable(_)) {
            continue;
        }
        if let Some(new) = again.iter().find(|a| a.name == arg.name) {
            if !matches!(new.value, ArgValue::Unreadable(_) | ArgValue::Pending) {
                arg.value = new.value.clone();
            }
        }
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
        scope: &TraceScope,
    ) -> nitro_os::Result<TrapPlan> {
        // Under page-table isolation a vCPU stopped in user mode runs on the user half of the
        // PGD pair (kernel PGD + 4 KiB), which maps little of the kernel: try both.
        let mut kregs = *regs;
        let mut space = self.space(mem, &kregs);
        if space.read_u64(VirtAddr(IDT_BASE)).is_err() {
            kregs.cr3 &= !0x1000;
            space = self.space(mem, &kregs);
        }
        self.slide = self.find_slide(&space).map_err(os)?;
        let probe = self.slid(self.symbols.per_cpu_offset);
        let vcpus = caps.vcpus.clamp(1, MAX_CPUS);
        let mut bases = Vec::new();
        for cpu in 0..vcpus as u64 {
            let base = space
                .read_u64(VirtAddr(probe + cpu * 8))
                .map_err(|e| os(LinuxError::Layout(format!("__per_cpu_offset[{cpu}]: {e}"))))?;
            bases.push(base);
        }
        self.read_names(&space);
        self.cpu_bases = bases.clone();
        self.switch_to = layout::symbol_range(&self.syms, "__switch_to")
            .map(|(a, b)| self.slid(a)..self.slid(b));
        self.handler_plan = None;
        self.entry_fallback = None;
        self.ax_watch.clear();
        self.breakpoints_costly = caps.hw_breakpoints.is_none();
        let handlers = match self.plan_handlers(scope, caps.hw_breakpoints) {
            Ok(h) => h,
            Err(why) if self.trap_mode == TrapMode::Handlers => {
                return Err(OsError::Other(format!("cannot trap handlers: {why}")))
            }
            Err(why) => {
                if std::env::var_os("NITRO_DEBUG").is_some() {
                    eprintln!("nitro: debug: trapping the common entry: {why}");
                }
                None
            }
        };
        let entry = self.symbols.entry_syscall_64;
        let exit = self.exit_trap(&space);
        if std::env::var_os("NITRO_DEBUG").is_some() {
            eprintln!(
                "nitro: debug: kstack_offset {:?} key {:?} exit trap {}",
                self.offsets.percpu_kstack_offset,
                self.symbols.randomize_kstack_offset,
                match &exit {
                    ExitTrap::KstackOffset { .. } => "per-CPU kstack_offset write".to_string(),
                    ExitTrap::TssSp0 { .. } => "tss sp0 read".to_string(),
                    ExitTrap::TaskKstack(p) => format!(
                        "per-task kstack_offset write (task+{:#x}; store {:x?}, int80 {:x?}, \
                         fast {:x?})",
                        p.field, p.exit, p.int80, p.fast
                    ),
                }
            );
        }
        self.per_task = match &exit {
            ExitTrap::TaskKstack(p) => Some(p.clone()),
            _ => None,
        };
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
                rip_ranges: std::iter::once(self.slid(entry.0)..self.slid(entry.1)).collect(),
            });
            plan.sites.push(match &exit {
                ExitTrap::TaskKstack(_) => continue,
                ExitTrap::KstackOffset { percpu, text } => TrapSite {
                    addr: base.wrapping_add(*percpu),
                    kind: TrapKind::WriteWatch { len: 4 },
                    direction: Direction::Exit,
                    syscall_kind: SyscallKind::Syscall64,
                    rip_ranges: std::iter::once(text.clone()).collect(),
                },
                ExitTrap::TssSp0 { ranges } => TrapSite {
                    addr: tss + self.offsets.tss_sp0,
                    kind: TrapKind::ReadWatch { len: 8 },
                    direction: Direction::Exit,
                    syscall_kind: SyscallKind::Syscall64,
                    rip_ranges: ranges.clone(),
                },
            });
        }
        // Entry sites first: the exit site's range (all kernel text) also covers the entry.
        plan.sites.sort_by_key(|s| s.direction == Direction::Exit);
        self.base_plan = plan;
        self.plan_dirty = false;
        if let Some((sites, hp)) = handlers {
            let entry = std::mem::replace(&mut self.base_plan, TrapPlan { sites });
            self.entry_fallback = Some((entry, self.per_task.take()));
            self.handler_plan = Some(hp);
            self.handler_window = (0, None);
        }
        Ok(self.full_plan())
    }

    fn take_plan_update(&mut self) -> Option<TrapPlan> {
        if !self.plan_dirty {
            return None;
        }
        self.plan_dirty = false;
        Some(self.full_plan())
    }

    fn on_event(
        &mut self,
        ev: &NitroEvent,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<Option<Syscall>> {
        let space = self.space(mem, &ev.regs);
        self.handler_stop = self.handler_plan.is_some();
        if let Some(hp) = self.handler_plan.clone() {
            return Ok(match ev.direction {
                Direction::Enter if ev.site < hp.sites => self.on_handler_enter(ev, &space),
                Direction::Enter => None,
                Direction::Exit => {
                    let call = self.on_exit(ev, &space);
                    self.handler_exit_done(ev.site, &hp);
                    call
                }
            });
        }
        if ev.strategy == Strategy::LateReport {
            if ev.regs.cpl() == 3 {
                return Ok(self.on_user_observation(ev, mem));
            }
            return Ok(self.on_late_report(ev, &space));
        }
        Ok(match ev.direction {
            _ if self
                .switch_sites
                .as_ref()
                .is_some_and(|r| r.contains(&ev.site)) =>
            {
                self.on_switch(ev, &space);
                None
            }
            Direction::Enter if ev.kind.is_compat() => self.on_compat_enter(ev, &space),
            Direction::Enter => self.on_enter(ev, &space),
            Direction::Exit => self.on_exit(ev, &space),
        })
    }

    fn entry_nr(&self, event: &NitroEvent) -> Option<u64> {
        match event.direction {
            // A handler trap is itself the filter; the number is in memory (orig_ax).
            Direction::Enter if self.handler_plan.is_some() => None,
            Direction::Enter if !event.kind.is_compat() => Some(event.regs.rax),
            _ => None,
        }
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

    fn modify(
        &mut self,
        ev: &NitroEvent,
        call: &mut Syscall,
        change: &nitro_os::CallChange,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<nitro_listener::RegChanges> {
        self.modify_call(ev, call, change, mem)
    }

    fn syscall_table(&self) -> Vec<(u64, String)> {
        let n = self.names.len().max(BUILTIN_TABLE_LEN);
        (0..n as u64).map(|nr| (nr, self.name_of(nr))).collect()
    }
}
