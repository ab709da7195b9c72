//! Drivers that stop a guest's vCPUs at system-call entry and exit and report each stop as a
//! [`NitroEvent`].
//!
//! A driver knows hypervisors, not operating systems: an OS backend tells it *where* to trap
//! (a [`TrapPlan`] of addresses and what a stop there means) and the driver arms the cheapest
//! trap it has for each site, reports stops, applies register changes and resumes.
//!
//! | driver | attaches to | traps with |
//! |---|---|---|
//! | [`qemu::QemuDriver`] | a QEMU gdbstub (TCG or KVM) | watchpoints (TCG) or breakpoints |
//!
//! ```no_run
//! use nitro_listener::{qemu::QemuDriver, Driver, DriverEvent};
//! let mut driver = QemuDriver::connect("127.0.0.1:1234", None, 1).unwrap();
//! driver.interrupt().unwrap();
//! // ... an OS backend builds a TrapPlan, then:
//! // driver.arm(&plan)?;
//! driver.resume().unwrap();
//! while let Ok(DriverEvent::Trap(event)) = driver.next_event() {
//!     println!("vcpu {} {:?} rax={:#x}", event.vcpu, event.direction, event.regs.rax);
//!     driver.resume().unwrap();
//! }
//! ```
#![deny(missing_docs, missing_debug_implementations)]

mod driver;
mod error;
mod event;
#[cfg(feature = "kvm")]
pub mod kvm;
pub mod qemu;

pub use driver::{
    Capabilities, Driver, DriverEvent, DriverStats, RegChanges, Strategy, TrapKind, TrapPlan,
    TrapSite,
};
pub use error::{ListenerError, Result};
pub use event::{Direction, NitroEvent, Reg, Regs, SyscallKind};
