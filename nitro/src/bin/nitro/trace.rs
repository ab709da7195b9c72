//! `nitro trace`: boot a guest, run a command in it, trace its system calls.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, ValueEnum};
use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::{JsonlSink, Sink, TextSink},
    Nitro, NitroError, RecordMode,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::{detect_accel, Accel, QemuDriver};

use crate::{fail, CliResult};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Jsonl,
    Text,
}

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
    /// Write records to FILE instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Record format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write the guest command's output to FILE instead of stderr.
    #[arg(long)]
    guest_output: Option<PathBuf>,
    /// Which records: `exit` (one per completed call, default) or `enter,exit` (one per stop).
    #[arg(long, default_value = "exit")]
    events: String,
    /// Longest string shown in arguments (strace -s).
    #[arg(long, default_value_t = 32)]
    string_limit: usize,
    /// The command to run in the guest.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `nitro trace`.
pub fn run(a: TraceArgs) -> CliResult {
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
    let mode = match a.events.as_str() {
        "exit" => RecordMode::Completed,
        "enter,exit" | "exit,enter" | "all" => RecordMode::EnterAndExit,
        other => {
            return Err(fail(NitroError::Usage(format!(
                "--events {other}: expected 'exit' or 'enter,exit'"
            ))))
        }
    };

    // The kernel's own symbols and BTF: read before booting, so a file that is not a kernel
    // fails at once.
    let mut backend = LinuxBackend::from_kernel_file(&kernel)
        .map_err(|e| fail(NitroError::Usage(format!("{}: {e}", kernel.display()))))?;
    backend.decode.string_limit = a.string_limit;

    let out: Box<dyn Write + Send> = match &a.output {
        Some(p) => {
            Box::new(BufWriter::new(File::create(p).map_err(|e| {
                fail(NitroError::Io(format!("{}: {e}", p.display())))
            })?))
        }
        None => Box::new(std::io::stdout()),
    };
    let sink: Box<dyn Sink> = match a.format {
        Format::Jsonl => Box::new(JsonlSink::new(out)),
        Format::Text => Box::new(TextSink::new(out)),
    };
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
    nitro.add_sink(sink).set_record_mode(mode);
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
    nitro.run().map_err(fail)?;
    run.finish(Duration::from_secs(10));
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
