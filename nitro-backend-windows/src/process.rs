//! The process and thread behind a system call: KTHREAD -> EPROCESS -> PEB.
//!
//! Kernel structures are read through a kernel address space, the PEB and its process
//! parameters through the process's own (user) address space. WoW64 processes have a second,
//! 32-bit PEB whose `UNICODE_STRING`s use the 32-bit layout; its command line is preferred
//! when present since it is what the 32-bit program was started with.

use nitro_mem::{VirtAddr, VirtRead};

use crate::{
    kpcr::{is_kernel_address, is_user_address},
    layout::Layout,
    Result, WinError,
};

/// Longest path or command line read, in bytes of UTF-16 (UNICODE_STRING lengths are u16).
pub const MAX_USTR: usize = 0xffff;

/// What is known of the process (and thread) of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinProcess {
    /// EPROCESS address.
    pub eprocess: u64,
    /// ETHREAD address.
    pub thread: u64,
    /// UniqueProcessId.
    pub pid: u64,
    /// Thread id (ETHREAD.Cid.UniqueThread when Cid.UniqueProcess matches the pid, else the
    /// TEB's ClientId).
    pub tid: u64,
    /// InheritedFromUniqueProcessId.
    pub ppid: u64,
    /// ImageFileName (at most 15 bytes).
    pub name: String,
    /// Full image path (`\Device\HarddiskVolume2\...`) from SeAuditProcessCreationInfo.
    pub image_path: Option<String>,
    /// ImagePathName from the process parameters (`C:\...`).
    pub peb_image_path: Option<String>,
    /// CommandLine from the process parameters.
    pub command_line: Option<String>,
    /// A 32-bit (WoW64) process.
    pub wow64: bool,
    /// KPROCESS.DirectoryTableBase (the process's kernel CR3).
    pub dtb: u64,
}

fn read_ptr(mem: &dyn VirtRead, at: u64) -> Result<u64> {
    Ok(mem.read_u64(VirtAddr(at))?)
}

/// The process a thread belongs to: `KTHREAD.Process`, falling back to
/// `KTHREAD.ApcState.Process` (they differ only while a thread is attached elsewhere, which a
/// thread entering a system call from user mode never is).
pub fn thread_process(kmem: &dyn VirtRead, layout: &Layout, thread: u64) -> Result<u64> {
    for off in [layout.kthread_process, layout.kthread_apc_process] {
        let p = read_ptr(kmem, thread + off)?;
        if is_kernel_address(p) {
            return Ok(p);
        }
    }
    Err(WinError::BadPointer {
        what: "KTHREAD.Process",
        value: thread,
    })
}

/// (EPROCESS, pid) of a thread's process: the key under which process facts are cached.
pub fn process_key(kmem: &dyn VirtRead, layout: &Layout, thread: u64) -> Result<(u64, u64)> {
    let ep = thread_process(kmem, layout, thread)?;
    Ok((ep, read_ptr(kmem, ep + layout.eprocess_pid)?))
}

/// The thread id: `ETHREAD.Cid.UniqueThread` when `Cid.UniqueProcess` is `pid` (a guard
/// against a wrong Cid offset), else the TEB's `ClientId.UniqueThread`; 0 when neither reads.
pub fn thread_id(
    kmem: &dyn VirtRead,
    umem: &dyn VirtRead,
    layout: &Layout,
    thread: u64,
    pid: u64,
) -> u64 {
    let mut cid = [0u8; 16];
    if kmem
        .read_virt(VirtAddr(thread + layout.ethread_cid), &mut cid)
        .is_ok()
        && cid[..8] == pid.to_le_bytes()
    {
        return u64::from_le_bytes(cid[8..].try_into().unwrap_or([0; 8]));
    }
    match read_ptr(kmem, thread + layout.kthread_teb) {
        Ok(teb) if is_user_address(teb) => umem
            .read_u64(VirtAddr(teb + layout.teb_client_id + 8))
            .unwrap_or(0),
        _ => 0,
    }
}

