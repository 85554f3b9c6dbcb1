//! `lifeline verify`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use lifeline_replicator::{DEFAULT_TENANT, Repository, VerifyOptions, VerifyReport, verify};
use lifeline_service::{TlsDir, remote_verify};

use super::{human_bytes, rate};
use crate::cli::VerifyArgs;
use lifeline_planner::progress::Bar;
use lifeline_planner::repo_target::is_url;

pub fn run(a: &VerifyArgs) -> Result<ExitCode> {
    if is_url(&a.repo.repo) {
        if a.repair {
            anyhow::bail!(
                "--repair runs where the repository is: stop the receiver and run it on the repository directory"
            );
        }
        let url = a.repo.repo.to_str().expect("utf-8 url");
        if a.key_file.is_some() {
            anyhow::bail!(
                "deep verify (--key-file) decrypts every object and runs where the key is: restore or verify a local copy; against a receiver, run the no-key verify (drop --key-file)"
            );
        }
        let (tls_dir, identity) = a.remote.require(url)?;
        let reports = remote_verify(url, &TlsDir::new(tls_dir), identity, a.tenant.as_deref())?;
        let mut clean = true;
        let mut all = Vec::new();
        for (tenant, json) in reports {
            let r: VerifyReport =
                serde_json::from_str(&json).with_context(|| format!("undecodable verify report from {url}"))?;
            clean &= r.is_clean();
            if a.json {
                all.push(serde_json::json!({"tenant": tenant, "report": r}));
            } else {
                print_report(&format!("{url} (tenant `{tenant}`)"), &r);
            }
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    // Unchecked: every disagreement between catalog and objects is reported
    // below as damage (exit 1), not refused at open.
    let repo = match Repository::open_unchecked(&a.repo.repo) {
        Ok(r) => r,
        // A catalog that fails to open, was lost or belongs elsewhere is
        // damage like any other: exit 1.
        Err(e @ lifeline_replicator::Error::CatalogDisagrees { .. }) => {
            if a.json {
                println!("{}", serde_json::json!({"clean": false, "error": e.to_string()}));
            } else {
                println!("record   {e}");
                println!("FAILED: the catalog cannot be used");
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let tenant = a.tenant.clone().unwrap_or_else(|| DEFAULT_TENANT.into());
    let keys = match &a.key_file {
        Some(k) => Some(repo.check_key(&tenant, &super::load_key(k)?)?),
        None => None,
    };
    let bar = Bar::bytes("verify", a.json);
    let result = verify(
        &repo,
        &VerifyOptions {
            tenant,
            keys,
            progress: bar.callback(),
            repair: a.repair,
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
    print_report(&repo.name().display().to_string(), &r);
    Ok(code)
}

fn print_report(location: &str, r: &VerifyReport) {
    println!(
        "{} verify of {}: {} objects ({}), {} points{} in {:.2} s ({})",
        if r.deep { "deep" } else { "no-key" },
        location,
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
    for rec in &r.records {
        println!("record   {rec}");
    }
    for p in &r.affected_points {
        println!("affected point {} of group `{}`: {}", p.seq, p.group, p.reason);
    }
    if r.dropped_from_index > 0 {
        println!(
            "repair: dropped {} damaged or missing objects and the nodes above them from the index; the next backup of the same data stores them again and heals the points that share them",
            r.dropped_from_index
        );
    }
    if r.is_clean() {
        println!("ok: no damage found");
    } else {
        println!(
            "FAILED: {} damaged, {} missing, {} point(s) affected, {} record problem(s); restore affected volumes from an earlier point or another site{}",
            r.damaged.len(),
            r.missing.len(),
            r.affected_points.len(),
            r.records.len(),
            if r.records.is_empty() {
                ""
            } else {
                "; run `lifeline repair --repo REPO` to rebuild the catalog from the objects"
            }
        );
    }
}
