//! nitro: trap every system call of a virtual machine from the outside, name it, find the
//! process that made it, decode its arguments strace-style, and react.
//!
//! This crate is the facade: it wires a driver (`nitro-listener`), an OS backend
//! (`nitro-backend-linux`) and sinks together, and runs guests for tracing (`guest`).
//! See [`Nitro`] for the library entry point and the `nitro` binary for the command line.
#![deny(missing_docs, missing_debug_implementations)]

pub mod cpio;
pub mod detect;
mod error;
pub mod filter;
pub mod guest;
pub mod hook;
pub mod inject;
pub mod record;
pub mod sink;
mod tracer;

pub use error::NitroError;
pub use filter::{ProcessFilter, SyscallSet};
pub use hook::{HookCtx, HookResult};
pub use inject::Injection;
pub use record::Record;
pub use tracer::{Events, Nitro, RecordMode, TraceEnd, TraceStats};
