//! Drills: a test failover from a recovery point into a sandbox while production
//! and replication carry on. The drill declares a disaster instant T0, plans the
//! runbook in drill mode with its ports rebound to free ones and its volumes
//! promoted into the sandbox (the run's directory), runs it with the engine,
//! watches the group's replication lag on the receiver before, during and after,
//! then measures RPO (T0 − `taken_at` of the point used) and RTO (T0 → every
//! check green), tears the sandbox down (unless `--keep`) and writes the signed
//! report (see [`crate::report`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::engine::{RunObserver, RunRecord, RunStatus};
use crate::plan::{self, Plan, PlanOptions};
use crate::report::{self, DrillReport};
use crate::run_catalog::PlannerArgs;
use crate::run_catalog::{DrillSummary, PlannerCatalog, planner_dir};
use crate::runbook::actions::Mode;
use crate::sandbox::Sandbox;

mod error;
mod evidence;
mod lag;
mod netns;

pub use error::{DrillError, Result};

use evidence::{Evidence, secs_of};
use lag::LagWatch;
use netns::{SandboxNetns, free_ports};

/// What to drill and where the report goes.
pub struct DrillOptions {
    pub runbook: PathBuf,
    pub point: Option<String>,
    pub report_dir: PathBuf,
    pub keep: bool,
    pub planner: PlannerArgs,
    pub parallel: usize,
    /// Who watches the drill's run (the terminal display, or [`crate::engine::Unobserved`]).
    pub observer: Arc<dyn RunObserver>,
    /// Time between two lag samples.
    pub lag_every: Duration,
    /// Run services and checks in a network namespace of the drill's own (when root).
    pub netns: bool,
}

/// What a drill produced.
pub struct DrillOutcome {
    pub report: DrillReport,
    pub report_dir: PathBuf,
    pub status: RunStatus,
    pub sandbox: PathBuf,
}

/// How much a drill yields the CPU to production (nice value of the drill's
/// threads and of the processes it starts): production and its replication go
/// first, the drill's restores and checks take what is left.
pub const DRILL_NICE: i32 = 10;

