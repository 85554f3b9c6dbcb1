//! `lifeline verify`.

use std::process::ExitCode;

use anyhow::Result;
use lifeline_replicator::{DEFAULT_TENANT, Repository, VerifyOptions, verify};

use super::{human_bytes, rate};
use crate::cli::VerifyArgs;
use crate::progress::Bar;

pub fn run(a: &VerifyArgs) -> Result<ExitCode> {
    let repo = Repository::open(&a.repo.repo)?;
    let keys = match &a.key_file {
        Some(k) => Some(repo.check_key(DEFAULT_TENANT, &super::load_key(k)?)?),
        None => None,
    };
    let bar = Bar::bytes("verify", a.json);
    let result = verify(
        &repo,
        &VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys,
            progress: bar.callback(),
        },
    );
    bar.finish();
    let r = result?;
    let code = if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(code);
    }
    println!(
        "{} verify of {}: {} objects ({}), {} points{} in {:.2} s ({})",
        if r.deep { "deep" } else { "no-key" },
        repo.path().display(),
        r.objects,
        human_bytes(r.bytes),
        r.points,
        if r.deep {
            format!(", {} volume hashes", r.volumes_hashed)
        } else {
            String::new()
        },
        r.elapsed_secs,
        rate(r.bytes, r.elapsed_secs)
    );
    for d in &r.damaged {
        println!("damaged  {} at {}: {}", d.id, d.location, d.reason);
    }
    for m in &r.missing {
        println!("missing  {}: {}", m.id, m.reason);
    }
    for p in &r.affected_points {
        println!("affected point {} of group `{}`: {}", p.seq, p.group, p.reason);
    }
    if r.is_clean() {
        println!("ok: no damage found");
    } else {
        println!(
            "FAILED: {} damaged, {} missing, {} point(s) affected; restore affected volumes from an earlier point or another site",
            r.damaged.len(),
            r.missing.len(),
            r.affected_points.len()
        );
    }
    Ok(code)
}
