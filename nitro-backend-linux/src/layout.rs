//! What the backend must know about one kernel build: symbol addresses and struct offsets,
//! taken from the kernel itself (kallsyms and BTF); a Volatility 3 ISF profile may stand in
//! for BTF ([`TypeInfo`]), never required.

use crate::{
    kernel::{btf::Btf, kallsyms::Kallsyms},
    LinuxError,
};

/// Offsets (bytes) of the kernel structures the backend reads, from BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// `task_struct.pid` (the thread id).
    pub task_pid: u64,
    /// `task_struct.tgid` (the process id).
    pub task_tgid: u64,
    /// `task_struct.comm` (16 bytes).
    pub task_comm: u64,
    /// `task_struct.real_parent`.
    pub task_real_parent: u64,
    /// `task_struct.mm`.
    pub task_mm: u64,
    /// `mm_struct.exe_file`, when the kernel has it.
    pub mm_exe_file: Option<u64>,
    /// `file.f_path` + `path.dentry`.
    pub file_dentry: Option<u64>,
    /// `file.f_path` + `path.mnt`.
    pub file_vfsmount: Option<u64>,
    /// `dentry.d_parent`.
    pub dentry_parent: Option<u64>,
    /// `dentry.d_name` + `qstr.name`.
    pub dentry_name: Option<u64>,
    /// `task_struct.thread_info.status` / flags (TS_COMPAT lives in `thread_info.status` on
    /// older kernels; unused when absent).
    pub pt_regs_size: u64,
    /// `pt_regs.sp`.
    pub pt_regs_sp: u64,
    /// `pt_regs.di`.
    pub pt_regs_di: u64,
    /// `pt_regs.orig_ax`.
    pub pt_regs_orig_ax: u64,
    /// `x86_hw_tss.sp0` inside `tss_struct.x86_tss`.
    pub tss_sp0: u64,
    /// `x86_hw_tss.sp2` inside `tss_struct.x86_tss`.
    pub tss_sp2: u64,
    /// Per-CPU offset of the current-task pointer (`current_task`, or
    /// `pcpu_hot` + `pcpu_hot.current_task` on 6.2+).
    pub percpu_current_task: u64,
    /// Per-CPU offset of `cpu_tss_rw`.
    pub percpu_cpu_tss_rw: u64,
    /// Per-CPU offset of `kstack_offset` (CONFIG_RANDOMIZE_KSTACK_OFFSET), if present.
    pub percpu_kstack_offset: Option<u64>,
    /// `pt_regs.ax`.
    pub pt_regs_ax: u64,
    /// `pt_regs.ip`.
    pub pt_regs_ip: u64,
    /// `pt_regs.bx`, `cx`, `dx`, `si`, `bp`: with `di`, the i386 argument registers.
    pub pt_regs_bx: u64,
    /// `pt_regs.cx`.
    pub pt_regs_cx: u64,
    /// `pt_regs.dx`.
    pub pt_regs_dx: u64,
    /// `pt_regs.si`.
    pub pt_regs_si: u64,
    /// `pt_regs.bp`.
    pub pt_regs_bp: u64,
    /// `pt_regs.r10`, `r8`, `r9`: with `di`, `si`, `dx`, the x86-64 argument registers
    /// (a handler reads its arguments from there: arch/x86/include/asm/syscall_wrapper.h).
    pub pt_regs_r10: u64,
    /// `pt_regs.r8`.
    pub pt_regs_r8: u64,
    /// `pt_regs.r9`.
    pub pt_regs_r9: u64,
    /// `pt_regs.cs`: the user code segment (0x23 = `__USER32_CS` for a 32-bit process,
    /// arch/x86/include/asm/segment.h).
    pub pt_regs_cs: u64,
    /// `task_struct.kstack_offset`, on kernels that keep the stack-offset randomization
    /// state per task (6.1.y and 6.12.y stable, 6.18+).
    pub task_kstack_offset: Option<u64>,
    /// `task_struct.stack` (the kernel stack's lowest address).
    pub task_stack: Option<u64>,
    /// Offset of the saved RAX in the x86-64 signal frame (`rt_sigframe.uc.uc_mcontext.ax`).
    pub sigframe_ax: u64,
}

