//! Durations (`250ms`, `10s`, `2m`) and rates (`200mbit`, `50MiB`) as testbed
//! flags and the proxy's control protocol write them. Rates follow `tc`: `bit`
//! units are bits per second, byte units (`B`, `KiB`, `MiB`, `GiB`) bytes per second.

use std::time::Duration;

use crate::error::{Result, TestbedError};

/// Parses `0`, `250ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || TestbedError::Invalid(format!("invalid duration `{s}`: write e.g. 20ms, 10s, 2m"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// Parses a rate into bytes per second: `200mbit`, `512kbit`, `1gbit`, `50MiB`, `800KiB`.
pub fn parse_rate(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || TestbedError::Invalid(format!("invalid rate `{s}`: write e.g. 200mbit, 512kbit or 50MiB"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        "b" | "" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let v = (n * mult) as u64;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// A size in bytes: `32MiB`, `4096`, `1GiB`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || TestbedError::Invalid(format!("invalid size `{s}`: write e.g. 32MiB"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    Ok(n * mult)
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
