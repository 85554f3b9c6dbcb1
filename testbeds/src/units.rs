//! Durations (`250ms`, `10s`, `2m`), rates (`200mbit`, `50MiB`) and sizes as
//! testbed flags and the proxy's control protocol write them: the project's one
//! dialect ([`lifeline_replicator::units`]). Rates follow `tc`: `bit` units are
//! bits per second, byte units (`B`, `KiB`, `MiB`, `GiB`) bytes per second.

use std::time::Duration;

use crate::error::{Result, TestbedError};

/// Parses `0`, `250ms`, `10s`, `2m`, `1h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    lifeline_replicator::units::parse_duration(s).map_err(TestbedError::Invalid)
}

/// Parses a rate into bytes per second: `200mbit`, `512kbit`, `1gbit`, `50MiB`, `800KiB`.
pub fn parse_rate(s: &str) -> Result<u64> {
    lifeline_replicator::units::parse_rate(s).map_err(TestbedError::Invalid)
}

/// A size in bytes: `32MiB`, `4096`, `1GiB`.
pub fn parse_size(s: &str) -> Result<u64> {
    lifeline_replicator::units::parse_size(s).map_err(TestbedError::Invalid)
}

/// `tc`'s spelling of a rate in bytes per second (`tc` reads `bit` as bits/s).
pub fn tc_rate(bytes_per_sec: u64) -> String {
    format!("{}bit", bytes_per_sec * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_rates_sizes() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_rate("200mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("200Mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("1MiB").unwrap(), 1 << 20);
        assert!(parse_rate("0mbit").is_err());
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(tc_rate(25_000_000), "200000000bit");
    }
}
