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

const PROMPT: Duration = Duration::from_secs(60);

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
    /// The forward agent's command line, for starting it again.
    agent_args: Vec<String>,
    volume: PathBuf,
    config: PathBuf,
    key: PathBuf,
    /// Set by [`with_failback`](Self::with_failback).
    failback: Option<FailbackSite>,
}

/// What a failback needs on top: the primary site's repository and the port its
/// receiver will listen on (started by the failback runbook), and the reverse
/// agent `dr1@acme` on the recovery site with its control port.
struct FailbackSite {
    repo: PathBuf,
    receiver_port: u16,
    control_port: u16,
}

impl Deployment {
    fn new() -> Deployment {
        Self::build(false, "1h")
    }

    fn with_interval(interval: &str) -> Deployment {
        Self::build(false, interval)
    }

    /// A deployment whose lifeline.toml also names the primary site's repository
    /// and receiver, and the group's reverse agent and control address.
    fn with_failback() -> Deployment {
        Self::build(true, "1h")
    }

    fn build(failback: bool, interval: &str) -> Deployment {
        let site = Site::new(&["db1@acme", "planner@acme"]);
        certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
        let failback = failback.then(|| {
            certs(&site.ca, &site.tls, false, &["dr1@acme"], &[]).ok();
            FailbackSite {
                repo: site.path("primary-repo"),
                receiver_port: free_port(),
                control_port: free_port(),
            }
        });
        let receiver = site.receiver(&["db1=shop"]);
        let key = site.key("acme");
        let volume = site.path("db.img");
        write_random_file(&volume, 6 * MIB, 7);
        let c = site.client(&receiver, "db1", &key);
        let args = c.agent_args(
            "shop",
            &[("db", &volume)],
            &["--interval", interval, "--control", "127.0.0.1:0"],
        );
        let (agent, control) = agent_with_control(PROMPT, &args);
        let state = site.path("planner-state");
        let primary = failback
            .as_ref()
            .map(|f| {
                format!(
                    "repo = \"{}\"\nreceiver = \"https://127.0.0.1:{}\"",
                    s(&f.repo),
                    f.receiver_port
                )
            })
            .unwrap_or_default();
        let config = site.planner_config(
            &state,
            &key,
            &receiver.url(),
            &primary,
            &format!(
                r#"[groups.shop]
volumes = {{ db = "{vol}" }}
targets = {{ db = "{target}" }}
rpo = "1m"
rto = "5m"
control = "{control}"
agent = "db1"
tenant = "acme"
{reverse}
"#,
                vol = s(&volume),
                target = s(&site.path("recovered/db.img")),
                reverse = failback
                    .as_ref()
                    .map(|f| format!(
                        "reverse_agent = \"dr1\"\nreverse_control = \"127.0.0.1:{}\"",
                        f.control_port
                    ))
                    .unwrap_or_default(),
            ),
        );
        Deployment {
            site,
            _receiver: receiver,
            agent,
            agent_args: args,
            volume,
            config,
            key,
            failback,
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
    // The summary says which point was promoted and the RPO it achieved.
    let promoted = &summary["promoted"][0];
    assert_eq!(promoted["step"], "promote", "{summary}");
    assert_eq!(promoted["seq"], 1, "{summary}");
    assert!(promoted["rpo_secs"].as_f64().is_some_and(|x| x >= 0.0), "{summary}");
    assert_eq!(promoted["rpo_objective_secs"], 60.0, "{summary}");
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
    let run = run_by_id(&runs, &run_id);
    let pid = run["processes"][0]["pid"].as_i64().unwrap();
    assert!(pid_alive(pid), "the service should keep running after the failover");
    kill(pid);
    assert_eq!(run["operator"], "ana");
    d.lifeline(&["audit", "verify"]).ok().stdout_has(&["audit log ok"]);
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
    let run = run_by_id(&runs, &run_id);
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

/// The fields of a `traffic.switch` step that writes `server new;` to `file`
/// after step `after`.
fn switch_to_new(file: &Path, after: &str) -> String {
    format!(
        r#"file = "{}"
content = "server new;\n"
after = ["{after}"]"#,
        s(file)
    )
}

#[test]
fn a_failing_check_rolls_back_the_service_and_the_switched_file() {
    let (dir, config) = local_run_dir();
    let switch = dir.path().join("upstream.conf");
    fs::write(&switch, "server old;\n").unwrap();
    let rb = Runbook::new("rollback", "app")
        .sleeper("svc")
        .step("switch", "traffic.switch", &switch_to_new(&switch, "svc"))
        .step(
            "must-fail",
            "check.command",
            r#"command = "false"
# check.command polls until its timeout: keep each attempt short.
timeout = "300ms"
retry = { attempts = 2, backoff = "10ms" }
after = ["switch"]
on_failure = "rollback""#,
        )
        .write(&dir.path().join("rb.toml"));
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
    let rec = run_by_id(&runs, &run_id);
    let pid = rec["processes"][0]["pid"].as_i64().unwrap();
    assert!(!pid_alive(pid), "the service was stopped by the rollback");
    assert_eq!(rec["steps"]["must-fail"]["attempts"], 2);
    run(&["audit", "verify", "--config", s(&config)]).ok();
}

#[test]
fn approval_gate_survives_kill_9_of_the_planner_and_resume_does_not_rerun_finished_steps() {
    let (dir, config) = local_run_dir();
    let marker = dir.path().join("ran-once");
    let switch = dir.path().join("upstream.conf");
    fs::write(&switch, "server old;\n").unwrap();
    let rb = Runbook::new("gate", "app")
        .sleeper("svc")
        .step(
            "once",
            "check.command",
            &format!(
                r#"command = "sh"
args = ["-c", "echo x >> {}"]"#,
                s(&marker)
            ),
        )
        .approval("gate", &["svc", "once"], "message = \"go?\"")
        .step("switch", "traffic.switch", &switch_to_new(&switch, "gate"))
        .write(&dir.path().join("rb.toml"));
    let cfg = s(&config).to_string();
    let mut planner = Background::spawn(&["failover", s(&rb), "--config", &cfg, "--json", "--operator", "ana"]);
    let run_id = planner.started_run(PROMPT, "gate");
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
    assert_eq!(
        resumed.started_run(PROMPT, "gate"),
        run_id,
        "the resumed run is the same run"
    );
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

/// `(seq, bytes sent)` of every `cycle: point N of group … committed, X sent (Y new), …`
/// line an agent logged.
fn agent_cycles(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cycle: point ")?;
            let (seq, rest) = rest.split_once(' ')?;
            let sent = rest.split_once("committed, ")?.1.split_once(" sent")?.0;
            let sent =
                lifeline_replicator::units::parse_human_bytes(sent).unwrap_or_else(|| panic!("not a size: {sent:?}"));
            Some((seq.parse().ok()?, sent))
        })
        .collect()
}

/// Overwrites `n` 4 KiB blocks of `path` at scattered block offsets with random
/// data; returns the offsets.
fn scatter_blocks(path: &Path, n: u64, seed: u64) -> Vec<u64> {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    let blocks = f.metadata().unwrap().len() / (4 * KIB);
    let mut rng = Rng::new(seed);
    let mut offsets: Vec<u64> = Vec::new();
    while (offsets.len() as u64) < n {
        let o = rng.next_u64() % blocks * 4 * KIB;
        if !offsets.contains(&o) {
            write_random_at(&f, o, 4 * KIB, rng.next_u64());
            offsets.push(o);
        }
    }
    f.sync_all().unwrap();
    offsets
}

/// A failover that promotes the group's last point onto its targets.
fn failover_runbook(dir: &Path) -> PathBuf {
    let rb = dir.join("shop-failover.toml");
    fs::write(
        &rb,
        r#"[runbook]
name = "shop-failover"
group = "shop"

[[step]]
id = "stop-replication"
action = "replication.stop"

[[step]]
id = "promote"
action = "volume.promote"
after = ["stop-replication"]

[[step]]
id = "verify"
action = "check.volume"
volume = "db"
after = ["promote"]
"#,
    )
    .unwrap();
    rb
}

/// The failback ("reprotect, then switchover home"): seed the primary's
/// repository from the volume that survived there, start the primary site's
/// receiver over it and the reverse agent on the recovery site, sync, stop,
/// promote onto the primary volume, prove zero loss, stop what the run started
/// and resume the forward agent.
fn failback_runbook(d: &Deployment) -> PathBuf {
    let f = d.failback.as_ref().expect("a deployment with_failback");
    let rb = d.site.path("shop-failback.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "shop-failback"
group = "shop"

[runbook.variables]
lifeline = "{bin}"
tls = "{tls}"
key = "{key}"
primary_repo = "{repo}"

[runbook.ports]
primary = {receiver_port}
reverse_control = {control_port}

[[step]]
id = "seed"
action = "replication.seed"

[[step]]
id = "primary-receiver"
action = "service.start"
command = "${{vars.lifeline}}"
args = ["receiver", "--repo", "${{vars.primary_repo}}", "--listen", "127.0.0.1:${{ports.primary}}",
        "--tls-dir", "${{vars.tls}}", "--allow", "dr1=${{group.name}}"]
after = ["seed"]

[[step]]
id = "primary-receiver-up"
action = "check.tcp"
address = "127.0.0.1:${{ports.primary}}"
timeout = "30s"
after = ["primary-receiver"]

[[step]]
id = "reverse-agent"
action = "service.start"
command = "${{vars.lifeline}}"
args = ["agent", "--repo", "https://127.0.0.1:${{ports.primary}}", "--tls-dir", "${{vars.tls}}",
        "--identity", "dr1", "--key-file", "${{vars.key}}", "--group", "${{group.name}}",
        "--state-dir", "${{run.dir}}/reverse-agent", "--volume", "db=${{volumes.db}}",
        "--interval", "1h", "--control", "127.0.0.1:${{ports.reverse_control}}"]
after = ["primary-receiver-up"]

[[step]]
id = "reverse-agent-up"
action = "check.tcp"
address = "127.0.0.1:${{ports.reverse_control}}"
timeout = "30s"
after = ["reverse-agent"]

[[step]]
id = "final-sync"
action = "replication.final_sync"
after = ["reverse-agent-up"]

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

[[step]]
id = "stop-reverse-agent"
action = "service.stop"
step = "reverse-agent"
after = ["verify"]

[[step]]
id = "stop-primary-receiver"
action = "service.stop"
step = "primary-receiver"
after = ["stop-reverse-agent"]

[[step]]
id = "reprotect"
action = "replication.reverse"
after = ["verify"]
"#,
            bin = BIN,
            tls = s(&d.site.tls),
            key = s(&d.key),
            repo = s(&f.repo),
            receiver_port = f.receiver_port,
            control_port = f.control_port,
        ),
    )
    .unwrap();
    rb
}

#[test]
fn failback_after_failover_sends_only_what_the_primary_lacks_and_proves_zero_loss() {
    let d = Deployment::with_failback();
    let target = d.site.path("recovered/db.img");
    let r = d
        .lifeline(&["failover", s(&failover_runbook(&d.site.path(""))), "--json"])
        .ok();
    assert_eq!(events(&r.stdout).last().unwrap()["status"], "succeeded", "{}", r.stdout);
    assert_same_content(&d.volume, &target);

    // Production runs on the recovery site: scattered 4 KiB writes.
    let written = scatter_blocks(&target, 8, 41);
    // The primary's last writes before the disaster never reached the secondary:
    // the failback must overwrite them with the recovery site's state.
    scatter_blocks(&d.volume, 2, 43);
    let volume_len = fs::metadata(&target).unwrap().len();

    let rb = failback_runbook(&d);
    // The plan says which way data flows and where the seed goes, touching nothing.
    let repo = &d.failback.as_ref().unwrap().repo;
    d.lifeline(&["plan", s(&rb), "--mode", "failback"]).ok().stdout_has(&[
        "secondary → primary",
        &format!("back up db={} on primary into {}", s(&d.volume), s(repo)),
        &format!("onto db={}", s(&d.volume)),
    ]);
    assert!(!repo.exists(), "plan touched the primary's repository");

    let r = d.lifeline(&["failback", s(&rb), "--json", "--operator", "ana"]);
    let ev = events(&r.stdout);
    let run_id = ev
        .last()
        .and_then(|e| e["run"].as_str())
        .unwrap_or_else(|| panic!("no events: {}", r.stderr))
        .to_string();
    let runs = d.runs();
    let rec = run_by_id(&runs, &run_id);
    assert_eq!(rec["status"], "succeeded", "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(EXIT_OK));
    for st in [
        "seed",
        "primary-receiver",
        "primary-receiver-up",
        "reverse-agent",
        "reverse-agent-up",
        "final-sync",
        "stop-replication",
        "promote",
        "verify",
        "stop-reverse-agent",
        "stop-primary-receiver",
        "reprotect",
    ] {
        assert_eq!(step_status(&runs, &run_id, st), "succeeded", "{st}: {rec}");
    }
    let steps = &rec["steps"];
    assert_eq!(steps["seed"]["outputs"]["seq"], "1", "{rec}");
    assert_eq!(
        steps["promote"]["outputs"]["seq"], steps["final-sync"]["outputs"]["seq"],
        "the final sync's point is promoted"
    );
    assert_eq!(
        steps["promote"]["outputs"]["path.db"],
        s(&d.volume),
        "promoted onto the primary volume"
    );
    assert_eq!(steps["verify"]["outputs"]["zero_loss"], "true", "{rec}");
    assert_same_content(&target, &d.volume);

    // Only what the primary lacked travelled: the seed has block maps, so the
    // reverse agent sends the rewritten 4 KiB blocks (the recovery site's 8 and
    // the 2 the primary wrote last, which it puts back), not the chunks around them.
    let log_path = steps["reverse-agent"]["outputs"]["log"].as_str().unwrap().to_string();
    let log = fs::read_to_string(&log_path).unwrap();
    let cycles = agent_cycles(&log);
    assert!(cycles.len() >= 2, "the first cycle and the final sync's: {log}");
    let sent: u64 = cycles.iter().map(|(_, b)| b).sum();
    eprintln!(
        "failback sent {sent} bytes for a {volume_len}-byte volume with {} blocks of 4 KiB rewritten ({:.2}%)",
        written.len(),
        sent as f64 * 100.0 / volume_len as f64
    );
    assert!(sent > 0, "the writes after the failover must travel: {log}");
    assert!(
        sent < volume_len / 8,
        "failback sent {sent} of {volume_len} bytes: dedup against the seed failed: {log}"
    );
    assert!(
        sent < 10 * 4096 + 8 * 1024,
        "failback sent {sent} bytes for 10 differing blocks of 4 KiB: block deltas against the seed failed: {log}"
    );

    // Every process the run started was stopped; the forward agent runs again.
    for p in rec["processes"].as_array().unwrap() {
        assert!(!pid_alive(p["pid"].as_i64().unwrap()), "{p} still runs");
    }
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
    assert_eq!(
        st["paused"], false,
        "replication.reverse resumed the forward agent: {st}"
    );
    d.lifeline(&["audit", "verify"]).ok().stdout_has(&["audit log ok"]);
}

/// A failback after a real disaster: the forward agent died with the primary,
/// so the last step cannot resume it. The run ends "reprotect pending" (exit 3),
/// not failed; its pin was released before the run stopped the receiver that
/// holds it; and once the agent is started again, `lifeline resume` finishes it.
#[test]
fn failback_without_the_forward_agent_ends_reprotect_pending_and_resume_finishes_it() {
    let mut d = Deployment::with_failback();
    let target = d.site.path("recovered/db.img");
    let r = d
        .lifeline(&["failover", s(&failover_runbook(&d.site.path(""))), "--json"])
        .ok();
    assert_eq!(events(&r.stdout).last().unwrap()["status"], "succeeded", "{}", r.stdout);
    scatter_blocks(&target, 4, 47);
    // The primary's agent died with the primary.
    d.agent.signal("KILL");
    assert!(d.agent.wait_exit(PROMPT).is_some(), "the forward agent did not die");

    let rb = failback_runbook(&d);
    let r = d.lifeline(&["failback", s(&rb), "--json"]);
    let ev = events(&r.stdout);
    let summary = ev.last().unwrap_or_else(|| panic!("no events: {}", r.stderr)).clone();
    let run_id = summary["run"].as_str().unwrap().to_string();
    assert_eq!(summary["event"], "summary", "{}", r.stdout);
    assert_eq!(summary["status"], "reprotect_pending", "{}\n{}", r.stdout, r.stderr);
    assert_eq!(summary["pins_left"], serde_json::json!([]), "{}", r.stdout);
    assert_eq!(r.code, Some(3), "reprotect pending exits 3: {}", r.stderr);
    let runs = d.runs();
    assert_eq!(step_status(&runs, &run_id, "reprotect"), "deferred");
    assert_eq!(step_status(&runs, &run_id, "verify"), "succeeded");
    assert_same_content(&target, &d.volume);
    // The lease was released while the primary's receiver still ran.
    let released: Vec<&Value> = ev.iter().filter(|e| e["event"] == "lease_released").collect();
    assert_eq!(released.len(), 1, "{}", r.stdout);
    assert!(
        released[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("released the lease on point"),
        "{}",
        r.stdout
    );
    let at = |event: &str, step: Option<&str>| {
        ev.iter()
            .position(|e| e["event"] == event && step.is_none_or(|s| e["step"] == s))
            .unwrap_or_else(|| panic!("no {event} {step:?}: {}", r.stdout))
    };
    assert!(
        at("lease_released", None) < at("step_succeeded", Some("stop-primary-receiver")),
        "{}",
        r.stdout
    );
    let finished = &ev[at("run_finished", None)];
    assert!(
        finished["message"].as_str().unwrap().contains("reprotect pending"),
        "{finished}"
    );
    // The text summary says what to do.
    let text = d.lifeline(&["runs"]).ok();
    assert!(text.stdout.contains(&run_id), "{}", text.stdout);

    // The primary's agent is started again (at its control address); resume finishes.
    let control = control_of(&d);
    let args: Vec<String> = d
        .agent_args
        .iter()
        .map(|a| if a == "127.0.0.1:0" { control.clone() } else { a.clone() })
        .collect();
    let mut agent = Background::spawn(&strs(&args));
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("control listening on "))
        .unwrap_or_else(|| panic!("no control address: {}", agent.describe()));
    let r = d.lifeline(&["resume", &run_id, "--json"]);
    let ev = events(&r.stdout);
    assert_eq!(ev.last().unwrap()["status"], "succeeded", "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(EXIT_OK));
    assert_eq!(step_status(&d.runs(), &run_id, "reprotect"), "succeeded");
    d.lifeline(&["audit", "verify"]).ok().stdout_has(&["audit log ok"]);
}

#[test]
fn the_failover_summary_shows_the_promoted_point_and_the_achieved_rpo() {
    let d = Deployment::new();
    let r = d.lifeline(&["failover", s(&failover_runbook(&d.site.path("")))]).ok();
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("promoted point 1 taken at "))
        .unwrap_or_else(|| panic!("no promoted point in the summary: {}", r.stdout));
    assert!(line.contains("(step `promote`): achieved RPO "), "{line}");
    assert!(line.contains("within the objective of 60s"), "{line}");
}

#[test]
fn timeouts_fail_a_step_continue_skips_its_dependents_and_abort_stops_the_run() {
    let (dir, config) = local_run_dir();
    let rb = Runbook::new("abort", "app")
        .step(
            "slow",
            "check.command",
            r#"command = "sleep"
args = ["30"]
timeout = "300ms"
on_failure = "continue""#,
        )
        .step("after-slow", "wait", "duration = \"1ms\"\nafter = [\"slow\"]")
        .sleeper("svc")
        .approval("gate", &["svc", "slow"], "")
        .step("never", "wait", "duration = \"1ms\"\nafter = [\"gate\"]")
        .write(&dir.path().join("rb.toml"));
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
    let rb2 = Runbook::new("abort", "app")
        .sleeper("svc")
        .approval("gate", &["svc"], "")
        .write(&dir.path().join("rb2.toml"));
    let mut planner = Background::spawn(&["failover", s(&rb2), "--config", &cfg, "--json"]);
    let run_id = planner.started_run(PROMPT, "gate");
    run(&["abort", &run_id, "--config", &cfg, "--operator", "cy"])
        .ok()
        .stdout_has(&["abort requested by cy"]);
    let r = planner.finish(PROMPT).code(EXIT_CHECK_FAILED);
    assert_eq!(events(&r.stdout).last().unwrap()["status"], "aborted", "{}", r.stdout);
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    let rec = run_by_id(&runs, &run_id);
    let pid = rec["processes"][0]["pid"].as_i64().unwrap();
    assert!(!pid_alive(pid), "abort stops the processes the run started");
    run(&["abort", &run_id, "--config", &cfg]).fails(EXIT_ERROR, &["has finished"]);
    run(&["audit", "verify", "--config", &cfg]).ok();
}

#[test]
fn drill_measures_rpo_and_rto_in_a_sandbox_while_replication_goes_on_and_signs_its_report() {
    let d = Deployment::with_interval("1s");
    let port = free_port();
    let switch = d.site.path("upstream.conf");
    fs::write(&switch, "server primary;\n").unwrap();
    let rb = d.site.path("drill.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "shop-drill"
group = "shop"
[runbook.ports]
web = {port}
[[step]]
id = "stop-replication"
action = "replication.stop"
[[step]]
id = "promote"
action = "volume.promote"
after = ["stop-replication"]
[[step]]
id = "verify"
action = "check.volume"
volume = "db"
after = ["promote"]
[[step]]
id = "start"
action = "service.start"
command = "python3"
args = ["-m", "http.server", "${{ports.web}}", "--bind", "127.0.0.1"]
after = ["verify"]
[[step]]
id = "healthy"
action = "check.http"
url = "http://127.0.0.1:${{ports.web}}/"
body_contains = "volumes/"
timeout = "20s"
after = ["start"]
[[step]]
id = "dns"
action = "traffic.switch"
file = "{f}"
replace = "primary"
with = "secondary"
after = ["healthy"]
drill = {{ file = "${{run.dir}}/upstream.conf", content = "server sandbox;\n" }}
"#,
            f = s(&switch)
        ),
    )
    .unwrap();
    let reports = d.site.path("reports");
    let status = |d: &Deployment| {
        let url = fs::read_to_string(&d.config)
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("receiver = \"")
                    .map(|u| u.trim_end_matches('"').to_string())
            })
            .unwrap();
        let j = d
            .lifeline(&[
                "status",
                "--repo",
                &url,
                "--tls-dir",
                s(&d.site.tls),
                "--identity",
                "planner",
                "--json",
            ])
            .ok()
            .json();
        j.as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "shop")
            .cloned()
            .unwrap()
    };
    let before = status(&d);
    assert_eq!(
        before["flags"],
        serde_json::json!(["drill overdue"]),
        "no drill yet: {before}"
    );
    assert_eq!(before["rpo_objective_secs"], 60.0);
    let r = run_env(
        &[
            "drill",
            s(&rb),
            "--config",
            s(&d.config),
            "--report-dir",
            s(&reports),
            "--json",
            "--operator",
            "ana",
        ],
        &[("LIFELINE_DRILL_LAG_MS", "200")],
    )
    .ok();
    let summary = events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "drill_report")
        .expect("summary");
    assert!(
        r.stdout.contains("released the lease on point"),
        "the drill leased its point on the receiver and released it: {}",
        r.stdout
    );
    let dir = PathBuf::from(summary["report_dir"].as_str().unwrap());
    let report: Value = serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema"], "lifeline.drill-report");
    assert_ne!(report["verdict"], "failed", "{report:#}");
    let rpo = report["achieved"]["rpo_secs"].as_f64().unwrap();
    let rto = report["achieved"]["rto_secs"].as_f64().unwrap();
    assert!(rpo > 0.0 && rpo < 60.0, "rpo {rpo}");
    // The point recovered existed at the disaster instant.
    assert!(
        report["point"]["taken_at"].as_str().unwrap() <= report["disaster_at"].as_str().unwrap(),
        "{report:#}"
    );
    assert!(rto > 0.0 && rto < 60.0, "rto {rto}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 6);
    assert_eq!(report["checks"].as_array().unwrap().len(), 2);
    assert_eq!(report["operator"], "ana");
    // Production untouched: the real file, the agent still replicating.
    assert_eq!(fs::read_to_string(&switch).unwrap(), "server primary;\n");
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
    assert_eq!(st["paused"], false, "a drill never pauses replication: {st}");
    let lag = &report["replication_lag"];
    assert!(lag["before_secs"].is_number(), "{lag}");
    // As root the sandbox had a network namespace of its own, gone now.
    if is_root() && on_path("ip") {
        let ns = report["environment"]["network_namespace"]
            .as_str()
            .expect("a namespace as root");
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&list.stdout).contains(ns),
            "namespace {ns} left behind"
        );
    } else {
        eprintln!("SKIP the drill's network namespace: needs root and iproute2");
    }
    // The sandbox is gone, and so is its service.
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    assert!(!sandbox.exists(), "sandbox left behind");
    assert!(
        TcpListener::bind((
            "127.0.0.1",
            report["environment"]["ports"]["web"].as_u64().unwrap() as u16
        ))
        .is_ok()
    );
    for f in ["report.json", "report.html", "report.xml", "manifest.json"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    render_in_a_real_browser(&dir.join("report.html"), &d.site.path("report.png"));
    let xml = fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.contains("<testsuites") && xml.contains("objective RPO"), "{xml}");
    // The auditor's key, then verification; any edit is caught and named.
    let signer = d.lifeline(&["keys", "show-signer"]).ok().stdout.trim().to_string();
    let pubkey = d.site.path("signer.pub");
    fs::write(&pubkey, &signer).unwrap();
    run(&["report", "verify", s(&dir), "--pubkey", s(&pubkey)])
        .ok()
        .stdout_has(&["ok"]);
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    fs::write(dir.join("report.html"), html.replacen("PASSED", "PASSED!", 1)).unwrap();
    run(&["report", "verify", s(&dir.join("report.json")), "--pubkey", s(&pubkey)])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["report.html was modified"]);
    fs::write(dir.join("report.html"), html).unwrap();
    let other = d.site.path("other.pub");
    fs::write(&other, "11".repeat(32)).unwrap();
    run(&["report", "verify", s(&dir), "--pubkey", s(&other)])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["signature does not verify"]);
    let list = d.lifeline(&["report", "list"]).ok();
    assert!(
        list.stdout.contains(report["drill_id"].as_str().unwrap()) && list.stdout.contains("last passing drill"),
        "{}",
        list.stdout
    );
    let after = status(&d);
    assert_eq!(after["flags"], serde_json::json!([]), "a passing drill: {after}");
    assert_eq!(after["last_passing_drill"], report["disaster_at"]);
    d.lifeline(&["audit", "verify"]).ok();
}

