//! The `qemu` driver: QEMU's gdbstub for traps and registers, QEMU's shared memory backend for
//! zero-copy guest memory.
//!
//! Trap strategy (see ENVIRONMENT.md for the measurements behind it): under TCG a data
//! watchpoint costs a fraction of a breakpoint, because QEMU 7.2 flushes all translated code
//! on every breakpoint stop but not on watchpoint stops; a watchpoint stops *after* the access,
//! so nothing needs stepping over. Execution breakpoints are resumed by single-step.

mod driver;
pub mod launch;
mod regs;
pub mod rsp;

pub use driver::{QemuDriver, Stats};
pub use launch::{detect_accel, free_port, pc_ram_regions, Accel, QemuCommand, QemuProcess};
