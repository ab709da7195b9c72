//! One vCPU: run until something worth reporting, with registers from `sync_regs`.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use kvm_bindings::{
    kvm_guest_debug, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use nitro_sys::x86;

use super::{
    emulate::{self, EmulateError},
    memory::GuestRam,
    plan::{ArmedPlan, ArmedSite, Fallback, Resume},
    port::{PortAction, PortIo},
    KvmError,
};
use crate::{Reg, RegChanges, Regs};

/// IA32_KERNEL_GS_BASE (Intel SDM 4, table 2-2): not part of `kvm_sregs`.
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Why [`KvmVcpu::run`] returned.
///
/// Returned by value on the trap path: boxing the registers would add an allocation per trap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// The vCPU stopped at an armed site; the next `run` steps over it.
    Trap {
        /// The armed site.
        site: ArmedSite,
        /// Registers at the stop.
        regs: Regs,
    },
    /// An `out` that the [`PortIo`] handler asked to stop on.
    PortOut {
        /// The port.
        port: u16,
        /// The value written (little-endian, up to 8 bytes).
        value: u64,
    },
    /// The guest executed `hlt` (or asked the [`PortIo`] handler to power off).
    Halted,
    /// A stop requested with [`VcpuKicker::request_stop`] took effect.
    Interrupted,
    /// A debug exit that belongs to no armed site.
    Spurious {
        /// Guest RIP.
        rip: u64,
    },
}

/// Interrupts a vCPU running on another thread.
#[derive(Debug, Clone)]
pub struct VcpuKicker {
    stop: Arc<AtomicBool>,
}

impl VcpuKicker {
    /// Asks the vCPU to return [`VcpuStop::Interrupted`] at its next exit. The owner of the
    /// thread must still break `KVM_RUN` with a signal (see `KvmDriver::interrupt`).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Withdraws a stop request.
    pub fn clear(&self) {
        self.stop.store(false, Ordering::SeqCst);
    }
}

/// A vCPU with `sync_regs` enabled (registers and special registers come back in the shared
/// `kvm_run` page on every exit: no `KVM_GET_REGS`/`KVM_GET_SREGS` ioctl per trap).
#[derive(Debug)]
pub struct KvmVcpu {
    index: u32,
    fd: VcpuFd,
    plan: Arc<ArmedPlan>,
    /// The site the vCPU is stopped at (to be stepped over by the next run).
    stopped_at: Option<ArmedSite>,
    port_io: Arc<dyn PortIo>,
    stop: Arc<AtomicBool>,
    read_kernel_gs_base: bool,
    /// Guest RAM, for emulated memory accesses (after `fd`: the vCPU is closed first).
    memory: Arc<GuestRam>,
    /// Stops at emulable sites that were left to the guest, and the last reason.
    fallbacks: u64,
    last_refusal: Option<EmulateError>,
}

impl KvmVcpu {
    /// Wraps a vCPU fd and enables `sync_regs` for registers and special registers. `memory`
    /// is the VM's RAM (emulated instructions read and write it).
    pub fn new(
        index: u32,
        mut fd: VcpuFd,
        port_io: Arc<dyn PortIo>,
        memory: Arc<GuestRam>,
    ) -> Self {
        fd.set_sync_valid_reg(SyncReg::Register);
        fd.set_sync_valid_reg(SyncReg::SystemRegister);
        KvmVcpu {
            index,
            fd,
            plan: Arc::new(ArmedPlan::empty()),
            stopped_at: None,
            port_io,
            stop: Arc::new(AtomicBool::new(false)),
            read_kernel_gs_base: false,
            memory,
            fallbacks: 0,
            last_refusal: None,
        }
    }

    /// How many stops at [`Resume::Emulate`] sites were not emulated (the guest executed the
    /// instruction itself, see [`super::emulate`]), and why the last one was not.
    pub fn emulation_fallbacks(&self) -> (u64, Option<&EmulateError>) {
        (self.fallbacks, self.last_refusal.as_ref())
    }

    /// vCPU index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The underlying kvm-ioctls vCPU.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// A handle that can ask this vCPU to stop from another thread.
    pub fn kicker(&self) -> VcpuKicker {
        VcpuKicker {
            stop: Arc::clone(&self.stop),
        }
    }

    /// Replaces the port handler.
    pub fn set_port_io(&mut self, port_io: Arc<dyn PortIo>) {
        self.port_io = port_io;
    }

    /// Also read IA32_KERNEL_GS_BASE at each trap (one `KVM_GET_MSRS` ioctl per trap; it is
    /// not part of `sync_regs`). Off by default: `Regs::k_gs_base` is then 0.
    pub fn set_read_kernel_gs_base(&mut self, on: bool) {
        self.read_kernel_gs_base = on;
    }

    /// Arms `plan` on this vCPU (`KVM_SET_GUEST_DEBUG`).
    pub fn arm(&mut self, plan: Arc<ArmedPlan>) -> Result<(), KvmError> {
        self.fd
            .set_guest_debug(plan.debug())
            .map_err(|e| KvmError::ioctl("KVM_SET_GUEST_DEBUG", e))?;
        // A stop at a site of the old plan is still stepped over with the old strategy.
        self.plan = plan;
        Ok(())
    }

