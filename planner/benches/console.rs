//! `cargo bench -p lifeline-planner --bench console`: the console's latency
//! and the RPO history's memory, with 100 groups, 10,000 points (100 per
//! group), a signed drill report per group and a full 24 h RPO history.
//!
//! The console is served by the daemon's own server loop on 127.0.0.1:0 and
//! read over real sockets, one request per connection as it serves them; each
//! figure is the client's time from connect to the last byte. It prints p50
//! and p99 of `/api/v1/groups` and of the overview page `/` (server-rendered:
//! its whole HTML is what a browser paints first), and the RPO history's
//! bytes. A bench, not a test: it asserts nothing about time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeline_planner::config::Config;
use lifeline_planner::daemon::console::{Auth, Console, ConsoleBackend, PointSummary, router};
use lifeline_planner::daemon::feed::{DEFAULT_RPO_SAMPLE_EVERY, Feed};
use lifeline_planner::daemon::http_server::{Limits, serve_router};
use lifeline_service::AgentControl;

const GROUPS: usize = 100;
const POINTS_PER_GROUP: usize = 100;

struct FakeDaemon {
    config: Arc<Config>,
    points: Vec<Vec<PointSummary>>,
    reports: PathBuf,
    public_key: PathBuf,
}

impl ConsoleBackend for FakeDaemon {
    fn site(&self) -> String {
        "primary".into()
    }
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }
    fn points(&self, group: &str) -> Option<Vec<PointSummary>> {
        let i: usize = group.trim_start_matches("group-").parse().ok()?;
        self.points.get(i).cloned()
    }
    fn control(&self, _group: &str) -> Option<Arc<AgentControl>> {
        None
    }
    fn drill_reports(&self) -> PathBuf {
        self.reports.clone()
    }
    fn planner_public_key(&self) -> PathBuf {
        self.public_key.clone()
    }
    fn planner_state_dir(&self) -> Option<PathBuf> {
        None
    }
}

fn report(id: &str, group: &str, at: DateTime<Utc>) -> lifeline_planner::report::DrillReport {
    serde_json::from_value(serde_json::json!({
        "schema": lifeline_planner::report::SCHEMA, "version": lifeline_planner::report::SCHEMA_VERSION,
        "drill_id": id, "runbook": {"name": "r", "file": "r.toml", "digest": "00"},
        "group": group, "tenant": "default", "disaster_at": at.to_rfc3339(),
        "point": {"seq": 1, "taken_at": at.to_rfc3339()},
        "objectives": {"rpo_secs": 60.0, "rto_secs": 600.0},
        "achieved": {"rpo_secs": 12.0, "rto_secs": 95.0, "data_loss": null},
        "verdict": "passed", "reasons": [], "steps": [], "checks": [], "volumes": [],
        "replication_lag": {"before_secs": null, "max_during_secs": null, "after_secs": null, "points_during": 0, "exceeded_rpo": false, "samples": []},
        "environment": {"host": "h", "os": "linux", "lifeline_version": "bench", "sandbox": "/tmp", "network_namespace": null, "ports": {}},
        "operator": null, "user": "bench",
        "sign_off": {"prepared_by": "bench", "reviewed_by": null, "approved_by": null, "date": null},
        "next_drill_due": at.to_rfc3339(), "audit_head": null
    }))
    .expect("a report")
}

fn fetch(addr: &str, path: &str) -> usize {
    let mut c = TcpStream::connect(addr).expect("connect");
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut body = Vec::new();
    c.read_to_end(&mut body).expect("read");
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&body[..80.min(body.len())])
    );
    body.len()
}

fn percentiles(addr: &str, path: &str, n: usize) -> (Duration, Duration, usize) {
    for _ in 0..20 {
        fetch(addr, path);
    }
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        size = fetch(addr, path);
        times.push(t.elapsed());
    }
    times.sort();
    (times[n / 2], times[(n * 99) / 100], size)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = Utc::now();
    let mut text = String::from("[sites.primary]\n[sites.secondary]\n");
    for i in 0..GROUPS {
        text.push_str(&format!(
            "[groups.group-{i:03}]\nrpo = \"60s\"\nrto = \"10m\"\ninterval = \"30s\"\n"
        ));
    }
    let config = Arc::new(Config::parse(&text, std::path::Path::new("bench.toml")).expect("config"));
    let points = (0..GROUPS)
        .map(|_| {
            (0..POINTS_PER_GROUP)
                .map(|p| PointSummary {
                    seq: p as u64 + 1,
                    taken_at: now - chrono::Duration::seconds(30 * (POINTS_PER_GROUP - p) as i64),
                    consistency: "frozen".into(),
                })
                .collect()
        })
        .collect();
    let planner = dir.path().join("planner");
    std::fs::create_dir_all(&planner).expect("mkdir");
    let key = lifeline_planner::audit::signing_key(&planner).expect("key");
    let reports = dir.path().join("drill-reports");
    for i in 0..GROUPS {
        let id = format!("20261201T000000Z-group-{i:03}");
        lifeline_planner::report::write(
            &reports.join(&id),
            &report(&id, &format!("group-{i:03}"), now - chrono::Duration::days(1)),
            &key,
        )
        .expect("report");
    }
    let feed = Arc::new(Feed::new(DEFAULT_RPO_SAMPLE_EVERY));
    // 24 h of samples for every group (and then some: the ring stays bounded).
    let start = now - chrono::Duration::hours(25);
    for step in 0..(25 * 60) {
        let at = start + chrono::Duration::minutes(step);
        for i in 0..GROUPS {
            feed.observe_newest_point(&format!("group-{i:03}"), at - chrono::Duration::seconds(20), at);
        }
    }
    let (samples, bytes) = feed.rpo_history_size();
    let backend = Arc::new(FakeDaemon {
        config,
        points,
        reports,
        public_key: planner.join("planner.pub"),
    });
    let console = Arc::new(Console::new(backend, feed, Auth::default()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve_router(
        listener,
        router(console),
        None,
        async {
            let _ = stopped.await;
        },
        Limits::console(),
        "bench console",
    ));

    println!(
        "console bench: {GROUPS} groups, {} points, {GROUPS} signed drill reports",
        GROUPS * POINTS_PER_GROUP
    );
    let (p50, p99, size) = percentiles(&addr, "/api/v1/groups", 500);
    println!("GET /api/v1/groups  p50 {p50:.2?}  p99 {p99:.2?}  ({size} bytes)");
    let (p50, p99, size) = percentiles(&addr, "/", 200);
    println!("GET / (overview)    p50 {p50:.2?}  p99 {p99:.2?}  ({size} bytes)");
    let (p50, p99, size) = percentiles(&addr, "/api/v1/groups/group-042/rpo", 500);
    println!("GET /api/v1/groups/NAME/rpo (24 h)  p50 {p50:.2?}  p99 {p99:.2?}  ({size} bytes)");
    println!(
        "RPO history: {samples} samples held, {:.2} MiB for {GROUPS} groups over 24 h at {} s",
        bytes as f64 / (1024.0 * 1024.0),
        DEFAULT_RPO_SAMPLE_EVERY.as_secs()
    );
    let _ = stop.send(());
    rt.block_on(server).expect("server");
}
