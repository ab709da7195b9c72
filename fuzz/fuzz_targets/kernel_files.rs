//! Kernel files from an attacker: bzImage (setup header, payload, decompression with a
//! limit), ELF and kallsyms parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nitro_backend_linux::kernel::{bzimage, elf::Elf, kallsyms::Kallsyms};

fuzz_target!(|data: &[u8]| {
    let _ = bzimage::payload(data);
    if let Ok(v) = bzimage::extract_vmlinux_limited(data, 16 << 20) {
        assert!(v.len() <= 16 << 20);
    }
    if let Ok(v) = bzimage::decompress(data, 16 << 20) {
        assert!(v.len() <= 16 << 20);
    }
    if let Ok(elf) = Elf::parse(data) {
        for s in elf.sections() {
            let _ = elf.section_data(&s.name);
        }
        let _ = elf.read_at_vaddr(elf.entry(), 64);
    }
    if let Ok(k) = Kallsyms::from_vmlinux(data) {
        let _ = k.lookup("entry_SYSCALL_64");
        let _ = k.symbolize(0xffff_ffff_8100_0000);
    }
    if let Ok(k) = Kallsyms::from_image(data, 0xffff_ffff_8100_0000) {
        let _ = k.symbols().take(1000).count();
    }
});
