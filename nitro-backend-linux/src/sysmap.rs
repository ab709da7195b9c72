//! An optional System.map: `ADDRESS TYPE NAME` lines (the format `nm` prints, as
//! scripts/mksysmap writes it). The kernel's own kallsyms tables remain the source of
//! symbols; a map checks that they belong to the same build and names data symbols a kernel
//! built without CONFIG_KALLSYMS_ALL leaves out of kallsyms (`sys_call_table`...).
//! Distribution placeholders (Debian ships an 83-byte file pointing to the -dbg package) are
//! recognised and refused.

use std::{collections::HashMap, path::Path};

use crate::{LinuxBackend, LinuxError};

/// Largest map read (a full distribution map is about 8 MiB).
const MAX_MAP: u64 = 64 << 20;

/// Symbols read from a System.map.
#[derive(Debug, Clone, Default)]
pub struct SystemMap {
    syms: HashMap<String, u64>,
}

impl SystemMap {
    /// Parses map text; lines that are not `HEX TYPE NAME` are skipped.
    pub fn parse(text: &str) -> Result<Self, LinuxError> {
        let mut syms = HashMap::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Ok(addr), 1) = (u64::from_str_radix(addr, 16), kind.len()) else {
                continue;
            };
            syms.entry(name.to_string()).or_insert(addr);
        }
        if syms.len() < 100 || !syms.contains_key("_stext") {
            return Err(LinuxError::Symbols(format!(
                "System.map has {} symbols and no _stext: a placeholder, not a map",
                syms.len()
            )));
        }
        Ok(SystemMap { syms })
    }

    /// Reads and parses a map file (bounded in size).
    pub fn from_file(path: &Path) -> Result<Self, LinuxError> {
        let err = |e: String| LinuxError::Symbols(format!("{}: {e}", path.display()));
        let len = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .len();
        if len > MAX_MAP {
            return Err(err(format!("{len} bytes: too large for a System.map")));
        }
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&String::from_utf8_lossy(&text))
    }

    /// Address of `name`.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.syms.get(name).copied()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Whether the map is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

/// Symbols compared between a map and kallsyms: text from three places of the image.
const CHECKED: [&str; 4] = ["_stext", "entry_SYSCALL_64", "do_syscall_64", "_etext"];

impl LinuxBackend {
    /// Takes an optional System.map: it must describe the same build as the kernel's own
    /// kallsyms (same addresses, up to one KASLR slide when kallsyms came from guest memory),
    /// and supplies the data symbols kallsyms lacks.
    pub fn with_system_map(mut self, path: &Path) -> Result<Self, LinuxError> {
        let map = SystemMap::from_file(path)?;
        let mut delta = None;
        for name in CHECKED {
            let (Some(k), Some(m)) = (self.kallsyms().lookup(name), map.lookup(name)) else {
                continue;
            };
            let d = k.wrapping_sub(m);
            if *delta.get_or_insert(d) != d || d % 0x20_0000 != 0 {
                return Err(LinuxError::Symbols(format!(
                    "{}: {name} at {m:#x} but the kernel has it at {k:#x}: another build",
                    path.display()
                )));
            }
        }
        let Some(delta) = delta else {
            return Err(LinuxError::Symbols(format!(
                "{}: none of {CHECKED:?} in common with the kernel",
                path.display()
            )));
        };
        let from_map = |n: &str| map.lookup(n).map(|a| a.wrapping_add(delta));
        let s = &mut self.symbols;
        s.sys_call_table = s.sys_call_table.or_else(|| from_map("sys_call_table"));
        s.ia32_sys_call_table = s
            .ia32_sys_call_table
            .or_else(|| from_map("ia32_sys_call_table"));
        s.randomize_kstack_offset = s
            .randomize_kstack_offset
            .or_else(|| from_map("randomize_kstack_offset"));
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_is_refused() {
        // Debian's /boot/System.map-6.1.0-*-cloud-amd64.
        let debian =
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        assert!(SystemMap::parse(debian).is_err());
        assert!(SystemMap::parse("").is_err());
    }

    #[test]
    fn parses_nm_lines() {
        let mut text = String::from("ffffffff81000000 T _stext\nnot a line\n");
        for i in 0..200 {
            text.push_str(&format!(
                "{:016x} t f{i}\n",
                0xffff_ffff_8100_1000u64 + i * 16
            ));
        }
        let m = SystemMap::parse(&text).expect("map");
        assert_eq!(m.lookup("_stext"), Some(0xffff_ffff_8100_0000));
        assert_eq!(m.lookup("f2"), Some(0xffff_ffff_8100_1020));
        assert_eq!(m.len(), 201);
    }
}
