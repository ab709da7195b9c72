//! Prints the kallsyms entries of a kernel image whose names contain a pattern:
//! `cargo run --example ksyms -- VMLINUZ PATTERN`.
use nitro_backend_linux::kernel::{bzimage, kallsyms::Kallsyms};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(pat)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ksyms VMLINUZ PATTERN");
        std::process::exit(2);
    };
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let vmlinux = bzimage::extract_vmlinux(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let syms = Kallsyms::from_vmlinux(&vmlinux).unwrap_or_else(|e| panic!("{path}: {e}"));
    for s in syms.symbols().filter(|s| s.name.contains(pat.as_str())) {
        println!(
            "{:016x} {} {}{}",
            s.addr,
            s.kind,
            s.name,
            if s.is_percpu { " [percpu]" } else { "" }
        );
    }
}
