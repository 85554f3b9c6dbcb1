//! Scheduled prune: a group's retention policy, applied with the owner's authority.

use serde_json::json;

use crate::daemon::jobs::group_tz;
use crate::daemon::metrics;
use crate::daemon::shared::Shared;
use crate::daemon::{DaemonError, Result};

impl Shared {
    pub(crate) fn prune(&self, group: &str, tenant: &str) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let policy = l
            .config
            .retention_policy(group)?
            .ok_or_else(|| DaemonError::needs(format!("group `{group}` has no [groups.{group}.retention]")))?;
        let g = l
            .config
            .group(group)
            .ok_or_else(|| DaemonError::needs("the group left the configuration"))?;
        let tz = crate::daemon::schedule::parse_tz(group_tz(g, &l.options))?;
        let (repo, _local) = self.owned_repo(group)?;
        if repo.catalog().last_point(tenant, group)?.is_none() {
            // Nothing yet (a fresh deployment): not a failure.
            return Ok((
                json!({"kept": [], "removed": [], "decisions": []}),
                "no points yet".into(),
            ));
        }
        let decisions = repo
            .prune(tenant, group, &policy, &tz, false)
            .map_err(|source| DaemonError::Prune {
                repo: repo.name().to_path_buf(),
                source: Box::new(source),
            })?;
        let kept: Vec<u64> = decisions.iter().filter(|d| d.kept()).map(|d| d.seq).collect();
        let removed: Vec<u64> = decisions.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
        self.metrics
            .prune_points_removed_total
            .get_or_create(&metrics::group(group))
            .inc_by(removed.len() as u64);
        Ok((
            json!({"kept": kept, "removed": removed, "decisions": decisions}),
            format!("kept {} point(s), removed {}", kept.len(), removed.len()),
        ))
    }
}
