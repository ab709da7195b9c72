//! The QEMU gdbstub driver.
//!
//! Per stop the fast path costs one packet round trip: the stop reply arrives, the driver
//! writes its acknowledgement and the `g` request together (`+$g#67`), reads the registers,
//! and on resume writes the acknowledgement of the registers, any register writes (`P`) and
//! `c` in one write without waiting: the `OK`s of the writes are checked when they arrive
//! before the next stop reply. Nothing per stop inserts or removes traps or writes CR3, so
//! QEMU keeps its translated code (see ENVIRONMENT.md, "QEMU gdbstub").

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr};

use super::{
    regs::{p_packet, parse_g_hex},
    rsp::{decode_hex, parse_stop, RspClient, StopReply},
};
use crate::{
    Capabilities, Direction, Driver, DriverEvent, DriverStats, ListenerError, NitroEvent, Reg,
    RegChanges, Regs, Result, Strategy, SyscallKind, TrapKind, TrapPlan,
};

/// Counters of what the driver did (the driver-independent [`DriverStats`]).
pub type Stats = DriverStats;

/// `swapgs` (Intel SDM 2B, SWAPGS: 0F 01 F8).
const SWAPGS: [u8; 3] = [0x0f, 0x01, 0xf8];

/// Longest no-op form recognised (an `nopw %cs:0x0(%rax,%rax,1)` with prefixes).
const MAX_NOP: usize = 11;

/// Length of the instruction at the start of `code` if it does nothing but advance RIP:
/// `nop` (90), `xchg %ax,%ax` (66 90), `pause` (F3 90), `endbr64`/`endbr32` (F3 0F 1E FA/FB),
/// and the multi-byte `nop r/m` (0F 1F /0) with operand-size and segment prefixes, whose
/// length follows from its ModRM, SIB and displacement (Intel SDM 2A 2.1, 2B "NOP").
/// Linux starts functions with `endbr64` (IBT) and a 5-byte `nop` (ftrace's patched-out
/// call to `__fentry__`).
pub(crate) fn no_op_len(code: &[u8]) -> Option<u8> {
    match code {
        [0x90, ..] => return Some(1),
        [0x66 | 0xf3, 0x90, ..] => return Some(2),
        [0xf3, 0x0f, 0x1e, 0xfa | 0xfb, ..] => return Some(4),
        _ => {}
    }
    let prefixes = code.iter().take_while(|&&b| b == 0x66 || b == 0x2e).count();
    let rest = code.get(prefixes..)?;
    let [0x0f, 0x1f, modrm, tail @ ..] = rest else {
        return None;
    };
    let modrm = *modrm;
    if (modrm >> 3) & 7 != 0 {
        return None;
    }
    let (md, rm) = (modrm >> 6, modrm & 7);
    let sib = rm == 4 && md != 3;
    let disp = match (md, rm) {
        (0, 5) => 4,
        // SIB with base 101b and mod 00: a 32-bit displacement, no base.
        (0, 4) if tail.first()? & 7 == 5 => 4,
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    let len = prefixes + 3 + usize::from(sib) + disp;
    (len <= code.len()).then_some(len as u8)
}

/// How an armed site is resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Data watchpoint: the stop comes after the access.
    Watch,
    /// Breakpoint on `swapgs`: swap GS base and kernel GS base, RIP += 3.
    EmulateSwapgs,
    /// Breakpoint on an instruction with no effect besides advancing RIP (`endbr64`, the
    /// `nop` that ftrace leaves at function entry): RIP += len.
    EmulateNop {
        /// Instruction length.
        len: u8,
    },
    /// Breakpoint resumed by remove, single-step, re-insert.
    Step,
}

/// An armed site: the gdb `Z` type and length used, and how it is resumed.
#[derive(Debug, Clone, Copy)]
struct Armed {
    z: u8,
    len: u8,
    resume: Resume,
}

/// What the last stop left to do on resume.
#[derive(Debug, Clone, Copy)]
struct LastStop {
    site: usize,
    regs: Regs,
    /// The gdb thread of the vCPU.
    thread: u64,
}

/// `z` then `Z` packets for one change of the plan, and what their replies mean.
#[derive(Debug, Default)]
struct ArmBatch {
    packets: Vec<Vec<u8>>,
    /// The first `removals` packets remove traps (an error there is not fatal).
    removals: usize,
    /// Site index of each insert packet after the removals.
    inserts: Vec<usize>,
}

/// A hit of another vCPU found at a stop, waiting to be delivered.
#[derive(Debug, Clone, Copy)]
struct Queued {
    thread: u64,
    site: usize,
    regs: Regs,
    time: SystemTime,
    /// Not a hit: another vCPU seen at this stop, handed on as a
    /// [`Strategy::LateReport`] so that the backend can look at its task's saved frame.
    observation: bool,
}

