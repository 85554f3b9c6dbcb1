//! PostgreSQL, end to end, the way an operator protects it: a real PostgreSQL on
//! a loop-mounted ext4 image, rows committed continuously by a writer, an agent
//! whose freeze hooks `fsfreeze` the filesystem for each point, replication to a
//! real receiver; then the shipped runbooks (`runbooks/postgres-*.toml` with
//! `runbooks/lifeline-postgres.toml`, paths and ports substituted): a drill, a
//! failover after kill -9 of PostgreSQL and the agent, and a failback. Each
//! phase counts the rows the recovered database holds against the rows the
//! writer was told were committed, and holds the claimed RPO against the
//! measured loss.
//!
//! Root only, with Debian's `postgresql`, util-linux and e2fsprogs (installed by
//! `.ci/run`); it skips with a message elsewhere. Figures go to stderr (run with
//! `--nocapture` to see them).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const PROMPT: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(180);
/// Time allowed on top of a claimed RPO when counting the rows it covers: the
/// clocks of PostgreSQL and Lifeline are the same host's, but a point's
/// `taken_at` is read just before the freeze and a row's time just before its
/// commit.
const SLACK_SECS: f64 = 0.25;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The newest `/usr/lib/postgresql/*/bin` that has `postgres`, `initdb` and `psql`.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            ["postgres", "initdb", "psql", "pg_ctl"]
                .iter()
                .all(|p| bin.join(p).is_file())
                .then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("not root (loop devices, mounts, fsfreeze and runuser need it)".into());
    }
    if pg_bin().is_none() {
        return Some("no /usr/lib/postgresql/*/bin/postgres (Debian `postgresql`; .ci/run installs it)".into());
    }
    for p in ["losetup", "mkfs.ext4", "mount", "umount", "fsfreeze", "runuser"] {
        if !on_path(p) {
            return Some(format!("no `{p}` (util-linux / e2fsprogs)"));
        }
    }
    if Command::new("id")
        .arg("postgres")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("no `postgres` user (Debian `postgresql` creates it)".into());
    }
    None
}

/// Runs `program ARGS`, failing the test if it fails; its stdout.
#[track_caller]
fn sh_ok(program: &str, args: &[&str]) -> String {
    sh(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// psql connected as `postgres` to the server on `port`.
fn psql_to(bin: &Path, port: u16) -> Command {
    let mut c = Command::new(bin.join("psql"));
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
    ]);
    c
}

/// Runs a query with psql; `Err` holds what psql said.
fn psql(bin: &Path, port: u16, sql: &str) -> Result<String, String> {
    let out = psql_to(bin, port)
        .args(["-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `count|max(id)` of `orders`, as the runbooks' `rows` check prints it.
#[track_caller]
fn parse_rows(text: &str) -> (u64, u64) {
    let (c, m) = text
        .trim()
        .split_once('|')
        .unwrap_or_else(|| panic!("not COUNT|MAX: {text:?}"));
    (c.parse().unwrap(), m.parse().unwrap())
}

#[track_caller]
fn rows(bin: &Path, port: u16) -> (u64, u64) {
    parse_rows(&psql(bin, port, "select count(*), coalesce(max(id), 0) from orders").unwrap())
}

/// Sets `path` in a TOML table, asserting the key is already there: the test
/// substitutes the shipped files' values and must notice when they change.
#[track_caller]
fn set(t: &mut toml::Table, path: &[&str], v: impl Into<toml::Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = t;
    for p in parents {
        cur = cur
            .get_mut(*p)
            .and_then(|x| x.as_table_mut())
            .unwrap_or_else(|| panic!("no table {path:?} in the shipped file"));
    }
    assert!(cur.contains_key(*last), "no key {path:?} in the shipped file");
    cur.insert(last.to_string(), v.into());
}

fn shipped(name: &str) -> toml::Table {
    fs::read_to_string(repo_root().join("runbooks").join(name))
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("runbooks/{name}: {e}"))
}

/// A writer: one psql session committing a row every 20 ms in a loop
/// (`orders(id, at)`, ids consecutive from the table's max), announcing each
/// commit as a NOTICE once it returned. `acked` is what the application was told
/// is durable: the measure of loss.
struct Writer {
    child: Child,
    acked: Arc<Mutex<Vec<(u64, f64)>>>,
    reader: Option<JoinHandle<()>>,
}

const WRITER_SQL: &str = "DO $$ DECLARE n bigint; t timestamptz; BEGIN \
     SELECT coalesce(max(id), 0) INTO n FROM orders; \
     LOOP n := n + 1; t := clock_timestamp(); INSERT INTO orders VALUES (n, t); COMMIT; \
     RAISE NOTICE 'committed % %', n, extract(epoch from t); PERFORM pg_sleep(0.02); END LOOP; END $$";

impl Writer {
    fn start(bin: &Path, port: u16) -> Writer {
        let mut child = psql_to(bin, port)
            .args(["-q", "-c", WRITER_SQL])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let err = child.stderr.take().unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sink = acked.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix("NOTICE:  committed ") else {
                    continue;
                };
                let mut f = rest.split_whitespace();
                if let (Some(Ok(n)), Some(Ok(t))) = (f.next().map(str::parse), f.next().map(str::parse)) {
                    sink.lock().unwrap().push((n, t));
                }
            }
        });
        Writer {
            child,
            acked,
            reader: Some(reader),
        }
    }

    fn acked(&self) -> Vec<(u64, f64)> {
        self.acked.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_for(&self, n: usize) {
        assert!(
            poll_until(PROMPT, || self.acked.lock().unwrap().len() >= n),
            "the writer committed {} rows, not {n}",
            self.acked.lock().unwrap().len()
        );
    }

    /// Waits for the session to end (its server went away); returns what it acknowledged.
    #[track_caller]
    fn ended(mut self) -> Vec<(u64, f64)> {
        let mut done = false;
        poll_until(PROMPT, || {
            done = self.child.try_wait().unwrap().is_some();
            done
        });
        assert!(done, "the writer's session outlived its server");
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whatever the test leaves running or mounted goes, in order: PostgreSQL on
/// each mount stopped, the filesystem thawed, then unmounted.
struct Cleanup {
    bin: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("fsfreeze").arg("-u").arg(m).output();
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(m.join("data"))
                .args(["stop", "-m", "immediate", "-w"])
                .output();
            let _ = Command::new("umount").arg(m).output();
        }
    }
}

