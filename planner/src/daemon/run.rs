//! `lifeline daemon --config lifeline.toml --site NAME`: runs what the
//! configuration gives one site, on schedules.
//!
//! - **Receiver**: when the site has `listen` and `repo`, the daemon serves the
//!   repository (as `lifeline receiver --site` would) and owns its catalog.
//! - **Points** of every group whose primary is this site, on the group's
//!   `schedule` (or `interval`): replication to the secondary's receiver, or a
//!   backup into the secondary's `repo` directory when that site runs no
//!   receiver (scheduled backups on one machine).
//! - **Prune** by each group's retention policy on `prune_schedule`, **verify**
//!   (no key) and **garbage collection** on `[daemon]`'s `verify_schedule` and
//!   `gc_schedule`: on the site that owns the repository, with the owner's
//!   authority (never an agent's).
//! - **Drills** of groups whose secondary is this site, on `drill_schedule`
//!   with `drill_runbook`, each a `lifeline drill` child process.
//!
//! Schedules are intervals or cron expressions with seconds in the group's
//! time zone ([`super::schedule`]). A job never overlaps itself; a job that is
//! due while its tenant already runs `max_concurrent` operations waits. The last
//! run of every job is kept in the state directory, so after downtime a missed
//! schedule runs once, not once per missed occurrence. SIGHUP reloads the
//! configuration (jobs and schedules; the receiver's address, repository and
//! allow list need a restart); SIGTERM or SIGINT stop scheduling, interrupt
//! running backups at their next object (no partial point is ever committed),
//! wait for the jobs, then stop the receiver after its in-flight calls.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use lifeline_replicator::{BackupOptions, Keys, Repository, TenantRepository, backup};
use lifeline_service::{AgentControl, Receiver, ReceiverConfig, RemoteRepository, TlsDir};
use serde_json::json;

use super::DaemonArgs;
use super::DaemonOptions;
use super::metrics::{self, DaemonMetrics, JobLabels, JobResultLabels, NoLabels, VerdictLabels};
use super::schedule::{Due, Schedule};
use crate::config::{Config, GroupConfig};
use crate::repo_target::parse_duration;

/// Default per-tenant limit of concurrent operations.
pub const DEFAULT_MAX_CONCURRENT: usize = 5;
/// How often the loop looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// Tenant key of site-wide jobs (verify, gc).
const SITE_JOBS: &str = "(site)";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Point { group: String },
    Prune { group: String },
    Drill { group: String, runbook: PathBuf },
    Verify,
    Gc,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Point { .. } => "point",
            Kind::Prune { .. } => "prune",
            Kind::Drill { .. } => "drill",
            Kind::Verify => "verify",
            Kind::Gc => "gc",
        }
    }

    fn group(&self) -> &str {
        match self {
            Kind::Point { group } | Kind::Prune { group } | Kind::Drill { group, .. } => group,
            Kind::Verify | Kind::Gc => "",
        }
    }
}

/// A scheduled job: what, for which tenant, when.
struct Job {
    key: String,
    kind: Kind,
    tenant: String,
    /// The schedule as written (a reload keeps the clock of an unchanged job).
    spec: String,
    due: Due,
    running: Arc<AtomicBool>,
}

/// The configuration as loaded, with the merged daemon options.
struct Loaded {
    config: Config,
    path: PathBuf,
    options: DaemonOptions,
}

/// A repository directory this daemon writes directly (no receiver in front).
struct LocalRepo {
    repo: Arc<Repository>,
    /// Points take it shared; a collection exclusively (a local collection
    /// assumes nothing writes).
    writers: RwLock<()>,
}

/// A repository this daemon owns, with its writer lock when local.
type Owned = (Arc<Repository>, Option<Arc<LocalRepo>>);