    /// Writes the initial registers (used before the first run).
    pub fn set_initial_state(
        &mut self,
        regs: &kvm_regs,
        sregs: &kvm_sregs,
    ) -> Result<(), KvmError> {
        self.fd
            .set_sregs(sregs)
            .map_err(|e| KvmError::ioctl("KVM_SET_SREGS", e))?;
        self.fd
            .set_regs(regs)
            .map_err(|e| KvmError::ioctl("KVM_SET_REGS", e))?;
        // Prime the sync area so `regs()` is right before the first exit.
        let s = self.fd.sync_regs_mut();
        s.regs = *regs;
        s.sregs = *sregs;
        Ok(())
    }

    /// Registers as of the last exit (from the `kvm_run` page: no ioctl).
    pub fn regs(&mut self) -> Regs {
        let s = self.fd.sync_regs_mut();
        to_regs(&s.regs, &s.sregs)
    }

    /// Applies register changes; they reach the guest at the next run (no ioctl, except an
    /// MSR write for `KernelGsBase`).
    pub fn apply(&mut self, changes: &RegChanges) -> Result<(), KvmError> {
        let (mut regs_dirty, mut sregs_dirty) = (false, false);
        for &(reg, value) in &changes.writes {
            let s = self.fd.sync_regs_mut();
            match reg {
                Reg::GsBase => {
                    s.sregs.gs.base = value;
                    sregs_dirty = true;
                }
                Reg::KernelGsBase => {
                    let msrs = Msrs::from_entries(&[kvm_msr_entry {
                        index: MSR_KERNEL_GS_BASE,
                        data: value,
                        ..Default::default()
                    }])
                    .map_err(|_| KvmError::Layout("MSR list".into()))?;
                    self.fd
                        .set_msrs(&msrs)
                        .map_err(|e| KvmError::ioctl("KVM_SET_MSRS", e))?;
                }
                _ => {
                    if let Some(slot) = gpr_mut(&mut s.regs, reg) {
                        *slot = value;
                        regs_dirty = true;
                    }
                }
            }
        }
        if regs_dirty {
            self.fd.set_sync_dirty_reg(SyncReg::Register);
        }
        if sregs_dirty {
            self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
        }
        Ok(())
    }

