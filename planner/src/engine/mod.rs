//! The run engine: executes a [`Plan`], running steps whose dependencies are met
//! in parallel (bounded), with timeouts, retries and the runbook's `on_failure`
//! (rollback undoes completed steps in reverse order of completion). Every
//! transition is saved to the planner's catalog and appended to the audit log
//! before the engine goes on, so after a kill -9 `lifeline resume` continues
//! where it stopped: finished steps are not run again; a step that was running
//! runs again from its start.

mod actions;
pub mod control_socket;
mod driver;
mod error;
pub mod http;
pub mod instant;
pub mod process;
mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use crate::run_record::{RunRecord, RunStatus, StepRecord, StepStatus, TrackedProcess};
pub use driver::{Driving, Prepared, RunObserver, Unobserved, execute_run, new_run_id};
pub use error::{EngineError, Result};
pub use record::{PinLeft, PromotedPoint, new_record, pins_left, prepare_resume, promoted_points};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::plan::{Plan, PlannedStep, Undo};
use crate::run_catalog::PlannerCatalog;
use crate::run_record::{Outcome, Pin};
use crate::runbook::Value;
use crate::runbook::actions::Action;
use crate::runbook::actions::Behaviour;
use crate::runbook::template;

/// One thing that happened in a run: printed, streamed with `--json`, audited.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub run: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

/// Where events go besides the catalog and the audit log.
pub type EventSink = Arc<dyn Fn(&Event, &RunRecord) + Send + Sync>;

/// What the engine shares with its step tasks and the control socket.
pub struct Shared {
    pub record: Mutex<RunRecord>,
    catalog: PlannerCatalog,
    audit: Mutex<AuditLog>,
    sink: EventSink,
    operator: Option<String>,
    /// Wakes approval steps.
    pub approvals: Notify,
    /// Wakes the engine loop (abort).
    pub wake: Notify,
    /// Children this process started, by PID (so they can be reaped).
    children: Mutex<HashMap<i32, std::process::Child>>,
    /// Points this run serves to its instant promotes, until its teardown.
    instant: Mutex<Vec<instant::InstantPromote>>,
}

use crate::run_record::now;

impl Shared {
    pub fn new(
        record: RunRecord,
        catalog: PlannerCatalog,
        audit: AuditLog,
        sink: EventSink,
        operator: Option<String>,
    ) -> Self {
        Shared {
            record: Mutex::new(record),
            catalog,
            audit: Mutex::new(audit),
            sink,
            operator,
            approvals: Notify::new(),
            wake: Notify::new(),
            children: Mutex::new(HashMap::new()),
            instant: Mutex::new(Vec::new()),
        }
    }

    pub fn catalog(&self) -> &PlannerCatalog {
        &self.catalog
    }

    /// Applies `change` to the record, then audits, saves and reports `event`.
    /// Audit first: the record then carries the head that covers its change.
    pub fn transition(
        &self,
        event: &str,
        step: Option<&str>,
        message: Option<String>,
        operator: Option<&str>,
        change: impl FnOnce(&mut RunRecord),
    ) -> Result<()> {
        self.transition_with(event, step, message, operator, None, change)
    }

    /// [`transition`](Self::transition), with a typed value the audit entry
    /// keeps under `detail.KEY` beside the words (e.g. a report's digest).
    pub fn transition_with(
        &self,
        event: &str,
        step: Option<&str>,
        message: Option<String>,
        operator: Option<&str>,
        extra: Option<(&str, serde_json::Value)>,
        change: impl FnOnce(&mut RunRecord),
    ) -> Result<()> {
        let mut rec = self.record.lock().expect("record lock");
        change(&mut rec);
        let (status, outputs) = match step.and_then(|s| rec.steps.get(s)) {
            Some(s) => (Some(s.status.as_str().to_string()), s.outputs.clone()),
            None => (Some(format!("{:?}", rec.status).to_lowercase()), BTreeMap::new()),
        };
        let ev = Event {
            at: crate::run_record::format_timestamp(&now()),
            run: rec.id.clone(),
            event: event.into(),
            step: step.map(String::from),
            status,
            message,
            outputs,
        };
        let mut detail = serde_json::json!({
            "status": ev.status,
            "message": ev.message,
            "outputs": ev.outputs,
        });
        if let Some((k, v)) = extra {
            detail[k] = v;
        }
        let head = self.audit.lock().expect("audit lock").append(
            operator.or(self.operator.as_deref()),
            Some(&rec.id),
            step,
            event,
            Some(detail),
        )?;
        rec.audit_head = Some(head);
        self.catalog.save(&rec)?;
        (self.sink)(&ev, &rec);
        Ok(())
    }

