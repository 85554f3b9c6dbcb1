//! End-to-end tests of replication over the network: `certs new`, `receiver`,
//! `agent`, and `backup` / `points` / `restore` with `--repo https://…`, all run as
//! the real binary against a receiver on 127.0.0.1 with certificates minted per
//! test. Every receiver and agent runs under a guard that kills it on drop.

use std::fs::{self, File};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// How long a command that must end promptly (a refusal, a shutdown) may take
/// before the test calls it hung.
const PROMPT: Duration = Duration::from_secs(30);

#[track_caller]
fn refused_at_once(r: Run, needles: &[&str]) -> Run {
    let r = r.fails(EXIT_ERROR, needles);
    assert!(
        !r.stderr.contains("retrying") && !r.stderr.contains("giving up"),
        "a refusal was retried: {}",
        r.stderr
    );
    r
}

/// A 6 MiB volume: 2 MiB random, a 3 MiB hole, 1 MiB random (mostly a hole, so a
/// sparse restore is visible).
fn holey_volume(path: &Path, seed: u64) {
    let f = File::create(path).unwrap();
    write_random_at(&f, 0, 2 * MIB, seed);
    write_random_at(&f, 5 * MIB, MIB, seed + 1);
    f.set_len(6 * MIB).unwrap();
    f.sync_all().unwrap();
}

/// Sum of the sizes of a tenant's durable packs on the receiver.
fn pack_bytes(repo: &Path, tenant: &str) -> u64 {
    durable_packs_in(&tenant_packs_dir(repo, tenant))
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// The seqs `points --json` lists, per group.
pub(crate) fn seqs(points: &[Value], group: &str) -> Vec<u64> {
    points
        .iter()
        .filter(|p| p["group"] == group)
        .map(|p| u(p, "seq"))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Certificates
// ---------------------------------------------------------------------------

#[test]
fn certs_new_writes_private_keys_and_reuses_its_ca() {
    let site = Site::new(&["a@acme"]);
    for f in ["ca.pem", "ca.key"] {
        assert!(site.ca.join(f).is_file(), "{f} missing from the CA dir");
    }
    for f in ["ca.pem", "receiver.pem", "receiver.key", "a.pem", "a.key"] {
        assert!(site.tls.join(f).is_file(), "{f} missing from the TLS dir");
    }
    assert!(
        !site.tls.join("ca.key").exists(),
        "the CA key was written into the TLS directory"
    );
    let mode = |p: PathBuf| fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    for k in [
        site.ca.join("ca.key"),
        site.tls.join("receiver.key"),
        site.tls.join("a.key"),
    ] {
        assert_eq!(mode(k.clone()), 0o600, "{} is not private", k.display());
    }
    let ca_pem = fs::read(site.ca.join("ca.pem")).unwrap();
    let ca_key = fs::read(site.ca.join("ca.key")).unwrap();
    assert_eq!(fs::read(site.tls.join("ca.pem")).unwrap(), ca_pem);
    // No temp files left behind.
    for dir in [&site.ca, &site.tls] {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "leftover {name} in {}", dir.display());
        }
    }

    // A second run with the same CA dir signs with the same CA: a new agent gets
    // its own TLS dir, and the receiver keeps the certificates of the first run.
    let tls_b = site.path("tls-b");
    let r = certs(&site.ca, &tls_b, false, &["b@acme"], &[]).ok();
    assert!(!r.stdout.contains("ca.key"), "the CA was minted again: {}", r.stdout);
    assert_eq!(fs::read(site.ca.join("ca.pem")).unwrap(), ca_pem, "ca.pem changed");
    assert_eq!(fs::read(site.ca.join("ca.key")).unwrap(), ca_key, "ca.key changed");
    assert_eq!(fs::read(tls_b.join("ca.pem")).unwrap(), ca_pem);
    assert_eq!(mode(tls_b.join("b.key")), 0o600);
    assert!(!tls_b.join("receiver.pem").exists() && !tls_b.join("ca.key").exists());

    let mut receiver = site.receiver(&["a=app", "b=app"]);
    let key = site.key("acme");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 1);
    let b = site.client(&receiver, "b", &key).with_tls(&tls_b);
    assert_eq!(u(&b.backup_json("app", &[("v", &v)]), "seq"), 1);
    let a = site.client(&receiver, "a", &key);
    assert_eq!(seqs(&a.points_json(), "app"), [1], "a and b share tenant `acme`");
    receiver.assert_running();

    // Usage errors.
    certs(&site.ca, &site.path("tls-c"), false, &["nobody"], &[])
        .fails(EXIT_ERROR, &["--agent `nobody`", "NAME@TENANT"]);
    certs(&site.ca, &site.path("tls-d"), false, &["bad name@acme"], &[]).fails(EXIT_ERROR, &["--agent"]);
    certs(&site.ca, &site.ca, false, &["c@acme"], &[]).fails(EXIT_ERROR, &["--out must differ from --ca-dir"]);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 2. Round trip over mutual TLS
// ---------------------------------------------------------------------------

