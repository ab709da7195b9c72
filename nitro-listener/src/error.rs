//! The errors of this crate.

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ListenerError>;

/// What went wrong talking to a hypervisor.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The connection to the hypervisor failed or closed.
    #[error("connection to {endpoint}: {source}")]
    Io {
        /// Address or path of the endpoint.
        endpoint: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The hypervisor answered something this driver does not understand.
    #[error("unexpected reply from {endpoint} to {request:?}: {reply:?}")]
    Protocol {
        /// Address of the endpoint.
        endpoint: String,
        /// What was sent.
        request: String,
        /// What came back (cut to 120 bytes).
        reply: String,
    },
    /// The hypervisor refused to arm a trap.
    #[error("cannot arm {kind} trap at {addr:#x}: hypervisor replied {reply:?}")]
    ArmFailed {
        /// Trap kind.
        kind: &'static str,
        /// Address of the trap.
        addr: u64,
        /// The hypervisor's reply.
        reply: String,
    },
    /// The guest or hypervisor went away.
    #[error("the guest is gone: {0}")]
    GuestGone(String),
    /// Starting the hypervisor failed.
    #[error("cannot start {program}: {why}")]
    Launch {
        /// Program that failed.
        program: String,
        /// Why.
        why: String,
    },
    /// A wait timed out.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The time limit.
        secs: u64,
    },
    /// A request that the driver cannot serve.
    #[error("unsupported: {0}")]
    Unsupported(String),
}
