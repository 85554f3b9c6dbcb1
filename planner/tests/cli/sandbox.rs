//! A drill's sandbox: what its steps mount is unmounted at teardown, deletion
//! never crosses into a mounted filesystem, and what is left is named with the
//! command that cleans it up.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// Loop devices whose backing file is at or under `root`.
fn loops_backed_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file"))
            && Path::new(b.trim()).starts_with(root)
        {
            out.push(format!("{} {}", e.file_name().to_string_lossy(), b.trim()));
        }
    }
    out
}

/// The report of the drill whose `--json` output is `stdout`.
fn drill_report(stdout: &str) -> Value {
    let summary = events(stdout)
        .into_iter()
        .find(|e| e["event"] == "drill_report")
        .unwrap_or_else(|| panic!("no drill_report event: {stdout}"));
    let dir = PathBuf::from(summary["report_dir"].as_str().unwrap());
    serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// With `--no-netns`, a step mounts under the sandbox: a tmpfs holding a file,
/// an ext4 image made with mke2fs and loop-mounted, and a directory from
/// outside bind-mounted. Teardown unmounts all three (deepest first), detaches
/// the loop device, removes the sandbox, and the outside directory keeps its
/// file: nothing was deleted through a mount.
#[test]
fn drill_teardown_unmounts_what_its_steps_mounted_and_never_deletes_through_a_mount() {
    if !is_root() || !on_path("mke2fs") || !on_path("losetup") {
        eprintln!("SKIP drill_teardown_unmounts_what_its_steps_mounted: needs root, mke2fs and losetup");
        return;
    }
    let (dir, config) = local_run_dir();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("precious"), "production data").unwrap();
    let script = format!(
        "set -e; mkdir t img bound; mount -t tmpfs -o size=1m none t; echo data > t/f; \
         truncate -s 8M disk.img; mke2fs -q -F disk.img; mount -o loop disk.img img; \
         mkdir img/deep; echo data > img/deep/g; mount --bind {} bound",
        s(&outside)
    );
    let rb = Runbook::new("mounts", "app")
        .shell("mount", &script, "")
        .write(&dir.path().join("rb.toml"));
    let reports = dir.path().join("reports");
    let r = run(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"])).ok();
    let report = drill_report(&r.stdout);
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    assert_eq!(report["steps"][0]["status"], "succeeded", "{report:#}");
    assert_ne!(report["verdict"], "failed", "{report:#}");
    assert!(!sandbox.exists(), "sandbox left behind: {report:#}");
    assert!(mounts_under(&sandbox).is_empty(), "{:?}", mounts_under(&sandbox));
    assert!(
        loops_backed_under(&sandbox).is_empty(),
        "{:?}",
        loops_backed_under(&sandbox)
    );
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "production data",
        "teardown deleted through the bind mount"
    );
    let teardown: Vec<String> = report["environment"]["teardown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    for m in ["t", "img", "bound"] {
        let at = sandbox.join(m);
        assert!(
            teardown
                .iter()
                .any(|t| t.starts_with(&format!("unmounted {} ", at.display()))),
            "{m} not unmounted by teardown: {teardown:#?}"
        );
    }
    assert!(report.get("leftovers").is_none() && report["environment"].get("leftovers").is_none());
}

