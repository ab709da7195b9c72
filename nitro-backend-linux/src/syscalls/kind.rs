//! What an argument is: the decoder chosen for it.

/// How one syscall argument is decoded and shown. `*Out` kinds are output arguments: shown as
/// an address at entry and filled from guest memory at a successful exit (strace's model).
/// `len_arg`/`count_arg`/`cmd_arg` name another argument by its index (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// Signed decimal of the register's `int`/`long`.
    Int,
    /// Unsigned decimal.
    UInt,
    /// Hexadecimal (`0x...`, `0` for zero).
    Hex,
    /// A pointer: `0x...` or `NULL`.
    Ptr,
    /// A file descriptor (a 32-bit `int`).
    Fd,
    /// A directory fd of the `*at` calls: `AT_FDCWD` or the number.
    DirFd,
    /// A NUL-terminated path, quoted.
    Path,
    /// A NUL-terminated string, quoted.
    Str,
    /// A path-like string written by the kernel (`getcwd`), shown at exit.
    PathOut,
    /// An input buffer whose length is argument `len_arg` (`write`).
    Buf {
        /// Index of the length argument.
        len_arg: u8,
    },
    /// An output buffer (`read`): shown at a successful exit with `min(ret, len)` bytes.
    BufOut {
        /// Index of the capacity argument.
        len_arg: u8,
    },
    /// An output buffer shown in `\x` hex escapes at exit, as strace shows `getrandom`.
    BufOutHex {
        /// Index of the capacity argument.
        len_arg: u8,
    },
    /// A `size_t` (unsigned decimal).
    Size,
    /// `O_*` open flags with the access mode (`O_RDONLY|O_CLOEXEC`).
    OpenFlags,
    /// `O_*` flags without an access mode (`pipe2`, `dup3`, `eventfd2`...): `0` when empty.
    FdFlags,
    /// `O_CLOEXEC`/`O_NONBLOCK` under a per-call prefix, as strace names them
    /// (`EPOLL_CLOEXEC`, `EFD_NONBLOCK`, `IN_CLOEXEC`, `SFD_`, `TFD_`): `0` when empty.
    FdFlagsNamed {
        /// The prefix replacing `O_` (`"EFD_"`).
        prefix: &'static str,
    },
    /// `MFD_*` (`memfd_create`).
    MemfdFlags,
    /// A file mode in octal (`0644`), with `S_IF*` type bits when present.
    Mode,
    /// `AT_*` flags (`AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW`).
    AtFlags,
    /// `access(2)` mode: `F_OK` or `R_OK|W_OK|X_OK`.
    AccessMode,
    /// `PROT_*` flags.
    ProtFlags,
    /// `MAP_*` flags.
    MapFlags,
    /// `SEEK_*`.
    Whence,
    /// A signal number (`SIGTERM`).
    Signal,
    /// A `struct sigaction` read at entry.
    SigAction,
    /// A `struct sigaction` written by the kernel (the old action), shown at exit.
    SigActionOut,
    /// `SIG_BLOCK`/`SIG_UNBLOCK`/`SIG_SETMASK`.
    SigProcmaskHow,
    /// A signal set read at entry (`[INT TERM]`, `~[KILL STOP]`).
    SigSet,
    /// A signal set written by the kernel, shown at exit.
    SigSetOut,
    /// `execve` argv: `["sh", "-c", "..."]`.
    Argv,
    /// `execve` envp: `0x7ffd... /* 5 vars */`.
    Envp,
    /// `CLONE_*` flags (with the exit signal in the low byte).
    CloneFlags,
    /// `WNOHANG|WUNTRACED...`.
    WaitOptions,
    /// A wait status written by the kernel: `[{WIFEXITED(s) && WEXITSTATUS(s) == 0}]`.
    WaitStatus,
    /// A `struct sockaddr` of the length in argument `len_arg` (a value).
    Sockaddr {
        /// Index of the length argument.
        len_arg: u8,
    },
    /// A `struct sockaddr` written by the kernel; its length is at the `socklen_t *` in
    /// argument `len_arg`.
    SockaddrOut {
        /// Index of the `socklen_t *` argument.
        len_arg: u8,
    },
    /// A `socklen_t *` in/out length: `[16]`, `[128 => 16]`.
    SocklenPtr,
    /// `AF_*`.
    SocketDomain,
    /// `SOCK_STREAM|SOCK_CLOEXEC`...
    SocketType,
    /// `IPPROTO_*` (or the number).
    SocketProto,
    /// `SOCK_CLOEXEC|SOCK_NONBLOCK` (`accept4`).
    SockFlags,
    /// `SOL_SOCKET`, `SOL_TCP`...
    SockOptLevel,
    /// A socket option name, by the level in argument 1 (`SO_REUSEADDR`, `TCP_NODELAY`).
    SockOptName,
    /// A `setsockopt` value of the length in argument `len_arg`: `[1]` for an `int`.
    SockOptVal {
        /// Index of the length argument.
        len_arg: u8,
    },
    /// A `getsockopt` value, shown at exit with the length at the `socklen_t *` in argument
    /// `len_arg`.
    SockOptValOut {
        /// Index of the `socklen_t *` argument.
        len_arg: u8,
    },
    /// A `struct sysinfo` written by the kernel.
    SysinfoOut,
    /// `MSG_*`.
    MsgFlags,
    /// A `struct msghdr` read at entry (`sendmsg`).
    MsgHdr,
    /// A `struct msghdr` filled by the kernel (`recvmsg`), shown at exit.
    MsgHdrOut,
    /// `SHUT_RD`/`SHUT_WR`/`SHUT_RDWR`.
    ShutdownHow,
    /// `F_*` fcntl commands.
    FcntlCmd,
    /// The fcntl argument, decoded by the command in argument `cmd_arg`.
    FcntlArg {
        /// Index of the command argument.
        cmd_arg: u8,
    },
    /// An ioctl request (`TCGETS`, `FIONREAD`... or `_IOC(...)`).
    IoctlRequest,
    /// The ioctl argument: an address, filled at a successful exit for the requests that
    /// write an `int` (`FIONREAD` -> `[27]`) or a `struct winsize` (`TIOCGWINSZ`).
    IoctlArg,
    /// An array of 32-bit ids written by the kernel (`getgroups`): `min(ret, count)`
    /// elements, shown at exit.
    U32ArrayOut {
        /// Index of the capacity argument.
        count_arg: u8,
    },
    /// `int[2]` written by the kernel (`pipe`, `socketpair`): `[3, 4]`.
    PipeFds,
    /// A `struct stat` written by the kernel: `{st_mode=S_IFREG|0644, st_size=1234, ...}`.
    StatBuf,
    /// An i386 `struct stat64` written by the kernel (`stat64`, `fstat64`, `fstatat64`...).
    Stat64Buf,
    /// A `struct statx` written by the kernel.
    StatxBuf,
    /// `STATX_*` mask.
    StatxMask,
    /// A `struct timespec` read at entry: `{tv_sec=1, tv_nsec=0}`.
    Timespec,
    /// A `struct timespec` written by the kernel.
    TimespecOut,
    /// A `struct timeval` read at entry.
    Timeval,
    /// A `struct timeval` written by the kernel.
    TimevalOut,
    /// A `struct timezone` read at entry.
    Timezone,
    /// `CLOCK_*`.
    ClockId,
    /// `FUTEX_*` operation with `FUTEX_PRIVATE_FLAG`/`FUTEX_CLOCK_REALTIME`.
    FutexOp,
    /// `RLIMIT_*`.
    RlimitResource,
    /// A `struct rlimit` read at entry.
    Rlimit,
    /// A `struct rlimit` written by the kernel.
    RlimitOut,
    /// `ARCH_SET_FS`...
    ArchPrctlCode,
    /// `PR_*` prctl options.
    PrctlOption,
    /// `MREMAP_*`.
    MremapFlags,
    /// `MADV_*`.
    MadviseAdvice,
    /// `POSIX_FADV_*`.
    FadviseAdvice,
    /// `struct pollfd[count]`: `[{fd=3, events=POLLIN}]` (revents at exit).
    PollFds {
        /// Index of the count argument.
        count_arg: u8,
    },
    /// `struct iovec[count]` read at entry (`writev`): buffers shown.
    Iovec {
        /// Index of the count argument.
        count_arg: u8,
    },
    /// `struct iovec[count]` filled by the kernel (`readv`), shown at exit.
    IovecOut {
        /// Index of the count argument.
        count_arg: u8,
    },
    /// A `struct new_utsname` written by the kernel.
    UnameBuf,
    /// A `getdents`/`getdents64` buffer: `0x... /* 28 entries */` at exit.
    Getdents,
    /// `LOCK_SH|LOCK_NB`...
    FlockOp,
    /// `EPOLL_CTL_ADD`...
    EpollCtlOp,
    /// `GRND_NONBLOCK|GRND_RANDOM`.
    GetrandomFlags,
}

