//! Runs of the planner, end to end with the real binary: a failover and a
//! switchover of a group replicated by a real agent to a real receiver, with a
//! real process as the service and real checks; rollback on a failing check; an
//! approval gate answered from another shell; kill -9 of the planner then
//! `lifeline resume`; and the audit log over all of it.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::replication::{ReceiverProc, Site, certs, strs};

const PROMPT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn step_status(runs: &Value, run: &str, step: &str) -> String {
    let r = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run)
        .expect("run listed");
    r["steps"][step]["status"].as_str().unwrap().to_string()
}

fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn kill(pid: i64) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// A primary volume replicated by a running agent (with its control API) to a
/// receiver, and a lifeline.toml for the planner.
struct Deployment {
    site: Site,
    _receiver: ReceiverProc,
    agent: Background,
    volume: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Deployment {
    fn new() -> Deployment {
        let site = Site::new(&["db1@acme", "planner@acme"]);
        certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
        let receiver = site.receiver(&["db1=shop"]);
        let key = site.key("acme");
        let volume = site.path("db.img");
        write_random_file(&volume, 6 * MIB, 7);
        let c = site.client(&receiver, "db1", &key);
        let args = c.agent_args(
            "shop",
            &[("db", &volume)],
            &["--interval", "1h", "--control", "127.0.0.1:0"],
        );
        let mut agent = Background::spawn(&strs(&args));
        let line = agent
            .wait_for_line(PROMPT, |l| l.starts_with("control listening on "))
            .unwrap_or_else(|| panic!("no control address: {}", agent.describe()));
        let control = line.trim_start_matches("control listening on ").trim().to_string();
        agent
            .wait_for_line(PROMPT, |l| l.starts_with("cycle: point 1 "))
            .unwrap_or_else(|| panic!("no first cycle: {}", agent.describe()));
        let state = site.path("planner-state");
        let config = site.path("lifeline.toml");
        fs::write(
            &config,
            format!(
                r#"state_dir = "{state}"
key_file = "{key}"
[tls]
dir = "{tls}"
identity = "planner"
admin = "ops"
[sites.primary]
[sites.secondary]
receiver = "{url}"
[groups.shop]
volumes = {{ db = "{vol}" }}
targets = {{ db = "{target}" }}
rpo = "1m"
rto = "5m"
control = "{control}"
agent = "db1"
tenant = "acme"
"#,
                state = s(&state),
                key = s(&key),
                tls = s(&site.tls),
                url = receiver.url(),
                vol = s(&volume),
                target = s(&site.path("recovered/db.img")),
            ),
        )
        .unwrap();
        Deployment {
            site,
            _receiver: receiver,
            agent,
            volume,
            config,
            state,
        }
    }

    fn lifeline(&self, args: &[&str]) -> Run {
        let mut a = args.to_vec();
        a.extend(["--config", s(&self.config)]);
        run(&a)
    }

    fn runs(&self) -> Value {
        self.lifeline(&["runs", "--json"]).ok().json()
    }
}

/// The service: python's http.server over the recovered volume's directory.
fn service_steps(port: u16, switch_file: &Path) -> String {
    format!(
        r#"
[[step]]
id = "start"
action = "service.start"
command = "python3"
args = ["-m", "http.server", "${{ports.web}}", "--bind", "127.0.0.1"]
after = ["verify"]

[[step]]
id = "listening"
action = "check.tcp"
address = "127.0.0.1:${{ports.web}}"
timeout = "20s"
after = ["start"]

[[step]]
id = "healthy"
action = "check.http"
url = "http://127.0.0.1:${{ports.web}}/"
body_contains = "plan.txt"
timeout = "20s"
after = ["listening"]

[[step]]
id = "identical"
action = "check.command"
command = "cmp"
args = ["${{steps.promote.path.db}}", "${{volumes.db}}"]
after = ["promote"]

[[step]]
id = "dns"
action = "traffic.switch"
file = "{switch}"
replace = "primary"
with = "secondary"
after = ["healthy", "identical"]
"#,
        switch = s(switch_file)
    ) + &format!("\n# port {port}\n")
}

fn runbook(dir: &Path, port: u16, switch_file: &Path) -> PathBuf {
    let rb = dir.join("shop.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "shop"
group = "shop"
[runbook.ports]
web = {port}

[[step]]
id = "stop-writes"
action = "service.stop"
command = "true"

[[step]]
id = "final-sync"
action = "replication.final_sync"
after = ["stop-writes"]

[[step]]
id = "stop-replication"
action = "replication.stop"
after = ["final-sync"]

[[step]]
id = "promote"
action = "volume.promote"
after = ["stop-replication"]

[[step]]
id = "verify"
action = "check.volume"
volume = "db"
after = ["promote"]
"#
        ) + &service_steps(port, switch_file),
    )
    .unwrap();
    rb
}

