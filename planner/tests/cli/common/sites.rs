//! Deployments over the network, as the real binary runs them: a site's CA
//! and certificates ([`certs`], [`Site`]), a receiver on a free port
//! ([`ReceiverProc`]), a client as one identity ([`Client`]); and the smallest
//! `lifeline.toml` a runbook test starts from ([`local_config`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{Background, Run, run, s};

/// How long a receiver may take to print its address.
const START: Duration = Duration::from_secs(30);
/// How long a command that must end promptly (a refusal, a shutdown) may take
/// before the test calls it hung.
const PROMPT: Duration = Duration::from_secs(30);

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs `lifeline ARGS` given as owned strings.
pub fn run_owned(args: &[String]) -> Run {
    run(&strs(args))
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A running `lifeline receiver`; killed on drop.
pub struct ReceiverProc {
    pub bg: Background,
    pub port: u16,
}

impl ReceiverProc {
    /// Starts a receiver and reads its first stdout line (`listening on ADDR`).
    /// `Err` holds what a receiver that exited instead printed.
    pub fn start(repo: &Path, tls: &Path, listen: &str, allow: &[&str]) -> Result<ReceiverProc, Run> {
        Self::start_with(repo, tls, listen, allow, &[])
    }

    /// [`start`](Self::start) with more arguments (`--config`, `--state-dir`).
    pub fn start_with(
        repo: &Path,
        tls: &Path,
        listen: &str,
        allow: &[&str],
        extra: &[&str],
    ) -> Result<ReceiverProc, Run> {
        let mut args = vec![
            "receiver".to_string(),
            "--repo".into(),
            s(repo).into(),
            "--listen".into(),
            listen.into(),
            "--tls-dir".into(),
            s(tls).into(),
        ];
        for a in allow {
            args.extend(["--allow".to_string(), a.to_string()]);
        }
        args.extend(extra.iter().map(|e| e.to_string()));
        let mut bg = Background::spawn(&strs(&args));
        let Some(first) = bg.wait_for_line(START, |_| true) else {
            if bg.wait_exit(PROMPT).is_some() {
                return Err(bg.finish(PROMPT));
            }
            panic!("the receiver printed nothing within {START:?}: {}", bg.describe());
        };
        let port = first
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("first line is not `listening on 127.0.0.1:PORT`: {first:?}"));
        if let Some(p) = listen.strip_prefix("127.0.0.1:").and_then(|p| p.parse::<u16>().ok())
            && p != 0
        {
            assert_eq!(port, p, "the receiver listens on another port than --listen asked");
        }
        Ok(ReceiverProc { bg, port })
    }

    /// What the receiver printed so far, and whether it runs.
    pub fn describe(&mut self) -> String {
        self.bg.describe()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Asserts the receiver is still running.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(st) = self.bg.try_status() {
            panic!("the receiver exited ({st:?}): {}", self.bg.describe());
        }
    }

    /// SIGTERM; asserts a graceful exit 0 and returns what it printed.
    #[track_caller]
    pub fn stop(self) -> Run {
        self.bg.signal("TERM");
        self.bg.finish(PROMPT).ok().stderr_has(&["receiver: shutting down"])
    }
}

/// A deployment: a CA, one TLS directory with the receiver's certificate and the
/// agents', and the receiver's repository path (created by the receiver).
pub struct Site {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub tls: PathBuf,
    pub repo: PathBuf,
}

