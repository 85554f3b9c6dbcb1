//! What the daemon has been doing, kept for the operations console: the jobs
//! running and the recent ones with their results, each group's replication
//! activity (last cycle, bytes sent) and RPO history, and a broadcast of every
//! change as it happens (the console's `/api/v1/events` stream).
//!
//! The scheduler pushes into it ([`Feed::job_started`], [`Feed::job_finished`],
//! [`Feed::observe_newest_point`]); the console only reads. Everything is
//! bounded: [`RECENT_JOBS`] finished jobs, and per group an RPO ring of at
//! most [`RpoHistory::capacity`] samples (24 h at the sampling interval, never
//! more than [`MAX_RPO_SAMPLES`]), so a daemon that runs for months holds the
//! same memory as one that ran for a day.
//!
//! Nothing here holds configuration secrets or key material: job summaries
//! are what the daemon prints on stdout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

/// Finished jobs kept for `/api/v1/jobs`.
pub const RECENT_JOBS: usize = 200;
/// The RPO history's default sampling interval.
pub const DEFAULT_RPO_SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// How far back the RPO history goes.
pub const RPO_HISTORY: Duration = Duration::from_secs(24 * 3600);
/// Per group, whatever the interval: 24 h at 10 s.
pub const MAX_RPO_SAMPLES: usize = 8640;
/// Events a slow subscriber may fall behind before it misses some (it is
/// told, and reloads the state).
const EVENT_BACKLOG: usize = 256;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Ok,
    Error,
}

/// One job, running or finished.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: u64,
    /// `point`, `prune`, `drill`, `verify`, `gc`.
    pub job: String,
    /// Empty for site-wide jobs (verify, gc).
    pub group: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// `None` while running.
    pub result: Option<JobResult>,
    /// What the daemon printed about it (a point's seq and bytes, a drill's verdict).
    pub summary: Option<String>,
    pub error: Option<String>,
}

/// The last replication cycle (point job) of a group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cycle {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub duration_seconds: f64,
    pub error: Option<String>,
}

/// One RPO sample: seconds since the Unix epoch, and the RPO then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RpoSample {
    pub at: i64,
    pub rpo_seconds: f32,
}

/// A bounded ring of RPO samples.
#[derive(Debug, Clone)]
pub struct RpoHistory {
    samples: VecDeque<RpoSample>,
    capacity: usize,
}

impl RpoHistory {
    /// The ring size for one sample every `every`: 24 h of them, at least 1,
    /// at most [`MAX_RPO_SAMPLES`].
    pub fn capacity(every: Duration) -> usize {
        let every = every.as_secs().max(1);
        ((RPO_HISTORY.as_secs() / every) as usize).clamp(1, MAX_RPO_SAMPLES)
    }

