//! A VM run in-process on KVM, and the synthetic long-mode guests the tests and benches use.
//!
//! Synthetic guest layout (guest physical = linear; identity-mapped with 2 MiB pages over the
//! first GiB, Intel SDM 3A 4.5):
//!
//! | GPA | what |
//! |---|---|
//! | `0x1000` | GDT: null, unused, 64-bit code (selector 0x10), data (0x18) |
//! | `0x2000`, `0x3000`, `0x4000` | PML4, PDPT, PD (512 x 2 MiB) |
//! | `0x5000` | scratch page for out-of-line copies ([`Scratch`]) |
//! | [`SYNTHETIC_LOAD_MIN`] .. | the guest's code, loaded at `load_gpa` |
//! | top of RAM | one 16 KiB stack per vCPU (vCPU *n* below vCPU *n-1*) |
//!
//! Each vCPU starts in 64-bit ring 0 at `entry` with `rdi` = its index, `rsi` = the vCPU
//! count, `rsp` = the top of its stack, interrupts off, no IDT (an exception ends the guest
//! with a triple fault, reported as [`KvmError::GuestCannotRun`]).

use std::{ffi::CString, sync::Arc};

use kvm_bindings::{
    kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use nitro_mem::{AddressSpace, PhysAddr, PhysMemory, VirtAddr};
use nitro_sys::x86;

use super::{
    memory::GuestRam,
    plan::{ArmedPlan, Scratch},
    port::{NoPorts, PortIo},
    KvmError, KvmVcpu,
};
use crate::TrapPlan;

/// The KVM device node.
pub const KVM_PATH: &str = "/dev/kvm";

pub(crate) const GDT_GPA: u64 = 0x1000;
pub(crate) const PML4_GPA: u64 = 0x2000;
const PDPT_GPA: u64 = 0x3000;
const PD_GPA: u64 = 0x4000;
const SCRATCH_GPA: u64 = 0x5000;
const SCRATCH_LEN: u64 = 0x1000;
/// Lowest guest physical address synthetic code may be loaded at.
pub const SYNTHETIC_LOAD_MIN: u64 = 0x8000;
/// Stack bytes per vCPU of a synthetic guest.
pub const SYNTHETIC_STACK: u64 = 0x4000;
/// Largest synthetic guest RAM (what one page directory of 2 MiB pages maps).
pub const SYNTHETIC_MEMORY_MAX: u64 = 1 << 30;
/// Most vCPUs of a synthetic guest.
pub const SYNTHETIC_VCPUS_MAX: u32 = 64;

/// GDT descriptors (Intel SDM 3A 3.4.5): null, unused, flat 64-bit code (L=1, D=0, P, DPL 0,
/// type 0xB) and flat data (D/B=1, G=1, P, type 0x3).
const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
/// Code segment selector (GDT entry 2).
pub const CODE_SELECTOR: u16 = 0x10;
/// Data segment selector (GDT entry 3).
pub const DATA_SELECTOR: u16 = 0x18;

/// What to run in a synthetic guest.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticGuest<'a> {
    /// Machine code, 64-bit, ring 0.
    pub code: &'a [u8],
    /// Guest physical (= linear) address the code is loaded at; at least
    /// [`SYNTHETIC_LOAD_MIN`].
    pub load_gpa: u64,
    /// Where every vCPU starts; inside the code.
    pub entry: u64,
    /// Number of vCPUs, 1 to [`SYNTHETIC_VCPUS_MAX`].
    pub vcpus: u32,
    /// RAM size in bytes: a multiple of 4 KiB, at most [`SYNTHETIC_MEMORY_MAX`].
    pub memory_size: u64,
}

/// A VM with its memory and vCPUs, not yet running.
///
/// Field order matters: vCPUs and the VM are closed before the memory they use is unmapped.
#[derive(Debug)]
pub struct KvmVm {
    vcpus: Vec<KvmVcpu>,
    vm: VmFd,
    kvm: Kvm,
    memory: Arc<GuestRam>,
    scratch: Option<Scratch>,
    cr3: u64,
}