/// Runs a drill and writes its report.
pub fn run(opts: &DrillOptions, config_flag: Option<&std::path::Path>) -> Result<DrillOutcome> {
    // Before any thread exists, so that every one the drill starts inherits it.
    if let Err(e) = rustix::process::setpriority_process(None, DRILL_NICE) {
        tracing::warn!(error = %e, "could not lower the drill's priority");
    }
    let (config, config_file, config_text) = Config::load_with_text(config_flag)?;
    let text = std::fs::read_to_string(&opts.runbook).map_err(|source| DrillError::ReadRunbook {
        path: opts.runbook.clone(),
        source,
    })?;
    let rb = crate::runbook::load_checked(&opts.runbook, Some(&text), &config)?;
    let group = config.group(&rb.group.value).cloned().unwrap_or_default();
    let objectives = report::Objectives {
        rpo_secs: group.rpo.as_deref().and_then(secs_of),
        rto_secs: group.rto.as_deref().and_then(secs_of),
    };
    let interval = group
        .drill_interval
        .as_deref()
        .map(crate::runbook::parse_duration)
        .transpose()
        .map_err(DrillError::DrillInterval)?
        .unwrap_or(Duration::from_secs(30 * 86_400));
    let state = opts.planner.state_dir(&config);
    // A brief holder (the daemon recording a console action on the audit
    // chain, `lifeline runs`) lets go within milliseconds.
    let catalog = PlannerCatalog::open_waiting(&state, Duration::from_secs(5))?;
    let audit = AuditLog::open(catalog.dir())?;
    let key = crate::audit::signing_key(catalog.dir())?;
    let id = crate::engine::new_run_id(Mode::Drill);
    let sandbox = planner_dir(&state).join("runs").join(&id);
    std::fs::create_dir_all(&sandbox).map_err(|source| DrillError::Sandbox {
        dir: sandbox.clone(),
        source,
    })?;
    let ports = free_ports(rb.ports.keys().cloned())?;
    let netns = if opts.netns {
        SandboxNetns::create(&id).map_err(|why| format!("no network namespace for the sandbox: {why}"))
    } else {
        Err("no network namespace for the sandbox: --no-netns".to_string())
    };
    let netns_name = netns.as_ref().ok().map(|n| n.name.clone());
    // T0, the simulated disaster. The lag watch takes its "before" sample first;
    // without --point the drill recovers the newest point taken at or before T0
    // (a point committed later did not exist when the disaster struck).
    let watch = LagWatch::start(&config, &rb.group.value, opts.lag_every);
    let t0 = Utc::now();
    let point = opts
        .point
        .clone()
        .unwrap_or_else(|| t0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let p: Plan = plan::plan(
        &rb,
        &config,
        &PlanOptions {
            mode: Mode::Drill,
            point: Some(point),
            run_id: id.clone(),
            run_dir: sandbox.clone(),
            ports,
            bin: crate::plan::this_binary(),
            netns: netns_name.clone(),
        },
    )
    .map_err(DrillError::Plan)?;
    std::fs::write(sandbox.join("plan.txt"), plan::render_text(&p))?;
    let mut record = crate::engine::new_record(&p, text, config_file, config_text, opts.planner.operator.clone());
    // The run starts at T0 (check.workload measures the application's loss against it).
    record.started_at = t0;
    let (status, shared, plan) = crate::engine::execute_run(
        crate::engine::Prepared {
            record,
            plan: p,
            config: config.clone(),
            catalog,
            audit,
        },
        crate::engine::Driving {
            operator: opts.planner.operator.clone(),
            parallel: opts.parallel,
            resumed: false,
            observer: opts.observer.clone(),
        },
    )?;
    let t_end = (Utc::now() - t0).num_milliseconds() as f64 / 1000.0;
    let lag = watch.finish(t0, t_end, objectives.rpo_secs);
    let rec: RunRecord = shared.record.lock().expect("record").clone();

    // The sandbox goes, whatever happened (its processes first).
    let mut torn_down = vec![if crate::sandbox::in_private_mount_namespace() {
        "the steps ran in the drill's own mount namespace (their mounts go with it)".to_string()
    } else {
        "the steps ran in the host's mount namespace (not root, or no unshare)".to_string()
    }];
    // What the run tore down itself (instant promotes: mounts, server, overlay).
    torn_down.extend(rec.teardown.iter().cloned());
    for p in rec.processes.iter().filter(|p| !p.stopped) {
        match crate::engine::process::stop(p, Duration::from_secs(10), None) {
            Ok(()) => torn_down.push(format!("stopped process {} of step {}", p.pid, p.step)),
            Err(e) => torn_down.push(format!("{e:#}")),
        }
    }

    let Evidence {
        steps,
        checks,
        point,
        volumes,
        promote,
        achieved,
    } = Evidence::of_run(&plan, &rec, t0, t_end, status);
    let (mut verdict, mut reasons) = report::verdict(
        status == RunStatus::Succeeded,
        &objectives,
        &achieved,
        &lag,
        checks.len(),
    );
    if status == RunStatus::Aborted && rec.preempted_by.is_none() {
        // Stopped by Ctrl-C, SIGTERM or `lifeline abort`, not by a failing step.
        verdict = report::Verdict::Failed;
        reasons.retain(|r| !r.starts_with("the drill run did not complete"));
        reasons.insert(
            0,
            "the drill was interrupted (Ctrl-C, SIGTERM or `lifeline abort`) before it finished".to_string(),
        );
    }
    if let Some(by) = &rec.preempted_by {
        // Not a failed step: a recovery took the planner. Still no proof.
        verdict = report::Verdict::Failed;
        reasons.retain(|r| !r.starts_with("the drill run did not complete"));
        reasons.insert(
            0,
            format!("preempted by {by}: a recovery run needed the planner, so the drill stopped before it finished"),
        );
    }
    let next_due = t0 + chrono::Duration::from_std(interval).unwrap_or_default();
    let mut report = DrillReport {
        schema: report::SCHEMA.into(),
        version: report::SCHEMA_VERSION,
        drill_id: id.clone(),
        runbook: report::RunbookRef {
            name: plan.runbook.clone(),
            file: plan.file.display().to_string(),
            digest: plan.digest.clone(),
        },
        group: plan.direction.group.clone(),
        tenant: plan.direction.tenant.clone(),
        disaster_at: t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        point,
        objectives,
        achieved,
        verdict,
        reasons,
        preempted_by: rec.preempted_by.clone(),
        steps,
        checks,
        volumes,
        promote,
        replication_lag: lag,
        environment: report::Environment {
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .into(),
            os: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| format!("Linux {}", r.trim()))
                .unwrap_or_else(|_| std::env::consts::OS.into()),
            lifeline_version: env!("CARGO_PKG_VERSION").into(),
            sandbox: sandbox.display().to_string(),
            network_namespace: plan.netns.clone(),
            ports: plan.ports.clone(),
            teardown: Vec::new(),
            leftovers: Vec::new(),
        },
        operator: opts.planner.operator.clone(),
        user: crate::audit::os_user(),
        sign_off: report::SignOff {
            prepared_by: format!(
                "lifeline drill ({})",
                opts.planner.operator.clone().unwrap_or_else(crate::audit::os_user)
            ),
            ..Default::default()
        },
        next_drill_due: next_due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        audit_head: rec.audit_head.clone(),
    };
    match netns {
        Ok(ns) => {
            torn_down.push(format!("removed network namespace {}", ns.name));
            drop(ns);
        }
        Err(why) => torn_down.push(why),
    }
    // What the run mounted under the sandbox goes first (deepest first), then
    // the directory, never crossing into a filesystem that is still mounted.
    // With --keep the sandbox is kept as the run left it (mounts made in the
    // drill's own mount namespace still go with the namespace).
    if !opts.keep {
        let t = Sandbox::new(&sandbox).tear_down(true);
        torn_down.extend(t.done);
        let leftovers: Vec<String> = t.leftovers.iter().map(|l| l.to_string()).collect();
        if !leftovers.is_empty() {
            report.verdict = report::Verdict::Failed;
            let mut reasons = leftovers.clone();
            reasons.append(&mut report.reasons);
            report.reasons = reasons;
        }
        report.environment.leftovers = leftovers;
    }
    report.environment.teardown = torn_down.clone();
    shared.transition(
        "sandbox_torn_down",
        None,
        Some(
            torn_down
                .iter()
                .chain(report.environment.leftovers.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None,
        |_| {},
    )?;
    report.audit_head = shared.record.lock().expect("record").audit_head.clone();
    let dir = opts.report_dir.join(&id);
    let digest = report::write(&dir, &report, &key)?;
    // The manifest's digest goes on the chain, typed: `report verify
    // --audit-log` finds it there (see FORMAT.md).
    let on_chain = crate::audit::ReportDigest {
        drill_id: id.clone(),
        manifest_blake3: digest.clone(),
        dir: dir.display().to_string(),
        verdict: report.verdict,
    };
    shared.transition_with(
        crate::audit::REPORT_WRITTEN,
        None,
        Some(format!(
            "{} manifest BLAKE3 {digest} verdict {}",
            dir.display(),
            report.verdict.label()
        )),
        None,
        Some(("report", serde_json::to_value(&on_chain).expect("serialisable"))),
        |_| {},
    )?;
    shared.catalog().save_drill(&DrillSummary {
        version: 1,
        id: id.clone(),
        group: report.group.clone(),
        runbook: report.runbook.name.clone(),
        disaster_at: report.disaster_at.clone(),
        rpo_secs: report.achieved.rpo_secs,
        rto_secs: report.achieved.rto_secs,
        rpo_objective_secs: report.objectives.rpo_secs,
        rto_objective_secs: report.objectives.rto_secs,
        verdict: report.verdict,
        report_dir: dir.canonicalize().unwrap_or(dir.clone()),
        next_drill_due: report.next_drill_due.clone(),
    })?;
    Ok(DrillOutcome {
        report,
        report_dir: dir.canonicalize().unwrap_or(dir),
        status,
        sandbox,
    })
}
