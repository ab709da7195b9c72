//! Cost of tracing a real guest through QEMU's gdbstub (a bench binary, not criterion: one
//! sample is a guest boot plus a workload of tens of thousands of calls).
//!
//! The guest (Debian 6.1 under TCG, provisioned by scripts/provision.sh) runs a
//! syscall-heavy workload, busybox `dd if=/dev/zero of=/dev/null bs=1 count=N` (one `read`
//! and one `write` of one byte per block), once untraced and once traced with names,
//! processes and arguments decoded and formatted as text into a sink that discards. Time is
//! taken from the `GO` that starts the command to the guest's power-off in both runs.
//!
//! Reported: traced calls per second of added time (calls / (traced - untraced)), stops per
//! second, packet round trips per stop, and the per-strategy counts.
//!
//! Environment: `NITRO_BENCH_COUNT` (dd blocks, default 20000), `NITRO_BENCH_RUNS` (rounds,
//! default 2; medians are printed), `NITRO_BENCH_NO_CLASSIC` (skip the one-packet-at-a-time
//! comparison run), `NITRO_BENCH_CPUS` (default 1),
//! `NITRO_BENCH_GUEST` (default debian-6.1). Skips, saying why, when QEMU or the guest is
//! missing. `cargo bench -p nitro-benches --bench qemu_trace`.

use nitro_benches::median;
use std::{
    path::Path,
    time::{Duration, Instant},
};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::TextSink,
    Nitro, SyscallSet,
};
use nitro_backend_linux::{LinuxBackend, TrapMode};
use nitro_listener::{qemu::QemuDriver, DriverStats};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sample {
    secs: f64,
    /// CPU time of this process (tracer, decoding, sinks) during the run.
    tracer_cpu: f64,
    records: u64,
    stops: u64,
    driver: DriverStats,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Untraced,
    /// The driver's fast path: deferred acknowledgements, `g` with the ack, `c` unawaited.
    Traced,
    /// Every packet acknowledged and awaited on its own (`g` and `c` two round trips).
    TracedClassic,
    /// Only the named calls traced (`-e trace=...`), trapped as `traps` says.
    Filtered {
        names: &'static str,
        traps: TrapMode,
    },
}

fn one_run(kernel: &Path, count: u64, cpus: u32, mode: Mode) -> Result<Sample, String> {
    let initrd = guest::default_initrd().map_err(|e| e.to_string())?;
    let command = vec![
        "/bin/dd".to_string(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=1".into(),
        format!("count={count}"),
    ];
    let mut spec = GuestSpec::new(kernel.to_path_buf(), initrd, command);
    spec.cpus = cpus;
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).map_err(|e| e.to_string())?;
    let mut driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), cpus)
        .map_err(|e| e.to_string())?;
    driver.set_pipelined(mode != Mode::TracedClassic);
    let mut backend = LinuxBackend::from_kernel_file(kernel).map_err(|e| e.to_string())?;
    backend.decode.string_limit = 32;
    if let Mode::Filtered { traps, .. } = mode {
        backend.set_trap_mode(traps);
    }
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    if let Mode::Filtered { names, .. } = mode {
        nitro.trace(SyscallSet::parse(names).map_err(|e| e.to_string())?);
    }
    nitro.add_sink(Box::new(TextSink::new(std::io::sink())));
    nitro.resume().map_err(|e| e.to_string())?;
    match run
        .wait_control(Duration::from_secs(120))
        .map_err(|e| e.to_string())?
    {
        ControlMessage::Ready => {}
        other => return Err(format!("guest init said {other:?}")),
    }
    if mode != Mode::Untraced {
        nitro.arm().map_err(|e| e.to_string())?;
        nitro.resume().map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let cpu0 = self_cpu_secs();
    run.go().map_err(|e| e.to_string())?;
    nitro.run().map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let tracer_cpu = self_cpu_secs() - cpu0;
    run.finish(Duration::from_secs(10));
    if run.exit_status != Some(0) {
        return Err(format!("workload exit status {:?}", run.exit_status));
    }
    let st = nitro.stats();
    Ok(Sample {
        secs,
        tracer_cpu,
        records: st.records,
        stops: st.stops,
        driver: nitro.driver_mut().driver_stats(),
    })
}