/// Traps system calls through a QEMU gdbstub.
pub struct QemuDriver {
    rsp: RspClient,
    memory: Option<Arc<dyn PhysMemory>>,
    vcpus: u32,
    plan: TrapPlan,
    armed: Vec<Armed>,
    running: bool,
    last: Option<LastStop>,
    /// Register writes asked for by `set_regs`, sent with the resume.
    writes: Vec<(Reg, u64)>,
    /// `OK`s still due for register writes sent with the last `c`.
    pending_oks: usize,
    /// Watchpoint changes made while the guest is stopped at a trap, held back to go out
    /// with the resume (one write, no round trip of their own).
    deferred_arm: Option<ArmBatch>,
    /// Replies still due for the watchpoint changes sent with the last `c`: the batch and
    /// how many replies were read so far.
    pending_arm: Option<(ArmBatch, usize)>,
    /// Reused packet buffer.
    pkt: Vec<u8>,
    detach_flag: Option<Arc<AtomicBool>>,
    detached: bool,
    /// RIPs at which reported watchpoint stops (with their own site's address) happened:
    /// the instructions right after watched accesses.
    hit_rips: HashSet<u64>,
    /// Hits of other vCPUs found at a stop (QEMU reported only one), delivered next.
    queued: VecDeque<Queued>,
    /// Per vCPU, the registers of a hit recovered from it, to drop QEMU's own later report
    /// of the same hit.
    recovered: HashMap<u32, Regs>,
    /// Per vCPU, the registers of the last event delivered: a vCPU that has not run since
    /// (its thread not scheduled before another vCPU stopped the guest) is not a new hit.
    delivered: HashMap<u32, Regs>,
    /// Spurious stops by cause (signal not SIGTRAP, RIP in no site, duplicate, stray), for
    /// NITRO_DEBUG.
    why: [u64; 4],
    /// The thread `g`/`P` address (QEMU: set to the stopped vCPU at each stop).
    g_thread: u64,
    /// Deferred acknowledgements and pipelined resumes (the default); off = one packet and
    /// one acknowledgement at a time, for comparison.
    pipelined: bool,
    stats: Stats,
}

impl std::fmt::Debug for QemuDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuDriver")
            .field("endpoint", &self.rsp.endpoint())
            .field("vcpus", &self.vcpus)
            .field("sites", &self.plan.sites.len())
            .field("running", &self.running)
            .field("stats", &self.stats)
            .finish()
    }
}

fn z_type(kind: TrapKind) -> (u8, u8) {
    // GDB manual, "Z packets": 0 software breakpoint, 1 hardware breakpoint, 2 write watchpoint,
    // 3 read watchpoint, 4 access watchpoint; the last field is the kind/length. Hardware
    // breakpoints first: under KVM only Z1 works (ENVIRONMENT.md), under TCG both do.
    match kind {
        TrapKind::Execute => (1, 1),
        TrapKind::WriteWatch { len } => (2, len),
        TrapKind::ReadWatch { len } => (3, len),
    }
}

fn z_name(z: u8) -> &'static str {
    match z {
        0 => "software breakpoint",
        1 => "hardware breakpoint",
        2 => "write watchpoint",
        3 => "read watchpoint",
        _ => "access watchpoint",
    }
}

