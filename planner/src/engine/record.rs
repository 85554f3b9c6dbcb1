//! A run's record read and prepared: a fresh record for a plan, a stopped run
//! made ready to resume, and what a run leaves behind that others read (the
//! points it promoted with the RPO each achieved, the pins it still holds).

use std::collections::BTreeMap;

use serde::Serialize;

use super::now;
use crate::plan::Plan;
use crate::run_record::{Pin, RunRecord, RunStatus, StepRecord, StepStatus};
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
    let started = rec.started_at;
    plan.steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .filter_map(|s| {
            let r = rec.steps.get(&s.id)?;
            if !matches!(r.status, StepStatus::Succeeded | StepStatus::Undone) {
                return None;
            }
            let p = r.promoted()?;
            Some(PromotedPoint {
                step: s.id.clone(),
                seq: p.seq,
                taken_at: crate::run_record::format_timestamp(&p.taken_at),
                rpo_secs: Some(((started - p.taken_at).num_milliseconds().max(0)) as f64 / 1000.0),
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

/// The pins the run's `volume.promote` steps still hold ([`Pin::Held`]; a
/// released one is [`Pin::Released`]).
pub fn pins_left(rec: &RunRecord, plan: &Plan) -> Vec<PinLeft> {
    plan.steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .filter_map(|s| rec.steps.get(&s.id)?.promoted().map(|p| (s, p)))
        .filter(|(_, p)| p.pin == Pin::Held)
        .map(|(s, p)| PinLeft {
            step: s.id.clone(),
            seq: p.seq,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_record::Outcome;

    /// A failover's record as builds before typed outcomes wrote it: its promote
    /// done (outputs only), its service step running when the planner died.
    const OLD_RECORD: &str = r#"{"version":1,"id":"failover-1","mode":"failover","runbook":"t","runbook_file":"t.toml",
"runbook_text":"","runbook_digest":"d","config_file":null,"config_text":"","group":"shop","point":null,"ports":{},
"run_dir":"/runs/failover-1","user":"ops","operator":null,"status":"running","started_at":"2026-12-05T10:30:00.000Z",
"ended_at":null,"steps":{
"promote":{"status":"succeeded","attempts":1,"started_at":"2026-12-05T10:30:00.100Z","ended_at":"2026-12-05T10:30:02.000Z",
 "outputs":{"pinned":"true","seq":"7","taken_at":"2026-12-05T10:29:57.500Z","path.db":"/dev/vdb","hash.db":"abcd"}},
"app":{"status":"running","attempts":1,"started_at":"2026-12-05T10:30:02.100Z","outputs":{}}},
"completed":["promote"],"processes":[],"approvals":{},"abort_requested":false,"resumes":0,"error":null,"audit_head":null}"#;

    fn action_of(id: &str) -> Option<Action> {
        match id {
            "promote" => Some(Action::VolumePromote),
            "app" => Some(Action::ServiceStart),
            _ => None,
        }
    }

    #[test]
    fn a_record_without_typed_outcomes_loads_and_resumes_with_them() {
        let mut rec: RunRecord = serde_json::from_str(OLD_RECORD).unwrap();
        assert_eq!(rec.steps["promote"].outcome, None);
        // Readers type what the old record's outputs imply.
        let promoted = rec.steps["promote"].promoted().expect("the promote's outcome");
        assert_eq!((promoted.seq, promoted.pin), (7, Pin::Held));
        assert_eq!(prepare_resume(&mut rec), vec!["app".to_string()]);
        assert_eq!(rec.steps["app"].status, StepStatus::Pending);
        rec.type_outcomes(action_of);
        let Some(Outcome::Promote(p)) = &rec.steps["promote"].outcome else {
            panic!("typed at resume: {:?}", rec.steps["promote"].outcome)
        };
        assert_eq!(
            crate::run_record::format_timestamp(&p.taken_at),
            "2026-12-05T10:29:57.500Z"
        );
        assert_eq!(p.volumes["db"].path, std::path::PathBuf::from("/dev/vdb"));
        assert_eq!(rec.steps["app"].outcome, None);
        // The outputs templates read are as they were.
        assert_eq!(
            rec.steps["promote"].outcome.as_ref().unwrap().view(),
            rec.steps["promote"].outputs
        );
        let params = BTreeMap::from([(
            "args".to_string(),
            crate::runbook::Value::Str("--data ${steps.promote.path.db}".into()),
        )]);
        let outputs = rec.steps.iter().map(|(k, v)| (k.clone(), v.outputs.clone())).collect();
        assert_eq!(
            super::super::render_params(&params, &outputs).unwrap()["args"],
            crate::runbook::Value::Str("--data /dev/vdb".into())
        );
    }

    #[test]
    fn a_record_with_typed_outcomes_round_trips() {
        let mut rec: RunRecord = serde_json::from_str(OLD_RECORD).unwrap();
        rec.type_outcomes(action_of);
        rec.steps.get_mut("app").unwrap().set_outcome(Outcome::Start {
            pid: 4242,
            log: "/runs/failover-1/app.log".into(),
        });
        let text = serde_json::to_string(&rec).unwrap();
        assert!(text.contains(r#""outcome":{"kind":"promote","seq":7"#), "{text}");
        let again: RunRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(again, rec);
        assert_eq!(again.steps["app"].outputs["pid"], "4242");
    }
}