/// The trap planner: a filtered trace with the traced calls' handlers trapped versus the
/// common entry trapped and the rest filtered in the tracer, for a rare call (`openat`: the
/// dd loop makes a handful) and for the loop's own calls (`read`), and `auto`, which starts
/// with handlers and falls back to the entry when the traced calls are frequent
/// (`NITRO_BENCH_ALL` adds forced handler traps on `read`, minutes long).
fn filtered(run: &dyn Fn(Mode, &str) -> Sample, untraced: f64) {
    for names in ["openat", "read"] {
        let mut line = format!("filtered -e trace={names}:");
        for (what, traps) in [
            ("entry", TrapMode::Entry),
            ("handlers", TrapMode::Handlers),
            ("auto", TrapMode::Auto),
        ] {
            // Forced handler traps on the loop's own call take minutes (a breakpoint stop
            // per call): only on demand.
            if names == "read"
                && traps == TrapMode::Handlers
                && std::env::var_os("NITRO_BENCH_ALL").is_none()
            {
                continue;
            }
            let t = run(Mode::Filtered { names, traps }, what);
            let d = t.driver;
            line += &format!(
                " {what}: {:.2} s ({:.1}x untraced {untraced:.2} s), {} records, {} stops, \
                 {:.2} round trips/stop, {} trap changes;",
                t.secs,
                t.secs / untraced.max(1e-9),
                t.records,
                t.stops,
                d.round_trips_per_stop(),
                d.trap_changes
            );
        }
        println!("{line}");
    }
}

/// User + system CPU seconds of this process (getrusage(2)).
fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to `ru`; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    if !nitro_benches::selected("qemu_trace") {
        return;
    }
    let guest_name = std::env::var("NITRO_BENCH_GUEST").unwrap_or_else(|_| "debian-6.1".into());
    let kernel = match guest::guest_kernel(&guest_name) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("SKIP qemu_trace: {e}");
            return;
        }
    };
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP qemu_trace: qemu-system-x86_64 not installed");
        return;
    }
    let count = env_num("NITRO_BENCH_COUNT", 20_000);
    let runs = env_num("NITRO_BENCH_RUNS", 2).max(1);
    let cpus = env_num("NITRO_BENCH_CPUS", 1).clamp(1, 64) as u32;
    println!(
        "qemu_trace: {guest_name}, TCG, {cpus} vCPU, dd bs=1 count={count}, {runs} pair(s) of runs"
    );
    let (mut rates, mut stop_rates, mut rtps, mut base, mut traced_t, mut classic_rates) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let classic = std::env::var_os("NITRO_BENCH_NO_CLASSIC").is_none();
    let run_or_exit = |mode: Mode, what: &str| match one_run(&kernel, count, cpus, mode) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("qemu_trace: {what} run failed: {e}");
            std::process::exit(1);
        }
    };
    for i in 0..runs {
        let u = run_or_exit(Mode::Untraced, "untraced");
        let t = run_or_exit(Mode::Traced, "traced");
        let added = (t.secs - u.secs).max(1e-6);
        let rate = t.records as f64 / added;
        let stop_rate = t.stops as f64 / added;
        let d = t.driver;
        let rtp = d.round_trips_per_stop();
        println!(
            "run {i}: untraced {:.2} s, traced {:.2} s, {} calls recorded, {} stops \
             ({} spurious, {} late), {:.0} calls/s and {:.0} stops/s of added time, \
             {:.2} round trips/stop ({} round trips, {} packets sent, {} received), \
             tracer CPU {:.1} us/stop, {} trap changes, strategies: {} watchpoint, \
             {} emulated, {} single-step",
            u.secs,
            t.secs,
            t.records,
            t.stops,
            d.spurious_stops,
            d.late_stops,
            rate,
            stop_rate,
            rtp,
            d.round_trips,
            d.packets_sent,
            d.packets_received,
            t.tracer_cpu * 1e6 / t.stops.max(1) as f64,
            d.trap_changes,
            d.watchpoint_stops,
            d.emulated_stops,
            d.single_steps,
        );
        if classic {
            let c = run_or_exit(Mode::TracedClassic, "classic");
            let added_c = (c.secs - u.secs).max(1e-6);
            let rate_c = c.records as f64 / added_c;
            println!(
                "run {i}: same, one packet at a time: traced {:.2} s, {:.0} calls/s of added \
                 time, {:.2} round trips/stop; fast path {:.2}x",
                c.secs,
                rate_c,
                c.driver.round_trips_per_stop(),
                rate / rate_c.max(1e-9)
            );
            classic_rates.push(rate_c);
        }
        rates.push(rate);
        stop_rates.push(stop_rate);
        rtps.push(rtp);
        base.push(u.secs);
        traced_t.push(t.secs);
    }
    if std::env::var_os("NITRO_BENCH_NO_FILTERED").is_none() {
        filtered(&run_or_exit, median(base.clone()));
    }
    if classic {
        println!(
            "median, one packet at a time: {:.0} traced calls/s of added time",
            median(classic_rates)
        );
    }
    println!(
        "median: untraced {:.2} s, traced {:.2} s, {:.0} traced calls/s of added time \
         ({:.0} stops/s), {:.2} packet round trips per stop (goal: >= 2500 calls/s, <= 2)",
        median(base),
        median(traced_t),
        median(rates),
        median(stop_rates),
        median(rtps)
    );
}
