//! Verification of a repository.
//!
//! Without the key (a scrub, what a secondary can do on its own): every object's
//! structure and trailer hash, then every point's tree through the cleartext
//! references, so a missing or damaged object is mapped to the points it breaks.
//! With the key (deep): also decrypts every object, checks every id against its
//! content, decodes every node and point, and recomputes each volume's hash from
//! its chunks. Memory: 32 bytes per object plus the references of index nodes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::crypto::{Keys, ObjectKind, SealedObject, open_object};
use crate::error::Result;
use crate::index::{AnySegment, IndexNode};
use crate::object_id::ObjectId;
use crate::point_reader::{assemble_segment, volume_leaves};
use crate::progress::Progress;
use crate::reader::ObjectReader;
use crate::repository::Repository;
use crate::store::{ChunkStore, StoredObject};
use crate::volume_hash::{VolumeHasher, zero_segment_hash};

/// What to verify.
#[derive(Clone)]
pub struct VerifyOptions {
    pub tenant: String,
    /// With keys: deep verify.
    pub keys: Option<Keys>,
    pub progress: Option<Progress>,
    /// Drop damaged and missing objects, and every node above them, from the
    /// index, so the next backup of the same data stores them again (which also
    /// heals older points that share them). Points stay as they are.
    pub repair: bool,
}

/// An object that failed a check.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DamagedObject {
    pub id: String,
    pub location: String,
    pub reason: String,
}

/// A point that cannot be restored faithfully.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AffectedPoint {
    pub group: String,
    pub seq: u64,
    pub reason: String,
}

/// The outcome of a verify.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub deep: bool,
    pub objects: u64,
    pub bytes: u64,
    pub points: u64,
    pub volumes_hashed: u64,
    pub damaged: Vec<DamagedObject>,
    pub missing: Vec<DamagedObject>,
    pub affected_points: Vec<AffectedPoint>,
    /// Disagreements between the catalog and the record objects, and damaged
    /// record objects (config, tenant, point objects), each naming the record.
    #[serde(default)]
    pub records: Vec<String>,
    /// Index entries dropped by `repair`.
    #[serde(default)]
    pub dropped_from_index: u64,
    pub elapsed_secs: f64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty() && self.affected_points.is_empty() && self.records.is_empty()
    }
}

