//! The CLI contract (`lifeline testbed up|status|fault|down`) and leftovers of
//! crashed runs.

use std::process::Command;
use std::time::Instant;

use lifeline_testbeds::{Flavour, NetnsLink, Testbed, TestbedSpec};

use crate::harness::*;

fn lifeline(args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env_remove("LIFELINE_CONFIG")
        .output()
        .expect("run lifeline");
    Run {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Takes the testbed in `dir` down if a failed assertion left it up.
struct DownOnDrop(std::path::PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Testbed::down_dir(&self.0);
    }
}

#[test]
fn up_status_fault_down_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bed");
    let d = dir.to_str().unwrap();
    let _guard = DownOnDrop(dir.clone());
    let t = Instant::now();
    let up = lifeline(&[
        "testbed",
        "up",
        "--dir",
        d,
        "--latency",
        "5ms",
        "--stall-every",
        "10s",
        "--json",
    ])
    .ok();
    let up_secs = t.elapsed().as_secs_f64();
    let v = up.json();
    assert_eq!(v["flavour"], "local");
    assert!(dir.join("testbed.json").is_file() && dir.join("lifeline.toml").is_file());
    let config = std::fs::read_to_string(dir.join("lifeline.toml")).unwrap();
    for needle in [
        "[sites.primary]",
        "[sites.secondary]",
        "[groups.app]",
        "freeze =",
        "control =",
    ] {
        assert!(config.contains(needle), "lifeline.toml lacks {needle}:\n{config}");
    }
    let st = lifeline(&["testbed", "status", "--dir", d, "--json"]).ok().json();
    let pids: Vec<u64> = st["processes"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| {
            assert_eq!(p["running"], true, "{p}");
            p["pid"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 5, "{st}");
    assert_eq!(st["link"]["latency_ms"], 5);
    // The configuration works for the other commands: the agent's own points.
    let cfg = dir.join("lifeline.toml");
    let url = st["sites"]["secondary"]["receiver_url"].as_str().unwrap().to_string();
    let tls = dir.join("tls");
    assert!(poll_until(std::time::Duration::from_secs(45), || {
        lifeline(&[
            "--config",
            cfg.to_str().unwrap(),
            "points",
            "--repo",
            &url,
            "--tls-dir",
            tls.to_str().unwrap(),
            "--identity",
            "app",
            "--json",
        ])
        .json()
        .as_array()
        .is_some_and(|a| !a.is_empty())
    }));
    let cut = lifeline(&["testbed", "fault", "--dir", d, "--json", "cut"]).ok().json();
    assert_eq!(cut["detail"]["proxy"]["cut"], true);
    let st = lifeline(&["testbed", "status", "--dir", d, "--json"]).ok().json();
    assert_eq!(st["link"]["state"], "cut");
    lifeline(&["testbed", "fault", "--dir", d, "heal"]).ok();
    lifeline(&["testbed", "fault", "--dir", d, "kill-agent"]).ok();
    let st = lifeline(&["testbed", "status", "--dir", d, "--json"]).ok().json();
    assert_eq!(st["processes"]["agent"]["running"], false);
    lifeline(&["testbed", "fault", "--dir", d, "restart-agent"]).ok();
    let text = lifeline(&["testbed", "status", "--dir", d]).ok().stdout;
    assert!(text.contains("agent") && !text.contains("STOPPED"), "{text}");
    // Loss needs the netns flavour: a clear refusal, exit 2.
    let r = lifeline(&["testbed", "fault", "--dir", d, "impair", "--loss", "1"]).code(2);
    assert!(r.stderr.contains("netns"), "{}", r.stderr);
    let t = Instant::now();
    lifeline(&["testbed", "down", "--dir", d]).ok();
    let down_secs = t.elapsed().as_secs_f64();
    eprintln!("cli: testbed up {up_secs:.2} s, down {down_secs:.2} s");
    assert!(!dir.exists(), "down left {}", dir.display());
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still runs after down: {stat}"
        );
    }
    // Down on nothing says so.
    lifeline(&["testbed", "down", "--dir", d]).code(2);
}

/// A testbed whose owner died (a test killed by a timeout) is removed by the next `up`.
#[test]
fn a_leftover_of_a_crashed_run_is_removed_on_the_next_start() {
    let flavour = if netns_possible("leftover case, netns part (runs local only)") {
        Flavour::Netns
    } else {
        Flavour::Local
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let mut spec = TestbedSpec::new(&tmp.path().join("crashed"), &bin());
    spec.flavour = flavour;
    spec.owner = Some(owner.id());
    let crashed = Testbed::up(&spec).unwrap();
    let _guard = DownOnDrop(crashed.state.dir.clone());
    let pids: Vec<u32> = crashed.state.processes.values().map(|p| p.pid).collect();
    owner.kill().unwrap();
    owner.wait().unwrap();
    // The next start, elsewhere, finds it and removes it.
    let next = Bed::up(Flavour::Local, |_| {});
    for pid in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "leftover pid {pid} still runs"
        );
    }
    assert!(
        !crashed.state.dir.join("testbed.json").exists(),
        "the leftover's files remain"
    );
    if let Some(l) = &crashed.state.link.netns {
        let names = NetnsLink::list_namespaces();
        assert!(!names.contains(&l.primary_ns), "leftover namespace remains: {names:?}");
    }
    drop(next);
}
