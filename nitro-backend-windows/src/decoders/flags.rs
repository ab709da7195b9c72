//! Flag and enumeration tables of NT call arguments (data).
//!
//! Values from the Windows SDK/WDK headers as shipped by mingw-w64 10.0.0: ntdef.h (OBJ_*),
//! winnt.h (FILE_ATTRIBUTE_*, FILE_SHARE_*, PAGE_*, MEM_*, SEC_*, REG_* value types and
//! options), ddk/wdm.h and ddk/ntifs.h (FILE_SUPERSEDE ... FILE_OVERWRITE_IF, FILE_* create
//! options, the *_INFORMATION_CLASS enumerations). The `header_constants` test compares every
//! named value here with those headers when they are installed.

/// A table of (value, name).
pub type Table = &'static [(u64, &'static str)];

/// OBJECT_ATTRIBUTES.Attributes.
pub const OBJ_ATTRIBUTES: Table = &[
    (0x0002, "OBJ_INHERIT"),
    (0x0010, "OBJ_PERMANENT"),
    (0x0020, "OBJ_EXCLUSIVE"),
    (0x0040, "OBJ_CASE_INSENSITIVE"),
    (0x0080, "OBJ_OPENIF"),
    (0x0100, "OBJ_OPENLINK"),
    (0x0200, "OBJ_KERNEL_HANDLE"),
    (0x0400, "OBJ_FORCE_ACCESS_CHECK"),
    (0x0800, "OBJ_IGNORE_IMPERSONATED_DEVICEMAP"),
    (0x1000, "OBJ_DONT_REPARSE"),
];

/// FILE_ATTRIBUTE_*.
pub const FILE_ATTRIBUTES: Table = &[
    (0x0001, "FILE_ATTRIBUTE_READONLY"),
    (0x0002, "FILE_ATTRIBUTE_HIDDEN"),
    (0x0004, "FILE_ATTRIBUTE_SYSTEM"),
    (0x0010, "FILE_ATTRIBUTE_DIRECTORY"),
    (0x0020, "FILE_ATTRIBUTE_ARCHIVE"),
    (0x0040, "FILE_ATTRIBUTE_DEVICE"),
    (0x0080, "FILE_ATTRIBUTE_NORMAL"),
    (0x0100, "FILE_ATTRIBUTE_TEMPORARY"),
    (0x0200, "FILE_ATTRIBUTE_SPARSE_FILE"),
    (0x0400, "FILE_ATTRIBUTE_REPARSE_POINT"),
    (0x0800, "FILE_ATTRIBUTE_COMPRESSED"),
    (0x1000, "FILE_ATTRIBUTE_OFFLINE"),
    (0x2000, "FILE_ATTRIBUTE_NOT_CONTENT_INDEXED"),
    (0x4000, "FILE_ATTRIBUTE_ENCRYPTED"),
];

/// FILE_SHARE_*.
pub const FILE_SHARE: Table = &[
    (0x1, "FILE_SHARE_READ"),
    (0x2, "FILE_SHARE_WRITE"),
    (0x4, "FILE_SHARE_DELETE"),
];

/// CreateDisposition of NtCreateFile.
pub const CREATE_DISPOSITION: Table = &[
    (0, "FILE_SUPERSEDE"),
    (1, "FILE_OPEN"),
    (2, "FILE_CREATE"),
    (3, "FILE_OPEN_IF"),
    (4, "FILE_OVERWRITE"),
    (5, "FILE_OVERWRITE_IF"),
];

