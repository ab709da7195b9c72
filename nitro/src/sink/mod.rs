//! Where records go: jsonl (default), strace-like text, a `-c` summary table, a callback, or
//! a user's own [`Sink`].

mod callback;
mod jsonl;
mod summary;
mod text;

pub use callback::CallbackSink;
pub use jsonl::JsonlSink;
pub use summary::SummarySink;
pub use text::TextSink;

use crate::{record::Record, NitroError};

/// A consumer of records. Records are flushed per record so nothing is lost when the guest
/// or nitro dies.
pub trait Sink: Send {
    /// Writes one record.
    fn write(&mut self, rec: &Record) -> Result<(), NitroError>;

    /// Called once when tracing ends.
    fn finish(&mut self) -> Result<(), NitroError> {
        Ok(())
    }
}
