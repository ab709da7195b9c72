//! strace-like text lines.

use std::io::Write;

use super::Sink;
use crate::{record::Record, NitroError};

/// Writes one strace-like line per record.
#[derive(Debug)]
pub struct TextSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> TextSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        TextSink { out }
    }
}

impl<W: Write + Send> Sink for TextSink<W> {
    fn write(&mut self, rec: &Record) -> Result<(), NitroError> {
        let mut line = rec.text();
        line.push('\n');
        let io = |e: std::io::Error| NitroError::Io(e.to_string());
        self.out.write_all(line.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)
    }
}
