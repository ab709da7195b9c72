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
//! Environment: `NITRO_BENCH_COUNT` (dd blocks, default 20000), `NITRO_BENCH_RUNS` (pairs of
//! runs, default 3; medians are printed), `NITRO_BENCH_CPUS` (default 1),
//! `NITRO_BENCH_GUEST` (default debian-6.1). Skips, saying why, when QEMU or the guest is
//! missing. `cargo bench -p nitro-benches --bench qemu_trace`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::TextSink,
    Nitro,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::{qemu::QemuDriver, DriverStats};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sample {
    secs: f64,
    records: u64,
    stops: u64,
    driver: DriverStats,
}

fn one_run(kernel: &PathBuf, count: u64, cpus: u32, traced: bool) -> Result<Sample, String> {
    let initrd = guest::default_initrd().map_err(|e| e.to_string())?;
    let command = vec![
        "/bin/dd".to_string(),
        "if=/dev/zero".into(),
        "of=/dev/null".into(),
        "bs=1".into(),
        format!("count={count}"),
    ];
    let mut spec = GuestSpec::new(kernel.clone(), initrd, command);
    spec.cpus = cpus;
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).map_err(|e| e.to_string())?;
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), cpus)
        .map_err(|e| e.to_string())?;
    let mut backend = LinuxBackend::from_kernel_file(kernel).map_err(|e| e.to_string())?;
    backend.decode.string_limit = 32;
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro.add_sink(Box::new(TextSink::new(std::io::sink())));
    nitro.resume().map_err(|e| e.to_string())?;
    match run
        .wait_control(Duration::from_secs(120))
        .map_err(|e| e.to_string())?
    {
        ControlMessage::Ready => {}
        other => return Err(format!("guest init said {other:?}")),
    }
    if traced {
        nitro.arm().map_err(|e| e.to_string())?;
        nitro.resume().map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    run.go().map_err(|e| e.to_string())?;
    nitro.run().map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    run.finish(Duration::from_secs(10));
    if run.exit_status != Some(0) {
        return Err(format!("workload exit status {:?}", run.exit_status));
    }
    let st = nitro.stats();
    Ok(Sample {
        secs,
        records: st.records,
        stops: st.stops,
        driver: nitro.driver_mut().driver_stats(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips the run.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if !filter.is_empty() && !"qemu_trace".contains(&filter) {
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
    let runs = env_num("NITRO_BENCH_RUNS", 3).max(1);
    let cpus = env_num("NITRO_BENCH_CPUS", 1).clamp(1, 64) as u32;
    println!(
        "qemu_trace: {guest_name}, TCG, {cpus} vCPU, dd bs=1 count={count}, {runs} pair(s) of runs"
    );
    let (mut rates, mut stop_rates, mut rtps, mut base, mut traced_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let u = match one_run(&kernel, count, cpus, false) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("qemu_trace: untraced run failed: {e}");
                std::process::exit(1);
            }
        };
        let t = match one_run(&kernel, count, cpus, true) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("qemu_trace: traced run failed: {e}");
                std::process::exit(1);
            }
        };
        let added = (t.secs - u.secs).max(1e-6);
        let rate = t.records as f64 / added;
        let stop_rate = t.stops as f64 / added;
        let d = t.driver;
        let rtp = d.round_trips as f64 / (d.trap_stops + d.spurious_stops).max(1) as f64;
        println!(
            "run {i}: untraced {:.2} s, traced {:.2} s, {} calls recorded, {} stops \
             ({} spurious, {} late), {:.0} calls/s and {:.0} stops/s of added time, \
             {:.2} round trips/stop ({} round trips, {} packets sent, {} received), \
             strategies: {} watchpoint, {} emulated, {} single-step",
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
            d.watchpoint_stops,
            d.emulated_stops,
            d.single_steps,
        );
        rates.push(rate);
        stop_rates.push(stop_rate);
        rtps.push(rtp);
        base.push(u.secs);
        traced_t.push(t.secs);
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
