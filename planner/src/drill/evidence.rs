//! Evidence: the mapping from a drill's run record to what its report
//! states (timings, checks, the point, RPO, RTO, data loss).

use chrono::{DateTime, Utc};

use crate::engine::{RunRecord, RunStatus, StepStatus};
use crate::plan::Plan;
use crate::report::{self};
use crate::run_record::{Outcome, Timestamp, format_timestamp};
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
            .and_then(|s| s.promoted());
        let point = promoted.as_ref().map(|p| report::PointRef {
            seq: p.seq,
            taken_at: format_timestamp(&p.taken_at),
        });
        let volumes = promoted
            .as_ref()
            .map(|p| {
                p.volumes
                    .iter()
                    .map(|(name, v)| report::VolumeEvidence {
                        name: name.clone(),
                        path: v.path.display().to_string(),
                        point_hash: v.hash.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let promote = promote_evidence(plan, rec, &rel);
        let rpo = promoted
            .as_ref()
            .map(|p| (t0 - p.taken_at).num_milliseconds() as f64 / 1000.0);
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
            .and_then(|s| match s.outcome_of(Action::CheckWorkload)? {
                Outcome::Workload(w) => Some(report::DataLoss {
                    records: w.lost_records?,
                    seconds: w.lost_secs?,
                    last_record: Some(w.last_seq),
                    corrupt_records: w.corrupt_records,
                }),
                _ => None,
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
    let instant = s.promoted().is_some_and(|p| p.served.is_some());
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::plan::{PlanOptions, plan};
    use crate::run_record::{Pin, Promoted, PromotedVolume, WorkloadLoss};
    use crate::runbook::Runbook;
    use crate::runbook::actions::Mode;

    const RB: &str = r#"
[runbook]
name = "t"
group = "shop"
[[step]]
id = "promote"
action = "volume.promote"
[[step]]
id = "data"
action = "check.workload"
volume = "db"
after = ["promote"]
"#;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    fn drill_plan() -> Plan {
        let rb = Runbook::parse(RB, Path::new("t.toml")).unwrap();
        let config = Config::parse(
            include_str!("../../../runbooks/lifeline.toml"),
            Path::new("lifeline.toml"),
        )
        .unwrap();
        plan(
            &rb,
            &config,
            &PlanOptions {
                mode: Mode::Drill,
                point: None,
                run_id: "d1".into(),
                run_dir: "/runs/d1".into(),
                ports: BTreeMap::new(),
                bin: "lifeline".into(),
                netns: None,
            },
        )
        .unwrap()
    }

    /// A drill's record whose promote and workload check succeeded, with
    /// typed outcomes (`typed`) or, as records before them were, outputs only.
    fn record(plan: &Plan, typed: bool) -> RunRecord {
        let mut rec = crate::engine::new_record(plan, RB.into(), None, String::new(), None);
        rec.started_at = at("2026-12-05T10:30:00.000Z");
        let promoted = Outcome::Promote(Promoted {
            seq: 7,
            taken_at: at("2026-12-05T10:29:57.500Z"),
            pin: Pin::Held,
            volumes: BTreeMap::from([(
                "db".to_string(),
                PromotedVolume {
                    path: "/runs/d1/volumes/db.img".into(),
                    hash: "ab".repeat(32),
                },
            )]),
            served: None,
        });
        let checked = Outcome::Workload(WorkloadLoss {
            last_seq: 1200,
            lost_records: Some(12),
            lost_secs: Some(2.125),
            corrupt_records: 0,
            clean: true,
        });
        for (id, outcome, end) in [
            ("promote", promoted, "2026-12-05T10:30:03.000Z"),
            ("data", checked, "2026-12-05T10:30:04.000Z"),
        ] {
            let s = rec.steps.get_mut(id).unwrap();
            s.status = StepStatus::Succeeded;
            s.started_at = Some(rec.started_at);
            s.ended_at = Some(at(end));
            if typed {
                s.set_outcome(outcome);
            } else {
                s.outputs = outcome.view();
            }
        }
        rec
    }

    #[test]
    fn evidence_states_the_typed_outcomes_of_the_promote_and_the_workload_check() {
        let plan = drill_plan();
        for typed in [true, false] {
            let rec = record(&plan, typed);
            let t0 = rec.started_at;
            let e = Evidence::of_run(&plan, &rec, t0, 5.0, RunStatus::Succeeded);
            let point = e.point.expect("the promoted point");
            assert_eq!((point.seq, point.taken_at.as_str()), (7, "2026-12-05T10:29:57.500Z"));
            assert_eq!(e.achieved.rpo_secs, Some(2.5));
            assert_eq!(e.volumes.len(), 1);
            assert_eq!(e.volumes[0].name, "db");
            assert_eq!(e.volumes[0].path, "/runs/d1/volumes/db.img");
            assert_eq!(e.volumes[0].point_hash, "ab".repeat(32));
            let loss = e.achieved.data_loss.expect("data loss measured");
            assert_eq!(
                (loss.records, loss.seconds, loss.last_record, loss.corrupt_records),
                (12, 2.125, Some(1200), 0)
            );
            let promote = e.promote.expect("promote evidence");
            assert!(!promote.instant);
            assert_eq!(promote.service_start_secs, Some(3.0));
            // RTO: T0 → the last check green.
            assert_eq!(e.achieved.rto_secs, Some(4.0));
            // The check's evidence is the outcome's view, as reports have always shown it.
            assert_eq!(e.checks[0].evidence["lost_secs"], "2.125");
        }
    }
}
