//! Argument decoding at syscall entry and exit.

use nitro_mem::VirtRead;

use super::{
    consts::{self, flags, value, value_hex},
    guest::{Guest, PATH_MAX},
    shape,
    structs::{self, mode},
    table::SyscallInfo,
    Arg, ArgKind, ArgValue,
};

/// How much to show (strace's `-s`, `-v`) and the process's ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Bytes of a string or buffer shown before `...` (strace `-s`, default 32). Paths are
    /// shown whole (up to `PATH_MAX`) like strace does.
    pub string_limit: usize,
    /// Elements of an array shown before `...` (argv, iovecs, pollfds).
    pub max_array: usize,
    /// Show structures and environments in full (strace `-v`).
    pub verbose: bool,
    /// The process is 32-bit (i386): pointers and longs are 4 bytes, registers are truncated
    /// to 32 bits.
    pub compat: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            string_limit: 32,
            max_array: 32,
            verbose: false,
            compat: false,
        }
    }
}

/// Upper bound of environment entries counted for `/* N vars */`.
const MAX_ENV_COUNT: usize = 4096;

struct Ctx<'a> {
    info: &'a SyscallInfo,
    raw: [u64; 6],
    g: Guest<'a>,
    opts: &'a DecodeOptions,
}

impl Ctx<'_> {
    fn reg(&self, i: u8) -> u64 {
        self.raw.get(i as usize).copied().unwrap_or(0)
    }
    /// A C `int` argument.
    fn int(&self, v: u64) -> i64 {
        i64::from(v as u32 as i32)
    }
    /// A C `long` argument.
    fn long(&self, v: u64) -> i64 {
        if self.g.compat {
            i64::from(v as u32 as i32)
        } else {
            v as i64
        }
    }
    fn small_time(&self) -> bool {
        self.g.compat && !self.info.name.ends_with("time64")
    }
    fn or_addr(&self, addr: u64, v: Option<String>) -> ArgValue {
        if addr == 0 {
            return ArgValue::Ptr(0);
        }
        match v {
            Some(s) => ArgValue::Struct(s),
            None => ArgValue::Unreadable(addr),
        }
    }
    fn string(&self, addr: u64, limit: usize) -> ArgValue {
        if addr == 0 {
            return ArgValue::Ptr(0);
        }
        match self.g.cstring(addr, limit) {
            Some((bytes, truncated)) => ArgValue::Str { bytes, truncated },
            None => ArgValue::Unreadable(addr),
        }
    }
    fn buffer(&self, addr: u64, len: u64) -> ArgValue {
        if addr == 0 {
            return ArgValue::Ptr(0);
        }
        match self.g.buffer(addr, len, self.opts.string_limit) {
            Some((bytes, truncated)) => ArgValue::Str { bytes, truncated },
            None => ArgValue::Unreadable(addr),
        }
    }
}

fn fix_width(raw: &[u64; 6], compat: bool) -> [u64; 6] {
    if compat {
        raw.map(|v| v & 0xffff_ffff)
    } else {
        *raw
    }
}

/// Decodes the arguments at syscall entry. Output arguments come back as
/// [`ArgValue::Pending`] (or `NULL`) and are filled by [`decode_exit`]. Some calls show fewer
/// arguments than their prototype, as strace does (`fcntl(3, F_GETFL)`, `futex` by op,
/// `clone` by flags).
pub fn decode_enter(
    info: &SyscallInfo,
    raw: &[u64; 6],
    mem: &dyn VirtRead,
    opts: &DecodeOptions,
) -> Vec<Arg> {
    let cx = Ctx {
        info,
        raw: fix_width(raw, opts.compat),
        g: Guest {
            mem,
            compat: opts.compat,
        },
        opts,
    };
    let mut args: Vec<Arg> = info
        .args
        .iter()
        .enumerate()
        .map(|(i, spec)| Arg {
            name: spec.name,
            value: enter_value(&cx, spec.name, spec.kind, cx.reg(i as u8)),
        })
        .collect();
    shape::shape(info, &cx.raw, &mut args);
    args
}

