//! What each action does when it runs. Parameters arrive resolved; every error is
//! a sentence that names the step's object and what to do.
//!
//! [`ctx`] holds the run's context and parameter readers; each family of
//! actions with more than a few lines has its file ([`checks`], [`service`],
//! [`volume`], [`replication`]); this file dispatches a step to its action and
//! its builtin undo.

mod checks;
mod ctx;
mod replication;
mod service;
mod volume;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_service::{ControlAnswer, ControlCall};

use super::http;
use crate::plan::PlannedStep;
use crate::runbook::Value;
use crate::runbook::actions::{Action, Mode, Reach};

use checks::*;
pub(crate) use ctx::Ctx;
use ctx::*;
pub(crate) use replication::defers_reprotect;
use replication::*;
use service::*;
pub(crate) use volume::release_pins;
use volume::*;

pub(crate) async fn execute(ctx: Arc<Ctx>, ps: PlannedStep, p: BTreeMap<String, Value>) -> R<Outcome> {
    let d = ctx.plan.direction.clone();
    // Validation and planning keep production out of a drill; this is the last
    // line, for what they could not see.
    if ctx.plan.mode == Mode::Drill && ps.kind.spec().reach == Reach::Replication {
        return Err(format!(
            "`{}` refused: a drill never drives production replication (production is untouched)",
            ps.action
        ));
    }
    match ps.kind {
        Action::ReplicationStop => {
            let a = ctx.agent(&p, d.source_agent.as_ref(), "the source agent")?;
            ctx.control(a, ControlCall::Pause).await?;
            Ok(Outcome::Reach { reachable: true })
        }
        Action::ReplicationReverse => {
            let a = ctx.agent(&p, d.reverse_agent.as_ref(), "the reverse agent")?;
            ctx.control(a, ControlCall::Resume).await.map_err(|e| {
                if ctx.plan.mode == Mode::Failback && e.contains("cannot reach agent control") {
                    format!("{FORWARD_AGENT_UNREACHABLE}{e}")
                } else {
                    e
                }
            })?;
            Ok(Outcome::Reach { reachable: true })
        }
        Action::ReplicationFinalSync => {
            let a = ctx.agent(&p, d.source_agent.as_ref(), "the source agent")?;
            // A paused agent would never sync: resume it first (a no-op when running).
            ctx.control(a.clone(), ControlCall::Resume).await?;
            match ctx.control(a, ControlCall::SyncNow).await? {
                ControlAnswer::Synced { seq, taken_at } => Ok(Outcome::Sync {
                    seq,
                    taken_at: to_millis(taken_at),
                }),
                other => Err(format!("unexpected answer to sync-now: {other:?}")),
            }
        }
        Action::ReplicationSeed => seed(&ctx, &p).await,
        Action::VolumePromote => promote(&ctx, &ps, &p).await,
        Action::ServiceStart => start_service(&ctx, &ps, &p).await,
        Action::ServiceStop => match s(&p, "step") {
            Some(step) => {
                let grace = s(&p, "grace")
                    .map(crate::runbook::parse_duration)
                    .transpose()?
                    .unwrap_or(Duration::from_secs(10));
                if feeds_a_promote(&ctx.plan, step) {
                    super::release_pins(&ctx).await.map_err(|e| format!("{e:#}"))?;
                }
                stop_step_processes(&ctx, step, grace).await?;
                Ok(Outcome::Done)
            }
            None => run_command(&ctx, &p).await.map(|_| Outcome::Done),
        },
        Action::CheckTcp => {
            let addr = s(&p, "address").unwrap_or_default().to_string();
            let t0 = Instant::now();
            if ctx.plan.netns.is_some() {
                let args = vec!["probe".to_string(), "tcp".into(), addr.clone()];
                while !ctx.probe(&args).await {
                    tokio::time::sleep(CHECK_POLL).await;
                }
                return Ok(Outcome::Tcp { elapsed_ms: millis(t0) });
            }
            loop {
                let last =
                    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr)).await {
                        Ok(Ok(_)) => {
                            return Ok(Outcome::Tcp { elapsed_ms: millis(t0) });
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "connect timed out".into(),
                    };
                tracing::debug!(%addr, %last, "check.tcp not yet");
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        Action::CheckHttp => {
            let url = s(&p, "url").unwrap_or_default().to_string();
            let want = match p.get("status") {
                Some(Value::Int(i)) => *i as u16,
                _ => 200,
            };
            let body = s(&p, "body_contains").map(String::from);
            let ca = s(&p, "ca_file").map(PathBuf::from);
            let t0 = Instant::now();
            if ctx.plan.netns.is_some() {
                let mut args = vec![
                    "probe".to_string(),
                    "http".into(),
                    url.clone(),
                    "--status".into(),
                    want.to_string(),
                ];
                if let Some(b) = &body {
                    args.extend(["--body-contains".to_string(), b.clone()]);
                }
                if let Some(c) = &ca {
                    args.extend(["--ca-file".to_string(), c.display().to_string()]);
                }
                while !ctx.probe(&args).await {
                    tokio::time::sleep(CHECK_POLL).await;
                }
                return Ok(Outcome::Http {
                    status: want,
                    elapsed_ms: millis(t0),
                });
            }
            loop {
                match http::request_with("GET", &url, None, ca.as_deref()).await {
                    Ok(a) if a.status == want && body.as_ref().is_none_or(|b| a.body.contains(b.as_str())) => {
                        return Ok(Outcome::Http {
                            status: a.status,
                            elapsed_ms: millis(t0),
                        });
                    }
                    Ok(a) => tracing::debug!(%url, status = a.status, "check.http not yet"),
                    // A URL or CA file that cannot work fails at once; anything
                    // else (not up yet) is tried again.
                    Err(e @ (http::HttpError::NotHttp { .. } | http::HttpError::CaFile { .. })) => {
                        return Err(e.to_string());
                    }
                    Err(e) => tracing::debug!(%url, error = %e, "check.http not yet"),
                }
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        Action::CheckCommand => {
            // Polls like the other checks: runs the command again every
            // CHECK_POLL until it exits 0 or the step's timeout passes (the
            // engine leaves that timeout to this loop, so the error can say what
            // the last attempt printed). No timeout: one attempt.
            let t0 = Instant::now();
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let attempt = run_command(&ctx, &p);
                let r = if ps.timeout.is_zero() {
                    attempt.await
                } else {
                    match tokio::time::timeout(ps.timeout.saturating_sub(t0.elapsed()), attempt).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("`{}` was still running", s(&p, "command").unwrap_or_default())),
                    }
                };
                let last = match r {
                    Ok((exit, stdout)) => {
                        return Ok(Outcome::Command {
                            exit,
                            stdout,
                            attempts,
                            elapsed_ms: millis(t0),
                        });
                    }
                    Err(e) => e,
                };
                if ps.timeout.is_zero() {
                    return Err(last);
                }
                if t0.elapsed() + CHECK_POLL >= ps.timeout {
                    return Err(format!(
                        "timed out after {} ({attempts} attempt{}); last attempt: {last}",
                        crate::runbook::format_duration(ps.timeout),
                        if attempts == 1 { "" } else { "s" }
                    ));
                }
                tracing::debug!(step = %ps.id, %last, "check.command not yet");
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        Action::CheckVolume => check_volume(&ctx, &p).await,
        Action::CheckWorkload => check_workload(&ctx, &p).await,
        Action::TrafficSwitch => {
            if let Some(file) = s(&p, "file") {
                let file = ctx.drill_writes_in_sandbox(Path::new(file))?;
                let backup = ctx.plan.run_dir.join(format!("{}.orig", ps.id));
                let content = s(&p, "content").map(String::from);
                let replace = s(&p, "replace").map(String::from).zip(s(&p, "with").map(String::from));
                blocking(move || {
                    let old = std::fs::read(&file).or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound && content.is_some() {
                            Ok(Vec::new())
                        } else {
                            Err(format!("read {}: {e}", file.display()))
                        }
                    })?;
                    let new = match (content, replace) {
                        (Some(c), _) => c.into_bytes(),
                        (None, Some((from, to))) => {
                            let text = String::from_utf8_lossy(&old);
                            if !text.contains(&from) {
                                return Err(format!(
                                    "{} does not contain {from:?}: nothing to switch (already switched, or the runbook is out of date)",
                                    file.display()
                                ));
                            }
                            text.replacen(&from, &to, 1).into_bytes()
                        }
                        (None, None) => return Err("traffic.switch with `file` needs `content`, or `replace` and `with`".into()),
                    };
                    if !backup.exists() {
                        lifeline_replicator::write_atomic_mode(&backup, &old, 0o600).map_err(|e| format!("{e:#}"))?;
                    }
                    lifeline_replicator::write_atomic_mode(&file, &new, 0o644).map_err(|e| format!("{e:#}"))?;
                    Ok(Outcome::Done)
                })
                .await
            } else {
                run_command(&ctx, &p).await.map(|_| Outcome::Done)
            }
        }
        Action::Approval => loop {
            let notified = ctx.shared.approvals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(who) = ctx.shared.record.lock().expect("record").approvals.get(&ps.id).cloned() {
                return Ok(Outcome::Approval { approved_by: who });
            }
            notified.await;
        },
        Action::Wait => {
            let d = crate::runbook::parse_duration(s(&p, "duration").unwrap_or("0s"))?;
            tokio::time::sleep(d).await;
            Ok(Outcome::Done)
        }
        Action::Notify => {
            let url = s(&p, "url").unwrap_or_default().to_string();
            let body = serde_json::json!({
                "run": ctx.plan.run_id,
                "mode": ctx.plan.mode,
                "group": ctx.plan.direction.group,
                "runbook": ctx.plan.runbook,
                "step": ps.id,
                "message": s(&p, "message"),
            })
            .to_string();
            let a = http::request("POST", &url, Some(&body))
                .await
                .map_err(|e| format!("{e:#}"))?;
            if !(200..300).contains(&a.status) {
                return Err(format!("{url} answered {}", a.status));
            }
            Ok(Outcome::Notify { status: a.status })
        }
    }
}

