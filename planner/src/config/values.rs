//! Typed values of `lifeline.toml` and of the flags and `LIFELINE_*` variables
//! that override it: one reader per kind, used by clap (`value_parser`) and by
//! serde (`deserialize_with`), so a value is checked where it enters. A bad one
//! in the file is refused while the file is read, and toml names its line and
//! column; on the command line clap names the flag or the variable. The units
//! are the one dialect of [`lifeline_replicator::units`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration: `250ms`, `30s`, `1h30m`, `7d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    lifeline_replicator::units::parse_duration(s)
}

/// A duration between the starts of two runs: not zero, which would run without pause.
pub fn interval(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "invalid interval `{}`: zero would run without pause; give at least 1ms",
            s.trim()
        ));
    }
    Ok(d)
}

/// A rate in bytes per second: `50MiB`, `10MB/s`, `200mbit`; zero is refused.
pub fn rate(s: &str) -> Result<u64, String> {
    lifeline_replicator::units::parse_rate(s)
}

/// An address to listen on or connect to, `HOST:PORT` (`127.0.0.1:7444`,
/// `[::1]:7444`, `dr.example.net:7444`). Names stay names: they are resolved
/// when the address is used, so only the form is checked here.
pub fn address(s: &str) -> Result<String, String> {
    let t = s.trim();
    match t.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(t.to_string()),
        _ => Err(format!(
            "invalid address `{t}`: write HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:7444"
        )),
    }
}

/// A volume, `NAME=PATH`.
pub fn volume(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), PathBuf::from(p))),
        _ => Err(format!(
            "invalid --volume `{s}`: write NAME=PATH, e.g. --volume db=/dev/vdb"
        )),
    }
}

/// The readers above for optional fields of the file:
/// `#[serde(default, deserialize_with = "values::de::interval")]`. The error
/// is raised inside the value's deserializer, so toml gives it the value's span.
pub(crate) mod de {
    use super::*;

    fn read<'de, D: Deserializer<'de>, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map(Some).map_err(serde::de::Error::custom)
    }

    pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        read(d, super::duration)
    }

    pub(crate) fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        read(d, super::interval)
    }

    pub(crate) fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        read(d, super::rate)
    }

    pub(crate) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        read(d, super::address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reader_says_what_to_write() {
        assert_eq!(interval("5s").unwrap(), Duration::from_secs(5));
        assert!(interval("0s").unwrap_err().contains("at least 1ms"));
        assert!(duration("5 parsecs").unwrap_err().contains("units are ms, s, m, h, d"));
        assert_eq!(rate("200mbit").unwrap(), 25_000_000);
        assert!(rate("-5MiB").is_err());
        for good in ["127.0.0.1:0", "[::1]:7444", "dr.example.net:7444"] {
            assert_eq!(address(good).unwrap(), good);
        }
        for bad in ["127.0.0.1", ":7444", "host:http", "host:70000"] {
            assert!(address(bad).unwrap_err().contains("HOST:PORT"), "{bad}");
        }
        assert_eq!(volume("db=/dev/vdb").unwrap(), ("db".into(), PathBuf::from("/dev/vdb")));
        assert!(volume("nopath").unwrap_err().contains("NAME=PATH"));
    }
}