/// Fills the output arguments after the call returned `ret` (buffers with `min(ret, limit)`
/// bytes, structures, fds). On failure (`ret` in -4095..-1) output arguments show their
/// address, as strace does.
pub fn decode_exit(
    info: &SyscallInfo,
    raw: &[u64; 6],
    ret: i64,
    args: &mut [Arg],
    mem: &dyn VirtRead,
    opts: &DecodeOptions,
) {
    let cx = Ctx {
        info,
        raw: fix_width(raw, opts.compat),
        g: Guest {
            mem,
            compat: opts.compat,
        },
        opts,
    };
    let ret = if opts.compat {
        i64::from(ret as u32 as i32)
    } else {
        ret
    };
    let failed = (-4095..0).contains(&ret);
    for (i, spec) in info.args.iter().enumerate() {
        if !spec.kind.is_output() {
            continue;
        }
        let Some(arg) = args.iter_mut().find(|a| a.name == spec.name) else {
            continue;
        };
        let addr = cx.reg(i as u8);
        if failed {
            if matches!(arg.value, ArgValue::Pending) {
                arg.value = ArgValue::Ptr(addr);
            }
            continue;
        }
        if let Some(v) = exit_value(&cx, spec.kind, addr, ret, &arg.value) {
            arg.value = v;
        }
    }
}

/// `Int` parameters whose C type is `long`, `loff_t` or `size_t`-like; every other `Int` is a
/// C `int` (pid_t, uid_t, ...), of which only the low 32 bits of the register count
/// (busybox passes -1 as 0x00000000ffffffff).
const LONG_INT_NAMES: &[&str] = &[
    "offset",
    "pos",
    "len",
    "length",
    "size",
    "nbytes",
    "msgtyp",
    "pos_l",
    "pos_h",
    "increment",
];

