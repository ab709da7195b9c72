//! Renderers of the kernel structures syscalls take or fill, in strace's notation.
//!
//! Layouts are the x86-64 uapi ones unless `compat` (i386) says otherwise; each function
//! cites its header. Every function returns `None` when the memory cannot be read, and the
//! caller then shows the address.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
};

use super::{
    consts::{self, flags, value},
    guest::Guest,
    value::escape_into,
};

fn quoted(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from("\"");
    escape_into(bytes, &mut s);
    s.push('"');
    if truncated {
        s.push_str("...");
    }
    s
}

/// strace's `%#03o` for a permission part: `000`, `0644`, `01777`.
pub fn octal(v: u64) -> String {
    if v == 0 {
        return "000".into();
    }
    format!("{:0>3}", format!("0{v:o}"))
}

/// A mode argument: `0644`, or `S_IFCHR|0620` when type bits are present.
pub fn mode(v: u64) -> String {
    let ty = v & 0o170000;
    match consts::name_of(ty, consts::FILE_TYPES) {
        Some(t) if ty != 0 => format!("{t}|{}", octal(v & !0o170000)),
        _ => octal(v),
    }
}

/// `st_mode`: `S_IFDIR|S_ISVTX|0777`.
pub fn st_mode(v: u64) -> String {
    let mut out = String::new();
    let ty = v & 0o170000;
    if let Some(t) = consts::name_of(ty, consts::FILE_TYPES) {
        out.push_str(t);
        out.push('|');
    } else if ty != 0 {
        let _ = write!(out, "{ty:#o}|");
    }
    for &(bit, name) in consts::MODE_SPECIAL {
        if v & bit != 0 {
            out.push_str(name);
            out.push('|');
        }
    }
    out.push_str(&octal(v & 0o777));
    out
}

/// `makedev(0x88, 0)` from a kernel `new_encode_dev` value (glibc `gnu_dev_major/minor`).
pub fn makedev(dev: u64) -> String {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let h = |v: u64| {
        if v == 0 {
            "0".to_string()
        } else {
            format!("{v:#x}")
        }
    };
    format!("makedev({}, {})", h(major), h(minor))
}

/// Where the fields of a stat structure are: `(offset, width)` in bytes.
pub struct StatLayout {
    size: usize,
    dev: (usize, usize),
    ino: (usize, usize),
    nlink: (usize, usize),
    mode: usize,
    uid: usize,
    gid: usize,
    rdev: (usize, usize),
    st_size: (usize, usize),
    blksize: (usize, usize),
    blocks: (usize, usize),
    /// atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec.
    times: [(usize, usize); 6],
}

/// x86-64 `struct stat` (`arch/x86/include/uapi/asm/stat.h`, 144 bytes).
pub const STAT_X86_64: StatLayout = StatLayout {
    size: 144,
    dev: (0, 8),
    ino: (8, 8),
    nlink: (16, 8),
    mode: 24,
    uid: 28,
    gid: 32,
    rdev: (40, 8),
    st_size: (48, 8),
    blksize: (56, 8),
    blocks: (64, 8),
    times: [(72, 8), (80, 8), (88, 8), (96, 8), (104, 8), (112, 8)],
};

/// i386 `struct stat64` (`arch/x86/include/uapi/asm/stat.h`, 96 bytes; `long long` is
/// 4-byte aligned on i386): st_dev 0, __st_ino 12, st_mode 16, st_nlink 20, st_uid 24,
/// st_gid 28, st_rdev 32, st_size 44, st_blksize 52, st_blocks 56, times from 64, st_ino 88.
pub const STAT64_I386: StatLayout = StatLayout {
    size: 96,
    dev: (0, 8),
    ino: (88, 8),
    nlink: (20, 4),
    mode: 16,
    uid: 24,
    gid: 28,
    rdev: (32, 8),
    st_size: (44, 8),
    blksize: (52, 4),
    blocks: (56, 8),
    times: [(64, 4), (68, 4), (72, 4), (76, 4), (80, 4), (84, 4)],
};

