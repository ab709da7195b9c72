//! `nitro syscalls`: print a system-call table, one `NUMBER NAME` a line.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use nitro::{guest, NitroError};
use nitro_backend_linux::{
    kernel::{bzimage, elf::Elf, kallsyms::Kallsyms},
    syscalls::table,
};

use crate::{fail, CliResult};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Abi {
    /// 64-bit processes (`syscall`).
    X86_64,
    /// 32-bit processes (`int 0x80`, `sysenter`, compat `syscall`).
    I386,
}

#[derive(Args, Debug)]
pub struct SyscallsArgs {
    /// Which operating system's table.
    #[arg(long, value_enum)]
    os: Os,
    /// Windows build number (7601, 19045, 22631, 26100...).
    #[arg(long)]
    build: Option<u32>,
    /// Linux: the ABI.
    #[arg(long, value_enum, default_value = "x86-64")]
    abi: Abi,
    /// Linux: read the table from this kernel (bzImage or vmlinux): its own `sys_call_table`
    /// named through its kallsyms. Without it, the built-in table.
    #[arg(long, conflicts_with = "guest")]
    kernel: Option<PathBuf>,
    /// Linux: read the table from a provisioned guest's kernel.
    #[arg(long)]
    guest: Option<String>,
}

/// `nitro syscalls`.
pub fn run(a: SyscallsArgs) -> CliResult {
    let rows = match a.os {
        Os::Windows => {
            let build = a.build.ok_or_else(|| {
                fail(NitroError::Usage(
                    "--os windows needs --build NUMBER".into(),
                ))
            })?;
            let t = nitro_backend_windows::syscall_table(build).ok_or_else(|| {
                let known: Vec<String> = nitro_backend_windows::supported_builds()
                    .iter()
                    .map(u32::to_string)
                    .collect();
                fail(NitroError::Usage(format!(
                    "no built-in table for Windows build {build} (built in: {}; others need an ISF profile)",
                    known.join(", ")
                )))
            })?;
            t.iter()
                .map(|&(n, name)| (u64::from(n), name.to_string()))
                .collect()
        }
        Os::Linux => {
            let kernel = match (&a.kernel, &a.guest) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(g)) => Some(guest::guest_kernel(g).map_err(fail)?),
                (None, None) => None,
            };
            match kernel {
                Some(k) => match from_kernel(&k, a.abi) {
                    Ok(rows) => rows,
                    Err(e) if a.abi == Abi::I386 => {
                        eprintln!("nitro: {e}; printing the built-in i386 table");
                        builtin(a.abi)
                    }
                    Err(e) => return Err(fail(e)),
                },
                None => builtin(a.abi),
            }
        }
    };
    let mut out = String::new();
    for (nr, name) in rows {
        out.push_str(&format!("{nr} {name}\n"));
    }
    print!("{out}");
    Ok(0)
}

fn builtin(abi: Abi) -> Vec<(u64, String)> {
    let names = match abi {
        Abi::X86_64 => table::x86_64_names(),
        Abi::I386 => table::i386_names(),
    };
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, n)| (i as u64, n.to_string()))
        .collect()
}

/// The kernel's own table: each `sys_call_table` slot (link-time pointers in the file) named
/// by the kallsyms symbol it points to; unimplemented slots (`sys_ni_syscall`) are skipped.
fn from_kernel(path: &std::path::Path, abi: Abi) -> Result<Vec<(u64, String)>, NitroError> {
    let err = |e: String| NitroError::Usage(format!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let vmlinux = bzimage::extract_vmlinux(&bytes).map_err(|e| err(e.to_string()))?;
    let syms = Kallsyms::from_vmlinux(&vmlinux).map_err(|e| err(e.to_string()))?;
    let elf = Elf::parse(&vmlinux).map_err(|e| err(e.to_string()))?;
    let name = match abi {
        Abi::X86_64 => "sys_call_table",
        Abi::I386 => "ia32_sys_call_table",
    };
    let table_addr = syms
        .lookup(name)
        .ok_or_else(|| err(format!("no {name} in kallsyms")))?;
    let mut rows = Vec::new();
    for nr in 0..1024u64 {
        let Some(slot) = elf.read_at_vaddr(table_addr + nr * 8, 8) else {
            break;
        };
        let ptr = u64::from_le_bytes(slot.try_into().unwrap_or([0; 8]));
        let Some((sym, 0)) = syms.symbolize(ptr) else {
            break;
        };
        let short = table::strip_symbol_prefix(sym);
        if short.is_empty() || short.ends_with("ni_syscall") {
            continue;
        }
        // The ABI name where the built-in table knows the number (`uname`, not `newuname`).
        let abi_name = match abi {
            Abi::X86_64 => table::x86_64(nr),
            Abi::I386 => table::i386(nr),
        };
        let abi_name = abi_name.map(|i| i.name).filter(|n| !n.is_empty());
        rows.push((
            nr,
            abi_name.map_or_else(|| short.to_string(), str::to_string),
        ));
    }
    if rows.is_empty() {
        return Err(err(format!("{name} could not be read from the file")));
    }
    Ok(rows)
}
