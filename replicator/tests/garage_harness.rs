//! The test harness itself: real Garage nodes (skipped, with a SKIP line, when the garage
//! binary is absent) and the fault-injecting `CutProxy`. S3 requests here go through curl's
//! `--aws-sigv4` when curl has it (skipped otherwise); the replicator's own S3 tests use
//! the harness through `object_store`.

#[path = "support/cut_proxy.rs"]
mod cut_proxy;
#[path = "support/garage.rs"]
mod garage;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cut_proxy::CutProxy;
use garage::Garage;

/// curl with `--aws-sigv4` (7.75 and later), or None after a SKIP line.
fn curl() -> Option<&'static str> {
    let ok = Command::new("curl")
        .args(["--help", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--aws-sigv4"))
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP (S3 checks): curl with --aws-sigv4 not found");
    }
    ok.then_some("curl")
}

/// A signed S3 request with curl: `-T file` (PUT) or `-o file` (GET) etc.
fn s3(g: &Garage, endpoint: &str, path: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "120", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", g.region()))
        .arg("--user")
        .arg(format!("{}:{}", g.key_id(), g.secret()))
        // Garage wants the payload hash header; unsigned payload keeps curl streaming.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(args)
        .arg(format!("{endpoint}/{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(path, data).unwrap();
}

fn put_get_roundtrip(g: &Garage, endpoint: &str, bucket: &str, key: &str, len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    random_file(&src, len);
    let path = format!("{bucket}/{key}");
    s3(g, endpoint, &path, &["-T", src.to_str().unwrap()]).unwrap_or_else(|e| panic!("PUT {path}: {e}"));
    s3(g, endpoint, &path, &["-o", dst.to_str().unwrap()]).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(
        std::fs::read(&src).unwrap() == std::fs::read(&dst).unwrap(),
        "GET {path} differs from PUT"
    );
}

#[test]
fn single_node_serves_a_bucket() {
    let Some(g) = Garage::single() else { return };
    eprintln!("single node up in {:?}", g.startup_time());
    g.create_bucket("lifeline-single");
    let info = g.cli(0, &["bucket", "info", "lifeline-single"]);
    assert!(info.contains("lifeline-single"), "bucket info: {info}");
    assert!(
        info.lines().any(|l| l.contains("RWO") && l.contains(g.key_id())),
        "key without read, write, owner on the bucket: {info}"
    );
    let env = g.env();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", g.endpoint()),
        ("AWS_REGION", "garage".to_string()),
        ("AWS_ACCESS_KEY_ID", g.key_id().to_string()),
        ("AWS_SECRET_ACCESS_KEY", g.secret().to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
    ] {
        assert!(
            env.contains(&(k.to_string(), v.clone())),
            "{k}={v} missing from {env:?}"
        );
    }
    assert!(g.endpoint().starts_with("http://127.0.0.1:"));
    if curl().is_some() {
        put_get_roundtrip(&g, &g.endpoint(), "lifeline-single", "a/b/obj", 3 << 20);
        let list = s3(&g, &g.endpoint(), "lifeline-single?list-type=2", &[]).unwrap();
        assert!(list.contains("<Key>a/b/obj</Key>"), "listing: {list}");
        // A bucket the key has no rights on is refused.
        g.cli(0, &["bucket", "create", "not-ours"]);
        assert!(s3(&g, &g.endpoint(), "not-ours?list-type=2", &[]).is_err());
    }
}

#[test]
fn three_node_cluster_survives_a_killed_node() {
    let Some(mut g) = Garage::cluster(3) else { return };
    eprintln!("3-node cluster up in {:?}", g.startup_time());
    assert_eq!(g.node_count(), 3);
    for i in 0..3 {
        assert_eq!(g.health(i).as_deref(), Ok("healthy"), "node {i}");
    }
    g.create_bucket("lifeline-trio");
    for i in 0..3 {
        let info = g.cli(i, &["bucket", "info", "lifeline-trio"]);
        assert!(info.contains("lifeline-trio"), "bucket info on node {i}: {info}");
    }
    let ports: std::collections::BTreeSet<String> = (0..3).map(|i| g.endpoint_of(i)).collect();
    assert_eq!(ports.len(), 3);
    if curl().is_some() {
        put_get_roundtrip(&g, &g.endpoint_of(1), "lifeline-trio", "before", 5 << 20);
    }

    g.kill_node(2);
    assert!(!g.is_alive(2));
    let status = g.cli(0, &["status"]);
    assert!(status.contains("HEALTHY NODES"), "status: {status}");
    assert!(g.cli(1, &["bucket", "info", "lifeline-trio"]).contains("lifeline-trio"));
    if curl().is_some() {
        // Two of three replicas make a quorum: writes and reads still work right away,
        // through either survivor, and what was written before is still there.
        let t = Instant::now();
        put_get_roundtrip(&g, &g.endpoint_of(0), "lifeline-trio", "after", 5 << 20);
        s3(&g, &g.endpoint_of(1), "lifeline-trio/before", &["-o", "/dev/null"]).unwrap();
        eprintln!("PUT+GET+GET of 5 MiB with a node just killed: {:?}", t.elapsed());
    }
    // The survivors report the dead node (at once, or some 8 s later when they had not
    // noticed the connection drop).
    let t = Instant::now();
    while g.health(0).as_deref() != Ok("degraded") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "node 0 never saw node 2 go: {:?}",
            g.health(0)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("node 0 reported the cluster degraded {:?} after the kill", t.elapsed());
    let status = g.cli(1, &["status"]);
    assert!(status.contains("FAILED NODES"), "status: {status}");

    let t = Instant::now();
    g.restart_node(2);
    eprintln!("node 2 back in {:?}", t.elapsed());
    for i in 0..3 {
        assert_eq!(g.health(i).as_deref(), Ok("healthy"), "node {i} after restart");
    }
}

#[test]
fn clusters_start_in_parallel() {
    if garage::find_garage().is_none() {
        eprintln!("SKIP: garage not found (install: cargo install --locked garage)");
        return;
    }
    let t = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| Garage::single().unwrap()))
        .collect();
    let gs: Vec<Garage> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!(
        "3 single nodes in parallel: {:?} ({:?})",
        t.elapsed(),
        gs.iter().map(Garage::startup_time).collect::<Vec<_>>()
    );
    let endpoints: std::collections::BTreeSet<String> = gs.iter().map(Garage::endpoint).collect();
    assert_eq!(endpoints.len(), 3);
    for (i, g) in gs.iter().enumerate() {
        g.create_bucket(&format!("par-{i}"));
        // Each cluster has its own key and knows only its own bucket.
        let list = g.cli(0, &["bucket", "list"]);
        assert!(list.contains(&format!("par-{i}")) && !list.contains(&format!("par-{}", (i + 1) % 3)));
    }
    let dirs: Vec<_> = gs.iter().map(|g| g.data_dir(0)).collect();
    drop(gs);
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// A sink server: reads each connection to its end and reports the byte count.
fn sink() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<u64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let (mut c, tx) = (c.unwrap(), tx.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = [0u8; 8192];
                while let Ok(k @ 1..) = c.read(&mut buf) {
                    n += k as u64;
                }
                let _ = c.write_all(format!("got {n}").as_bytes());
                let _ = tx.send(n);
            });
        }
    });
    (addr, rx)
}