/// Renders a report in headless Chromium (Debian's `chromium`, which `.ci/run`
/// installs), takes a screenshot and fails on console errors or network use.
fn render_in_a_real_browser(html: &Path, png: &Path) {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIP report.html in a browser: no chromium here (.ci/run installs it: apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1800",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", html.display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let shot = fs::read(png).unwrap_or_default();
    assert!(
        shot.len() > 10_000 && shot.starts_with(b"\x89PNG"),
        "no screenshot: {stderr}"
    );
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            (l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
        })
        .collect();
    assert!(bad.is_empty(), "the report logged errors in the browser: {bad:#?}");
}

#[test]
fn an_interrupted_drill_tears_its_sandbox_down_and_reports_a_failure() {
    let (dir, config) = local_run_dir();
    let rb = Runbook::new("interrupted", "app")
        .sleeper("svc")
        .approval("gate", &["svc"], "drill = \"run\"")
        .write(&dir.path().join("rb.toml"));
    let reports = dir.path().join("reports");
    let cfg = s(&config).to_string();
    let mut drill = Background::spawn(&["drill", s(&rb), "--config", &cfg, "--report-dir", s(&reports), "--json"]);
    let run_id = drill.started_run(PROMPT, "gate");
    let runs = run(&["runs", "--json", "--config", &cfg]).ok().json();
    let pid = runs[0]["processes"][0]["pid"].as_i64().unwrap();
    assert!(pid_alive(pid));
    drill.signal("INT");
    // Interrupted: 130, as the README promises for every command (was 1).
    let r = drill.finish(PROMPT).code(EXIT_INTERRUPTED);
    assert!(!pid_alive(pid), "the sandbox's service survived Ctrl-C");
    let report: Value = serde_json::from_slice(&fs::read(reports.join(&run_id).join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "failed", "{}", r.stdout);
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    assert!(!sandbox.exists(), "sandbox left behind after Ctrl-C");
    run(&["audit", "verify", "--config", &cfg]).ok();
}

/// A drill interrupted after every check passed: its report says it was
/// interrupted (not that a step failed), keeps the RTO its checks measured, and
/// the drill exits 130.
#[test]
fn an_interrupted_drill_whose_checks_passed_says_so_and_exits_130() {
    let (dir, config) = local_run_dir();
    let rb = Runbook::new("interrupted-after-checks", "app")
        .sleeper("svc")
        .check("up", &["svc"])
        .approval("gate", &["up"], "drill = \"run\"")
        .write(&dir.path().join("rb.toml"));
    let reports = dir.path().join("reports");
    let cfg = s(&config).to_string();
    let mut drill = Background::spawn(&["drill", s(&rb), "--config", &cfg, "--report-dir", s(&reports), "--json"]);
    let run_id = drill.started_run(PROMPT, "gate");
    drill.signal("INT");
    let r = drill.finish(PROMPT).code(EXIT_INTERRUPTED);
    let report: Value = serde_json::from_slice(&fs::read(reports.join(&run_id).join("report.json")).unwrap()).unwrap();
    let reasons = report["reasons"].to_string();
    assert_eq!(report["verdict"], "failed", "{}", r.stdout);
    assert!(
        report["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("the drill was interrupted"),
        "{reasons}"
    );
    assert!(
        !reasons.contains("a step failed") && !reasons.contains("RTO was not measured"),
        "{reasons}"
    );
    assert!(report["achieved"]["rto_secs"].as_f64().is_some(), "{report:#}");
    assert_eq!(report["checks"][0]["passed"], true);
}

/// The issue's case: the recovery site's daemon is running a scheduled drill
/// (a long one) when the operator fails over. The failover stops the drill and
/// succeeds within seconds; the drill's report says who preempted it.
#[test]
fn a_failover_preempts_the_daemons_scheduled_drill_within_seconds() {
    let d = Deployment::with_interval("1s");
    let (mut daemon, _) = daemon_with_missed_drill(&d, &shop_drill("long", "wait", "duration = \"10m\""));
    drill_event(&mut daemon, "job_started");
    let cfg = s(&d.config).to_string();
    // The drill holds the planner once its long step runs. Asked through its
    // control socket only: `lifeline runs` with no planner running would open
    // the catalog itself and could race the drill's start.
    let state = fs::read_to_string(&d.config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("state_dir = \"")
                .map(|x| x.trim_end_matches('"').to_string())
        })
        .unwrap();
    let socket = Path::new(&state).join("planner/control.sock");
    assert!(
        poll_until(Duration::from_secs(60), || {
            if !socket.exists() {
                return false;
            }
            let r = run(&["runs", "--json", "--config", &cfg]);
            r.code == Some(0)
                && r.json().as_array().is_some_and(|runs| {
                    runs.iter()
                        .any(|x| x["mode"] == "drill" && x["steps"]["long"]["status"] == "running")
                })
        }),
        "the scheduled drill never reached its long step: {}",
        daemon.describe()
    );
    let rb = Runbook::new("shop-failover", "shop")
        .check("ok", &[])
        .write(&d.site.path("failover.toml"));
    let t0 = std::time::Instant::now();
    let r = run(&["failover", s(&rb), "--config", &cfg, "--json"]).ok();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the failover took {took:?}: {}",
        r.stderr
    );
    let failover = events(&r.stdout).last().unwrap()["run"].as_str().unwrap().to_string();
    assert!(r.stderr.contains("stops for"), "{}", r.stderr);
    let e = drill_event(&mut daemon, "job");
    assert_eq!(e["verdict"], "failed", "{e}");
    let report: Value =
        serde_json::from_slice(&fs::read(Path::new(e["report_dir"].as_str().unwrap()).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["preempted_by"], failover.as_str(), "{report:#}");
    daemon.signal("TERM");
    assert_eq!(daemon.finish(Duration::from_secs(60)).code, Some(0));
}

#[test]
fn notify_posts_the_event_as_json_and_check_http_reads_status_and_body() {
    use std::io::{Read, Write};
    let (dir, config) = local_run_dir();
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hook.local_addr().unwrap().port();
    // A webhook and a health endpoint: answers two requests, keeps what it got.
    let server = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..2 {
            let (mut c, _) = hook.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let mut n = 0;
            // Read the head and, for a POST, its body (Content-Length).
            loop {
                let r = c.read(&mut buf[n..]).unwrap();
                n += r;
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if body.len() >= len || r == 0 {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = if text.starts_with("POST") {
                "HTTP/1.0 202 Accepted\r\n\r\n"
            } else {
                "HTTP/1.0 200 OK\r\n\r\nall systems nominal"
            };
            c.write_all(answer.as_bytes()).unwrap();
            got.push(text);
        }
        got
    });
    let rb = dir.path().join("rb.toml");
    fs::write(
        &rb,
        format!(
            r#"[runbook]
name = "hooks"
group = "app"
[[step]]
id = "health"
action = "check.http"
url = "http://127.0.0.1:{port}/health"
body_contains = "nominal"
[[step]]
id = "tell"
action = "notify"
url = "http://127.0.0.1:{port}/hook"
message = "${{run.mode}} of ${{group.name}} done"
after = ["health"]
"#
        ),
    )
    .unwrap();
    let r = run(&["failover", s(&rb), "--config", s(&config), "--json"]).ok();
    let got = server.join().unwrap();
    assert!(got[0].starts_with("GET /health"), "{got:?}");
    let body: Value = serde_json::from_str(got[1].split_once("\r\n\r\n").unwrap().1).unwrap();
    let ev = events(&r.stdout);
    assert_eq!(body["run"], ev.last().unwrap()["run"]);
    assert_eq!(body["message"], "failover of app done");
    assert_eq!(body["step"], "tell");
    let runs = run(&["runs", "--json", "--config", s(&config)]).ok().json();
    assert_eq!(runs[0]["steps"]["tell"]["outputs"]["status"], "202");
    assert_eq!(runs[0]["steps"]["health"]["outputs"]["status"], "200");
}

#[test]
fn a_promoted_point_is_leased_while_its_run_goes_on_and_prune_keeps_it() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, MIB, 9);
    for i in 0..3u64 {
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, i * 4096, 4096, 70 + i);
        sb.backup("g", &[("v", &v)], &[]).ok();
    }
    let config = sb.path("lifeline.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nkey_file = \"{}\"\n[sites.primary]\n[sites.secondary]\nrepo = \"{}\"\n[groups.g]\nvolumes = {{ v = \"{}\" }}\ntargets = {{ v = \"{}\" }}\n",
            s(&sb.path("state")),
            s(&sb.key),
            s(&sb.repo),
            s(&v),
            s(&sb.path("out/v.img"))
        ),
    )
    .unwrap();
    let rb = Runbook::new("lease", "g")
        .step("promote", "volume.promote", "")
        .approval("gate", &["promote"], "")
        .write(&sb.path("rb.toml"));
    let cfg = s(&config).to_string();
    let mut planner = Background::spawn(&["failover", s(&rb), "--config", &cfg, "--point", "1", "--json"]);
    let run_id = planner.started_run(PROMPT, "gate");
    let decide = || {
        let j = sb.prune("g", &["--keep-last", "1", "--dry-run", "--json"]).ok().json();
        j["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["seq"].as_u64().unwrap(), d["keep"].clone()))
            .collect::<Vec<_>>()
    };
    let during = decide();
    assert_eq!(during[2].0, 1);
    assert_eq!(during[2].1, serde_json::json!([{"rule": "pinned"}]), "{during:?}");
    assert_eq!(during[1].1, serde_json::json!([]), "point 2 is not leased: {during:?}");
    run(&["approve", &run_id, "gate", "--config", &cfg]).ok();
    let r = planner.finish(PROMPT).ok();
    assert!(r.stdout.contains("released the lease on point 1"), "{}", r.stdout);
    let after = decide();
    assert_eq!(after[2].1, serde_json::json!([]), "the lease was released: {after:?}");
}