/// What the jobs share.
struct Shared {
    site: String,
    json: bool,
    stop: Arc<AtomicBool>,
    metrics: Arc<DaemonMetrics>,
    state_dir: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
    receiver: Option<Arc<Receiver>>,
    local: Mutex<HashMap<PathBuf, Arc<LocalRepo>>>,
    /// Per group: the receiver URL connected to, and the session.
    remotes: Mutex<HashMap<String, (String, Arc<RemoteRepository>)>>,
    /// The control API of each group this site replicates (with `control` in
    /// its config): what `lifeline agent --control` serves, so a runbook's
    /// `replication.*` steps reach the daemon. Fixed at start.
    controls: BTreeMap<String, Arc<AgentControl>>,
    active: Mutex<HashMap<String, usize>>,
    stdout: Mutex<()>,
    /// Each group's newest point as last seen (RPO gauges grow between points).
    last_points: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Drills running as child processes: told to stop (and tear their
    /// sandboxes down) when the daemon stops.
    children: Mutex<std::collections::HashSet<u32>>,
    /// What the console shows: jobs, cycles, the RPO history.
    feed: Arc<super::feed::Feed>,
}

pub fn run(a: &DaemonArgs, config_flag: Option<&Path>) -> Result<ExitCode> {
    let path = Config::locate(config_flag)
        .context("the daemon runs a site of a configuration: pass --config lifeline.toml")?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())?;
    let loaded = load(&path, &a.options)?;
    let site_cfg = loaded
        .config
        .sites
        .get(&a.site)
        .with_context(|| {
            format!(
                "{}: no [sites.{}]: the sites are {}",
                path.display(),
                a.site,
                loaded.config.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?
        .clone();
    let state_dir = loaded.config.state_dir(a.state_dir.as_deref());
    let metrics = Arc::new(DaemonMetrics::new());
    let sample_every = match &loaded.options.rpo_sample_every {
        Some(d) => parse_duration(d).context("[daemon] rpo_sample_every")?,
        None => super::feed::DEFAULT_RPO_SAMPLE_EVERY,
    };
    let feed = Arc::new(super::feed::Feed::new(sample_every));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();

    // The site's receiver: only on a site that receives some group's
    // replication. A primary's repo and listen are its failback's, whose seed
    // must own the repository before `lifeline receiver --site` serves it.
    let serves = serves_receiver(&loaded.config, &a.site);
    if !serves && let (Some(_), Some(repo)) = (&site_cfg.listen, &site_cfg.repo) {
        eprintln!(
            "daemon: not serving [sites.{}] repo {}: the site is no group's secondary; a failback seeds it, then \
             serves it with `lifeline receiver --site {}` (runbooks/README.md, \"Failback\")",
            a.site,
            repo.display(),
            a.site
        );
    }
    let receiver = match (&site_cfg.listen, &site_cfg.repo) {
        _ if !serves => None,
        (Some(listen), Some(repo)) => {
            let tls_dir = loaded
                .config
                .tls
                .as_ref()
                .map(|t| t.dir.clone())
                .context("the site serves a receiver: [tls] dir is needed")?;
            let tls = TlsDir::new(&tls_dir).server_config()?;
            let receiver = Arc::new(Receiver::open(&ReceiverConfig {
                repo: repo.clone(),
                allow: site_cfg.allow.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            })?);
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(listen))
                .with_context(|| format!("receiver: listen on {listen}"))?;
            let addr = listener.local_addr()?;
            let owner = lifeline_replicator::OwnerNote::write(repo, "lifeline daemon", &format!("https://{addr}"))?;
            println!("listening on {addr}");
            let mut rx = shutdown_rx.clone();
            let r = receiver.clone();
            servers.push(rt.spawn(async move {
                let _owner = owner;
                let shutdown = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = lifeline_service::serve(listener, tls, r, shutdown).await {
                    eprintln!("daemon: receiver stopped: {e}");
                }
            }));
            Some(receiver)
        }
        (Some(_), None) | (None, Some(_)) if site_cfg.listen.is_some() => {
            bail!("[sites.{}] has listen but no repo: the receiver needs both", a.site)
        }
        _ => None,
    };

    // Each group this site replicates on a schedule and gives a `control`
    // address serves the control API an agent serves (status, pause, resume,
    // sync-now, retarget), with the group's agent identity.
    let mut controls = BTreeMap::new();
    for (name, g) in &loaded.config.groups {
        let Some(addr) = &g.control else { continue };
        if g.primary.as_deref().unwrap_or("primary") != a.site || (g.schedule.is_none() && g.interval.is_none()) {
            continue;
        }
        let tls = loaded
            .config
            .tls
            .as_ref()
            .with_context(|| format!("[groups.{name}] control: serving the control API needs [tls] dir"))?;
        let identity = loaded
            .config
            .agent_identity(name)
            .with_context(|| format!("[groups.{name}] control: serving the control API needs the group's agent"))?;
        let target = loaded.config.receiver_of(name).unwrap_or_default().to_string();
        let control = AgentControl::new(name, &target);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("[groups.{name}] control: listen on {addr}"))?;
        println!("control listening on {} (group {name})", listener.local_addr()?);
        let mut rx = shutdown_rx.clone();
        let (c, tls_dir) = (control.clone(), TlsDir::new(&tls.dir));
        servers.push(rt.spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = lifeline_service::serve_control(listener, &tls_dir, &identity, c, shutdown).await {
                eprintln!("daemon: control API stopped: {e}");
            }
        }));
        controls.insert(name.clone(), control);
    }

    // Metrics.
    if let Some(addr) = &loaded.options.metrics {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("metrics: listen on {addr}"))?;
        println!("metrics listening on {}", listener.local_addr()?);
        let mut rx = shutdown_rx.clone();
        let m = metrics.clone();
        servers.push(rt.spawn(super::metrics::serve(listener, m, async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
    }
    std::io::stdout().flush()?;

    let shared = Arc::new(Shared {
        site: a.site.clone(),
        json: a.json,
        stop: stop.clone(),
        metrics,
        state_dir,
        loaded: RwLock::new(Arc::new(loaded)),
        receiver,
        local: Mutex::new(HashMap::new()),
        remotes: Mutex::new(HashMap::new()),
        controls,
        active: Mutex::new(HashMap::new()),
        stdout: Mutex::new(()),
        children: Mutex::new(Default::default()),
        last_points: Mutex::new(BTreeMap::new()),
        feed,
    });
    // The console reads the shared state, so it starts last.
    if let Some(addr) = shared.loaded().options.http.clone() {
        let mut rx = shutdown_rx.clone();
        servers.push(super::console::serve::start(
            &rt,
            &addr,
            &shared.loaded().options,
            shared.loaded().config.tls.as_ref().map(|t| t.dir.as_path()),
            shared.clone(),
            shared.feed.clone(),
            shared.metrics.clone(),
            a.json,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        )?);
    }
    let result = main_loop(&shared, &reload);
    // Stop the servers after the jobs: in-flight calls finish first.
    let _ = shutdown_tx.send(true);
    for s in servers {
        let _ = rt.block_on(s);
    }
    shared.event(json!({"event": "stopped"}), "daemon: stopped".into());
    result.map(|()| ExitCode::SUCCESS)
}

fn load(path: &Path, flags: &DaemonOptions) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read configuration {}", path.display()))?;
    let config = Config::parse(&text, path)?;
    let options = flags.over(&config.daemon);
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        options,
    })
}