/// Sends `len` bytes, half-closes, reads the answer: Ok(answer) or the first error.
fn send(addr: std::net::SocketAddr, len: usize) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    let chunk = vec![7u8; 16 * 1024];
    let mut left = len;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k])?;
        left -= k;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn cut_proxy_cuts_uploads_and_heals() {
    let (target, got) = sink();
    let p = CutProxy::new(target);
    assert_eq!(p.target(), target);
    assert_eq!(send(p.addr(), 100_000).unwrap(), "got 100000");
    assert_eq!(got.recv().unwrap(), 100_000);

    // Cut at exactly 50 000 bytes of a 4 MiB upload: the server gets exactly that much,
    // the client never gets an answer.
    p.cut_after_upload_bytes(50_000);
    let r = send(p.addr(), 4 << 20);
    assert!(!matches!(&r, Ok(a) if a.starts_with("got")), "{r:?}");
    assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap(), 50_000);
    // Every connection, while the rule holds.
    assert!(send(p.addr(), 60_000).map(|a| a.is_empty()).unwrap_or(true));
    assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap(), 50_000);
    // Below the limit goes through.
    assert_eq!(send(p.addr(), 10_000).unwrap(), "got 10000");
    assert_eq!(got.recv().unwrap(), 10_000);
    assert_eq!(p.cuts(), 2);

    p.heal();
    assert_eq!(send(p.addr(), 1 << 20).unwrap(), format!("got {}", 1 << 20));
    assert_eq!(got.recv().unwrap(), 1 << 20);

    // Once: the first connection is cut, the retry passes.
    p.cut_once_after_upload_bytes(0);
    assert!(send(p.addr(), 1 << 20).map(|a| a.is_empty()).unwrap_or(true));
    assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    assert_eq!(send(p.addr(), 1 << 20).unwrap(), format!("got {}", 1 << 20));
    assert_eq!(got.recv().unwrap(), 1 << 20);
    assert_eq!(p.cuts(), 3);
    assert_eq!(p.connections(), 7);

    // An open connection is cut by cut_all_now.
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"hello").unwrap();
    let t = Instant::now();
    while p.uploaded_bytes() < 100_000 + 50_000 * 2 + 10_000 + (1 << 20) * 2 + 5 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    p.cut_all_now();
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap(), 5);
}

