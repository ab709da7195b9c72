//! The hook API on the real Debian 6.1 guest: skipping a call with a chosen return value,
//! changing an argument register, changing a return value, attaching data; the guest sees
//! each change. Needs QEMU and the provisioned guest (else each test says why and returns).

mod common;

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use nitro::{
    guest::{self, ControlMessage, GuestRun, GuestSpec},
    HookCtx, Nitro, Record, SyscallSet, TraceStats,
};
use nitro_backend_linux::LinuxBackend;
use nitro_listener::qemu::QemuDriver;

fn kernel() -> Option<PathBuf> {
    common::guest_kernel("debian-6.1")
}

/// Guest output collected in memory.
#[derive(Clone, Default)]
struct Out(Arc<Mutex<Vec<u8>>>);
impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Boots the guest, lets `setup` add hooks, runs `command`; returns the exit status, the
/// guest's output and the records of the traced set.
fn run_with(
    command: &[&str],
    trace: &str,
    setup: impl FnOnce(&mut Nitro),
) -> Option<(i32, String, Vec<Record>, TraceStats)> {
    let kernel = kernel()?;
    let backend = LinuxBackend::from_kernel_file(&kernel).unwrap();
    let spec = GuestSpec::new(
        kernel.clone(),
        guest::default_initrd().unwrap(),
        command.iter().map(|s| s.to_string()).collect(),
    );
    let out = Out::default();
    let mut run = GuestRun::start(&spec, Box::new(out.clone())).unwrap();
    let driver = QemuDriver::connect(&run.gdb_endpoint, Some(run.memory.clone()), 1).unwrap();
    let mut nitro = Nitro::new(Box::new(driver), Box::new(backend));
    nitro.trace(SyscallSet::parse(trace).unwrap());
    setup(&mut nitro);
    nitro.resume().unwrap();
    assert_eq!(
        run.wait_control(spec.boot_timeout).unwrap(),
        ControlMessage::Ready
    );
    // OS detection on the booted guest: Linux's fixed-address IDT is there, no ntoskrnl.
    let regs = nitro.driver_mut().interrupt().unwrap();
    let mem = nitro.driver_mut().memory();
    assert!(nitro::detect::looks_like_linux(mem.as_ref(), &regs));
    let e = nitro::detect::detect_backend(nitro.driver_mut(), None, None)
        .err()
        .expect("a Linux guest without its kernel file is an error");
    assert!(e.to_string().contains("kernel file"), "{e}");
    let (os, b) = nitro::detect::detect_backend(nitro.driver_mut(), Some(&kernel), None).unwrap();
    assert_eq!((os, b.os_name()), (nitro::detect::GuestOs::Linux, "linux"));
    nitro.arm().unwrap();
    nitro.resume().unwrap();
    run.go().unwrap();
    let recs: Vec<Record> = nitro.events().collect::<Result<_, _>>().unwrap();
    run.finish(Duration::from_secs(10));
    let stats = nitro.stats();
    assert_eq!(stats.modify_errors, 0, "{stats:?}");
    let text = String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    Some((run.exit_status.unwrap_or(-1), text, recs, stats))
}

fn cat_opens(recs: &[Record]) -> Vec<&Record> {
    recs.iter()
        .filter(|r| r.call.process.name == "cat" && r.call.name == "openat")
        .collect()
}

fn path_arg(ctx: &HookCtx<'_>) -> Vec<u8> {
    ctx.read_cstring(ctx.raw_args()[1], 256).unwrap_or_default()
}

#[test]
fn skip_with_chosen_return_and_hook_data() {
    let Some((status, out, recs, stats)) =
        run_with(&["/bin/cat", "/proc/version"], "openat", |n| {
            n.on_enter("openat", |ctx| {
                if path_arg(ctx) == b"/proc/version" {
                    ctx.attach("denied", "by test");
                    ctx.skip(-13); // EACCES
                }
                Ok(())
            });
            // A failing hook is counted and tracing goes on.
            n.on_enter_all(|_| Err("always fails".into()));
        })
    else {
        return;
    };
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!out.contains("Linux version"), "{out}");
    let opens = cat_opens(&recs);
    assert_eq!(opens.len(), 1);
    let j = opens[0].json();
    assert_eq!(j["ret"], -13);
    assert_eq!(j["error"], "EACCES");
    assert_eq!(j["injected"], true);
    assert_eq!(j["hook"]["denied"], "by test");
    // The catch-all hook failed at every traced entry; tracing went on.
    assert!(stats.hook_errors >= 3, "{stats:?}");
    assert_eq!(stats.injected, 1, "{stats:?}");
}

#[test]
fn change_argument_register() {
    // The first open's path pointer is moved to the next argv string: cat opens
    // /proc/cmdline twice and never /proc/version. argv strings sit back to back on the
    // stack, "/proc/version\0/proc/cmdline\0".
    let Some((status, out, recs, _)) = run_with(
        &["/bin/cat", "/proc/version", "/proc/cmdline"],
        "openat",
        |n| {
            let done = Arc::new(Mutex::new(false));
            n.on_enter("openat", move |ctx| {
                let mut d = done.lock().unwrap();
                if !*d && path_arg(ctx) == b"/proc/version" {
                    *d = true;
                    let p = ctx.raw_args()[1];
                    ctx.set_arg(1, p + "/proc/version".len() as u64 + 1);
                    ctx.attach("redirected", true);
                }
                Ok(())
            });
        },
    ) else {
        return;
    };
    assert_eq!(status, 0, "{out}");
    assert!(!out.contains("Linux version"), "{out}");
    assert_eq!(
        out.matches("console=").count(),
        2,
        "cmdline printed twice: {out}"
    );
    let opens = cat_opens(&recs);
    assert_eq!(opens.len(), 2);
    assert!(opens
        .iter()
        .all(|r| r.call.ret.as_ref().is_some_and(|v| v.value >= 0)));
    assert_eq!(opens[0].json()["hook"]["redirected"], true);
}

#[test]
fn change_return_value_at_exit() {
    // The open succeeds in the kernel; the program is told it failed.
    let Some((status, out, recs, _)) = run_with(&["/bin/cat", "/proc/version"], "openat", |n| {
        n.on_exit("openat", |ctx| {
            if ctx.process().name == "cat" && ctx.ret().is_some_and(|r| r >= 0) {
                ctx.attach("real_ret", ctx.ret());
                ctx.set_return(-2);
            }
            Ok(())
        });
    }) else {
        return;
    };
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("No such file or directory"), "{out}");
    let opens = cat_opens(&recs);
    assert_eq!(opens.len(), 1);
    let j = opens[0].json();
    assert_eq!(j["ret"], -2);
    assert_eq!(j["error"], "ENOENT");
    assert!(j["hook"]["real_ret"].as_i64().unwrap() >= 0, "{j}");
}
