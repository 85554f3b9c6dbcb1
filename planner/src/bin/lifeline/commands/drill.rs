//! `lifeline drill`, `report verify`, `report list`, `keys show-signer`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::{DrillArgs, PlannerArgs};
use lifeline_planner::config::Config;
use lifeline_planner::drill::{DrillOptions, DrillOutcome};
use lifeline_planner::report::Verdict;
use lifeline_planner::run_catalog::{PlannerCatalog, planner_dir};

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())
}

pub fn run(a: &DrillArgs, config_flag: Option<&Path>) -> Result<ExitCode> {
    // One mount namespace for the whole run, shared by its steps (returns only
    // when already in it, or when the machine does not allow one).
    if let Err(why) = lifeline_planner::sandbox::enter_private_mount_namespace() {
        tracing::info!(%why, "the drill's steps share the host's mount namespace");
    }
    let out: DrillOutcome = lifeline_planner::drill::run(
        &DrillOptions {
            runbook: a.runbook.clone(),
            point: a.point.clone(),
            report_dir: a.report_dir.clone(),
            keep: a.keep,
            netns: !a.no_netns,
            planner: a.planner.clone(),
            parallel: a.parallel,
            observer: crate::commands::runbooks::Display::new(a.json),
            lag_every: Duration::from_millis(
                std::env::var("LIFELINE_DRILL_LAG_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000),
            ),
        },
        config_flag,
    )?;
    let r = &out.report;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "event": "drill_report",
                "drill": r.drill_id,
                "verdict": r.verdict,
                "reasons": r.reasons,
                "preempted_by": r.preempted_by,
                "rpo_secs": r.achieved.rpo_secs,
                "rto_secs": r.achieved.rto_secs,
                "objectives": r.objectives,
                "report_dir": out.report_dir,
                "repository_read_bytes": r.promote.as_ref().and_then(|p| p.repository_read_bytes),
                "replication_lag": {
                    "before_secs": r.replication_lag.before_secs,
                    "max_during_secs": r.replication_lag.max_during_secs,
                    "after_secs": r.replication_lag.after_secs,
                    "points_during": r.replication_lag.points_during,
                    "unavailable": r.replication_lag.unavailable,
                },
            })
        );
    } else {
        println!();
        println!("drill {} of group {}: {}", r.drill_id, r.group, r.verdict.label());
        for reason in &r.reasons {
            println!("  - {reason}");
        }
        println!(
            "  RPO achieved {} (objective {}), RTO achieved {} (objective {})",
            secs(r.achieved.rpo_secs),
            secs(r.objectives.rpo_secs),
            secs(r.achieved.rto_secs),
            secs(r.objectives.rto_secs)
        );
        if let Some(p) = &r.point {
            println!("  point {} taken at {}", p.seq, p.taken_at);
        }
        let l = &r.replication_lag;
        if l.unavailable.is_none() {
            println!(
                "  replication during the drill: {} points, lag before {} / max {} / after {}",
                l.points_during,
                secs(l.before_secs),
                secs(l.max_during_secs),
                secs(l.after_secs)
            );
        }
        println!("  report: {}", out.report_dir.join("report.html").display());
        println!(
            "  verify: lifeline report verify {} --pubkey SIGNER.pub",
            out.report_dir.display()
        );
        if a.keep {
            println!("  sandbox kept: {}", out.sandbox.display());
        }
    }
    // Interrupted (Ctrl-C, SIGTERM, `lifeline abort`): 130, as every command;
    // a drill preempted by a recovery is a failed drill (1).
    if out.status == lifeline_planner::engine::RunStatus::Aborted && r.preempted_by.is_none() {
        return Ok(ExitCode::from(130));
    }
    Ok(match r.verdict {
        Verdict::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

pub fn verify(
    path: &Path,
    pubkey: Option<&Path>,
    audit_log: Option<&Path>,
    planner: &PlannerArgs,
    json: bool,
    config: &Config,
) -> Result<ExitCode> {
    let key = match pubkey {
        Some(k) => lifeline_planner::audit::read_public_key(k)?,
        None => {
            let own = planner_dir(&planner.state_dir(config)).join("planner.pub");
            if !own.exists() {
                bail!(
                    "no --pubkey and no planner key at {}: pass the signer's public key you trust (`lifeline keys show-signer` on the planner)",
                    own.display()
                );
            }
            lifeline_planner::audit::read_public_key(&own)?
        }
    };
    let mut c = lifeline_planner::report::verify_dir(path, &key)?;
    if let Some(log) = audit_log {
        lifeline_planner::report::verify_on_chain(&mut c, log, &key)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else if c.ok() {
        println!(
            "report {} ok: report.json, report.html, report.xml and manifest.json are as signed{}",
            c.drill_id.as_deref().unwrap_or("?"),
            c.audit_entry
                .map(|e| format!("; its manifest is on the audit chain (entry {e}), signed by the trusted key"))
                .unwrap_or_default()
        );
    } else {
        println!("report in {} FAILED verification:", c.dir.display());
        for p in &c.problems {
            println!("  {p}");
        }
    }
    Ok(if c.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn list(planner: &PlannerArgs, json: bool, config: &Config) -> Result<ExitCode> {
    let state = planner.state_dir(config);
    let drills = PlannerCatalog::open(&state)?.drills()?;
    if super::listed_briefly(json, &drills, "drills", &state)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<34} {:<10} {:<24} {:>9} {:>9}  verdict",
        "drill", "group", "disaster at", "RPO", "RTO"
    );
    for d in &drills {
        println!(
            "{:<34} {:<10} {:<24} {:>9} {:>9}  {}",
            d.id,
            d.group,
            d.disaster_at,
            secs(d.rpo_secs),
            secs(d.rto_secs),
            d.verdict.label()
        );
    }
    println!();
    let now = chrono::Utc::now();
    let mut groups: Vec<&str> = drills.iter().map(|d| d.group.as_str()).collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let last_pass = drills
            .iter()
            .rev()
            .find(|d| d.group == g && d.verdict != Verdict::Failed);
        match last_pass {
            Some(d) => {
                let due =
                    chrono::DateTime::parse_from_rfc3339(&d.next_drill_due).map(|t| t.with_timezone(&chrono::Utc));
                let overdue = due.as_ref().is_ok_and(|t| *t < now);
                println!(
                    "group {g}: last passing drill {} ({}), next due {}{}",
                    d.id,
                    d.disaster_at,
                    d.next_drill_due,
                    if overdue { "  ** OVERDUE **" } else { "" }
                );
            }
            None => println!("group {g}: no passing drill  ** OVERDUE **"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show_signer(planner: &PlannerArgs, config: &Config) -> Result<ExitCode> {
    let dir = planner_dir(&planner.state_dir(config));
    std::fs::create_dir_all(&dir)?;
    let key = lifeline_planner::audit::signing_key(&dir)?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    eprintln!(
        "(also in {}; give this to auditors for `lifeline report verify --pubkey`)",
        dir.join("planner.pub").display()
    );
    Ok(ExitCode::SUCCESS)
}
