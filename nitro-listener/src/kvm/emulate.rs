//! Tracer-side emulation of the instruction at an execution breakpoint.
//!
//! On a host that ignores RFLAGS.RF, getting past a breakpoint otherwise costs an
//! out-of-line copy (one more guest instruction and a second code page) or a single step (one
//! more exit). The instructions real trap sites hold are simple enough to carry out here, on
//! the registers already in the `sync_regs` page and on guest RAM through the mapping the
//! driver already has: the resume then costs no exit, no ioctl and no guest instruction.
//!
//! Emulated: no-ops (`nop`, `pause`, `endbr64`/`endbr32`) and `mov` between general-purpose
//! registers, immediates and memory (`88`/`89`/`8A`/`8B`, `A0`-`A3`, `B0`-`BF`, `C6`/`C7`;
//! Intel SDM 2B, MOV), 1, 2, 4 or 8 bytes, with any 64-bit addressing form: `[base + index *
//! scale + disp]`, absolute, RIP-relative, and `fs:`/`gs:` overrides (the bases from the
//! synced special registers; Linux's `entry_SYSCALL_64` runs `mov %rsp,
//! %gs:cpu_tss_rw+TSS_sp2` right after `swapgs`).
//!
//! The emulation is all or nothing: every check is made before anything is written, and a
//! refusal ([`EmulateError`]) leaves registers and memory untouched, so the caller falls back
//! to letting the guest execute the instruction itself (RFLAGS.RF or a single step), and the
//! guest sees whatever fault native execution raises. Refused at run time:
//! * anything a native access would fault on: not-present or reserved-bit paging entries,
//!   writes to read-only pages (CR0.WP, or CPL 3), user/supervisor violations, SMAP,
//!   protection keys in force, non-canonical addresses, alignment checks (CPL 3, CR0.AM,
//!   RFLAGS.AC);
//! * physical addresses outside guest RAM (MMIO, or an access crossing into nowhere);
//! * an access overlapping an armed data watchpoint of the same plan (native execution would
//!   report it);
//! * RFLAGS.TF set (the guest single-steps itself and expects its #DB after the instruction);
//! * a vCPU not in 64-bit mode (the instruction was decoded as 64-bit code).
//!
//! What native execution does and this does not: it does not consult the TLB (a guest that
//! changed its page tables without flushing may see the new mapping used one access early),
//! and stores go to RAM from the host, so a shadow-paging host's MMU does not notice a store
//! into a page-table page and KVM's dirty log does not record it (nitro uses neither).
//! Paging: Intel SDM 3A 4.5 (4- and 5-level paging), 4.6 (access rights), 4.8 (accessed and
//! dirty flags).

use std::sync::atomic::{AtomicU64, Ordering};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};
use nitro_sys::x86;
use vm_memory::{Bytes, GuestAddress, GuestMemory, VolatileMemory};

use super::GuestRam;

/// RFLAGS.AC, alignment check / SMAP override (SDM 1, 3.4.3.3).
const RFLAGS_AC: u64 = 1 << 18;
/// CR4.LA57, 5-level paging (SDM 3A 2.5).
const CR4_LA57: u64 = 1 << 12;
/// CR4.SMAP (SDM 3A 2.5).
const CR4_SMAP: u64 = 1 << 21;
/// CR4.PKE, protection keys for user pages (SDM 3A 2.5).
const CR4_PKE: u64 = 1 << 22;
/// CR4.PKS, protection keys for supervisor pages (SDM 3A 2.5).
const CR4_PKS: u64 = 1 << 24;
/// Paging-entry accessed flag (SDM 3A 4.8).
const PTE_ACCESSED: u64 = 1 << 5;
/// Paging-entry dirty flag, in entries that map a page (SDM 3A 4.8).
const PTE_DIRTY: u64 = 1 << 6;
/// Execute-disable flag; reserved when EFER.NXE = 0 (SDM 3A table 4-20).
const PTE_XD: u64 = 1 << 63;
/// Physical-address bits 51:12 of a paging entry (SDM 3A tables 4-15 to 4-20).
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;

/// A general-purpose register operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gpr {
    /// Register number in encoding order: 0 = rax, 1 = rcx, 2 = rdx, 3 = rbx, 4 = rsp,
    /// 5 = rbp, 6 = rsi, 7 = rdi, 8-15 = r8-r15.
    pub num: u8,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// `ah`, `ch`, `dh`, `bh`: bits 15:8 of registers 0-3.
    pub high8: bool,
}

/// The segment a memory operand is relative to. In 64-bit mode only FS and GS have a base;
/// CS, DS, ES and SS are flat (SDM 3A 3.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Base 0.
    Flat,
    /// FS base.
    Fs,
    /// GS base.
    Gs,
}

/// A memory operand, 64-bit addressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mem {
    /// Segment override.
    pub segment: Segment,
    /// Base register number (see [`Gpr::num`]).
    pub base: Option<u8>,
    /// Index register number.
    pub index: Option<u8>,
    /// Index scale: 1, 2, 4 or 8.
    pub scale: u8,
    /// Displacement; for a RIP-relative operand the absolute address (the site is fixed).
    pub disp: u64,
    /// Access width in bytes: 1, 2, 4 or 8.
    pub size: u8,
}

/// Where a moved value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A register.
    Reg(Gpr),
    /// An immediate, already sign-extended as the instruction defines.
    Imm(u64),
}

