//! nitro's Windows backend: names every system call of a Windows x64 guest, finds the
//! process that made it, and decodes its arguments, from the outside.
//!
//! - [`tables`]: service numbers -> `Nt*` names (nt and win32k) for Windows 7 SP1, 10 22H2,
//!   11 23H2 and 11 24H2, from j00ru/windows-syscalls; [`isf`] handles any other build from a
//!   Volatility 3 ISF profile.
//! - [`discover`] + [`pe`]: ntoskrnl's base from `MSR_LSTAR` or from the KPCR's IDT, its build
//!   (`NtBuildNumber`) and PDB GUID/age (CodeView record), and the entry/return instructions.
//! - [`kpcr`] + [`process`] + [`layout`]: KPCR -> current thread -> EPROCESS -> PEB, with
//!   cited offsets per build.
//! - [`decoders`]: the x64 convention, OBJECT_ATTRIBUTES, UNICODE_STRING, ACCESS_MASK,
//!   CLIENT_ID, LARGE_INTEGER, IO_STATUS_BLOCK and prototypes of common `Nt*` calls;
//!   [`ntstatus`] names return values.
//! - [`WindowsBackend`] implements [`nitro_os::OsBackend`].
//!
//! No Windows guest runs on the machines this was written on: everything is tested on guest
//! memory images built from the published layouts (see `tests/`).
//!
//! ```
//! use nitro_backend_windows::{syscall_table, supported_builds};
//! let w7 = syscall_table(7601).unwrap();
//! assert_eq!(w7[0x52], (0x52, "NtCreateFile"));
//! assert!(supported_builds().contains(&19045));
//! ```
#![deny(missing_docs, missing_debug_implementations)]

mod backend;
pub mod decoders;
pub mod discover;
mod error;
pub mod isf;
pub mod kpcr;
pub mod layout;
pub mod ntstatus;
pub mod pe;
pub mod process;
pub mod tables;

pub use backend::{Config, Discovered, Stats, WindowsBackend};
pub use error::{Result, WinError};
pub use tables::{supported_builds, syscall_table};