/// CreateOptions / OpenOptions.
pub const CREATE_OPTIONS: Table = &[
    (0x0000_0001, "FILE_DIRECTORY_FILE"),
    (0x0000_0002, "FILE_WRITE_THROUGH"),
    (0x0000_0004, "FILE_SEQUENTIAL_ONLY"),
    (0x0000_0008, "FILE_NO_INTERMEDIATE_BUFFERING"),
    (0x0000_0010, "FILE_SYNCHRONOUS_IO_ALERT"),
    (0x0000_0020, "FILE_SYNCHRONOUS_IO_NONALERT"),
    (0x0000_0040, "FILE_NON_DIRECTORY_FILE"),
    (0x0000_0080, "FILE_CREATE_TREE_CONNECTION"),
    (0x0000_0100, "FILE_COMPLETE_IF_OPLOCKED"),
    (0x0000_0200, "FILE_NO_EA_KNOWLEDGE"),
    (0x0000_0400, "FILE_OPEN_REMOTE_INSTANCE"),
    (0x0000_0800, "FILE_RANDOM_ACCESS"),
    (0x0000_1000, "FILE_DELETE_ON_CLOSE"),
    (0x0000_2000, "FILE_OPEN_BY_FILE_ID"),
    (0x0000_4000, "FILE_OPEN_FOR_BACKUP_INTENT"),
    (0x0000_8000, "FILE_NO_COMPRESSION"),
    (0x0001_0000, "FILE_OPEN_REQUIRING_OPLOCK"),
    (0x0010_0000, "FILE_RESERVE_OPFILTER"),
    (0x0020_0000, "FILE_OPEN_REPARSE_POINT"),
    (0x0040_0000, "FILE_OPEN_NO_RECALL"),
    (0x0080_0000, "FILE_OPEN_FOR_FREE_SPACE_QUERY"),
];

/// PAGE_* protections.
pub const PAGE_PROTECTION: Table = &[
    (0x001, "PAGE_NOACCESS"),
    (0x002, "PAGE_READONLY"),
    (0x004, "PAGE_READWRITE"),
    (0x008, "PAGE_WRITECOPY"),
    (0x010, "PAGE_EXECUTE"),
    (0x020, "PAGE_EXECUTE_READ"),
    (0x040, "PAGE_EXECUTE_READWRITE"),
    (0x080, "PAGE_EXECUTE_WRITECOPY"),
    (0x100, "PAGE_GUARD"),
    (0x200, "PAGE_NOCACHE"),
    (0x400, "PAGE_WRITECOMBINE"),
];

/// MEM_* allocation and free types.
pub const MEM_TYPE: Table = &[
    (0x0000_1000, "MEM_COMMIT"),
    (0x0000_2000, "MEM_RESERVE"),
    (0x0000_4000, "MEM_DECOMMIT"),
    (0x0000_8000, "MEM_RELEASE"),
    (0x0008_0000, "MEM_RESET"),
    (0x0010_0000, "MEM_TOP_DOWN"),
    (0x0020_0000, "MEM_WRITE_WATCH"),
    (0x0040_0000, "MEM_PHYSICAL"),
    (0x0080_0000, "MEM_ROTATE"),
    (0x0100_0000, "MEM_RESET_UNDO"),
    (0x2000_0000, "MEM_LARGE_PAGES"),
    (0x8000_0000, "MEM_4MB_PAGES"),
];

/// SEC_* section attributes.
pub const SEC_ATTRIBUTES: Table = &[
    (0x0080_0000, "SEC_FILE"),
    (0x0100_0000, "SEC_IMAGE"),
    (0x0200_0000, "SEC_PROTECTED_IMAGE"),
    (0x0400_0000, "SEC_RESERVE"),
    (0x0800_0000, "SEC_COMMIT"),
    (0x1000_0000, "SEC_NOCACHE"),
    (0x4000_0000, "SEC_WRITECOMBINE"),
    (0x8000_0000, "SEC_LARGE_PAGES"),
];

/// Registry value types.
pub const REG_TYPE: Table = &[
    (0, "REG_NONE"),
    (1, "REG_SZ"),
    (2, "REG_EXPAND_SZ"),
    (3, "REG_BINARY"),
    (4, "REG_DWORD"),
    (5, "REG_DWORD_BIG_ENDIAN"),
    (6, "REG_LINK"),
    (7, "REG_MULTI_SZ"),
    (8, "REG_RESOURCE_LIST"),
    (9, "REG_FULL_RESOURCE_DESCRIPTOR"),
    (10, "REG_RESOURCE_REQUIREMENTS_LIST"),
    (11, "REG_QWORD"),
];

/// REG_OPTION_* of NtCreateKey / NtOpenKeyEx.
pub const REG_OPTIONS: Table = &[
    (0x1, "REG_OPTION_VOLATILE"),
    (0x2, "REG_OPTION_CREATE_LINK"),
    (0x4, "REG_OPTION_BACKUP_RESTORE"),
    (0x8, "REG_OPTION_OPEN_LINK"),
];

/// Disposition returned by NtCreateKey.
pub const REG_DISPOSITION: Table = &[(1, "REG_CREATED_NEW_KEY"), (2, "REG_OPENED_EXISTING_KEY")];

