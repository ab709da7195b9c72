//! The tracing loop: driver -> event -> backend -> filters, hooks, injections -> records ->
//! sinks.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use nitro_listener::{Direction, Driver, DriverEvent, NitroEvent, Regs};
use nitro_mem::PhysMemory;
use nitro_os::{ArgValue, CallChange, OsBackend, Syscall, TraceScope};
use serde_json::{Map, Value};

use crate::{
    filter::{ProcessFilter, SyscallSet},
    hook::{Hook, HookCtx, HookResult, Hooks},
    inject::{Injection, Injector},
    record::Record,
    sink::{CallbackSink, Sink},
    NitroError,
};

/// Counters of a tracing session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Stops at traps.
    pub stops: u64,
    /// Stops that matched no trap site.
    pub spurious: u64,
    /// Records written.
    pub records: u64,
    /// Stops the backend turned into nothing (interrupt returns, unmatched exits).
    pub ignored: u64,
    /// Backend errors (the stop was skipped, tracing went on).
    pub backend_errors: u64,
    /// Stops dropped by the filters (syscall set before decoding, processes after).
    pub filtered: u64,
    /// Records dropped by the per-process event budget.
    pub budget_drops: u64,
    /// Hooks that failed (returned an error or panicked).
    pub hook_errors: u64,
    /// Changes (hooks, injections) the backend could not apply.
    pub modify_errors: u64,
    /// Calls whose result was injected.
    pub injected: u64,
}

/// Which records to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordMode {
    /// One record per completed call, at its exit (strace's model).
    #[default]
    Completed,
    /// One record per stop, entries and exits (Nitro's model).
    EnterAndExit,
}

/// Why tracing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEnd {
    /// The guest powered off or the hypervisor exited.
    GuestEnded,
}

/// What the tracer remembers between a call's entry and its exit.
#[derive(Debug)]
struct Pending {
    hook: Map<String, Value>,
    /// The call was not run; it returns this.
    skip_ret: Option<i64>,
    injected: bool,
    entry_regs: Regs,
}

/// Most calls remembered between entry and exit (a guest cannot make nitro grow without
/// bound by never returning).
const MAX_PENDING: usize = 1 << 16;

struct Periodic {
    every: Duration,
    out: Box<dyn Write + Send>,
    start: Instant,
    last: Instant,
    last_stops: u64,
}