    fn snapshot(&self) -> RunRecord {
        self.record.lock().expect("record lock").clone()
    }

    /// Appends an entry that belongs to no step of this run (a console action
    /// of the daemon, which cannot write the log while this process owns it):
    /// `who` as the operator, `detail` as given.
    pub fn append_audit(&self, event: &str, who: &str, detail: serde_json::Value) -> Result<crate::audit::SignedHead> {
        self.audit
            .lock()
            .expect("audit lock")
            .append(Some(who), None, None, event, Some(detail))
            .map_err(EngineError::from)
    }

    /// Records an approval of `step` by `who`. Errors say why it cannot be approved.
    pub fn approve(&self, plan: &Plan, step: &str, who: &str) -> Result<()> {
        let Some(ps) = plan.step(step) else {
            return Err(EngineError::NoSuchStep {
                run: plan.run_id.clone(),
                step: step.to_string(),
            });
        };
        if ps.action != "approval" {
            return Err(EngineError::NotAnApproval {
                step: step.to_string(),
                action: ps.action.clone(),
            });
        }
        {
            let rec = self.record.lock().expect("record lock");
            if rec.approvals.contains_key(step) {
                return Err(EngineError::AlreadyApproved {
                    step: step.to_string(),
                    by: rec.approvals[step].clone(),
                });
            }
            if rec.status.finished() {
                return Err(EngineError::RunFinished {
                    run: rec.id.clone(),
                    status: format!("{:?}", rec.status),
                });
            }
        }
        self.transition(
            "approved",
            Some(step),
            Some(format!("approved by {who}")),
            Some(who),
            |r| {
                r.approvals.insert(step.into(), who.into());
            },
        )?;
        self.approvals.notify_waiters();
        Ok(())
    }

