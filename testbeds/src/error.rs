//! The one error type of the testbeds library. Every message names the object
//! (a process, a namespace, a path) and, where there is one, the remedy.

use std::path::PathBuf;

/// Errors of testbeds, workloads and fault injection.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what} needs root (and iproute2): run as root, or use the local flavour")]
    NeedsRoot { what: String },
    #[error("{name} exited before it was ready; its stderr ends with:\n{stderr}")]
    Exited { name: String, stderr: String },
    #[error("{name} printed no `{needle}` within {secs} s (see {log})")]
    NotReady {
        name: String,
        needle: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("testbed state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error(transparent)]
    Service(#[from] lifeline_service::ServiceError),
    #[error(transparent)]
    Replicator(#[from] lifeline_replicator::Error),
}

impl TestbedError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TestbedError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;