/// An instruction the tracer can carry out in place of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// No architectural effect besides advancing RIP.
    NoOp,
    /// `mov reg, reg` / `mov reg, imm`.
    MovReg {
        /// Destination.
        dst: Gpr,
        /// Source.
        src: Source,
    },
    /// `mov mem, reg` / `mov mem, imm`.
    Store {
        /// Destination.
        dst: Mem,
        /// Source.
        src: Source,
    },
    /// `mov reg, mem`.
    Load {
        /// Destination.
        dst: Gpr,
        /// Source.
        src: Mem,
    },
}

/// A data watchpoint of the armed plan, checked against emulated accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// Linear address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Only writes trigger it (else reads and writes).
    pub writes_only: bool,
}

/// Why an instruction was not emulated at a stop (the guest then executes it itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulateError {
    /// RFLAGS.TF is set: the guest expects a single-step trap after the instruction.
    #[error("RFLAGS.TF set (rflags {rflags:#x}): the guest is single-stepping itself")]
    SingleStep {
        /// RFLAGS.
        rflags: u64,
    },
    /// The vCPU is not in 64-bit mode.
    #[error("vCPU not in 64-bit mode (EFER {efer:#x}, CS.L {cs_l})")]
    NotLongMode {
        /// IA32_EFER.
        efer: u64,
        /// CS.L.
        cs_l: u8,
    },
    /// The linear address is not canonical (native execution raises #GP or #SS).
    #[error("non-canonical address {addr:#x}")]
    NonCanonical {
        /// The linear address.
        addr: u64,
    },
    /// A paging entry is not present (native execution raises #PF).
    #[error("address {addr:#x} not mapped: level-{level} entry {entry:#x} not present")]
    NotMapped {
        /// The linear address.
        addr: u64,
        /// Paging level of the entry (4 = PML4, 1 = PT).
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// A paging entry has reserved bits set (#PF with RSVD).
    #[error("address {addr:#x}: level-{level} entry {entry:#x} has reserved bits set")]
    Reserved {
        /// The linear address.
        addr: u64,
        /// Paging level of the entry.
        level: u8,
        /// The entry.
        entry: u64,
    },
    /// The access is not allowed (#PF, or #AC for an alignment check).
    #[error("access to {addr:#x} refused: {why}")]
    Protection {
        /// The linear address.
        addr: u64,
        /// Which rule.
        why: &'static str,
    },
    /// A paging structure or the data lies outside guest RAM (MMIO, or nothing).
    #[error("address {addr:#x}: guest physical {gpa:#x} is not RAM")]
    NotRam {
        /// The linear address.
        addr: u64,
        /// The guest physical address.
        gpa: u64,
    },
    /// The access overlaps an armed data watchpoint.
    #[error("access to {addr:#x} overlaps the watchpoint at {watch:#x}")]
    Watched {
        /// The linear address.
        addr: u64,
        /// The watchpoint.
        watch: u64,
    },
}

impl EmulateError {
    /// Whether the guest must execute the instruction at its own address: native execution
    /// will raise an exception (a fault, the guest's own single-step trap) whose handler sees
    /// RIP, or the instruction was decoded for another mode. Otherwise (MMIO, a watched
    /// address) an out-of-line copy does as well.
    pub fn needs_own_address(&self) -> bool {
        !matches!(
            self,
            EmulateError::NotRam { .. } | EmulateError::Watched { .. }
        )
    }
}

/// Decodes the first instruction of `bytes` (at linear `addr`, 64-bit code): its length and
/// what it does, if it is in the emulable set.
pub fn decode(addr: u64, bytes: &[u8]) -> Option<(u8, Op)> {
    let insn = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return None;
    }
    let len = u8::try_from(insn.len()).ok()?;
    let op = match insn.mnemonic() {
        Mnemonic::Nop | Mnemonic::Pause | Mnemonic::Endbr64 | Mnemonic::Endbr32 => Op::NoOp,
        Mnemonic::Mov => decode_mov(&insn, bytes.get(..insn.len())?)?,
        _ => return None,
    };
    Some((len, op))
}

fn decode_mov(insn: &Instruction, bytes: &[u8]) -> Option<Op> {
    // LOCK is invalid on MOV; XRELEASE on a store starts hardware lock elision's commit.
    // An address-size prefix (67) would make addresses 32-bit: not handled.
    if insn.has_lock_prefix()
        || insn.has_xacquire_prefix()
        || insn.has_xrelease_prefix()
        || legacy_prefixes(bytes).contains(&0x67)
        || insn.op_count() != 2
    {
        return None;
    }
    let imm = |n: u32| match insn.op_kind(n) {
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate32to64 => Some(Source::Imm(insn.immediate(n))),
        _ => None,
    };
    let src_of = |n: u32| match insn.op_kind(n) {
        OpKind::Register => gpr(insn.op_register(n)).map(Source::Reg),
        _ => imm(n),
    };
    match (insn.op_kind(0), insn.op_kind(1)) {
        (OpKind::Register, OpKind::Memory) => Some(Op::Load {
            dst: gpr(insn.op_register(0))?,
            src: mem(insn)?,
        }),
        (OpKind::Register, _) => Some(Op::MovReg {
            dst: gpr(insn.op_register(0))?,
            src: src_of(1)?,
        }),
        (OpKind::Memory, _) => Some(Op::Store {
            dst: mem(insn)?,
            src: src_of(1)?,
        }),
        _ => None,
    }
}

/// The legacy prefixes (and REX) before the opcode (SDM 2A 2.1.1).
fn legacy_prefixes(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| {
            matches!(
                b,
                0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0x66 | 0x67
            ) || (0x40..=0x4f).contains(*b)
        })
        .count();
    &bytes[..n]
}

