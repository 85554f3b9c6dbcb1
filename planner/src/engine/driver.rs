//! Driving a run to its end: the control socket (`lifeline runs | approve |
//! abort` reach the run through it), Ctrl-C and SIGTERM (an audited abort), the
//! engine, and whoever watches ([`RunObserver`]: the terminal display of the
//! `lifeline` binary, or nothing). Failovers, switchovers, failbacks, resumes and
//! drills all run through [`execute_run`].

use std::sync::Arc;
use std::time::Duration;

use super::{Event, EventSink, Result, RunRecord, RunStatus, Shared, StepStatus, control_socket};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::plan::Plan;
use crate::run_catalog::PlannerCatalog;

/// Who watches a run: told when it starts, of every event, every
/// [`RunObserver::tick`] while it runs, and when it ends.
pub trait RunObserver: Send + Sync {
    /// The run is about to start (before its first event).
    fn started(&self, _plan: &Plan, _record: &RunRecord) {}
    /// Something happened (after the catalog and the audit log have it).
    fn event(&self, event: &Event, record: &RunRecord);
    /// How often [`RunObserver::tick`] is called while the run runs; `None`: never.
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Periodic, with the record as it stands (e.g. to redraw a spinner).
    fn tick(&self, _record: &RunRecord) {}
    /// The run has ended (its status is final or it stopped to be resumed).
    fn finished(&self) {}
}

/// Watches nothing.
pub struct Unobserved;

impl RunObserver for Unobserved {
    fn event(&self, _: &Event, _: &RunRecord) {}
}

/// A run ready to go: its record, plan, deployment, and the planner state it owns.
pub struct Prepared {
    pub record: RunRecord,
    pub plan: Plan,
    pub config: Config,
    pub catalog: PlannerCatalog,
    pub audit: AuditLog,
}

/// How a run is driven and who watches it.
pub struct Driving {
    /// Who acts (recorded in the audit log with the OS user).
    pub operator: Option<String>,
    /// Steps running at once at most.
    pub parallel: usize,
    /// The run was interrupted and continues (steps that were running run again).
    pub resumed: bool,
    pub observer: Arc<dyn RunObserver>,
}

/// Runs a plan to its end with the control socket and signals; returns the
/// final status and the run's shared state (catalog, audit, record).
pub fn execute_run(run: Prepared, how: Driving) -> Result<(RunStatus, Arc<Shared>, Arc<Plan>)> {
    let Prepared {
        mut record,
        plan: p,
        config,
        catalog,
        audit,
    } = run;
    // A record written before outcomes were typed resumes as a new one.
    record.type_outcomes(|id| p.step(id).map(|s| s.kind));
    let Driving {
        operator,
        parallel,
        resumed,
        observer,
    } = how;
    let socket = catalog.dir().join("control.sock");
    observer.started(&p, &record);
    let sink: EventSink = {
        let o = observer.clone();
        Arc::new(move |e: &Event, r: &RunRecord| o.event(e, r))
    };
    let shared = Arc::new(Shared::new(record, catalog, audit, sink, operator));
    let plan = Arc::new(p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let status = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(control_socket::serve(socket.clone(), shared.clone(), plan.clone(), rx));
        if resumed {
            let again: Vec<String> = shared
                .record
                .lock()
                .expect("record")
                .steps
                .iter()
                .filter(|(_, s)| s.status == StepStatus::Pending && s.attempts > 0)
                .map(|(k, _)| k.clone())
                .collect();
            shared.transition(
                "run_resumed",
                None,
                Some(if again.is_empty() {
                    "resumed".to_string()
                } else {
                    format!("resumed; running again: {}", again.join(", "))
                }),
                None,
                |_| {},
            )?;
        } else {
            shared.transition(
                "run_started",
                None,
                Some(format!(
                    "{} of group {} with runbook {} ({}), digest {}",
                    plan.mode,
                    plan.direction.group,
                    plan.runbook,
                    plan.file.display(),
                    plan.digest
                )),
                None,
                |_| {},
            )?;
        }
        // Ctrl-C / SIGTERM: abort the run (stop its steps and processes), audited.
        let s2 = shared.clone();
        let signals = tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
                let _ = s2.request_abort(&format!("{} (signal)", crate::audit::os_user()));
            }
        });
        let ticker = observer.tick_every().map(|every| {
            let (o, s) = (observer.clone(), shared.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let r = s.record.lock().expect("record").clone();
                    o.tick(&r);
                }
            })
        });
        let r = super::drive(shared.clone(), plan.clone(), Arc::new(config), parallel).await;
        signals.abort();
        if let Some(t) = ticker {
            t.abort();
        }
        let _ = tx.send(true);
        let _ = server.await;
        r
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    observer.finished();
    Ok((status, shared, plan))
}

/// A new run's id: its start time, mode and 6 random hex digits.
pub fn new_run_id(mode: crate::runbook::actions::Mode) -> String {
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!(
        "{}-{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        mode,
        hex::encode(r)
    )
}