fn group_tz<'a>(g: &'a GroupConfig, options: &'a DaemonOptions) -> &'a str {
    g.timezone.as_deref().or(options.timezone.as_deref()).unwrap_or("UTC")
}

/// Whether `site`'s daemon serves the site's repository (`listen` and `repo`):
/// only when the site is some group's secondary, i.e. receives replication. A
/// primary site's `repo` and `listen` serve its failback, whose seed opens the
/// repository itself and whose runbook then starts `lifeline receiver --site`.
fn serves_receiver(config: &Config, site: &str) -> bool {
    config
        .sites
        .get(site)
        .is_some_and(|s| s.listen.is_some() && s.repo.is_some())
        && config
            .groups
            .values()
            .any(|g| g.secondary.as_deref().unwrap_or("secondary") == site)
}

/// The site whose daemon owns a group's repository (prunes, verifies and
/// collects it): its secondary when that site's daemon serves the receiver
/// (`listen` and `repo`); its primary when the secondary is only a `repo`
/// directory (local backups); none when the receiver runs elsewhere (a
/// separate `lifeline receiver`: prune and collect through its admin service).
fn owner_site(config: &Config, g: &GroupConfig) -> Option<String> {
    let secondary = g.secondary.clone().unwrap_or_else(|| "secondary".into());
    match config.sites.get(&secondary) {
        Some(s) if s.listen.is_some() && s.repo.is_some() => Some(secondary),
        Some(s) if s.listen.is_some() || s.receiver.is_some() => None,
        _ => Some(g.primary.clone().unwrap_or_else(|| "primary".into())),
    }
}

/// A job the configuration asks for: key, kind, tenant, schedule as written,
/// schedule, and whether it runs at once when it never ran (intervals: a fresh
/// daemon takes a point at once).
type Planned = (String, Kind, String, String, Schedule, bool);

/// The jobs the configuration gives `site`.
fn plan_jobs(loaded: &Loaded, site: &str) -> Result<Vec<Planned>> {
    let c = &loaded.config;
    let o = &loaded.options;
    let mut out = Vec::new();
    let mut owns_repo = serves_receiver(c, site);
    for (name, g) in &c.groups {
        let tenant = g
            .tenant
            .clone()
            .unwrap_or_else(|| lifeline_replicator::DEFAULT_TENANT.into());
        let tz = group_tz(g, o);
        let ctx = |what: &str| format!("{}: [groups.{name}] {what}", loaded.path.display());
        let primary = g.primary.as_deref().unwrap_or("primary");
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        if primary == site
            && let Some(spec) = g.schedule.as_ref().or(g.interval.as_ref())
        {
            if g.volumes.is_empty() {
                bail!("{}: a scheduled group needs volumes", ctx("schedule"));
            }
            let s = Schedule::parse(spec, tz).with_context(|| ctx("schedule"))?;
            let at_start = matches!(s, Schedule::Every(_));
            out.push((
                format!("point:{name}"),
                Kind::Point { group: name.clone() },
                tenant.clone(),
                spec.clone(),
                s,
                at_start,
            ));
        }
        if owner_site(c, g).as_deref() == Some(site) {
            owns_repo = true;
            if let Some(spec) = &g.prune_schedule {
                if g.retention.is_none() {
                    bail!("{}: set [groups.{name}.retention] too", ctx("prune_schedule"));
                }
                let s = Schedule::parse(spec, tz).with_context(|| ctx("prune_schedule"))?;
                out.push((
                    format!("prune:{name}"),
                    Kind::Prune { group: name.clone() },
                    tenant.clone(),
                    spec.clone(),
                    s,
                    false,
                ));
            }
        }
        if secondary == site
            && let Some(spec) = &g.drill_schedule
        {
            let runbook = g
                .drill_runbook
                .clone()
                .with_context(|| format!("{}: set drill_runbook too", ctx("drill_schedule")))?;
            let s = Schedule::parse(spec, tz).with_context(|| ctx("drill_schedule"))?;
            out.push((
                format!("drill:{name}"),
                Kind::Drill {
                    group: name.clone(),
                    runbook,
                },
                tenant.clone(),
                spec.clone(),
                s,
                false,
            ));
        }
    }
    let tz = o.timezone.as_deref().unwrap_or("UTC");
    if owns_repo {
        if let Some(spec) = &o.verify_schedule {
            let s = Schedule::parse(spec, tz).context("[daemon] verify_schedule")?;
            out.push(("verify".into(), Kind::Verify, SITE_JOBS.into(), spec.clone(), s, false));
        }
        if let Some(spec) = &o.gc_schedule {
            let s = Schedule::parse(spec, tz).context("[daemon] gc_schedule")?;
            out.push(("gc".into(), Kind::Gc, SITE_JOBS.into(), spec.clone(), s, false));
        }
    }
    if let Some(g) = &o.gc_grace {
        parse_duration(g).context("[daemon] gc_grace")?;
    }
    Ok(out)
}

/// Builds the job table, keeping the clock of jobs whose schedule did not change.
fn build_jobs(planned: Vec<Planned>, old: Vec<Job>, last_runs: &BTreeMap<String, DateTime<Utc>>) -> Vec<Job> {
    let now = Utc::now();
    let mut old: HashMap<String, Job> = old.into_iter().map(|j| (j.key.clone(), j)).collect();
    let mut jobs = Vec::new();
    for (key, kind, tenant, spec, schedule, at_start) in planned {
        match old.remove(&key) {
            Some(j) if j.spec == spec && j.kind == kind => jobs.push(Job { tenant, ..j }),
            prev => {
                let running = prev.map(|j| j.running).unwrap_or_default();
                let last = last_runs.get(&key).copied();
                jobs.push(Job {
                    due: Due::new(schedule, last, now, at_start),
                    key,
                    kind,
                    tenant,
                    spec,
                    running,
                });
            }
        }
    }
    jobs
}

