//! The JSON API's answers, typed. Each is documented with an example in the
//! README's "Console" section; the field names are the API, version 1.
//!
//! Nothing here carries configuration secrets or key material: a group's view
//! names its objectives and schedules, never volume paths, hooks, keys,
//! certificates or tokens.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::drills::{Drill, Verification};
use super::state::{self, GroupState, StateInputs};
use super::{Console, PointSummary};
use crate::config::GroupConfig;
use crate::daemon::feed::{Cycle, JobRecord, RpoSample};
use crate::repo_target::parse_duration;

/// The default `drill_interval`.
const DEFAULT_DRILL_INTERVAL: Duration = Duration::from_secs(30 * 86_400);

/// `/api/v1/groups/NAME`, and each element of `/api/v1/groups`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub name: String,
    pub state: GroupState,
    /// The state in plain words.
    pub state_text: &'static str,
    /// now − the newest point's `taken_at`.
    pub rpo_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub last_point: Option<PointSummary>,
    pub retention: Retention,
    pub last_drill: Option<DrillSummary>,
    pub drill_overdue: bool,
    pub replication: Replication,
    pub running_jobs: Vec<JobRecord>,
}

/// The points the repository keeps of a group.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Retention {
    /// `None` when this daemon does not reach the group's repository.
    pub points: Option<usize>,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

/// A group's replication as this daemon runs it.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    /// `running`, `paused`, `error`, or `elsewhere` when another process (an
    /// agent, another site's daemon) replicates it.
    pub state: &'static str,
    pub last_cycle: Option<Cycle>,
    /// Sealed bytes sent since the daemon started.
    pub bytes_sent: u64,
    /// The console may pause and resume it (`control` is set).
    pub controllable: bool,
}

/// A drill in a list (`/api/v1/drills`, a group's `last_drill`).
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    pub id: String,
    pub group: String,
    pub verdict: crate::verdict::Verdict,
    pub achieved_rpo_seconds: Option<f64>,
    pub achieved_rto_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// T0, the simulated disaster instant.
    pub at: Option<DateTime<Utc>>,
    pub signature_verifies: bool,
}

impl DrillSummary {
    pub fn of(d: &Drill) -> DrillSummary {
        DrillSummary {
            id: d.report.drill_id.clone(),
            group: d.report.group.clone(),
            verdict: d.report.verdict,
            achieved_rpo_seconds: d.report.achieved.rpo_secs,
            achieved_rto_seconds: d.report.achieved.rto_secs,
            rpo_objective_seconds: d.report.objectives.rpo_secs,
            rto_objective_seconds: d.report.objectives.rto_secs,
            at: d.at,
            signature_verifies: d.verification.verifies,
        }
    }
}

/// `/api/v1/drills/ID`.
#[derive(Debug, Clone, Serialize)]
pub struct DrillView {
    #[serde(flatten)]
    pub summary: DrillSummary,
    pub verification: Verification,
    /// The signed report.html, served by the console.
    pub report_html: String,
    /// report.json as signed.
    pub report: crate::report::DrillReport,
}

/// `/api/v1/groups/NAME/points`.
#[derive(Debug, Clone, Serialize)]
pub struct PointsView {
    pub group: String,
    pub points: Vec<PointSummary>,
}

/// `/api/v1/groups/NAME/rpo`.
#[derive(Debug, Clone, Serialize)]
pub struct RpoView {
    pub group: String,
    pub sample_every_seconds: u64,
    pub since: DateTime<Utc>,
    pub samples: Vec<RpoSampleView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RpoSampleView {
    pub at: DateTime<Utc>,
    pub rpo_seconds: f32,
}

impl From<RpoSample> for RpoSampleView {
    fn from(s: RpoSample) -> Self {
        RpoSampleView {
            at: DateTime::from_timestamp(s.at, 0).unwrap_or_default(),
            rpo_seconds: s.rpo_seconds,
        }
    }
}

/// `/api/v1/jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobsView {
    pub running: Vec<JobRecord>,
    /// Newest first, at most 200.
    pub recent: Vec<JobRecord>,
}