/// A tracer: a driver, an OS backend, filters, hooks, fault injections and sinks.
///
/// A runnable example with a mock driver and a tiny backend (no guest needed):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use nitro::{inject::Injection, Nitro};
/// use nitro_listener::*;
/// use nitro_mem::{PhysMemory, VecMemory};
/// use nitro_os::{OsBackend, Syscall, TraceScope};
///
/// // A driver that replays two stops: the entry and the exit of call 2 ("open").
/// struct Replay { events: Vec<DriverEvent>, mem: Arc<VecMemory>, regs: Arc<Mutex<Vec<RegChanges>>> }
/// impl Driver for Replay {
///     fn capabilities(&self) -> Capabilities {
///         Capabilities { hw_breakpoints: None, watchpoints: None, zero_copy_memory: true, vcpus: 1 }
///     }
///     fn memory(&self) -> Arc<dyn PhysMemory> { self.mem.clone() }
///     fn interrupt(&mut self) -> Result<Regs> { Ok(Regs::default()) }
///     fn arm(&mut self, _: &TrapPlan) -> Result<()> { Ok(()) }
///     fn disarm(&mut self) -> Result<()> { Ok(()) }
///     fn next_event(&mut self) -> Result<DriverEvent> {
///         Ok(if self.events.is_empty() { DriverEvent::GuestEnded { code: Some(0) } }
///            else { self.events.remove(0) })
///     }
///     fn set_regs(&mut self, c: &RegChanges) -> Result<()> { self.regs.lock().unwrap().push(c.clone()); Ok(()) }
///     fn resume(&mut self) -> Result<()> { Ok(()) }
///     fn detach(&mut self) -> Result<()> { Ok(()) }
/// }
///
/// // A backend that names call 2 "open" and applies changes by writing RAX.
/// struct Tiny { entry: Option<Syscall> }
/// impl OsBackend for Tiny {
///     fn os_name(&self) -> &str { "tiny" }
///     fn plan(&mut self, _: &dyn PhysMemory, _: &Regs, _: &Capabilities, _: &TraceScope)
///         -> nitro_os::Result<TrapPlan> { Ok(TrapPlan::default()) }
///     fn on_event(&mut self, ev: &NitroEvent, _: &dyn PhysMemory) -> nitro_os::Result<Option<Syscall>> {
///         Ok(Some(match ev.direction {
///             Direction::Enter => {
///                 let c = Syscall { vcpu: 0, direction: Direction::Enter, kind: ev.kind, cr3: 0,
///                     rax: ev.regs.rax, nr: ev.regs.rax, name: "open".into(),
///                     process: nitro_os::Process { pid: 7, tid: 7, name: "demo".into(), ..Default::default() },
///                     args: vec![], raw_args: [0; 6], ret: None, enter_time: ev.time, exit_time: None,
///                     strategy: ev.strategy, unfinished: false, note: None, task_key: 1 };
///                 self.entry = Some(c.clone());
///                 c
///             }
///             Direction::Exit => {
///                 let mut c = self.entry.take().unwrap();
///                 c.direction = Direction::Exit;
///                 c.ret = Some(nitro_os::ReturnValue::plain(ev.regs.rax as i64));
///                 c
///             }
///         }))
///     }
///     fn syscall_table(&self) -> Vec<(u64, String)> { vec![(2, "open".into())] }
///     fn modify(&mut self, _: &NitroEvent, call: &mut Syscall, ch: &nitro_os::CallChange,
///               _: &dyn PhysMemory) -> nitro_os::Result<RegChanges> {
///         let mut rc = RegChanges::default();
///         if ch.skip { rc.writes.push((Reg::Rax, u64::MAX)); }
///         if let Some(r) = ch.ret {
///             rc.writes.push((Reg::Rax, r as u64));
///             call.ret = Some(nitro_os::ReturnValue::plain(r));
///         }
///         Ok(rc)
///     }
/// }
///
/// let stop = |direction, rax| DriverEvent::Trap(Box::new(NitroEvent {
///     vcpu: 0, direction, kind: SyscallKind::Syscall64,
///     regs: Regs { rax, ..Regs::default() }, time: std::time::SystemTime::now(),
///     site: 0, strategy: Strategy::Watchpoint }));
/// let writes = Arc::new(Mutex::new(Vec::new()));
/// let driver = Replay { events: vec![stop(Direction::Enter, 2), stop(Direction::Exit, 3)],
///                       mem: Arc::new(VecMemory::new(4096)), regs: writes.clone() };
/// let mut nitro = Nitro::new(Box::new(driver), Box::new(Tiny { entry: None }));
/// nitro.inject(Injection::parse("open:error=ENOENT").unwrap());
/// nitro.on_exit("open", |ctx| { ctx.attach("seen", ctx.ret().unwrap_or(0)); Ok(()) });
/// nitro.arm().unwrap();
/// let records: Vec<_> = nitro.events().collect::<std::result::Result<_, _>>().unwrap();
/// assert_eq!(records.len(), 1);
/// let json = records[0].json();
/// assert_eq!(json["name"], "open");
/// assert_eq!(json["ret"], -2);
/// assert_eq!(json["injected"], true);
/// assert_eq!(json["hook"]["seen"], 3); // hooks run before the injected value is written
/// // The driver was told to skip the call at entry and to return -ENOENT at exit.
/// let w = writes.lock().unwrap();
/// assert_eq!(w[0].writes, vec![(Reg::Rax, u64::MAX)]);
/// assert_eq!(w[1].writes, vec![(Reg::Rax, (-2i64) as u64)]);
/// ```
pub struct Nitro {
    driver: Box<dyn Driver>,
    backend: Box<dyn OsBackend>,
    mem: Arc<dyn PhysMemory>,
    sinks: Vec<Box<dyn Sink>>,
    trace_set: SyscallSet,
    procs: ProcessFilter,
    hooks: Hooks,
    injector: Injector,
    trigger_exec: Option<String>,
    inject_trigger: Option<String>,
    inject_procs: ProcessFilter,
    max_per_proc: Option<u64>,
    per_proc: HashMap<u64, u64>,
    wanted_nrs: Option<HashSet<u64>>,
    pending: HashMap<u64, Pending>,
    mode: RecordMode,
    stats: TraceStats,
    periodic: Option<Periodic>,
    queue: VecDeque<Record>,
    ended: bool,
}

