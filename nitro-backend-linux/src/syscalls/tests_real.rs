//! Decoding structures the real kernel and glibc wrote, read back through `/proc/self/mem`
//! (the same bytes a tracer reads from a guest), and through nitro-mem's page-table walker.

use std::{fs::File, os::unix::fs::FileExt};

use nitro_mem::{MemError, VirtAddr, VirtRead};

use super::*;

/// This process's memory as a `VirtRead`.
struct SelfMem(File);

impl SelfMem {
    fn open() -> SelfMem {
        SelfMem(File::open("/proc/self/mem").expect("open /proc/self/mem"))
    }
}

fn fault(va: VirtAddr, e: std::io::Error) -> MemError {
    MemError::Source {
        path: format!("/proc/self/mem@{va}"),
        why: e.to_string(),
    }
}

impl VirtRead for SelfMem {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read_exact_at(buf, va.0).map_err(|e| fault(va, e))
    }

    fn read_cstring_prefix(&self, va: VirtAddr, max: usize) -> Result<(Vec<u8>, bool), MemError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < max {
            let n = chunk.len().min(max - out.len());
            let at = va.0 + out.len() as u64;
            // Do not cross a page in one read: the next page may be unmapped.
            let n = n.min((4096 - (at % 4096)) as usize);
            self.0
                .read_exact_at(&mut chunk[..n], at)
                .map_err(|e| fault(VirtAddr(at), e))?;
            if let Some(z) = chunk[..n].iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok((out, false))
    }
}

fn whole(name: &str, raw: [u64; 6], ret: i64, mem: &dyn VirtRead) -> String {
    let info = table::info_for_name(name).unwrap();
    let o = DecodeOptions::default();
    let mut args = decode_enter(info, &raw, mem, &o);
    decode_exit(info, &raw, ret, &mut args, mem, &o);
    render_call(info.name, &args, Some(&format_return(info, ret)))
}

#[test]
fn real_fstat_read_uname_pipe() {
    use std::os::unix::{fs::PermissionsExt, io::AsRawFd};
    let mem = SelfMem::open();
    let dir = std::env::temp_dir().join(format!("nitro-syscalls-{}", std::process::id()));
    std::fs::write(&dir, b"hello\tworld\n").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o640)).unwrap();
    let f = File::open(&dir).unwrap();
    let fd = f.as_raw_fd() as u64;

    // fstat: the kernel fills a struct stat in this process.
    // SAFETY: an all-zero `stat` is a valid value; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable `struct stat`.
    let r = unsafe { libc::fstat(fd as i32, &mut st) };
    assert_eq!(r, 0);
    let line = whole("fstat", [fd, &st as *const _ as u64, 0, 0, 0, 0], 0, &mem);
    assert_eq!(
        line,
        format!("fstat({fd}, {{st_mode=S_IFREG|0640, st_size=12, ...}}) = 0")
    );

    // read: the buffer as the kernel filled it.
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd as i32, buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 12);
    let line = whole(
        "read",
        [fd, buf.as_ptr() as u64, 64, 0, 0, 0],
        n as i64,
        &mem,
    );
    assert_eq!(line, format!(r#"read({fd}, "hello\tworld\n", 64) = 12"#));

    // uname: compare with /proc's view of the same kernel.
    // SAFETY: all-zero utsname is valid; uname writes into it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live, writable `struct utsname`.
    assert_eq!(unsafe { libc::uname(&mut u) }, 0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let line = whole("uname", [&u as *const _ as u64, 0, 0, 0, 0, 0], 0, &mem);
    assert_eq!(
        line,
        format!(
            r#"uname({{sysname="Linux", nodename="{}", ...}}) = 0"#,
            host.trim()
        )
    );

    // pipe2: two fds written by the kernel.
    let mut fds = [0i32; 2];
    // SAFETY: `fds` holds two ints as pipe2 requires.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let line = whole(
        "pipe2",
        [fds.as_ptr() as u64, libc::O_CLOEXEC as u64, 0, 0, 0, 0],
        0,
        &mem,
    );
    assert_eq!(
        line,
        format!("pipe2([{}, {}], O_CLOEXEC) = 0", fds[0], fds[1])
    );
    // SAFETY: closing the fds pipe2 just returned.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }

    // rt_sigaction with the kernel's own struct layout: the old action of SIGURG.
    let mut old = [0u64; 4];
    // SAFETY: a raw rt_sigaction reading into a 32-byte kernel `struct sigaction`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::SIGURG,
            0usize,
            old.as_mut_ptr(),
            8usize,
        )
    };
    assert_eq!(r, 0);
    let line = whole(
        "rt_sigaction",
        [23, 0, old.as_ptr() as u64, 8, 0, 0],
        0,
        &mem,
    );
    assert!(
        line.starts_with("rt_sigaction(SIGURG, NULL, {sa_handler=SIG_DFL, sa_mask="),
        "{line}"
    );
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn through_the_page_table_walker() {
    use nitro_mem::{AddressSpace, PhysAddr, PhysMemory, VecMemory};
    // One 4 KiB page at virtual 0x400000 -> physical 0x5000 (4-level paging).
    let mem = VecMemory::new(1 << 20);
    let (pml4, pdpt, pd, pt) = (0x1000u64, 0x2000u64, 0x3000u64, 0x4000u64);
    mem.write_phys(PhysAddr(pml4), &(pdpt | 0x7).to_le_bytes())
        .unwrap();
    mem.write_phys(PhysAddr(pdpt), &(pd | 0x7).to_le_bytes())
        .unwrap();
    mem.write_phys(PhysAddr(pd + 2 * 8), &(pt | 0x7).to_le_bytes())
        .unwrap();
    mem.write_phys(PhysAddr(pt), &(0x5000u64 | 0x7).to_le_bytes())
        .unwrap();
    mem.write_phys(PhysAddr(0x5000), b"/etc/passwd\0").unwrap();
    // The last bytes of the page: a string running into the unmapped next page.
    mem.write_phys(PhysAddr(0x5ffc), b"/tmp").unwrap();
    let space = AddressSpace::new(&mem, PhysAddr(pml4));
    let at = -100i64 as u64;
    assert_eq!(
        whole("openat", [at, 0x400000, 0o2000000, 0, 0, 0], 3, &space),
        r#"openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3"#
    );
    assert_eq!(
        whole("openat", [at, 0x400ffc, 0, 0, 0, 0], -14, &space),
        "openat(AT_FDCWD, 0x400ffc, O_RDONLY) = -1 EFAULT (Bad address)"
    );
    // A non-canonical pointer and a kernel pointer are shown as addresses.
    assert_eq!(
        whole(
            "openat",
            [at, 0x8000_0000_0000_0000, 0, 0, 0, 0],
            -14,
            &space
        ),
        "openat(AT_FDCWD, 0x8000000000000000, O_RDONLY) = -1 EFAULT (Bad address)"
    );
}
