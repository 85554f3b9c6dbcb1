//! The persisted state of a run: everything `lifeline resume` needs to go on
//! after the planner died, and what `lifeline runs` and reports show.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::audit::SignedHead;

mod outcome;
pub use outcome::{Outcome, Pin, Promoted, PromotedVolume, Served, WorkloadLoss};

/// An instant in a run record: UTC, written as RFC 3339 with milliseconds
/// (`2026-12-05T10:30:00.123Z`, as records have always been written), so
/// records of earlier builds load and the engine never parses a time again.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Now, at the precision records keep (milliseconds).
pub fn now() -> Timestamp {
    to_millis(chrono::Utc::now())
}

/// A time at the precision records keep (milliseconds).
pub fn to_millis(t: Timestamp) -> Timestamp {
    chrono::DurationRound::duration_trunc(t, chrono::Duration::milliseconds(1)).unwrap_or(t)
}

/// A timestamp as records and reports write it.
pub fn format_timestamp(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Serde for [`Timestamp`] fields (and `timestamp::option` for optional ones).
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Timestamp, format_timestamp};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_timestamp(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time: {e}")))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::super::Timestamp;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Timestamp);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(t)| t))
        }
    }
}
use crate::runbook::actions::{Action, Mode};

/// The version of run records this planner writes. Do not modify; add a new one
/// with a migration.
pub const RUN_RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
    RolledBack,
    /// A failback brought the group home, but its last step could not resume
    /// the forward agent (it died with the primary): nothing failed, protection
    /// is not back yet. Start the agent, then `lifeline resume RUN`.
    ReprotectPending,
}

impl RunStatus {
    pub fn finished(self) -> bool {
        self != RunStatus::Running
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    /// Failed where the mode tolerates it (best effort): counts as done.
    Tolerated,
    Skipped,
    Failed,
    /// Undone by a rollback.
    Undone,
    UndoFailed,
    /// A failback's `replication.reverse` that could not reach the forward
    /// agent: waits for the agent to be started and the run resumed.
    Deferred,
}

impl StepStatus {
    /// Lets the steps after it start.
    pub fn satisfies(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Tolerated | StepStatus::Skipped
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Tolerated => "tolerated",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Undone => "undone",
            StepStatus::UndoFailed => "undo_failed",
            StepStatus::Deferred => "deferred",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamp::option")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamp::option")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// What the action produced ([`Outcome`]; absent in records written
    /// before outcomes were typed, until [`RunRecord::type_outcomes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The outcome's [`Outcome::view`], the text `${steps.ID.NAME}` reads: set
    /// only with it, by [`StepRecord::set_outcome`].
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped or tolerated, or what its undo did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Default for StepRecord {
    fn default() -> Self {
        StepRecord {
            status: StepStatus::Pending,
            attempts: 0,
            started_at: None,
            ended_at: None,
            elapsed_ms: None,
            outcome: None,
            outputs: BTreeMap::new(),
            error: None,
            note: None,
        }
    }
}

impl StepRecord {
    /// Records what the action produced, and the view templates read of it.
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outputs = outcome.view();
        self.outcome = Some(outcome);
    }

    /// The outcome of this step of `action`: for a record written before
    /// outcomes were typed, the one its outputs imply ([`Outcome::from_view`]).
    pub fn outcome_of(&self, action: Action) -> Option<Outcome> {
        self.outcome
            .clone()
            .or_else(|| Outcome::from_view(action, &self.outputs))
    }

    /// What this step promoted, if it is a `volume.promote` that did.
    pub fn promoted(&self) -> Option<Promoted> {
        match self.outcome_of(Action::VolumePromote) {
            Some(Outcome::Promote(p)) => Some(p),
            _ => None,
        }
    }
}

/// A process a `service.start` step started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackedProcess {
    pub step: String,
    pub pid: i32,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22): tells the
    /// process from a later one that reused its PID.
    pub start_ticks: u64,
    pub log: PathBuf,
    pub stopped: bool,
}

