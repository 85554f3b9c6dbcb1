//! The daemon's error: what stopped it from starting, or failed a job (the
//! job's event carries the text). Each names the setting, site, group or
//! repository concerned and, where there is one, what to set or do.

use std::path::PathBuf;

/// Result with [`DaemonError`].
pub type Result<T, E = DaemonError> = std::result::Result<T, E>;

/// Everything that can stop the daemon or fail one of its jobs.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration lacks what the daemon or a job needs; the text names
    /// the setting and where to set it.
    #[error("{0}")]
    Configuration(String),
    /// `at`: where the schedule is written (`lifeline.toml: [groups.db] schedule`).
    #[error("{at}: {source}")]
    Schedule {
        at: String,
        #[source]
        source: super::schedule::ScheduleError,
    },
    #[error("open repository {} (create it with `lifeline init --repo {}`): {source}", path.display(), path.display())]
    OpenRepository {
        path: PathBuf,
        #[source]
        source: Box<lifeline_replicator::Error>,
    },
    #[error("prune {}: {source}", repo.display())]
    Prune {
        repo: PathBuf,
        #[source]
        source: Box<lifeline_replicator::Error>,
    },
    #[error("the receiver is reopening its catalog; the job runs next time")]
    ReceiverReopening,
    #[error("group `{group}`: its secondary site `{secondary}` has neither a receiver URL nor a repo directory")]
    NoPointTarget { group: String, secondary: String },
    /// A transient failure that lasted longer than the group's `retry_for`.
    #[error("giving up after retrying for {retry_for} (retry_for), {retries} retries: {source}")]
    GaveUp {
        retry_for: String,
        retries: u32,
        #[source]
        source: Box<DaemonError>,
    },
    #[error("the drill ended ({status}) without a report: {stderr}")]
    DrillWithoutReport { status: String, stderr: String },
    /// `reports`: each repository's and tenant's result, as JSON.
    #[error("verify found missing or damaged objects: {reports}")]
    VerifyFoundDamage { reports: String },
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    TimeZone(#[from] super::schedule::ScheduleError),
    #[error("{0}")]
    RepoTarget(#[from] crate::repo_target::RepoTargetError),
    #[error("{0}")]
    Console(#[from] super::console::ConsoleError),
    #[error("{0}")]
    Service(#[from] lifeline_service::ServiceError),
    #[error("{0}")]
    Replicator(#[from] lifeline_replicator::Error),
}

impl DaemonError {
    /// A [`DaemonError::Configuration`] for an absent setting, for `ok_or_else`.
    pub(crate) fn needs(what: impl Into<String>) -> DaemonError {
        DaemonError::Configuration(what.into())
    }

    /// Whether the failure may pass by itself (the receiver restarting, a cut
    /// link, a full disk being cleaned up): what the agent retries too. Any
    /// replicator error along the chain of causes decides.
    pub(crate) fn is_transient(&self) -> bool {
        std::iter::successors(Some(self as &(dyn std::error::Error + 'static)), |e| e.source()).any(|c| {
            c.downcast_ref::<lifeline_replicator::Error>()
                .or_else(|| c.downcast_ref::<Box<lifeline_replicator::Error>>().map(|b| &**b))
                .is_some_and(|r| r.is_transient())
                || matches!(
                    c.downcast_ref::<lifeline_service::ServiceError>(),
                    Some(lifeline_service::ServiceError::Replicator(r)) if r.is_transient()
                )
        })
    }
}
