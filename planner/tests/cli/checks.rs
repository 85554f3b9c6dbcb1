//! `check.command` polls like the other checks: until it passes or its
//! timeout passes, then fails with the last attempt's output.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn check_command_polls_until_it_passes_or_its_timeout_passes() {
    let (dir, config) = local_run_dir();
    let flag = dir.path().join("ready");
    // A service that becomes ready about a second after it starts; the check
    // fails until then and must keep trying.
    let rb = Runbook::new("starting", "app")
        .step(
            "db",
            "service.start",
            &format!("command = \"sh\"\nargs = [\"-c\", \"sleep 1; touch {}\"]", s(&flag)),
        )
        .step(
            "ready",
            "check.command",
            &format!(
                "command = \"test\"\nargs = [\"-f\", \"{}\"]\ntimeout = \"10s\"\nafter = [\"db\"]",
                s(&flag)
            ),
        )
        .write(&dir.path().join("ready.toml"));
    let r = run(&["failover", s(&rb), "--config", s(&config), "--json"]).ok();
    let ev = events(&r.stdout);
    let ready = ev
        .iter()
        .find(|e| e["event"] == "step_succeeded" && e["step"] == "ready")
        .unwrap_or_else(|| panic!("the check never passed: {}", r.stdout));
    let attempts: u32 = ready["outputs"]["attempts"].as_str().unwrap().parse().unwrap();
    assert!(attempts > 1, "it passed only by polling: {ready}");
    assert!(flag.exists());

    // One that never passes fails after its timeout, not at once, and says
    // what its last attempt printed.
    let rb = Runbook::new("never", "app")
        .step(
            "psql",
            "check.command",
            "command = \"sh\"\nargs = [\"-c\", \"echo the database system is starting up; exit 2\"]\ntimeout = \"1s\"",
        )
        .write(&dir.path().join("never.toml"));
    let t0 = Instant::now();
    let r = run(&["failover", s(&rb), "--config", s(&config), "--json"]).code(EXIT_CHECK_FAILED);
    let took = t0.elapsed();
    let failed = events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "step_failed" && e["step"] == "psql")
        .unwrap_or_else(|| panic!("no step_failed: {}", r.stdout));
    let msg = failed["message"].as_str().unwrap();
    assert!(
        msg.starts_with("timed out after 1s (")
            && msg.contains("attempts); last attempt: `sh -c")
            && msg.contains("exit status: 2")
            && msg.contains("the database system is starting up"),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "it gave up before its timeout: {took:?}"
    );
}
