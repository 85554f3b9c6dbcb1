//! `lifeline daemon`: the real binary on second-level schedules.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::exposition::{Sample, parse_exposition};
use crate::common::*;

const MIB: u64 = 1 << 20;

struct Config<'a> {
    sb: &'a Sandbox,
    volume: &'a Path,
    schedule: &'a str,
    keep_last: u32,
}

impl Config<'_> {
    fn write(&self, path: &Path) {
        let sb = self.sb;
        fs::write(
            path,
            format!(
                r#"key_file = "{key}"
state_dir = "{state}"

[sites.primary]

[sites.vault]
repo = "{repo}"

[groups.g]
secondary = "vault"
volumes = {{ v = "{volume}" }}
schedule = "{schedule}"
prune_schedule = "*/2 * * * * *"
rpo = "30s"

[groups.g.retention]
keep_last = {keep_last}

[daemon]
gc_schedule = "*/3 * * * * *"
gc_grace = "0s"
verify_schedule = "*/3 * * * * *"
"#,
                key = s(&sb.key),
                state = s(&sb.state),
                repo = s(&sb.repo),
                volume = s(self.volume),
                schedule = self.schedule,
                keep_last = self.keep_last,
            ),
        )
        .unwrap();
    }
}

fn events(d: &mut Background) -> Vec<Value> {
    crate::common::events(&d.stdout())
}

/// Waits for the next JSON event that satisfies `pred`.
#[track_caller]
fn next_event(d: &mut Background, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    match d.wait_for_line(Duration::from_secs(30), |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
    }) {
        Some(l) => serde_json::from_str(&l).unwrap(),
        None => panic!("no {what} within 30 s: {}", d.describe()),
    }
}

fn is_job(v: &Value, job: &str) -> bool {
    v["event"] == "job" && v["job"] == job
}

pub(crate) fn scrape(addr: &str) -> Vec<Sample> {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    parse_exposition(body).unwrap_or_else(|e| panic!("unparsable metrics ({e}):\n{body}"))
}