fn gpr(r: Register) -> Option<Gpr> {
    if !r.is_gpr() {
        return None;
    }
    let high8 = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    Some(Gpr {
        num: u8::try_from(r.full_register().number()).ok()?,
        size: u8::try_from(r.size()).ok()?,
        high8,
    })
}

fn gpr64(r: Register) -> Option<Option<u8>> {
    match r {
        Register::None => Some(None),
        r if r.is_gpr64() => Some(Some(u8::try_from(r.number()).ok()?)),
        _ => None,
    }
}

fn mem(insn: &Instruction) -> Option<Mem> {
    let segment = match insn.memory_segment() {
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        Register::CS | Register::DS | Register::ES | Register::SS => Segment::Flat,
        _ => return None,
    };
    let size = u8::try_from(insn.memory_size().size()).ok()?;
    if !matches!(size, 1 | 2 | 4 | 8) {
        return None;
    }
    let (base, disp) = match insn.memory_base() {
        Register::RIP => (None, insn.ip_rel_memory_address()),
        r => (gpr64(r)?, insn.memory_displacement64()),
    };
    let scale = u8::try_from(insn.memory_index_scale()).ok()?;
    Some(Mem {
        segment,
        base,
        index: gpr64(insn.memory_index())?,
        scale,
        disp,
        size,
    })
}

/// The `kvm_regs` field of register number `num` (encoding order).
fn reg_slot(r: &mut kvm_regs, num: u8) -> &mut u64 {
    match num & 15 {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    }
}

