//! `volume.promote` with `instant = true`: a drill of the sample workload
//! (`lifeline demo --instant`, a real `lifeline` process with its testbed)
//! whose point is served by the planner and attached through a real nbdfuse;
//! the checks pass on the attached file, the report says the promote was
//! instant and splits RTO into service start and hydration, and teardown
//! leaves no mount and no overlay.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// Why an instant promote cannot run here, if it cannot.
fn cannot_attach() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (FUSE mounts)");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent");
    }
    let nbdfuse = std::process::Command::new("nbdfuse")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !nbdfuse.is_ok_and(|s| s.success()) {
        return Some("nbdfuse is not installed (Debian package nbdfuse)");
    }
    None
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The demo's drill of runbooks/demo-instant.toml: promote instant, hydration
/// into the sandbox throttled to 16 MiB/s, so the 64 MiB volume takes about
/// 4 s to copy while the checks (point hash through the attached file, the
/// workload's records, the service's health) pass on the served point first.
/// The demo runs its drill in the host's mount namespace, so this process
/// sees the nbdfuse mount's fate in its own /proc/self/mountinfo.
#[test]
fn an_instant_drill_of_the_sample_workload_passes_before_hydration_ends_and_leaves_no_mount_or_overlay() {
    if let Some(why) = cannot_attach() {
        eprintln!("SKIP an_instant_drill_of_the_sample_workload: {why}");
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let out = command(&["demo", "--instant", "--size-mib", "64"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let r = Run::from_output("demo --instant --size-mib 64".into(), out)
        .ok()
        .stdout_has(&["demo-instant.toml", "instant promote: services could start at T0 +"]);
    let reports: Vec<PathBuf> = fs::read_dir(cwd.path().join("lifeline-demo/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1, "{}", r.stdout);
    let report: Value = serde_json::from_slice(&fs::read(reports[0].join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "passed", "{report:#}");
    // Every check passed, on the attached file.
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 3, "{report:#}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{report:#}");
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    let attached = sandbox.join("instant/app.img");
    assert_eq!(
        report["volumes"][0]["path"].as_str().unwrap(),
        attached.to_str().unwrap(),
        "the checks read the nbdfuse file: {report:#}"
    );
    // The report says instant, and splits RTO.
    let p = &report["promote"];
    assert_eq!(p["instant"], true, "{report:#}");
    let service_start = f(&p["service_start_secs"]);
    let rto = f(&report["achieved"]["rto_secs"]);
    let hydrated = f(&p["hydration_end_secs"]);
    assert_eq!(p["hydration"][0]["state"], "done", "{report:#}");
    assert_eq!(p["hydration"][0]["copied"], 64u64 << 20, "{report:#}");
    assert!(
        service_start <= rto && rto < hydrated,
        "service start {service_start} s, every check green {rto} s, hydration done {hydrated} s: {report:#}"
    );
    // Teardown: the mount and the overlay are gone, and it said so first.
    let teardown: Vec<&str> = report["environment"]["teardown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        teardown
            .iter()
            .any(|t| t.starts_with(&format!("unmounted {} (nbdfuse", attached.display()))),
        "{teardown:#?}"
    );
    assert!(
        teardown.iter().any(|t| t.starts_with(&format!(
            "removed the overlay {}",
            sandbox.join("instant/overlay").display()
        ))),
        "{teardown:#?}"
    );
    assert!(report["environment"].get("leftovers").is_none(), "{report:#}");
    assert!(mounts_under(&sandbox).is_empty(), "{:?}", mounts_under(&sandbox));
    let fuse_left: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("nbdfuse") && l.contains(sandbox.to_str().unwrap()))
        .map(String::from)
        .collect();
    assert!(fuse_left.is_empty(), "{fuse_left:?}");
    assert!(!sandbox.join("instant/overlay").exists());
    assert!(!sandbox.exists(), "sandbox left behind");
    // The signature covers the promote section.
    run(&[
        "report",
        "verify",
        s(&reports[0]),
        "--pubkey",
        s(&cwd.path().join("lifeline-demo/signer.pub")),
    ])
    .ok();
    let html = fs::read_to_string(reports[0].join("report.html")).unwrap();
    assert!(html.contains("RTO: service start") && html.contains("RTO: hydration"));
}

/// A failover with `instant = true` on a local testbed (real receivers, agent
/// and workload): the service starts on the attached point and its health
/// check passes while hydration (throttled to 8 MiB/s) still copies the point
/// into the group's target; the run ends once hydration is done. The target
/// then holds the point plus what the recovered service wrote meanwhile (its
/// records after the point's last one): no overlay write was lost. No mount
/// and no overlay are left.
#[test]
fn an_instant_failover_checks_green_before_hydration_ends_and_the_target_keeps_the_services_writes() {
    if let Some(why) = cannot_attach() {
        eprintln!("SKIP an_instant_failover: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tb = dir.path().join("tb");
    run(&["testbed", "up", "--dir", s(&tb)]).ok();
    let config = tb.join("lifeline.toml");
    let result = std::panic::catch_unwind(|| instant_failover(dir.path(), &config));
    run(&["testbed", "down", "--dir", s(&tb)]).ok();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn instant_failover(dir: &Path, config: &Path) {
    let cfg = fs::read_to_string(config).unwrap();
    let url = cfg
        .split("[sites.secondary]")
        .nth(1)
        .and_then(|t| t.split("receiver = \"").nth(1))
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    let target = cfg
        .split("targets = { app = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .map(PathBuf::from)
        .unwrap();
    // A point on the secondary first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = command(&[
            "points",
            "--config",
            s(config),
            "--repo",
            &url,
            "--group",
            "app",
            "--json",
        ])
        .output()
        .unwrap();
        let pts: Value = serde_json::from_slice(&r.stdout).unwrap_or(Value::Null);
        if pts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no point on the secondary in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rb = Runbook::new("instant-failover", "app")
        .toml(&format!("[runbook.ports]\napp = {port}"))
        .step("promote", "volume.promote", "instant = true\nhydrate_rate = \"8MiB/s\"")
        .step("data-loss", "check.workload", "volume = \"app\"\nafter = [\"promote\"]")
        .step(
            "start",
            "service.start",
            r#"command = "${run.bin}"
args = ["workload", "run", "--volume", "${steps.promote.path.app}", "--listen", "127.0.0.1:${ports.app}"]
after = ["data-loss"]"#,
        )
        .step(
            "healthy",
            "check.http",
            "url = \"http://127.0.0.1:${ports.app}/health\"\ntimeout = \"30s\"\nafter = [\"start\"]",
        )
        .write(&dir.join("instant-failover.toml"));
    run(&["failover", s(&rb), "--config", s(config), "--json"]).ok();
    let runs = run(&["runs", "--config", s(config), "--json"]).ok().json();
    let rec = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["runbook"] == "instant-failover")
        .unwrap()
        .clone();
    assert_eq!(rec["status"], "succeeded", "{rec:#}");
    let promote = &rec["steps"]["promote"]["outputs"];
    assert_eq!(promote["instant"], "true", "{rec:#}");
    assert_eq!(promote["hydrate.app"].as_str().unwrap(), target.to_str().unwrap());
    let h = &rec["hydrations"][0];
    assert_eq!(h["state"], "done", "{rec:#}");
    assert_eq!(h["copied"], h["size"], "{rec:#}");
    // RFC 3339 UTC with milliseconds: ordered as strings.
    let healthy = rec["steps"]["healthy"]["ended_at"].as_str().unwrap();
    let hydrated = h["ended_at"].as_str().unwrap();
    assert!(
        healthy < hydrated,
        "health check green at {healthy}, hydration done at {hydrated}"
    );
    // The target: the point plus the recovered service's own records.
    let point_last: u64 = rec["steps"]["data-loss"]["outputs"]["last_seq"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let check = run(&["workload", "check", "--volume", s(&target), "--json"])
        .ok()
        .json();
    assert_eq!(check["clean"], true, "{check:#}");
    assert!(
        check["last_seq"].as_u64().unwrap() > point_last,
        "the target lacks the records the service wrote on the instant volume (point's last {point_last}): {check:#}"
    );
    // Teardown: no mount, no overlay, and the run says so.
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    assert!(mounts_under(&run_dir).is_empty(), "{:?}", mounts_under(&run_dir));
    assert!(!run_dir.join("instant/overlay").exists());
    let teardown: Vec<&str> = rec["teardown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        teardown.iter().any(|t| t.starts_with("unmounted "))
            && teardown.iter().any(|t| t.contains("hydration finished")),
        "{teardown:#?}"
    );
}

/// Whether process `pid` runs (and is not a zombie).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| !st.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// PIDs of the nbdfuse processes whose command line names `under`.
fn nbdfuse_under(under: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for p in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with("nbdfuse ") && cmd.contains(under.to_str().unwrap()) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// A runbook `name` for group `app`: an instant promote, then `check.volume`
/// of volume `app` (which reads every byte through the attached file).
fn promote_and_verify(name: &str) -> Runbook {
    Runbook::new(name, "app")
        .step("promote", "volume.promote", "instant = true")
        .step("verify", "check.volume", "volume = \"app\"\nafter = [\"promote\"]")
}

/// Ctrl-C while an instant drill holds its volume attached (a `wait` step after
/// `check.volume` passed through the nbdfuse file): the drill exits 130, its
/// nbdfuse is gone, the teardown says it unmounted the file, stopped the server
/// and removed the overlay, and the sandbox is removed. A local repository
/// (no testbed): a random volume backed up once.
#[test]
fn ctrl_c_during_an_instant_drill_unmounts_stops_the_server_and_removes_the_overlay() {
    if let Some(why) = cannot_attach() {
        eprintln!("SKIP ctrl_c_during_an_instant_drill: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = local_deployment(d);
    let rb = promote_and_verify("instant-hold")
        .step("hold", "wait", "duration = \"5m\"\nafter = [\"verify\"]")
        .write(&d.join("hold.toml"));
    let reports = d.join("reports");
    let mut drill = Background::spawn(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"]));
    let run_id = drill.started_run(std::time::Duration::from_secs(60), "hold");
    let run_dir = d.join("state/planner/runs").join(&run_id);
    let fuse = nbdfuse_under(&run_dir);
    assert_eq!(
        fuse.len(),
        1,
        "one nbdfuse for the attached volume: {}",
        drill.describe()
    );
    drill.signal("INT");
    let r = drill.finish(std::time::Duration::from_secs(60)).code(EXIT_INTERRUPTED);
    assert!(!alive(fuse[0]), "nbdfuse {} survived the teardown", fuse[0]);
    assert!(nbdfuse_under(&run_dir).is_empty());
    let report: Value = serde_json::from_slice(&fs::read(reports.join(&run_id).join("report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "failed", "{}", r.stdout);
    assert_eq!(report["promote"]["instant"], true, "{report:#}");
    assert_eq!(report["checks"][0]["passed"], true, "{report:#}");
    let teardown = report["environment"]["teardown"].to_string();
    let attached = run_dir.join("volumes/app.img");
    for want in [
        format!("unmounted {} (nbdfuse {}", attached.display(), fuse[0]),
        "stopped the NBD server (overlay flushed)".to_string(),
        format!("removed the overlay {}", run_dir.join("instant/overlay").display()),
    ] {
        assert!(teardown.contains(&want), "{want:?} not in {teardown}");
    }
    assert!(!run_dir.exists(), "sandbox left behind after Ctrl-C");
    assert!(mounts_under(&run_dir).is_empty());
}

/// A deployment on one directory: an 8 MiB random volume `app` of group `app`
/// backed up once into a local repository (the secondary site's), its target
/// `restored/app.img`. Returns the configuration file.
fn local_deployment(d: &Path) -> PathBuf {
    let (key, repo, vol) = (d.join("key"), d.join("repo"), d.join("app.img"));
    run(&["key", "new", "--out", s(&key)]).ok();
    run(&["init", "--repo", s(&repo), "--key-file", s(&key)]).ok();
    write_random_file(&vol, 8 * MIB, 7);
    run(&[
        "backup",
        "--repo",
        s(&repo),
        "--key-file",
        s(&key),
        "--group",
        "app",
        "--volume",
        &format!("app={}", s(&vol)),
        "--state-dir",
        s(&d.join("agent-state")),
    ])
    .ok();
    let config = d.join("lifeline.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nkey_file = \"{}\"\n[sites.secondary]\nrepo = \"{}\"\n[groups.app]\n\
             volumes = {{ app = \"{}\" }}\ntargets = {{ app = \"{}\" }}\n",
            s(&d.join("state")),
            s(&key),
            s(&repo),
            s(&vol),
            s(&d.join("restored/app.img"))
        ),
    )
    .unwrap();
    config
}

/// A failover whose hydration is interrupted keeps every write: the recovered
/// volume is written through the nbdfuse file (and flushed), the run is
/// interrupted while it waits for a throttled hydration (`lifeline runs`
/// shows the progress meanwhile), so its teardown keeps the overlay and names
/// the `lifeline serve` command that resumes it; that command (a real
/// process) finishes the hydration, and the target is the point plus the write.
#[test]
fn an_interrupted_instant_failover_keeps_its_overlay_and_the_named_serve_command_resumes_hydration() {
    if let Some(why) = cannot_attach() {
        eprintln!("SKIP an_interrupted_instant_failover: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = local_deployment(d);
    let rb = Runbook::new("instant-write", "app")
        .step(
            "promote",
            "volume.promote",
            "instant = true\nhydrate_rate = \"512KiB/s\"",
        )
        .shell(
            "write",
            "printf LIFELINE-MARK | dd of=${steps.promote.path.app} bs=1 seek=4096 conv=notrunc,fsync 2>/dev/null",
            "after = [\"promote\"]",
        )
        .write(&d.join("fo.toml"));
    let mut fo = Background::spawn(&["failover", s(&rb), "--config", s(&config), "--json"]);
    fo.wait_for_line(std::time::Duration::from_secs(60), |l| l.contains("\"hydration_wait\""))
        .unwrap_or_else(|| panic!("the run never waited for hydration: {}", fo.describe()));
    let runs = run(&["runs", "--config", s(&config)]).ok();
    assert!(runs.stdout.contains("hydrating app "), "{}", runs.stdout);
    fo.signal("INT");
    let r = fo.finish(std::time::Duration::from_secs(60));
    assert_ne!(r.code, Some(EXIT_OK), "an interrupted failover succeeded: {}", r.stdout);
    let rec = run(&["runs", "--config", s(&config), "--json"]).ok().json()[0].clone();
    assert_eq!(rec["status"], "aborted", "{rec:#}");
    assert_eq!(rec["hydrations"][0]["state"], "stopped", "{rec:#}");
    let overlay = PathBuf::from(rec["steps"]["promote"]["outputs"]["overlay"].as_str().unwrap());
    assert!(
        overlay.is_dir(),
        "the overlay of an unfinished hydration was removed: {rec:#}"
    );
    // The run kept `hydration.json` as `lifeline serve` does: stopped midway.
    let status = || -> Value { serde_json::from_slice(&fs::read(overlay.join("hydration.json")).unwrap()).unwrap() };
    let stopped = status();
    let vol = &stopped["volumes"][0];
    assert_eq!(vol["state"], "stopped", "{stopped:#}");
    assert_eq!(
        vol["copied"], rec["hydrations"][0]["copied"],
        "{stopped:#} against {rec:#}"
    );
    assert!(vol["copied"].as_u64().unwrap() < 8 * MIB, "{stopped:#}");
    let run_dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
    assert!(mounts_under(&run_dir).is_empty(), "{:?}", mounts_under(&run_dir));
    let note = rec["teardown"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .find(|t| t.starts_with("kept the overlay"))
        .unwrap_or_else(|| panic!("no kept-overlay note: {rec:#}"))
        .to_string();
    let cmd = note.split('`').nth(1).unwrap();
    let args: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(args[..2], ["lifeline", "serve"], "{note}");
    let mut serve = Background::spawn(&args[1..]);
    assert!(
        poll_until(std::time::Duration::from_secs(60), || serve
            .stderr()
            .contains("hydrated app into")),
        "the resumed hydration did not finish: {}",
        serve.describe()
    );
    let done = status();
    assert_eq!(done["volumes"][0]["state"], "done", "{done:#}");
    assert_eq!(done["volumes"][0]["copied"], 8 * MIB, "{done:#}");
    assert_eq!(done["volumes"][0]["resumed_from"], vol["copied"], "{done:#}");
    serve.signal("INT");
    serve.finish(std::time::Duration::from_secs(30)).ok();
    let mut want = fs::read(d.join("app.img")).unwrap();
    want[4096..4096 + 13].copy_from_slice(b"LIFELINE-MARK");
    let got = fs::read(d.join("restored/app.img")).unwrap();
    assert!(
        got == want,
        "the hydrated target is not the point plus the write made through the attached file"
    );
}

/// A drill the daemon schedules (an instant promote of the 8 MiB random
/// volume and `check.volume`, which hashes every byte through nbdfuse)
/// reports what it cost, measured: the CPU time of the `lifeline drill`
/// process and what it waited for, and the sealed bytes its server read from
/// the repository (at least the volume: random data does not compress), in
/// the job event and as gauges; the bytes match the signed report's. Without
/// a receiver the lag is not measured, and the event says why.
#[test]
fn a_scheduled_instant_drill_reports_its_cpu_time_and_the_bytes_it_read() {
    if let Some(why) = cannot_attach() {
        eprintln!("SKIP a_scheduled_instant_drill_reports_its_cost: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = local_deployment(d);
    let rb = promote_and_verify("prove").write(&d.join("prove.toml"));
    // The deployment's file ends in [groups.app].
    let mut cfg = fs::read_to_string(&config).unwrap();
    cfg.push_str(&format!(
        "drill_schedule = \"* * * * * *\"\ndrill_runbook = \"{}\"\n[daemon]\nmetrics = \"127.0.0.1:0\"\n",
        s(&rb)
    ));
    fs::write(&config, cfg).unwrap();
    let mut daemon = Background::spawn(&["--config", s(&config), "daemon", "--site", "secondary", "--json"]);
    let addr = daemon.metrics_address();
    let line = daemon
        .wait_for_line(std::time::Duration::from_secs(120), |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == "job" && v["job"] == "drill")
        })
        .unwrap_or_else(|| panic!("no drill within 120 s: {}", daemon.describe()));
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["ok"], true, "{e:#}");
    assert_ne!(e["verdict"], "failed", "{e:#}");
    let cost = &e["cost"];
    let cpu = f(&cost["cpu_secs"]);
    let read = cost["repository_read_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{e:#}"));
    assert!(
        cpu > 0.0 && cpu < f(&e["secs"]) * 2.0 + 5.0,
        "implausible CPU time: {e:#}"
    );
    assert!((8 * MIB..16 * MIB).contains(&read), "implausible bytes read: {e:#}");
    assert!(cost["lag_max_secs"].is_null(), "{e:#}");
    assert!(
        cost["lag_unavailable"].as_str().is_some_and(|w| w.contains("receiver")),
        "{e:#}"
    );
    let report: Value = serde_json::from_slice(
        &fs::read(PathBuf::from(e["report_dir"].as_str().unwrap()).join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["promote"]["repository_read_bytes"], read, "{report:#}");
    let m = crate::daemon::scrape(&addr);
    let g = [("group", "app")];
    let gauge = |name: &str| crate::daemon::sample(&m, name, &g).unwrap_or_else(|| panic!("no {name}"));
    // A later drill may have ended meanwhile: the gauges hold the last one's.
    assert!(gauge("lifeline_group_last_drill_cpu_seconds") > 0.0);
    assert!(gauge("lifeline_group_last_drill_repository_read_bytes") >= (8 * MIB) as f64);
    assert!(crate::daemon::sample(&m, "lifeline_group_last_drill_replication_lag_seconds", &g).is_none());
    daemon.signal("TERM");
    daemon.finish(std::time::Duration::from_secs(60));
}