#[test]
fn cut_proxy_cuts_an_s3_put_through_garage() {
    let Some(g) = Garage::single() else { return };
    if curl().is_none() {
        return;
    }
    g.create_bucket("cut");
    let p = CutProxy::new(g.s3_addr(0));
    put_get_roundtrip(&g, &p.endpoint(), "cut", "plain", 2 << 20);

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    random_file(&src, 8 << 20);
    p.cut_after_upload_bytes(3 << 20);
    let r = s3(&g, &p.endpoint(), "cut/mid-put", &["-T", src.to_str().unwrap()]);
    assert!(r.is_err(), "PUT through a cut went through: {r:?}");
    assert!(p.cuts() >= 1);
    p.heal();
    // Nothing half-written is visible.
    assert!(s3(&g, &g.endpoint(), "cut/mid-put", &["-o", "/dev/null"]).is_err());
    put_get_roundtrip(&g, &p.endpoint(), "cut", "after-heal", 8 << 20);
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// PUT then GET of incompressible data (like our zstd+AES-GCM packs), one node, reporting
/// wall time and the server's CPU time. Run with LIFELINE_GARAGE_COMPRESSION=none and =1 to
/// compare: `cargo test --release -p lifeline-replicator --test garage_harness --
/// --ignored --nocapture compression_throughput`.
#[test]
#[ignore = "a measurement, not a check"]
fn compression_throughput() {
    let Some(g) = Garage::single() else { return };
    if curl().is_none() {
        return;
    }
    g.create_bucket("bench");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mib = 256;
    random_file(&src, mib << 20);
    let pid = g.pid(0).unwrap();
    let (mut put, mut get, mut put_cpu, mut get_cpu) = (0.0, 0.0, 0.0, 0.0);
    let rounds = 3;
    for r in 0..rounds {
        let path = format!("bench/obj{r}");
        let (c0, t0) = (cpu_secs(pid), Instant::now());
        s3(&g, &g.endpoint(), &path, &["-T", src.to_str().unwrap()]).unwrap();
        let (c1, t1) = (cpu_secs(pid), Instant::now());
        s3(&g, &g.endpoint(), &path, &["-o", "/dev/null"]).unwrap();
        let (c2, t2) = (cpu_secs(pid), Instant::now());
        put += (t1 - t0).as_secs_f64();
        get += (t2 - t1).as_secs_f64();
        put_cpu += c1 - c0;
        get_cpu += c2 - c1;
    }
    let total = (mib * rounds) as f64;
    let stored: u64 = walk_size(&g.data_dir(0));
    eprintln!(
        "compression={}: PUT {:.0} MiB/s (server CPU {:.2} s/GiB), GET {:.0} MiB/s (server CPU {:.2} s/GiB), \
         {:.1} MiB on disk for {} MiB (the same data each round: its blocks are stored once)",
        std::env::var("LIFELINE_GARAGE_COMPRESSION").unwrap_or_else(|_| "default of the harness".into()),
        total / put,
        put_cpu / total * 1024.0,
        total / get,
        get_cpu / total * 1024.0,
        stored as f64 / (1 << 20) as f64,
        mib * rounds
    );
}

fn walk_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}
