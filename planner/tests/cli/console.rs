//! The operations console (`lifeline daemon --http`): the real daemon taking
//! points every second against temp dirs, its JSON API and pages over a real
//! socket, the event stream, who may see and do what, and a real headless
//! Chromium driven through the DevTools protocol.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::http::{self, Answer, get, request};
use crate::common::*;

const ADMIN: &str = "admin-token-7f3c9a1b2e4d";
const AUDITOR: &str = "auditor-token-5e8d2c4a6b1f";
const GOOD_DRILL: &str = "20261201T100000Z-g-good";
const TAMPERED_DRILL: &str = "20261130T100000Z-g-tampered";

/// A one-machine deployment: site `primary` takes points of `g` every second
/// (and of `slow` once, RPO objective 4 s) into the `vault` site's repository
/// directory; `idle` has no schedule; `d` is drilled on `primary` (with a
/// runbook that does not exist, so a drill fails fast). Two signed drill
/// reports of `g` are in the daemon's report directory, one altered after
/// signing.
struct Deployment {
    sb: Sandbox,
    config: PathBuf,
    admin_token: PathBuf,
    auditor_token: PathBuf,
}

fn drill_report(id: &str, days_ago: i64, rpo: f64, rto: f64) -> lifeline_planner::report::DrillReport {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    serde_json::from_value(json!({
        "schema": lifeline_planner::report::SCHEMA,
        "version": lifeline_planner::report::SCHEMA_VERSION,
        "drill_id": id,
        "runbook": {"name": "g-drill", "file": "drill.toml", "digest": "00"},
        "group": "g",
        "tenant": "default",
        "disaster_at": at.to_rfc3339(),
        "point": {"seq": 1, "taken_at": at.to_rfc3339()},
        "objectives": {"rpo_secs": 30.0, "rto_secs": 300.0},
        "achieved": {"rpo_secs": rpo, "rto_secs": rto, "data_loss": null},
        "verdict": "passed",
        "reasons": ["objectives met; every check passed"],
        "steps": [],
        "checks": [],
        "volumes": [],
        "replication_lag": {"before_secs": null, "max_during_secs": null, "after_secs": null, "points_during": 0, "exceeded_rpo": false, "samples": []},
        "environment": {"host": "h", "os": "linux", "lifeline_version": "t", "sandbox": "/tmp/x", "network_namespace": null, "ports": {}},
        "operator": null,
        "user": "tester",
        "sign_off": {"prepared_by": "tester", "reviewed_by": null, "approved_by": null, "date": null},
        "next_drill_due": (at + chrono::Duration::days(30)).to_rfc3339(),
        "audit_head": null
    }))
    .unwrap()
}

impl Deployment {
    fn new() -> Deployment {
        let sb = Sandbox::new();
        for (name, seed) in [("g.img", 1), ("idle.img", 2), ("slow.img", 3)] {
            write_random_file(&sb.path(name), MIB, seed);
        }
        let config = sb.path("lifeline.toml");
        fs::write(
            &config,
            format!(
                r#"key_file = "{key}"
state_dir = "{state}"

[daemon]
rpo_sample_every = "1s"

[sites.primary]

[sites.vault]
repo = "{repo}"

[groups.g]
secondary = "vault"
volumes = {{ v = "{g}" }}
schedule = "* * * * * *"
rpo = "30s"
rto = "5m"
drill_interval = "30d"

[groups.slow]
secondary = "vault"
volumes = {{ v = "{slow}" }}
schedule = "1h"
rpo = "4s"

[groups.idle]
secondary = "vault"
volumes = {{ v = "{idle}" }}
rpo = "10s"

[groups.d]
secondary = "primary"
drill_schedule = "0 0 0 1 1 *"
drill_runbook = "{missing}"
"#,
                key = s(&sb.key),
                state = s(&sb.state),
                repo = s(&sb.repo),
                g = s(&sb.path("g.img")),
                slow = s(&sb.path("slow.img")),
                idle = s(&sb.path("idle.img")),
                missing = s(&sb.path("missing-runbook.toml")),
            ),
        )
        .unwrap();
        // Signed with the planner's own key, as a drill would.
        let key = lifeline_planner::audit::signing_key(&{
            let d = sb.state.join("planner");
            fs::create_dir_all(&d).unwrap();
            d
        })
        .unwrap();
        let reports = sb.state.join("daemon").join("drill-reports");
        let good = reports.join(GOOD_DRILL);
        lifeline_planner::report::write(&good, &drill_report(GOOD_DRILL, 1, 2.5, 41.0), &key).unwrap();
        let tampered = reports.join(TAMPERED_DRILL);
        lifeline_planner::report::write(&tampered, &drill_report(TAMPERED_DRILL, 2, 3.0, 50.0), &key).unwrap();
        let text = fs::read_to_string(tampered.join("report.json")).unwrap();
        fs::write(
            tampered.join("report.json"),
            text.replace("\"rto_secs\": 50.0", "\"rto_secs\": 5.0"),
        )
        .unwrap();
        let admin_token = sb.path("admin.token");
        fs::write(&admin_token, format!("{ADMIN}\n")).unwrap();
        let auditor_token = sb.path("auditor.token");
        fs::write(&auditor_token, AUDITOR).unwrap();
        Deployment {
            sb,
            config,
            admin_token,
            auditor_token,
        }
    }

