//! Which OS runs in the guest: Windows is recognised from the guest alone (the IDT leads
//! into an `MZ`/`PE` ntoskrnl image); Linux needs the kernel file, whose kallsyms and BTF the
//! backend reads, and is recognised by the IDT the kernel maps at a fixed address.

use std::path::Path;

use nitro_backend_linux::LinuxBackend;
use nitro_backend_windows::WindowsBackend;
use nitro_listener::{Driver, Regs};
use nitro_mem::{AddressSpace, PagingMode, PhysAddr, PhysMemory, VirtAddr};
use nitro_os::OsBackend;

use crate::NitroError;

/// The guest's operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOs {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
}

/// Linux maps a read-only copy of the IDT at `CPU_ENTRY_AREA_RO_IDT` =
/// 0xfffffe0000000000 on x86-64 since 4.15 (arch/x86/include/asm/pgtable_areas.h); vector 0
/// there is an interrupt gate into kernel text (top 2 GiB).
const LINUX_RO_IDT: u64 = 0xffff_fe00_0000_0000;

/// True when the guest looks like Linux: the fixed-address IDT copy is mapped and its
/// vector 0 points into the kernel's text mapping.
pub fn looks_like_linux(mem: &dyn PhysMemory, regs: &Regs) -> bool {
    let mode = PagingMode::from_cr4(regs.cr4);
    [regs.cr3, regs.cr3 & !0x1000].into_iter().any(|cr3| {
        let space = AddressSpace::with_mode(mem, PhysAddr(cr3), mode);
        let mut gate = [0u8; 16];
        if space.read_virt(VirtAddr(LINUX_RO_IDT), &mut gate).is_err() {
            return false;
        }
        // 64-bit interrupt gate: offset 15:0 at 0, 31:16 at 6, 63:32 at 8 (Intel SDM 3A
        // 6.14.1).
        let handler = u64::from(u16::from_le_bytes([gate[0], gate[1]]))
            | u64::from(u16::from_le_bytes([gate[6], gate[7]])) << 16
            | u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32;
        handler >= 0xffff_ffff_8000_0000
    })
}

/// Finds the guest's OS (stopping the guest; it stays stopped) and returns its backend.
/// `linux_kernel` is the kernel file of a Linux guest (needed for Linux: its symbols and
/// types come from it); `force` skips detection.
pub fn detect_backend(
    driver: &mut dyn Driver,
    linux_kernel: Option<&Path>,
    force: Option<GuestOs>,
) -> Result<(GuestOs, Box<dyn OsBackend>), NitroError> {
    let linux = |path: Option<&Path>| -> Result<Box<dyn OsBackend>, NitroError> {
        let path = path.ok_or_else(|| {
            NitroError::Usage("a Linux guest needs its kernel file (--kernel or --guest)".into())
        })?;
        LinuxBackend::from_kernel_file(path)
            .map(|b| Box::new(b) as Box<dyn OsBackend>)
            .map_err(|e| NitroError::Usage(format!("{}: {e}", path.display())))
    };
    match force {
        Some(GuestOs::Linux) => return Ok((GuestOs::Linux, linux(linux_kernel)?)),
        Some(GuestOs::Windows) => return Ok((GuestOs::Windows, Box::new(WindowsBackend::new()))),
        None => {}
    }
    let regs = driver.interrupt()?;
    let mem = driver.memory();
    let mut win = WindowsBackend::new();
    let win_err = match win.discover(mem.as_ref(), &regs) {
        Ok(_) => return Ok((GuestOs::Windows, Box::new(win))),
        Err(e) => e.to_string(),
    };
    if looks_like_linux(mem.as_ref(), &regs) || linux_kernel.is_some() {
        return Ok((GuestOs::Linux, linux(linux_kernel)?));
    }
    Err(NitroError::Usage(format!(
        "cannot tell the guest's OS: not Windows ({win_err}), and no Linux IDT at \
         {LINUX_RO_IDT:#x}"
    )))
}
