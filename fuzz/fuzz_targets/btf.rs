//! BTF from an attacker (a kernel's `.BTF` section), parsed and queried the way the Linux
//! backend does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_backend_linux::kernel::btf::Btf;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    for s in ["task_struct", "pt_regs", "tss_struct", "mm_struct"] {
        let _ = btf.struct_size(s);
        let _ = btf.member_offset(s, "comm");
        let _ = btf.member_offset(s, "thread_info.flags");
        let _ = btf.member_type_name(s, "mm");
    }
    let _ = btf.enum_variants("pid_type");
    for id in 0..(btf.len().min(1024) as u32) {
        let _ = btf.type_size(id);
        let _ = btf.type_name(id);
        let _ = btf.members(id).take(64).count();
    }
});
