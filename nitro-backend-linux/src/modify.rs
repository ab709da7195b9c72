//! Changing a call from the outside: arguments at entry, skipping a call, its return value.
//!
//! At the entry stop (right after `entry_SYSCALL_64` pushes `pt_regs->sp`, before it saves
//! the other registers) RAX still holds the call number and RDI, RSI, RDX, R10, R8, R9 the
//! arguments (the x86-64 syscall ABI, arch/x86/entry/entry_64.S), so writing those registers
//! changes what the kernel sees. Skipping writes -1 into RAX: `do_syscall_64()` runs nothing
//! for `nr == -1` and leaves `pt_regs->ax` at the `-ENOSYS` the entry code stored
//! (arch/x86/entry/common.c). The return value lives in `pt_regs->ax` until the exit path
//! pops it into RAX; at a stop after that pop (the `cpu_tss_rw.sp0` read in
//! `syscall_return_via_sysret` / `swapgs_restore_regs_and_return_to_usermode`) RAX is
//! written too.

use nitro_listener::{Direction, NitroEvent, Reg, RegChanges, Strategy, SyscallKind};
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr};
use nitro_os::{CallChange, OsError, Syscall};

use crate::{layout::symbol_range, syscalls, LinuxBackend};

/// Argument registers of the 64-bit syscall ABI, in argument order.
const ARG_REGS: [Reg; 6] = [Reg::Rdi, Reg::Rsi, Reg::Rdx, Reg::R10, Reg::R8, Reg::R9];

/// ENOSYS (include/uapi/asm-generic/errno.h).
pub(crate) const ENOSYS: u64 = 38;

/// The kernel's view of memory at a stop in kernel mode: CR3 as it is when it maps the
/// kernel stack, else its kernel half under page-table isolation (CR3 bit 12 clear).
fn kernel_space<'m>(
    mem: &'m dyn PhysMemory,
    r: &nitro_listener::Regs,
) -> AddressSpace<&'m dyn PhysMemory> {
    let mode = PagingMode::from_cr4(r.cr4);
    let space = AddressSpace::with_mode(mem, PhysAddr(r.cr3), mode);
    if space.read_u64(VirtAddr(r.rsp)).is_ok() {
        return space;
    }
    AddressSpace::with_mode(mem, PhysAddr(r.cr3 & !0x1000), mode)
}

fn other(msg: String) -> OsError {
    OsError::Other(msg)
}