/// SECTION_INHERIT of NtMapViewOfSection.
pub const SECTION_INHERIT: Table = &[(1, "ViewShare"), (2, "ViewUnmap")];

/// DUPLICATE_* options of NtDuplicateObject.
pub const DUPLICATE_OPTIONS: Table = &[
    (0x1, "DUPLICATE_CLOSE_SOURCE"),
    (0x2, "DUPLICATE_SAME_ACCESS"),
    (0x4, "DUPLICATE_SAME_ATTRIBUTES"),
];

/// WAIT_TYPE of NtWaitForMultipleObjects.
pub const WAIT_TYPE: Table = &[(0, "WaitAll"), (1, "WaitAny")];

/// EVENT_TYPE.
pub const EVENT_TYPE: Table = &[(0, "NotificationEvent"), (1, "SynchronizationEvent")];

/// KPROCESSOR_MODE / BOOLEAN-like mode arguments.
pub const PROCESSOR_MODE: Table = &[(0, "KernelMode"), (1, "UserMode")];

/// FILE_INFORMATION_CLASS (the common values; wdm.h / ntifs.h).
pub const FILE_INFORMATION_CLASS: Table = &[
    (1, "FileDirectoryInformation"),
    (2, "FileFullDirectoryInformation"),
    (3, "FileBothDirectoryInformation"),
    (4, "FileBasicInformation"),
    (5, "FileStandardInformation"),
    (6, "FileInternalInformation"),
    (7, "FileEaInformation"),
    (8, "FileAccessInformation"),
    (9, "FileNameInformation"),
    (10, "FileRenameInformation"),
    (11, "FileLinkInformation"),
    (12, "FileNamesInformation"),
    (13, "FileDispositionInformation"),
    (14, "FilePositionInformation"),
    (15, "FileFullEaInformation"),
    (16, "FileModeInformation"),
    (17, "FileAlignmentInformation"),
    (18, "FileAllInformation"),
    (19, "FileAllocationInformation"),
    (20, "FileEndOfFileInformation"),
    (21, "FileAlternateNameInformation"),
    (22, "FileStreamInformation"),
    (23, "FilePipeInformation"),
    (24, "FilePipeLocalInformation"),
    (25, "FilePipeRemoteInformation"),
    (26, "FileMailslotQueryInformation"),
    (27, "FileMailslotSetInformation"),
    (28, "FileCompressionInformation"),
    (29, "FileObjectIdInformation"),
    (30, "FileCompletionInformation"),
    (31, "FileMoveClusterInformation"),
    (32, "FileQuotaInformation"),
    (33, "FileReparsePointInformation"),
    (34, "FileNetworkOpenInformation"),
    (35, "FileAttributeTagInformation"),
    (36, "FileTrackingInformation"),
    (37, "FileIdBothDirectoryInformation"),
    (38, "FileIdFullDirectoryInformation"),
    (39, "FileValidDataLengthInformation"),
    (40, "FileShortNameInformation"),
];

/// FS_INFORMATION_CLASS.
pub const FS_INFORMATION_CLASS: Table = &[
    (1, "FileFsVolumeInformation"),
    (2, "FileFsLabelInformation"),
    (3, "FileFsSizeInformation"),
    (4, "FileFsDeviceInformation"),
    (5, "FileFsAttributeInformation"),
    (6, "FileFsControlInformation"),
    (7, "FileFsFullSizeInformation"),
    (8, "FileFsObjectIdInformation"),
    (9, "FileFsDriverPathInformation"),
    (10, "FileFsVolumeFlagsInformation"),
    (11, "FileFsSectorSizeInformation"),
];

