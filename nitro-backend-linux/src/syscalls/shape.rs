//! The few calls strace shows with fewer arguments than their prototype.

use super::{table::SyscallInfo, Arg, ArgValue};

/// Drops the arguments strace leaves out for this call and these raw values.
pub(super) fn shape(info: &SyscallInfo, raw: &[u64; 6], args: &mut Vec<Arg>) {
    match info.name {
        "open" | "openat" | "mq_open" => {
            // The mode is shown only with O_CREAT or O_TMPFILE (__O_TMPFILE 0o20000000).
            let flags_at = if info.name == "openat" { 2 } else { 1 };
            if raw[flags_at] & (0o100 | 0o20000000) == 0 {
                args.retain(|a| a.name != "mode");
            }
        }
        "fcntl" | "fcntl64" => {
            // F_GETFD, F_GETFL, F_GETOWN, F_GETSIG, F_GETLEASE, F_GETPIPE_SZ, F_GET_SEALS
            // take no argument (include/uapi/asm-generic/fcntl.h, linux/fcntl.h).
            if matches!(raw[1] & 0xffff_ffff, 1 | 3 | 9 | 11 | 1025 | 1032 | 1034) {
                args.truncate(2);
            }
        }
        "futex" | "futex_time64" => futex(raw, args),
        "mmap2" => {
            // strace shows mmap2's page offset in bytes (4 KiB pages on x86).
            if let Some(a) = args.iter_mut().find(|a| a.name == "pgoff") {
                let off = (raw[5] & 0xffff_ffff) << 12;
                a.value = ArgValue::Sym(if off == 0 {
                    "0".into()
                } else {
                    format!("{off:#x}")
                });
            }
        }
        "clone" => {
            // strace shows parent_tid / child_tidptr / tls only when the flags use them
            // (CLONE_PARENT_SETTID|CLONE_PIDFD, CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID,
            // CLONE_SETTLS: include/uapi/linux/sched.h).
            let f = raw[0];
            args.retain(|a| match a.name {
                "parent_tidptr" => f & (0x100000 | 0x1000) != 0,
                "child_tidptr" => f & (0x1000000 | 0x200000) != 0,
                "tls" => f & 0x80000 != 0,
                _ => true,
            });
        }
        _ => {}
    }
}

/// futex(2) arguments by command (`include/uapi/linux/futex.h`; which ones strace prints).
fn futex(raw: &[u64; 6], args: &mut Vec<Arg>) {
    let cmd = raw[1] & 0x7f;
    let keep = match cmd {
        // WAIT: uaddr, op, val, timeout
        0 => 4,
        // WAKE, FD, UNLOCK_PI: uaddr, op, val
        1 | 2 | 7 => 3,
        // REQUEUE: uaddr, op, val, val2, uaddr2
        3 => 5,
        // LOCK_PI, LOCK_PI2, TRYLOCK_PI: uaddr, op, timeout (val unused)
        6 | 8 | 13 => {
            args.retain(|a| a.name != "val");
            3
        }
        // WAKE_BITSET: uaddr, op, val, (utime unused), uaddr2 unused, val3
        _ => 6,
    };
    // For REQUEUE, CMP_REQUEUE, WAKE_OP and CMP_REQUEUE_PI the fourth argument is a count
    // (val2), not a timeout.
    if matches!(cmd, 3 | 4 | 5 | 12) {
        if let Some(a) = args.iter_mut().find(|a| a.name == "utime") {
            a.value = ArgValue::UInt(raw[3] & 0xffff_ffff);
        }
    }
    args.truncate(keep);
}