fn is_timeout(e: &ListenerError) -> bool {
    matches!(e, ListenerError::Io { source, .. } if matches!(
        source.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

impl QemuDriver {
    /// The gdbstub connection's socket (for a [`super::guard::Guardian`]).
    pub fn socket_fd(&self) -> std::os::fd::RawFd {
        self.rsp.socket_fd()
    }

    /// Connects to a gdbstub at `endpoint` (`host:port`). The guest is stopped on return.
    /// `memory` is the guest's physical memory (e.g. the shared memory-backend file);
    /// `vcpus` = 0 asks the stub how many vCPUs the guest has.
    pub fn connect(
        endpoint: &str,
        memory: Option<Arc<dyn PhysMemory>>,
        vcpus: u32,
    ) -> Result<Self> {
        let mut rsp = RspClient::connect(endpoint, Duration::from_secs(10))?;
        // QEMU stops a running guest when a debugger connects and may announce it with an
        // unsolicited stop reply: drain it before the first request.
        rsp.set_timeout(Some(Duration::from_millis(300)))?;
        loop {
            match rsp.recv() {
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => break,
                Err(e) => return Err(e),
            }
        }
        rsp.set_timeout(Some(Duration::from_secs(10)))?;
        let reply = rsp.request(b"?")?;
        if parse_stop(&reply).is_none() {
            return Err(rsp.protocol(b"?", &reply));
        }
        // QEMU (7.2 at least) answers `P` register writes with an empty (unsupported) reply
        // until the client has read the target description (gdbstub.c sets gdb_has_xml in
        // its qXfer:features handler): read it once so hooks can write registers.
        let _ = rsp.request(b"qXfer:features:read:target.xml:0,ffb")?;
        rsp.set_timeout(None)?;
        let mut d = QemuDriver {
            rsp,
            memory,
            vcpus: vcpus.max(1),
            plan: TrapPlan::default(),
            armed: Vec::new(),
            running: false,
            last: None,
            writes: Vec::new(),
            pending_oks: 0,
            deferred_arm: None,
            pending_arm: None,
            pkt: Vec::with_capacity(2048),
            detach_flag: None,
            detached: false,
            pipelined: true,
            hit_rips: HashSet::new(),
            queued: VecDeque::new(),
            recovered: HashMap::new(),
            delivered: HashMap::new(),
            why: [0; 4],
            g_thread: 1,
            stats: Stats::default(),
        };
        if vcpus == 0 {
            d.vcpus = d.thread_ids()?.len().max(1) as u32;
        }
        Ok(d)
    }

    /// What the driver has done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            packets_sent: self.rsp.packets_sent,
            packets_received: self.rsp.packets_received,
            round_trips: self.rsp.round_trips,
            ..self.stats
        }
    }

    /// Sets the guest's physical memory (when it is found after connecting, e.g. through the
    /// stub's monitor).
    pub fn set_memory(&mut self, memory: Arc<dyn PhysMemory>) {
        self.memory = Some(memory);
    }

    /// Turns the per-stop fast path on (default) or off. Off, every packet is acknowledged on
    /// its own and every request waits for the stub's acknowledgement (`g` and `c` as two
    /// round trips): how the driver worked before, kept to measure the difference.
    pub fn set_pipelined(&mut self, on: bool) {
        self.pipelined = on;
    }

    /// How long the driver polls for the stub's next packet before it sleeps (default
    /// [`super::rsp::DEFAULT_SPIN`], 100 us): polling saves the tracer a wake-up per stop
    /// (about 1.5x the traced calls per second under TCG) at the price of a busy core while
    /// the guest is between stops; zero sleeps at once.
    pub fn set_spin(&mut self, spin: Duration) {
        self.rsp.set_spin(spin);
    }

    /// Number of vCPUs the driver assumes.
    pub fn vcpus(&self) -> u32 {
        self.vcpus
    }

    /// When `flag` becomes true while the driver waits for a stop, it detaches (every trap
    /// removed, the guest left running) and reports [`DriverEvent::GuestEnded`]: how
    /// `nitro attach` ends on Ctrl-C or after its duration.
    pub fn set_detach_flag(&mut self, flag: Arc<AtomicBool>) {
        self.detach_flag = Some(flag);
    }

    /// True once the driver has detached.
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// The stub's thread ids (QEMU: one per vCPU, vCPU index + 1), from
    /// `qfThreadInfo`/`qsThreadInfo` (GDB manual, "General Query Packets").
    pub fn thread_ids(&mut self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut req: &[u8] = b"qfThreadInfo";
        loop {
            let reply = self.rsp.request(req)?;
            match reply.split_first() {
                Some((b'm', list)) => {
                    for t in list.split(|&b| b == b',') {
                        let t = std::str::from_utf8(t).unwrap_or("");
                        let t = t.rsplit('.').next().unwrap_or(t).trim_start_matches('p');
                        if let Ok(v) = u64::from_str_radix(t, 16) {
                            ids.push(v);
                        }
                    }
                }
                Some((b'l', _)) => break,
                _ => return Err(self.rsp.protocol(req, &reply)),
            }
            if ids.len() > 4096 {
                break;
            }
            req = b"qsThreadInfo";
        }
        Ok(ids)
    }

    /// Reads the registers of the vCPU the stub last reported.
    pub fn read_regs(&mut self) -> Result<Regs> {
        let reply = self.rsp.request(b"g")?;
        parse_g_hex(&reply).ok_or_else(|| self.rsp.protocol(b"g", &reply))
    }

    /// Sends a HMP monitor command through the stub (`qRcmd`) and returns its output.
    pub fn monitor(&mut self, cmd: &str) -> Result<String> {
        let mut req = b"qRcmd,".to_vec();
        for b in cmd.bytes() {
            req.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        self.rsp.send(&req)?;
        self.rsp.round_trips += 1;
        let mut out = Vec::new();
        loop {
            let p = self.rsp.recv()?;
            // "OK" ends the output; it also starts with 'O', so test it first.
            match p.first() {
                _ if p == b"OK" => break,
                Some(b'O') if p.len() > 1 => out.extend(decode_hex(&p[1..]).unwrap_or_default()),
                _ if p.is_empty() => {
                    return Err(ListenerError::Unsupported(
                        "monitor commands (qRcmd)".into(),
                    ))
                }
                _ => return Err(self.rsp.protocol(&req, &p)),
            }
            if out.len() > 1 << 20 {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn z_packet(insert: bool, z: u8, addr: u64, len: u8) -> String {
        format!("{}{z},{addr:x},{len}", if insert { 'Z' } else { 'z' })
    }

    fn insert(&mut self, site: usize, resume: Resume) -> Result<Armed> {
        let Some(s) = self.plan.sites.get(site) else {
            return Err(ListenerError::Unsupported(format!("no trap site {site}")));
        };
        let addr = s.addr;
        let (z, len) = z_type(s.kind);
        let reply = self
            .rsp
            .request(Self::z_packet(true, z, addr, len).as_bytes())?;
        if reply == b"OK" {
            return Ok(Armed { z, len, resume });
        }
        if z == 1 && reply.is_empty() {
            // No hardware breakpoints in this stub: a software one (TCG handles it alike).
            let r0 = self
                .rsp
                .request(Self::z_packet(true, 0, addr, 1).as_bytes())?;
            if r0 == b"OK" {
                return Ok(Armed {
                    z: 0,
                    len: 1,
                    resume,
                });
            }
        }
        Err(ListenerError::ArmFailed {
            kind: z_name(z),
            addr,
            reply: String::from_utf8_lossy(&reply).into(),
        })
    }

    fn remove(&mut self, site: usize) -> Result<()> {
        let (Some(s), Some(a)) = (self.plan.sites.get(site), self.armed.get(site)) else {
            return Ok(());
        };
        let req = Self::z_packet(false, a.z, s.addr, a.len);
        // An empty reply or error for a trap that is already gone is not fatal.
        let _ = self.rsp.request(req.as_bytes())?;
        Ok(())
    }

    /// Sends one batch of trap changes and checks the replies (one round trip).
    fn send_arm(&mut self, batch: ArmBatch) -> Result<()> {
        let refs: Vec<&[u8]> = batch.packets.iter().map(Vec::as_slice).collect();
        self.rsp.write_packets(&refs)?;
        self.rsp.round_trips += 1;
        let mut failed = Vec::new();
        let mut pkt = std::mem::take(&mut self.pkt);
        for k in 0..batch.packets.len() {
            if let Err(e) = self.rsp.recv_into(&mut pkt) {
                self.pkt = pkt;
                return Err(e);
            }
            // An error removing a trap that is already gone is not fatal.
            if k >= batch.removals && pkt != b"OK" {
                failed.push((batch.inserts[k - batch.removals], pkt.clone()));
            }
        }
        self.pkt = pkt;
        for (i, reply) in failed {
            let a = self.armed[i];
            if a.z == 1 && reply.is_empty() {
                // No hardware breakpoints in this stub: a software one (TCG handles it alike).
                let addr = self.plan.sites[i].addr;
                self.rsp
                    .request_ok(Self::z_packet(true, 0, addr, 1).as_bytes())
                    .map_err(|_| ListenerError::ArmFailed {
                        kind: z_name(0),
                        addr,
                        reply: String::from_utf8_lossy(&reply).into(),
                    })?;
                self.armed[i].z = 0;
                continue;
            }
            return Err(ListenerError::ArmFailed {
                kind: z_name(a.z),
                addr: self.plan.sites[i].addr,
                reply: String::from_utf8_lossy(&reply).into(),
            });
        }
        Ok(())
    }

    /// Sends trap changes held back for the resume now, when something else must talk to
    /// the stub first.
    fn flush_deferred_arm(&mut self) -> Result<()> {
        match self.deferred_arm.take() {
            Some(batch) => self.send_arm(batch),
            None => Ok(()),
        }
    }

    /// How an execution site is resumed: emulated when the instruction there is `swapgs`
    /// or a no-op (read from guest memory through the current page tables), else
    /// single-stepped.
    fn resume_for_execute(&self, addr: u64, regs: &Regs) -> Resume {
        let Some(mem) = &self.memory else {
            return Resume::Step;
        };
        let mut code = [0u8; MAX_NOP];
        // Under page-table isolation the user half of the PGD pair (CR3 | 0x1000) maps little
        // of the kernel: try the kernel half too.
        for cr3 in [regs.cr3, regs.cr3 & !0x1fff] {
            let space = AddressSpace::with_mode(
                mem.as_ref(),
                PhysAddr(cr3 & !0xfff),
                PagingMode::from_cr4(regs.cr4),
            );
            if space.read_virt(VirtAddr(addr), &mut code).is_ok() {
                return if code[..3] == SWAPGS {
                    Resume::EmulateSwapgs
                } else if let Some(len) = no_op_len(&code) {
                    Resume::EmulateNop { len }
                } else {
                    Resume::Step
                };
            }
        }
        Resume::Step
    }

    /// Steps the current vCPU over the breakpoint at `site` and re-arms it.
    fn step_over_site(&mut self, site: usize) -> Result<()> {
        self.remove(site)?;
        self.rsp.send(b"s")?;
        self.rsp.round_trips += 1;
        loop {
            let reply = self.rsp.recv()?;
            match parse_stop(&reply) {
                Some(StopReply::Exited { .. }) => {
                    return Err(ListenerError::GuestGone(
                        "guest exited during a single-step".into(),
                    ))
                }
                Some(StopReply::Stopped { .. }) => break,
                None => continue,
            }
        }
        self.stats.single_steps += 1;
        let resume = self.armed.get(site).map_or(Resume::Step, |a| a.resume);
        let a = self.insert(site, resume)?;
        if let Some(slot) = self.armed.get_mut(site) {
            *slot = a;
        }
        Ok(())
    }

    /// Receives the next packet that is a stop reply, checking the `OK`s of register writes
    /// sent with the last resume on the way.
    fn recv_stop(&mut self) -> Result<Option<StopReply>> {
        let mut pkt = std::mem::take(&mut self.pkt);
        let r = (|| loop {
            self.rsp.recv_into(&mut pkt)?;
            if let Some((batch, got)) = self.pending_arm.as_mut() {
                // The replies to watchpoint changes sent with the resume come first.
                let k = *got;
                *got += 1;
                let insert = k.checked_sub(batch.removals).map(|i| batch.inserts[i]);
                if *got == batch.packets.len() {
                    self.pending_arm = None;
                }
                if let Some(site) = insert.filter(|_| pkt != b"OK") {
                    let (kind, addr) = self
                        .armed
                        .get(site)
                        .map(|a| a.z)
                        .zip(self.plan.sites.get(site).map(|s| s.addr))
                        .unwrap_or((2, 0));
                    return Err(ListenerError::ArmFailed {
                        kind: z_name(kind),
                        addr,
                        reply: String::from_utf8_lossy(&pkt).into(),
                    });
                }
                continue;
            }
            if let Some(stop) = parse_stop(&pkt) {
                return Ok(Some(stop));
            }
            if self.pending_oks > 0 {
                self.pending_oks -= 1;
                if pkt != b"OK" {
                    return Err(self.rsp.protocol(b"P (register write)", &pkt));
                }
            }
            // Anything else (console output, stray replies) is noise here.
        })();
        self.pkt = pkt;
        r
    }

    /// Blocks until the stub has something to say or the detach flag is raised; true when
    /// the flag was raised.
    fn wait_or_detach(&mut self) -> Result<bool> {
        let Some(flag) = self.detach_flag.clone() else {
            return Ok(false);
        };
        if self.rsp.spin_until_readable()? {
            return Ok(flag.load(Ordering::Relaxed));
        }
        loop {
            if flag.load(Ordering::Relaxed) {
                return Ok(true);
            }
            if self.rsp.wait_readable(Duration::from_millis(100))? {
                return Ok(false);
            }
        }
    }

    /// The site a stop at `rip` belongs to, and whether the reported data address is that
    /// site's own (false: a late or misreported hit, or an execution site).
    fn classify(&self, rip: u64, watch: Option<u64>) -> Option<(usize, bool)> {
        let first = self.plan.classify(rip)?;
        let s = self.plan.sites.get(first)?;
        if s.kind == TrapKind::Execute {
            return Some((first, true));
        }
        // Per-vCPU sites share their RIP ranges: the reported address says which vCPU's
        // site it was. An address no site with this RIP has is a late or misreported hit.
        let direction = s.direction;
        let exact = watch.and_then(|a| {
            self.plan.sites.iter().position(|t| {
                t.addr == a
                    && t.direction == direction
                    && t.rip_ranges.iter().any(|r| r.contains(&rip))
            })
        });
        Some(exact.map_or((first, false), |i| (i, true)))
    }

    /// QEMU 7.2 reports one stop when several vCPUs hit watchpoints together (each vCPU
    /// names itself the stop CPU; the last one wins and the others' hits stay unreported
    /// until their next access to a watched page). Reads every other vCPU's registers in
    /// one pipelined round trip and queues those parked right after a watched access (a RIP
    /// seen at reported hits) as events of their own.
    fn sweep_others(&mut self, reported: u64, reported_site: usize) -> Result<()> {
        let others: Vec<u64> = (1..=u64::from(self.vcpus))
            .filter(|&t| t != reported)
            .collect();
        if others.is_empty() || self.hit_rips.is_empty() {
            return Ok(());
        }
        let mut packets = Vec::with_capacity(others.len() * 2 + 1);
        for t in &others {
            packets.push(format!("Hg{t:x}").into_bytes());
            packets.push(b"g".to_vec());
        }
        packets.push(format!("Hg{reported:x}").into_bytes());
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        self.rsp.write_packets(&refs)?;
        self.rsp.round_trips += 1;
        let mut pkt = std::mem::take(&mut self.pkt);
        let mut found = Vec::new();
        let r = (|| {
            for &t in &others {
                self.rsp.recv_into(&mut pkt)?; // OK of Hg
                self.rsp.recv_into(&mut pkt)?;
                let Some(regs) = parse_g_hex(&pkt) else {
                    continue;
                };
                let vcpu = t.saturating_sub(1) as u32;
                let stale = self.delivered.get(&vcpu) == Some(&regs);
                if !stale {
                    found.push((t, regs));
                }
            }
            self.rsp.recv_into(&mut pkt) // OK of the last Hg
        })();
        self.pkt = pkt;
        r?;
        let time = SystemTime::now();
        for (t, regs) in found {
            let hit = (regs.cpl() == 0 && self.hit_rips.contains(&regs.rip))
                .then(|| self.classify(regs.rip, None))
                .flatten();
            let Some((site, _)) = hit else {
                // Elsewhere, in the kernel or in user mode: an observation, for the backend
                // to look at the task's saved frame (a hit QEMU holds back leaves no other
                // trace).
                self.stats.observations += 1;
                self.queued.push_back(Queued {
                    thread: t,
                    site: reported_site,
                    regs,
                    time,
                    observation: true,
                });
                continue;
            };
            let vcpu = t.saturating_sub(1) as u32;
            self.recovered.insert(vcpu, regs);
            self.stats.recovered_stops += 1;
            self.queued.push_back(Queued {
                thread: t,
                site,
                regs,
                time,
                observation: false,
            });
        }
        Ok(())
    }

    fn debug_stats(&self) {
        if std::env::var_os("NITRO_DEBUG").is_some() {
            eprintln!(
                "nitro: debug: qemu driver {:?}, spurious by cause (signal, no site, duplicate, \
                 stray) {:?}",
                self.stats(),
                self.why
            );
        }
    }

    /// An event that is not a hit of its own ([`Strategy::LateReport`]): a late report, or
    /// another vCPU observed in kernel mode at a stop.
    fn late_event(
        &mut self,
        thread: u64,
        site: usize,
        regs: Regs,
        time: SystemTime,
    ) -> DriverEvent {
        let ev = NitroEvent {
            vcpu: thread.saturating_sub(1) as u32,
            direction: Direction::Exit,
            kind: self
                .plan
                .sites
                .get(site)
                .map_or(SyscallKind::Syscall64, |s| s.syscall_kind),
            regs,
            time,
            site,
            strategy: Strategy::LateReport,
        };
        self.last = Some(LastStop { site, regs, thread });
        self.delivered.insert(ev.vcpu, regs);
        DriverEvent::Trap(Box::new(ev))
    }

    fn trap_event(
        &mut self,
        thread: u64,
        site: usize,
        regs: Regs,
        time: SystemTime,
    ) -> DriverEvent {
        self.stats.trap_stops += 1;
        let s = &self.plan.sites[site];
        let resume = self.armed.get(site).map_or(Resume::Step, |a| a.resume);
        let strategy = match resume {
            Resume::Watch => {
                self.stats.watchpoint_stops += 1;
                Strategy::Watchpoint
            }
            Resume::EmulateSwapgs | Resume::EmulateNop { .. } => Strategy::BreakpointEmulated,
            Resume::Step => Strategy::BreakpointStep,
        };
        let ev = NitroEvent {
            vcpu: thread.saturating_sub(1) as u32,
            direction: s.direction,
            kind: s.syscall_kind,
            regs,
            time,
            site,
            strategy,
        };
        self.last = Some(LastStop { site, regs, thread });
        self.delivered.insert(ev.vcpu, regs);
        DriverEvent::Trap(Box::new(ev))
    }
}

impl Driver for QemuDriver {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            hw_breakpoints: None,
            watchpoints: None,
            zero_copy_memory: self.memory.is_some(),
            vcpus: self.vcpus,
        }
    }

    fn memory(&self) -> Arc<dyn PhysMemory> {
        match &self.memory {
            Some(m) => m.clone(),
            None => Arc::new(nitro_mem::VecMemory::new(0)),
        }
    }

    fn interrupt(&mut self) -> Result<Regs> {
        if self.running {
            self.rsp.send_raw(&[0x03])?;
            loop {
                match self.recv_stop()? {
                    Some(StopReply::Stopped { .. }) => break,
                    Some(StopReply::Exited { code }) => {
                        return Err(ListenerError::GuestGone(format!("guest exited ({code})")))
                    }
                    None => continue,
                }
            }
            self.rsp.flush_ack()?;
            self.running = false;
            self.last = None;
        }
        self.rsp.request_ok(b"Hg1")?;
        self.g_thread = 1;
        self.read_regs()
    }

    fn arm(&mut self, plan: &TrapPlan) -> Result<()> {
        self.flush_deferred_arm()?;
        // Re-arming happens mid-trace (a backend adds a per-task watchpoint): keep the traps
        // that stay, remove only those that go, insert only the new ones, all pipelined in
        // one write (one round trip).
        let old_sites = std::mem::take(&mut self.plan.sites);
        let old_armed = std::mem::take(&mut self.armed);
        let mut reused = vec![false; old_sites.len()];
        let mut armed: Vec<Option<Armed>> = Vec::with_capacity(plan.sites.len());
        for s in &plan.sites {
            let keep = old_sites
                .iter()
                .zip(&old_armed)
                .enumerate()
                .find(|(i, (o, _))| !reused[*i] && o.addr == s.addr && o.kind == s.kind);
            match keep {
                Some((i, (_, a))) => {
                    reused[i] = true;
                    armed.push(Some(*a));
                }
                None => armed.push(None),
            }
        }
        // Keep the last stop's site (its resume strategy) across the renumbering.
        if let Some(l) = self.last.as_mut() {
            let old = old_sites.get(l.site);
            match old.and_then(|o| {
                plan.sites
                    .iter()
                    .position(|s| s.addr == o.addr && s.kind == o.kind)
            }) {
                Some(i) => l.site = i,
                None => self.last = None,
            }
        }
        let regs_now = match (
            &self.last,
            plan.sites
                .iter()
                .zip(&armed)
                .any(|(s, a)| a.is_none() && s.kind == TrapKind::Execute),
        ) {
            (_, false) => Regs::default(),
            (Some(l), true) => l.regs,
            (None, true) => self.read_regs()?,
        };
        let mut packets: Vec<Vec<u8>> = Vec::new();
        for (i, o) in old_sites.iter().enumerate() {
            if let (false, Some(a)) = (reused[i], old_armed.get(i)) {
                packets.push(Self::z_packet(false, a.z, o.addr, a.len).into_bytes());
            }
        }
        let removals = packets.len();
        let mut inserts = Vec::new();
        for (i, s) in plan.sites.iter().enumerate() {
            if armed[i].is_none() {
                let (z, len) = z_type(s.kind);
                let resume = match s.kind {
                    TrapKind::Execute => self.resume_for_execute(s.addr, &regs_now),
                    _ => Resume::Watch,
                };
                armed[i] = Some(Armed { z, len, resume });
                packets.push(Self::z_packet(true, z, s.addr, len).into_bytes());
                inserts.push(i);
            }
        }
        self.plan = plan.clone();
        self.armed = armed
            .iter()
            .map(|a| {
                a.unwrap_or(Armed {
                    z: 0,
                    len: 1,
                    resume: Resume::Step,
                })
            })
            .collect();
        if packets.is_empty() {
            return Ok(());
        }
        self.stats.trap_changes += packets.len() as u64;
        let watch_only = inserts
            .iter()
            .all(|&i| self.plan.sites[i].kind != TrapKind::Execute);
        if self.pipelined && !self.running && self.last.is_some() && watch_only {
            // Stopped at a trap with the resume to come: the changes go out with it.
            self.deferred_arm = Some(ArmBatch {
                packets,
                removals,
                inserts,
            });
            return Ok(());
        }
        self.send_arm(ArmBatch {
            packets,
            removals,
            inserts,
        })
    }

    fn disarm(&mut self) -> Result<()> {
        self.arm(&TrapPlan::default())?;
        self.flush_deferred_arm()?;
        self.last = None;
        Ok(())
    }

    fn next_event(&mut self) -> Result<DriverEvent> {
        if let Some(q) = self.queued.pop_front() {
            // The guest is still stopped at the stop that found this hit.
            if q.observation {
                return Ok(self.late_event(q.thread, q.site, q.regs, q.time));
            }
            return Ok(self.trap_event(q.thread, q.site, q.regs, q.time));
        }
        loop {
            if self.wait_or_detach()? {
                self.detach()?;
                return Ok(DriverEvent::GuestEnded { code: None });
            }
            let stop = match self.recv_stop() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(ListenerError::GuestGone(_)) => {
                    self.debug_stats();
                    return Ok(DriverEvent::GuestEnded { code: None });
                }
                Err(e) => return Err(e),
            };
            self.running = false;
            let (thread, signal, watch) = match stop {
                StopReply::Exited { code } => {
                    self.debug_stats();
                    return Ok(DriverEvent::GuestEnded {
                        code: Some(i32::from(code)),
                    });
                }
                StopReply::Stopped {
                    signal,
                    thread,
                    watch_addr,
                } => (thread, signal, watch_addr),
            };
            let vcpu = thread.unwrap_or(1).saturating_sub(1) as u32;
            // On a stop QEMU points the register thread at the vCPU that stopped
            // (gdbstub `gdb_set_stop_cpu`), so `g` reads that vCPU. The acknowledgement of the
            // stop reply rides in the same write.
            let thread_id = thread.unwrap_or(1);
            if self.vcpus > 1 {
                // Under SMP another vCPU that hits while this stop is reported renames itself
                // the stop CPU (and the register thread): name the reported one explicitly,
                // in the same write.
                let hg = format!("Hg{thread_id:x}");
                self.rsp.write_packets(&[hg.as_bytes(), b"g"])?;
                let mut pkt = std::mem::take(&mut self.pkt);
                let ok = self.rsp.recv_into(&mut pkt);
                let bad = ok.is_ok() && pkt != b"OK";
                let err = bad.then(|| self.rsp.protocol(hg.as_bytes(), &pkt));
                self.pkt = pkt;
                ok?;
                if let Some(e) = err {
                    return Err(e);
                }
            } else if self.pipelined {
                self.rsp.write_packets(&[b"g"])?;
            } else {
                self.rsp.flush_ack()?;
                self.rsp.send(b"g")?;
            }
            self.rsp.round_trips += 1;
            let mut pkt = std::mem::take(&mut self.pkt);
            let got = self.rsp.recv_into(&mut pkt);
            let regs =
                got.and_then(|()| parse_g_hex(&pkt).ok_or_else(|| self.rsp.protocol(b"g", &pkt)));
            self.pkt = pkt;
            let regs = regs?;
            let time = SystemTime::now();
            let thread = thread.unwrap_or(1);
            self.g_thread = thread;
            let classified = if signal == 5 {
                self.classify(regs.rip, watch)
            } else {
                None
            };
            let mut site = classified.map(|c| c.0);
            if signal != 5 {
                self.why[0] += 1;
            } else if site.is_none() {
                let reported = watch.and_then(|a| self.plan.sites.iter().position(|s| s.addr == a));
                if let Some(late) = reported {
                    // A watched address reported with the vCPU already elsewhere: the hit
                    // was held back (QEMU 7.2 SMP) and surfaced at a later access; its
                    // registers are gone, so it is counted as lost. It is still handed on
                    // as a late report: the access that surfaced it may have been a return
                    // to user mode that QEMU swallowed, which the backend can recognise.
                    self.stats.late_stops += 1;
                    return Ok(self.late_event(thread, late, regs, time));
                } else {
                    self.why[1] += 1;
                }
            }
            if let Some((i, exact)) = classified {
                if self.armed.get(i).is_some_and(|a| a.resume == Resume::Watch) {
                    let dup = self.recovered.remove(&vcpu) == Some(regs);
                    if exact && !dup {
                        self.hit_rips.insert(regs.rip);
                    } else if !exact {
                        self.stats.late_stops += 1;
                    }
                    // A late report away from any watched access, or QEMU's own report of
                    // a hit already recovered at an earlier stop: no event.
                    let stray =
                        !exact && !self.hit_rips.is_empty() && !self.hit_rips.contains(&regs.rip);
                    if dup || stray {
                        self.why[if dup { 2 } else { 3 }] += 1;
                        site = None;
                    } else if self.vcpus > 1 {
                        self.sweep_others(thread, i)?;
                    }
                }
            }
            let Some(site) = site else {
                self.stats.spurious_stops += 1;
                self.last = None;
                return Ok(DriverEvent::Spurious {
                    vcpu,
                    rip: regs.rip,
                });
            };
            return Ok(self.trap_event(thread, site, regs, time));
        }
    }

    fn set_regs(&mut self, changes: &RegChanges) -> Result<()> {
        self.writes.extend_from_slice(&changes.writes);
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        let step = self
            .last
            .as_ref()
            .and_then(|l| self.armed.get(l.site))
            .is_some_and(|a| a.resume == Resume::Step);
        let other_thread = self
            .last
            .as_ref()
            .is_some_and(|l| l.thread != self.g_thread && !self.writes.is_empty());
        if !self.pipelined || !self.queued.is_empty() || step || other_thread {
            self.flush_deferred_arm()?;
        }
        let last = self.last.take();
        let mut writes = std::mem::take(&mut self.writes);
        if let Some(l) = last.filter(|l| l.thread != self.g_thread && !writes.is_empty()) {
            // Register writes for a recovered hit: address its vCPU.
            self.rsp
                .request_ok(format!("Hg{:x}", l.thread).as_bytes())?;
            self.g_thread = l.thread;
        }
        if !self.queued.is_empty() {
            // More events of this stop to deliver: apply writes, do not run yet.
            for (reg, v) in writes {
                self.rsp.request_ok(&p_packet(reg, v))?;
            }
            return Ok(());
        }
        let resume = last.and_then(|l| self.armed.get(l.site).map(|a| (l, a.resume)));
        if let Some((l, Resume::EmulateSwapgs)) = resume {
            // SWAPGS exchanges IA32_GS_BASE and IA32_KERNEL_GS_BASE (Intel SDM 2B); RIP
            // moves past its 3 bytes. Applied to the registers as the hooks left them.
            let mut r = l.regs;
            for &(reg, v) in &writes {
                r.set(reg, v);
            }
            writes.push((Reg::GsBase, r.k_gs_base));
            writes.push((Reg::KernelGsBase, r.gs_base));
            writes.push((Reg::Rip, r.rip.wrapping_add(3)));
            self.stats.emulated_stops += 1;
        }
        if let Some((l, Resume::EmulateNop { len })) = resume {
            // Nothing to do but move RIP past it, unless a hook already moved RIP elsewhere
            // (an emulated return for a skipped call).
            if !writes.iter().any(|&(reg, _)| reg == Reg::Rip) {
                writes.push((Reg::Rip, l.regs.rip.wrapping_add(u64::from(len))));
            }
            self.stats.emulated_stops += 1;
        }
        let mut packets: Vec<Vec<u8>> = writes.iter().map(|&(r, v)| p_packet(r, v)).collect();
        if let Some((l, Resume::Step)) = resume {
            // Register writes first (waiting for their OKs), then the step.
            for p in &packets {
                self.rsp.request_ok(p)?;
            }
            packets.clear();
            self.step_over_site(l.site)?;
        }
        if !self.pipelined {
            for p in &packets {
                self.rsp.request_ok(p)?;
            }
            self.rsp.flush_ack()?;
            self.rsp.send(b"c")?;
            self.rsp.round_trips += 1;
            self.running = true;
            return Ok(());
        }
        packets.push(b"c".to_vec());
        let arm = self.deferred_arm.take();
        let mut all: Vec<&[u8]> = arm
            .iter()
            .flat_map(|b| b.packets.iter().map(Vec::as_slice))
            .collect();
        all.extend(packets.iter().map(Vec::as_slice));
        self.rsp.write_packets(&all)?;
        self.pending_oks += packets.len() - 1;
        self.pending_arm = arm.filter(|b| !b.packets.is_empty()).map(|b| (b, 0));
        self.running = true;
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        if self.detached {
            return Ok(());
        }
        if self.running {
            self.interrupt()?;
        }
        self.queued.clear();
        self.disarm()?;
        // "D" detaches; QEMU removes its breakpoints, resumes the guest and drops all
        // debugger state (GDB manual, "Packets": D).
        let _ = self.rsp.request(b"D");
        self.running = true;
        self.detached = true;
        Ok(())
    }

    fn driver_stats(&self) -> DriverStats {
        self.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::no_op_len;

    #[test]
    fn recognises_no_ops_and_nothing_else() {
        assert_eq!(no_op_len(&[0x90, 0xcc]), Some(1));
        assert_eq!(no_op_len(&[0xf3, 0x0f, 0x1e, 0xfa, 0x0f]), Some(4));
        // ftrace's patched-out call: nopl 0x0(%rax,%rax,1).
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55]), Some(5));
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x00]), Some(3));
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x40, 0x00]), Some(4));
        assert_eq!(
            no_op_len(&[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]),
            Some(9)
        );
        assert_eq!(
            no_op_len(&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]),
            Some(10)
        );
        // Not no-ops: push %rbp, swapgs, `0f 1f` with a non-zero reg field, truncated.
        assert_eq!(no_op_len(&[0x55]), None);
        assert_eq!(no_op_len(&[0x0f, 0x01, 0xf8]), None);
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x48, 0x00]), None);
        assert_eq!(no_op_len(&[0x0f, 0x1f, 0x44, 0x00]), None);
        assert_eq!(no_op_len(&[]), None);
    }
}
