//! Starting QEMU with what the driver needs: a gdbstub on loopback and guest RAM in a shared
//! file that nitro maps.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use nitro_mem::{PhysAddr, Region};

use crate::{ListenerError, Result};

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's software emulation.
    Tcg,
    /// Hardware virtualization through /dev/kvm.
    Kvm,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// KVM when /dev/kvm is usable *and* the host CPU has VMX or SVM (a software nested
/// hypervisor such as PVM offers /dev/kvm but cannot boot a stock kernel), TCG otherwise.
pub fn detect_accel() -> Accel {
    let kvm_ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if kvm_ok && hw {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// Where guest RAM of `mib` MiB lies in physical memory on QEMU's `pc` machine, and at which
/// offset of the memory-backend file: RAM below 4 GiB up to 3 GiB (when RAM reaches 3.5 GiB,
/// `pc` keeps only 3 GiB low, gigabyte-aligned), the rest from 4 GiB on.
/// Reference: QEMU `hw/i386/pc_piix.c` (pc_init1: below_4g_mem_size / above_4g_mem_size).
pub fn pc_ram_regions(mib: u64) -> Vec<Region> {
    let size = mib << 20;
    let low = if size >= 0xe000_0000 {
        0xc000_0000
    } else {
        size
    };
    let mut v = vec![Region {
        guest_start: PhysAddr(0),
        file_offset: 0,
        len: low,
    }];
    if size > low {
        v.push(Region {
            guest_start: PhysAddr(1 << 32),
            file_offset: low,
            len: size - low,
        });
    }
    v
}

/// A QEMU command line for a traced guest.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Linux kernel (bzImage) for direct boot.
    pub kernel: PathBuf,
    /// Initial RAM disk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub append: String,
    /// File that backs guest RAM (created by QEMU, shared with nitro; on tmpfs for speed).
    pub memory_file: PathBuf,
    /// Loopback TCP port of the gdbstub (used when `gdb_socket` is `None`).
    pub gdb_port: u16,
    /// A Unix-domain socket path for the gdbstub instead of TCP: about 12 us less per
    /// packet round trip (see [`super::rsp::GdbStream`]).
    pub gdb_socket: Option<PathBuf>,
    /// Serial ports in order (ttyS0, ttyS1, ...), as QEMU chardev specs for `-serial`.
    pub serials: Vec<String>,
    /// Further arguments.
    pub extra: Vec<String>,
    /// Start with vCPUs stopped (`-S`), so a debugger connects before the guest runs.
    pub start_stopped: bool,
    /// File that receives QEMU's own stderr.
    pub log_file: Option<PathBuf>,
}

impl QemuCommand {
    /// The arguments, without the binary.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            "pc,memory-backend=nitro-ram".into(),
            "-accel".into(),
            self.accel.as_str().into(),
            "-cpu".into(),
            match self.accel {
                Accel::Kvm => "host".into(),
                Accel::Tcg => "qemu64".into(),
            },
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-smp".into(),
            self.cpus.to_string(),
            "-object".into(),
            format!(
                "memory-backend-file,id=nitro-ram,size={}M,mem-path={},share=on",
                self.memory_mib,
                self.memory_file.display()
            ),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            self.append.clone(),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
            "-nodefaults".into(),
            "-gdb".into(),
            match &self.gdb_socket {
                Some(path) => format!("unix:{},server=on,wait=off", path.display()),
                None => format!("tcp:127.0.0.1:{}", self.gdb_port),
            },
        ];
        if let Some(i) = &self.initrd {
            a.push("-initrd".into());
            a.push(i.display().to_string());
        }
        for s in &self.serials {
            a.push("-serial".into());
            a.push(s.clone());
        }
        if self.start_stopped {
            a.push("-S".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts QEMU.
    pub fn spawn(&self) -> Result<QemuProcess> {
        let mut cmd = Command::new(&self.binary);
        // QEMU dies with the tracer: a SIGKILLed nitro must not leave an orphan guest (and its
        // RAM file) behind.
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match &self.log_file {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| ListenerError::Launch {
                    program: self.binary.display().to_string(),
                    why: format!("cannot create {}: {e}", p.display()),
                })?;
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let child = cmd.spawn().map_err(|e| ListenerError::Launch {
            program: self.binary.display().to_string(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                "not found: install QEMU (apt-get install qemu-system-x86) or run scripts/provision.sh"
                    .into()
            } else {
                e.to_string()
            },
        })?;
        Ok(QemuProcess {
            child,
            gdb_endpoint: match &self.gdb_socket {
                Some(path) => format!("{}{}", super::rsp::UNIX_PREFIX, path.display()),
                None => format!("127.0.0.1:{}", self.gdb_port),
            },
            memory_file: self.memory_file.clone(),
            regions: pc_ram_regions(self.memory_mib),
        })
    }
}

/// A running QEMU started by [`QemuCommand::spawn`]. Killed when dropped.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    /// Where its gdbstub listens.
    pub gdb_endpoint: String,
    /// Its RAM file.
    pub memory_file: PathBuf,
    /// Guest-physical layout of the RAM file.
    pub regions: Vec<Region>,
}

impl QemuProcess {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if QEMU has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for QEMU to exit, then kills it.
    pub fn wait_or_kill(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Waits until the RAM file exists (QEMU creates it at start-up) or QEMU exits.
    pub fn wait_for_memory_file(&mut self, timeout: std::time::Duration) -> Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if Path::new(&self.memory_file).exists() {
                return Ok(());
            }
            if let Some(s) = self.try_wait() {
                return Err(ListenerError::Launch {
                    program: "qemu".into(),
                    why: format!("exited ({s}) before creating its memory file"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(ListenerError::Timeout {
            what: "QEMU's memory file".into(),
            secs: timeout.as_secs(),
        })
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.memory_file);
    }
}

/// A free loopback TCP port (bound and released; QEMU binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ListenerError::Launch {
        program: "qemu".into(),
        why: format!("no free loopback port: {e}"),
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ListenerError::Launch {
            program: "qemu".into(),
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_layout_of_pc_machine() {
        assert_eq!(pc_ram_regions(256).len(), 1);
        let big = pc_ram_regions(4096);
        assert_eq!(big[0].len, 0xc000_0000);
        assert_eq!(big[1].guest_start, PhysAddr(1 << 32));
        assert_eq!(big[1].file_offset, 0xc000_0000);
        assert_eq!(big[0].len + big[1].len, 4096 << 20);
    }
}
