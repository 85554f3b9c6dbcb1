//! Runbooks: the broken-runbook corpus (every error at once, with file, line,
//! column and help; the expected texts are snapshots in
//! `planner/tests/runbooks/broken/*.err`, rewritten with LIFELINE_BLESS=1), and
//! the example runbooks, which must plan in every mode.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn broken_runbooks_give_every_error_with_its_place_and_a_fix() {
    let dir = root().join("planner/tests/runbooks/broken");
    let config = root().join("runbooks/lifeline.toml");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus is missing");
    let bless = std::env::var_os("LIFELINE_BLESS").is_some();
    let mut failures = Vec::new();
    for f in &files {
        let r = run(&["plan", s(f), "--mode", "failover", "--config", s(&config)]).code(EXIT_ERROR);
        let got = r.stderr.replace(&format!("{}/", root().display()), "");
        let expected_path = f.with_extension("err");
        if bless {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", f.display()));
        }
        // Every diagnostic names file:line:col.
        for line in got
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("    help:") && !l.is_empty())
        {
            assert!(
                line.starts_with("planner/tests/runbooks/broken/")
                    && line.split(':').nth(2).is_some_and(|c| c.parse::<u32>().is_ok()),
                "not FILE:LINE:COL: {line}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_runbooks_plan_in_every_mode_and_touch_nothing() {
    let mut n = 0;
    let mut postgres = 0;
    for e in fs::read_dir(root().join("runbooks")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        // `lifeline.toml` and `lifeline-NAME.toml` are deployments: the runbooks
        // `NAME-*.toml` plan against the latter, the others against the former.
        if !name.ends_with(".toml") || name.starts_with("lifeline") {
            continue;
        }
        let config = match name.split_once('-') {
            Some((prefix, _)) if root().join(format!("runbooks/lifeline-{prefix}.toml")).exists() => {
                root().join(format!("runbooks/lifeline-{prefix}.toml"))
            }
            _ => root().join("runbooks/lifeline.toml"),
        };
        if name.starts_with("postgres-") {
            postgres += 1;
        }
        n += 1;
        for mode in ["failover", "switchover", "failback", "drill"] {
            let state = tempfile::tempdir().unwrap();
            let text = run_env(
                &["plan", s(&p), "--mode", mode, "--config", s(&config)],
                &[("LIFELINE_STATE_DIR", s(state.path()))],
            )
            .ok();
            assert!(text.stdout.contains(&format!("mode {mode}")), "{}", text.stdout);
            assert!(text.stdout.contains("level 1"), "{}", text.stdout);
            let j = run(&["plan", s(&p), "--mode", mode, "--config", s(&config), "--json"])
                .ok()
                .json();
            assert_eq!(j["mode"], mode);
            assert!(!j["steps"].as_array().unwrap().is_empty());
            assert_eq!(
                fs::read_dir(state.path()).unwrap().count(),
                0,
                "plan wrote into the state directory"
            );
        }
    }
    assert!(n >= 2, "no example runbooks");
    assert_eq!(postgres, 3, "runbooks/postgres-{{drill,failover,failback}}.toml");
}

#[test]
fn plan_shows_what_each_mode_does() {
    let config = root().join("runbooks/lifeline.toml");
    let rb = root().join("runbooks/shop-failover.toml");
    let plan = |mode: &str| {
        run(&["plan", s(&rb), "--mode", mode, "--config", s(&config), "--json"])
            .ok()
            .json()
    };
    let step = |p: &serde_json::Value, id: &str| {
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap()
    };
    let f = plan("failover");
    assert_eq!(step(&f, "final-sync")["behaviour"], "skip");
    assert_eq!(step(&f, "stop-writes")["behaviour"], "best_effort");
    assert_eq!(step(&f, "seed")["behaviour"], "skip");
    let s_ = plan("switchover");
    assert_eq!(step(&s_, "final-sync")["behaviour"], "run");
    let b = plan("failback");
    assert_eq!(step(&b, "seed")["behaviour"], "run");
    assert_eq!(b["direction"]["to_site"], "primary");
    let d = plan("drill");
    assert_eq!(step(&d, "dns")["behaviour"], "run", "a substitution makes it run");
    assert!(
        step(&d, "dns")["params"]["file"]
            .as_str()
            .unwrap()
            .starts_with("RUNDIR/")
    );
    assert_eq!(step(&d, "stop-replication")["behaviour"], "skip");
    // Step outputs stay for run time; ports and variables are resolved.
    let args = step(&f, "start-app")["params"]["args"].to_string();
    assert!(
        args.contains("${steps.promote.path.db}") && args.contains("8080"),
        "{args}"
    );
    // Parallel levels: stop-writes and seed first.
    assert_eq!(f["levels"][0], serde_json::json!(["stop-writes", "seed"]));
}
