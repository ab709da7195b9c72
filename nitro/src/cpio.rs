//! A writer for the `newc` cpio format, enough to append files to an initramfs.
//!
//! Reference: Linux `Documentation/driver-api/early-userspace/buffer-format.rst` ("070701"
//! magic, thirteen 8-digit hex fields, name and data padded to 4 bytes, "TRAILER!!!" last).
//! The kernel unpacks concatenated archives in order, compressed or not.

/// Builds a cpio archive in memory.
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    ino: u32,
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        CpioWriter {
            out: Vec::new(),
            ino: 1000,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, 0o040755, &[]);
        self
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(name, 0o100000 | (mode & 0o7777), data);
        self
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

/// Quotes `arg` for a POSIX shell with single quotes.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = CpioWriter::new();
        w.dir("nitro").file("nitro/args", 0o644, b"set -- 'a'\n");
        let b = w.finish();
        assert_eq!(&b[..6], b"070701");
        assert_eq!(b.len() % 512, 0);
        let s = String::from_utf8_lossy(&b);
        assert!(s.contains("nitro/args\0"));
        assert!(s.contains("TRAILER!!!"));
        // header of the first entry: namesize field ("nitro" + NUL = 6)
        assert_eq!(&b[94..102], b"00000006");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
