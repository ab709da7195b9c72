//! The kernel-discovery parsers on the real Debian cloud kernels fetched by
//! `scripts/provision.sh` into `${NITRO_CACHE:-$HOME/.cache/nitro}/guests/debian-*/vmlinuz`.
//! Each test prints why it skips when a kernel is missing.
//!
//! Expected values were read from the same files with `pahole -C <struct> vmlinux`
//! (dwarves 1.24) and `bpftool btf dump file vmlinux` (Debian 12), for
//! linux-image-6.1.0-56-cloud-amd64 (6.1.192-2) and linux-image-6.12.117+deb12-cloud-amd64;
//! offsets and sizes held for 6.1.0-57 and 6.12.118 too.

use std::{path::PathBuf, sync::OnceLock, time::Instant};

use nitro_backend_linux::kernel::{
    btf::Btf, bzimage::extract_vmlinux, elf::Elf, kallsyms::Kallsyms,
};

/// Per-version facts.
struct Expect {
    dir: &'static str,
    /// First bytes at `entry_SYSCALL_64`: `swapgs` (6.1) or `endbr64; swapgs` (6.12, IBT).
    entry_bytes: &'static [u8],
    /// The per-CPU symbol holding the current task pointer.
    current: &'static str,
    /// BTF type count of the build the offsets were read from; stable updates of the same
    /// series add or drop a few dozen types, so the test allows 1% either way.
    btf_types: usize,
    /// (struct, member path, byte offset) from pahole.
    offsets: &'static [(&'static str, &'static str, u64)],
    /// (struct, size) from pahole.
    sizes: &'static [(&'static str, u64)],
}

const COMMON_OFFSETS: &[(&str, &str, u64)] = &[
    ("task_struct", "thread_info", 0),
    ("task_struct", "thread_info.flags", 0),
    ("task_struct", "thread_info.status", 16),
    ("task_struct", "comm", 2976),
    ("task_struct", "files", 3048),
    ("tss_struct", "x86_tss", 0),
    ("tss_struct", "x86_tss.sp0", 4),
    ("tss_struct", "x86_tss.sp2", 0x14),
    ("x86_hw_tss", "sp0", 4),
    ("x86_hw_tss", "sp2", 0x14),
    ("pt_regs", "r15", 0),
    ("pt_regs", "bp", 32),
    ("pt_regs", "ax", 80),
    ("pt_regs", "si", 104),
    ("pt_regs", "di", 112),
    ("pt_regs", "orig_ax", 120),
    ("pt_regs", "ip", 128),
    ("pt_regs", "cs", 136),
    ("pt_regs", "flags", 144),
    ("pt_regs", "sp", 152),
    ("pt_regs", "ss", 160),
];

const V61: Expect = Expect {
    dir: "debian-6.1",
    entry_bytes: &[0x0f, 0x01, 0xf8],
    current: "current_task",
    btf_types: 95_246,
    offsets: &[
        ("task_struct", "mm", 2272),
        ("task_struct", "pid", 2416),
        ("task_struct", "tgid", 2420),
        ("task_struct", "real_parent", 2432),
        ("mm_struct", "exe_file", 944),
    ],
    sizes: &[
        ("task_struct", 9728),
        ("mm_struct", 1096),
        ("pt_regs", 168),
        ("tss_struct", 20480),
    ],
};

const V612: Expect = Expect {
    dir: "debian-6.12",
    entry_bytes: &[0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x01, 0xf8],
    current: "pcpu_hot",
    btf_types: 107_331,
    offsets: &[
        ("task_struct", "mm", 2304),
        ("task_struct", "pid", 2432),
        ("task_struct", "tgid", 2436),
        ("task_struct", "real_parent", 2448),
        ("mm_struct", "exe_file", 1168),
        ("pcpu_hot", "current_task", 0),
    ],
    sizes: &[
        ("task_struct", 9792),
        ("mm_struct", 1344),
        ("pt_regs", 168),
        ("pcpu_hot", 64),
    ],
};

/// The decompressed vmlinux of one cached kernel, or `None` (with a message) when missing;
/// extracted once per test binary.
fn vmlinux(e: &Expect) -> Option<&'static [u8]> {
    static V61_ELF: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    static V612_ELF: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let cell = if e.dir == V61.dir {
        &V61_ELF
    } else {
        &V612_ELF
    };
    let elf = cell.get_or_init(|| extract(e)).as_deref();
    if elf.is_none() {
        println!("skipping {}: no cached kernel", e.dir);
    }
    elf
}