/// Opens the KVM device at `path` and checks the capabilities the driver needs.
pub fn open_kvm(path: &str) -> Result<Kvm, KvmError> {
    let cpath = CString::new(path).map_err(|_| KvmError::Layout(format!("bad path {path:?}")))?;
    let kvm = Kvm::new_with_path(&cpath).map_err(|e| KvmError::open(path, e.errno()))?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(KvmError::Open {
            path: path.into(),
            source: std::io::Error::other(format!("KVM API version {version}, expected 12")),
        });
    }
    for (cap, name) in [
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::SetGuestDebug, "KVM_CAP_SET_GUEST_DEBUG"),
        (Cap::SyncRegs, "KVM_CAP_SYNC_REGS"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(KvmError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

impl KvmVm {
    /// Creates a synthetic guest on [`KVM_PATH`].
    pub fn synthetic(guest: &SyntheticGuest<'_>) -> Result<Self, KvmError> {
        Self::synthetic_at(KVM_PATH, guest)
    }

    /// Creates a synthetic guest on the KVM device at `path`.
    pub fn synthetic_at(path: &str, guest: &SyntheticGuest<'_>) -> Result<Self, KvmError> {
        check_layout(guest)?;
        let kvm = open_kvm(path)?;
        let max = kvm.get_max_vcpus();
        if guest.vcpus as usize > max {
            return Err(KvmError::Layout(format!(
                "{} vCPUs, KVM allows {max}",
                guest.vcpus
            )));
        }
        let vm = kvm
            .create_vm()
            .map_err(|e| KvmError::ioctl("KVM_CREATE_VM", e))?;
        let memory = Arc::new(GuestRam::new(guest.memory_size)?);
        register_memory(&vm, &memory)?;
        write_tables(&*memory)?;
        memory.write_phys(PhysAddr(guest.load_gpa), guest.code)?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| KvmError::ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
        let port_io: Arc<dyn PortIo> = Arc::new(NoPorts);
        let mut vcpus = Vec::with_capacity(guest.vcpus as usize);
        for i in 0..guest.vcpus {
            let fd = vm
                .create_vcpu(u64::from(i))
                .map_err(|e| KvmError::ioctl("KVM_CREATE_VCPU", e))?;
            fd.set_cpuid2(&cpuid)
                .map_err(|e| KvmError::ioctl("KVM_SET_CPUID2", e))?;
            let mut sregs = fd
                .get_sregs()
                .map_err(|e| KvmError::ioctl("KVM_GET_SREGS", e))?;
            long_mode_sregs(&mut sregs);
            let regs = kvm_regs {
                rip: guest.entry,
                rsp: guest.memory_size - u64::from(i) * SYNTHETIC_STACK,
                rflags: x86::RFLAGS_FIXED_1,
                rdi: u64::from(i),
                rsi: u64::from(guest.vcpus),
                ..Default::default()
            };
            let mut vcpu = KvmVcpu::new(i, fd, Arc::clone(&port_io), Arc::clone(&memory));
            vcpu.set_initial_state(&regs, &sregs)?;
            vcpus.push(vcpu);
        }
        let scratch = Some(Scratch {
            gva: SCRATCH_GPA,
            gpa: SCRATCH_GPA,
            len: SCRATCH_LEN,
        });
        Ok(KvmVm {
            vcpus,
            vm,
            kvm,
            memory,
            scratch,
            cr3: PML4_GPA,
        })
    }

    /// Assembles a VM from its parts (for other guest loaders in this module).
    pub(crate) fn from_parts(parts: Parts) -> Self {
        KvmVm {
            vcpus: parts.vcpus,
            vm: parts.vm,
            kvm: parts.kvm,
            memory: parts.memory,
            scratch: parts.scratch,
            cr3: parts.cr3,
        }
    }

    /// Guest RAM.
    pub fn memory(&self) -> &Arc<GuestRam> {
        &self.memory
    }

    /// The vCPUs.
    pub fn vcpus_mut(&mut self) -> &mut [KvmVcpu] {
        &mut self.vcpus
    }

    /// The scratch area for out-of-line copies, if the guest has one.
    pub fn scratch(&self) -> Option<Scratch> {
        self.scratch
    }

    /// The KVM system handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The KVM VM handle.
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// Builds the debug-register form of `plan`, writing out-of-line copies to the scratch
    /// area (instruction bytes are read through the guest's page tables).
    pub fn prepare(&self, plan: &TrapPlan, rf_honoured: bool) -> Result<Arc<ArmedPlan>, KvmError> {
        prepare_plan(plan, &self.memory, self.cr3, self.scratch, rf_honoured)
    }

    /// Splits the VM into its parts (for the threaded driver).
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            vcpus: self.vcpus,
            vm: self.vm,
            kvm: self.kvm,
            memory: self.memory,
            scratch: self.scratch,
            cr3: self.cr3,
        }
    }
}

