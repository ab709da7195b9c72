//! [`KvmDriver`]: one thread per vCPU, events merged into one stream.

use std::{
    collections::VecDeque,
    os::unix::thread::JoinHandleExt,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
        Arc, Once,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use kvm_ioctls::{Kvm, VmFd};
use nitro_mem::PhysMemory;

use super::{
    memory::GuestRam,
    plan::{ArmedPlan, ArmedSite, Scratch},
    port::PortIo,
    probe::probe_resume_flag,
    vm::{prepare_plan, KvmVm, SyntheticGuest, KVM_PATH},
    KvmError, KvmVcpu, VcpuKicker, VcpuStop,
};
use crate::{
    Capabilities, Driver, DriverEvent, ListenerError, NitroEvent, RegChanges, Regs, Result,
    TrapPlan,
};

/// How long either side of the vCPU hand-off polls before it sleeps (see
/// [`KvmDriver::set_spin`]).
const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// How long `interrupt` waits for a vCPU to leave `KVM_RUN`.
const INTERRUPT_TIMEOUT: Duration = Duration::from_secs(5);

enum Cmd {
    Run(RegChanges),
    Arm(Arc<ArmedPlan>),
    SetPortIo(Arc<dyn PortIo>),
    ReadKernelGsBase(bool),
    SetSpin(Duration),
}

enum MsgKind {
    Trap {
        site: ArmedSite,
        regs: Regs,
        time: SystemTime,
    },
    Spurious {
        rip: u64,
        regs: Regs,
    },
    Halted(Regs),
    Interrupted(Regs),
    Failed(KvmError),
    Ack(std::result::Result<(), KvmError>),
}

struct Msg {
    vcpu: u32,
    kind: MsgKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a command; resumed by `resume`.
    Stopped,
    /// Stopped with an event not yet returned by `next_event`.
    Queued,
    Running,
    Halted,
    Failed,
}

#[derive(Debug)]
struct VcpuThread {
    tx: Sender<Cmd>,
    handle: Option<JoinHandle<()>>,
    kicker: VcpuKicker,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Run(_) => "Run",
            Cmd::Arm(_) => "Arm",
            Cmd::SetPortIo(_) => "SetPortIo",
            Cmd::ReadKernelGsBase(_) => "ReadKernelGsBase",
            Cmd::SetSpin(_) => "SetSpin",
        })
    }
}

/// The in-process KVM driver: nitro runs the VM itself and traps with hardware breakpoints.
///
/// * Traps: up to four [`crate::TrapKind::Execute`] sites (or data watchpoints) in DR0-DR3
///   through `KVM_SET_GUEST_DEBUG`.
/// * Registers: from `sync_regs` in the shared `kvm_run` page (no ioctl per trap); changes
///   are written back the same way on resume.
/// * Resume: RFLAGS.RF where the host honours it (probed once per process), else an
///   out-of-line copy of the trapped instruction in a scratch area, else single-step. The
///   strategy used is reported in each event.
/// * Threads: one per vCPU, each running `KVM_RUN` in a loop; events of all vCPUs arrive on
///   one channel. Only the vCPU that trapped stops: the others run on (non-stop mode), and
///   [`Driver::resume`] resumes the vCPU of the last event (plus any stopped by
///   [`Driver::interrupt`]); a vCPU whose event is still queued stays stopped until that event
///   has been returned and resumed.
///
/// ```no_run
/// use nitro_listener::{kvm::KvmDriver, Driver, DriverEvent};
/// // 0x10000: hlt
/// let mut driver = KvmDriver::new_synthetic(&[0xf4], 0x10000, 0x10000, 1, 1 << 20).unwrap();
/// driver.resume().unwrap();
/// assert!(matches!(driver.next_event().unwrap(), DriverEvent::GuestEnded { .. }));
/// ```
#[derive(Debug)]
pub struct KvmDriver {
    threads: Vec<VcpuThread>,
    rx: Receiver<Msg>,
    pending: VecDeque<DriverEvent>,
    states: Vec<State>,
    regs: Vec<Regs>,
    current: Option<u32>,
    changes: RegChanges,
    plan: TrapPlan,
    armed: Arc<ArmedPlan>,
    rf_honoured: bool,
    timeout: Option<Duration>,
    spin: Duration,
    // Closed after the vCPU threads (and their fds) are gone, before the memory is unmapped.
    _vm: VmFd,
    _kvm: Kvm,
    memory: Arc<GuestRam>,
    scratch: Option<Scratch>,
    cr3: u64,
}