pub(crate) fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn seqs(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// Points every second, prune every 2 s to keep-last, GC and verify every 3 s:
/// the repository ends with exactly what the last prune kept plus what came
/// after it; SIGHUP changes the policy; metrics are served and parse; SIGTERM
/// ends it cleanly after the running jobs.
#[test]
fn daemon_takes_points_prunes_to_exactly_the_policy_and_serves_metrics() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 2 * MIB, 1);
    let cfg = sb.path("lifeline.toml");
    let mut c = Config {
        sb: &sb,
        volume: &v,
        schedule: "* * * * * *",
        keep_last: 3,
    };
    c.write(&cfg);
    let mut d = Background::spawn(&[
        "--config",
        s(&cfg),
        "daemon",
        "--site",
        "primary",
        "--json",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = d.metrics_address();
    let jobs = next_event(&mut d, "the job list", |v| v["event"] == "jobs");
    let keys: BTreeSet<&str> = job_names(&jobs).into_iter().collect();
    assert_eq!(keys, BTreeSet::from(["point:g", "prune:g", "gc", "verify"]), "{jobs}");
    // A few points, each of different content.
    for i in 0..4u64 {
        let p = next_event(&mut d, "a point", |v| is_job(v, "point"));
        assert_eq!(p["ok"], true, "{p}");
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, (i % 8) * 65536, 65536, 100 + i);
    }
    let prune = next_event(&mut d, "a prune that removed points", |v| {
        is_job(v, "prune") && v["removed"].as_array().is_some_and(|r| !r.is_empty())
    });
    assert_eq!(prune["ok"], true, "{prune}");
    let gc = next_event(&mut d, "a garbage collection", |v| is_job(v, "gc"));
    assert_eq!(gc["ok"], true, "{gc}");
    let verify = next_event(&mut d, "a verify", |v| is_job(v, "verify"));
    assert_eq!(verify["ok"], true, "{verify}");

    // Metrics over HTTP.
    let m = scrape(&addr);
    let g = [("group", "g")];
    assert!(sample(&m, "lifeline_group_last_point_timestamp_seconds", &g).unwrap() > 1.7e9);
    let rpo = sample(&m, "lifeline_group_rpo_seconds", &g).unwrap();
    assert!((0.0..30.0).contains(&rpo), "rpo {rpo}");
    assert_eq!(sample(&m, "lifeline_group_rpo_objective_seconds", &g), Some(30.0));
    assert!(sample(&m, "lifeline_group_bytes_sent_total", &g).unwrap() > 0.0);
    // Stored bytes are the sealed bytes written (as sent), not the plaintext
    // that was new: with random data, sealing adds headers and the index.
    let stored = sample(&m, "lifeline_group_bytes_stored_total", &g).unwrap();
    let new = sample(&m, "lifeline_group_bytes_new_total", &g).unwrap();
    // (Each cycle adds sent, then stored, then new: a scrape in between sees sent >= stored.)
    let sent = sample(&m, "lifeline_group_bytes_sent_total", &g).unwrap();
    assert!(stored <= sent, "stored {stored}, sent {sent}");
    assert!(new > 0.0 && stored > new, "stored {stored}, new {new}");
    assert!(sample(&m, "lifeline_group_cycle_duration_seconds", &g).is_some());
    assert!(
        sample(
            &m,
            "lifeline_job_runs_total",
            &[("job", "point"), ("group", "g"), ("result", "ok")]
        )
        .unwrap()
            >= 4.0
    );
    assert!(sample(&m, "lifeline_job_duration_seconds_count", &[("job", "prune")]).unwrap() >= 1.0);
    assert!(sample(&m, "lifeline_prune_points_removed_total", &g).unwrap() >= 1.0);
    assert_eq!(sample(&m, "lifeline_verify_clean", &[]), Some(1.0));

    // SIGHUP: a new policy from the next prune on.
    c.keep_last = 2;
    c.write(&cfg);
    d.signal("HUP");
    next_event(&mut d, "the reloaded job list", |v| v["event"] == "jobs");
    let prune = next_event(&mut d, "a prune under the new policy", |v| is_job(v, "prune"));
    let kept = seqs(&prune["kept"]);
    let mut all: Vec<u64> = kept.iter().chain(seqs(&prune["removed"]).iter()).copied().collect();
    all.sort_unstable();
    let mut kept_sorted = kept.clone();
    kept_sorted.sort_unstable();
    assert_eq!(
        kept_sorted,
        all[all.len() - 2..],
        "keep-last 2 keeps the two newest: {prune}"
    );
    let scrape_after = scrape(&addr);
    assert!(sample(&scrape_after, "lifeline_daemon_config_reloads_total", &[]).unwrap() >= 1.0);

    // SIGTERM: stops after the running jobs.
    d.signal("TERM");
    let run = d.finish(Duration::from_secs(30));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let evs: Vec<Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    assert!(evs.iter().any(|v| v["event"] == "stopped"), "{}", run.stdout);
    // Exactly what the last prune kept, plus the points taken after it.
    let last_prune = evs
        .iter()
        .rev()
        .find(|v| is_job(v, "prune") && v["ok"] == true)
        .unwrap();
    let decided: BTreeSet<u64> = seqs(&last_prune["kept"])
        .into_iter()
        .chain(seqs(&last_prune["removed"]))
        .collect();
    let newest_decided = *decided.iter().max().unwrap();
    let mut want: BTreeSet<u64> = seqs(&last_prune["kept"]).into_iter().collect();
    want.extend(
        evs.iter()
            .filter(|v| is_job(v, "point") && v["ok"] == true)
            .map(|v| v["seq"].as_u64().unwrap())
            .filter(|s| *s > newest_decided),
    );
    let have: BTreeSet<u64> = sb.points().iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(have, want, "points left: {have:?}; last prune: {last_prune}");
    // What is left is whole.
    sb.verify(true).ok();
}

