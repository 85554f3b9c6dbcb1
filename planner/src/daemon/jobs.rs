//! The daemon's job plan: which jobs a site runs (points, prune, verify, gc,
//! drills), on which schedule and for which tenant, derived from the
//! configuration as loaded; and the record of each job's last run, kept in the
//! state directory so a restart after downtime runs a missed job once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};

use super::DaemonOptions;
use super::schedule::{Due, Schedule};
use super::{DaemonError, Result};
use crate::config::{Config, GroupConfig};
use crate::io_error::doing;
use crate::runbook::format_duration;

/// Default per-tenant limit of concurrent operations.
pub const DEFAULT_MAX_CONCURRENT: usize = 5;
/// Tenant key of site-wide jobs (verify, gc).
pub(crate) const SITE_JOBS: &str = "(site)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Point { group: String },
    Prune { group: String },
    Drill { group: String, runbook: PathBuf },
    Verify,
    Gc,
}

impl Kind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Point { .. } => "point",
            Kind::Prune { .. } => "prune",
            Kind::Drill { .. } => "drill",
            Kind::Verify => "verify",
            Kind::Gc => "gc",
        }
    }

    pub(crate) fn group(&self) -> &str {
        match self {
            Kind::Point { group } | Kind::Prune { group } | Kind::Drill { group, .. } => group,
            Kind::Verify | Kind::Gc => "",
        }
    }
}

/// A scheduled job: what, for which tenant, when.
pub(crate) struct Job {
    pub(crate) key: String,
    pub(crate) kind: Kind,
    pub(crate) tenant: String,
    /// The schedule as written (a reload keeps the clock of an unchanged job).
    pub(crate) spec: String,
    pub(crate) due: Due,
    pub(crate) running: Arc<AtomicBool>,
}

/// The configuration as loaded, with the merged daemon options.
pub(crate) struct Loaded {
    pub(crate) config: Config,
    pub(crate) path: PathBuf,
    pub(crate) options: DaemonOptions,
}

pub(crate) fn load(path: &Path, flags: &DaemonOptions) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::parse(&text, path)?;
    let options = flags.over(&config.daemon);
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        options,
    })
}

pub(crate) fn group_tz<'a>(g: &'a GroupConfig, options: &'a DaemonOptions) -> &'a str {
    g.timezone.as_deref().or(options.timezone.as_deref()).unwrap_or("UTC")
}

/// Whether `site`'s daemon serves the site's repository (`listen` and `repo`):
/// only when the site is some group's secondary, i.e. receives replication. A
/// primary site's `repo` and `listen` serve its failback, whose seed opens the
/// repository itself and whose runbook then starts `lifeline receiver --site`.
pub(crate) fn serves_receiver(config: &Config, site: &str) -> bool {
    config
        .sites
        .get(site)
        .is_some_and(|s| s.listen.is_some() && s.repo.is_some())
        && config
            .groups
            .values()
            .any(|g| g.secondary.as_deref().unwrap_or("secondary") == site)
}

/// The site whose daemon owns a group's repository (prunes, verifies and
/// collects it): its secondary when that site's daemon serves the receiver
/// (`listen` and `repo`); its primary when the secondary is only a `repo`
/// directory (local backups); none when the receiver runs elsewhere (a
/// separate `lifeline receiver`: prune and collect through its admin service).
pub(crate) fn owner_site(config: &Config, g: &GroupConfig) -> Option<String> {
    let secondary = g.secondary.clone().unwrap_or_else(|| "secondary".into());
    match config.sites.get(&secondary) {
        Some(s) if s.listen.is_some() && s.repo.is_some() => Some(secondary),
        Some(s) if s.listen.is_some() || s.receiver.is_some() => None,
        _ => Some(g.primary.clone().unwrap_or_else(|| "primary".into())),
    }
}

