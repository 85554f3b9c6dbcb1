//! The one dialect of durations, sizes and rates, read the same way in flags,
//! lifeline.toml, runbooks and testbeds (README "Units").
//!
//! - Durations: one or more number-unit pairs, units `ms`, `s`, `m`, `h`, `d`
//!   (`250ms`, `30s`, `1h30m`, `7d`); a bare number is seconds (`30`).
//! - Sizes: a number and `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`
//!   (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000); a bare number
//!   is bytes. Units are case-insensitive.
//! - Rates: a size per second (`50MiB`, `10MB/s`) or bits per second as `tc`
//!   writes them (`200mbit`, `512kbit`, `1gbit`), as bytes per second.

use std::time::Duration;

/// The largest number of digits in one part: keeps a count of days in u64 milliseconds.
const MAX_DIGITS: usize = 10;

/// Parses a duration (see the module docs).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let number = || format!("invalid duration `{t}`: write a number and a unit, e.g. 5s, 2m, 1h");
    if t.is_empty() {
        return Err(number());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        if t.len() > MAX_DIGITS {
            return Err(format!("invalid duration `{t}`: too long"));
        }
        return Ok(Duration::from_secs(t.parse().map_err(|_| number())?));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(number());
        }
        if digits > MAX_DIGITS {
            return Err(format!("invalid duration `{t}`: too long"));
        }
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let n: u64 = rest[..digits].parse().map_err(|_| number())?;
        let ms = match &rest[digits..unit_end] {
            "ms" => n,
            "s" => n * 1000,
            "m" => n * 60_000,
            "h" => n * 3_600_000,
            "d" => n * 86_400_000,
            _ => return Err(format!("invalid duration `{t}`: units are ms, s, m, h, d")),
        };
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| format!("invalid duration `{t}`: too long"))?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// Formats a duration in the dialect, in its largest whole unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    match ms {
        0 => "0s".into(),
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Splits `12.5MiB` into its number and its unit.
fn number_and_unit(t: &str) -> Option<(f64, &str)> {
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Bytes per unit of a size unit.
fn size_unit(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return None,
    })
}

/// Parses a size in bytes (see the module docs).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid size `{t}`: write e.g. 4096, 32MiB or 1GiB");
    let (n, unit) = number_and_unit(t).ok_or_else(bad)?;
    let mult = size_unit(unit).ok_or_else(bad)?;
    let v = n * mult;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

/// Parses a rate into bytes per second (see the module docs); zero is refused.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let bad = || format!("invalid rate `{}`: write e.g. 50MiB, 10MB/s or 200mbit", s.trim());
    let (n, unit) = number_and_unit(t).ok_or_else(bad)?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        u => size_unit(u).ok_or_else(|| {
            format!(
                "invalid rate unit `{unit}` in `{}`: use B, KB, MB, GB, KiB, MiB, GiB, kbit, mbit or gbit",
                s.trim()
            )
        })?,
    };
    let v = n * mult;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(bad());
    }
    if v < 1.0 {
        return Err(format!("invalid rate `{}`: must be above zero", s.trim()));
    }
    Ok(v as u64)
}

/// `1.50 GiB`, `12.00 MiB`, `512 B`: how sizes are shown to people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Bytes from what [`human_bytes`] prints (`812 B`, `1.25 MiB`).
pub fn parse_human_bytes(text: &str) -> Option<u64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: f64 = n.parse().ok()?;
    let scale = match unit {
        "B" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    Some((n * scale as f64).round() as u64)
}

/// `812 MB/s`: `bytes` over `secs`, in decimal megabytes per second.
pub fn human_rate(bytes: u64, secs: f64) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / secs.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("30"), Duration::from_secs(30), "a bare number is seconds");
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("7d"), Duration::from_secs(7 * 86_400));
        assert_eq!(d(" 0 "), Duration::ZERO);
        for (bad, says) in [
            ("", "write a number and a unit"),
            ("soon", "write a number and a unit"),
            ("5 minutes", "units are ms, s, m, h, d"),
            ("5y", "units are ms, s, m, h, d"),
            ("1h30", "units are ms, s, m, h, d"),
            ("99999999999d", "too long"),
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for ms in [0, 250, 30_000, 5_400_000, 86_400_000] {
            let x = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(x)).unwrap(), x);
        }
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1e30TiB").is_err());
        assert_eq!(parse_rate("50MiB").unwrap(), 50 << 20);
        assert_eq!(parse_rate("10MB/s").unwrap(), 10_000_000);
        assert_eq!(parse_rate("200mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("200Mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("0MB").unwrap_err().contains("above zero"));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5 parsecs").unwrap_err().contains("rate unit"));
    }
}
