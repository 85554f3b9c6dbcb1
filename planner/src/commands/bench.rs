//! `lifeline bench`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::BenchArgs;

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    if a.planner {
        return planner(a.json);
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
    let config = crate::config::Config::parse(&config_text, &config_path)?;
    let text = big_runbook(200, "0ms");
    let rb_path = dir.path().join("bench.toml");
    std::fs::write(&rb_path, &text)?;
    // Validate + plan, best of 20.
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let rb = super::run::load_checked(&rb_path, Some(&text), &config)?;
        let p = crate::plan::plan(
            &rb,
            &config,
            &crate::plan::PlanOptions {
                mode: crate::runbook::actions::Mode::Failover,
                point: None,
                run_id: "bench".into(),
                run_dir: dir.path().into(),
                ports: Default::default(),
                bin: crate::plan::this_binary(),
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
