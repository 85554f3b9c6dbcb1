//! Scheduled verify (no key) of every repository this daemon owns.

use serde_json::json;

use crate::daemon::metrics::NoLabels;
use crate::daemon::shared::Shared;
use crate::daemon::{DaemonError, Result};

impl Shared {
    pub(crate) fn verify(&self) -> Result<(serde_json::Value, String)> {
        let mut reports = Vec::new();
        let mut clean = true;
        for (repo, local) in self.owned_repos()? {
            for t in repo.catalog().tenants()? {
                let r = match (&local, &self.receiver) {
                    // No collection deletes what the scrub reads.
                    (Some(l), _) => {
                        let _no_gc = l.writers.read().expect("writers");
                        lifeline_replicator::verify(
                            &repo,
                            &lifeline_replicator::VerifyOptions {
                                tenant: t.clone(),
                                keys: None,
                                progress: None,
                                repair: false,
                            },
                        )?
                    }
                    (None, Some(rcv)) => rcv.verify(&t)?,
                    (None, None) => unreachable!("an owned repository is local or served"),
                };
                clean &= r.is_clean();
                reports.push(json!({"repo": repo.name(), "tenant": t, "clean": r.is_clean(), "objects": r.objects, "affected_points": r.affected_points}));
            }
        }
        self.metrics.verify_clean.get_or_create(&NoLabels).set(i64::from(clean));
        if !clean {
            return Err(DaemonError::VerifyFoundDamage {
                reports: serde_json::to_string(&reports).expect("serialisable"),
            });
        }
        Ok((json!({"reports": reports}), "repository clean".into()))
    }
}
