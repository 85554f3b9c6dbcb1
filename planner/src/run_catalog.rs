//! The planner's catalog: run records in sled, under `STATE/planner/catalog`.
//!
//! sled allows one process per database, so the catalog has one owner at a time:
//! the planner process running (or resuming) a run. It writes its PID to
//! `STATE/planner/owner` and serves `lifeline runs | approve | abort` over the
//! control socket `STATE/planner/control.sock`; when no planner runs, those
//! commands open the catalog themselves. Every record is saved and flushed at
//! each transition of its run, so a kill -9 loses nothing but the step that was
//! running, which `lifeline resume` runs again.

use std::path::{Path, PathBuf};

use crate::run_record::RunRecord;

/// Where the planner keeps its catalog, audit log and key, and who is acting.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlannerArgs {
    /// Planner state directory [default: state_dir of the configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Who acts (recorded in the audit log with the OS user).
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
}

impl PlannerArgs {
    /// `--state-dir`, else the configuration's, else the default.
    pub fn state_dir(&self, config: &crate::config::Config) -> PathBuf {
        config.state_dir(self.state_dir.as_deref())
    }
}

pub use crate::run_record::RUN_RECORD_VERSION;

pub struct PlannerCatalog {
    runs: sled::Tree,
    drills: sled::Tree,
    db: sled::Db,
    dir: PathBuf,
}

/// Another process owns the planner catalog (sled's lock).
#[derive(Debug, thiserror::Error)]
#[error(
    "the planner catalog in {} is held by another planner (PID {pid}): one run at a time per state \
     directory; reach it with `lifeline runs`, `lifeline approve` or `lifeline abort`, or wait for it",
    dir.display()
)]
pub struct CatalogHeld {
    pub dir: PathBuf,
    pub pid: String,
}

/// Result with [`CatalogError`].
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Why the planner catalog cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Held(#[from] CatalogHeld),
    #[error("create {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open the planner catalog in {dir}: {source}")]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// sled failed while doing `what` (`save a run record`).
    #[error("{what}: {source}")]
    Sled {
        what: &'static str,
        #[source]
        source: sled::Error,
    },
    /// `what`: `run record ID`, `drill summary ID`.
    #[error("{what} is damaged: {source}")]
    Damaged {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "run record {id} has version {found} but this planner reads version {RUN_RECORD_VERSION}: use the planner that wrote it"
    )]
    Version { id: String, found: u32 },
    #[error("{0}")]
    Replicator(#[from] lifeline_replicator::Error),
}

/// What sled failed at, for [`CatalogError::Sled`].
fn sled(what: &'static str) -> impl FnOnce(sled::Error) -> CatalogError {
    move |source| CatalogError::Sled { what, source }
}

pub use crate::state_dir::planner_dir;

/// The control socket of the planner owning `state_dir`'s catalog.
pub fn control_socket(state_dir: &Path) -> PathBuf {
    planner_dir(state_dir).join("control.sock")
}