#[test]
fn failover_promotes_starts_checks_and_switches_then_audit_verifies() {
    let mut d = Deployment::new();
    let port = free_port();
    let switch = d.site.path("upstream.conf");
    fs::write(&switch, "server primary;\n").unwrap();
    let rb = runbook(&d.site.path(""), port, &switch);

    let r = d.lifeline(&["failover", s(&rb), "--json", "--operator", "ana"]).ok();
    let ev = events(&r.stdout);
    let summary = ev.last().unwrap();
    assert_eq!(summary["status"], "succeeded", "{}", r.stdout);
    let run_id = summary["run"].as_str().unwrap().to_string();
    let runs = d.runs();
    assert_eq!(
        step_status(&runs, &run_id, "final-sync"),
        "skipped",
        "a failover does not sync"
    );
    assert_eq!(step_status(&runs, &run_id, "stop-replication"), "succeeded");
    for st in ["promote", "verify", "identical", "start", "listening", "healthy", "dns"] {
        assert_eq!(step_status(&runs, &run_id, st), "succeeded", "{st}: {}", r.stdout);
    }
    assert_eq!(fs::read_to_string(&switch).unwrap(), "server secondary;\n");
    // The agent was paused through its control API.
    let st = run(&[
        "control",
        "--control",
        &control_of(&d),
        "--agent",
        "db1",
        "--tls-dir",
        s(&d.site.tls),
        "--identity",
        "ops",
        "--json",
        "status",
    ])
    .ok()
    .json();
    assert_eq!(st["paused"], true, "{st}");
    // The service outlives the run; the run recorded its pid.
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == run_id.as_str())
        .unwrap()
        .clone();
    let pid = run["processes"][0]["pid"].as_i64().unwrap();
    assert!(pid_alive(pid), "the service should keep running after the failover");
    kill(pid);
    assert_eq!(run["operator"], "ana");
    d.lifeline(&["audit", "verify"]).ok().stdout_has(&["audit log ok"]);
    assert!(
        d.state.join("planner/planner.pub").exists(),
        "the planner's key is created on first use"
    );
    let _ = d.agent.try_status();
}

fn control_of(d: &Deployment) -> String {
    let text = fs::read_to_string(&d.config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("control = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

#[test]
fn switchover_syncs_the_last_write_and_proves_zero_loss() {
    let d = Deployment::new();
    let port = free_port();
    let switch = d.site.path("upstream.conf");
    fs::write(&switch, "server primary;\n").unwrap();
    let rb = runbook(&d.site.path(""), port, &switch);
    // Written after the last point: only the final sync carries it.
    write_random_at(
        &fs::OpenOptions::new().write(true).open(&d.volume).unwrap(),
        5 * MIB,
        4096,
        99,
    );
    let r = d.lifeline(&["switchover", s(&rb), "--json"]).ok();
    let ev = events(&r.stdout);
    let run_id = ev.last().unwrap()["run"].as_str().unwrap().to_string();
    let runs = d.runs();
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == run_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(run["status"], "succeeded", "{}", r.stdout);
    assert_eq!(run["steps"]["final-sync"]["outputs"]["seq"], "2", "{run}");
    assert_eq!(
        run["steps"]["promote"]["outputs"]["seq"], "2",
        "the final sync's point is promoted"
    );
    assert_eq!(run["steps"]["verify"]["outputs"]["zero_loss"], "true", "{run}");
    assert_eq!(
        fs::read(&d.volume).unwrap(),
        fs::read(d.site.path("recovered/db.img")).unwrap(),
        "bit-identical"
    );
    kill(run["processes"][0]["pid"].as_i64().unwrap());
}

/// A group without replication: the steps here need none.
fn local_config(dir: &Path) -> PathBuf {
    let config = dir.join("lifeline.toml");
    fs::write(
        &config,
        format!("state_dir = \"{}\"\n[groups.app]\n", s(&dir.join("state"))),
    )
    .unwrap();
    config
}

#[test]
fn a_failing_check_rolls_back_the_service_and_the_switched_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path());
    let switch = dir.path().join("upstream.conf");
    fs::write(&switch, "server old;\n").unwrap();
    let rb = dir.path().join("rb.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "rollback"
group = "app"
[[step]]
id = "svc"
action = "service.start"
command = "sleep"
args = ["600"]
[[step]]
id = "switch"
action = "traffic.switch"
file = "{f}"
content = "server new;\n"
after = ["svc"]
[[step]]
id = "must-fail"
action = "check.command"
command = "false"
retry = {{ attempts = 2, backoff = "10ms" }}
after = ["switch"]
on_failure = "rollback"
"#,
            f = s(&switch)
        ),
    )
    .unwrap();
    let r = run(&["failover", s(&rb), "--config", s(&config), "--json"]).code(EXIT_CHECK_FAILED);
    let ev = events(&r.stdout);
    let run_id = ev.last().unwrap()["run"].as_str().unwrap().to_string();
    assert_eq!(ev.last().unwrap()["status"], "rolled_back", "{}", r.stdout);
    assert!(
        ev.iter()
            .any(|e| e["event"] == "step_retried" && e["step"] == "must-fail"),
        "retried first"
    );
    // Undone in reverse order of completion: the switch, then the service.
    let undone: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "step_undone")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(undone, ["switch", "svc"], "{}", r.stdout);
    assert_eq!(fs::read_to_string(&switch).unwrap(), "server old;\n");
    let runs = run(&["runs", "--json", "--config", s(&config)]).ok().json();
    let rec = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == run_id.as_str())
        .unwrap()
        .clone();
    let pid = rec["processes"][0]["pid"].as_i64().unwrap();
    assert!(!pid_alive(pid), "the service was stopped by the rollback");
    assert_eq!(rec["steps"]["must-fail"]["attempts"], 2);
    run(&["audit", "verify", "--config", s(&config)]).ok();
}

