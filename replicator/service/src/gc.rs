//! Garbage collection inside a receiver, while agents keep uploading: the
//! receiver's half of the protocol in `lifeline_replicator::gc` (module docs).
//!
//! - From the start of a collection until its sweep ends, the receiver records
//!   as *touched* every object it answers present to a dedup query, every
//!   object stored and everything a stored node references, the roots of every
//!   point committed, and (at the start) every object pending in an upload. The
//!   sweep keeps the touched objects and everything they reference.
//! - Dedup answers, stores and commits hold the *gate* for reading; the sweep
//!   holds it for writing, so no answer or store interleaves with it: an object
//!   is either answered present and kept, or removed and answered missing.
//! - A commit whose agent cycle began before a collection that removed objects
//!   ended (the cycle's duration as the agent reports it, plus a margin) has its
//!   whole reference closure checked; a miss is `Aborted`, and the agent
//!   retries the cycle, asking again and re-sending what was collected.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use lifeline_replicator::{GcReport, ObjectId, Repository};

/// Slack added to an agent's reported cycle duration (network, scheduling).
const CYCLE_MARGIN: Duration = Duration::from_secs(60);
/// Collections remembered for the commit check.
const WINDOWS: usize = 16;

struct Active {
    tenant: String,
    touched: HashSet<ObjectId>,
}

/// Coordinates collections with uploads and commits in one receiver.
#[derive(Default)]
pub(crate) struct GcCoordinator {
    gate: RwLock<()>,
    active: Mutex<Option<Active>>,
    /// (start, end) of recent collections that removed objects.
    windows: Mutex<Vec<(Instant, Instant)>>,
    /// One collection at a time.
    running: Mutex<()>,
    /// Called between a collection's scan and its sweep (tests use it to hold
    /// a collection there while an agent works).
    before_sweep: Mutex<Option<Hook>>,
}

pub(crate) type Hook = std::sync::Arc<dyn Fn() + Send + Sync>;

impl GcCoordinator {
    /// Held by a scrub (verify) so that no collection deletes what it is
    /// reading; waits for a running collection.
    pub(crate) fn no_collection(&self) -> std::sync::MutexGuard<'_, ()> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_before_sweep(&self, hook: Option<Hook>) {
        *self.before_sweep.lock().expect("gc hook") = hook;
    }

    /// Held by dedup answers, stores and commits.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a collection of `tenant` records what writers rely on. Asked
    /// with the gate held for reading, the answer holds until it is released
    /// (a collection starts and stops recording under the write gate).
    pub(crate) fn recording(&self, tenant: &str) -> bool {
        self.active
            .lock()
            .expect("gc active")
            .as_ref()
            .is_some_and(|a| a.tenant == tenant)
    }

    /// Records objects a writer of `tenant` relies on, if a collection runs.
    pub(crate) fn touch(&self, tenant: &str, ids: impl IntoIterator<Item = ObjectId>) {
        let mut a = self.active.lock().expect("gc active");
        if let Some(a) = a.as_mut().filter(|a| a.tenant == tenant) {
            a.touched.extend(ids);
        }
    }

    /// Whether a commit whose cycle took `cycle_secs` must check its whole tree:
    /// a collection runs, or one that removed objects ended during the cycle.
    pub(crate) fn needs_full_check(&self, cycle_secs: f64) -> bool {
        if self.active.lock().expect("gc active").is_some() {
            return true;
        }
        let cycle = Duration::try_from_secs_f64(cycle_secs.max(0.0)).unwrap_or(Duration::MAX);
        let began = Instant::now().checked_sub(cycle.saturating_add(CYCLE_MARGIN));
        self.windows
            .lock()
            .expect("gc windows")
            .iter()
            .any(|(_, end)| began.is_none_or(|b| *end >= b))
    }

    /// Collects `tenant` of `repo` (see the module docs).
    pub(crate) fn collect(
        &self,
        repo: &Repository,
        tenant: &str,
        grace: Duration,
        dry_run: bool,
    ) -> lifeline_replicator::Result<GcReport> {
        let _one = self
            .running
            .try_lock()
            .map_err(|_| lifeline_replicator::Error::Invalid {
                what: "garbage collection",
                value: tenant.into(),
                reason: "another collection is running on this receiver; wait for it to finish".into(),
            })?;
        let started = Instant::now();
        {
            let _w = self.gate.write().unwrap_or_else(|e| e.into_inner());
            let pending = repo.pending_objects(tenant)?;
            *self.active.lock().expect("gc active") = Some(Active {
                tenant: tenant.into(),
                touched: pending.into_iter().collect(),
            });
        }
        let result = lifeline_replicator::gc_with(repo, tenant, grace, dry_run, || {
            let hook = self.before_sweep.lock().expect("gc hook").clone();
            if let Some(h) = hook {
                h();
            }
            let w = self.gate.write().unwrap_or_else(|e| e.into_inner());
            let touched = self
                .active
                .lock()
                .expect("gc active")
                .as_ref()
                .map(|a| a.touched.iter().copied().collect())
                .unwrap_or_default();
            (
                SweepEnd {
                    gate: w,
                    coordinator: self,
                    started,
                },
                touched,
            )
        });
        // On an error before the sweep the guard never existed: stop recording.
        *self.active.lock().expect("gc active") = None;
        result
    }
}

/// Held during the sweep; when dropped (sweep done or failed) the collection
/// stops recording, its window is remembered (conservatively, even if it failed
/// half-way), and writers resume.
struct SweepEnd<'a> {
    gate: std::sync::RwLockWriteGuard<'a, ()>,
    coordinator: &'a GcCoordinator,
    started: Instant,
}

impl Drop for SweepEnd<'_> {
    fn drop(&mut self) {
        *self.coordinator.active.lock().expect("gc active") = None;
        let mut w = self.coordinator.windows.lock().expect("gc windows");
        w.push((self.started, Instant::now()));
        let n = w.len();
        if n > WINDOWS {
            w.drain(..n - WINDOWS);
        }
        let _ = &self.gate;
    }
}