#[test]
fn round_trip_over_mtls_then_agent_once_sends_nothing_new() {
    let (site, receiver, key, c) = agent_a_site("a=app");

    let hv = site.path("holey.img");
    holey_volume(&hv, 10);
    let tv = site.path("log.txt");
    let text_len = 300_001u64;
    fs::write(&tv, text_like(text_len as usize, 11)).unwrap();
    let vols = [("disk", hv.as_path()), ("log", tv.as_path())];

    // Nothing yet: a read-only session lists no points (and creates nothing).
    assert!(c.points_json().is_empty());
    c.points(&[]).ok().stdout_has(&["no points"]);

    let sum = c.backup_json("app", &vols);
    assert_eq!(u(&sum, "seq"), 1, "{sum}");
    assert_eq!(u(&sum, "bytes_scanned"), 6 * MIB + text_len, "{sum}");
    let new = u(&sum, "bytes_new");
    assert!(
        (3 * MIB..=3 * MIB + text_len).contains(&new),
        "only data is new (no holes): {sum}"
    );
    let stored = u(&sum, "bytes_stored");
    assert!(stored > 3 * MIB && stored < new, "text compresses: {sum}");
    // The objects landed in the tenant's namespace on the receiver.
    let on_disk = pack_bytes(&site.repo, "acme");
    assert!(on_disk >= stored, "{on_disk} bytes of packs for {stored} stored: {sum}");

    let points = c.points_json();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0]["group"], "app");
    assert_eq!(points[0]["seq"], 1);
    assert_eq!(points[0]["volume_count"], 2);
    assert!(points[0]["volumes"].is_null(), "volumes without a key: {points:?}");
    let keyed = c.points(&["--json", "--key-file", s(&key)]).ok().json();
    assert_volumes(&keyed[0], &[("disk", 6 * MIB), ("log", text_len)]);

    let out = site.path("disk.out");
    c.restore("app", "latest", "disk", &out)
        .ok()
        .stdout_has(&["restored volume `disk` of point 1", "volume hash verified"]);
    assert_sparse_copy(&hv, &out, 4 * MIB, "3 MiB of data");
    let out_t = site.path("log.out");
    c.restore("app", "1", "log", &out_t).ok();
    assert_same_content(&tv, &out_t);

    // The agent, with the same state, finds nothing new.
    let r = c.agent_once("app", &vols).ok();
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("cycle: "))
        .unwrap_or_else(|| panic!("no cycle line: {}", r.stdout));
    assert!(
        line.starts_with("cycle: point 2 of group `app` committed, ") && line.contains("(0 B new)"),
        "{line}"
    );
    assert_eq!(seqs(&c.points_json(), "app"), [1, 2]);
    // `--json`: the same cycle as one object, numbers and not text.
    let args = c.agent_args("app", &vols, &["--once", "--retry-for", "60s", "--json"]);
    let r = Background::spawn(&strs(&args)).finish(PROMPT).ok();
    let cycles: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "cycle")
        .collect();
    assert_eq!(cycles.len(), 1, "one cycle object: {}", r.stdout);
    let cy = &cycles[0];
    assert_eq!(
        (cy["group"].as_str(), u(cy, "seq"), u(cy, "bytes_new")),
        (Some("app"), 3, 0),
        "{cy}"
    );
    assert!(cy["lag_secs"].as_f64().is_some() && cy["taken_at"].is_string(), "{cy}");
    assert!(
        !r.stdout.contains("cycle: "),
        "no text cycle line with --json: {}",
        r.stdout
    );
    // And a backup over https after it says the same in numbers.
    let again = c.backup_json("app", &vols);
    assert_eq!(u(&again, "seq"), 4, "{again}");
    assert_eq!(
        u(cy, "bytes_sent"),
        u(&again, "bytes_stored"),
        "the agent's bytes are the backup's: {cy} {again}"
    );
    assert_eq!(u(&again, "bytes_new"), 0, "{again}");
    c.restore("app", "2", "disk", &out).ok();
    assert_same_content(&hv, &out);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 3. Dedup over the network
// ---------------------------------------------------------------------------

#[test]
fn same_content_in_another_group_and_volume_name_sends_nothing_new() {
    let (site, receiver, _key, c) = agent_a_site("a=app,copy");
    let v = site.path("v.img");
    write_random_file(&v, 4 * MIB, 20);
    let w = site.path("w.img");
    fs::copy(&v, &w).unwrap();

    let first = c.backup_json("app", &[("db", &v)]);
    assert_eq!(u(&first, "bytes_new"), 4 * MIB, "{first}");
    let packs = pack_bytes(&site.repo, "acme");
    let second = c.backup_json("copy", &[("replica", &w)]);
    assert_eq!(u(&second, "seq"), 1, "a new group starts at seq 1: {second}");
    assert_eq!(u(&second, "bytes_scanned"), 4 * MIB, "{second}");
    assert_eq!(u(&second, "bytes_new"), 0, "nothing new over the network: {second}");
    let grown = pack_bytes(&site.repo, "acme") - packs;
    assert!(
        grown < 64 * KIB,
        "the receiver stored {grown} more bytes for a copy: {second}"
    );
    let points = c.points_json();
    assert_eq!(seqs(&points, "app"), [1]);
    assert_eq!(seqs(&points, "copy"), [1]);
    let out = site.path("out.img");
    c.restore("copy", "latest", "replica", &out).ok();
    assert_same_content(&v, &out);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 4. Permissions
// ---------------------------------------------------------------------------

#[test]
fn group_not_allowed_is_refused_at_once_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = (dir.path().join("ca"), dir.path().join("tls"));
    certs(&ca, &tls, true, &["a@acme", "stranger@acme"], &["ops"]).ok();
    let site = Site {
        repo: dir.path().join("repo"),
        dir,
        ca,
        tls,
    };
    let receiver = site.receiver(&["a=app"]);
    let key = site.key("acme");
    let a = site.client(&receiver, "a", &key);
    let v = site.path("v.img");
    write_random_file(&v, MIB, 30);

    refused_at_once(
        a.agent_once("secret", &[("v", &v)]),
        &["may not write group `secret`", "--allow a=GROUP", "refused"],
    );
    // An agent the receiver does not know at all.
    let stranger = site.client(&receiver, "stranger", &key);
    refused_at_once(
        stranger.agent_once("app", &[("v", &v)]),
        &["agent `stranger` may not write group `app`"],
    );
    stranger
        .backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &["may not write group `app`"]);
    // An admin identity cannot replicate, nor list a tenant's points.
    let admin = site.client(&receiver, "ops", &key);
    admin
        .backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &["admin `ops` cannot replicate"]);
    admin.points(&[]).fails(EXIT_ERROR, &["admin `ops` cannot replicate"]);
    assert!(a.points_json().is_empty(), "a refused agent committed a point");

    // The allowed group still works.
    assert_eq!(u(&a.backup_json("app", &[("v", &v)]), "seq"), 1);
    assert_eq!(seqs(&a.points_json(), "app"), [1]);
    assert_eq!(seqs(&a.points_json(), "secret"), Vec::<u64>::new());
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 5. Certificates from another CA
// ---------------------------------------------------------------------------