    /// Runs the vCPU until a stop to report. A vCPU stopped at an armed site is first moved
    /// past it with the site's [`Resume`] strategy (unless a handler changed RIP).
    pub fn run(&mut self) -> Result<VcpuStop, KvmError> {
        if let Some(site) = self.stopped_at.take() {
            self.step_over(site)?;
        }
        loop {
            if self.stop.swap(false, Ordering::SeqCst) {
                return Ok(VcpuStop::Interrupted);
            }
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(KvmError::ioctl("KVM_RUN", e)),
            };
            match exit {
                VcpuExit::Debug(arch) => {
                    let Some(site) = self.plan.classify(arch.dr6, arch.pc) else {
                        return Ok(VcpuStop::Spurious { rip: arch.pc });
                    };
                    if site.resume != Resume::Nothing {
                        self.stopped_at = Some(site);
                    }
                    let mut regs = self.regs();
                    if self.read_kernel_gs_base {
                        regs.k_gs_base = self.kernel_gs_base()?;
                    }
                    return Ok(VcpuStop::Trap { site, regs });
                }
                VcpuExit::IoOut(port, data) => match self.port_io.out(self.index, port, data) {
                    PortAction::Continue => {}
                    PortAction::Stop => {
                        let mut v = [0u8; 8];
                        let n = data.len().min(8);
                        v[..n].copy_from_slice(&data[..n]);
                        let value = u64::from_le_bytes(v);
                        return Ok(VcpuStop::PortOut { port, value });
                    }
                    PortAction::EndGuest => return Ok(VcpuStop::Halted),
                },
                VcpuExit::IoIn(port, data) => self.port_io.input(self.index, port, data),
                VcpuExit::MmioRead(_, data) => data.fill(0xff),
                VcpuExit::MmioWrite(..) | VcpuExit::IrqWindowOpen | VcpuExit::Intr => {}
                VcpuExit::Hlt => return Ok(VcpuStop::Halted),
                other => {
                    let why = format!("{other:?}");
                    let rip = self.fd.sync_regs_mut().regs.rip;
                    return Err(KvmError::GuestCannotRun {
                        vcpu: self.index,
                        why,
                        rip,
                    });
                }
            }
        }
    }

    /// Moves the vCPU past the site it stopped at.
    fn step_over(&mut self, site: ArmedSite) -> Result<(), KvmError> {
        let s = self.fd.sync_regs_mut();
        if s.regs.rip != site.addr {
            return Ok(()); // a handler moved RIP: nothing to step over
        }
        match site.resume {
            Resume::Nothing => {}
            Resume::ResumeFlag => {
                s.regs.rflags |= x86::RFLAGS_RF;
                self.fd.set_sync_dirty_reg(SyncReg::Register);
            }
            Resume::Emulate { len, op, fallback } => {
                let watches = self.plan.watches();
                let done = emulate::execute(
                    &op,
                    len,
                    site.addr,
                    &mut s.regs,
                    &s.sregs,
                    &self.memory,
                    watches,
                );
                match done {
                    Ok(()) => self.fd.set_sync_dirty_reg(SyncReg::Register),
                    Err(e) => {
                        let own_address = e.needs_own_address();
                        self.fallbacks += 1;
                        self.last_refusal = Some(e);
                        match fallback {
                            Fallback::ResumeFlag => {
                                s.regs.rflags |= x86::RFLAGS_RF;
                                self.fd.set_sync_dirty_reg(SyncReg::Register);
                            }
                            Fallback::Step { slot: Some(slot) } if !own_address => {
                                s.regs.rip = slot;
                                self.fd.set_sync_dirty_reg(SyncReg::Register);
                            }
                            Fallback::Step { .. } => self.single_step()?,
                        }
                    }
                }
            }
            Resume::OutOfLine { slot } => {
                s.regs.rip = slot;
                self.fd.set_sync_dirty_reg(SyncReg::Register);
            }
            Resume::Step => self.single_step()?,
        }
        Ok(())
    }

    /// Executes one instruction with breakpoints lifted, then re-arms them.
    fn single_step(&mut self) -> Result<(), KvmError> {
        let step = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
            ..Default::default()
        };
        self.fd
            .set_guest_debug(&step)
            .map_err(|e| KvmError::ioctl("KVM_SET_GUEST_DEBUG", e))?;
        let result = loop {
            match self.fd.run() {
                Ok(VcpuExit::Debug(_)) => break Ok(()),
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.port_io.out(self.index, port, data);
                }
                Ok(VcpuExit::IoIn(port, data)) => self.port_io.input(self.index, port, data),
                // An instruction touching MMIO exits before it completes (as in `run`).
                Ok(VcpuExit::MmioRead(_, data)) => data.fill(0xff),
                Ok(VcpuExit::MmioWrite(..) | VcpuExit::IrqWindowOpen | VcpuExit::Intr) => {}
                Ok(VcpuExit::Hlt) => break Ok(()),
                Ok(other) => {
                    let why = format!("{other:?} while single-stepping");
                    let rip = self.fd.sync_regs_mut().regs.rip;
                    break Err(KvmError::GuestCannotRun {
                        vcpu: self.index,
                        why,
                        rip,
                    });
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => break Err(KvmError::ioctl("KVM_RUN", e)),
            }
        };
        self.fd
            .set_guest_debug(self.plan.debug())
            .map_err(|e| KvmError::ioctl("KVM_SET_GUEST_DEBUG", e))?;
        result
    }

    fn kernel_gs_base(&self) -> Result<u64, KvmError> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_KERNEL_GS_BASE,
            ..Default::default()
        }])
        .map_err(|_| KvmError::Layout("MSR list".into()))?;
        self.fd
            .get_msrs(&mut msrs)
            .map_err(|e| KvmError::ioctl("KVM_GET_MSRS", e))?;
        Ok(msrs.as_slice().first().map_or(0, |m| m.data))
    }
}

/// The `kvm_regs` field of `reg`; `None` for registers kept elsewhere (segment bases, MSRs).
fn gpr_mut(r: &mut kvm_regs, reg: Reg) -> Option<&mut u64> {
    Some(match reg {
        Reg::Rax => &mut r.rax,
        Reg::Rbx => &mut r.rbx,
        Reg::Rcx => &mut r.rcx,
        Reg::Rdx => &mut r.rdx,
        Reg::Rsi => &mut r.rsi,
        Reg::Rdi => &mut r.rdi,
        Reg::Rbp => &mut r.rbp,
        Reg::Rsp => &mut r.rsp,
        Reg::R8 => &mut r.r8,
        Reg::R9 => &mut r.r9,
        Reg::R10 => &mut r.r10,
        Reg::R11 => &mut r.r11,
        Reg::R12 => &mut r.r12,
        Reg::R13 => &mut r.r13,
        Reg::R14 => &mut r.r14,
        Reg::R15 => &mut r.r15,
        Reg::Rip => &mut r.rip,
        Reg::Rflags => &mut r.rflags,
        Reg::GsBase | Reg::KernelGsBase => return None,
    })
}

/// Converts KVM's register structures into nitro's [`Regs`].
pub fn to_regs(r: &kvm_regs, s: &kvm_sregs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rbp: r.rbp,
        rsp: r.rsp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
        cs: s.cs.selector.into(),
        ss: s.ss.selector.into(),
        ds: s.ds.selector.into(),
        es: s.es.selector.into(),
        fs: s.fs.selector.into(),
        gs: s.gs.selector.into(),
        fs_base: s.fs.base,
        gs_base: s.gs.base,
        k_gs_base: 0,
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
    }
}