/// Acknowledged rows missing from a recovered database that holds ids 1..=`max`
/// (`count` = `max`, no holes), among those acknowledged no later than `until`.
fn lost(acked: &[(u64, f64)], max: u64, until: f64) -> Vec<(u64, f64)> {
    acked.iter().copied().filter(|(n, t)| *n > max && *t <= until).collect()
}

/// Acknowledged rows written within `rpo` seconds (plus the slack) before `t`.
fn in_window(acked: &[(u64, f64)], t: f64, rpo: f64) -> usize {
    acked
        .iter()
        .filter(|(_, at)| *at > t - rpo - SLACK_SECS && *at <= t)
        .count()
}

#[test]
fn postgres_drill_failover_and_failback_with_the_shipped_runbooks() {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: PostgreSQL end to end: {why}");
        return;
    }
    let bin = pg_bin().unwrap();
    let started = Instant::now();

    // One CA: the secondary's receiver (also the primary's, for the failback),
    // the forward agent db1, the reverse agent dr1, the planner, the admin ops.
    let site = Site::new(&["db1@acme", "dr1@acme", "planner@acme"]);
    certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
    // PostgreSQL runs as `postgres`, which must reach its data directory.
    fs::set_permissions(site.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    let receiver = site.receiver(&["db1=pg"]);
    let key = site.key("acme");
    let mut cleanup = Cleanup {
        bin: bin.clone(),
        mounts: Vec::new(),
    };

    // Production: PostgreSQL on an ext4 image, loop-mounted.
    let image = site.path("primary/pg.img");
    let mnt = site.path("primary/mnt");
    let target = site.path("recovered/pg.img");
    let recovered_mnt = site.path("recovered/mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::File::create(&image).unwrap().set_len(128 * MIB).unwrap();
    sh_ok(
        "mkfs.ext4",
        &["-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", s(&image)],
    );
    sh_ok("mount", &["-o", "loop", s(&image), s(&mnt)]);
    cleanup.mounts.push(mnt.clone());
    cleanup.mounts.push(recovered_mnt.clone());
    let data = mnt.join("data");
    fs::create_dir(&data).unwrap();
    sh_ok("chown", &["postgres:postgres", s(&data)]);
    sh_ok(
        "runuser",
        &[
            "-u",
            "postgres",
            "--",
            s(&bin.join("initdb")),
            "-D",
            s(&data),
            "--auth=trust",
            "-U",
            "postgres",
            "--wal-segsize=1",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    );
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("shared_buffers = 16MB\nmin_wal_size = 2MB\nmax_wal_size = 32MB\n");
    fs::write(&conf, text).unwrap();
    let prod_port = free_port();
    let pg_log = fs::File::create(site.path("primary-postgres.log")).unwrap();
    let mut production = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("postgres"))
        .args(["-D", s(&data), "-p", &prod_port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
        .stdin(Stdio::null())
        .stdout(pg_log.try_clone().unwrap())
        .stderr(pg_log)
        .spawn()
        .unwrap();
    assert!(
        poll_until(PROMPT, || psql(&bin, prod_port, "select 1").is_ok()),
        "production PostgreSQL did not start: {}",
        fs::read_to_string(site.path("primary-postgres.log")).unwrap_or_default()
    );
    psql(
        &bin,
        prod_port,
        "create table orders (id bigint primary key, at timestamptz not null)",
    )
    .unwrap();
    let writer = Writer::start(&bin, prod_port);
    writer.wait_for(5);

    // The deployment: runbooks/lifeline-postgres.toml with this machine's paths.
    let primary_receiver = free_port();
    let control = free_port();
    let reverse_control = free_port();
    let service_port = free_port();
    let mut cfg = shipped("lifeline-postgres.toml");
    set(&mut cfg, &["state_dir"], s(&site.path("planner-state")));
    set(&mut cfg, &["key_file"], s(&key));
    set(&mut cfg, &["tls", "dir"], s(&site.tls));
    set(
        &mut cfg,
        &["sites", "primary", "receiver"],
        format!("https://127.0.0.1:{primary_receiver}"),
    );
    set(&mut cfg, &["sites", "primary", "repo"], s(&site.path("primary-repo")));
    set(
        &mut cfg,
        &["sites", "primary", "listen"],
        format!("127.0.0.1:{primary_receiver}"),
    );
    set(&mut cfg, &["sites", "secondary", "receiver"], receiver.url());
    set(&mut cfg, &["sites", "secondary", "repo"], s(&site.repo));
    set(&mut cfg, &["groups", "pg", "volumes", "db"], s(&image));
    set(&mut cfg, &["groups", "pg", "targets", "db"], s(&target));
    set(&mut cfg, &["groups", "pg", "control"], format!("127.0.0.1:{control}"));
    set(
        &mut cfg,
        &["groups", "pg", "reverse_control"],
        format!("127.0.0.1:{reverse_control}"),
    );
    set(
        &mut cfg,
        &["groups", "pg", "freeze"],
        format!("fsfreeze -f {}", s(&mnt)),
    );
    set(&mut cfg, &["groups", "pg", "thaw"], format!("fsfreeze -u {}", s(&mnt)));
    let config = site.path("lifeline.toml");
    fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let runbook = |name: &str, vars: &[(&str, String)], ports: &[(&str, u16)]| {
        let mut rb = shipped(name);
        set(&mut rb, &["runbook", "variables", "pg_bin"], s(&bin));
        for (k, v) in vars {
            set(&mut rb, &["runbook", "variables", k], v.clone());
        }
        for (k, v) in ports {
            set(&mut rb, &["runbook", "ports", k], i64::from(*v));
        }
        let p = site.path(name);
        fs::write(&p, toml::to_string(&rb).unwrap()).unwrap();
        p
    };
    let lifeline = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--config", s(&config)]);
        run(&a)
    };

    // The forward agent, from the configuration: volumes, interval, control
    // address, the freeze hooks, and its identity (the group's agent, db1).
    let agent_args: Vec<String> = [
        "agent",
        "--config",
        s(&config),
        "--group",
        "pg",
        "--state-dir",
        s(&site.path("agent-state")),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut agent = Background::spawn(&strs(&agent_args));
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("cycle: point 2 "))
        .unwrap_or_else(|| panic!("no second point: {}", agent.describe()));
    assert!(
        !agent.stderr().contains("not running group"),
        "the forward agent runs the group's freeze hooks: {}",
        agent.stderr()
    );
    let points = lifeline(&["points", "--repo", &receiver.url(), "--json"]).ok().json();
    assert!(
        points.as_array().unwrap().iter().all(|p| p["consistency"] == "frozen"),
        "every point was taken frozen: {points}"
    );
    let setup_secs = started.elapsed().as_secs_f64();

    // 1. A drill, while production writes and replicates.
    let t = Instant::now();
    let drill_rb = runbook("postgres-drill.toml", &[], &[("pg", 5432)]);
    let reports = site.path("reports");
    let r = lifeline(&["drill", s(&drill_rb), "--report-dir", s(&reports), "--json"]);
    let drill_secs = t.elapsed().as_secs_f64();
    let summary = events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "drill_report")
        .unwrap_or_else(|| panic!("no drill report: {}\n{}", r.stdout, r.stderr));
    let dir = PathBuf::from(summary["report_dir"].as_str().unwrap());
    let report: Value = serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r.code, Some(EXIT_OK), "{report:#}\n{}", r.stderr);
    assert_ne!(report["verdict"], "failed", "{report:#}");
    assert!(
        report["environment"]["leftovers"]
            .as_array()
            .is_none_or(|l| l.is_empty()),
        "{report:#}"
    );
    let teardown = report["environment"]["teardown"].to_string();
    assert!(
        teardown.contains("unmounted"),
        "teardown unmounted the image: {teardown}"
    );
    let check = report_check(&report, "rows");
    let (drill_count, drill_max) = parse_rows(check["evidence"]["stdout"].as_str().unwrap());
    assert_eq!(drill_count, drill_max, "the recovered rows are 1..=max: {check}");
    assert!(drill_count > 0, "{check}");
    let t0 = parse_utc_ms(report["disaster_at"].as_str().unwrap()) as f64 / 1000.0;
    let drill_rpo = report["achieved"]["rpo_secs"].as_f64().unwrap();
    let acked = writer.acked();
    let drill_lost = lost(&acked, drill_max, t0);
    let drill_window = in_window(&acked, t0, drill_rpo);
    assert!(
        drill_lost.len() <= drill_window,
        "the drill lost {} rows, more than the {drill_window} written in its claimed RPO of {drill_rpo:.2} s",
        drill_lost.len()
    );
    // Production never saw the drill: still answering, still replicating, and the
    // sandbox's mount never reached the host.
    writer.wait_for(acked.len() + 5);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(s(&site.path("planner-state"))),
        "a drill mount is visible on the host: {mountinfo}"
    );
    let drill_loss_secs = t0 - acked.iter().find(|(n, _)| *n == drill_max).map_or(t0, |r| r.1);

    // 2. Disaster: kill -9 of PostgreSQL and of the agent.
    let before = agent.stdout().matches("cycle: point").count();
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("cycle: point"))
        .unwrap_or_else(|| panic!("no cycle after the drill ({before} before): {}", agent.describe()));
    writer.wait_for(writer.acked().len() + 20);
    let postmaster = fs::read_to_string(data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    sh_ok("kill", &["-KILL", &postmaster]);
    agent.signal("KILL");
    let disaster = now_ms() as f64 / 1000.0;
    let acked = writer.ended();
    let _ = production.wait();
    assert!(agent.wait_exit(PROMPT).is_some(), "the agent did not die");
    // The agent may have died with the filesystem frozen.
    let _ = Command::new("fsfreeze").args(["-u", s(&mnt)]).output();

    let t = Instant::now();
    let failover_rb = runbook(
        "postgres-failover.toml",
        &[("mount", s(&recovered_mnt).to_string())],
        &[("pg", service_port)],
    );
    let r = lifeline(&["failover", s(&failover_rb), "--json"]);
    let failover_secs = t.elapsed().as_secs_f64();
    let summary = events(&r.stdout)
        .pop()
        .unwrap_or_else(|| panic!("no summary: {}", r.stderr));
    assert_eq!(summary["status"], "succeeded", "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(EXIT_OK));
    let promoted = &summary["promoted"][0];
    let failover_rpo = promoted["rpo_secs"].as_f64().unwrap();
    let taken_at = parse_utc_ms(promoted["taken_at"].as_str().unwrap()) as f64 / 1000.0;
    let (fo_count, fo_max) = rows(&bin, service_port);
    assert_eq!(fo_count, fo_max, "the recovered rows are 1..=max");
    let fo_lost = lost(&acked, fo_max, f64::MAX);
    // The claimed RPO runs from the run's start back to the point.
    let run_start = taken_at + failover_rpo;
    let fo_window = in_window(&acked, run_start, failover_rpo);
    assert!(
        fo_lost.len() <= fo_window,
        "the failover lost {} rows, more than the {fo_window} written in its claimed RPO of {failover_rpo:.2} s",
        fo_lost.len()
    );
    assert!(
        fo_lost.iter().all(|(_, at)| *at > taken_at - SLACK_SECS),
        "rows older than the promoted point are missing: {fo_lost:?} (point taken at {taken_at})"
    );
    let last_kept = acked.iter().find(|(n, _)| *n == fo_max).map_or(disaster, |r| r.1);
    let fo_loss_secs = acked.last().map_or(0.0, |r| r.1) - last_kept;

    // The primary's filesystem is what survived there: unmounted, it seeds the
    // failback. Its crashed backends go first.
    let deadline = Instant::now() + PROMPT;
    while !Command::new("umount").arg(&mnt).output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "the primary's filesystem stays busy");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. Production on the recovery site, then the failback home.
    let writer = Writer::start(&bin, service_port);
    writer.wait_for(20);
    let t = Instant::now();
    let failback_rb = runbook(
        "postgres-failback.toml",
        &[
            ("lifeline", BIN.to_string()),
            ("config", s(&config).to_string()),
            ("recovered_mount", s(&recovered_mnt).to_string()),
            ("home_mount", s(&mnt).to_string()),
        ],
        &[
            ("pg", service_port),
            ("receiver", primary_receiver),
            ("reverse_control", reverse_control),
        ],
    );
    let r = lifeline(&["failback", s(&failback_rb), "--json"]);
    let failback_secs = t.elapsed().as_secs_f64();
    let ev = events(&r.stdout);
    let summary = ev.last().unwrap_or_else(|| panic!("no summary: {}", r.stderr)).clone();
    // The primary's agent died with it: home, zero loss, reprotect pending.
    assert_eq!(summary["status"], "reprotect_pending", "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(3));
    assert_eq!(summary["pins_left"], serde_json::json!([]), "{}", r.stdout);
    let run_id = summary["run"].as_str().unwrap().to_string();
    let runs = lifeline(&["runs", "--json"]).ok().json();
    let rec = run_by_id(&runs, &run_id);
    assert_eq!(rec["steps"]["verify"]["outputs"]["zero_loss"], "true", "{rec}");
    let failback_rpo = summary["promoted"][0]["rpo_secs"].as_f64().unwrap();
    let acked2 = writer.ended();
    let (home_count, home_max) = parse_rows(rec["steps"]["rows"]["outputs"]["stdout"].as_str().unwrap());
    assert_eq!((home_count, home_max), rows(&bin, service_port));
    assert_eq!(home_count, home_max, "the rows at home are 1..=max");
    let fb_lost = lost(&acked2, home_max, f64::MAX);
    assert!(fb_lost.is_empty(), "the failback lost acknowledged rows: {fb_lost:?}");
    assert!(acked2.len() >= 20 && home_max >= fo_max + acked2.len() as u64);

    // The primary's agent starts again (its freeze hooks on the home mount);
    // `lifeline resume` finishes the reprotect.
    let mut agent = Background::spawn(&strs(&agent_args));
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("control listening on "))
        .unwrap_or_else(|| panic!("no control address: {}", agent.describe()));
    let r = lifeline(&["resume", &run_id, "--json"]);
    assert_eq!(
        events(&r.stdout).last().unwrap()["status"],
        "succeeded",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    agent
        .wait_for_line(RUN, |l| l.starts_with("cycle: point"))
        .unwrap_or_else(|| panic!("the forward agent does not replicate again: {}", agent.describe()));
    lifeline(&["audit", "verify"]).ok();

    eprintln!(
        "postgres e2e (setup {setup_secs:.1} s):\n\
         \x20 drill:    {drill_secs:.1} s; {} rows lost ({drill_loss_secs:.2} s of writes) against a claimed RPO of {drill_rpo:.2} s ({drill_window} rows in it); {drill_count} rows recovered, {} attempts of the psql check\n\
         \x20 failover: {failover_secs:.1} s; {} rows lost ({fo_loss_secs:.2} s of writes) against a claimed RPO of {failover_rpo:.2} s ({fo_window} rows in it); {fo_count} of {} acknowledged rows recovered\n\
         \x20 failback: {failback_secs:.1} s; {} rows lost against a claimed RPO of {failback_rpo:.2} s; {home_count} rows at home ({} written on the recovery site)\n\
         \x20 total {:.1} s",
        drill_lost.len(),
        check["evidence"]["attempts"].as_str().unwrap_or("?"),
        fo_lost.len(),
        acked.len(),
        fb_lost.len(),
        acked2.len(),
        started.elapsed().as_secs_f64()
    );
    drop(agent);
    drop(cleanup);
}