impl KvmDriver {
    /// A synthetic ring-0 long-mode guest (see [`super::vm`] for the layout) on `/dev/kvm`.
    ///
    /// # Arguments
    /// * `code`: machine code loaded at `load_gpa` (at least `0x8000`);
    /// * `entry`: where every vCPU starts (`rdi` = vCPU index, `rsi` = vCPU count);
    /// * `vcpus`: number of vCPUs; `memory_size`: RAM bytes (4 KiB multiple, at most 1 GiB).
    pub fn new_synthetic(
        code: &[u8],
        load_gpa: u64,
        entry: u64,
        vcpus: u32,
        memory_size: u64,
    ) -> std::result::Result<Self, KvmError> {
        let guest = SyntheticGuest {
            code,
            load_gpa,
            entry,
            vcpus,
            memory_size,
        };
        Self::from_vm(KvmVm::synthetic(&guest)?)
    }

    /// A one-vCPU VM booting a Linux bzImage with its serial console on `console`.
    ///
    /// **Not verified on a running kernel**: see [`super::linux`]. Meant for VMX/SVM hosts.
    pub fn new_linux(
        guest: &super::LinuxGuest<'_>,
        console: Box<dyn std::io::Write + Send>,
    ) -> std::result::Result<Self, KvmError> {
        Self::from_vm(KvmVm::linux(guest, console)?)
    }

    /// Takes over a prepared VM: probes the resume flag and starts one thread per vCPU (the
    /// vCPUs stay stopped until [`Driver::resume`]).
    pub fn from_vm(vm: KvmVm) -> std::result::Result<Self, KvmError> {
        let rf_honoured = probe_resume_flag(KVM_PATH)?;
        install_kick_handler();
        let mut parts = vm.into_parts();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut regs = Vec::new();
        for mut vcpu in parts.vcpus.drain(..) {
            regs.push(vcpu.regs());
            let (ctx, crx) = mpsc::channel();
            let kicker = vcpu.kicker();
            let events = tx.clone();
            let memory = Arc::clone(&parts.memory);
            let index = vcpu.index();
            let handle = std::thread::Builder::new()
                .name(format!("nitro-vcpu{index}"))
                .spawn(move || vcpu_thread(vcpu, crx, events, memory))
                .map_err(|e| KvmError::Layout(format!("cannot start vCPU thread: {e}")))?;
            threads.push(VcpuThread {
                tx: ctx,
                handle: Some(handle),
                kicker,
            });
        }
        let n = threads.len();
        Ok(KvmDriver {
            threads,
            rx,
            pending: VecDeque::new(),
            states: vec![State::Stopped; n],
            regs,
            current: None,
            changes: RegChanges::default(),
            plan: TrapPlan::default(),
            armed: Arc::new(ArmedPlan::empty()),
            rf_honoured,
            timeout: None,
            spin: DEFAULT_SPIN,
            _vm: parts.vm,
            _kvm: parts.kvm,
            memory: parts.memory,
            scratch: parts.scratch,
            cr3: parts.cr3,
        })
    }

    /// Whether the host honours RFLAGS.RF (then breakpoints resume with no extra work).
    pub fn resume_flag_honoured(&self) -> bool {
        self.rf_honoured
    }

