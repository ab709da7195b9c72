//! The `qemu` driver: QEMU's gdbstub for traps and registers, QEMU's shared memory backend for
//! zero-copy guest memory.
//!
//! Trap strategy (see ENVIRONMENT.md for the measurements behind it): under TCG a data
//! watchpoint costs a fraction of a breakpoint, because QEMU 7.2 flushes all translated code
//! on every breakpoint stop but not on watchpoint stops; a watchpoint stops *after* the access,
//! so nothing needs stepping over. Execution breakpoints on `swapgs` (how Linux's
//! `entry_SYSCALL_64` starts without IBT) are resumed by emulating it in the tracer (swap
//! GS base and kernel GS base, RIP += 3: no step, no remove); breakpoints on a no-op
//! (`endbr64`, `nop`, `nopl`: how syscall handlers start, the trap planner's sites) by
//! advancing RIP past it; other execution breakpoints by single-step. [`attach`] finds the memory of a QEMU that nitro did not start; [`libvirt`]
//! finds a libvirt domain's gdbstub and QEMU process.
//!
//! Transport: a Unix-domain socket for the QEMU that nitro starts (`-gdb unix:...`, about
//! 12 us less per round trip than loopback TCP), TCP or `unix:PATH` for one it attaches to.
//! The driver polls for the stub's reply for up to 100 us (yielding the CPU) before it
//! sleeps, which saves a wake-up per stop ([`rsp::DEFAULT_SPIN`]).
//!
//! Per stop the driver costs one packet round trip (`+$g` out, registers back; `c` and any
//! `P` writes go out together without waiting). Under SMP it names the reported vCPU
//! explicitly (`Hg` with the `g`) and sweeps the other vCPUs in one more pipelined round trip
//! for hits QEMU 7.2 held back (see [`crate::DriverStats`]: `recovered_stops`,
//! `late_stops`).

pub mod attach;
mod driver;
pub mod guard;
pub mod launch;
pub mod libvirt;
mod regs;
pub mod rsp;

pub use driver::{QemuDriver, Stats};
pub use launch::{detect_accel, free_port, pc_ram_regions, Accel, QemuCommand, QemuProcess};