fn enter_value(cx: &Ctx, name: &str, kind: ArgKind, v: u64) -> ArgValue {
    use ArgKind::*;
    let o = cx.opts;
    match kind {
        Int if LONG_INT_NAMES.contains(&name) => ArgValue::Int(cx.long(v)),
        Int => ArgValue::Int(cx.int(v)),
        UInt | Size => ArgValue::UInt(v),
        Hex => ArgValue::Sym(hex0(v)),
        Ptr => ArgValue::Ptr(v),
        Fd => ArgValue::Int(cx.int(v)),
        DirFd => {
            if v as u32 as i32 == consts::AT_FDCWD {
                ArgValue::Sym("AT_FDCWD".into())
            } else {
                ArgValue::Int(cx.int(v))
            }
        }
        Path => cx.string(v, PATH_MAX),
        Str => cx.string(v, o.string_limit),
        Buf { len_arg } => cx.buffer(v, cx.reg(len_arg)),
        OpenFlags => ArgValue::Sym(open_flags(v & 0xffff_ffff)),
        FdFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::OPEN_FLAGS, "0")),
        FdFlagsNamed { prefix } => ArgValue::Sym(fd_flags_named(v & 0xffff_ffff, prefix)),
        MemfdFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::MEMFD_FLAGS, "0")),
        Mode => ArgValue::Sym(mode(v & 0xffff_ffff)),
        AtFlags => ArgValue::Sym(at_flags(cx, v & 0xffff_ffff)),
        AccessMode => ArgValue::Sym(flags(v & 0xffff_ffff, consts::ACCESS_OK, "F_OK")),
        ProtFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::PROT, "PROT_NONE")),
        MapFlags => ArgValue::Sym(map_flags(v & 0xffff_ffff)),
        Whence => ArgValue::Sym(value(v & 0xffff_ffff, consts::WHENCE)),
        Signal => ArgValue::Sym(structs::signal_name(v & 0xffff_ffff)),
        SigAction => cx.or_addr(v, structs::sigaction(&cx.g, v)),
        SigProcmaskHow => ArgValue::Sym(value(v & 0xffff_ffff, consts::SIGPROCMASK_HOW)),
        SigSet => cx.or_addr(v, structs::read_sigset(&cx.g, v)),
        Argv => argv(cx, v, o.max_array),
        Envp => envp(cx, v),
        CloneFlags => ArgValue::Sym(clone_flags(v)),
        WaitOptions => ArgValue::Sym(flags(v & 0xffff_ffff, consts::WAIT_OPTIONS, "0")),
        Sockaddr { len_arg } => {
            let len = cx.reg(len_arg) & 0xffff_ffff;
            if v == 0 {
                ArgValue::Ptr(0)
            } else {
                match structs::sockaddr(&cx.g, v, len) {
                    Some(s) => ArgValue::Struct(s),
                    None => ArgValue::Unreadable(v),
                }
            }
        }
        SocklenPtr => match (v, cx.g.u32(v)) {
            (0, _) => ArgValue::Ptr(0),
            (_, Some(n)) => ArgValue::Array(vec![ArgValue::UInt(u64::from(n))]),
            (_, None) => ArgValue::Unreadable(v),
        },
        SocketDomain => ArgValue::Sym(value(v & 0xffff_ffff, consts::ADDRESS_FAMILIES)),
        SocketType => ArgValue::Sym(socket_type(v & 0xffff_ffff)),
        SocketProto => ArgValue::Sym(socket_proto(cx.reg(0) & 0xffff_ffff, v & 0xffff_ffff)),
        SockFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::SOCK_FLAGS, "0")),
        SockOptLevel => ArgValue::Sym(value(v & 0xffff_ffff, consts::SOL_LEVELS)),
        SockOptName => ArgValue::Sym(sockopt_name(cx.reg(1) & 0xffff_ffff, v & 0xffff_ffff)),
        SockOptVal { len_arg } => sockopt_val(cx, v, cx.reg(len_arg) & 0xffff_ffff),
        MsgFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::MSG_FLAGS, "0")),
        MsgHdr => cx.or_addr(
            v,
            structs::msghdr(&cx.g, v, None, o.string_limit, o.max_array),
        ),
        ShutdownHow => ArgValue::Sym(value(v & 0xffff_ffff, consts::SHUTDOWN)),
        FcntlCmd => ArgValue::Sym(value_hex(v & 0xffff_ffff, consts::FCNTL_CMDS, "F_???")),
        FcntlArg { cmd_arg } => fcntl_arg(cx, cx.reg(cmd_arg) & 0xffff_ffff, v),
        IoctlRequest => ArgValue::Sym(ioctl_request(v & 0xffff_ffff)),
        IoctlArg => ArgValue::Ptr(v),
        StatxMask => ArgValue::Sym(flags(v & 0xffff_ffff, consts::STATX_MASK, "0")),
        Timespec => cx.or_addr(v, structs::timespec(&cx.g, v, cx.small_time())),
        Timeval => cx.or_addr(v, structs::timeval(&cx.g, v)),
        Timezone => cx.or_addr(v, structs::timezone(&cx.g, v)),
        ClockId => ArgValue::Sym(value(v & 0xffff_ffff, consts::CLOCKS)),
        FutexOp => ArgValue::Sym(futex_op(v & 0xffff_ffff)),
        RlimitResource => ArgValue::Sym(value(v & 0xffff_ffff, consts::RLIMITS)),
        Rlimit => cx.or_addr(v, structs::rlimit(&cx.g, v, cx.info.name == "prlimit64")),
        ArchPrctlCode => ArgValue::Sym(value_hex(v & 0xffff_ffff, consts::ARCH_PRCTL, "ARCH_???")),
        PrctlOption => ArgValue::Sym(value_hex(v & 0xffff_ffff, consts::PRCTL, "PR_???")),
        MremapFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::MREMAP, "0")),
        MadviseAdvice => ArgValue::Sym(value(v & 0xffff_ffff, consts::MADVISE)),
        FadviseAdvice => ArgValue::Sym(value(v & 0xffff_ffff, consts::FADVISE)),
        PollFds { count_arg } => cx.or_addr(
            v,
            structs::pollfds(&cx.g, v, cx.reg(count_arg) & 0xffff_ffff, o.max_array),
        ),
        Iovec { count_arg } => cx.or_addr(
            v,
            structs::iovec(
                &cx.g,
                v,
                cx.reg(count_arg) & 0xffff_ffff,
                None,
                o.string_limit,
                o.max_array,
            ),
        ),
        FlockOp => ArgValue::Sym(flags(v & 0xffff_ffff, consts::FLOCK_OPS, "0")),
        EpollCtlOp => ArgValue::Sym(value(v & 0xffff_ffff, consts::EPOLL_CTL)),
        GetrandomFlags => ArgValue::Sym(flags(v & 0xffff_ffff, consts::GETRANDOM, "0")),
        // Output arguments: known at exit.
        PathOut
        | BufOut { .. }
        | BufOutHex { .. }
        | SigActionOut
        | SigSetOut
        | WaitStatus
        | SockaddrOut { .. }
        | MsgHdrOut
        | PipeFds
        | StatBuf
        | Stat64Buf
        | StatxBuf
        | TimespecOut
        | TimevalOut
        | RlimitOut
        | IovecOut { .. }
        | UnameBuf
        | Getdents
        | U32ArrayOut { .. }
        | SockOptValOut { .. }
        | SysinfoOut => {
            if v == 0 {
                ArgValue::Ptr(0)
            } else {
                ArgValue::Pending
            }
        }
    }
}

