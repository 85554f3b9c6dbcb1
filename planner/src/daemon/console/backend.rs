//! The daemon as the console sees it: [`ConsoleBackend`] over the state the
//! daemon's jobs share.

use std::path::PathBuf;
use std::sync::Arc;

use lifeline_service::AgentControl;

use super::{ConsoleBackend, PointSummary};
use crate::config::Config;
use crate::daemon::jobs::owner_site;
use crate::daemon::shared::Shared;

impl ConsoleBackend for Shared {
    fn site(&self) -> String {
        self.site.clone()
    }

    fn config(&self) -> Arc<Config> {
        Arc::new(self.loaded().config.clone())
    }

    fn points(&self, group: &str) -> Option<Vec<PointSummary>> {
        let l = self.loaded();
        let g = l.config.group(group)?;
        if owner_site(&l.config, g).as_deref() != Some(self.site.as_str()) {
            return None;
        }
        let tenant = g.tenant.as_deref().unwrap_or(lifeline_replicator::DEFAULT_TENANT);
        let (repo, _) = self.owned_repo(group).ok()?;
        Some(PointSummary::of_points(repo.points(tenant, Some(group)).ok()?))
    }

    fn control(&self, group: &str) -> Option<Arc<AgentControl>> {
        self.controls.get(group).cloned()
    }

    fn drill_reports(&self) -> PathBuf {
        Shared::drill_reports(self)
    }

    fn planner_public_key(&self) -> PathBuf {
        crate::state_dir::planner_dir(&self.state_dir).join("planner.pub")
    }

    fn planner_state_dir(&self) -> Option<PathBuf> {
        Some(self.state_dir.clone())
    }
}
