//! Why a drill could not run or write its report. A drill that ran and failed
//! its checks is no error: its report says so.

use std::path::PathBuf;

/// Result with [`DrillError`].
pub type Result<T, E = DrillError> = std::result::Result<T, E>;

/// What stopped a drill before its report was written.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("read runbook {} (check the path): {source}", path.display())]
    ReadRunbook {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The group's `drill_interval` is not a duration; the text says why.
    #[error("drill_interval of the group: {0}")]
    DrillInterval(String),
    #[error("create the sandbox {}: {source}", dir.display())]
    Sandbox {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("find a free port for the sandbox: {0}")]
    FreePort(#[source] std::io::Error),
    /// The runbook cannot be planned against the deployment; the text says why.
    #[error("{0}")]
    Plan(String),
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Runbook(#[from] crate::runbook::RunbookError),
    #[error("{0}")]
    Catalog(#[from] crate::run_catalog::CatalogError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Report(#[from] crate::report::ReportError),
}
