//! The console's admin actions and the planner they reach: each action is
//! recorded on the planner's audit chain before it is taken, and approvals go
//! to the planner running the run, through the control socket `lifeline
//! approve` uses.
//!
//! Only the process owning the planner catalog writes the audit log (appends
//! never interleave). The daemon does not own it: its drills, and any
//! failover an operator runs, do while they run. So an action's entry goes
//! to the owner over its control socket when one runs, and otherwise the
//! daemon takes the catalog for the one append; a holder that serves no
//! socket yet (a run starting, a drill writing its report) is waited for,
//! briefly.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::{ConsoleError, Result};
use crate::audit::AuditLog;
use crate::engine::control_socket::{self, Request};
use crate::run_catalog::{CatalogError, PlannerCatalog};
use crate::run_record::{RunRecord, RunStatus, StepStatus};

/// The event of an audit entry recording a console action.
pub const CONSOLE_ACTION: &str = "console_action";
/// How long an action waits for a planner that holds the catalog without
/// serving its socket (starting, or writing its report) before it is refused.
const RECORD_WAIT: Duration = Duration::from_secs(20);

/// One admin action, as the audit chain records it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsoleAction {
    /// `drill now`, `pause`, `resume`.
    pub action: String,
    pub group: String,
    /// Who acted, as the console authenticated them: `admin:NAME` (a client
    /// certificate's identity) or `admin token`.
    pub by: String,
    /// The daemon's site.
    pub site: String,
}