/// The builtin undo of a step (see `plan::builtin_undo`).
pub(crate) async fn builtin_undo(ctx: Arc<Ctx>, ps: PlannedStep) -> R<String> {
    match ps.kind {
        Action::ServiceStart => {
            stop_step_processes(&ctx, &ps.id, Duration::from_secs(10)).await?;
            Ok("stopped its process".into())
        }
        Action::TrafficSwitch => {
            let file = ctx.drill_writes_in_sandbox(Path::new(s(&ps.params, "file").unwrap_or_default()))?;
            let backup = ctx.plan.run_dir.join(format!("{}.orig", ps.id));
            blocking(move || {
                let old = std::fs::read(&backup).map_err(|e| format!("read {}: {e}", backup.display()))?;
                lifeline_replicator::write_atomic_mode(&file, &old, 0o644).map_err(|e| format!("{e:#}"))?;
                Ok(format!("put {} back", file.display()))
            })
            .await
        }
        Action::ReplicationStop => {
            let a = ctx.agent(&ps.params, ctx.plan.direction.source_agent.as_ref(), "the source agent")?;
            ctx.control(a.clone(), ControlCall::Resume).await?;
            Ok(format!("resumed agent `{}`", a.name))
        }
        _ => Ok("nothing to undo".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_forward_agent_in_a_failback_defers_the_reprotect() {
        let unreachable =
            format!("{FORWARD_AGENT_UNREACHABLE}agent `db1` at 10.0.0.1:7444: cannot reach agent control");
        assert!(defers_reprotect("replication.reverse", Mode::Failback, &unreachable));
        assert!(defers_reprotect(
            "replication.reverse",
            Mode::Failback,
            "timed out after 1m"
        ));
        // An agent that answered with an error, another mode or another action: a failure.
        assert!(!defers_reprotect(
            "replication.reverse",
            Mode::Failback,
            "agent `db1` at 10.0.0.1:7444: permission denied"
        ));
        assert!(!defers_reprotect(
            "replication.reverse",
            Mode::Switchover,
            "timed out after 1m"
        ));
        assert!(!defers_reprotect("replication.stop", Mode::Failback, &unreachable));
    }
}
