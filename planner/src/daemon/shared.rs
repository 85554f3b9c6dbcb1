//! What the daemon's jobs share: the configuration as loaded, the
//! repositories this daemon owns or writes, the sessions to receivers, the
//! control APIs it serves, the metrics, and one event printer (text or JSON
//! lines on stdout).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use lifeline_replicator::{Keys, Repository};
use lifeline_service::{AgentControl, Receiver, RemoteRepository};
use serde_json::json;

use super::jobs::{Loaded, owner_site};
use super::metrics::DaemonMetrics;
use super::{DaemonError, Result};

/// A repository directory this daemon writes directly (no receiver in front).
pub(crate) struct LocalRepo {
    pub(crate) repo: Arc<Repository>,
    /// Points take it shared; a collection exclusively (a local collection
    /// assumes nothing writes).
    pub(crate) writers: RwLock<()>,
}

/// A repository this daemon owns, with its writer lock when local.
pub(crate) type Owned = (Arc<Repository>, Option<Arc<LocalRepo>>);

/// What the jobs share.
pub(crate) struct Shared {
    pub(crate) site: String,
    pub(crate) json: bool,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) metrics: Arc<DaemonMetrics>,
    pub(crate) state_dir: PathBuf,
    pub(crate) loaded: RwLock<Arc<Loaded>>,
    pub(crate) receiver: Option<Arc<Receiver>>,
    pub(crate) local: Mutex<HashMap<PathBuf, Arc<LocalRepo>>>,
    /// Per group: the receiver URL connected to, and the session.
    pub(crate) remotes: Mutex<HashMap<String, (String, Arc<RemoteRepository>)>>,
    /// The control API of each group this site replicates (with `control` in
    /// its config): what `lifeline agent --control` serves, so a runbook's
    /// `replication.*` steps reach the daemon. Fixed at start.
    pub(crate) controls: BTreeMap<String, Arc<AgentControl>>,
    pub(crate) active: Mutex<HashMap<String, usize>>,
    pub(crate) stdout: Mutex<()>,
    /// Each group's newest point as last seen (RPO gauges grow between points).
    pub(crate) last_points: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Drills running as child processes: told to stop (and tear their
    /// sandboxes down) when the daemon stops.
    pub(crate) children: Mutex<std::collections::HashSet<u32>>,
    /// What the console shows: jobs, cycles, the RPO history.
    pub(crate) feed: Arc<super::feed::Feed>,
}

impl Shared {
    pub(crate) fn loaded(&self) -> Arc<Loaded> {
        self.loaded.read().expect("config").clone()
    }

    pub(crate) fn event(&self, j: serde_json::Value, human: String) {
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

    pub(crate) fn keys(&self) -> Result<Keys> {
        let l = self.loaded();
        let key_file = l.config.key_file.clone().ok_or_else(|| {
            DaemonError::needs("scheduled points need the tenant's key: set key_file in the configuration")
        })?;
        Ok(crate::repo_target::load_key(&key_file)?.keys())
    }

    /// A local repository this daemon writes (opened once, shared).
    pub(crate) fn local_repo(&self, path: &Path) -> Result<Arc<LocalRepo>> {
        let mut m = self.local.lock().expect("local repos");
        if let Some(r) = m.get(path) {
            return Ok(r.clone());
        }
        let repo = Repository::open(path).map_err(|source| DaemonError::OpenRepository {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let r = Arc::new(LocalRepo {
            repo: Arc::new(repo),
            writers: RwLock::new(()),
        });
        m.insert(path.to_path_buf(), r.clone());
        Ok(r)
    }

    /// The repository holding `group` that this daemon owns.
    pub(crate) fn owned_repo(&self, group: &str) -> Result<(Arc<Repository>, Option<Arc<LocalRepo>>)> {
        let l = self.loaded();
        let g = l
            .config
            .group(group)
            .ok_or_else(|| DaemonError::needs("the group left the configuration"))?;
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        if secondary == self.site
            && let Some(r) = &self.receiver
        {
            let repo = r.repository().ok_or(DaemonError::ReceiverReopening)?;
            return Ok((repo, None));
        }
        let dir = l
            .config
            .sites
            .get(secondary)
            .and_then(|s| s.repo.clone())
            .ok_or_else(|| DaemonError::needs(format!("group `{group}`: [sites.{secondary}] has no repo")))?;
        let local = self.local_repo(&dir)?;
        Ok((local.repo.clone(), Some(local)))
    }

    /// Every repository this daemon owns, with its writer lock when local.
    pub(crate) fn owned_repos(&self) -> Result<Vec<Owned>> {
        let mut out = Vec::new();
        if let Some(r) = &self.receiver {
            out.push((r.repository().ok_or(DaemonError::ReceiverReopening)?, None));
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
}
