//! `lifeline prune`: plan with the pure retention function, print, then apply.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use lifeline_replicator::{Repository, RetentionPolicy};

use crate::cli::PruneArgs;
use lifeline_planner::config::Config;
use lifeline_planner::daemon::schedule::{Tz, parse_tz};
use lifeline_planner::repo_target::{is_url, parse_duration};

/// The time zone of a group's calendar buckets and schedules.
pub fn group_tz(config: &Config, group: &str, flag: Option<&str>) -> Result<Tz> {
    parse_tz(
        flag.or(config.group(group).and_then(|g| g.timezone.as_deref()))
            .unwrap_or("UTC"),
    )
    .map_err(Into::into)
}

/// The policy from the flags; without any retention flag, the group's from the configuration.
fn policy(a: &PruneArgs, config: &Config) -> Result<RetentionPolicy> {
    let dur = |s: &Option<String>| s.as_deref().map(parse_duration).transpose();
    let from_flags = RetentionPolicy {
        journal: dur(&a.journal)?,
        keep_within: dur(&a.keep_within)?,
        keep_last: a.keep_last.unwrap_or(0),
        keep_hourly: a.keep_hourly.unwrap_or(0),
        keep_daily: a.keep_daily.unwrap_or(0),
        keep_weekly: a.keep_weekly.unwrap_or(0),
        keep_monthly: a.keep_monthly.unwrap_or(0),
        keep_yearly: a.keep_yearly.unwrap_or(0),
    };
    let any_flag = a.journal.is_some()
        || a.keep_within.is_some()
        || [
            a.keep_last,
            a.keep_hourly,
            a.keep_daily,
            a.keep_weekly,
            a.keep_monthly,
            a.keep_yearly,
        ]
        .iter()
        .any(Option::is_some);
    if any_flag {
        return Ok(from_flags);
    }
    config.retention_policy(&a.group)?.with_context(|| {
        format!(
            "no retention policy for group `{}`: pass --keep-last/--keep-daily/... or set [groups.{}.retention] in lifeline.toml",
            a.group, a.group
        )
    })
}

