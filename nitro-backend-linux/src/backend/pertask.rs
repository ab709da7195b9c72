//! Per-task traps (a watchpoint on each traced task's `kstack_offset`), 32-bit entries seen
//! through them, and process attribution (executable path cached per address space).

use nitro_listener::{Direction, NitroEvent, SyscallKind, TrapKind, TrapPlan, TrapSite};
use nitro_mem::{VirtAddr, VirtRead};
use nitro_os::{Process, Syscall};

use super::{raw_args, LinuxBackend, MAX_WATCHED};
use crate::{
    syscalls::{self, DecodeOptions, SyscallInfo},
    task,
};

/// Most address spaces whose executable path is remembered.
const MAX_EXE_CACHE: usize = 4096;

/// The prototype of a recorded call: by number in the i386 table for 32-bit calls (numbers
/// and prototypes differ), by name then number for 64-bit ones.
pub(super) fn info_of(call: &Syscall) -> Option<&'static SyscallInfo> {
    if call.kind.is_compat() {
        return syscalls::table::i386(call.nr);
    }
    syscalls::table::info_for_name(&call.name).or_else(|| syscalls::table::x86_64(call.nr))
}

impl LinuxBackend {
    /// The per-CPU sites plus one exit watchpoint per watched task, and one compat-entry
    /// watchpoint per task running 32-bit code.
    pub(super) fn full_plan(&mut self) -> TrapPlan {
        if let Some(hp) = self.handler_plan.clone() {
            return self.handler_full_plan(&hp);
        }
        let mut plan = self.base_plan.clone();
        self.switch_sites = None;
        let Some(pt) = &self.per_task else {
            return plan;
        };
        // While 32-bit tasks run, every context switch is watched (the per-CPU current-task
        // pointer that `__switch_to` writes), so that their children, which make no 64-bit
        // call to be discovered by, are found when they first run.
        if let (false, Some(text)) = (self.compat_tasks.is_empty(), &self.switch_to) {
            let first = plan.sites.len();
            for &base in &self.cpu_bases {
                plan.sites.push(TrapSite {
                    addr: base.wrapping_add(self.offsets.percpu_current_task),
                    kind: TrapKind::WriteWatch { len: 8 },
                    direction: Direction::Exit,
                    syscall_kind: SyscallKind::Syscall32,
                    rip_ranges: vec![text.clone()],
                });
            }
            self.switch_sites = Some(first..plan.sites.len());
        }
        for &t in &self.compat_tasks {
            let addr = t.wrapping_add(pt.field);
            for (ranges, kind) in [
                (&pt.int80, SyscallKind::Int80),
                (&pt.fast, SyscallKind::Syscall32),
            ] {
                if ranges.is_empty() {
                    continue;
                }
                plan.sites.push(TrapSite {
                    addr,
                    kind: TrapKind::ReadWatch { len: 4 },
                    direction: Direction::Enter,
                    syscall_kind: kind,
                    rip_ranges: ranges.clone(),
                });
            }
        }
        for &t in &self.watched {
            plan.sites.push(TrapSite {
                addr: t.wrapping_add(pt.field),
                kind: TrapKind::WriteWatch { len: 4 },
                direction: Direction::Exit,
                syscall_kind: SyscallKind::Syscall64,
                rip_ranges: pt.exit.clone(),
            });
        }
        plan
    }

    /// Gives `task` its exit watchpoint (from the next resume on).
    pub(super) fn watch_task(&mut self, task: u64) {
        if self.per_task.is_some() && self.watched.len() < MAX_WATCHED && self.watched.insert(task)
        {
            self.plan_dirty = true;
        }
    }

    /// Drops the watchpoints of a task that is exiting (its `task_struct` will be freed or
    /// reused; a task reusing it is watched again when first seen).
    pub(super) fn unwatch_task(&mut self, task: u64) {
        self.pt_regs.remove(&task);
        self.last_return.remove(&task);
        let a = self.watched.remove(&task);
        let b = self.compat_tasks.remove(&task);
        let c = self.ax_watch.remove(&task).is_some();
        self.plan_dirty |= a || b || c;
    }

    /// A context switch while 32-bit tasks run: a task not seen before whose saved user
    /// code segment is `__USER32_CS` gets its watchpoints.
    pub(super) fn on_switch(&mut self, ev: &NitroEvent, space: &dyn VirtRead) {
        let (Some(delta), Some(stack_off)) = (self.stack_delta, self.offsets.task_stack) else {
            return;
        };
        let Some(t) = task::current_task(space, ev.regs.gs_base, &self.offsets) else {
            return;
        };
        if self.watched.contains(&t) {
            return;
        }
        let Ok(stack) = space.read_u64(VirtAddr(t.wrapping_add(stack_off))) else {
            return;
        };
        let pt_regs = stack.wrapping_add(delta);
        let cs = space
            .read_u64(VirtAddr(pt_regs.wrapping_add(self.offsets.pt_regs_cs)))
            .unwrap_or(0);
        if cs == super::USER32_CS {
            let ip = space
                .read_u64(VirtAddr(pt_regs.wrapping_add(self.offsets.pt_regs_ip)))
                .unwrap_or(0);
            self.pt_regs.insert(t, (pt_regs, ip));
            self.watch_task(t);
            self.set_compat(t, true);
        }
    }