impl LinuxBackend {
    /// See [`nitro_os::OsBackend::modify`].
    pub(crate) fn modify_call(
        &mut self,
        ev: &NitroEvent,
        call: &mut Syscall,
        change: &CallChange,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<RegChanges> {
        let mut regs = RegChanges::default();
        if change.is_empty() {
            return Ok(regs);
        }
        if ev.strategy == Strategy::LateReport {
            return Err(other(format!(
                "{}: reported late, the vCPU is past the point where it could be changed",
                call.name
            )));
        }
        if ev.kind != SyscallKind::Syscall64 {
            return Err(other(format!(
                "changing {:?} calls is not supported",
                ev.kind
            )));
        }
        if self.handler_stop {
            return self.modify_at_handler(ev, call, change, mem);
        }
        match ev.direction {
            Direction::Enter => {
                if change.ret.is_some() {
                    return Err(other(
                        "a return value can only be set at the exit stop".into(),
                    ));
                }
                for &(i, v) in &change.args {
                    let reg = ARG_REGS.get(i).ok_or_else(|| {
                        other(format!(
                            "{}: argument {i} does not exist (x86-64 Linux passes at most six, \
                             all in registers)",
                            call.name
                        ))
                    })?;
                    regs.writes.push((*reg, v));
                    if let Some(raw) = call.raw_args.get_mut(i) {
                        *raw = v;
                    }
                }
                if change.skip {
                    regs.writes.push((Reg::Rax, u64::MAX));
                }
            }
            Direction::Exit => {
                exit_change_allowed(change)?;
                if let Some(ret) = change.ret {
                    let known = self.pt_regs.get(&call.task_key).map(|p| p.0);
                    self.write_return(ev, change, known, ret, mem, &mut regs)?;
                    set_return(call, ret);
                }
            }
        }
        Ok(regs)
    }

    /// Changes under handler traps. At the handler's first instruction the arguments are in
    /// the caller's `pt_regs` (RDI), which the handler reads: they are written there.
    /// Skipping emulates the handler returning `-ENOSYS` at once (RAX, then `ret`: RIP from
    /// the stack, RSP + 8); the dispatcher stores that into `pt_regs->ax` and the exit stop
    /// follows, where the return value is written into `pt_regs->ax`.
    fn modify_at_handler(
        &mut self,
        ev: &NitroEvent,
        call: &mut Syscall,
        change: &CallChange,
        mem: &dyn PhysMemory,
    ) -> nitro_os::Result<RegChanges> {
        let mut regs = RegChanges::default();
        let r = &ev.regs;
        let space = kernel_space(mem, r);
        let off = *self.offsets();
        let write = |at: u64, v: u64| -> nitro_os::Result<()> {
            space
                .write_virt(VirtAddr(at), &v.to_le_bytes())
                .map_err(OsError::Memory)
        };
        match ev.direction {
            Direction::Enter => {
                if change.ret.is_some() {
                    return Err(other(
                        "a return value can only be set at the exit stop".into(),
                    ));
                }
                let slots = [
                    off.pt_regs_di,
                    off.pt_regs_si,
                    off.pt_regs_dx,
                    off.pt_regs_r10,
                    off.pt_regs_r8,
                    off.pt_regs_r9,
                ];
                for &(i, v) in &change.args {
                    let slot = slots.get(i).ok_or_else(|| {
                        other(format!(
                            "{}: argument {i} does not exist (x86-64 Linux passes at most six)",
                            call.name
                        ))
                    })?;
                    write(r.rdi.wrapping_add(*slot), v)?;
                    if let Some(raw) = call.raw_args.get_mut(i) {
                        *raw = v;
                    }
                }
                if change.skip {
                    let ret_addr = space.read_u64(VirtAddr(r.rsp)).map_err(OsError::Memory)?;
                    regs.writes.push((Reg::Rax, ENOSYS.wrapping_neg()));
                    regs.writes.push((Reg::Rip, ret_addr));
                    regs.writes.push((Reg::Rsp, r.rsp.wrapping_add(8)));
                }
            }
            Direction::Exit => {
                exit_change_allowed(change)?;
                if let Some(ret) = change.ret {
                    let pt_regs = self
                        .pt_regs
                        .get(&call.task_key)
                        .map(|p| p.0)
                        .or(change.entry_regs.as_ref().map(|e| e.rdi))
                        .ok_or_else(|| {
                            other("the call's saved registers are unknown: cannot change its return value".into())
                        })?;
                    write(pt_regs.wrapping_add(off.pt_regs_ax), ret as u64)?;
                    set_return(call, ret);
                }
            }
        }
        Ok(regs)
    }

    fn write_return(
        &self,
        ev: &NitroEvent,
        change: &CallChange,
        known: Option<u64>,
        ret: i64,
        mem: &dyn PhysMemory,
        regs: &mut RegChanges,
    ) -> nitro_os::Result<()> {
        let off = self.offsets();
        let slide = self.slide() as u64;
        let r = &ev.regs;
        let popped = [
            symbol_range(self.kallsyms(), "syscall_return_via_sysret"),
            symbol_range(
                self.kallsyms(),
                "swapgs_restore_regs_and_return_to_usermode",
            ),
        ]
        .into_iter()
        .flatten()
        .any(|(a, b)| (a.wrapping_add(slide)..b.wrapping_add(slide)).contains(&r.rip));
        // pt_regs: from the entry stop (RSP = &pt_regs->sp there), else at a stop after the
        // pops RDI still points at pt_regs->di (entry_64.S: `movq %rsp, %rdi`).
        let pt_regs = match (&change.entry_regs, popped) {
            _ if known.is_some() => known.unwrap_or_default(),
            (Some(e), _) => e.rsp.wrapping_sub(off.pt_regs_sp),
            (None, true) => r.rdi.wrapping_sub(off.pt_regs_di),
            (None, false) => {
                return Err(other(
                    "the call's entry registers are needed to change its return value".into(),
                ))
            }
        };
        let at = VirtAddr(pt_regs.wrapping_add(off.pt_regs_ax));
        let bytes = ret.to_le_bytes();
        let mode = PagingMode::from_cr4(r.cr4);
        let space = AddressSpace::with_mode(mem, PhysAddr(r.cr3), mode);
        if let Err(first) = space.write_virt(at, &bytes) {
            // Under page-table isolation the user half of the PGD pair maps little of the
            // kernel: try the kernel half (CR3 bit 12 clear).
            let kspace = AddressSpace::with_mode(mem, PhysAddr(r.cr3 & !0x1000), mode);
            kspace
                .write_virt(at, &bytes)
                .map_err(|_| OsError::Memory(first))?;
        }
        if popped {
            regs.writes.push((Reg::Rax, ret as u64));
        }
        Ok(())
    }
}

/// At the exit stop only the return value can change.
fn exit_change_allowed(change: &CallChange) -> nitro_os::Result<()> {
    if change.skip || !change.args.is_empty() {
        return Err(other(
            "arguments and skipping can only be changed at the entry stop".into(),
        ));
    }
    Ok(())
}

/// The record's return value after a hook changed it, formatted as the call's prototype says.
fn set_return(call: &mut Syscall, ret: i64) {
    let info =
        syscalls::table::info_for_name(&call.name).or_else(|| syscalls::table::x86_64(call.nr));
    call.ret = Some(match info {
        Some(info) => syscalls::format_return(info, ret),
        None => nitro_os::ReturnValue::plain(ret),
    });
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::SystemTime};

