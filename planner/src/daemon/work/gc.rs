//! Scheduled garbage collection of every repository this daemon owns.

use std::time::Duration;

use serde_json::json;

use crate::daemon::Result;
use crate::daemon::metrics::NoLabels;
use crate::daemon::shared::Shared;

/// Grace period of scheduled collections without `[daemon] gc_grace`.
const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);

impl Shared {
    pub(crate) fn gc(&self) -> Result<(serde_json::Value, String)> {
        let grace = self.loaded().options.gc_grace.unwrap_or(DEFAULT_GC_GRACE);
        let mut reports = Vec::new();
        let mut reclaimed = 0u64;
        for (repo, local) in self.owned_repos()? {
            for t in repo.catalog().tenants()? {
                let r = match (&local, &self.receiver) {
                    // Local: no point may be taken meanwhile.
                    (Some(l), _) => {
                        let _x = l.writers.write().expect("writers");
                        lifeline_replicator::gc(&repo, &t, grace, false)?
                    }
                    // Through the receiver: safe against its uploads.
                    (None, Some(rcv)) => rcv.gc(&t, grace, false)?,
                    (None, None) => unreachable!("an owned repository is local or served"),
                };
                reclaimed += r.collect.bytes_reclaimed;
                reports.push(r);
            }
        }
        self.metrics
            .gc_bytes_reclaimed_total
            .get_or_create(&NoLabels)
            .inc_by(reclaimed);
        Ok((
            json!({"reports": reports}),
            format!("{} reclaimed", lifeline_replicator::units::human_bytes(reclaimed)),
        ))
    }
}