fn extract(e: &Expect) -> Option<Vec<u8>> {
    let base = std::env::var_os("NITRO_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nitro")))?;
    let path = base.join("guests").join(e.dir).join("vmlinuz");
    let bz = match std::fs::read(&path) {
        Ok(b) => b,
        Err(err) => {
            println!("skipping {}: {}: {err}", e.dir, path.display());
            return None;
        }
    };
    let t = Instant::now();
    let elf = extract_vmlinux(&bz).expect("extract vmlinux");
    println!(
        "{}: extract_vmlinux {:?} ({} -> {} bytes)",
        e.dir,
        t.elapsed(),
        bz.len(),
        elf.len()
    );
    Some(elf)
}

fn check_kallsyms(e: &Expect) {
    let Some(elf) = vmlinux(e) else { return };
    let t = Instant::now();
    let ks = Kallsyms::from_vmlinux(elf).expect("kallsyms");
    println!(
        "{}: kallsyms {:?}, {} symbols, {:x?}",
        e.dir,
        t.elapsed(),
        ks.len(),
        ks.layout()
    );
    assert!(ks.len() > 80_000, "{} symbols", ks.len());
    for name in [
        "entry_SYSCALL_64",
        "sys_call_table",
        "__x64_sys_openat",
        "entry_SYSRETQ_unsafe_stack",
        "syscall_return_via_sysret",
        "swapgs_restore_regs_and_return_to_usermode",
        "__per_cpu_offset",
        "_text",
    ] {
        let s = ks.symbol(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            !s.is_percpu && s.addr >= 0xffff_ffff_8100_0000,
            "{name}: {s:x?}"
        );
    }
    assert_eq!(ks.lookup("_text"), Some(0xffff_ffff_8100_0000));
    let entry = ks.lookup("entry_SYSCALL_64").unwrap_or(0);
    let parsed = Elf::parse(elf).expect("elf");
    assert_eq!(
        parsed.read_at_vaddr(entry, e.entry_bytes.len()),
        Some(e.entry_bytes),
        "{}",
        e.dir
    );
    assert_eq!(ks.symbol("entry_SYSCALL_64").map(|s| s.kind), Some('T'));

    // Per-CPU symbols are small offsets and never slid.
    let tss = ks.symbol("cpu_tss_rw").expect("cpu_tss_rw");
    assert!(tss.is_percpu);
    assert_eq!(tss.addr, 0x6000);
    let cur = ks.symbol(e.current).expect("current task per-cpu symbol");
    assert!(cur.is_percpu && cur.addr < 0x10_0000, "{cur:x?}");

    // Slide: text moves, per-CPU does not; symbolize inverts lookup.
    let slid = ks.with_slide(0x1e0_0000);
    assert_eq!(slid.lookup("entry_SYSCALL_64"), Some(entry + 0x1e0_0000));
    assert_eq!(slid.lookup("cpu_tss_rw"), Some(0x6000));
    assert_eq!(slid.lookup(e.current), Some(cur.addr));
    assert_eq!(
        slid.symbolize(entry + 0x1e0_0000 + 3),
        Some(("entry_SYSCALL_64", 3))
    );
    assert_eq!(ks.symbolize(entry), Some(("entry_SYSCALL_64", 0)));
    // entry_SYSCALL_64 is followed by entry_SYSCALL_64_safe_stack (+0x19 in 6.1 and 6.12).
    let (start, end) = ks.range("entry_SYSCALL_64").expect("range");
    assert_eq!(start, entry);
    assert!(end > entry && end - entry < 0x100, "{start:#x}..{end:#x}");
    assert_eq!(
        ks.symbolize(end).map(|(n, _)| n),
        Some("entry_SYSCALL_64_safe_stack")
    );
    assert_eq!(ks.symbolize(0x1000), None);

    // The table is sorted by address and every text symbol round-trips through symbolize.
    let mut prev = 0;
    for s in ks.symbols() {
        assert!(s.addr >= prev || s.is_percpu, "{s:x?}");
        prev = prev.max(s.addr);
    }
    // Static functions may share a name (lookup gives the first), so the round trip asks
    // for some symbol of that name at that offset.
    for s in ks.symbols().filter(|s| s.kind == 'T').step_by(97) {
        let (name, off) = ks.symbolize(s.addr + 1).expect("symbolize");
        assert!(
            ks.symbols()
                .any(|t| t.name == name && t.addr + off == s.addr + 1),
            "{name}+{off:#x} is not {:#x}",
            s.addr + 1
        );
    }

    // A raw memory image (what a live guest gives): the .rodata bytes at their address.
    let ro = parsed.section(".rodata").expect(".rodata").clone();
    let img = parsed.section_data(".rodata").expect(".rodata data");
    let from_img = Kallsyms::from_image(img, ro.addr).expect("from_image");
    assert_eq!(from_img.lookup("entry_SYSCALL_64"), Some(entry));
    // ... also when the image starts at an odd place inside .rodata.
    let skip = 0x12345;
    let from_img = Kallsyms::from_image(&img[skip..], ro.addr + skip as u64).expect("from_image");
    assert_eq!(from_img.len(), ks.len());
    assert_eq!(from_img.layout(), ks.layout());
}