impl Site {
    /// Mints a CA and certificates for a receiver on 127.0.0.1 and `agents`
    /// (`NAME@TENANT`).
    pub fn new(agents: &[&str]) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, tls, repo) = (dir.path().join("ca"), dir.path().join("tls"), dir.path().join("repo"));
        certs(&ca, &tls, true, agents, &[]).ok();
        Site { dir, ca, tls, repo }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new key file `NAME.key`.
    pub fn key(&self, name: &str) -> PathBuf {
        let k = self.path(&format!("{name}.key"));
        run(&["key", "new", "--out", s(&k)]).ok();
        k
    }

    /// A receiver on a free port over the site's repository.
    #[track_caller]
    pub fn receiver(&self, allow: &[&str]) -> ReceiverProc {
        ReceiverProc::start(&self.repo, &self.tls, "127.0.0.1:0", allow)
            .unwrap_or_else(|r| panic!("the receiver did not start: {}\n{}", r.args, r.stderr))
    }

    /// A client of `receiver` as agent `identity`, with its own state dir.
    /// Writes `lifeline.toml` here for a planner (identity `planner`, admin
    /// `ops`, this site's certificates) whose state is in `state`, whose
    /// secondary site is the receiver at `url`: `primary` is the body of
    /// `[sites.primary]`, `groups` what follows.
    pub fn planner_config(&self, state: &Path, key: &Path, url: &str, primary: &str, groups: &str) -> PathBuf {
        let path = self.path("lifeline.toml");
        let head = format!(
            r#"state_dir = "{state}"
key_file = "{key}"
[tls]
dir = "{tls}"
identity = "planner"
admin = "ops"
[sites.primary]
{primary}
[sites.secondary]
receiver = "{url}"
"#,
            state = s(state),
            key = s(key),
            tls = s(&self.tls),
        );
        fs::write(&path, head + groups).unwrap();
        path
    }

    pub fn client(&self, receiver: &ReceiverProc, identity: &str, key: &Path) -> Client {
        Client {
            url: receiver.url(),
            tls: self.tls.clone(),
            identity: identity.into(),
            key: key.into(),
            state: self.path(&format!("state-{identity}")),
        }
    }
}

/// `lifeline certs new`.
pub fn certs(ca: &Path, out: &Path, receiver: bool, agents: &[&str], admins: &[&str]) -> Run {
    let mut args = vec![
        "certs".to_string(),
        "new".into(),
        "--ca-dir".into(),
        s(ca).into(),
        "--out".into(),
        s(out).into(),
    ];
    if receiver {
        for san in ["127.0.0.1", "localhost"] {
            args.extend(["--receiver-san".to_string(), san.into()]);
        }
    }
    for a in agents {
        args.extend(["--agent".to_string(), a.to_string()]);
    }
    for a in admins {
        args.extend(["--admin".to_string(), a.to_string()]);
    }
    run_owned(&args)
}

/// Backup, points, restore and agent runs against a receiver as one identity.
#[derive(Clone)]
pub struct Client {
    pub url: String,
    pub tls: PathBuf,
    pub identity: String,
    pub key: PathBuf,
    pub state: PathBuf,
}

pub fn volume_specs(vols: &[(&str, &Path)]) -> Vec<String> {
    vols.iter()
        .flat_map(|(n, p)| ["--volume".to_string(), format!("{n}={}", s(p))])
        .collect()
}

/// `args`, then a `--volume NAME=PATH` for each of `vols`, then `extra`.
pub fn with_volumes(mut args: Vec<String>, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
    args.extend(volume_specs(vols));
    args.extend(extra.iter().map(|e| e.to_string()));
    args
}

/// Where a test runs `lifeline backup` from: a [`Sandbox`](super::Sandbox)
/// (a local repository) or a [`Client`] of a receiver.
pub trait Backs {
    /// The fields a `backup --json` summary must have.
    const SUMMARY_FIELDS: &'static [&'static str];

    /// `lifeline backup` of `vols` into `group`, then `extra`.
    fn backup_args(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String>;

    /// `lifeline backup` of `vols` into `group`, with `extra` arguments.
    fn backup(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Run {
        run_owned(&self.backup_args(group, vols, extra))
    }

    /// A successful `backup --json`; returns its summary.
    #[track_caller]
    fn backup_json(&self, group: &str, vols: &[(&str, &Path)]) -> Value {
        let r = self.backup(group, vols, &["--json"]).ok();
        let v = r.json();
        for field in Self::SUMMARY_FIELDS {
            assert!(v.get(field).is_some(), "backup --json lacks `{field}`: {}", r.stdout);
        }
        v
    }
}

impl Backs for Client {
    const SUMMARY_FIELDS: &'static [&'static str] = &["seq", "bytes_scanned", "bytes_new", "bytes_stored"];

    fn backup_args(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
        self.writer_args("backup", group, vols, extra)
    }
}

impl Client {
    pub fn with_tls(&self, tls: &Path) -> Client {
        Client {
            tls: tls.into(),
            ..self.clone()
        }
    }