    /// The armed sites with their resume strategies.
    pub fn armed(&self) -> &[ArmedSite] {
        self.armed.sites()
    }

    /// Guest RAM, with its `vm-memory` view.
    pub fn guest_ram(&self) -> &Arc<GuestRam> {
        &self.memory
    }

    /// Sets how `out`/`in` are answered (takes effect when each vCPU next stops).
    pub fn set_port_io(&mut self, port_io: Arc<dyn PortIo>) {
        for t in &self.threads {
            let _ = t.tx.send(Cmd::SetPortIo(Arc::clone(&port_io)));
        }
    }

    /// Also read IA32_KERNEL_GS_BASE at each trap (one extra ioctl per trap).
    pub fn set_read_kernel_gs_base(&mut self, on: bool) {
        for t in &self.threads {
            let _ = t.tx.send(Cmd::ReadKernelGsBase(on));
        }
    }

    /// How long the caller's thread and each vCPU thread poll for the other side's next
    /// message before sleeping (default 50 us). Polling saves two thread wake-ups per trap
    /// when a core is free for it; zero always sleeps at once.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
        for t in &self.threads {
            let _ = t.tx.send(Cmd::SetSpin(spin));
        }
    }

    /// Limit for how long [`Driver::next_event`] waits (`None`: forever).
    pub fn set_event_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    fn recv(&mut self, timeout: Option<Duration>) -> Result<Msg> {
        let gone = || ListenerError::GuestGone("all vCPU threads ended".into());
        if let Some(msg) = poll(&self.rx, self.spin) {
            return Ok(msg);
        }
        match timeout {
            None => self.rx.recv().map_err(|_| gone()),
            Some(t) => self.rx.recv_timeout(t).map_err(|e| match e {
                RecvTimeoutError::Timeout => ListenerError::Timeout {
                    what: "a vCPU event".into(),
                    secs: t.as_secs(),
                },
                RecvTimeoutError::Disconnected => gone(),
            }),
        }
    }

    /// Records a message; vCPU failures become errors.
    fn handle(&mut self, msg: Msg) -> Result<()> {
        let v = msg.vcpu as usize;
        let Some(state) = self.states.get_mut(v) else {
            return Ok(());
        };
        match msg.kind {
            MsgKind::Trap { site, regs, time } => {
                *state = State::Queued;
                self.regs[v] = regs;
                let event = match self.plan.sites.get(site.site) {
                    Some(s) => DriverEvent::Trap(Box::new(NitroEvent {
                        vcpu: msg.vcpu,
                        direction: s.direction,
                        kind: s.syscall_kind,
                        regs,
                        time,
                        site: site.site,
                        strategy: site.resume.strategy(),
                    })),
                    None => DriverEvent::Spurious {
                        vcpu: msg.vcpu,
                        rip: regs.rip,
                    },
                };
                self.pending.push_back(event);
            }
            MsgKind::Spurious { rip, regs } => {
                *state = State::Queued;
                self.regs[v] = regs;
                self.pending.push_back(DriverEvent::Spurious {
                    vcpu: msg.vcpu,
                    rip,
                });
            }
            MsgKind::Halted(regs) => {
                *state = State::Halted;
                self.regs[v] = regs;
            }
            MsgKind::Interrupted(regs) => {
                *state = State::Stopped;
                self.regs[v] = regs;
            }
            MsgKind::Failed(e) => {
                *state = State::Failed;
                return Err(e.into());
            }
            MsgKind::Ack(r) => r?,
        }
        Ok(())
    }

    fn send(&self, vcpu: usize, cmd: Cmd) -> Result<()> {
        let t = self
            .threads
            .get(vcpu)
            .ok_or_else(|| ListenerError::Unsupported(format!("no vCPU {vcpu}")))?;
        t.tx.send(cmd)
            .map_err(|_| KvmError::ThreadGone { vcpu: vcpu as u32 }.into())
    }

    fn any_running(&self) -> bool {
        self.states.contains(&State::Running)
    }
}