fn reg_value(r: &kvm_regs, num: u8) -> u64 {
    let mut copy = *r;
    *reg_slot(&mut copy, num)
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The value of a register operand, zero-extended.
fn read_gpr(r: &kvm_regs, g: Gpr) -> u64 {
    let full = reg_value(r, g.num);
    if g.high8 {
        (full >> 8) & 0xff
    } else {
        full & mask(g.size)
    }
}

/// Writes a register operand: 32-bit writes zero the upper half, 8- and 16-bit writes keep
/// the rest (SDM 1, 3.4.1.1).
fn write_gpr(r: &mut kvm_regs, g: Gpr, value: u64) {
    let slot = reg_slot(r, g.num);
    *slot = match (g.size, g.high8) {
        (_, true) => (*slot & !0xff00) | ((value & 0xff) << 8),
        (4, false) => value & 0xffff_ffff,
        (8, false) => value,
        (s, false) => (*slot & !mask(s)) | (value & mask(s)),
    };
}

fn source_value(r: &kvm_regs, src: Source, size: u8) -> u64 {
    match src {
        Source::Reg(g) => read_gpr(r, g),
        Source::Imm(v) => v & mask(size),
    }
}

/// One physically contiguous piece of an access, with the paging entries to mark.
#[derive(Debug, Clone, Copy, Default)]
struct Piece {
    gpa: u64,
    len: u64,
    /// Guest physical addresses of the entries walked, and their values.
    entries: [(u64, u64); 5],
    levels: usize,
}

/// Carries out `op` (the `len`-byte instruction at `site`) on the stopped vCPU's registers
/// and on guest memory. On error nothing has been changed.
pub fn execute(
    op: &Op,
    len: u8,
    site: u64,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
    mem: &GuestRam,
    watches: &[Watch],
) -> Result<(), EmulateError> {
    if regs.rflags & x86::RFLAGS_TF != 0 {
        return Err(EmulateError::SingleStep {
            rflags: regs.rflags,
        });
    }
    if sregs.efer & x86::EFER_LMA == 0 || sregs.cs.l != 1 {
        return Err(EmulateError::NotLongMode {
            efer: sregs.efer,
            cs_l: sregs.cs.l,
        });
    }
    let next = site.wrapping_add(u64::from(len));
    match *op {
        Op::NoOp => {}
        Op::MovReg { dst, src } => {
            let v = source_value(regs, src, dst.size);
            write_gpr(regs, dst, v);
        }
        Op::Store { dst, src } => {
            let addr = linear(&dst, regs, sregs);
            let value = source_value(regs, src, dst.size);
            let pieces = translate(addr, dst.size, true, regs, sregs, mem, watches)?;
            commit_paging(&pieces, true, mem);
            store(&pieces, addr, value, dst.size, mem)?;
        }
        Op::Load { dst, src } => {
            let addr = linear(&src, regs, sregs);
            let pieces = translate(addr, src.size, false, regs, sregs, mem, watches)?;
            let value = load(&pieces, addr, src.size, mem)?;
            commit_paging(&pieces, false, mem);
            write_gpr(regs, dst, value);
        }
    }
    regs.rip = next;
    Ok(())
}

/// Linear address of a memory operand (64-bit addressing: wrapping arithmetic, SDM 1
/// 3.7.5).
fn linear(m: &Mem, regs: &kvm_regs, sregs: &kvm_sregs) -> u64 {
    let base = m.base.map_or(0, |b| reg_value(regs, b));
    let index = m
        .index
        .map_or(0, |i| reg_value(regs, i).wrapping_mul(u64::from(m.scale)));
    let seg = match m.segment {
        Segment::Flat => 0,
        Segment::Fs => sregs.fs.base,
        Segment::Gs => sregs.gs.base,
    };
    seg.wrapping_add(base)
        .wrapping_add(index)
        .wrapping_add(m.disp)
}

fn canonical(addr: u64, bits: u32) -> bool {
    let shift = 64 - bits;
    (((addr << shift) as i64) >> shift) as u64 == addr
}

/// Translates `size` bytes at `addr`, checking everything native execution would.
fn translate(
    addr: u64,
    size: u8,
    write: bool,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    mem: &GuestRam,
    watches: &[Watch],
) -> Result<[Option<Piece>; 2], EmulateError> {
    let size = u64::from(size);
    let bits = if sregs.cr4 & CR4_LA57 != 0 { 57 } else { 48 };
    let last = addr.wrapping_add(size - 1);
    for a in [addr, last] {
        if !canonical(a, bits) {
            return Err(EmulateError::NonCanonical { addr: a });
        }
    }
    let cpl = sregs.ss.dpl;
    if cpl == 3
        && sregs.cr0 & x86::CR0_AM != 0
        && regs.rflags & RFLAGS_AC != 0
        && !addr.is_multiple_of(size)
    {
        return Err(EmulateError::Protection {
            addr,
            why: "alignment check (#AC)",
        });
    }
    for w in watches {
        let hit = addr < w.addr.wrapping_add(w.len) && w.addr < addr.wrapping_add(size);
        if hit && (write || !w.writes_only) {
            return Err(EmulateError::Watched {
                addr,
                watch: w.addr,
            });
        }
    }
    let first_len = size.min(PAGE - (addr & (PAGE - 1)));
    let mut pieces = [None, None];
    pieces[0] = Some(walk(addr, first_len, write, cpl, regs, sregs, mem)?);
    if first_len < size {
        let second = addr.wrapping_add(first_len);
        pieces[1] = Some(walk(
            second,
            size - first_len,
            write,
            cpl,
            regs,
            sregs,
            mem,
        )?);
    }
    Ok(pieces)
}

/// Walks the guest's 4- or 5-level page tables for `len` bytes at `addr` (within one page).
fn walk(
    addr: u64,
    len: u64,
    write: bool,
    cpl: u8,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    mem: &GuestRam,
) -> Result<Piece, EmulateError> {
    if sregs.cr0 & x86::CR0_PG == 0 || sregs.cr4 & x86::CR4_PAE == 0 {
        return Err(EmulateError::NotLongMode {
            efer: sregs.efer,
            cs_l: sregs.cs.l,
        });
    }
    let nxe = sregs.efer & x86::EFER_NXE != 0;
    let levels: u8 = if sregs.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
    let mut table = sregs.cr3 & PTE_ADDR;
    let (mut writable, mut user) = (true, true);
    let mut piece = Piece {
        len,
        ..Piece::default()
    };
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let entry_gpa = table + ((addr >> shift) & 0x1ff) * 8;
        let entry = read_entry(mem, entry_gpa).ok_or(EmulateError::NotRam {
            addr,
            gpa: entry_gpa,
        })?;
        if entry & x86::PTE_PRESENT == 0 {
            return Err(EmulateError::NotMapped { addr, level, entry });
        }
        let large = entry & x86::PTE_PAGE_SIZE != 0 && level <= 3 && level > 1;
        // Reserved: XD without EFER.NXE; PS in a PML4E/PML5E; the low address bits of a
        // large page (bit 12 is PAT) (SDM 3A tables 4-15 to 4-20).
        let page_bits = 1u64 << shift;
        let reserved = (entry & PTE_XD != 0 && !nxe)
            || (level >= 4 && entry & x86::PTE_PAGE_SIZE != 0)
            || (large && entry & PTE_ADDR & (page_bits - 1) & !(1 << 12) != 0);
        if reserved {
            return Err(EmulateError::Reserved { addr, level, entry });
        }
        writable &= entry & x86::PTE_WRITABLE != 0;
        user &= entry & x86::PTE_USER != 0;
        piece.entries[piece.levels] = (entry_gpa, entry);
        piece.levels += 1;
        if level == 1 || large {
            let frame = entry & PTE_ADDR & !(page_bits - 1);
            piece.gpa = frame | (addr & (page_bits - 1));
            check_rights(addr, write, cpl, writable, user, regs, sregs)?;
            let end = piece.gpa.checked_add(len);
            if end.is_none_or(|e| e > mem.guest_memory().last_addr().0 + 1) {
                return Err(EmulateError::NotRam {
                    addr,
                    gpa: piece.gpa,
                });
            }
            return Ok(piece);
        }
        table = entry & PTE_ADDR;
    }
    // Not reached: level 1 always maps a page or fails above.
    Err(EmulateError::Reserved {
        addr,
        level: 0,
        entry: 0,
    })
}

/// Access rights of a data access (SDM 3A 4.6.1, 4.6.2).
#[allow(clippy::too_many_arguments)]
fn check_rights(
    addr: u64,
    write: bool,
    cpl: u8,
    writable: bool,
    user: bool,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
) -> Result<(), EmulateError> {
    let refuse = |why| Err(EmulateError::Protection { addr, why });
    if cpl == 3 {
        if !user {
            return refuse("user access to a supervisor page");
        }
        if write && !writable {
            return refuse("user write to a read-only page");
        }
    } else {
        if write && !writable && sregs.cr0 & x86::CR0_WP != 0 {
            return refuse("supervisor write to a read-only page with CR0.WP");
        }
        if user && sregs.cr4 & CR4_SMAP != 0 && regs.rflags & RFLAGS_AC == 0 {
            return refuse("supervisor access to a user page under SMAP");
        }
    }
    // PKRU and IA32_PKRS are not in sync_regs (reading them costs an ioctl): a page that
    // protection keys govern is left to the guest, whatever its key (SDM 3A 4.6.2).
    let keys = if user { CR4_PKE } else { CR4_PKS };
    if sregs.cr4 & keys != 0 {
        return refuse("protection keys in force");
    }
    Ok(())
}