    pub fn with_key(&self, key: &Path) -> Client {
        Client {
            key: key.into(),
            ..self.clone()
        }
    }

    pub fn remote(&self) -> Vec<String> {
        vec![
            "--repo".into(),
            self.url.clone(),
            "--tls-dir".into(),
            s(&self.tls).into(),
            "--identity".into(),
            self.identity.clone(),
        ]
    }

    /// The arguments of a command of `group` as this client with its key,
    /// then `rest`.
    pub fn keyed(&self, group: &str, rest: &[&str]) -> Vec<String> {
        let mut args = self.remote();
        args.extend(["--key-file", s(&self.key), "--group", group].map(String::from));
        args.extend(rest.iter().map(|e| e.to_string()));
        args
    }

    /// `COMMAND` of `group` as this client with its key, then `rest`.
    pub fn keyed_args(&self, command: &str, group: &str, rest: &[&str]) -> Vec<String> {
        let mut args = vec![command.to_string()];
        args.extend(self.keyed(group, rest));
        args
    }

    /// `COMMAND` (backup, agent) of `vols` into `group` as this client, with
    /// its key and state dir, then `extra`.
    fn writer_args(&self, command: &str, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
        let args = self.keyed_args(command, group, &["--state-dir", s(&self.state)]);
        with_volumes(args, vols, extra)
    }

    /// `points --json` without a key (a read-only session).
    pub fn points(&self, extra: &[&str]) -> Run {
        let mut args = vec!["points".to_string()];
        args.extend(self.remote());
        args.extend(extra.iter().map(|e| e.to_string()));
        run_owned(&args)
    }

    #[track_caller]
    pub fn points_json(&self) -> Vec<Value> {
        let r = self.points(&["--json"]).ok();
        r.json().as_array().cloned().expect("points --json is an array")
    }

    pub fn restore(&self, group: &str, point: &str, volume: &str, to: &Path) -> Run {
        run_owned(&self.keyed_args("restore", group, &["--point", point, "--volume", volume, "--to", s(to)]))
    }

    pub fn agent_args(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
        self.writer_args("agent", group, vols, extra)
    }

    /// `agent --once --retry-for 60s`: a refusal must end it at once (within
    /// [`PROMPT`]), not after a minute of retries.
    #[track_caller]
    pub fn agent_once(&self, group: &str, vols: &[(&str, &Path)]) -> Run {
        let args = self.agent_args(group, vols, &["--once", "--retry-for", "60s"]);
        Background::spawn(&strs(&args)).finish(PROMPT)
    }
}

/// A site whose one agent, `a@acme`, may write what `allow` says (`a=app`):
/// its receiver running, the tenant's key, and `a`'s client with it.
pub fn agent_a_site(allow: &str) -> (Site, ReceiverProc, PathBuf, Client) {
    let site = Site::new(&["a@acme"]);
    let receiver = site.receiver(&[allow]);
    let key = site.key("acme");
    let c = site.client(&receiver, "a", &key);
    (site, receiver, key, c)
}

/// `lifeline ARGS` (an agent with `--control 127.0.0.1:0`) in the
/// background, once it has made its first point (each waited for up to
/// `timeout`): (it, its control address).
#[track_caller]
pub fn agent_with_control(timeout: Duration, args: &[String]) -> (Background, String) {
    let mut agent = Background::spawn(&strs(args));
    let control = agent.value_after(timeout, "control listening on ");
    agent
        .wait_for_line(timeout, |l| l.starts_with("cycle: point 1 "))
        .unwrap_or_else(|| panic!("no first cycle: {}", agent.describe()));
    (agent, control)
}

/// A temp dir with a [`local_config`] in it: (the dir, the config).
pub fn local_run_dir() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = local_config(dir.path());
    (dir, config)
}

/// A `lifeline.toml` in `dir` with a state dir there and one group, `app`,
/// with no volumes: what a runbook of local steps needs.
pub fn local_config(dir: &Path) -> PathBuf {
    let config = dir.join("lifeline.toml");
    fs::write(
        &config,
        format!("state_dir = \"{}\"\n[groups.app]\n", s(&dir.join("state"))),
    )
    .unwrap();
    config
}
