//! The QEMU gdbstub driver.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use nitro_mem::PhysMemory;

use super::{
    regs::{p_packet, parse_g, G_MIN_LEN},
    rsp::{decode_hex, parse_stop, RspClient, StopReply},
};
use crate::{
    Capabilities, Driver, DriverEvent, ListenerError, NitroEvent, RegChanges, Regs, Result,
    Strategy, TrapKind, TrapPlan,
};

/// Counters of what the driver did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stops at armed sites.
    pub trap_stops: u64,
    /// Stops that matched no site.
    pub spurious_stops: u64,
    /// Packets exchanged with the gdbstub (requests answered and stop replies).
    pub packets: u64,
    /// Stops resumed by single-step.
    pub single_steps: u64,
}

/// Traps system calls through a QEMU gdbstub.
pub struct QemuDriver {
    rsp: RspClient,
    memory: Option<Arc<dyn PhysMemory>>,
    vcpus: u32,
    plan: TrapPlan,
    running: bool,
    /// Site of the last trap, when it must be stepped over before resuming.
    step_over: Option<usize>,
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
    // 3 read watchpoint, 4 access watchpoint; the last field is the kind/length.
    match kind {
        TrapKind::Execute => (0, 1),
        TrapKind::WriteWatch { len } => (2, len),
        TrapKind::ReadWatch { len } => (3, len),
    }
}

