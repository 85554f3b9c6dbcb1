//! `volume.promote`: a recovery point restored (or served, with `instant`)
//! onto the target, under a lease that pins the point for the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeline_replicator::{PointSelector, RestoreOptions};
use lifeline_service::TlsDir;

use crate::plan::PlannedStep;
use crate::run_record::{Pin, Promoted, PromotedVolume, Served};
use crate::runbook::Value;
use crate::runbook::actions::Mode;

use super::ctx::*;
use crate::runbook::actions::Action;

pub(crate) async fn promote(ctx: &Arc<Ctx>, ps: &PlannedStep, p: &BTreeMap<String, Value>) -> R<Outcome> {
    let d = ctx.plan.direction.clone();
    let repo = s(p, "repo").map(String::from).or(d.to_repo.clone()).ok_or_else(|| {
        format!(
            "no repository to promote from on site `{}`: set [sites.{}] receiver or repo in lifeline.toml",
            d.to_site, d.to_site
        )
    })?;
    let selector = match s(p, "point").map(String::from).or(ctx.plan.point.clone()) {
        Some(sel) => sel,
        None => match ctx.plan.mode {
            Mode::Switchover | Mode::Failback => match ctx.outcome_of_action(Action::ReplicationFinalSync) {
                Some(Outcome::Sync { seq, .. }) => seq.to_string(),
                _ => "latest".into(),
            },
            _ => "latest".into(),
        },
    };
    let selector: PointSelector = selector.parse().map_err(|e| format!("{e}"))?;
    let names: Vec<String> = match list(p, "volumes") {
        l if !l.is_empty() => l,
        _ => d.target_volumes.keys().cloned().collect(),
    };
    let mut targets = Vec::new();
    for n in &names {
        let t = d.target_volumes.get(n).cloned().ok_or_else(|| {
            format!(
                "group `{}` has no target path for volume `{n}` on site `{}` (targets in lifeline.toml)",
                d.group, d.to_site
            )
        })?;
        targets.push((n.clone(), t));
    }
    let drill = ctx.plan.mode == Mode::Drill;
    let instant = flag(p, "instant")
        .unwrap_or(false)
        .then(|| crate::engine::instant::InstantRequest {
            step: ps.id.clone(),
            group: d.group.clone(),
            seq: 0,
            volumes: Vec::new(),
            run_dir: ctx.plan.run_dir.clone(),
            // A recovery hydrates its targets; a drill only when asked (its
            // targets are sandbox paths, checked below).
            hydrate: flag(p, "hydrate").unwrap_or(!drill),
            hydrate_rate: 0,
            drill,
            serve_args: serve_args(ctx, &repo, &d.tenant),
        });
    let instant = match (instant, s(p, "hydrate_rate")) {
        (Some(mut req), Some(rate)) => {
            req.hydrate_rate =
                lifeline_replicator::units::parse_rate(rate).map_err(|e| format!("hydrate_rate: {e}"))?;
            Some(req)
        }
        (i, _) => i,
    };
    if let Some(req) = &instant
        && req.hydrate
        && drill
    {
        for (_, t) in &targets {
            if let Some(dir) = t.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            ctx.drill_writes_in_sandbox(t)?;
        }
    }
    let (key, remote) = ctx.repo_access()?;
    let tenant = d.tenant.clone();
    let group = d.group.clone();
    let holder = ctx.plan.run_id.clone();
    let admin = ctx.lease_admin();
    let (o, served) = blocking(move || {
        let (target, keys) = crate::repo_target::RepoTarget::open(Path::new(&repo), &remote, &key)
            .map_err(|e| format!("open {repo}: {e:#}"))?;
        let t = target.tenant_named(Some(&tenant)).map_err(|e| format!("{e:#}"))?;
        let point = lifeline_replicator::select_point(t.as_ref(), &group, selector).map_err(|e| format!("{e}"))?;
        let seq = point.header.seq;
        // A lease on the point while the run uses it: prune keeps it. A recovery
        // goes on without one (it expires by itself if the planner dies).
        let pinned = match lease(admin.as_ref(), &repo, t.as_ref(), &group, seq, &holder, Some(PIN_TTL)) {
            Ok(()) => Pin::Held,
            Err(e) => {
                tracing::warn!(group = %group, seq, error = %e, "could not pin the promoted point");
                Pin::NotTaken
            }
        };
        let mut o = Promoted {
            seq,
            taken_at: to_millis(point.header.taken_at),
            pin: pinned,
            volumes: BTreeMap::new(),
            served: None,
        };
        if let Some(mut req) = instant {
            // Served, not restored: the point's own volume hashes are what
            // `check.volume` compares the attached files with.
            let opened = point
                .open(&keys, &t.describe())
                .map_err(|e| format!("open point {seq}: {e}"))?;
            req.seq = seq;
            req.volumes = targets;
            let (mut ip, files) = crate::engine::instant::start(t.as_ref(), &keys, &req)?;
            drop(t);
            ip.keep_open(Box::new(target));
            o.served = Some(Served {
                address: ip.address(),
                overlay: ip.overlay_dir().to_path_buf(),
                hydrating: if req.hydrate {
                    req.volumes.iter().cloned().collect()
                } else {
                    BTreeMap::new()
                },
            });
            for (name, file) in files {
                let hash = opened
                    .body
                    .volumes
                    .iter()
                    .find(|v| v.name == name)
                    .map(|v| v.volume_hash.clone())
                    .unwrap_or_default();
                o.volumes.insert(name, PromotedVolume { path: file, hash });
            }
            return Ok((o, Some(ip)));
        }
        for (name, path) in targets {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            let r = lifeline_replicator::restore(
                t.as_ref(),
                &keys,
                &RestoreOptions {
                    group: group.clone(),
                    point: PointSelector::Seq(seq),
                    volume: name.clone(),
                    target: path.clone(),
                    progress: None,
                },
            )
            .map_err(|e| format!("restore volume `{name}` of point {seq} onto {}: {e}", path.display()))?;
            o.volumes.insert(
                name,
                PromotedVolume {
                    path,
                    hash: r.volume_hash,
                },
            );
        }
        Ok((o, None))
    })
    .await?;
    if let Some(mut ip) = served {
        ip.start_hydrations(&ctx.shared);
        ctx.shared.instant.lock().expect("instant").push(ip);
    }
    Ok(Outcome::Promote(o))
}