/// After downtime, a schedule that was missed many times runs once at start,
/// then on its schedule again.
#[test]
fn a_missed_schedule_runs_once_after_downtime() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, MIB, 2);
    let cfg = sb.path("lifeline.toml");
    // Every minute at second 0 (missed 60 times over the hour of "downtime").
    Config {
        sb: &sb,
        volume: &v,
        schedule: "0 * * * * *",
        keep_last: 10,
    }
    .write(&cfg);
    let runs = sb.state.join("daemon").join("primary.last-runs.json");
    fs::create_dir_all(runs.parent().unwrap()).unwrap();
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    fs::write(&runs, format!(r#"{{"point:g": "{hour_ago}"}}"#)).unwrap();
    let mut d = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "primary", "--json"]);
    let p = next_event(&mut d, "the missed point", |v| is_job(v, "point"));
    assert_eq!(p["ok"], true, "{p}");
    std::thread::sleep(Duration::from_secs(2));
    let points: Vec<Value> = events(&mut d).into_iter().filter(|v| is_job(v, "point")).collect();
    // The next one is due at a minute boundary, not now: unless the test ran
    // across one, exactly one point was taken.
    let now = chrono::Utc::now();
    if chrono::Timelike::second(&now) >= 3 {
        assert_eq!(points.len(), 1, "{points:?}");
    }
    let recorded: Value = serde_json::from_slice(&fs::read(&runs).unwrap()).unwrap();
    assert_ne!(recorded["point:g"].as_str().unwrap(), hour_ago, "the run was recorded");
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// Two daemons, the product's shape: the recovery site serves its receiver,
/// prunes and collects garbage every second with no grace while the primary's
/// daemon replicates every second over mutual TLS. Nothing is lost: the newest
/// point restores bit for bit through the receiver, and the repository verifies
/// deeply with the key once the receiver stopped.
#[test]
fn two_daemons_replicate_while_the_receiver_site_prunes_and_collects() {
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r);
    let (ca, tls, repo) = (p("ca"), p("tls"), p("repo"));
    certs(&ca, &tls, true, &["a@t"], &["ops"]).ok();
    let key = p("t.key");
    run(&["key", "new", "--out", s(&key)]).ok();
    let v = p("v.img");
    write_random_file(&v, 3 * MIB, 5);
    let config = |state: &str, receiver: Option<&str>| {
        format!(
            r#"key_file = "{key}"
state_dir = "{state}"

[tls]
dir = "{tls}"
identity = "a"

[sites.primary]

[sites.dr]
listen = "127.0.0.1:0"
repo = "{repo}"
allow = {{ a = ["g"] }}
{receiver}

[groups.g]
secondary = "dr"
tenant = "t"
volumes = {{ v = "{v}" }}
schedule = "* * * * * *"
prune_schedule = "* * * * * *"
rpo = "10s"

[groups.g.retention]
keep_last = 2

[daemon]
gc_schedule = "* * * * * *"
gc_grace = "0s"
"#,
            key = s(&key),
            state = s(&p(state)),
            tls = s(&tls),
            repo = s(&repo),
            v = s(&v),
            receiver = receiver.map(|u| format!("receiver = \"{u}\"")).unwrap_or_default(),
        )
    };
    let dr_cfg = p("dr.toml");
    fs::write(&dr_cfg, config("state-dr", None)).unwrap();
    let mut dr = Background::spawn(&["--config", s(&dr_cfg), "daemon", "--site", "dr", "--json"]);
    let addr = dr
        .wait_for_line(Duration::from_secs(20), |l| l.starts_with("listening on "))
        .unwrap_or_else(|| panic!("the receiver did not start: {}", dr.describe()))
        .trim_start_matches("listening on ")
        .to_string();
    let url = format!("https://{addr}");
    let jobs = next_event(&mut dr, "the job list", |v| v["event"] == "jobs");
    let keys: BTreeSet<&str> = job_names(&jobs).into_iter().collect();
    assert_eq!(keys, BTreeSet::from(["prune:g", "gc"]), "{jobs}");
    let primary_cfg = p("primary.toml");
    fs::write(&primary_cfg, config("state-primary", Some(&url))).unwrap();
    let mut primary = Background::spawn(&["--config", s(&primary_cfg), "daemon", "--site", "primary", "--json"]);
    let jobs = next_event(&mut primary, "the job list", |v| v["event"] == "jobs");
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    // Changing content for a while, then two points of stable content.
    let mut ok = 0;
    for i in 0..8u64 {
        let e = next_event(&mut primary, "a point", |v| is_job(v, "point"));
        if e["ok"] == true {
            ok += 1;
        }
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, (i % 12) * 262_144, 262_144, 200 + i);
    }
    assert!(ok >= 4, "most cycles commit: {}", primary.describe());
    let mut stable = 0;
    while stable < 2 {
        if next_event(&mut primary, "a point", |v| is_job(v, "point"))["ok"] == true {
            stable += 1;
        }
    }
    primary.signal("TERM");
    assert_eq!(primary.finish(Duration::from_secs(30)).code, Some(0));
    // The receiver site collected while the points arrived.
    let gcs: Vec<Value> = events(&mut dr).into_iter().filter(|e| is_job(e, "gc")).collect();
    assert!(gcs.iter().all(|e| e["ok"] == true), "{gcs:?}");
    let removed: u64 = gcs
        .iter()
        .flat_map(|e| e["reports"].as_array().unwrap().iter())
        .map(|r| r["objects_removed"].as_u64().unwrap())
        .sum();
    assert!(
        gcs.len() >= 3 && removed > 0,
        "collections ran and removed objects: {gcs:?}"
    );
    let out = p("out.img");
    run(&[
        "restore",
        "--repo",
        &url,
        "--tls-dir",
        s(&tls),
        "--identity",
        "a",
        "--key-file",
        s(&key),
        "--group",
        "g",
        "--point",
        "latest",
        "--volume",
        "v",
        "--to",
        s(&out),
    ])
    .ok();
    assert!(
        fs::read(&out).unwrap() == fs::read(&v).unwrap(),
        "the newest point restores bit for bit"
    );
    dr.signal("TERM");
    assert_eq!(dr.finish(Duration::from_secs(30)).code, Some(0));
    run(&["verify", "--repo", s(&repo), "--key-file", s(&key), "--tenant", "t"]).ok();
}