impl Driver for KvmDriver {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hw_breakpoints: Some(nitro_sys::x86::NUM_HW_BREAKPOINTS as u32),
            watchpoints: Some(nitro_sys::x86::NUM_HW_BREAKPOINTS as u32),
            zero_copy_memory: true,
            vcpus: self.threads.len() as u32,
        }
    }

    fn memory(&self) -> Arc<dyn PhysMemory> {
        Arc::clone(&self.memory) as Arc<dyn PhysMemory>
    }

    fn interrupt(&mut self) -> Result<Regs> {
        for (t, s) in self.threads.iter().zip(&self.states) {
            if *s == State::Running {
                t.kicker.request_stop();
            }
        }
        let deadline = Instant::now() + INTERRUPT_TIMEOUT;
        let mut result = Ok(());
        while self.any_running() {
            for (t, s) in self.threads.iter().zip(&self.states) {
                if *s == State::Running {
                    if let Some(h) = &t.handle {
                        // SAFETY: the thread is not joined yet, so its pthread_t is valid;
                        // the signal's handler is a no-op installed by install_kick_handler.
                        unsafe { libc::pthread_kill(h.as_pthread_t(), kick_signal()) };
                    }
                }
            }
            match self.recv(Some(Duration::from_millis(1))) {
                Ok(msg) => {
                    if let Err(e) = self.handle(msg) {
                        result = Err(e);
                    }
                }
                Err(ListenerError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for t in &self.threads {
            t.kicker.clear();
        }
        result?;
        Ok(self.regs.first().copied().unwrap_or_default())
    }

    fn arm(&mut self, plan: &TrapPlan) -> Result<()> {
        if self.any_running() {
            return Err(ListenerError::Unsupported(
                "arm needs stopped vCPUs: call interrupt() first".into(),
            ));
        }
        // Instruction bytes are read through vCPU 0's current page tables (a booted kernel
        // has replaced the loader's identity map by then).
        let cr3 = self
            .regs
            .first()
            .map(|r| r.cr3)
            .filter(|&c| c != 0)
            .unwrap_or(self.cr3);
        let armed = prepare_plan(plan, &self.memory, cr3, self.scratch, self.rf_honoured)?;
        let mut waiting = 0;
        for (v, s) in self.states.clone().iter().enumerate() {
            if *s != State::Failed {
                self.send(v, Cmd::Arm(Arc::clone(&armed)))?;
                waiting += 1;
            }
        }
        while waiting > 0 {
            let msg = self.recv(Some(INTERRUPT_TIMEOUT))?;
            if matches!(msg.kind, MsgKind::Ack(_)) {
                waiting -= 1;
            }
            self.handle(msg)?;
        }
        self.plan = plan.clone();
        self.armed = armed;
        Ok(())
    }

    fn disarm(&mut self) -> Result<()> {
        self.arm(&TrapPlan::default())
    }

    fn next_event(&mut self) -> Result<DriverEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                let vcpu = match &event {
                    DriverEvent::Trap(e) => Some(e.vcpu),
                    DriverEvent::Spurious { vcpu, .. } => Some(*vcpu),
                    DriverEvent::GuestEnded { .. } => None,
                };
                if let Some(v) = vcpu {
                    if let Some(s) = self.states.get_mut(v as usize) {
                        *s = State::Stopped;
                    }
                }
                self.current = vcpu;
                self.changes = RegChanges::default();
                return Ok(event);
            }
            if !self.any_running() {
                if self.states.iter().all(|s| *s == State::Halted) {
                    return Ok(DriverEvent::GuestEnded { code: None });
                }
                return Err(ListenerError::Unsupported(
                    "no vCPU is running: call resume() first".into(),
                ));
            }
            let msg = self.recv(self.timeout)?;
            self.handle(msg)?;
        }
    }

    fn set_regs(&mut self, changes: &RegChanges) -> Result<()> {
        let Some(v) = self.current else {
            return Err(ListenerError::Unsupported(
                "set_regs needs a stopped vCPU (after an event)".into(),
            ));
        };
        if let Some(regs) = self.regs.get_mut(v as usize) {
            for &(reg, value) in &changes.writes {
                regs.set(reg, value);
            }
        }
        self.changes.writes.extend_from_slice(&changes.writes);
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        let changes = std::mem::take(&mut self.changes);
        let current = self.current.take();
        for v in 0..self.states.len() {
            if self.states[v] == State::Stopped {
                let c = if current == Some(v as u32) {
                    changes.clone()
                } else {
                    RegChanges::default()
                };
                self.send(v, Cmd::Run(c))?;
                self.states[v] = State::Running;
            }
        }
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        if self.any_running() {
            self.interrupt()?;
        }
        self.disarm()?;
        self.resume()
    }
}

