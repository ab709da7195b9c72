//! `nitro attach`: trace a QEMU guest that is already running (started by a person or by
//! libvirt), then detach and leave it running with every trap removed.
//!
//! The guest's QEMU needs a gdbstub (`-gdb tcp:127.0.0.1:PORT`), and nitro needs its RAM:
//! the shared RAM file (`--memory-file`), or the QEMU process (`--qemu-pid`, read through
//! /proc/PID/mem). See nitro-listener/src/qemu/README-attach.md.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use nitro::{Nitro, NitroError};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::{
    qemu::{attach, guard::Guardian, QemuDriver},
    Driver,
};
use nitro_mem::PhysMemory;

use crate::{
    fail,
    opts::{configure, FilterArgs, OutputArgs},
    CliResult,
};

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The guest's QEMU gdbstub: HOST:PORT (QEMU started with -gdb tcp:HOST:PORT), or
    /// unix:PATH (-gdb unix:PATH,server=on,wait=off; a little faster).
    #[arg(
        long,
        value_name = "HOST:PORT|unix:PATH",
        required_unless_present = "domain"
    )]
    gdb: Option<String>,
    /// The guest's RAM file (QEMU memory-backend-file with share=on).
    #[arg(long, value_name = "PATH", conflicts_with = "qemu_pid")]
    memory_file: Option<PathBuf>,
    /// The QEMU process, whose guest RAM is read through /proc/PID/mem.
    #[arg(long, value_name = "PID")]
    qemu_pid: Option<u32>,
    /// A running libvirt domain (gdbstub from its XML, RAM from its QEMU process).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["gdb", "memory_file", "qemu_pid"])]
    domain: Option<String>,
    /// libvirt connection URI for --domain (default: libvirt's default).
    #[arg(long, value_name = "URI", requires = "domain")]
    connect: Option<String>,
    /// The guest's kernel image (bzImage or vmlinux): its symbols and structure layouts.
    /// Optional: without it they are read from the running kernel in guest memory.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// vCPUs of the guest (default: asked from the gdbstub).
    #[arg(long, default_value_t = 0)]
    cpus: u32,
    /// Detach after SECS seconds (default: on Ctrl-C / SIGTERM, or when the guest ends).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Set by SIGINT/SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store); a zeroed sigaction
        // with only the handler set is a valid argument (sigaction(2)).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Raises `flag` on a signal or when `duration` has passed.