impl PlannerCatalog {
    /// Opens the catalog and becomes its owner; a catalog held by another
    /// planner gives an error naming it and what to use instead.
    pub fn open(state_dir: &Path) -> Result<PlannerCatalog> {
        let dir = planner_dir(state_dir);
        std::fs::create_dir_all(&dir).map_err(|source| CatalogError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let owner = dir.join("owner");
        let db = sled::Config::new()
            .path(Self::path(state_dir))
            .cache_capacity(8 << 20)
            .open()
            .map_err(|e| {
                let pid = std::fs::read_to_string(&owner).unwrap_or_default();
                let pid = pid.trim();
                if e.to_string().contains("lock")
                    || matches!(e, sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock)
                {
                    CatalogError::Held(CatalogHeld {
                        dir: dir.clone(),
                        pid: if pid.is_empty() {
                            "unknown".into()
                        } else {
                            pid.to_string()
                        },
                    })
                } else {
                    CatalogError::Open {
                        dir: dir.clone(),
                        source: e,
                    }
                }
            })?;
        lifeline_replicator::write_atomic_mode(&owner, format!("{}\n", std::process::id()).as_bytes(), 0o644)?;
        let runs = db
            .open_tree("runs")
            .map_err(sled("open the runs tree of the planner catalog"))?;
        let drills = db
            .open_tree("drills")
            .map_err(sled("open the drills tree of the planner catalog"))?;
        Ok(PlannerCatalog { runs, drills, db, dir })
    }

    /// [`open`](Self::open), waiting up to `wait` while another process holds
    /// the catalog (then the [`CatalogHeld`] error). For work that can wait for
    /// a brief holder (`lifeline runs` reading it, the daemon recording a
    /// console action): a run holds it until it ends, so this is no queue.
    pub fn open_waiting(state_dir: &Path, wait: std::time::Duration) -> Result<PlannerCatalog> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Self::open(state_dir) {
                Err(CatalogError::Held(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Opens the catalog only if it exists: `None` when `STATE/planner/catalog`
    /// is gone (an audit must report that, not create an empty one).
    pub fn open_existing(state_dir: &Path) -> Result<Option<PlannerCatalog>> {
        if !Self::path(state_dir).exists() {
            return Ok(None);
        }
        Self::open(state_dir).map(Some)
    }

    /// Where the catalog of `state_dir` lives.
    pub fn path(state_dir: &Path) -> PathBuf {
        planner_dir(state_dir).join("catalog")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves a run record durably.
    pub fn save(&self, run: &RunRecord) -> Result<()> {
        let bytes = serde_json::to_vec(run).expect("serialisable");
        self.runs
            .insert(run.id.as_bytes(), bytes)
            .map_err(sled("save a run record"))?;
        self.db.flush().map_err(sled("flush the planner catalog"))?;
        Ok(())
    }

    pub fn load(&self, id: &str) -> Result<Option<RunRecord>> {
        match self.runs.get(id.as_bytes()).map_err(sled("read a run record"))? {
            Some(b) => Ok(Some(decode(&b, id)?)),
            None => Ok(None),
        }
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for kv in self.runs.iter() {
            let (k, v) = kv.map_err(sled("read the planner catalog"))?;
            out.push(decode(&v, &String::from_utf8_lossy(&k))?);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        Ok(out)
    }
}

/// One drill, for `lifeline report list` (JSON, `"version": 1`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DrillSummary {
    pub version: u32,
    pub id: String,
    pub group: String,
    pub runbook: String,
    pub disaster_at: String,
    pub rpo_secs: Option<f64>,
    pub rto_secs: Option<f64>,
    pub rpo_objective_secs: Option<f64>,
    pub rto_objective_secs: Option<f64>,
    pub verdict: crate::verdict::Verdict,
    pub report_dir: PathBuf,
    pub next_drill_due: String,
}

impl PlannerCatalog {
    pub fn save_drill(&self, d: &DrillSummary) -> Result<()> {
        self.drills
            .insert(d.id.as_bytes(), serde_json::to_vec(d).expect("serialisable"))
            .map_err(sled("save a drill summary"))?;
        self.db.flush().map_err(sled("flush the planner catalog"))?;
        Ok(())
    }

    /// Every drill, oldest first.
    pub fn drills(&self) -> Result<Vec<DrillSummary>> {
        let mut out: Vec<DrillSummary> = Vec::new();
        for kv in self.drills.iter() {
            let (k, v) = kv.map_err(sled("read the planner catalog"))?;
            out.push(serde_json::from_slice(&v).map_err(|source| CatalogError::Damaged {
                what: format!("drill summary {}", String::from_utf8_lossy(&k)),
                source,
            })?);
        }
        out.sort_by(|a, b| a.disaster_at.cmp(&b.disaster_at));
        Ok(out)
    }
}

impl Drop for PlannerCatalog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("owner"));
    }
}

fn decode(bytes: &[u8], id: &str) -> Result<RunRecord> {
    #[derive(serde::Deserialize)]
    struct V {
        version: u32,
    }
    let damaged = |source| CatalogError::Damaged {
        what: format!("run record {id}"),
        source,
    };
    let v: V = serde_json::from_slice(bytes).map_err(damaged)?;
    if v.version != RUN_RECORD_VERSION {
        return Err(CatalogError::Version {
            id: id.to_string(),
            found: v.version,
        });
    }
    serde_json::from_slice(bytes).map_err(damaged)
}