/// Appends `action` to the audit chain of the planner in `state_dir`; returns
/// where it went (for the log). An error means the entry is not on the chain,
/// and the action must not be taken.
pub fn record(state_dir: &Path, action: &ConsoleAction) -> Result<String> {
    let detail = serde_json::to_value(action).expect("serialisable");
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let req = Request::Audit {
            event: CONSOLE_ACTION.into(),
            who: action.by.clone(),
            detail: detail.clone(),
        };
        match control_socket::call(state_dir, &req)? {
            Some(a) if a.ok => return Ok(a.message.unwrap_or_default()),
            Some(a) => {
                return Err(ConsoleError::NotRecorded {
                    state_dir: state_dir.to_path_buf(),
                    why: a.error.unwrap_or_default(),
                });
            }
            None => {}
        }
        match PlannerCatalog::open(state_dir) {
            Ok(catalog) => {
                let mut log = AuditLog::open(catalog.dir())?;
                let head = log.append(Some(&action.by), None, None, CONSOLE_ACTION, Some(detail))?;
                return Ok(format!("recorded at audit entry {}", head.seq));
            }
            Err(e @ CatalogError::Held(_)) => {
                if Instant::now() >= deadline {
                    return Err(ConsoleError::RecordTimedOut {
                        secs: RECORD_WAIT.as_secs(),
                        source: e,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A run of the planner in the daemon's state directory, as the console shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunView {
    pub id: String,
    /// `failover`, `switchover`, `failback`, `drill`.
    pub mode: String,
    pub runbook: String,
    pub group: String,
    pub started_at: DateTime<Utc>,
    /// Its approval steps waiting for someone, in step order.
    pub waiting_for_approval: Vec<WaitingStep>,
}

/// An approval step that waits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaitingStep {
    pub step: String,
    /// The step's `message`: what the approver should check.
    pub message: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Where an admin approves it.
    pub approve: String,
}

/// `GET /api/v1/runs`.
#[derive(Debug, Serialize)]
pub struct RunsView {
    pub runs: Vec<RunView>,
}

/// The approval steps of `r` that wait: running, of action `approval`, not
/// approved yet. The run record keeps the runbook's text, which says which
/// steps are approvals.
pub fn waiting_steps(r: &RunRecord) -> Vec<WaitingStep> {
    let Ok(rb) = crate::runbook::Runbook::parse(&r.runbook_text, &r.runbook_file) else {
        return Vec::new();
    };
    rb.steps
        .iter()
        .filter(|s| s.action.value == "approval")
        .filter(|s| {
            r.steps
                .get(&s.id.value)
                .is_some_and(|st| st.status == StepStatus::Running)
                && !r.approvals.contains_key(&s.id.value)
        })
        .map(|s| WaitingStep {
            step: s.id.value.clone(),
            message: s.params.get("message").and_then(|v| v.value.as_str()).map(String::from),
            since: r.steps.get(&s.id.value).and_then(|st| st.started_at),
            approve: format!("/api/v1/runs/{}/approve?step={}", r.id, s.id.value),
        })
        .collect()
}

/// The runs of the planner running in `state_dir` that have not finished,
/// newest first: empty when no planner runs there (a run waits for an
/// approval only while its planner runs).
pub fn running(state_dir: &Path) -> Result<Vec<RunView>> {
    let Some(a) = control_socket::call(state_dir, &Request::Runs)? else {
        return Ok(Vec::new());
    };
    if !a.ok {
        return Err(ConsoleError::PlannerRefused {
            state_dir: state_dir.to_path_buf(),
            why: a.error.unwrap_or_default(),
        });
    }
    Ok(a.runs
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .map(|r| RunView {
            id: r.id.clone(),
            mode: r.mode.as_str().to_string(),
            runbook: r.runbook.clone(),
            group: r.group.clone(),
            started_at: r.started_at,
            waiting_for_approval: waiting_steps(r),
        })
        .collect())
}

/// Why an approval was refused, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// No planner runs, or it runs another run, or the run has no such
    /// waiting step (404).
    #[error("{0}")]
    NotWaiting(String),
    /// Several steps wait and none was named (409).
    #[error("{0}")]
    Ambiguous(String),
    /// The planner refused (409) or could not be reached (500).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(ConsoleError),
}

/// An approval the planner recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// The planner's answer (`step `gate` of run … approved by …`).
    pub message: String,
    pub step: String,
    /// The run's group.
    pub group: String,
}

/// Approves `step` (or the one step that waits) of `run` as `who`, through the
/// planner's control socket exactly as `lifeline approve RUN STEP` does: the
/// planner records the approval on the audit chain (`approved`, with `who`)
/// before it answers.
pub fn approve(state_dir: &Path, run: &str, step: Option<&str>, who: &str) -> Result<Approved, ApproveError> {
    let runs = running(state_dir).map_err(ApproveError::Failed)?;
    let Some(r) = runs.iter().find(|r| r.id == run) else {
        return Err(ApproveError::NotWaiting(format!(
            "run {run} is not running in {} (see /api/v1/runs)",
            state_dir.display()
        )));
    };
    let step = match (step, r.waiting_for_approval.as_slice()) {
        (Some(s), _) => s.to_string(),
        (None, [one]) => one.step.clone(),
        (None, []) => {
            return Err(ApproveError::NotWaiting(format!(
                "run {run} has no step waiting for approval"
            )));
        }
        (None, many) => {
            return Err(ApproveError::Ambiguous(format!(
                "run {run} has {} steps waiting for approval ({}): name one with ?step=ID",
                many.len(),
                many.iter().map(|w| w.step.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let req = Request::Approve {
        run: run.to_string(),
        step: step.clone(),
        who: who.to_string(),
    };
    match control_socket::call(state_dir, &req) {
        Ok(Some(a)) if a.ok => Ok(Approved {
            message: a.message.unwrap_or_default(),
            step,
            group: r.group.clone(),
        }),
        Ok(Some(a)) => Err(ApproveError::Refused(a.error.unwrap_or_default())),
        Ok(None) => Err(ApproveError::NotWaiting(format!(
            "no planner is running in {}: run {run} waits for no one",
            state_dir.display()
        ))),
        Err(e) => Err(ApproveError::Failed(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_is_recorded_and_the_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let a = ConsoleAction {
            action: "pause".into(),
            group: "g".into(),
            by: "admin:ops".into(),
            site: "primary".into(),
        };
        record(dir.path(), &a).unwrap();
        record(
            dir.path(),
            &ConsoleAction {
                action: "resume".into(),
                ..a
            },
        )
        .unwrap();
        let planner = crate::state_dir::planner_dir(dir.path());
        let r = crate::audit::verify(&planner, None, &[]).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.entries, 2);
        let text = std::fs::read_to_string(planner.join("audit.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], CONSOLE_ACTION);
        assert_eq!(last["operator"], "admin:ops");
        assert_eq!(last["detail"]["action"], "resume");
        assert_eq!(last["detail"]["group"], "g");
    }
}
