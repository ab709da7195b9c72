//! Trap sites and in-memory discovery on the real Debian kernels of `scripts/provision.sh`:
//! the per-task `kstack_offset` accesses the backend watches are found in the code, and the
//! BTF blob is found by its header alone. Each test prints why it skips when a kernel is
//! missing.
//!
//! Sites are checked with an independent decoder (iced-x86) rather than pinned addresses:
//! with 6.1.0-56 / 6.12.117 `objdump -d` (binutils 2.40) showed the same instructions at
//! what the scanner found, and the addresses move with every Debian stable update.

use std::path::PathBuf;

use nitro_backend_linux::{
    find_btf,
    kernel::{btf::Btf, bzimage::extract_vmlinux, elf::Elf, kallsyms::Kallsyms},
    sites::{self, MOV_LOAD, MOV_STORE},
};
use nitro_mem::{MemError, PhysAddr, VirtAddr, VirtRead};

/// The vmlinux file seen as kernel virtual memory (link-time addresses).
struct FileView<'a>(Elf<'a>);

impl VirtRead for FileView<'_> {
    fn read_virt(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), MemError> {
        let src = self
            .0
            .read_at_vaddr(va.0, buf.len())
            .ok_or(MemError::PhysOutOfRange {
                addr: PhysAddr(va.0),
                len: buf.len(),
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn vmlinux(dir: &str) -> Option<Vec<u8>> {
    let base = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nitro")))?;
    let path = base.join("guests").join(dir).join("vmlinuz");
    match std::fs::read(&path) {
        Ok(bz) => Some(extract_vmlinux(&bz).expect("extract vmlinux")),
        Err(e) => {
            println!("skipping {dir}: {}: {e}", path.display());
            None
        }
    }
}

struct Expect {
    dir: &'static str,
    /// `task_struct.kstack_offset` (BTF).
    field: u64,
}

/// Checks one found site independently of the scanner: it lies in one of `functions` (by the
/// kernel's kallsyms) and iced-x86 decodes it as a 32-bit `mov` whose memory operand (the
/// destination for a store, the source for a load) has displacement `field`.
fn check_site(
    elf: &Elf<'_>,
    syms: &Kallsyms,
    site: u64,
    functions: &[&str],
    store: bool,
    field: u64,
) {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};
    let (name, _) = syms.symbolize(site).expect("site symbolized");
    assert!(
        functions
            .iter()
            .any(|f| name == *f || name.starts_with(&format!("{f}."))),
        "{site:#x} is in {name}, not in {functions:?}"
    );
    let bytes = elf.read_at_vaddr(site, 15).expect("site bytes");
    let insn = Decoder::with_ip(64, bytes, site, DecoderOptions::NONE).decode();
    assert_eq!(insn.mnemonic(), Mnemonic::Mov, "{site:#x}: {insn:?}");
    let mem_op = if store { 0 } else { 1 };
    assert_eq!(insn.op_kind(mem_op), OpKind::Memory, "{site:#x}: {insn:?}");
    assert_eq!(insn.memory_displacement64(), field, "{site:#x}: {insn:?}");
    assert_eq!(insn.memory_size().size(), 4, "{site:#x}: {insn:?}");
}

fn check(e: &Expect) {
    let Some(bytes) = vmlinux(e.dir) else { return };
    let elf = Elf::parse(&bytes).expect("elf");
    let syms = Kallsyms::from_vmlinux(&bytes).expect("kallsyms");
    let btf = Btf::from_vmlinux(&bytes).expect("btf");
    assert_eq!(
        btf.member_offset("task_struct", "kstack_offset").ok(),
        Some(e.field)
    );
    let view = FileView(elf);
    let disp = e.field as u32;
    let exit_functions = [
        "arch_exit_to_user_mode_prepare",
        "exit_to_user_mode_prepare",
        "syscall_exit_to_user_mode",
        "irqentry_exit_to_user_mode",
    ];
    let exit = sites::scan(&view, &syms, &exit_functions, 0, MOV_STORE, disp);
    // Exactly one store on the way out (it is inlined into one of these), one load per
    // 32-bit entry path; each checked by an independent decoder. Addresses move with every
    // stable update, so they are not pinned here.
    assert_eq!(exit.len(), 1, "{}: exit stores {exit:x?}", e.dir);
    check_site(
        &view.0,
        &syms,
        exit[0].start,
        &exit_functions,
        true,
        e.field,
    );
    let int80 = sites::scan(&view, &syms, &["do_int80_emulation"], 0, MOV_LOAD, disp);
    assert_eq!(int80.len(), 1, "{}: int80 loads {int80:x?}", e.dir);
    check_site(
        &view.0,
        &syms,
        int80[0].start,
        &["do_int80_emulation"],
        false,
        e.field,
    );
    let fast = sites::scan(&view, &syms, &["__do_fast_syscall_32"], 0, MOV_LOAD, disp);
    assert_eq!(fast.len(), 1, "{}: fast-path loads {fast:x?}", e.dir);
    check_site(
        &view.0,
        &syms,
        fast[0].start,
        &["__do_fast_syscall_32"],
        false,
        e.field,
    );
    // A KASLR slide moves the ranges with the code.
    let slid = sites::scan(
        &view,
        &syms.with_slide(0x200000),
        &["do_int80_emulation"],
        0x200000,
        MOV_LOAD,
        disp,
    );
    assert!(slid.is_empty(), "slid addresses are not in the file");

    // The BTF blob is found by its header alone in the memory image around it (as
    // LinuxBackend::from_guest does when kallsyms lacks __start_BTF).
    let section = view.0.section_data(".BTF").expect(".BTF");
    // Data before it, with a decoy header whose sizes point past the end.
    let mut image = vec![0u8; 0x1000];
    image[0x100..0x108].copy_from_slice(&[0x9f, 0xeb, 1, 0, 0x18, 0, 0, 0]);
    image[0x110..0x114].copy_from_slice(&u32::MAX.to_le_bytes());
    image.extend_from_slice(section);
    image.extend_from_slice(&[0u8; 0x1000]);
    let blob = find_btf(&image).expect("BTF header found");
    assert_eq!(blob.len(), section.len());
    let found = Btf::parse(blob).expect("parses");
    assert_eq!(found.len(), btf.len());
}

#[test]
fn trap_sites_debian_6_1() {
    check(&Expect {
        dir: "debian-6.1",
        field: 0x1478,
    });
}

#[test]
fn trap_sites_debian_6_12() {
    check(&Expect {
        dir: "debian-6.12",
        field: 0x1480,
    });
}

/// An optional System.map, written here from the kernel's own kallsyms (the format of
/// scripts/mksysmap), is accepted for the same build and refused for the other one.
#[test]
fn system_map_must_match_the_build() {
    use nitro_backend_linux::LinuxBackend;
    let (Some(a), Some(b)) = (vmlinux("debian-6.1"), vmlinux("debian-6.12")) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("nitro-sysmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, bytes: &[u8]| {
        let syms = Kallsyms::from_vmlinux(bytes).expect("kallsyms");
        let text: String = syms
            .symbols()
            .filter(|s| !s.is_percpu)
            .map(|s| format!("{:016x} T {}\n", s.addr, s.name))
            .collect();
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write map");
        p
    };
    let map61 = write("System.map-6.1", &a);
    let map612 = write("System.map-6.12", &b);
    let placeholder = dir.join("placeholder");
    std::fs::write(
        &placeholder,
        "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n",
    )
    .expect("write");
    let backend = LinuxBackend::from_vmlinux(&a).expect("backend");
    let backend = backend.with_system_map(&map61).expect("same build");
    assert!(backend.with_system_map(&map612).is_err(), "other build");
    let backend = LinuxBackend::from_vmlinux(&a).expect("backend");
    assert!(
        backend.with_system_map(&placeholder).is_err(),
        "placeholder"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
