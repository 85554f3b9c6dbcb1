//! `lifeline backup`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use lifeline_replicator::{BackupOptions, backup};

use super::{human_bytes, rate};
use crate::cli::BackupArgs;
use lifeline_planner::progress::Bar;
use lifeline_planner::repo_target::RepoTarget;

/// Parses `NAME=PATH`.
fn parse_volume(s: &str) -> Result<(String, PathBuf)> {
    lifeline_planner::config::values::volume(s).map_err(anyhow::Error::msg)
}

/// Turns SIGINT / SIGTERM into a cancel flag (a second signal exits at once), so a
/// backup unwinds, thaws and cleans up instead of dying mid-way.
pub fn cancel_on_signals() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

pub fn run(a: &BackupArgs, config: &lifeline_planner::config::Config) -> Result<ExitCode> {
    let volumes = a.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>>>()?;
    let key = super::load_key(&a.key_file)?;
    let (target, keys) = RepoTarget::open(&a.repo.repo, &a.remote, &key)?;
    let repo = target.tenant()?;
    let bar = Bar::bytes("backup", a.json);
    let opts = BackupOptions {
        group: a.group.clone(),
        volumes,
        freeze: a.freeze.clone(),
        thaw: a.thaw.clone(),
        state_dir: config.state_dir(a.repo.state_dir.as_deref()),
        cancel: cancel_on_signals()?,
        progress: bar.callback(),
        block_map: a.block_map,
    };
    let result = backup(repo.as_ref(), &keys, &opts);
    bar.finish();
    let s = result?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "point {} of group `{}` committed ({}, taken at {})",
        s.seq,
        s.group,
        s.consistency.name(),
        s.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    println!(
        "  scanned  {} in {} volume(s) ({} read, holes skipped; {} of {} segments changed)",
        human_bytes(s.bytes_scanned),
        s.volumes,
        human_bytes(s.bytes_read),
        s.segments_changed,
        s.segments
    );
    println!("  new      {} after dedup", human_bytes(s.bytes_new));
    println!(
        "  stored   {} after compression ({} objects)",
        human_bytes(s.bytes_stored),
        s.objects_new
    );
    if let Some(ms) = s.frozen_ms {
        println!("  frozen   {ms} ms");
    }
    println!(
        "  elapsed  {:.2} s ({})",
        s.elapsed_secs,
        rate(s.bytes_scanned, s.elapsed_secs)
    );
    Ok(ExitCode::SUCCESS)
}
