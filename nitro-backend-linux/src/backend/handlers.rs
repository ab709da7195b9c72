//! The trap planner for a filtered trace: instead of the common system-call entry, which
//! stops the guest for every call, an execution trap on each traced call's own handler
//! (`__x64_sys_openat`, `__ia32_compat_sys_openat`...), so that calls nobody asked for never
//! stop the guest.
//!
//! Every handler takes the caller's saved registers, `struct pt_regs *`, in RDI and reads its
//! arguments from there (arch/x86/include/asm/syscall_wrapper.h); the number is
//! `pt_regs->orig_ax`. The dispatcher stores the handler's result with
//! `regs->ax = handler(regs)` (`do_syscall_x64()` / `do_syscall_32_irqs_on()` in
//! arch/x86/entry/common.c, or `x64_sys_call()` since 6.9): a write watchpoint on that one
//! task's `pt_regs->ax`, armed from the entry stop until the exit stop, catches the return
//! of this call only, whatever path the task takes back to user mode.

use std::ops::Range;

use nitro_listener::{Direction, NitroEvent, SyscallKind, TrapKind, TrapPlan, TrapSite};
use nitro_mem::{VirtAddr, VirtRead};
use nitro_os::{Syscall, TraceScope};

use super::{raw_args, LinuxBackend};
use crate::{
    sites,
    syscalls::{self, table},
    task,
};

/// How the backend traps system calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrapMode {
    /// Handler traps for a filtered trace of at most [`MAX_HANDLER_SITES`] handlers, the
    /// common entry otherwise.
    #[default]
    Auto,
    /// The common entry (and exit) of every call, whatever is filtered.
    Entry,
    /// Handler traps whenever the trace is filtered (an error when they cannot be placed).
    Handlers,
}

/// Most handler sites planned in [`TrapMode::Auto`].
pub const MAX_HANDLER_SITES: usize = 64;

/// In [`TrapMode::Auto`] where breakpoints are costly (QEMU TCG: about 3 ms per breakpoint
/// stop against 0.2 ms per watchpoint stop, measured by the `qemu_trace` bench), handler
/// traps are given up for the common entry once this many traced calls come within one
/// second: at that rate the breakpoints cost more than stopping every call would.
pub const MAX_HANDLER_CALLS_PER_SEC: u32 = 64;

/// Functions that store a 64-bit handler's result in `pt_regs->ax` (inlined or not).
const STORE64: [&str; 4] = [
    "do_syscall_64",
    "do_syscall_x64",
    "do_syscall_x32",
    "x64_sys_call",
];
/// Functions that store a 32-bit handler's result.
const STORE32: [&str; 6] = [
    "do_syscall_32_irqs_on",
    "__do_fast_syscall_32",
    "do_fast_syscall_32",
    "do_int80_syscall_32",
    "do_int80_emulation",
    "ia32_sys_call",
];

/// The handler traps of a plan.
#[derive(Debug, Clone)]
pub(super) struct HandlerPlan {
    /// Number of handler sites at the start of the plan.
    pub sites: usize,
    /// Where 64-bit results are stored (the exit watchpoint's RIP ranges).
    pub store64: Vec<Range<u64>>,
    /// Where 32-bit results are stored.
    pub store32: Vec<Range<u64>>,
}

