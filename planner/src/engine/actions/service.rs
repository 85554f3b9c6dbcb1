//! `service.start` and `service.stop`: processes a run starts, tracks and stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{TrackedProcess, process};
use crate::plan::PlannedStep;
use crate::runbook::Value;

use super::ctx::*;

pub(crate) async fn start_service(ctx: &Arc<Ctx>, ps: &PlannedStep, p: &BTreeMap<String, Value>) -> R<Outcome> {
    // A resumed run may find the process its earlier attempt started: keep it.
    let existing = {
        let rec = ctx.shared.record.lock().expect("record");
        rec.processes.iter().find(|x| x.step == ps.id && !x.stopped).cloned()
    };
    if let Some(x) = existing
        && process::alive(&x)
    {
        return Ok(Outcome::Start { pid: x.pid, log: x.log });
    }
    let command = s(p, "command").unwrap_or_default().to_string();
    let args = list(p, "args");
    let env = table(p, "env");
    let cwd = ctx.cwd(p);
    let log = ctx.plan.run_dir.join(format!("{}.log", ps.id));
    let (program, argv) = ctx.in_netns(&command, &args);
    let (mut child, ticks) = process::spawn(&program, &argv, &env, &cwd, &log).map_err(|e| format!("{e:#}"))?;
    let pid = child.id() as i32;
    let tracked = TrackedProcess {
        step: ps.id.clone(),
        pid,
        start_ticks: ticks,
        log: log.clone(),
        stopped: false,
    };
    ctx.shared
        .transition(
            "process_started",
            Some(&ps.id),
            Some(format!("pid {pid}: {command} {}", args.join(" "))),
            None,
            |r| r.processes.push(tracked.clone()),
        )
        .map_err(|e| format!("{e:#}"))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Ok(Some(status)) = child.try_wait() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = tail
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(format!(
            "`{command}` exited at once with {status} (log {}: {tail})",
            log.display()
        ));
    }
    ctx.shared.children.lock().expect("children").insert(pid, child);
    Ok(Outcome::Start { pid, log })
}

pub(crate) async fn stop_step_processes(ctx: &Arc<Ctx>, step: &str, grace: Duration) -> R<()> {
    let procs: Vec<TrackedProcess> = {
        let rec = ctx.shared.record.lock().expect("record");
        rec.processes
            .iter()
            .filter(|x| x.step == step && !x.stopped)
            .cloned()
            .collect()
    };
    if procs.is_empty() {
        return Ok(());
    }
    for x in procs {
        let shared = ctx.shared.clone();
        let x2 = x.clone();
        blocking(move || {
            let mut children = shared.children.lock().expect("children");
            process::stop(&x2, grace, children.get_mut(&x2.pid)).map_err(|e| format!("{e:#}"))
        })
        .await?;
        ctx.shared
            .transition(
                "process_stopped",
                Some(step),
                Some(format!("process {} stopped", x.pid)),
                None,
                |r| {
                    if let Some(p) = r.processes.iter_mut().find(|p| p.pid == x.pid) {
                        p.stopped = true;
                    }
                },
            )
            .map_err(|e| format!("{e:#}"))?;
    }
    Ok(())
}