#[test]
fn approval_gate_survives_kill_9_of_the_planner_and_resume_does_not_rerun_finished_steps() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path());
    let marker = dir.path().join("ran-once");
    let switch = dir.path().join("upstream.conf");
    fs::write(&switch, "server old;\n").unwrap();
    let rb = dir.path().join("rb.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "gate"
group = "app"
[[step]]
id = "svc"
action = "service.start"
command = "sleep"
args = ["600"]
[[step]]
id = "once"
action = "check.command"
command = "sh"
args = ["-c", "echo x >> {m}"]
[[step]]
id = "gate"
action = "approval"
message = "go?"
after = ["svc", "once"]
[[step]]
id = "switch"
action = "traffic.switch"
file = "{f}"
content = "server new;\n"
after = ["gate"]
"#,
            m = s(&marker),
            f = s(&switch)
        ),
    )
    .unwrap();
    let cfg = s(&config).to_string();
    let mut planner = Background::spawn(&["failover", s(&rb), "--config", &cfg, "--json", "--operator", "ana"]);
    let started = planner
        .wait_for_line(PROMPT, |l| l.contains("\"step_started\"") && l.contains("\"gate\""))
        .unwrap_or_else(|| panic!("the gate never started: {}", planner.describe()));
    let run_id = serde_json::from_str::<Value>(&started).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    // Another shell sees the run through the control socket.
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    assert_eq!(step_status(&runs, &run_id, "gate"), "running");
    // Approving an unknown step is refused with the reason.
    run(&["approve", &run_id, "switch", "--config", &cfg]).fails(EXIT_ERROR, &["not an approval"]);
    planner.signal("KILL");
    planner.wait_exit(PROMPT).expect("killed");
    // Nothing runs the run now.
    run(&["approve", &run_id, "gate", "--config", &cfg])
        .fails(EXIT_ERROR, &["no planner is running", "lifeline resume"]);
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    let svc_pid = runs[0]["processes"][0]["pid"].as_i64().unwrap();
    let mut resumed = Background::spawn(&["resume", &run_id, "--config", &cfg, "--json"]);
    resumed
        .wait_for_line(PROMPT, |l| l.contains("\"step_started\"") && l.contains("\"gate\""))
        .unwrap_or_else(|| panic!("the gate did not start again: {}", resumed.describe()));
    run(&["approve", &run_id, "gate", "--config", &cfg, "--operator", "bob"])
        .ok()
        .stdout_has(&["approved by bob"]);
    let r = resumed.finish(PROMPT).ok();
    let ev = events(&r.stdout);
    assert_eq!(ev.last().unwrap()["status"], "succeeded", "{}", r.stdout);
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "step_started" && (e["step"] == "svc" || e["step"] == "once")),
        "finished steps ran again: {}",
        r.stdout
    );
    assert_eq!(fs::read_to_string(&marker).unwrap(), "x\n", "`once` ran once");
    assert_eq!(fs::read_to_string(&switch).unwrap(), "server new;\n");
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    assert_eq!(
        runs[0]["approvals"]["gate"].as_str().unwrap().split(' ').next(),
        Some("bob")
    );
    assert_eq!(runs[0]["resumes"], 1);
    assert_eq!(
        runs[0]["processes"][0]["pid"].as_i64().unwrap(),
        svc_pid,
        "the service was not started twice"
    );
    kill(svc_pid);
    // The audit chain covers both planner processes and verifies.
    run(&["audit", "verify", "--config", &cfg]).ok();
    let audit = fs::read_to_string(dir.path().join("state/planner/audit.jsonl")).unwrap();
    assert!(audit.contains("\"run_resumed\"") && audit.contains("\"approved\""));
    // Editing an entry is caught.
    let edited = audit.replacen("bob", "eve", 1);
    assert_ne!(edited, audit);
    fs::write(dir.path().join("state/planner/audit.jsonl"), edited).unwrap();
    run(&["audit", "verify", "--config", &cfg])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["DAMAGED"]);
}