/// A source of structure layouts: the kernel's BTF, or a Volatility 3 ISF profile.
pub trait TypeInfo {
    /// Where the layouts come from ("BTF", "ISF profile").
    fn source(&self) -> &'static str;
    /// Byte offset of `path` (`pid`, `x86_tss.sp0`) in struct `name`, looking through anonymous
    /// members.
    fn member_offset(&self, name: &str, path: &str) -> Result<u64, String>;
    /// Size of struct `name`.
    fn struct_size(&self, name: &str) -> Option<u64>;
    /// Per-CPU offset of a per-CPU variable, when the source records those.
    fn percpu_var(&self, _name: &str) -> Option<u64> {
        None
    }
}

impl TypeInfo for Btf {
    fn source(&self) -> &'static str {
        "BTF"
    }
    fn member_offset(&self, name: &str, path: &str) -> Result<u64, String> {
        Btf::member_offset(self, name, path).map_err(|e| e.to_string())
    }
    fn struct_size(&self, name: &str) -> Option<u64> {
        Btf::struct_size(self, name)
    }
    fn percpu_var(&self, name: &str) -> Option<u64> {
        self.datasec_var_offset(".data..percpu", name)
    }
}

fn need(btf: &dyn TypeInfo, s: &str, path: &str) -> Result<u64, LinuxError> {
    btf.member_offset(s, path)
        .map_err(|e| LinuxError::Layout(format!("{} has no {s}.{path}: {e}", btf.source())))
}

impl Offsets {
    /// Reads every offset from the layouts (the kernel's BTF, or an ISF profile) and per-CPU
    /// symbols from kallsyms.
    pub fn from_kernel(btf: &dyn TypeInfo, syms: &Kallsyms) -> Result<Self, LinuxError> {
        let percpu_current_task = match syms.lookup("current_task") {
            Some(off) => off,
            None => {
                let hot = syms.lookup("pcpu_hot").ok_or_else(|| {
                    LinuxError::Layout("neither current_task nor pcpu_hot in kallsyms".into())
                })?;
                hot + need(btf, "pcpu_hot", "current_task")?
            }
        };
        let percpu_cpu_tss_rw = syms
            .lookup("cpu_tss_rw")
            .ok_or_else(|| LinuxError::Layout("cpu_tss_rw not in kallsyms".into()))?;
        let tss = need(btf, "tss_struct", "x86_tss")?;
        let opt = |s: &str, p: &str| btf.member_offset(s, p).ok();
        let f_path = opt("file", "f_path");
        Ok(Offsets {
            task_pid: need(btf, "task_struct", "pid")?,
            task_tgid: need(btf, "task_struct", "tgid")?,
            task_comm: need(btf, "task_struct", "comm")?,
            task_real_parent: need(btf, "task_struct", "real_parent")?,
            task_mm: need(btf, "task_struct", "mm")?,
            mm_exe_file: opt("mm_struct", "exe_file"),
            file_dentry: f_path.and_then(|p| opt("path", "dentry").map(|d| p + d)),
            file_vfsmount: f_path.and_then(|p| opt("path", "mnt").map(|d| p + d)),
            dentry_parent: opt("dentry", "d_parent"),
            dentry_name: opt("dentry", "d_name").and_then(|n| opt("qstr", "name").map(|q| n + q)),
            pt_regs_size: btf.struct_size("pt_regs").ok_or_else(|| {
                LinuxError::Layout(format!("{} has no struct pt_regs", btf.source()))
            })?,
            pt_regs_sp: need(btf, "pt_regs", "sp")?,
            pt_regs_di: need(btf, "pt_regs", "di")?,
            pt_regs_orig_ax: need(btf, "pt_regs", "orig_ax")?,
            tss_sp0: tss + need(btf, "x86_hw_tss", "sp0")?,
            tss_sp2: tss + need(btf, "x86_hw_tss", "sp2")?,
            percpu_current_task,
            percpu_cpu_tss_rw,
            percpu_kstack_offset: syms
                .symbol("kstack_offset")
                .filter(|s| s.is_percpu)
                .map(|s| s.addr)
                .or_else(|| btf.percpu_var("kstack_offset")),
            pt_regs_ax: need(btf, "pt_regs", "ax")?,
            pt_regs_ip: need(btf, "pt_regs", "ip")?,
            pt_regs_bx: need(btf, "pt_regs", "bx")?,
            pt_regs_cx: need(btf, "pt_regs", "cx")?,
            pt_regs_dx: need(btf, "pt_regs", "dx")?,
            pt_regs_si: need(btf, "pt_regs", "si")?,
            pt_regs_bp: need(btf, "pt_regs", "bp")?,
            pt_regs_r10: need(btf, "pt_regs", "r10")?,
            pt_regs_r8: need(btf, "pt_regs", "r8")?,
            pt_regs_r9: need(btf, "pt_regs", "r9")?,
            pt_regs_cs: need(btf, "pt_regs", "cs")?,
            task_kstack_offset: opt("task_struct", "kstack_offset"),
            task_stack: opt("task_struct", "stack"),
            // arch/x86/include/asm/sigframe.h: rt_sigframe { pretcode; struct ucontext uc; ... };
            // uapi ucontext { uc_flags; uc_link; stack_t uc_stack (24); sigcontext uc_mcontext };
            // sigcontext_64: r8..r15, di, si, bp, bx, dx, ax -> 8 + 40 + 13 * 8 = 0x98.
            sigframe_ax: btf
                .member_offset("rt_sigframe", "uc.uc_mcontext.ax")
                .unwrap_or(0x98),
        })
    }
}

