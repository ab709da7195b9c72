//! A guardian process that detaches the gdbstub if the tracer dies without doing so.
//!
//! QEMU 7.2 keeps a debugger's breakpoints and watchpoints when its connection drops, so a
//! tracer killed with SIGKILL would leave the guest stopping, with nobody to resume it, at its
//! next trapped instruction. The guardian is a small process that holds a duplicate of the
//! gdbstub socket and a pipe from the tracer. When the pipe closes without the tracer saying
//! it detached, the guardian stops the guest (`\x03`), sends `D` (QEMU's `handle_detach`
//! removes every breakpoint and watchpoint of the debugger and resumes the guest) and exits.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::{
        fd::{FromRawFd, IntoRawFd, RawFd},
        unix::net::UnixStream,
    },
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use super::{rsp::GdbStream, QemuDriver};
use crate::{ListenerError, Result};

/// What the tracer writes to the guardian after a clean detach.
const RELEASED: &[u8] = b"released\n";

/// The tracer's handle on its guardian.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guardian {
    /// Starts `program ARGS... FD` (a program that calls [`run_guardian`] with FD, e.g. the
    /// `nitro` binary's hidden `__guard` command) holding a duplicate of `driver`'s socket.
    pub fn spawn(driver: &QemuDriver, program: &Path, args: &[&str]) -> Result<Self> {
        // SAFETY: dup of a socket this process owns; the copy has no close-on-exec flag, so
        // the child inherits it; this process closes its copy below.
        let dup = unsafe { libc::dup(driver.socket_fd()) };
        if dup < 0 {
            return Err(ListenerError::Launch {
                program: program.display().to_string(),
                why: format!("dup: {}", std::io::Error::last_os_error()),
            });
        }
        let spawned = Command::new(program)
            .args(args)
            .arg(dup.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn();
        // SAFETY: `dup` is ours and not used after this.
        unsafe { libc::close(dup) };
        let mut child = spawned.map_err(|e| ListenerError::Launch {
            program: program.display().to_string(),
            why: e.to_string(),
        })?;
        let pipe = child.stdin.take();
        Ok(Guardian { child, pipe })
    }

    /// The tracer detached cleanly: the guardian exits without touching the stub.
    pub fn release(mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(RELEASED);
        }
        let _ = self.child.wait();
    }
}

/// The guardian's side: waits for the tracer's pipe (standard input) to close; if the tracer
/// did not report a clean detach, detaches the gdbstub on socket `fd`. Returns an exit status.
pub fn run_guardian(fd: RawFd) -> i32 {
    // Ctrl-C in the terminal reaches the whole process group: the tracer handles it; the
    // guardian must survive to clean up if the tracer does not.
    // SAFETY: setting a signal disposition to SIG_IGN is always sound.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mut said = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut said);
    if said.ends_with(RELEASED) {
        return 0;
    }
    if fd < 0 {
        return 2;
    }
    // SAFETY: the tracer passed this inherited socket descriptor for this purpose; nothing
    // else in this process uses it, and it is owned by exactly one stream below.
    let unix = unsafe { UnixStream::from_raw_fd(fd) };
    // A TCP socket has no Unix-domain address: hand the descriptor over to a TcpStream.
    let mut sock = if unix.local_addr().is_ok() {
        GdbStream::Unix(unix)
    } else {
        // SAFETY: `into_raw_fd` gave up the UnixStream's ownership of the descriptor.
        GdbStream::Tcp(unsafe { TcpStream::from_raw_fd(unix.into_raw_fd()) })
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    // Acknowledge whatever the tracer left unacknowledged, and stop the guest if it runs.
    let _ = sock.write_all(b"+\x03");
    wait_for_packet(&mut sock, Duration::from_secs(2));
    let _ = sock.write_all(b"+$D#44");
    wait_for_packet(&mut sock, Duration::from_secs(2));
    let _ = sock.write_all(b"+");
    0
}

/// Reads until a complete `$...#xx` packet arrived or `limit` passed.
fn wait_for_packet(sock: &mut GdbStream, limit: Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut b = [0u8; 4096];
    while start.elapsed() < limit {
        match sock.read(&mut b) {
            Ok(0) => return,
            Ok(n) => {
                seen.extend_from_slice(&b[..n]);
                if let Some(d) = seen.iter().position(|&c| c == b'$') {
                    if let Some(h) = seen[d..].iter().position(|&c| c == b'#') {
                        if seen.len() >= d + h + 3 {
                            return;
                        }
                    }
                }
                if seen.len() > 1 << 16 {
                    seen.drain(..seen.len() - 1024);
                }
            }
            Err(_) => continue,
        }
    }
}
