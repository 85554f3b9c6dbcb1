//! Helpers for the CLI integration tests: running the real `lifeline` binary,
//! generating volumes, looking inside a repository, and guards for the root-only
//! fixtures (loop devices, tmpfs mounts) that always clean up.

#![allow(dead_code)]

pub mod cdp;
pub mod exposition;
pub mod http;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeline");
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// Exit codes of `lifeline`.
pub const EXIT_OK: i32 = 0;
pub const EXIT_CHECK_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// A path as a `&str` (temp dirs are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `lifeline ARGS` with an environment that cannot leak into the test: no
/// passphrase, no state dir default, no config file from the environment,
/// default logging.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("LIFELINE_PASSPHRASE")
        .env_remove("LIFELINE_STATE_DIR")
        .env_remove("LIFELINE_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// The outcome of one `lifeline` run.
pub struct Run {
    pub args: String,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(args: String, out: Output) -> Run {
        Run {
            args,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "`lifeline {}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(EXIT_OK), "expected success: {}", self.describe());
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "expected exit code {code}: {}", self.describe());
        self
    }

    /// Asserts the exit code and that stderr holds every needle.
    #[track_caller]
    pub fn fails(self, code: i32, needles: &[&str]) -> Run {
        let r = self.code(code);
        r.stderr_has(needles)
    }

    /// Asserts that stderr holds every needle.
    #[track_caller]
    pub fn stderr_has(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}: {}", self.describe());
        }
        self
    }

    /// Asserts that stdout holds every needle.
    #[track_caller]
    pub fn stdout_has(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(self.stdout.contains(n), "stdout lacks {n:?}: {}", self.describe());
        }
        self
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

/// Runs `lifeline ARGS` to completion.
pub fn run(args: &[&str]) -> Run {
    run_env(args, &[])
}

/// Runs `lifeline ARGS` with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("spawn lifeline");
    Run::from_output(args.join(" "), out)
}

/// Spawns `lifeline ARGS` with piped output.
pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lifeline")
}

/// Waits for a spawned `lifeline`.
pub fn finish(child: Child, args: &[&str]) -> Run {
    Run::from_output(args.join(" "), child.wait_with_output().expect("wait for lifeline"))
}

