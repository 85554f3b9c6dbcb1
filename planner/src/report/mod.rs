//! Drill reports for auditors: `report.json` (the versioned schema below),
//! `report.html` (self-contained: verdict, objectives against achieved, an SVG
//! Gantt chart of the steps, evidence tables), `report.xml` (JUnit, a testcase
//! per check and per objective) and `manifest.json`, which lists the BLAKE3 of
//! the three and is signed with the planner's ed25519 key — the key that signs
//! the audit chain's head. `lifeline report verify` checks a report against a
//! public key the auditor trusts, never against one the report carries.
//!
//! Schema `lifeline.drill-report` version 1 is documented field by field on
//! [`DrillReport`]; FORMAT.md has the manifest's layout.

mod html;
mod junit;
mod manifest;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use manifest::{ManifestCheck, ReportError, sign_and_write, verify_dir, verify_on_chain};

/// Report schema name and version. Do not modify; add a version with a migration.
pub const SCHEMA: &str = "lifeline.drill-report";
pub const SCHEMA_VERSION: u32 = 1;

pub use crate::verdict::Verdict;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunbookRef {
    pub name: String,
    pub file: String,
    /// BLAKE3 of the runbook file, hex.
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PointRef {
    pub seq: u64,
    pub taken_at: String,
}

/// Seconds; `None` when not set or not measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Objectives {
    pub rpo_secs: Option<f64>,
    pub rto_secs: Option<f64>,
}

