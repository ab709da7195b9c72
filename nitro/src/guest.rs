//! Running a guest for tracing: the provisioned kernels and initramfs, QEMU started with a
//! gdbstub and shared RAM, the command handed to the guest's init, its output and exit status.
//!
//! The guest has three serial ports: ttyS0 is the kernel console (kept in a log for error
//! messages), ttyS1 carries the command's output, ttyS2 is a control channel with nitro's
//! init (`scripts/guest/init`): it says `NITRO-READY` before running the command and waits for
//! `GO` (traps are armed in between), then `NITRO-EXIT <status>`, or `NITRO-NOTFOUND <name>`.
//!
//! When the guest ends without `NITRO-EXIT`, [`GuestRun::console_problem`] names why from the
//! console and from nitro's own knowledge: a kernel panic or oops, a power-off, or the time
//! limit set by [`GuestRun::set_time_limit`] (a watchdog that stops QEMU, so a hung guest
//! cannot hang nitro).

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use nitro_listener::qemu::{Accel, QemuCommand, QemuProcess};
use nitro_mem::MappedFileMemory;

use crate::{cpio, NitroError};

/// Guests that `scripts/provision.sh` provides.
pub const KNOWN_GUESTS: &[&str] = &["debian-6.1", "debian-6.12"];

/// The cache directory of provisioned guests: `$NITRO_CACHE`, else `$HOME/.cache/nitro`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NITRO_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/nitro")
}

/// Kernel of a provisioned guest.
pub fn guest_kernel(name: &str) -> Result<PathBuf, NitroError> {
    if !KNOWN_GUESTS.contains(&name) {
        return Err(NitroError::Usage(format!(
            "unknown guest '{name}' (known: {})",
            KNOWN_GUESTS.join(", ")
        )));
    }
    let p = cache_dir().join("guests").join(name).join("vmlinuz");
    if !p.exists() {
        return Err(NitroError::Usage(format!(
            "guest '{name}' is not provisioned ({} missing): run scripts/provision.sh",
            p.display()
        )));
    }
    Ok(p)
}

/// The initramfs that `scripts/provision.sh` builds.
pub fn default_initrd() -> Result<PathBuf, NitroError> {
    let p = cache_dir().join("initramfs.cpio.gz");
    if !p.exists() {
        return Err(NitroError::Usage(format!(
            "initramfs {} missing: run scripts/provision.sh",
            p.display()
        )));
    }
    Ok(p)
}

/// How to start a guest.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Kernel image (bzImage).
    pub kernel: PathBuf,
    /// Base initramfs (nitro's init + busybox), to which the command is appended.
    pub initrd: PathBuf,
    /// The command to run inside, with its arguments.
    pub command: Vec<String>,
    /// Accelerator.
    pub accel: Accel,
    /// vCPUs.
    pub cpus: u32,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// Boot with KASLR (`false` adds `nokaslr`).
    pub kaslr: bool,
    /// Extra kernel command-line words.
    pub append: String,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Seconds to wait for the guest to reach the command.
    pub boot_timeout: Duration,
}

impl GuestSpec {
    /// Defaults for `kernel` running `command`.
    pub fn new(kernel: PathBuf, initrd: PathBuf, command: Vec<String>) -> Self {
        GuestSpec {
            kernel,
            initrd,
            command,
            accel: Accel::Tcg,
            cpus: 1,
            memory_mib: 256,
            kaslr: false,
            append: String::new(),
            qemu: PathBuf::from("qemu-system-x86_64"),
            boot_timeout: Duration::from_secs(180),
        }
    }
}

/// A message from the guest's init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// About to run the command; waits for `GO`.
    Ready,
    /// The command finished with this status.
    Exit(i32),
    /// The command does not exist in the guest.
    NotFound(String),
    /// Init reported an error.
    Error(String),
    /// The control channel closed.
    Closed,
}

fn parse_control(line: &str) -> Option<ControlMessage> {
    let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "NITRO-READY" => Some(ControlMessage::Ready),
        "NITRO-EXIT" => Some(ControlMessage::Exit(rest.trim().parse().unwrap_or(255))),
        "NITRO-NOTFOUND" => Some(ControlMessage::NotFound(rest.trim().to_string())),
        "NITRO-ERROR" => Some(ControlMessage::Error(rest.trim().to_string())),
        _ => None,
    }
}