    pub fn new(capacity: usize) -> RpoHistory {
        RpoHistory {
            samples: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    pub fn push(&mut self, s: RpoSample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    pub fn last(&self) -> Option<RpoSample> {
        self.samples.back().copied()
    }

    /// The samples at or after `since` (seconds since the epoch), oldest first.
    pub fn since(&self, since: i64) -> Vec<RpoSample> {
        let start = self.samples.partition_point(|s| s.at < since);
        self.samples.range(start..).copied().collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Bytes the ring holds once full (what 24 h of history costs).
    pub fn bytes_when_full(&self) -> usize {
        self.capacity * std::mem::size_of::<RpoSample>()
    }
}

/// What the daemon saw of one group.
#[derive(Debug, Clone)]
pub struct GroupActivity {
    pub newest_point: Option<DateTime<Utc>>,
    pub last_cycle: Option<Cycle>,
    /// Sealed bytes sent (or stored) by this daemon's cycles since it started.
    pub bytes_sent: u64,
    pub rpo: RpoHistory,
}

/// A change, as `/api/v1/events` sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FeedEvent {
    JobStarted(JobRecord),
    JobFinished(JobRecord),
    /// A group's replication was paused or resumed, or a drill requested.
    GroupChanged {
        group: String,
        what: String,
    },
}

impl FeedEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            FeedEvent::JobStarted(_) => "job_started",
            FeedEvent::JobFinished(_) => "job_finished",
            FeedEvent::GroupChanged { .. } => "group_changed",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    running: BTreeMap<u64, JobRecord>,
    recent: VecDeque<JobRecord>,
    groups: BTreeMap<String, GroupActivity>,
    drill_requests: BTreeSet<String>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Feed {
    inner: Mutex<Inner>,
    events: broadcast::Sender<FeedEvent>,
    sample_every: Duration,
}

impl Feed {
    /// A feed that samples each group's RPO every `sample_every`.
    pub fn new(sample_every: Duration) -> Feed {
        Feed {
            inner: Mutex::new(Inner::default()),
            events: broadcast::channel(EVENT_BACKLOG).0,
            sample_every: sample_every.max(Duration::from_secs(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn activity<'a>(&self, inner: &'a mut Inner, group: &str) -> &'a mut GroupActivity {
        let capacity = RpoHistory::capacity(self.sample_every);
        inner.groups.entry(group.to_string()).or_insert_with(|| GroupActivity {
            newest_point: None,
            last_cycle: None,
            bytes_sent: 0,
            rpo: RpoHistory::new(capacity),
        })
    }

    /// The RPO history's sampling interval.
    pub fn sample_every(&self) -> Duration {
        self.sample_every
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.events.subscribe()
    }

    fn send(&self, e: FeedEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(e);
    }

    /// A job started; its id for [`job_finished`](Self::job_finished).
    pub fn job_started(&self, job: &str, group: &str) -> u64 {
        let record = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let r = JobRecord {
                id: inner.next_id,
                job: job.to_string(),
                group: group.to_string(),
                started_at: Utc::now(),
                ended_at: None,
                duration_seconds: None,
                result: None,
                summary: None,
                error: None,
            };
            inner.running.insert(r.id, r.clone());
            r
        };
        let id = record.id;
        self.send(FeedEvent::JobStarted(record));
        id
    }

    /// Job `id` ended: `Ok((its JSON summary, its text))` or the error.
    pub fn job_finished(&self, id: u64, result: Result<(&serde_json::Value, &str), String>, secs: f64) {
        let record = {
            let mut inner = self.lock();
            let Some(mut r) = inner.running.remove(&id) else {
                return;
            };
            let now = Utc::now();
            r.ended_at = Some(now);
            r.duration_seconds = Some(secs);
            match &result {
                Ok((_, text)) => {
                    r.result = Some(JobResult::Ok);
                    r.summary = Some(text.to_string());
                }
                Err(e) => {
                    r.result = Some(JobResult::Error);
                    r.error = Some(e.clone());
                }
            }
            if r.job == "point" && !r.group.is_empty() {
                let skipped = matches!(&result, Ok((j, _)) if j["paused"] == true);
                let a = self.activity(&mut inner, &r.group.clone());
                if !skipped {
                    a.last_cycle = Some(Cycle {
                        at: now,
                        ok: result.is_ok(),
                        duration_seconds: secs,
                        error: result.as_ref().err().cloned(),
                    });
                }
                if let Ok((j, _)) = &result {
                    a.bytes_sent += j["bytes_sent"].as_u64().unwrap_or(0);
                }
            }
            if inner.recent.len() == RECENT_JOBS {
                inner.recent.pop_front();
            }
            inner.recent.push_back(r.clone());
            r
        };
        self.send(FeedEvent::JobFinished(record));
    }

    /// The newest point of `group` is at `taken_at` (called whenever the
    /// daemon refreshes its RPO gauges): samples the RPO when a sample is due.
    pub fn observe_newest_point(&self, group: &str, taken_at: DateTime<Utc>, now: DateTime<Utc>) {
        let every = self.sample_every.as_secs() as i64;
        let mut inner = self.lock();
        let a = self.activity(&mut inner, group);
        a.newest_point = Some(a.newest_point.map_or(taken_at, |t| t.max(taken_at)));
        let due = a.rpo.last().is_none_or(|s| now.timestamp() - s.at >= every);
        if due {
            let rpo = (now - taken_at).num_milliseconds().max(0) as f32 / 1000.0;
            a.rpo.push(RpoSample {
                at: now.timestamp(),
                rpo_seconds: rpo,
            });
        }
    }

    /// A group's activity, if the daemon saw any.
    pub fn group(&self, group: &str) -> Option<GroupActivity> {
        self.lock().groups.get(group).cloned()
    }

    /// A group's RPO samples at or after `since`.
    pub fn rpo_since(&self, group: &str, since: i64) -> Vec<RpoSample> {
        self.lock()
            .groups
            .get(group)
            .map(|a| a.rpo.since(since))
            .unwrap_or_default()
    }

    /// Running jobs (oldest first), then finished ones (newest first).
    pub fn jobs(&self) -> (Vec<JobRecord>, Vec<JobRecord>) {
        let inner = self.lock();
        (
            inner.running.values().cloned().collect(),
            inner.recent.iter().rev().cloned().collect(),
        )
    }

    /// Asks the scheduler to run `group`'s drill job now.
    pub fn request_drill(&self, group: &str) {
        self.lock().drill_requests.insert(group.to_string());
        self.group_changed(group, "drill requested");
    }

    /// Whether a drill of `group` was requested (the request is consumed).
    pub fn take_drill_request(&self, group: &str) -> bool {
        self.lock().drill_requests.remove(group)
    }

    pub fn group_changed(&self, group: &str, what: &str) {
        self.send(FeedEvent::GroupChanged {
            group: group.to_string(),
            what: what.to_string(),
        });
    }

    /// The RPO history's memory: samples held, and bytes once every ring is full.
    pub fn rpo_history_size(&self) -> (usize, usize) {
        let inner = self.lock();
        let held = inner.groups.values().map(|a| a.rpo.len()).sum();
        let full = inner.groups.values().map(|a| a.rpo.bytes_when_full()).sum();
        (held, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_rpo_history_samples_at_the_interval_and_stays_bounded() {
        assert_eq!(RpoHistory::capacity(Duration::from_secs(60)), 1440);
        assert_eq!(RpoHistory::capacity(Duration::from_secs(1)), MAX_RPO_SAMPLES);
        assert_eq!(RpoHistory::capacity(Duration::from_secs(100_000)), 1);
        let feed = Feed::new(Duration::from_secs(60));
        // Observed every second for 25 h: one sample a minute, 24 h kept.
        for s in (0..25 * 3600).step_by(10) {
            feed.observe_newest_point("g", t(s - s % 300), t(s));
        }
        let a = feed.group("g").unwrap();
        assert_eq!(a.rpo.len(), 1440);
        let all = feed.rpo_since("g", 0);
        assert_eq!(all.len(), 1440);
        assert!(all.windows(2).all(|w| w[1].at - w[0].at == 60), "{:?}", &all[..3]);
        assert_eq!(all.last().unwrap().at, t(25 * 3600 - 10).timestamp() - 50);
        // `since` cuts at the first sample at or after it.
        let since = all[1000].at;
        assert_eq!(feed.rpo_since("g", since).len(), 440);
        assert!(feed.rpo_since("other", 0).is_empty());
        assert_eq!(feed.rpo_history_size(), (1440, 1440 * std::mem::size_of::<RpoSample>()));
    }

    #[test]
    fn jobs_move_from_running_to_recent_and_are_broadcast() {
        let feed = Feed::new(Duration::from_secs(60));
        let mut rx = feed.subscribe();
        let id = feed.job_started("point", "g");
        assert_eq!(feed.jobs().0.len(), 1);
        feed.job_finished(
            id,
            Ok((&serde_json::json!({"bytes_sent": 42}), "point 1 committed")),
            0.5,
        );
        let (running, recent) = feed.jobs();
        assert!(running.is_empty());
        assert_eq!(recent[0].result, Some(JobResult::Ok));
        assert_eq!(recent[0].summary.as_deref(), Some("point 1 committed"));
        let a = feed.group("g").unwrap();
        assert_eq!(a.bytes_sent, 42);
        assert!(a.last_cycle.unwrap().ok);
        let id = feed.job_started("point", "g");
        feed.job_finished(id, Err("receiver down".into()), 1.0);
        assert_eq!(
            feed.group("g").unwrap().last_cycle.unwrap().error.as_deref(),
            Some("receiver down")
        );
        assert_eq!(rx.try_recv().unwrap().name(), "job_started");
        assert_eq!(rx.try_recv().unwrap().name(), "job_finished");
        for _ in 0..RECENT_JOBS + 5 {
            let id = feed.job_started("prune", "g");
            feed.job_finished(id, Ok((&serde_json::json!({}), "")), 0.0);
        }
        assert_eq!(feed.jobs().1.len(), RECENT_JOBS);
    }

    #[test]
    fn a_drill_request_is_taken_once() {
        let feed = Feed::new(Duration::from_secs(60));
        assert!(!feed.take_drill_request("g"));
        feed.request_drill("g");
        assert!(feed.take_drill_request("g"));
        assert!(!feed.take_drill_request("g"));
    }
}
