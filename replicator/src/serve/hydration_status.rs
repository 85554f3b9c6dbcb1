//! Hydration progress for programs: `hydration.json` in the overlay directory,
//! rewritten atomically (temp, fsync, rename, fsync of the directory) about
//! once a second while the server runs and at once when a volume's hydration
//! ends, so a script, a monitoring probe or an operator's `watch cat` reads
//! the same numbers the terminal shows, without parsing them.
//!
//! A reader tells a live server from a dead one by `updated_at` (at most about
//! a second old while it runs) and `pid`; a status left by a killed server
//! still says `running`. A restart resumes from the cursor, which is at or
//! past the `copied` the old status last showed, so `copied` never goes back
//! across restarts either. Layout: FORMAT.md, "Hydration status".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

use super::hydrate::{Hydration, HydrationProgress};
use super::read_meter::ReadMeter;

/// The file's name in the overlay directory.
pub const HYDRATION_STATUS_FILE: &str = "hydration.json";
/// Schema name and version. Do not modify; add a version.
pub const HYDRATION_STATUS_SCHEMA: &str = "lifeline.hydration-status";
pub const HYDRATION_STATUS_VERSION: u32 = 1;

/// Where a hydration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HydrationState {
    Running,
    Done,
    /// Stopped before the end (the server was stopped, or a run aborted): its
    /// cursor and overlay are kept, and a restart resumes there.
    Stopped,
    Failed,
}

/// One volume's hydration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeHydration {
    pub volume: String,
    pub target: PathBuf,
    /// The volume's size: `copied` ends there.
    pub size: u64,
    /// Bytes of the target that hold the export's bytes (from 0).
    pub copied: u64,
    /// Where this server's run started (above 0 when it resumed).
    pub resumed_from: u64,
    pub state: HydrationState,
    /// Bytes per second this run copied since it started.
    pub bytes_per_sec: f64,
    /// Seconds left at that rate, while running.
    pub eta_secs: Option<f64>,
    /// `--hydrate-rate` in bytes per second; `None`: no limit.
    pub rate_limit: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// `hydration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HydrationStatus {
    /// [`HYDRATION_STATUS_SCHEMA`].
    pub schema: String,
    /// [`HYDRATION_STATUS_VERSION`].
    pub version: u32,
    pub group: String,
    pub seq: u64,
    /// The serving process.
    pub pid: u32,
    pub updated_at: DateTime<Utc>,
    /// Sealed bytes the server has read from the repository (hydration and
    /// clients together).
    pub repository_read_bytes: u64,
    pub volumes: Vec<VolumeHydration>,
}

impl HydrationStatus {
    /// Reads `hydration.json` in `overlay_dir`.
    pub fn read(overlay_dir: &Path) -> Result<HydrationStatus> {
        let path = overlay_dir.join(HYDRATION_STATUS_FILE);
        let bytes = std::fs::read(&path).ctx(|| format!("read {}", path.display()))?;
        let s: HydrationStatus = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            what: "hydration status",
            value: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if s.schema != HYDRATION_STATUS_SCHEMA || s.version != HYDRATION_STATUS_VERSION {
            return Err(Error::Invalid {
                what: "hydration status",
                value: path.display().to_string(),
                reason: format!(
                    "schema {} version {}, not {HYDRATION_STATUS_SCHEMA} version {HYDRATION_STATUS_VERSION}",
                    s.schema, s.version
                ),
            });
        }
        Ok(s)
    }
}

struct Inner {
    status: HydrationStatus,
    /// When each volume's run started, for its rate.
    started: Vec<Instant>,
}

/// The status of a server's hydrations, kept in memory and written to
/// `hydration.json`; shared by the hydration threads.
pub struct HydrationStatusFile {
    path: PathBuf,
    reads: Arc<ReadMeter>,
    inner: Mutex<Inner>,
}