    use nitro_listener::Regs;
    use nitro_mem::VecMemory;
    use nitro_os::OsBackend;

    use super::*;

    fn backend() -> Option<LinuxBackend> {
        let cache = std::env::var_os("NITRO_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                    .join(".cache/nitro")
            });
        let k = cache.join("guests/debian-6.1/vmlinuz");
        if !k.exists() {
            eprintln!("SKIP: {} missing: run scripts/provision.sh", k.display());
            return None;
        }
        Some(LinuxBackend::from_kernel_file(&k).expect("the provisioned kernel parses"))
    }

    fn event(direction: Direction, regs: Regs) -> NitroEvent {
        NitroEvent {
            vcpu: 0,
            direction,
            kind: SyscallKind::Syscall64,
            regs,
            time: SystemTime::UNIX_EPOCH,
            site: 0,
            strategy: Strategy::Watchpoint,
        }
    }

    fn call(name: &str) -> Syscall {
        Syscall {
            vcpu: 0,
            direction: Direction::Enter,
            kind: SyscallKind::Syscall64,
            cr3: 0,
            rax: 257,
            nr: 257,
            name: name.into(),
            process: Default::default(),
            args: vec![],
            raw_args: [1, 2, 3, 4, 5, 6],
            ret: None,
            enter_time: SystemTime::UNIX_EPOCH,
            exit_time: None,
            strategy: Strategy::Watchpoint,
            unfinished: false,
            note: None,
            task_key: 0,
        }
    }

    #[test]
    fn late_reports_cannot_be_changed() {
        let Some(mut b) = backend() else { return };
        let mem = VecMemory::new(4096);
        let mut ev = event(Direction::Exit, Regs::default());
        ev.strategy = Strategy::LateReport;
        let mut c = call("read");
        let change = CallChange {
            ret: Some(-5),
            ..Default::default()
        };
        let err = b.modify(&ev, &mut c, &change, &mem).unwrap_err();
        assert!(err.to_string().contains("reported late"), "{err}");
        assert_eq!(c.ret, None);
    }

    #[test]
    fn entry_changes_become_register_writes() {
        let Some(mut b) = backend() else { return };
        let mem = VecMemory::new(4096);
        let ev = event(Direction::Enter, Regs::default());
        let mut c = call("openat");
        let change = CallChange {
            args: vec![(1, 0x7000), (3, 9)],
            skip: true,
            ..Default::default()
        };
        let rc = b.modify(&ev, &mut c, &change, &mem).unwrap();
        assert_eq!(
            rc.writes,
            vec![(Reg::Rsi, 0x7000), (Reg::R10, 9), (Reg::Rax, u64::MAX)]
        );
        assert_eq!(c.raw_args, [1, 0x7000, 3, 9, 5, 6]);
        // A seventh argument does not exist; a return value cannot be set at the entry.
        let bad = CallChange {
            args: vec![(6, 1)],
            ..Default::default()
        };
        assert!(b.modify(&ev, &mut c, &bad, &mem).is_err());
        let early = CallChange {
            ret: Some(0),
            ..Default::default()
        };
        assert!(b.modify(&ev, &mut c, &early, &mem).is_err());
        // Nothing to do is no error.
        let none = b.modify(&ev, &mut c, &CallChange::default(), &mem).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn exit_change_needs_a_writable_pt_regs() {
        let Some(mut b) = backend() else { return };
        // Guest memory with no page tables: the write to pt_regs->ax cannot translate, so
        // the change fails with a memory error and nothing is claimed.
        let mem = VecMemory::new(4096);
        let regs = Regs {
            rsp: 0xffff_c900_0000_3f58,
            ..Regs::default()
        };
        let ev = event(Direction::Exit, regs);
        let mut c = call("openat");
        let change = CallChange {
            ret: Some(-2),
            entry_regs: Some(regs),
            ..Default::default()
        };
        let err = b.modify(&ev, &mut c, &change, &mem).unwrap_err();
        assert!(matches!(err, OsError::Memory(_)), "{err}");
        assert!(c.ret.is_none());
        // Without the entry registers, a stop before the pops cannot find pt_regs.
        let blind = CallChange {
            ret: Some(-2),
            ..Default::default()
        };
        assert!(b.modify(&ev, &mut c, &blind, &mem).is_err());
    }
}
