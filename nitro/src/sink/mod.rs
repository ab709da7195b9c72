//! Where records go: jsonl (default), strace-like text, or a user's own [`Sink`].

mod jsonl;
mod text;

pub use jsonl::JsonlSink;
use nitro_os::Syscall;
use serde_json::{Map, Value};
pub use text::TextSink;

use crate::NitroError;

/// A consumer of completed records. Records are flushed per record so nothing is lost when
/// the guest or nitro dies.
pub trait Sink: Send {
    /// Writes one record; `hook` holds what hooks attached to it.
    fn write(&mut self, call: &Syscall, hook: &Map<String, Value>) -> Result<(), NitroError>;

    /// Called once when tracing ends.
    fn finish(&mut self) -> Result<(), NitroError> {
        Ok(())
    }
}
