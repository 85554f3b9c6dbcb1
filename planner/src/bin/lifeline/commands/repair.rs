//! `lifeline repair`: rebuild a repository's catalog from its objects; and
//! `lifeline scope`, the dedup scopes those objects are kept in.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use lifeline_replicator::{RepairProgress, RepairReport, repair};

use crate::cli::RepairArgs;
use lifeline_planner::repo_target::is_url;

/// `lifeline scope`: gives a group its own dedup scope, or lists them.
pub fn scope(a: &crate::cli::ScopeArgs) -> Result<ExitCode> {
    if is_url(&a.repo) {
        anyhow::bail!(
            "a receiver's groups get their own dedup scope from the receiver: start it with `--own-scope GROUP@TENANT`"
        );
    }
    let repo = lifeline_replicator::Repository::open(&a.repo)?;
    if let Some(g) = &a.group {
        let created = repo.create_scope(&a.tenant, g)?;
        if !a.json {
            println!(
                "group {g} of tenant {}: {}",
                a.tenant,
                if created {
                    "has its own dedup scope now"
                } else {
                    "already had its own dedup scope"
                }
            );
        }
    }
    let scopes = repo.scopes(&a.tenant)?;
    if a.json {
        println!("{}", serde_json::json!({ "tenant": a.tenant, "own_scopes": scopes }));
    } else if a.group.is_none() {
        if scopes.is_empty() {
            println!("tenant {}: every group shares the tenant's dedup scope", a.tenant);
        }
        for g in &scopes {
            println!("tenant {}: group {g} has its own dedup scope", a.tenant);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: &RepairArgs) -> Result<ExitCode> {
    if is_url(&a.repo) {
        anyhow::bail!(
            "repair runs where the repository is: stop the receiver serving it, then run `lifeline repair --repo DIR` on its directory"
        );
    }
    let watching = !a.json && std::io::stderr().is_terminal();
    let progress = move |p: RepairProgress| {
        if !watching {
            return;
        }
        let (what, done, total) = match p {
            RepairProgress::Packs { done, total } => ("pack footers", done, total),
            RepairProgress::Points { done, total } => ("point objects", done, total),
        };
        eprint!("\rrepair: {what} {done}/{total}   ");
        if done == total {
            eprintln!();
        }
    };
    if !a.json {
        eprintln!(
            "repair: rebuilding the catalog of {} from its objects",
            a.repo.display()
        );
    }
    let r = repair(&a.repo, &progress)?;
    let clean = r.damaged.is_empty();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&a.repo.display().to_string(), &r);
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_report(location: &str, r: &RepairReport) {
    println!(
        "repaired {location} (repository {}) in {:.2} s: {} tenant(s), {} pack(s) holding {} objects, {} point(s)",
        r.repository_id,
        r.elapsed_secs,
        r.tenants.len(),
        r.packs,
        r.objects,
        r.points
    );
    for (group, (n, last)) in &r.groups {
        println!("  group {group}: {n} point(s), newest {last}");
    }
    if r.pins > 0 {
        println!("  {} lease(s) carried over from the old catalog", r.pins);
    }
    for w in &r.rewritten {
        println!("rewritten {w}");
    }
    for p in &r.only_in_old_catalog {
        println!("not restored: {p}");
    }
    for d in &r.damaged {
        println!("damaged  {d}");
    }
    if let Some(old) = &r.old_catalog {
        println!(
            "the old catalog is kept at {} (remove it once `lifeline verify` is clean)",
            old.display()
        );
    }
    if r.damaged.is_empty() {
        println!("ok: the catalog agrees with the objects");
    } else {
        println!(
            "FAILED: {} object(s) could not be recovered (listed above); the rest is in the catalog. Run `lifeline verify` to see which points they affect",
            r.damaged.len()
        );
    }
}