/// The `lifeline serve` arguments that open `repo` as this run does (the
/// command an instant promote's kept overlay is resumed with).
pub(crate) fn serve_args(ctx: &Ctx, repo: &str, tenant: &str) -> Vec<String> {
    let mut a = vec!["--repo".to_string(), repo.to_string()];
    if let Some(k) = &ctx.config.key_file {
        a.extend(["--key-file".to_string(), k.display().to_string()]);
    }
    if repo.starts_with("https://") || repo.starts_with("http://") {
        if let Some(t) = &ctx.config.tls {
            a.extend(["--tls-dir".to_string(), t.dir.display().to_string()]);
            if let Some(i) = &t.identity {
                a.extend(["--identity".to_string(), i.clone()]);
            }
        }
    } else if tenant != lifeline_replicator::DEFAULT_TENANT {
        a.extend(["--tenant".to_string(), tenant.to_string()]);
    }
    a
}

/// Takes (`ttl` given) or releases a run's lease on a point. On a receiver
/// it goes through the admin identity (`[tls] admin`) when there is one: a
/// receiver lets only writers of the group and admins lease points, and the
/// planner's read identity writes no group.
pub(crate) fn lease(
    admin: Option<&(PathBuf, String)>,
    repo: &str,
    t: &dyn lifeline_replicator::TenantRepository,
    group: &str,
    seq: u64,
    holder: &str,
    ttl: Option<Duration>,
) -> R<()> {
    let remote = repo.starts_with("https://") || repo.starts_with("http://");
    match (admin, ttl) {
        (Some((dir, name)), ttl) if remote => {
            lifeline_service::remote_pin(repo, &TlsDir::new(dir), name, t.tenant(), group, seq, holder, ttl)
                .map_err(|e| e.to_string())
        }
        (_, Some(ttl)) => t.pin(group, seq, holder, ttl).map_err(|e| e.to_string()),
        (_, None) => t.unpin(group, seq, holder).map_err(|e| e.to_string()),
    }
}

/// How long a run's lease on its promoted point lasts unless released first.
pub(crate) const PIN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Releases the given leases this run's volume.promote steps took, each with
/// its outcome (a failed release expires by itself).
pub(crate) async fn release_pins(
    ctx: &Arc<Ctx>,
    held: &[crate::engine::PinLeft],
) -> Vec<(crate::engine::PinLeft, R<()>)> {
    if held.is_empty() {
        return Vec::new();
    }
    let d = ctx.plan.direction.clone();
    let Some(repo) = d.to_repo.clone() else {
        return Vec::new();
    };
    let all_fail = |e: String| held.iter().map(|p| (p.clone(), Err(e.clone()))).collect::<Vec<_>>();
    let (key, remote) = match ctx.repo_access() {
        Ok(a) => a,
        Err(e) => return all_fail(e),
    };
    let holder = ctx.plan.run_id.clone();
    let pins = held.to_vec();
    let admin = ctx.lease_admin();
    blocking(move || {
        let (target, _) = crate::repo_target::RepoTarget::open(Path::new(&repo), &remote, &key)
            .map_err(|e| format!("open {repo}: {e:#}"))?;
        let t = target.tenant_named(Some(&d.tenant)).map_err(|e| format!("{e:#}"))?;
        Ok(pins
            .into_iter()
            .map(|p| {
                let r = lease(admin.as_ref(), &repo, t.as_ref(), &d.group, p.seq, &holder, None);
                (p, r)
            })
            .collect())
    })
    .await
    .unwrap_or_else(all_fail)
}

/// Is `step` one that a `volume.promote` step of the plan (transitively) runs
/// after? Stopping its process (the receiver the promote read from) would
/// strand the run's pins there.
pub(crate) fn feeds_a_promote(plan: &crate::plan::Plan, step: &str) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .map(|s| s.id.as_str())
        .collect();
    while let Some(id) = todo.pop() {
        let Some(s) = plan.step(id) else { continue };
        for dep in &s.after {
            if dep == step {
                return true;
            }
            if seen.insert(dep.as_str()) {
                todo.push(dep);
            }
        }
    }
    false
}

/// The step's `volume`, the outputs of this run's volume.promote, and the file to
/// read: `path`, else where the promote put the volume.
pub(crate) fn promoted_volume(ctx: &Ctx, p: &BTreeMap<String, Value>) -> R<(String, Option<Promoted>, PathBuf)> {
    let volume = s(p, "volume").unwrap_or_default().to_string();
    let promoted = match ctx.outcome_of_action(Action::VolumePromote) {
        Some(Outcome::Promote(p)) => Some(p),
        _ => None,
    };
    let path = s(p, "path")
        .map(PathBuf::from)
        .or(promoted
            .as_ref()
            .and_then(|o| o.volumes.get(&volume))
            .map(|v| v.path.clone()))
        .ok_or_else(|| format!("no promoted copy of volume `{volume}`: a volume.promote step must run first"))?;
    Ok((volume, promoted, path))
}