fn last_runs_path(state_dir: &Path, site: &str) -> PathBuf {
    state_dir.join("daemon").join(format!("{site}.last-runs.json"))
}

fn read_last_runs(path: &Path) -> BTreeMap<String, DateTime<Utc>> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the last runs atomically (temp, fsync, rename, directory fsync).
fn write_last_runs(path: &Path, runs: &BTreeMap<String, DateTime<Utc>>) -> Result<()> {
    let dir = path.parent().expect("state file has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(runs)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn main_loop(shared: &Arc<Shared>, reload: &AtomicBool) -> Result<()> {
    let lr_path = last_runs_path(&shared.state_dir, &shared.site);
    let mut last_runs = read_last_runs(&lr_path);
    let mut jobs = build_jobs(plan_jobs(&shared.loaded(), &shared.site)?, Vec::new(), &last_runs);
    shared.started(&jobs);
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut last_gauges = Instant::now() - Duration::from_secs(60);
    while !shared.stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed) {
            let path = shared.loaded().path.clone();
            let flags = shared.loaded().options.clone();
            match load(&path, &flags).and_then(|l| Ok((plan_jobs(&l, &shared.site)?, l))) {
                Ok((planned, l)) => {
                    *shared.loaded.write().expect("config") = Arc::new(l);
                    shared.remotes.lock().expect("remotes").clear();
                    jobs = build_jobs(planned, std::mem::take(&mut jobs), &last_runs);
                    shared
                        .metrics
                        .daemon_config_reloads_total
                        .get_or_create(&NoLabels)
                        .inc();
                    shared.started(&jobs);
                }
                // Keep running the configuration we have.
                Err(e) => shared.event(
                    json!({"event": "reload_failed", "error": format!("{e:#}")}),
                    format!("daemon: reload failed, keeping the running configuration: {e:#}"),
                ),
            }
        }
        let now = Utc::now();
        let limit = shared
            .loaded()
            .options
            .max_concurrent
            .unwrap_or(DEFAULT_MAX_CONCURRENT)
            .max(1);
        let mut changed = false;
        // Longest-waiting first: a job kept waiting by its tenant's limit goes
        // before one that just became due (no group starves another).
        jobs.sort_by_key(|j| j.due.next());
        for job in &mut jobs {
            if job.running.load(Ordering::Relaxed) {
                // Never overlaps itself; if it was due meanwhile it runs once after.
                continue;
            }
            {
                let active = shared.active.lock().expect("active");
                if active.get(&job.tenant).copied().unwrap_or(0) >= limit {
                    continue;
                }
            }
            // A sync-now on the group's control API makes its point due.
            let sync = matches!(&job.kind, Kind::Point { group }
                if shared.controls.get(group).is_some_and(|c| c.sync_requested()));
            // So does "run a drill now" on the console.
            let sync = sync || matches!(&job.kind, Kind::Drill { group, .. } if shared.feed.take_drill_request(group));
            if !job.due.due(now) && !sync {
                continue;
            }
            last_runs.insert(job.key.clone(), now);
            changed = true;
            *shared
                .active
                .lock()
                .expect("active")
                .entry(job.tenant.clone())
                .or_default() += 1;
            job.running.store(true, Ordering::Relaxed);
            let (s, kind, tenant, running) = (
                shared.clone(),
                job.kind.clone(),
                job.tenant.clone(),
                job.running.clone(),
            );
            threads.push(std::thread::spawn(move || {
                s.run_job(&kind, &tenant);
                *s.active.lock().expect("active").entry(tenant).or_default() -= 1;
                running.store(false, Ordering::Relaxed);
            }));
        }
        if changed && let Err(e) = write_last_runs(&lr_path, &last_runs) {
            eprintln!("daemon: cannot record the jobs' last runs ({e:#}); after a restart they run again");
        }
        threads.retain(|t| !t.is_finished());
        if last_gauges.elapsed() >= Duration::from_secs(1) {
            shared.update_rpo_gauges();
            last_gauges = Instant::now();
        }
        std::thread::sleep(TICK);
    }
    shared.event(
        json!({"event": "stopping", "running": threads.len()}),
        format!("daemon: stopping; waiting for {} running job(s)", threads.len()),
    );
    // Running drills end early, tearing their sandboxes down (a drill
    // interrupted this way reports a failure).
    for pid in shared.children.lock().expect("children").iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

impl Shared {
    fn loaded(&self) -> Arc<Loaded> {
        self.loaded.read().expect("config").clone()
    }

    fn event(&self, j: serde_json::Value, human: String) {
        let _g = self.stdout.lock().expect("stdout");
        if self.json {
            let mut j = j;
            j["at"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            println!("{j}");
        } else {
            println!("{human}");
        }
        let _ = std::io::stdout().flush();
    }

    fn started(&self, jobs: &[Job]) {
        let list: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| json!({"job": j.key, "schedule": j.spec, "next": j.due.next()}))
            .collect();
        let human = jobs
            .iter()
            .map(|j| format!("{} ({})", j.key, j.spec))
            .collect::<Vec<_>>()
            .join(", ");
        let drills = jobs.iter().any(|j| matches!(j.kind, Kind::Drill { .. }));
        let mut ev = json!({"event": "jobs", "site": self.site, "jobs": list});
        let mut text = format!("daemon: site {}: {} job(s): {human}", self.site, jobs.len());
        if drills {
            let dir = self.drill_reports();
            ev["drill_reports"] = json!(dir);
            text.push_str(&format!("; drill reports go to {}", dir.display()));
        }
        self.event(ev, text);
        let l = self.loaded();
        for (name, g) in &l.config.groups {
            if let Some(rpo) = g.rpo.as_deref().and_then(|r| parse_duration(r).ok()) {
                self.metrics
                    .group_rpo_objective_seconds
                    .get_or_create(&metrics::group(name))
                    .set(rpo.as_secs_f64());
            }
        }
    }

