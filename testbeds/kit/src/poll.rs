//! Waiting with a deadline: tests poll for what they wait on (a point, a
//! file, a process's exit) instead of sleeping a guessed time.

use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms until it holds or `timeout` passes; whether it held.
pub fn poll_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_every(Duration::from_millis(5), timeout, cond)
}

/// [`poll_until`] with another interval, for conditions that are costly to
/// check (one that runs a command, say).
pub fn poll_every(every: Duration, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_or_times_out() {
        let mut n = 0;
        assert!(poll_until(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
        assert!(!poll_every(Duration::from_millis(1), Duration::from_millis(20), || {
            false
        }));
    }
}