/// With `max_concurrent = 1`, two groups of one tenant whose cycles take
/// longer than their one-second schedule never run at the same time, and
/// neither starves.
#[test]
fn the_per_tenant_limit_serialises_a_tenants_operations() {
    let sb = Sandbox::new();
    let (v1, v2) = (sb.path("v1.img"), sb.path("v2.img"));
    write_random_file(&v1, MIB, 7);
    write_random_file(&v2, MIB, 8);
    let cfg = sb.path("lifeline.toml");
    let group = |name: &str, v: &Path| {
        format!(
            "[groups.{name}]\nsecondary = \"vault\"\nvolumes = {{ v = \"{}\" }}\nschedule = \"* * * * * *\"\nfreeze = \"sleep 0.7\"\nthaw = \"true\"\n\n",
            s(v)
        )
    };
    fs::write(
        &cfg,
        format!(
            "key_file = \"{}\"\nstate_dir = \"{}\"\n\n[daemon]\nmax_concurrent = 1\n\n[sites.primary]\n\n[sites.vault]\nrepo = \"{}\"\n\n{}{}",
            s(&sb.key),
            s(&sb.state),
            s(&sb.repo),
            group("g1", &v1),
            group("g2", &v2)
        ),
    )
    .unwrap();
    let mut d = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "primary", "--json"]);
    for _ in 0..6 {
        let e = next_event(&mut d, "a point", |v| is_job(v, "point"));
        assert_eq!(e["ok"], true, "{e}");
    }
    d.signal("TERM");
    let run = d.finish(Duration::from_secs(30));
    let mut spans: Vec<(f64, f64, String)> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| is_job(v, "point") && v["ok"] == true)
        .map(|v| {
            let end = chrono::DateTime::parse_from_rfc3339(v["at"].as_str().unwrap()).unwrap();
            let end = end.timestamp_millis() as f64 / 1000.0;
            (
                end - v["secs"].as_f64().unwrap(),
                end,
                v["group"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        // 50 ms of slack: the end instant is taken just after the job's own clock stops.
        assert!(w[1].0 >= w[0].1 - 0.05, "operations of one tenant overlapped: {w:?}");
    }
    for g in ["g1", "g2"] {
        assert!(spans.iter().filter(|s| s.2 == g).count() >= 2, "{g} starved: {spans:?}");
    }
}

/// A scheduled drill runs `lifeline drill` as a child process on the group's
/// recovery site; a drill that cannot run is a failed job with the drill's own
/// error, counted in the metrics, and the daemon goes on.
#[test]
fn a_scheduled_drill_that_cannot_run_is_reported_and_the_daemon_goes_on() {
    let sb = Sandbox::new();
    let cfg = sb.path("lifeline.toml");
    let v = sb.path("v.img");
    write_random_file(&v, MIB, 9);
    fs::write(
        &cfg,
        format!(
            "key_file = \"{}\"\nstate_dir = \"{}\"\n[daemon]\nmetrics = \"127.0.0.1:0\"\n\
             [sites.primary]\n[sites.vault]\nrepo = \"{}\"\n\
             [groups.g]\nsecondary = \"vault\"\nvolumes = {{ v = \"{}\" }}\n\
             drill_schedule = \"* * * * * *\"\ndrill_runbook = \"{}\"\n",
            s(&sb.key),
            s(&sb.state),
            s(&sb.repo),
            s(&v),
            s(&sb.path("missing-runbook.toml"))
        ),
    )
    .unwrap();
    // The metrics address comes from the file's [daemon] this time.
    let mut d = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "vault", "--json"]);
    let addr = d.metrics_address();
    for _ in 0..2 {
        let e = next_event(&mut d, "a drill", |v| is_job(v, "drill"));
        assert_eq!(e["ok"], false, "{e}");
        assert!(e["error"].as_str().unwrap().contains("missing-runbook.toml"), "{e}");
    }
    let m = scrape(&addr);
    assert!(sample(&m, "lifeline_group_errors_total", &[("group", "g")]).unwrap() >= 2.0);
    assert!(sample(&m, "lifeline_job_runs_total", &[("job", "drill"), ("result", "error")]).unwrap() >= 2.0);
    d.signal("TERM");
    assert_eq!(d.finish(Duration::from_secs(30)).code, Some(0));
}

