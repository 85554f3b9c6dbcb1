//! `--repo s3://BUCKET/PREFIX` from the command line, on a real Garage: the
//! whole journey (init, backup, points, restore, verify, prune, gc, repair of
//! a lost cache), and a receiver whose repository is a bucket of a 3-node
//! cluster (replication factor 3) that loses a node mid-upload. Skips with a
//! message where `garage` is not installed.

#[path = "../../../replicator/tests/support/garage.rs"]
mod garage;

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use garage::Garage;

/// A lifeline.toml whose `[s3]` table reaches `g`.
fn s3_config(g: &Garage, path: &Path) {
    fs::write(
        path,
        format!(
            "[s3]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            g.endpoint(),
            g.region(),
            g.key_id(),
            g.secret()
        ),
    )
    .unwrap();
}

#[test]
fn the_whole_journey_on_a_bucket_from_the_command_line() {
    let Some(g) = Garage::single() else { return };
    g.create_bucket("cli-repo");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (key, state, cfg) = (p("k"), p("state"), p("lifeline.toml"));
    s3_config(&g, &cfg);
    run(&["key", "new", "--out", s(&key)]).ok();
    let repo = "s3://cli-repo/prod";
    let with = |args: &[&str], state: &Path| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(["--config".into(), s(&cfg).into(), "--state-dir".into(), s(state).into()]);
        v
    };
    run(&strs(&with(&["init", "--repo", repo, "--key-file", s(&key)], &state)))
        .ok()
        .stdout_has(&["initialised repository s3://cli-repo/prod"]);
    let v = p("v.img");
    write_random_file(&v, 20 * MIB, 7);
    let spec = format!("disk={}", s(&v));
    for seed in [1u64, 2, 3] {
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, seed * 3 * MIB, MIB, 100 + seed);
        run(&strs(&with(
            &[
                "backup",
                "--repo",
                repo,
                "--key-file",
                s(&key),
                "--group",
                "db",
                "--volume",
                &spec,
            ],
            &state,
        )))
        .ok()
        .stdout_has(&[&format!("point {seed} of group `db` committed")]);
    }
    let pts = run(&strs(&with(&["points", "--repo", repo, "--json"], &state)))
        .ok()
        .json();
    assert_eq!(pts.as_array().unwrap().len(), 3, "{pts}");
    let out = p("out.img");
    run(&strs(&with(
        &[
            "restore",
            "--repo",
            repo,
            "--key-file",
            s(&key),
            "--group",
            "db",
            "--volume",
            "disk",
            "--to",
            s(&out),
        ],
        &state,
    )))
    .ok()
    .stdout_has(&["volume hash verified"]);
    assert_same_content(&v, &out);
    run(&strs(&with(&["verify", "--repo", repo, "--key-file", s(&key)], &state)))
        .ok()
        .stdout_has(&["ok: no damage found"]);
    run(&strs(&with(
        &["prune", "--repo", repo, "--group", "db", "--keep-last", "1"],
        &state,
    )))
    .ok();
    let j = run(&strs(&with(&["gc", "--repo", repo, "--grace", "0s", "--json"], &state)))
        .ok()
        .json();
    assert!(j[0]["objects_removed"].as_u64().unwrap() > 0, "{j}");

    // A machine without the cache is told to repair, then repairs from the bucket.
    let fresh = p("fresh");
    run(&strs(&with(&["points", "--repo", repo], &fresh))).fails(
        EXIT_ERROR,
        &[
            "has no local cache",
            &format!("lifeline repair --repo {repo} --state-dir {}", s(&fresh)),
        ],
    );
    run(&strs(&with(&["repair", "--repo", repo], &fresh)))
        .ok()
        .stdout_has(&["1 point"]);
    run(&strs(&with(
        &[
            "restore",
            "--repo",
            repo,
            "--key-file",
            s(&key),
            "--group",
            "db",
            "--volume",
            "disk",
            "--to",
            s(&out),
        ],
        &fresh,
    )))
    .ok();
    assert_same_content(&v, &out);
    // The first machine's cache lost the repository to the repair.
    run(&strs(&with(&["points", "--repo", repo], &state))).fails(EXIT_ERROR, &["owned by the cache", "fresh"]);
    // Without credentials, the error says where to put them.
    run(&["points", "--repo", repo, "--state-dir", s(&fresh)]).fails(EXIT_ERROR, &["AWS_ACCESS_KEY_ID"]);
}