/// A job the configuration asks for: key, kind, tenant, schedule as written,
/// schedule, and whether it runs at once when it never ran (intervals: a fresh
/// daemon takes a point at once).
pub(crate) type Planned = (String, Kind, String, String, Schedule, bool);

/// The jobs the configuration gives `site`.
pub(crate) fn plan_jobs(loaded: &Loaded, site: &str) -> Result<Vec<Planned>> {
    let c = &loaded.config;
    let o = &loaded.options;
    let mut out = Vec::new();
    let mut owns_repo = serves_receiver(c, site);
    for (name, g) in &c.groups {
        let tenant = g
            .tenant
            .clone()
            .unwrap_or_else(|| lifeline_replicator::DEFAULT_TENANT.into());
        let tz = group_tz(g, o);
        let ctx = |what: &str| format!("{}: [groups.{name}] {what}", loaded.path.display());
        let primary = g.primary.as_deref().unwrap_or("primary");
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        // The point's schedule, else the agent's interval (typed when the file was read).
        let point = || -> Result<Option<(String, Schedule)>> {
            Ok(match (&g.schedule, g.interval) {
                (Some(spec), _) => Some((
                    spec.clone(),
                    Schedule::parse(spec, tz).map_err(|source| DaemonError::Schedule {
                        at: ctx("schedule"),
                        source,
                    })?,
                )),
                (None, Some(every)) => Some((format_duration(every), Schedule::Every(every))),
                (None, None) => None,
            })
        };
        if primary == site
            && let Some((spec, s)) = point()?
        {
            if g.volumes.is_empty() {
                return Err(DaemonError::needs(format!(
                    "{}: a scheduled group needs volumes",
                    ctx("schedule")
                )));
            }
            let at_start = matches!(s, Schedule::Every(_));
            out.push((
                format!("point:{name}"),
                Kind::Point { group: name.clone() },
                tenant.clone(),
                spec,
                s,
                at_start,
            ));
        }
        if owner_site(c, g).as_deref() == Some(site) {
            owns_repo = true;
            if let Some(spec) = &g.prune_schedule {
                if g.retention.is_none() {
                    return Err(DaemonError::needs(format!(
                        "{}: set [groups.{name}.retention] too",
                        ctx("prune_schedule")
                    )));
                }
                let s = Schedule::parse(spec, tz).map_err(|source| DaemonError::Schedule {
                    at: ctx("prune_schedule"),
                    source,
                })?;
                out.push((
                    format!("prune:{name}"),
                    Kind::Prune { group: name.clone() },
                    tenant.clone(),
                    spec.clone(),
                    s,
                    false,
                ));
            }
        }
        if secondary == site
            && let Some(spec) = &g.drill_schedule
        {
            let runbook = g
                .drill_runbook
                .clone()
                .ok_or_else(|| DaemonError::needs(format!("{}: set drill_runbook too", ctx("drill_schedule"))))?;
            let s = Schedule::parse(spec, tz).map_err(|source| DaemonError::Schedule {
                at: ctx("drill_schedule"),
                source,
            })?;
            out.push((
                format!("drill:{name}"),
                Kind::Drill {
                    group: name.clone(),
                    runbook,
                },
                tenant.clone(),
                spec.clone(),
                s,
                false,
            ));
        }
    }
    let tz = o.timezone.as_deref().unwrap_or("UTC");
    if owns_repo {
        if let Some(spec) = &o.verify_schedule {
            let s = Schedule::parse(spec, tz).map_err(|source| DaemonError::Schedule {
                at: "[daemon] verify_schedule".into(),
                source,
            })?;
            out.push(("verify".into(), Kind::Verify, SITE_JOBS.into(), spec.clone(), s, false));
        }
        if let Some(spec) = &o.gc_schedule {
            let s = Schedule::parse(spec, tz).map_err(|source| DaemonError::Schedule {
                at: "[daemon] gc_schedule".into(),
                source,
            })?;
            out.push(("gc".into(), Kind::Gc, SITE_JOBS.into(), spec.clone(), s, false));
        }
    }
    Ok(out)
}

