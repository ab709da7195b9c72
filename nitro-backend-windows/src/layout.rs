//! Structure offsets the process walk needs, per build (x64 only).
//!
//! Sources, per field group:
//! - KPCR/KPRCB (`Self` 0x18, `IdtBase` 0x38, `Prcb` 0x180, `KPRCB.CurrentThread` +0x8, so
//!   `gs:[0x188]`), unchanged from Windows 7 to 11: Bitdefender hvmi
//!   `cami/sources/windows/opaque_fields/km/windows_7601_x64_kpti_OFF.yaml` (`Pcr.CurrentThread:
//!   0x188`) and the `_KPCR` of ntdiff/headers `Win10_2004_20H1/x64`.
//! - Windows 7 SP1 (7601): hvmi `windows_7601_x64_kpti_OFF.yaml` (EPROCESS `Id` 0x180,
//!   `ParentPid` 0x290, `Name` 0x2e0, `WoW64` 0x320, `Peb` 0x338; KTHREAD `Process` 0x210,
//!   `AttachedProcess` 0x70, `Teb` 0xb8, ETHREAD `Id` 0x3c0 = `Cid` 0x3b8 + 8); ntdiff
//!   `Win7_SP1` `_EPROCESS` (`SeAuditProcessCreationInfo` 0x390). `Wow64Process` points at the
//!   32-bit PEB itself.
//! - Windows 10 2004-22H2 (19041-19045; one kernel line serviced by enablement packages):
//!   ntdiff/headers `Win10_2004_20H1/x64` `_EPROCESS` (`UniqueProcessId` 0x440,
//!   `InheritedFromUniqueProcessId` 0x540, `Peb` 0x550, `WoW64Process` 0x580, `ImageFileName`
//!   0x5a8, `SeAuditProcessCreationInfo` 0x5c0) and `_KTHREAD` (`ApcState` 0x98, `Teb` 0xf0,
//!   `Process` 0x220, size 0x430); `_ETHREAD.Cid` 0x478 (Geoff Chappell's ETHREAD notes and the
//!   ntdiff 2004 header). `WoW64Process` is an `_EWOW64PROCESS` whose first field is the PEB32.
//! - Windows 11 22H2/23H2 (22621/22631): the Vergilius Project 23H2 `_EPROCESS`/`_KTHREAD`
//!   (transcribed in public headers citing vergiliusproject.com/kernels/x64/windows-11/23h2):
//!   EPROCESS offsets equal to 19041's, KTHREAD size 0x480 with `ApcState` 0x98, `Process`
//!   0x220; `PsGetCurrentProcess` reads `gs:[0x188]` then `[+0xb8]`. `ETHREAD.Cid` = 0x4c8:
//!   DERIVED (KTHREAD size + 0x48, the ETHREAD prefix before `Cid` being identical in the 2004
//!   and 24H2 headers), not read from a 23H2 header.
//! - Windows 11 24H2 (26100): ntdiff/headers `Win11_2409_24H2/x64` `_EPROCESS`
//!   (`UniqueProcessId` 0x1d0, `InheritedFromUniqueProcessId` 0x2d0, `Peb` 0x2e0,
//!   `WoW64Process` 0x310, `ImageFileName` 0x338, `SeAuditProcessCreationInfo` 0x350; a second
//!   public header generated from the 26100 PDB agrees) and `_ETHREAD` (`Tcb` size 0x4c0,
//!   `Cid` 0x508; that second header says 0x4c8, so the thread id is also cross-read from the
//!   TEB), `_KTHREAD` (`ApcState` 0x98, `Teb` 0xf0, `Process` 0x220).
//! - PEB64 `ProcessParameters` 0x20, `RTL_USER_PROCESS_PARAMETERS` `ImagePathName` 0x60 and
//!   `CommandLine` 0x70; PEB32 `ProcessParameters` 0x10, parameters32 `ImagePathName` 0x38 and
//!   `CommandLine` 0x40; TEB64 `ClientId` 0x40 — unchanged since XP x64 (ntdiff `_PEB`,
//!   `_RTL_USER_PROCESS_PARAMETERS`, `_TEB`; Vergilius `_PEB64`).