impl LinuxBackend {
    /// The handler sites for `scope`, or why there are none (`Ok(None)`: the trace is not
    /// filtered, or the mode says not to).
    pub(super) fn plan_handlers(
        &self,
        scope: &TraceScope,
        hw_breakpoints: Option<u32>,
    ) -> Result<Option<(Vec<TrapSite>, HandlerPlan)>, String> {
        let Some(names) = scope.syscalls.as_ref().filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        if self.trap_mode == TrapMode::Entry {
            return Ok(None);
        }
        let mut sites: Vec<TrapSite> = Vec::new();
        let mut add = |addr: u64, kind: SyscallKind| {
            if !sites.iter().any(|s| s.addr == addr) {
                sites.push(TrapSite {
                    addr,
                    kind: TrapKind::Execute,
                    direction: Direction::Enter,
                    syscall_kind: kind,
                    rip_ranges: std::iter::once(addr..addr + 1).collect(),
                });
            }
        };
        // 64-bit handlers: the guest's own sys_call_table, entry by entry.
        for (nr, &handler) in self.handlers.iter().enumerate() {
            if handler != 0 && names.contains(&self.name_of(nr as u64)) {
                add(handler, SyscallKind::Syscall64);
            }
        }
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                table::by_name_x86_64(n).is_some_and(|(nr, _)| {
                    self.handlers.get(nr as usize).is_none_or(|&h| h == 0)
                        && self.names.get(nr as usize).is_some_and(Option::is_some)
                })
            })
            .collect();
        if self.handlers.is_empty() || !missing.is_empty() {
            return Err(format!(
                "the guest's sys_call_table gives no handler for {missing:?}"
            ));
        }
        // 32-bit handlers, by symbol (6.x kernels dispatch them through a switch, not a
        // table): `__ia32_sys_NAME` and `__ia32_compat_sys_NAME`.
        for s in self.syms.symbols() {
            if s.is_percpu
                || !(s.name.starts_with("__ia32_sys_") || s.name.starts_with("__ia32_compat_sys_"))
            {
                continue;
            }
            let name = table::strip_symbol_prefix(s.name);
            if !name.is_empty() && names.iter().any(|n| n == name) {
                add(self.slid(s.addr), SyscallKind::Syscall32);
            }
        }
        if sites.is_empty() {
            return Err("no handler of the traced calls is in this kernel".into());
        }
        let limit = hw_breakpoints.map_or(usize::MAX, |n| n as usize);
        if sites.len() > limit {
            return Err(format!(
                "{} handler traps needed, the hypervisor has {limit} breakpoints",
                sites.len()
            ));
        }
        if self.trap_mode == TrapMode::Auto && sites.len() > MAX_HANDLER_SITES {
            return Ok(None);
        }
        let ranges = |names: &[&str]| -> Vec<Range<u64>> {
            let mut out: Vec<Range<u64>> = names
                .iter()
                .flat_map(|n| sites::functions(&self.syms, n))
                .map(|(a, b)| self.slid(a)..self.slid(b))
                .collect();
            out.sort_by_key(|r| r.start);
            out.dedup();
            out
        };
        let plan = HandlerPlan {
            sites: sites.len(),
            store64: ranges(&STORE64),
            store32: ranges(&STORE32),
        };
        if plan.store64.is_empty() {
            return Err("do_syscall_64 is not in kallsyms".into());
        }
        Ok(Some((sites, plan)))
    }

    /// The handler sites plus one exit watchpoint per call in progress.
    pub(super) fn handler_full_plan(&mut self, hp: &HandlerPlan) -> TrapPlan {
        let mut plan = self.base_plan.clone();
        self.ax_sites.clear();
        for (&t, &(pt_regs, compat)) in &self.ax_watch {
            self.ax_sites.push(t);
            plan.sites.push(TrapSite {
                addr: pt_regs.wrapping_add(self.offsets.pt_regs_ax),
                kind: TrapKind::WriteWatch { len: 8 },
                direction: Direction::Exit,
                syscall_kind: if compat {
                    SyscallKind::Syscall32
                } else {
                    SyscallKind::Syscall64
                },
                rip_ranges: if compat {
                    hp.store32.clone()
                } else {
                    hp.store64.clone()
                },
            });
        }
        plan
    }

    /// A stop at a handler's first instruction: the call is read from the `pt_regs` in RDI.
    pub(super) fn on_handler_enter(
        &mut self,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Option<Syscall> {
        let pt_regs = ev.regs.rdi;
        let o = self.offsets;
        let field = |off: u64| {
            space
                .read_u64(VirtAddr(pt_regs.wrapping_add(off)))
                .unwrap_or(0)
        };
        let compat = ev.kind.is_compat();
        let (nr, raw, info) = if compat {
            let nr = field(o.pt_regs_orig_ax) & 0xffff_ffff;
            let raw = [
                o.pt_regs_bx,
                o.pt_regs_cx,
                o.pt_regs_dx,
                o.pt_regs_si,
                o.pt_regs_di,
                o.pt_regs_bp,
            ]
            .map(|off| field(off) & 0xffff_ffff);
            (nr, raw, table::i386(nr))
        } else {
            let nr = field(o.pt_regs_orig_ax);
            let raw = [
                o.pt_regs_di,
                o.pt_regs_si,
                o.pt_regs_dx,
                o.pt_regs_r10,
                o.pt_regs_r8,
                o.pt_regs_r9,
            ]
            .map(field);
            let name = self.name_of(nr);
            (
                nr,
                raw,
                table::info_for_name(&name).or_else(|| table::x86_64(nr)),
            )
        };
        let name = match (compat, info) {
            (true, Some(i)) => i.name.to_string(),
            (true, None) => format!("syscall_{nr}"),
            (false, _) => self.name_of(nr),
        };
        let t = task::current_task(space, ev.regs.gs_base, &o);
        let key = t.unwrap_or(pt_regs);
        let mut process = match t {
            Some(t) => self.process_of(space, t),
            None => Default::default(),
        };
        process.compat = compat;
        let opts = self.options(ev.kind);
        let args = match info {
            Some(info) => syscalls::decode_enter(info, &raw, space, &opts),
            None => raw_args(&raw),
        };
        let mut call = Syscall::entered(ev, nr, name, process, args, raw, key);
        call.rax = nr;
        self.pt_regs.insert(key, (pt_regs, field(o.pt_regs_ip)));
        let call = self.record_entry(call, key);
        if self.pending.contains_key(&key) {
            self.ax_watch.insert(key, (pt_regs, compat));
            self.plan_dirty = true;
        }
        if self.too_frequent(ev.time) {
            self.leave_handlers();
        }
        Some(call)
    }

    /// Counts a handler entry at `time`; true when the traced calls come too often for
    /// breakpoints (see [`MAX_HANDLER_CALLS_PER_SEC`]).
    fn too_frequent(&mut self, time: std::time::SystemTime) -> bool {
        if self.trap_mode != TrapMode::Auto || !self.breakpoints_costly {
            return false;
        }
        let (n, start) = &mut self.handler_window;
        let fresh = start.is_none_or(|s| {
            time.duration_since(s)
                .map_or(true, |d| d > std::time::Duration::from_secs(1))
        });
        if fresh {
            *n = 0;
            *start = Some(time);
        }
        *n += 1;
        *n > MAX_HANDLER_CALLS_PER_SEC
    }

    /// Switches to the common-entry plan kept aside: calls in progress are finished by its
    /// exit traps (their `pt_regs` are known).
    pub(super) fn leave_handlers(&mut self) {
        let Some((entry, per_task)) = self.entry_fallback.take() else {
            return;
        };
        if std::env::var_os("NITRO_DEBUG").is_some() {
            eprintln!("nitro: debug: traced calls too frequent for breakpoints: trapping the common entry");
        }
        self.base_plan = entry;
        self.per_task = per_task;
        self.handler_plan = None;
        self.ax_sites.clear();
        for t in std::mem::take(&mut self.ax_watch).into_keys() {
            self.watch_task(t);
        }
        self.stats.handler_fallbacks += 1;
        self.plan_dirty = true;
    }

    /// After an exit stop at the watchpoint of plan site `site`: the watchpoint goes once
    /// its task has no call in progress.
    pub(super) fn handler_exit_done(&mut self, site: usize, hp: &HandlerPlan) {
        let Some(&t) = site
            .checked_sub(hp.sites)
            .and_then(|i| self.ax_sites.get(i))
        else {
            return;
        };
        if !self.pending.contains_key(&t) && self.ax_watch.remove(&t).is_some() {
            self.plan_dirty = true;
        }
    }
}
