//! Records handed to a closure.

use super::Sink;
use crate::{record::Record, NitroError};

/// Calls a closure for each record.
pub struct CallbackSink<F: FnMut(&Record) + Send>(pub F);

impl<F: FnMut(&Record) + Send> std::fmt::Debug for CallbackSink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSink")
    }
}

impl<F: FnMut(&Record) + Send> Sink for CallbackSink<F> {
    fn write(&mut self, rec: &Record) -> Result<(), NitroError> {
        (self.0)(rec);
        Ok(())
    }
}
