//! `replication.*`: the seed of a failback, and when an unreachable forward
//! agent defers the reprotect instead of failing the run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use lifeline_replicator::{BackupOptions, Repository};

use crate::runbook::Value;
use crate::runbook::actions::Mode;

use super::ctx::*;

/// What a failback's `replication.reverse` says when the forward agent cannot
/// be reached (it died with the primary): the run ends "reprotect pending".
pub(crate) const FORWARD_AGENT_UNREACHABLE: &str = "the forward agent cannot be reached: ";

/// Does this failure of a step running `action` leave the run's reprotect
/// pending rather than failed? Only a failback's `replication.reverse` whose
/// agent could not be reached (no connection, or no answer before the step's
/// timeout); an agent that answered with an error (e.g. the planner's identity
/// refused) is a failure.
pub(crate) fn defers_reprotect(action: &str, mode: Mode, error: &str) -> bool {
    action == "replication.reverse"
        && mode == Mode::Failback
        && (error.starts_with(FORWARD_AGENT_UNREACHABLE) || error.starts_with("timed out after "))
}

pub(crate) async fn seed(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outcome> {
    let d = ctx.plan.direction.clone();
    let repo = s(p, "repo")
        .map(PathBuf::from)
        .or(d.to_repo_dir.clone())
        .ok_or_else(|| {
            format!(
                "no repository directory for site `{}` to seed: set [sites.{}] repo in lifeline.toml",
                d.to_site, d.to_site
            )
        })?;
    let tenant = s(p, "tenant").map(String::from).unwrap_or(d.tenant.clone());
    let key = key_file(&ctx.config)?;
    let state = ctx.plan.run_dir.join("seed-state");
    let volumes: Vec<(String, PathBuf)> = d.target_volumes.clone().into_iter().collect();
    let group = d.group.clone();
    blocking(move || {
        let keys = key.keys();
        let r = match Repository::open(&repo) {
            Ok(r) => r,
            Err(lifeline_replicator::Error::NotARepository { .. }) => {
                Repository::create_empty(&repo).map_err(|e| format!("create repository {}: {e}", repo.display()))?
            }
            Err(e) => {
                return Err(format!(
                    "open {} (stop its receiver while seeding): {e}",
                    repo.display()
                ));
            }
        };
        if r.catalog().tenant(&tenant).map_err(|e| e.to_string())?.is_none() {
            r.create_tenant(&tenant, &keys).map_err(|e| e.to_string())?;
        }
        let keys = r.check_key(&tenant, &key).map_err(|e| e.to_string())?;
        let t = r.tenant(&tenant).map_err(|e| e.to_string())?;
        let s = lifeline_replicator::backup(
            &t,
            &keys,
            &BackupOptions {
                group,
                volumes,
                freeze: None,
                thaw: None,
                state_dir: state,
                cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                progress: None,
                block_map: true,
            },
        )
        .map_err(|e| format!("seed {}: {e}", repo.display()))?;
        Ok(Outcome::Seed {
            seq: s.seq,
            bytes_stored: s.bytes_stored,
        })
    })
    .await
}