/// The parts of a [`KvmVm`], in drop order.
#[derive(Debug)]
pub(crate) struct Parts {
    pub vcpus: Vec<KvmVcpu>,
    pub vm: VmFd,
    pub kvm: Kvm,
    pub memory: Arc<GuestRam>,
    pub scratch: Option<Scratch>,
    pub cr3: u64,
}

/// Registers every region of `memory` as a KVM memory slot.
///
/// The caller must keep `memory` alive as long as `vm` or any of its vCPU fds is open (the
/// types here do so by field order and by the clone each vCPU thread holds).
pub(crate) fn register_memory(vm: &VmFd, memory: &GuestRam) -> Result<(), KvmError> {
    for (slot, (gpa, len, host)) in memory.regions().into_iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: len,
            userspace_addr: host,
        };
        // SAFETY: `host..host+len` is a live anonymous mapping owned by `memory`, which the
        // callers keep alive until every vCPU fd and the VM fd are closed (see above), so KVM
        // never sees it unmapped.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| KvmError::ioctl("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

/// See [`KvmVm::prepare`].
pub(crate) fn prepare_plan(
    plan: &TrapPlan,
    memory: &GuestRam,
    cr3: u64,
    scratch: Option<Scratch>,
    rf_honoured: bool,
) -> Result<Arc<ArmedPlan>, KvmError> {
    let space = AddressSpace::new(memory, PhysAddr(cr3));
    let read = |va: u64, buf: &mut [u8]| -> Result<(), KvmError> {
        Ok(space.read_virt(VirtAddr(va), buf)?)
    };
    Ok(Arc::new(ArmedPlan::build(
        plan,
        &read,
        memory,
        scratch,
        rf_honoured,
    )?))
}

fn check_layout(g: &SyntheticGuest<'_>) -> Result<(), KvmError> {
    let bad = |why: String| Err(KvmError::Layout(why));
    if g.vcpus == 0 || g.vcpus > SYNTHETIC_VCPUS_MAX {
        return bad(format!("{} vCPUs (1 to {SYNTHETIC_VCPUS_MAX})", g.vcpus));
    }
    if g.memory_size & 0xfff != 0 || g.memory_size > SYNTHETIC_MEMORY_MAX {
        return bad(format!(
            "memory size {:#x}: a multiple of 4 KiB up to 1 GiB",
            g.memory_size
        ));
    }
    let stacks = u64::from(g.vcpus) * SYNTHETIC_STACK;
    let code_end = g.load_gpa.checked_add(g.code.len() as u64);
    if g.load_gpa < SYNTHETIC_LOAD_MIN || code_end.is_none_or(|e| e + stacks > g.memory_size) {
        return bad(format!(
            "code at {:#x}+{:#x} must lie in {SYNTHETIC_LOAD_MIN:#x}..{:#x} (RAM less {stacks:#x} of stacks)",
            g.load_gpa,
            g.code.len(),
            g.memory_size.saturating_sub(stacks)
        ));
    }
    if !(g.load_gpa..g.load_gpa + g.code.len() as u64).contains(&g.entry) {
        return bad(format!("entry {:#x} outside the code", g.entry));
    }
    Ok(())
}