#[test]
fn timeouts_fail_a_step_continue_skips_its_dependents_and_abort_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path());
    let rb = dir.path().join("rb.toml");
    fs::write(
        &rb,
        r#"[runbook]
name = "abort"
group = "app"
[[step]]
id = "slow"
action = "check.command"
command = "sleep"
args = ["30"]
timeout = "300ms"
on_failure = "continue"
[[step]]
id = "after-slow"
action = "wait"
duration = "1ms"
after = ["slow"]
[[step]]
id = "svc"
action = "service.start"
command = "sleep"
args = ["600"]
[[step]]
id = "gate"
action = "approval"
after = ["svc", "slow"]
[[step]]
id = "never"
action = "wait"
duration = "1ms"
after = ["gate"]
"#,
    )
    .unwrap();
    let cfg = s(&config).to_string();
    let mut planner = Background::spawn(&["failover", s(&rb), "--config", &cfg, "--json"]);
    // `slow` fails at its timeout but continues, so `gate` (which needs `slow`) is skipped too...
    let line = planner
        .wait_for_line(PROMPT, |l| l.contains("\"step_failed\"") && l.contains("\"slow\""))
        .unwrap_or_else(|| panic!("no timeout: {}", planner.describe()));
    assert!(line.contains("timed out after 300ms"), "{line}");
    let run_id = serde_json::from_str::<Value>(&line).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    let r = planner.finish(PROMPT);
    let ev = events(&r.stdout);
    let skipped: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "step_skipped")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["after-slow", "gate", "never"], "{}", r.stdout);
    assert_eq!(ev.last().unwrap()["status"], "failed");
    assert_eq!(r.code, Some(EXIT_CHECK_FAILED));
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    assert_eq!(
        step_status(&runs, &run_id, "svc"),
        "succeeded",
        "independent steps go on"
    );
    kill(runs[0]["processes"][0]["pid"].as_i64().unwrap());

    // Abort from another shell: the waiting run stops and its service is stopped.
    let rb2 = dir.path().join("rb2.toml");
    fs::write(
        &rb2,
        r#"[runbook]
name = "abort"
group = "app"
[[step]]
id = "svc"
action = "service.start"
command = "sleep"
args = ["600"]
[[step]]
id = "gate"
action = "approval"
after = ["svc"]
"#,
    )
    .unwrap();
    let mut planner = Background::spawn(&["failover", s(&rb2), "--config", &cfg, "--json"]);
    let line = planner
        .wait_for_line(PROMPT, |l| l.contains("\"step_started\"") && l.contains("\"gate\""))
        .unwrap_or_else(|| panic!("the gate never started: {}", planner.describe()));
    let run_id = serde_json::from_str::<Value>(&line).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    run(&["abort", &run_id, "--config", &cfg, "--operator", "cy"])
        .ok()
        .stdout_has(&["abort requested by cy"]);
    let r = planner.finish(PROMPT).code(EXIT_CHECK_FAILED);
    assert_eq!(events(&r.stdout).last().unwrap()["status"], "aborted", "{}", r.stdout);
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    let rec = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == run_id.as_str())
        .unwrap();
    let pid = rec["processes"][0]["pid"].as_i64().unwrap();
    assert!(!pid_alive(pid), "abort stops the processes the run started");
    run(&["abort", &run_id, "--config", &cfg]).fails(EXIT_ERROR, &["has finished"]);
    run(&["audit", "verify", "--config", &cfg]).ok();
}