/// Reads the kernel-side fields of a process (everything but the PEB strings).
pub fn read_kernel_side(kmem: &dyn VirtRead, layout: &Layout, thread: u64) -> Result<WinProcess> {
    let ep = thread_process(kmem, layout, thread)?;
    let pid = read_ptr(kmem, ep + layout.eprocess_pid)?;
    let ppid = read_ptr(kmem, ep + layout.eprocess_ppid).unwrap_or(0);
    let dtb = read_ptr(kmem, ep + layout.kprocess_dtb).unwrap_or(0);
    let mut name = [0u8; 15];
    kmem.read_virt(VirtAddr(ep + layout.eprocess_image_file_name), &mut name)?;
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // ETHREAD.Cid is (UniqueProcess, UniqueThread): its first half must be the pid, which
    // guards against a wrong Cid offset (the TEB's ClientId is used then, see read_user_side).
    let mut cid = [0u8; 16];
    let tid = match kmem.read_virt(VirtAddr(thread + layout.ethread_cid), &mut cid) {
        Ok(()) if cid[..8] == pid.to_le_bytes() => {
            u64::from_le_bytes(cid[8..].try_into().unwrap_or([0; 8]))
        }
        _ => 0,
    };
    let wow64 = read_ptr(kmem, ep + layout.eprocess_wow64)
        .map(|p| p != 0)
        .unwrap_or(false);
    let image_path = match read_ptr(kmem, ep + layout.eprocess_se_audit) {
        // OBJECT_NAME_INFORMATION starts with its UNICODE_STRING Name.
        Ok(oni) if is_kernel_address(oni) => kmem.read_unicode_string(VirtAddr(oni), MAX_USTR).ok(),
        _ => None,
    };
    Ok(WinProcess {
        eprocess: ep,
        thread,
        pid,
        tid,
        ppid,
        name: String::from_utf8_lossy(&name[..name_len]).into_owned(),
        image_path: image_path.filter(|s| !s.is_empty()),
        wow64,
        dtb,
        ..WinProcess::default()
    })
}

/// Fills the PEB-side fields (image path and command line) from the process's user memory;
/// `teb` (KTHREAD.Teb) supplies the thread id when the ETHREAD's was not readable.
pub fn read_user_side(
    kmem: &dyn VirtRead,
    umem: &dyn VirtRead,
    layout: &Layout,
    p: &mut WinProcess,
) -> Result<()> {
    if p.tid == 0 {
        if let Ok(teb) = read_ptr(kmem, p.thread + layout.kthread_teb) {
            if is_user_address(teb) {
                p.tid = umem
                    .read_u64(VirtAddr(teb + layout.teb_client_id + 8))
                    .unwrap_or(0);
            }
        }
    }
    if p.wow64 {
        let w = read_ptr(kmem, p.eprocess + layout.eprocess_wow64)?;
        let peb32 = if layout.wow64_is_ewow64 {
            read_ptr(kmem, w)?
        } else {
            w
        };
        if is_user_address(peb32) {
            let params = u64::from(umem.read_u32(VirtAddr(peb32 + layout.peb32_params))?);
            if is_user_address(params) {
                p.peb_image_path = umem
                    .read_unicode_string32(VirtAddr(params + layout.params32_image_path), MAX_USTR)
                    .ok();
                p.command_line = umem
                    .read_unicode_string32(
                        VirtAddr(params + layout.params32_command_line),
                        MAX_USTR,
                    )
                    .ok();
                if p.command_line.is_some() {
                    return Ok(());
                }
            }
        }
    }
    let peb = read_ptr(kmem, p.eprocess + layout.eprocess_peb)?;
    if !is_user_address(peb) {
        // The System process and minimal processes have no PEB.
        return Ok(());
    }
    let params = read_ptr(umem, peb + layout.peb_params)?;
    if !is_user_address(params) {
        return Err(WinError::BadPointer {
            what: "PEB.ProcessParameters",
            value: params,
        });
    }
    p.peb_image_path = umem
        .read_unicode_string(VirtAddr(params + layout.params_image_path), MAX_USTR)
        .ok();
    p.command_line = umem
        .read_unicode_string(VirtAddr(params + layout.params_command_line), MAX_USTR)
        .ok();
    Ok(())
}
