//! Real Garage S3 clusters for tests, on 127.0.0.1.
//!
//! Include with `#[path = "support/garage.rs"] mod garage;` (std, `tempfile` and
//! `lifeline-testkit` only, so any test crate in the workspace can use it).
//!
//! ```ignore
//! let Some(g) = garage::Garage::single() else { return }; // prints SKIP when no binary
//! g.create_bucket("packs");
//! // g.endpoint(), g.region(), g.key_id(), g.secret(), g.env()
//! ```
//!
//! Every node gets its own free ports (bind 127.0.0.1:0, never the same port twice in one
//! process) and its own directory in one `TempDir`, so many tests can start clusters in
//! parallel in one process. Metadata in sqlite; one random `rpc_secret` per cluster; one
//! access key per cluster (`key_id()`/`secret()`), granted read, write and owner on every
//! bucket made with `create_bucket`.
//!
//! Data blocks are stored without compression (`compression_level = "none"`): Lifeline's
//! packs are zstd-compressed then AES-GCM-encrypted, so Garage's own zstd (level 1 by
//! default) could only burn CPU on the way in and on the way out (it also stores a
//! compressed copy even when that copy is larger); see `COMPRESSION_LEVEL`.
//!
//! The node logs are in the node directories (`log_path(i)`); a failed start or command
//! panics with the node's log tail. Set `LIFELINE_GARAGE_KEEP=1` to keep the directories,
//! `GARAGE_BIN` to use a particular binary, `LIFELINE_GARAGE_LOG` for the servers'
//! `RUST_LOG` (default `garage=info`, which logs one line per S3 request).
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The S3 region every harness cluster answers to.
pub const REGION: &str = "garage";

/// Garage's `compression_level` for the harness's nodes (TOML value), unless
/// `LIFELINE_GARAGE_COMPRESSION` says otherwise (`none` or a zstd level). Garage's default
/// is zstd level 1 on every 1 MiB block. Our packs are already compressed and encrypted, so
/// that only costs CPU. Measured here (`compression_throughput` in `garage_harness.rs`:
/// 1 node, curl, 3 x 256 MiB of random data, 2 shared cores): "none" PUT 245-254 MiB/s at
/// 6.1 s server CPU per GiB, GET 337-350 MiB/s at 2.9 s/GiB; level 1 PUT 199 MiB/s at
/// 8.3 s/GiB, GET 334-344 MiB/s at 3.2 s/GiB, and not one byte smaller on disk.
pub const COMPRESSION_LEVEL: &str = "\"none\"";

fn compression_level() -> String {
    match std::env::var("LIFELINE_GARAGE_COMPRESSION") {
        Ok(v) if v.parse::<i32>().is_ok() => v,
        Ok(v) if v.eq_ignore_ascii_case("none") => "\"none\"".into(),
        _ => COMPRESSION_LEVEL.into(),
    }
}

/// How long a node may take to come up, and a cluster to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub use lifeline_testkit::free_port;

/// The garage binary: `$GARAGE_BIN`, else `garage` in `PATH`, else `~/.cargo/bin/garage`
/// (or `$CARGO_HOME/bin/garage`).
pub fn find_garage() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join("garage")).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin/garage"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/garage"));
    }
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `n` random bytes as lowercase hex, from the kernel.
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    child: Option<Child>,
}

/// A running Garage cluster (one node or several), killed and deleted on drop.
pub struct Garage {
    bin: PathBuf,
    nodes: Vec<Node>,
    rpc_secret: String,
    replication_factor: usize,
    key_id: String,
    secret: String,
    startup: Duration,
    dir: Option<tempfile::TempDir>,
}

impl Garage {
    /// One node, replication factor 1, set up by the server itself (`--single-node
    /// --default-access-key`). None, after a SKIP line, when there is no garage binary.
    pub fn single() -> Option<Garage> {
        Self::start(1)
    }

    /// `n` nodes, replication factor `n`, connected to each other, one zone, layout
    /// version 1 applied, healthy as seen from every node. None, after a SKIP line, when
    /// there is no garage binary.
    pub fn cluster(n: usize) -> Option<Garage> {
        assert!(n >= 1, "a cluster needs at least one node");
        Self::start(n)
    }

