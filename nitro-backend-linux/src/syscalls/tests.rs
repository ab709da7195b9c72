//! Tests: expected texts are lines strace 6.1 printed on this machine (Debian 12) for the
//! same values, unless a comment says otherwise.

use super::{testmem::FakeMem, *};

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

/// Decodes a whole call the way the backend does: entry, exit, return.
fn call_with(name: &str, raw: [u64; 6], ret: i64, mem: &FakeMem, o: &DecodeOptions) -> String {
    let info = if o.compat {
        table::by_name_i386(name).map(|(_, i)| i)
    } else {
        table::info_for_name(name)
    }
    .unwrap_or_else(|| panic!("no prototype for {name}"));
    let mut args = decode_enter(info, &raw, mem, o);
    decode_exit(info, &raw, ret, &mut args, mem, o);
    render_call(info.name, &args, Some(&format_return(info, ret)))
}

fn call(name: &str, raw: [u64; 6], ret: i64, mem: &FakeMem) -> String {
    call_with(name, raw, ret, mem, &opts())
}

const AT_FDCWD: u64 = -100i64 as u64;

#[test]
fn openat_passwd() {
    let mut m = FakeMem::new();
    let p = m.cstr("/etc/passwd");
    assert_eq!(
        call("openat", [AT_FDCWD, p, 0o2000000, 0, 0, 0], 3, &m),
        r#"openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3"#
    );
    // With O_CREAT the mode is shown.
    assert_eq!(
        call("openat", [AT_FDCWD, p, 0o1101, 0o644, 0, 0], -13, &m),
        r#"openat(AT_FDCWD, "/etc/passwd", O_WRONLY|O_CREAT|O_TRUNC, 0644) = -1 EACCES (Permission denied)"#
    );
    // A path longer than the string limit is shown whole, like strace's printpath.
    let long = m.cstr("/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache");
    assert_eq!(
        call("openat", [AT_FDCWD, long, 0, 0, 0, 0], 3, &m),
        r#"openat(AT_FDCWD, "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", O_RDONLY) = 3"#
    );
}

#[test]
fn read_buffer_cut_at_limit() {
    let mut m = FakeMem::new();
    let mut data = b"root:x:0:0:root:/root:/bin/bash\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 1202));
    let buf = m.alloc(&data);
    assert_eq!(
        call("read", [3, buf, 4096, 0, 0, 0], 1234, &m),
        r#"read(3, "root:x:0:0:root:/root:/bin/bash\n"..., 4096) = 1234"#
    );
    // Exactly the limit: no "...".
    assert_eq!(
        call("read", [3, buf, 4096, 0, 0, 0], 32, &m),
        r#"read(3, "root:x:0:0:root:/root:/bin/bash\n", 4096) = 32"#
    );
    assert_eq!(
        call("read", [3, buf, 4096, 0, 0, 0], 0, &m),
        r#"read(3, "", 4096) = 0"#
    );
    // Failure: the buffer shows its address.
    assert_eq!(
        call("read", [3, buf, 4096, 0, 0, 0], -11, &m),
        format!("read(3, {buf:#x}, 4096) = -1 EAGAIN (Resource temporarily unavailable)")
    );
}

