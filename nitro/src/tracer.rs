//! The tracing loop: driver -> event -> backend -> record -> sinks.

use nitro_listener::{Direction, Driver, DriverEvent};
use nitro_os::{OsBackend, Syscall, TraceScope};
use serde_json::Map;

use crate::{sink::Sink, NitroError};

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

/// A tracer: a driver, an OS backend and sinks.
///
/// ```no_run
/// use nitro::{sink::TextSink, Nitro};
/// use nitro_backend_linux::LinuxBackend;
/// use nitro_listener::qemu::QemuDriver;
///
/// let backend = LinuxBackend::from_kernel_file("vmlinuz".as_ref()).unwrap();
/// let driver = QemuDriver::connect("127.0.0.1:1234", None, 1).unwrap();
/// let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
/// nitro.add_sink(Box::new(TextSink::new(std::io::stdout())));
/// nitro.arm().unwrap();
/// nitro.resume().unwrap();
/// nitro.run().unwrap();
/// ```
pub struct Nitro {
    driver: Box<dyn Driver>,
    backend: Box<dyn OsBackend>,
    sinks: Vec<Box<dyn Sink>>,
    scope: TraceScope,
    mode: RecordMode,
    stats: TraceStats,
}

impl std::fmt::Debug for Nitro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nitro")
            .field("backend", &self.backend.os_name())
            .field("sinks", &self.sinks.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Nitro {
    /// A tracer over `driver` with `backend`.
    pub fn new(driver: Box<dyn Driver>, backend: Box<dyn OsBackend>) -> Self {
        Nitro {
            driver,
            backend,
            sinks: Vec::new(),
            scope: TraceScope::default(),
            mode: RecordMode::default(),
            stats: TraceStats::default(),
        }
    }

    /// Adds a sink.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) -> &mut Self {
        self.sinks.push(sink);
        self
    }

    /// Chooses which records are written.
    pub fn set_record_mode(&mut self, mode: RecordMode) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Limits what is traced.
    pub fn set_scope(&mut self, scope: TraceScope) -> &mut Self {
        self.scope = scope;
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

    /// Stops the guest, lets the backend find the kernel and plan traps, and arms them. The
    /// guest stays stopped; call [`Nitro::resume`].
    pub fn arm(&mut self) -> Result<(), NitroError> {
        let regs = self.driver.interrupt()?;
        let mem = self.driver.memory();
        let caps = self.driver.capabilities();
        let plan = self.backend.plan(mem.as_ref(), &regs, &caps, &self.scope)?;
        self.driver.arm(&plan)?;
        Ok(())
    }

    /// Lets the guest run.
    pub fn resume(&mut self) -> Result<(), NitroError> {
        Ok(self.driver.resume()?)
    }

    fn emit(&mut self, call: &Syscall) -> Result<(), NitroError> {
        let hook = Map::new();
        for s in &mut self.sinks {
            s.write(call, &hook)?;
        }
        self.stats.records += 1;
        Ok(())
    }

    /// Handles stops until the guest ends. Records of calls whose return never came are
    /// written at the end, marked unfinished.
    pub fn run(&mut self) -> Result<TraceEnd, NitroError> {
        let mem = self.driver.memory();
        loop {
            match self.driver.next_event()? {
                DriverEvent::GuestEnded { .. } => break,
                DriverEvent::Spurious { .. } => {
                    self.stats.spurious += 1;
                    self.driver.resume()?;
                }
                DriverEvent::Trap(ev) => {
                    self.stats.stops += 1;
                    let rec = match self.backend.on_event(&ev, mem.as_ref()) {
                        Ok(r) => r,
                        Err(_) => {
                            self.stats.backend_errors += 1;
                            None
                        }
                    };
                    // Resume before writing: the guest need not wait for the output.
                    self.driver.resume()?;
                    for orphan in self.backend.take_orphans() {
                        self.emit(&orphan)?;
                    }
                    match rec {
                        None => self.stats.ignored += 1,
                        Some(call) => {
                            let write = match call.direction {
                                Direction::Exit => true,
                                Direction::Enter => self.mode == RecordMode::EnterAndExit,
                            };
                            if write {
                                self.emit(&call)?;
                            }
                        }
                    }
                }
            }
        }
        for call in self.backend.drain_pending() {
            self.emit(&call)?;
        }
        for s in &mut self.sinks {
            s.finish()?;
        }
        Ok(TraceEnd::GuestEnded)
    }
}