#[test]
fn certificates_of_another_ca_are_refused_and_the_receiver_keeps_serving() {
    let site = Site::new(&["a@acme"]);
    let mut receiver = site.receiver(&["a=app"]);
    let key = site.key("acme");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 40);
    let good = site.client(&receiver, "a", &key);

    // Another deployment's TLS dir (same agent name): its CA does not know the
    // receiver's certificate.
    let other_tls = site.path("other-tls");
    certs(&site.path("other-ca"), &other_tls, false, &["a@acme"], &[]).ok();
    assert_ne!(
        fs::read(other_tls.join("ca.pem")).unwrap(),
        fs::read(site.tls.join("ca.pem")).unwrap()
    );
    let foreign = good.with_tls(&other_tls);
    let url = receiver.url();
    foreign
        .backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &[&format!("receiver {url}"), "certificate"]);
    refused_at_once(
        foreign.agent_once("app", &[("v", &v)]),
        &[&format!("receiver {url}"), "certificate"],
    );
    foreign.points(&[]).fails(EXIT_ERROR, &["certificate"]);

    // The right CA but a client certificate from the other one: the client
    // sees it before connecting (the receiver would refuse it only after the
    // handshake, which looks like a dropped connection).
    let mixed_tls = site.path("mixed-tls");
    fs::create_dir(&mixed_tls).unwrap();
    fs::copy(site.tls.join("ca.pem"), mixed_tls.join("ca.pem")).unwrap();
    for f in ["a.pem", "a.key"] {
        fs::copy(other_tls.join(f), mixed_tls.join(f)).unwrap();
    }
    let mixed = good.with_tls(&mixed_tls);
    let not_ours = ["a.pem was not issued by the CA in", "lifeline certs new"];
    mixed.backup("app", &[("v", &v)], &[]).fails(EXIT_ERROR, &not_ours);
    refused_at_once(mixed.agent_once("app", &[("v", &v)]), &not_ours);
    mixed.points(&[]).fails(EXIT_ERROR, &not_ours);

    // A client that trusts both CAs gets past its own checks: the receiver
    // itself must refuse the foreign certificate.
    let both_tls = site.path("both-tls");
    fs::create_dir(&both_tls).unwrap();
    let mut bundle = fs::read(site.tls.join("ca.pem")).unwrap();
    bundle.extend(fs::read(other_tls.join("ca.pem")).unwrap());
    fs::write(both_tls.join("ca.pem"), bundle).unwrap();
    for f in ["a.pem", "a.key"] {
        fs::copy(other_tls.join(f), both_tls.join(f)).unwrap();
    }
    good.with_tls(&both_tls)
        .backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &[&format!("receiver {url}")]);
    assert!(
        !site.repo.join("tenants/acme").exists(),
        "a refused certificate created the tenant"
    );

    receiver.assert_running();
    assert!(good.points_json().is_empty(), "a refused agent committed a point");
    assert_eq!(u(&good.backup_json("app", &[("v", &v)]), "seq"), 1);
    let out = site.path("out.img");
    good.restore("app", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 6. Wrong key for a tenant
// ---------------------------------------------------------------------------

#[test]
fn a_second_key_for_the_same_tenant_is_refused() {
    let site = Site::new(&["a@acme", "b@acme"]);
    let receiver = site.receiver(&["a=app", "b=app"]);
    let key = site.key("acme");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 50);
    let a = site.client(&receiver, "a", &key);
    a.backup_json("app", &[("v", &v)]);

    // Another agent of the tenant with another key: the first key owns the tenant.
    let other = site.key("other");
    let b = site.client(&receiver, "b", &other);
    let wrong = ["does not match tenant `acme`", "use the tenant's key file"];
    b.backup("app", &[("v", &v)], &[]).fails(EXIT_ERROR, &wrong);
    refused_at_once(b.agent_once("app", &[("v", &v)]), &wrong);
    let out = site.path("out.img");
    b.restore("app", "latest", "v", &out).fails(EXIT_ERROR, &wrong);
    assert!(!out.exists(), "a refused restore created its target");
    b.points(&["--key-file", s(&other)]).fails(EXIT_ERROR, &wrong);
    // The same agent with another key.
    a.with_key(&other)
        .backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &wrong);

    assert_eq!(seqs(&a.points_json(), "app"), [1], "a refused backup committed a point");
    // b with the tenant's key is fine.
    assert_eq!(u(&b.with_key(&key).backup_json("app", &[("v", &v)]), "seq"), 2);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 7. Tenants are isolated