/// A deployment whose recovery site's daemon has a yearly drill of `runbook`
/// that it missed (so it runs once at start); returns the daemon and its
/// metrics address.
fn daemon_with_missed_drill(d: &Deployment, runbook: &str) -> (Background, String) {
    let rb = d.site.path("drill.toml");
    fs::write(&rb, runbook).unwrap();
    let text = fs::read_to_string(&d.config).unwrap().replace(
        "[groups.shop]\n",
        &format!(
            "[groups.shop]\ndrill_schedule = \"0 0 0 1 1 *\"\ndrill_runbook = \"{}\"\n",
            s(&rb)
        ),
    );
    fs::write(&d.config, &text).unwrap();
    let state = text
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let runs = Path::new(&state).join("daemon/secondary.last-runs.json");
    fs::create_dir_all(runs.parent().unwrap()).unwrap();
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(400)).to_rfc3339();
    fs::write(&runs, format!(r#"{{"drill:shop": "{year_ago}"}}"#)).unwrap();
    let mut daemon = Background::spawn(&[
        "--config",
        s(&d.config),
        "daemon",
        "--site",
        "secondary",
        "--json",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = daemon.metrics_address();
    (daemon, addr)
}

/// The daemon's scheduled drill of `shop`: a promote, then step `id` after it.
fn shop_drill(id: &str, action: &str, fields: &str) -> String {
    Runbook::new("shop-drill", "shop")
        .step("promote", "volume.promote", "")
        .step(id, action, &format!("{fields}\nafter = [\"promote\"]"))
        .text()
        .to_string()
}

fn drill_event(daemon: &mut Background, event: &str) -> Value {
    let line = daemon
        .wait_for_line(Duration::from_secs(120), |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == event && v["job"] == "drill")
        })
        .unwrap_or_else(|| panic!("no {event} of the drill: {}", daemon.describe()));
    serde_json::from_str(&line).unwrap()
}

/// The recovery site's daemon drills a group on its schedule (here a yearly
/// one missed while the daemon was down, so it runs once at start): a real
/// `lifeline drill` against the replicating deployment, whose verdict and time
/// the metrics then show.
#[test]
fn the_daemon_runs_a_scheduled_drill_and_exports_its_verdict() {
    let d = Deployment::with_interval("1s");
    let (mut daemon, addr) = daemon_with_missed_drill(&d, &shop_drill("verify", "check.volume", "volume = \"db\""));
    let e = drill_event(&mut daemon, "job");
    assert_eq!(e["ok"], true, "{e}");
    assert_ne!(e["verdict"], "failed", "{e}");
    assert!(
        Path::new(e["report_dir"].as_str().unwrap())
            .join("report.json")
            .is_file(),
        "{e}"
    );
    // The daemon says where scheduled drills' reports go, and the report is there.
    let jobs: Value = daemon
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "jobs")
        .unwrap_or_else(|| panic!("no job list: {}", daemon.describe()));
    let state = fs::read_to_string(&d.config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("state_dir = \"")
                .map(|x| x.trim_end_matches('"').to_string())
        })
        .unwrap();
    let reports = Path::new(&state).join("daemon/drill-reports");
    assert_eq!(jobs["drill_reports"], s(&reports), "{jobs}");
    assert!(
        Path::new(e["report_dir"].as_str().unwrap()).starts_with(&reports),
        "{e}"
    );
    let m = crate::daemon::scrape(&addr);
    let g = [("group", "shop")];
    assert_eq!(
        crate::daemon::sample(&m, "lifeline_group_last_drill_passed", &g),
        Some(1.0)
    );
    assert!(crate::daemon::sample(&m, "lifeline_group_last_drill_timestamp_seconds", &g).unwrap() > 1.7e9);
    daemon.signal("TERM");
    assert_eq!(daemon.finish(Duration::from_secs(60)).code, Some(0));
}