/// What teardown cannot release is an error that names the path and the
/// command: here a filesystem mounted under the sandbox that a process outside
/// the drill keeps busy. Nothing in it is deleted; the verdict says why.
#[test]
fn a_mount_teardown_cannot_release_is_named_with_the_command_that_cleans_it_up() {
    if !is_root() {
        eprintln!("SKIP a_mount_teardown_cannot_release: needs root to mount");
        return;
    }
    let (dir, config) = local_run_dir();
    let held = dir.path().join("held");
    // The step mounts a tmpfs, writes a file and leaves a process (outside the
    // run's tracking: a nohup'd shell) whose working directory is in it.
    let script = format!(
        "set -e; mkdir t; mount -t tmpfs -o size=1m none t; echo keep > t/f; (cd t && setsid sh -c 'echo $$ > \
         {held}; exec sleep 600' > /dev/null 2>&1 &) ; while [ ! -s {held} ]; do sleep 0.05; done",
        held = s(&held)
    );
    let rb = Runbook::new("busy", "app")
        .shell("mount", &script, "")
        .write(&dir.path().join("rb.toml"));
    let reports = dir.path().join("reports");
    let r = run(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"]));
    let holder = fs::read_to_string(&held).unwrap_or_default().trim().to_string();
    let report = drill_report(&r.stdout);
    let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
    let mnt = sandbox.join("t");
    // The holder's working directory is the tmpfs, wherever it is mounted.
    let file = fs::read_to_string(format!("/proc/{holder}/cwd/f"));
    // Clean up before asserting, the way the leftover says.
    let fix = report["environment"]["leftovers"][0]
        .as_str()
        .and_then(|l| l.rsplit_once("clean it up with `"))
        .map(|(_, f)| f.trim_end_matches('`').to_string());
    let cleaned = fix.as_ref().is_some_and(|f| {
        std::process::Command::new("sh")
            .args(["-c", f])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !cleaned {
        let _ = std::process::Command::new("kill").arg(&holder).status();
        let _ = std::process::Command::new("umount").arg("-l").arg(&mnt).status();
        let _ = std::process::Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&sandbox)
            .status();
    }
    r.code(EXIT_CHECK_FAILED);
    assert_eq!(file.expect("the file in the busy mount survived"), "keep\n");
    assert_eq!(report["verdict"], "failed", "{report:#}");
    let reason = report["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains(&format!("mount {} was left behind", mnt.display()))
            && reason.contains(&format!("used by process {holder} (sleep)"))
            && reason.contains(&format!("`kill {holder} && "))
            // In the drill's own mount namespace (root) the host has nothing to
            // unmount; in the host's, the command unmounts it.
            && (reason.contains("own mount namespace") || reason.contains(&format!("umount {}", mnt.display())))
            && reason.contains("rm -rf --one-file-system"),
        "{reason}"
    );
    assert_eq!(report["environment"]["leftovers"][0], reason);
    assert!(cleaned, "the leftover's command did not clean up: {fix:?}");
    assert!(!sandbox.exists(), "the leftover's command left {}", sandbox.display());
}

/// One mount namespace per drill, shared by its steps: step A mounts a tmpfs
/// in the sandbox and writes a file, step B (after A, another process) reads
/// it. With the drill's network namespace and with `--no-netns`. After the
/// drill the mount is gone and so is the sandbox.
#[test]
fn a_drills_steps_share_one_mount_namespace_and_its_mounts_go_with_the_run() {
    if !is_root() {
        eprintln!("SKIP a_drills_steps_share_one_mount_namespace: needs root to mount");
        return;
    }
    let (dir, config) = local_run_dir();
    let rb = Runbook::new("shared-mounts", "app")
        .shell(
            "mount",
            "set -e; mkdir data; mount -t tmpfs -o size=1m none data; echo hello > data/f",
            "",
        )
        .step(
            "read",
            "check.command",
            "command = \"cat\"\nargs = [\"data/f\"]\nafter = [\"mount\"]",
        )
        .write(&dir.path().join("rb.toml"));
    let reports = dir.path().join("reports");
    let with_netns = on_path("ip") && on_path("nsenter");
    for netns in [false, true] {
        if netns && !with_netns {
            eprintln!("SKIP the network-namespace half: needs ip and nsenter");
            continue;
        }
        let mut args = drill_args(&rb, &config, &reports, &["--json"]);
        if !netns {
            args.push("--no-netns");
        }
        let r = run(&args).ok();
        let report = drill_report(&r.stdout);
        assert_eq!(
            report["environment"]["network_namespace"].is_string(),
            netns,
            "{report:#}"
        );
        let read = report_check(&report, "read");
        assert_eq!(read["passed"], true, "step B did not see step A's mount: {report:#}");
        assert_eq!(read["evidence"]["stdout"], "hello", "{read:#}");
        let sandbox = PathBuf::from(report["environment"]["sandbox"].as_str().unwrap());
        assert!(!sandbox.exists(), "{report:#}");
        assert!(mounts_under(&sandbox).is_empty());
        let teardown = report["environment"]["teardown"].to_string();
        assert!(
            teardown.contains("the drill's own mount namespace")
                && teardown.contains(&format!("unmounted {} ", sandbox.join("data").display())),
            "{teardown}"
        );
    }
}

/// A production file (a zone file, an nginx upstream) the attacks below aim at.
fn production_file(dir: &Path) -> PathBuf {
    let prod = dir.join("production/etc");
    fs::create_dir_all(&prod).unwrap();
    let f = prod.join("upstream.conf");
    fs::write(&f, "server 192.0.2.10;\n").unwrap();
    f
}

/// Finding 3 of issue 17: `drill = {}` (or a table that does not replace the
/// production target) ran the production step. Validation now refuses it, at
/// the line and column to fix, for `lifeline drill` and `lifeline plan` alike,
/// before anything runs; the production file is untouched.
#[test]
fn a_drill_substitution_that_keeps_a_production_target_is_refused_where_it_is_written() {
    let (dir, config) = local_run_dir();
    let prod = production_file(dir.path());
    let reports = dir.path().join("reports");
    let cases = [
        (
            format!(
                "[[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"{}\"\ncontent = \"server 127.0.0.1;\\n\"\ndrill = {{}}\n",
                s(&prod)
            ),
            ":10:9: step `switch`: the drill substitution keeps production's `file`",
        ),
        (
            format!(
                "[[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"{}\"\ncontent = \"x\"\ndrill = {{ content = \"y\" }}\n",
                s(&prod)
            ),
            ":10:9: step `switch`: the drill substitution keeps production's `file`",
        ),
        (
            format!(
                "[[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"{}\"\ncontent = \"x\"\ndrill = {{ file = \"{}\" }}\n",
                s(&prod),
                s(&prod)
            ),
            ":10:18: step `switch`: a drill's `file` must lie in the sandbox",
        ),
        (
            "[[step]]\nid = \"pause\"\naction = \"replication.stop\"\ndrill = {}\n".to_string(),
            ":8:9: step `pause`: `replication.stop` drives production replication",
        ),
        (
            "[[step]]\nid = \"stop\"\naction = \"service.stop\"\ncommand = \"systemctl\"\nargs = [\"stop\", \"shop\"]\ndrill = {}\n"
                .to_string(),
            ":10:9: step `stop`: the drill substitution keeps production's `command`",
        ),
    ];
    for (i, (steps, want)) in cases.iter().enumerate() {
        let rb = dir.path().join(format!("attack{i}.toml"));
        fs::write(&rb, format!("[runbook]\nname = \"attack\"\ngroup = \"app\"\n\n{steps}")).unwrap();
        let located = format!("{}{want}", s(&rb));
        run(&drill_args(&rb, &config, &reports, &["--no-netns"]))
            .code(EXIT_ERROR)
            .stderr_has(&[&located, "help:"]);
        run(&["plan", s(&rb), "--mode", "drill", "--config", s(&config)])
            .code(EXIT_ERROR)
            .stderr_has(&[&located]);
    }
    assert_eq!(fs::read_to_string(&prod).unwrap(), "server 192.0.2.10;\n");
    assert!(!reports.exists(), "a refused drill wrote a report");
}

/// What validation cannot see, the engine refuses: a `file` that passes
/// validation (`${run.dir}/...`) but resolves outside the sandbox at run time,
/// through a step's output holding `../..` or through a symlink a step made,
/// and a runbook `undo` aimed at production. Each write is refused, the drill
/// fails and says why, and the production file is unchanged.
#[test]
fn a_drill_refuses_at_run_time_to_write_outside_its_sandbox() {
    let (dir, config) = local_run_dir();
    let prod = production_file(dir.path());
    let prod_dir = prod.parent().unwrap();
    let reports = dir.path().join("reports");
    let escapes = [
        // A step's output climbs out of the sandbox.
        format!(
            "[[step]]\nid = \"where\"\naction = \"check.command\"\ncommand = \"echo\"\nargs = [\"../../../../../../../..{}\"]\n\n\
             [[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"/etc/not-here.conf\"\ncontent = \"x\"\n\
             drill = {{ file = \"${{run.dir}}/${{steps.where.stdout}}\", content = \"server 203.0.113.66;\\n\" }}\nafter = [\"where\"]\n",
            s(&prod)
        ),
        // A symlink in the sandbox to the production directory.
        format!(
            "[[step]]\nid = \"link\"\naction = \"check.command\"\ncommand = \"ln\"\nargs = [\"-s\", \"{}\", \"${{run.dir}}/etc\"]\n\n\
             [[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"/etc/not-here.conf\"\ncontent = \"x\"\n\
             drill = {{ file = \"${{run.dir}}/etc/upstream.conf\", content = \"server 203.0.113.66;\\n\" }}\nafter = [\"link\"]\n",
            s(prod_dir)
        ),
    ];
    for (i, steps) in escapes.iter().enumerate() {
        let rb = dir.path().join(format!("escape{i}.toml"));
        fs::write(&rb, format!("[runbook]\nname = \"escape\"\ngroup = \"app\"\n\n{steps}")).unwrap();
        run(&["plan", s(&rb), "--mode", "drill", "--config", s(&config)]).ok();
        let r = run(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"])).code(EXIT_CHECK_FAILED);
        let report = drill_report(&r.stdout);
        assert_eq!(report["verdict"], "failed", "{report}");
        let switch = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "switch")
            .unwrap();
        assert_eq!(switch["status"], "failed", "{switch}");
        let why = switch["excerpt"].as_str().unwrap();
        assert!(
            why.contains("a drill writes only in its sandbox") && why.contains("outside it"),
            "{why}"
        );
        assert_eq!(fs::read_to_string(&prod).unwrap(), "server 192.0.2.10;\n", "escape {i}");
        assert_eq!(
            fs::read_dir(prod_dir).unwrap().count(),
            1,
            "escape {i} left a file beside production's"
        );
    }

    // An undo aimed at production: the step runs in the drill (substituted),
    // a later step fails and rolls back; the drill puts its own file back and
    // never runs the production undo.
    let rb = dir.path().join("undo.toml");
    fs::write(
        &rb,
        format!(
            "[runbook]\nname = \"undo\"\ngroup = \"app\"\n\n\
             [[step]]\nid = \"switch\"\naction = \"traffic.switch\"\nfile = \"{p}\"\ncontent = \"server 198.51.100.10;\\n\"\n\
             undo = {{ action = \"traffic.switch\", file = \"{p}\", content = \"server 203.0.113.66;\\n\" }}\n\
             drill = {{ file = \"${{run.dir}}/upstream.conf\" }}\n\n\
             [[step]]\nid = \"fail\"\naction = \"check.command\"\ncommand = \"false\"\ntimeout = \"0s\"\n\
             on_failure = \"rollback\"\nafter = [\"switch\"]\n",
            p = s(&prod)
        ),
    )
    .unwrap();
    let plan = run(&["plan", s(&rb), "--mode", "drill", "--config", s(&config)]).ok();
    assert!(
        plan.stdout.contains("put the file back") && !plan.stdout.contains("203.0.113.66"),
        "{}",
        plan.stdout
    );
    let r = run(&drill_args(&rb, &config, &reports, &["--no-netns", "--json"])).code(EXIT_CHECK_FAILED);
    let undone = events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "step_undone" && e["step"] == "switch")
        .unwrap_or_else(|| panic!("no undo of switch: {}", r.stdout));
    assert!(!undone["message"].as_str().unwrap().contains(s(&prod)), "{undone}");
    assert_eq!(fs::read_to_string(&prod).unwrap(), "server 192.0.2.10;\n");
}