    /// Asks the run to stop.
    pub fn request_abort(&self, who: &str) -> Result<()> {
        self.transition(
            "abort_requested",
            None,
            Some(format!("abort requested by {who}")),
            Some(who),
            |r| {
                r.abort_requested = true;
            },
        )?;
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    /// Stops this run, a drill, for the failover, switchover or failback `by`
    /// that needs the planner catalog: the drill aborts (its steps stop, its
    /// processes are stopped), tears down, writes its report saying it was
    /// preempted, and releases the catalog. Any other run refuses: two
    /// failovers never preempt each other.
    pub fn request_preempt(&self, by: &str, who: &str) -> Result<()> {
        {
            let rec = self.record.lock().expect("record lock");
            if rec.mode != crate::runbook::actions::Mode::Drill {
                return Err(EngineError::NotADrill {
                    mode: rec.mode,
                    run: rec.id.clone(),
                    group: rec.group.clone(),
                });
            }
            if rec.preempted_by.is_some() {
                // Already asked (e.g. a second failover racing the first): the
                // drill is stopping; whoever opens the catalog first runs.
                return Ok(());
            }
        }
        self.transition(
            "preempted",
            None,
            Some(format!(
                "preempted by {by} (requested by {who}): the drill stops and tears down"
            )),
            Some(who),
            |r| {
                r.preempted_by = Some(by.to_string());
                r.abort_requested = true;
            },
        )?;
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    fn outputs(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let rec = self.record.lock().expect("record lock");
        rec.steps.iter().map(|(k, v)| (k.clone(), v.outputs.clone())).collect()
    }
}

/// A finished step task: its id, outputs or error, and attempts so far.
type StepOutcome = (String, Result<Outcome, String>, u32);

/// Runs (or resumes) the plan to its end. Returns the final status.
pub async fn drive(shared: Arc<Shared>, plan: Arc<Plan>, config: Arc<Config>, parallel: usize) -> Result<RunStatus> {
    let ctx = Arc::new(actions::Ctx {
        plan: plan.clone(),
        config,
        shared: shared.clone(),
    });
    let parallel = parallel.max(1);
    let mut running: JoinSet<StepOutcome> = JoinSet::new();
    let mut started: HashMap<String, Instant> = HashMap::new();
    // Steps that failed, or were skipped because something they need failed.
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    let mut stop: Option<&'static str> = None; // "abort" | "rollback" | "aborted"
    {
        let rec = shared.snapshot();
        for (id, s) in &rec.steps {
            if s.status == StepStatus::Failed || (s.status == StepStatus::Skipped && s.error.is_some()) {
                blocked.insert(id.clone());
            }
        }
    }
    loop {
        if shared.snapshot().abort_requested && stop != Some("aborted") {
            stop = Some("aborted");
            running.abort_all();
        }
        if stop.is_none() {
            let mut progressed = true;
            while progressed {
                progressed = false;
                let rec = shared.snapshot();
                for ps in &plan.steps {
                    if rec.steps[&ps.id].status != StepStatus::Pending || started.contains_key(&ps.id) {
                        continue;
                    }
                    if let Some(dep) = ps.after.iter().find(|d| blocked.contains(*d)) {
                        blocked.insert(ps.id.clone());
                        let msg = format!("not run: step `{dep}` it depends on failed");
                        shared.transition("step_skipped", Some(&ps.id), Some(msg.clone()), None, |r| {
                            let s = r.steps.get_mut(&ps.id).expect("step");
                            s.status = StepStatus::Skipped;
                            s.error = Some(msg);
                        })?;
                        progressed = true;
                        continue;
                    }
                    if !ps.after.iter().all(|d| rec.steps[d].status.satisfies()) {
                        continue;
                    }
                    if ps.behaviour == Behaviour::Skip {
                        shared.transition("step_skipped", Some(&ps.id), Some(ps.reason.clone()), None, |r| {
                            let s = r.steps.get_mut(&ps.id).expect("step");
                            s.status = StepStatus::Skipped;
                            s.note = Some(ps.reason.clone());
                            r.completed.push(ps.id.clone());
                        })?;
                        progressed = true;
                        continue;
                    }
                    if running.len() >= parallel {
                        continue;
                    }
                    started.insert(ps.id.clone(), Instant::now());
                    let ctx = ctx.clone();
                    let ps = ps.clone();
                    running.spawn(async move {
                        let (r, attempts) = run_with_retries(&ctx, &ps).await;
                        (ps.id.clone(), r, attempts)
                    });
                    progressed = true;
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { continue };
                let (id, result, attempts) = match joined {
                    Ok(x) => x,
                    Err(e) if e.is_cancelled() => continue,
                    Err(e) => return Err(EngineError::StepPanicked(e.to_string())),
                };
                let elapsed = started.remove(&id).map(|t| t.elapsed().as_millis() as u64);
                let ps = plan.step(&id).expect("planned").clone();
                match result {
                    Ok(outcome) => {
                        shared.transition("step_succeeded", Some(&id), None, None, |r| {
                            let s = r.steps.get_mut(&id).expect("step");
                            s.status = StepStatus::Succeeded;
                            s.set_outcome(outcome);
                            s.attempts = attempts;
                            s.ended_at = Some(now());
                            s.elapsed_ms = elapsed;
                            s.error = None;
                            r.completed.push(id.clone());
                        })?;
                    }
                    Err(e) if ps.behaviour == Behaviour::BestEffort => {
                        let note = format!("{e} — tolerated: {}", ps.reason);
                        shared.transition("step_tolerated", Some(&id), Some(note.clone()), None, |r| {
                            let s = r.steps.get_mut(&id).expect("step");
                            s.status = StepStatus::Tolerated;
                            s.attempts = attempts;
                            s.ended_at = Some(now());
                            s.elapsed_ms = elapsed;
                            s.note = Some(note);
                            if ps.action.starts_with("replication.") {
                                s.set_outcome(Outcome::Reach { reachable: false });
                            }
                            r.completed.push(id.clone());
                        })?;
                    }
                    Err(e) if actions::defers_reprotect(&ps.action, plan.mode, &e) => {
                        let note = format!(
                            "{e} — reprotect pending: start the forward agent when the primary is back, then `lifeline resume {}`",
                            plan.run_id
                        );
                        shared.transition("step_deferred", Some(&id), Some(note.clone()), None, |r| {
                            let s = r.steps.get_mut(&id).expect("step");
                            s.status = StepStatus::Deferred;
                            s.attempts = attempts;
                            s.ended_at = Some(now());
                            s.elapsed_ms = elapsed;
                            s.note = Some(note);
                            s.set_outcome(Outcome::Reach { reachable: false });
                            r.completed.push(id.clone());
                        })?;
                    }
                    Err(e) => {
                        blocked.insert(id.clone());
                        shared.transition("step_failed", Some(&id), Some(e.clone()), None, |r| {
                            let s = r.steps.get_mut(&id).expect("step");
                            s.status = StepStatus::Failed;
                            s.attempts = attempts;
                            s.ended_at = Some(now());
                            s.elapsed_ms = elapsed;
                            s.error = Some(e.clone());
                        })?;
                        match ps.on_failure {
                            crate::runbook::OnFailure::Continue => {}
                            crate::runbook::OnFailure::Abort => {
                                stop.get_or_insert("abort");
                                running.abort_all();
                            }
                            crate::runbook::OnFailure::Rollback => {
                                stop = Some("rollback");
                                running.abort_all();
                            }
                        }
                    }
                }
            }
            _ = shared.wake.notified() => {}
        }
    }
    // Steps cut short by an abort go back to pending (a resume would run them).
    let interrupted: Vec<String> = started.keys().cloned().collect();
    for id in &interrupted {
        shared.transition(
            "step_interrupted",
            Some(id),
            Some("stopped by the run's end".into()),
            None,
            |r| {
                let s = r.steps.get_mut(id).expect("step");
                s.status = StepStatus::Failed;
                s.error = Some("interrupted (the run was stopped)".into());
                s.ended_at = Some(now());
            },
        )?;
    }
    let rec = shared.snapshot();
    let any_failed = rec.steps.values().any(|s| s.status == StepStatus::Failed);
    let status = match stop {
        Some("aborted") => {
            stop_processes(&shared, Duration::from_secs(10)).await?;
            RunStatus::Aborted
        }
        Some("rollback") => {
            rollback(&ctx).await?;
            RunStatus::RolledBack
        }
        _ if any_failed => RunStatus::Failed,
        _ if rec.steps.values().any(|s| s.status == StepStatus::Deferred) => RunStatus::ReprotectPending,
        _ => RunStatus::Succeeded,
    };
    // Interrupted while it waited for hydration: aborted, not succeeded.
    let status = if instant::finish(&shared, status).await? {
        RunStatus::Aborted
    } else {
        status
    };
    release_pins(&ctx).await?;
    let left = pins_left(&shared.snapshot(), &plan);
    let msg = match status {
        RunStatus::Succeeded => "every step done".to_string(),
        RunStatus::RolledBack => "a step failed; completed steps were undone".into(),
        RunStatus::Aborted => "aborted; the processes the run started were stopped".into(),
        RunStatus::ReprotectPending => {
            let deferred: Vec<&String> = rec
                .steps
                .iter()
                .filter(|(_, s)| s.status == StepStatus::Deferred)
                .map(|(k, _)| k)
                .collect();
            format!(
                "reprotect pending: every other step done, but {} could not reach the forward agent; start it, then `lifeline resume {}`",
                deferred.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                rec.id
            )
        }
        _ => {
            let failed: Vec<&String> = rec
                .steps
                .iter()
                .filter(|(_, s)| s.status == StepStatus::Failed)
                .map(|(k, _)| k)
                .collect();
            format!(
                "failed steps: {}",
                failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    };
    let msg = if left.is_empty() {
        msg
    } else {
        format!(
            "{msg}; pins left behind (each expires by itself 24 h after its promote): {}",
            left.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    shared.transition("run_finished", None, Some(msg.clone()), None, |r| {
        r.status = status;
        r.ended_at = Some(now());
        if status != RunStatus::Succeeded {
            r.error = Some(msg);
        }
    })?;
    Ok(status)
}

/// Releases the pins the run holds, recording each (`pinned` becomes
/// `released`): at the run's end, and before the run stops a process its
/// promote depended on (the receiver that holds them).
async fn release_pins(ctx: &Arc<actions::Ctx>) -> Result<()> {
    let shared = &ctx.shared;
    let held = pins_left(&shared.snapshot(), &ctx.plan);
    for (pin, r) in actions::release_pins(ctx, &held).await {
        let note = match &r {
            Ok(()) => format!("released the lease on point {} (step `{}`)", pin.seq, pin.step),
            Err(e) => format!(
                "could not release the lease on point {} (step `{}`; it expires by itself): {e}",
                pin.seq, pin.step
            ),
        };
        shared.transition("lease_released", None, Some(note), None, |rec| {
            if let (Ok(()), Some(s)) = (&r, rec.steps.get_mut(&pin.step))
                && let Some(Outcome::Promote(p)) = &s.outcome
            {
                let mut p = p.clone();
                p.pin = Pin::Released;
                s.set_outcome(Outcome::Promote(p));
            }
        })?;
    }
    Ok(())
}

async fn run_with_retries(ctx: &Arc<actions::Ctx>, ps: &PlannedStep) -> (Result<Outcome, String>, u32) {
    let shared = &ctx.shared;
    let prior = shared.snapshot().steps[&ps.id].attempts;
    let mut last = String::new();
    for attempt in 1..=ps.retry.attempts {
        let total = prior + attempt;
        let r = shared.transition(
            if attempt == 1 { "step_started" } else { "step_retried" },
            Some(&ps.id),
            (attempt > 1).then(|| format!("attempt {attempt} of {} after: {last}", ps.retry.attempts)),
            None,
            |r| {
                let s = r.steps.get_mut(&ps.id).expect("step");
                s.status = StepStatus::Running;
                s.attempts = total;
                s.started_at.get_or_insert_with(now);
            },
        );
        if let Err(e) = r {
            return (Err(format!("cannot record the step: {e:#}")), total);
        }
        let params = match render_params(&ps.params, &shared.outputs()) {
            Ok(p) => p,
            Err(e) => return (Err(e), total),
        };
        let fut = actions::execute(ctx.clone(), ps.clone(), params);
        // `wait` has no timeout; `check.command` polls and enforces its own.
        let r = if ps.timeout.is_zero() || matches!(ps.kind, Action::Wait | Action::CheckCommand) {
            fut.await
        } else {
            match tokio::time::timeout(ps.timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "timed out after {}",
                    crate::runbook::format_duration(ps.timeout)
                )),
            }
        };
        match r {
            Ok(out) => return (Ok(out), total),
            Err(e) => last = e,
        }
        if attempt < ps.retry.attempts {
            tokio::time::sleep(ps.retry.backoff * 2u32.pow(attempt - 1)).await;
        }
    }
    (Err(last), prior + ps.retry.attempts)
}

/// Fills `${steps.ID.OUTPUT}` from the outputs so far and unescapes `$${`.
pub fn render_params(
    params: &BTreeMap<String, Value>,
    outputs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<BTreeMap<String, Value>, String> {
    params
        .iter()
        .map(|(k, v)| {
            let v = v.map_strings(&mut |s| {
                template::render(s, &mut |r| match r {
                    template::Ref::Step { id, output } => outputs.get(id).and_then(|o| o.get(output)).cloned(),
                    _ => None,
                })
                .map_err(|e| format!("parameter `{k}`: {e} (did the step that makes it succeed?)"))
            })?;
            Ok((k.clone(), v))
        })
        .collect()
}

/// Stops every process the run started that still runs.
async fn stop_processes(shared: &Arc<Shared>, grace: Duration) -> Result<()> {
    let procs: Vec<TrackedProcess> = shared.snapshot().processes.into_iter().filter(|p| !p.stopped).collect();
    for p in procs {
        let s2 = shared.clone();
        let p2 = p.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut children = s2.children.lock().expect("children");
            process::stop(&p2, grace, children.get_mut(&p2.pid))
        })
        .await
        .expect("stop task");
        shared.transition(
            "process_stopped",
            Some(&p.step),
            Some(match &r {
                Ok(()) => format!("process {} stopped", p.pid),
                Err(e) => format!("{e:#}"),
            }),
            None,
            |rec| {
                if let Some(x) = rec.processes.iter_mut().find(|x| x.pid == p.pid) {
                    x.stopped = r.is_ok();
                }
            },
        )?;
    }
    Ok(())
}

/// Undoes completed steps in reverse order of completion.
async fn rollback(ctx: &Arc<actions::Ctx>) -> Result<()> {
    let shared = &ctx.shared;
    shared.transition("rollback_started", None, None, None, |_| {})?;
    let done: Vec<String> = shared.snapshot().completed.clone();
    for id in done.iter().rev() {
        let ps = ctx.plan.step(id).expect("planned").clone();
        let status = shared.snapshot().steps[id].status;
        if !matches!(status, StepStatus::Succeeded | StepStatus::Tolerated) {
            continue;
        }
        let r = match &ps.undo {
            None => continue,
            Some(Undo::Action { action, params, .. }) => {
                let params = render_params(params, &shared.outputs());
                match params {
                    Ok(p) => {
                        let mut undo_step = ps.clone();
                        undo_step.action = action.clone();
                        undo_step.kind = crate::runbook::actions::Action::from_name(action)
                            .expect("validation checked the undo's action");
                        actions::execute(ctx.clone(), undo_step, p)
                            .await
                            .map(|_| format!("ran {action}"))
                    }
                    Err(e) => Err(e),
                }
            }
            Some(Undo::Builtin { .. }) => actions::builtin_undo(ctx.clone(), ps.clone()).await,
        };
        let (st, note) = match r {
            Ok(n) => (StepStatus::Undone, n),
            Err(e) => (StepStatus::UndoFailed, e),
        };
        shared.transition(
            if st == StepStatus::Undone {
                "step_undone"
            } else {
                "step_undo_failed"
            },
            Some(id),
            Some(note.clone()),
            None,
            |r| {
                let s = r.steps.get_mut(id).expect("step");
                s.status = st;
                s.note = Some(note);
            },
        )?;
    }
    // Processes of steps that were not completed (e.g. a start whose check failed).
    stop_processes(shared, Duration::from_secs(10)).await
}