/// Stopping the daemon while a drill runs stops the drill too (it tears its
/// sandbox down and reports a failure) instead of waiting for it.
#[test]
fn stopping_the_daemon_stops_a_running_drill() {
    let d = Deployment::with_interval("1s");
    let (mut daemon, _) = daemon_with_missed_drill(&d, &shop_drill("long", "wait", "duration = \"10m\""));
    drill_event(&mut daemon, "job_started");
    std::thread::sleep(Duration::from_secs(2));
    let t0 = std::time::Instant::now();
    daemon.signal("TERM");
    let run = daemon.finish(Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the daemon waited for the drill"
    );
    let end = events(&run.stdout)
        .into_iter()
        .find(|v| v["event"] == "job" && v["job"] == "drill")
        .unwrap_or_else(|| panic!("no end of the drill: {}", run.stdout));
    assert!(end["ok"] == false || end["verdict"] == "failed", "{end}");
}

/// A state directory with a planner that ran one drill (a check that passes),
/// and the drill's report directory.
fn drilled_state(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let root = dir.join(name);
    fs::create_dir_all(&root).unwrap();
    let config = root.join("lifeline.toml");
    fs::write(
        &config,
        format!("state_dir = \"{}\"\n[groups.app]\n", s(&root.join("state"))),
    )
    .unwrap();
    let rb = root.join("rb.toml");
    fs::write(
        &rb,
        "[runbook]\nname = \"audited\"\ngroup = \"app\"\n[[step]]\nid = \"ok\"\naction = \"check.command\"\ncommand = \"true\"\n",
    )
    .unwrap();
    let reports = root.join("reports");
    let r = run(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"]));
    let report_dir = events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "drill_report")
        .and_then(|e| e["report_dir"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("no report: {} {}", r.stdout, r.stderr));
    (config, report_dir)
}

/// The signature of an audit head as the planner makes it (FORMAT.md).
fn sign_head(key: &ed25519_dalek::SigningKey, seq: u64, hash: &str) -> String {
    use ed25519_dalek::Signer;
    let mut m = b"lifeline audit head v1\0".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash.as_bytes());
    hex::encode(key.sign(&m).to_bytes())
}

