//! Prototypes of the decoded NT calls (data): parameter names (snake_case of the WDK names)
//! and how each is decoded.
//!
//! Parameter order and direction from the WDK headers (ddk/ntifs.h, ddk/wdm.h, ddk/ntddk.h as
//! shipped by mingw-w64 10.0.0, where the calls are declared as `Nt*`/`Zw*`) and, for calls the
//! WDK does not declare (NtCreateUserProcess, NtCreateThreadEx, NtCreateProcessEx,
//! NtReadVirtualMemory, NtWriteVirtualMemory, NtResumeThread, NtSuspendThread,
//! NtGetContextThread, NtSetContextThread, NtQueueApcThread, NtDelayExecution, ...), from the
//! public phnt headers (processhacker/phnt ntpsapi.h, ntmmapi.h, ntexapi.h). The
//! `prototype_parameter_counts` test compares the counts with the WDK headers when installed.

use super::{access::AccessKind as A, flags as F, Kind::*, Prototype};

macro_rules! p {
    ($name:literal, [$(($arg:literal, $kind:expr)),* $(,)?]) => {
        Prototype { name: $name, params: &[$(($arg, $kind)),*] }
    };
}

/// Every prototype, sorted by name.
pub const PROTOTYPES: &[Prototype] = &[
    p!(
        "NtAdjustPrivilegesToken",
        [
            ("token_handle", Handle),
            ("disable_all_privileges", Bool),
            ("new_state", Ptr),
            ("buffer_length", ULong),
            ("previous_state", PtrOut),
            ("return_length", ULongOut)
        ]
    ),
    p!(
        "NtAllocateVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("zero_bits", Hex),
            ("region_size", SizeInOut),
            ("allocation_type", Flags(F::MEM_TYPE)),
            ("protect", Flags(F::PAGE_PROTECTION))
        ]
    ),
    p!("NtClearEvent", [("event_handle", Handle)]),
    p!("NtClose", [("handle", Handle)]),
    p!(
        "NtContinue",
        [("context_record", Ptr), ("test_alert", Bool)]
    ),
    p!(
        "NtCreateDirectoryObject",
        [
            ("directory_handle", HandleOut),
            ("desired_access", Access(A::Directory)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtCreateEvent",
        [
            ("event_handle", HandleOut),
            ("desired_access", Access(A::Event)),
            ("object_attributes", ObjAttr),
            ("event_type", Enum(F::EVENT_TYPE)),
            ("initial_state", Bool)
        ]
    ),
    p!(
        "NtCreateFile",
        [
            ("file_handle", HandleOut),
            ("desired_access", Access(A::File)),
            ("object_attributes", ObjAttr),
            ("io_status_block", IoStatus),
            ("allocation_size", LargeInt),
            ("file_attributes", Flags(F::FILE_ATTRIBUTES)),
            ("share_access", Flags(F::FILE_SHARE)),
            ("create_disposition", Enum(F::CREATE_DISPOSITION)),
            ("create_options", Flags(F::CREATE_OPTIONS)),
            ("ea_buffer", Ptr),
            ("ea_length", ULong)
        ]
    ),
    p!(
        "NtCreateKey",
        [
            ("key_handle", HandleOut),
            ("desired_access", Access(A::Key)),
            ("object_attributes", ObjAttr),
            ("title_index", ULong),
            ("class", UStr),
            ("create_options", Flags(F::REG_OPTIONS)),
            ("disposition", EnumOut(F::REG_DISPOSITION))
        ]
    ),
    p!(
        "NtCreateMutant",
        [
            ("mutant_handle", HandleOut),
            ("desired_access", Access(A::Mutant)),
            ("object_attributes", ObjAttr),
            ("initial_owner", Bool)
        ]
    ),
    p!(
        "NtCreateNamedPipeFile",
        [
            ("file_handle", HandleOut),
            ("desired_access", Access(A::File)),
            ("object_attributes", ObjAttr),
            ("io_status_block", IoStatus),
            ("share_access", Flags(F::FILE_SHARE)),
            ("create_disposition", Enum(F::CREATE_DISPOSITION)),
            ("create_options", Flags(F::CREATE_OPTIONS)),
            ("named_pipe_type", ULong),
            ("read_mode", ULong),
            ("completion_mode", ULong),
            ("maximum_instances", ULong),
            ("inbound_quota", ULong),
            ("outbound_quota", ULong),
            ("default_timeout", LargeInt)
        ]
    ),
    p!(
        "NtCreateProcess",
        [
            ("process_handle", HandleOut),
            ("desired_access", Access(A::Process)),
            ("object_attributes", ObjAttr),
            ("parent_process", Handle),
            ("inherit_object_table", Bool),
            ("section_handle", Handle),
            ("debug_port", Handle),
            ("token_handle", Handle)
        ]
    ),
    p!(
        "NtCreateProcessEx",
        [
            ("process_handle", HandleOut),
            ("desired_access", Access(A::Process)),
            ("object_attributes", ObjAttr),
            ("parent_process", Handle),
            ("flags", Hex),
            ("section_handle", Handle),
            ("debug_port", Handle),
            ("token_handle", Handle),
            ("reserved", ULong)
        ]
    ),
    p!(
        "NtCreateSection",
        [
            ("section_handle", HandleOut),
            ("desired_access", Access(A::Section)),
            ("object_attributes", ObjAttr),
            ("maximum_size", LargeInt),
            ("section_page_protection", Flags(F::PAGE_PROTECTION)),
            ("allocation_attributes", Flags(F::SEC_ATTRIBUTES)),
            ("file_handle", Handle)
        ]
    ),
    p!(
        "NtCreateSemaphore",
        [
            ("semaphore_handle", HandleOut),
            ("desired_access", Access(A::Semaphore)),
            ("object_attributes", ObjAttr),
            ("initial_count", Int),
            ("maximum_count", Int)
        ]
    ),
    p!(
        "NtCreateThread",
        [
            ("thread_handle", HandleOut),
            ("desired_access", Access(A::Thread)),
            ("object_attributes", ObjAttr),
            ("process_handle", Handle),
            ("client_id", ClientIdOut),
            ("thread_context", Ptr),
            ("initial_teb", Ptr),
            ("create_suspended", Bool)
        ]
    ),
    p!(
        "NtCreateThreadEx",
        [
            ("thread_handle", HandleOut),
            ("desired_access", Access(A::Thread)),
            ("object_attributes", ObjAttr),
            ("process_handle", Handle),
            ("start_routine", Ptr),
            ("argument", Ptr),
            ("create_flags", Hex),
            ("zero_bits", Hex),
            ("stack_size", Size),
            ("maximum_stack_size", Size),
            ("attribute_list", Ptr)
        ]
    ),
    p!(
        "NtCreateUserProcess",
        [
            ("process_handle", HandleOut),
            ("thread_handle", HandleOut),
            ("process_desired_access", Access(A::Process)),
            ("thread_desired_access", Access(A::Thread)),
            ("process_object_attributes", ObjAttr),
            ("thread_object_attributes", ObjAttr),
            ("process_flags", Hex),
            ("thread_flags", Hex),
            ("process_parameters", Ptr),
            ("create_info", Ptr),
            ("attribute_list", Ptr)
        ]
    ),
    p!(
        "NtDelayExecution",
        [("alertable", Bool), ("delay_interval", LargeInt)]
    ),
    p!("NtDeleteFile", [("object_attributes", ObjAttr)]),
    p!("NtDeleteKey", [("key_handle", Handle)]),
    p!(
        "NtDeleteValueKey",
        [("key_handle", Handle), ("value_name", UStr)]
    ),
    p!(
        "NtDeviceIoControlFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("io_control_code", Hex),
            ("input_buffer", Ptr),
            ("input_buffer_length", ULong),
            ("output_buffer", PtrOut),
            ("output_buffer_length", ULong)
        ]
    ),
    p!(
        "NtDuplicateObject",
        [
            ("source_process_handle", Handle),
            ("source_handle", Handle),
            ("target_process_handle", Handle),
            ("target_handle", HandleOut),
            ("desired_access", Access(A::Generic)),
            ("handle_attributes", Flags(F::OBJ_ATTRIBUTES)),
            ("options", Flags(F::DUPLICATE_OPTIONS))
        ]
    ),
    p!(
        "NtDuplicateToken",
        [
            ("existing_token_handle", Handle),
            ("desired_access", Access(A::Token)),
            ("object_attributes", ObjAttr),
            ("effective_only", Bool),
            ("token_type", ULong),
            ("new_token_handle", HandleOut)
        ]
    ),
    p!(
        "NtEnumerateKey",
        [
            ("key_handle", Handle),
            ("index", ULong),
            ("key_information_class", Enum(F::KEY_INFORMATION_CLASS)),
            ("key_information", PtrOut),
            ("length", ULong),
            ("result_length", ULongOut)
        ]
    ),
    p!(
        "NtEnumerateValueKey",
        [
            ("key_handle", Handle),
            ("index", ULong),
            (
                "key_value_information_class",
                Enum(F::KEY_VALUE_INFORMATION_CLASS)
            ),
            ("key_value_information", PtrOut),
            ("length", ULong),
            ("result_length", ULongOut)
        ]
    ),
    p!(
        "NtFlushBuffersFile",
        [("file_handle", Handle), ("io_status_block", IoStatus)]
    ),
    p!("NtFlushKey", [("key_handle", Handle)]),
    p!(
        "NtFlushVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("region_size", SizeInOut),
            ("io_status", IoStatus)
        ]
    ),
    p!(
        "NtFreeVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("region_size", SizeInOut),
            ("free_type", Flags(F::MEM_TYPE))
        ]
    ),
    p!(
        "NtFsControlFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("fs_control_code", Hex),
            ("input_buffer", Ptr),
            ("input_buffer_length", ULong),
            ("output_buffer", PtrOut),
            ("output_buffer_length", ULong)
        ]
    ),
    p!(
        "NtGetContextThread",
        [("thread_handle", Handle), ("thread_context", PtrOut)]
    ),
    p!("NtLoadDriver", [("driver_service_name", UStr)]),
    p!(
        "NtLoadKey",
        [("target_key", ObjAttr), ("source_file", ObjAttr)]
    ),
    p!(
        "NtLockFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("byte_offset", LargeInt),
            ("length", LargeInt),
            ("key", ULong),
            ("fail_immediately", Bool),
            ("exclusive_lock", Bool)
        ]
    ),
    p!(
        "NtLockVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("region_size", SizeInOut),
            ("map_type", Hex)
        ]
    ),
    p!(
        "NtMapViewOfSection",
        [
            ("section_handle", Handle),
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("zero_bits", Hex),
            ("commit_size", Size),
            ("section_offset", LargeInt),
            ("view_size", SizeInOut),
            ("inherit_disposition", Enum(F::SECTION_INHERIT)),
            ("allocation_type", Flags(F::MEM_TYPE)),
            ("win32_protect", Flags(F::PAGE_PROTECTION))
        ]
    ),
    p!(
        "NtNotifyChangeDirectoryFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("buffer", PtrOut),
            ("length", ULong),
            ("completion_filter", Hex),
            ("watch_tree", Bool)
        ]
    ),
    p!(
        "NtNotifyChangeKey",
        [
            ("key_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("completion_filter", Hex),
            ("watch_tree", Bool),
            ("buffer", PtrOut),
            ("buffer_size", ULong),
            ("asynchronous", Bool)
        ]
    ),
    p!(
        "NtOpenDirectoryObject",
        [
            ("directory_handle", HandleOut),
            ("desired_access", Access(A::Directory)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenEvent",
        [
            ("event_handle", HandleOut),
            ("desired_access", Access(A::Event)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenFile",
        [
            ("file_handle", HandleOut),
            ("desired_access", Access(A::File)),
            ("object_attributes", ObjAttr),
            ("io_status_block", IoStatus),
            ("share_access", Flags(F::FILE_SHARE)),
            ("open_options", Flags(F::CREATE_OPTIONS))
        ]
    ),
    p!(
        "NtOpenKey",
        [
            ("key_handle", HandleOut),
            ("desired_access", Access(A::Key)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenKeyEx",
        [
            ("key_handle", HandleOut),
            ("desired_access", Access(A::Key)),
            ("object_attributes", ObjAttr),
            ("open_options", Flags(F::REG_OPTIONS))
        ]
    ),
    p!(
        "NtOpenMutant",
        [
            ("mutant_handle", HandleOut),
            ("desired_access", Access(A::Mutant)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenProcess",
        [
            ("process_handle", HandleOut),
            ("desired_access", Access(A::Process)),
            ("object_attributes", ObjAttr),
            ("client_id", ClientId)
        ]
    ),
    p!(
        "NtOpenProcessToken",
        [
            ("process_handle", Handle),
            ("desired_access", Access(A::Token)),
            ("token_handle", HandleOut)
        ]
    ),
    p!(
        "NtOpenProcessTokenEx",
        [
            ("process_handle", Handle),
            ("desired_access", Access(A::Token)),
            ("handle_attributes", Flags(F::OBJ_ATTRIBUTES)),
            ("token_handle", HandleOut)
        ]
    ),
    p!(
        "NtOpenSection",
        [
            ("section_handle", HandleOut),
            ("desired_access", Access(A::Section)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenSemaphore",
        [
            ("semaphore_handle", HandleOut),
            ("desired_access", Access(A::Semaphore)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenSymbolicLinkObject",
        [
            ("link_handle", HandleOut),
            ("desired_access", Access(A::SymbolicLink)),
            ("object_attributes", ObjAttr)
        ]
    ),
    p!(
        "NtOpenThread",
        [
            ("thread_handle", HandleOut),
            ("desired_access", Access(A::Thread)),
            ("object_attributes", ObjAttr),
            ("client_id", ClientId)
        ]
    ),
    p!(
        "NtOpenThreadToken",
        [
            ("thread_handle", Handle),
            ("desired_access", Access(A::Token)),
            ("open_as_self", Bool),
            ("token_handle", HandleOut)
        ]
    ),
    p!(
        "NtOpenThreadTokenEx",
        [
            ("thread_handle", Handle),
            ("desired_access", Access(A::Token)),
            ("open_as_self", Bool),
            ("handle_attributes", Flags(F::OBJ_ATTRIBUTES)),
            ("token_handle", HandleOut)
        ]
    ),
    p!(
        "NtProtectVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("region_size", SizeInOut),
            ("new_protect", Flags(F::PAGE_PROTECTION)),
            ("old_protect", FlagsOut(F::PAGE_PROTECTION))
        ]
    ),
    p!(
        "NtQueryAttributesFile",
        [("object_attributes", ObjAttr), ("file_information", PtrOut)]
    ),
    p!(
        "NtQueryDirectoryFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("file_information", PtrOut),
            ("length", ULong),
            ("file_information_class", Enum(F::FILE_INFORMATION_CLASS)),
            ("return_single_entry", Bool),
            ("file_name", UStr),
            ("restart_scan", Bool)
        ]
    ),
    p!(
        "NtQueryFullAttributesFile",
        [("object_attributes", ObjAttr), ("file_information", PtrOut)]
    ),
    p!(
        "NtQueryInformationFile",
        [
            ("file_handle", Handle),
            ("io_status_block", IoStatus),
            ("file_information", PtrOut),
            ("length", ULong),
            ("file_information_class", Enum(F::FILE_INFORMATION_CLASS))
        ]
    ),
    p!(
        "NtQueryInformationProcess",
        [
            ("process_handle", Handle),
            (
                "process_information_class",
                Enum(F::PROCESS_INFORMATION_CLASS)
            ),
            ("process_information", PtrOut),
            ("process_information_length", ULong),
            ("return_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryInformationThread",
        [
            ("thread_handle", Handle),
            (
                "thread_information_class",
                Enum(F::THREAD_INFORMATION_CLASS)
            ),
            ("thread_information", PtrOut),
            ("thread_information_length", ULong),
            ("return_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryInformationToken",
        [
            ("token_handle", Handle),
            ("token_information_class", Enum(F::TOKEN_INFORMATION_CLASS)),
            ("token_information", PtrOut),
            ("token_information_length", ULong),
            ("return_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryKey",
        [
            ("key_handle", Handle),
            ("key_information_class", Enum(F::KEY_INFORMATION_CLASS)),
            ("key_information", PtrOut),
            ("length", ULong),
            ("result_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryObject",
        [
            ("handle", Handle),
            (
                "object_information_class",
                Enum(F::OBJECT_INFORMATION_CLASS)
            ),
            ("object_information", PtrOut),
            ("object_information_length", ULong),
            ("return_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryPerformanceCounter",
        [
            ("performance_counter", LargeIntOut),
            ("performance_frequency", LargeIntOut)
        ]
    ),
    p!(
        "NtQuerySection",
        [
            ("section_handle", Handle),
            (
                "section_information_class",
                Enum(F::SECTION_INFORMATION_CLASS)
            ),
            ("section_information", PtrOut),
            ("section_information_length", Size),
            ("return_length", SizeOut)
        ]
    ),
    p!(
        "NtQuerySymbolicLinkObject",
        [
            ("link_handle", Handle),
            ("link_target", UStrOut),
            ("returned_length", ULongOut)
        ]
    ),
    p!(
        "NtQuerySystemInformation",
        [
            (
                "system_information_class",
                Enum(F::SYSTEM_INFORMATION_CLASS)
            ),
            ("system_information", PtrOut),
            ("system_information_length", ULong),
            ("return_length", ULongOut)
        ]
    ),
    p!("NtQuerySystemTime", [("system_time", LargeIntOut)]),
    p!(
        "NtQueryValueKey",
        [
            ("key_handle", Handle),
            ("value_name", UStr),
            (
                "key_value_information_class",
                Enum(F::KEY_VALUE_INFORMATION_CLASS)
            ),
            ("key_value_information", PtrOut),
            ("length", ULong),
            ("result_length", ULongOut)
        ]
    ),
    p!(
        "NtQueryVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", Ptr),
            (
                "memory_information_class",
                Enum(F::MEMORY_INFORMATION_CLASS)
            ),
            ("memory_information", PtrOut),
            ("memory_information_length", Size),
            ("return_length", SizeOut)
        ]
    ),
    p!(
        "NtQueryVolumeInformationFile",
        [
            ("file_handle", Handle),
            ("io_status_block", IoStatus),
            ("fs_information", PtrOut),
            ("length", ULong),
            ("fs_information_class", Enum(F::FS_INFORMATION_CLASS))
        ]
    ),
    p!(
        "NtQueueApcThread",
        [
            ("thread_handle", Handle),
            ("apc_routine", Ptr),
            ("apc_argument1", Ptr),
            ("apc_argument2", Ptr),
            ("apc_argument3", Ptr)
        ]
    ),
    p!(
        "NtRaiseException",
        [
            ("exception_record", Ptr),
            ("context_record", Ptr),
            ("first_chance", Bool)
        ]
    ),
    p!(
        "NtReadFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("buffer", PtrOut),
            ("length", ULong),
            ("byte_offset", LargeInt),
            ("key", Ptr)
        ]
    ),
    p!(
        "NtReadVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", Ptr),
            ("buffer", PtrOut),
            ("buffer_size", Size),
            ("number_of_bytes_read", SizeOut)
        ]
    ),
    p!(
        "NtReleaseMutant",
        [("mutant_handle", Handle), ("previous_count", ULongOut)]
    ),
    p!(
        "NtReleaseSemaphore",
        [
            ("semaphore_handle", Handle),
            ("release_count", Int),
            ("previous_count", ULongOut)
        ]
    ),
    p!("NtRenameKey", [("key_handle", Handle), ("new_name", UStr)]),
    p!(
        "NtResetEvent",
        [("event_handle", Handle), ("previous_state", ULongOut)]
    ),
    p!("NtResumeProcess", [("process_handle", Handle)]),
    p!(
        "NtResumeThread",
        [
            ("thread_handle", Handle),
            ("previous_suspend_count", ULongOut)
        ]
    ),
    p!(
        "NtSaveKey",
        [("key_handle", Handle), ("file_handle", Handle)]
    ),
    p!(
        "NtSetContextThread",
        [("thread_handle", Handle), ("thread_context", Ptr)]
    ),
    p!(
        "NtSetEvent",
        [("event_handle", Handle), ("previous_state", ULongOut)]
    ),
    p!(
        "NtSetInformationFile",
        [
            ("file_handle", Handle),
            ("io_status_block", IoStatus),
            ("file_information", Ptr),
            ("length", ULong),
            ("file_information_class", Enum(F::FILE_INFORMATION_CLASS))
        ]
    ),
    p!(
        "NtSetInformationProcess",
        [
            ("process_handle", Handle),
            (
                "process_information_class",
                Enum(F::PROCESS_INFORMATION_CLASS)
            ),
            ("process_information", Ptr),
            ("process_information_length", ULong)
        ]
    ),
    p!(
        "NtSetInformationThread",
        [
            ("thread_handle", Handle),
            (
                "thread_information_class",
                Enum(F::THREAD_INFORMATION_CLASS)
            ),
            ("thread_information", Ptr),
            ("thread_information_length", ULong)
        ]
    ),
    p!(
        "NtSetInformationToken",
        [
            ("token_handle", Handle),
            ("token_information_class", Enum(F::TOKEN_INFORMATION_CLASS)),
            ("token_information", Ptr),
            ("token_information_length", ULong)
        ]
    ),
    p!(
        "NtSetValueKey",
        [
            ("key_handle", Handle),
            ("value_name", UStr),
            ("title_index", ULong),
            ("type", Enum(F::REG_TYPE)),
            ("data", Ptr),
            ("data_size", ULong)
        ]
    ),
    p!("NtSuspendProcess", [("process_handle", Handle)]),
    p!(
        "NtSuspendThread",
        [
            ("thread_handle", Handle),
            ("previous_suspend_count", ULongOut)
        ]
    ),
    p!(
        "NtTerminateProcess",
        [("process_handle", Handle), ("exit_status", Status)]
    ),
    p!(
        "NtTerminateThread",
        [("thread_handle", Handle), ("exit_status", Status)]
    ),
    p!("NtTestAlert", []),
    p!("NtUnloadDriver", [("driver_service_name", UStr)]),
    p!(
        "NtUnlockFile",
        [
            ("file_handle", Handle),
            ("io_status_block", IoStatus),
            ("byte_offset", LargeInt),
            ("length", LargeInt),
            ("key", ULong)
        ]
    ),
    p!(
        "NtUnlockVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", PtrInOut),
            ("region_size", SizeInOut),
            ("map_type", Hex)
        ]
    ),
    p!(
        "NtUnmapViewOfSection",
        [("process_handle", Handle), ("base_address", Ptr)]
    ),
    p!(
        "NtWaitForMultipleObjects",
        [
            ("count", ULong),
            ("handles", Ptr),
            ("wait_type", Enum(F::WAIT_TYPE)),
            ("alertable", Bool),
            ("timeout", LargeInt)
        ]
    ),
    p!(
        "NtWaitForSingleObject",
        [
            ("handle", Handle),
            ("alertable", Bool),
            ("timeout", LargeInt)
        ]
    ),
    p!(
        "NtWriteFile",
        [
            ("file_handle", Handle),
            ("event", Handle),
            ("apc_routine", Ptr),
            ("apc_context", Ptr),
            ("io_status_block", IoStatus),
            ("buffer", Ptr),
            ("length", ULong),
            ("byte_offset", LargeInt),
            ("key", Ptr)
        ]
    ),
    p!(
        "NtWriteVirtualMemory",
        [
            ("process_handle", Handle),
            ("base_address", Ptr),
            ("buffer", Ptr),
            ("buffer_size", Size),
            ("number_of_bytes_written", SizeOut)
        ]
    ),
    p!("NtYieldExecution", []),
];