#[test]
fn a_receiver_on_a_three_node_bucket_loses_a_node_mid_upload_and_the_cycle_completes() {
    let Some(mut g) = Garage::cluster(3) else { return };
    g.create_bucket("dr-site");
    let site = Site::new(&["a@acme"]);
    let cfg = site.path("lifeline.toml");
    s3_config(&g, &cfg);
    let state = site.path("receiver-state");
    let repo = Path::new("s3://dr-site/lifeline");
    let mut receiver = ReceiverProc::start_with(
        repo,
        &site.tls,
        "127.0.0.1:0",
        &["a=app"],
        &["--config", s(&cfg), "--state-dir", s(&state)],
    )
    .unwrap_or_else(|r| panic!("the receiver did not start: {}\n{}", r.args, r.stderr));
    let key = site.key("acme");
    let c = site.client(&receiver, "a", &key);
    let v = site.path("v.img");
    write_random_file(&v, 96 * MIB, 9);
    let args = c.agent_args("app", &[("v", &v)], &["--once", "--retry-for", "120s"]);
    let agent = Background::spawn(&strs(&args));
    std::thread::sleep(Duration::from_millis(700));
    g.kill_node(2);
    let r = agent.finish(Duration::from_secs(180));
    if r.code != Some(0) {
        panic!("agent: {}\n{}\nreceiver: {}", r.stdout, r.stderr, receiver.describe());
    }
    assert!(r.stdout.contains("point 1 of group `app` committed"), "{}", r.stdout);
    let out = site.path("out.img");
    c.restore("app", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    receiver.stop();

    // A fresh machine: an empty state directory, the bucket alone.
    let fresh = site.path("fresh-state");
    run(&[
        "repair",
        "--repo",
        "s3://dr-site/lifeline",
        "--state-dir",
        s(&fresh),
        "--config",
        s(&cfg),
    ])
    .ok();
    let out2 = site.path("out2.img");
    run(&[
        "restore",
        "--repo",
        "s3://dr-site/lifeline",
        "--state-dir",
        s(&fresh),
        "--config",
        s(&cfg),
        "--tenant",
        "acme",
        "--key-file",
        s(&key),
        "--group",
        "app",
        "--volume",
        "v",
        "--to",
        s(&out2),
    ])
    .ok();
    assert_same_content(&v, &out2);
}

#[test]
fn a_point_in_a_bucket_is_served_over_nbd() {
    let Some(g) = Garage::single() else { return };
    let has_nbdcopy = std::process::Command::new("sh")
        .args(["-c", "command -v nbdcopy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nbdcopy {
        eprintln!("skipped: `nbdcopy` is not installed (Debian: apt-get install libnbd-bin)");
        return;
    }
    g.create_bucket("serve-repo");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (key, state, cfg) = (p("k"), p("state"), p("lifeline.toml"));
    s3_config(&g, &cfg);
    run(&["key", "new", "--out", s(&key)]).ok();
    let repo = "s3://serve-repo/prod";
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend([
            "--config".into(),
            s(&cfg).into(),
            "--state-dir".into(),
            s(&state).into(),
        ]);
        v
    };
    run(&strs(&with(&["init", "--repo", repo, "--key-file", s(&key)]))).ok();
    let v = p("v.img");
    let f = fs::File::create(&v).unwrap();
    f.set_len(40 * MIB).unwrap();
    write_random_at(&f, 3 * MIB, 5 * MIB, 8);
    write_random_at(&f, 30 * MIB, MIB, 9);
    drop(f);
    let spec = format!("v={}", s(&v));
    run(&strs(&with(&[
        "backup",
        "--repo",
        repo,
        "--key-file",
        s(&key),
        "--group",
        "db",
        "--volume",
        &spec,
    ])))
    .ok();
    let args = with(&[
        "serve",
        "--repo",
        repo,
        "--key-file",
        s(&key),
        "--group",
        "db",
        "--listen",
        "127.0.0.1:0",
        "--read-only",
    ]);
    let mut bg = Background::spawn(&strs(&args));
    let Some(line) = bg.wait_for_line(Duration::from_secs(30), |l| l.starts_with("listening on nbd://")) else {
        panic!("serve never listened: {}", bg.describe());
    };
    let url = format!("{}/v", line.replace("listening on ", ""));
    let copy = p("copy.img");
    let out = std::process::Command::new("nbdcopy")
        .args([url.as_str(), s(&copy)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nbdcopy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_content(&v, &copy);
}

#[test]
fn a_point_in_a_bucket_is_mounted_as_files() {
    if !is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: `lifeline mount` needs root and /dev/fuse");
        return;
    }
    let Some(g) = Garage::single() else { return };
    g.create_bucket("mount-repo");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (key, state, cfg) = (p("k"), p("state"), p("lifeline.toml"));
    s3_config(&g, &cfg);
    run(&["key", "new", "--out", s(&key)]).ok();
    let repo = "s3://mount-repo/prod";
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend([
            "--config".into(),
            s(&cfg).into(),
            "--state-dir".into(),
            s(&state).into(),
        ]);
        v
    };
    run(&strs(&with(&["init", "--repo", repo, "--key-file", s(&key)]))).ok();
    let v = p("v.img");
    write_random_file(&v, 10 * MIB + 7, 18);
    let spec = format!("v={}", s(&v));
    run(&strs(&with(&[
        "backup",
        "--repo",
        repo,
        "--key-file",
        s(&key),
        "--group",
        "db",
        "--volume",
        &spec,
    ])))
    .ok();
    let mnt = p("points");
    fs::create_dir(&mnt).unwrap();
    let args = with(&["mount", "--repo", repo, "--key-file", s(&key), "--group", "db", s(&mnt)]);
    let mut bg = Background::spawn(&strs(&args));
    if bg
        .wait_for_line(Duration::from_secs(30), |l| l.starts_with("mounted at "))
        .is_none()
    {
        panic!("mount never said `mounted at`: {}", bg.describe());
    }
    let read = fs::read(mnt.join("v.img"));
    bg.signal("INT");
    let r = bg.finish(Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        read.expect("read the image") == fs::read(&v).unwrap(),
        "the image differs"
    );
}
