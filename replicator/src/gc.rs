//! Garbage collection: deletes the objects no point references, after prune
//! removed points. Runs on a local repository (the collecting process holds it
//! exclusively through sled's lock) and inside a receiver while agents upload
//! (see "Concurrent uploads" below).
//!
//! # Protocol
//!
//! 1. **Mark**: from every point of the tenant (its point objects, the truth;
//!    the collection refuses to start while the catalog disagrees with them or
//!    a point object is unreadable),
//!    follow references breadth-first through the objects' *cleartext* headers
//!    (a sealed object lists the ids it references outside the ciphertext), so
//!    no key is needed. Only nodes are read; a chunk's kind comes from the
//!    index, and chunks reference nothing. A point that references a missing
//!    object stops the collection: run `lifeline verify` first rather than
//!    decide liveness from a damaged repository. Objects in packs younger than
//!    the grace period are roots too, so what they reference stays with them
//!    (an upload that has not committed its point yet keeps its whole tree).
//! 2. **Scan**: every object of the index that is not marked and not in a young
//!    pack is dead; its id goes to a scratch file.
//! 3. **Sweep**, with writers excluded: the caller's extra roots (objects a
//!    concurrent upload relies on) and the objects still being uploaded are
//!    marked with everything they reference; then the dead ids are removed from
//!    the index (durably, in batches of 256) unless marked now, and pack files
//!    left with no object are deleted (file, directory fsync, catalog entry),
//!    each only after its footer shows that no index entry points into it any
//!    more (a compaction of small packs during the plan may have moved live
//!    objects into a pack the plan saw only dead ones in). Dead objects inside
//!    packs that still hold live ones stay on disk until the pack is merged
//!    (small packs only, see `LocalDirStore`); the report says how many bytes.
//!
//! Interrupted at any point, nothing live is lost and the work finishes: the
//! removals and the list of packs they emptied ("doomed" in the catalog) become
//! durable together before any file is deleted; the next open of the store
//! deletes doomed packs still present, and a rerun recomputes the rest
//! (removals are idempotent).
//!
//! # Concurrent uploads (the receiver)
//!
//! The invariant every reader relies on is *a present object has everything it
//! references present*. The receiver keeps it while collecting (see
//! `lifeline_service`'s receiver): from the start of a collection it records as
//! *touched* every object it answers present to a dedup query, every object
//! stored and everything a stored node references, the roots of every point
//! committed, and every object pending in an upload at the start; the sweep
//! (step 3) runs with uploads and commits held off and keeps the touched objects
//! with their closure. A point whose agent cycle began before a collection that
//! removed objects has its whole reference closure checked at commit and is
//! refused (`Aborted`) if anything is missing; the agent then retries the cycle,
//! asking again, and re-sends what was collected.
//!
//! # Memory
//!
//! Nodes (index and segment nodes, about one per 4 MiB segment of changed data)
//! are kept exactly in a hash set, ~80 bytes each; chunks, which reference
//! nothing, go into a Bloom filter of 10 bits per object of the index (about 1%
//! false positives: a dead chunk the filter takes for live is kept until a later
//! collection after the repository changed, whose filter is salted differently
//! (the salt is derived from the live points and the object count, so a dry
//! run predicts exactly what the collection after it deletes); never the other way round,
//! a Bloom filter has no false negatives). Dead ids are spilled to a file. For
//! 10 M objects (about 50,000 nodes): ~12 MB of filter plus ~4 MB of node set,
//! plus sled's cache; independent of how many objects are dead.

use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, BufWriter, Seek, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::crypto::{ObjectKind, SealedObject};
use crate::error::{Error, Result};
use crate::object_id::ObjectId;
use crate::repository::Repository;
use crate::store::{ChunkStore, CollectReport, LocalDirStore};