fn watch_for_detach(flag: Arc<AtomicBool>, duration: Option<Duration>) {
    let start = Instant::now();
    std::thread::spawn(move || loop {
        if SIGNALLED.load(Ordering::Relaxed) || duration.is_some_and(|d| start.elapsed() >= d) {
            flag.store(true, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
}

struct Target {
    gdb: String,
    memory_file: Option<PathBuf>,
    qemu_pid: Option<u32>,
}

#[cfg(feature = "libvirt")]
fn domain_target(name: &str, uri: Option<&str>) -> Result<Target, NitroError> {
    let d = nitro_listener::qemu::libvirt::lookup_domain(uri, name)?;
    Ok(Target {
        gdb: d.gdb_endpoint,
        memory_file: None,
        qemu_pid: d.qemu_pid,
    })
}

#[cfg(not(feature = "libvirt"))]
fn domain_target(_name: &str, _uri: Option<&str>) -> Result<Target, NitroError> {
    Err(NitroError::Usage(
        "--domain needs nitro built with the `libvirt` feature (cargo build --features libvirt)"
            .into(),
    ))
}

fn usage(msg: impl Into<String>) -> (NitroError, u8) {
    fail(NitroError::Usage(msg.into()))
}

/// `nitro attach`.
pub fn run(a: AttachArgs) -> CliResult {
    let target = match (&a.domain, &a.gdb) {
        (Some(name), _) => domain_target(name, a.connect.as_deref()).map_err(fail)?,
        (None, Some(gdb)) => Target {
            gdb: gdb.clone(),
            memory_file: a.memory_file.clone(),
            qemu_pid: a.qemu_pid,
        },
        (None, None) => {
            return Err(usage(
                "say where the guest is: --gdb HOST:PORT or --domain NAME",
            ))
        }
    };
    if target.memory_file.is_none() && target.qemu_pid.is_none() {
        return Err(usage(
            "nitro needs the guest's RAM: --memory-file PATH (a shared memory-backend file) or \
             --qemu-pid PID",
        ));
    }
    a.filters.parse().map_err(fail)?;
    a.out.mode().map_err(fail)?;
    if let Some(d) = a.duration {
        if !(d > 0.0 && d < 1e9) {
            return Err(usage(format!("--duration {d}: expected seconds > 0")));
        }
    }
    let from_file = match &a.kernel {
        Some(kernel) => Some(
            LinuxBackend::from_kernel_file(kernel)
                .map_err(|e| usage(format!("{}: {e}", kernel.display())))?,
        ),
        None => None,
    };

    // Connecting stops the guest until the first resume.
    let mut driver = QemuDriver::connect(&target.gdb, None, a.cpus).map_err(fail)?;
    let memory: Result<Arc<dyn PhysMemory>, NitroError> =
        match (&target.memory_file, target.qemu_pid) {
            (Some(p), _) => attach::open_memory_file(p)
                .map(|m| Arc::new(m) as Arc<dyn PhysMemory>)
                .map_err(Into::into),
            (None, Some(pid)) => attach::ram_size(&mut driver)
                .and_then(|size| attach::open_proc_memory(pid, size))
                .map(|m| Arc::new(m) as Arc<dyn PhysMemory>)
                .map_err(Into::into),
            (None, None) => Err(NitroError::Usage("no guest RAM given".into())),
        };
    let memory = match memory {
        Ok(m) => m,
        Err(e) => {
            let _ = driver.detach();
            return Err(fail(e));
        }
    };
    // Without a kernel file, symbols and layouts come from the guest's memory (kallsyms and
    // BTF of the running kernel).
    let mut backend = match from_file {
        Some(b) => b,
        None => {
            let found = driver
                .interrupt()
                .map_err(NitroError::from)
                .and_then(|regs| {
                    LinuxBackend::from_guest(memory.as_ref(), &regs)
                        .map_err(|e| NitroError::Usage(format!("guest kernel: {e}")))
                });
            match found {
                Ok(b) => b,
                Err(e) => {
                    let _ = driver.detach();
                    return Err(fail(e));
                }
            }
        }
    };
    backend.decode.string_limit = a.out.string_limit;
    backend.set_trap_mode(a.filters.traps.linux_mode());
    backend.decode.verbose = a.out.verbose;
    driver.set_memory(memory);
    // If nitro dies without detaching (SIGKILL), a guardian process detaches for it, so the
    // guest does not stay stopped at its next trap.
    let guardian = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| Guardian::spawn(&driver, &exe, &["__guard"]).map_err(|e| e.to_string()));
    let guardian = match guardian {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("nitro: warning: no guardian process ({e}): if nitro is killed, the guest stays stopped until a debugger attaches");
            None
        }
    };
    let flag = Arc::new(AtomicBool::new(false));
    driver.set_detach_flag(flag.clone());
    install_signal_handlers();
    watch_for_detach(flag, a.duration.map(Duration::from_secs_f64));

    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    let traced = (|| {
        configure(&mut nitro, &a.filters, &a.out, None)?;
        nitro.arm()?;
        nitro.resume()?;
        nitro.run()?;
        Ok::<_, NitroError>(())
    })();
    // Whatever happened, leave the guest running without traps.
    let detached = nitro.driver_mut().detach();
    let st = nitro.driver_mut().driver_stats();
    eprintln!(
        "nitro: detached from {}: {} stops ({} spurious, {} late), {:.2} packet round trips per \
         stop",
        target.gdb,
        st.trap_stops,
        st.spurious_stops,
        st.late_stops,
        st.round_trips_per_stop()
    );
    if detached.is_ok() {
        if let Some(g) = guardian {
            g.release();
        }
    }
    traced.map_err(fail)?;
    detached.map_err(|e| fail(NitroError::from(e)))?;
    Ok(0)
}
