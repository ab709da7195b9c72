//! Synthetic Windows guest memory images for the tests: 4-level page tables in a VecMemory,
//! a fake ntoskrnl PE image, KPCR, IDT, ETHREAD, EPROCESS, PEB and argument structures laid
//! out at the published offsets of each build (the offsets are written here as literals,
//! independently of `nitro_backend_windows::layout`, from the same public sources).
#![allow(dead_code)]

use std::collections::HashMap;

use nitro_listener::Regs;
use nitro_mem::{AddressSpace, PhysAddr, PhysMemory, VecMemory, VirtAddr};

/// Published offsets of one build (see src/layout.rs for the sources).
#[derive(Debug, Clone, Copy)]
pub struct Pub {
    pub build: u32,
    pub create_file_nr: u64,
    pub apc_process: u64,
    pub process: u64,
    pub teb: u64,
    pub cid: u64,
    pub pid: u64,
    pub ppid: u64,
    pub peb: u64,
    pub wow64: u64,
    pub ewow64: bool,
    pub name: u64,
    pub se_audit: u64,
}

pub const WIN7: Pub = Pub {
    build: 7601,
    create_file_nr: 0x52,
    apc_process: 0x70,
    process: 0x210,
    teb: 0xb8,
    cid: 0x3b8,
    pid: 0x180,
    ppid: 0x290,
    peb: 0x338,
    wow64: 0x320,
    ewow64: false,
    name: 0x2e0,
    se_audit: 0x390,
};
pub const WIN10: Pub = Pub {
    build: 19045,
    create_file_nr: 0x55,
    apc_process: 0xb8,
    process: 0x220,
    teb: 0xf0,
    cid: 0x478,
    pid: 0x440,
    ppid: 0x540,
    peb: 0x550,
    wow64: 0x580,
    ewow64: true,
    name: 0x5a8,
    se_audit: 0x5c0,
};
pub const WIN11: Pub = Pub {
    build: 22631,
    create_file_nr: 0x55,
    apc_process: 0xb8,
    process: 0x220,
    teb: 0xf0,
    cid: 0x4c8,
    pid: 0x440,
    ppid: 0x540,
    peb: 0x550,
    wow64: 0x580,
    ewow64: true,
    name: 0x5a8,
    se_audit: 0x5c0,
};
pub const WIN11_24H2: Pub = Pub {
    build: 26100,
    create_file_nr: 0x55,
    apc_process: 0xb8,
    process: 0x220,
    teb: 0xf0,
    cid: 0x508,
    pid: 0x1d0,
    ppid: 0x2d0,
    peb: 0x2e0,
    wow64: 0x310,
    ewow64: true,
    name: 0x338,
    se_audit: 0x350,
};
pub const ALL: [Pub; 4] = [WIN7, WIN10, WIN11, WIN11_24H2];

pub const KBASE: u64 = 0xffff_f800_02a0_0000;
pub const KIMAGE_SIZE: u64 = 0x10000;
pub const ENTRY_RVA: u64 = 0x9100; // KiSystemCall64, in a code section after an unmapped gap
pub const EXIT_RVA: u64 = 0x8800; // swapgs; sysretq
pub const IDT0_RVA: u64 = 0x1400; // KiDivideErrorFault
pub const BUILD_RVA: u64 = 0x7800; // NtBuildNumber
pub const KPCR: u64 = 0xffff_f800_02c0_0000;
pub const IDT: u64 = 0xffff_f800_02c1_0000;
pub const ETHREAD: u64 = 0xffff_fa80_0190_0000;
pub const EPROCESS: u64 = 0xffff_fa80_0180_0000;
pub const ONI: u64 = 0xffff_f8a0_0030_0000;
pub const EWOW64: u64 = 0xffff_fa80_0170_0000;
pub const TEB: u64 = 0x7ff_fffd_e000;
pub const PEB: u64 = 0x7ff_fffd_f000;
pub const PEB32: u64 = 0x7efd_e000;
pub const PARAMS: u64 = 0x2d_1000;
pub const PARAMS32: u64 = 0x3e_1000;
pub const STACK_TOP: u64 = 0xa2_0000;
pub const DATA: u64 = 0xb0_0000;
pub const PID: u64 = 2804;
pub const PPID: u64 = 1904;
pub const TID: u64 = 3132;

pub const PS_PATH: &str =
    r"\Device\HarddiskVolume2\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
pub const PS_WIN32: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
pub const PS_CMD: &str =
    r#""C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" -NoProfile"#;
pub const GADGET: &str =
    r"\??\C:\Program Files\Windows Sidebar\Gadgets\PicturePuzzle.Gadget\en-US\gadget.xml";