    fn start(n: usize) -> Option<Garage> {
        let Some(bin) = find_garage() else {
            eprintln!("SKIP: garage not found (install: cargo install --locked garage)");
            return None;
        };
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("lifeline-garage-")
            .tempdir()
            .expect("tempdir");
        let mut g = Garage {
            bin,
            nodes: Vec::with_capacity(n),
            rpc_secret: random_hex(32),
            replication_factor: n,
            // Garage's own keys look like this: GK + 12 bytes in hex, 32-byte hex secret.
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
            startup: Duration::ZERO,
            dir: None,
        };
        for i in 0..n {
            let node_dir = dir.path().join(format!("node{i}"));
            fs::create_dir_all(&node_dir).expect("create node dir");
            g.nodes.push(Node {
                config: node_dir.join("garage.toml"),
                log: node_dir.join("garage.log"),
                dir: node_dir,
                rpc_port: 0,
                s3_port: 0,
                child: None,
            });
        }
        g.dir = Some(dir);
        let deadline = Instant::now() + READY_TIMEOUT;
        // All servers at once, then wait for each.
        for i in 0..n {
            g.configure(i);
            g.spawn(i);
        }
        for i in 0..n {
            g.wait_up(i, deadline);
        }
        if n > 1 {
            let ids: Vec<String> = (0..n).map(|i| g.node_id(i, deadline)).collect();
            // Every pair, at once: left to learn of each other through node 0, nodes took
            // a second longer to see a healthy cluster (3 nodes: 2.2 s, now 1.2 s).
            let g_ref = &g;
            thread::scope(|s| {
                for i in 0..n {
                    for (j, id) in ids.iter().enumerate().skip(i + 1) {
                        let peer = format!("{id}@127.0.0.1:{}", g_ref.nodes[j].rpc_port);
                        s.spawn(move || g_ref.cli_retry(i, &["node", "connect", &peer], deadline));
                    }
                }
            });
            let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "10G"];
            assign.extend(ids.iter().map(String::as_str));
            g.cli_retry(0, &assign, deadline);
            g.cli(0, &["layout", "apply", "--version", "1"]);
            g.wait_healthy_until(deadline);
            let (k, s) = (g.key_id.clone(), g.secret.clone());
            g.cli_retry(0, &["key", "import", "--yes", "-n", "lifeline-test", &k, &s], deadline);
        }
        g.startup = t0.elapsed();
        Some(g)
    }

    /// Writes node `i`'s config with fresh ports.
    fn configure(&mut self, i: usize) {
        let (rpc_port, s3_port) = (free_port(), free_port());
        let node = &mut self.nodes[i];
        node.rpc_port = rpc_port;
        node.s3_port = s3_port;
        let d = node.dir.display();
        let config = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = {rf}
compression_level = {compression}
disable_scrub = true

rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"
"#,
            rf = self.replication_factor,
            compression = compression_level(),
            secret = self.rpc_secret,
        );
        fs::write(&node.config, config).expect("write garage.toml");
    }

    fn spawn(&mut self, i: usize) {
        let single = self.nodes.len() == 1;
        let node = &mut self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open node log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&node.config).arg("server");
        if single {
            cmd.args(["--single-node", "--default-access-key"])
                .env("GARAGE_DEFAULT_ACCESS_KEY", &self.key_id)
                .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret);
        }
        let rust_log = std::env::var("LIFELINE_GARAGE_LOG").unwrap_or_else(|_| "garage=info".into());
        cmd.env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log);
        node.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display())),
        );
    }

    /// Waits until node `i`'s server runs and accepts S3 connections. A server that died of
    /// a port taken between our probe and its bind is restarted on new ports.
    fn wait_up(&mut self, i: usize, deadline: Instant) {
        let mut restarts = 0;
        loop {
            let addr = self.s3_addr(i);
            let node = &mut self.nodes[i];
            let child = node.child.as_mut().expect("node not running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                node.child = None;
                let log = tail(&node.log, 40);
                if restarts < 3 && log.contains("in use") {
                    restarts += 1;
                    self.configure(i);
                    self.spawn(i);
                    continue;
                }
                panic!("garage node {i} exited during startup ({status}); log tail:\n{log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "garage node {i} did not open its S3 port {addr} in time; log tail:\n{}",
                    self.log_tail(i, 40)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `i`'s full id (hex public key), from `meta/node_key.pub`, written at start.
    fn node_id(&self, i: usize, deadline: Instant) -> String {
        let path = self.nodes[i].dir.join("meta/node_key.pub");
        loop {
            match fs::read(&path) {
                Ok(b) if b.len() == 32 => return b.iter().map(|b| format!("{b:02x}")).collect(),
                _ if Instant::now() > deadline => panic!("no node id in {}", path.display()),
                _ => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Time `single()`/`cluster()` took, from the first spawn to a usable cluster.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// `http://127.0.0.1:PORT` of node 0's S3 API.
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// `http://127.0.0.1:PORT` of node `i`'s S3 API.
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("http://{}", self.s3_addr(i))
    }

    /// Node `i`'s S3 address (e.g. the target of a `CutProxy`).
    pub fn s3_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[i].s3_port))
    }

    pub fn region(&self) -> &str {
        REGION
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The S3 client environment for node 0: AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with_endpoint(&self.endpoint())
    }

    /// As `env`, but with another endpoint (another node, or a proxy in front of one).
    pub fn env_with_endpoint(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", &self.key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates bucket `name` and gives the harness key read, write and owner on it (through
    /// the first node still running). Panics on failure, e.g. an existing name.
    pub fn create_bucket(&self, name: &str) {
        let i = self.first_alive();
        self.cli(i, &["bucket", "create", name]);
        self.cli(
            i,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                name,
                "--key",
                &self.key_id,
            ],
        );
    }

    /// Runs `garage -c <node i's config> ARGS` against node `i`; stdout, or a panic with
    /// stderr and the node's log tail.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        self.try_cli(i, args).unwrap_or_else(|e| {
            panic!(
                "garage {} (node {i}) failed: {e}\nnode {i} log tail:\n{}",
                args.join(" "),
                self.log_tail(i, 30)
            )
        })
    }

    /// As `cli`, but the failure (exit status and stderr) is returned.
    pub fn try_cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        }
    }

    fn cli_retry(&self, i: usize, args: &[&str], deadline: Instant) -> String {
        loop {
            match self.try_cli(i, args) {
                Ok(out) => return out,
                Err(e) if Instant::now() > deadline => panic!(
                    "garage {} (node {i}) kept failing: {e}\nnode {i} log tail:\n{}",
                    args.join(" "),
                    self.log_tail(i, 30)
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The cluster's health as node `i` sees it: "healthy", "degraded" or "unavailable".
    pub fn health(&self, i: usize) -> Result<String, String> {
        let out = self.try_cli(i, &["json-api", "GetClusterHealth"])?;
        let compact: String = out.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = compact
            .split("\"status\":\"")
            .nth(1)
            .ok_or_else(|| format!("no status in {out}"))?;
        Ok(rest.split('"').next().unwrap_or_default().to_string())
    }

    /// Waits (up to 90 s) until every running node reports the cluster healthy.
    pub fn wait_healthy(&self) {
        self.wait_healthy_until(Instant::now() + READY_TIMEOUT);
    }

    fn wait_healthy_until(&self, deadline: Instant) {
        for i in 0..self.nodes.len() {
            if !self.is_alive(i) {
                continue;
            }
            loop {
                let h = self.health(i);
                if h.as_deref() == Ok("healthy") {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "garage cluster not healthy from node {i}: {h:?}\nlog tail:\n{}",
                        self.log_tail(i, 30)
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Node `i`'s server process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn first_alive(&self) -> usize {
        (0..self.nodes.len())
            .find(|&i| self.is_alive(i))
            .expect("no garage node running")
    }

    /// SIGKILLs node `i` (no-op if already dead). Its data stays for `restart_node`.
    ///
    /// Seen with 3 nodes: the survivors do not always notice at once; then the next S3
    /// request (a 5 MiB PUT here) waits about 8 s, until their connection to the dead node
    /// fails, and then succeeds on the quorum of two (1 run in 3 or so; others take 0.2 s).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (same ports, same data) and waits for its S3 port; with several
    /// nodes, it connects to the running ones (their own retry comes only every 30 s) and
    /// waits until every running node sees the cluster healthy again.
    pub fn restart_node(&mut self, i: usize) {
        assert!(!self.is_alive(i), "node {i} is running");
        self.spawn(i);
        let deadline = Instant::now() + READY_TIMEOUT;
        self.wait_up(i, deadline);
        if self.nodes.len() > 1 {
            // Both ways: a survivor that gave up on the dead node may ignore it for 30 s.
            let me = format!("{}@127.0.0.1:{}", self.node_id(i, deadline), self.nodes[i].rpc_port);
            for j in (0..self.nodes.len()).filter(|&j| j != i && self.is_alive(j)) {
                let peer = format!("{}@127.0.0.1:{}", self.node_id(j, deadline), self.nodes[j].rpc_port);
                self.cli_retry(i, &["node", "connect", &peer], deadline);
                self.cli_retry(j, &["node", "connect", &me], deadline);
            }
            self.wait_healthy_until(deadline);
        }
    }

    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        tail(&self.nodes[i].log, lines)
    }

    /// Node `i`'s data directory (the block files).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        let keep = std::env::var_os("LIFELINE_GARAGE_KEEP").is_some();
        if let Some(dir) = self.dir.take().filter(|_| keep) {
            eprintln!("garage harness: kept {}", dir.keep().display());
        }
    }
}
