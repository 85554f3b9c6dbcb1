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
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use lifeline_service::{AgentControl, Receiver, ReceiverConfig, TlsDir};
use serde_json::json;

use super::DaemonArgs;
use super::jobs::{
    DEFAULT_MAX_CONCURRENT, Job, Kind, build_jobs, last_runs_path, load, plan_jobs, read_last_runs, serves_receiver,
    write_last_runs,
};
use super::metrics::{self, DaemonMetrics, JobLabels, JobResultLabels, NoLabels};
use super::shared::Shared;
use super::{DaemonError, Result};
use crate::config::Config;
use crate::io_error::doing;
use crate::repo_target::parse_duration;

/// How often the loop looks at the clock.
pub(crate) const TICK: Duration = Duration::from_millis(100);

pub fn run(a: &DaemonArgs, config_flag: Option<&Path>) -> Result<ExitCode> {
    let path = Config::locate(config_flag)
        .ok_or_else(|| DaemonError::needs("the daemon runs a site of a configuration: pass --config lifeline.toml"))?;
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
        .ok_or_else(|| {
            DaemonError::needs(format!(
                "{}: no [sites.{}]: the sites are {}",
                path.display(),
                a.site,
                loaded.config.sites.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?
        .clone();
    let state_dir = loaded.config.state_dir(a.state_dir.as_deref());
    let metrics = Arc::new(DaemonMetrics::new());
    let sample_every = loaded
        .options
        .rpo_sample_every
        .unwrap_or(super::feed::DEFAULT_RPO_SAMPLE_EVERY);
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
                .ok_or_else(|| DaemonError::needs("the site serves a receiver: [tls] dir is needed"))?;
            let tls = TlsDir::new(&tls_dir).server_config()?;
            let receiver = Arc::new(
                Receiver::open(&ReceiverConfig {
                    repo: repo.clone(),
                    allow: site_cfg.allow.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })?
                .with_own_scopes(site_cfg.own_scopes()?)?,
            );
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(listen))
                .map_err(doing(format!("receiver: listen on {listen}")))?;
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
            return Err(DaemonError::needs(format!(
                "[sites.{}] has listen but no repo: the receiver needs both",
                a.site
            )));
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
        let tls = loaded.config.tls.as_ref().ok_or_else(|| {
            DaemonError::needs(format!(
                "[groups.{name}] control: serving the control API needs [tls] dir"
            ))
        })?;
        let identity = loaded.config.agent_identity(name).ok_or_else(|| {
            DaemonError::needs(format!(
                "[groups.{name}] control: serving the control API needs the group's agent"
            ))
        })?;
        let target = loaded.config.receiver_of(name).unwrap_or_default().to_string();
        let control = AgentControl::new(name, &target);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(doing(format!("[groups.{name}] control: listen on {addr}")))?;
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
            .map_err(doing(format!("metrics: listen on {addr}")))?;
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

pub(crate) fn main_loop(shared: &Arc<Shared>, reload: &AtomicBool) -> Result<()> {
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
    pub(crate) fn started(&self, jobs: &[Job]) {
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

    pub(crate) fn run_job(&self, kind: &Kind, tenant: &str) {
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
}
