//! One `lifeline.toml` gives every command its identity: an agent presents its
//! group's `agent` whether `lifeline agent` or the daemon replicates;
//! `points`, `status`, `prune`, `gc`, `verify` and `control` take `[tls]`
//! (`identity` to read, `admin` for the admin service and agents' control
//! APIs); `status` as an admin is a read-only query over every tenant; a
//! daemon serves the control API of the groups it replicates, and `status`
//! counts the points that failed before reaching the receiver; and a primary
//! site's daemon leaves the repository its failback seeds alone.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const PROMPT: Duration = Duration::from_secs(60);

/// A deployment whose `[tls] identity` (`planner`) may write no group: only the
/// group's `agent` (`db1`) may.
fn config(site: &Site, key: &Path, url: &str, control: u16, volume: &Path, primary: &str) -> std::path::PathBuf {
    site.planner_config(
        &site.path("state"),
        key,
        url,
        primary,
        &format!(
            r#"[groups.g]
volumes = {{ v = "{volume}" }}
tenant = "acme"
agent = "db1"
interval = "1h"
control = "127.0.0.1:{control}"
"#,
            volume = s(volume),
        ),
    )
}

fn with_config(args: &[&str], config: &Path) -> Run {
    let mut a = args.to_vec();
    a.extend(["--config", s(config)]);
    run(&a)
}

#[test]
fn one_config_gives_the_agent_the_daemon_and_every_admin_command_their_identity() {
    let site = Site::new(&["db1@acme", "planner@acme"]);
    certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
    let receiver = site.receiver(&["db1=g"]);
    let key = site.key("acme");
    let volume = site.path("v.img");
    write_random_file(&volume, MIB, 3);
    let control = free_port();
    let cfg = config(&site, &key, &receiver.url(), control, &volume, "");
    let url = receiver.url();

    // `lifeline agent` without --identity presents the group's agent, not
    // [tls] identity (which the receiver would refuse), and serves its control
    // API with that identity's certificate.
    let mut agent = Background::spawn(&["agent", "--config", s(&cfg), "--group", "g"]);
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("cycle: point 1 "))
        .unwrap_or_else(|| panic!("the agent did not replicate as db1: {}", agent.describe()));
    // `control` with the configuration: [tls] dir and admin.
    let st = with_config(
        &[
            "control",
            "--control",
            &format!("127.0.0.1:{control}"),
            "--agent",
            "db1",
            "--json",
            "status",
        ],
        &cfg,
    )
    .ok()
    .json();
    assert_eq!(st["last_seq"], 1, "{st}");
    agent.signal("TERM");
    agent.finish(PROMPT);

    // The daemon's point presents the same identity.
    let mut daemon = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "primary", "--json"]);
    let point = daemon
        .wait_for_line(PROMPT, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == "job" && v["job"] == "point")
        })
        .unwrap_or_else(|| panic!("no point job: {}", daemon.describe()));
    let point: Value = serde_json::from_str(&point).unwrap();
    assert_eq!(point["ok"], true, "{point}\n{}", daemon.describe());
    assert_eq!(point["seq"], 2, "{point}");
    daemon.signal("TERM");
    assert_eq!(daemon.finish(PROMPT).code, Some(EXIT_OK));

    // Reads with [tls] identity, no flags.
    let points = with_config(&["points", "--repo", &url, "--json"], &cfg).ok().json();
    assert_eq!(points.as_array().unwrap().len(), 2, "{points}");
    let status = with_config(&["status", "--repo", &url, "--json"], &cfg).ok().json();
    assert_eq!(status[0]["group"], "g", "{status}");
    assert_eq!(status[0]["points"], 2, "{status}");
    // Nothing serves the group's control address any more.
    assert!(status[0]["flags"].to_string().contains("agent unreachable"), "{status}");
    // As an admin, status is a read-only query (over every tenant).
    let status = with_config(&["status", "--repo", &url, "--identity", "ops", "--json"], &cfg)
        .ok()
        .json();
    assert_eq!(status[0]["group"], "g", "{status}");
    assert_eq!(status[0]["tenant"], "acme", "{status}");
    assert_eq!(status[0]["last_seq"], 2, "{status}");
    with_config(&["status", "--repo", &url, "--identity", "ops"], &cfg)
        .ok()
        .stdout_has(&["GROUP", "g "]);
    // Admin commands with [tls] admin, no flags.
    with_config(&["verify", "--repo", &url], &cfg).ok();
    with_config(
        &["prune", "--repo", &url, "--group", "g", "--keep-last", "1", "--dry-run"],
        &cfg,
    )
    .ok();
    with_config(&["gc", "--repo", &url, "--dry-run"], &cfg).ok();
    // Flags still win over the configuration.
    with_config(&["points", "--repo", &url, "--identity", "nobody"], &cfg).fails(EXIT_ERROR, &["nobody"]);
}