// ---------------------------------------------------------------------------

#[test]
fn tenants_see_only_their_points_and_do_not_share_objects() {
    let site = Site::new(&["a@t1", "b@t2"]);
    let receiver = site.receiver(&["a=app", "b=app"]);
    // The same key file for both tenants: the chunk ids would match, so only
    // the receiver's namespaces keep them apart.
    let key = site.key("shared");
    let v = site.path("v.img");
    write_random_file(&v, 3 * MIB, 60);
    let a = site.client(&receiver, "a", &key);
    let b = site.client(&receiver, "b", &key);

    let sa = a.backup_json("app", &[("v", &v)]);
    assert_eq!(u(&sa, "bytes_new"), 3 * MIB, "{sa}");
    assert!(b.points_json().is_empty(), "b sees t1's points");
    let out = site.path("out.img");
    b.restore("app", "latest", "v", &out)
        .fails(EXIT_ERROR, &["group `app` has no recovery point"]);
    assert!(!out.exists());

    let sb = b.backup_json("app", &[("v", &v)]);
    assert_eq!(u(&sb, "seq"), 1, "t2's group starts at seq 1: {sb}");
    assert_eq!(
        u(&sb, "bytes_new"),
        3 * MIB,
        "t2 deduplicated against t1's objects: {sb}"
    );
    assert!(pack_bytes(&site.repo, "t1") >= 3 * MIB);
    assert!(pack_bytes(&site.repo, "t2") >= 3 * MIB);
    assert_eq!(seqs(&a.points_json(), "app"), [1]);
    assert_eq!(seqs(&b.points_json(), "app"), [1]);
    b.restore("app", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 8. Garbage on the port
// ---------------------------------------------------------------------------

#[test]
fn garbage_and_idle_connections_do_not_disturb_the_receiver() {
    let site = Site::new(&["a@acme"]);
    let mut receiver = site.receiver(&["a=app"]);
    let addr = format!("127.0.0.1:{}", receiver.port);
    for seed in 0..4 {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        // Random bytes; the last one starts like a TLS handshake record.
        let mut junk = random_bytes(64 * 1024, 70 + seed);
        if seed == 3 {
            junk[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0xff, 0xff]);
        }
        // The receiver may close early: a failed write is fine.
        let _ = conn.write_all(&junk);
        drop(conn);
    }
    // A connection that says nothing stays open during the next backup.
    let idle = TcpStream::connect(&addr).expect("connect");
    receiver.assert_running();

    let key = site.key("acme");
    let c = site.client(&receiver, "a", &key);
    let v = site.path("v.img");
    write_random_file(&v, 2 * MIB, 71);
    assert_eq!(u(&c.backup_json("app", &[("v", &v)]), "seq"), 1);
    let out = site.path("out.img");
    c.restore("app", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    drop(idle);
    receiver.assert_running();
    receiver.stop();
}

// ---------------------------------------------------------------------------
// 9. Receiver killed and restarted mid-upload
// ---------------------------------------------------------------------------

#[test]
fn agent_resumes_after_the_receiver_is_killed_and_restarted() {
    let site = Site::new(&["a@t"]);
    let allow = ["a=g"];
    let receiver = site.receiver(&allow);
    let port = receiver.port;
    let key = site.key("t");
    // The receiver makes closed 16 MiB packs durable in batches of 256 MiB
    // (SYNC_BATCH_BYTES): the volume is larger, so the first durable packs land
    // well before the commit.
    let size = 300 * MIB;
    let v = site.path("big.img");
    write_random_file(&v, size, 90);
    let c = site.client(&receiver, "a", &key);
    let args = c.agent_args("g", &[("v", &v)], &["--interval", "1s", "--retry-for", "60s"]);
    let mut agent = Background::spawn(&strs(&args));
    let mut receiver = Some(receiver);

    let packs = tenant_packs_dir(&site.repo, "t");
    let mut agent_exited = false;
    let seen = poll_until(Duration::from_secs(120), || {
        agent_exited = agent.try_status().is_some();
        agent_exited || !durable_packs_in(&packs).is_empty()
    });
    assert!(
        seen && !agent_exited,
        "no durable pack on the receiver within 120 s (agent exited: {agent_exited}): {}",
        agent.describe()
    );
    let mut first = receiver.take().unwrap();
    first.bg.signal("KILL");
    let status = first.bg.wait_exit(PROMPT).expect("killed receiver ended");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let arrived = pack_bytes(&site.repo, "t");
    assert!(
        !agent.stdout().contains("cycle: "),
        "the backup finished before the kill: use a bigger volume: {}",
        agent.stdout()
    );
    eprintln!(
        "receiver killed with {} durable packs ({arrived} bytes)",
        durable_packs_in(&packs).len()
    );
    drop(first);

    // Restart on the same port over the same repository (the port may take a
    // moment to be free again).
    let listen = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        match ReceiverProc::start(&site.repo, &site.tls, &listen, &allow) {
            Ok(r) => break r,
            Err(r) if Instant::now() < deadline && r.stderr.contains("listen on") => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(r) => panic!("the receiver did not restart on {listen}: {}", r.stderr),
        }
    };

    let line = agent.wait_for_line(Duration::from_secs(120), |l| l.starts_with("cycle: "));
    let Some(line) = line else {
        panic!(
            "the agent committed nothing within 120 s of the restart: {}\n--- receiver stderr ---\n{}",
            agent.describe(),
            second.bg.stderr()
        );
    };
    assert!(line.starts_with("cycle: point 1 of group `g` committed, "), "{line}");
    let agent_err = agent.stderr();
    assert!(
        agent_err.contains("retrying in"),
        "the agent never saw the receiver go away: {agent_err}"
    );
    agent.signal("TERM");
    let r = agent.finish(PROMPT);
    assert!(
        matches!(r.code, Some(EXIT_OK | EXIT_INTERRUPTED)),
        "agent after SIGTERM: {:?}: {}",
        r.code,
        r.stderr
    );

    let out = site.path("out.img");
    c.restore("g", "1", "v", &out).ok();
    assert_same_content(&v, &out);
    fs::remove_file(&out).unwrap();

    let total = pack_bytes(&site.repo, "t");
    eprintln!("receiver holds {total} bytes of packs for a {size}-byte volume ({arrived} before the kill)");
    assert!(total >= size, "random data cannot be stored in {total} bytes");
    assert!(
        total < size + size / 2,
        "the resumed backup resent what had arrived: {total} bytes of packs for {size} bytes ({arrived} before the kill)"
    );

    second.stop();
    let tmp: Vec<_> = fs::read_dir(packs.join("tmp")).unwrap().flatten().collect();
    assert!(tmp.is_empty(), "temp packs left after a clean stop: {tmp:?}");
    run(&["verify", "--repo", s(&site.repo), "--tenant", "t"])
        .ok()
        .stdout_has(&["ok: no damage found"]);
}

// ---------------------------------------------------------------------------
// 10. Shutdown and the catalog lock
// ---------------------------------------------------------------------------

#[test]
fn receiver_stops_on_sigterm_and_a_second_one_finds_the_catalog_in_use() {
    let site = Site::new(&["a@acme"]);
    let mut first = site.receiver(&["a=app"]);
    let second = ReceiverProc::start(&site.repo, &site.tls, "127.0.0.1:0", &["a=app"]);
    let Err(r) = second else {
        panic!("a second receiver started over a repository in use");
    };
    r.fails(EXIT_ERROR, &["catalog of repository", "is in use by another process"]);
    first.assert_running();

    let key = site.key("acme");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 100);
    site.client(&first, "a", &key).backup_json("app", &[("v", &v)]);
    first.stop();

    // The lock is free again; SIGINT stops a receiver too.
    let third = site.receiver(&["a=app"]);
    let c = site.client(&third, "a", &key);
    assert_eq!(seqs(&c.points_json(), "app"), [1]);
    third.bg.signal("INT");
    third.bg.finish(PROMPT).ok();

    // Configuration errors.
    let repo2 = site.path("repo2");
    let start = |tls: &Path, allow: &[&str]| match ReceiverProc::start(&repo2, tls, "127.0.0.1:0", allow) {
        Ok(_) => panic!("a misconfigured receiver started"),
        Err(r) => r,
    };
    start(&site.tls, &["a"]).fails(EXIT_ERROR, &["invalid --allow `a`", "NAME=GROUP"]);
    let no_tls = site.path("no-tls");
    start(&no_tls, &["a=app"]).fails(EXIT_ERROR, &["cannot read", "lifeline certs new"]);
    let r = run(&[
        "receiver",
        "--repo",
        s(&repo2),
        "--listen",
        "not-an-address",
        "--tls-dir",
        s(&site.tls),
    ]);
    r.fails(EXIT_ERROR, &["listen on not-an-address"]);
}