/// A stat structure: `{st_mode=S_IFREG|0644, st_size=1234, ...}` (strace's short form), or
/// every field with `verbose`; devices show `st_rdev=makedev(...)` instead of the size.
pub fn stat(g: &Guest, addr: u64, l: &StatLayout, verbose: bool) -> Option<String> {
    let b = g.bytes(addr, l.size)?;
    let get = |(o, n): (usize, usize)| -> u64 {
        let mut v = [0u8; 8];
        if let (Some(src), Some(dst)) = (b.get(o..o + n), v.get_mut(..n)) {
            dst.copy_from_slice(src);
        }
        let x = u64::from_le_bytes(v);
        // Sign-extend 4-byte fields (times are signed longs).
        if n == 4 {
            x as u32 as i32 as i64 as u64
        } else {
            x
        }
    };
    let mode = get((l.mode, 4)) & 0xffff_ffff;
    let is_dev = matches!(mode & 0o170000, 0o020000 | 0o060000);
    let size_or_rdev = if is_dev {
        format!("st_rdev={}", makedev(get(l.rdev)))
    } else {
        format!("st_size={}", get(l.st_size) as i64)
    };
    if !verbose {
        return Some(format!(
            "{{st_mode={}, {size_or_rdev}, ...}}",
            st_mode(mode)
        ));
    }
    let t = l.times.map(get);
    Some(format!(
        "{{st_dev={}, st_ino={}, st_mode={}, st_nlink={}, st_uid={}, st_gid={}, st_blksize={}, \
         st_blocks={}, {size_or_rdev}, st_atime={}, st_atime_nsec={}, st_mtime={}, \
         st_mtime_nsec={}, st_ctime={}, st_ctime_nsec={}}}",
        makedev(get(l.dev)),
        get(l.ino),
        st_mode(mode),
        get(l.nlink),
        get((l.uid, 4)) as u32,
        get((l.gid, 4)) as u32,
        get(l.blksize) as i64,
        get(l.blocks) as i64,
        t[0] as i64,
        t[1],
        t[2] as i64,
        t[3],
        t[4] as i64,
        t[5],
    ))
}

/// `struct statx` (`include/uapi/linux/stat.h`, 256 bytes): stx_mask 0, stx_blksize 4,
/// stx_attributes 8, stx_nlink 16, stx_uid 20, stx_gid 24, stx_mode 28, stx_ino 32,
/// stx_size 40, stx_blocks 48, stx_attributes_mask 56.
pub fn statx(g: &Guest, addr: u64, verbose: bool) -> Option<String> {
    let b = g.bytes(addr, 64)?;
    let rd = |o: usize, n: usize| -> u64 {
        let mut v = [0u8; 8];
        if let (Some(src), Some(dst)) = (b.get(o..o + n), v.get_mut(..n)) {
            dst.copy_from_slice(src);
        }
        u64::from_le_bytes(v)
    };
    let mut s = format!(
        "{{stx_mask={}, stx_attributes={}, stx_mode={}, stx_size={}",
        flags(rd(0, 4), consts::STATX_MASK, "0"),
        flags(rd(8, 8), consts::STATX_ATTRS, "0"),
        st_mode(rd(28, 2)),
        rd(40, 8),
    );
    if verbose {
        let _ = write!(
            s,
            ", stx_blksize={}, stx_nlink={}, stx_uid={}, stx_gid={}, stx_ino={}, stx_blocks={}}}",
            rd(4, 4),
            rd(16, 4),
            rd(20, 4),
            rd(24, 4),
            rd(32, 8),
            rd(48, 8)
        );
    } else {
        s.push_str(", ...}");
    }
    Some(s)
}