/// A primary site with `repo`/`listen` (for its failback) does not serve that
/// repository from its daemon: the failback's seed must own it first, then its
/// runbook serves it with `lifeline receiver --site primary`.
#[test]
fn a_primary_sites_daemon_leaves_its_failback_repository_to_the_failback() {
    let site = Site::new(&["db1@acme", "planner@acme", "dr1@acme"]);
    let receiver = site.receiver(&["db1=g"]);
    let key = site.key("acme");
    let volume = site.path("v.img");
    write_random_file(&volume, MIB, 4);
    let port = free_port();
    let repo = site.path("primary-repo");
    let primary = format!(
        "repo = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nreceiver = \"https://127.0.0.1:{port}\"\nallow = {{ dr1 = [\"g\"] }}",
        s(&repo)
    );
    let cfg = config(&site, &key, &receiver.url(), free_port(), &volume, &primary);
    let mut daemon = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "primary", "--json"]);
    let jobs = daemon
        .wait_for_line(PROMPT, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == "jobs")
        })
        .unwrap_or_else(|| panic!("no jobs event: {}", daemon.describe()));
    let jobs: Value = serde_json::from_str(&jobs).unwrap();
    let names = job_names(&jobs);
    assert_eq!(
        names,
        ["point:g"],
        "no verify or gc of a repository it does not serve: {jobs}"
    );
    // Said on stderr (read by another thread: poll).
    assert!(
        poll_until(PROMPT, || daemon.stderr().contains("not serving [sites.primary] repo")),
        "{}",
        daemon.describe()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the daemon listens on the primary's port"
    );
    assert!(!repo.exists(), "the daemon created the primary's repository");
    // The failback's seed owns it (a local backup), then its receiver serves it.
    run(&["init", "--repo", s(&repo), "--key-file", s(&key)]).ok();
    let mut served = Background::spawn(&["receiver", "--site", "primary", "--config", s(&cfg)]);
    served
        .wait_for_line(PROMPT, |l| l.starts_with("listening on "))
        .unwrap_or_else(|| panic!("the primary's receiver did not start: {}", served.describe()));
    daemon.signal("TERM");
    assert_eq!(daemon.finish(PROMPT).code, Some(EXIT_OK));
}

/// The daemon that replicates a group serves the group's control API, so a
/// runbook's `replication.stop` / `final_sync` reach it; `status` counts the
/// points that failed before reaching the receiver (the receiver was down),
/// which the receiver alone cannot know.
#[test]
fn the_daemon_serves_its_groups_control_api_and_status_counts_its_failed_points() {
    let site = Site::new(&["db1@acme", "planner@acme"]);
    certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
    let key = site.key("acme");
    let volume = site.path("v.img");
    write_random_file(&volume, MIB, 5);
    let (port, control) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{port}");
    let cfg = config(&site, &key, &url, control, &volume, "");
    let mut text = fs::read_to_string(&cfg).unwrap();
    text.push_str("retry_for = \"1s\"\n");
    fs::write(&cfg, text).unwrap();
    let ctl = format!("127.0.0.1:{control}");
    let call = |args: &[&str]| {
        let mut a = vec!["control", "--control", ctl.as_str(), "--agent", "db1", "--json"];
        a.extend(args);
        with_config(&a, &cfg)
    };

    let mut daemon = Background::spawn(&["--config", s(&cfg), "daemon", "--site", "primary", "--json"]);
    daemon
        .wait_for_line(PROMPT, |l| l.starts_with("control listening on "))
        .unwrap_or_else(|| panic!("the daemon serves no control API: {}", daemon.describe()));
    // The receiver is down: the first point fails after retry_for.
    let failed = daemon
        .wait_for_line(PROMPT, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == "job" && v["job"] == "point")
        })
        .unwrap_or_else(|| panic!("no point job: {}", daemon.describe()));
    assert!(failed.contains("\"ok\":false"), "{failed}");
    let st = call(&["status"]).ok().json();
    assert_eq!(st["failed_cycles"], 1, "{st}");
    assert!(st["last_error"].is_string(), "{st}");

    // The receiver comes up; sync-now (what replication.final_sync calls) takes
    // a point through the daemon at once, although its schedule is 1h.
    let receiver = ReceiverProc::start(&site.repo, &site.tls, &format!("127.0.0.1:{port}"), &["db1=g"])
        .unwrap_or_else(|r| panic!("the receiver did not start: {}", r.stderr));
    let synced = call(&["sync-now"]).ok().json();
    assert_eq!(synced["seq"], 1, "{synced}");
    // Status: the receiver saw no failure, the daemon's control API one.
    let status = with_config(&["status", "--repo", &receiver.url(), "--json"], &cfg)
        .ok()
        .json();
    let g = &status[0];
    assert_eq!(g["group"], "g", "{status}");
    assert_eq!(g["receiver_errors"], 0, "{status}");
    assert_eq!(g["agent_failed_cycles"], 1, "{status}");
    assert_eq!(g["errors"], 1, "ERRORS counts the failed point: {status}");

    // Pause (replication.stop): no point starts, sync-now is refused; resume.
    assert_eq!(call(&["pause"]).ok().json()["paused"], true);
    call(&["sync-now"]).fails(EXIT_ERROR, &["paused"]);
    let status = with_config(&["status", "--repo", &receiver.url(), "--json"], &cfg)
        .ok()
        .json();
    assert!(status[0]["flags"].to_string().contains("agent paused"), "{status}");
    assert_eq!(call(&["resume"]).ok().json()["paused"], false);
    assert_eq!(call(&["sync-now"]).ok().json()["seq"], 2);
    // Retarget moves the next points: to a dead address they fail, back they commit.
    let dead = format!("https://127.0.0.1:{}", free_port());
    assert_eq!(call(&["retarget", &dead]).ok().json()["target"], dead.as_str());
    call(&["sync-now"]).fails(EXIT_ERROR, &["failed"]);
    call(&["retarget", &receiver.url()]).ok();
    assert_eq!(call(&["sync-now"]).ok().json()["seq"], 3);
    let status = with_config(&["status", "--repo", &receiver.url(), "--json"], &cfg)
        .ok()
        .json();
    assert_eq!(status[0]["errors"], 2, "{status}");
    daemon.signal("TERM");
    assert_eq!(daemon.finish(PROMPT).code, Some(EXIT_OK));
}
