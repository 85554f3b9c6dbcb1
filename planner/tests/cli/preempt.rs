//! A recovery always wins over a drill: a failover started while a drill holds
//! the planner catalog stops the drill (its report says it was preempted) and
//! runs; two failovers never preempt each other.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const PROMPT: Duration = Duration::from_secs(60);

#[test]
fn a_failover_preempts_a_running_drill_and_a_second_failover_is_refused() {
    let (dir, config) = local_run_dir();
    let cfg = s(&config).to_string();
    let drill_rb = Runbook::new("long-drill", "app")
        .sleeper("svc")
        .step("long", "wait", "duration = \"10m\"\nafter = [\"svc\"]")
        .write(&dir.path().join("drill.toml"));
    let failover_rb = Runbook::new("recover", "app")
        .check("ok", &[])
        .approval("gate", &["ok"], "")
        .write(&dir.path().join("failover.toml"));
    let reports = dir.path().join("reports");
    let mut drill = Background::spawn(&[
        "drill",
        s(&drill_rb),
        "--config",
        &cfg,
        "--report-dir",
        s(&reports),
        "--no-netns",
        "--json",
    ]);
    let drill_id = drill.started_run(PROMPT, "long");

    // The failover asks the drill to stop, waits for the catalog, and runs.
    let t0 = Instant::now();
    let mut first = Background::spawn(&["failover", s(&failover_rb), "--config", &cfg, "--json"]);
    let failover_id = first.started_run(PROMPT, "gate");
    assert!(
        first.stderr().contains(&format!("drill {drill_id}")) && first.stderr().contains("stops for"),
        "the failover says it preempted the drill: {}",
        first.describe()
    );

    // A second failover of the same group meanwhile is refused: the first one
    // does not give way.
    run(&["failover", s(&failover_rb), "--config", &cfg, "--preempt-wait", "5s"]).fails(
        EXIT_ERROR,
        &[
            &format!("running failover {failover_id} of group app, not a drill"),
            "held by another planner",
        ],
    );

    run(&["approve", &failover_id, "gate", "--config", &cfg]).ok();
    let r = first.finish(PROMPT).ok();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the failover took {took:?}: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\"status\":\"succeeded\""),
        "the failover succeeded: {}",
        r.stdout
    );

    // The drill stopped cleanly: torn down, its report says who preempted it.
    let d = drill.finish(PROMPT).code(EXIT_CHECK_FAILED);
    let report: Value =
        serde_json::from_slice(&fs::read(reports.join(&drill_id).join("report.json")).unwrap()).unwrap();
    assert_eq!(report["preempted_by"], failover_id.as_str(), "{}", d.stdout);
    assert_eq!(report["verdict"], "failed");
    assert!(
        report["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("preempted by {failover_id}")),
        "{report:#}"
    );
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    assert!(!sandbox.exists(), "the preempted drill left its sandbox");
    let summary = d
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "drill_report")
        .expect("drill summary");
    assert_eq!(summary["preempted_by"], failover_id.as_str());
    run(&["audit", "verify", "--config", &cfg]).ok();
}