pub fn run(a: &PruneArgs, config: &Config) -> Result<ExitCode> {
    let policy = policy(a, config)?;
    let tz = group_tz(config, &a.group, a.timezone.as_deref())?;
    let tenant = a
        .tenant
        .clone()
        .or(config.group(&a.group).and_then(|g| g.tenant.clone()))
        .unwrap_or_else(|| lifeline_replicator::DEFAULT_TENANT.into());
    if is_url(&a.repo.repo) {
        return remote(a, &policy, &tz, &tenant);
    }
    let repo = Repository::open(&a.repo.repo)?;
    // Points leased by running drills and failovers are kept.
    let decisions = repo
        .prune(&tenant, &a.group, &policy, &tz, a.dry_run)
        .with_context(|| format!("prune {}", repo.name().display()))?;
    let remove: Vec<u64> = decisions.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
    print(a, &tenant, &policy, &tz, &decisions, &remove);
    if !a.dry_run && !remove.is_empty() && !a.json {
        println!(
            "removed {} points of group `{}`; their objects stay until garbage collection",
            remove.len(),
            a.group
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Through a receiver's admin service (the receiver owns the catalog).
fn remote(a: &PruneArgs, policy: &RetentionPolicy, tz: &Tz, tenant: &str) -> Result<ExitCode> {
    let url = a.repo.repo.to_str().expect("utf-8 url");
    let (tls, admin) = a.remote.require(url)?;
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs().max(1)).unwrap_or(0);
    let (json, removed) = lifeline_service::remote_prune(
        url,
        &lifeline_service::TlsDir::new(tls),
        admin,
        lifeline_proto::v1::PruneRequest {
            tenant: tenant.into(),
            group: a.group.clone(),
            journal_secs: secs(policy.journal),
            keep_within_secs: secs(policy.keep_within),
            keep_last: policy.keep_last,
            keep_hourly: policy.keep_hourly,
            keep_daily: policy.keep_daily,
            keep_weekly: policy.keep_weekly,
            keep_monthly: policy.keep_monthly,
            keep_yearly: policy.keep_yearly,
            tz_offset_secs: tz.offset_at(Utc::now()).local_minus_utc(),
            tz_name: match tz {
                Tz::Named(n) => n.name().to_string(),
                _ => String::new(),
            },
            dry_run: a.dry_run,
        },
    )
    .with_context(|| format!("prune group `{}` on {url} as `{admin}`", a.group))?;
    let decisions: Vec<lifeline_replicator::Decision> =
        serde_json::from_str(&json).context("the receiver's prune decisions")?;
    let remove: Vec<u64> = decisions.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
    print(a, tenant, policy, tz, &decisions, &remove);
    if !a.json && !removed.is_empty() {
        println!(
            "removed {} points of group `{}` on {url}; their objects stay until garbage collection",
            removed.len(),
            a.group
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print(
    a: &PruneArgs,
    tenant: &str,
    policy: &RetentionPolicy,
    tz: &Tz,
    decisions: &[lifeline_replicator::Decision],
    remove: &[u64],
) {
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "group": a.group,
                "tenant": tenant,
                "policy": policy,
                "dry_run": a.dry_run,
                "points": decisions,
                "remove": remove,
            })
        );
    } else {
        for d in decisions {
            let what = if d.kept() {
                format!(
                    "keep ({})",
                    d.keep.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )
            } else {
                "remove".to_string()
            };
            println!(
                "{:>8}  {}  {what}",
                d.seq,
                tz.to_local(d.taken_at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        println!(
            "{} points: keep {}, remove {}{}",
            decisions.len(),
            decisions.len() - remove.len(),
            remove.len(),
            if a.dry_run { " (dry run: nothing removed)" } else { "" }
        );
    }
}

/// `lifeline gc`: on a local repository nothing else writes, or through a
/// receiver's admin service while its agents upload.
pub fn gc(a: &crate::cli::GcArgs) -> Result<ExitCode> {
    let grace = parse_duration(&a.grace)?;
    let reports: Vec<lifeline_replicator::GcReport> = if is_url(&a.repo.repo) {
        let url = a.repo.repo.to_str().expect("utf-8 url");
        let (tls, admin) = a.remote.require(url)?;
        lifeline_service::remote_gc(
            url,
            &lifeline_service::TlsDir::new(tls),
            admin,
            lifeline_proto::v1::GcRequest {
                tenant: a.tenant.clone().unwrap_or_default(),
                grace_secs: grace.as_secs(),
                dry_run: a.dry_run,
            },
        )
        .with_context(|| format!("garbage collection on {url} as `{admin}`"))?
        .iter()
        .map(|j| serde_json::from_str(j).context("a garbage collection report from the receiver"))
        .collect::<Result<_>>()?
    } else {
        let repo = Repository::open(&a.repo.repo)?;
        let tenants = match &a.tenant {
            Some(t) => vec![t.clone()],
            None => repo.catalog().tenants()?,
        };
        tenants
            .iter()
            .map(|t| Ok(lifeline_replicator::gc(&repo, t, grace, a.dry_run)?))
            .collect::<Result<_>>()?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    let would = if a.dry_run { "would be " } else { "" };
    for r in &reports {
        let c = &r.collect;
        println!(
            "tenant {}: {} points, {} objects live; {} objects {would}removed ({}), {} packs {would}deleted: {} reclaimed{}{}",
            r.tenant,
            r.points,
            c.objects_live,
            c.objects_removed,
            super::human_bytes(c.bytes_removed),
            c.packs_deleted,
            super::human_bytes(c.bytes_reclaimed),
            if c.objects_in_grace > 0 {
                format!(
                    "; {} objects kept for the grace period ({})",
                    c.objects_in_grace, a.grace
                )
            } else {
                String::new()
            },
            if r.objects_touched > 0 {
                format!("; {} objects kept for uploads running meanwhile", r.objects_touched)
            } else {
                String::new()
            }
        );
        if c.bytes_in_shared_packs > 0 {
            println!(
                "  {} of removed objects stay inside packs shared with live objects (a repack, not built yet, would free them)",
                super::human_bytes(c.bytes_in_shared_packs)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