/// A `lifeline` process in the background (a receiver, an agent). Two threads
/// drain its pipes, so it never blocks on a full one: stdout lines arrive on a
/// channel (read them with [`wait_for_line`](Self::wait_for_line), with a
/// deadline), stderr is collected whole. Killed on drop.
pub struct Background {
    pub args: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Stdout lines received so far.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Background {
    /// Spawns `lifeline ARGS` with piped output.
    pub fn spawn(args: &[&str]) -> Background {
        let mut child = spawn(args);
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }),
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink
                            .lock()
                            .expect("stderr")
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            }),
        ];
        Background {
            args: args.join(" "),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the stdout lines that arrived so far without waiting.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits up to `timeout` for the next stdout line that satisfies `pred`
    /// (earlier lines are kept in [`stdout`](Self::stdout)). `None` when the
    /// deadline passes or stdout closes (the process ended) first.
    pub fn wait_for_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Stdout so far.
    pub fn stdout(&mut self) -> String {
        self.drain();
        self.seen.join("\n")
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// What the process printed, for failure messages.
    pub fn describe(&mut self) -> String {
        let stdout = self.stdout();
        format!(
            "`lifeline {}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            self.args,
            self.stderr()
        )
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) with kill(1).
    #[track_caller]
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{sig} {pid} failed");
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Polls for the exit status until `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.try_status();
            status.is_some()
        });
        status
    }

    /// Waits up to `timeout` for the process to end (kills it and fails the test
    /// after that) and returns what it printed.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Run {
        let Some(status) = self.wait_exit(timeout) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("still running after {timeout:?}, killed: {}", self.describe());
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.drain();
        Run {
            args: self.args.clone(),
            code: status.code(),
            stdout: self.seen.join("\n"),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temp dir with a key file and an initialised repository.
pub struct Sandbox {
    /// Dropped (unmounted) before `dir` is removed: fields drop in order.
    pub mount: Option<TmpfsMount>,
    pub dir: TempDir,
    pub key: PathBuf,
    pub repo: PathBuf,
    pub state: PathBuf,
}

impl Sandbox {
    /// Writes a key and initialises a repository, asserting what both print.
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Self::with_repo(dir, repo)
    }

    /// Like [`new`](Self::new) with the repository at `repo`.
    pub fn with_repo(dir: TempDir, repo: PathBuf) -> Sandbox {
        let key = dir.path().join("tenant.key");
        let state = dir.path().join("state");
        run(&["key", "new", "--out", s(&key)])
            .ok()
            .stdout_has(&["wrote key", s(&key), "mode 0600"]);
        run(&["init", "--repo", s(&repo), "--key-file", s(&key)])
            .ok()
            .stdout_has(&["initialised repository", s(&repo)]);
        Sandbox {
            mount: None,
            dir,
            key,
            repo,
            state,
        }
    }

    /// A sandbox whose repository lives on a tmpfs of `size` (root only).
    pub fn on_tmpfs(size: &str) -> Result<Sandbox, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = TmpfsMount::mount(&dir.path().join("small-fs"), size)?;
        let repo = mount.dir.join("repo");
        let mut sb = Self::with_repo(dir, repo);
        sb.mount = Some(mount);
        Ok(sb)
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `lifeline backup` of `vols` into `group`, with `extra` arguments.
    pub fn backup(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Run {
        let specs: Vec<String> = vols.iter().map(|(n, p)| format!("{n}={}", s(p))).collect();
        let mut args = vec![
            "backup",
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
            "--state-dir",
            s(&self.state),
        ];
        for v in &specs {
            args.extend(["--volume", v.as_str()]);
        }
        args.extend(extra);
        run(&args)
    }

    /// A successful `backup --json`; returns its summary.
    #[track_caller]
    pub fn backup_json(&self, group: &str, vols: &[(&str, &Path)]) -> Value {
        let r = self.backup(group, vols, &["--json"]).ok();
        let v = r.json();
        for field in ["seq", "bytes_scanned", "bytes_new", "bytes_stored", "elapsed_secs"] {
            assert!(v.get(field).is_some(), "backup --json lacks `{field}`: {}", r.stdout);
        }
        v
    }

    /// `lifeline points --json` (no key).
    #[track_caller]
    pub fn points(&self) -> Vec<Value> {
        let r = run(&["points", "--repo", s(&self.repo), "--json"]).ok();
        r.json().as_array().cloned().expect("points --json is an array")
    }

    /// `lifeline restore`.
    pub fn restore(&self, group: &str, point: &str, volume: &str, to: &Path) -> Run {
        run(&[
            "restore",
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
            "--point",
            point,
            "--volume",
            volume,
            "--to",
            s(to),
        ])
    }

    /// A successful `restore --json`; returns its summary.
    #[track_caller]
    pub fn restore_json(&self, group: &str, point: &str, volume: &str, to: &Path) -> Value {
        let r = run(&[
            "restore",
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
            "--point",
            point,
            "--volume",
            volume,
            "--to",
            s(to),
            "--json",
        ]);
        r.ok().json()
    }

    /// `lifeline verify`, deep with the key.
    pub fn verify(&self, deep: bool) -> Run {
        if deep {
            run(&["verify", "--repo", s(&self.repo), "--key-file", s(&self.key)])
        } else {
            run(&["verify", "--repo", s(&self.repo)])
        }
    }
}

/// `u64` field of a JSON object.
#[track_caller]
pub fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a u64 in {v}"))
}

/// A fast deterministic generator (splitmix64): /dev/urandom is too slow for
/// hundreds of MiB on a shared machine, and a seed makes failures reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `len` random bytes to `f` at `offset`, 4 MiB at a time.
pub fn write_random_at(f: &File, offset: u64, len: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; (4 * MIB).min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all_at(&buf[..n], offset + done).expect("write volume");
        done += n as u64;
    }
}

/// A new file of `len` random bytes.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let f = File::create(path).expect("create volume");
    write_random_at(&f, 0, len, seed);
    f.sync_all().expect("fsync volume");
}

/// `len` bytes that look like a text file (log lines of a small vocabulary):
/// compressible, with repeats.
pub fn text_like(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "replica",
        "volume",
        "segment",
        "chunk",
        "commit",
        "point",
        "restore",
        "verify",
        "tenant",
        "group",
        "frozen",
        "thawed",
        "index",
        "object",
        "sealed",
        "repository",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 128);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line:08} INFO ").as_bytes());
        for _ in 0..(4 + rng.next_u64() % 8) {
            out.extend_from_slice(WORDS[(rng.next_u64() % 16) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(format!("id={:x}\n", rng.next_u64() % 100_000).as_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts two files hold the same bytes, naming the first difference.
#[track_caller]
pub fn assert_same_content(expected: &Path, actual: &Path) {
    let a = fs::read(expected).unwrap_or_else(|e| panic!("read {}: {e}", expected.display()));
    let b = fs::read(actual).unwrap_or_else(|e| panic!("read {}: {e}", actual.display()));
    assert_eq!(
        a.len(),
        b.len(),
        "{} and {} differ in size",
        expected.display(),
        actual.display()
    );
    if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
        panic!(
            "{} and {} differ first at offset {i}",
            expected.display(),
            actual.display()
        );
    }
}

/// Bytes allocated on disk for `path`.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

/// The default tenant's object directory.
pub fn objects_dir(repo: &Path) -> PathBuf {
    repo.join("tenants/default/objects")
}

/// The default tenant's pack directory.
pub fn packs_dir(repo: &Path) -> PathBuf {
    objects_dir(repo).join("packs")
}

/// Pack file layout (replicator/src/store/pack.rs).
pub const PACK_MAGIC: &[u8; 4] = b"LLPK";
pub const PACK_END_MAGIC: &[u8; 4] = b"LLPE";
pub const PACK_HEADER_LEN: u64 = 8;
/// `id [32] | offset u64 | length u32 | kind u8`.
pub const PACK_ENTRY_LEN: u64 = 45;
/// `n u32 | BLAKE3 [32] | "LLPE"`.
pub const PACK_TRAILER_LEN: u64 = 40;

/// Object kinds (byte 5 of a sealed object, and of its pack footer entry).
pub const KIND_CHUNK: u8 = 1;
pub const KIND_SEGMENT_NODE: u8 = 2;
pub const KIND_INDEX_NODE: u8 = 3;

/// One object inside a durable pack, as its pack's footer lists it.
#[derive(Debug, Clone)]
pub struct PackObject {
    pub pack: PathBuf,
    pub id_hex: String,
    pub offset: u64,
    pub len: u64,
    pub kind: u8,
}

fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Durable packs: `packs/<2 hex>/<32 hex>` (not `tmp/`), in path order. Cheap
/// enough to poll.
pub fn durable_packs(repo: &Path) -> Vec<PathBuf> {
    // `init` creates `packs/`: a missing one means the layout changed, and an
    // empty answer would make every check on it pass vacuously.
    let dir = packs_dir(repo);
    assert!(dir.is_dir(), "{} is missing: did the layout change?", dir.display());
    durable_packs_in(&dir)
}

/// A tenant's pack directory in a repository that a receiver serves
/// (`tenants/<tenant>/objects/packs`).
pub fn tenant_packs_dir(repo: &Path, tenant: &str) -> PathBuf {
    repo.join("tenants").join(tenant).join("objects/packs")
}

/// Durable packs under a pack directory (none while it does not exist yet: a
/// receiver creates a tenant's directory at its first session).
pub fn durable_packs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(shards) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for shard in shards.flatten() {
        let sname = shard.file_name().to_string_lossy().into_owned();
        if !is_hex(&sname, 2) {
            continue;
        }
        let Ok(entries) = fs::read_dir(shard.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_hex(&name, 32) && name.starts_with(&sname) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The objects of one pack, parsed from its header and footer (the footer's
/// BLAKE3 is not checked: the tests do not depend on blake3), in pack order.
#[track_caller]
pub fn read_pack(pack: &Path) -> Vec<PackObject> {
    let f = File::open(pack).unwrap_or_else(|e| panic!("open pack {}: {e}", pack.display()));
    let len = f.metadata().expect("stat pack").len();
    assert!(
        len >= PACK_HEADER_LEN + PACK_TRAILER_LEN,
        "pack {} is too short ({len} bytes)",
        pack.display()
    );
    let mut header = [0u8; 8];
    f.read_exact_at(&mut header, 0).expect("read pack header");
    assert_eq!(&header[..4], PACK_MAGIC, "pack {} header magic", pack.display());
    assert_eq!(
        header[4..],
        [1, 0, 0, 0],
        "pack {} version / reserved bytes",
        pack.display()
    );
    let mut trailer = [0u8; PACK_TRAILER_LEN as usize];
    f.read_exact_at(&mut trailer, len - PACK_TRAILER_LEN)
        .expect("read pack trailer");
    assert_eq!(&trailer[36..], PACK_END_MAGIC, "pack {} end magic", pack.display());
    let n = u32::from_le_bytes(trailer[..4].try_into().unwrap()) as u64;
    let footer_len = n * PACK_ENTRY_LEN + PACK_TRAILER_LEN;
    assert!(
        footer_len <= len - PACK_HEADER_LEN,
        "pack {}: footer of {n} entries is longer than the pack",
        pack.display()
    );
    let data_end = len - footer_len;
    let mut entries = vec![0u8; (n * PACK_ENTRY_LEN) as usize];
    f.read_exact_at(&mut entries, data_end).expect("read pack footer");
    let mut out: Vec<PackObject> = entries
        .chunks_exact(PACK_ENTRY_LEN as usize)
        .map(|e| {
            let o = PackObject {
                pack: pack.to_path_buf(),
                id_hex: e[..32].iter().map(|b| format!("{b:02x}")).collect(),
                offset: u64::from_le_bytes(e[32..40].try_into().unwrap()),
                len: u32::from_le_bytes(e[40..44].try_into().unwrap()) as u64,
                kind: e[44],
            };
            assert!(
                o.offset >= PACK_HEADER_LEN && o.offset + o.len <= data_end,
                "pack {}: entry out of bounds: {o:?}",
                pack.display()
            );
            assert!(
                (KIND_CHUNK..=KIND_INDEX_NODE).contains(&o.kind),
                "pack {}: bad kind: {o:?}",
                pack.display()
            );
            o
        })
        .collect();
    out.sort_by_key(|o| o.offset);
    out
}

/// Every object of every durable pack.
#[track_caller]
pub fn pack_objects(repo: &Path) -> Vec<PackObject> {
    durable_packs(repo).iter().flat_map(|p| read_pack(p)).collect()
}

/// Every file under `packs/tmp/` (any depth): packs that were never made durable.
pub fn tmp_packs(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let tmp = packs_dir(repo).join("tmp");
    assert!(tmp.is_dir(), "{} is missing: did the layout change?", tmp.display());
    let mut out = Vec::new();
    walk(&tmp, &mut out);
    out
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True when the tests run as root (reads /proc, no libc needed).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loop device over a file, detached on drop.
pub struct LoopDevice {
    pub device: PathBuf,
}

impl LoopDevice {
    pub fn attach(backing: &Path) -> Result<LoopDevice, String> {
        let dev = sh("losetup", &["-f", "--show", s(backing)])?;
        if dev.is_empty() {
            return Err("losetup printed no device".into());
        }
        Ok(LoopDevice { device: dev.into() })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = sh("losetup", &["-d", s(&self.device)]) {
            eprintln!("warning: could not detach {}: {e}", self.device.display());
        }
    }
}

/// A tmpfs mounted on a directory, lazily unmounted on drop.
pub struct TmpfsMount {
    pub dir: PathBuf,
}

impl TmpfsMount {
    pub fn mount(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        sh(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(dir)],
        )?;
        Ok(TmpfsMount { dir: dir.into() })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Err(e) = sh("umount", &["-l", s(&self.dir)]) {
            eprintln!("warning: could not unmount {}: {e}", self.dir.display());
        }
    }
}

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (what
/// `points --json` prints). No time crate is a dependency of the tests.
#[track_caller]
pub fn parse_utc_ms(t: &str) -> i64 {
    let fields: Option<Vec<i64>> = t
        .strip_suffix('Z')
        .map(|t| {
            t.split(['-', 'T', ':', '.'])
                .map(|f| f.parse::<i64>().ok())
                .collect::<Option<Vec<_>>>()
        })
        .and_then(|f| f);
    let f = match fields {
        Some(f) if f.len() == 6 || f.len() == 7 => f,
        _ => panic!("not a UTC RFC 3339 time: {t}"),
    };
    // Fraction to milliseconds: `.5` is 500 ms, `.123456789` is 123 ms.
    let ms = match t.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((_, frac)) => format!("{frac:0<3}")[..3].parse::<i64>().expect("digits"),
        None => 0,
    };
    let days = days_from_civil(f[0], f[1], f[2]);
    ((days * 24 + f[3]) * 60 + f[4]) * 60_000 + f[5] * 1000 + ms
}

/// The inverse of [`parse_utc_ms`]: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}