fn exit_value(cx: &Ctx, kind: ArgKind, addr: u64, ret: i64, prev: &ArgValue) -> Option<ArgValue> {
    use ArgKind::*;
    let o = cx.opts;
    let uret = ret.max(0) as u64;
    if addr == 0 {
        return None;
    }
    let v = match kind {
        PathOut => cx.string(addr, PATH_MAX),
        BufOut { .. } => cx.buffer(addr, uret),
        BufOutHex { .. } => match cx.g.buffer(addr, uret, o.string_limit) {
            Some((bytes, truncated)) => {
                let mut s = String::with_capacity(bytes.len() * 4 + 5);
                s.push('"');
                for b in &bytes {
                    s.push_str(&format!("\\x{b:02x}"));
                }
                s.push('"');
                if truncated {
                    s.push_str("...");
                }
                ArgValue::Sym(s)
            }
            None => ArgValue::Unreadable(addr),
        },
        SigActionOut => cx.or_addr(addr, structs::sigaction(&cx.g, addr)),
        SigSetOut => cx.or_addr(addr, structs::read_sigset(&cx.g, addr)),
        WaitStatus => {
            if ret == 0 {
                ArgValue::Ptr(addr)
            } else {
                cx.or_addr(addr, cx.g.i32(addr).map(structs::wait_status))
            }
        }
        SockaddrOut { len_arg } => {
            let len = cx.g.u32(cx.reg(len_arg)).map(u64::from).unwrap_or(0);
            cx.or_addr(addr, structs::sockaddr(&cx.g, addr, len))
        }
        SocklenPtr => {
            let after = cx.g.u32(addr)?;
            match prev {
                ArgValue::Array(v) if v.len() == 1 => match v.first() {
                    Some(ArgValue::UInt(before)) if *before != u64::from(after) => {
                        ArgValue::Sym(format!("[{before} => {after}]"))
                    }
                    _ => return None,
                },
                _ => ArgValue::Array(vec![ArgValue::UInt(u64::from(after))]),
            }
        }
        MsgHdrOut => cx.or_addr(
            addr,
            structs::msghdr(&cx.g, addr, Some(uret), o.string_limit, o.max_array),
        ),
        PipeFds => match (cx.g.i32(addr), cx.g.i32(addr.wrapping_add(4))) {
            (Some(a), Some(b)) => {
                ArgValue::Array(vec![ArgValue::Int(a.into()), ArgValue::Int(b.into())])
            }
            _ => ArgValue::Unreadable(addr),
        },
        StatBuf => {
            if cx.g.compat {
                // The i386 `struct stat` of stat/fstat/lstat (106-108) is not decoded.
                ArgValue::Ptr(addr)
            } else {
                cx.or_addr(
                    addr,
                    structs::stat(&cx.g, addr, &structs::STAT_X86_64, o.verbose),
                )
            }
        }
        Stat64Buf => cx.or_addr(
            addr,
            structs::stat(&cx.g, addr, &structs::STAT64_I386, o.verbose),
        ),
        StatxBuf => cx.or_addr(addr, structs::statx(&cx.g, addr, o.verbose)),
        TimespecOut => cx.or_addr(addr, structs::timespec(&cx.g, addr, cx.small_time())),
        TimevalOut => cx.or_addr(addr, structs::timeval(&cx.g, addr)),
        RlimitOut => cx.or_addr(
            addr,
            structs::rlimit(&cx.g, addr, cx.info.name == "prlimit64"),
        ),
        IovecOut { count_arg } => cx.or_addr(
            addr,
            structs::iovec(
                &cx.g,
                addr,
                cx.reg(count_arg) & 0xffff_ffff,
                Some(uret),
                o.string_limit,
                o.max_array,
            ),
        ),
        UnameBuf => cx.or_addr(addr, structs::utsname(&cx.g, addr, o.verbose)),
        IoctlArg => ioctl_arg(cx, cx.reg(1) & 0xffff_ffff, addr)?,
        SockOptValOut { len_arg } => {
            let len = cx.g.u32(cx.reg(len_arg)).map(u64::from).unwrap_or(0);
            sockopt_val(cx, addr, len)
        }
        SysinfoOut => cx.or_addr(addr, structs::sysinfo(&cx.g, addr)),
        U32ArrayOut { count_arg } => {
            let n = uret.min(cx.reg(count_arg) & 0xffff_ffff);
            let shown = n.min(o.max_array as u64);
            let mut items = Vec::new();
            for i in 0..shown {
                match cx.g.u32(addr.wrapping_add(i * 4)) {
                    Some(v) => items.push(ArgValue::UInt(u64::from(v))),
                    None => return Some(ArgValue::Unreadable(addr)),
                }
            }
            if n > shown {
                items.push(ArgValue::Sym("...".into()));
            }
            ArgValue::Array(items)
        }
        Getdents => {
            let off = if cx.info.name == "getdents" && cx.g.compat {
                8
            } else {
                16
            };
            match structs::dirent_count(&cx.g, addr, uret, off) {
                Some(n) => ArgValue::Struct(format!("{addr:#x} /* {n} entries */")),
                None => ArgValue::Unreadable(addr),
            }
        }
        _ => return None,
    };
    Some(v)
}

