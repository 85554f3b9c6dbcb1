//! `lifeline demo --console ADDR`: once the demo's drill has run, the
//! operations console over the demo's running deployment, until Ctrl-C. The
//! demo runs a receiver per site and an agent, no daemon, so the console is
//! served in-process: points and the RPO come from the secondary's receiver
//! (as the planner's identity), the drill from its signed report, verified
//! against the demo planner's public key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use lifeline_planner::config::{Config, DaemonOptions};
use lifeline_planner::daemon::console::{ConsoleBackend, PointSummary, serve};
use lifeline_planner::daemon::feed::Feed;
use lifeline_planner::daemon::metrics::DaemonMetrics;
use lifeline_replicator::TenantRepository;
use lifeline_service::{AgentControl, RemoteRepository, TlsDir};

/// What the console reads of the demo.
struct DemoDeployment {
    config: Arc<Config>,
    remote: RemoteRepository,
    reports: PathBuf,
    public_key: PathBuf,
}

impl ConsoleBackend for DemoDeployment {
    fn site(&self) -> String {
        "secondary (lifeline demo)".into()
    }

    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }

    fn points(&self, group: &str) -> Option<Vec<PointSummary>> {
        // The client blocks on its own runtime: not from the console's.
        let listed = std::thread::scope(|s| s.spawn(|| self.remote.points(Some(group))).join());
        Some(PointSummary::of_points(listed.ok()?.ok()?))
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
        // The demo's console serves no admin: nobody acts on its planner.
        None
    }
}

/// Serves the console on `addr` over the deployment of `config_path`, with the
/// drill report directory `report` (copied into `work`), until SIGINT or
/// SIGTERM.
pub fn serve_until_interrupted(
    config_path: &Path,
    report: &Path,
    public_key: &Path,
    work: &Path,
    addr: &str,
) -> Result<()> {
    let config = Config::load(Some(config_path))?;
    let group = config.groups.keys().next().cloned().context("the demo has a group")?;
    let url = config
        .receiver_of(&group)
        .context("the demo's group has a receiver")?
        .to_string();
    let tls = config.tls.clone().context("the demo has [tls]")?;
    let identity = tls.identity.clone().context("the demo has a [tls] identity")?;
    let remote = RemoteRepository::connect_with(&url, &TlsDir::new(&tls.dir), &identity, None)
        .with_context(|| format!("console: reach {url}"))?;
    // Only this run's report: earlier demos were signed by other keys.
    let reports = work.join("drill-reports");
    let copy = reports.join(report.file_name().context("a report directory")?);
    std::fs::create_dir_all(&copy)?;
    for f in std::fs::read_dir(report)? {
        let f = f?;
        std::fs::copy(f.path(), copy.join(f.file_name()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let feed = Arc::new(Feed::new(Duration::from_secs(1)));
    let backend = Arc::new(DemoDeployment {
        config: Arc::new(config),
        remote,
        reports,
        public_key: public_key.to_path_buf(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let mut rx = stopped.clone();
    let server = serve::start(
        &rt,
        addr,
        &DaemonOptions::default(),
        None,
        backend.clone(),
        feed.clone(),
        Arc::new(DaemonMetrics::new()),
        false,
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    )?;
    println!("   the demo keeps replicating; Ctrl-C stops the console and tears the demo down");
    while !stop.load(Ordering::Relaxed) {
        // The RPO history, from the receiver's newest points.
        if let Ok(status) = backend.remote.status() {
            for g in status {
                feed.observe_newest_point(&g.group, g.last_taken_at, Utc::now());
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = shutdown.send(true);
    let _ = rt.block_on(server);
    Ok(())
}