fn check_btf(e: &Expect) {
    let Some(elf) = vmlinux(e) else { return };
    let t = Instant::now();
    let btf = Btf::from_vmlinux(elf).expect("btf");
    println!("{}: BTF {:?}, {} types", e.dir, t.elapsed(), btf.len());
    let tolerance = e.btf_types / 100;
    assert!(
        btf.len().abs_diff(e.btf_types) <= tolerance,
        "{}: {} BTF types, expected {} +- {tolerance}",
        e.dir,
        btf.len(),
        e.btf_types
    );
    for &(st, path, off) in COMMON_OFFSETS.iter().chain(e.offsets) {
        assert_eq!(
            btf.member_offset(st, path).ok(),
            Some(off),
            "{}: {st}.{path}",
            e.dir
        );
    }
    for &(st, size) in e.sizes {
        assert_eq!(btf.struct_size(st), Some(size), "{}: sizeof {st}", e.dir);
    }
    assert_eq!(
        btf.member_type_name("task_struct", "comm").ok().as_deref(),
        Some("char[16]")
    );
    assert_eq!(
        btf.member_type_name("task_struct", "pid").ok().as_deref(),
        Some("pid_t")
    );
    assert_eq!(
        btf.member_type_name("task_struct", "real_parent")
            .ok()
            .as_deref(),
        Some("struct task_struct *")
    );
    assert_eq!(
        btf.member_offset("task_struct", "comm[5]").ok(),
        Some(2976 + 5)
    );
    assert!(btf.member_offset("task_struct", "no_such_member").is_err());
    assert!(btf.member_offset("no_such_struct", "pid").is_err());
    assert_eq!(btf.enum_value("pid_type", "PIDTYPE_TGID"), Some(1));
    assert_eq!(btf.enum_value("pid_type", "PIDTYPE_MAX"), Some(4));
    assert_eq!(btf.enum_variants("pid_type").len(), 5);
    assert_eq!(btf.enumerator("TASK_COMM_LEN"), Some(16));
    assert_eq!(btf.enumerator("BPF_MAP_TYPE_RINGBUF"), Some(27));
}

#[test]
fn kallsyms_debian_6_1() {
    check_kallsyms(&V61);
}

#[test]
fn kallsyms_debian_6_12() {
    check_kallsyms(&V612);
}

#[test]
fn btf_debian_6_1() {
    check_btf(&V61);
    if let Some(elf) = vmlinux(&V61) {
        let btf = Btf::from_vmlinux(elf).expect("btf");
        // ENUM64 (6.1): IFF_CHANGE_PROTO_DOWN = 1 << 32.
        assert_eq!(
            btf.enum_value("netdev_priv_flags", "IFF_CHANGE_PROTO_DOWN"),
            Some(1 << 32)
        );
        assert_eq!(
            btf.enum_value("netdev_priv_flags", "IFF_TX_SKB_NO_LINEAR"),
            Some(1 << 31)
        );
    }
}

#[test]
fn btf_debian_6_12() {
    check_btf(&V612);
}

/// Real tables cut short or damaged give errors, never panics.
#[test]
fn damaged_real_data_is_an_error() {
    let Some(elf) = vmlinux(&V612) else { return };
    let parsed = Elf::parse(elf).expect("elf");
    let btf = parsed.section_data(".BTF").expect(".BTF");
    for cut in [0, 3, 24, 1000, btf.len() / 3, btf.len() - 1] {
        assert!(Btf::parse(&btf[..cut]).is_err(), "BTF cut at {cut}");
    }
    let ks = Kallsyms::from_vmlinux(elf).expect("kallsyms");
    let l = ks.layout();
    let ro = parsed.section(".rodata").expect(".rodata").addr;
    let img = parsed.section_data(".rodata").expect(".rodata data");
    // Cut in the middle of kallsyms_names, and just before kallsyms_relative_base.
    for end in [l.names + 0x1000, l.relative_base] {
        let cut = (end - ro) as usize;
        assert!(
            Kallsyms::from_image(&img[..cut], ro).is_err(),
            "cut at {end:#x}"
        );
    }
    // The first name's length byte changed: the markers no longer match.
    let mut bad = img.to_vec();
    bad[(l.names - ro) as usize] ^= 0x01;
    assert!(Kallsyms::from_image(&bad, ro).is_err());
    assert!(
        extract_vmlinux(&elf[..elf.len() / 2]).is_ok(),
        "an ELF prefix passes through"
    );
}
