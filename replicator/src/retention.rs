//! Retention: which recovery points of a group a policy keeps. A pure function
//! ([`decide`]) of the points, the policy, the instant and the time zone, so
//! `lifeline prune --dry-run` and prune itself print and apply the same plan,
//! and the rules are table-tested against worked examples.
//!
//! Rules (a point is kept if any rule keeps it; each decision lists every reason):
//! - the group's **newest** point is always kept;
//! - **pinned** points (a running drill or failover holds them) are kept;
//! - **journal** D: every point taken within D before *now* (Zerto's journal);
//! - **keep-within** D: every point taken within D before the *newest* point
//!   (so a group that stopped replicating does not lose its history to time);
//! - **keep-last** N: the N newest points;
//! - **keep-hourly / daily / weekly / monthly / yearly** N: for each of the N
//!   most recent calendar buckets (hour, day, ISO week, month, year in the given
//!   time zone) that hold a point, the newest point in that bucket.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::point::PointRecord;
use crate::zone::Tz;

/// A retention policy. `None` / 0: the rule keeps nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub journal: Option<Duration>,
    pub keep_within: Option<Duration>,
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl RetentionPolicy {
    /// True when no rule is set (prune would keep only the newest point).
    pub fn is_empty(&self) -> bool {
        *self == RetentionPolicy::default()
    }
}

/// Why a point is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "detail")]
pub enum KeepReason {
    Newest,
    Pinned,
    Journal,
    Within,
    Last,
    /// The bucket, e.g. `2026-11-25T08`.
    Hourly(String),
    Daily(String),
    Weekly(String),
    Monthly(String),
    Yearly(String),
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::Newest => write!(f, "newest"),
            KeepReason::Pinned => write!(f, "pinned"),
            KeepReason::Journal => write!(f, "journal"),
            KeepReason::Within => write!(f, "within"),
            KeepReason::Last => write!(f, "last"),
            KeepReason::Hourly(b) => write!(f, "hourly {b}"),
            KeepReason::Daily(b) => write!(f, "daily {b}"),
            KeepReason::Weekly(b) => write!(f, "weekly {b}"),
            KeepReason::Monthly(b) => write!(f, "monthly {b}"),
            KeepReason::Yearly(b) => write!(f, "yearly {b}"),
        }
    }
}

/// The decision for one point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    /// Empty: remove.
    pub keep: Vec<KeepReason>,
}

impl Decision {
    pub fn kept(&self) -> bool {
        !self.keep.is_empty()
    }
}

/// The times retention reads for a group's points, as `(seq, time)` in seq
/// order: each point's [`PointRecord::retention_time`] (the earlier of the
/// agent's `taken_at` and the repository's commit time), no later than `now`,
/// and never earlier than the point before it. So no value an agent supplies
/// can date a point after the genuine ones (a point dated 2099 counts as
/// committed, or as `now` for points of builds that did not record the commit
/// time) nor before them (a point dated 1970 counts as its predecessor's time),
/// and the newest point by seq is the newest by time.
pub fn retention_times(points: &[PointRecord], now: DateTime<Utc>) -> Vec<(u64, DateTime<Utc>)> {
    let mut ps: Vec<&PointRecord> = points.iter().collect();
    ps.sort_by_key(|p| p.header.seq);
    let mut floor = DateTime::<Utc>::MIN_UTC;
    ps.iter()
        .map(|p| {
            floor = p.retention_time().min(now).max(floor);
            (p.header.seq, floor)
        })
        .collect()
}

/// Prune's plan for one group's points: [`decide`] over their
/// [`retention_times`], with calendar buckets in time zone `tz`. The one
/// implementation of the plan that `lifeline prune`, the daemon and a
/// receiver's admin service apply ([`crate::Repository::prune`]).
pub fn plan(
    points: &[PointRecord],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    tz: &Tz,
    pinned: &BTreeSet<u64>,
) -> Vec<Decision> {
    let pts = retention_times(points, now);
    match tz {
        Tz::Utc => decide(&pts, policy, now, &Utc, pinned),
        Tz::Fixed(f) => decide(&pts, policy, now, f, pinned),
        Tz::Named(n) => decide(&pts, policy, now, n, pinned),
    }
}