fn read_entry(mem: &GuestRam, gpa: u64) -> Option<u64> {
    mem.guest_memory()
        .load::<u64>(GuestAddress(gpa), Ordering::Acquire)
        .ok()
}

/// Sets the accessed flags of every entry walked, and the dirty flag of the entry that maps
/// the page on a write, as the processor does (SDM 3A 4.8), with locked ORs.
fn commit_paging(pieces: &[Option<Piece>; 2], write: bool, mem: &GuestRam) {
    for p in pieces.iter().flatten() {
        for (i, &(gpa, entry)) in p.entries[..p.levels].iter().enumerate() {
            let leaf = i + 1 == p.levels;
            let want = PTE_ACCESSED | if leaf && write { PTE_DIRTY } else { 0 };
            if entry & want != want {
                if let Ok(slice) = mem.guest_memory().get_slice(GuestAddress(gpa), 8) {
                    if let Ok(a) = slice.get_atomic_ref::<AtomicU64>(0) {
                        a.fetch_or(want, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

fn store(
    pieces: &[Option<Piece>; 2],
    addr: u64,
    value: u64,
    size: u8,
    mem: &GuestRam,
) -> Result<(), EmulateError> {
    let m = mem.guest_memory();
    let bytes = value.to_le_bytes();
    let err = |gpa| EmulateError::NotRam { addr, gpa };
    match pieces {
        [Some(p), None] if p.gpa % u64::from(size) == 0 => {
            // Aligned: one atomic store, as the processor makes it (SDM 3A 9.1.1).
            let a = GuestAddress(p.gpa);
            let r = match size {
                1 => m.store(bytes[0], a, Ordering::SeqCst),
                2 => m.store(value as u16, a, Ordering::SeqCst),
                4 => m.store(value as u32, a, Ordering::SeqCst),
                _ => m.store(value, a, Ordering::SeqCst),
            };
            r.map_err(|_| err(p.gpa))
        }
        _ => {
            let mut at = 0usize;
            for p in pieces.iter().flatten() {
                let n = p.len as usize;
                let chunk = bytes.get(at..at + n).ok_or(err(p.gpa))?;
                m.write_slice(chunk, GuestAddress(p.gpa))
                    .map_err(|_| err(p.gpa))?;
                at += n;
            }
            Ok(())
        }
    }
}

fn load(
    pieces: &[Option<Piece>; 2],
    addr: u64,
    size: u8,
    mem: &GuestRam,
) -> Result<u64, EmulateError> {
    let m = mem.guest_memory();
    let err = |gpa| EmulateError::NotRam { addr, gpa };
    match pieces {
        [Some(p), None] if p.gpa % u64::from(size) == 0 => {
            let a = GuestAddress(p.gpa);
            let r = match size {
                1 => m.load::<u8>(a, Ordering::SeqCst).map(u64::from),
                2 => m.load::<u16>(a, Ordering::SeqCst).map(u64::from),
                4 => m.load::<u32>(a, Ordering::SeqCst).map(u64::from),
                _ => m.load::<u64>(a, Ordering::SeqCst),
            };
            r.map_err(|_| err(p.gpa))
        }
        _ => {
            let mut bytes = [0u8; 8];
            let mut at = 0usize;
            for p in pieces.iter().flatten() {
                let n = p.len as usize;
                let chunk = bytes.get_mut(at..at + n).ok_or(err(p.gpa))?;
                m.read_slice(chunk, GuestAddress(p.gpa))
                    .map_err(|_| err(p.gpa))?;
                at += n;
            }
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nitro_mem::{PhysAddr, PhysMemory};

    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const RW: u64 = x86::PTE_PRESENT | x86::PTE_WRITABLE;
    /// 4 KiB pages over 0..2 MiB (identity) except: 0x10000 read-only, 0x11000 and 0x14000 absent,
    /// 0x12000 user. 2 MiB page at 2 MiB (identity), PD entry 2 absent, PD entry 3 maps
    /// 6 MiB (beyond the 4 MiB of RAM).
    fn ram() -> GuestRam {
        let ram = GuestRam::new(4 << 20).unwrap();
        let put = |gpa: u64, v: u64| ram.write_phys(PhysAddr(gpa), &v.to_le_bytes()).unwrap();
        put(PML4, PDPT | RW | x86::PTE_USER);
        put(PDPT, PD | RW | x86::PTE_USER);
        put(PD, PT | RW | x86::PTE_USER);
        put(PD + 8, 0x20_0000 | RW | x86::PTE_PAGE_SIZE);
        put(PD + 24, 0x60_0000 | RW | x86::PTE_PAGE_SIZE);
        for i in 0..512u64 {
            let flags = match i {
                0x10 => x86::PTE_PRESENT,
                0x11 | 0x14 => 0,
                0x12 => RW | x86::PTE_USER,
                _ => RW,
            };
            put(PT + i * 8, (i << 12) | flags);
        }
        ram
    }

    #[allow(clippy::field_reassign_with_default)]
    fn sregs() -> kvm_sregs {
        let mut s = kvm_sregs::default();
        s.efer = x86::EFER_LMA | x86::EFER_LME | x86::EFER_NXE;
        s.cs.l = 1;
        s.cr0 = x86::CR0_PE | x86::CR0_PG | x86::CR0_WP;
        s.cr4 = x86::CR4_PAE;
        s.cr3 = PML4;
        s.gs.base = 0x2_0000;
        s
    }

    fn regs() -> kvm_regs {
        kvm_regs {
            rax: 0x1111_2222_3333_4444,
            rbx: 0x3_0000,
            rcx: 0xcccc_cccc_cccc_cccc,
            rsp: 0x8_7654,
            rip: 0x1_0000,
            rflags: x86::RFLAGS_FIXED_1,
            ..Default::default()
        }
    }

    fn run(
        code: &[u8],
        r: &mut kvm_regs,
        s: &kvm_sregs,
        mem: &GuestRam,
    ) -> Result<(), EmulateError> {
        run_watched(code, r, s, mem, &[])
    }

    fn run_watched(
        code: &[u8],
        r: &mut kvm_regs,
        s: &kvm_sregs,
        mem: &GuestRam,
        watches: &[Watch],
    ) -> Result<(), EmulateError> {
        let (len, op) = decode(r.rip, code).expect("emulable");
        let before = *r;
        let out = execute(&op, len, r.rip, r, s, mem, watches);
        match &out {
            Ok(()) => assert_eq!(r.rip, before.rip + u64::from(len)),
            Err(_) => assert_eq!(*r, before, "registers untouched on refusal"),
        }
        out
    }

    fn read_u64(mem: &GuestRam, gpa: u64) -> u64 {
        mem.read_phys_u64(PhysAddr(gpa)).unwrap()
    }

    const RCX: Gpr = Gpr {
        num: 1,
        size: 8,
        high8: false,
    };
    const RAX: Gpr = Gpr {
        num: 0,
        size: 8,
        high8: false,
    };

    #[test]
    fn decodes_the_emulable_set() {
        // mov rcx, rax
        assert_eq!(
            decode(0, &[0x48, 0x89, 0xc1]),
            Some((
                3,
                Op::MovReg {
                    dst: RCX,
                    src: Source::Reg(RAX)
                }
            ))
        );
        // mov %rsp, %gs:0x100 (entry_SYSCALL_64 after swapgs)
        let gs = Mem {
            segment: Segment::Gs,
            base: None,
            index: None,
            scale: 1,
            disp: 0x100,
            size: 8,
        };
        let rsp = Gpr {
            num: 4,
            size: 8,
            high8: false,
        };
        let rbx = Gpr {
            num: 3,
            size: 8,
            high8: false,
        };
        assert_eq!(
            decode(0, &[0x65, 0x48, 0x89, 0x24, 0x25, 0, 1, 0, 0]),
            Some((
                9,
                Op::Store {
                    dst: gs,
                    src: Source::Reg(rsp)
                }
            ))
        );
        assert_eq!(
            decode(0, &[0x65, 0x48, 0x8b, 0x1c, 0x25, 0, 1, 0, 0]),
            Some((9, Op::Load { dst: rbx, src: gs }))
        );
        // mov [rbx+0x18], rax
        let based = Mem {
            segment: Segment::Flat,
            base: Some(3),
            disp: 0x18,
            ..gs
        };
        assert_eq!(
            decode(0, &[0x48, 0x89, 0x43, 0x18]),
            Some((
                4,
                Op::Store {
                    dst: based,
                    src: Source::Reg(RAX)
                }
            ))
        );
        // mov rax, [rip+0x10] at 0x1000: absolute 0x1017
        match decode(0x1000, &[0x48, 0x8b, 0x05, 0x10, 0, 0, 0]) {
            Some((7, Op::Load { src, .. })) => assert_eq!((src.base, src.disp), (None, 0x1017)),
            other => panic!("{other:?}"),
        }
        // mov dword [rdi+8], 0x12345678
        match decode(0, &[0xc7, 0x47, 0x08, 0x78, 0x56, 0x34, 0x12]) {
            Some((7, Op::Store { dst, src })) => {
                assert_eq!((dst.size, dst.base), (4, Some(7)));
                assert_eq!(src, Source::Imm(0x1234_5678));
            }
            other => panic!("{other:?}"),
        }
        // mov ah, bl
        assert_eq!(
            decode(0, &[0x88, 0xdc]),
            Some((
                2,
                Op::MovReg {
                    dst: Gpr {
                        num: 0,
                        size: 1,
                        high8: true
                    },
                    src: Source::Reg(Gpr {
                        num: 3,
                        size: 1,
                        high8: false
                    })
                }
            ))
        );
        // movabs rax, [0x1122334455667788]
        match decode(
            0,
            &[0x48, 0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
        ) {
            Some((10, Op::Load { src, .. })) => assert_eq!(src.disp, 0x1122_3344_5566_7788),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(0, &[0xf3, 0x0f, 0x1e, 0xfa]), Some((4, Op::NoOp)));
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        for code in [
            &[0x48, 0x8d, 0x48, 0x01][..], // lea rcx, [rax+1]
            &[0x0f, 0x01, 0xf8],           // swapgs
            &[0x0f, 0x22, 0xd8],           // mov cr3, rax
            &[0x8e, 0xd8],                 // mov ds, eax
            &[0x67, 0x48, 0x89, 0x03],     // mov [ebx], rax (32-bit address)
            &[0xf3, 0x48, 0x89, 0x03],     // xrelease mov [rbx], rax
            &[0x48, 0x01, 0xc1],           // add rcx, rax
            &[0xc3],                       // ret
            &[0x48, 0x89],                 // truncated
            &[],
        ] {
            assert_eq!(decode(0, code), None, "{code:02x?}");
        }
    }

    #[test]
    fn register_moves_follow_operand_width() {
        let (mem, s) = (ram(), sregs());
        let mut r = regs();
        run(&[0x48, 0x89, 0xc1], &mut r, &s, &mem).unwrap(); // mov rcx, rax
        assert_eq!(r.rcx, r.rax);
        let mut r = regs();
        run(&[0x89, 0xc1], &mut r, &s, &mem).unwrap(); // mov ecx, eax: zero-extends
        assert_eq!(r.rcx, 0x3333_4444);
        let mut r = regs();
        run(&[0x66, 0x89, 0xc1], &mut r, &s, &mem).unwrap(); // mov cx, ax: merges
        assert_eq!(r.rcx, 0xcccc_cccc_cccc_4444);
        let mut r = regs();
        run(&[0x88, 0xc5], &mut r, &s, &mem).unwrap(); // mov ch, al
        assert_eq!(r.rcx, 0xcccc_cccc_cccc_44cc);
        let mut r = regs();
        run(
            &[0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff],
            &mut r,
            &s,
            &mem,
        )
        .unwrap(); // mov rcx, -1
        assert_eq!(r.rcx, u64::MAX);
        let mut r = regs();
        run(&[0x49, 0x89, 0xe7], &mut r, &s, &mem).unwrap(); // mov r15, rsp
        assert_eq!(r.r15, r.rsp);
    }

    #[test]
    fn gs_store_and_load_go_through_the_page_tables() {
        let (mem, s) = (ram(), sregs());
        let mut r = regs();
        // mov %rsp, %gs:0x100 -> 0x20100 (4 KiB page 0x20 of the page table)
        run(
            &[0x65, 0x48, 0x89, 0x24, 0x25, 0, 1, 0, 0],
            &mut r,
            &s,
            &mem,
        )
        .unwrap();
        assert_eq!(read_u64(&mem, 0x2_0100), 0x8_7654);
        // Accessed on every level, dirty on the PTE (SDM 3A 4.8).
        let pte = read_u64(&mem, PT + 0x20 * 8);
        assert_eq!(pte & (PTE_ACCESSED | PTE_DIRTY), PTE_ACCESSED | PTE_DIRTY);
        assert_ne!(read_u64(&mem, PML4) & PTE_ACCESSED, 0);
        assert_ne!(read_u64(&mem, PD) & PTE_ACCESSED, 0);
        // mov %gs:0x100, %rbx
        let mut r = regs();
        run(
            &[0x65, 0x48, 0x8b, 0x1c, 0x25, 0, 1, 0, 0],
            &mut r,
            &s,
            &mem,
        )
        .unwrap();
        assert_eq!(r.rbx, 0x8_7654);
        // A load marks accessed only.
        let mut r = regs();
        run(&[0x48, 0x8b, 0x43, 0x18], &mut r, &s, &mem).unwrap(); // mov rax, [rbx+0x18]
        assert_eq!(r.rax, 0);
        assert_eq!(
            read_u64(&mem, PT + 0x30 * 8) & (PTE_ACCESSED | PTE_DIRTY),
            PTE_ACCESSED
        );
        // [base + index*scale + disp] and a 2 MiB page: mov [rbx + rcx*8 + 8], eax
        let mut r = regs();
        r.rbx = 0x20_0000;
        r.rcx = 2;
        run(&[0x89, 0x44, 0xcb, 0x08], &mut r, &s, &mem).unwrap();
        assert_eq!(read_u64(&mem, 0x20_0018), 0x3333_4444);
        assert_ne!(read_u64(&mem, PD + 8) & PTE_DIRTY, 0);
    }

    #[test]
    fn an_access_across_pages_is_split() {
        let (mem, s) = (ram(), sregs());
        let mut r = regs();
        r.rbx = 0x2_0ffc - 0x18;
        run(&[0x48, 0x89, 0x43, 0x18], &mut r, &s, &mem).unwrap(); // mov [rbx+0x18], rax
        assert_eq!(read_u64(&mem, 0x2_0ffc), 0x1111_2222_3333_4444);
        let mut r = regs();
        r.rbx = 0x2_0ffc - 0x18;
        run(&[0x48, 0x8b, 0x53, 0x18], &mut r, &s, &mem).unwrap(); // mov rdx, [rbx+0x18]
        assert_eq!(r.rdx, 0x1111_2222_3333_4444);
    }

    #[test]
    fn faulting_accesses_are_refused_and_change_nothing() {
        let (mem, s) = (ram(), sregs());
        let store = [0x48, 0x89, 0x43, 0x18]; // mov [rbx+0x18], rax
        let at = |rbx: u64| {
            let mut r = regs();
            r.rbx = rbx - 0x18;
            r
        };
        // Crossing from a present page into an absent one: nothing written to the first.
        mem.write_phys(PhysAddr(0x13ffc), &[0xaa; 4]).unwrap();
        let mut r = at(0x13ffc);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::NotMapped { level: 1, .. })
        ));
        let mut b = [0u8; 4];
        mem.read_phys(PhysAddr(0x13ffc), &mut b).unwrap();
        assert_eq!(b, [0xaa; 4], "the first half was not written");
        let mut r = at(0x13ffc);
        assert!(run(&[0x48, 0x8b, 0x53, 0x18], &mut r, &s, &mem).is_err()); // load too
                                                                            // Crossing from a writable page into a read-only one.
        let mut r = at(0xfffc);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::Protection { .. })
        ));
        // Read-only page with CR0.WP: stores refused, loads allowed.
        let mut r = at(0x10008);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::Protection { .. })
        ));
        let mut r = at(0x10008);
        run(&[0x48, 0x8b, 0x53, 0x18], &mut r, &s, &mem).unwrap();
        // Without CR0.WP a supervisor store to it is allowed.
        let mut nowp = s;
        nowp.cr0 &= !x86::CR0_WP;
        let mut r = at(0x10008);
        run(&store, &mut r, &nowp, &mem).unwrap();
        // Absent PD entry, mapping beyond RAM, non-canonical, table outside RAM.
        let mut r = at(0x40_0000);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::NotMapped { level: 2, .. })
        ));
        let mut r = at(0x60_0000);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::NotRam { gpa: 0x60_0000, .. })
        ));
        let mut r = at(0x3f_fffc); // last bytes of RAM, crossing into nothing
        mem.write_phys(PhysAddr(0x3f_fffc), &[0x55; 4]).unwrap();
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::NotMapped { .. })
        ));
        let mut b = [0u8; 4];
        mem.read_phys(PhysAddr(0x3f_fffc), &mut b).unwrap();
        assert_eq!(b, [0x55; 4]);
        let mut r = at(0x8000_0000_0000);
        assert!(matches!(
            run(&store, &mut r, &s, &mem),
            Err(EmulateError::NonCanonical { .. })
        ));
        let mut far = s;
        far.cr3 = 0x1_0000_0000;
        let mut r = at(0x2_0000);
        assert!(matches!(
            run(&store, &mut r, &far, &mem),
            Err(EmulateError::NotRam { .. })
        ));
        // A %gs:disp32 store with a wild GS base.
        let mut wild = s;
        wild.gs.base = 0xdead_0000_0000_0000;
        let mut r = regs();
        assert!(run(
            &[0x65, 0x48, 0x89, 0x24, 0x25, 0, 1, 0, 0],
            &mut r,
            &wild,
            &mem
        )
        .is_err());
    }

    #[test]
    fn rights_and_state_checks() {
        let (mem, s) = (ram(), sregs());
        let store = [0x48, 0x89, 0x43, 0x18];
        let user_page = |r: &mut kvm_regs| r.rbx = 0x1_2000 - 0x18;
        // SMAP: a supervisor access to a user page needs RFLAGS.AC.
        let mut smap = s;
        smap.cr4 |= CR4_SMAP;
        let mut r = regs();
        user_page(&mut r);
        assert!(matches!(
            run(&store, &mut r, &smap, &mem),
            Err(EmulateError::Protection { .. })
        ));
        let mut r = regs();
        user_page(&mut r);
        r.rflags |= RFLAGS_AC;
        run(&store, &mut r, &smap, &mem).unwrap();
        // CPL 3 to a supervisor page.
        let mut user = s;
        user.ss.dpl = 3;
        let mut r = regs();
        assert!(run(&store, &mut r, &user, &mem).is_err());
        let mut r = regs();
        user_page(&mut r);
        run(&store, &mut r, &user, &mem).unwrap();
        // Protection keys for user pages in force.
        let mut pke = s;
        pke.cr4 |= CR4_PKE;
        let mut r = regs();
        user_page(&mut r);
        assert!(run(&store, &mut r, &pke, &mem).is_err());
        // XD without EFER.NXE is reserved.
        let mut nonx = s;
        nonx.efer &= !x86::EFER_NXE;
        mem.write_phys(
            PhysAddr(PT + 0x40 * 8),
            &(0x4_0000 | RW | PTE_XD).to_le_bytes(),
        )
        .unwrap();
        let mut r = regs();
        r.rbx = 0x4_0000;
        assert!(matches!(
            run(&store, &mut r, &nonx, &mem),
            Err(EmulateError::Reserved { level: 1, .. })
        ));
        let mut r = regs();
        r.rbx = 0x4_0000;
        run(&store, &mut r, &s, &mem).unwrap();
        // RFLAGS.TF, not 64-bit mode.
        let mut r = regs();
        r.rflags |= x86::RFLAGS_TF;
        assert!(matches!(
            run(&[0x48, 0x89, 0xc1], &mut r, &s, &mem),
            Err(EmulateError::SingleStep { .. })
        ));
        let mut compat = s;
        compat.cs.l = 0;
        let mut r = regs();
        assert!(matches!(
            run(&[0x48, 0x89, 0xc1], &mut r, &compat, &mem),
            Err(EmulateError::NotLongMode { .. })
        ));
    }

    #[test]
    fn watched_accesses_are_left_to_the_guest() {
        let (mem, s) = (ram(), sregs());
        let gs_store = [0x65, 0x48, 0x89, 0x24, 0x25, 0, 1, 0, 0];
        let gs_load = [0x65, 0x48, 0x8b, 0x1c, 0x25, 0, 1, 0, 0];
        let write = [Watch {
            addr: 0x2_0104,
            len: 4,
            writes_only: true,
        }];
        let mut r = regs();
        assert!(matches!(
            run_watched(&gs_store, &mut r, &s, &mem, &write),
            Err(EmulateError::Watched {
                watch: 0x2_0104,
                ..
            })
        ));
        let mut r = regs();
        run_watched(&gs_load, &mut r, &s, &mem, &write).unwrap();
        let read = [Watch {
            addr: 0x2_0100,
            len: 1,
            writes_only: false,
        }];
        let mut r = regs();
        assert!(run_watched(&gs_load, &mut r, &s, &mem, &read).is_err());
        let beside = [Watch {
            addr: 0x2_0108,
            len: 8,
            writes_only: false,
        }];
        let mut r = regs();
        run_watched(&gs_store, &mut r, &s, &mem, &beside).unwrap();
    }
}
