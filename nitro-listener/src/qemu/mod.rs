//! The `qemu` driver: QEMU's gdbstub for traps and registers, QEMU's shared memory backend for
//! zero-copy guest memory.
//!
//! Trap strategy (see ENVIRONMENT.md for the measurements behind it): under TCG a data
//! watchpoint costs a fraction of a breakpoint, because QEMU 7.2 flushes all translated code
//! on every breakpoint stop but not on watchpoint stops; a watchpoint stops *after* the access,
//! so nothing needs stepping over. Execution breakpoints on `swapgs` (how Linux's
//! `entry_SYSCALL_64` starts without IBT) are resumed by emulating it in the tracer (swap
//! GS base and kernel GS base, RIP += 3: no step, no remove); other execution breakpoints by
//! single-step. [`attach`] finds the memory of a QEMU that nitro did not start.

pub mod attach;
mod driver;
pub mod libvirt;
pub mod launch;
mod regs;
pub mod rsp;

pub use driver::{QemuDriver, Stats};
pub use launch::{detect_accel, free_port, pc_ram_regions, Accel, QemuCommand, QemuProcess};
