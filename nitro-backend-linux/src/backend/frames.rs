//! Calls QEMU did not report, read back from the task's saved user frame.
//!
//! QEMU 7.2's gdbstub under SMP reports one of several simultaneous watchpoint hits; another
//! vCPU's hit surfaces later at its next access to a watched page, with the old address,
//! and swallows the hit that access made (softmmu/physmem.c `cpu_check_watchpoint`,
//! gdbstub/gdbstub.c `gdb_vm_state_change`). The driver hands such late reports on, and
//! every other vCPU it sees at a stop ([`Strategy::LateReport`]); what a call was is then
//! read from the frame the entry code saved at the top of the task's kernel stack:
//! `orig_ax` is the number of the call (interrupts and exceptions store -1 there,
//! arch/x86/entry/entry_64.S), `ax` is `-ENOSYS` from the entry until the handler returns and
//! the return value after, the arguments stay as the user passed them. The task's
//! `kstack_offset`, rewritten on every return to user mode (CONFIG_RANDOMIZE_KSTACK_OFFSET),
//! tells a return no stop showed from a second report of one already seen.
//!
//! [`Strategy::LateReport`]: nitro_listener::Strategy::LateReport

use std::ops::Range;

use nitro_listener::{NitroEvent, SyscallKind};
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr, VirtRead};
use nitro_os::Syscall;

use super::{raw_args, LinuxBackend, USER_CS};
use crate::{layout::Offsets, modify::ENOSYS, syscalls, task};

/// What a task's saved user frame (`pt_regs`) says.
struct SavedFrame {
    /// Where it is.
    at: u64,
    /// `orig_ax`.
    nr: u64,
    /// The user RIP the call returns to.
    ip: u64,
    ax: u64,
    cs: u64,
    /// rdi, rsi, rdx, r10, r8, r9.
    args: [u64; 6],
}

impl SavedFrame {
    fn read(space: &dyn VirtRead, at: u64, o: &Offsets) -> Option<Self> {
        let field = |off: u64| space.read_u64(VirtAddr(at.wrapping_add(off))).ok();
        Some(SavedFrame {
            at,
            nr: field(o.pt_regs_orig_ax)?,
            ip: field(o.pt_regs_ip)?,
            ax: field(o.pt_regs_ax)?,
            cs: field(o.pt_regs_cs)?,
            args: [
                field(o.pt_regs_di)?,
                field(o.pt_regs_si)?,
                field(o.pt_regs_dx)?,
                field(o.pt_regs_r10)?,
                field(o.pt_regs_r8)?,
                field(o.pt_regs_r9)?,
            ],
        })
    }

    /// A 64-bit system call's frame (not an interrupt's, not a 32-bit call's).
    fn is_syscall64(&self) -> bool {
        self.nr < 1024 && self.cs == USER_CS
    }

    /// The call has not returned from its handler yet.
    fn in_progress(&self) -> bool {
        self.ax == ENOSYS.wrapping_neg()
    }
}

impl LinuxBackend {
    /// Reads the task's `kstack_offset` and remembers it: whether it changed since it was
    /// last read (the task returned to user mode in between). None without a baseline,
    /// without per-task traps, or when it cannot be read.
    pub(super) fn kstack_changed(&mut self, task: u64, space: &dyn VirtRead) -> Option<bool> {
        let pt = self.per_task.as_ref()?;
        let now = space.read_u32(VirtAddr(task.wrapping_add(pt.field))).ok()?;
        self.last_return
            .insert(task, now)
            .map(|before| before != now)
    }

    /// Where the task's saved user frame is: where its last entry put it, or its stack's top.
    fn frame_of(&self, task: u64, space: &dyn VirtRead) -> Option<u64> {
        match self.pt_regs.get(&task) {
            Some(&(p, _)) => Some(p),
            None => {
                let stack = space
                    .read_u64(VirtAddr(task.wrapping_add(self.offsets.task_stack?)))
                    .ok()?;
                Some(stack.wrapping_add(self.stack_delta?))
            }
        }
    }

