//! Filter and output options shared by the subcommands that trace (`trace`, `attach`):
//! flatten [`FilterArgs`] and [`OutputArgs`] into a command's arguments and call
//! [`configure`] on its [`Nitro`].

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, ValueEnum};
use nitro::{
    sink::{JsonlSink, Sink, SummarySink, TextSink},
    Injection, Nitro, NitroError, ProcessFilter, RecordMode, SyscallSet,
};

/// Record formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// strace-like lines.
    Text,
}

/// FILTERS (DESIGN.md, "The command line").
#[derive(Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// strace's qualifying expressions: `trace=SET` (names, %classes, all, none, !SET) or
    /// `inject=SPEC` (like --inject). A bare SET means trace=SET.
    #[arg(short = 'e', value_name = "EXPR")]
    pub expr: Vec<String>,
    /// Fault injection: SET:error=ERRNO|retval=VALUE[:when=FIRST[..LAST][+[STEP]]].
    #[arg(long = "inject", value_name = "SPEC")]
    pub inject: Vec<String>,
    /// Trace only this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pid: Vec<u64>,
    /// Trace only processes with this name (repeatable).
    #[arg(long = "comm", value_name = "NAME")]
    pub comm: Vec<String>,
    /// Follow children of traced processes.
    #[arg(short = 'f')]
    pub follow: bool,
    /// Trace nothing until a process executes NAME; then trace it and its descendants.
    #[arg(long, value_name = "NAME")]
    pub trigger_exec: Option<String>,
    /// Write at most N records per process.
    #[arg(long, value_name = "N")]
    pub max_events_per_proc: Option<u64>,
    /// Where calls are trapped: `handlers` traps each traced call's own kernel handler, so
    /// calls outside a `-e trace=` filter never stop the guest; `entry` traps the common
    /// system-call entry (every call stops, filtered afterwards); `auto` picks handlers for a
    /// filter of at most 64 handlers.
    #[arg(long, value_enum, default_value_t = TrapsArg::Auto)]
    pub traps: TrapsArg,
}

/// `--traps` values.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum TrapsArg {
    /// Handlers for small filters, the common entry otherwise.
    #[default]
    Auto,
    /// The common entry.
    Entry,
    /// Each traced call's handler.
    Handlers,
}

impl TrapsArg {
    /// The Linux backend's mode.
    pub fn linux_mode(self) -> nitro_backend_linux::TrapMode {
        use nitro_backend_linux::TrapMode;
        match self {
            TrapsArg::Auto => TrapMode::Auto,
            TrapsArg::Entry => TrapMode::Entry,
            TrapsArg::Handlers => TrapMode::Handlers,
        }
    }
}

/// OUTPUT (DESIGN.md, "The command line").
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write records to FILE instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Record format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Which records: `exit` (one per completed call, default) or `enter,exit` (one per stop).
    #[arg(long, default_value = "exit")]
    pub events: String,
    /// Longest string shown in arguments (strace -s).
    #[arg(long, default_value_t = 32)]
    pub string_limit: usize,
    /// Verbose decoding: structures and environments in full (strace -v).
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Summary table of calls, errors and time per syscall at the end instead of records
    /// (strace -c), written to -o FILE or stderr.
    #[arg(short = 'c')]
    pub summary: bool,
    /// Records and the summary table (strace -C).
    #[arg(short = 'C', conflicts_with = "summary")]
    pub summary_too: bool,
    /// Silent: write no records.
    #[arg(short = 's')]
    pub silent: bool,
    /// Print statistics (stops, traps/s, drops, hook failures) to stderr every SECS.
    #[arg(short = 'd', value_name = "SECS")]
    pub stats_every: Option<f64>,
}

fn usage(msg: String) -> NitroError {
    NitroError::Usage(msg)
}

impl FilterArgs {
    /// The traced set and injections from `-e` and `--inject`.
    pub fn parse(&self) -> Result<(SyscallSet, Vec<Injection>), NitroError> {
        let mut set = None;
        let mut inj = Vec::new();
        for e in &self.expr {
            match e.split_once('=') {
                Some(("trace" | "t", s)) => set = Some(SyscallSet::parse(s)?),
                Some(("inject", s)) => inj.push(Injection::parse(s)?),
                Some((k, _)) if !k.contains(',') && !k.contains(':') => {
                    return Err(usage(format!(
                        "-e {e}: only trace= and inject= are supported"
                    )))
                }
                _ => set = Some(SyscallSet::parse(e)?),
            }
        }
        for s in &self.inject {
            inj.push(Injection::parse(s)?);
        }
        Ok((set.unwrap_or_else(SyscallSet::all), inj))
    }
}

impl OutputArgs {
    /// The record mode from `--events`.
    pub fn mode(&self) -> Result<RecordMode, NitroError> {
        match self.events.as_str() {
            "exit" => Ok(RecordMode::Completed),
            "enter,exit" | "exit,enter" | "all" => Ok(RecordMode::EnterAndExit),
            other => Err(usage(format!(
                "--events {other}: expected 'exit' or 'enter,exit'"
            ))),
        }
    }

    fn open(&self) -> Result<Option<Box<dyn Write + Send>>, NitroError> {
        Ok(match &self.output {
            Some(p) => {
                Some(Box::new(BufWriter::new(File::create(p).map_err(|e| {
                    NitroError::Io(format!("{}: {e}", p.display()))
                })?)))
            }
            None => None,
        })
    }
}

/// Applies filters, policies and outputs to `nitro`. `program` is the command run in the
/// guest, if nitro runs one: without a process filter, faults are injected only into it
/// (and its children), from its exec on.
pub fn configure(
    nitro: &mut Nitro,
    f: &FilterArgs,
    o: &OutputArgs,
    program: Option<&str>,
) -> Result<(), NitroError> {
    let (set, injections) = f.parse()?;
    let unscoped = f.pid.is_empty() && f.comm.is_empty() && f.trigger_exec.is_none();
    if let (Some(p), false, true) = (program, injections.is_empty(), unscoped) {
        let base = p.rsplit('/').next().unwrap_or(p);
        nitro.inject_only_after_exec(base);
    }
    nitro.trace(set).set_record_mode(o.mode()?);
    for i in injections {
        nitro.inject(i);
    }
    let procs = ProcessFilter::default()
        .with_pids(f.pid.iter().copied())
        .with_comms(f.comm.iter().cloned())
        .following(f.follow);
    nitro.filter_processes(procs);
    if let Some(name) = &f.trigger_exec {
        nitro.trigger_exec(name.clone());
    }
    if let Some(n) = f.max_events_per_proc {
        nitro.max_events_per_proc(n);
    }
    if let Some(secs) = o.stats_every {
        if !(secs > 0.0 && secs < 1e6) {
            return Err(usage(format!("-d {secs}: expected seconds > 0")));
        }
        nitro.periodic_stats(Duration::from_secs_f64(secs), Box::new(std::io::stderr()));
    }
    let mut out = o.open()?;
    let records = !o.silent && !o.summary;
    if records {
        let w = out.take().unwrap_or_else(|| Box::new(std::io::stdout()));
        let sink: Box<dyn Sink> = match o.format {
            Format::Jsonl => Box::new(JsonlSink::new(w)),
            Format::Text => Box::new(TextSink::new(w)),
        };
        nitro.add_sink(sink);
    }
    if o.summary || o.summary_too {
        let w = out.take().unwrap_or_else(|| Box::new(std::io::stderr()));
        nitro.add_sink(Box::new(SummarySink::new(w)));
    }
    Ok(())
}
