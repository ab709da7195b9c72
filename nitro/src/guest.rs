//! Running a guest for tracing: the provisioned kernels and initramfs, QEMU started with a
//! gdbstub and shared RAM, the command handed to the guest's init, its output and exit status.
//!
//! The guest has three serial ports: ttyS0 is the kernel console (kept in a log for error
//! messages), ttyS1 carries the command's output, ttyS2 is a control channel with nitro's
//! init (`scripts/guest/init`): it says `NITRO-READY` before running the command and waits for
//! `GO` (traps are armed in between), then `NITRO-EXIT <status>`, or `NITRO-NOTFOUND <name>`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use nitro_listener::qemu::{free_port, Accel, QemuCommand, QemuProcess};
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
            gdb_port: free_port()?,
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
        })
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

    /// A line of the console that explains a failure (a panic, an oops), if any.
    pub fn console_problem(&self) -> Option<String> {
        let c = self.console();
        c.lines()
            .find(|l| l.contains("Kernel panic") || l.contains("BUG:") || l.contains("Oops"))
            .map(|l| l.trim().to_string())
            .or_else(|| {
                let log =
                    std::fs::read_to_string(self.run_dir.join("qemu.log")).unwrap_or_default();
                log.lines().next().map(str::to_string)
            })
    }

    /// Waits for QEMU to exit (up to `timeout`, then kills it) and for the output to drain.
    pub fn finish(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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
}