/// What a collection did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcReport {
    pub tenant: String,
    pub points: u64,
    pub objects_marked: u64,
    /// Objects a concurrent upload relied on (kept, with what they reference).
    #[serde(default)]
    pub objects_touched: u64,
    pub dry_run: bool,
    #[serde(flatten)]
    pub collect: CollectReport,
    pub elapsed_secs: f64,
}

/// A Bloom filter over object ids (which are uniformly distributed keyed
/// hashes). The salt is derived from what is collected (the live points and
/// the number of objects): a dry run and the collection that follows it on an
/// unchanged repository keep exactly the same objects, and any change to the
/// repository (a new point, a prune, an upload) gives the next collection
/// different false positives, so a dead chunk is not kept forever.
struct Bloom {
    bits: Vec<u64>,
    salt: u64,
}

const BLOOM_K: u64 = 7;

impl Bloom {
    fn new(expected: u64, salt: u64) -> Bloom {
        let words = (expected.max(1024) * 10).div_ceil(64) as usize;
        Bloom {
            bits: vec![0; words],
            salt,
        }
    }

    /// The salt of a collection of `tenant` with these live points over
    /// `total` objects (see [`Bloom`]).
    fn salt_for(tenant: &str, points: &[crate::point::PointRecord], total: u64) -> u64 {
        let mut h = blake3::Hasher::new();
        h.update(b"lifeline gc bloom salt v1\0");
        h.update(tenant.as_bytes());
        h.update(&total.to_le_bytes());
        for p in points {
            h.update(p.nonce.as_bytes());
            h.update(b"\0");
        }
        let d = h.finalize();
        u64::from_le_bytes(d.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    fn positions(&self, id: &ObjectId) -> impl Iterator<Item = u64> + use<> {
        let w = |i: usize| u64::from_le_bytes(id.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let h1 = (w(0) ^ self.salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w(2);
        let h2 = (w(1) ^ self.salt.rotate_left(32)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ w(3) | 1;
        let m = self.bits.len() as u64 * 64;
        (0..BLOOM_K).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    fn insert(&mut self, id: &ObjectId) {
        for p in self.positions(id) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn contains(&self, id: &ObjectId) -> bool {
        self.positions(id)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// The marked set: nodes exactly, chunks in a Bloom filter.
struct LiveSet {
    nodes: HashSet<ObjectId>,
    chunks: Bloom,
    marked: u64,
}

impl LiveSet {
    fn contains(&self, id: &ObjectId) -> bool {
        self.nodes.contains(id) || self.chunks.contains(id)
    }

    /// Marks everything reachable from `roots`. `strict`: a missing or damaged
    /// object is an error (points); otherwise it is skipped (uploads in
    /// progress, whose trees may be incomplete).
    fn mark(&mut self, store: &LocalDirStore, roots: impl IntoIterator<Item = ObjectId>, strict: bool) -> Result<()> {
        let mut queue: VecDeque<ObjectId> = VecDeque::new();
        let visit = |live: &mut LiveSet, id: ObjectId, queue: &mut VecDeque<ObjectId>| -> Result<()> {
            if live.nodes.contains(&id) {
                return Ok(());
            }
            match store.kind_of(&id)? {
                Some(k) if k == ObjectKind::Chunk as u8 => {
                    if !live.chunks.contains(&id) {
                        live.marked += 1;
                    }
                    live.chunks.insert(&id);
                }
                Some(_) => {
                    live.nodes.insert(id);
                    live.marked += 1;
                    queue.push_back(id);
                }
                None if strict => {
                    return Err(Error::Invalid {
                        what: "garbage collection",
                        value: id.to_hex(),
                        reason: format!(
                            "a point references object {} which this repository does not hold: \
                             run `lifeline verify` (and `--repair`) first",
                            id.to_hex()
                        ),
                    });
                }
                None => {}
            }
            Ok(())
        };
        for r in roots {
            visit(self, r, &mut queue)?;
        }
        while let Some(id) = queue.pop_front() {
            let refs = match store.get(&id).and_then(|b| {
                SealedObject::parse(&b).map_err(|reason| Error::ObjectDamaged {
                    id: id.to_hex(),
                    location: store.location(&id),
                    reason,
                })
            }) {
                Ok(obj) => obj.header.refs,
                Err(e) if strict => {
                    return Err(Error::Invalid {
                        what: "garbage collection",
                        value: id.to_hex(),
                        reason: format!(
                            "a point references object {} which cannot be read ({e}): run `lifeline verify` first",
                            id.to_hex()
                        ),
                    });
                }
                Err(_) => continue,
            };
            for r in refs {
                visit(self, r, &mut queue)?;
            }
        }
        Ok(())
    }
}

/// Collects tenant `tenant` of a local repository that nothing else writes.
pub fn gc(repo: &Repository, tenant: &str, grace: Duration, dry_run: bool) -> Result<GcReport> {
    gc_with(repo, tenant, grace, dry_run, || ((), Vec::new()))
}

/// Collects tenant `tenant` while writers may run (see the module docs).
/// `exclude` is called once marking and scanning are done; it must hold off
/// every writer (uploads, commits, dedup answers) until the guard it returns is
/// dropped, and return the objects writers relied on since the collection
/// began (kept with everything they reference).
///
/// A tenant has one store per dedup scope (its shared store, and one for each
/// group with its own scope): each is marked from the points of its groups
/// only, and swept under the same exclusion. The objects writers relied on are
/// kept in every store that holds them.
pub fn gc_with<G>(
    repo: &Repository,
    tenant: &str,
    grace: Duration,
    dry_run: bool,
    exclude: impl FnOnce() -> (G, Vec<ObjectId>),
) -> Result<GcReport> {
    let t0 = Instant::now();
    let points = live_points(repo, tenant)?;
    let own = repo.scopes(tenant)?;
    let mut planned = Vec::new();
    let mut marked = 0;
    for scope in repo.stores_of(tenant)? {
        let store = repo.local_store_in(tenant, scope.as_deref())?;
        let in_scope: Vec<crate::point::PointRecord> = points
            .iter()
            .filter(|p| match &scope {
                None => !own.contains(&p.header.group),
                Some(g) => &p.header.group == g,
            })
            .cloned()
            .collect();
        let salt_name = crate::repository::store_name(tenant, scope.as_deref());
        let (live, plan, spill) = mark_and_plan(&store, &salt_name, &in_scope, grace)?;
        marked += live.marked;
        planned.push((store, live, plan, spill));
    }
    let (guard, extra) = exclude();
    let touched = extra.len() as u64;
    let mut collect = CollectReport::default();
    for (store, mut live, plan, spill) in planned {
        let mut relied = extra.clone();
        relied.extend(store.pending_ids());
        live.mark(&store, relied, false)?;
        let c = store.apply_sweep(plan, &mut BufReader::new(spill), &|id| live.contains(id), dry_run)?;
        collect.add(&c);
    }
    drop(guard);
    Ok(GcReport {
        tenant: tenant.into(),
        points: points.len() as u64,
        objects_marked: marked,
        objects_touched: touched,
        dry_run,
        collect,
        elapsed_secs: t0.elapsed().as_secs_f64(),
    })
}

/// Marks what `points` reference in `store` (and what young packs hold),
/// then plans its sweep: the live set, the plan and the scratch file of dead
/// ids, rewound.
fn mark_and_plan(
    store: &LocalDirStore,
    salt_name: &str,
    points: &[crate::point::PointRecord],
    grace: Duration,
) -> Result<(LiveSet, crate::store::SweepPlan, std::fs::File)> {
    let (young, total) = store.young_objects(grace)?;
    let mut live = LiveSet {
        nodes: HashSet::new(),
        chunks: Bloom::new(total, Bloom::salt_for(salt_name, points, total)),
        marked: 0,
    };
    live.mark(
        store,
        points.iter().flat_map(|p| p.header.roots.iter().filter_map(|r| r.0)),
        true,
    )?;
    live.mark(store, young, false)?;
    let spill = store.spill_file()?;
    let mut w = BufWriter::new(spill);
    let plan = store.plan_sweep(
        &|id, kind| {
            if kind == ObjectKind::Chunk as u8 {
                live.chunks.contains(id)
            } else {
                live.nodes.contains(id)
            }
        },
        grace,
        &mut w,
    )?;
    let mut spill = w
        .into_inner()
        .map_err(|e| Error::io("write the garbage collection's scratch file", e.into_error()))?;
    spill
        .flush()
        .map_err(|e| Error::io("write the garbage collection's scratch file", e))?;
    spill
        .rewind()
        .map_err(|e| Error::io("read the garbage collection's scratch file", e))?;
    Ok((live, plan, spill))
}

/// The points GC marks from: the tenant's point objects, the truth. Refuses
/// while the catalog and the objects disagree, or while any point object is
/// unreadable, so no damage followed by a collection can delete what a
/// surviving point object references.
fn live_points(repo: &Repository, tenant: &str) -> Result<Vec<crate::point::PointRecord>> {
    let comparison = repo.compare_with_objects()?;
    if !comparison.agrees() {
        return Err(Error::CatalogDisagrees {
            repo: repo.name().display().to_string(),
            problem: format!(
                "{} (garbage collection refused: nothing was deleted)",
                comparison.summary()
            ),
        });
    }
    let mut points = Vec::new();
    for p in repo.point_objects(tenant)? {
        match p {
            Ok(p) => points.push(p),
            Err(e) => {
                return Err(Error::Refused {
                    repository: repo.name().display().to_string(),
                    message: format!("garbage collection refused, nothing was deleted: {e}"),
                });
            }
        }
    }
    Ok(points)
}

/// The first object missing from the reference closure of `roots` in the
/// store of `group` of `tenant`, or `None` when the whole tree is present.
/// Reads every node of the tree (not the chunks): the check a receiver makes
/// before committing a point whose upload overlapped a garbage collection.
pub fn first_missing(repo: &Repository, tenant: &str, group: &str, roots: &[ObjectId]) -> Result<Option<ObjectId>> {
    let store = repo.local_group_store(tenant, group)?;
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut queue: VecDeque<ObjectId> = roots.iter().copied().collect();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        match store.kind_of(&id)? {
            None => return Ok(Some(id)),
            Some(k) if k == ObjectKind::Chunk as u8 => {}
            Some(_) => {
                let bytes = store.get(&id)?;
                let obj = SealedObject::parse(&bytes).map_err(|reason| Error::ObjectDamaged {
                    id: id.to_hex(),
                    location: store.location(&id),
                    reason,
                })?;
                queue.extend(obj.header.refs.into_iter().filter(|r| !seen.contains(r)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_salt_is_the_same_for_the_same_collection_and_changes_with_the_repository() {
        let a = Bloom::salt_for("t", &[], 1000);
        assert_eq!(a, Bloom::salt_for("t", &[], 1000), "a dry run and its collection agree");
        assert_ne!(a, Bloom::salt_for("t", &[], 1001), "an upload changes the salt");
        assert_ne!(a, Bloom::salt_for("u", &[], 1000));
    }

    #[test]
    fn the_bloom_filter_has_no_false_negatives_and_few_false_positives() {
        let n = 100_000u64;
        let mut b = Bloom::new(n, 0x5eed);
        let id = |i: u64| ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        for i in 0..n {
            b.insert(&id(i));
        }
        assert!((0..n).all(|i| b.contains(&id(i))));
        let fp = (n..2 * n).filter(|&i| b.contains(&id(i))).count();
        assert!(fp < (n as usize) * 2 / 100, "{fp} false positives in {n}");
    }
}