impl HydrationStatusFile {
    /// Starts the status of `hydrations` (every one running, from where it
    /// resumes) and writes it. Removes temp files a killed writer left.
    pub fn create(
        overlay_dir: &Path,
        group: &str,
        seq: u64,
        reads: Arc<ReadMeter>,
        hydrations: &[Hydration],
    ) -> Result<HydrationStatusFile> {
        crate::fsutil::remove_temp_files(overlay_dir, HYDRATION_STATUS_FILE);
        let now = Utc::now();
        let volumes = hydrations
            .iter()
            .map(|h| VolumeHydration {
                volume: h.export_name().to_string(),
                target: h.target_path().to_path_buf(),
                size: h.size(),
                copied: h.resumed_from(),
                resumed_from: h.resumed_from(),
                state: HydrationState::Running,
                bytes_per_sec: 0.0,
                eta_secs: None,
                rate_limit: (h.rate_limit() > 0).then_some(h.rate_limit()),
                started_at: now,
                ended_at: None,
                error: None,
            })
            .collect();
        let f = HydrationStatusFile {
            path: overlay_dir.join(HYDRATION_STATUS_FILE),
            inner: Mutex::new(Inner {
                status: HydrationStatus {
                    schema: HYDRATION_STATUS_SCHEMA.into(),
                    version: HYDRATION_STATUS_VERSION,
                    group: group.into(),
                    seq,
                    pid: std::process::id(),
                    updated_at: now,
                    repository_read_bytes: reads.bytes(),
                    volumes,
                },
                started: vec![Instant::now(); hydrations.len()],
            }),
            reads,
        };
        f.write()?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a volume's progress (written by the next [`write`](Self::write)).
    pub fn progress(&self, volume: &str, p: &HydrationProgress) {
        let mut g = self.inner.lock().expect("hydration status");
        let Inner { status, started } = &mut *g;
        if let Some((v, t0)) = status
            .volumes
            .iter_mut()
            .zip(started.iter())
            .find(|(v, _)| v.volume == volume)
        {
            v.copied = p.copied;
            v.size = p.size;
            let secs = t0.elapsed().as_secs_f64();
            v.bytes_per_sec = if secs > 0.0 {
                p.copied.saturating_sub(p.resumed_from) as f64 / secs
            } else {
                0.0
            };
            v.eta_secs =
                (v.bytes_per_sec > 0.0 && !p.done).then(|| p.size.saturating_sub(p.copied) as f64 / v.bytes_per_sec);
        }
    }

    /// Records how a volume's hydration ended and writes the status at once.
    pub fn finish(&self, volume: &str, result: std::result::Result<&HydrationProgress, String>) -> Result<()> {
        if let Ok(p) = result {
            self.progress(volume, p);
        }
        {
            let mut g = self.inner.lock().expect("hydration status");
            if let Some(v) = g.status.volumes.iter_mut().find(|v| v.volume == volume) {
                v.ended_at = Some(Utc::now());
                v.eta_secs = None;
                match result {
                    Ok(p) if p.done => v.state = HydrationState::Done,
                    Ok(_) => v.state = HydrationState::Stopped,
                    Err(e) => {
                        v.state = HydrationState::Failed;
                        v.error = Some(e);
                    }
                }
            }
        }
        self.write()
    }

    /// The status as it stands.
    pub fn snapshot(&self) -> HydrationStatus {
        self.inner.lock().expect("hydration status").status.clone()
    }

    /// Writes the status as it stands, dated now.
    pub fn write(&self) -> Result<()> {
        // One writer at a time, so an older status never replaces a newer one.
        let g = &mut *self.inner.lock().expect("hydration status");
        g.status.updated_at = Utc::now();
        g.status.repository_read_bytes = self.reads.bytes();
        let mut bytes = serde_json::to_vec_pretty(&g.status).expect("a status serializes");
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_round_trips_and_a_killed_writers_temp_files_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let stale = d.path().join(format!(".{HYDRATION_STATUS_FILE}.tmp-0123456789ab"));
        std::fs::write(&stale, b"{\"half").unwrap();
        let reads = Arc::new(ReadMeter::default());
        let f = HydrationStatusFile::create(d.path(), "app", 7, reads, &[]).unwrap();
        assert!(!stale.exists(), "a killed writer's temp file was left");
        let s = HydrationStatus::read(d.path()).unwrap();
        assert_eq!(s, f.snapshot());
        assert_eq!((s.group.as_str(), s.seq, s.pid), ("app", 7, std::process::id()));
        assert_eq!(s.schema, HYDRATION_STATUS_SCHEMA);
        // Another schema or version is refused, naming the file.
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        v["version"] = 2.into();
        std::fs::write(f.path(), v.to_string()).unwrap();
        let e = HydrationStatus::read(d.path()).unwrap_err().to_string();
        assert!(e.contains("hydration.json") && e.contains("version 2"), "{e}");
    }

    #[test]
    fn states_serialize_as_the_documented_words() {
        let words: Vec<String> = [
            HydrationState::Running,
            HydrationState::Done,
            HydrationState::Stopped,
            HydrationState::Failed,
        ]
        .iter()
        .map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_string())
        .collect();
        assert_eq!(words, ["running", "done", "stopped", "failed"]);
    }
}