/// PROCESSINFOCLASS (the documented values; winternl.h / ntddk.h).
pub const PROCESS_INFORMATION_CLASS: Table = &[
    (0, "ProcessBasicInformation"),
    (1, "ProcessQuotaLimits"),
    (2, "ProcessIoCounters"),
    (3, "ProcessVmCounters"),
    (4, "ProcessTimes"),
    (5, "ProcessBasePriority"),
    (6, "ProcessRaisePriority"),
    (7, "ProcessDebugPort"),
    (8, "ProcessExceptionPort"),
    (9, "ProcessAccessToken"),
    (10, "ProcessLdtInformation"),
    (11, "ProcessLdtSize"),
    (12, "ProcessDefaultHardErrorMode"),
    (13, "ProcessIoPortHandlers"),
    (14, "ProcessPooledUsageAndLimits"),
    (15, "ProcessWorkingSetWatch"),
    (16, "ProcessUserModeIOPL"),
    (17, "ProcessEnableAlignmentFaultFixup"),
    (18, "ProcessPriorityClass"),
    (19, "ProcessWx86Information"),
    (20, "ProcessHandleCount"),
    (21, "ProcessAffinityMask"),
    (22, "ProcessPriorityBoost"),
    (23, "ProcessDeviceMap"),
    (24, "ProcessSessionInformation"),
    (25, "ProcessForegroundInformation"),
    (26, "ProcessWow64Information"),
    (27, "ProcessImageFileName"),
    (28, "ProcessLUIDDeviceMapsEnabled"),
    (29, "ProcessBreakOnTermination"),
    (30, "ProcessDebugObjectHandle"),
    (31, "ProcessDebugFlags"),
    (32, "ProcessHandleTracing"),
    (33, "ProcessIoPriority"),
    (34, "ProcessExecuteFlags"),
    (35, "ProcessTlsInformation"),
    (36, "ProcessCookie"),
    (37, "ProcessImageInformation"),
    (38, "ProcessCycleTime"),
    (39, "ProcessPagePriority"),
    (40, "ProcessInstrumentationCallback"),
    (41, "ProcessThreadStackAllocation"),
    (42, "ProcessWorkingSetWatchEx"),
    (43, "ProcessImageFileNameWin32"),
    (44, "ProcessImageFileMapping"),
    (45, "ProcessAffinityUpdateMode"),
    (46, "ProcessMemoryAllocationMode"),
    (47, "ProcessGroupInformation"),
    (48, "ProcessTokenVirtualizationEnabled"),
    (49, "ProcessConsoleHostProcess"),
    (50, "ProcessWindowInformation"),
];

/// THREADINFOCLASS (the documented values).
pub const THREAD_INFORMATION_CLASS: Table = &[
    (0, "ThreadBasicInformation"),
    (1, "ThreadTimes"),
    (2, "ThreadPriority"),
    (3, "ThreadBasePriority"),
    (4, "ThreadAffinityMask"),
    (5, "ThreadImpersonationToken"),
    (6, "ThreadDescriptorTableEntry"),
    (7, "ThreadEnableAlignmentFaultFixup"),
    (8, "ThreadEventPair"),
    (9, "ThreadQuerySetWin32StartAddress"),
    (10, "ThreadZeroTlsCell"),
    (11, "ThreadPerformanceCount"),
    (12, "ThreadAmILastThread"),
    (13, "ThreadIdealProcessor"),
    (14, "ThreadPriorityBoost"),
    (15, "ThreadSetTlsArrayAddress"),
    (16, "ThreadIsIoPending"),
    (17, "ThreadHideFromDebugger"),
    (18, "ThreadBreakOnTermination"),
    (19, "ThreadSwitchLegacyState"),
    (20, "ThreadIsTerminated"),
];

/// KEY_VALUE_INFORMATION_CLASS.
pub const KEY_VALUE_INFORMATION_CLASS: Table = &[
    (0, "KeyValueBasicInformation"),
    (1, "KeyValueFullInformation"),
    (2, "KeyValuePartialInformation"),
    (3, "KeyValueFullInformationAlign64"),
    (4, "KeyValuePartialInformationAlign64"),
];

/// KEY_INFORMATION_CLASS.
pub const KEY_INFORMATION_CLASS: Table = &[
    (0, "KeyBasicInformation"),
    (1, "KeyNodeInformation"),
    (2, "KeyFullInformation"),
    (3, "KeyNameInformation"),
    (4, "KeyCachedInformation"),
    (5, "KeyFlagsInformation"),
    (6, "KeyVirtualizationInformation"),
    (7, "KeyHandleTagsInformation"),
];

