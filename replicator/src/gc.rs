//! Garbage collection of a local repository: deletes the objects no point
//! references, after prune removed points.
//!
//! Protocol (a local repository, which the collecting process holds exclusively
//! through sled's lock, so no upload or commit runs meanwhile):
//! 1. **Mark**: from every point of the tenant, follow references breadth-first
//!    through the objects' *cleartext* headers (a sealed object lists the ids it
//!    references outside the ciphertext), so no key is needed. A point that
//!    references a missing object stops the collection: run `lifeline verify`
//!    first rather than decide liveness from a damaged repository.
//! 2. **Sweep**: every object of the index not marked is removed from the index
//!    (durably), except objects in packs younger than the grace period.
//! 3. **Reclaim**: pack files left with no live object are deleted (file, then
//!    directory fsync, then the pack's catalog entry). Dead objects inside packs
//!    that still hold live ones stay on disk until a repack (not built yet); the
//!    report says how many bytes that is.
//!
//! Interrupted at any point, a rerun finishes the work: marking is recomputed,
//! removals are idempotent, and a deleted pack's catalog entry without a file is
//! harmless. Memory: the marked set, about 60 bytes per live object (10 M objects:
//! about 600 MB); the sweep streams the index.
//!
//! Through a receiver (uploads running at the same time) collection needs more:
//! objects reported present or uploaded during the collection must count as live,
//! and a commit must re-check its references if objects were collected during its
//! cycle. That is not built yet; `lifeline gc` refuses an https:// repository.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::crypto::SealedObject;
use crate::error::{Error, Result};
use crate::object_id::ObjectId;
use crate::repository::Repository;
use crate::store::CollectReport;

/// What a collection did.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub tenant: String,
    pub points: u64,
    pub objects_marked: u64,
    pub dry_run: bool,
    #[serde(flatten)]
    pub collect: CollectReport,
    pub elapsed_secs: f64,
}

/// Collects tenant `tenant` of `repo` (see the module docs).
pub fn gc(repo: &Repository, tenant: &str, grace: Duration, dry_run: bool) -> Result<GcReport> {
    let t0 = Instant::now();
    let store = repo.local_store(tenant)?;
    let points = repo.points(tenant, None)?;
    let mut live: HashSet<ObjectId> = HashSet::new();
    let mut queue: VecDeque<ObjectId> = VecDeque::new();
    for p in &points {
        for r in p.header.roots.iter().filter_map(|r| r.0) {
            if live.insert(r) {
                queue.push_back(r);
            }
        }
    }
    use crate::store::ChunkStore;
    while let Some(id) = queue.pop_front() {
        let bytes = store.get(&id).map_err(|e| Error::Invalid {
            what: "garbage collection",
            value: id.to_hex(),
            reason: format!(
                "a point references object {} which cannot be read ({e}): run `lifeline verify` (and `--repair`) first",
                id.to_hex()
            ),
        })?;
        let obj = SealedObject::parse(&bytes).map_err(|e| Error::Invalid {
            what: "garbage collection",
            value: id.to_hex(),
            reason: format!("object {} is damaged ({e}): run `lifeline verify` first", id.to_hex()),
        })?;
        for r in obj.header.refs {
            if live.insert(r) {
                queue.push_back(r);
            }
        }
    }
    let collect = store.collect(&|id| live.contains(id), grace, dry_run)?;
    Ok(GcReport {
        tenant: tenant.into(),
        points: points.len() as u64,
        objects_marked: live.len() as u64,
        dry_run,
        collect,
        elapsed_secs: t0.elapsed().as_secs_f64(),
    })
}
