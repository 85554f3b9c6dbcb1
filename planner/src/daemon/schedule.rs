//! When the daemon's jobs run: a [`Schedule`] (an interval or a cron expression
//! in a time zone) and [`Due`], the job clock the daemon consults.
//!
//! # Writing a schedule
//!
//! - An interval: `5s`, `15m`, `1h30m`, `500ms`, `1d`, optionally after `every`
//!   (`every 5m`). Units are ms, s, m, h, d.
//! - A cron expression with a seconds field, `sec min hour day-of-month month
//!   day-of-week [year]`: `*/10 * * * * *` (every ten seconds), `0 0 2 * * *`
//!   (02:00 every day). The classic five-field form without seconds is accepted
//!   and runs at second 0: `30 2 * * *` is `0 30 2 * * *`. Shorthands `@hourly`,
//!   `@daily`, `@weekly`, `@monthly`, `@yearly` work too.
//! - Days of the week are numbered as in crontab: 0 and 7 are Sunday, 1 is
//!   Monday (the `cron` crate underneath counts 1 = Sunday; numbers are translated,
//!   names such as `MON-FRI` are the same in both). A day-of-month and a
//!   day-of-week restriction together are refused: crontab runs when *either*
//!   matches and the `cron` crate when *both* do, so such a line means different
//!   things to different readers.
//!
//! A cron expression is read in a time zone ([`Tz`]): `UTC`, a fixed offset
//! (`+01:00`) or an IANA name (`Europe/Berlin`). An interval ignores it.
//!
//! # Daylight-saving changes
//!
//! Cron fields name wall-clock times, and in a named zone some wall-clock times
//! do not happen (spring forward) or happen twice (fall back). The rule here is
//! that a job is never silently skipped:
//!
//! - A wall-clock time skipped by a forward change runs at the change itself, the
//!   first instant after the gap: a daily `0 30 2 * * *` in Europe/Berlin runs at
//!   03:00 CEST on 2026-03-29. (The `cron` crate alone skips that day.)
//! - A wall-clock time that happens twice runs the first time only, so a daily
//!   job stays daily, unless the hour field is `*`: a job that runs every hour or
//!   more often keeps its real-time spacing through the repeated hour
//!   (`0 */15 * * * *` runs every 15 minutes across the change, eight times in the
//!   two passes of 02:00-03:00). This is Vixie cron's rule.
//!
//! # The job clock
//!
//! [`Due`] holds a job's last run and next due instant and is asked
//! [`Due::due`] with the current instant; it never reads the clock itself. A job
//! that was due several times while the daemon was down (or the machine was
//! suspended) runs once, and its next occurrence is computed from the moment it
//! ran: a replication tool wants one fresh point, not a burst of catch-up points.
//! Intervals count from the start of the last run (the instant `due` returned
//! `true`), never from before the present.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use cron::TimeUnitSpec;

pub use lifeline_replicator::Tz;

/// Result with [`ScheduleError`].
pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// A schedule or time zone as written that does not parse; each says what
/// would.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not `UTC`, an offset or an IANA zone; the text says why.
    #[error("{0}")]
    TimeZone(String),
    #[error("schedule `{spec}`: {reason}")]
    Interval { spec: String, reason: String },
    /// One word that is no interval (and cannot be a cron expression).
    #[error("schedule `{spec}`: {reason}; or write a cron expression with seconds (`0 */15 * * * *`)")]
    Word { spec: String, reason: String },
    #[error(
        "schedule `{spec}`: not a duration (5s, 15m, 1h) nor a cron expression with seconds (`0 */15 * * * *`): {reason}"
    )]
    Neither { spec: String, reason: String },
}

/// Parses `UTC`, an offset `+01:00` / `-05:30` (or `+01`), or an IANA zone name
/// `Europe/Berlin` (see [`Tz::parse`]).
pub fn parse_tz(s: &str) -> Result<Tz> {
    Tz::parse(s).map_err(ScheduleError::TimeZone)
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A fixed interval between the starts of consecutive runs.
    Every(Duration),
    /// A cron expression (with seconds, day-of-week numbered 1 = Sunday as the
    /// `cron` crate counts) read in a time zone.
    Cron(Box<cron::Schedule>, Tz),
}

