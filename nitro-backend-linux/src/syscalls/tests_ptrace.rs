//! End to end against the real strace: this test traces `cat /etc/hostname` itself with
//! ptrace (registers from `PTRACE_GETREGS`, memory from `/proc/PID/mem`, i.e. the bytes a VM
//! tracer reads from a guest), decodes every call with this module, runs the same command
//! under strace 6.x, and compares the lines of the calls both show the same way. Addresses
//! differ between runs (ASLR), so hex numbers are masked. Skipped when ptrace or strace is not
//! available.

use std::{
    ffi::CString,
    fs::File,
    os::unix::fs::FileExt,
    process::Command,
};

use nitro_mem::{MemError, VirtAddr, VirtRead};

use super::*;

struct ProcMem(File);

fn fault(va: u64, e: std::io::Error) -> MemError {
    MemError::Source { path: format!("/proc/PID/mem@{va:#x}"), why: e.to_string() }
}

impl VirtRead for ProcMem {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read_exact_at(buf, va.0).map_err(|e| fault(va.0, e))
    }
    fn read_cstring_prefix(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool), MemError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < max {
            let at = va.0 + out.len() as u64;
            let n = chunk.len().min(max - out.len()).min((4096 - at % 4096) as usize);
            self.0.read_exact_at(&mut chunk[..n], at).map_err(|e| fault(at, e))?;
            if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok((out, false))
    }
}

/// Calls compared (others are decoded too, but strace shows some of them with details this
/// module does not have, e.g. getrandom's buffer in hex or fadvise64's advice names).
const COMPARED: &[&str] = &[
    "execve", "brk", "mmap", "mprotect", "munmap", "openat", "read", "write", "close",
    "newfstatat", "fstat", "pread64", "access", "arch_prctl",
    "set_robust_list", "prlimit64", "exit_group", "lseek",
];

fn mask_hex(line: &str) -> String {
    let mut out = String::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'0' && b.get(i + 1) == Some(&b'x') {
            out.push_str("0xX");
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // strace pads before " = " to column 40.
    let mut s = out;
    while s.contains("  =") {
        s = s.replace("  =", " =");
    }
    s
}

/// Traces `argv` with ptrace and returns our rendering of each call.
fn trace_ourselves(path: &str, argv: &[&str]) -> Option<Vec<String>> {
    let cpath = CString::new(path).ok()?;
    let cargs: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let devnull = CString::new("/dev/null").ok()?;
    // SAFETY: the child only calls async-signal-safe functions on data prepared before fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        // SAFETY: in the child: set up tracing, stdout to /dev/null, then exec or exit.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            let fd = libc::open(devnull.as_ptr(), libc::O_WRONLY);
            libc::dup2(fd, 1);
            libc::close(fd);
            libc::raise(libc::SIGSTOP);
            libc::execv(cpath.as_ptr(), ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !libc::WIFSTOPPED(status) {
        return None;
    }
    // SAFETY: ptrace requests on our stopped tracee.
    unsafe {
        libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL);
    }
    let mut mem = ProcMem(File::open(format!("/proc/{pid}/mem")).ok()?);
    let o = DecodeOptions::default();
    let mut lines = Vec::new();
    let mut pending: Option<(&'static SyscallInfo, [u64; 6], Vec<Arg>)> = None;
    let mut sig = 0;
    loop {
        // SAFETY: resume our tracee to the next syscall stop.
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, sig) };
        sig = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        if libc::WSTOPSIG(status) != (libc::SIGTRAP | 0x80) {
            if libc::WSTOPSIG(status) != libc::SIGTRAP {
                sig = libc::WSTOPSIG(status) as usize;
            }
            continue;
        }
        // SAFETY: an all-zero user_regs_struct is valid; GETREGS fills it.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: reading registers of our stopped tracee into `regs`.
        unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs) };
        match pending.take() {
            None => {
                let Some(info) = table::x86_64(regs.orig_rax) else { continue };
                let raw = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
                let args = decode_enter(info, &raw, &mem, &o);
                if info.ret == RetKind::NoReturn {
                    lines.push(render_call(info.name, &args, None));
                    continue;
                }
                pending = Some((info, raw, args));
            }
            Some((info, raw, mut args)) => {
                // execve replaced the memory: reopen /proc/PID/mem for the new image.
                let ret = regs.rax as i64;
                if info.name == "execve" {
                    mem = ProcMem(File::open(format!("/proc/{pid}/mem")).ok()?);
                }
                decode_exit(info, &raw, ret, &mut args, &mem, &o);
                lines.push(render_call(info.name, &args, Some(&format_return(info, ret))));
            }
        }
    }
    Some(lines)
}

#[test]
fn same_lines_as_strace() {
    let argv = ["/bin/cat", "/etc/hostname"];
    let Some(ours) = trace_ourselves("/bin/cat", &argv) else {
        eprintln!("ptrace not available; skipped");
        return;
    };
    let out = std::env::temp_dir().join(format!("nitro-strace-{}", std::process::id()));
    let ok = Command::new("strace")
        .arg("-qq")
        .arg("-o")
        .arg(&out)
        .arg("/bin/cat")
        .arg("/etc/hostname")
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let Ok(theirs) = std::fs::read_to_string(&out) else {
        eprintln!("strace not available; skipped");
        return;
    };
    let _ = std::fs::remove_file(&out);
    assert!(ok);
    let keep = |l: &&str| COMPARED.iter().any(|c| l.starts_with(&format!("{c}(")));
    let ours: Vec<String> = ours.iter().map(String::as_str).filter(keep).map(mask_hex).collect();
    let theirs: Vec<String> = theirs.lines().filter(keep).map(mask_hex).collect();
    assert!(theirs.len() >= 20, "strace showed only {} calls", theirs.len());
    assert_eq!(ours.len(), theirs.len(), "ours:\n{}\ntheirs:\n{}", ours.join("\n"), theirs.join("\n"));
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b);
    }
    eprintln!("{} lines identical to strace", ours.len());
}

#[test]
#[ignore]
fn explore_differences() {
    let cmd: Vec<String> = std::env::var("NITRO_EXPLORE").unwrap_or("/bin/ls -l /".into()).split(' ').map(String::from).collect();
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let ours = trace_ourselves(argv[0], &argv).unwrap();
    let out = std::env::temp_dir().join("nitro-explore");
    Command::new("strace").arg("-qq").arg("-o").arg(&out).args(&argv).stdout(std::process::Stdio::null()).status().unwrap();
    let theirs = std::fs::read_to_string(&out).unwrap();
    let theirs: Vec<String> = theirs.lines().map(mask_hex).collect();
    let ours: Vec<String> = ours.iter().map(|s| mask_hex(s)).collect();
    let mut same = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        if a == b { same += 1 } else { eprintln!("OURS   {a}\nSTRACE {b}") }
    }
    eprintln!("{same} of {} same ({} ours)", theirs.len(), ours.len());
}
