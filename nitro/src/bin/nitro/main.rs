//! The `nitro` command line. See DESIGN.md, "The command line".

mod attach;
mod opts;
mod syscalls;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nitro::NitroError;

#[derive(Parser, Debug)]
#[command(
    name = "nitro",
    version,
    about = "Trace the system calls of a virtual machine from the outside"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a guest, run COMMAND inside it and trace its system calls.
    Trace(trace::TraceArgs),
    /// Trace a running QEMU guest through its gdbstub, then detach and leave it running.
    Attach(attach::AttachArgs),
    /// Print a system-call table, one `NUMBER NAME` a line.
    Syscalls(syscalls::SyscallsArgs),
    /// Internal: the guardian that `nitro attach` starts (detaches if nitro dies).
    #[command(name = "__guard", hide = true)]
    Guard {
        /// The gdbstub socket descriptor inherited from nitro.
        fd: i32,
    },
}

/// A command's outcome: the exit status to return, or an error and its status.
pub type CliResult = Result<i32, (NitroError, u8)>;

/// An error that exits with status 1.
pub fn fail(e: impl Into<NitroError>) -> (NitroError, u8) {
    (e.into(), 1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Attach(a) => attach::run(a),
        Command::Syscalls(a) => syscalls::run(a),
        Command::Guard { fd } => Ok(nitro_listener::qemu::guard::run_guardian(fd)),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err((e, code)) => {
            eprintln!("nitro: error: {e}");
            ExitCode::from(code)
        }
    }
}
