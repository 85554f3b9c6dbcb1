//! The run engine's error: what stopped a run or refused a request to it
//! (an approval, an abort, a preemption), naming the run or step and, where
//! there is one, what to do instead.

use std::path::PathBuf;

use crate::runbook::actions::Mode;

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can stop the engine or refuse a request to a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("run {run} has no step `{step}`")]
    NoSuchStep { run: String, step: String },
    #[error("step `{step}` is a {action} step, not an approval")]
    NotAnApproval { step: String, action: String },
    #[error("step `{step}` was already approved by {by}")]
    AlreadyApproved { step: String, by: String },
    /// `status` as the record's debug form (`Succeeded`).
    #[error("run {run} has finished ({status})")]
    RunFinished { run: String, status: String },
    #[error("the planner is running {mode} {run} of group {group}, not a drill: only a drill gives way")]
    NotADrill { mode: Mode, run: String, group: String },
    #[error("a step task panicked: {0}")]
    StepPanicked(String),
    #[error("the planner at {} closed the connection without answering", socket.display())]
    NoAnswer { socket: PathBuf },
    #[error("the planner's answer: {0}")]
    Answer(#[source] serde_json::Error),
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{0}")]
    Process(#[from] super::process::ProcessError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Catalog(#[from] crate::run_catalog::CatalogError),
}