/// Symbol addresses (link-time, before the KASLR slide) the backend traps on or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbols {
    /// `entry_SYSCALL_64` and the address of the next symbol.
    pub entry_syscall_64: (u64, u64),
    /// `syscall_return_via_sysret` (the sysret exit path) and its end.
    pub sysret_exit: Option<(u64, u64)>,
    /// `swapgs_restore_regs_and_return_to_usermode` (the IRET exit path) and its end.
    pub iret_exit: (u64, u64),
    /// `__per_cpu_offset`.
    pub per_cpu_offset: u64,
    /// `sys_call_table`, if present.
    pub sys_call_table: Option<u64>,
    /// `ia32_sys_call_table`, if present.
    pub ia32_sys_call_table: Option<u64>,
    /// `randomize_kstack_offset` (a static key: its first `int` is the enable count).
    pub randomize_kstack_offset: Option<u64>,
    /// Kernel text: `[_stext, _etext)`.
    pub text: (u64, u64),
}

/// `[addr, next symbol)` for a symbol.
pub fn symbol_range(syms: &Kallsyms, name: &str) -> Option<(u64, u64)> {
    let start = syms.lookup(name)?;
    let end = syms
        .symbols()
        .filter(|s| s.addr > start)
        .map(|s| s.addr)
        .min()
        .unwrap_or(start + 0x1000);
    Some((start, end.min(start + 0x1000)))
}

/// `[addr, next symbol)` for a symbol address, at most `max` bytes long.
pub fn symbol_range_at(syms: &Kallsyms, start: u64, max: u64) -> Option<(u64, u64)> {
    let end = syms
        .symbols()
        .filter(|s| !s.is_percpu && s.addr > start)
        .map(|s| s.addr)
        .min()
        .unwrap_or(start + max);
    Some((start, end.min(start.saturating_add(max))))
}

impl Symbols {
    /// Looks the symbols up.
    pub fn from_kallsyms(syms: &Kallsyms) -> Result<Self, LinuxError> {
        let missing = |n: &str| LinuxError::Layout(format!("{n} not in kallsyms"));
        Ok(Symbols {
            // The entry watchpoint stops right after `pushq %gs:cpu_tss_rw+TSS_sp2`, past the
            // inner label entry_SYSCALL_64_safe_stack and before ..._after_hwframe
            // (arch/x86/entry/entry_64.S), so the range runs to after_hwframe.
            entry_syscall_64: {
                let start = syms
                    .lookup("entry_SYSCALL_64")
                    .ok_or_else(|| missing("entry_SYSCALL_64"))?;
                let end = syms
                    .lookup("entry_SYSCALL_64_after_hwframe")
                    .filter(|&e| e > start && e - start < 0x200)
                    .map_or(start + 0x80, |e| e + 1);
                (start, end)
            },
            sysret_exit: symbol_range(syms, "syscall_return_via_sysret"),
            iret_exit: symbol_range(syms, "swapgs_restore_regs_and_return_to_usermode")
                .ok_or_else(|| missing("swapgs_restore_regs_and_return_to_usermode"))?,
            per_cpu_offset: syms
                .lookup("__per_cpu_offset")
                .ok_or_else(|| missing("__per_cpu_offset"))?,
            sys_call_table: syms.lookup("sys_call_table"),
            ia32_sys_call_table: syms.lookup("ia32_sys_call_table"),
            randomize_kstack_offset: syms.lookup("randomize_kstack_offset"),
            text: (
                syms.lookup("_stext").ok_or_else(|| missing("_stext"))?,
                syms.lookup("_etext").ok_or_else(|| missing("_etext"))?,
            ),
        })
    }
}
