//! A smooth upload limit: a token bucket refilled continuously at the rate, with
//! a burst of 50 ms worth of bytes, so any one-second window carries the rate
//! within a few percent instead of bursts and pauses.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes per second, shared by every thread that uploads.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 20.0).max(64.0 * 1024.0);
        RateLimit {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// The limit, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// How long the caller must wait before sending `n` bytes (and takes them).
    pub fn reserve(&self, n: usize) -> Duration {
        let mut st = self.state.lock().expect("rate limit");
        let now = Instant::now();
        let (tokens, last) = *st;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst) - n as f64;
        *st = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }

    /// Waits for `n` bytes of budget.
    pub fn wait(&self, n: usize) {
        let d = self.reserve(n);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// Parses `50MiB`, `10MB`, `800KiB`, `1GiB`, `12345` (bytes per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    lifeline_replicator::units::parse_rate(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("50MiB").unwrap(), 50 << 20);
        assert_eq!(parse_rate("200Mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0MB").is_err());
    }

    #[test]
    fn budget_accrues_at_the_rate() {
        let r = RateLimit::new(10_000_000);
        // The burst (50 ms worth) is available at once; beyond it, waiting is proportional.
        assert_eq!(r.reserve(500_000), Duration::ZERO);
        let d = r.reserve(1_000_000);
        assert!(
            d >= Duration::from_millis(95) && d <= Duration::from_millis(101),
            "{d:?}"
        );
    }
}