/// Finding 4 of issue 17, as an attacker on the planner host would do it: edit
/// the log, recompute the chain, re-sign the head with a key of their own
/// (replacing planner.key and planner.pub) and delete the catalog. `audit
/// verify` reports the missing catalog; with the auditor's key (`--pubkey`,
/// kept off the planner host) it names the foreign signature even once an empty
/// catalog is back, and the runs the log names without records.
#[test]
fn a_rewritten_resigned_audit_log_is_caught_with_the_auditors_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = drilled_state(dir.path(), "a");
    let cfg = s(&config);
    let planner = dir.path().join("a/state/planner");
    // The auditor takes the public key when the planner is commissioned.
    let signer = run(&["keys", "show-signer", "--config", cfg])
        .ok()
        .stdout
        .trim()
        .to_string();
    let auditor_pub = dir.path().join("auditor.pub");
    fs::write(&auditor_pub, &signer).unwrap();
    run(&["audit", "verify", "--config", cfg, "--pubkey", s(&auditor_pub)])
        .ok()
        .stdout_has(&["audit log ok", "run heads on the chain", "the trusted key"]);
    run(&["audit", "verify", "--config", cfg])
        .ok()
        .stderr_has(&["pass --pubkey"]);

    // The attack.
    let log = planner.join("audit.jsonl");
    let mut prev = "0".repeat(64);
    let mut lines = Vec::new();
    for (i, line) in fs::read_to_string(&log).unwrap().lines().enumerate() {
        let mut e: Value = serde_json::from_str(line).unwrap();
        if i == 1 {
            e["user"] = "mallory".into();
        }
        e["prev"] = prev.clone().into();
        let text = serde_json::to_string(&e).unwrap();
        prev = blake3::hash(text.as_bytes()).to_hex().to_string();
        lines.push(text);
    }
    fs::write(&log, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let mallory = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let public = hex::encode(mallory.verifying_key().to_bytes());
    let seq = lines.len() as u64;
    fs::write(
        planner.join("audit.head.json"),
        serde_json::to_vec(&serde_json::json!({
            "seq": seq, "hash": prev, "signature": sign_head(&mallory, seq, &prev), "public_key": public,
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(planner.join("planner.key"), format!("{}\n", hex::encode([42u8; 32]))).unwrap();
    fs::write(planner.join("planner.pub"), format!("{public}\n")).unwrap();
    fs::remove_dir_all(planner.join("catalog")).unwrap();

    // Without the auditor's key: the missing catalog (it used to say "ok").
    run(&["audit", "verify", "--config", cfg])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["DAMAGED", "catalog", "is missing"]);
    assert!(!planner.join("catalog").exists(), "audit verify created a catalog");
    // With it: the foreign signature.
    run(&["audit", "verify", "--config", cfg, "--pubkey", s(&auditor_pub)])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["signed head", "not the trusted key", "re-signed"]);
    // An empty catalog put back (any command opens one) hides nothing either.
    run(&["runs", "--config", cfg]).ok();
    run(&["audit", "verify", "--config", cfg])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["is in the log but has no record in the planner catalog"]);
    run(&[
        "audit",
        "verify",
        "--config",
        cfg,
        "--pubkey",
        s(&auditor_pub),
        "--json",
    ])
    .code(EXIT_CHECK_FAILED)
    .stdout_has(&["\"key_source\": \"trusted\"", "not the trusted key"]);
    // Wiping it all (an empty log, no head, no catalog) is not "ok" either.
    fs::write(&log, "").unwrap();
    fs::remove_file(planner.join("audit.head.json")).unwrap();
    fs::remove_dir_all(planner.join("catalog")).unwrap();
    run(&["audit", "verify", "--config", cfg, "--pubkey", s(&auditor_pub)])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["no entry signed by the trusted key"]);
}