// ---------------------------------------------------------------------------
// 11. Nothing listening
// ---------------------------------------------------------------------------

#[test]
fn agent_gives_up_when_nothing_listens() {
    let site = Site::new(&["a@acme"]);
    let key = site.key("acme");
    // A port that was free a moment ago.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let c = Client {
        url: url.clone(),
        tls: site.tls.clone(),
        identity: "a".into(),
        key: key.clone(),
        state: site.path("state"),
    };
    let v = site.path("v.img");
    File::create(&v).unwrap().write_all_at(b"data", 0).unwrap();
    let args = c.agent_args("app", &[("v", &v)], &["--once", "--retry-for", "2s"]);
    let started = Instant::now();
    let r = Background::spawn(&strs(&args)).finish(Duration::from_secs(15));
    let took = started.elapsed();
    let r = r.fails(
        EXIT_ERROR,
        &[
            "giving up after retrying for 2s (--retry-for)",
            &format!("receiver {url} is unavailable"),
        ],
    );
    assert!(
        r.stderr.contains("retrying in"),
        "no retry before giving up: {}",
        r.stderr
    );
    eprintln!("agent gave up after {took:?}");

    // A one-shot backup does not retry.
    c.backup("app", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &[&format!("receiver {url} is unavailable")]);
    // Plain http and missing TLS flags are usage errors.
    let plain = format!("http://127.0.0.1:{port}");
    run(&["points", "--repo", &plain, "--tls-dir", s(&site.tls), "--identity", "a"])
        .fails(EXIT_ERROR, &["receivers speak TLS only"]);
    Client {
        url: plain,
        ..c.clone()
    }
    .backup("app", &[("v", &v)], &[])
    .fails(EXIT_ERROR, &["receivers speak TLS only"]);
    run(&[
        "restore",
        "--repo",
        &url,
        "--key-file",
        s(&key),
        "--group",
        "app",
        "--volume",
        "v",
        "--to",
        s(&site.path("out")),
    ])
    .fails(EXIT_ERROR, &["pass --tls-dir TLSDIR and --identity NAME"]);
}

