//! Errors of the KVM driver, and how they map onto [`ListenerError`].

use crate::ListenerError;

/// What went wrong setting up or running a VM on KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The KVM device node does not exist.
    #[error("{path} does not exist: this host has no KVM (no kvm module loaded, or no hardware virtualization)")]
    NoDevice {
        /// The device path.
        path: String,
    },
    /// The KVM device node exists but may not be opened.
    #[error(
        "permission denied opening {path}: run as root or add the user to the group owning it"
    )]
    PermissionDenied {
        /// The device path.
        path: String,
    },
    /// Opening the device failed otherwise.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// KVM lacks a capability the driver needs.
    #[error("KVM on this host lacks {0}")]
    MissingCapability(&'static str),
    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Ioctl {
        /// The request, e.g. "KVM_CREATE_VM".
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The host refused to run the guest: entry failure, emulation failure, triple fault.
    #[error("the host cannot run this guest: vCPU {vcpu} stopped with {why} (rip {rip:#x})")]
    GuestCannotRun {
        /// vCPU index.
        vcpu: u32,
        /// The exit reason.
        why: String,
        /// Guest RIP at the exit.
        rip: u64,
    },
    /// The requested guest layout is impossible.
    #[error("invalid guest layout: {0}")]
    Layout(String),
    /// A trap site cannot be armed.
    #[error("cannot arm trap at {addr:#x}: {why}")]
    Arm {
        /// The site address.
        addr: u64,
        /// Why.
        why: String,
    },
    /// Guest memory could not be read or written.
    #[error("guest memory: {0}")]
    Memory(#[from] nitro_mem::MemError),
    /// A vCPU thread ended unexpectedly.
    #[error("the thread of vCPU {vcpu} is gone")]
    ThreadGone {
        /// vCPU index.
        vcpu: u32,
    },
}

impl KvmError {
    /// Wraps a failed ioctl.
    pub(crate) fn ioctl(op: &'static str, e: kvm_ioctls::Error) -> Self {
        KvmError::Ioctl {
            op,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    }

    /// Classifies a failure to open the KVM device.
    pub(crate) fn open(path: &str, errno: i32) -> Self {
        let path = path.to_string();
        match errno {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NoDevice { path },
            libc::EACCES | libc::EPERM => KvmError::PermissionDenied { path },
            _ => KvmError::Open {
                path,
                source: std::io::Error::from_raw_os_error(errno),
            },
        }
    }
}

impl From<KvmError> for ListenerError {
    fn from(e: KvmError) -> Self {
        match e {
            KvmError::Ioctl { op, source } => ListenerError::Io {
                endpoint: op.to_string(),
                source,
            },
            KvmError::Arm { addr, why } => ListenerError::ArmFailed {
                kind: "execute",
                addr,
                reply: why,
            },
            KvmError::GuestCannotRun { .. } | KvmError::ThreadGone { .. } => {
                ListenerError::GuestGone(e.to_string())
            }
            other => ListenerError::Launch {
                program: "kvm".to_string(),
                why: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_are_classified() {
        assert!(matches!(
            KvmError::open("/dev/kvm", libc::ENOENT),
            KvmError::NoDevice { .. }
        ));
        assert!(matches!(
            KvmError::open("/dev/kvm", libc::EACCES),
            KvmError::PermissionDenied { .. }
        ));
        let other = KvmError::open("/dev/kvm", libc::EBUSY);
        assert!(matches!(other, KvmError::Open { .. }));
        let msg = KvmError::open("/dev/kvm", libc::EACCES).to_string();
        assert!(
            msg.contains("permission denied") && msg.contains("/dev/kvm"),
            "{msg}"
        );
    }

    #[test]
    fn maps_into_listener_error() {
        let e: ListenerError = KvmError::GuestCannotRun {
            vcpu: 1,
            why: "shutdown".into(),
            rip: 0x1000,
        }
        .into();
        assert!(matches!(e, ListenerError::GuestGone(ref m) if m.contains("shutdown")));
        let e: ListenerError = KvmError::NoDevice { path: "/x".into() }.into();
        assert!(matches!(e, ListenerError::Launch { .. }));
    }
}