/// `report verify --audit-log`: a genuine report is on its planner's chain; a
/// report of another log (the same planner key, restored on a new state
/// directory) and a report edited and re-signed with the planner's key are
/// not, though their signatures verify.
#[test]
fn report_verify_with_the_audit_log_finds_the_report_on_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (config_a, report_a) = drilled_state(dir.path(), "a");
    let signer = run(&["keys", "show-signer", "--config", s(&config_a)])
        .ok()
        .stdout
        .trim()
        .to_string();
    let auditor_pub = dir.path().join("auditor.pub");
    fs::write(&auditor_pub, &signer).unwrap();
    let planner_a = dir.path().join("a/state/planner");
    // The log records the manifest's digest, typed.
    let digest = blake3::hash(&fs::read(report_a.join("manifest.json")).unwrap())
        .to_hex()
        .to_string();
    let written: Value = fs::read_to_string(planner_a.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "report_written")
        .unwrap();
    assert_eq!(written["detail"]["report"]["manifest_blake3"], digest.as_str());

    // Genuine: on the chain (the planner directory, or the state directory).
    for log in [planner_a.clone(), dir.path().join("a/state")] {
        run(&[
            "report",
            "verify",
            s(&report_a),
            "--pubkey",
            s(&auditor_pub),
            "--audit-log",
            s(&log),
        ])
        .ok()
        .stdout_has(&["ok", "on the audit chain (entry"]);
    }
    // --audit-log needs the auditor's key.
    run(&["report", "verify", s(&report_a), "--audit-log", s(&planner_a)]).code(EXIT_ERROR);

    // Another log signed by the same key: a second state directory given the
    // planner's key pair (a reinstall), with a drill of its own.
    let planner_b = dir.path().join("b/state/planner");
    fs::create_dir_all(&planner_b).unwrap();
    for f in ["planner.key", "planner.pub"] {
        fs::copy(planner_a.join(f), planner_b.join(f)).unwrap();
    }
    let (_, report_b) = drilled_state(dir.path(), "b");
    run(&["report", "verify", s(&report_a), "--pubkey", s(&auditor_pub)]).ok();
    run(&[
        "report",
        "verify",
        s(&report_a),
        "--pubkey",
        s(&auditor_pub),
        "--audit-log",
        s(&planner_b),
    ])
    .code(EXIT_CHECK_FAILED)
    .stdout_has(&["is not on the audit chain", "no entry records a report of drill"]);
    run(&[
        "report",
        "verify",
        s(&report_b),
        "--pubkey",
        s(&auditor_pub),
        "--audit-log",
        s(&planner_b),
    ])
    .ok();

    // An edit re-signed with the planner's key (someone on the planner host).
    let mut report: Value = serde_json::from_slice(&fs::read(report_a.join("report.json")).unwrap()).unwrap();
    report["reasons"] = serde_json::json!(["edited"]);
    fs::write(
        report_a.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    let key_hex = fs::read_to_string(planner_a.join("planner.key")).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&hex::decode(key_hex.trim()).unwrap().try_into().unwrap());
    let mut manifest: Value = serde_json::from_slice(&fs::read(report_a.join("manifest.json")).unwrap()).unwrap();
    let mut message = b"lifeline report manifest v1\0".to_vec();
    message.extend_from_slice(manifest["drill_id"].as_str().unwrap().as_bytes());
    message.push(0);
    for f in ["report.html", "report.json", "report.xml"] {
        let h = blake3::hash(&fs::read(report_a.join(f)).unwrap()).to_hex().to_string();
        manifest["files"][f] = h.clone().into();
        message.extend_from_slice(f.as_bytes());
        message.push(0);
        message.extend_from_slice(h.as_bytes());
        message.push(0);
    }
    use ed25519_dalek::Signer;
    manifest["signature"] = hex::encode(key.sign(&message).to_bytes()).into();
    fs::write(
        report_a.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    run(&["report", "verify", s(&report_a), "--pubkey", s(&auditor_pub)])
        .ok()
        .stdout_has(&["ok"]);
    run(&[
        "report",
        "verify",
        s(&report_a),
        "--pubkey",
        s(&auditor_pub),
        "--audit-log",
        s(&planner_a),
    ])
    .code(EXIT_CHECK_FAILED)
    .stdout_has(&[
        "is not on the audit chain",
        "the chain records drill",
        "replaced or re-signed",
    ]);
}