impl Drop for KvmDriver {
    fn drop(&mut self) {
        if self.any_running() {
            let _ = self.interrupt();
        }
        let handles: Vec<_> = self
            .threads
            .iter_mut()
            .filter_map(|t| t.handle.take())
            .collect();
        self.threads.clear(); // closes the command channels: idle threads return
        for h in handles {
            let _ = h.join();
        }
    }
}

/// A vCPU thread: serves commands, then closes the vCPU fd before letting go of the memory
/// KVM maps for it.
fn vcpu_thread(vcpu: KvmVcpu, commands: Receiver<Cmd>, events: Sender<Msg>, memory: Arc<GuestRam>) {
    serve_commands(vcpu, commands, events); // drops (closes) the vCPU
    drop(memory);
}

fn serve_commands(mut vcpu: KvmVcpu, commands: Receiver<Cmd>, events: Sender<Msg>) {
    let index = vcpu.index();
    let mut spin = DEFAULT_SPIN;
    loop {
        let cmd = match poll(&commands, spin) {
            Some(cmd) => cmd,
            None => match commands.recv() {
                Ok(cmd) => cmd,
                Err(_) => return,
            },
        };
        let kind = match cmd {
            Cmd::SetSpin(s) => {
                spin = s;
                continue;
            }
            Cmd::SetPortIo(p) => {
                vcpu.set_port_io(p);
                continue;
            }
            Cmd::ReadKernelGsBase(on) => {
                vcpu.set_read_kernel_gs_base(on);
                continue;
            }
            Cmd::Arm(plan) => MsgKind::Ack(vcpu.arm(plan)),
            Cmd::Run(changes) => match vcpu.apply(&changes) {
                Err(e) => MsgKind::Failed(e),
                Ok(()) => loop {
                    match vcpu.run() {
                        Ok(VcpuStop::PortOut { .. }) => continue,
                        Ok(VcpuStop::Trap { site, regs }) => {
                            break MsgKind::Trap {
                                site,
                                regs,
                                time: SystemTime::now(),
                            }
                        }
                        Ok(VcpuStop::Spurious { rip }) => {
                            break MsgKind::Spurious {
                                rip,
                                regs: vcpu.regs(),
                            }
                        }
                        Ok(VcpuStop::Halted) => break MsgKind::Halted(vcpu.regs()),
                        Ok(VcpuStop::Interrupted) => break MsgKind::Interrupted(vcpu.regs()),
                        Err(e) => break MsgKind::Failed(e),
                    }
                },
            },
        };
        if events.send(Msg { vcpu: index, kind }).is_err() {
            return;
        }
    }
}

/// Polls `rx` for up to `spin`.
fn poll<T>(rx: &Receiver<T>, spin: Duration) -> Option<T> {
    if spin.is_zero() {
        return None;
    }
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if start.elapsed() >= spin => return None,
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// The signal that breaks a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (does
        // nothing); no SA_RESTART, so KVM_RUN returns EINTR when the signal arrives.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}
