//! nitro: trap every system call of a virtual machine from the outside, name it, find the
//! process that made it, decode its arguments strace-style, and react.
//!
//! This crate is the facade: it wires a driver (`nitro-listener`), an OS backend
//! (`nitro-backend-linux`, `nitro-backend-windows`, or your own `nitro_os::OsBackend`) and
//! sinks together, and runs guests for tracing ([`guest`]). [`Nitro`] is the entry point:
//!
//! - records as an iterator ([`Nitro::events`]) or through sinks and callbacks
//!   ([`Nitro::run`], [`Nitro::on_record`], [`sink`]: jsonl, text, a `-c` summary table);
//! - hooks at entry and exit ([`Nitro::on_enter`], [`Nitro::on_exit`] and catch-alls) that
//!   attach data, change arguments, skip a call or change its return value ([`HookCtx`]);
//! - filters: syscall names and classes ([`SyscallSet`], dropped before decoding and passed
//!   to the backend's trap planning), pids, names and children ([`ProcessFilter`]);
//! - fault injection with strace's syntax ([`Injection`]);
//! - policies: [`Nitro::trigger_exec`], [`Nitro::max_events_per_proc`];
//! - OS detection ([`detect`]).
//!
//! The examples: `examples/redirect_path.rs` (a hook rewriting a path argument),
//! `examples/custom_backend.rs` (a backend written against the trait), and
//! `nitro-listener/examples/raw_watch.rs` (drivers and memory only, no backend).
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
