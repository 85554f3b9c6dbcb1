//! `lifeline restore`.

use std::process::ExitCode;

use anyhow::Result;
use lifeline_replicator::{PointSelector, RestoreOptions, restore};

use super::{human_bytes, rate};
use crate::cli::RestoreArgs;
use lifeline_planner::progress::Bar;

pub fn run(a: &RestoreArgs) -> Result<ExitCode> {
    let point: PointSelector = a.point.parse()?;
    let (target, keys) = super::open_keyed(&a.repo.repo, &a.remote, &a.key_file, a.tenant.as_deref())?;
    let repo = target.tenant_named(a.tenant.as_deref())?;
    let bar = Bar::bytes("restore", a.json);
    let result = restore(
        repo.as_ref(),
        &keys,
        &RestoreOptions {
            group: a.group.clone(),
            point,
            volume: a.volume.clone(),
            target: a.to.clone(),
            progress: bar.callback(),
        },
    );
    bar.finish();
    let s = result?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "restored volume `{}` of point {} (group `{}`, taken at {}) to {}",
        s.volume,
        s.seq,
        s.group,
        s.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        s.target.display()
    );
    println!(
        "  {} ({} written, the rest left sparse) in {:.2} s ({}, of which {:.2} s to make it durable); volume hash verified",
        human_bytes(s.size),
        human_bytes(s.bytes_written),
        s.elapsed_secs,
        rate(s.size, s.elapsed_secs),
        s.sync_secs
    );
    Ok(ExitCode::SUCCESS)
}
