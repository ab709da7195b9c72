//! nitro against what users would pick instead (a bench binary; one sample is a guest boot
//! plus a workload): strace running inside the same guest on the same workload, and the
//! bare gdbstub packet round trip that bounds any tracer built on QEMU's gdbstub.
//!
//! The guest (Debian 6.1 under TCG) boots `initramfs-strace.cpio.gz` from
//! `scripts/provision.sh` (the usual initramfs plus Debian's strace and its libraries under
//! /opt/strace and /lib). The workload is busybox `dd if=/dev/zero of=/dev/null bs=1
//! count=N`: N `read` and N `write` calls. Three runs per round, each timed on the host from
//! the `GO` that starts the command to the guest's power-off:
//! - untraced;
//! - `strace -f -qq -o /dev/null dd ...` inside the guest (ptrace; every call formatted);
//! - nitro from outside, every call named, attributed, decoded and formatted as text into a
//!   sink that discards (the CLI's `--format text` minus the terminal).
//!
//! The guest's own clock is no use here: under TCG it stops while the gdbstub holds the
//! vCPUs, so only host time sees nitro's cost.
//!
//! Then the packet round trip: `qC` and `?` requests to a stopped guest's gdbstub, one at a
//! time, timed on the host; nitro's added time per stop is compared with it.
//!
//! Environment: `NITRO_BENCH_COUNT` (dd blocks, default 5000), `NITRO_BENCH_RUNS` (rounds,
//! default 3; medians printed). `cargo bench -p nitro-benches --bench vs_strace`.

use nitro_benches::median;
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::TextSink,
    Nitro,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::{rsp::RspClient, QemuDriver};

const STRACE: &str = "/opt/strace/bin/strace";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    StraceInGuest,
    Nitro,
}

struct Sample {
    secs: f64,
    stops: u64,
    records: u64,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn one_run(kernel: &Path, initrd: &Path, count: u64, mode: Mode) -> Result<Sample, String> {
    let mut command: Vec<String> = Vec::new();
    if mode == Mode::StraceInGuest {
        command.extend([STRACE, "-f", "-qq", "-o", "/dev/null"].map(String::from));
    }
    command.extend(["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1"].map(String::from));
    command.push(format!("count={count}"));
    let spec = GuestSpec::new(kernel.to_path_buf(), initrd.to_path_buf(), command);
    let mut run = GuestRun::start(&spec, Box::new(std::io::sink())).map_err(|e| e.to_string())?;
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1)
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
    if mode == Mode::Nitro {
        nitro.arm().map_err(|e| e.to_string())?;
        nitro.resume().map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    run.go().map_err(|e| e.to_string())?;
    nitro.run().map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    run.finish(Duration::from_secs(10));
    if run.exit_status != Some(0) {
        return Err(format!(
            "{mode:?}: workload exit status {:?}{}",
            run.exit_status,
            run.console_problem()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
    }
    let st = nitro.stats();
    Ok(Sample {
        secs,
        stops: st.stops,
        records: st.records,
    })
}

/// Median time of one request/reply to a stopped guest's gdbstub, in microseconds.
fn round_trip_us(kernel: &Path, initrd: &Path, n: u32) -> Result<(f64, f64), String> {
    let spec = GuestSpec::new(
        kernel.to_path_buf(),
        initrd.to_path_buf(),
        vec!["true".into()],
    );
    let run = GuestRun::start(&spec, Box::new(std::io::sink())).map_err(|e| e.to_string())?;
    let mut rsp = RspClient::connect(&run.gdb_endpoint, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    // Drain whatever the stub says on connecting, as the driver does.
    rsp.set_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    while rsp.recv().is_ok() {}
    rsp.set_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut time = |req: &[u8]| -> Result<f64, String> {
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = Instant::now();
            rsp.request(req).map_err(|e| e.to_string())?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(median(v))
    };
    let qc = time(b"qC")?;
    let q = time(b"?")?;
    Ok((qc, q))
}

fn main() {
    if !nitro_benches::selected("vs_strace") {
        return;
    }
    let kernel = match guest::guest_kernel("debian-6.1") {
        Ok(k) => k,
        Err(e) => {
            eprintln!("SKIP vs_strace: {e}");
            return;
        }
    };
    let initrd: PathBuf = guest::cache_dir().join("initramfs-strace.cpio.gz");
    if !initrd.exists() {
        eprintln!(
            "SKIP vs_strace: {} missing: run scripts/provision.sh (needs strace on the host)",
            initrd.display()
        );
        return;
    }
    let count = env_num("NITRO_BENCH_COUNT", 5000);
    let runs = env_num("NITRO_BENCH_RUNS", 3).max(1);
    println!(
        "vs_strace: debian-6.1, TCG, 1 vCPU, dd bs=1 count={count} ({} calls), {runs} round(s)",
        2 * count
    );
    let run_or_exit = |mode: Mode| match one_run(&kernel, &initrd, count, mode) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vs_strace: {mode:?} run failed: {e}");
            std::process::exit(1);
        }
    };
    let (mut base, mut st, mut ni, mut stops, mut recs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let u = run_or_exit(Mode::Untraced);
        let s = run_or_exit(Mode::StraceInGuest);
        let n = run_or_exit(Mode::Nitro);
        println!(
            "round {i}: untraced {:.2} s, strace in guest {:.2} s, nitro {:.2} s ({} stops, {} records)",
            u.secs, s.secs, n.secs, n.stops, n.records
        );
        base.push(u.secs);
        st.push(s.secs);
        ni.push(n.secs);
        stops.push(n.stops as f64);
        recs.push(n.records as f64);
    }
    let (b, s, n) = (median(base), median(st), median(ni));
    let stops = median(stops);
    let calls = 2.0 * count as f64;
    let (qc, q) = match round_trip_us(&kernel, &initrd, 2000) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vs_strace: round-trip measurement failed: {e}");
            std::process::exit(1);
        }
    };
    let per_call = |t: f64| (t - b).max(0.0) * 1e6 / calls;
    let per_stop = (n - b).max(0.0) * 1e6 / stops.max(1.0);
    println!();
    println!("| tracer (same guest, same workload) | time, s | slowdown | added us per dd call |");
    println!("|---|---:|---:|---:|");
    println!("| none | {b:.2} | 1.0x | - |");
    println!(
        "| strace -f inside the guest | {s:.2} | {:.1}x | {:.0} |",
        s / b,
        per_call(s)
    );
    println!(
        "| nitro from outside (gdbstub watchpoints) | {n:.2} | {:.1}x | {:.0} |",
        n / b,
        per_call(n)
    );
    println!();
    println!("| cost | us |");
    println!("|---|---:|");
    println!("| gdbstub round trip, `qC` (median of 2000) | {qc:.1} |");
    println!("| gdbstub round trip, `?` (median of 2000) | {q:.1} |");
    println!(
        "| nitro, added time per stop ({stops:.0} stops: entry + exit per call) | {per_stop:.1} |"
    );
    println!(
        "| nitro per stop / bare round trip | {:.1}x |",
        per_stop / qc.max(1e-9)
    );
    println!("(records per round: {:.0})", median(recs));
}