impl std::fmt::Debug for Nitro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nitro")
            .field("backend", &self.backend.os_name())
            .field("sinks", &self.sinks.len())
            .field("hooks", &self.hooks)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Nitro {
    /// A tracer over `driver` with `backend` (see [`crate::detect::detect_backend`] to
    /// choose the backend from the guest).
    pub fn new(driver: Box<dyn Driver>, backend: Box<dyn OsBackend>) -> Self {
        let mem = driver.memory();
        Nitro {
            driver,
            backend,
            mem,
            sinks: Vec::new(),
            trace_set: SyscallSet::all(),
            procs: ProcessFilter::default(),
            hooks: Hooks::default(),
            injector: Injector::default(),
            trigger_exec: None,
            inject_trigger: None,
            inject_procs: ProcessFilter::default(),
            max_per_proc: None,
            per_proc: HashMap::new(),
            wanted_nrs: None,
            pending: HashMap::new(),
            mode: RecordMode::default(),
            stats: TraceStats::default(),
            periodic: None,
            queue: VecDeque::new(),
            ended: false,
        }
    }

    /// A tracer over `driver` with the backend of the OS found in the guest (see
    /// [`crate::detect::detect_backend`]; `linux_kernel` is needed for a Linux guest). The
    /// guest is left stopped.
    pub fn detected(
        mut driver: Box<dyn Driver>,
        linux_kernel: Option<&std::path::Path>,
    ) -> Result<Self, NitroError> {
        let (_, backend) = crate::detect::detect_backend(driver.as_mut(), linux_kernel, None)?;
        Ok(Nitro::new(driver, backend))
    }

    /// Adds a sink.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) -> &mut Self {
        self.sinks.push(sink);
        self
    }

    /// Calls `f` with every record written (a sink made of a closure).
    pub fn on_record(&mut self, f: impl FnMut(&Record) + Send + 'static) -> &mut Self {
        self.add_sink(Box::new(CallbackSink(f)))
    }

    /// Chooses which records are written.
    pub fn set_record_mode(&mut self, mode: RecordMode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Limits what is traced to the names in `scope` (see [`Nitro::trace`] for classes).
    pub fn set_scope(&mut self, scope: TraceScope) -> &mut Self {
        self.trace_set = match scope.syscalls {
            None => SyscallSet::all(),
            Some(names) => {
                SyscallSet::parse(&names.join(",")).unwrap_or_else(|_| SyscallSet::none())
            }
        };
        self
    }

    /// Writes records only for calls in `set` (strace `-e trace=`). Calls outside it are
    /// dropped at the entry stop before any decoding, and the backend is asked to plan traps
    /// for the set only (with `none` and nothing else asked for, no trap is armed at all).
    pub fn trace(&mut self, set: SyscallSet) -> &mut Self {
        self.trace_set = set;
        self
    }

    /// Traces only the processes `filter` selects (pids, names, children).
    pub fn filter_processes(&mut self, filter: ProcessFilter) -> &mut Self {
        self.procs = filter;
        self
    }

    /// Adds a fault-injection rule (strace `--inject`).
    pub fn inject(&mut self, rule: Injection) -> &mut Self {
        self.injector.add(rule);
        self
    }

    /// Starts tracing a process, and its descendants, when it executes a program named
    /// `name` (its `comm` after the exec, or the base name of the executed file); nothing is
    /// traced before.
    pub fn trigger_exec(&mut self, name: impl Into<String>) -> &mut Self {
        self.trigger_exec = Some(name.into());
        self.procs.wait_for_trigger = true;
        self.procs.follow = true;
        self
    }

    /// Injects faults only into a process that executes a program named `name` (as
    /// [`Nitro::trigger_exec`] matches it) and its descendants, from the exec on; records
    /// are not affected. The command line uses this so that `nitro trace --inject ... --
    /// COMMAND` injects into COMMAND, not into the guest's init.
    pub fn inject_only_after_exec(&mut self, name: impl Into<String>) -> &mut Self {
        self.inject_trigger = Some(name.into());
        self.inject_procs.wait_for_trigger = true;
        self.inject_procs.follow = true;
        self
    }

    /// Writes at most `n` records per process; later ones are counted in
    /// [`TraceStats::budget_drops`].
    pub fn max_events_per_proc(&mut self, n: u64) -> &mut Self {
        self.max_per_proc = Some(n);
        self
    }

    /// Writes one line of statistics to `out` every `every` (checked at each stop).
    pub fn periodic_stats(&mut self, every: Duration, out: Box<dyn Write + Send>) -> &mut Self {
        let now = Instant::now();
        self.periodic = Some(Periodic {
            every,
            out,
            start: now,
            last: now,
            last_stops: 0,
        });
        self
    }

    /// Runs `f` at the entry of every call named `name`.
    pub fn on_enter(
        &mut self,
        name: &str,
        f: impl FnMut(&mut HookCtx<'_>) -> HookResult + Send + 'static,
    ) -> &mut Self {
        self.hooks.add(
            Direction::Enter,
            Some(name.to_string()),
            Box::new(f) as Hook,
        );
        self
    }

    /// Runs `f` at the exit of every call named `name`.
    pub fn on_exit(
        &mut self,
        name: &str,
        f: impl FnMut(&mut HookCtx<'_>) -> HookResult + Send + 'static,
    ) -> &mut Self {
        self.hooks
            .add(Direction::Exit, Some(name.to_string()), Box::new(f) as Hook);
        self
    }

    /// Runs `f` at the entry of every call.
    pub fn on_enter_all(
        &mut self,
        f: impl FnMut(&mut HookCtx<'_>) -> HookResult + Send + 'static,
    ) -> &mut Self {
        self.hooks.add(Direction::Enter, None, Box::new(f) as Hook);
        self
    }

    /// Runs `f` at the exit of every call.
    pub fn on_exit_all(
        &mut self,
        f: impl FnMut(&mut HookCtx<'_>) -> HookResult + Send + 'static,
    ) -> &mut Self {
        self.hooks.add(Direction::Exit, None, Box::new(f) as Hook);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> TraceStats {
        self.stats
    }

    /// The driver.
    pub fn driver_mut(&mut self) -> &mut dyn Driver {
        self.driver.as_mut()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn OsBackend {
        self.backend.as_ref()
    }

    /// What must be trapped: the traced set, injected and hooked calls, and the calls the
    /// process policies watch.
    fn planning_scope(&self, table: &[(u64, String)]) -> TraceScope {
        let mut sets: Vec<SyscallSet> = vec![self.trace_set.clone()];
        sets.extend(self.injector.rules().iter().map(|r| r.set.clone()));
        if !self.hooks.is_empty() {
            sets.push(match self.hooks.names() {
                None => SyscallSet::all(),
                Some(n) => SyscallSet::parse(&n.join(",")).unwrap_or_default(),
            });
        }
        if self.trigger_exec.is_some() || self.inject_trigger.is_some() {
            sets.push(SyscallSet::parse("execve,execveat").unwrap_or_default());
        }
        if self.procs.follow && !self.procs.is_all() {
            sets.push(SyscallSet::parse("clone,clone3,fork,vfork").unwrap_or_default());
        }
        let refs: Vec<&SyscallSet> = sets.iter().collect();
        SyscallSet::scope_of(&refs, table)
    }

    /// Stops the guest, lets the backend find the kernel and plan traps for what is asked,
    /// and arms them. The guest stays stopped; call [`Nitro::resume`]. When nothing is asked
    /// for (`trace=none`, no injection, no hook), nothing is armed.
    pub fn arm(&mut self) -> Result<(), NitroError> {
        let regs = self.driver.interrupt()?;
        let scope = self.planning_scope(&self.backend.syscall_table());
        if scope.is_none() {
            self.wanted_nrs = Some(HashSet::new());
            return Ok(());
        }
        let caps = self.driver.capabilities();
        let plan = self.backend.plan(self.mem.as_ref(), &regs, &caps, &scope)?;
        self.driver.arm(&plan)?;
        // The backend may know the guest's own table only now.
        let table = self.backend.syscall_table();
        let scope = self.planning_scope(&table);
        self.wanted_nrs = scope.syscalls.map(|names| {
            table
                .iter()
                .filter(|(_, n)| names.contains(n))
                .map(|(nr, _)| *nr)
                .collect()
        });
        Ok(())
    }

    /// Lets the guest run.
    pub fn resume(&mut self) -> Result<(), NitroError> {
        Ok(self.driver.resume()?)
    }

    /// Handles stops until the guest ends, writing records to the sinks. Records of calls
    /// whose return never came are written at the end, marked unfinished.
    pub fn run(&mut self) -> Result<TraceEnd, NitroError> {
        while !self.ended {
            self.step()?;
            while let Some(rec) = self.queue.pop_front() {
                for s in &mut self.sinks {
                    s.write(&rec)?;
                }
            }
        }
        for s in &mut self.sinks {
            s.finish()?;
        }
        self.report_periodic(true);
        Ok(TraceEnd::GuestEnded)
    }

    /// The records as an iterator, until the guest ends (sinks are not used). The guest must
    /// be armed and running (or resumable: the iterator resumes it after each stop).
    pub fn events(&mut self) -> Events<'_> {
        Events { nitro: self }
    }

    fn report_periodic(&mut self, last: bool) {
        let s = self.stats;
        let Some(p) = &mut self.periodic else {
            return;
        };
        let now = Instant::now();
        let dt = now.duration_since(p.last);
        if !last && dt < p.every {
            return;
        }
        let rate = (s.stops - p.last_stops) as f64 / dt.as_secs_f64().max(1e-9);
        let _ = writeln!(
            p.out,
            "nitro: stats t={:.1}s stops={} traps/s={rate:.0} records={} filtered={} drops={} \
             hook_errors={} injected={} backend_errors={}",
            now.duration_since(p.start).as_secs_f64(),
            s.stops,
            s.records,
            s.filtered,
            s.budget_drops,
            s.hook_errors,
            s.injected,
            s.backend_errors
        );
        let _ = p.out.flush();
        p.last = now;
        p.last_stops = s.stops;
    }

    /// Queues `call` if it is traced and within its process's budget.
    fn output(&mut self, rec: Record) {
        if !self.trace_set.matches(&rec.call.name) {
            return;
        }
        if let Some(max) = self.max_per_proc {
            if self.per_proc.len() > MAX_PENDING {
                self.per_proc.clear();
            }
            let n = self.per_proc.entry(rec.call.process.pid).or_insert(0);
            if *n >= max {
                self.stats.budget_drops += 1;
                return;
            }
            *n += 1;
        }
        self.stats.records += 1;
        self.queue.push_back(rec);
    }

    /// Handles one driver event; queues the records it produces.
    fn step(&mut self) -> Result<(), NitroError> {
        match self.driver.next_event()? {
            DriverEvent::GuestEnded { .. } => {
                for call in self.backend.drain_pending() {
                    if self.procs.selects(&call.process) {
                        self.output(Record::new(call));
                    }
                }
                self.ended = true;
            }
            DriverEvent::Spurious { .. } => {
                self.stats.spurious += 1;
                self.driver.resume()?;
            }
            DriverEvent::Trap(ev) => {
                self.stats.stops += 1;
                self.on_trap(&ev)?;
                self.report_periodic(false);
            }
        }
        Ok(())
    }

    fn on_trap(&mut self, ev: &NitroEvent) -> Result<(), NitroError> {
        // The cheap check first: a call nobody asked for is dropped before decoding.
        if let (Some(nr), Some(wanted)) = (self.backend.entry_nr(ev), &self.wanted_nrs) {
            if !ev.kind.is_compat() && !wanted.contains(&nr) {
                self.stats.filtered += 1;
                return Ok(self.driver.resume()?);
            }
        }
        let rec = match self.backend.on_event(ev, self.mem.as_ref()) {
            Ok(r) => r,
            Err(_) => {
                self.stats.backend_errors += 1;
                None
            }
        };
        let out = match rec {
            None => {
                self.stats.ignored += 1;
                None
            }
            Some(call) => match call.direction {
                Direction::Enter => self.on_enter_call(ev, call)?,
                Direction::Exit => self.on_exit_call(ev, call)?,
            },
        };
        // The backend may want traps changed (a per-task watchpoint for a new task).
        if let Some(plan) = self.backend.take_plan_update() {
            self.driver.arm(&plan)?;
        }
        // Resume before writing: the guest need not wait for the output.
        self.driver.resume()?;
        for orphan in self.backend.take_orphans() {
            self.pending.remove(&orphan.task_key);
            if self.procs.selects(&orphan.process) {
                self.output(Record::new(orphan));
            }
        }
        if let Some(rec) = out {
            self.output(rec);
        }
        Ok(())
    }

    fn apply(
        &mut self,
        ev: &NitroEvent,
        call: &mut Syscall,
        change: &CallChange,
    ) -> Result<bool, NitroError> {
        match self.backend.modify(ev, call, change, self.mem.as_ref()) {
            Ok(rc) => {
                if !rc.is_empty() {
                    self.driver.set_regs(&rc)?;
                }
                Ok(true)
            }
            Err(_) => {
                self.stats.modify_errors += 1;
                Ok(false)
            }
        }
    }

    fn on_enter_call(
        &mut self,
        ev: &NitroEvent,
        mut call: Syscall,
    ) -> Result<Option<Record>, NitroError> {
        if !self.procs.selects(&call.process) {
            self.stats.filtered += 1;
            return Ok(None);
        }
        let mut hook = Map::new();
        let (mut args, mut skip) = (Vec::new(), None);
        if !self.hooks.is_empty() {
            let mut ctx = HookCtx::new(&call, &ev.regs, self.mem.as_ref(), &mut hook);
            self.stats.hook_errors += self.hooks.run(&mut ctx);
            args = std::mem::take(&mut ctx.args);
            skip = ctx.skip;
        }
        if skip.is_none() && !self.injector.is_empty() && self.inject_procs.selects(&call.process) {
            if let Some(f) = self.injector.check(&call.name, call.process.pid) {
                skip = Some(f.value());
            }
        }
        let change = CallChange {
            args,
            skip: skip.is_some(),
            ret: None,
            entry_regs: None,
        };
        if !change.is_empty() && !self.apply(ev, &mut call, &change)? {
            skip = None;
        }
        if skip.is_some() || !hook.is_empty() || self.hooks.has_exit_hook(&call.name) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.clear();
            }
            self.pending.insert(
                call.task_key,
                Pending {
                    hook: hook.clone(),
                    skip_ret: skip,
                    injected: skip.is_some(),
                    entry_regs: ev.regs,
                },
            );
        }
        Ok((self.mode == RecordMode::EnterAndExit).then(|| Record {
            call,
            hook,
            injected: skip.is_some(),
        }))
    }

    fn on_exit_call(
        &mut self,
        ev: &NitroEvent,
        mut call: Syscall,
    ) -> Result<Option<Record>, NitroError> {
        let pending = self.pending.remove(&call.task_key);
        self.check_trigger(&call);
        if pending.is_none() && !self.procs.selects(&call.process) {
            self.stats.filtered += 1;
            return Ok(None);
        }
        let (mut hook, mut ret, mut injected, entry_regs) = match pending {
            Some(p) => (p.hook, p.skip_ret, p.injected, Some(p.entry_regs)),
            None => (Map::new(), None, false, None),
        };
        if self.hooks.has_exit_hook(&call.name) {
            let mut ctx = HookCtx::new(&call, &ev.regs, self.mem.as_ref(), &mut hook);
            self.stats.hook_errors += self.hooks.run(&mut ctx);
            if let Some(r) = ctx.ret {
                ret = Some(r);
            }
        }
        if let Some(r) = ret {
            let change = CallChange {
                ret: Some(r),
                entry_regs,
                ..Default::default()
            };
            if !self.apply(ev, &mut call, &change)? {
                injected = false;
            }
        }
        if injected {
            self.stats.injected += 1;
        }
        self.procs.observe(&call);
        if self.inject_trigger.is_some() {
            self.inject_procs.observe(&call);
        }
        Ok(Some(Record {
            call,
            hook,
            injected,
        }))
    }

    /// `--trigger-exec`: a successful exec of the named program adopts the process.
    fn check_trigger(&mut self, call: &Syscall) {
        if self.trigger_exec.is_none() && self.inject_trigger.is_none() {
            return;
        }
        if !matches!(call.name.as_str(), "execve" | "execveat")
            || call.ret.as_ref().is_none_or(|r| r.value != 0)
        {
            return;
        }
        let file_base = call.args.iter().find_map(|a| match &a.value {
            ArgValue::Str { bytes, .. } if a.name == "filename" => {
                let b = bytes.rsplit(|&c| c == b'/').next().unwrap_or(bytes);
                Some(String::from_utf8_lossy(b).into_owned())
            }
            _ => None,
        });
        let is = |name: &Option<String>| {
            name.as_ref().is_some_and(|n| {
                call.process.name == *n || file_base.as_deref() == Some(n.as_str())
            })
        };
        if is(&self.trigger_exec) {
            self.procs.adopt(call.process.pid);
        }
        if is(&self.inject_trigger) {
            self.inject_procs.adopt(call.process.pid);
        }
    }
}

/// The records of a tracing session as an iterator ([`Nitro::events`]).
#[derive(Debug)]
pub struct Events<'a> {
    nitro: &'a mut Nitro,
}

impl Iterator for Events<'_> {
    type Item = Result<Record, NitroError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.nitro.queue.pop_front() {
                return Some(Ok(r));
            }
            if self.nitro.ended {
                return None;
            }
            if let Err(e) = self.nitro.step() {
                self.nitro.ended = true;
                return Some(Err(e));
            }
        }
    }
}