    /// Starts the daemon with the console on 127.0.0.1:0 (and `extra`
    /// arguments); returns it and the console's HOST:PORT.
    fn daemon(&self, extra: &[&str]) -> (Background, String) {
        let mut args = vec![
            "--config",
            s(&self.config),
            "daemon",
            "--site",
            "primary",
            "--json",
            "--http",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut d = Background::spawn(&args);
        let line = d
            .wait_for_line(Duration::from_secs(30), |l| l.starts_with("console on http"))
            .unwrap_or_else(|| panic!("no console address: {}", d.describe()));
        let addr = line
            .trim_start_matches("console on ")
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        (d, addr)
    }

    fn with_tokens(&self) -> (Background, String) {
        self.daemon(&[
            "--http-token-file",
            s(&self.admin_token),
            "--http-auditor-token-file",
            s(&self.auditor_token),
        ])
    }

    /// What must never appear in an answer: the tenant key, the planner's
    /// signing key, the tokens.
    fn secrets(&self) -> Vec<String> {
        let key = fs::read_to_string(&self.sb.key).unwrap();
        let mut out: Vec<String> = key
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/')
            .filter(|w| w.len() >= 32)
            .map(str::to_string)
            .collect();
        out.push(
            fs::read_to_string(self.sb.state.join("planner").join("planner.key"))
                .unwrap()
                .trim()
                .to_string(),
        );
        out.push(ADMIN.into());
        out.push(AUDITOR.into());
        out
    }
}

/// Waits for a job event of the daemon (`--json`).
fn job_event(d: &mut Background, job: &str, group: &str, timeout: Duration) -> Value {
    let line = d
        .wait_for_line(timeout, |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["event"] == "job" && v["job"] == job && v["group"] == group)
        })
        .unwrap_or_else(|| panic!("no {job} job of {group}: {}", d.describe()));
    serde_json::from_str(&line).unwrap()
}

fn by_name<'a>(groups: &'a Value, name: &str) -> &'a Value {
    groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {groups}"))
}

/// The planner's audit log entries (`STATE/planner/audit.jsonl`); none
/// before the first.
fn audit_entries(state: &Path) -> Vec<Value> {
    match fs::read_to_string(state.join("planner").join("audit.jsonl")) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read the audit log: {e}"),
    }
}

/// The audit entries that record console actions.
fn console_actions(state: &Path) -> Vec<Value> {
    audit_entries(state)
        .into_iter()
        .filter(|e| e["event"] == "console_action")
        .collect()
}

/// `lifeline audit verify` of the deployment's planner: the chain holds.
#[track_caller]
fn audit_verifies(config: &Path) {
    run(&["audit", "verify", "--config", s(config)])
        .ok()
        .stdout_has(&["audit log ok"]);
}

#[track_caller]
fn ok_json(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["content-type"], "application/json", "{a:?}");
    a.json()
}

#[track_caller]
fn api_error(a: &Answer, status: u16, needle: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let j = a.json();
    assert_eq!(j["status"], status, "{j}");
    assert!(j["error"].as_str().unwrap().contains(needle), "{j}");
}