fn sockopt_name(level: u64, v: u64) -> String {
    let table = match level {
        1 => consts::SO_OPTS,
        0 => consts::IP_OPTS,
        41 => consts::IPV6_OPTS,
        6 => consts::TCP_OPTS,
        _ => return v.to_string(),
    };
    value(v, table)
}

/// An option value: `[1]` when it is an `int` (4 bytes), else the bytes quoted.
fn sockopt_val(cx: &Ctx, addr: u64, len: u64) -> ArgValue {
    if addr == 0 {
        return ArgValue::Ptr(0);
    }
    if len == 4 {
        return match cx.g.i32(addr) {
            Some(v) => ArgValue::Array(vec![ArgValue::Int(v.into())]),
            None => ArgValue::Unreadable(addr),
        };
    }
    cx.buffer(addr, len)
}

/// The ioctl argument after a successful call, for the requests that write a known type
/// (`include/uapi/asm-generic/ioctls.h`; `struct winsize` of `asm-generic/termios.h`).
fn ioctl_arg(cx: &Ctx, req: u64, addr: u64) -> Option<ArgValue> {
    match req {
        // FIONREAD, TIOCOUTQ, TIOCGPGRP, TIOCGSID, TIOCGETD, TIOCGPTN, TIOCMGET
        0x541B | 0x5411 | 0x540F | 0x5429 | 0x5424 | 0x8004_5430 | 0x5415 => {
            Some(match cx.g.i32(addr) {
                Some(v) => ArgValue::Array(vec![ArgValue::Int(v.into())]),
                None => ArgValue::Unreadable(addr),
            })
        }
        // TIOCGWINSZ
        0x5413 => {
            let b = cx.g.bytes(addr, 8);
            Some(match b {
                Some(b) => {
                    let h = |i: usize| {
                        b.get(i..i + 2)
                            .map(|x| u16::from_le_bytes([x[0], x[1]]))
                            .unwrap_or(0)
                    };
                    ArgValue::Struct(format!(
                        "{{ws_row={}, ws_col={}, ws_xpixel={}, ws_ypixel={}}}",
                        h(0),
                        h(2),
                        h(4),
                        h(6)
                    ))
                }
                None => ArgValue::Unreadable(addr),
            })
        }
        _ => None,
    }
}