#[test]
fn binary_escapes_like_strace() {
    // strace: read(3, "\177ELF\2\1\1\3\0\0\0\0\0\0\0\0\3\0>\0\1\0\0\0\20t\2\0\0\0\0\0"..., 832) = 832
    let mut m = FakeMem::new();
    let mut elf = vec![
        0x7f, b'E', b'L', b'F', 2, 1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, b'>', 0,
    ];
    elf.extend_from_slice(&[1, 0, 0, 0, 0x10, b't', 2, 0, 0, 0, 0, 0]);
    elf.resize(832, 0);
    let buf = m.alloc(&elf);
    assert_eq!(
        call("read", [3, buf, 832, 0, 0, 0], 832, &m),
        r#"read(3, "\177ELF\2\1\1\3\0\0\0\0\0\0\0\0\3\0>\0\1\0\0\0\20t\2\0\0\0\0\0"..., 832) = 832"#
    );
    let mut s = String::new();
    escape_into(b"a\"b\\c\t\r\x0b\x0c\x01\x012\xff", &mut s);
    assert_eq!(s, r#"a\"b\\c\t\r\v\f\1\0012\377"#);
}

#[test]
fn write_quotes_newlines() {
    let mut m = FakeMem::new();
    let buf = m.alloc(b"hello\n");
    assert_eq!(
        call("write", [1, buf, 6, 0, 0, 0], 6, &m),
        r#"write(1, "hello\n", 6) = 6"#
    );
}

#[test]
fn execve_argv_envp() {
    let mut m = FakeMem::new();
    let path = m.cstr("/bin/ls");
    let a0 = m.cstr("ls");
    let a1 = m.cstr("-l");
    let argv = m.ptrs(&[a0, a1]);
    let e: Vec<u64> = ["A=1", "B=2", "PATH=/bin"]
        .iter()
        .map(|s| m.cstr(s))
        .collect();
    let envp = m.ptrs(&e);
    assert_eq!(
        call("execve", [path, argv, envp, 0, 0, 0], 0, &m),
        format!(r#"execve("/bin/ls", ["ls", "-l"], {envp:#x} /* 3 vars */) = 0"#)
    );
    // strace: execve("/usr/bin/sh", ["sh", "-c", "cat /etc/hostname; (exit 3) ; py"...], ...
    let sh = m.cstr("sh");
    let c = m.cstr("-c");
    let script = m.cstr("cat /etc/hostname; (exit 3) ; python3 -c ...");
    let argv = m.ptrs(&[sh, c, script]);
    let v = call("execve", [path, argv, envp, 0, 0, 0], 0, &m);
    assert!(
        v.contains(r#"["sh", "-c", "cat /etc/hostname; (exit 3) ; py"...]"#),
        "{v}"
    );
    // Verbose shows the environment.
    let o = DecodeOptions {
        verbose: true,
        ..opts()
    };
    let v = call_with("execve", [path, argv, envp, 0, 0, 0], 0, &m, &o);
    assert!(v.ends_with(r#"["A=1", "B=2", "PATH=/bin"]) = 0"#), "{v}");
}

#[test]
fn argv_array_limit_and_hostile_pointers() {
    let mut m = FakeMem::new();
    let path = m.cstr("/bin/x");
    let s = m.cstr("a");
    let many = m.ptrs(&[s; 40]);
    let o = DecodeOptions {
        max_array: 3,
        ..opts()
    };
    let v = call_with("execve", [path, many, 0, 0, 0, 0], -2, &m, &o);
    assert_eq!(
        v,
        r#"execve("/bin/x", ["a", "a", "a", ...], NULL) = -1 ENOENT (No such file or directory)"#
    );
    // An argv whose second element points nowhere: strace prints the address.
    let bad = m.ptrs(&[s, 0xdead_0000]);
    let v = call(
        "execve",
        [path, bad, 0xffff_8000_0000_0000, 0, 0, 0],
        -14,
        &m,
    );
    assert_eq!(
        v,
        r#"execve("/bin/x", ["a", 0xdead0000], 0xffff800000000000) = -1 EFAULT (Bad address)"#
    );
    // Unreadable path.
    assert_eq!(
        call("openat", [AT_FDCWD, 0x1234, 0, 0, 0, 0], -14, &m),
        "openat(AT_FDCWD, 0x1234, O_RDONLY) = -1 EFAULT (Bad address)"
    );
}

#[test]
fn huge_lengths_are_bounded() {
    let mut m = FakeMem::new();
    let buf = m.alloc(&[b'a'; 64]);
    // A 4 GiB write of a 64-byte mapping: only the shown prefix is read.
    assert_eq!(
        call("write", [1, buf, 1 << 32, 0, 0, 0], -14, &m),
        r#"write(1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"..., 4294967296) = -1 EFAULT (Bad address)"#
    );
    // A huge string limit does not make a huge read of an unterminated string: the read
    // stops at the first unmapped byte and the address is shown.
    let o = DecodeOptions {
        string_limit: usize::MAX,
        ..opts()
    };
    let v = call_with("write", [1, buf, u64::MAX, 0, 0, 0], 1, &m, &o);
    assert_eq!(v, format!("write(1, {buf:#x}, 18446744073709551615) = 1"));
    // Unterminated path: cut at PATH_MAX, not an endless read.
    let mut m = FakeMem::new();
    let p = m.alloc(&vec![b'p'; 10_000]);
    let v = call("open", [p, 0, 0, 0, 0, 0], -36, &m);
    assert!(
        v.contains(&format!("\"{}\"...", "p".repeat(4096))),
        "{}",
        &v[..60]
    );
    // Iovec count of 2^32: only max_array entries read.
    let base = m.alloc(b"hi");
    let mut iov = Vec::new();
    iov.extend_from_slice(&base.to_le_bytes());
    iov.extend_from_slice(&2u64.to_le_bytes());
    let iov = m.alloc(&iov);
    let v = call("writev", [1, iov, 1 << 31, 0, 0, 0], -22, &m);
    assert_eq!(v.matches("iov_base=").count(), 32);
    assert!(
        v.ends_with("}, ...], 2147483648) = -1 EINVAL (Invalid argument)"),
        "{v}"
    );
    let v = call("writev", [1, iov, 1, 0, 0, 0], 2, &m);
    assert_eq!(v, r#"writev(1, [{iov_base="hi", iov_len=2}], 1) = 2"#);
}

#[test]
fn mmap_and_brk() {
    let m = FakeMem::new();
    assert_eq!(
        call("mmap", [0, 8192, 3, 0x22, u64::MAX, 0], 0x7f1b041e8000, &m),
        "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f1b041e8000"
    );
    // strace: mmap(0x7f1b04020000, 1400832, PROT_READ|PROT_EXEC,
    //   MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x26000) = 0x7f1b04020000
    assert_eq!(
        call("mmap", [0x7f1b04020000, 1400832, 5, 0x812, 3, 0x26000], 0x7f1b04020000, &m),
        "mmap(0x7f1b04020000, 1400832, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x26000) = 0x7f1b04020000"
    );
    assert_eq!(
        call("brk", [0; 6], 0x5585d0fbd000, &m),
        "brk(NULL) = 0x5585d0fbd000"
    );
    assert_eq!(
        call("mmap", [0, 4096, 0, 0x22, u64::MAX, 0], -12, &m),
        "mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)"
    );
}

fn sockaddr_in(port: u16, ip: [u8; 4]) -> Vec<u8> {
    let mut v = 2u16.to_le_bytes().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(&[0; 8]);
    v
}

#[test]
fn connect_inet_refused() {
    let mut m = FakeMem::new();
    let sa = m.alloc(&sockaddr_in(80, [127, 0, 0, 1]));
    assert_eq!(
        call("connect", [3, sa, 16, 0, 0, 0], -111, &m),
        r#"connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)"#
    );
    assert_eq!(
        call("socket", [2, 1 | 0o2000000, 6, 0, 0, 0], 3, &m),
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 3"
    );
    assert_eq!(
        call("socket", [1, 2, 0, 0, 0, 0], 3, &m),
        "socket(AF_UNIX, SOCK_DGRAM, 0) = 3"
    );
}

#[test]
fn sockaddr_families() {
    let mut m = FakeMem::new();
    let mut un = 1u16.to_le_bytes().to_vec();
    un.extend_from_slice(b"/run/dbus/system_bus_socket\0");
    let un_at = m.alloc(&un);
    assert_eq!(
        call("connect", [3, un_at, 110, 0, 0, 0], 0, &m),
        r#"connect(3, {sa_family=AF_UNIX, sun_path="/run/dbus/system_bus_socket"}, 110) = 0"#
    );
    let mut in6 = 10u16.to_le_bytes().to_vec();
    in6.extend_from_slice(&443u16.to_be_bytes());
    in6.extend_from_slice(&[0; 4]);
    let mut addr = [0u8; 16];
    addr[15] = 1;
    in6.extend_from_slice(&addr);
    in6.extend_from_slice(&[0; 4]);
    let in6_at = m.alloc(&in6);
    assert_eq!(
        call("connect", [3, in6_at, 28, 0, 0, 0], 0, &m),
        r#"connect(3, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0"#
    );
    // accept: the address is filled at exit, the length shows before => after.
    let out = m.alloc(&sockaddr_in(41070, [127, 0, 0, 1]));
    let len = m.alloc(&128u32.to_le_bytes());
    let info = table::info_for_name("accept").unwrap();
    let raw = [3, out, len, 0, 0, 0];
    let mut args = decode_enter(info, &raw, &m, &opts());
    assert_eq!(
        render_call("accept", &args, None),
        "accept(3, ?, [128]) = ?"
    );
    m.put(len, &16u32.to_le_bytes());
    decode_exit(info, &raw, 4, &mut args, &m, &opts());
    assert_eq!(
        render_call("accept", &args, Some(&format_return(info, 4))),
        r#"accept(3, {sa_family=AF_INET, sin_port=htons(41070), sin_addr=inet_addr("127.0.0.1")}, [128 => 16]) = 4"#
    );
}

/// A 144-byte x86-64 `struct stat`.
fn stat_buf(mode: u32, size: i64, rdev: u64) -> Vec<u8> {
    let mut b = vec![0u8; 144];
    b[24..28].copy_from_slice(&mode.to_le_bytes());
    b[40..48].copy_from_slice(&rdev.to_le_bytes());
    b[48..56].copy_from_slice(&size.to_le_bytes());
    b
}

#[test]
fn fstat_and_newfstatat() {
    let mut m = FakeMem::new();
    let st = m.alloc(&stat_buf(0o100644, 1234, 0));
    assert_eq!(
        call("fstat", [3, st, 0, 0, 0, 0], 0, &m),
        "fstat(3, {st_mode=S_IFREG|0644, st_size=1234, ...}) = 0"
    );
    let empty = m.cstr("");
    let st2 = m.alloc(&stat_buf(0o100644, 45443, 0));
    assert_eq!(
        call("newfstatat", [3, empty, st2, 0x1000, 0, 0], 0, &m),
        r#"newfstatat(3, "", {st_mode=S_IFREG|0644, st_size=45443, ...}, AT_EMPTY_PATH) = 0"#
    );
    let tmp = m.cstr("/tmp");
    let st3 = m.alloc(&stat_buf(0o41777, 4096, 0));
    assert_eq!(
        call("newfstatat", [AT_FDCWD, tmp, st3, 0, 0, 0], 0, &m),
        r#"newfstatat(AT_FDCWD, "/tmp", {st_mode=S_IFDIR|S_ISVTX|0777, st_size=4096, ...}, 0) = 0"#
    );
    // On failure the buffer is an address (strace: newfstatat(..., 0x7ffe141bb090, 0) = -1 ENOENT).
    assert_eq!(
        call(
            "newfstatat",
            [AT_FDCWD, tmp, 0x7ffe141bb090, 0, 0, 0],
            -2,
            &m
        ),
        r#"newfstatat(AT_FDCWD, "/tmp", 0x7ffe141bb090, 0) = -1 ENOENT (No such file or directory)"#
    );
    // Verbose: every field.
    let mut full = stat_buf(0o100600, 7, 0);
    full[0..8].copy_from_slice(&0x803u64.to_le_bytes());
    full[8..16].copy_from_slice(&1234567u64.to_le_bytes());
    full[16..24].copy_from_slice(&1u64.to_le_bytes());
    full[28..32].copy_from_slice(&1000u32.to_le_bytes());
    full[32..36].copy_from_slice(&100u32.to_le_bytes());
    full[56..64].copy_from_slice(&4096u64.to_le_bytes());
    full[64..72].copy_from_slice(&8u64.to_le_bytes());
    full[88..96].copy_from_slice(&1700000000u64.to_le_bytes());
    let fp = m.alloc(&full);
    let o = DecodeOptions {
        verbose: true,
        ..opts()
    };
    assert_eq!(
        call_with("fstat", [3, fp, 0, 0, 0, 0], 0, &m, &o),
        "fstat(3, {st_dev=makedev(0x8, 0x3), st_ino=1234567, st_mode=S_IFREG|0600, st_nlink=1, st_uid=1000, st_gid=100, st_blksize=4096, st_blocks=8, st_size=7, st_atime=0, st_atime_nsec=0, st_mtime=1700000000, st_mtime_nsec=0, st_ctime=0, st_ctime_nsec=0}) = 0"
    );
    // A character device shows st_rdev (strace: makedev(0x88, 0) for /dev/pts/0).
    let st4 = m.alloc(&stat_buf(0o20620, 0, 0x8800));
    assert_eq!(
        call("fstat", [1, st4, 0, 0, 0, 0], 0, &m),
        "fstat(1, {st_mode=S_IFCHR|0620, st_rdev=makedev(0x88, 0), ...}) = 0"
    );
}

#[test]
fn statx_line() {
    // strace: statx(AT_FDCWD, "/", AT_STATX_SYNC_AS_STAT|AT_NO_AUTOMOUNT, STATX_MODE,
    //   {stx_mask=STATX_TYPE|STATX_MODE|STATX_NLINK|STATX_UID|STATX_GID|STATX_ATIME|STATX_INO|
    //   STATX_SIZE|STATX_BLOCKS|STATX_MNT_ID, stx_attributes=STATX_ATTR_MOUNT_ROOT,
    //   stx_mode=S_IFDIR|0755, stx_size=4096, ...}) = 0
    let mut m = FakeMem::new();
    let root = m.cstr("/");
    let mut b = vec![0u8; 256];
    b[0..4].copy_from_slice(&0x173fu32.to_le_bytes());
    b[8..16].copy_from_slice(&0x2000u64.to_le_bytes());
    b[28..30].copy_from_slice(&0o40755u16.to_le_bytes());
    b[40..48].copy_from_slice(&4096u64.to_le_bytes());
    let sx = m.alloc(&b);
    assert_eq!(
        call("statx", [AT_FDCWD, root, 0x800, 2, sx, 0], 0, &m),
        r#"statx(AT_FDCWD, "/", AT_STATX_SYNC_AS_STAT|AT_NO_AUTOMOUNT, STATX_MODE, {stx_mask=STATX_TYPE|STATX_MODE|STATX_NLINK|STATX_UID|STATX_GID|STATX_ATIME|STATX_INO|STATX_SIZE|STATX_BLOCKS|STATX_MNT_ID, stx_attributes=STATX_ATTR_MOUNT_ROOT, stx_mode=S_IFDIR|0755, stx_size=4096, ...}) = 0"#
    );
}

/// A 64-bit kernel `struct sigaction`: handler, flags, restorer, mask.
fn sigaction_buf(handler: u64, flags: u64, restorer: u64, mask: u64) -> Vec<u8> {
    [handler, flags, restorer, mask]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn rt_sigaction_lines() {
    let mut m = FakeMem::new();
    let all_but_rt = !((1u64 << 31) | (1u64 << 32));
    let act = m.alloc(&sigaction_buf(
        0x557048357dc0,
        0x0400_0000,
        0x7f1b04036050,
        all_but_rt,
    ));
    assert_eq!(
        call("rt_sigaction", [2, act, 0, 8, 0, 0], 0, &m),
        "rt_sigaction(SIGINT, {sa_handler=0x557048357dc0, sa_mask=~[RTMIN RT_1], sa_flags=SA_RESTORER, sa_restorer=0x7f1b04036050}, NULL, 8) = 0"
    );
    let old = m.alloc(&sigaction_buf(0, 0, 0, 0));
    assert_eq!(
        call("rt_sigaction", [15, 0, old, 8, 0, 0], 0, &m),
        "rt_sigaction(SIGTERM, NULL, {sa_handler=SIG_DFL, sa_mask=[], sa_flags=0}, 8) = 0"
    );
    let ign = m.alloc(&sigaction_buf(1, 0x1400_0000, 0x7f00, 1 << 1 | 1 << 14));
    assert_eq!(
        call("rt_sigaction", [13, ign, 0, 8, 0, 0], 0, &m),
        "rt_sigaction(SIGPIPE, {sa_handler=SIG_IGN, sa_mask=[INT TERM], sa_flags=SA_RESTORER|SA_RESTART, sa_restorer=0x7f00}, NULL, 8) = 0"
    );
}

#[test]
fn rt_sigprocmask_sets() {
    let mut m = FakeMem::new();
    let empty = m.alloc(&0u64.to_le_bytes());
    let old = m.alloc(&(!((1u64 << 8) | (1 << 18) | (1 << 31) | (1 << 32))).to_le_bytes());
    // strace: rt_sigprocmask(SIG_SETMASK, [], ~[KILL STOP RTMIN RT_1], 8) = 0
    assert_eq!(
        call("rt_sigprocmask", [2, empty, old, 8, 0, 0], 0, &m),
        "rt_sigprocmask(SIG_SETMASK, [], ~[KILL STOP RTMIN RT_1], 8) = 0"
    );
    // strace: rt_sigprocmask(SIG_BLOCK, NULL, [], 8) = 0
    assert_eq!(
        call("rt_sigprocmask", [0, 0, empty, 8, 0, 0], 0, &m),
        "rt_sigprocmask(SIG_BLOCK, NULL, [], 8) = 0"
    );
    assert_eq!(
        call("kill", [42, 15, 0, 0, 0, 0], 0, &m),
        "kill(42, SIGTERM) = 0"
    );
    assert_eq!(
        call("kill", [42, 34, 0, 0, 0, 0], 0, &m),
        "kill(42, SIGRT_2) = 0"
    );
}

#[test]
fn clone_and_wait4() {
    let m = FakeMem::new();
    // strace: clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD,
    //   child_tidptr=0x7f8788125a10) = 7989
    assert_eq!(
        call("clone", [0x1200011, 0, 0, 0x7f8788125a10, 0, 0], 7989, &m),
        "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f8788125a10) = 7989"
    );
    // A thread: every tid pointer and tls shown.
    let v = call(
        "clone",
        [0x3d0f00, 0x7f00_0000_0000, 0x7f10, 0x7f10, 0x7f20, 0],
        100,
        &m,
    );
    assert_eq!(
        v,
        "clone(child_stack=0x7f0000000000, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, parent_tid=0x7f10, child_tidptr=0x7f10, tls=0x7f20) = 100"
    );
    let mut m = FakeMem::new();
    let st = m.alloc(&0u32.to_le_bytes());
    assert_eq!(
        call("wait4", [u64::MAX, st, 0, 0, 0, 0], 42, &m),
        "wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 42"
    );
    let st3 = m.alloc(&(3u32 << 8).to_le_bytes());
    assert_eq!(
        call("wait4", [u64::MAX, st3, 0, 0, 0, 0], 7989, &m),
        "wait4(-1, [{WIFEXITED(s) && WEXITSTATUS(s) == 3}], 0, NULL) = 7989"
    );
    // strace: wait4(-1, 0x7ffcf837bbfc, WNOHANG, NULL) = -1 ECHILD (No child processes)
    assert_eq!(
        call("wait4", [u64::MAX, 0x7ffcf837bbfc, 1, 0, 0, 0], -10, &m),
        "wait4(-1, 0x7ffcf837bbfc, WNOHANG, NULL) = -1 ECHILD (No child processes)"
    );
    assert_eq!(
        wait_status(9),
        "[{WIFSIGNALED(s) && WTERMSIG(s) == SIGKILL}]"
    );
    assert_eq!(
        wait_status(0x8b),
        "[{WIFSIGNALED(s) && WTERMSIG(s) == SIGSEGV && WCOREDUMP(s)}]"
    );
    assert_eq!(
        wait_status(0x137f),
        "[{WIFSTOPPED(s) && WSTOPSIG(s) == SIGSTOP}]"
    );
    assert_eq!(wait_status(0xffff), "[{WIFCONTINUED(s)}]");
}

#[test]
fn misc_real_lines() {
    let mut m = FakeMem::new();
    assert_eq!(
        call("arch_prctl", [0x1002, 0x7f8788125740, 0, 0, 0, 0], 0, &m),
        "arch_prctl(ARCH_SET_FS, 0x7f8788125740) = 0"
    );
    assert_eq!(
        call("set_tid_address", [0x7f8788125a10, 0, 0, 0, 0, 0], 7987, &m),
        "set_tid_address(0x7f8788125a10) = 7987"
    );
    assert_eq!(
        call("fcntl", [1, 0, 10, 0, 0, 0], 11, &m),
        "fcntl(1, F_DUPFD, 10) = 11"
    );
    assert_eq!(
        call("fcntl", [11, 2, 1, 0, 0, 0], 0, &m),
        "fcntl(11, F_SETFD, FD_CLOEXEC) = 0"
    );
    assert_eq!(
        call("fcntl", [3, 3, 0x1234, 0, 0, 0], 2, &m),
        "fcntl(3, F_GETFL) = 2"
    );
    assert_eq!(
        call("fcntl", [3, 4, 0o4002, 0, 0, 0], 0, &m),
        "fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0"
    );
    assert_eq!(call("dup2", [3, 1, 0, 0, 0, 0], 1, &m), "dup2(3, 1) = 1");
    assert_eq!(
        call("ioctl", [1, 0x5401, 0x7ffe1d37a620, 0, 0, 0], -25, &m),
        "ioctl(1, TCGETS, 0x7ffe1d37a620) = -1 ENOTTY (Inappropriate ioctl for device)"
    );
    assert_eq!(
        call("ioctl", [2, 0x540f, 0x7ffd7532b1c4, 0, 0, 0], -25, &m),
        "ioctl(2, TIOCGPGRP, 0x7ffd7532b1c4) = -1 ENOTTY (Inappropriate ioctl for device)"
    );
    assert_eq!(
        ioctl_request(0xc0185500),
        "_IOC(_IOC_READ|_IOC_WRITE, 0x55, 0, 0x18)"
    );
    assert_eq!(
        call(
            "futex",
            [0x7f88367a7a4c, 0x81, 2147483647, 0xdead, 0xbeef, 7],
            0,
            &m
        ),
        "futex(0x7f88367a7a4c, FUTEX_WAKE_PRIVATE, 2147483647) = 0"
    );
    assert_eq!(
        call("futex", [0x7f00, 0x80, 2, 0, 0, 0], -11, &m),
        "futex(0x7f00, FUTEX_WAIT_PRIVATE, 2, NULL) = -1 EAGAIN (Resource temporarily unavailable)"
    );
    let bash = m.cstr("/usr/bin/bash");
    assert_eq!(
        call("access", [bash, 1, 0, 0, 0, 0], 0, &m),
        r#"access("/usr/bin/bash", X_OK) = 0"#
    );
    assert_eq!(
        call("access", [bash, 0, 0, 0, 0, 0], 0, &m),
        r#"access("/usr/bin/bash", F_OK) = 0"#
    );
    assert_eq!(
        call("lseek", [3, 0, 1, 0, 0, 0], 0, &m),
        "lseek(3, 0, SEEK_CUR) = 0"
    );
    assert_eq!(call("close", [3, 0, 0, 0, 0, 0], 0, &m), "close(3) = 0");
    assert_eq!(
        call("exit_group", [0, 0, 0, 0, 0, 0], 0, &m),
        "exit_group(0) = ?"
    );
    assert_eq!(
        call("umask", [0o22, 0, 0, 0, 0, 0], 0o22, &m),
        "umask(022) = 022"
    );
    assert_eq!(
        call("mprotect", [0x7f0000, 4096, 1, 0, 0, 0], 0, &m),
        "mprotect(0x7f0000, 4096, PROT_READ) = 0"
    );
    assert_eq!(
        call("madvise", [0x7f0000, 4096, 4, 0, 0, 0], 0, &m),
        "madvise(0x7f0000, 4096, MADV_DONTNEED) = 0"
    );
    assert_eq!(
        call("prctl", [15, 0x7f00, 0, 0, 0, 0], 0, &m),
        "prctl(PR_SET_NAME, 0x7f00, 0, 0, 0) = 0"
    );
    assert_eq!(call("getpid", [0; 6], 77, &m), "getpid() = 77");
    assert_eq!(
        call("flock", [3, 6, 0, 0, 0, 0], 0, &m),
        "flock(3, LOCK_EX|LOCK_NB) = 0"
    );
    assert_eq!(
        call("mremap", [0x7f00, 4096, 8192, 1, 0, 0], 0x7f10000, &m),
        "mremap(0x7f00, 4096, 8192, MREMAP_MAYMOVE, NULL) = 0x7f10000"
    );
    assert_eq!(
        call("getrandom", [0x7f00, 16, 1, 0, 0, 0], -11, &m),
        "getrandom(0x7f00, 16, GRND_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)"
    );
    assert_eq!(
        call("clock_gettime", [1, 0, 0, 0, 0, 0], 0, &m),
        "clock_gettime(CLOCK_MONOTONIC, NULL) = 0"
    );
}

#[test]
fn output_structs() {
    let mut m = FakeMem::new();
    // strace: prlimit64(0, RLIMIT_STACK, NULL, {rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}) = 0
    let rl = m.alloc(
        &[8192u64 * 1024, u64::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        call("prlimit64", [0, 3, 0, rl, 0, 0], 0, &m),
        "prlimit64(0, RLIMIT_STACK, NULL, {rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}) = 0"
    );
    let rl2 = m.alloc(
        &[96365u64, 96365]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        call("prlimit64", [0, 6, 0, rl2, 0, 0], 0, &m),
        "prlimit64(0, RLIMIT_NPROC, NULL, {rlim_cur=96365, rlim_max=96365}) = 0"
    );
    // strace: uname({sysname="Linux", nodename="vm", ...}) = 0
    let mut uts = vec![0u8; 6 * 65];
    uts[..5].copy_from_slice(b"Linux");
    uts[65..67].copy_from_slice(b"vm");
    uts[130..135].copy_from_slice(b"6.1.0");
    let u = m.alloc(&uts);
    assert_eq!(
        call("uname", [u, 0, 0, 0, 0, 0], 0, &m),
        r#"uname({sysname="Linux", nodename="vm", ...}) = 0"#
    );
    // pipe2([3, 4], O_CLOEXEC) = 0
    let fds = m.alloc(&[0u8; 8]);
    let info = table::info_for_name("pipe2").unwrap();
    let raw = [fds, 0o2000000, 0, 0, 0, 0];
    let mut args = decode_enter(info, &raw, &m, &opts());
    m.put(fds, &[3, 0, 0, 0, 4, 0, 0, 0]);
    decode_exit(info, &raw, 0, &mut args, &m, &opts());
    assert_eq!(
        render_call("pipe2", &args, Some(&format_return(info, 0))),
        "pipe2([3, 4], O_CLOEXEC) = 0"
    );
    // getdents64: strace prints getdents64(3, 0x560f48f6d2a0 /* 28 entries */, 32768) = 744
    let mut d = Vec::new();
    for i in 0..3u64 {
        let mut e = vec![0u8; 24];
        e[0..8].copy_from_slice(&(i + 1).to_le_bytes());
        e[16..18].copy_from_slice(&24u16.to_le_bytes());
        e[19] = b'a';
        d.extend(e);
    }
    let dp = m.alloc(&d);
    assert_eq!(
        call("getdents64", [3, dp, 32768, 0, 0, 0], 72, &m),
        format!("getdents64(3, {dp:#x} /* 3 entries */, 32768) = 72")
    );
    assert_eq!(
        call("getdents64", [3, dp, 32768, 0, 0, 0], 0, &m),
        format!("getdents64(3, {dp:#x} /* 0 entries */, 32768) = 0")
    );
    // A zero record length does not loop.
    let zero = m.alloc(&[0u8; 64]);
    assert!(call("getdents64", [3, zero, 64, 0, 0, 0], 64, &m).contains("/* 0 entries */"));
    // clock_gettime fills a timespec.
    let ts = m.alloc(
        &[5u64, 500]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        call("clock_gettime", [0, ts, 0, 0, 0, 0], 0, &m),
        "clock_gettime(CLOCK_REALTIME, {tv_sec=5, tv_nsec=500}) = 0"
    );
    assert_eq!(
        call("nanosleep", [ts, 0, 0, 0, 0, 0], 0, &m),
        "nanosleep({tv_sec=5, tv_nsec=500}, NULL) = 0"
    );
    let pfd = m.alloc(&[3u8, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        call("poll", [pfd, 1, u64::MAX, 0, 0, 0], 1, &m),
        "poll([{fd=3, events=POLLIN}], 1, -1) = 1"
    );
}

#[test]
fn msghdr_sendmsg() {
    let mut m = FakeMem::new();
    let data = m.alloc(b"\x14\0\0\0");
    let iov = m.alloc(&[data.to_le_bytes(), 4u64.to_le_bytes()].concat());
    let mut hdr = vec![0u8; 56];
    hdr[16..24].copy_from_slice(&iov.to_le_bytes());
    hdr[24..32].copy_from_slice(&1u64.to_le_bytes());
    let h = m.alloc(&hdr);
    assert_eq!(
        call("sendmsg", [3, h, 0, 0, 0, 0], 4, &m),
        r#"sendmsg(3, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="\24\0\0\0", iov_len=4}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 4"#
    );
}

#[test]
fn return_values() {
    let read = table::info_for_name("read").unwrap();
    let r = format_return(read, -512);
    assert_eq!(
        r.text,
        "? ERESTARTSYS (To be restarted if SA_RESTART is set)"
    );
    assert_eq!(r.errno, Some("ERESTARTSYS"));
    assert_eq!(
        format_return(read, -516).text,
        "? ERESTART_RESTARTBLOCK (Interrupted by signal)"
    );
    assert_eq!(
        format_return(read, -515).text,
        "-1 ENOIOCTLCMD (Unknown error 515)"
    );
    assert_eq!(
        format_return(read, -133).text,
        "-1 EHWPOISON (Memory page has hardware error)"
    );
    assert_eq!(format_return(read, -4095).text, "-1 (Unknown error 4095)");
    // Below -4095 it is not an error.
    assert_eq!(format_return(read, -4096).text, "-4096");
    assert_eq!(errno_from_name("ENOENT"), Some(2));
    assert_eq!(errno_from_name("EWOULDBLOCK"), Some(11));
    assert_eq!(errno_from_name("ERESTARTSYS"), Some(512));
    assert_eq!(errno_name(41), None);
}

#[test]
fn json_values() {
    let mut m = FakeMem::new();
    let p = m.cstr("/etc/\"passwd\"\n");
    let info = table::info_for_name("openat").unwrap();
    let args = decode_enter(info, &[AT_FDCWD, p, 0o2000000, 0, 0, 0], &m, &opts());
    let j = serde_json::to_string(&args).unwrap();
    assert_eq!(
        j,
        r#"[{"name":"dfd","value":"AT_FDCWD"},{"name":"filename","value":"/etc/\\\"passwd\\\"\\n"},{"name":"flags","value":"O_RDONLY|O_CLOEXEC"}]"#
    );
    let v = serde_json::to_value([
        ArgValue::Int(-1),
        ArgValue::UInt(7),
        ArgValue::Ptr(0),
        ArgValue::Ptr(0x10),
        ArgValue::Unreadable(0x20),
        ArgValue::Array(vec![ArgValue::Int(3), ArgValue::Int(4)]),
        ArgValue::str(b"ab".to_vec(), true),
    ])
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!([-1, 7, "NULL", "0x10", "0x20", [3, 4], "ab..."])
    );
    let r = serde_json::to_value(format_return(info, -2)).unwrap();
    assert_eq!(r["errno"], "ENOENT");
    assert_eq!(r["value"], -2);
}

#[test]
fn i386_calls() {
    let o = DecodeOptions {
        compat: true,
        ..opts()
    };
    let mut m = FakeMem::new();
    // Addresses below 4 GiB for a 32-bit process.
    m = {
        let mut n = FakeMem::new();
        std::mem::swap(&mut n, &mut m);
        n
    };
    let path = 0x0804_a000u64;
    m.put(path, b"/bin/ls\0");
    let a0 = 0x0804_a010u64;
    m.put(a0, b"ls\0");
    let a1 = 0x0804_a020u64;
    m.put(a1, b"-l\0");
    let argv = 0x0804_a030u64;
    m.put(
        argv,
        &[a0 as u32, a1 as u32, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    let envp = 0x0804_a040u64;
    m.put(
        envp,
        &[a0 as u32, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    // Upper register halves are ignored for a 32-bit process.
    let hi = 0xdead_beef_0000_0000u64;
    assert_eq!(
        call_with("execve", [path | hi, argv, envp, 0, 0, 0], 0, &m, &o),
        r#"execve("/bin/ls", ["ls", "-l"], 0x804a040 /* 1 vars */) = 0"#
    );
    assert_eq!(table::i386(11).unwrap().name, "execve");
    assert_eq!(table::i386(192).unwrap().name, "mmap2");
    assert_eq!(
        call_with(
            "mmap2",
            [0, 8192, 3, 0x22, 0xffff_ffff, 0],
            0xf7f0_0000,
            &m,
            &o
        ),
        "mmap2(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0xf7f00000"
    );
    assert_eq!(
        call_with("open", [path, 0o100000, 0, 0, 0, 0], 3, &m, &o),
        r#"open("/bin/ls", O_RDONLY|O_LARGEFILE) = 3"#
    );
    let buf = 0x0804_b000u64;
    m.put(buf, b"abc");
    assert_eq!(
        call_with("read", [3, buf, 100, 0, 0, 0], 3, &m, &o),
        r#"read(3, "abc", 100) = 3"#
    );
    assert_eq!(
        call_with("mmap2", [0xf7d1_e000, 4096, 5, 0x812, 3, 0x26], 0xf7d1_e000, &m, &o),
        "mmap2(0xf7d1e000, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x26000) = 0xf7d1e000"
    );
    // The i386 mmap is old_mmap (one pointer argument); clone puts tls before child_tidptr.
    assert_eq!(table::i386(90).unwrap().args.len(), 1);
    assert_eq!(table::i386(120).unwrap().args[3].name, "tls");
    // i386 struct stat64: st_mode at 16, st_size at 44 (4-byte aligned long long).
    let mut st = vec![0u8; 96];
    st[16..20].copy_from_slice(&0o100755u32.to_le_bytes());
    st[44..52].copy_from_slice(&5_000_000_000i64.to_le_bytes());
    m.put(0x0804_c000, &st);
    assert_eq!(
        call_with("fstat64", [3, 0x0804_c000, 0, 0, 0, 0], 0, &m, &o),
        "fstat64(3, {st_mode=S_IFREG|0755, st_size=5000000000, ...}) = 0"
    );
    assert_eq!(
        call_with("fstat64", [3, 0xffffd000, 0, 0, 0, 0], 0, &m, &o),
        "fstat64(3, 0xffffd000) = 0"
    );
    // The i386 struct stat of the old stat calls is shown as its address.
    assert_eq!(
        call_with("fstat", [3, 0x0804_c000, 0, 0, 0, 0], 0, &m, &o),
        "fstat(3, 0x804c000) = 0"
    );
    assert_eq!(
        call_with("waitpid", [0xffff_ffff, 0, 0, 0, 0, 0], -10, &m, &o),
        "waitpid(-1, NULL, 0) = -1 ECHILD (No child processes)"
    );
}

#[test]
fn names_and_classes() {
    assert_eq!(table::x86_64(0).unwrap().name, "read");
    assert_eq!(table::x86_64(257).unwrap().name, "openat");
    assert_eq!(table::x86_64(462).unwrap().name, "mseal");
    assert!(table::x86_64(400).is_none());
    assert!(table::x86_64(u64::MAX).is_none());
    assert_eq!(table::by_name_x86_64("openat").unwrap().0, 257);
    assert_eq!(
        table::info_for_name("__x64_sys_openat").unwrap().name,
        "openat"
    );
    assert_eq!(
        table::info_for_name("__ia32_sys_openat").unwrap().name,
        "openat"
    );
    assert_eq!(
        table::info_for_name("__x64_sys_newfstat").unwrap().name,
        "fstat"
    );
    assert_eq!(
        table::info_for_name("__ia32_compat_sys_sigaction")
            .unwrap()
            .name,
        "sigaction"
    );
    assert!(table::info_for_name("__x64_sys_ni_syscall").is_none());
    let file = Classes::from_strace_name("%file").unwrap();
    assert!(table::classes_of("openat").contains(file | Classes::DESC));
    assert!(table::classes_of("execve").contains(Classes::PROCESS | Classes::FILE));
    assert!(table::classes_of("connect").contains(Classes::NETWORK));
    assert!(table::classes_of("mmap").contains(Classes::MEMORY));
    assert!(table::classes_of("rt_sigaction").contains(Classes::SIGNAL));
    assert!(table::classes_of("newfstatat").contains(Classes::FSTAT));
    assert!(table::classes_of("stat").intersects(Classes::from_strace_name("%%stat").unwrap()));
    assert!(!table::classes_of("read").contains(Classes::FILE));
    assert_eq!(Classes::from_strace_name("%bogus"), None);
}

#[test]
fn prototypes_are_consistent() {
    let mut seen = std::collections::HashSet::new();
    for info in table::all() {
        assert!(seen.insert(info.name), "duplicate prototype {}", info.name);
        assert!(
            info.args.len() <= 6,
            "{} has {} args",
            info.name,
            info.args.len()
        );
        for a in info.args {
            let idx = match a.kind {
                ArgKind::Buf { len_arg } | ArgKind::BufOut { len_arg } => Some(len_arg),
                ArgKind::Sockaddr { len_arg } | ArgKind::SockaddrOut { len_arg } => Some(len_arg),
                ArgKind::PollFds { count_arg }
                | ArgKind::Iovec { count_arg }
                | ArgKind::IovecOut { count_arg } => Some(count_arg),
                ArgKind::FcntlArg { cmd_arg } => Some(cmd_arg),
                _ => None,
            };
            if let Some(i) = idx {
                assert!(
                    (i as usize) < info.args.len(),
                    "{}: {} refers to {i}",
                    info.name,
                    a.name
                );
            }
        }
    }
    for (nr, n) in table::x86_64_names().iter().enumerate() {
        if !n.is_empty() {
            assert!(
                table::x86_64(nr as u64).is_some(),
                "x86-64 {nr} {n} has no prototype"
            );
        }
    }
    for (nr, n) in table::i386_names().iter().enumerate() {
        if !n.is_empty() {
            assert!(
                table::i386(nr as u64).is_some(),
                "i386 {nr} {n} has no prototype"
            );
        }
    }
    let typed = table::all().iter().filter(|i| i.is_typed()).count();
    assert!(typed >= 200, "only {typed} typed prototypes");
}

// ---- checks against this machine's uapi headers ----

/// `#define NAME VALUE` and `NAME = VALUE,` pairs of a header, with simple expressions
/// (numbers, earlier names, `|`, `<<`, parentheses, U/L suffixes) evaluated.
fn header_defines(path: &str) -> Option<std::collections::HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut map = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.split("/*").next().unwrap_or("").trim();
        let (name, expr) = if let Some(rest) = line.strip_prefix("#define") {
            let rest = rest.trim();
            let mut it = rest.splitn(2, char::is_whitespace);
            (it.next().unwrap_or(""), it.next().unwrap_or("").trim())
        } else if let Some((n, e)) = line.split_once('=') {
            (n.trim(), e.trim().trim_end_matches(','))
        } else {
            continue;
        };
        if name.is_empty()
            || name.contains('(')
            || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        if let Some(v) = eval(expr, &map) {
            map.insert(name.to_string(), v);
        }
    }
    Some(map)
}

fn eval(expr: &str, map: &std::collections::HashMap<String, u64>) -> Option<u64> {
    let e = expr.trim();
    if e.is_empty() {
        return None;
    }
    if let Some(inner) = e.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        if let Some(v) = eval(inner, map) {
            return Some(v);
        }
    }
    if let Some((a, b)) = e.split_once('|') {
        return Some(eval(a, map)? | eval(b, map)?);
    }
    if let Some((a, b)) = e.split_once("<<") {
        return eval(a, map)?.checked_shl(eval(b, map)? as u32);
    }
    let t = e.trim_end_matches(['U', 'L', 'u', 'l']);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if t.len() > 1 && t.starts_with('0') && t.chars().all(|c| c.is_ascii_digit()) {
        return u64::from_str_radix(&t[1..], 8).ok();
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return t.parse().ok();
    }
    map.get(t).copied()
}

/// Checks every name of `table` that the headers define; returns how many were checked.
fn check_names(table: consts::Names, headers: &[&str]) -> usize {
    let mut defs = std::collections::HashMap::new();
    for h in headers {
        if let Some(d) = header_defines(h) {
            defs.extend(d);
        }
    }
    let mut n = 0;
    for &(v, name) in table {
        if let Some(&hv) = defs.get(name) {
            assert_eq!(hv, v, "{name}: header says {hv:#x}, table says {v:#x}");
            n += 1;
        }
    }
    n
}

const INC: &str = "/usr/include";

fn h(p: &str) -> String {
    format!("{INC}/{p}")
}

#[test]
fn constants_match_uapi_headers() {
    if !std::path::Path::new(&h("asm-generic/fcntl.h")).exists() {
        eprintln!("no uapi headers here; skipped");
        return;
    }
    let arch = "x86_64-linux-gnu/asm";
    let cases: Vec<(consts::Names, Vec<String>)> = vec![
        (consts::OPEN_FLAGS, vec![h("asm-generic/fcntl.h")]),
        (consts::ACCESS_MODES, vec![h("asm-generic/fcntl.h")]),
        (
            consts::FCNTL_CMDS,
            vec![h("asm-generic/fcntl.h"), h("linux/fcntl.h")],
        ),
        (consts::FD_FLAGS, vec![h("asm-generic/fcntl.h")]),
        (consts::FLOCK_OPS, vec![h("asm-generic/fcntl.h")]),
        (consts::AT_FLAGS, vec![h("linux/fcntl.h")]),
        (consts::PROT, vec![h("asm-generic/mman-common.h")]),
        (
            consts::MAP_FLAGS,
            vec![
                h("asm-generic/mman-common.h"),
                h("linux/mman.h"),
                h(&format!("{arch}/mman.h")),
            ],
        ),
        (consts::MAP_TYPES, vec![h("linux/mman.h")]),
        (consts::MREMAP, vec![h("linux/mman.h")]),
        (consts::MADVISE, vec![h("asm-generic/mman-common.h")]),
        (consts::WHENCE, vec![h("linux/fs.h")]),
        (
            consts::SA_FLAGS,
            vec![
                h(&format!("{arch}/signal.h")),
                h("asm-generic/signal-defs.h"),
            ],
        ),
        (
            consts::SIGPROCMASK_HOW,
            vec![h("asm-generic/signal-defs.h")],
        ),
        (consts::CLONE_FLAGS, vec![h("linux/sched.h")]),
        (consts::WAIT_OPTIONS, vec![h("linux/wait.h")]),
        (
            consts::IOCTLS,
            vec![h("asm-generic/ioctls.h"), h("linux/sockios.h")],
        ),
        (consts::POLL_EVENTS, vec![h("asm-generic/poll.h")]),
        (consts::CLOCKS, vec![h("linux/time.h")]),
        (consts::FUTEX_CMDS, vec![h("linux/futex.h")]),
        (consts::RLIMITS, vec![h("asm-generic/resource.h")]),
        (consts::ARCH_PRCTL, vec![h(&format!("{arch}/prctl.h"))]),
        (consts::PRCTL, vec![h("linux/prctl.h")]),
        (consts::EPOLL_CTL, vec![h("linux/eventpoll.h")]),
        (consts::GETRANDOM, vec![h("linux/random.h")]),
        (consts::STATX_MASK, vec![h("linux/stat.h")]),
        (consts::STATX_ATTRS, vec![h("linux/stat.h")]),
        (consts::FILE_TYPES, vec![h("linux/stat.h")]),
        (consts::MODE_SPECIAL, vec![h("linux/stat.h")]),
        (
            consts::ADDRESS_FAMILIES,
            vec![h("x86_64-linux-gnu/bits/socket.h")],
        ),
        (consts::MSG_FLAGS, vec![h("x86_64-linux-gnu/bits/socket.h")]),
        (
            consts::SOL_LEVELS,
            vec![h("x86_64-linux-gnu/bits/socket.h")],
        ),
        (
            consts::SOCK_TYPES,
            vec![h("x86_64-linux-gnu/bits/socket_type.h")],
        ),
        (consts::IPPROTO, vec![h("linux/in.h"), h("linux/in6.h")]),
        (consts::NETLINK_PROTO, vec![h("linux/netlink.h")]),
        (consts::SHUTDOWN, vec![h("x86_64-linux-gnu/sys/socket.h")]),
        (consts::SO_OPTS, vec![h("asm-generic/socket.h")]),
        (consts::IP_OPTS, vec![h("linux/in.h")]),
        (consts::IPV6_OPTS, vec![h("linux/in6.h")]),
        (consts::TCP_OPTS, vec![h("linux/tcp.h")]),
        (consts::FADVISE, vec![h("linux/fadvise.h")]),
        (consts::MEMFD_FLAGS, vec![h("linux/memfd.h")]),
    ];
    let mut total = 0;
    for (table, headers) in &cases {
        let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let n = check_names(table, &hs);
        total += n;
    }
    // Signals: index = number.
    let sig = header_defines(&h(&format!("{arch}/signal.h"))).unwrap_or_default();
    for (i, name) in consts::SIGNALS.iter().enumerate().skip(1) {
        assert_eq!(sig.get(*name).copied(), Some(i as u64), "{name}");
        total += 1;
    }
    // Most names must have been found, or the test would prove nothing.
    assert!(total >= 380, "only {total} constants checked");
    eprintln!("{total} constants checked against {INC}");
}

#[test]
fn errno_names_match_headers() {
    let Some(mut defs) = header_defines(&h("asm-generic/errno-base.h")) else {
        eprintln!("no uapi headers here; skipped");
        return;
    };
    defs.extend(header_defines(&h("asm-generic/errno.h")).unwrap_or_default());
    let mut n = 0;
    for e in 1..=133u64 {
        if let Some(name) = errno_name(e) {
            assert_eq!(defs.get(name).copied(), Some(e), "{name}");
            n += 1;
        }
    }
    assert_eq!(n, 131);
}

fn parse_unistd(path: &str) -> Option<Vec<(u64, String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("#define __NR_")?;
                let mut it = rest.split_whitespace();
                let name = it.next()?.to_string();
                let nr = it.next()?.parse().ok()?;
                Some((nr, name))
            })
            .collect(),
    )
}

#[test]
fn x86_64_table_matches_unistd_64_h() {
    let Some(entries) = parse_unistd("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") else {
        eprintln!("no asm/unistd_64.h here; skipped");
        return;
    };
    assert!(entries.len() > 350);
    for (nr, name) in &entries {
        assert_eq!(
            table::x86_64(*nr).map(|i| i.name),
            Some(name.as_str()),
            "x86-64 {nr}"
        );
        assert_eq!(table::by_name_x86_64(name).map(|x| x.0), Some(*nr));
    }
}

#[test]
fn i386_table_matches_unistd_32_h() {
    let Some(entries) = parse_unistd("/usr/include/x86_64-linux-gnu/asm/unistd_32.h") else {
        eprintln!("no asm/unistd_32.h here; skipped");
        return;
    };
    assert!(entries.len() > 420);
    for (nr, name) in &entries {
        assert_eq!(
            table::i386(*nr).map(|i| i.name),
            Some(name.as_str()),
            "i386 {nr}"
        );
    }
}

#[test]
#[ignore]
fn print_counts() {
    let all = table::all();
    let typed = all.iter().filter(|i| i.is_typed()).count();
    let x64 = table::x86_64_names()
        .iter()
        .filter(|n| !n.is_empty())
        .count();
    let x64_typed = (0..table::x86_64_names().len() as u64)
        .filter_map(table::x86_64)
        .filter(|i| i.is_typed())
        .count();
    let i386 = table::i386_names().iter().filter(|n| !n.is_empty()).count();
    eprintln!(
        "prototypes {}, typed {typed}; x86-64 entries {x64} (typed {x64_typed}); i386 entries {i386}",
        all.len()
    );
}

/// `cargo test --release -p nitro-backend-linux decode_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn decode_speed() {
    let mut m = FakeMem::new();
    let p = m.cstr("/usr/lib/x86_64-linux-gnu/libc.so.6");
    let buf = m.alloc(&[b'x'; 4096]);
    let openat = table::x86_64(257).unwrap();
    let read = table::x86_64(0).unwrap();
    let o = opts();
    let n = 200_000u32;
    let t = std::time::Instant::now();
    let mut len = 0;
    for _ in 0..n {
        let raw = [AT_FDCWD, p, 0o2000000, 0, 0, 0];
        let a = decode_enter(openat, &raw, &m, &o);
        len += render_call(openat.name, &a, Some(&format_return(openat, 3))).len();
        let raw = [3, buf, 4096, 0, 0, 0];
        let mut a = decode_enter(read, &raw, &m, &o);
        decode_exit(read, &raw, 4096, &mut a, &m, &o);
        len += render_call(read.name, &a, Some(&format_return(read, 4096))).len();
    }
    let per = t.elapsed() / (2 * n);
    eprintln!("{per:?} per decoded+rendered call ({len} bytes)");
}