/// Flat 64-bit ring-0 segments (code 0x10, data 0x18: the selectors the Linux 64-bit boot
/// protocol asks for), [`GDT`] at `0x1000`, identity paging, no IDT.
pub(crate) fn long_mode_sregs(sregs: &mut kvm_sregs) {
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: CODE_SELECTOR,
        type_: x86::SEG_TYPE_CODE_XR_ACCESSED,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: DATA_SELECTOR,
        type_: x86::SEG_TYPE_DATA_RW_ACCESSED,
        db: 1,
        l: 0,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = x86::CR4_PAE | x86::CR4_OSFXSR | x86::CR4_OSXMMEXCPT;
    sregs.cr0 = x86::CR0_PE
        | x86::CR0_MP
        | x86::CR0_ET
        | x86::CR0_NE
        | x86::CR0_WP
        | x86::CR0_AM
        | x86::CR0_PG;
    sregs.efer = x86::EFER_LME | x86::EFER_LMA;
}

/// GDT and identity page tables.
pub(crate) fn write_tables(mem: &dyn PhysMemory) -> Result<(), KvmError> {
    for (i, d) in GDT.iter().enumerate() {
        mem.write_phys(PhysAddr(GDT_GPA + i as u64 * 8), &d.to_le_bytes())?;
    }
    let table = x86::PTE_PRESENT | x86::PTE_WRITABLE;
    mem.write_phys(PhysAddr(PML4_GPA), &(PDPT_GPA | table).to_le_bytes())?;
    mem.write_phys(PhysAddr(PDPT_GPA), &(PD_GPA | table).to_le_bytes())?;
    let mut pd = Vec::with_capacity(512 * 8);
    for i in 0..512u64 {
        pd.extend_from_slice(&((i << 21) | table | x86::PTE_PAGE_SIZE).to_le_bytes());
    }
    mem.write_phys(PhysAddr(PD_GPA), &pd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(code: &[u8]) -> SyntheticGuest<'_> {
        SyntheticGuest {
            code,
            load_gpa: 0x10000,
            entry: 0x10000,
            vcpus: 1,
            memory_size: 1 << 20,
        }
    }

    #[test]
    fn layout_is_checked() {
        let code = [0xf4u8];
        assert!(check_layout(&guest(&code)).is_ok());
        assert!(check_layout(&SyntheticGuest {
            load_gpa: 0x1000,
            entry: 0x1000,
            ..guest(&code)
        })
        .is_err());
        assert!(check_layout(&SyntheticGuest {
            entry: 0x10001,
            ..guest(&code)
        })
        .is_err());
        assert!(check_layout(&SyntheticGuest {
            vcpus: 0,
            ..guest(&code)
        })
        .is_err());
        assert!(check_layout(&SyntheticGuest {
            memory_size: 0x10800,
            ..guest(&code)
        })
        .is_err());
        assert!(check_layout(&SyntheticGuest {
            load_gpa: u64::MAX,
            entry: u64::MAX,
            ..guest(&code)
        })
        .is_err());
    }

    #[test]
    fn tables_translate_identity() {
        let ram = GuestRam::new(4 << 20).unwrap();
        write_tables(&ram).unwrap();
        let space = AddressSpace::new(&ram, PhysAddr(PML4_GPA));
        let t = space.translate(VirtAddr(0x3f_1234)).unwrap();
        assert_eq!(t.phys, PhysAddr(0x3f_1234));
        assert_eq!(t.page_size, 2 << 20);
    }
}
