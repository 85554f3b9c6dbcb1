//! `lifeline bench`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::BenchArgs;

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    if a.planner {
        return planner(a.json);
    }
    if a.gc {
        return gc(a);
    }
    if a.repair {
        return repair(a);
    }
    if let Some(url) = &a.s3 {
        let Some(file) = &a.file else {
            anyhow::bail!("--s3 measures on a volume: give --file IMAGE");
        };
        let location = lifeline_replicator::S3Location::parse(url)
            .ok_or_else(|| anyhow::anyhow!("--s3 wants s3://BUCKET/PREFIX, not `{url}`"))??;
        let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
        let settings = lifeline_planner::config::Config::load(None)?.s3.unwrap_or_default();
        eprintln!("{} through a local repository, then {url} ...", file.display());
        let r = lifeline_replicator::bench::s3_compare(file, dir.path(), &location, &settings)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{} volume: backup local {:.0} MiB/s, S3 {:.0} MiB/s ({:.0} %, goal >= 60 %); restore local {:.0} MiB/s, \
                 S3 {:.0} MiB/s ({:.0} %, goal >= 50 %); unchanged re-backup {:.1} requests/GiB (goal <= 10); \
                 {:.1} PUTs per GiB of new data (goal <= 70); {} attempts retried",
                super::human_bytes(r.volume_bytes),
                r.local_backup_mib_s,
                r.s3_backup_mib_s,
                r.backup_ratio_pct,
                r.local_restore_mib_s,
                r.s3_restore_mib_s,
                r.restore_ratio_pct,
                r.unchanged_requests_per_gib,
                r.puts_per_gib_new,
                r.retried
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = a.cycles {
        let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
        eprintln!("{n} cycles of {} bytes in {} ...", a.cycle_bytes, dir.path().display());
        let r = lifeline_replicator::bench::small_cycles(dir.path(), n, a.cycle_bytes)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{} cycles of {}: {} pack files holding {} ({:.1} s; goal: about stored bytes / 16 MiB plus a small constant, <= 20 for 1000 cycles of 100 KiB)",
                r.cycles,
                super::human_bytes(r.bytes_per_cycle),
                r.pack_files,
                super::human_bytes(r.pack_bytes),
                r.secs
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = a.damage {
        let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
        eprintln!("{n} single-byte flips in {} ...", dir.path().display());
        let r = lifeline_replicator::bench::damage(dir.path(), n)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{} flips ({}) in {:.1} s: {} refused at open, {} repairs; points lost {}, silently wrong restores {}, damage verify called clean {} (goals: 0, 0, 0); {} restores failed with an error naming the damage; {} flips changed nothing visible",
                r.flips,
                r.by_file
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.secs,
                r.refused_at_open,
                r.repairs,
                r.points_lost,
                r.wrong_restores,
                r.damage_called_clean,
                r.failed_restores,
                r.harmless
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
    eprintln!("measuring in {} ...", dir.path().display());
    let stages = lifeline_replicator::bench::run(a.file.as_deref(), dir.path())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stages)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<44} {:>7} {:>10} {:>10}", "STAGE", "THREADS", "MB", "MB/s");
    for s in stages {
        println!(
            "{:<44} {:>7} {:>10.0} {:>10.0}",
            s.stage,
            s.threads,
            s.bytes as f64 / 1e6,
            s.mb_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A runbook of `n` `wait` steps: a binary tree of dependencies (parallel levels).
fn big_runbook(n: usize, duration: &str) -> String {
    let mut text = String::from("[runbook]\nname = \"bench\"\ngroup = \"bench\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[step]]\nid = \"s{i}\"\naction = \"wait\"\nduration = \"{duration}\"\n"
        ));
        if i > 0 {
            text.push_str(&format!("after = [\"s{}\"]\n", (i - 1) / 2));
        }
    }
    text
}

fn planner(json: bool) -> Result<ExitCode> {
    use std::time::Instant;
    let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
    let config_path = dir.path().join("lifeline.toml");
    let config_text = format!(
        "state_dir = \"{}\"\n[groups.bench]\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config_path, &config_text)?;
    let config = lifeline_planner::config::Config::parse(&config_text, &config_path)?;
    let text = big_runbook(200, "0ms");
    let rb_path = dir.path().join("bench.toml");
    std::fs::write(&rb_path, &text)?;
    // Validate + plan, best of 20.
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let rb = lifeline_planner::runbook::load_checked(&rb_path, Some(&text), &config)?;
        let p = lifeline_planner::plan::plan(
            &rb,
            &config,
            &lifeline_planner::plan::PlanOptions {
                mode: lifeline_planner::runbook::actions::Mode::Failover,
                point: None,
                run_id: "bench".into(),
                run_dir: dir.path().into(),
                ports: Default::default(),
                bin: lifeline_planner::plan::this_binary(),
                netns: None,
            },
        )
        .map_err(anyhow::Error::msg)?;
        assert_eq!(p.steps.len(), 200);
        best = best.min(t.elapsed().as_secs_f64());
    }
    // The engine over 200 steps that do nothing: what remains is its overhead
    // (two durable catalog saves and two audit appends per step, with fsyncs).
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "failover",
            rb_path.to_str().unwrap_or_default(),
            "--config",
            config_path.to_str().unwrap_or_default(),
            "--json",
        ])
        .output()?;
    let engine = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "the engine run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let per_step_ms = engine * 1000.0 / 200.0;
    if json {
        println!(
            "{}",
            serde_json::json!({"validate_and_plan_200_steps_ms": best * 1000.0, "engine_overhead_per_step_ms": per_step_ms})
        );
    } else {
        println!(
            "validate + plan a 200-step runbook   {:>8.2} ms   (goal < 100 ms)",
            best * 1000.0
        );
        println!(
            "engine overhead per step (200 steps) {:>8.2} ms   (goal < 5 ms; process start included)",
            per_step_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `lifeline ARGS` and samples its peak resident memory (VmHWM) until it
/// exits: (seconds, peak MiB, stdout).
fn measured(args: &[&str]) -> Result<(f64, f64, String)> {
    // Output to a file, not a pipe: a child writing more than a pipe holds
    // would block until we read, and we only read once it has exited.
    let out_file = tempfile::NamedTempFile::new()?;
    let t = std::time::Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(out_file.reopen()?)
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        }) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(out_file.path())?;
    anyhow::ensure!(status.success(), "`lifeline {}` failed", args.join(" "));
    Ok((t.elapsed().as_secs_f64(), peak_kib as f64 / 1024.0, out))
}

