//! `lifeline points`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::human_bytes;
use crate::cli::PointsArgs;
use lifeline_planner::repo_target::RepoTarget;

pub fn run(a: &PointsArgs) -> Result<ExitCode> {
    let key = a.key_file.as_deref().map(super::load_key).transpose()?;
    let (target, keys) = RepoTarget::open_with(&a.repo.repo, &a.remote, key.as_ref())?;
    let repo = target.tenant_named(a.tenant.as_deref())?;
    let points = repo.points(a.group.as_deref())?;
    let location = repo.describe();
    let mut rows = Vec::new();
    for p in &points {
        let h = &p.header;
        let volumes = match &keys {
            Some(k) => {
                let opened = p.open(k, &location)?;
                Some(
                    opened
                        .body
                        .volumes
                        .iter()
                        .map(|v| json!({"name": v.name, "size": v.size, "volume_hash": v.volume_hash}))
                        .collect::<Vec<_>>(),
                )
            }
            None => None,
        };
        rows.push(json!({
            "group": h.group,
            "seq": h.seq,
            "taken_at": h.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "consistency": h.consistency.name(),
            "volume_count": h.roots.len(),
            "volumes": volumes,
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no points{}",
            a.group.as_ref().map(|g| format!(" in group `{g}`")).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>6}  {:<24}  {:<11}  VOLUMES",
        "GROUP", "SEQ", "TAKEN AT", "CONSISTENCY"
    );
    for r in rows {
        let vols = match r["volumes"].as_array() {
            Some(vs) => vs
                .iter()
                .map(|v| {
                    format!(
                        "{} ({})",
                        v["name"].as_str().unwrap_or(""),
                        human_bytes(v["size"].as_u64().unwrap_or(0))
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            None => r["volume_count"].to_string(),
        };
        println!(
            "{:<20} {:>6}  {:<24}  {:<11}  {}",
            r["group"].as_str().unwrap_or(""),
            r["seq"].as_u64().unwrap_or(0),
            r["taken_at"].as_str().unwrap_or(""),
            r["consistency"].as_str().unwrap_or(""),
            vols
        );
    }
    Ok(ExitCode::SUCCESS)
}