    /// Records whether `task` now runs 32-bit code (seen after an execve).
    pub(super) fn set_compat(&mut self, task: u64, compat: bool) {
        if self.per_task.is_none() || !self.watched.contains(&task) {
            return;
        }
        let changed = if compat {
            self.compat_tasks.insert(task)
        } else {
            self.compat_tasks.remove(&task)
        };
        self.plan_dirty |= changed;
    }

    /// Decoding options for a call made through `kind`.
    pub(super) fn options(&self, kind: SyscallKind) -> DecodeOptions {
        let mut o = self.decode.clone();
        o.compat = kind.is_compat();
        o
    }

    /// pid, tid, ppid, comm and executable of `task`.
    pub(super) fn process_of(&mut self, space: &dyn VirtRead, t: u64) -> Process {
        let mut p = task::process(space, t, &self.offsets);
        p.exe = self.exe_of(space, t);
        p
    }

    /// The executable path of `task`, walked once per `mm_struct`.
    pub(super) fn exe_of(&mut self, space: &dyn VirtRead, t: u64) -> Option<String> {
        let mm = space
            .read_u64(VirtAddr(t.wrapping_add(self.offsets.task_mm)))
            .ok()
            .filter(|&m| m != 0)?;
        // The same mm address may come back for another process after this one exits: the
        // cache is keyed by mm and its exe_file pointer together.
        let file = self
            .offsets
            .mm_exe_file
            .and_then(|o| space.read_u64(VirtAddr(mm.wrapping_add(o))).ok())
            .unwrap_or(0);
        let key = mm ^ file.rotate_left(32);
        if let Some(hit) = self.exe_cache.get(&key) {
            return hit.clone();
        }
        let path = task::exe_path(space, t, &self.offsets);
        if self.exe_cache.len() >= MAX_EXE_CACHE {
            self.exe_cache.clear();
        }
        self.exe_cache.insert(key, path.clone());
        path
    }

    /// A 32-bit entry, stopped at `add_random_kstack_offset()`'s read of the task's
    /// `kstack_offset` in `do_int80_emulation()` or `__do_fast_syscall_32()`. The call is
    /// read from the task's pt_regs: the number in `orig_ax` (fast path) or `ax` (int 0x80
    /// emulation, which has not copied it yet: arch/x86/entry/common.c), the arguments in
    /// ebx, ecx, edx, esi, edi, ebp (arch/x86/entry/entry_64_compat.S).
    pub(super) fn on_compat_enter(
        &mut self,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Option<Syscall> {
        let r = &ev.regs;
        let t = task::current_task(space, r.gs_base, &self.offsets)?;
        let pt_regs = self.pt_regs.get(&t).map(|p| p.0)?;
        let o = self.offsets;
        let field = |off: u64| {
            space
                .read_u64(VirtAddr(pt_regs.wrapping_add(off)))
                .unwrap_or(0)
        };
        let orig = field(o.pt_regs_orig_ax);
        let nr = if orig as i64 == -1 {
            field(o.pt_regs_ax)
        } else {
            orig
        } & 0xffff_ffff;
        let mut raw = [
            field(o.pt_regs_bx),
            field(o.pt_regs_cx),
            field(o.pt_regs_dx),
            field(o.pt_regs_si),
            field(o.pt_regs_di),
            field(o.pt_regs_bp),
        ]
        .map(|v| v & 0xffff_ffff);
        if ev.kind != SyscallKind::Int80 {
            // The vDSO's fast path keeps ebp (the sixth argument) on the user stack and passes
            // ecx in ebp; the kernel fetches it after this point (__do_fast_syscall_32).
            let sp = field(o.pt_regs_sp) & 0xffff_ffff;
            raw[5] = space.read_u32(VirtAddr(sp)).map(u64::from).unwrap_or(0);
        }
        let name = syscalls::table::i386(nr)
            .map(|i| i.name.to_string())
            .unwrap_or_else(|| format!("syscall_{nr}"));
        let mut process = self.process_of(space, t);
        process.compat = true;
        let opts = self.options(ev.kind);
        let args = match syscalls::table::i386(nr) {
            Some(info) => syscalls::decode_enter(info, &raw, space, &opts),
            None => raw_args(&raw),
        };
        // RAX holds the number read from pt_regs (compat entries stop later than RAX is live).
        let mut call = Syscall::entered(ev, nr, name, process, args, raw, t);
        call.rax = nr;
        // The user return address, to tell a signal handler's redirection at the exit.
        let ip = field(o.pt_regs_ip);
        self.pt_regs.insert(t, (pt_regs, ip));
        Some(self.record_entry(call, t))
    }
}