/// `struct sockaddr` of `len` bytes (`include/uapi/linux/in.h`, `in6.h`, `un.h`,
/// `netlink.h`): strace's `{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("...")}`.
pub fn sockaddr(g: &Guest, addr: u64, len: u64) -> Option<String> {
    let len = len.min(128) as usize;
    if len < 2 {
        return None;
    }
    let b = g.bytes(addr, len)?;
    let family = u16::from_le_bytes([*b.first()?, *b.get(1)?]) as u64;
    let fam = value(family, consts::ADDRESS_FAMILIES);
    let be16 = |o: usize| b.get(o..o + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let le32 = |o: usize| {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match family {
        2 if len >= 8 => {
            let port = be16(2)?;
            let ip = Ipv4Addr::new(*b.get(4)?, *b.get(5)?, *b.get(6)?, *b.get(7)?);
            Some(format!(
                "{{sa_family={fam}, sin_port=htons({port}), sin_addr=inet_addr(\"{ip}\")}}"
            ))
        }
        10 if len >= 24 => {
            let port = be16(2)?;
            let flow = b
                .get(4..8)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_be_bytes)?;
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let ip = Ipv6Addr::from(a);
            let scope = if len >= 28 { le32(24)? } else { 0 };
            Some(format!(
                "{{sa_family={fam}, sin6_port=htons({port}), sin6_flowinfo=htonl({flow}), \
                 inet_pton({fam}, \"{ip}\", &sin6_addr), sin6_scope_id={scope}}}"
            ))
        }
        1 => {
            let path = b.get(2..).unwrap_or(&[]);
            if path.first() == Some(&0) && path.len() > 1 {
                // Abstract socket: the name is every byte after the leading NUL.
                let name = path.get(1..).unwrap_or(&[]);
                Some(format!(
                    "{{sa_family={fam}, sun_path=@{}}}",
                    quoted(name, false)
                ))
            } else {
                let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                let p = path.get(..end).unwrap_or(&[]);
                Some(format!(
                    "{{sa_family={fam}, sun_path={}}}",
                    quoted(p, false)
                ))
            }
        }
        16 if len >= 12 => Some(format!(
            "{{sa_family={fam}, nl_pid={}, nl_groups={:08x}}}",
            le32(4)? as i32,
            le32(8)?
        )),
        _ => {
            let data = b.get(2..).unwrap_or(&[]);
            Some(format!(
                "{{sa_family={fam}, sa_data={}}}",
                quoted(data, false)
            ))
        }
    }
}

/// Signal name as strace shows it in a signal argument: `SIGTERM`, `SIGRTMIN`, `SIGRT_2`.
pub fn signal_name(n: u64) -> String {
    match n {
        1..=31 => consts::SIGNALS
            .get(n as usize)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        consts::SIGRTMIN => "SIGRTMIN".into(),
        33..=64 => format!("SIGRT_{}", n - consts::SIGRTMIN),
        _ => n.to_string(),
    }
}

fn set_member_name(n: u64) -> String {
    let s = signal_name(n);
    s.strip_prefix("SIG").map(str::to_string).unwrap_or(s)
}

/// A 64-signal set: `[INT TERM]`, or `~[KILL STOP]` when more than half are set (strace).
pub fn sigset(mask: u64) -> String {
    let (invert, m) = if mask.count_ones() > 32 {
        (true, !mask)
    } else {
        (false, mask)
    };
    let names: Vec<String> = (1..=64u64)
        .filter(|i| m & (1 << (i - 1)) != 0)
        .map(set_member_name)
        .collect();
    format!("{}[{}]", if invert { "~" } else { "" }, names.join(" "))
}

/// Reads a signal set (8 bytes on both ABIs: the compat set is two little-endian `u32`).
pub fn read_sigset(g: &Guest, addr: u64) -> Option<String> {
    g.u64(addr).map(sigset)
}

/// `struct sigaction` as `rt_sigaction` takes it (`arch/x86/include/asm/signal.h`
/// `struct sigaction`; compat: `struct compat_sigaction` of `include/linux/compat.h`):
/// handler, flags, restorer, mask.
pub fn sigaction(g: &Guest, addr: u64) -> Option<String> {
    let w = g.word_size();
    let handler = g.word(addr)?;
    let fl = g.word(addr + w)?;
    let restorer = g.word(addr + 2 * w)?;
    let mask = g.u64(addr + 3 * w)?;
    let h = match handler {
        0 => "SIG_DFL".to_string(),
        1 => "SIG_IGN".to_string(),
        p => format!("{p:#x}"),
    };
    let mut s = format!(
        "{{sa_handler={h}, sa_mask={}, sa_flags={}",
        sigset(mask),
        flags(fl & 0xffff_ffff, consts::SA_FLAGS, "0")
    );
    if fl & consts::SA_RESTORER != 0 {
        let _ = write!(s, ", sa_restorer={restorer:#x}");
    }
    s.push('}');
    Some(s)
}

/// A wait status (`include/uapi/linux/wait.h` encoding, glibc `W*` macros).
pub fn wait_status(st: i32) -> String {
    let s = st as u32;
    let low = s & 0x7f;
    let mut out = if low == 0 {
        format!("[{{WIFEXITED(s) && WEXITSTATUS(s) == {}}}", (s >> 8) & 0xff)
    } else if s & 0xff == 0x7f {
        format!(
            "[{{WIFSTOPPED(s) && WSTOPSIG(s) == {}}}",
            signal_name(u64::from((s >> 8) & 0xff))
        )
    } else if s & 0xffff == 0xffff {
        "[{WIFCONTINUED(s)}".to_string()
    } else {
        let core = if s & 0x80 != 0 {
            " && WCOREDUMP(s)"
        } else {
            ""
        };
        format!(
            "[{{WIFSIGNALED(s) && WTERMSIG(s) == {}{core}}}",
            signal_name(u64::from(low))
        )
    };
    if s >> 16 != 0 && s & 0xff == 0x7f {
        let _ = write!(out, " | {:#x} << 16", s >> 16);
    }
    out.push(']');
    out
}

/// `struct timespec` (`include/uapi/linux/time_types.h` `__kernel_timespec`; 32-bit
/// `old_timespec32` when `small`).
pub fn timespec(g: &Guest, addr: u64, small: bool) -> Option<String> {
    let (sec, nsec) = if small {
        (i64::from(g.i32(addr)?), i64::from(g.i32(addr + 4)?))
    } else {
        (g.u64(addr)? as i64, g.u64(addr + 8)? as i64)
    };
    Some(format!("{{tv_sec={sec}, tv_nsec={nsec}}}"))
}

/// `struct timeval` (`include/uapi/linux/time.h`; `long` fields).
pub fn timeval(g: &Guest, addr: u64) -> Option<String> {
    let w = g.word_size();
    Some(format!(
        "{{tv_sec={}, tv_usec={}}}",
        g.long(addr)?,
        g.long(addr + w)?
    ))
}

/// `struct timezone` (`include/uapi/linux/time.h`).
pub fn timezone(g: &Guest, addr: u64) -> Option<String> {
    Some(format!(
        "{{tz_minuteswest={}, tz_dsttime={}}}",
        g.i32(addr)?,
        g.i32(addr + 4)?
    ))
}

fn rlim_value(v: u64, wide: bool) -> String {
    let inf = if wide { u64::MAX } else { u64::from(u32::MAX) };
    if v == inf || (!wide && v == u64::MAX) {
        return if wide {
            "RLIM64_INFINITY"
        } else {
            "RLIM_INFINITY"
        }
        .to_string();
    }
    if v > 0 && v & 1023 == 0 {
        format!("{}*1024", v / 1024)
    } else {
        v.to_string()
    }
}

/// `struct rlimit` (`long` fields; `struct rlimit64` with `u64` fields for `prlimit64`).
pub fn rlimit(g: &Guest, addr: u64, rlimit64: bool) -> Option<String> {
    let (cur, max) = if rlimit64 || !g.compat {
        (g.u64(addr)?, g.u64(addr + 8)?)
    } else {
        (u64::from(g.u32(addr)?), u64::from(g.u32(addr + 4)?))
    };
    let wide = rlimit64 || !g.compat;
    let name = |v| rlim_value(v, wide);
    let (cur, max) = if rlimit64 || g.compat {
        (name(cur), name(max))
    } else {
        // getrlimit on x86-64 returns RLIM_INFINITY (~0UL).
        let f = |v: u64| {
            if v == u64::MAX {
                "RLIM_INFINITY".to_string()
            } else {
                name(v)
            }
        };
        (f(cur), f(max))
    };
    Some(format!("{{rlim_cur={cur}, rlim_max={max}}}"))
}

/// `struct new_utsname` (`include/uapi/linux/utsname.h`): six 65-byte fields.
pub fn utsname(g: &Guest, addr: u64, verbose: bool) -> Option<String> {
    let b = g.bytes(addr, 6 * 65)?;
    let field = |i: usize| {
        let f = b.get(i * 65..(i + 1) * 65).unwrap_or(&[]);
        let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        quoted(f.get(..end).unwrap_or(&[]), false)
    };
    if verbose {
        Some(format!(
            "{{sysname={}, nodename={}, release={}, version={}, machine={}, domainname={}}}",
            field(0),
            field(1),
            field(2),
            field(3),
            field(4),
            field(5)
        ))
    } else {
        Some(format!(
            "{{sysname={}, nodename={}, ...}}",
            field(0),
            field(1)
        ))
    }
}

/// Counts the entries of a `getdents`/`getdents64` buffer of `len` bytes: the record length
/// is at offset 16 for `linux_dirent64` and 64-bit `linux_dirent`, 8 for compat `linux_dirent`.
pub fn dirent_count(g: &Guest, addr: u64, len: u64, reclen_off: usize) -> Option<usize> {
    let b = g.bytes(addr, len.min(super::guest::MAX_READ as u64) as usize)?;
    let mut off = 0usize;
    let mut n = 0usize;
    while off < b.len() {
        let r = b.get(off + reclen_off..off + reclen_off + 2)?;
        let reclen = u16::from_le_bytes([r[0], r[1]]) as usize;
        if reclen == 0 {
            break;
        }
        n += 1;
        off += reclen;
    }
    Some(n)
}

/// `struct iovec[]` (`include/uapi/linux/uio.h`): `[{iov_base="...", iov_len=5}, ...]`.
/// `data` limits the bytes shown across the vector (the return value of `readv`), `None`
/// shows each buffer whole (up to `limit`).
pub fn iovec(
    g: &Guest,
    addr: u64,
    count: u64,
    data: Option<u64>,
    limit: usize,
    max_array: usize,
) -> Option<String> {
    let w = g.word_size();
    let shown = count.min(max_array as u64);
    let mut left = data;
    let mut parts = Vec::new();
    for i in 0..shown {
        let at = addr.wrapping_add(i * 2 * w);
        let base = g.word(at)?;
        let len = g.word(at.wrapping_add(w))?;
        let n = match left {
            Some(l) => {
                let n = len.min(l);
                left = Some(l - n);
                n
            }
            None => len,
        };
        let b = match g.buffer(base, n, limit) {
            Some((bytes, t)) => quoted(&bytes, t),
            None => super::value::ptr_text(base),
        };
        parts.push(format!("{{iov_base={b}, iov_len={len}}}"));
    }
    if count > shown {
        parts.push("...".into());
    }
    Some(format!("[{}]", parts.join(", ")))
}

/// `struct msghdr` (`include/linux/socket.h` `user_msghdr`; compat `compat_msghdr`).
pub fn msghdr(
    g: &Guest,
    addr: u64,
    data: Option<u64>,
    limit: usize,
    max_array: usize,
) -> Option<String> {
    let w = g.word_size();
    let name = g.word(addr)?;
    let namelen = g.u32(addr + w)?;
    let (iov, iovlen, control, controllen, fl) = if g.compat {
        (
            g.word(addr + 8)?,
            g.word(addr + 12)?,
            g.word(addr + 16)?,
            g.word(addr + 20)?,
            g.i32(addr + 24)?,
        )
    } else {
        (
            g.word(addr + 16)?,
            g.word(addr + 24)?,
            g.word(addr + 32)?,
            g.word(addr + 40)?,
            g.i32(addr + 48)?,
        )
    };
    let name_text = if name == 0 {
        "NULL".to_string()
    } else {
        sockaddr(g, name, u64::from(namelen)).unwrap_or_else(|| format!("{name:#x}"))
    };
    let iov_text =
        iovec(g, iov, iovlen, data, limit, max_array).unwrap_or_else(|| format!("{iov:#x}"));
    let mut s = format!(
        "{{msg_name={name_text}, msg_namelen={namelen}, msg_iov={iov_text}, msg_iovlen={iovlen}"
    );
    if controllen != 0 {
        let _ = write!(s, ", msg_control={control:#x}");
    }
    let _ = write!(
        s,
        ", msg_controllen={controllen}, msg_flags={}}}",
        flags(fl as u32 as u64, consts::MSG_FLAGS, "0")
    );
    Some(s)
}

/// `struct pollfd[]` (`include/uapi/asm-generic/poll.h`): `[{fd=3, events=POLLIN}]`.
pub fn pollfds(g: &Guest, addr: u64, count: u64, max_array: usize) -> Option<String> {
    let shown = count.min(max_array as u64);
    let mut parts = Vec::new();
    for i in 0..shown {
        let at = addr.wrapping_add(i * 8);
        let fd = g.i32(at)?;
        let ev = g.u32(at + 4)? & 0xffff;
        parts.push(format!(
            "{{fd={fd}, events={}}}",
            flags(u64::from(ev), consts::POLL_EVENTS, "0")
        ));
    }
    if count > shown {
        parts.push("...".into());
    }
    Some(format!("[{}]", parts.join(", ")))
}

/// `struct sysinfo` (`include/uapi/linux/sysinfo.h`): `long`/`unsigned long` fields at word
/// offsets 0 (uptime), 1-3 (loads), 4-9 (ram and swap), `u16 procs` at word 10, totalhigh
/// and freehigh at words 11-12, `u32 mem_unit` at word 13.
pub fn sysinfo(g: &Guest, addr: u64) -> Option<String> {
    let w = g.word_size();
    let word = |i: u64| g.word(addr.wrapping_add(i * w));
    let procs = g.u32(addr.wrapping_add(10 * w))? & 0xffff;
    Some(format!(
        "{{uptime={}, loads=[{}, {}, {}], totalram={}, freeram={}, sharedram={}, bufferram={}, \
         totalswap={}, freeswap={}, procs={procs}, totalhigh={}, freehigh={}, mem_unit={}}}",
        g.long(addr)?,
        word(1)?,
        word(2)?,
        word(3)?,
        word(4)?,
        word(5)?,
        word(6)?,
        word(7)?,
        word(8)?,
        word(9)?,
        word(11)?,
        word(12)?,
        g.u32(addr.wrapping_add(13 * w))?,
    ))
}