/// TOKEN_INFORMATION_CLASS (winnt.h).
pub const TOKEN_INFORMATION_CLASS: Table = &[
    (1, "TokenUser"),
    (2, "TokenGroups"),
    (3, "TokenPrivileges"),
    (4, "TokenOwner"),
    (5, "TokenPrimaryGroup"),
    (6, "TokenDefaultDacl"),
    (7, "TokenSource"),
    (8, "TokenType"),
    (9, "TokenImpersonationLevel"),
    (10, "TokenStatistics"),
    (11, "TokenRestrictedSids"),
    (12, "TokenSessionId"),
    (13, "TokenGroupsAndPrivileges"),
    (14, "TokenSessionReference"),
    (15, "TokenSandBoxInert"),
    (16, "TokenAuditPolicy"),
    (17, "TokenOrigin"),
    (18, "TokenElevationType"),
    (19, "TokenLinkedToken"),
    (20, "TokenElevation"),
    (21, "TokenHasRestrictions"),
    (22, "TokenAccessInformation"),
    (23, "TokenVirtualizationAllowed"),
    (24, "TokenVirtualizationEnabled"),
    (25, "TokenIntegrityLevel"),
    (26, "TokenUIAccess"),
    (27, "TokenMandatoryPolicy"),
    (28, "TokenLogonSid"),
];

/// MEMORY_INFORMATION_CLASS.
pub const MEMORY_INFORMATION_CLASS: Table = &[
    (0, "MemoryBasicInformation"),
    (1, "MemoryWorkingSetInformation"),
    (2, "MemoryMappedFilenameInformation"),
];

/// SYSTEM_INFORMATION_CLASS (the documented values of winternl.h).
pub const SYSTEM_INFORMATION_CLASS: Table = &[
    (0, "SystemBasicInformation"),
    (2, "SystemPerformanceInformation"),
    (3, "SystemTimeOfDayInformation"),
    (5, "SystemProcessInformation"),
    (8, "SystemProcessorPerformanceInformation"),
    (11, "SystemModuleInformation"),
    (16, "SystemHandleInformation"),
    (21, "SystemFileCacheInformation"),
    (23, "SystemInterruptInformation"),
    (33, "SystemExceptionInformation"),
    (35, "SystemKernelDebuggerInformation"),
    (37, "SystemRegistryQuotaInformation"),
    (44, "SystemCurrentTimeZoneInformation"),
    (45, "SystemLookasideInformation"),
    (64, "SystemExtendedHandleInformation"),
    (70, "SystemCodeIntegrityInformation"),
    (90, "SystemProcessorPerformanceDistribution"),
];

/// OBJECT_INFORMATION_CLASS.
pub const OBJECT_INFORMATION_CLASS: Table = &[
    (0, "ObjectBasicInformation"),
    (1, "ObjectNameInformation"),
    (2, "ObjectTypeInformation"),
    (3, "ObjectTypesInformation"),
    (4, "ObjectHandleFlagInformation"),
];

/// SECTION_INFORMATION_CLASS.
pub const SECTION_INFORMATION_CLASS: Table = &[
    (0, "SectionBasicInformation"),
    (1, "SectionImageInformation"),
];

/// `a|b|0x10` for a bit-flag value (`0` when no bit is set).
pub fn render_flags(value: u64, table: Table) -> String {
    let mut left = value;
    let mut parts: Vec<String> = Vec::new();
    for &(bit, name) in table {
        if bit != 0 && left & bit == bit {
            parts.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 || parts.is_empty() {
        parts.push(if parts.is_empty() && left == 0 {
            "0".to_string()
        } else {
            format!("{left:#x}")
        });
    }
    parts.join("|")
}

/// The name of an enumeration value, or the number.
pub fn render_enum(value: u64, table: Table) -> String {
    table
        .iter()
        .find(|e| e.0 == value)
        .map_or_else(|| value.to_string(), |e| e.1.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        assert_eq!(render_flags(0x40, OBJ_ATTRIBUTES), "OBJ_CASE_INSENSITIVE");
        assert_eq!(
            render_flags(0x3, FILE_SHARE),
            "FILE_SHARE_READ|FILE_SHARE_WRITE"
        );
        assert_eq!(render_flags(0, FILE_SHARE), "0");
        assert_eq!(render_flags(0x3000, MEM_TYPE), "MEM_COMMIT|MEM_RESERVE");
        assert_eq!(
            render_flags(0x8000_0001, FILE_SHARE),
            "FILE_SHARE_READ|0x80000000"
        );
        assert_eq!(render_enum(1, CREATE_DISPOSITION), "FILE_OPEN");
        assert_eq!(render_enum(99, CREATE_DISPOSITION), "99");
        assert_eq!(
            render_flags(0x60, CREATE_OPTIONS),
            "FILE_SYNCHRONOUS_IO_NONALERT|FILE_NON_DIRECTORY_FILE"
        );
    }
}