/// `O_RDONLY|O_CLOEXEC`: the access mode always, then the other flags.
pub fn open_flags(v: u64) -> String {
    let acc = consts::name_of(v & 3, consts::ACCESS_MODES).unwrap_or("O_ACCMODE");
    let rest = v & !3;
    if rest == 0 {
        acc.to_string()
    } else {
        format!("{acc}|{}", flags(rest, consts::OPEN_FLAGS, "0"))
    }
}

/// `EFD_CLOEXEC|EFD_NONBLOCK`: the `O_CLOEXEC`/`O_NONBLOCK` bits under the call's prefix
/// (`include/uapi/linux/eventpoll.h`, `eventfd.h`, `inotify.h`, `signalfd.h`, `timerfd.h`
/// define them as the `O_*` values); other bits in hex.
fn fd_flags_named(v: u64, prefix: &str) -> String {
    if v == 0 {
        return "0".into();
    }
    let mut parts = Vec::new();
    if v & 0o2000000 != 0 {
        parts.push(format!("{prefix}CLOEXEC"));
    }
    if v & 0o4000 != 0 {
        parts.push(format!("{prefix}NONBLOCK"));
    }
    let rest = v & !(0o2000000 | 0o4000);
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

fn at_flags(cx: &Ctx, v: u64) -> String {
    if cx.info.name == "statx" && v & 0x6000 == 0 {
        // AT_STATX_SYNC_AS_STAT is 0; strace names it.
        let rest = flags(v, consts::AT_FLAGS, "");
        return if rest.is_empty() {
            "AT_STATX_SYNC_AS_STAT".into()
        } else {
            format!("AT_STATX_SYNC_AS_STAT|{rest}")
        };
    }
    flags(v, consts::AT_FLAGS, "0")
}

fn map_flags(v: u64) -> String {
    let ty = v & 0xf;
    let mut out = consts::name_of(ty, consts::MAP_TYPES)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{ty:#x} /* MAP_??? */"));
    let rest = v & !0xf;
    if rest != 0 {
        out.push('|');
        out.push_str(&flags(rest, consts::MAP_FLAGS, "0"));
    }
    out
}

fn clone_flags(v: u64) -> String {
    let sig = v & 0xff;
    let mut out = flags(v & !0xff, consts::CLONE_FLAGS, "");
    if sig != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(&structs::signal_name(sig));
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

fn socket_type(v: u64) -> String {
    let ty = v & 0xf;
    let mut out = value(ty, consts::SOCK_TYPES);
    let rest = v & !0xf;
    if rest != 0 {
        out.push('|');
        out.push_str(&flags(rest, consts::SOCK_FLAGS, "0"));
    }
    out
}

fn socket_proto(domain: u64, v: u64) -> String {
    match domain {
        2 | 10 => value(v, consts::IPPROTO),
        16 => value(v, consts::NETLINK_PROTO),
        _ => v.to_string(),
    }
}

fn fcntl_arg(cx: &Ctx, cmd: u64, v: u64) -> ArgValue {
    match cmd {
        // F_SETFD
        2 => ArgValue::Sym(flags(v & 0xffff_ffff, consts::FD_FLAGS, "0")),
        // F_SETFL
        4 => ArgValue::Sym(open_flags(v & 0xffff_ffff)),
        // F_GETLK.. F_SETLKW64, F_SETOWN_EX/F_GETOWN_EX, OFD locks: structure pointers.
        5..=7 | 12..=17 | 36..=38 => ArgValue::Ptr(v),
        // F_NOTIFY, F_ADD_SEALS: bit masks.
        1026 | 1033 => ArgValue::Sym(hex0(v)),
        _ => ArgValue::Int(cx.long(v)),
    }
}

/// `TCGETS`, or strace's `_IOC(dir, type, nr, size)` for unknown requests.
pub fn ioctl_request(v: u64) -> String {
    if let Some(n) = consts::name_of(v, consts::IOCTLS) {
        return n.to_string();
    }
    // include/uapi/asm-generic/ioctl.h: nr 8 bits, type 8, size 14, dir 2.
    let dir = (v >> 30) & 3;
    let size = (v >> 16) & 0x3fff;
    if dir == 0 && size == 0 {
        return format!("{v:#x}");
    }
    let d = match dir {
        0 => "_IOC_NONE",
        1 => "_IOC_WRITE",
        2 => "_IOC_READ",
        _ => "_IOC_READ|_IOC_WRITE",
    };
    format!(
        "_IOC({d}, {}, {}, {})",
        hex0((v >> 8) & 0xff),
        hex0(v & 0xff),
        hex0(size)
    )
}

/// C's `%#x`: `0` for zero, `0x...` otherwise.
fn hex0(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// `FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME`.
pub fn futex_op(v: u64) -> String {
    let cmd = v & 0x7f;
    let mut out = match consts::name_of(cmd, consts::FUTEX_CMDS) {
        Some(n) => n.to_string(),
        None => return format!("{v:#x}"),
    };
    if v & consts::FUTEX_PRIVATE_FLAG != 0 {
        out.push_str("_PRIVATE");
    }
    if v & consts::FUTEX_CLOCK_REALTIME != 0 {
        out.push_str("|FUTEX_CLOCK_REALTIME");
    }
    let rest = v & !(0x7f | consts::FUTEX_PRIVATE_FLAG | consts::FUTEX_CLOCK_REALTIME);
    if rest != 0 {
        out.push_str(&format!("|{rest:#x}"));
    }
    out
}

fn argv(cx: &Ctx, addr: u64, max: usize) -> ArgValue {
    if addr == 0 {
        return ArgValue::Ptr(0);
    }
    let w = cx.g.word_size();
    let mut items = Vec::new();
    for i in 0..=max as u64 {
        let Some(p) = cx.g.word(addr.wrapping_add(i * w)) else {
            if i == 0 {
                return ArgValue::Unreadable(addr);
            }
            items.push(ArgValue::Sym("...".into()));
            break;
        };
        if p == 0 {
            break;
        }
        if i == max as u64 {
            items.push(ArgValue::Sym("...".into()));
            break;
        }
        items.push(cx.string(p, cx.opts.string_limit));
    }
    ArgValue::Array(items)
}

fn envp(cx: &Ctx, addr: u64) -> ArgValue {
    if addr == 0 {
        return ArgValue::Ptr(0);
    }
    if cx.opts.verbose {
        return argv(cx, addr, cx.opts.max_array);
    }
    let w = cx.g.word_size();
    let mut n = 0usize;
    let mut capped = true;
    while n < MAX_ENV_COUNT {
        match cx.g.word(addr.wrapping_add(n as u64 * w)) {
            Some(0) => {
                capped = false;
                break;
            }
            Some(_) => n += 1,
            None if n == 0 => return ArgValue::Unreadable(addr),
            None => break,
        }
    }
    let more = if capped { "+" } else { "" };
    ArgValue::Struct(format!("{addr:#x} /* {n}{more} vars */"))
}
