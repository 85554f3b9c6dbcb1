//! The drill reports the console shows: every `DIR/*/report.json` under the
//! daemon's drill report directory, each with whether its signed manifest
//! verifies against the planner's public key file (`STATE/planner/planner.pub`,
//! what `lifeline report verify` uses by default), through
//! [`crate::report::verify_dir`]. A report is read and checked once per change
//! of its files (their modification times), not on every request.
//!
//! A drill id from a URL is never joined into a path: it is looked up among
//! the reports found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::DrillReport;

/// Whether a report's signature verifies.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verification {
    /// The manifest's signature verifies with the planner's key and every
    /// file matches its signed hash.
    pub verifies: bool,
    /// What does not, in words (empty when it verifies).
    pub problems: Vec<String>,
}

/// One drill, as read from its report directory.
#[derive(Debug, Clone)]
pub struct Drill {
    pub report: DrillReport,
    pub at: Option<DateTime<Utc>>,
    pub dir: PathBuf,
    pub verification: Verification,
}

impl Drill {
    pub fn id(&self) -> &str {
        &self.report.drill_id
    }
}

type Stamp = (Option<SystemTime>, Option<SystemTime>, Option<SystemTime>);
/// A report directory's drill, as read when its files had these times.
type Cached = (Stamp, Option<Arc<Drill>>);

/// See the module docs.
pub struct DrillIndex {
    dir: PathBuf,
    public_key: PathBuf,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether `id` may name a drill (what drill ids are made of).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
}

impl DrillIndex {
    pub fn new(dir: PathBuf, public_key: PathBuf) -> DrillIndex {
        DrillIndex {
            dir,
            public_key,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn load(&self, dir: &Path) -> Option<Arc<Drill>> {
        let bytes = std::fs::read(dir.join("report.json")).ok()?;
        let report: DrillReport = serde_json::from_slice(&bytes).ok()?;
        let verification = match crate::audit::read_public_key(&self.public_key) {
            Ok(key) => match crate::report::verify_dir(dir, &key) {
                Ok(check) => Verification {
                    verifies: check.ok(),
                    problems: check.problems,
                },
                Err(e) => Verification {
                    verifies: false,
                    problems: vec![format!("{e:#}")],
                },
            },
            Err(e) => Verification {
                verifies: false,
                problems: vec![format!("no planner public key to verify against: {e:#}")],
            },
        };
        let at = DateTime::parse_from_rfc3339(&report.disaster_at)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        Some(Arc::new(Drill {
            report,
            at,
            dir: dir.to_path_buf(),
            verification,
        }))
    }

    /// Every readable report, oldest first.
    pub fn all(&self) -> Vec<Arc<Drill>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let key_stamp = mtime(&self.public_key);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let stamp = (
                mtime(&dir.join("report.json")),
                mtime(&dir.join("manifest.json")),
                key_stamp,
            );
            let drill = match cache.get(&dir) {
                Some((s, d)) if *s == stamp => d.clone(),
                _ => {
                    let d = self.load(&dir);
                    cache.insert(dir.clone(), (stamp, d.clone()));
                    d
                }
            };
            seen.push(dir);
            out.extend(drill);
        }
        cache.retain(|k, _| seen.contains(k));
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id().cmp(b.id())));
        out
    }

    /// The drill with id `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Drill>> {
        if !valid_id(id) {
            return None;
        }
        self.all().into_iter().find(|d| d.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_ids_from_urls() {
        assert!(valid_id("20261205T151250Z-shop-3fa2"));
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