fn secs(d: Option<&str>) -> Option<f64> {
    d.and_then(|d| parse_duration(d).ok()).map(|d| d.as_secs_f64())
}

/// A group's view at `now`; `drills` are every drill, oldest first.
pub fn group_view(
    c: &Console,
    name: &str,
    g: &GroupConfig,
    drills: &[std::sync::Arc<Drill>],
    running: &[JobRecord],
    now: DateTime<Utc>,
) -> GroupView {
    let points = c.backend.points(name);
    let activity = c.feed.group(name);
    let control = c.backend.control(name);
    let paused = control.as_ref().is_some_and(|c| c.paused());
    let newest_seen = activity.as_ref().and_then(|a| a.newest_point);
    let last_point = points.as_ref().and_then(|p| p.last().cloned());
    let newest = match (&last_point, newest_seen) {
        (Some(p), Some(t)) => Some(p.taken_at.max(t)),
        (Some(p), None) => Some(p.taken_at),
        (None, t) => t,
    };
    let retention = match &points {
        Some(p) => Retention {
            points: Some(p.len()),
            oldest: p.first().map(|p| p.taken_at),
            newest: p.last().map(|p| p.taken_at),
        },
        None => Retention::default(),
    };
    let last_drill = drills.iter().rev().find(|d| d.report.group == name);
    let last_cycle = activity.as_ref().and_then(|a| a.last_cycle.clone());
    let inputs = StateInputs {
        paused,
        last_cycle_failed: last_cycle.as_ref().is_some_and(|c| !c.ok),
        newest_point: newest,
        rpo_objective: g.rpo.as_deref().and_then(|r| parse_duration(r).ok()),
        last_drill: last_drill.and_then(|d| d.at),
        drill_interval: g
            .drill_interval
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(DEFAULT_DRILL_INTERVAL),
        drills_expected: g.drill_schedule.is_some() || g.drill_interval.is_some(),
    };
    let state = state::group_state(&inputs, now);
    let replicated_here = activity.is_some() || control.is_some();
    GroupView {
        name: name.to_string(),
        state,
        state_text: state.text(),
        rpo_seconds: newest.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        rpo_objective_seconds: secs(g.rpo.as_deref()),
        rto_objective_seconds: secs(g.rto.as_deref()),
        last_point,
        retention,
        last_drill: last_drill.map(|d| DrillSummary::of(d)),
        drill_overdue: state::drill_overdue(&inputs, now),
        replication: Replication {
            state: if paused {
                "paused"
            } else if inputs.last_cycle_failed {
                "error"
            } else if replicated_here {
                "running"
            } else {
                "elsewhere"
            },
            last_cycle,
            bytes_sent: activity.as_ref().map_or(0, |a| a.bytes_sent),
            controllable: control.is_some(),
        },
        running_jobs: running.iter().filter(|j| j.group == name).cloned().collect(),
    }
}

/// Every group's view, in name order.
pub fn groups(c: &Console) -> Vec<GroupView> {
    let config = c.backend.config();
    let drills = c.drills.all();
    let (running, _) = c.feed.jobs();
    let now = (c.now)();
    config
        .groups
        .iter()
        .map(|(name, g)| group_view(c, name, g, &drills, &running, now))
        .collect()
}

/// One group's view.
pub fn group(c: &Console, name: &str) -> Option<GroupView> {
    let config = c.backend.config();
    let g = config.groups.get(name)?;
    let (running, _) = c.feed.jobs();
    Some(group_view(c, name, g, &c.drills.all(), &running, (c.now)()))
}

/// A drill's full view.
pub fn drill(d: &Drill) -> DrillView {
    DrillView {
        summary: DrillSummary::of(d),
        verification: d.verification.clone(),
        report_html: format!("/drills/{}/report.html", d.report.drill_id),
        report: d.report.clone(),
    }
}
