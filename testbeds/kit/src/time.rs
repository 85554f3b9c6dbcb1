//! The UTC times `lifeline … --json` prints (`points --json`'s `taken_at`,
//! run records), as milliseconds since the Unix epoch.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z`; a
/// fraction finer than a millisecond is cut, not rounded.
#[track_caller]
pub fn parse_utc_ms(t: &str) -> i64 {
    match t.strip_suffix('Z').map(|_| DateTime::parse_from_rfc3339(t)) {
        Some(Ok(at)) => at.timestamp_millis(),
        _ => panic!("not a UTC RFC 3339 time: {t}"),
    }
}

/// The inverse of [`parse_utc_ms`]: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_else(|| panic!("{ms} ms is out of range"))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(parse_utc_ms("1970-01-01T00:00:00Z"), 0);
        assert_eq!(parse_utc_ms("2024-02-29T23:59:59.5Z"), 1_709_251_199_500);
        assert_eq!(parse_utc_ms("2024-02-29T23:59:59.123456789Z"), 1_709_251_199_123);
        assert_eq!(format_utc_ms(1_709_251_199_500), "2024-02-29T23:59:59.500Z");
        assert_eq!(format_utc_ms(-1), "1969-12-31T23:59:59.999Z");
        for ms in [0, 951_782_400_000, 4_102_444_800_001] {
            assert_eq!(parse_utc_ms(&format_utc_ms(ms)), ms);
        }
    }

    #[test]
    #[should_panic(expected = "not a UTC RFC 3339 time")]
    fn an_offset_is_not_utc() {
        parse_utc_ms("2024-01-01T00:00:00+01:00");
    }
}
