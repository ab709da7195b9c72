//! One JSON object per line.

use std::io::Write;

use super::Sink;
use crate::{record::Record, NitroError};

/// Writes records as JSON lines.
#[derive(Debug)]
pub struct JsonlSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonlSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        JsonlSink { out }
    }
}

impl<W: Write + Send> Sink for JsonlSink<W> {
    fn write(&mut self, rec: &Record) -> Result<(), NitroError> {
        let io = |e: std::io::Error| NitroError::Io(e.to_string());
        serde_json::to_writer(&mut self.out, &rec.json())
            .map_err(|e| NitroError::Io(e.to_string()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}
