//! Time zones: the zone retention's calendar buckets (and the daemon's cron
//! schedules) are read in. Daylight-saving rules are in the planner's
//! schedule module docs; the computations live here, beside retention, the
//! lowest layer that needs them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};

/// A time zone that cron schedules (and retention's calendar buckets) are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tz {
    Utc,
    /// A fixed offset from UTC, with no daylight-saving changes.
    Fixed(FixedOffset),
    /// An IANA zone, with its historical and future offset changes.
    Named(chrono_tz::Tz),
}

fn parse_offset(s: &str, negative: bool) -> Option<FixedOffset> {
    let (h, m) = s.split_once(':').unwrap_or((s, "00"));
    let two_digits =
        |x: &str| (x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse::<i32>().ok())?;
    let (h, m) = (two_digits(h)?, two_digits(m)?);
    if h > 23 || m > 59 {
        return None;
    }
    let secs = (h * 3600 + m * 60) * if negative { -1 } else { 1 };
    FixedOffset::east_opt(secs)
}

impl FromStr for Tz {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Tz, String> {
        Tz::parse(s)
    }
}

impl fmt::Display for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tz::Utc => f.write_str("UTC"),
            Tz::Fixed(offset) => write!(f, "{offset}"),
            Tz::Named(zone) => f.write_str(zone.name()),
        }
    }
}

impl Tz {
    /// Parses `UTC`, an offset `+01:00` / `-05:30` (or `+01`), or an IANA zone name
    /// `Europe/Berlin`.
    pub fn parse(s: &str) -> std::result::Result<Tz, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Tz::Utc);
        }
        if let Some(sign) = t.chars().next().filter(|c| *c == '+' || *c == '-') {
            return parse_offset(&t[1..], sign == '-').map(Tz::Fixed).ok_or_else(|| {
                format!("time zone `{t}`: an offset is written ±HH:MM, hours 0-23 (e.g. +01:00, -05:30)")
            });
        }
        if let Ok(zone) = t.parse::<chrono_tz::Tz>() {
            return Ok(Tz::Named(zone));
        }
        match chrono_tz::TZ_VARIANTS.iter().find(|z| z.name().eq_ignore_ascii_case(t)) {
            Some(zone) => Err(format!(
                "time zone `{t}`: zone names are case-sensitive, write `{}`",
                zone.name()
            )),
            None => Err(format!(
                "time zone `{t}`: not UTC, an offset (+01:00, -05:30) nor an IANA zone name (Europe/Berlin)"
            )),
        }
    }

    /// The offset from UTC in force at instant `t` (daylight-saving time
    /// included, for a named zone).
    pub fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Tz::Utc => Utc.fix(),
            Tz::Fixed(offset) => *offset,
            Tz::Named(zone) => zone.offset_from_utc_datetime(&t.naive_utc()).fix(),
        }
    }

    /// Instant `t` as a date and wall-clock time in this zone, for calendar
    /// computations (`.date_naive()`, `.iso_week()`, `.month()`).
    pub fn to_local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        t.with_timezone(&self.offset_at(t))
    }

    /// The first instant at which the wall clock in this zone reads `local`, or,
    /// if a forward change skips that reading, the instant of the change (the
    /// first instant whose reading is later). Monotonic in `local`, so it gives
    /// calendar bucket boundaries: the start of a local day is
    /// `from_local(date.and_time(NaiveTime::MIN))` even where midnight is skipped.
    pub fn from_local(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Tz::Utc => local.and_utc(),
            Tz::Fixed(offset) => (local - *offset).and_utc(),
            Tz::Named(zone) => match zone.from_local_datetime(&local) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
                LocalResult::None => self.first_reaching(local),
            },
        }
    }

    /// The first whole second whose wall-clock reading is at or after `local`, by
    /// bisection over the 28 hours in which any zone (offsets -12:00 to +14:00)
    /// can read `local`; wall-clock readings only jump back at a fall-back change,
    /// and none is within a day of a forward one.
    pub fn first_reaching(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let base = local.and_utc().timestamp();
        let reached = |secs: i64| instant(secs).is_some_and(|t| self.to_local(t).naive_local() >= local);
        let (mut before, mut after) = (base - 15 * 3600, base + 13 * 3600);
        while after - before > 1 {
            let mid = before + (after - before) / 2;
            if reached(mid) {
                after = mid;
            } else {
                before = mid;
            }
        }
        instant(after).unwrap_or_else(|| local.and_utc())
    }

    /// The first instant in `(from, to]` at which the offset is no longer
    /// `offset` (the offset at `from`), if any. Probes every six hours (no zone
    /// changes offset twice within six hours), then bisects to the second.
    pub fn first_change_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        offset: FixedOffset,
    ) -> Option<DateTime<Utc>> {
        const PROBE_SECS: i64 = 6 * 3600;
        let Tz::Named(_) = self else { return None };
        let changed = |secs: i64| instant(secs).is_some_and(|t| self.offset_at(t) != offset);
        let end = to.timestamp() + i64::from(to.timestamp_subsec_nanos() > 0);
        let mut before = from.timestamp();
        loop {
            let probe = (before + PROBE_SECS).min(end);
            if changed(probe) {
                let mut after = probe;
                while after - before > 1 {
                    let mid = before + (after - before) / 2;
                    if changed(mid) {
                        after = mid;
                    } else {
                        before = mid;
                    }
                }
                return instant(after).filter(|t| *t > from && *t <= to);
            }
            if probe >= end {
                return None;
            }
            before = probe;
        }
    }

    /// Whether `at`, whose wall-clock reading is `local`, is the second time the
    /// clock reads `local` (the repeated hour after a fall-back change).
    pub fn is_repeat(&self, local: NaiveDateTime, at: DateTime<Utc>) -> bool {
        match self {
            Tz::Named(zone) => match zone.from_local_datetime(&local) {
                LocalResult::Ambiguous(a, b) => at > a.min(b).with_timezone(&Utc),
                _ => false,
            },
            _ => false,
        }
    }
}

fn instant(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}