    fn run_job(&self, kind: &Kind, tenant: &str) {
        let t0 = Instant::now();
        let group = kind.group().to_string();
        if self.json {
            self.event(
                json!({"event": "job_started", "job": kind.name(), "group": group, "tenant": tenant}),
                String::new(),
            );
        }
        let feed_id = self.feed.job_started(kind.name(), &group);
        let result = match kind {
            Kind::Point { group } => self.point(group, tenant),
            Kind::Prune { group } => self.prune(group, tenant),
            Kind::Drill { group, runbook } => self.drill(group, runbook),
            Kind::Verify => self.verify(),
            Kind::Gc => self.gc(),
        };
        let secs = t0.elapsed().as_secs_f64();
        let outcome = result.as_ref().map(|(j, h)| (j, h.as_str()));
        self.feed
            .job_finished(feed_id, outcome.map_err(|e| format!("{e:#}")), secs);
        self.metrics.job_duration_seconds.observe(
            JobLabels {
                group: group.clone(),
                job: kind.name(),
            },
            secs,
        );
        let ok = result.is_ok();
        self.metrics
            .job_runs_total
            .get_or_create(&JobResultLabels {
                group: group.clone(),
                job: kind.name(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        match result {
            Ok((mut j, human)) => {
                j["event"] = json!("job");
                j["job"] = json!(kind.name());
                j["group"] = json!(group);
                j["ok"] = json!(true);
                j["secs"] = json!(secs);
                self.event(
                    j,
                    format!(
                        "daemon: {}{}: {human} ({secs:.2} s)",
                        kind.name(),
                        if group.is_empty() {
                            String::new()
                        } else {
                            format!(" {group}")
                        }
                    ),
                );
            }
            Err(e) => {
                if !group.is_empty() {
                    self.metrics
                        .group_errors_total
                        .get_or_create(&metrics::group(&group))
                        .inc();
                }
                self.event(
                    json!({"event": "job", "job": kind.name(), "group": group, "ok": false, "secs": secs, "error": format!("{e:#}")}),
                    format!("daemon: {} {group} failed: {e:#}", kind.name()),
                );
            }
        }
    }

    fn keys(&self) -> Result<Keys> {
        let l = self.loaded();
        let key_file = l
            .config
            .key_file
            .clone()
            .context("scheduled points need the tenant's key: set key_file in the configuration")?;
        Ok(crate::repo_target::load_key(&key_file)?.keys())
    }

    /// A local repository this daemon writes (opened once, shared).
    fn local_repo(&self, path: &Path) -> Result<Arc<LocalRepo>> {
        let mut m = self.local.lock().expect("local repos");
        if let Some(r) = m.get(path) {
            return Ok(r.clone());
        }
        let repo = Repository::open(path).with_context(|| {
            format!(
                "open repository {} (create it with `lifeline init --repo {}`)",
                path.display(),
                path.display()
            )
        })?;
        let r = Arc::new(LocalRepo {
            repo: Arc::new(repo),
            writers: RwLock::new(()),
        });
        m.insert(path.to_path_buf(), r.clone());
        Ok(r)
    }

    /// Takes a point of `group` unless its control API paused it, and tells
    /// the control API how the cycle went.
    fn point(&self, group: &str, tenant: &str) -> Result<(serde_json::Value, String)> {
        let Some(control) = self.controls.get(group) else {
            return self.take_point(group, tenant, None);
        };
        if control.paused() {
            return Ok((
                json!({"paused": true}),
                "paused through the control API (replication.stop): no point".into(),
            ));
        }
        control.cycle_started();
        let r = self.take_point(group, tenant, Some(control.target()));
        match &r {
            Ok((j, _)) => control.cycle_ok(
                j["seq"].as_u64().unwrap_or_default(),
                j["taken_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now),
                j["cycle_secs"].as_f64().unwrap_or_default(),
            ),
            Err(e) => control.cycle_failed(&format!("{e:#}")),
        }
        r
    }

    /// Takes a point of `group`: replication to its secondary's receiver (or
    /// `target`, where the control API retargeted it), or a backup into its
    /// secondary's repository directory.
    fn take_point(&self, group: &str, tenant: &str, target: Option<String>) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let g = l.config.group(group).context("the group left the configuration")?;
        let keys = self.keys()?;
        let opts = BackupOptions {
            group: group.into(),
            volumes: g.volumes.iter().map(|(n, p)| (n.clone(), p.clone())).collect(),
            freeze: g.freeze.clone(),
            thaw: g.thaw.clone(),
            state_dir: self.state_dir.clone(),
            cancel: self.stop.clone(),
            progress: None,
            block_map: g.block_map,
        };
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        let site = l.config.sites.get(secondary);
        let attempt = || -> Result<_> {
            let url = target
                .as_deref()
                .filter(|t| !t.is_empty())
                .or_else(|| site.and_then(|s| s.receiver.as_deref()));
            Ok(if let Some(url) = url {
                let remote = {
                    let mut m = self.remotes.lock().expect("remotes");
                    match m.get(group) {
                        Some((connected, r)) if connected == url => r.clone(),
                        _ => {
                            let tls = l
                                .config
                                .tls
                                .as_ref()
                                .context("replication needs [tls] dir and identity in the configuration")?;
                            let identity = l
                                .config
                                .agent_identity(group)
                                .context("replication needs the group's agent (or [tls] identity)")?;
                            let r = Arc::new(RemoteRepository::connect(
                                url,
                                &TlsDir::new(&tls.dir),
                                &identity,
                                &keys,
                            )?);
                            if let Some(limit) = g.limit_upload.as_deref() {
                                r.set_upload_limit(Some(
                                    lifeline_service::parse_rate(limit).map_err(anyhow::Error::msg)?,
                                ));
                            }
                            m.insert(group.into(), (url.to_string(), r.clone()));
                            r
                        }
                    }
                };
                let r = backup(remote.as_ref() as &dyn TenantRepository, &keys, &opts);
                if r.is_err() {
                    // Reconnect next time.
                    self.remotes.lock().expect("remotes").remove(group);
                }
                r?
            } else if let Some(dir) = site.and_then(|s| s.repo.as_deref()) {
                let local = self.local_repo(dir)?;
                let _w = local.writers.read().expect("writers");
                let t = local.repo.tenant(tenant)?;
                backup(&t, &keys, &opts)?
            } else {
                bail!(
                    "group `{group}`: its secondary site `{secondary}` has neither a receiver URL nor a repo directory"
                );
            })
        };
        // Like the agent: a transient failure (receiver down, link cut) is
        // retried with a doubling backoff until `retry_for` (default 60s) has
        // passed since the first one; the job then fails with the last error.
        let retry_for = g
            .retry_for
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or(Duration::from_secs(60));
        let mut first_failure: Option<Instant> = None;
        let mut backoff = Duration::from_secs(1);
        let mut retries = 0u32;
        let summary = loop {
            match attempt() {
                Ok(s) => break s,
                Err(e) => {
                    let since = *first_failure.get_or_insert_with(Instant::now);
                    if !is_transient(&e) || self.stop.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    if since.elapsed() >= retry_for {
                        return Err(e.context(format!(
                            "giving up after retrying for {} (retry_for), {retries} retries",
                            crate::runbook::format_duration(retry_for)
                        )));
                    }
                    retries += 1;
                    self.event(
                        json!({"event": "point_retrying", "group": group, "retry": retries, "in_secs": backoff.as_secs_f64(), "error": format!("{e:#}")}),
                        format!("daemon: point {group}: {e:#}; retrying in {:.1} s", backoff.as_secs_f64()),
                    );
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        };
        let m = &self.metrics;
        let labels = metrics::group(group);
        m.group_cycle_duration_seconds
            .get_or_create(&labels)
            .set(summary.elapsed_secs);
        m.group_bytes_sent_total
            .get_or_create(&labels)
            .inc_by(summary.bytes_stored);
        // What the repository's disk holds: sealed (compressed, encrypted) bytes,
        // the index included, as the sent bytes; not the plaintext that was new.
        m.group_bytes_stored_total
            .get_or_create(&labels)
            .inc_by(summary.bytes_stored);
        m.group_bytes_new_total.get_or_create(&labels).inc_by(summary.bytes_new);
        self.last_points
            .lock()
            .expect("last points")
            .insert(group.to_string(), summary.taken_at);
        self.set_rpo(group, summary.taken_at);
        Ok((
            json!({"seq": summary.seq, "taken_at": summary.taken_at, "bytes_sent": summary.bytes_stored, "bytes_new": summary.bytes_new, "retries": retries, "cycle_secs": summary.elapsed_secs}),
            format!(
                "point {} committed, {} sent",
                summary.seq,
                lifeline_replicator::units::human_bytes(summary.bytes_stored)
            ),
        ))
    }

    fn set_rpo(&self, group: &str, last: DateTime<Utc>) {
        let rpo = (Utc::now() - last).num_milliseconds().max(0) as f64 / 1000.0;
        let labels = metrics::group(group);
        self.metrics.group_rpo_seconds.get_or_create(&labels).set(rpo);
        self.metrics
            .group_last_point_timestamp_seconds
            .get_or_create(&labels)
            .set(last.timestamp_millis() as f64 / 1000.0);
        self.feed.observe_newest_point(group, last, Utc::now());
    }

    /// The repository holding `group` that this daemon owns.
    fn owned_repo(&self, group: &str) -> Result<(Arc<Repository>, Option<Arc<LocalRepo>>)> {
        let l = self.loaded();
        let g = l.config.group(group).context("the group left the configuration")?;
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        if secondary == self.site
            && let Some(r) = &self.receiver
        {
            let repo = r
                .repository()
                .context("the receiver is reopening its catalog; the job runs next time")?;
            return Ok((repo, None));
        }
        let dir = l
            .config
            .sites
            .get(secondary)
            .and_then(|s| s.repo.clone())
            .with_context(|| format!("group `{group}`: [sites.{secondary}] has no repo"))?;
        let local = self.local_repo(&dir)?;
        Ok((local.repo.clone(), Some(local)))
    }

    fn prune(&self, group: &str, tenant: &str) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let policy = l
            .config
            .retention_policy(group)?
            .with_context(|| format!("group `{group}` has no [groups.{group}.retention]"))?;
        let g = l.config.group(group).context("the group left the configuration")?;
        let tz = super::schedule::parse_tz(group_tz(g, &l.options))?;
        let (repo, _local) = self.owned_repo(group)?;
        if repo.catalog().last_point(tenant, group)?.is_none() {
            // Nothing yet (a fresh deployment): not a failure.
            return Ok((
                json!({"kept": [], "removed": [], "decisions": []}),
                "no points yet".into(),
            ));
        }
        let decisions = repo
            .prune(tenant, group, &policy, &tz, false)
            .with_context(|| format!("prune {}", repo.name().display()))?;
        let kept: Vec<u64> = decisions.iter().filter(|d| d.kept()).map(|d| d.seq).collect();
        let removed: Vec<u64> = decisions.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
        self.metrics
            .prune_points_removed_total
            .get_or_create(&metrics::group(group))
            .inc_by(removed.len() as u64);
        Ok((
            json!({"kept": kept, "removed": removed, "decisions": decisions}),
            format!("kept {} point(s), removed {}", kept.len(), removed.len()),
        ))
    }

    /// Every repository this daemon owns, with its writer lock when local.
    fn owned_repos(&self) -> Result<Vec<Owned>> {
        let mut out = Vec::new();
        if let Some(r) = &self.receiver {
            out.push((
                r.repository()
                    .context("the receiver is reopening its catalog; the job runs next time")?,
                None,
            ));
        }
        let l = self.loaded();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for g in l.config.groups.values() {
            if owner_site(&l.config, g).as_deref() != Some(self.site.as_str()) || self.receiver.is_some() {
                continue;
            }
            let secondary = g.secondary.as_deref().unwrap_or("secondary");
            if let Some(d) = l.config.sites.get(secondary).and_then(|s| s.repo.clone())
                && !dirs.contains(&d)
            {
                dirs.push(d);
            }
        }
        for d in dirs {
            let local = self.local_repo(&d)?;
            out.push((local.repo.clone(), Some(local)));
        }
        Ok(out)
    }

    fn verify(&self) -> Result<(serde_json::Value, String)> {
        let mut reports = Vec::new();
        let mut clean = true;
        for (repo, local) in self.owned_repos()? {
            for t in repo.catalog().tenants()? {
                let r = match (&local, &self.receiver) {
                    // No collection deletes what the scrub reads.
                    (Some(l), _) => {
                        let _no_gc = l.writers.read().expect("writers");
                        lifeline_replicator::verify(
                            &repo,
                            &lifeline_replicator::VerifyOptions {
                                tenant: t.clone(),
                                keys: None,
                                progress: None,
                                repair: false,
                            },
                        )?
                    }
                    (None, Some(rcv)) => rcv.verify(&t)?,
                    (None, None) => unreachable!("an owned repository is local or served"),
                };
                clean &= r.is_clean();
                reports.push(json!({"repo": repo.name(), "tenant": t, "clean": r.is_clean(), "objects": r.objects, "affected_points": r.affected_points}));
            }
        }
        self.metrics.verify_clean.get_or_create(&NoLabels).set(i64::from(clean));
        if !clean {
            bail!(
                "verify found missing or damaged objects: {}",
                serde_json::to_string(&reports)?
            );
        }
        Ok((json!({"reports": reports}), "repository clean".into()))
    }

    fn gc(&self) -> Result<(serde_json::Value, String)> {
        let grace = parse_duration(self.loaded().options.gc_grace.as_deref().unwrap_or("1h"))?;
        let mut reports = Vec::new();
        let mut reclaimed = 0u64;
        for (repo, local) in self.owned_repos()? {
            for t in repo.catalog().tenants()? {
                let r = match (&local, &self.receiver) {
                    // Local: no point may be taken meanwhile.
                    (Some(l), _) => {
                        let _x = l.writers.write().expect("writers");
                        lifeline_replicator::gc(&repo, &t, grace, false)?
                    }
                    // Through the receiver: safe against its uploads.
                    (None, Some(rcv)) => rcv.gc(&t, grace, false)?,
                    (None, None) => unreachable!("an owned repository is local or served"),
                };
                reclaimed += r.collect.bytes_reclaimed;
                reports.push(r);
            }
        }
        self.metrics
            .gc_bytes_reclaimed_total
            .get_or_create(&NoLabels)
            .inc_by(reclaimed);
        Ok((
            json!({"reports": reports}),
            format!("{} reclaimed", lifeline_replicator::units::human_bytes(reclaimed)),
        ))
    }

    /// Where scheduled drills write their reports (a directory per drill):
    /// STATE_DIR/daemon/drill-reports.
    fn drill_reports(&self) -> PathBuf {
        self.state_dir.join("daemon").join("drill-reports")
    }

    fn drill(&self, group: &str, runbook: &Path) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let reports = self.drill_reports();
        let out = std::process::Command::new(crate::plan::this_binary())
            .arg("--config")
            .arg(&l.path)
            .arg("drill")
            .arg(runbook)
            .arg("--json")
            .arg("--report-dir")
            .arg(&reports)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("start `lifeline drill`")?;
        let pid = out.id();
        self.children.lock().expect("children").insert(pid);
        if self.stop.load(Ordering::Relaxed) {
            // Stopping began between the check and the spawn.
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
        }
        let out = out.wait_with_output();
        self.children.lock().expect("children").remove(&pid);
        let out = out.context("wait for `lifeline drill`")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["event"] == "drill_report");
        let Some(report) = report else {
            bail!(
                "the drill ended ({}) without a report: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        };
        let verdict = report["verdict"].as_str().unwrap_or("unknown").to_string();
        let m = &self.metrics;
        let labels = metrics::group(group);
        m.group_last_drill_timestamp_seconds
            .get_or_create(&labels)
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        m.group_last_drill_passed
            .get_or_create(&labels)
            .set(i64::from(verdict != "failed"));
        for v in ["passed", "passed_with_warnings", "failed"] {
            m.group_last_drill_verdict
                .get_or_create(&VerdictLabels {
                    group: group.to_owned(),
                    verdict: v,
                })
                .set(i64::from(v == verdict));
        }
        Ok((
            report.clone(),
            format!(
                "verdict {verdict}, report in {}",
                report["report_dir"].as_str().unwrap_or("(none)")
            ),
        ))
    }

    /// Refreshes the RPO gauges (now − newest point) of every group this
    /// daemon takes points of or whose repository it owns (a receiver site sees
    /// each group it receives, whether or not its agent reports).
    fn update_rpo_gauges(&self) {
        let l = self.loaded();
        for (name, g) in &l.config.groups {
            if owner_site(&l.config, g).as_deref() != Some(self.site.as_str()) {
                continue;
            }
            let tenant = g.tenant.as_deref().unwrap_or(lifeline_replicator::DEFAULT_TENANT);
            let newest = self
                .owned_repo(name)
                .ok()
                .and_then(|(repo, _)| repo.catalog().last_point(tenant, name).ok().flatten());
            if let Some(p) = newest {
                self.last_points
                    .lock()
                    .expect("last points")
                    .insert(name.clone(), p.header.taken_at);
            }
        }
        let known = self.last_points.lock().expect("last points").clone();
        for (group, at) in known {
            self.set_rpo(&group, at);
        }
    }
}

/// What the console reads of the daemon.
impl super::console::ConsoleBackend for Shared {
    fn site(&self) -> String {
        self.site.clone()
    }

    fn config(&self) -> Arc<Config> {
        Arc::new(self.loaded().config.clone())
    }

    fn points(&self, group: &str) -> Option<Vec<super::console::PointSummary>> {
        let l = self.loaded();
        let g = l.config.group(group)?;
        if owner_site(&l.config, g).as_deref() != Some(self.site.as_str()) {
            return None;
        }
        let tenant = g.tenant.as_deref().unwrap_or(lifeline_replicator::DEFAULT_TENANT);
        let (repo, _) = self.owned_repo(group).ok()?;
        let mut points: Vec<_> = repo
            .points(tenant, Some(group))
            .ok()?
            .into_iter()
            .map(|p| super::console::PointSummary {
                seq: p.header.seq,
                taken_at: p.header.taken_at,
                consistency: p.header.consistency.name().into(),
            })
            .collect();
        points.sort_by_key(|p| p.seq);
        Some(points)
    }

    fn control(&self, group: &str) -> Option<Arc<AgentControl>> {
        self.controls.get(group).cloned()
    }

    fn drill_reports(&self) -> PathBuf {
        Shared::drill_reports(self)
    }

    fn planner_public_key(&self) -> PathBuf {
        crate::state_dir::planner_dir(&self.state_dir).join("planner.pub")
    }
}

/// Whether a point's failure may pass by itself (the receiver restarting, a cut
/// link, a full disk being cleaned up): what the agent retries too.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<lifeline_replicator::Error>()
            .is_some_and(|r| r.is_transient())
            || matches!(
                c.downcast_ref::<lifeline_service::ServiceError>(),
                Some(lifeline_service::ServiceError::Replicator(r)) if r.is_transient()
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Loaded {
        let path = Path::new("runbooks/lifeline.toml");
        let config = Config::parse(include_str!("../../../runbooks/lifeline.toml"), path).unwrap();
        let options = DaemonOptions::default().over(&config.daemon);
        Loaded {
            config,
            path: path.into(),
            options,
        }
    }

    fn keys(l: &Loaded, site: &str) -> Vec<String> {
        plan_jobs(l, site).unwrap().into_iter().map(|j| j.0).collect()
    }

    #[test]
    fn the_example_plans_each_sites_jobs() {
        let l = example();
        // The primary takes the points (its repo and listen are its failback's:
        // it serves no receiver, so it has no repository to verify or collect);
        // the secondary owns the groups' repository (prune, verify, gc) and drills.
        let mut primary = keys(&l, "primary");
        primary.sort();
        assert_eq!(primary, ["point:app", "point:shop", "point:web"]);
        assert!(!serves_receiver(&l.config, "primary"));
        assert!(serves_receiver(&l.config, "secondary"));
        let mut secondary = keys(&l, "secondary");
        secondary.sort();
        assert_eq!(secondary, ["drill:shop", "gc", "prune:shop", "verify"]);
        assert!(keys(&l, "elsewhere").is_empty());
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = DaemonOptions {
            metrics: Some("127.0.0.1:9187".into()),
            max_concurrent: Some(5),
            gc_grace: Some("1h".into()),
            ..Default::default()
        };
        let flags = DaemonOptions {
            max_concurrent: Some(2),
            ..Default::default()
        };
        let o = flags.over(&file);
        assert_eq!(o.max_concurrent, Some(2));
        assert_eq!(o.metrics.as_deref(), Some("127.0.0.1:9187"));
        assert_eq!(o.gc_grace.as_deref(), Some("1h"));
    }

    #[test]
    fn a_bad_schedule_names_the_group_and_field() {
        let mut l = example();
        l.config.groups.get_mut("shop").unwrap().schedule = Some("every tuesday".into());
        let e = format!("{:#}", plan_jobs(&l, "primary").err().unwrap());
        assert!(e.contains("[groups.shop] schedule"), "{e}");
    }
}
