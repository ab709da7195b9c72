//! End to end against the real strace: this test traces `cat /etc/hostname` itself with
//! ptrace (registers from `PTRACE_GETREGS`, memory from `/proc/PID/mem`, i.e. the bytes a VM
//! tracer reads from a guest), decodes every call with this module, runs the same command
//! under strace 6.x, and compares the lines of the calls both show the same way. Addresses
//! differ between runs (ASLR), so hex numbers are masked. Skipped when ptrace or strace is not
//! available.

use std::{ffi::CString, fs::File, os::unix::fs::FileExt, process::Command};

use nitro_mem::{MemError, VirtAddr, VirtRead};

use super::*;

struct ProcMem(File);

fn fault(va: u64, e: std::io::Error) -> MemError {
    MemError::Source {
        path: format!("/proc/PID/mem@{va:#x}"),
        why: e.to_string(),
    }
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
            let n = chunk
                .len()
                .min(max - out.len())
                .min((4096 - at % 4096) as usize);
            self.0
                .read_exact_at(&mut chunk[..n], at)
                .map_err(|e| fault(at, e))?;
            if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok((out, false))
    }
}

/// Calls whose text differs between two runs of the same program (process ids, random
/// bytes, clocks, DNS ids); every other line must be identical to strace's.
const RUN_DEPENDENT: &[&str] = &[
    "set_tid_address",
    "gettid",
    "getpid",
    "getppid",
    "getrandom",
    "sysinfo",
    "readlink",
    "clock_gettime",
    "sendto",
    "recvfrom",
    "time",
    "getsockname",
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
            // The test harness ignores SIGPIPE; strace's child (std::process::Command) has
            // the default, and an ignored disposition survives exec.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            // stdin, stdout and stderr on /dev/null, as for the strace run.
            let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
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
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL,
        )
    };
    if r == -1 {
        // Not traced (ptrace forbidden here): end the stopped child and skip.
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
        return None;
    }
    let mut mem = ProcMem(File::open(format!("/proc/{pid}/mem")).ok()?);
    let o = DecodeOptions::default();
    let mut lines = Vec::new();
    let mut pending: Option<(&'static SyscallInfo, [u64; 6], Vec<Arg>)> = None;
    let mut sig = 0;
    loop {
        // SAFETY: resume our tracee to the next syscall stop.
        if unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, sig) } == -1 {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
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
                let Some(info) = table::x86_64(regs.orig_rax) else {
                    continue;
                };
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
                let r = format_return_full(info, &raw, ret, &mem, &o);
                lines.push(render_call(info.name, &args, Some(&r)));
            }
        }
    }
    Some(lines)
}

/// Runs `argv` under strace and returns its lines.
fn strace_lines(argv: &[&str]) -> Option<Vec<String>> {
    let out = std::env::temp_dir().join(format!("nitro-strace-{}", std::process::id()));
    let ok = Command::new("strace")
        .arg("-qq")
        .arg("-o")
        .arg(&out)
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    if !ok {
        return None;
    }
    Some(text?.lines().map(String::from).collect())
}

fn comparable(line: &str) -> bool {
    !RUN_DEPENDENT
        .iter()
        .any(|c| line.starts_with(&format!("{c}(")))
}

#[test]
fn same_lines_as_strace() {
    let commands: &[&[&str]] = &[
        &["/bin/cat", "/etc/hostname"],
        &["/bin/ls", "-l", "/"],
        &["/usr/bin/id"],
        &["/usr/bin/stat", "/etc/passwd", "/dev/null"],
        &[
            "/usr/bin/python3",
            "-S",
            "-c",
            "import socket,select;s=socket.socket();s.connect_ex(('127.0.0.1',9));\
             s.getsockopt(1,4);s.setsockopt(6,1,1);p=select.poll();p.register(1,4);p.poll(0)",
        ],
    ];
    let mut total = 0;
    for argv in commands {
        if !std::path::Path::new(argv[0]).exists() {
            continue;
        }
        let Some(ours) = trace_ourselves(argv[0], argv) else {
            eprintln!("ptrace not available; skipped");
            return;
        };
        let Some(theirs) = strace_lines(argv) else {
            eprintln!("strace not available; skipped");
            return;
        };
        let ours: Vec<String> = ours
            .iter()
            .filter(|l| comparable(l))
            .map(|l| mask_hex(l))
            .collect();
        let theirs: Vec<String> = theirs
            .iter()
            .filter(|l| comparable(l) && !l.starts_with("+++") && !l.starts_with("---"))
            .map(|l| mask_hex(l))
            .collect();
        assert!(
            theirs.len() >= 20,
            "{argv:?}: strace showed only {} calls",
            theirs.len()
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{argv:?}");
        }
        assert_eq!(ours.len(), theirs.len(), "{argv:?}");
        total += ours.len();
    }
    eprintln!("{total} lines identical to strace");
}

#[test]
#[ignore]
fn explore_differences() {
    let cmd: Vec<String> = std::env::var("NITRO_EXPLORE")
        .unwrap_or("/bin/ls -l /".into())
        .split(' ')
        .map(String::from)
        .collect();
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let ours = trace_ourselves(argv[0], &argv).unwrap();
    let out = std::env::temp_dir().join("nitro-explore");
    Command::new("strace")
        .arg("-qq")
        .arg("-o")
        .arg(&out)
        .args(&argv)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let theirs = std::fs::read_to_string(&out).unwrap();
    let theirs: Vec<String> = theirs.lines().map(mask_hex).collect();
    let ours: Vec<String> = ours.iter().map(|s| mask_hex(s)).collect();
    let mut same = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        if a == b {
            same += 1
        } else {
            eprintln!("OURS   {a}\nSTRACE {b}")
        }
    }
    eprintln!("{same} of {} same ({} ours)", theirs.len(), ours.len());
}