/// `lifeline agent`'s options come from flags, else `LIFELINE_*` variables,
/// else the group in lifeline.toml, else the defaults. What the agent says when
/// it gives up on a dead receiver shows which `retry_for` it used.
#[test]
fn agent_options_come_from_flags_then_variables_then_the_file() {
    let site = Site::new(&["a@acme"]);
    let key = site.key("acme");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = Client {
        url: format!("https://127.0.0.1:{port}"),
        tls: site.tls.clone(),
        identity: "a".into(),
        key,
        state: site.path("state"),
    };
    let v = site.path("v.img");
    File::create(&v).unwrap().write_all_at(b"data", 0).unwrap();
    let config = site.path("lifeline.toml");
    fs::write(&config, "[groups.app]\nretry_for = \"3s\"\ninterval = \"1h\"\n").unwrap();
    let gives_up = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = c.agent_args("app", &[("v", &v)], &["--once", "--config", s(&config)]);
        args.extend(extra.iter().map(|e| e.to_string()));
        Background::spawn_in(site.dir.path(), env, &strs(&args)).finish(PROMPT)
    };
    // The file's over the default (60s); its interval yields to --once.
    gives_up(&[], &[]).fails(EXIT_ERROR, &["giving up after retrying for 3s"]);
    // A variable over the file; LIFELINE_INTERVAL does not conflict with --once.
    let env = [("LIFELINE_RETRY_FOR", "2s"), ("LIFELINE_INTERVAL", "1h")];
    gives_up(&env, &[]).fails(EXIT_ERROR, &["giving up after retrying for 2s"]);
    // A flag over the variable.
    gives_up(&env, &["--retry-for", "1s"]).fails(EXIT_ERROR, &["giving up after retrying for 1s"]);
}

/// A typed value that does not parse is refused before the agent starts: in
/// lifeline.toml with the file, line and column; in a variable with its flag.
#[test]
fn agent_refuses_a_bad_value_in_the_file_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    for (line, says) in [
        (
            "interval = \"5 parsecs\"",
            "bad.toml:3:12: invalid duration `5 parsecs`: units are ms, s, m, h, d",
        ),
        (
            "limit_upload = \"-5MiB\"",
            "bad.toml:3:16: invalid rate `-5MiB`: write e.g. 50MiB",
        ),
        (
            "control = \"localhost\"",
            "bad.toml:3:11: invalid address `localhost`: write HOST:PORT",
        ),
    ] {
        fs::write(
            &bad,
            format!("[groups.app]\nvolumes = {{ v = \"/nonexistent\" }}\n{line}\n"),
        )
        .unwrap();
        let r = run(&["agent", "--config", s(&bad), "--group", "app", "--once"]).fails(EXIT_ERROR, &[says]);
        assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
    }
    fs::write(&bad, "[groups.app]\nvolumes = { v = \"/nonexistent\" }\n").unwrap();
    run_env(
        &["agent", "--config", s(&bad), "--group", "app"],
        &[("LIFELINE_INTERVAL", "5 parsecs")],
    )
    .fails(EXIT_ERROR, &["--interval", "5 parsecs", "units are ms, s, m, h, d"]);
}

// ---------------------------------------------------------------------------
// Agent control API
// ---------------------------------------------------------------------------

#[test]
fn agent_control_pauses_syncs_now_and_retargets() {
    let site = Site::new(&["a@t"]);
    certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
    let allow = ["a=g"];
    let first = site.receiver(&allow);
    let second = ReceiverProc::start(&site.path("repo2"), &site.tls, "127.0.0.1:0", &allow)
        .unwrap_or_else(|r| panic!("second receiver: {}", r.stderr));
    let key = site.key("t");
    let v = site.path("v.img");
    write_random_file(&v, 3 * MIB, 91);
    let c = site.client(&first, "a", &key);
    let args = c.agent_args("g", &[("v", &v)], &["--interval", "1h", "--control", "127.0.0.1:0"]);
    let (mut agent, addr) = agent_with_control(PROMPT, &args);
    let tls = s(&site.tls).to_string();
    let ctl = |identity: &str, call: &[&str]| {
        let mut a = vec![
            "control",
            "--control",
            &addr,
            "--agent",
            "a",
            "--tls-dir",
            &tls,
            "--identity",
            identity,
            "--json",
        ];
        a.extend_from_slice(call);
        run(&a)
    };
    let st = ctl("ops", &["status"]).ok().json();
    assert_eq!(
        (st["last_seq"].as_u64(), st["paused"].as_bool()),
        (Some(1), Some(false)),
        "{st}"
    );
    // sync-now returns with a point taken after the call, long before the 1 h interval.
    let synced = ctl("ops", &["sync-now"]).ok().json();
    assert_eq!(synced["seq"], 2, "{synced}");
    // Paused: no cycle, and sync-now says why.
    assert_eq!(ctl("ops", &["pause"]).ok().json()["paused"], true);
    ctl("ops", &["sync-now"]).fails(EXIT_ERROR, &["paused", "resume it first"]);
    ctl("ops", &["resume"]).ok();
    // Retarget: the next point lands on the other receiver.
    let st = ctl("ops", &["retarget", &second.url()]).ok().json();
    assert_eq!(st["target"], second.url().as_str(), "{st}");
    let synced = ctl("ops", &["sync-now"]).ok().json();
    assert_eq!(synced["seq"], 1, "the other receiver starts its own timeline: {synced}");
    let c2 = site.client(&second, "a", &key);
    assert_eq!(seqs(&c2.points_json(), "g"), [1]);
    assert_eq!(seqs(&c.points_json(), "g"), [1, 2]);
    // Only admins drive agents.
    ctl("a", &["status"]).fails(EXIT_ERROR, &["cannot control agents"]);
    agent.signal("TERM");
    agent.wait_exit(PROMPT).expect("agent stops on SIGTERM");
}

