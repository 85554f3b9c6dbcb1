//! The `check.*` actions' helpers: commands run to completion, volume and
//! workload checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::run_record::WorkloadLoss;
use crate::runbook::Value;
use crate::runbook::actions::Mode;

use super::ctx::*;
use super::volume::promoted_volume;

/// How often a check that has not passed yet tries again (every `check.*`).
pub(crate) const CHECK_POLL: Duration = Duration::from_millis(100);

/// Runs a command to completion; Ok only on exit 0.
pub(crate) async fn run_command(ctx: &Ctx, p: &BTreeMap<String, Value>) -> R<(i32, String)> {
    let command = s(p, "command").ok_or("no `command`")?.to_string();
    let args = list(p, "args");
    let cwd = ctx.cwd(p);
    let (program, argv) = ctx.in_netns(&command, &args);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv)
        .envs(table(p, "env"))
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let o = cmd.output().await.map_err(|e| {
        format!(
            "run `{command}`: {e} (is it installed and in PATH? cwd {})",
            cwd.display()
        )
    })?;
    let mut stdout = String::from_utf8_lossy(&o.stdout).to_string();
    stdout.truncate(4096);
    let code = o.status.code().unwrap_or(-1);
    if !o.status.success() {
        let mut stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
        stderr.truncate(1024);
        let mut printed = stdout.trim().to_string();
        printed.truncate(1024);
        return Err(format!(
            "`{command} {}` exited with {}{}{}",
            args.join(" "),
            o.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            },
            if printed.is_empty() {
                String::new()
            } else {
                format!(" (stdout: {printed})")
            }
        ));
    }
    Ok((code, stdout.trim_end().to_string()))
}

pub(crate) async fn check_volume(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outcome> {
    let d = ctx.plan.direction.clone();
    let (volume, promoted, path) = promoted_volume(ctx, p)?;
    let expected = promoted
        .and_then(|p| p.volumes.get(&volume).map(|v| v.hash.clone()))
        .ok_or_else(|| {
            format!("no point hash for volume `{volume}`: a volume.promote step of this run must promote it first")
        })?;
    let zero_loss = matches!(ctx.plan.mode, Mode::Switchover | Mode::Failback);
    let source = d.source_volumes.get(&volume).cloned();
    blocking(move || {
        let (_, h) = lifeline_replicator::hash_volume(&path).map_err(|e| format!("hash {}: {e}", path.display()))?;
        if h != expected {
            return Err(format!(
                "volume `{volume}` at {} hashes to {} but the point says {}: it was changed after the promote, or restored wrongly",
                path.display(),
                &h[..16],
                &expected[..16]
            ));
        }
        let zero_loss = if zero_loss {
            let src = source.ok_or_else(|| format!("no source path for volume `{volume}`"))?;
            let (_, hs) = lifeline_replicator::hash_volume(&src).map_err(|e| format!("hash source {}: {e}", src.display()))?;
            if hs != h {
                return Err(format!(
                    "data loss: the source volume {} ({}) differs from the promoted copy ({}): writes were not stopped before the final sync",
                    src.display(),
                    &hs[..16],
                    &h[..16]
                ));
            }
            Some(true)
        } else {
            None
        };
        Ok(Outcome::Volume { hash: h, zero_loss })
    })
    .await
}

pub(crate) async fn check_workload(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outcome> {
    let d = ctx.plan.direction.clone();
    let (volume, _, path) = promoted_volume(ctx, p)?;
    let log = s(p, "durable_log").map(PathBuf::from).or(d
        .source_volumes
        .get(&volume)
        .map(|v| lifeline_testbeds::default_durable_log(v)));
    // The instant of the disaster: the run's start (a drill's T0).
    let at = ctx.shared.record.lock().expect("record").started_at;
    blocking(move || {
        let log = log.filter(|l| l.exists());
        let r = lifeline_testbeds::check_path(&path, Some(at), log.as_deref())
            .map_err(|e| format!("check workload volume {}: {e}", path.display()))?;
        if let Some(e) = &r.superblock_error {
            return Err(format!("{} holds no workload: {e}", path.display()));
        }
        if !r.damaged.is_empty() {
            return Err(format!(
                "{} corrupt records in {} (first: slot {}: {})",
                r.damaged.len(),
                path.display(),
                r.damaged[0].slot,
                r.damaged[0].reason
            ));
        }
        Ok(Outcome::Workload(WorkloadLoss {
            last_seq: r.last_seq,
            lost_records: r.lost_records,
            // To the millisecond, as the report states it.
            lost_secs: r.lost_secs.map(|x| (x * 1000.0).round() / 1000.0),
            corrupt_records: r.damaged.len() as u64,
            clean: r.clean,
        }))
    })
    .await
}