/// Every API route against a daemon taking real points: fields, states,
/// 404/400, the event stream, the pages and their security headers, and no
/// secret in any answer.
#[test]
fn console_api_answers_every_route() {
    let dep = Deployment::new();
    let (mut d, addr) = dep.daemon(&[]);
    let e = job_event(&mut d, "point", "g", Duration::from_secs(30));
    assert_eq!(e["ok"], true, "{e}");
    job_event(&mut d, "point", "g", Duration::from_secs(30));
    let mut bodies = Vec::new();
    let mut fetch = |path: &str| {
        let a = get(&addr, path);
        bodies.push(a.body.clone());
        a
    };

    let groups = ok_json(&fetch("/api/v1/groups"));
    let names: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d", "g", "idle", "slow"]);
    let g = by_name(&groups, "g");
    assert_eq!(g["state"], "meeting_sla", "{g}");
    assert_eq!(g["state_text"], "Meeting SLA", "{g}");
    assert!(g["rpo_seconds"].as_f64().unwrap() < 30.0, "{g}");
    assert_eq!(g["rpo_objective_seconds"], 30.0);
    assert_eq!(g["rto_objective_seconds"], 300.0);
    assert!(g["last_point"]["seq"].as_u64().unwrap() >= 2, "{g}");
    assert_eq!(g["last_point"]["consistency"], "fuzzy");
    assert!(g["retention"]["points"].as_u64().unwrap() >= 2, "{g}");
    assert!(g["retention"]["oldest"].as_str().unwrap() < g["retention"]["newest"].as_str().unwrap());
    assert_eq!(g["last_drill"]["id"], GOOD_DRILL, "{g}");
    assert_eq!(g["last_drill"]["verdict"], "passed");
    assert_eq!(g["last_drill"]["achieved_rpo_seconds"], 2.5);
    assert_eq!(g["last_drill"]["achieved_rto_seconds"], 41.0);
    assert_eq!(g["last_drill"]["signature_verifies"], true);
    assert_eq!(g["drill_overdue"], false);
    assert_eq!(g["replication"]["state"], "running");
    assert!(g["replication"]["bytes_sent"].as_u64().unwrap() > 0, "{g}");
    assert_eq!(g["replication"]["last_cycle"]["ok"], true);
    let idle = by_name(&groups, "idle");
    assert_eq!(idle["state"], "syncing", "{idle}");
    assert_eq!(idle["last_point"], Value::Null);
    assert_eq!(idle["retention"]["points"], 0);
    assert_eq!(idle["replication"]["state"], "elsewhere");
    let dg = by_name(&groups, "d");
    assert_eq!(
        dg["retention"]["points"],
        Value::Null,
        "d's repository is not reachable: {dg}"
    );

    // `slow` took one point at start; its 4 s objective then lapses.
    let slow_state = |addr: &str| ok_json(&get(addr, "/api/v1/groups/slow"))["state"].clone();
    assert!(
        poll_until(Duration::from_secs(20), || slow_state(&addr) == "rpo_not_met"),
        "slow never left its objective: {}",
        get(&addr, "/api/v1/groups/slow").body
    );

    let one = ok_json(&fetch("/api/v1/groups/g"));
    assert_eq!(one["name"], "g");
    assert_eq!(one["state"], "meeting_sla");
    api_error(&fetch("/api/v1/groups/nope"), 404, "no group `nope`");

    let points = ok_json(&fetch("/api/v1/groups/g/points"));
    let seqs: Vec<u64> = points["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.len() >= 2 && seqs.windows(2).all(|w| w[0] < w[1]), "{points}");
    api_error(&fetch("/api/v1/groups/nope/points"), 404, "no group");
    api_error(&fetch("/api/v1/groups/d/points"), 404, "does not reach");

    assert!(poll_until(Duration::from_secs(10), || {
        get(&addr, "/api/v1/groups/g/rpo?since=1h").json()["samples"]
            .as_array()
            .is_some_and(|s| s.len() >= 2)
    }));
    let rpo = ok_json(&fetch("/api/v1/groups/g/rpo?since=1h"));
    assert_eq!(rpo["sample_every_seconds"], 1);
    let first = &rpo["samples"][0];
    assert!(
        first["at"].is_string() && first["rpo_seconds"].as_f64().unwrap() < 30.0,
        "{rpo}"
    );
    let future = ok_json(&fetch("/api/v1/groups/g/rpo?since=2999-01-01T00:00:00Z"));
    assert_eq!(future["samples"], json!([]));
    api_error(&fetch("/api/v1/groups/g/rpo?since=yesterday"), 400, "since=`yesterday`");
    api_error(&fetch("/api/v1/groups/nope/rpo"), 404, "no group");

    let drills = ok_json(&fetch("/api/v1/drills"));
    let list = drills.as_array().unwrap();
    assert_eq!(list.len(), 2, "{drills}");
    assert_eq!(list[0]["id"], TAMPERED_DRILL, "oldest first: {drills}");
    assert_eq!(list[0]["signature_verifies"], false);
    assert_eq!(list[1]["signature_verifies"], true);
    let good = ok_json(&fetch(&format!("/api/v1/drills/{GOOD_DRILL}")));
    assert_eq!(good["verification"]["verifies"], true, "{good}");
    assert_eq!(good["report"]["drill_id"], GOOD_DRILL);
    assert_eq!(good["report_html"], format!("/drills/{GOOD_DRILL}/report.html"));
    let bad = ok_json(&fetch(&format!("/api/v1/drills/{TAMPERED_DRILL}")));
    assert_eq!(bad["verification"]["verifies"], false);
    assert!(
        bad["verification"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("report.json was modified after signing"),
        "{bad}"
    );
    api_error(&fetch("/api/v1/drills/nope"), 404, "no drill");
    api_error(&fetch("/api/v1/drills/..%2F..%2Fetc"), 404, "no drill");
    api_error(&fetch("/api/v1/nothing"), 404, "no such API route");

    let jobs = ok_json(&fetch("/api/v1/jobs"));
    let point = jobs["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "point" && j["group"] == "g")
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(point["result"], "ok");
    assert!(point["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(point["summary"].as_str().unwrap().contains("committed"), "{point}");
    assert!(jobs["running"].is_array());

    // The event stream delivers the next job.
    let ev = http::sse_until(&addr, "/api/v1/events", &[], "job_finished", Duration::from_secs(20))
        .expect("a job_finished event within 20 s");
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["event"], "job_finished", "{ev}");
    assert!(ev["job"].is_string() && ev["result"].is_string(), "{ev}");

    // Pages: server-rendered, strict CSP, escaped, embedded assets.
    let page = fetch("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = &page.headers["content-security-policy"];
    assert!(csp.starts_with("default-src 'none'; script-src 'self'"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(page.body.contains("<tr data-group=\"g\">"), "{}", page.body);
    assert!(page.body.contains("Meeting SLA") && page.body.contains("RPO not meeting SLA"));
    assert!(page.body.contains("<svg class=\"spark\""));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "no external URL"
    );
    let group = fetch("/groups/g");
    assert!(group.body.contains("Points") && group.body.contains("<svg class=\"timeline\""));
    assert_eq!(fetch("/groups/%3Cscript%3E").status, 404);
    assert!(!fetch("/groups/%3Cscript%3E").body.contains("<script>"));
    let drill = fetch(&format!("/drills/{GOOD_DRILL}"));
    assert!(drill.body.contains("signature verifies"), "{}", drill.body);
    assert!(drill.body.contains("<iframe class=\"report\" sandbox"));
    assert!(
        fetch(&format!("/drills/{TAMPERED_DRILL}"))
            .body
            .contains("does not verify")
    );
    let report = fetch(&format!("/drills/{GOOD_DRILL}/report.html"));
    assert_eq!(report.status, 200);
    assert!(
        report.headers["content-security-policy"].ends_with("sandbox"),
        "{report:?}"
    );
    assert_eq!(
        report.body,
        fs::read_to_string(
            dep.sb
                .state
                .join("daemon/drill-reports")
                .join(GOOD_DRILL)
                .join("report.html")
        )
        .unwrap()
    );
    assert!(fetch("/jobs").body.contains("<table id=\"jobs\">"));
    let js = fetch("/assets/console.js");
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(js.body.contains("EventSource"));
    assert!(fetch("/assets/console.css").body.contains("@media print"));
    let metrics = fetch("/metrics");
    assert!(metrics.body.contains("lifeline_group_rpo_seconds"), "{}", metrics.body);

    // Without authentication configured, nobody acts.
    let a = request(&addr, "POST", "/api/v1/groups/d/drill", &[("x-lifeline-csrf", "1")]);
    api_error(&a, 403, "admin role");

    for secret in dep.secrets() {
        for b in &bodies {
            assert!(!b.contains(&secret), "an answer holds a secret");
        }
    }
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// Each role and an unauthenticated caller: 401 without or with a wrong
/// token, the auditor reads and cannot act, the admin acts only same-origin,
/// a "drill now" runs the group's drill job; and no console without
/// authentication on an address other hosts reach.
#[test]
fn console_roles_and_refusals() {
    let dep = Deployment::new();
    let r = run(&[
        "--config",
        s(&dep.config),
        "daemon",
        "--site",
        "primary",
        "--http",
        "0.0.0.0:0",
    ]);
    assert_eq!(r.code, Some(EXIT_ERROR), "{}", r.stderr);
    assert!(
        r.stderr.contains("without authentication") && r.stderr.contains("http_token_file"),
        "{}",
        r.stderr
    );

    let (mut d, addr) = dep.with_tokens();
    let bearer = |t: &str| format!("Bearer {t}");
    let admin = bearer(ADMIN);
    let auditor = bearer(AUDITOR);
    let mut bodies = Vec::new();

    let a = get(&addr, "/api/v1/groups");
    api_error(&a, 401, "needs authentication");
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = request(
        &addr,
        "GET",
        "/api/v1/groups",
        &[("authorization", "Bearer wrong-token-1234567890")],
    );
    api_error(&a, 401, "not this console's");
    let page = get(&addr, "/");
    assert_eq!(page.status, 401);
    assert!(page.body.contains("name=\"token\""), "the login form: {}", page.body);
    api_error(&get(&addr, "/metrics"), 401, "needs authentication");
    api_error(&get(&addr, "/api/v1/events"), 401, "needs authentication");
    assert_eq!(get(&addr, "/assets/console.css").status, 200);

    for token in [&admin, &auditor] {
        for path in ["/api/v1/groups", "/api/v1/jobs", "/api/v1/drills", "/api/v1/groups/g"] {
            let a = request(&addr, "GET", path, &[("authorization", token)]);
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            bodies.push(a.body);
        }
        let a = request(
            &addr,
            "GET",
            &format!("/api/v1/drills/{GOOD_DRILL}"),
            &[("authorization", token)],
        );
        assert_eq!(a.json()["verification"]["verifies"], true);
        bodies.push(a.body);
        let a = request(&addr, "GET", "/", &[("authorization", token)]);
        assert_eq!(a.status, 200);
        bodies.push(a.body);
    }
    let cookie = format!("lifeline_token={AUDITOR}");
    let a = request(&addr, "GET", "/api/v1/groups", &[("cookie", &cookie)]);
    assert_eq!(a.status, 200, "a browser session's cookie: {}", a.body);

    let post = |path: &str, headers: &[(&str, &str)]| request(&addr, "POST", path, headers);
    let csrf = ("x-lifeline-csrf", "1");
    api_error(
        &post("/api/v1/groups/d/drill", &[("authorization", &auditor), csrf]),
        403,
        "auditor role reads",
    );
    api_error(&post("/api/v1/groups/d/drill", &[csrf]), 401, "needs authentication");
    api_error(
        &post("/api/v1/groups/d/drill", &[("authorization", &admin)]),
        403,
        "x-lifeline-csrf",
    );
    api_error(
        &post(
            "/api/v1/groups/d/drill",
            &[("authorization", &admin), csrf, ("origin", "http://evil.example")],
        ),
        403,
        "Origin",
    );
    api_error(
        &post("/api/v1/groups/nope/drill", &[("authorization", &admin), csrf]),
        404,
        "no group",
    );
    api_error(
        &post("/api/v1/groups/g/drill", &[("authorization", &admin), csrf]),
        409,
        "recovery site",
    );
    api_error(
        &post("/api/v1/groups/g/pause", &[("authorization", &admin), csrf]),
        409,
        "control",
    );
    assert_eq!(
        request(&addr, "GET", "/api/v1/groups/d/drill", &[("authorization", &admin)]).status,
        405
    );
    // Nothing refused reached the audit chain.
    assert_eq!(console_actions(&dep.sb.state), Vec::<Value>::new());
    let origin = format!("http://{addr}");
    let a = post(
        "/api/v1/groups/d/drill",
        &[("authorization", &admin), csrf, ("origin", &origin)],
    );
    assert_eq!(a.status, 202, "{}", a.body);
    let answer = a.json();
    assert_eq!(
        (&answer["group"], &answer["action"], &answer["by"]),
        (&json!("d"), &json!("drill requested"), &json!("admin token")),
        "{answer}"
    );
    assert!(answer["audit"].as_str().unwrap().contains("audit entry"), "{answer}");
    // On the audit chain before the answer said it was done: the action, the
    // group and who acted.
    let recorded = console_actions(&dep.sb.state);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["operator"], "admin token", "{}", recorded[0]);
    assert_eq!(
        recorded[0]["detail"],
        json!({"action": "drill now", "group": "d", "by": "admin token", "site": "primary"})
    );
    audit_verifies(&dep.config);
    // The group's drill job runs at once (and fails: its runbook is missing).
    let e = job_event(&mut d, "drill", "d", Duration::from_secs(30));
    assert_eq!(e["ok"], false, "{e}");
    assert!(e["error"].as_str().unwrap().contains("missing-runbook.toml"), "{e}");
    let jobs = request(&addr, "GET", "/api/v1/jobs", &[("authorization", &auditor)]).json();
    assert!(
        jobs["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job"] == "drill" && j["group"] == "d" && j["result"] == "error"),
        "{jobs}"
    );
    for secret in dep.secrets() {
        for b in &bodies {
            assert!(!b.contains(&secret), "an answer holds a secret");
        }
    }
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// A run waiting for approval, approved from the console: group `d`'s drill
/// (started with "drill now") runs a real runbook whose `gate` step waits for
/// an approval (meanwhile an action's audit entry goes through the drill,
/// which owns the log); `/api/v1/runs` lists it, the auditor and an unauthenticated
/// caller cannot approve, the admin does through the running planner's
/// control socket (the mechanism `lifeline approve` uses), the drill then
/// completes, and the approval is on the audit chain with who gave it.
#[test]
fn console_approves_a_run_waiting_for_approval() {
    let dep = Deployment::new();
    let rb = Runbook::new("d-drill", "d")
        .check("before", &[])
        .approval(
            "gate",
            &["before"],
            "message = \"the sandbox looks right\"\ndrill = \"run\"",
        )
        .check("after", &["gate"])
        .write(&dep.sb.path("d-drill.toml"));
    let text = fs::read_to_string(&dep.config)
        .unwrap()
        .replace(s(&dep.sb.path("missing-runbook.toml")), s(&rb));
    fs::write(&dep.config, text).unwrap();
    let (mut d, addr) = dep.with_tokens();
    let admin = format!("Bearer {ADMIN}");
    let auditor = format!("Bearer {AUDITOR}");
    let csrf = ("x-lifeline-csrf", "1");

    let runs = ok_json(&request(&addr, "GET", "/api/v1/runs", &[("authorization", &auditor)]));
    assert_eq!(runs, json!({"runs": []}), "no planner runs yet");
    let a = request(
        &addr,
        "POST",
        "/api/v1/groups/d/drill",
        &[("authorization", &admin), csrf],
    );
    assert_eq!(a.status, 202, "{}", a.body);

    // The drill's run waits at `gate`.
    let waiting = || {
        request(&addr, "GET", "/api/v1/runs", &[("authorization", &auditor)]).json()["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["waiting_for_approval"].as_array().is_some_and(|w| !w.is_empty()))
            .cloned()
    };
    assert!(
        poll_until(Duration::from_secs(60), || waiting().is_some()),
        "no run waits for approval: {}",
        d.describe()
    );
    let run_view = waiting().unwrap();
    let id = run_view["id"].as_str().unwrap().to_string();
    assert_eq!(run_view["mode"], "drill", "{run_view}");
    assert_eq!(run_view["group"], "d", "{run_view}");
    assert_eq!(run_view["runbook"], "d-drill", "{run_view}");
    let w = &run_view["waiting_for_approval"][0];
    assert_eq!(w["step"], "gate", "{run_view}");
    assert_eq!(w["message"], "the sandbox looks right", "{run_view}");
    assert_eq!(w["approve"], format!("/api/v1/runs/{id}/approve?step=gate"));
    // The jobs page lists it with its button.
    let page = request(&addr, "GET", "/jobs", &[("authorization", &auditor)]);
    assert!(
        page.body.contains(&format!(
            "<button data-action=\"/api/v1/runs/{id}/approve?step=gate\">Approve</button>"
        )),
        "{}",
        page.body
    );

    // While the drill owns the planner's catalog, an action's entry goes to
    // it over its control socket (the daemon cannot open the log then).
    let via_owner = lifeline_planner::daemon::console::actions::record(
        &dep.sb.state,
        &lifeline_planner::daemon::console::actions::ConsoleAction {
            action: "pause".into(),
            group: "d".into(),
            by: "admin:test".into(),
            site: "primary".into(),
        },
    )
    .unwrap();
    assert!(
        via_owner.starts_with("recorded `console_action` by admin:test at audit entry"),
        "recorded by the running drill: {via_owner}"
    );
    assert_eq!(
        console_actions(&dep.sb.state).last().map(|e| e["operator"].clone()),
        Some(json!("admin:test"))
    );

    let approve = format!("/api/v1/runs/{id}/approve");
    let before = audit_entries(&dep.sb.state).len();
    api_error(
        &request(&addr, "POST", &approve, &[("authorization", &auditor), csrf]),
        403,
        "auditor role reads",
    );
    api_error(&request(&addr, "POST", &approve, &[csrf]), 401, "needs authentication");
    api_error(
        &request(&addr, "POST", &approve, &[("authorization", &admin)]),
        403,
        "x-lifeline-csrf",
    );
    api_error(
        &request(
            &addr,
            "POST",
            "/api/v1/runs/20000101T000000Z-drill-nope/approve",
            &[("authorization", &admin), csrf],
        ),
        404,
        "is not running",
    );
    api_error(
        &request(
            &addr,
            "POST",
            &format!("{approve}?step=before"),
            &[("authorization", &admin), csrf],
        ),
        409,
        "not an approval",
    );
    assert_eq!(
        audit_entries(&dep.sb.state).len(),
        before,
        "a refused approval left an entry"
    );
    assert!(waiting().is_some(), "still waiting after the refusals");

    let a = request(&addr, "POST", &approve, &[("authorization", &admin), csrf]);
    assert_eq!(a.status, 200, "{}", a.body);
    let answer = a.json();
    assert_eq!(answer["step"], "gate", "{answer}");
    assert_eq!(answer["by"], "admin token (console)", "{answer}");
    // Recorded by the planner before it answered.
    let approved: Vec<Value> = audit_entries(&dep.sb.state)
        .into_iter()
        .filter(|e| e["event"] == "approved" && e["run"] == id.as_str())
        .collect();
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["step"], "gate");
    assert_eq!(approved[0]["operator"], "admin token (console)");
    // A second approval is refused by the planner.
    let again = request(
        &addr,
        "POST",
        &format!("{approve}?step=gate"),
        &[("authorization", &admin), csrf],
    );
    assert!(
        again.status == 409 || again.status == 404,
        "a second approval: {}",
        again.body
    );

    // The drill goes on to its end.
    let e = job_event(&mut d, "drill", "d", Duration::from_secs(60));
    assert_eq!(e["ok"], true, "{e}");
    assert_ne!(e["verdict"], "failed", "{e}");
    let report: Value =
        serde_json::from_slice(&fs::read(Path::new(e["report_dir"].as_str().unwrap()).join("report.json")).unwrap())
            .unwrap();
    let steps = report["steps"].to_string();
    assert!(
        steps.contains("admin token (console)"),
        "the report names the approver: {steps}"
    );
    assert_eq!(
        ok_json(&request(&addr, "GET", "/api/v1/runs", &[("authorization", &auditor)])),
        json!({"runs": []})
    );
    audit_verifies(&dep.config);
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// A TLS client of the deployment's CA, with identity `name`'s certificate
/// (none: no client certificate).
fn tls_client(tls: &Path, name: Option<&str>) -> std::sync::Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tls.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    std::sync::Arc::new(match name {
        None => b.with_no_client_auth(),
        Some(n) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(tls.join(format!("{n}.pem")))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(tls.join(format!("{n}.key"))).unwrap(),
            )
            .unwrap(),
    })
}

/// `--http-tls`: HTTPS with the console certificate `lifeline certs new
/// --console-san` mints; an `admin:NAME` certificate acts, an `auditor:NAME`
/// one (`lifeline certs new --auditor`) reads and cannot act, an agent's is no
/// console identity, and without a certificate or token nothing is served;
/// the admin pauses a group replicated with a control address (state
/// `paused`, its points skipped) and resumes it.
#[test]
fn console_over_https_with_client_certificates() {
    let dep = Deployment::new();
    let (ca, tls) = (dep.sb.path("ca"), dep.sb.path("tls"));
    run(&[
        "certs",
        "new",
        "--ca-dir",
        s(&ca),
        "--out",
        s(&tls),
        "--console-san",
        "127.0.0.1",
        "--admin",
        "ops",
        "--auditor",
        "kim",
        "--agent",
        "a@t",
    ])
    .ok()
    .stdout_has(&["console.pem", "kim.pem"]);
    let mut text = fs::read_to_string(&dep.config).unwrap();
    // `p` is replicated with a control address (the agent `a`'s identity):
    // the console may pause and resume it.
    write_random_file(&dep.sb.path("p.img"), MIB, 4);
    text.push_str(&format!(
        "\n[groups.p]\nsecondary = \"vault\"\nvolumes = {{ v = \"{}\" }}\nschedule = \"* * * * * *\"\nrpo = \"30s\"\n\
         control = \"127.0.0.1:0\"\nagent = \"a\"\n\n[tls]\ndir = \"{}\"\n",
        s(&dep.sb.path("p.img")),
        s(&tls)
    ));
    fs::write(&dep.config, text).unwrap();
    let (mut d, addr) = dep.daemon(&["--http-tls"]);
    assert!(
        d.stdout().contains(&format!("console on https://{addr}/")),
        "{}",
        d.stdout()
    );

    let (none, admin, auditor, agent) = (
        tls_client(&tls, None),
        tls_client(&tls, Some("ops")),
        tls_client(&tls, Some("kim")),
        tls_client(&tls, Some("a")),
    );
    api_error(
        &http::request_tls(&none, &addr, "GET", "/api/v1/groups", &[]),
        401,
        "needs authentication",
    );
    api_error(
        &http::request_tls(&agent, &addr, "GET", "/api/v1/groups", &[]),
        401,
        "no console identity",
    );
    for who in [&admin, &auditor] {
        let a = http::request_tls(who, &addr, "GET", "/api/v1/groups", &[]);
        assert_eq!(a.status, 200, "{}", a.body);
        let a = http::request_tls(who, &addr, "GET", &format!("/drills/{GOOD_DRILL}"), &[]);
        assert!(a.body.contains("signature verifies"), "{}", a.body);
    }
    let csrf = ("x-lifeline-csrf", "1");
    api_error(
        &http::request_tls(&auditor, &addr, "POST", "/api/v1/groups/d/drill", &[csrf]),
        403,
        "auditor role reads",
    );
    let a = http::request_tls(&admin, &addr, "POST", "/api/v1/groups/d/drill", &[csrf]);
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.json()["by"], "admin:ops");
    job_event(&mut d, "drill", "d", Duration::from_secs(30));
    let recorded = console_actions(&dep.sb.state);
    assert_eq!(recorded.len(), 1, "the auditor's attempt left no entry: {recorded:?}");
    assert_eq!(recorded[0]["operator"], "admin:ops", "the certificate's identity");

    // Pause and resume a group's replication: its state, and its points.
    let p = |c| http::request_tls(c, &addr, "GET", "/api/v1/groups/p", &[]).json();
    assert!(
        poll_until(Duration::from_secs(30), || p(&auditor)["state"] == "meeting_sla"),
        "{}",
        p(&auditor)
    );
    assert_eq!(p(&auditor)["replication"]["controllable"], true);
    api_error(
        &http::request_tls(&auditor, &addr, "POST", "/api/v1/groups/p/pause", &[csrf]),
        403,
        "auditor",
    );
    let a = http::request_tls(&admin, &addr, "POST", "/api/v1/groups/p/pause", &[csrf]);
    assert_eq!(a.status, 202, "{}", a.body);
    let g = p(&auditor);
    assert_eq!(
        (&g["state"], &g["state_text"]),
        (&json!("paused"), &json!("Replication paused")),
        "{g}"
    );
    assert_eq!(g["replication"]["state"], "paused");
    let skipped = job_event(&mut d, "point", "p", Duration::from_secs(30));
    let skipped = if skipped["paused"] == true {
        skipped
    } else {
        // A cycle that had started before the pause.
        job_event(&mut d, "point", "p", Duration::from_secs(30))
    };
    assert_eq!(skipped["paused"], true, "{skipped}");
    let seq = p(&auditor)["last_point"]["seq"].clone();
    let a = http::request_tls(&admin, &addr, "POST", "/api/v1/groups/p/resume", &[csrf]);
    assert_eq!(a.status, 202, "{}", a.body);
    let recorded: Vec<(Value, Value, Value)> = console_actions(&dep.sb.state)
        .into_iter()
        .map(|e| {
            (
                e["detail"]["action"].clone(),
                e["detail"]["group"].clone(),
                e["operator"].clone(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (json!("drill now"), json!("d"), json!("admin:ops")),
            (json!("pause"), json!("p"), json!("admin:ops")),
            (json!("resume"), json!("p"), json!("admin:ops")),
        ],
        "the auditor's refused pause left no entry"
    );
    audit_verifies(&dep.config);
    // Skipped cycles may still end meanwhile; the next committed point follows.
    let e = d
        .wait_for_line(Duration::from_secs(30), |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["event"] == "job" && v["job"] == "point" && v["group"] == "p" && v["seq"].is_u64())
        })
        .unwrap_or_else(|| panic!("no point of p after the resume: {}", d.describe()));
    let e: Value = serde_json::from_str(&e).unwrap();
    assert!(e["seq"].as_u64().unwrap() > seq.as_u64().unwrap(), "{e}");
    assert_eq!(p(&auditor)["state"], "meeting_sla");
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// Where screenshots are kept.
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A real headless Chromium: signs in with the admin token through the form,
/// reads each group's state as the API gives it, sees the page update live
/// from the event stream (a state change included) without reloading, no
/// request leaves 127.0.0.1, no script error, the drill page says the
/// signature verifies, a real drill started from the page runs and shows on
/// the page with its verdict (passed), and the overview reads with
/// JavaScript disabled.
#[test]
fn console_in_a_real_browser() {
    let Some(chromium) = crate::common::cdp::chromium() else {
        eprintln!(
            "SKIPPED console_in_a_real_browser: chromium is not installed (.ci/run installs it: apt-get install chromium)"
        );
        return;
    };
    let dep = Deployment::new();
    // `shop` is drilled for real on this site: a receiver holds its point
    // (written by its agent identity), and its drill runbook promotes the
    // point into the sandbox and checks the volume against the point's hash.
    let site = Site::new(&["db1@acme", "planner@acme"]);
    let receiver = site.receiver(&["db1=shop"]);
    let shop = dep.sb.path("shop.img");
    write_random_file(&shop, MIB, 5);
    site.client(&receiver, "db1", &dep.sb.key)
        .backup_json("shop", &[("db", &shop)]);
    let rb = Runbook::new("shop-drill", "shop")
        .step("promote", "volume.promote", "")
        .step("verify", "check.volume", "volume = \"db\"\nafter = [\"promote\"]")
        .write(&dep.sb.path("shop-drill.toml"));
    let mut text = fs::read_to_string(&dep.config).unwrap().replace(
        "[sites.primary]\n",
        &format!("[sites.primary]\nreceiver = \"{}\"\n", receiver.url()),
    );
    text.push_str(&format!(
        "\n[groups.shop]\nsecondary = \"primary\"\ntenant = \"acme\"\nvolumes = {{ db = \"{vol}\" }}\n\
         targets = {{ db = \"{target}\" }}\nrpo = \"1h\"\nrto = \"5m\"\ndrill_schedule = \"0 0 0 1 1 *\"\n\
         drill_runbook = \"{rb}\"\n\n[tls]\ndir = \"{tls}\"\nidentity = \"planner\"\n",
        vol = s(&shop),
        target = s(&dep.sb.path("recovered/shop.img")),
        rb = s(&rb),
        tls = s(&site.tls),
    ));
    fs::write(&dep.config, text).unwrap();
    let (mut d, addr) = dep.with_tokens();
    job_event(&mut d, "point", "g", Duration::from_secs(30));
    let base = format!("http://{addr}");
    let mut b = crate::common::cdp::Browser::start(&chromium);

    b.navigate(&format!("{base}/login"));
    b.eval(&format!(
        "document.querySelector('input[name=token]').value = '{ADMIN}'; document.querySelector('form').submit(); true"
    ));
    b.wait_event("Page.loadEventFired", Duration::from_secs(30))
        .expect("the sign-in lands on the overview");
    b.navigate(&format!("{base}/"));
    let api = request(
        &addr,
        "GET",
        "/api/v1/groups",
        &[("authorization", &format!("Bearer {ADMIN}"))],
    )
    .json();
    let rows = b.eval(
        "[...document.querySelectorAll('#groups tbody tr[data-group]')].map(r => ({name: r.dataset.group, \
         state: r.querySelector('[data-field=state]').dataset.state, \
         text: r.querySelector('[data-field=state]').innerText.trim(), \
         rpo: r.querySelector('[data-field=rpo]').innerText}))",
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), api.as_array().unwrap().len(), "{rows:?}");
    for r in rows {
        let g = by_name(&api, r["name"].as_str().unwrap());
        if g["name"] != "slow" {
            // `slow` may cross its objective between the two reads.
            assert_eq!(r["state"], g["state"], "{r} vs {g}");
            assert_eq!(r["text"], g["state_text"], "{r} vs {g}");
        }
        if let Some(o) = g["rpo_objective_seconds"].as_f64() {
            let shown = if o < 10.0 {
                format!("/ {o:.1} s")
            } else if o < 60.0 {
                format!("/ {o:.0} s")
            } else {
                // `shop`'s hour.
                format!("/ {} h {} min", (o / 3600.0).floor(), ((o % 3600.0) / 60.0).floor())
            };
            assert!(r["rpo"].as_str().unwrap().contains(&shown), "{r}");
        }
    }
    let shot = b.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");
    fs::write(artifact("overview.png"), &shot).unwrap();

    // Live: the page counts events and refreshes rows without reloading;
    // `slow` turns rpo_not_met on the page once its objective lapses.
    b.eval("window.__notReloaded = true; true");
    let n0 = b.eval("Number(document.getElementById('live').dataset.events)");
    b.wait_true(
        &format!("window.__notReloaded === true && Number(document.getElementById('live').dataset.events) > {n0}"),
        Duration::from_secs(20),
        "the page counts a job event",
    );
    b.wait_true(
        "window.__notReloaded === true && document.querySelector('tr[data-group=slow] [data-field=state]').dataset.state === 'rpo_not_met' \
         && document.querySelector('tr[data-group=slow] [data-field=state]').innerText.trim() === 'RPO not meeting SLA'",
        Duration::from_secs(30),
        "slow's row turns rpo_not_met live",
    );
    assert!(
        b.eval("document.getElementById('live').textContent")
            .as_str()
            .unwrap()
            .starts_with("live"),
        "the live indicator"
    );

    // The drill page embeds the signed report and says it verifies.
    b.navigate(&format!("{base}/drills/{GOOD_DRILL}"));
    let text = b.eval("document.body.innerText");
    assert!(text.as_str().unwrap().contains("signature verifies"), "{text}");
    b.wait_true(
        "document.querySelector('iframe.report') !== null",
        Duration::from_secs(5),
        "the report frame",
    );

    // A drill started from the page: the button, the real drill's job on the
    // jobs page, then the drill with its verdict on the group's page.
    b.navigate(&format!("{base}/groups/shop"));
    b.eval("document.querySelector('button[data-action$=\"/drill\"]').click(); true");
    b.wait_true(
        "document.querySelector('.action-result').textContent === 'drill requested'",
        Duration::from_secs(10),
        "the action's answer on the page",
    );
    let e = job_event(&mut d, "drill", "shop", Duration::from_secs(120));
    assert_eq!(e["ok"], true, "{e}");
    assert_eq!(e["verdict"], "passed", "{e}");
    let drill_id = Path::new(e["report_dir"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    b.navigate(&format!("{base}/jobs"));
    b.wait_true(
        "[...document.querySelectorAll('#jobs tr')].some(r => r.innerText.includes('drill') && r.innerText.includes('shop') \
         && r.querySelector('.result.ok') !== null && r.innerText.includes('verdict passed'))",
        Duration::from_secs(10),
        "the drill on the jobs page with its result",
    );
    b.navigate(&format!("{base}/groups/shop"));
    b.wait_true(
        &format!(
            "[...document.querySelectorAll('tr')].some(r => r.querySelector('a[href=\"/drills/{drill_id}\"]') !== null \
             && r.innerText.includes('PASSED') && r.innerText.includes('verifies'))"
        ),
        Duration::from_secs(10),
        "the drill from the page on the group's page, passed, its signature verifying",
    );
    b.navigate(&format!("{base}/drills/{drill_id}"));
    let text = b.eval("document.body.innerText");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("signature verifies") && text.contains("verdict PASSED"),
        "{text}"
    );
    fs::write(artifact("drill.png"), b.screenshot()).unwrap();

    // Nothing left 127.0.0.1, and no script error or CSP violation.
    let requests: Vec<String> = b
        .events
        .iter()
        .filter(|(m, _)| m == "Network.requestWillBeSent")
        .map(|(_, p)| p["request"]["url"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(requests.iter().any(|u| u.ends_with("/api/v1/events")), "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|u| u.ends_with(&format!("/drills/{GOOD_DRILL}/report.html"))),
        "{requests:?}"
    );
    for u in &requests {
        assert!(
            u.starts_with(&format!("{base}/")) || u.starts_with("data:") || u == "about:blank",
            "a request left the console: {u}"
        );
    }
    let errors: Vec<&Value> = b
        .events
        .iter()
        .filter(|(m, p)| {
            m == "Runtime.exceptionThrown"
                || (m == "Runtime.consoleAPICalled" && p["type"] == "error")
                || (m == "Log.entryAdded" && p["entry"]["level"] == "error" && p["entry"]["source"] != "network")
        })
        .map(|(_, p)| p)
        .collect();
    assert!(errors.is_empty(), "script errors: {errors:?}");

    // Without JavaScript the overview still reads.
    b.call("Emulation.setScriptExecutionDisabled", json!({"value": true}));
    b.navigate(&format!("{base}/"));
    let html = b.outer_html();
    assert!(html.contains("live updates off"), "the script did not run");
    assert!(
        html.contains("data-group=\"g\"") && html.contains("Meeting SLA"),
        "{html}"
    );
    fs::write(artifact("overview-no-js.png"), b.screenshot()).unwrap();
    drop(b);
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// The processes (other than this one) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then_some((pid, cmd))
        })
        .collect()
}

/// `lifeline demo --console 127.0.0.1:0`, the real binary: once the demo's
/// drill ran, the console answers with the demo's group and a state, the
/// drill with its verdict and a verifying signature; Ctrl-C then stops it with
/// exit 0 and tears the demo down: none of its processes (receivers, agent,
/// workload) is left, nothing is mounted under its temporary directory, and
/// the temporary directory itself is gone.
#[test]
fn demo_console_answers_then_ctrl_c_tears_the_demo_down() {
    let cwd = tempfile::tempdir().unwrap();
    // The demo's temporary directories go here, so that what it leaves shows.
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Background::spawn_in(
        cwd.path(),
        &[("TMPDIR", s(tmp.path()))],
        &["demo", "--size-mib", "16", "--console", "127.0.0.1:0"],
    );
    let line = demo
        .wait_for_line(Duration::from_secs(30), |l| l.contains("(local testbed in "))
        .unwrap_or_else(|| panic!("the demo did not start its testbed: {}", demo.describe()));
    let testbed = line
        .split("(local testbed in ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    assert!(testbed.starts_with(s(tmp.path())), "{testbed} is not under TMPDIR");
    let line = demo
        .wait_for_line(Duration::from_secs(40), |l| {
            l.trim_start().starts_with("console on http://")
        })
        .unwrap_or_else(|| panic!("the demo's console did not start: {}", demo.describe()));
    let addr = line
        .trim()
        .trim_start_matches("console on http://")
        .trim_end_matches('/')
        .to_string();
    let running = processes_mentioning(&testbed);
    assert!(
        !running.is_empty(),
        "the demo's receivers and agent run from {testbed}: {}",
        demo.describe()
    );

    // The demo's group with a state, and its points.
    const STATES: [&str; 6] = [
        "meeting_sla",
        "rpo_not_met",
        "drill_overdue",
        "paused",
        "syncing",
        "error",
    ];
    let groups = ok_json(&get(&addr, "/api/v1/groups"));
    let list = groups.as_array().unwrap();
    assert!(!list.is_empty(), "{groups}");
    for g in list {
        assert!(
            STATES.contains(&g["state"].as_str().unwrap_or("")),
            "a group without a state: {g}"
        );
        assert!(g["state_text"].is_string(), "{g}");
    }
    let app = by_name(&groups, "app");
    assert!(app["last_point"]["seq"].as_u64().unwrap() >= 1, "{app}");

    // The demo's drill, with its verdict and a verifying signature.
    let mut drills = Value::Null;
    assert!(
        poll_until(Duration::from_secs(15), || {
            drills = get(&addr, "/api/v1/drills").json();
            drills.as_array().is_some_and(|d| !d.is_empty())
        }),
        "no drill on the console: {drills}"
    );
    let drill = &drills[0];
    assert_eq!(drill["group"], "app", "{drill}");
    assert!(
        ["passed", "passed_with_conditions"].contains(&drill["verdict"].as_str().unwrap()),
        "{drill}"
    );
    assert_eq!(drill["signature_verifies"], true, "{drill}");
    let one = ok_json(&get(
        &addr,
        &format!("/api/v1/drills/{}", drill["id"].as_str().unwrap()),
    ));
    assert_eq!(one["verification"]["verifies"], true, "{one}");
    assert!(get(&addr, "/").body.contains("data-group=\"app\""));

    // Ctrl-C: exit 0, and nothing of the demo is left but ./lifeline-demo.
    demo.signal("INT");
    let r = demo.finish(Duration::from_secs(30));
    assert_eq!(r.code, Some(EXIT_OK), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("demo finished"), "{}", r.stdout);
    let left = processes_mentioning(&testbed);
    assert!(left.is_empty(), "processes of the demo left running: {left:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(s(tmp.path())),
        "a mount left under the demo's temporary directory: {mounts}"
    );
    assert!(!Path::new(&testbed).exists(), "{testbed} was not removed");
    let tmp_left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(tmp_left.is_empty(), "temporary files left: {tmp_left:?}");
    let cwd_left: Vec<String> = fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cwd_left, ["lifeline-demo"]);
    assert!(get_refused(&addr), "the console still answers after the demo exited");
}

/// Whether nothing listens on `addr` any more.
fn get_refused(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}
