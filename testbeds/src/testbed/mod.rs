//! A two-site testbed: `up` mints a CA, certificates and a key, starts a
//! receiver per site, the impairment proxy and the workload on the primary, and
//! an agent replicating the workload's volume through the proxy to the
//! secondary's receiver; it writes `DIR/testbed.json` and `DIR/lifeline.toml`
//! and returns once every process is ready (they run detached). `down` stops
//! and removes everything `up` made, including what a failed `up` had made so
//! far; [`TestbedGuard`] does it on drop (a failing or panicking test).
//!
//! Layout of `DIR`:
//! ```text
//! testbed.json  lifeline.toml  tenant.key  proxy.sock
//! ca/ (the CA key)  tls/ (ca.pem, receiver, agent `app@tb`, admin `ops`)  logs/
//! sites/primary/{repo,volumes/app.img,volumes/app.img.durable,state}
//! sites/secondary/{disk/ (tmpfs, root only) repo,restored}
//! ```

pub mod disk;
pub mod fault;
mod layout;
pub mod netns;
pub mod process;
pub mod registry;
pub mod state;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::layout::{initial_state, write_config};
use self::netns::NetnsLink;
use self::state::{
    AgentInfo, LinkState, Owner, Paths, ProcessState, STATE_FILE, STATE_FORMAT, STATE_VERSION, SiteState, TestbedState,
    WorkloadInfo, write_atomic,
};
use crate::error::{Result, TestbedError};
use crate::impairment_proxy::{ProxyCommand, ProxyState, proxy_call};

/// How long one process may take to be ready.
const READY: Duration = Duration::from_secs(20);
/// How long `down` lets processes end after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_millis(1500);

/// Agent identity, tenant, admin and group of every testbed.
pub const AGENT: &str = "app";
pub const TENANT: &str = "tb";
pub const ADMIN: &str = "ops";
pub const GROUP: &str = "app";
pub const VOLUME: &str = "app";
/// A second group the agent identity may write, for ad-hoc backups (`lifeline backup`).
pub const SPARE_GROUP: &str = "data";

/// Which kind of environment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// Two site directories, loopback ports.
    Local,
    /// Two network namespaces joined by a veth pair (root).
    Netns,
}

/// What `up` builds.
#[derive(Debug, Clone)]
pub struct TestbedSpec {
    pub dir: PathBuf,
    pub flavour: Flavour,
    /// The `lifeline` binary the processes run.
    pub bin: PathBuf,
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second between the sites.
    pub rate: Option<u64>,
    pub stall_every: Option<Duration>,
    pub stall_for: Duration,
    /// Packet loss in percent (netns only).
    pub loss_percent: f64,
    /// Agent cycle interval.
    pub interval: Duration,
    /// RPO written into the group's configuration.
    pub rpo: String,
    /// Workload volume size and ballast.
    pub volume_size: u64,
    pub ballast: u64,
    pub write_every: Duration,
    pub fsync_every: Duration,
    /// Size of the secondary's tmpfs disk (root only; `None`: no disk of its own).
    pub disk_size: Option<u64>,
    /// A process owning the testbed: when it is gone, the next `up` removes it.
    pub owner: Option<u32>,
}