/// A guest started for tracing.
#[derive(Debug)]
pub struct GuestRun {
    qemu: QemuProcess,
    run_dir: PathBuf,
    ctl_writer: UnixStream,
    control: mpsc::Receiver<ControlMessage>,
    output_thread: Option<std::thread::JoinHandle<()>>,
    /// Guest RAM, mapped.
    pub memory: Arc<MappedFileMemory>,
    /// Where the gdbstub listens.
    pub gdb_endpoint: String,
    /// Exit status of the command, once reported.
    pub exit_status: Option<i32>,
    /// A process file descriptor of QEMU (opened before anything could reap it), so the
    /// watchdog can never signal a recycled pid.
    qemu_pidfd: Option<Arc<OwnedFd>>,
    watchdog: Option<Watchdog>,
}

/// The thread behind [`GuestRun::set_time_limit`].
#[derive(Debug)]
struct Watchdog {
    limit: Duration,
    fired: Arc<AtomicBool>,
    cancel: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Stops the thread; after this it can no longer signal QEMU.
    fn cancel(&mut self) {
        let _ = self.cancel.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `pidfd_open(2)` (Linux 5.3): a descriptor naming the process itself, not its pid.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signals the process `fd` names (an error once it was reaped).
fn pidfd_signal(fd: &OwnedFd, sig: i32) -> bool {
    // SAFETY: a valid pidfd, a signal number, no siginfo (null) and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == 0
}

/// Why a guest ended, read from its console (kernel messages survive `quiet` when they are
/// logged at emergency level: panics and `reboot: Power down`, Linux `kernel/reboot.c`).
pub fn console_end_reason(console: &str) -> Option<String> {
    let lines = || console.lines().map(str::trim);
    lines()
        .find(|l| l.contains("Kernel panic") || l.contains("BUG:") || l.contains("Oops"))
        .map(str::to_string)
        .or_else(|| {
            lines()
                .find(|l| l.contains("reboot: Power down"))
                .map(|_| "the guest powered off".to_string())
        })
        .or_else(|| {
            lines()
                .find(|l| l.contains("reboot: Restarting system"))
                .map(|_| "the guest rebooted".to_string())
        })
}

fn connect_unix(
    path: &Path,
    qemu: &mut QemuProcess,
    timeout: Duration,
) -> Result<UnixStream, NitroError> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if let Some(st) = qemu.try_wait() {
                    return Err(NitroError::Guest(format!("QEMU exited at start-up ({st})")));
                }
                if start.elapsed() > timeout {
                    return Err(NitroError::Guest(format!(
                        "cannot connect {}: {e}",
                        path.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl GuestRun {
    /// Starts QEMU (vCPUs stopped) with the command appended to the initramfs, and connects
    /// the serial ports. `output` receives the command's output.
    pub fn start(spec: &GuestSpec, mut output: Box<dyn Write + Send>) -> Result<Self, NitroError> {
        let run_dir =
            std::env::temp_dir().join(format!("nitro-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| NitroError::Io(format!("{}: {e}", run_dir.display())))?;
        let initrd = run_dir.join("initrd.img");
        let mut image = std::fs::read(&spec.initrd)
            .map_err(|e| NitroError::Usage(format!("initrd {}: {e}", spec.initrd.display())))?;
        while !image.len().is_multiple_of(4) {
            image.push(0);
        }
        let mut args = String::from("set --");
        for a in &spec.command {
            args.push(' ');
            args.push_str(&cpio::shell_quote(a));
        }
        args.push('\n');
        let mut w = cpio::CpioWriter::new();
        w.dir("nitro").file("nitro/args", 0o644, args.as_bytes());
        image.extend_from_slice(&w.finish());
        std::fs::write(&initrd, image)
            .map_err(|e| NitroError::Io(format!("{}: {e}", initrd.display())))?;

        let shm = Path::new("/dev/shm");
        let mem_dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            run_dir.clone()
        };
        let memory_file = mem_dir.join(format!("nitro-ram-{}-{}", std::process::id(), unique()));
        let out_sock = run_dir.join("out.sock");
        let ctl_sock = run_dir.join("ctl.sock");
        let mut append = String::from("console=ttyS0 quiet panic=-1 oops=panic");
        if !spec.kaslr {
            append.push_str(" nokaslr");
        }
        if !spec.append.is_empty() {
            append.push(' ');
            append.push_str(&spec.append);
        }
        let cmd = QemuCommand {
            binary: spec.qemu.clone(),
            accel: spec.accel,
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            kernel: spec.kernel.clone(),
            initrd: Some(initrd),
            append,
            memory_file,
            gdb_port: 0,
            gdb_socket: Some(run_dir.join("gdb.sock")),
            serials: vec![
                format!("file:{}", run_dir.join("console.log").display()),
                format!("unix:{},server=on,wait=off", out_sock.display()),
                format!("unix:{},server=on,wait=off", ctl_sock.display()),
            ],
            extra: vec![],
            start_stopped: true,
            log_file: Some(run_dir.join("qemu.log")),
        };
        let mut qemu = cmd.spawn()?;
        let qemu_pidfd = pidfd_open(qemu.pid()).map(Arc::new);
        let timeout = Duration::from_secs(20);
        let startup = qemu.wait_for_memory_file(timeout);
        if let Err(e) = startup {
            let log = std::fs::read_to_string(run_dir.join("qemu.log")).unwrap_or_default();
            return Err(NitroError::Guest(format!("{e}: {}", first_line(&log))));
        }
        let out = connect_unix(&out_sock, &mut qemu, timeout)?;
        let ctl = connect_unix(&ctl_sock, &mut qemu, timeout)?;
        let memory = Arc::new(
            MappedFileMemory::open(
                &qemu.memory_file.display().to_string(),
                qemu.regions.clone(),
            )
            .map_err(|e| NitroError::Guest(e.to_string()))?,
        );
        let output_thread = std::thread::spawn(move || {
            let mut out = out;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || output.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = output.flush();
            }
        });
        let (tx, rx) = mpsc::channel();
        let ctl_writer = ctl.try_clone().map_err(|e| NitroError::Io(e.to_string()))?;
        std::thread::spawn(move || {
            let mut r = BufReader::new(ctl);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(ControlMessage::Closed);
                        break;
                    }
                    Ok(_) => {
                        if let Some(m) = parse_control(&line) {
                            if tx.send(m).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let gdb_endpoint = qemu.gdb_endpoint.clone();
        Ok(GuestRun {
            qemu,
            run_dir,
            ctl_writer,
            control: rx,
            output_thread: Some(output_thread),
            memory,
            gdb_endpoint,
            exit_status: None,
            qemu_pidfd,
            watchdog: None,
        })
    }

    /// Stops the guest (QEMU gets SIGTERM, then SIGKILL 2 s later) once `limit` has passed
    /// from now, unless [`GuestRun::finish`] comes first. The tracer then sees the guest end;
    /// [`GuestRun::time_limit_hit`] and [`GuestRun::console_problem`] say that the limit did
    /// it. Calling it again replaces the previous limit. Needs `pidfd_open(2)` (Linux 5.3);
    /// without it there is no limit (a pid alone could be recycled once QEMU is reaped).
    pub fn set_time_limit(&mut self, limit: Duration) {
        if let Some(mut w) = self.watchdog.take() {
            w.cancel();
        }
        let Some(pidfd) = self.qemu_pidfd.clone() else {
            return;
        };
        let fired = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let flag = fired.clone();
        let thread = std::thread::spawn(move || {
            if rx.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
                return; // cancelled (or the guest run was dropped)
            }
            if !pidfd_signal(&pidfd, libc::SIGTERM) {
                return; // QEMU is gone already: the limit did not end it
            }
            flag.store(true, Ordering::SeqCst);
            if rx.recv_timeout(Duration::from_secs(2)) == Err(mpsc::RecvTimeoutError::Timeout) {
                pidfd_signal(&pidfd, libc::SIGKILL);
            }
        });
        self.watchdog = Some(Watchdog {
            limit,
            fired,
            cancel: tx,
            thread: Some(thread),
        });
    }

    /// True when the time limit of [`GuestRun::set_time_limit`] stopped the guest.
    pub fn time_limit_hit(&self) -> bool {
        self.watchdog
            .as_ref()
            .is_some_and(|w| w.fired.load(Ordering::SeqCst))
    }

    /// True once QEMU has exited (it is reaped then).
    pub fn qemu_exited(&mut self) -> bool {
        self.qemu.try_wait().is_some()
    }

    /// Waits for the next control message, up to `timeout`; notices QEMU exiting.
    pub fn wait_control(&mut self, timeout: Duration) -> Result<ControlMessage, NitroError> {
        let start = Instant::now();
        loop {
            match self.control.recv_timeout(Duration::from_millis(100)) {
                Ok(ControlMessage::Exit(s)) => {
                    self.exit_status = Some(s);
                    return Ok(ControlMessage::Exit(s));
                }
                Ok(m) => return Ok(m),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(ControlMessage::Closed),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(st) = self.qemu.try_wait() {
                return Err(NitroError::Guest(format!(
                    "the guest ended before running the command (QEMU {st}){}",
                    self.console_problem()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default()
                )));
            }
            if start.elapsed() > timeout {
                return Err(NitroError::Guest(format!(
                    "the guest did not reach the command within {} s{}",
                    timeout.as_secs(),
                    self.console_problem()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default()
                )));
            }
        }
    }

    /// Waits until the command reports its exit status (or the control channel closes), up to
    /// `timeout` per message; returns the status, `None` if the guest ended without one.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, NitroError> {
        while self.exit_status.is_none() {
            if self.wait_control(timeout)? == ControlMessage::Closed {
                break;
            }
        }
        Ok(self.exit_status)
    }

    /// Collects control messages that arrived without waiting (e.g. the exit status).
    pub fn poll_control(&mut self) {
        while let Ok(m) = self.control.try_recv() {
            if let ControlMessage::Exit(s) = m {
                self.exit_status = Some(s);
            }
        }
    }

    /// Tells init to run the command.
    pub fn go(&mut self) -> Result<(), NitroError> {
        self.ctl_writer
            .write_all(b"GO\n")
            .map_err(|e| NitroError::Guest(format!("control channel: {e}")))
    }

    /// The kernel console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("console.log")).unwrap_or_default()
    }

    /// What explains the guest's end, if anything does: the time limit (see
    /// [`GuestRun::set_time_limit`]), then a panic or oops line of the console, a power-off or
    /// reboot ([`console_end_reason`]), else QEMU's own first complaint.
    pub fn console_problem(&self) -> Option<String> {
        if let Some(w) = self
            .watchdog
            .as_ref()
            .filter(|w| w.fired.load(Ordering::SeqCst))
        {
            return Some(format!(
                "time limit of {} s reached: the guest was stopped",
                w.limit.as_secs_f64()
            ));
        }
        console_end_reason(&self.console()).or_else(|| {
            let log = std::fs::read_to_string(self.run_dir.join("qemu.log")).unwrap_or_default();
            log.lines().next().map(str::to_string)
        })
    }

    /// Waits for QEMU to exit (up to `timeout`, then kills it) and for the output to drain.
    pub fn finish(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Some(w) = self.watchdog.as_mut() {
            w.cancel();
        }
        let st = self.qemu.wait_or_kill(timeout);
        if let Some(t) = self.output_thread.take() {
            let _ = t.join();
        }
        self.poll_control();
        st
    }

    /// QEMU's process id.
    pub fn qemu_pid(&self) -> u32 {
        self.qemu.pid()
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.as_mut() {
            w.cancel();
        }
        if std::env::var_os("NITRO_KEEP_RUN_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines() {
        assert_eq!(
            parse_control("NITRO-READY\r\n"),
            Some(ControlMessage::Ready)
        );
        assert_eq!(
            parse_control("NITRO-EXIT 3\n"),
            Some(ControlMessage::Exit(3))
        );
        assert_eq!(
            parse_control("NITRO-NOTFOUND /bin/nope\n"),
            Some(ControlMessage::NotFound("/bin/nope".into()))
        );
        assert_eq!(parse_control("GO\n"), None);
    }

    #[test]
    fn end_reasons_from_the_console() {
        let panic = "[    3.1] sysrq: Trigger a crash\n[    3.13] Kernel panic - not syncing: sysrq triggered crash\n[    3.2] reboot: Restarting system\n";
        assert_eq!(
            console_end_reason(panic).as_deref(),
            Some("[    3.13] Kernel panic - not syncing: sysrq triggered crash")
        );
        assert_eq!(
            console_end_reason("[    2.9] reboot: Power down\n").as_deref(),
            Some("the guest powered off")
        );
        assert_eq!(console_end_reason("Run /init as init process\n"), None);
    }

    #[test]
    fn pidfd_signals_only_the_process_it_names() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let fd = pidfd_open(child.id()).expect("pidfd_open works on Linux >= 5.3");
        assert!(pidfd_signal(&fd, libc::SIGKILL));
        let st = child.wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        // Reaped: the descriptor still names the dead process, not whoever gets its pid.
        assert!(!pidfd_signal(&fd, 0));
    }
}