/// A guest under construction.
pub struct Guest {
    pub mem: VecMemory,
    pub cr3: u64,
    next: u64,
    tables: HashMap<(u8, u64), u64>,
}

impl Guest {
    pub fn new() -> Self {
        let mut g = Guest {
            mem: VecMemory::new(32 << 20),
            cr3: 0,
            next: 0x10_0000,
            tables: HashMap::new(),
        };
        g.cr3 = g.alloc();
        g
    }

    pub fn alloc(&mut self) -> u64 {
        let p = self.next;
        self.next += 0x1000;
        p
    }

    fn entry(&mut self, table: u64, index: u64, level: u8, prefix: u64) -> u64 {
        if let Some(&t) = self.tables.get(&(level, prefix)) {
            return t;
        }
        let t = self.alloc();
        self.mem
            .write_phys(PhysAddr(table + index * 8), &(t | 0x7).to_le_bytes())
            .unwrap();
        self.tables.insert((level, prefix), t);
        t
    }

    /// Maps the 4 KiB page at `va` to a fresh physical page (idempotent).
    pub fn map(&mut self, va: u64) {
        let va = va & !0xfff;
        let (i4, i3, i2, i1) = (
            (va >> 39) & 0x1ff,
            (va >> 30) & 0x1ff,
            (va >> 21) & 0x1ff,
            (va >> 12) & 0x1ff,
        );
        let pdpt = self.entry(self.cr3, i4, 3, va >> 39);
        let pd = self.entry(pdpt, i3, 2, va >> 30);
        let pt = self.entry(pd, i2, 1, va >> 21);
        if self.tables.contains_key(&(0, va >> 12)) {
            return;
        }
        let page = self.alloc();
        self.mem
            .write_phys(PhysAddr(pt + i1 * 8), &(page | 0x7).to_le_bytes())
            .unwrap();
        self.tables.insert((0, va >> 12), page);
    }

    pub fn map_range(&mut self, va: u64, len: u64) {
        let mut a = va & !0xfff;
        while a < va + len {
            self.map(a);
            a += 0x1000;
        }
    }

    pub fn space(&self) -> AddressSpace<&VecMemory> {
        AddressSpace::new(&self.mem, PhysAddr(self.cr3))
    }

    pub fn write(&mut self, va: u64, bytes: &[u8]) {
        self.map_range(va, bytes.len().max(1) as u64);
        self.space().write_virt(VirtAddr(va), bytes).unwrap();
    }

    pub fn w64(&mut self, va: u64, v: u64) {
        self.write(va, &v.to_le_bytes());
    }

    pub fn w32(&mut self, va: u64, v: u32) {
        self.write(va, &v.to_le_bytes());
    }

    pub fn w16(&mut self, va: u64, v: u16) {
        self.write(va, &v.to_le_bytes());
    }

    /// A 64-bit UNICODE_STRING at `at` whose text is at `buf`.
    pub fn ustr(&mut self, at: u64, buf: u64, s: &str) {
        let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        self.w16(at, units.len() as u16);
        self.w16(at + 2, units.len() as u16 + 2);
        self.w64(at + 8, buf);
        self.write(buf, &units);
        self.write(buf + units.len() as u64, &[0, 0]);
    }

    /// A 32-bit UNICODE_STRING.
    pub fn ustr32(&mut self, at: u64, buf: u64, s: &str) {
        let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        self.w16(at, units.len() as u16);
        self.w16(at + 2, units.len() as u16 + 2);
        self.w32(at + 4, buf as u32);
        self.write(buf, &units);
    }
}