/// Builds the job table, keeping the clock of jobs whose schedule did not change.
pub(crate) fn build_jobs(
    planned: Vec<Planned>,
    old: Vec<Job>,
    last_runs: &BTreeMap<String, DateTime<Utc>>,
) -> Vec<Job> {
    let now = Utc::now();
    let mut old: HashMap<String, Job> = old.into_iter().map(|j| (j.key.clone(), j)).collect();
    let mut jobs = Vec::new();
    for (key, kind, tenant, spec, schedule, at_start) in planned {
        match old.remove(&key) {
            Some(j) if j.spec == spec && j.kind == kind => jobs.push(Job { tenant, ..j }),
            prev => {
                let running = prev.map(|j| j.running).unwrap_or_default();
                let last = last_runs.get(&key).copied();
                jobs.push(Job {
                    due: Due::new(schedule, last, now, at_start),
                    key,
                    kind,
                    tenant,
                    spec,
                    running,
                });
            }
        }
    }
    jobs
}

pub(crate) fn last_runs_path(state_dir: &Path, site: &str) -> PathBuf {
    state_dir.join("daemon").join(format!("{site}.last-runs.json"))
}

pub(crate) fn read_last_runs(path: &Path) -> BTreeMap<String, DateTime<Utc>> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the last runs atomically (the one write path).
pub(crate) fn write_last_runs(path: &Path, runs: &BTreeMap<String, DateTime<Utc>>) -> Result<()> {
    let dir = path.parent().expect("state file has a directory");
    std::fs::create_dir_all(dir).map_err(doing(format!("create {}", dir.display())))?;
    lifeline_replicator::write_atomic(path, &serde_json::to_vec_pretty(runs).expect("serialisable"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn example() -> Loaded {
        let path = Path::new("runbooks/lifeline.toml");
        let config = Config::parse(include_str!("../../../runbooks/lifeline.toml"), path).unwrap();
        let options = DaemonOptions::default().over(&config.daemon);
        Loaded {
            config,
            path: path.into(),
            options,
        }
    }

    fn keys(l: &Loaded, site: &str) -> Vec<String> {
        plan_jobs(l, site).unwrap().into_iter().map(|j| j.0).collect()
    }

    #[test]
    fn the_example_plans_each_sites_jobs() {
        let l = example();
        // The primary takes the points (its repo and listen are its failback's:
        // it serves no receiver, so it has no repository to verify or collect);
        // the secondary owns the groups' repository (prune, verify, gc) and drills.
        let mut primary = keys(&l, "primary");
        primary.sort();
        assert_eq!(primary, ["point:app", "point:shop", "point:web"]);
        assert!(!serves_receiver(&l.config, "primary"));
        assert!(serves_receiver(&l.config, "secondary"));
        let mut secondary = keys(&l, "secondary");
        secondary.sort();
        assert_eq!(secondary, ["drill:shop", "gc", "prune:shop", "verify"]);
        assert!(keys(&l, "elsewhere").is_empty());
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = DaemonOptions {
            metrics: Some("127.0.0.1:9187".into()),
            max_concurrent: Some(5),
            gc_grace: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let flags = DaemonOptions {
            max_concurrent: Some(2),
            ..Default::default()
        };
        let o = flags.over(&file);
        assert_eq!(o.max_concurrent, Some(2));
        assert_eq!(o.metrics.as_deref(), Some("127.0.0.1:9187"));
        assert_eq!(o.gc_grace, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_bad_schedule_names_the_group_and_field() {
        let mut l = example();
        l.config.groups.get_mut("shop").unwrap().schedule = Some("every tuesday".into());
        let e = format!("{:#}", plan_jobs(&l, "primary").err().unwrap());
        assert!(e.contains("[groups.shop] schedule"), "{e}");
    }
}