    /// The task's saved frame when it is a 64-bit system call's and the task is traced as
    /// a 64-bit one.
    fn syscall_frame(
        &self,
        task: u64,
        at: Option<u64>,
        space: &dyn VirtRead,
    ) -> Option<SavedFrame> {
        if !self.watched.contains(&task) || self.compat_tasks.contains(&task) {
            return None;
        }
        let at = match at {
            Some(at) => at,
            None => self.frame_of(task, space)?,
        };
        SavedFrame::read(space, at, &self.offsets).filter(SavedFrame::is_syscall64)
    }

    /// True when `frame` is the task's pending call's: same number, same return address.
    fn is_pending_frame(&self, task: u64, frame: &SavedFrame) -> bool {
        self.pending.get(&task).is_some_and(|p| {
            p.kind == SyscallKind::Syscall64
                && p.nr == frame.nr
                && self.pt_regs.get(&task).map(|x| x.1) == Some(frame.ip)
        })
    }

    /// The call `frame` describes, as at its entry.
    fn entered_from(
        &mut self,
        task: u64,
        frame: &SavedFrame,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Syscall {
        let name = self.name_of(frame.nr);
        let process = self.process_of(space, task);
        let info =
            syscalls::table::info_for_name(&name).or_else(|| syscalls::table::x86_64(frame.nr));
        let args = match info {
            Some(info) => syscalls::decode_enter(info, &frame.args, space, &self.decode),
            None => raw_args(&frame.args),
        };
        let mut call = Syscall::entered(ev, frame.nr, name, process, args, frame.args, task);
        call.kind = SyscallKind::Syscall64;
        self.pt_regs.insert(task, (frame.at, frame.ip));
        call
    }

    /// Completes the pending call from the frame (return value: `ax`).
    fn complete_pending(
        &mut self,
        task: u64,
        ev: &NitroEvent,
        space: &dyn VirtRead,
        note: &str,
    ) -> Option<Syscall> {
        let call = self.pending.remove(&task)?;
        self.stats.exits_from_frame += 1;
        let mut done = self.finish_call(call, task, ev, space);
        done.note = Some(note.into());
        Some(done)
    }

    /// A call neither stop of which was seen, entered and completed from `frame`.
    fn complete_unseen(
        &mut self,
        task: u64,
        frame: &SavedFrame,
        ev: &NitroEvent,
        space: &dyn VirtRead,
        note: &str,
    ) -> Syscall {
        let call = self.entered_from(task, frame, ev, space);
        let mut done = self.finish_call(call, task, ev, space);
        done.note = Some(note.into());
        done
    }

    /// At an exit stop of a task with no call pending: a 64-bit call whose entry stop was
    /// lost, when the frame is a system call's.
    pub(super) fn call_at_exit(
        &mut self,
        task: u64,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Option<Syscall> {
        let frame = self.syscall_frame(task, None, space)?;
        self.stats.entries_from_frame += 1;
        Some(self.complete_unseen(
            task,
            &frame,
            ev,
            space,
            "entry stop not reported: number and arguments read from pt_regs at the return",
        ))
    }

    /// At a 64-bit entry stop, before the new frame is pushed over the old one (only its
    /// `ss` and `sp` are at that point): the task's previous call, when its exit stop was
    /// lost (pending) or both its stops were (`returned` unseen, nothing pending).
    pub(super) fn previous_call_at_entry(
        &mut self,
        task: u64,
        returned: bool,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Option<Syscall> {
        let frame = self.syscall_frame(task, None, space)?;
        if self.is_pending_frame(task, &frame) {
            return self.complete_pending(
                task,
                ev,
                space,
                "exit stop not reported: return value read from pt_regs at the next entry",
            );
        }
        if !returned || self.pending.contains_key(&task) {
            return None;
        }
        self.stats.calls_from_frame += 1;
        Some(self.complete_unseen(
            task,
            &frame,
            ev,
            space,
            "entry and exit stops not reported: read from pt_regs at the next entry",
        ))
    }

    /// A late report, or another vCPU seen in kernel mode: its current task's frame says
    /// * a call under way that is not pending: its entry was lost: recorded now (with a
    ///   warning when the task had also returned unseen: a call may be missing before it);
    /// * past the `kstack_offset` store on the way out: the pending call, or one neither
    ///   stop of which was seen, is completed now;
    /// * anything else is left to the stops still to come.
    pub(super) fn on_late_report(
        &mut self,
        ev: &NitroEvent,
        space: &dyn VirtRead,
    ) -> Option<Syscall> {
        if self.handler_plan.is_some() || ev.regs.cpl() != 0 {
            return None;
        }
        let task = task::current_task(space, ev.regs.gs_base, &self.offsets)?;
        let entering = self.in_syscall_entry(ev, space);
        let frame = self.syscall_frame(task, entering.then_some(ev.regs.rsp), space)?;
        let leaving = !entering && self.in_return_path(ev.regs.rip);
        let returned = self.kstack_changed(task, space).unwrap_or(false);
        let pending = self.pending.contains_key(&task);
        if leaving {
            if self.is_pending_frame(task, &frame) {
                return self.complete_pending(
                    task,
                    ev,
                    space,
                    "exit stop reported late: return value read from pt_regs on the way out",
                );
            }
            if pending || !returned {
                return None;
            }
            self.stats.entries_from_frame += 1;
            return Some(self.complete_unseen(
                task,
                &frame,
                ev,
                space,
                "entry stop not reported, exit reported late: read from pt_regs on the way out",
            ));
        }
        // Under way. With a call pending and no return since, it is that call; with a
        // return since, the pending one returned unseen and this is the next.
        if !frame.in_progress() || (pending && !returned) {
            return None;
        }
        let mut call = self.entered_from(task, &frame, ev, space);
        self.stats.entries_from_frame += 1;
        call.note = Some(if returned && !pending {
            self.stats.possibly_lost += 1;
            "entry stop reported late; the task returned to user mode unseen before it: \
             a call may be missing before this one"
                .into()
        } else {
            "entry stop reported late: number and arguments read from pt_regs".into()
        });
        Some(self.record_entry(call, task))
    }

    /// Another vCPU seen in user mode at a stop: its task's last system call is over and
    /// its frame still describes it. When the task returned unseen since it was last looked
    /// at, that call is completed now, before a later call overwrites the frame.
    pub(super) fn on_user_observation(
        &mut self,
        ev: &NitroEvent,
        mem: &dyn PhysMemory,
    ) -> Option<Syscall> {
        if self.handler_plan.is_some() {
            return None;
        }
        let r = &ev.regs;
        let mode = PagingMode::from_cr4(r.cr4);
        // Under page-table isolation the user half of the PGD pair maps little of the
        // kernel: its kernel half has CR3 bit 12 clear.
        let (space, task) = [r.cr3, r.cr3 & !0x1000].into_iter().find_map(|cr3| {
            let space = AddressSpace::with_mode(mem, PhysAddr(cr3), mode);
            let task = task::current_task(&space, r.k_gs_base, &self.offsets)?;
            Some((space, task))
        })?;
        let frame = self.syscall_frame(task, None, &space)?;
        if !self.kstack_changed(task, &space).unwrap_or(false) {
            return None;
        }
        if self.pending.contains_key(&task) {
            if !self.is_pending_frame(task, &frame) {
                return None;
            }
            return self.complete_pending(
                task,
                ev,
                &space,
                "exit stop not reported: return value read from pt_regs while the task ran in user mode",
            );
        }
        self.stats.calls_from_frame += 1;
        Some(self.complete_unseen(
            task,
            &frame,
            ev,
            &space,
            "entry and exit stops not reported: read from pt_regs while the task ran in user mode",
        ))
    }

    /// True when the vCPU is in `entry_SYSCALL_64_after_hwframe` with the whole frame pushed
    /// (RSP is `pt_regs`, RAX still the number).
    fn in_syscall_entry(&self, ev: &NitroEvent, space: &dyn VirtRead) -> bool {
        let r = &ev.regs;
        let in_code = self
            .syms
            .symbolize(r.rip.wrapping_sub(self.slide as u64))
            .is_some_and(|(n, _)| n == "entry_SYSCALL_64_after_hwframe");
        in_code
            && SavedFrame::read(space, r.rsp, &self.offsets)
                .is_some_and(|f| f.nr == r.rax && f.is_syscall64())
    }

    /// True when `rip` is past the `kstack_offset` store on the way back to user mode: the
    /// code right after the store, or the sysret/iret return code.
    fn in_return_path(&self, rip: u64) -> bool {
        const RETURN_CODE: [&str; 4] = [
            "syscall_return_via_sysret",
            "entry_SYSRETQ_unsafe_stack",
            "entry_SYSRETQ_end",
            "swapgs_restore_regs_and_return_to_usermode",
        ];
        let in_return_code = self
            .syms
            .symbolize(rip.wrapping_sub(self.slide as u64))
            .is_some_and(|(name, _)| RETURN_CODE.contains(&name));
        in_return_code
            || self
                .per_task
                .as_ref()
                .is_some_and(|pt| pt.after_exit.iter().any(|r| r.contains(&rip)))
    }
}

/// The code a vCPU runs after the store at `store`, read from guest memory (as patched at
/// boot): straight-line runs from the instruction after the store, following direct
/// unconditional jumps (the alternatives the kernel patched in) up to 4 times, until a
/// return or an indirect jump; at most 128 bytes per run. Empty when the code cannot be
/// read.
pub(super) fn straight_line_after(space: &dyn VirtRead, store: &Range<u64>) -> Vec<Range<u64>> {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};
    let mut runs = Vec::new();
    // Site ranges run one byte past the instruction (they hold the RIP a watchpoint stop
    // reports, the next instruction's address).
    let mut at = store.end.saturating_sub(1);
    for _ in 0..5 {
        let mut code = [0u8; 128];
        if space.read_virt(VirtAddr(at), &mut code).is_err() {
            break;
        }
        let mut decoder = Decoder::with_ip(64, &code, at, DecoderOptions::NONE);
        let (mut end, mut next) = (at, None);
        while decoder.can_decode() {
            let insn = decoder.decode();
            if insn.is_invalid() {
                break;
            }
            end = insn.next_ip();
            match insn.flow_control() {
                FlowControl::UnconditionalBranch if insn.mnemonic() == Mnemonic::Jmp => {
                    next = Some(insn.near_branch_target());
                    break;
                }
                FlowControl::UnconditionalBranch
                | FlowControl::Return
                | FlowControl::IndirectBranch
                | FlowControl::Interrupt
                | FlowControl::Exception => break,
                _ => {}
            }
        }
        runs.push(at..end);
        match next {
            Some(target) if !runs.iter().any(|r: &Range<u64>| r.contains(&target)) => at = target,
            _ => break,
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use nitro_mem::{MemError, PhysAddr, VirtAddr, VirtRead};

    use super::straight_line_after;

    /// Code bytes at a kernel address; reads that start past them fail, reads that run
    /// past them see int3.
    struct Code(u64, Vec<u8>);

    impl VirtRead for Code {
        fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
            let off = va.0.wrapping_sub(self.0) as usize;
            if off >= self.1.len() {
                return Err(MemError::PhysOutOfRange {
                    addr: PhysAddr(va.0),
                    len: buf.len(),
                });
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.1.get(off + i).copied().unwrap_or(0xcc);
            }
            Ok(())
        }
    }

    #[test]
    fn code_after_the_store_follows_patched_jumps_to_the_return() {
        const BASE: u64 = 0xffff_ffff_8113_7642;
        // mov %ecx,0x1478(%rsi); jmp +0x10 (a patched alternative); 16 bytes skipped;
        // pop %rbx; pop %rbp; pop %r12; ret
        let mut code = vec![0x89, 0x8e, 0x78, 0x14, 0x00, 0x00, 0xeb, 0x10];
        code.extend([0x90; 16]);
        code.extend([0x5b, 0x5d, 0x41, 0x5c, 0xc3]);
        let mem = Code(BASE, code);
        // The site's range runs one byte past the store (it holds the post-access RIP).
        let runs = straight_line_after(&mem, &(BASE..BASE + 7));
        assert_eq!(
            runs,
            vec![BASE + 6..BASE + 8, BASE + 0x18..BASE + 0x1d],
            "{runs:x?}"
        );
    }

    #[test]
    fn unreadable_code_gives_nothing_and_loops_end() {
        let mem = Code(0x1000, vec![0x89, 0x8e, 0x78, 0x14, 0x00, 0x00]);
        assert!(straight_line_after(&mem, &(0x2000..0x2007)).is_empty());
        // jmp to itself: one run, no endless walk.
        let mem = Code(0x1000, vec![0x89, 0x8e, 0x78, 0x14, 0x00, 0x00, 0xeb, 0xfe]);
        assert_eq!(
            straight_line_after(&mem, &(0x1000..0x1007)),
            vec![0x1006..0x1008]
        );
    }
}
