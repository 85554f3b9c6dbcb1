//! What the planner's typed errors share, for whoever reports them: each
//! module's error carries the replicator's error that caused it as its
//! source, and the `lifeline` binary's exit code depends on that error
//! (interrupted: 130; a volume hash mismatch: 1).

use std::error::Error;

/// Whether `e` is one of the planner library's errors.
pub fn is_planner_error(e: &(dyn Error + 'static)) -> bool {
    e.is::<crate::config::ConfigError>()
        || e.is::<crate::audit::AuditError>()
        || e.is::<crate::repo_target::RepoTargetError>()
        || e.is::<crate::runbook::RunbookError>()
        || e.is::<crate::run_catalog::CatalogError>()
        || e.is::<crate::report::ReportError>()
        || e.is::<crate::engine::EngineError>()
        || e.is::<crate::engine::process::ProcessError>()
        || e.is::<crate::engine::http::HttpError>()
        || e.is::<crate::drill::DrillError>()
        || e.is::<crate::daemon::DaemonError>()
        || e.is::<crate::daemon::schedule::ScheduleError>()
        || e.is::<crate::daemon::console::ConsoleError>()
        || e.is::<crate::io_error::IoError>()
}

/// The replicator's error that caused the planner's error `e`, reached
/// through the planner's own errors only: one inside another crate's error
/// (the service's) is that error's detail, as it was before the planner's
/// errors were typed.
pub fn replicator_cause<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a lifeline_replicator::Error> {
    let mut at = Some(e);
    while let Some(c) = at {
        // A planner error that would be too large otherwise boxes it.
        if let Some(r) = c
            .downcast_ref::<lifeline_replicator::Error>()
            .or_else(|| c.downcast_ref::<Box<lifeline_replicator::Error>>().map(|b| &**b))
        {
            return Some(r);
        }
        if !is_planner_error(c) {
            return None;
        }
        at = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use lifeline_replicator::Error as Replicator;

    use super::*;
    use crate::daemon::DaemonError;

    #[test]
    fn the_replicator_error_is_found_through_the_planners_errors_only() {
        let nested = crate::drill::DrillError::Engine(crate::engine::EngineError::Catalog(
            crate::run_catalog::CatalogError::Replicator(Replicator::Interrupted),
        ));
        assert!(matches!(replicator_cause(&nested), Some(Replicator::Interrupted)));
        // The message is the replicator's, as before the errors were typed.
        assert_eq!(nested.to_string(), Replicator::Interrupted.to_string());
        let boxed = DaemonError::Prune {
            repo: "/srv/repo".into(),
            source: Box::new(Replicator::Interrupted),
        };
        assert!(matches!(replicator_cause(&boxed), Some(Replicator::Interrupted)));
        assert!(boxed.to_string().starts_with("prune /srv/repo: "), "{boxed}");
        // Inside another crate's error it is that error's detail.
        let service = DaemonError::Service(lifeline_service::ServiceError::Replicator(Replicator::Interrupted));
        assert!(is_planner_error(&service));
        assert!(replicator_cause(&service).is_none());
    }
}
