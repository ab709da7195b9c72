//! The current task and the process it belongs to, read from guest memory.

use nitro_mem::{VirtAddr, VirtRead};
use nitro_os::Process;

use crate::layout::Offsets;

/// Longest path the executable-path walk builds, and deepest directory nesting it follows.
const MAX_PATH: usize = 4096;
const MAX_DEPTH: usize = 64;

/// The `task_struct` running on the CPU whose per-CPU base is `percpu_base`.
pub fn current_task(mem: &dyn VirtRead, percpu_base: u64, off: &Offsets) -> Option<u64> {
    mem.read_u64(VirtAddr(percpu_base.wrapping_add(off.percpu_current_task)))
        .ok()
        .filter(|&t| t >= 0xffff_8000_0000_0000)
}

fn read_i32(mem: &dyn VirtRead, va: u64) -> Option<i32> {
    mem.read_u32(VirtAddr(va)).ok().map(|v| v as i32)
}

/// `task_struct.comm`: up to 16 bytes, NUL-terminated.
pub fn comm(mem: &dyn VirtRead, task: u64, off: &Offsets) -> String {
    let mut b = [0u8; 16];
    if mem
        .read_virt(VirtAddr(task.wrapping_add(off.task_comm)), &mut b)
        .is_err()
    {
        return String::from("?");
    }
    let n = b.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// Process identity of `task`: pid (tgid), tid (pid), parent's tgid, comm.
pub fn process(mem: &dyn VirtRead, task: u64, off: &Offsets) -> Process {
    let tid = read_i32(mem, task.wrapping_add(off.task_pid)).unwrap_or(-1);
    let pid = read_i32(mem, task.wrapping_add(off.task_tgid)).unwrap_or(-1);
    let ppid = mem
        .read_u64(VirtAddr(task.wrapping_add(off.task_real_parent)))
        .ok()
        .and_then(|parent| read_i32(mem, parent.wrapping_add(off.task_tgid)));
    Process {
        pid: pid.max(0) as u64,
        tid: tid.max(0) as u64,
        ppid: ppid.map(|p| p.max(0) as u64),
        name: comm(mem, task, off),
        exe: None,
        compat: false,
    }
}

/// The executable path of `task` (`mm->exe_file`), built from dentry names up to the root of
/// its mount (bounded in depth and length; mount points above are not resolved).
pub fn exe_path(mem: &dyn VirtRead, task: u64, off: &Offsets) -> Option<String> {
    let (exe_off, dentry_off, parent_off, name_off) = (
        off.mm_exe_file?,
        off.file_dentry?,
        off.dentry_parent?,
        off.dentry_name?,
    );
    let mm = mem
        .read_u64(VirtAddr(task.wrapping_add(off.task_mm)))
        .ok()
        .filter(|&m| m != 0)?;
    let file = mem
        .read_u64(VirtAddr(mm.wrapping_add(exe_off)))
        .ok()
        .filter(|&f| f != 0)?;
    let mut dentry = mem.read_u64(VirtAddr(file.wrapping_add(dentry_off))).ok()?;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    for _ in 0..MAX_DEPTH {
        let parent = mem
            .read_u64(VirtAddr(dentry.wrapping_add(parent_off)))
            .ok()?;
        if parent == dentry || parent == 0 {
            break;
        }
        let name_ptr = mem.read_u64(VirtAddr(dentry.wrapping_add(name_off))).ok()?;
        let (name, _) = mem.read_cstring_prefix(VirtAddr(name_ptr), 256).ok()?;
        total += name.len() + 1;
        if total > MAX_PATH {
            return None;
        }
        parts.push(name);
        dentry = parent;
    }
    let mut path = String::new();
    for p in parts.iter().rev() {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(p));
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}
