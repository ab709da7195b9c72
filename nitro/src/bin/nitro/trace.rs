//! `nitro trace`: boot a guest, run a command in it, trace its system calls.

use std::{fs::File, io::Write, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};
use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    Nitro, NitroError,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::{detect_accel, Accel, QemuDriver};

use crate::{
    fail,
    opts::{configure, FilterArgs, OutputArgs},
    CliResult,
};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum AccelArg {
    Auto,
    Tcg,
    Kvm,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// A provisioned guest: debian-6.1 or debian-6.12 (see scripts/provision.sh).
    #[arg(long, conflicts_with = "kernel")]
    guest: Option<String>,
    /// A Linux kernel image (bzImage) to boot instead of a provisioned guest.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// The initramfs (default: the one scripts/provision.sh builds).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Accelerator: auto picks kvm when /dev/kvm offers VMX/SVM, else tcg.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// Boot with kernel address-space layout randomization.
    #[arg(long)]
    kaslr: bool,
    /// Optional: a System.map of the guest kernel, checked against and filling in kallsyms.
    #[arg(long, value_name = "PATH")]
    system_map: Option<PathBuf>,
    /// Optional: a Volatility 3 ISF profile (JSON) giving the structure layouts instead of the
    /// kernel's BTF.
    #[arg(long, value_name = "PATH")]
    isf: Option<PathBuf>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Write the guest command's output to FILE instead of stderr.
    #[arg(long)]
    guest_output: Option<PathBuf>,
    /// Stop the guest if COMMAND has not finished after SECS seconds of tracing (status 124).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// The command to run in the guest.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `nitro trace`.
pub fn run(a: TraceArgs) -> CliResult {
    if let Some(t) = a.timeout {
        if !(t > 0.0 && t < 1e9) {
            return Err(fail(NitroError::Usage(format!(
                "--timeout {t}: expected seconds > 0"
            ))));
        }
    }
    let kernel = match (&a.guest, &a.kernel) {
        (Some(g), _) => guest::guest_kernel(g).map_err(fail)?,
        (None, Some(k)) => k.clone(),
        (None, None) => {
            return Err(fail(NitroError::Usage(
                "say which guest: --guest NAME or --kernel PATH".into(),
            )))
        }
    };
    if !kernel.is_file() {
        return Err(fail(NitroError::Usage(format!(
            "kernel {} does not exist",
            kernel.display()
        ))));
    }
    let initrd = match &a.initrd {
        Some(p) => p.clone(),
        None => guest::default_initrd().map_err(fail)?,
    };
    let accel = match a.accel {
        AccelArg::Auto => detect_accel(),
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Kvm => Accel::Kvm,
    };
    // Options are checked before booting.
    a.filters.parse().map_err(fail)?;
    a.out.mode().map_err(fail)?;

    // The kernel's own symbols and BTF: read before booting, so a file that is not a kernel
    // fails at once.
    let mut backend = LinuxBackend::from_kernel_file(&kernel)
        .map_err(|e| fail(NitroError::Usage(format!("{}: {e}", kernel.display()))))?;
    if let Some(p) = &a.system_map {
        backend = backend
            .with_system_map(p)
            .map_err(|e| fail(NitroError::Usage(format!("{}: {e}", p.display()))))?;
    }
    if let Some(p) = &a.isf {
        backend = backend
            .with_isf(p)
            .map_err(|e| fail(NitroError::Usage(format!("{}: {e}", p.display()))))?;
    }
    backend.decode.string_limit = a.out.string_limit;
    backend.set_trap_mode(a.filters.traps.linux_mode());
    backend.decode.verbose = a.out.verbose;

    let guest_out: Box<dyn Write + Send> = match &a.guest_output {
        Some(p) => Box::new(
            File::create(p).map_err(|e| fail(NitroError::Io(format!("{}: {e}", p.display()))))?,
        ),
        None => Box::new(std::io::stderr()),
    };

    let mut spec = GuestSpec::new(kernel, initrd, a.command.clone());
    spec.accel = accel;
    spec.cpus = a.cpus.max(1);
    spec.memory_mib = a.memory;
    spec.kaslr = a.kaslr;
    let mut run = GuestRun::start(&spec, guest_out).map_err(fail)?;
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), spec.cpus)
        .map_err(fail)?;
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    configure(
        &mut nitro,
        &a.filters,
        &a.out,
        a.command.first().map(String::as_str),
    )
    .map_err(fail)?;
    nitro.resume().map_err(fail)?;

    match run.wait_control(spec.boot_timeout).map_err(fail)? {
        ControlMessage::Ready => {}
        ControlMessage::NotFound(name) => {
            run.finish(Duration::from_secs(10));
            return Err((
                NitroError::Usage(format!("command not found in the guest: {name}")),
                127,
            ));
        }
        ControlMessage::Error(e) => return Err(fail(NitroError::Guest(e))),
        other => {
            return Err(fail(NitroError::Guest(format!(
                "init said {other:?} instead of NITRO-READY{}",
                run.console_problem()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            ))))
        }
    }
    nitro.arm().map_err(fail)?;
    nitro.resume().map_err(fail)?;
    run.go().map_err(fail)?;
    if let Some(t) = a.timeout {
        run.set_time_limit(Duration::from_secs_f64(t));
    }
    nitro.run().map_err(fail)?;
    run.finish(Duration::from_secs(10));
    if run.exit_status.is_none() && run.time_limit_hit() {
        return Err((
            NitroError::Guest(format!(
                "COMMAND did not finish within the {} s time limit: the guest was stopped",
                a.timeout.unwrap_or_default()
            )),
            124,
        ));
    }
    match run.exit_status {
        Some(s) => Ok(s),
        None => Err(fail(NitroError::Guest(format!(
            "the guest ended without reporting the command's exit status{}",
            run.console_problem()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        )))),
    }
}
