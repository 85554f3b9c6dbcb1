//! A run's record read and prepared: a fresh record for a plan, a stopped run
//! made ready to resume, and what a run leaves behind that others read (the
//! points it promoted with the RPO each achieved, the pins it still holds).

use std::collections::BTreeMap;

use serde::Serialize;

use super::now;
use crate::plan::Plan;
use crate::run_record::{RunRecord, RunStatus, StepRecord, StepStatus};
use crate::runbook::actions::Action;

/// A point a `volume.promote` step of the run restored, and the RPO it achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotedPoint {
    pub step: String,
    pub seq: u64,
    pub taken_at: String,
    /// The run's start minus the point's time (0 when the point is newer: a
    /// final sync): at most this much of what was written before the run is
    /// not in the point.
    pub rpo_secs: Option<f64>,
    /// The group's RPO objective, from lifeline.toml.
    pub rpo_objective_secs: Option<f64>,
}

/// The points the run promoted, from its record.
pub fn promoted_points(rec: &RunRecord, plan: &Plan) -> Vec<PromotedPoint> {
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let started = Some(rec.started_at);
    plan.steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .filter_map(|s| {
            let r = rec.steps.get(&s.id)?;
            if !matches!(r.status, StepStatus::Succeeded | StepStatus::Undone) {
                return None;
            }
            let seq = r.outputs.get("seq")?.parse().ok()?;
            let taken_at = r.outputs.get("taken_at")?.clone();
            let rpo_secs = match (started, parse(&taken_at)) {
                (Some(s), Some(t)) => Some(((s - t).num_milliseconds().max(0)) as f64 / 1000.0),
                _ => None,
            };
            Some(PromotedPoint {
                step: s.id.clone(),
                seq,
                taken_at,
                rpo_secs,
                rpo_objective_secs: plan
                    .direction
                    .rpo
                    .as_deref()
                    .and_then(|d| crate::runbook::parse_duration(d).ok())
                    .map(|d| d.as_secs_f64()),
            })
        })
        .collect()
}

/// A pin (lease) on a promoted point that the run could not release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinLeft {
    pub step: String,
    pub seq: u64,
}

impl std::fmt::Display for PinLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "point {} (step `{}`)", self.seq, self.step)
    }
}

/// The pins the run's `volume.promote` steps still hold: `pinned = "true"` (a
/// released one says `released`).
pub fn pins_left(rec: &RunRecord, plan: &Plan) -> Vec<PinLeft> {
    plan.steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .filter_map(|s| rec.steps.get(&s.id).map(|r| (s, r)))
        .filter(|(_, r)| r.outputs.get("pinned").is_some_and(|p| p == "true"))
        .filter_map(|(s, r)| {
            r.outputs.get("seq").and_then(|x| x.parse().ok()).map(|seq| PinLeft {
                step: s.id.clone(),
                seq,
            })
        })
        .collect()
}

/// A fresh record for a plan.
pub fn new_record(
    plan: &Plan,
    runbook_text: String,
    config_file: Option<std::path::PathBuf>,
    config_text: String,
    operator: Option<String>,
) -> RunRecord {
    RunRecord {
        version: crate::run_record::RUN_RECORD_VERSION,
        id: plan.run_id.clone(),
        mode: plan.mode,
        runbook: plan.runbook.clone(),
        runbook_file: plan.file.clone(),
        runbook_text,
        runbook_digest: plan.digest.clone(),
        config_file,
        config_text,
        group: plan.direction.group.clone(),
        point: plan.point.clone(),
        ports: plan.ports.clone(),
        run_dir: plan.run_dir.clone(),
        user: crate::audit::os_user(),
        operator,
        status: RunStatus::Running,
        started_at: now(),
        ended_at: None,
        steps: plan
            .steps
            .iter()
            .map(|s| (s.id.clone(), StepRecord::default()))
            .collect(),
        completed: Vec::new(),
        processes: Vec::new(),
        approvals: BTreeMap::new(),
        abort_requested: false,
        preempted_by: None,
        hydrations: Vec::new(),
        teardown: Vec::new(),
        repository_reads: Default::default(),
        resumes: 0,
        error: None,
        audit_head: None,
    }
}

/// Prepares a stopped run for resuming: steps that were running go back to pending.
pub fn prepare_resume(rec: &mut RunRecord) -> Vec<String> {
    let mut again = Vec::new();
    for (id, s) in rec.steps.iter_mut() {
        if matches!(s.status, StepStatus::Running | StepStatus::Deferred) {
            s.status = StepStatus::Pending;
            again.push(id.clone());
        }
    }
    // A failback whose reprotect was pending goes on: its deferred steps run again.
    if rec.status == RunStatus::ReprotectPending {
        rec.completed.retain(|id| !again.contains(id));
        rec.status = RunStatus::Running;
        rec.ended_at = None;
        rec.error = None;
    }
    rec.resumes += 1;
    again
}
