//! The agent loop: on the primary site, take a crash-consistent point of a
//! protection group's volumes and send it to the receiver, again every interval,
//! until told to stop.
//!
//! Each cycle is one [`backup`] over one [`RemoteRepository`] session (kept
//! between cycles, dropped on a failure so the next cycle reconnects). Failures
//! the replicator calls transient (a cut link, a receiver restarting) are
//! retried with a doubling backoff ([`FIRST_BACKOFF`] … [`MAX_BACKOFF`]) for at
//! most [`AgentOptions::retry_for`]; anything else ends the loop with its error.
//! The agent's control API ([`AgentControl`]) sees every cycle, can pause the
//! loop, and can retarget it at another receiver (a switchover); the loop reads
//! the target at the start of each cycle.
//!
//! What happens is told to the caller as [`AgentEvent`]s; the `lifeline agent`
//! command prints them as text or, with `--json`, one JSON object per line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeline_replicator::{BackupOptions, Keys, TenantRepository, backup};
use serde::{Deserialize, Serialize};

use crate::{AgentControl, RemoteRepository, ServiceError, TlsDir};

/// The first wait after a failed cycle. Short: most cuts are a receiver restart.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts: a link that comes back is used
/// within this long.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long transient failures are retried when neither the flag nor the
/// group says: long enough for a receiver restart, short enough that a dead
/// site is reported within the minute.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(60);

/// What the loop needs, resolved from flags and the configuration by the caller.
pub struct AgentOptions {
    /// The receiver, `https://HOST:PORT` (the control API may retarget it).
    pub url: String,
    pub tls: TlsDir,
    /// The identity presented to the receiver (NAME.pem/.key in the TLS directory).
    pub identity: String,
    /// Time from the start of one cycle to the start of the next; `None`: one
    /// cycle, then return.
    pub interval: Option<Duration>,
    /// How long transient failures are retried before the loop gives up.
    pub retry_for: Duration,
    /// Upload limit in bytes per second.
    pub limit_upload: Option<u64>,
    /// The group, its volumes, hooks, state directory and cancel flag.
    pub backup: BackupOptions,
}

/// A committed point, as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CycleReport {
    pub group: String,
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    /// Bytes of the point's volumes read and stored (after dedup, before compression).
    pub bytes_sent: u64,
    /// Bytes of chunks the repository did not have.
    pub bytes_new: u64,
    pub elapsed_secs: f64,
    /// Now − `taken_at` when the point was committed: the RPO this cycle left.
    pub lag_secs: f64,
}

/// What happened in the loop.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A point was committed.
    Cycle(CycleReport),
    /// The control API pointed the agent at another receiver.
    Retargeted { from: String, to: String },
    /// A cycle failed with a transient error and is tried again after `retry_in_secs`.
    Retrying { error: String, retry_in_secs: f64 },
}

/// How the loop ended (errors are the `Err` of [`run_agent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentExit {
    /// One cycle was asked for (no interval) and it committed.
    Once,
    /// Stopped (a signal or the control API) after a cycle ended.
    Stopped,
    /// Stopped while a cycle was failing or running: its point was not committed.
    Interrupted,
}

/// Why the loop gave up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A failure that retrying will not fix (a refused identity, a wrong key…).
    #[error(transparent)]
    Failed(ServiceError),
    /// Transient failures went on for longer than `retry_for`.
    #[error("giving up after retrying for {} (--retry-for): {last}", lifeline_replicator::units::format_duration(*retry_for))]
    GaveUp { last: ServiceError, retry_for: Duration },
}

/// Runs the agent loop until one cycle is done (no interval), the cancel flag
/// is set, the control API stops it, or a failure is not worth retrying.
pub fn run_agent(
    opts: &AgentOptions,
    keys: &Keys,
    control: &Arc<AgentControl>,
    on_event: &mut dyn FnMut(&AgentEvent),
) -> Result<AgentExit, AgentError> {
    let cancel: &Arc<AtomicBool> = &opts.backup.cancel;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut repo: Option<RemoteRepository> = None;
    let mut current = opts.url.clone();
    control.cycle_started();
    loop {
        let started = Instant::now();
        let target = control.target();
        if target != current {
            on_event(&AgentEvent::Retargeted {
                from: std::mem::replace(&mut current, target.clone()),
                to: target,
            });
            repo = None;
        }
        let result = (|| -> Result<_, ServiceError> {
            if repo.is_none() {
                let r = RemoteRepository::connect(&current, &opts.tls, &opts.identity, keys)?;
                r.set_upload_limit(opts.limit_upload);
                repo = Some(r);
            }
            Ok(backup(
                repo.as_ref().expect("connected") as &dyn TenantRepository,
                keys,
                &opts.backup,
            )?)
        })();
        let wait = match result {
            Ok(s) => {
                failing_since = None;
                backoff = FIRST_BACKOFF;
                control.cycle_ok(s.seq, s.taken_at, s.elapsed_secs);
                on_event(&AgentEvent::Cycle(CycleReport {
                    group: s.group.clone(),
                    seq: s.seq,
                    taken_at: s.taken_at,
                    bytes_sent: s.bytes_stored,
                    bytes_new: s.bytes_new,
                    elapsed_secs: s.elapsed_secs,
                    lag_secs: (Utc::now() - s.taken_at).num_milliseconds() as f64 / 1000.0,
                }));
                let Some(interval) = opts.interval else {
                    return Ok(AgentExit::Once);
                };
                interval.saturating_sub(started.elapsed())
            }
            Err(e) => {
                control.cycle_failed(&e.to_string());
                if cancel.load(Ordering::Relaxed) {
                    return Ok(AgentExit::Interrupted);
                }
                let transient = match &e {
                    ServiceError::Replicator(r) => r.is_transient(),
                    _ => false,
                };
                if !transient {
                    return Err(AgentError::Failed(e));
                }
                repo = None;
                let since = *failing_since.get_or_insert(started);
                if since.elapsed() >= opts.retry_for {
                    return Err(AgentError::GaveUp {
                        last: e,
                        retry_for: opts.retry_for,
                    });
                }
                on_event(&AgentEvent::Retrying {
                    error: e.to_string(),
                    retry_in_secs: backoff.as_secs_f64(),
                });
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
        if !control.wait_for_cycle(wait, cancel) {
            return Ok(AgentExit::Stopped);
        }
    }
}