impl ArgKind {
    /// True when the decoder is more than a number (flags, strings, structs...).
    pub fn is_typed(&self) -> bool {
        !matches!(
            self,
            ArgKind::Int | ArgKind::UInt | ArgKind::Hex | ArgKind::Ptr | ArgKind::Size
        )
    }

    /// True when the argument is filled by the kernel and is decoded at exit.
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            ArgKind::PathOut
                | ArgKind::BufOut { .. }
                | ArgKind::BufOutHex { .. }
                | ArgKind::IoctlArg
                | ArgKind::U32ArrayOut { .. }
                | ArgKind::SockOptValOut { .. }
                | ArgKind::SysinfoOut
                | ArgKind::SigActionOut
                | ArgKind::SigSetOut
                | ArgKind::WaitStatus
                | ArgKind::SockaddrOut { .. }
                | ArgKind::SocklenPtr
                | ArgKind::MsgHdrOut
                | ArgKind::PipeFds
                | ArgKind::StatBuf
                | ArgKind::Stat64Buf
                | ArgKind::StatxBuf
                | ArgKind::TimespecOut
                | ArgKind::TimevalOut
                | ArgKind::RlimitOut
                | ArgKind::IovecOut { .. }
                | ArgKind::UnameBuf
                | ArgKind::Getdents
        )
    }
}