impl QemuDriver {
    /// Connects to a gdbstub at `endpoint` (`host:port`). The guest is stopped on return.
    /// `memory` is the guest's physical memory (e.g. the shared memory-backend file).
    pub fn connect(
        endpoint: &str,
        memory: Option<Arc<dyn PhysMemory>>,
        vcpus: u32,
    ) -> Result<Self> {
        let mut rsp = RspClient::connect(endpoint, Duration::from_secs(10))?;
        // QEMU stops a running guest when a debugger connects and may announce it with an
        // unsolicited stop reply: drain it before the first request.
        rsp.set_timeout(Some(Duration::from_millis(100)))?;
        loop {
            match rsp.recv() {
                Ok(_) => continue,
                Err(ListenerError::Io { ref source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
        rsp.set_timeout(Some(Duration::from_secs(10)))?;
        let reply = rsp.request(b"?")?;
        if parse_stop(&reply).is_none() {
            return Err(rsp.protocol(b"?", &reply));
        }
        rsp.set_timeout(None)?;
        Ok(QemuDriver {
            rsp,
            memory,
            vcpus: vcpus.max(1),
            plan: TrapPlan::default(),
            running: false,
            step_over: None,
            stats: Stats::default(),
        })
    }

    /// What the driver has done so far.
    pub fn stats(&self) -> Stats {
        Stats {
            packets: self.rsp.round_trips,
            ..self.stats
        }
    }

    /// Reads the registers of the vCPU the stub last reported.
    pub fn read_regs(&mut self) -> Result<Regs> {
        let reply = self.rsp.request(b"g")?;
        let bytes = decode_hex(&reply).filter(|b| b.len() >= G_MIN_LEN);
        match bytes {
            Some(b) => Ok(parse_g(&b)),
            None => Err(self.rsp.protocol(b"g", &reply)),
        }
    }

    /// Sends a HMP monitor command through the stub (`qRcmd`) and returns its output.
    pub fn monitor(&mut self, cmd: &str) -> Result<String> {
        let mut req = b"qRcmd,".to_vec();
        for b in cmd.bytes() {
            req.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        self.rsp.send(&req)?;
        let mut out = Vec::new();
        loop {
            let p = self.rsp.recv()?;
            match p.first() {
                Some(b'O') if p.len() > 1 => out.extend(decode_hex(&p[1..]).unwrap_or_default()),
                _ if p == b"OK" => break,
                _ if p.is_empty() => {
                    return Err(ListenerError::Unsupported(
                        "monitor commands (qRcmd)".into(),
                    ))
                }
                _ => return Err(self.rsp.protocol(&req, &p)),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn insert(&mut self, site: usize) -> Result<()> {
        let s = &self.plan.sites[site];
        let (t, len) = z_type(s.kind);
        let req = format!("Z{t},{:x},{len}", s.addr);
        let reply = self.rsp.request(req.as_bytes())?;
        if reply != b"OK" {
            return Err(ListenerError::ArmFailed {
                kind: match t {
                    0 => "breakpoint",
                    2 => "write watchpoint",
                    _ => "read watchpoint",
                },
                addr: s.addr,
                reply: String::from_utf8_lossy(&reply).into(),
            });
        }
        Ok(())
    }

    fn remove(&mut self, site: usize) -> Result<()> {
        let s = &self.plan.sites[site];
        let (t, len) = z_type(s.kind);
        let req = format!("z{t},{:x},{len}", s.addr);
        let reply = self.rsp.request(req.as_bytes())?;
        // An empty reply or error for a trap that is already gone is not fatal.
        let _ = reply;
        Ok(())
    }

    /// Steps the current vCPU over the breakpoint at `site` and re-arms it.
    fn step_over_site(&mut self, site: usize) -> Result<()> {
        self.remove(site)?;
        self.rsp.send(b"s")?;
        let reply = self.rsp.recv()?;
        if let Some(StopReply::Exited { .. }) = parse_stop(&reply) {
            return Err(ListenerError::GuestGone(
                "guest exited during a single-step".into(),
            ));
        }
        self.stats.single_steps += 1;
        self.insert(site)
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
                let p = self.rsp.recv()?;
                match parse_stop(&p) {
                    Some(StopReply::Stopped { .. }) => break,
                    Some(StopReply::Exited { code }) => {
                        return Err(ListenerError::GuestGone(format!("guest exited ({code})")))
                    }
                    None => continue,
                }
            }
            self.running = false;
        }
        self.rsp.request_ok(b"Hg1")?;
        self.read_regs()
    }

    fn arm(&mut self, plan: &TrapPlan) -> Result<()> {
        self.disarm()?;
        self.plan = plan.clone();
        for i in 0..self.plan.sites.len() {
            self.insert(i)?;
        }
        Ok(())
    }

    fn disarm(&mut self) -> Result<()> {
        for i in 0..self.plan.sites.len() {
            self.remove(i)?;
        }
        self.plan = TrapPlan::default();
        self.step_over = None;
        Ok(())
    }

    fn next_event(&mut self) -> Result<DriverEvent> {
        loop {
            let p = match self.rsp.recv() {
                Ok(p) => p,
                Err(ListenerError::GuestGone(_)) => {
                    return Ok(DriverEvent::GuestEnded { code: None })
                }
                Err(e) => return Err(e),
            };
            self.running = false;
            let (thread, signal) = match parse_stop(&p) {
                Some(StopReply::Exited { code }) => {
                    return Ok(DriverEvent::GuestEnded {
                        code: Some(code as i32),
                    })
                }
                Some(StopReply::Stopped { signal, thread, .. }) => (thread, signal),
                None => continue, // console output ('O' packets) or noise
            };
            let vcpu = thread.unwrap_or(1).saturating_sub(1) as u32;
            let regs = self.read_regs()?;
            let time = SystemTime::now();
            let site = if signal == 5 {
                self.plan.classify(regs.rip)
            } else {
                None
            };
            let Some(site) = site else {
                self.stats.spurious_stops += 1;
                return Ok(DriverEvent::Spurious {
                    vcpu,
                    rip: regs.rip,
                });
            };
            self.stats.trap_stops += 1;
            let s = &self.plan.sites[site];
            let strategy = match s.kind {
                TrapKind::Execute => {
                    self.step_over = Some(site);
                    Strategy::BreakpointStep
                }
                _ => Strategy::Watchpoint,
            };
            return Ok(DriverEvent::Trap(Box::new(NitroEvent {
                vcpu,
                direction: s.direction,
                kind: s.syscall_kind,
                regs,
                time,
                site,
                strategy,
            })));
        }
    }

    fn set_regs(&mut self, changes: &RegChanges) -> Result<()> {
        for &(reg, value) in &changes.writes {
            self.rsp.request_ok(&p_packet(reg, value))?;
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<()> {
        if let Some(site) = self.step_over.take() {
            self.step_over_site(site)?;
        }
        self.rsp.send(b"c")?;
        self.running = true;
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        if self.running {
            self.interrupt()?;
        }
        self.disarm()?;
        // "D" detaches; QEMU resumes the guest and drops all debugger state.
        let _ = self.rsp.request(b"D");
        self.running = true;
        Ok(())
    }
}
