//! The errors of the facade.

/// What went wrong; the CLI prints the message on one line and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum NitroError {
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// The guest failed (crashed, hung, ended early).
    #[error("guest: {0}")]
    Guest(String),
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] nitro_listener::ListenerError),
    /// The OS backend failed.
    #[error(transparent)]
    Backend(#[from] nitro_os::OsError),
    /// Writing output failed.
    #[error("output: {0}")]
    Io(String),
}