/// Decides every point of one group (`(seq, taken_at)`, any order). Returns the
/// decisions newest first.
pub fn decide<Tz: TimeZone>(
    points: &[(u64, DateTime<Utc>)],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    tz: &Tz,
    pinned: &BTreeSet<u64>,
) -> Vec<Decision> {
    let mut pts: Vec<(u64, DateTime<Utc>)> = points.to_vec();
    // Newest first: the highest seq is the newest point whatever its time says
    // (times from [`retention_times`] never decrease with seq).
    pts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let mut out: Vec<Decision> = pts
        .iter()
        .map(|&(seq, taken_at)| Decision {
            seq,
            taken_at,
            keep: Vec::new(),
        })
        .collect();
    let Some(newest) = pts.first().map(|p| p.1) else {
        return out;
    };
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    for (i, d) in out.iter_mut().enumerate() {
        if i == 0 {
            d.keep.push(KeepReason::Newest);
        }
        if pinned.contains(&d.seq) {
            d.keep.push(KeepReason::Pinned);
        }
        if let Some(j) = policy.journal
            && d.taken_at >= now - dur(j)
        {
            d.keep.push(KeepReason::Journal);
        }
        if let Some(w) = policy.keep_within
            && d.taken_at >= newest - dur(w)
        {
            d.keep.push(KeepReason::Within);
        }
        if (i as u64) < policy.keep_last as u64 {
            d.keep.push(KeepReason::Last);
        }
    }
    type Bucket = fn(&DateTime<chrono::FixedOffset>) -> String;
    type Rule = (u32, Bucket, fn(String) -> KeepReason);
    let rules: [Rule; 5] = [
        (
            policy.keep_hourly,
            |t| format!("{:04}-{:02}-{:02}T{:02}", t.year(), t.month(), t.day(), t.hour()),
            KeepReason::Hourly,
        ),
        (
            policy.keep_daily,
            |t| format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            KeepReason::Daily,
        ),
        (
            policy.keep_weekly,
            |t| {
                let w = t.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            },
            KeepReason::Weekly,
        ),
        (
            policy.keep_monthly,
            |t| format!("{:04}-{:02}", t.year(), t.month()),
            KeepReason::Monthly,
        ),
        (policy.keep_yearly, |t| format!("{:04}", t.year()), KeepReason::Yearly),
    ];
    for (n, bucket_of, reason) in rules {
        let mut seen: Vec<String> = Vec::new();
        for d in out.iter_mut() {
            if seen.len() as u32 >= n {
                break;
            }
            let local = d.taken_at.with_timezone(tz).fixed_offset();
            let b = bucket_of(&local);
            // Newest first, so the first point met in a bucket is its newest.
            if !seen.contains(&b) {
                d.keep.push(reason(b.clone()));
                seen.push(b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn kept(ds: &[Decision]) -> Vec<u64> {
        let mut v: Vec<u64> = ds.iter().filter(|d| d.kept()).map(|d| d.seq).collect();
        v.sort();
        v
    }

    /// Points every 30 minutes from 2026-11-20T00:00Z to 2026-11-25T12:00Z.
    fn half_hourly() -> Vec<(u64, DateTime<Utc>)> {
        let start = t("2026-11-20T00:00:00Z");
        (0..=(5 * 48 + 24))
            .map(|i| (i as u64 + 1, start + chrono::Duration::minutes(30 * i)))
            .collect()
    }

    #[test]
    fn newest_is_always_kept_and_an_empty_policy_keeps_only_it() {
        let pts = half_hourly();
        let ds = decide(
            &pts,
            &RetentionPolicy::default(),
            t("2026-11-26T00:00:00Z"),
            &Utc,
            &BTreeSet::new(),
        );
        assert_eq!(kept(&ds), [265]);
        assert_eq!(ds[0].keep, [KeepReason::Newest]);
        assert!(decide(&[], &RetentionPolicy::default(), Utc::now(), &Utc, &BTreeSet::new()).is_empty());
    }

    /// The worked examples: (policy, now, time zone offset hours, expected kept seqs).
    #[test]
    fn worked_examples() {
        let pts = half_hourly(); // seq 265 = 2026-11-25T12:00Z, seq 1 = 2026-11-20T00:00Z
        let now = t("2026-11-25T12:10:00Z");
        let h = |n: u64| Duration::from_secs(3600 * n);
        let cases: Vec<(&str, RetentionPolicy, i32, Vec<u64>)> = vec![
            (
                "journal 2h: the last 2 h of points (12:00, 11:30, 11:00, 10:30), 10:10 cut-off",
                RetentionPolicy {
                    journal: Some(h(2)),
                    ..Default::default()
                },
                0,
                vec![262, 263, 264, 265],
            ),
            (
                "keep-last 3",
                RetentionPolicy {
                    keep_last: 3,
                    ..Default::default()
                },
                0,
                vec![263, 264, 265],
            ),
            (
                "keep-hourly 3: the newest point of 12h (12:00), 11h (11:30), 10h (10:30)",
                RetentionPolicy {
                    keep_hourly: 3,
                    ..Default::default()
                },
                0,
                vec![262, 264, 265],
            ),
            (
                "keep-daily 3: newest of 25th (12:00), 24th (23:30), 23rd (23:30)",
                RetentionPolicy {
                    keep_daily: 3,
                    ..Default::default()
                },
                0,
                vec![192, 240, 265],
            ),
            (
                "keep-daily 2 in UTC+5: days end at 19:00Z; 25th local ends 12:00Z+5=17:00 local; 24th local ends 18:30Z",
                RetentionPolicy {
                    keep_daily: 2,
                    ..Default::default()
                },
                5,
                vec![230, 265],
            ),
            (
                "keep-weekly 2: ISO week 48 (Mon 23rd..) newest = 265; week 47 ends Sun 22nd 23:30 = seq 144",
                RetentionPolicy {
                    keep_weekly: 2,
                    ..Default::default()
                },
                0,
                vec![144, 265],
            ),
            (
                "keep-monthly 5 and keep-yearly 5: all points are in Nov 2026",
                RetentionPolicy {
                    keep_monthly: 5,
                    keep_yearly: 5,
                    ..Default::default()
                },
                0,
                vec![265],
            ),
            (
                "keep-within 1h of the newest point: 11:00, 11:30, 12:00",
                RetentionPolicy {
                    keep_within: Some(h(1)),
                    ..Default::default()
                },
                0,
                vec![263, 264, 265],
            ),
            (
                "rules add up",
                RetentionPolicy {
                    keep_last: 2,
                    keep_daily: 2,
                    ..Default::default()
                },
                0,
                vec![240, 264, 265],
            ),
        ];
        for (what, policy, offset, want) in cases {
            let tz = FixedOffset::east_opt(offset * 3600).unwrap();
            let got = kept(&decide(&pts, &policy, now, &tz, &BTreeSet::new()));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn pins_keep_points_and_reasons_are_all_listed() {
        let pts = half_hourly();
        let pins: BTreeSet<u64> = [7].into();
        let policy = RetentionPolicy {
            keep_last: 1,
            keep_hourly: 1,
            ..Default::default()
        };
        let ds = decide(&pts, &policy, t("2026-11-25T12:10:00Z"), &Utc, &pins);
        assert_eq!(kept(&ds), [7, 265]);
        let newest = &ds[0];
        assert_eq!(
            newest.keep,
            [
                KeepReason::Newest,
                KeepReason::Last,
                KeepReason::Hourly("2026-11-25T12".into())
            ]
        );
        assert_eq!(ds.iter().find(|d| d.seq == 7).unwrap().keep, [KeepReason::Pinned]);
    }

    #[test]
    fn the_journal_follows_now_and_within_follows_the_newest_point() {
        let pts = half_hourly();
        let h = Duration::from_secs(3600);
        // A day after replication stopped: the journal is empty, within still keeps.
        let later = t("2026-11-26T13:00:00Z");
        let j = RetentionPolicy {
            journal: Some(h),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&pts, &j, later, &Utc, &BTreeSet::new())), [265]);
        let w = RetentionPolicy {
            keep_within: Some(h),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&pts, &w, later, &Utc, &BTreeSet::new())), [263, 264, 265]);
    }

    fn point(seq: u64, taken_at: &str, committed_at: Option<&str>) -> PointRecord {
        PointRecord {
            header: crate::point::PointHeader {
                tenant: "t".into(),
                group: "g".into(),
                seq,
                taken_at: t(taken_at),
                consistency: crate::point::Consistency::Fuzzy,
                key_id: 1,
                roots: vec![],
            },
            nonce: String::new(),
            sealed_body: String::new(),
            committed_at: committed_at.map(t),
        }
    }

    /// Points an agent dated into the future or the past (points of earlier
    /// builds, which did not check `taken_at` nor record the commit time) can
    /// neither push the genuine points out of the buckets nor stop prune.
    #[test]
    fn agent_supplied_times_cannot_reorder_or_outdate_the_genuine_points() {
        let now = t("2026-11-25T12:00:00Z");
        let mut pts: Vec<PointRecord> = (1..=10)
            .map(|d| {
                point(
                    d,
                    &format!("2026-11-{:02}T08:00:00Z", 14 + d),
                    Some("2026-11-25T09:00:00Z"),
                )
            })
            .collect();
        // A receiver-attested commit time wins over a later taken_at.
        pts.push(point(11, "2099-01-01T00:00:00Z", Some("2026-11-25T10:00:00Z")));
        // Points of an earlier build: only taken_at, one in 2099, one in 1970.
        pts.push(point(12, "2099-01-02T00:00:00Z", None));
        pts.push(point(13, "1970-01-01T00:00:00Z", None));
        let times = retention_times(&pts, now);
        assert_eq!(times[10], (11, t("2026-11-25T10:00:00Z")), "the commit time wins");
        assert_eq!(times[11], (12, now), "a future time counts as now");
        assert_eq!(
            times[12],
            (13, now),
            "a time before its predecessor counts as the predecessor's"
        );
        let policy = RetentionPolicy {
            keep_daily: 7,
            keep_within: Some(Duration::from_secs(7 * 86_400)),
            ..Default::default()
        };
        let ds = decide(&times, &policy, now, &Utc, &BTreeSet::new());
        assert_eq!(ds[0].seq, 13, "the newest by seq is the newest");
        let kept = kept(&ds);
        for genuine in 5..=10 {
            assert!(kept.contains(&genuine), "genuine point {genuine} kept: {kept:?}");
        }
    }
}
