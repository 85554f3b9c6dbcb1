//! A protection group's state in one word, from one small vocabulary that the
//! API, the console and the README share:
//!
//! | state | when (the first that holds, in this order) |
//! | --- | --- |
//! | `paused` | its replication was paused (the control API, or the console) |
//! | `error` | its last replication cycle failed |
//! | `syncing` | it has no point yet: the first replication is under way |
//! | `rpo_not_met` | now − its newest point exceeds its RPO objective |
//! | `drill_overdue` | its last drill is older than its `drill_interval` (default 30 days), or it was never drilled although it has a `drill_schedule` or a `drill_interval` |
//! | `meeting_sla` | none of the above |
//!
//! [`group_state`] decides it; it is pure (the clock is an argument), so every
//! rule is tested here without a daemon.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    MeetingSla,
    RpoNotMet,
    DrillOverdue,
    Paused,
    Syncing,
    Error,
}

impl GroupState {
    /// The API's word.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::MeetingSla => "meeting_sla",
            GroupState::RpoNotMet => "rpo_not_met",
            GroupState::DrillOverdue => "drill_overdue",
            GroupState::Paused => "paused",
            GroupState::Syncing => "syncing",
            GroupState::Error => "error",
        }
    }

    /// The console's plain words.
    pub fn text(self) -> &'static str {
        match self {
            GroupState::MeetingSla => "Meeting SLA",
            GroupState::RpoNotMet => "RPO not meeting SLA",
            GroupState::DrillOverdue => "Drill overdue",
            GroupState::Paused => "Replication paused",
            GroupState::Syncing => "Syncing",
            GroupState::Error => "Replication error",
        }
    }
}

/// What the state is decided from.
#[derive(Debug, Clone, Default)]
pub struct StateInputs {
    pub paused: bool,
    /// The last replication cycle failed.
    pub last_cycle_failed: bool,
    pub newest_point: Option<DateTime<Utc>>,
    pub rpo_objective: Option<Duration>,
    pub last_drill: Option<DateTime<Utc>>,
    /// `drill_interval` (default 30 days).
    pub drill_interval: Duration,
    /// The group asks for drills (`drill_schedule` or `drill_interval` set).
    pub drills_expected: bool,
}

/// Whether the group's drill is overdue at `now`.
pub fn drill_overdue(i: &StateInputs, now: DateTime<Utc>) -> bool {
    match i.last_drill {
        Some(at) => (now - at).to_std().is_ok_and(|age| age > i.drill_interval),
        None => i.drills_expected,
    }
}

/// The group's state at `now`. Pure; see the module docs for the rules.
pub fn group_state(i: &StateInputs, now: DateTime<Utc>) -> GroupState {
    if i.paused {
        return GroupState::Paused;
    }
    if i.last_cycle_failed {
        return GroupState::Error;
    }
    let Some(newest) = i.newest_point else {
        return GroupState::Syncing;
    };
    if let Some(objective) = i.rpo_objective
        && (now - newest).to_std().is_ok_and(|rpo| rpo > objective)
    {
        return GroupState::RpoNotMet;
    }
    if drill_overdue(i, now) {
        return GroupState::DrillOverdue;
    }
    GroupState::MeetingSla
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn healthy() -> StateInputs {
        StateInputs {
            paused: false,
            last_cycle_failed: false,
            newest_point: Some(at(-10)),
            rpo_objective: Some(Duration::from_secs(30)),
            last_drill: Some(at(-86_400)),
            drill_interval: 30 * DAY,
            drills_expected: true,
        }
    }

    #[test]
    fn each_rule_and_its_precedence() {
        let now = at(0);
        let cases: Vec<(&str, StateInputs, GroupState)> = vec![
            ("healthy", healthy(), GroupState::MeetingSla),
            (
                "rpo exactly at the objective is met",
                StateInputs {
                    newest_point: Some(at(-30)),
                    ..healthy()
                },
                GroupState::MeetingSla,
            ),
            (
                "rpo past the objective",
                StateInputs {
                    newest_point: Some(at(-31)),
                    ..healthy()
                },
                GroupState::RpoNotMet,
            ),
            (
                "no objective: any rpo is met",
                StateInputs {
                    newest_point: Some(at(-86_400)),
                    rpo_objective: None,
                    ..healthy()
                },
                GroupState::MeetingSla,
            ),
            (
                "a point from the future (clock skew) meets it",
                StateInputs {
                    newest_point: Some(at(60)),
                    ..healthy()
                },
                GroupState::MeetingSla,
            ),
            (
                "no point yet",
                StateInputs {
                    newest_point: None,
                    ..healthy()
                },
                GroupState::Syncing,
            ),
            (
                "drill older than the interval",
                StateInputs {
                    last_drill: Some(at(-31 * 86_400)),
                    ..healthy()
                },
                GroupState::DrillOverdue,
            ),
            (
                "never drilled, drills expected",
                StateInputs {
                    last_drill: None,
                    ..healthy()
                },
                GroupState::DrillOverdue,
            ),
            (
                "never drilled, none expected",
                StateInputs {
                    last_drill: None,
                    drills_expected: false,
                    ..healthy()
                },
                GroupState::MeetingSla,
            ),
            (
                "rpo before a drill overdue",
                StateInputs {
                    newest_point: Some(at(-31)),
                    last_drill: None,
                    ..healthy()
                },
                GroupState::RpoNotMet,
            ),
            (
                "a failed cycle before rpo",
                StateInputs {
                    last_cycle_failed: true,
                    newest_point: Some(at(-31)),
                    ..healthy()
                },
                GroupState::Error,
            ),
            (
                "a failed first cycle is an error, not syncing",
                StateInputs {
                    last_cycle_failed: true,
                    newest_point: None,
                    ..healthy()
                },
                GroupState::Error,
            ),
            (
                "paused before everything",
                StateInputs {
                    paused: true,
                    last_cycle_failed: true,
                    newest_point: None,
                    ..healthy()
                },
                GroupState::Paused,
            ),
        ];
        for (what, inputs, want) in cases {
            assert_eq!(group_state(&inputs, now), want, "{what}");
        }
    }

    #[test]
    fn the_words() {
        let all = [
            GroupState::MeetingSla,
            GroupState::RpoNotMet,
            GroupState::DrillOverdue,
            GroupState::Paused,
            GroupState::Syncing,
            GroupState::Error,
        ];
        for s in all {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert!(!s.text().is_empty());
        }
    }
}