/// Verifies a tenant's objects and points: each of the tenant's stores (its
/// shared one and one per group with its own dedup scope) against the points
/// of the groups it serves.
pub fn verify(repo: &Repository, opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    // The records: the catalog against the objects, and every record object
    // read whole. Damage is mapped to the points the objects hold (the truth).
    let (points, records) = check_records(repo, &opts.tenant)?;
    let own = repo.scopes(&opts.tenant)?;
    let mut report = VerifyReport {
        deep: opts.keys.is_some(),
        objects: 0,
        bytes: 0,
        points: points.len() as u64,
        volumes_hashed: 0,
        damaged: Vec::new(),
        missing: Vec::new(),
        affected_points: Vec::new(),
        records,
        dropped_from_index: 0,
        elapsed_secs: 0.0,
    };
    for scope in repo.stores_of(&opts.tenant)? {
        let store = match &scope {
            None => repo.store(&opts.tenant)?,
            Some(g) => repo.group_store(&opts.tenant, g)?,
        };
        let in_scope: Vec<&crate::point::PointRecord> = points
            .iter()
            .filter(|p| match &scope {
                None => !own.contains(&p.header.group),
                Some(g) => &p.header.group == g,
            })
            .collect();
        verify_store(repo, opts, store.as_ref(), &in_scope, &mut report)?;
    }
    report.missing.sort_by(|a, b| a.id.cmp(&b.id));
    report.damaged.sort_by(|a, b| a.id.cmp(&b.id));
    report
        .affected_points
        .sort_by(|a, b| (&a.group, a.seq).cmp(&(&b.group, b.seq)));
    report.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Verifies one store: every object it holds, and the trees of `points` (the
/// points of the groups it serves), adding what it finds to `report`.
fn verify_store(
    repo: &Repository,
    opts: &VerifyOptions,
    store: &dyn ChunkStore,
    points: &[&crate::point::PointRecord],
    report: &mut VerifyReport,
) -> Result<()> {
    let mut listed: Vec<StoredObject> = Vec::new();
    store.list(&mut |o| {
        listed.push(o);
        Ok(())
    })?;
    // Read in storage order: long sequential runs instead of random reads.
    listed.sort_unstable_by_key(|o| o.read_order);
    let total_bytes: u64 = listed.iter().map(|o| o.len).sum();
    let done = AtomicU64::new(0);
    let reader = opts.keys.as_ref().map(|k| ObjectReader::new(store, k));
    // One pass over every object.
    let checked: Vec<(ObjectId, Option<Vec<ObjectId>>, Option<Failure>)> = listed
        .par_iter()
        .map(|o| {
            let r = check_object(store, opts.keys.as_ref(), &o.id);
            let d = done.fetch_add(o.len, Ordering::Relaxed) + o.len;
            if let Some(p) = &opts.progress {
                p(d, total_bytes);
            }
            (o.id, r.as_ref().ok().cloned().flatten(), r.err())
        })
        .collect();
    // Listed in the index but unreadable (its pack is gone) counts as missing.
    let present: HashSet<ObjectId> = checked
        .iter()
        .filter(|c| !matches!(c.2, Some(Failure::Missing)))
        .map(|c| c.0)
        .collect();
    let mut node_refs: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    let mut damaged = Vec::new();
    let mut bad: HashSet<ObjectId> = HashSet::new();
    let mut gone = Vec::new();
    for (id, refs, err) in checked {
        if let Some(Failure::Missing) = err {
            gone.push(id);
        } else if let Some(Failure::Damaged(reason)) = err {
            damaged.push(DamagedObject {
                id: id.to_hex(),
                location: store.location(&id),
                reason,
            });
            bad.insert(id);
        } else if let Some(refs) = refs {
            node_refs.insert(id, refs);
        }
    }
    let mut missing: HashMap<ObjectId, String> = HashMap::new();
    let mut memo: HashMap<ObjectId, Option<ObjectId>> = HashMap::new();
    let mut affected = Vec::new();
    let mut volumes_hashed = 0;
    let location = repo.name().display().to_string();
    for p in points {
        let h = &p.header;
        let mut reasons = Vec::new();
        for root in h.roots.iter().filter_map(|r| r.0) {
            if let Some(first_bad) = first_bad(&root, &present, &bad, &node_refs, &mut memo) {
                if !present.contains(&first_bad) {
                    missing
                        .entry(first_bad)
                        .or_insert_with(|| format!("missing, referenced by point {} of group `{}`", h.seq, h.group));
                    reasons.push(format!("object {} is missing", first_bad.short()));
                } else {
                    reasons.push(format!("object {} is damaged", first_bad.short()));
                }
            }
        }
        if let (Some(keys), Some(reader)) = (&opts.keys, &reader) {
            match p.open(keys, &location) {
                Err(e) => reasons.push(e.to_string()),
                Ok(point) if reasons.is_empty() => {
                    for v in &point.body.volumes {
                        match volume_hash(reader, v) {
                            Ok(hash) if hash == v.volume_hash => {}
                            Ok(_) => {
                                reasons.push(format!("volume `{}` does not hash to the recorded volume hash", v.name))
                            }
                            Err(e) => reasons.push(e.to_string()),
                        }
                        volumes_hashed += 1;
                    }
                }
                Ok(_) => {}
            }
        }
        if !reasons.is_empty() {
            reasons.dedup();
            affected.push(AffectedPoint {
                group: h.group.clone(),
                seq: h.seq,
                reason: reasons.join("; "),
            });
        }
    }
    // The walk above names only the first missing object under each root, and
    // none that no point reaches. Report every object the index lists whose pack
    // is gone, so a repository whose index points into a vanished pack is never
    // called clean (a later backup would dedup against those objects).
    for id in gone {
        missing
            .entry(id)
            .or_insert_with(|| "missing, its pack file is gone".into());
    }
    let mut dropped_from_index = 0;
    if opts.repair && (!bad.is_empty() || !missing.is_empty()) {
        let mut parents: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        for (node, refs) in &node_refs {
            for r in refs {
                parents.entry(*r).or_default().push(*node);
            }
        }
        let mut todo: Vec<ObjectId> = bad.iter().chain(missing.keys()).copied().collect();
        let mut doomed: HashSet<ObjectId> = HashSet::new();
        while let Some(id) = todo.pop() {
            if doomed.insert(id)
                && let Some(ps) = parents.get(&id)
            {
                todo.extend(ps);
            }
        }
        let indexed: HashSet<ObjectId> = listed.iter().map(|o| o.id).collect();
        for id in doomed.iter().filter(|id| indexed.contains(id)) {
            store.delete(id)?;
            dropped_from_index += 1;
        }
        store.sync()?;
        tracing::warn!(
            dropped = dropped_from_index,
            "dropped damaged and missing objects and their referrers from the index"
        );
    }
    let missing: Vec<DamagedObject> = missing
        .into_iter()
        .map(|(id, reason)| DamagedObject {
            id: id.to_hex(),
            location: store.location(&id),
            reason,
        })
        .collect();
    report.objects += listed.len() as u64;
    report.bytes += total_bytes;
    report.volumes_hashed += volumes_hashed;
    report.damaged.extend(damaged);
    report.missing.extend(missing);
    report.affected_points.extend(affected);
    report.dropped_from_index += dropped_from_index;
    Ok(())
}

/// The tenant's points as their point objects hold them, and every problem
/// with the records: the catalog's disagreements with the objects, damaged
/// config, tenant and point objects, and catalog copies that differ from
/// their objects.
fn check_records(repo: &Repository, tenant: &str) -> Result<(Vec<crate::point::PointRecord>, Vec<String>)> {
    use crate::record_object::{self, RecordKind};
    let storage = repo.storage();
    let mut problems = repo.compare_with_objects()?.problems();
    let read = |key: &str, kind: RecordKind, problems: &mut Vec<String>| match storage.get(key) {
        Ok(Some(b)) => {
            if let Err(reason) = record_object::check(kind, &b) {
                problems.push(format!("{} {} is damaged: {reason}", kind.name(), storage.locate(key)));
            }
        }
        Ok(None) => problems.push(format!("{} {} is missing", kind.name(), storage.locate(key))),
        Err(e) => problems.push(e.to_string()),
    };
    read(record_object::CONFIG_KEY, RecordKind::Config, &mut problems);
    read(&record_object::tenant_key(tenant), RecordKind::Tenant, &mut problems);
    let catalog: HashMap<(String, u64), crate::point::PointRecord> = repo
        .points(tenant, None)?
        .into_iter()
        .map(|p| ((p.header.group.clone(), p.header.seq), p))
        .collect();
    let mut points = Vec::new();
    for p in repo.point_objects(tenant)? {
        match p {
            Ok(p) => {
                if let Some(c) = catalog.get(&(p.header.group.clone(), p.header.seq))
                    && c != &p
                {
                    problems.push(format!(
                        "the catalog's copy of point {} of group `{}` differs from its point object",
                        p.header.seq, p.header.group
                    ));
                }
                points.push(p);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok((points, problems))
}

enum Failure {
    Missing,
    Damaged(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Damaged(s)
    }
}

/// Checks one object; returns its references when it is a node.
fn check_object(store: &dyn ChunkStore, keys: Option<&Keys>, id: &ObjectId) -> Result<Option<Vec<ObjectId>>, Failure> {
    let bytes = match store.get(id) {
        Ok(b) => b,
        Err(crate::Error::ObjectMissing { .. }) => return Err(Failure::Missing),
        Err(crate::Error::ObjectDamaged { reason, .. }) => return Err(Failure::Damaged(reason)),
        Err(e) => return Err(Failure::Damaged(e.to_string())),
    };
    let parsed = SealedObject::parse(&bytes)?;
    let kind = parsed.header.kind;
    let Some(keys) = keys else {
        return Ok((kind != ObjectKind::Chunk).then_some(parsed.header.refs));
    };
    let (h, plain) = open_object(keys, id, &bytes).map_err(|e| match e {
        crate::crypto::seal::OpenError::Damaged(r) => r,
        crate::crypto::seal::OpenError::OtherKey(k) => format!("sealed under another key (key id {k:08x})"),
        crate::crypto::seal::OpenError::Authentication => "failed authentication (altered, or another key)".into(),
        crate::crypto::seal::OpenError::IdMismatch => "content does not hash to its id".into(),
    })?;
    match kind {
        ObjectKind::Chunk => Ok(None),
        ObjectKind::SegmentNode => Ok(AnySegment::decode(&h.refs, &plain).map(|_| Some(h.refs))?),
        ObjectKind::IndexNode => Ok(IndexNode::decode(&h.refs, &plain).map(|_| Some(h.refs))?),
    }
}

/// The first missing or damaged object under `id`, memoised per subtree.
fn first_bad(
    id: &ObjectId,
    present: &HashSet<ObjectId>,
    bad: &HashSet<ObjectId>,
    node_refs: &HashMap<ObjectId, Vec<ObjectId>>,
    memo: &mut HashMap<ObjectId, Option<ObjectId>>,
) -> Option<ObjectId> {
    if let Some(m) = memo.get(id) {
        return *m;
    }
    let result = if !present.contains(id) || bad.contains(id) {
        Some(*id)
    } else {
        node_refs
            .get(id)
            .and_then(|refs| refs.iter().find_map(|r| first_bad(r, present, bad, node_refs, memo)))
    };
    memo.insert(*id, result);
    result
}

/// Recomputes a volume's hash from its chunks (deep verify).
fn volume_hash(reader: &ObjectReader, v: &crate::point::VolumeEntry) -> Result<String> {
    let leaves = volume_leaves(reader, v)?;
    let cache: Mutex<HashMap<ObjectId, [u8; 32]>> = Mutex::new(HashMap::new());
    let hashes: Vec<Result<[u8; 32]>> = leaves
        .par_iter()
        .enumerate()
        .map_init(Vec::new, |buf, (i, leaf)| {
            let offset = i as u64 * v.segment_size;
            let len = (v.size - offset).min(v.segment_size) as usize;
            match leaf {
                None => Ok(zero_segment_hash(len)),
                Some(id) => {
                    if let Some(h) = cache.lock().expect("cache").get(id) {
                        return Ok(*h);
                    }
                    buf.resize(len, 0);
                    let h = assemble_segment(reader, id, &mut buf[..len], false)?.hash;
                    cache.lock().expect("cache").insert(*id, h);
                    Ok(h)
                }
            }
        })
        .collect();
    let mut h = VolumeHasher::new(v.size);
    for s in hashes {
        h.segment(&s?);
    }
    Ok(h.finish_hex())
}
