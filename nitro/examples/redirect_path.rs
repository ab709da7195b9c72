//! A hook that rewrites a path argument: every `openat` of FROM opens TO instead.
//!
//! At the entry stop the hook writes TO as a new string onto the calling thread's user
//! stack, below the 128-byte red zone of the x86-64 System V ABI (memory the program is not
//! using), and points the path argument (register RSI) at it. The program never knows.
//!
//! ```text
//! cargo run --release -p nitro --example redirect_path [-- FROM TO COMMAND...]
//! # default: FROM=/etc/hostname TO=/proc/version COMMAND=/bin/cat /etc/hostname
//! ```

use std::time::Duration;

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    sink::TextSink,
    Nitro, SyscallSet,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::QemuDriver;

/// The x86-64 System V red zone below RSP (ABI 3.2.2).
const RED_ZONE: u64 = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (from, to, command) = match args.as_slice() {
        [f, t, cmd @ ..] if !cmd.is_empty() => (f.clone(), t.clone(), cmd.to_vec()),
        _ => (
            "/etc/hostname".to_string(),
            "/proc/version".to_string(),
            vec!["/bin/cat".to_string(), "/etc/hostname".to_string()],
        ),
    };
    let kernel = guest::guest_kernel("debian-6.1")?;
    let backend = LinuxBackend::from_kernel_file(&kernel)?;
    let spec = GuestSpec::new(kernel, guest::default_initrd()?, command);
    let mut run = GuestRun::start(&spec, Box::new(std::io::stderr()))?;
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1)?;
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro
        .trace(SyscallSet::parse("openat")?)
        .add_sink(Box::new(TextSink::new(std::io::stdout())));

    nitro.on_enter("openat", move |ctx| {
        let path = ctx.read_cstring(ctx.raw_args()[1], 4096)?;
        if path != from.as_bytes() {
            return Ok(());
        }
        // Linux: at the entry stop RSP points at pt_regs->sp, the user stack pointer just
        // saved by entry_SYSCALL_64.
        let mut sp = [0u8; 8];
        ctx.read_virt(ctx.regs().rsp, &mut sp)?;
        let user_sp = u64::from_le_bytes(sp);
        let mut bytes = to.clone().into_bytes();
        bytes.push(0);
        let at = (user_sp - RED_ZONE - bytes.len() as u64 - 64) & !0xf;
        ctx.write_virt(at, &bytes)?;
        ctx.set_arg(1, at);
        ctx.attach("redirected_to", to.clone());
        Ok(())
    });

    nitro.resume()?;
    if run.wait_control(spec.boot_timeout)? != ControlMessage::Ready {
        return Err("the guest did not reach the command".into());
    }
    nitro.arm()?;
    nitro.resume()?;
    run.go()?;
    nitro.run()?;
    run.finish(Duration::from_secs(10));
    eprintln!(
        "exit status {:?}; hook errors {}",
        run.exit_status,
        nitro.stats().hook_errors
    );
    Ok(())
}