impl TestbedSpec {
    /// Defaults: local, no impairment, 1 s cycles, a 32 MiB volume with 16 MiB of
    /// ballast, a 128 MiB disk for the secondary when root.
    pub fn new(dir: &Path, bin: &Path) -> TestbedSpec {
        TestbedSpec {
            dir: dir.to_path_buf(),
            flavour: Flavour::Local,
            bin: bin.to_path_buf(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate: None,
            stall_every: None,
            stall_for: Duration::from_secs(2),
            loss_percent: 0.0,
            interval: Duration::from_secs(1),
            rpo: "10s".into(),
            volume_size: 32 << 20,
            ballast: 16 << 20,
            write_every: Duration::from_millis(20),
            fsync_every: Duration::from_millis(200),
            disk_size: is_root().then_some(128 << 20),
            owner: None,
        }
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A testbed that exists (its `testbed.json`).
#[derive(Debug, Clone)]
pub struct Testbed {
    pub state: TestbedState,
}

/// Runs [`Testbed::down`] on drop.
pub struct TestbedGuard(Option<Testbed>);

impl std::ops::Deref for TestbedGuard {
    type Target = Testbed;
    fn deref(&self) -> &Testbed {
        self.0.as_ref().expect("testbed")
    }
}

impl std::ops::DerefMut for TestbedGuard {
    fn deref_mut(&mut self) -> &mut Testbed {
        self.0.as_mut().expect("testbed")
    }
}

impl TestbedGuard {
    /// Takes the testbed down now, reporting errors.
    pub fn down(mut self) -> Result<()> {
        self.0.take().map(|t| t.down()).unwrap_or(Ok(()))
    }
}

impl Drop for TestbedGuard {
    fn drop(&mut self) {
        if let Some(t) = self.0.take()
            && let Err(e) = t.down()
        {
            eprintln!("warning: testbed down: {e}");
        }
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> TestbedError {
    move |e| TestbedError::io(context, e)
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(io(format!("create {}", p.display())))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A TOML basic string (JSON string escapes are valid TOML).
fn toml_str(v: &str) -> String {
    serde_json::to_string(v).expect("string")
}

/// A shell word.
fn sh_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The testbed id for `dir`: 8 hex digits of a hash of its path and `n`.
fn id_for(dir: &Path, n: u32) -> String {
    let mut h = blake3::Hasher::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update(&n.to_le_bytes());
    hex::encode(&h.finalize().as_bytes()[..4])
}

impl Testbed {
    /// Loads the testbed in `dir`.
    pub fn load(dir: &Path) -> Result<Testbed> {
        Ok(Testbed {
            state: TestbedState::load(dir)?,
        })
    }

    /// Wraps it in a guard that takes it down on drop.
    pub fn guard(self) -> TestbedGuard {
        TestbedGuard(Some(self))
    }

    /// Saves `testbed.json` (and the registry's copy).
    pub fn save(&self) -> Result<()> {
        self.state.write_to(&self.state.dir.join(STATE_FILE))?;
        registry::register(&self.state)
    }

    /// Removes leftovers of crashed runs: every registered testbed whose
    /// directory no longer holds it or whose owner process is gone, and a
    /// testbed already in `dir`.
    pub fn remove_leftovers(dir: &Path) -> Vec<String> {
        let mut removed = Vec::new();
        if let Ok(old) = Testbed::load(dir) {
            removed.push(format!("{} (previous testbed in {})", old.state.id, dir.display()));
            if let Err(e) = old.down() {
                tracing::warn!(error = %e, "removing the previous testbed");
            }
        }
        for st in registry::entries() {
            if registry::is_leftover(&st) {
                removed.push(format!("{} (leftover in {})", st.id, st.dir.display()));
                let _ = teardown(&st);
            }
        }
        // Namespaces of ours that no registered testbed claims.
        if is_root() && which("ip") {
            let claimed: Vec<String> = registry::entries()
                .iter()
                .filter_map(|s| s.link.netns.as_ref())
                .flat_map(|l| [l.primary_ns.clone(), l.secondary_ns.clone()])
                .collect();
            for ns in NetnsLink::list_namespaces() {
                if !claimed.contains(&ns) {
                    let _ = netns::run("ip", &["netns", "del", &ns]);
                    removed.push(format!("namespace {ns}"));
                }
            }
        }
        for r in &removed {
            tracing::info!(leftover = %r, "removed");
        }
        removed
    }

    /// Builds the testbed and returns once every process is ready.
    pub fn up(spec: &TestbedSpec) -> Result<Testbed> {
        let existed = spec.dir.exists();
        mkdir(&spec.dir)?;
        let dir = spec
            .dir
            .canonicalize()
            .map_err(io(format!("resolve {}", spec.dir.display())))?;
        Self::remove_leftovers(&dir);
        if spec.flavour == Flavour::Netns {
            if !is_root() || !which("ip") {
                return Err(TestbedError::NeedsRoot {
                    what: "the netns flavour".into(),
                });
            }
            if spec.loss_percent > 0.0 && !which("nft") {
                return Err(TestbedError::Invalid(
                    "packet loss needs nftables (`apt-get install nftables`)".into(),
                ));
            }
        } else if spec.loss_percent > 0.0 {
            return Err(TestbedError::Invalid(
                "packet loss needs the netns flavour (loopback TCP has no packets to drop)".into(),
            ));
        }
        let mut n = 0;
        let id = loop {
            let id = id_for(&dir, n);
            let taken = registry::entries().iter().any(|e| e.id == id)
                || (spec.flavour == Flavour::Netns && NetnsLink::for_id(&id).exists());
            if !taken {
                break id;
            }
            n += 1;
        };
        let mut tb = Testbed {
            state: initial_state(spec, &dir, &id, !existed),
        };
        match tb.build(spec) {
            Ok(()) => Ok(tb),
            Err(e) => {
                let _ = teardown(&tb.state);
                Err(e)
            }
        }
    }

    fn build(&mut self, spec: &TestbedSpec) -> Result<()> {
        // Saved (and registered) first, so a crash from here on leaves a findable leftover.
        self.save()?;
        let st = &mut self.state;
        let dir = st.dir.clone();
        if let Some(link) = &st.link.netns {
            link.create()?;
        }
        for p in [&st.paths.logs, &st.paths.state_dir, &st.paths.restore_dir] {
            mkdir(p)?;
        }
        for site in st.sites.values() {
            mkdir(&site.dir)?;
        }
        mkdir(&dir.join("sites/primary/volumes"))?;
        if let Some(d) = st.sites["secondary"].disk.clone() {
            disk::mount_tmpfs(&d, spec.disk_size.unwrap_or(128 << 20))?;
        }
        // Identities and the key.
        let mut sans = vec!["127.0.0.1".to_string(), "localhost".into()];
        if let Some(l) = &st.link.netns {
            sans.extend([l.primary_addr.clone(), l.secondary_addr.clone()]);
        }
        lifeline_service::mint_certificates(&lifeline_service::CertsRequest {
            ca_dir: st.paths.ca_dir.clone(),
            out: st.paths.tls_dir.clone(),
            receiver_sans: sans,
            agents: vec![format!("{AGENT}@{TENANT}")],
            admins: vec![ADMIN.into()],
            days: 30,
            ..Default::default()
        })?;
        lifeline_replicator::KeyFile::create(&st.paths.key_file, None)?;

        // Receivers, both at once.
        let bin = s(&st.bin);
        let mut procs = Vec::new();
        for (name, site) in &st.sites {
            let p = ProcessState {
                name: format!("receiver-{name}"),
                site: name.clone(),
                namespace: site.namespace.clone(),
                argv: vec![
                    bin.clone(),
                    "receiver".into(),
                    "--repo".into(),
                    s(&site.repo),
                    "--listen".into(),
                    format!("{}:0", site.address),
                    "--tls-dir".into(),
                    s(&st.paths.tls_dir),
                    "--allow".into(),
                    format!("{AGENT}={GROUP},{SPARE_GROUP}"),
                ],
                pid: 0,
                stdout: st.paths.logs.join(format!("receiver-{name}.out")),
                stderr: st.paths.logs.join(format!("receiver-{name}.err")),
                ready: "listening on ".into(),
                ready_value: String::new(),
            };
            procs.push(p);
        }
        start_all(st, procs)?;
        for name in ["primary", "secondary"] {
            let p = st.processes.get_mut(&format!("receiver-{name}")).expect("receiver");
            let addr = p.ready_value.clone();
            // Restarts bind the same port.
            p.argv[5] = addr.clone();
            let site = st.sites.get_mut(name).expect("site");
            site.listen = addr.clone();
            site.receiver_url = format!("https://{addr}");
        }

        // The proxy and the workload, both at once, on the primary.
        let primary_ns = st.sites["primary"].namespace.clone();
        let mut proxy_argv = vec![
            bin.clone(),
            "testbed".into(),
            "proxy".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            st.sites["secondary"].listen.clone(),
            "--control".into(),
            s(&st.link.proxy_socket),
            "--latency".into(),
            format!("{}ms", st.link.latency_ms),
            "--jitter".into(),
            format!("{}ms", st.link.jitter_ms),
            "--stall-for".into(),
            format!("{}ms", st.link.stall_for_ms),
        ];
        if let Some(e) = st.link.stall_every_ms {
            proxy_argv.extend(["--stall-every".into(), format!("{e}ms")]);
        }
        if let (Some(r), None) = (st.link.rate_bytes_per_sec, &st.link.netns) {
            proxy_argv.extend(["--rate".into(), format!("{r}B")]);
        }
        let _ = fs::remove_file(&st.link.proxy_socket);
        let proxy = ProcessState {
            name: "proxy".into(),
            site: "primary".into(),
            namespace: primary_ns.clone(),
            argv: proxy_argv,
            pid: 0,
            stdout: st.paths.logs.join("proxy.out"),
            stderr: st.paths.logs.join("proxy.err"),
            ready: "listening on ".into(),
            ready_value: String::new(),
        };
        let workload = ProcessState {
            name: "workload".into(),
            site: "primary".into(),
            namespace: primary_ns.clone(),
            argv: vec![
                bin.clone(),
                "workload".into(),
                "run".into(),
                "--volume".into(),
                s(&st.workload.volume),
                "--size".into(),
                st.workload.size.to_string(),
                "--ballast".into(),
                spec.ballast.to_string(),
                "--durable-log".into(),
                s(&st.workload.durable_log),
                "--write-every".into(),
                format!("{}ms", ms(spec.write_every)),
                "--fsync-every".into(),
                format!("{}ms", ms(spec.fsync_every)),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            pid: 0,
            stdout: st.paths.logs.join("workload.out"),
            stderr: st.paths.logs.join("workload.err"),
            ready: "listening on ".into(),
            ready_value: String::new(),
        };
        start_all(st, vec![proxy, workload])?;
        let proxy_addr = st.processes["proxy"].ready_value.clone();
        st.processes.get_mut("proxy").expect("proxy").argv[4] = proxy_addr.clone();
        st.link.proxy_url = format!("https://{proxy_addr}");
        let waddr = st.processes["workload"].ready_value.clone();
        st.processes.get_mut("workload").expect("workload").argv[16] = waddr.clone();
        st.workload.addr = waddr;
        if let Some(l) = &st.link.netns {
            l.set_rate(st.link.rate_bytes_per_sec)?;
            l.set_loss(st.link.loss_percent)?;
        }

        // The agent, reading the group from the configuration.
        write_config(st)?;
        let agent = ProcessState {
            name: "agent".into(),
            site: "primary".into(),
            namespace: primary_ns,
            argv: vec![
                bin,
                "agent".into(),
                "--config".into(),
                s(&st.paths.config),
                "--group".into(),
                GROUP.into(),
                "--repo".into(),
                st.link.proxy_url.clone(),
                "--control".into(),
                "127.0.0.1:0".into(),
                // One JSON object per cycle: the demo and the tests read numbers, not text.
                "--json".into(),
            ],
            pid: 0,
            stdout: st.paths.logs.join("agent.out"),
            stderr: st.paths.logs.join("agent.err"),
            ready: "control listening on ".into(),
            ready_value: String::new(),
        };
        start_all(st, vec![agent])?;
        let control = st.processes["agent"].ready_value.clone();
        st.processes.get_mut("agent").expect("agent").argv[9] = control.clone();
        st.agent.control = control;
        write_config(st)?;
        self.save()
    }

    /// Stops every process, deletes namespaces, unmounts, removes the files `up`
    /// made and forgets the testbed. Goes on past errors and reports the first.
    pub fn down(self) -> Result<()> {
        teardown(&self.state)
    }

    /// Takes down the testbed in `dir`.
    pub fn down_dir(dir: &Path) -> Result<()> {
        Testbed::load(dir)?.down()
    }

    /// A process by name (`agent`, `workload`, `proxy`, `receiver-primary`, `receiver-secondary`).
    pub fn process(&self, name: &str) -> Result<&ProcessState> {
        self.state.processes.get(name).ok_or_else(|| {
            TestbedError::Invalid(format!(
                "no process `{name}`: the processes are {}",
                self.state.processes.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// True while the named process runs.
    pub fn is_running(&self, name: &str) -> bool {
        self.process(name).is_ok_and(|p| process::runs(p, p.pid))
    }

    /// The proxy's state (counters, settings), asked over its control socket.
    pub fn proxy(&self, cmd: &ProxyCommand) -> Result<ProxyState> {
        proxy_call(&self.state.link.proxy_socket, cmd)
    }

    /// `lifeline ARGS` run on `site` (inside its namespace in the netns flavour),
    /// with the environment cleared of Lifeline variables.
    pub fn command(&self, site: &str, args: &[&str]) -> std::process::Command {
        let ns = self.state.sites.get(site).and_then(|s| s.namespace.clone());
        let mut c = match ns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", &ns]).arg(&self.state.bin);
                c
            }
            None => std::process::Command::new(&self.state.bin),
        };
        c.args(args)
            .env_remove("LIFELINE_CONFIG")
            .env_remove("LIFELINE_STATE_DIR")
            .env_remove("LIFELINE_PASSPHRASE")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Everything `testbed status` shows, as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        let st = &self.state;
        let procs: BTreeMap<&String, serde_json::Value> = st
            .processes
            .iter()
            .map(|(n, p)| {
                (
                    n,
                    serde_json::json!({
                        "site": p.site,
                        "pid": p.pid,
                        "running": process::runs(p, p.pid),
                        "address": p.ready_value,
                        "namespace": p.namespace,
                        "stdout": p.stdout,
                        "stderr": p.stderr,
                    }),
                )
            })
            .collect();
        let proxy = self.proxy(&ProxyCommand::Get).ok();
        serde_json::json!({
            "id": st.id,
            "dir": st.dir,
            "flavour": st.flavour,
            "created": st.created,
            "config": st.paths.config,
            "sites": st.sites,
            "link": st.link,
            "proxy": proxy,
            "processes": procs,
            "workload": st.workload,
            "agent": st.agent,
        })
    }
}

/// True when `program` is on the PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Starts `procs` together and waits until each is ready; records them in `st`.
fn start_all(st: &mut TestbedState, procs: Vec<ProcessState>) -> Result<()> {
    let mut started = Vec::new();
    for mut p in procs {
        let (pid, offset) = process::spawn_detached(&p)?;
        p.pid = pid;
        st.processes.insert(p.name.clone(), p.clone());
        started.push((p, offset));
    }
    for (p, offset) in started {
        let value = process::wait_ready(&p, p.pid, offset, READY)?;
        st.processes.get_mut(&p.name).expect("started").ready_value = value;
    }
    Ok(())
}

/// Restarts a process with its recorded command line; waits until it is ready.
pub(crate) fn restart(st: &mut TestbedState, name: &str) -> Result<()> {
    let p = st
        .processes
        .get(name)
        .cloned()
        .ok_or_else(|| TestbedError::Invalid(format!("no process `{name}`")))?;
    if process::runs(&p, p.pid) {
        return Err(TestbedError::Invalid(format!(
            "{name} (pid {}) is running: kill it first",
            p.pid
        )));
    }
    start_all(st, vec![p])
}

/// Removes everything a (possibly partial) testbed made.
fn teardown(st: &TestbedState) -> Result<()> {
    let mut first: Option<TestbedError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r
            && first.is_none()
        {
            first = Some(e);
        }
    };
    // The agent first (it would retry), then everything else at once.
    let order = ["agent", "workload", "proxy", "receiver-primary", "receiver-secondary"];
    if let Some(a) = st.processes.get(order[0]) {
        process::stop_all(&[a], GRACE);
    }
    let rest: Vec<&ProcessState> = st.processes.values().filter(|p| p.name != order[0]).collect();
    process::stop_all(&rest, GRACE);
    if let Some(l) = &st.link.netns {
        l.delete();
    }
    if let Some(d) = st.sites.get("secondary").and_then(|s| s.disk.as_ref()) {
        note(disk::unmount(d));
    }
    for p in st.created_paths.iter().rev() {
        let r = if p.is_dir() {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        };
        if let Err(e) = r
            && e.kind() != std::io::ErrorKind::NotFound
        {
            note(Err(TestbedError::io(format!("remove {}", p.display()), e)));
        }
    }
    if st.created_dir {
        let _ = fs::remove_dir(&st.dir);
    }
    registry::unregister(&st.id);
    tracing::info!(id = %st.id, "testbed down");
    first.map_or(Ok(()), Err)
}