/// The daemon retries a point like the agent does: while the recovery site's
/// receiver is down, the point job retries transient failures (within the
/// group's `retry_for`) and commits once the receiver is up, in the same job.
#[test]
fn the_daemon_retries_a_point_while_the_receiver_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let p = |r: &str| dir.path().join(r);
    let (ca, tls, repo) = (p("ca"), p("tls"), p("repo"));
    certs(&ca, &tls, true, &["a@t"], &["ops"]).ok();
    let key = p("t.key");
    run(&["key", "new", "--out", s(&key)]).ok();
    let v = p("v.img");
    write_random_file(&v, MIB, 6);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = |state: &str| {
        format!(
            r#"key_file = "{key}"
state_dir = "{state}"

[tls]
dir = "{tls}"
identity = "a"

[sites.primary]

[sites.dr]
listen = "127.0.0.1:{port}"
repo = "{repo}"
allow = {{ a = ["g"] }}
receiver = "https://127.0.0.1:{port}"

[groups.g]
secondary = "dr"
tenant = "t"
volumes = {{ v = "{v}" }}
schedule = "1h"
retry_for = "2m"
"#,
            key = s(&key),
            state = s(&p(state)),
            tls = s(&tls),
            repo = s(&repo),
            v = s(&v),
        )
    };
    let primary_cfg = p("primary.toml");
    fs::write(&primary_cfg, config("state-primary")).unwrap();
    let mut primary = Background::spawn(&["--config", s(&primary_cfg), "daemon", "--site", "primary", "--json"]);
    let retry = next_event(&mut primary, "a retry", |v| v["event"] == "point_retrying");
    assert_eq!(retry["group"], "g", "{retry}");
    // The receiver comes up: the same job commits.
    let dr_cfg = p("dr.toml");
    fs::write(&dr_cfg, config("state-dr")).unwrap();
    let mut dr = Background::spawn(&["--config", s(&dr_cfg), "daemon", "--site", "dr", "--json"]);
    dr.wait_for_line(Duration::from_secs(20), |l| l.starts_with("listening on "))
        .unwrap_or_else(|| panic!("the receiver did not start: {}", dr.describe()));
    let e = match primary.wait_for_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| is_job(&v, "point"))
    }) {
        Some(l) => serde_json::from_str::<Value>(&l).unwrap(),
        None => panic!("no point within 60 s: {}", primary.describe()),
    };
    assert_eq!(e["ok"], true, "{e}");
    assert!(e["retries"].as_u64().unwrap() >= 1, "{e}");
    assert_eq!(e["seq"], 1, "{e}");
    primary.signal("TERM");
    assert_eq!(primary.finish(Duration::from_secs(30)).code, Some(0));
    dr.signal("TERM");
    assert_eq!(dr.finish(Duration::from_secs(30)).code, Some(0));
}