/// `lifeline repair` of a synthetic repository whose catalog was deleted,
/// then `lifeline points` (an open that checks the catalog against the
/// objects), each in its own process.
fn repair(a: &BenchArgs) -> Result<ExitCode> {
    let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
    let objects = a.points * (a.per_point + 1);
    eprintln!(
        "building a repository of {objects} objects in {} ...",
        dir.path().display()
    );
    let t = std::time::Instant::now();
    let repo = lifeline_replicator::bench::build_repair_bench_repo(dir.path(), a.points, a.per_point, a.per_pack)?;
    let setup = t.elapsed().as_secs_f64();
    let repo_s = repo.to_str().unwrap_or_default();
    let (repair_secs, repair_mib, out) = measured(&["repair", "--repo", repo_s, "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let (open_secs, open_mib, _) = measured(&["points", "--repo", repo_s, "--json"])?;
    let per_million = repair_secs * 1e6 / objects.max(1) as f64;
    let lookups = lifeline_replicator::bench::catalog_lookups(dir.path(), a.points, a.per_point, 1_000_000)?;
    let db_bytes = dir_bytes(&repo.join("catalog"));
    let result = serde_json::json!({
        "objects": objects,
        "points": a.points,
        "packs": report["packs"],
        "setup_secs": setup,
        "repair_secs": repair_secs,
        "repair_secs_per_million_objects": per_million,
        "repair_peak_rss_mib": repair_mib,
        "open_and_list_secs": open_secs,
        "open_peak_rss_mib": open_mib,
        "lookups_per_sec": lookups,
        "catalog_bytes": db_bytes,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{objects} objects in {} packs, {} points (built in {setup:.1} s): repair {repair_secs:.2} s = {per_million:.2} s per million objects (goal <= 10), peak RSS {repair_mib:.0} MiB; open + list points {open_secs:.2} s, peak RSS {open_mib:.0} MiB; {lookups:.0} presence lookups/s; catalog {}",
            report["packs"],
            a.points,
            super::human_bytes(db_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Prune + GC of a synthetic repository, each in its own process (so the
/// memory measured is theirs alone).
fn gc(a: &BenchArgs) -> Result<ExitCode> {
    let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
    eprintln!(
        "building a repository of {} points × {} chunks in {} ...",
        a.points,
        a.per_point,
        dir.path().display()
    );
    let t = std::time::Instant::now();
    let repo = lifeline_replicator::bench::build_gc_bench_repo(dir.path(), a.points, a.per_point)?;
    let setup = t.elapsed().as_secs_f64();
    let repo_s = repo.to_str().unwrap_or_default();
    let keep = a.keep.to_string();
    let (prune_secs, prune_mib, _) = measured(&[
        "prune",
        "--repo",
        repo_s,
        "--group",
        "bench",
        "--keep-last",
        &keep,
        "--json",
    ])?;
    let (dry_secs, dry_mib, _) = measured(&["gc", "--repo", repo_s, "--grace", "0s", "--dry-run", "--json"])?;
    eprintln!("gc --dry-run (mark and scan only): {dry_secs:.1} s, peak RSS {dry_mib:.0} MiB");
    let (gc_secs, gc_mib, gc_out) = measured(&["gc", "--repo", repo_s, "--grace", "0s", "--json"])?;
    let report: serde_json::Value = serde_json::from_str(&gc_out)?;
    let r = &report[0];
    let result = serde_json::json!({
        "points": a.points,
        "objects": a.points * (a.per_point + 1),
        "keep": a.keep,
        "setup_secs": setup,
        "prune_secs": prune_secs,
        "prune_peak_rss_mib": prune_mib,
        "gc_dry_run_secs": dry_secs,
        "gc_dry_run_peak_rss_mib": dry_mib,
        "gc_secs": gc_secs,
        "gc_peak_rss_mib": gc_mib,
        "objects_removed": r["objects_removed"],
        "bytes_reclaimed": r["bytes_reclaimed"],
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} points, {} objects (built in {setup:.1} s); prune to {}: {prune_secs:.1} s, peak RSS {prune_mib:.0} MiB; \
             gc: {gc_secs:.1} s, peak RSS {gc_mib:.0} MiB (goal: prune + gc < 60 s, < 500 MB)",
            a.points,
            a.points * (a.per_point + 1),
            a.keep
        );
        println!(
            "  gc removed {} objects, reclaimed {}",
            r["objects_removed"],
            super::human_bytes(r["bytes_reclaimed"].as_u64().unwrap_or(0))
        );
    }
    Ok(ExitCode::SUCCESS)
}
