//! Evidence: the mapping from a drill's run record to what its report
//! states (timings, checks, the point, RPO, RTO, data loss).

use chrono::{DateTime, Utc};

use crate::engine::{RunRecord, RunStatus, StepStatus};
use crate::plan::Plan;
use crate::report::{self};
use crate::run_record::{Timestamp, format_timestamp};
use crate::runbook::actions::Action;

/// What a drill's run proves, read from its record: each step's timing, each
/// check's evidence, the point promoted and its volumes, and the RPO and RTO
/// achieved (measured from the disaster instant T0).
pub(super) struct Evidence {
    pub steps: Vec<report::StepTiming>,
    pub checks: Vec<report::CheckEvidence>,
    pub point: Option<report::PointRef>,
    pub volumes: Vec<report::VolumeEvidence>,
    pub promote: Option<report::PromoteEvidence>,
    pub achieved: report::Achieved,
}

impl Evidence {
    /// `t_end`: seconds from T0 to the run's end.
    pub(super) fn of_run(plan: &Plan, rec: &RunRecord, t0: DateTime<Utc>, t_end: f64, status: RunStatus) -> Evidence {
        let rel = |t: &Option<Timestamp>| t.map(|x| (x - t0).num_milliseconds() as f64 / 1000.0);
        let mut steps = Vec::new();
        let mut checks = Vec::new();
        let mut all_checks_green = true;
        let mut last_check_end: Option<f64> = None;
        for id in plan.levels.iter().flatten() {
            let ps = plan.step(id).expect("planned");
            let s = &rec.steps[id];
            let excerpt: String = s
                .error
                .clone()
                .or(s.note.clone())
                .or_else(|| (!s.outputs.is_empty()).then(|| format!("{:?}", s.outputs)))
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            steps.push(report::StepTiming {
                id: id.clone(),
                action: ps.action.clone(),
                status: s.status.as_str().into(),
                start_secs: rel(&s.started_at),
                end_secs: rel(&s.ended_at),
                started_at: s.started_at.as_ref().map(format_timestamp),
                ended_at: s.ended_at.as_ref().map(format_timestamp),
                excerpt,
            });
            if ps.kind.is_check() && s.status != StepStatus::Skipped {
                let passed = s.status == StepStatus::Succeeded;
                all_checks_green &= passed;
                if passed {
                    last_check_end = match (last_check_end, rel(&s.ended_at)) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                let mut evidence = s.outputs.clone();
                for (k, v) in &ps.params {
                    evidence.entry(format!("param.{k}")).or_insert_with(|| v.to_string());
                }
                checks.push(report::CheckEvidence {
                    step: id.clone(),
                    action: ps.action.clone(),
                    passed,
                    evidence,
                });
            }
        }
        let promoted = plan
            .steps
            .iter()
            .filter(|s| s.kind == Action::VolumePromote)
            .filter_map(|s| rec.steps.get(&s.id))
            .find(|s| s.status == StepStatus::Succeeded)
            .map(|s| s.outputs.clone());
        let point = promoted.as_ref().and_then(|o| {
            Some(report::PointRef {
                seq: o.get("seq")?.parse().ok()?,
                taken_at: o.get("taken_at")?.clone(),
            })
        });
        let volumes = promoted
            .as_ref()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| {
                        let name = k.strip_prefix("path.")?;
                        Some(report::VolumeEvidence {
                            name: name.into(),
                            path: v.clone(),
                            point_hash: o.get(&format!("hash.{name}")).cloned().unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let promote = promote_evidence(plan, rec, &rel);
        let rpo = point
            .as_ref()
            .and_then(|p| parse_time(&p.taken_at))
            .map(|t| (t0 - t).num_milliseconds() as f64 / 1000.0);
        // RTO is T0 → every check green: measured when every check passed, even if
        // the run was interrupted or a later step failed (without checks, only a
        // run that finished measures it: to its end).
        let rto = if status == RunStatus::Succeeded && checks.is_empty() {
            Some(t_end)
        } else if all_checks_green && !checks.is_empty() {
            last_check_end
        } else {
            None
        };
        let data_loss = plan
            .steps
            .iter()
            .filter(|s| s.kind == Action::CheckWorkload)
            .filter_map(|s| rec.steps.get(&s.id))
            .find(|s| s.status == StepStatus::Succeeded)
            .and_then(|s| {
                let o = &s.outputs;
                Some(report::DataLoss {
                    records: o.get("lost_records")?.parse().ok()?,
                    seconds: o.get("lost_secs")?.parse().ok()?,
                    last_record: o.get("last_seq").and_then(|x| x.parse().ok()),
                    corrupt_records: o.get("corrupt_records").and_then(|x| x.parse().ok()).unwrap_or(0),
                })
            });
        let achieved = report::Achieved {
            rpo_secs: rpo,
            rto_secs: rto,
            data_loss,
        };
        Evidence {
            steps,
            checks,
            point,
            volumes,
            promote,
            achieved,
        }
    }
}

pub(super) fn secs_of(d: &str) -> Option<f64> {
    crate::runbook::parse_duration(d).ok().map(|d| d.as_secs_f64())
}

pub(super) fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// How the run's (first successful) `volume.promote` went: instant or full,
/// and for an instant one the service start and the hydration, in seconds
/// after T0 (`rel`).
pub(super) fn promote_evidence(
    plan: &Plan,
    rec: &RunRecord,
    rel: &dyn Fn(&Option<Timestamp>) -> Option<f64>,
) -> Option<report::PromoteEvidence> {
    let (id, s) = plan
        .steps
        .iter()
        .filter(|s| s.kind == Action::VolumePromote)
        .filter_map(|s| rec.steps.get(&s.id).map(|r| (&s.id, r)))
        .find(|(_, r)| r.status == StepStatus::Succeeded)?;
    let instant = s.outputs.get("instant").is_some_and(|v| v == "true");
    let hydration: Vec<report::HydrationEvidence> = rec
        .hydrations
        .iter()
        .filter(|h| &h.step == id)
        .map(|h| report::HydrationEvidence {
            volume: h.volume.clone(),
            target: h.target.display().to_string(),
            size: h.size,
            copied: h.copied,
            state: serde_json::to_value(h.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            end_secs: if h.state == crate::engine::instant::HydrationState::Done {
                rel(&h.ended_at)
            } else {
                None
            },
        })
        .collect();
    let hydration_end_secs = if !hydration.is_empty() && hydration.iter().all(|h| h.end_secs.is_some()) {
        hydration.iter().filter_map(|h| h.end_secs).reduce(f64::max)
    } else {
        None
    };
    Some(report::PromoteEvidence {
        step: id.clone(),
        instant,
        service_start_secs: rel(&s.ended_at),
        hydration_end_secs,
        hydration,
        repository_read_bytes: rec.repository_reads.get(id).copied(),
    })
}