/// One run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// [`RUN_RECORD_VERSION`].
    pub version: u32,
    pub id: String,
    pub mode: Mode,
    pub runbook: String,
    pub runbook_file: PathBuf,
    /// The runbook and configuration as they were when the run started: a resume
    /// runs exactly the same plan.
    pub runbook_text: String,
    pub runbook_digest: String,
    pub config_file: Option<PathBuf>,
    pub config_text: String,
    pub group: String,
    pub point: Option<String>,
    pub ports: BTreeMap<String, u16>,
    pub run_dir: PathBuf,
    pub user: String,
    pub operator: Option<String>,
    pub status: RunStatus,
    #[serde(with = "timestamp")]
    pub started_at: Timestamp,
    #[serde(with = "timestamp::option")]
    pub ended_at: Option<Timestamp>,
    pub steps: BTreeMap<String, StepRecord>,
    /// Steps in the order they completed (rollback undoes them in reverse).
    pub completed: Vec<String>,
    pub processes: Vec<TrackedProcess>,
    /// Approval step → who approved it.
    pub approvals: BTreeMap<String, String>,
    pub abort_requested: bool,
    /// The run (a failover, switchover or failback) that stopped this drill to
    /// take the planner catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preempted_by: Option<String>,
    /// Volumes an instant `volume.promote` hydrates in the background, with
    /// their progress (absent in runs before instant promotes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hydrations: Vec<HydrationRecord>,
    /// What the run's own teardown did (instant promotes: unmounts, the NBD
    /// server stopped, overlays removed or kept), each a sentence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teardown: Vec<String>,
    /// Sealed bytes each instant promote's server read from the repository
    /// (index nodes, segment nodes, chunks), by step; recorded at its teardown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repository_reads: BTreeMap<String, u64>,
    /// Times the run was resumed.
    pub resumes: u32,
    pub error: Option<String>,
    /// The audit chain's signed head when the run last changed.
    pub audit_head: Option<SignedHead>,
}

impl RunRecord {
    /// Types the outcomes of a record written before outcomes were typed,
    /// from the outputs it kept and each step's action (`action_of`, from the
    /// run's plan); steps that have an outcome are left as they are.
    pub fn type_outcomes(&mut self, action_of: impl Fn(&str) -> Option<Action>) {
        for (id, s) in self.steps.iter_mut() {
            if s.outcome.is_none()
                && let Some(action) = action_of(id)
            {
                s.outcome = Outcome::from_view(action, &s.outputs);
            }
        }
    }

    /// `hydrating app 512 of 1024 bytes into /srv/app.img (50 %)`, one
    /// entry per volume, while any hydration of the run is not done.
    pub fn hydration_progress(&self) -> Option<String> {
        let running = self.hydrations.iter().any(|h| h.state == HydrationState::Running);
        running.then(|| {
            format!(
                "hydrating {}",
                self.hydrations
                    .iter()
                    .map(|h| h.summary())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    }
}

/// Where a hydration stands: the replicator's, so the run record and
/// `lifeline serve`'s status file say it in the same words.
pub use lifeline_replicator::serve::HydrationState;

/// One volume being hydrated by an instant promote, as the run record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HydrationRecord {
    pub step: String,
    pub volume: String,
    pub target: PathBuf,
    pub size: u64,
    pub copied: u64,
    pub state: HydrationState,
    #[serde(with = "timestamp")]
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamp::option")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HydrationRecord {
    /// `app 512 MiB of 1.0 GiB (50 %)`.
    pub fn summary(&self) -> String {
        let pct = (self.copied.saturating_mul(100)).checked_div(self.size).unwrap_or(100);
        let state = match self.state {
            HydrationState::Running => String::new(),
            HydrationState::Done => ", done".into(),
            HydrationState::Stopped => ", stopped".into(),
            HydrationState::Failed => format!(", failed: {}", self.error.as_deref().unwrap_or("?")),
        };
        format!(
            "{} {} of {} bytes into {} ({pct} %{state})",
            self.volume,
            self.copied,
            self.size,
            self.target.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_load_from_the_text_records_have_always_held_and_write_it_back_unchanged() {
        let text = r#"{"status":"succeeded","attempts":1,"started_at":"2026-12-05T10:30:00.123Z","ended_at":"2026-12-05T10:30:01.500Z","elapsed_ms":1377,"outputs":{}}"#;
        let s: StepRecord = serde_json::from_str(text).unwrap();
        let started = s.started_at.unwrap();
        assert_eq!((s.ended_at.unwrap() - started).num_milliseconds(), 1377);
        let again = serde_json::to_value(&s).unwrap();
        assert_eq!(again["started_at"], "2026-12-05T10:30:00.123Z");
        assert_eq!(again["ended_at"], "2026-12-05T10:30:01.500Z");
        // An offset other than Z is read as the same instant.
        let s: StepRecord = serde_json::from_str(&text.replace("10:30:00.123Z", "12:30:00.123+02:00")).unwrap();
        assert_eq!(s.started_at, Some(started));
        // Not a time: an error naming the text.
        let e = serde_json::from_str::<StepRecord>(&text.replace("2026-12-05T10:30:00.123Z", "yesterday"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`yesterday` is not an RFC 3339 time"), "{e}");
    }

    #[test]
    fn now_keeps_milliseconds_only() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