/// What the application lost, by its own records (the workload checker).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataLoss {
    pub records: u64,
    pub seconds: f64,
    /// Last valid record found in the recovered volume.
    pub last_record: Option<u64>,
    pub corrupt_records: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Achieved {
    /// T0 − `taken_at` of the point used.
    pub rpo_secs: Option<f64>,
    /// T0 → the last check green.
    pub rto_secs: Option<f64>,
    pub data_loss: Option<DataLoss>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepTiming {
    pub id: String,
    pub action: String,
    pub status: String,
    /// Seconds after T0.
    pub start_secs: Option<f64>,
    pub end_secs: Option<f64>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// The step's error, note or first output, cut to 300 characters.
    pub excerpt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckEvidence {
    pub step: String,
    pub action: String,
    pub passed: bool,
    pub evidence: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeEvidence {
    pub name: String,
    pub path: String,
    /// The point's volume hash, which the promoted copy matched.
    pub point_hash: String,
}

/// How the drill promoted its volumes. For an instant promote (`instant =
/// true`: the point served over NBD and attached at once) RTO splits into the
/// service start (the volumes usable) and the hydration (the point copied into
/// the targets in the background), which RTO does not wait for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromoteEvidence {
    /// The `volume.promote` step.
    pub step: String,
    /// Served and attached at once, not restored first.
    pub instant: bool,
    /// T0 → the promote step's end: services could start on the volumes.
    pub service_start_secs: Option<f64>,
    /// T0 → the last hydration done; `None` without hydration or when it did
    /// not finish.
    pub hydration_end_secs: Option<f64>,
    /// Each volume hydrated (empty: hydration off, the default in a drill).
    #[serde(default)]
    pub hydration: Vec<HydrationEvidence>,
    /// Sealed bytes the instant promote's server read from the repository
    /// during the run (index nodes, segment nodes, chunks: whatever the checks,
    /// the services and hydration read), as counted; absent for a full
    /// promote and in reports before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_read_bytes: Option<u64>,
}

/// One volume an instant promote hydrated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HydrationEvidence {
    pub volume: String,
    pub target: String,
    pub size: u64,
    pub copied: u64,
    /// running | done | stopped | failed.
    pub state: String,
    /// T0 → this volume's hydration done.
    pub end_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LagSample {
    /// Seconds after T0 (negative: before).
    pub at_secs: f64,
    /// now − `taken_at` of the group's newest point on the receiver.
    pub lag_secs: f64,
    pub last_seq: u64,
    pub last_cycle_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ReplicationLag {
    pub before_secs: Option<f64>,
    pub max_during_secs: Option<f64>,
    pub after_secs: Option<f64>,
    /// Points committed during the drill: replication went on.
    pub points_during: u64,
    pub exceeded_rpo: bool,
    pub samples: Vec<LagSample>,
    /// Why there are no samples, when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    pub host: String,
    pub os: String,
    pub lifeline_version: String,
    pub sandbox: String,
    /// The drill's network namespace, when the machine allowed one.
    pub network_namespace: Option<String>,
    pub ports: BTreeMap<String, u16>,
    /// What tearing the sandbox down did (processes stopped, filesystems
    /// unmounted, the directory removed), then what it could not clean up.
    #[serde(default)]
    pub teardown: Vec<String>,
    /// What teardown left behind, each with the command that cleans it up
    /// (also a reason of a failed verdict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SignOff {
    pub prepared_by: String,
    pub reviewed_by: Option<String>,
    pub approved_by: Option<String>,
    pub date: Option<String>,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// [`SCHEMA_VERSION`].
    pub version: u32,
    pub drill_id: String,
    pub runbook: RunbookRef,
    pub group: String,
    pub tenant: String,
    /// T0: the simulated disaster instant, RFC 3339.
    pub disaster_at: String,
    pub point: Option<PointRef>,
    pub objectives: Objectives,
    pub achieved: Achieved,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// The recovery run (failover, switchover, failback) that stopped this drill
    /// to take the planner: the drill did not finish (verdict failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_by: Option<String>,
    pub steps: Vec<StepTiming>,
    pub checks: Vec<CheckEvidence>,
    pub volumes: Vec<VolumeEvidence>,
    /// How the volumes were promoted (absent in reports before instant
    /// promotes, and when no promote succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteEvidence>,
    pub replication_lag: ReplicationLag,
    pub environment: Environment,
    pub operator: Option<String>,
    pub user: String,
    pub sign_off: SignOff,
    /// T0 + the group's drill interval.
    pub next_drill_due: String,
    /// The audit chain's signed head after the drill finished.
    pub audit_head: Option<crate::audit::SignedHead>,
}

/// Decides the verdict and its reasons. Pure; table-tested.
pub fn verdict(
    run_succeeded: bool,
    objectives: &Objectives,
    achieved: &Achieved,
    lag: &ReplicationLag,
    checks: usize,
) -> (Verdict, Vec<String>) {
    let mut failed = Vec::new();
    let mut conditions = Vec::new();
    if !run_succeeded {
        failed.push("the drill run did not complete: a step failed".to_string());
    }
    match (objectives.rpo_secs, achieved.rpo_secs) {
        (Some(o), Some(a)) if a > o => failed.push(format!("RPO achieved {a:.1} s exceeds the objective {o:.0} s")),
        (Some(_), None) => failed.push("RPO was not measured (no point was promoted)".into()),
        (None, _) => conditions.push("the group has no RPO objective (rpo in lifeline.toml)".into()),
        _ => {}
    }
    match (objectives.rto_secs, achieved.rto_secs) {
        (Some(o), Some(a)) if a > o => failed.push(format!("RTO achieved {a:.1} s exceeds the objective {o:.0} s")),
        (Some(_), None) => failed.push("RTO was not measured (the checks did not all pass)".into()),
        (None, _) => conditions.push("the group has no RTO objective (rto in lifeline.toml)".into()),
        _ => {}
    }
    if let (Some(o), Some(l)) = (objectives.rpo_secs, &achieved.data_loss)
        && l.seconds > o
    {
        failed.push(format!(
            "the application lost {:.1} s of data, more than the RPO objective {o:.0} s",
            l.seconds
        ));
    }
    if let Some(l) = &achieved.data_loss
        && l.corrupt_records > 0
    {
        failed.push(format!("{} corrupt records in the recovered volume", l.corrupt_records));
    }
    if lag.exceeded_rpo {
        conditions.push("replication lag exceeded the RPO objective during the drill".into());
    }
    if lag.unavailable.is_some() {
        conditions.push(format!(
            "replication lag was not observed: {}",
            lag.unavailable.clone().unwrap_or_default()
        ));
    }
    if checks == 0 {
        conditions.push("the runbook has no checks: RTO is measured to the end of the run".into());
    }
    if !failed.is_empty() {
        failed.extend(conditions);
        (Verdict::Failed, failed)
    } else if !conditions.is_empty() {
        (Verdict::PassedWithConditions, conditions)
    } else {
        (Verdict::Passed, vec!["objectives met; every check passed".into()])
    }
}

/// Writes report.json, report.html, report.xml and the signed manifest into `dir`.
pub fn write(
    dir: &std::path::Path,
    report: &DrillReport,
    key: &ed25519_dalek::SigningKey,
) -> Result<String, ReportError> {
    std::fs::create_dir_all(dir).map_err(crate::io_error::doing(format!("create {}", dir.display())))?;
    let json = serde_json::to_vec_pretty(report).expect("serialisable");
    lifeline_replicator::write_atomic_mode(&dir.join("report.json"), &json, 0o644)?;
    lifeline_replicator::write_atomic_mode(&dir.join("report.html"), html::render(report).as_bytes(), 0o644)?;
    lifeline_replicator::write_atomic_mode(&dir.join("report.xml"), junit::render(report).as_bytes(), 0o644)?;
    sign_and_write(dir, &report.drill_id, key)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag() -> ReplicationLag {
        ReplicationLag {
            before_secs: Some(2.0),
            max_during_secs: Some(4.0),
            after_secs: Some(1.0),
            points_during: 3,
            exceeded_rpo: false,
            samples: vec![],
            unavailable: None,
        }
    }

    #[test]
    fn verdicts() {
        let obj = Objectives {
            rpo_secs: Some(30.0),
            rto_secs: Some(60.0),
        };
        let ok = Achieved {
            rpo_secs: Some(5.0),
            rto_secs: Some(8.0),
            data_loss: None,
        };
        assert_eq!(verdict(true, &obj, &ok, &lag(), 2).0, Verdict::Passed);
        assert_eq!(verdict(false, &obj, &ok, &lag(), 2).0, Verdict::Failed);
        let slow = Achieved {
            rto_secs: Some(61.0),
            ..ok.clone()
        };
        let (v, r) = verdict(true, &obj, &slow, &lag(), 2);
        assert_eq!(v, Verdict::Failed);
        assert!(r[0].contains("RTO achieved 61.0 s exceeds the objective 60 s"), "{r:?}");
        let mut l = lag();
        l.exceeded_rpo = true;
        assert_eq!(verdict(true, &obj, &ok, &l, 2).0, Verdict::PassedWithConditions);
        assert_eq!(verdict(true, &obj, &ok, &lag(), 0).0, Verdict::PassedWithConditions);
        let lossy = Achieved {
            data_loss: Some(DataLoss {
                records: 10,
                seconds: 45.0,
                last_record: Some(3),
                corrupt_records: 0,
            }),
            ..ok
        };
        assert_eq!(verdict(true, &obj, &lossy, &lag(), 2).0, Verdict::Failed);
    }
}