#[test]
fn receiver_disk_full_fails_the_cycle_cleanly_and_the_agent_recovers() {
    if !is_root() {
        eprintln!("SKIP receiver disk-full test: needs root to mount a small tmpfs");
        return;
    }
    let site = Site::new(&["a@t"]);
    let small = site.path("small-fs");
    let mount = match TmpfsMount::mount(&small, "8m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP receiver disk-full test: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let repo = mount.dir.join("repo");
    let receiver = ReceiverProc::start(&repo, &site.tls, "127.0.0.1:0", &["a=g"])
        .unwrap_or_else(|r| panic!("receiver: {}", r.stderr));
    let key = site.key("t");
    let v = site.path("v.img");
    write_random_file(&v, 32 * MIB, 92);
    let c = site.client(&receiver, "a", &key);
    // Out of space is transient for the agent: it retries, then gives up clearly.
    let args = c.agent_args("g", &[("v", &v)], &["--once", "--retry-for", "1s"]);
    let r = run(&strs(&args)).fails(EXIT_ERROR, &["giving up"]);
    assert!(
        r.stderr.contains("out of space") || r.stderr.contains("No space left"),
        "the error does not say the receiver is full: {}",
        r.stderr
    );
    // No partial point; the receiver still serves.
    assert!(c.points_json().is_empty());
    // Space comes back (the volume shrinks): the next cycle commits.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&v)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let r = c.agent_once("g", &[("v", &v)]);
    assert!(r.stdout.contains("cycle: point 1 "), "{}", r.stdout);
    let out = site.path("out.img");
    c.restore("g", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    drop(receiver);
}

#[test]
fn agent_waits_out_a_paused_receiver_and_resumes() {
    let site = Site::new(&["a@t"]);
    let receiver = site.receiver(&["a=g"]);
    let key = site.key("t");
    let v = site.path("v.img");
    write_random_file(&v, 2 * MIB, 93);
    let c = site.client(&receiver, "a", &key);
    let args = c.agent_args("g", &[("v", &v)], &["--interval", "1s", "--retry-for", "120s"]);
    let mut agent = Background::spawn(&strs(&args));
    agent
        .wait_for_line(PROMPT, |l| l.starts_with("cycle: point 1 "))
        .unwrap_or_else(|| panic!("no first cycle: {}", agent.describe()));
    // Paused longer than the keep-alive timeout: the agent's call fails and it
    // backs off instead of hanging; once the receiver continues, cycles resume.
    receiver.bg.signal("STOP");
    let failed = poll_until(Duration::from_secs(60), || agent.stderr().contains("retrying in"));
    receiver.bg.signal("CONT");
    assert!(
        failed,
        "the agent never noticed the paused receiver: {}",
        agent.describe()
    );
    let before = agent.stdout().lines().filter(|l| l.starts_with("cycle: ")).count();
    let resumed = poll_until(Duration::from_secs(60), || {
        agent.stdout().lines().filter(|l| l.starts_with("cycle: ")).count() > before
    });
    assert!(resumed, "no cycle after the receiver continued: {}", agent.describe());
    agent.signal("TERM");
    agent.wait_exit(PROMPT).expect("agent stops on SIGTERM");
}

#[test]
fn status_shows_lag_cycle_bytes_and_errors_per_group() {
    let site = Site::new(&["a@t"]);
    let receiver = site.receiver(&["a=g"]);
    let key = site.key("t");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 94);
    let c = site.client(&receiver, "a", &key);
    c.agent_once("g", &[("v", &v)]);
    let tls = s(&site.tls).to_string();
    let url = receiver.url();
    let status = || {
        run(&["status", "--repo", &url, "--tls-dir", &tls, "--identity", "a", "--json"])
            .ok()
            .json()
    };
    let st = status();
    let g = &st[0];
    assert_eq!(
        (g["group"].as_str(), g["last_seq"].as_u64()),
        (Some("g"), Some(1)),
        "{st}"
    );
    assert!(g["last_cycle_secs"].as_f64().unwrap() > 0.0, "{st}");
    assert!(g["last_bytes_sent"].as_u64().unwrap() >= MIB, "{st}");
    assert!(g["lag_secs"].as_f64().unwrap() >= 0.0, "{st}");
    assert_eq!(g["errors"], 0, "{st}");
    // A refused commit by the group's agent counts as an error of the group.
    let args = c.agent_args("other", &[("v", &v)], &["--once"]);
    run(&strs(&args)).code(EXIT_ERROR);
    assert_eq!(status()[0]["errors"], 1);
}

#[test]
fn agent_killed_mid_cycle_then_the_next_cycle_completes() {
    let site = Site::new(&["a@t"]);
    let receiver = site.receiver(&["a=g"]);
    let key = site.key("t");
    let v = site.path("big.img");
    write_random_file(&v, 300 * MIB, 95);
    let c = site.client(&receiver, "a", &key);
    let args = c.agent_args("g", &[("v", &v)], &["--once"]);
    let mut agent = Background::spawn(&strs(&args));
    let packs = tenant_packs_dir(&site.repo, "t");
    let seen = poll_until(Duration::from_secs(120), || {
        agent.try_status().is_some() || !durable_packs_in(&packs).is_empty()
    });
    assert!(
        seen && agent.try_status().is_none(),
        "no durable pack before the agent ended: {}",
        agent.describe()
    );
    agent.signal("KILL");
    agent.wait_exit(PROMPT).expect("killed agent ended");
    assert!(c.points_json().is_empty(), "a killed cycle committed a point");
    let arrived = pack_bytes(&site.repo, "t");
    // The next cycle completes and sends only what had not arrived.
    let r = c.agent_once("g", &[("v", &v)]);
    assert!(r.stdout.contains("cycle: point 1 "), "{}", r.stdout);
    let total = pack_bytes(&site.repo, "t");
    assert!(
        total < 300 * MIB + arrived / 2 + 16 * MIB,
        "resent too much: {arrived} arrived, {total} in total"
    );
    let out = site.path("out.img");
    c.restore("g", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
}

#[test]
fn prune_through_the_receiver_needs_an_admin_and_keeps_the_policy() {
    let site = Site::new(&["a@t"]);
    certs(&site.ca, &site.tls, false, &[], &["ops"]).ok();
    let receiver = site.receiver(&["a=g"]);
    let key = site.key("t");
    let v = site.path("v.img");
    write_random_file(&v, MIB, 3);
    let c = site.client(&receiver, "a", &key);
    for i in 0..4u64 {
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, i * 4096, 4096, 50 + i);
        c.backup_json("g", &[("v", &v)]);
    }
    let url = receiver.url();
    let tls = s(&site.tls).to_string();
    let prune = |identity: &str, extra: &[&str]| {
        let mut a = vec![
            "prune",
            "--repo",
            &url,
            "--tls-dir",
            &tls,
            "--identity",
            identity,
            "--tenant",
            "t",
            "--group",
            "g",
            "--keep-last",
            "2",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    // Agents stay append-only.
    prune("a", &[]).fails(EXIT_ERROR, &["append-only"]);
    prune("ops", &["--dry-run"])
        .ok()
        .stdout_has(&["keep (newest, last)", "remove", "dry run"]);
    assert_eq!(seqs(&c.points_json(), "g"), [1, 2, 3, 4]);
    prune("ops", &[]).ok().stdout_has(&["removed 2 points"]);
    assert_eq!(seqs(&c.points_json(), "g"), [3, 4]);
    // Garbage collection through the receiver: admins only, and it frees the
    // pruned points' own chunks while the receiver keeps serving.
    let gc = |identity: &str, extra: &[&str]| {
        let mut a = vec![
            "gc",
            "--repo",
            &url,
            "--tls-dir",
            &tls,
            "--identity",
            identity,
            "--tenant",
            "t",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    gc("a", &["--grace", "0s"]).fails(EXIT_ERROR, &["append-only"]);
    gc("ops", &[])
        .ok()
        .stdout_has(&["tenant t:", "kept for the grace period (1h)"]);
    let j = gc("ops", &["--grace", "0s", "--json"]).ok().json();
    assert!(j[0]["objects_removed"].as_u64().unwrap() > 0, "{j}");
    let out = site.path("out.img");
    c.restore("g", "4", "v", &out).ok();
    assert!(
        fs::read(&out).unwrap() == fs::read(&v).unwrap(),
        "point 4 restores bit for bit after gc"
    );
    // The timeline goes on.
    assert_eq!(c.backup_json("g", &[("v", &v)])["seq"], 5);
}

/// The group's freeze/thaw hooks quiesce the primary site's volumes: the
/// forward agent runs them; an agent that replicates other volumes (a
/// failback's reverse agent reads the group's targets) does not, says so, and
/// its point is fuzzy, not labelled frozen.
#[test]
fn the_groups_freeze_hooks_run_for_the_forward_agent_only() {
    let (site, _receiver, _key, c) = agent_a_site("a=app");
    let primary = site.path("primary.img");
    let target = site.path("target.img");
    write_random_file(&primary, MIB, 1);
    write_random_file(&target, MIB, 2);
    let frozen = site.path("frozen");
    let config = site.path("lifeline.toml");
    fs::write(
        &config,
        format!(
            "[groups.app]\nvolumes = {{ v = \"{}\" }}\ntargets = {{ v = \"{}\" }}\n\
             freeze = \"touch {}\"\nthaw = \"true\"\n",
            s(&primary),
            s(&target),
            s(&frozen)
        ),
    )
    .unwrap();
    let agent = |vol: &Path| {
        let mut args = c.agent_args("app", &[("v", vol)], &["--once"]);
        args.extend(["--config".to_string(), s(&config).to_string()]);
        Background::spawn(&strs(&args)).finish(PROMPT).ok()
    };

    // The reverse agent: the targets, no hooks.
    let r = agent(&target);
    assert!(!frozen.exists(), "the reverse agent ran the primary's freeze hook");
    assert!(
        r.stderr.contains("not running group `app`'s freeze/thaw hooks"),
        "{}",
        r.stderr
    );
    let points = c.points_json();
    assert_eq!(points.last().unwrap()["consistency"], "fuzzy", "{points:?}");

    // The forward agent: the group's volumes, hooks run.
    let r = agent(&primary);
    assert!(
        frozen.exists(),
        "the forward agent did not run the freeze hook: {}",
        r.stderr
    );
    let points = c.points_json();
    assert_eq!(points.last().unwrap()["consistency"], "frozen", "{points:?}");
}