impl Schedule {
    /// Parses a schedule as written in configuration; see the module docs for the
    /// forms. `tz` is checked even for an interval, which ignores it, so a typo
    /// in it is reported at start-up rather than when the schedule changes.
    pub fn parse(spec: &str, tz: &str) -> Result<Schedule> {
        let tz = parse_tz(tz)?;
        let spec = spec.trim();
        if let Some(interval) = strip_prefix_ignore_case(spec, "every") {
            let interval = interval.trim_start();
            return parse_interval(interval)
                .map(Schedule::Every)
                .map_err(|e| ScheduleError::Interval {
                    spec: spec.to_string(),
                    reason: e,
                });
        }
        // One word that is not a cron shorthand can only be meant as an interval.
        if !spec.contains(char::is_whitespace) && !spec.starts_with('@') {
            return parse_interval(spec)
                .map(Schedule::Every)
                .map_err(|e| ScheduleError::Word {
                    spec: spec.to_string(),
                    reason: e,
                });
        }
        match parse_cron(spec) {
            Ok(cron) => Ok(Schedule::Cron(Box::new(cron), tz)),
            Err(e) => Err(ScheduleError::Neither {
                spec: spec.to_string(),
                reason: e,
            }),
        }
    }

    /// The first occurrence strictly after `t`, or `None` if there is none (a
    /// cron expression whose year field has passed). For an interval, `t + d`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => t.checked_add_signed(TimeDelta::from_std(*d).ok()?),
            Schedule::Cron(cron, tz) => next_cron(cron, *tz, t),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", crate::runbook::format_duration(*d)),
            Schedule::Cron(cron, tz) => write!(f, "cron `{}` in {tz}", cron.source()),
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    let rest = &s[prefix.len()..];
    (head.eq_ignore_ascii_case(prefix) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// `5s`, `1h30m`, `250ms`: one or more number-unit pairs, each read by the
/// runbook duration parser so that units and their spelling are the same
/// everywhere, and added up.
fn parse_interval(s: &str) -> Result<Duration, String> {
    // Ten digits keep the largest unit (a day, 86,400,000 ms) within u64 in the
    // runbook parser.
    const MAX_DIGITS: usize = 10;
    let help = "an interval is a number and a unit (ms, s, m, h, d), e.g. 30s, 15m, 1h30m";
    if s.is_empty() {
        return Err(format!("empty interval: {help}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let (part, tail) = rest.split_at(unit);
        if digits == 0 || digits == part.len() || part[digits..].contains(|c: char| !c.is_ascii_alphabetic()) {
            return Err(format!("not a duration: {help}"));
        }
        if digits > MAX_DIGITS {
            return Err(format!("`{part}` is too long an interval"));
        }
        let d = lifeline_replicator::units::parse_duration(part)
            .map_err(|_| format!("`{part}` is not a duration: {help}"))?;
        total = total
            .checked_add(d)
            .ok_or_else(|| format!("`{s}` is too long an interval"))?;
        rest = tail;
    }
    if total.is_zero() {
        return Err("a zero interval would run without pause: give at least 1ms".into());
    }
    if TimeDelta::from_std(total).is_err() {
        return Err(format!("`{s}` is too long an interval"));
    }
    Ok(total)
}

/// Parses a cron line: five fields get a leading `0` for seconds, day-of-week
/// numbers are translated from crontab's numbering, and a line restricting both
/// days is refused (see the module docs).
fn parse_cron(spec: &str) -> Result<cron::Schedule, String> {
    if spec.starts_with('@') {
        return cron::Schedule::from_str(spec)
            .map_err(|_| format!("`{spec}` is not a shorthand: write @hourly, @daily, @weekly, @monthly or @yearly"));
    }
    let mut fields: Vec<String> = spec.split_whitespace().map(str::to_owned).collect();
    match fields.len() {
        5 => fields.insert(0, "0".into()),
        6 | 7 => {}
        n => {
            return Err(format!(
                "it has {n} fields; write 6 (sec min hour day-of-month month day-of-week) or the 5 of crontab"
            ));
        }
    }
    fields[5] = crontab_weekdays(&fields[5])?;
    let cron = cron::Schedule::from_str(&fields.join(" ")).map_err(|e| explain_cron_error(&fields, &e))?;
    if !cron.days_of_month().is_all() && !cron.days_of_week().is_all() {
        return Err(
            "it restricts both the day of the month and the day of the week, which crontab reads as \
                    either and this scheduler as both; restrict one and write `*` for the other"
                .into(),
        );
    }
    Ok(cron)
}

/// Names the field that `cron` rejected and what it accepts. The crate's own
/// message is a caret under the expression (which may be our rewrite of the
/// user's) or a range stated off by one, so each field is tried alone.
fn explain_cron_error(fields: &[String], error: &cron::error::Error) -> String {
    const FIELDS: [(&str, &str); 7] = [
        ("second", "0-59"),
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day-of-month", "1-31 or ?"),
        ("month", "1-12 or JAN-DEC"),
        ("day-of-week", "0-7 (0 and 7 are Sunday), SUN-SAT or ?"),
        ("year", "1970-2100"),
    ];
    for (i, (name, range)) in FIELDS.iter().enumerate().take(fields.len()) {
        let mut alone: Vec<&str> = vec!["*"; fields.len()];
        alone[i] = &fields[i];
        if cron::Schedule::from_str(&alone.join(" ")).is_err() {
            return format!(
                "the {name} field `{}` is not valid: write {range}, lists (1,15), ranges (1-5) or steps (*/15)",
                fields[i]
            );
        }
    }
    error.to_string().lines().last().unwrap_or_default().trim().to_owned()
}

/// Rewrites the numeric items of a day-of-week field from crontab's numbering
/// (0 or 7 = Sunday) to the `cron` crate's (1 = Sunday ... 7 = Saturday). Names
/// and `*`-based items mean the same in both and are kept.
fn crontab_weekdays(field: &str) -> Result<String, String> {
    let bad = |item: &str| {
        format!("day of week `{item}`: write numbers 0-7 (0 and 7 are Sunday), ranges (1-5) or names (MON-FRI)")
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        if item.starts_with(['*', '?']) || item.contains(|c: char| c.is_ascii_alphabetic()) {
            items.push(item.to_owned());
            continue;
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, step.parse::<u32>().map_err(|_| bad(item))?),
            None => (item, 1),
        };
        let number = |s: &str| s.parse::<u32>().ok().filter(|n| *n <= 7).ok_or_else(|| bad(item));
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None if step > 1 || item.contains('/') => (number(range)?, 7),
            None => (number(range)?, number(range)?),
        };
        if first > last || step == 0 {
            return Err(bad(item));
        }
        let mut days: Vec<u32> = (first..=last).step_by(step as usize).map(|d| d % 7 + 1).collect();
        days.sort_unstable();
        days.dedup();
        items.extend(days.iter().map(u32::to_string));
    }
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
    Ok(items.join(","))
}

/// The next occurrence of `cron` strictly after `t` in zone `tz`.
///
/// Walks the timeline one constant-offset segment at a time: inside a segment
/// the wall clock is `instant + offset`, so the next matching wall-clock time
/// gives the next instant, unless an offset change comes first. At a forward
/// change, a match in the skipped wall-clock range runs at the change; at a
/// backward change the walk goes on in the repeated range, where matches that
/// already happened once are dropped unless the hour field is `*`.
fn next_cron(cron: &cron::Schedule, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let keep_repeats = cron.hours().is_all();
    // Search after `from`, or at or after it when `from` is a change instant.
    let (mut from, mut inclusive) = (t, false);
    loop {
        let offset = tz.offset_at(from);
        let wall_from = from.with_timezone(&offset).naive_local();
        // cron's `after` is strict and whole-second; one second earlier makes it
        // inclusive (change instants are whole seconds).
        let search_after = if inclusive {
            wall_from - TimeDelta::seconds(1)
        } else {
            wall_from
        };
        let wall = cron.after(&search_after.and_utc()).next()?.naive_utc();
        let at = (wall - offset).and_utc();
        match tz.first_change_in(from, at, offset) {
            None if !keep_repeats && tz.is_repeat(wall, at) => (from, inclusive) = (at, false),
            None => return Some(at),
            Some(change) => {
                let after = tz.offset_at(change);
                let resumes = change.with_timezone(&after).naive_local();
                if after.local_minus_utc() > offset.local_minus_utc() && wall < resumes {
                    return Some(change);
                }
                (from, inclusive) = (change, true);
            }
        }
    }
}

/// A job's clock: when it last ran and when it is next due. Pure: every method
/// takes the current instant, so tests drive it with any clock they like.
#[derive(Debug, Clone)]
pub struct Due {
    schedule: Schedule,
    last_run: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
}

impl Due {
    /// A clock for `schedule` at start-up (`now`).
    ///
    /// - `last_run` is the start of the job's last run as the daemon recorded it.
    ///   If an occurrence after it is already past, the job is due at once (one
    ///   run, however many occurrences were missed); otherwise it is due at that
    ///   occurrence. A recorded run later than `now` (the clock was set back) is
    ///   taken as `now`, so the job does not wait for a time that has not come.
    /// - With no recorded run, `run_at_start` makes the job due at once (a fresh
    ///   daemon takes a point immediately, usual for intervals); otherwise it is
    ///   due at the first occurrence after `now` (usual for cron).
    pub fn new(schedule: Schedule, last_run: Option<DateTime<Utc>>, now: DateTime<Utc>, run_at_start: bool) -> Due {
        let next = match last_run {
            Some(last) => schedule.next_after(last.min(now)).map(|next| next.max(now)),
            None if run_at_start => Some(now),
            None => schedule.next_after(now),
        };
        Due {
            schedule,
            last_run,
            next,
        }
    }

    /// Whether the job should start now. Returns `true` at most once per due
    /// time: it records `now` as the last run and moves the next due time to the
    /// first occurrence after `now` (for an interval, `now` + the interval), so
    /// occurrences missed while the daemon was busy or down are not caught up.
    /// Call it just before starting the run.
    pub fn due(&mut self, now: DateTime<Utc>) -> bool {
        match self.next {
            Some(next) if now >= next => {
                self.last_run = Some(now);
                self.next = self.schedule.next_after(now);
                true
            }
            _ => false,
        }
    }

    /// How long to sleep from `now` until the job is due: zero if it is due
    /// already, `None` if the schedule has no further occurrence.
    pub fn sleep_until_next(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.next.map(|next| (next - now).to_std().unwrap_or(Duration::ZERO))
    }

    /// The instant the job is next due, `None` if never.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.next
    }

    /// The start of the last run, to persist so that a restart knows it.
    pub fn last_run(&self) -> Option<DateTime<Utc>> {
        self.last_run
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    fn cron(spec: &str, tz: &str) -> Schedule {
        Schedule::parse(spec, tz).unwrap_or_else(|e| panic!("{spec}: {e:#}"))
    }

    /// The next `n` occurrences after `start`, as RFC 3339 in UTC.
    fn occurrences(schedule: &Schedule, start: &str, n: usize) -> Vec<String> {
        let mut t = utc(start);
        (0..n)
            .map(|_| {
                t = schedule.next_after(t).expect("an occurrence");
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn parses_intervals() {
        let cases = [
            ("5s", 5_000),
            ("every 5s", 5_000),
            ("Every   15m", 900_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1m30s250ms", 90_250),
            ("2d", 172_800_000),
            (" 10s ", 10_000),
        ];
        for (spec, ms) in cases {
            assert_eq!(cron(spec, "UTC"), Schedule::Every(Duration::from_millis(ms)), "{spec}");
        }
    }

    #[test]
    fn cron_with_seconds() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "*/10 * * * * *",
                "UTC",
                "2026-05-01T10:00:05Z",
                &[
                    "2026-05-01T10:00:10+00:00",
                    "2026-05-01T10:00:20+00:00",
                    "2026-05-01T10:00:30+00:00",
                ],
            ),
            // Strictly after: an instant on an occurrence gives the following one.
            (
                "*/10 * * * * *",
                "UTC",
                "2026-05-01T10:00:10Z",
                &["2026-05-01T10:00:20+00:00"],
            ),
            (
                "*/10 * * * * *",
                "UTC",
                "2026-05-01T10:00:09.999Z",
                &["2026-05-01T10:00:10+00:00"],
            ),
            (
                "0 0 2 * * *",
                "UTC",
                "2026-05-01T02:00:00Z",
                &["2026-05-02T02:00:00+00:00", "2026-05-03T02:00:00+00:00"],
            ),
            (
                "0 0 2 * * *",
                "+01:00",
                "2026-05-01T00:00:00Z",
                &["2026-05-01T01:00:00+00:00"],
            ),
            (
                "0 0 2 * * *",
                "-05:30",
                "2026-05-01T00:00:00Z",
                &["2026-05-01T07:30:00+00:00"],
            ),
            (
                "0 0 2 * * *",
                "Europe/Berlin",
                "2026-07-01T12:00:00Z",
                &["2026-07-02T00:00:00+00:00"],
            ),
            (
                "0 0 2 * * *",
                "Europe/Berlin",
                "2026-12-01T12:00:00Z",
                &["2026-12-02T01:00:00+00:00"],
            ),
            ("@hourly", "UTC", "2026-05-01T10:20:00Z", &["2026-05-01T11:00:00+00:00"]),
            (
                "0 0 0 1 1 * 2027",
                "UTC",
                "2026-05-01T00:00:00Z",
                &["2027-01-01T00:00:00+00:00"],
            ),
        ];
        for (spec, tz, start, want) in cases {
            assert_eq!(
                occurrences(&cron(spec, tz), start, want.len()),
                *want,
                "{spec} in {tz} after {start}"
            );
        }
    }

    #[test]
    fn five_field_form_runs_at_second_zero() {
        assert_eq!(cron("30 2 * * *", "UTC"), cron("0 30 2 * * *", "UTC"));
        assert_eq!(
            occurrences(&cron("*/15 * * * *", "UTC"), "2026-05-01T10:07:00Z", 2),
            ["2026-05-01T10:15:00+00:00", "2026-05-01T10:30:00+00:00"]
        );
    }

    #[test]
    fn weekdays_are_numbered_as_in_crontab() {
        // 2026-05-04 is a Monday.
        let cases = [
            ("0 2 * * 1", "2026-05-04T02:00:00+00:00"),
            ("0 2 * * MON", "2026-05-04T02:00:00+00:00"),
            ("0 2 * * 0", "2026-05-03T02:00:00+00:00"),
            ("0 2 * * 7", "2026-05-03T02:00:00+00:00"),
            ("0 2 * * 6", "2026-05-02T02:00:00+00:00"),
            ("0 2 * * 2-5", "2026-05-05T02:00:00+00:00"),
            ("0 2 * * 5-7", "2026-05-02T02:00:00+00:00"),
            ("0 0 2 * * 3,SUN", "2026-05-03T02:00:00+00:00"),
            ("0 0 2 ? * 1/3", "2026-05-03T02:00:00+00:00"), // 1, 4 and 7 (Sunday)
        ];
        for (spec, want) in cases {
            assert_eq!(
                occurrences(&cron(spec, "UTC"), "2026-05-01T12:00:00Z", 1),
                [want],
                "{spec}"
            );
        }
        assert_eq!(crontab_weekdays("1-5").unwrap(), "2,3,4,5,6");
        assert_eq!(crontab_weekdays("*/2").unwrap(), "*/2");
        assert_eq!(crontab_weekdays("0,7").unwrap(), "1");
        assert_eq!(crontab_weekdays("1/3").unwrap(), "1,2,5");
    }

    /// A daily 02:30 job in Europe/Berlin across both changes of 2026: the
    /// skipped 02:30 of 29 March runs at 03:00 CEST (the change), the doubled
    /// 02:30 of 25 October runs once, at its first (CEST) pass.
    #[test]
    fn daily_job_across_daylight_saving_changes() {
        let daily = cron("0 30 2 * * *", "Europe/Berlin");
        assert_eq!(
            occurrences(&daily, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00+00:00", // 02:30 CET
                "2026-03-29T01:00:00+00:00", // 02:30 does not exist: 03:00 CEST
                "2026-03-30T00:30:00+00:00", // 02:30 CEST
                "2026-03-31T00:30:00+00:00",
            ]
        );
        assert_eq!(
            occurrences(&daily, "2026-10-23T12:00:00Z", 4),
            [
                "2026-10-24T00:30:00+00:00", // 02:30 CEST
                "2026-10-25T00:30:00+00:00", // first 02:30 (CEST); not again at 02:30 CET
                "2026-10-26T01:30:00+00:00", // 02:30 CET
                "2026-10-27T01:30:00+00:00",
            ]
        );
        // A daemon that starts during the repeated hour does not run it again.
        assert_eq!(
            occurrences(&daily, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00+00:00"]
        );
        // Nor does one that starts just before it, in the first pass.
        assert_eq!(
            occurrences(&daily, "2026-10-25T00:40:00Z", 1),
            ["2026-10-26T01:30:00+00:00"]
        );
    }

    /// With `*` in the hour field the job keeps real time through both changes.
    #[test]
    fn frequent_job_keeps_real_time_across_daylight_saving_changes() {
        let quarter = cron("0 */15 * * * *", "Europe/Berlin");
        // 00:45Z is 01:45 CET; the wall clock jumps from 02:00 to 03:00 at 01:00Z.
        assert_eq!(
            occurrences(&quarter, "2026-03-29T00:40:00Z", 4),
            [
                "2026-03-29T00:45:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T01:15:00+00:00",
                "2026-03-29T01:30:00+00:00",
            ]
        );
        // 23:45Z is 01:45 CEST; 02:00-03:00 happens twice, 00:00Z-02:00Z.
        let want: Vec<String> = (0..10)
            .map(|i| (utc("2026-10-24T23:45:00Z") + TimeDelta::minutes(15 * i)).to_rfc3339())
            .collect();
        assert_eq!(occurrences(&quarter, "2026-10-24T23:40:00Z", 10), want);
        let seconds = cron("*/10 * * * * *", "Europe/Berlin");
        assert_eq!(
            occurrences(&seconds, "2026-03-29T00:59:45Z", 3),
            [
                "2026-03-29T00:59:50+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T01:00:10+00:00"
            ]
        );
        assert_eq!(
            occurrences(&seconds, "2026-10-25T00:59:45Z", 3),
            [
                "2026-10-25T00:59:50+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:00:10+00:00"
            ]
        );
    }

    proptest::proptest! {
        /// Over 2026 in Europe/Berlin, and densely around both changes: the next
        /// occurrence is later, nothing lies between (any instant in between has
        /// the same next occurrence), and a daily job is never more than 25 hours
        /// from its previous run.
        #[test]
        fn next_after_is_consistent_across_the_year(
            secs in proptest::prop_oneof![
                1_767_225_600i64..1_798_761_600,      // 2026
                1_774_746_000i64 - 7200..1_774_746_000 + 7200, // 2026-03-29T01:00Z
                1_792_890_000i64 - 7200..1_792_890_000 + 7200, // 2026-10-25T01:00Z
            ],
            spec in proptest::sample::select(vec!["0 30 2 * * *", "0 0 0 * * *", "0 */15 * * * *", "*/10 * * * * *"]),
        ) {
            let schedule = cron(spec, "Europe/Berlin");
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            let next = schedule.next_after(t).unwrap();
            proptest::prop_assert!(next > t);
            proptest::prop_assert_eq!(schedule.next_after(t + (next - t) / 2), Some(next));
            let after = schedule.next_after(next).unwrap();
            proptest::prop_assert!(after - next <= TimeDelta::hours(25), "{} then {}", next, after);
        }
    }

    #[test]
    fn time_zones_for_calendar_computations() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        let cases = [
            ("2026-03-29T00:59:59Z", 3600, "2026-03-29T01:59:59+01:00"),
            ("2026-03-29T01:00:00Z", 7200, "2026-03-29T03:00:00+02:00"),
            ("2026-10-25T00:59:59Z", 7200, "2026-10-25T02:59:59+02:00"),
            ("2026-10-25T01:00:00Z", 3600, "2026-10-25T02:00:00+01:00"),
        ];
        for (t, offset, local) in cases {
            assert_eq!(berlin.offset_at(utc(t)).local_minus_utc(), offset, "{t}");
            assert_eq!(berlin.to_local(utc(t)).to_rfc3339(), local, "{t}");
        }
        let local = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        let from_local = [
            ("2026-03-29 00:00:00", "2026-03-28T23:00:00+00:00"),
            ("2026-03-29 02:30:00", "2026-03-29T01:00:00+00:00"), // skipped: the change
            ("2026-03-29 03:00:00", "2026-03-29T01:00:00+00:00"),
            ("2026-10-25 02:30:00", "2026-10-25T00:30:00+00:00"), // doubled: the first
            ("2026-10-26 00:00:00", "2026-10-25T23:00:00+00:00"),
        ];
        for (l, t) in from_local {
            assert_eq!(berlin.from_local(local(l)).to_rfc3339(), t, "{l}");
        }
        // America/Sao_Paulo skipped midnight on 2018-11-04: the day began at 01:00.
        let sao_paulo = parse_tz("America/Sao_Paulo").unwrap();
        assert_eq!(
            sao_paulo.from_local(local("2018-11-04 00:00:00")).to_rfc3339(),
            "2018-11-04T03:00:00+00:00"
        );
        let fixed = parse_tz("-05:30").unwrap();
        assert_eq!(
            fixed.from_local(local("2026-01-01 00:00:00")).to_rfc3339(),
            "2026-01-01T05:30:00+00:00"
        );
        for (s, shown) in [
            ("UTC", "UTC"),
            ("utc", "UTC"),
            ("+01:00", "+01:00"),
            ("-05:30", "-05:30"),
            ("+02", "+02:00"),
        ] {
            assert_eq!(parse_tz(s).unwrap().to_string(), shown, "{s}");
        }
        assert_eq!(parse_tz("Europe/Berlin").unwrap().to_string(), "Europe/Berlin");
    }

    #[test]
    fn error_texts() {
        let cases = [
            (
                "*/x * *",
                "UTC",
                "schedule `*/x * *`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): it has 3 fields; write 6 (sec min hour day-of-month month day-of-week) \
                 or the 5 of crontab",
            ),
            (
                "5x",
                "UTC",
                "schedule `5x`: `5x` is not a duration: an interval is a number and a unit (ms, s, m, h, d), \
                 e.g. 30s, 15m, 1h30m; or write a cron expression with seconds (`0 */15 * * * *`)",
            ),
            (
                "every soon",
                "UTC",
                "schedule `every soon`: not a duration: an interval is a number and a unit (ms, s, m, h, d), \
                 e.g. 30s, 15m, 1h30m",
            ),
            (
                "every 0s",
                "UTC",
                "schedule `every 0s`: a zero interval would run without pause: give at least 1ms",
            ),
            (
                "99999999999d",
                "UTC",
                "schedule `99999999999d`: `99999999999d` is too long an interval; or write a cron expression \
                 with seconds (`0 */15 * * * *`)",
            ),
            (
                "0 61 * * * *",
                "UTC",
                "schedule `0 61 * * * *`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): the minute field `61` is not valid: write 0-59, lists (1,15), ranges (1-5) \
                 or steps (*/15)",
            ),
            (
                "61 2 * * *",
                "UTC",
                "schedule `61 2 * * *`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): the minute field `61` is not valid: write 0-59, lists (1,15), ranges (1-5) \
                 or steps (*/15)",
            ),
            (
                "@often",
                "UTC",
                "schedule `@often`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): `@often` is not a shorthand: write @hourly, @daily, @weekly, @monthly or @yearly",
            ),
            (
                "0 0 2 * * 8",
                "UTC",
                "schedule `0 0 2 * * 8`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): day of week `8`: write numbers 0-7 (0 and 7 are Sunday), ranges (1-5) \
                 or names (MON-FRI)",
            ),
            (
                "0 0 1 * MON",
                "UTC",
                "schedule `0 0 1 * MON`: not a duration (5s, 15m, 1h) nor a cron expression with seconds \
                 (`0 */15 * * * *`): it restricts both the day of the month and the day of the week, which \
                 crontab reads as either and this scheduler as both; restrict one and write `*` for the other",
            ),
            (
                "5s",
                "Europe/Berln",
                "time zone `Europe/Berln`: not UTC, an offset (+01:00, -05:30) nor an IANA zone name (Europe/Berlin)",
            ),
            (
                "5s",
                "europe/berlin",
                "time zone `europe/berlin`: zone names are case-sensitive, write `Europe/Berlin`",
            ),
            (
                "5s",
                "+25:00",
                "time zone `+25:00`: an offset is written ±HH:MM, hours 0-23 (e.g. +01:00, -05:30)",
            ),
            (
                "5s",
                "+1:00",
                "time zone `+1:00`: an offset is written ±HH:MM, hours 0-23 (e.g. +01:00, -05:30)",
            ),
        ];
        for (spec, tz, want) in cases {
            let got = Schedule::parse(spec, tz).map(|s| s.to_string()).unwrap_err();
            assert_eq!(format!("{got:#}"), want, "{spec} in {tz}");
        }
    }

    #[test]
    fn exhausted_schedule_is_never_due() {
        let past = cron("0 0 0 1 1 * 2020", "UTC");
        assert_eq!(past.next_after(utc("2026-01-01T00:00:00Z")), None);
        let due = Due::new(past, None, utc("2026-01-01T00:00:00Z"), false);
        assert_eq!(due.next(), None);
        assert_eq!(due.sleep_until_next(utc("2026-01-01T00:00:00Z")), None);
    }

    /// Drives a clock through `steps` of (now, expected `due`), checking the next
    /// due time after each.
    fn drive(mut due: Due, steps: &[(&str, bool, &str)]) {
        for (now, want, next) in steps {
            assert_eq!(due.due(utc(now)), *want, "due at {now}");
            assert_eq!(due.next(), Some(utc(next)), "next after {now}");
        }
    }

    #[test]
    fn interval_runs_at_start_then_every_interval_from_the_run() {
        let every = cron("every 5m", "UTC");
        let start = utc("2026-05-01T10:00:00Z");
        let due = Due::new(every.clone(), None, start, true);
        assert_eq!(due.sleep_until_next(start), Some(Duration::ZERO));
        drive(
            due,
            &[
                ("2026-05-01T10:00:00Z", true, "2026-05-01T10:05:00Z"),
                ("2026-05-01T10:00:00Z", false, "2026-05-01T10:05:00Z"),
                ("2026-05-01T10:04:59Z", false, "2026-05-01T10:05:00Z"),
                // Noticed late: the next run counts from this one's start.
                ("2026-05-01T10:05:30Z", true, "2026-05-01T10:10:30Z"),
                // Down for an hour: one run, no catch-up.
                ("2026-05-01T11:30:00Z", true, "2026-05-01T11:35:00Z"),
                ("2026-05-01T11:30:01Z", false, "2026-05-01T11:35:00Z"),
            ],
        );
        let due = Due::new(every, None, start, false);
        assert_eq!(due.next(), Some(utc("2026-05-01T10:05:00Z")));
        assert_eq!(
            due.sleep_until_next(utc("2026-05-01T10:01:00Z")),
            Some(Duration::from_secs(240))
        );
    }

    #[test]
    fn cron_first_due_after_start() {
        let nightly = cron("0 0 2 * * *", "UTC");
        let due = Due::new(nightly.clone(), None, utc("2026-05-01T10:00:00Z"), false);
        assert_eq!(
            due.sleep_until_next(utc("2026-05-01T10:00:00Z")),
            Some(Duration::from_secs(16 * 3600))
        );
        drive(
            due,
            &[
                ("2026-05-01T10:00:00Z", false, "2026-05-02T02:00:00Z"),
                ("2026-05-02T01:59:59.999Z", false, "2026-05-02T02:00:00Z"),
                ("2026-05-02T02:00:00.003Z", true, "2026-05-03T02:00:00Z"),
            ],
        );
        // run_at_start applies to a job with no recorded run, cron or not.
        let due = Due::new(nightly, None, utc("2026-05-01T10:00:00Z"), true);
        assert_eq!(due.next(), Some(utc("2026-05-01T10:00:00Z")));
    }

    /// Three days down: the restarted daemon runs the missed nightly job once,
    /// then keeps to the schedule.
    #[test]
    fn missed_runs_run_once_after_downtime() {
        let nightly = cron("0 0 2 * * *", "UTC");
        let last = Some(utc("2026-05-01T02:00:00Z"));
        let now = "2026-05-04T10:00:00Z";
        let due = Due::new(nightly.clone(), last, utc(now), false);
        assert_eq!(due.sleep_until_next(utc(now)), Some(Duration::ZERO));
        drive(
            due,
            &[
                (now, true, "2026-05-05T02:00:00Z"),
                (now, false, "2026-05-05T02:00:00Z"),
                ("2026-05-04T10:00:01Z", false, "2026-05-05T02:00:00Z"),
                ("2026-05-05T02:00:00Z", true, "2026-05-06T02:00:00Z"),
            ],
        );
        // The same with a running clock that jumps (a suspended machine).
        let mut due = Due::new(nightly.clone(), None, utc("2026-05-01T01:00:00Z"), false);
        assert!(due.due(utc("2026-05-01T02:00:00Z")));
        assert!(due.due(utc(now)));
        assert!(!due.due(utc(now)));
        assert_eq!(due.last_run(), Some(utc(now)));
        assert_eq!(due.next(), Some(utc("2026-05-05T02:00:00Z")));
        // Restarted before the next occurrence: wait for it, even with run_at_start.
        let due = Due::new(nightly.clone(), Some(utc("2026-05-04T02:00:00Z")), utc(now), true);
        assert_eq!(due.next(), Some(utc("2026-05-05T02:00:00Z")));
        // A recorded run in the future (the clock was set back) does not hold the job.
        let due = Due::new(nightly, Some(utc("2026-06-01T02:00:00Z")), utc(now), false);
        assert_eq!(due.next(), Some(utc("2026-05-05T02:00:00Z")));
        // An interval whose last run is older than the interval is due at once,
        // one that ran recently waits for the rest of its interval.
        let every = cron("1h", "UTC");
        assert_eq!(Due::new(every.clone(), last, utc(now), false).next(), Some(utc(now)));
        let recent = Some(utc("2026-05-04T09:45:00Z"));
        assert_eq!(
            Due::new(every, recent, utc(now), true).next(),
            Some(utc("2026-05-04T10:45:00Z"))
        );
    }

    #[test]
    fn due_across_daylight_saving_change() {
        let daily = cron("0 30 2 * * *", "Europe/Berlin");
        drive(
            Due::new(daily, None, utc("2026-03-28T12:00:00Z"), false),
            &[
                ("2026-03-29T00:59:59Z", false, "2026-03-29T01:00:00Z"),
                ("2026-03-29T01:00:00Z", true, "2026-03-30T00:30:00Z"),
                ("2026-03-30T00:30:00Z", true, "2026-03-31T00:30:00Z"),
            ],
        );
    }
}
