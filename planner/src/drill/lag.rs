//! The lag watch: the group's replication lag sampled on the receiver
//! before, during and after a drill, so the report shows production carried on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::report::{self};

/// Lag samples with their absolute instant (made relative to T0 at the end).
type Samples = Arc<Mutex<Vec<(DateTime<Utc>, report::LagSample)>>>;

/// Samples the group's replication lag on its receiver in the background.
pub(super) struct LagWatch {
    pub(super) samples: Samples,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    pub(super) unavailable: Option<String>,
}

impl LagWatch {
    pub(super) fn start(config: &Config, group: &str, every: Duration) -> LagWatch {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (Some(url), Some(tls)) = (config.receiver_of(group).map(String::from), config.tls.clone()) else {
            return LagWatch {
                samples,
                stop,
                thread: None,
                unavailable: Some("the group's secondary site has no receiver URL or [tls] is not set".into()),
            };
        };
        let Some(identity) = tls.identity.clone() else {
            return LagWatch {
                samples,
                stop,
                thread: None,
                unavailable: Some("[tls] identity is not set".into()),
            };
        };
        let sample = {
            let group = group.to_string();
            move |remote: &lifeline_service::RemoteRepository| -> Option<(DateTime<Utc>, report::LagSample)> {
                let st = remote.status().ok()?;
                let g = st.into_iter().find(|g| g.group == group)?;
                let now = Utc::now();
                let taken = g.last_taken_at;
                Some((
                    now,
                    report::LagSample {
                        at_secs: 0.0,
                        lag_secs: (now - taken).num_milliseconds() as f64 / 1000.0,
                        last_seq: g.last_seq,
                        last_cycle_secs: g.last_cycle_secs,
                    },
                ))
            }
        };
        let remote = match lifeline_service::RemoteRepository::connect_with(
            &url,
            &lifeline_service::TlsDir::new(&tls.dir),
            &identity,
            None,
        ) {
            Ok(r) => r,
            Err(e) => {
                return LagWatch {
                    samples,
                    stop,
                    thread: None,
                    unavailable: Some(format!("cannot reach {url}: {e}")),
                };
            }
        };
        if let Some(s) = sample(&remote) {
            samples.lock().expect("samples").push(s);
        }
        let (s2, stop2) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let deadline = std::time::Instant::now() + every;
                while std::time::Instant::now() < deadline && !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Some(s) = sample(&remote) {
                    s2.lock().expect("samples").push(s);
                }
            }
        });
        LagWatch {
            samples,
            stop,
            thread: Some(thread),
            unavailable: None,
        }
    }

    pub(super) fn finish(mut self, t0: DateTime<Utc>, t_end: f64, rpo: Option<f64>) -> report::ReplicationLag {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let samples: Vec<report::LagSample> = self
            .samples
            .lock()
            .expect("samples")
            .iter()
            .map(|(at, s)| report::LagSample {
                at_secs: (*at - t0).num_milliseconds() as f64 / 1000.0,
                ..s.clone()
            })
            .collect();
        if let Some(why) = self.unavailable {
            return report::ReplicationLag {
                unavailable: Some(why),
                ..Default::default()
            };
        }
        let before = samples.iter().rev().find(|s| s.at_secs <= 0.0).map(|s| s.lag_secs);
        let during: Vec<f64> = samples
            .iter()
            .filter(|s| s.at_secs > 0.0 && s.at_secs <= t_end)
            .map(|s| s.lag_secs)
            .collect();
        let after = samples.last().filter(|s| s.at_secs >= t_end).map(|s| s.lag_secs);
        let max_during = during
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let first_seq = samples.first().map(|s| s.last_seq).unwrap_or(0);
        let last_seq = samples.last().map(|s| s.last_seq).unwrap_or(0);
        let exceeded = rpo.is_some_and(|o| samples.iter().any(|s| s.lag_secs > o));
        report::ReplicationLag {
            before_secs: before,
            max_during_secs: max_during,
            after_secs: after,
            points_during: last_seq.saturating_sub(first_seq),
            exceeded_rpo: exceeded,
            samples,
            unavailable: if before.is_none() && during.is_empty() {
                Some("the receiver reported no point of the group".into())
            } else {
                None
            },
        }
    }
}