/// Writes a fake ntoskrnl: headers, .text (IDT handler), an unmapped PAGE section, .data with
/// the export directory (NtBuildNumber and two other names) and a CodeView debug record, and
/// a KVASCODE-like code section holding the KiSystemCall64 prologue and the sysret tail.
pub fn write_kernel(g: &mut Guest, build_number: u32) {
    let b = KBASE;
    let mut h = vec![0u8; 0x1000];
    h[0..2].copy_from_slice(b"MZ");
    h[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    h[0x80..0x84].copy_from_slice(b"PE\0\0");
    let coff = 0x84;
    h[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    h[coff + 2..coff + 4].copy_from_slice(&4u16.to_le_bytes());
    h[coff + 4..coff + 8].copy_from_slice(&0x4ce7_951au32.to_le_bytes());
    h[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    let opt = coff + 20;
    h[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    h[opt + 56..opt + 60].copy_from_slice(&(KIMAGE_SIZE as u32).to_le_bytes());
    h[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    let dir = |h: &mut Vec<u8>, i: usize, rva: u32, size: u32| {
        h[opt + 112 + 8 * i..opt + 116 + 8 * i].copy_from_slice(&rva.to_le_bytes());
        h[opt + 116 + 8 * i..opt + 120 + 8 * i].copy_from_slice(&size.to_le_bytes());
    };
    dir(&mut h, 0, 0x7000, 0x100);
    dir(&mut h, 6, 0x7100, 28);
    let sec = opt + 240;
    let sections: [(&[u8], u32, u32, u32); 4] = [
        (b".text", 0x1000, 0x1000, 0x6000_0020),
        (b"PAGE", 0x2000, 0x5000, 0x6000_0020),
        (b".data", 0x7000, 0x1000, 0xc000_0040),
        (b"KVASCODE", 0x8000, 0x2000, 0x6000_0020),
    ];
    for (i, (name, rva, size, ch)) in sections.iter().enumerate() {
        let s = sec + 40 * i;
        h[s..s + name.len()].copy_from_slice(name);
        h[s + 8..s + 12].copy_from_slice(&size.to_le_bytes());
        h[s + 12..s + 16].copy_from_slice(&rva.to_le_bytes());
        h[s + 36..s + 40].copy_from_slice(&ch.to_le_bytes());
    }
    g.write(b, &h);
    // .text: vector-0 handler (never executed; the bytes are irrelevant).
    g.write(b + IDT0_RVA, &[0x48, 0x83, 0xec, 0x08]);
    // PAGE (0x2000..0x7000) stays unmapped, like discarded or paged-out kernel code.
    // .data: export directory with three sorted names.
    let e = b + 0x7000;
    let names = ["KeBugCheck", "NtBuildNumber", "NtCreateFile"];
    let funcs = [0x1000u32, BUILD_RVA as u32, 0x1200];
    g.w32(e + 20, 3); // NumberOfFunctions
    g.w32(e + 24, 3); // NumberOfNames
    g.w32(e + 28, 0x7040); // AddressOfFunctions
    g.w32(e + 32, 0x7050); // AddressOfNames
    g.w32(e + 36, 0x7060); // AddressOfNameOrdinals
    let mut name_rva = 0x7070u32;
    for (i, n) in names.iter().enumerate() {
        g.w32(b + 0x7040 + 4 * i as u64, funcs[i]);
        g.w32(b + 0x7050 + 4 * i as u64, name_rva);
        g.w16(b + 0x7060 + 2 * i as u64, i as u16);
        let mut z = n.as_bytes().to_vec();
        z.push(0);
        g.write(b + u64::from(name_rva), &z);
        name_rva += 0x20;
    }
    // Debug directory -> RSDS record.
    let d = b + 0x7100;
    g.w32(d + 12, 2); // IMAGE_DEBUG_TYPE_CODEVIEW
    g.w32(d + 16, 24 + 13);
    g.w32(d + 20, 0x7200);
    let mut rsds = b"RSDS".to_vec();
    rsds.extend_from_slice(&0x3844_dbb9u32.to_le_bytes());
    rsds.extend_from_slice(&0x2017u16.to_le_bytes());
    rsds.extend_from_slice(&0x4967u16.to_le_bytes());
    rsds.extend_from_slice(&[0xbe, 0x7a, 0xa4, 0xa2, 0xc2, 0x04, 0x30, 0xfa]);
    rsds.extend_from_slice(&2u32.to_le_bytes());
    rsds.extend_from_slice(b"ntkrnlmp.pdb\0");
    g.write(b + 0x7200, &rsds);
    g.w32(b + BUILD_RVA, build_number);
    // KVASCODE: KiSystemCall64 prologue and the KiSystemServiceExit tail.
    g.map_range(b + 0x8000, 0x2000);
    g.write(
        b + ENTRY_RVA,
        &[
            0x0f, 0x01, 0xf8, // swapgs
            0x65, 0x48, 0x89, 0x24, 0x25, 0x10, 0, 0, 0, // mov gs:[10h], rsp
            0x65, 0x48, 0x8b, 0x24, 0x25, 0xa8, 0x01, 0, 0, // mov rsp, gs:[1A8h]
        ],
    );
    g.write(b + EXIT_RVA, &[0x0f, 0x01, 0xf8, 0x48, 0x0f, 0x07]);
}

/// KPCR, IDT, thread and process of powershell.exe, its PEB and parameters.
pub fn write_process(g: &mut Guest, p: &Pub, wow64: bool) {
    g.w64(KPCR + 0x18, KPCR); // Self
    g.w64(KPCR + 0x20, KPCR + 0x180); // CurrentPrcb
    g.w64(KPCR + 0x38, IDT); // IdtBase
    g.w64(KPCR + 0x188, ETHREAD); // Prcb.CurrentThread
    let handler = KBASE + IDT0_RVA;
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&0x10u16.to_le_bytes());
    gate[5] = 0x8e;
    gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g.write(IDT, &gate);
    g.map_range(ETHREAD, 0x1000);
    g.w64(ETHREAD + p.process, EPROCESS);
    g.w64(ETHREAD + p.apc_process, EPROCESS);
    g.w64(ETHREAD + p.teb, TEB);
    g.w64(ETHREAD + p.cid, PID);
    g.w64(ETHREAD + p.cid + 8, TID);
    g.map_range(EPROCESS, 0x1000);
    g.w64(EPROCESS + 0x28, g.cr3);
    g.w64(EPROCESS + p.pid, PID);
    g.w64(EPROCESS + p.ppid, PPID);
    g.write(EPROCESS + p.name, b"powershell.exe\0");
    g.w64(EPROCESS + p.peb, PEB);
    g.w64(EPROCESS + p.se_audit, ONI);
    g.ustr(ONI, ONI + 0x10, PS_PATH);
    g.w64(TEB + 0x40, PID);
    g.w64(TEB + 0x48, TID);
    g.w64(PEB + 0x20, PARAMS);
    g.ustr(PARAMS + 0x60, PARAMS + 0x400, PS_WIN32);
    g.ustr(PARAMS + 0x70, PARAMS + 0x600, PS_CMD);
    if wow64 {
        if p.ewow64 {
            g.w64(EPROCESS + p.wow64, EWOW64);
            g.w64(EWOW64, PEB32);
            g.w16(EWOW64 + 8, 0x14c);
        } else {
            g.w64(EPROCESS + p.wow64, PEB32);
        }
        g.w32(PEB32 + 0x10, PARAMS32 as u32);
        g.ustr32(
            PARAMS32 + 0x38,
            PARAMS32 + 0x400,
            r"C:\Windows\SysWOW64\WindowsPowerShell\v1.0\powershell.exe",
        );
        g.ustr32(
            PARAMS32 + 0x40,
            PARAMS32 + 0x600,
            r"C:\Windows\SysWOW64\WindowsPowerShell\v1.0\powershell.exe -NoProfile -Command x",
        );
    }
}

pub const PHANDLE: u64 = DATA + 0x200;
pub const OA: u64 = DATA;
pub const IOSB: u64 = DATA + 0x100;

/// The NtCreateFile of Nitro's example: arguments in registers and on the user stack.
pub fn create_file_regs(g: &mut Guest, p: &Pub) -> Regs {
    // OBJECT_ATTRIBUTES {Length 0x30, RootDirectory 0, ObjectName, OBJ_CASE_INSENSITIVE}.
    g.w32(OA, 0x30);
    g.w64(OA + 8, 0);
    g.w64(OA + 0x10, DATA + 0x40);
    g.w32(OA + 0x18, 0x40);
    g.ustr(DATA + 0x40, DATA + 0x400, GADGET);
    g.w64(IOSB, 0xdead_beef);
    g.w64(PHANDLE, 0);
    let rsp = STACK_TOP - 0x100;
    g.map_range(rsp, 0x100);
    g.w64(rsp, 0x7fe_fd0a_1234); // return address into kernelbase
    let stack_args = [0u64, 0x80, 0x1, 1, 0x60, 0, 0];
    for (i, v) in stack_args.iter().enumerate() {
        g.w64(rsp + 0x28 + 8 * i as u64, *v);
    }
    Regs {
        rax: p.create_file_nr,
        rcx: 0x77c4_1a2a, // return RIP (syscall overwrote RCX)
        r10: PHANDLE,
        rdx: 0x8010_0080,
        r8: OA,
        r9: IOSB,
        rsp,
        rip: KBASE + ENTRY_RVA,
        cs: 0x10,
        gs_base: TEB,
        k_gs_base: KPCR,
        cr3: g.cr3,
        cr4: 0x6f8,
        efer: 0xd01,
        ..Regs::default()
    }
}

/// A whole guest for `p`.
pub fn guest(p: &Pub, wow64: bool) -> (Guest, Regs) {
    let mut g = Guest::new();
    write_kernel(&mut g, 0xf000_0000 | p.build);
    write_process(&mut g, p, wow64);
    let regs = create_file_regs(&mut g, p);
    (g, regs)
}