/// Offsets of one build family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// What the offsets are for.
    pub name: &'static str,
    /// KPCR.Self.
    pub kpcr_self: u64,
    /// KPCR.IdtBase.
    pub kpcr_idt_base: u64,
    /// KPCR.Prcb.CurrentThread (KPCR.Prcb + KPRCB.CurrentThread).
    pub kpcr_current_thread: u64,
    /// KTHREAD.ApcState.Process (the process the thread is attached to).
    pub kthread_apc_process: u64,
    /// KTHREAD.Process (the owning process).
    pub kthread_process: u64,
    /// KTHREAD.Teb.
    pub kthread_teb: u64,
    /// ETHREAD.Cid (CLIENT_ID: UniqueProcess, UniqueThread).
    pub ethread_cid: u64,
    /// KPROCESS.DirectoryTableBase.
    pub kprocess_dtb: u64,
    /// EPROCESS.UniqueProcessId.
    pub eprocess_pid: u64,
    /// EPROCESS.InheritedFromUniqueProcessId.
    pub eprocess_ppid: u64,
    /// EPROCESS.Peb.
    pub eprocess_peb: u64,
    /// EPROCESS.Wow64Process / WoW64Process.
    pub eprocess_wow64: u64,
    /// True when the WoW64 field points at an `_EWOW64PROCESS` (PEB32 at +0), false when it
    /// points at the PEB32 directly (Windows 7).
    pub wow64_is_ewow64: bool,
    /// EPROCESS.ImageFileName (15 bytes).
    pub eprocess_image_file_name: u64,
    /// EPROCESS.SeAuditProcessCreationInfo (pointer to OBJECT_NAME_INFORMATION).
    pub eprocess_se_audit: u64,
    /// PEB.ProcessParameters.
    pub peb_params: u64,
    /// RTL_USER_PROCESS_PARAMETERS.ImagePathName.
    pub params_image_path: u64,
    /// RTL_USER_PROCESS_PARAMETERS.CommandLine.
    pub params_command_line: u64,
    /// PEB32.ProcessParameters.
    pub peb32_params: u64,
    /// RTL_USER_PROCESS_PARAMETERS32.ImagePathName.
    pub params32_image_path: u64,
    /// RTL_USER_PROCESS_PARAMETERS32.CommandLine.
    pub params32_command_line: u64,
    /// TEB.ClientId.
    pub teb_client_id: u64,
}

/// The fields every x64 build shares.
const BASE: Layout = Layout {
    name: "",
    kpcr_self: 0x18,
    kpcr_idt_base: 0x38,
    kpcr_current_thread: 0x188,
    kthread_apc_process: 0xb8,
    kthread_process: 0x220,
    kthread_teb: 0xf0,
    ethread_cid: 0x478,
    kprocess_dtb: 0x28,
    eprocess_pid: 0x440,
    eprocess_ppid: 0x540,
    eprocess_peb: 0x550,
    eprocess_wow64: 0x580,
    wow64_is_ewow64: true,
    eprocess_image_file_name: 0x5a8,
    eprocess_se_audit: 0x5c0,
    peb_params: 0x20,
    params_image_path: 0x60,
    params_command_line: 0x70,
    peb32_params: 0x10,
    params32_image_path: 0x38,
    params32_command_line: 0x40,
    teb_client_id: 0x40,
};

/// Windows 7 SP1 x64 (7600/7601).
pub const WIN7_SP1: Layout = Layout {
    name: "Windows 7 SP1 x64",
    kthread_apc_process: 0x70,
    kthread_process: 0x210,
    kthread_teb: 0xb8,
    ethread_cid: 0x3b8,
    eprocess_pid: 0x180,
    eprocess_ppid: 0x290,
    eprocess_peb: 0x338,
    eprocess_wow64: 0x320,
    wow64_is_ewow64: false,
    eprocess_image_file_name: 0x2e0,
    eprocess_se_audit: 0x390,
    ..BASE
};

/// Windows 10 2004-22H2 x64 (19041-19045).
pub const WIN10_2004_22H2: Layout = Layout {
    name: "Windows 10 2004-22H2 x64",
    ..BASE
};

/// Windows 11 22H2/23H2 x64 (22621/22631).
pub const WIN11_22H2_23H2: Layout = Layout {
    name: "Windows 11 22H2/23H2 x64",
    ethread_cid: 0x4c8,
    ..BASE
};

/// Windows 11 24H2 x64 (26100).
pub const WIN11_24H2: Layout = Layout {
    name: "Windows 11 24H2 x64",
    ethread_cid: 0x508,
    eprocess_pid: 0x1d0,
    eprocess_ppid: 0x2d0,
    eprocess_peb: 0x2e0,
    eprocess_wow64: 0x310,
    eprocess_image_file_name: 0x338,
    eprocess_se_audit: 0x350,
    ..BASE
};

/// The built-in layout for `build` (low 16 bits of `NtBuildNumber`).
pub fn for_build(build: u32) -> Option<Layout> {
    match build & 0xffff {
        7600 | 7601 => Some(WIN7_SP1),
        19041..=19045 => Some(WIN10_2004_22H2),
        22621 | 22631 => Some(WIN11_22H2_23H2),
        26100 => Some(WIN11_24H2),
        _ => None,
    }
}

/// A layout with only the fields that never moved (KPCR, PEB, parameters, TEB), for reading
/// the parts of a guest that do not depend on the build; the EPROCESS fields are the
/// Windows 10 ones.
pub const fn generic() -> Layout {
    BASE
}
