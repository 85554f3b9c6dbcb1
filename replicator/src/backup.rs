//! The scan engine: turns the volumes of a protection group into a recovery point.
//!
//! Each volume is read segment by segment, segments in parallel on every core
//! (one 4 MiB buffer per worker: memory does not grow with the volume). A segment
//! whose BLAKE3 hash matches the agent state of the last point keeps its segment
//! node; others are cut into chunks, and only chunks the store lacks are sealed and
//! written. Then the index tree is built, every object made durable, and the point
//! committed. A failure at any step leaves the earlier points untouched; objects
//! already made durable are reused by the next backup.
//!
//! With `block_map`, every full segment node also stores a block map (keyed
//! hashes of its 4 KiB blocks). Whenever the segment a changed segment replaces
//! has one (or is a delta over one), the segment is stored as a delta: the blocks
//! whose hash differs, nothing else, unless more than half of it changed. The
//! segment a changed one replaces comes from the agent state, or, with no state
//! (the first cycle after a failover, towards a repository seeded from the
//! surviving volume), from the group's last point in the repository.
//!
//! With freeze / thaw hooks the volumes are scanned twice: once live (sealing
//! nearly everything while the application runs), then frozen, where only segments
//! that changed since the live pass are re-chunked. The frozen window is reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::agent_state::{AgentState, SegmentState, VolumeState};
use crate::chunker::{CHUNK_MAX, Piece, Run, SEGMENT_SIZE, cut_runs, runs, segment_hash};
use crate::crypto::{Keys, ObjectKind, seal_object};
use crate::error::{Error, Result};
use crate::file_formats::MAP_BLOCK;
use crate::hooks::ThawGuard;
use crate::index::{AnySegment, BlockMap, DeltaNode, SegmentNode, build_tree};
use crate::object_id::ObjectId;
use crate::point::{Consistency, PointBody, PointHeader, RecoveryPoint, RootRef, VolumeEntry, check_name};
use crate::point_reader::{read_full_segment, read_segment_node, volume_leaves};
use crate::progress::Progress;
use crate::reader::ObjectReader;
use crate::store::ChunkStore;
use crate::tenant_repository::{CycleReport, TenantRepository};
use crate::volume::{SegmentBuf, VolumeSource};
use crate::volume_hash::{VolumeHasher, zero_segment_hash};

/// What to back up and how.
#[derive(Clone)]
pub struct BackupOptions {
    pub group: String,
    /// `(name, path)` of each volume of the group.
    pub volumes: Vec<(String, PathBuf)>,
    pub freeze: Option<String>,
    pub thaw: Option<String>,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// Set to stop at the next segment (SIGINT / SIGTERM).
    pub cancel: Arc<AtomicBool>,
    pub progress: Option<Progress>,
    /// Store a block map with every full segment node, so later points (this
    /// agent's, or the reverse agent's after a failover) store scattered small
    /// changes as block deltas. Costs 16 bytes per 4 KiB block in the index.
    pub block_map: bool,
}

/// What a backup did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupSummary {
    pub group: String,
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    pub consistency: Consistency,
    pub volumes: usize,
    /// Volume bytes covered (holes included).
    pub bytes_scanned: u64,
    /// Bytes read from the volumes (holes skipped).
    pub bytes_read: u64,
    /// Plaintext bytes of chunks the repository did not have (after dedup).
    pub bytes_new: u64,
    /// Sealed bytes written to the repository (after compression), index included.
    pub bytes_stored: u64,
    pub objects_new: u64,
    pub segments: u64,
    pub segments_changed: u64,
    /// Changed segments stored as block deltas over an earlier mapped segment.
    pub segments_delta: u64,
    pub frozen_ms: Option<u64>,
    pub elapsed_secs: f64,
}

#[derive(Default)]
struct Counters {
    scanned: AtomicU64,
    read: AtomicU64,
    new: AtomicU64,
    stored: AtomicU64,
    objects: AtomicU64,
    segments: AtomicU64,
    changed: AtomicU64,
    delta: AtomicU64,
}

/// What a volume's segments are compared against: see [`Ctx::scan_volume`].
#[derive(Clone, Copy)]
struct VolumeScan<'a> {
    vol: &'a VolumeSource,
    base: Option<&'a VolumeState>,
    priors: &'a [Option<ObjectId>],
    gone: &'a std::collections::HashSet<ObjectId>,
}

struct Ctx<'a> {
    keys: &'a Keys,
    store: &'a dyn ChunkStore,
    block_map: bool,
    counters: Counters,
    cancel: &'a AtomicBool,
    progress: Option<&'a Progress>,
    total: u64,
    /// Workers of their own when the store wants more callers than cores
    /// (see [`ChunkStore::callers_per_core`]); else rayon's global pool.
    pool: Option<rayon::ThreadPool>,
}

impl Ctx<'_> {
    /// Seals and stores an object the store was found to lack.
    fn put_new(&self, kind: ObjectKind, id: &ObjectId, refs: &[ObjectId], plain: &[u8]) -> Result<()> {
        let sealed = seal_object(self.keys, kind, id, refs, plain);
        let sealed_len = sealed.len() as u64;
        if self.store.put_owned(id, sealed)? {
            if kind == ObjectKind::Chunk {
                self.counters.new.fetch_add(plain.len() as u64, Ordering::Relaxed);
            }
            self.counters.stored.fetch_add(sealed_len, Ordering::Relaxed);
            self.counters.objects.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Chunks, seals and stores one segment; returns its segment node id (`None`
    /// when the segment is all zeros) and its data (non-hole) bytes.
    fn store_segment(&self, buf: &[u8], runs: &[Run]) -> Result<(Option<ObjectId>, u64)> {
        if runs.iter().all(|r| r.zero) {
            return Ok((None, 0));
        }
        let pieces = cut_runs(buf, runs, self.keys.cdc_seed());
        let map = self.block_map.then(|| {
            let plain = BlockMap::of(buf, |b| self.keys.block_hash(b)).encode();
            (self.keys.chunk_id(&plain), plain)
        });
        // The node is known before anything is stored: its chunks' ids and
        // lengths (and its map's id).
        let mut chunks: Vec<(ObjectId, std::ops::Range<usize>)> = Vec::with_capacity(pieces.len());
        let mut extents = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match piece {
                Piece::Hole(n) => extents.push((n as u32, None)),
                Piece::Chunk(r) => {
                    let id = self.keys.chunk_id(&buf[r.clone()]);
                    extents.push((r.len() as u32, Some(id)));
                    chunks.push((id, r));
                }
            }
        }
        let data = chunks.iter().map(|c| c.1.len() as u64).sum();
        let node = SegmentNode {
            extents,
            map: map.as_ref().map(|m| m.0),
        };
        let (refs, plain) = node.encode();
        let node_id = self.keys.node_id(&refs, &plain);
        // One presence query per segment (one round trip to a remote store):
        // the chunks, the map and the node. Dedup never sends what the receiver
        // holds, nodes included (a segment whose state was lost may well be
        // there already).
        let mut query: Vec<ObjectId> = chunks.iter().map(|c| c.0).collect();
        query.extend(map.as_ref().map(|m| m.0));
        query.push(node_id);
        let mut missing = self.store.missing(&query)?;
        let node_missing = missing.pop().expect("the node's answer");
        if let Some((id, plain)) = &map
            && missing.pop() == Some(true)
        {
            // Stored as a chunk: sealed, deduplicated, collected like one.
            self.put_new(ObjectKind::Chunk, id, &[], plain)?;
        }
        for ((id, r), missing) in chunks.iter().zip(missing) {
            if missing {
                self.put_new(ObjectKind::Chunk, id, &[], &buf[r.clone()])?;
            }
        }
        if node_missing {
            self.put_new(ObjectKind::SegmentNode, &node_id, &refs, &plain)?;
        }
        Ok((Some(node_id), data))
    }

    /// Stores a changed segment as a delta over the mapped full segment node that
    /// `prior` (the node the segment had at the last point) is or is based on.
    /// Returns the segment's node and whether it is a delta (not the base
    /// itself, when the segment is back to the base's content); `None` when
    /// there is no such base, it is of another length, or more than half of the
    /// segment changed (a full node is then smaller to restore).
    fn store_delta(&self, buf: &[u8], runs: &[Run], prior: &ObjectId) -> Result<Option<(ObjectId, bool)>> {
        let reader = ObjectReader::new(self.store, self.keys);
        let (base_id, base) = match read_segment_node(&reader, prior)? {
            AnySegment::Full(node) => (*prior, node),
            AnySegment::Delta(delta) => (delta.base, read_full_segment(&reader, &delta.base)?),
        };
        let Some(map_id) = base.map else {
            return Ok(None);
        };
        if base.len() != buf.len() as u64 {
            return Ok(None);
        }
        let (_, plain) = reader.read(&map_id, ObjectKind::Chunk)?;
        let map = BlockMap::decode(&plain, buf.len()).map_err(|reason| reader.damaged(&map_id, reason))?;
        let changed: Vec<usize> = buf
            .chunks(MAP_BLOCK)
            .zip(&map.hashes)
            .enumerate()
            .filter(|(_, (block, h))| self.keys.block_hash(block) != **h)
            .map(|(i, _)| i)
            .collect();
        let changed_bytes: usize = changed.iter().map(|b| MAP_BLOCK.min(buf.len() - b * MAP_BLOCK)).sum();
        if changed_bytes * 2 > buf.len() {
            return Ok(None);
        }
        // Runs of consecutive changed blocks, each at most a chunk long; an
        // all-zero run is a zero patch (no object).
        let max_blocks = CHUNK_MAX as usize / MAP_BLOCK;
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
        for &b in &changed {
            match ranges.last_mut() {
                Some(r) if r.end == b && r.len() < max_blocks => r.end += 1,
                _ => ranges.push(b..b + 1),
            }
        }
        let bytes = |r: &std::ops::Range<usize>| &buf[r.start * MAP_BLOCK..(r.end * MAP_BLOCK).min(buf.len())];
        let zero = |r: &std::ops::Range<usize>| {
            let (s, e) = (r.start * MAP_BLOCK, (r.end * MAP_BLOCK).min(buf.len()));
            runs.iter()
                .any(|run| run.zero && run.range.start <= s && e <= run.range.end)
        };
        let patches: Vec<(u32, u32, Option<ObjectId>)> = ranges
            .iter()
            .map(|r| {
                let data = bytes(r);
                let id = (!zero(r)).then(|| self.keys.chunk_id(data));
                ((r.start * MAP_BLOCK) as u32, data.len() as u32, id)
            })
            .collect();
        if patches.is_empty() {
            // Back to the base's content: the base is the segment.
            return Ok(Some((base_id, false)));
        }
        let ids: Vec<ObjectId> = patches.iter().filter_map(|p| p.2).collect();
        let node = DeltaNode {
            len: buf.len() as u32,
            base: base_id,
            patches,
        };
        let (refs, plain) = node.encode();
        let id = self.keys.node_id(&refs, &plain);
        // The patches and the node in one presence query (one round trip).
        let mut query = ids.clone();
        query.push(id);
        let mut missing = self.store.missing(&query)?;
        let node_missing = missing.pop().expect("the node's answer");
        let mut next = ids.iter().zip(missing);
        for (r, p) in ranges.iter().zip(&node.patches) {
            if p.2.is_some() {
                let (id, missing) = next.next().expect("one id per data patch");
                if missing {
                    self.put_new(ObjectKind::Chunk, id, &[], bytes(r))?;
                }
            }
        }
        if node_missing {
            self.put_new(ObjectKind::SegmentNode, &id, &refs, &plain)?;
        }
        Ok(Some((id, true)))
    }

    /// Reads, compares and (when changed) stores segment `i` of a volume.
    fn scan_segment(
        &self,
        v: &VolumeScan,
        reader: &Result<std::fs::File>,
        buf: &mut SegmentBuf,
        i: usize,
    ) -> Result<SegmentState> {
        let VolumeScan {
            vol,
            base,
            priors,
            gone,
        } = *v;
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let reader = reader
            .as_ref()
            .map_err(|e| Error::io(e.to_string(), std::io::Error::other("open failed")))?;
        let read = vol.read_segment(reader, i, buf)?;
        let runs = if read == 0 { Vec::new() } else { runs(buf) };
        let hash = if read == 0 {
            zero_segment_hash(buf.len())
        } else {
            segment_hash(buf, &runs)
        };
        self.counters.scanned.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.counters.read.fetch_add(read, Ordering::Relaxed);
        self.counters.segments.fetch_add(1, Ordering::Relaxed);
        let result = match base.and_then(|b| b.segments.get(i)) {
            // Reuse the node of an unchanged segment, if the store still has it
            // (a node present in the store has all its chunks present).
            Some(prev) if prev.hash == hash && prev.node.is_none_or(|n| !gone.contains(&n)) => *prev,
            _ => {
                self.counters.changed.fetch_add(1, Ordering::Relaxed);
                let prior = priors.get(i).copied().flatten().filter(|p| !gone.contains(p));
                let delta = match prior {
                    Some(prior) if read > 0 => match self.store_delta(buf, &runs, &prior) {
                        Ok(d) => d,
                        // A base collected or damaged since costs a full
                        // segment, never the point; other errors stop it.
                        Err(
                            e @ (Error::ObjectMissing { .. }
                            | Error::ObjectDamaged { .. }
                            | Error::ObjectAuthentication { .. }),
                        ) => {
                            tracing::warn!(segment = i, error = %e, "cannot use the segment's previous block map; storing it in full");
                            None
                        }
                        Err(e) => return Err(e),
                    },
                    _ => None,
                };
                let (node, data, mapped) = match delta {
                    Some((id, is_delta)) => {
                        if is_delta {
                            self.counters.delta.fetch_add(1, Ordering::Relaxed);
                        }
                        let data = runs.iter().filter(|r| !r.zero).map(|r| r.range.len() as u64).sum();
                        (Some(id), data, true)
                    }
                    None if read == 0 => (None, 0, false),
                    None => {
                        let (node, data) = self.store_segment(buf, &runs)?;
                        (node, data, self.block_map && node.is_some())
                    }
                };
                SegmentState {
                    hash,
                    node,
                    data_bytes: data as u32,
                    mapped,
                }
            }
        };
        if let Some(p) = self.progress {
            p(self.counters.scanned.load(Ordering::Relaxed), self.total);
        }
        Ok(result)
    }

    /// Scans one volume against `base` (what the last point or pass saw).
    /// `priors` are the segment nodes of the volume at the group's last point,
    /// the bases of block deltas (empty when there are none to use).
    fn scan_volume(
        &self,
        vol: &VolumeSource,
        base: Option<&VolumeState>,
        priors: &[Option<ObjectId>],
    ) -> Result<VolumeState> {
        // Nodes the state remembers but the store no longer has (repaired or
        // collected): one batched query up front, not one per segment.
        let gone: std::collections::HashSet<ObjectId> = match base {
            Some(b) => {
                let mut ids: Vec<ObjectId> = b.segments.iter().filter_map(|s| s.node).collect();
                ids.sort_unstable();
                ids.dedup();
                let missing = self.store.missing(&ids)?;
                ids.into_iter()
                    .zip(missing)
                    .filter(|(_, m)| *m)
                    .map(|(id, _)| id)
                    .collect()
            }
            None => Default::default(),
        };
        let scan = VolumeScan {
            vol,
            base,
            priors,
            gone: &gone,
        };
        let segments = || {
            (0..vol.segments())
                .into_par_iter()
                // Short jobs, so a run of heavy segments (data is often bunched in a
                // few regions of a volume) is shared between the cores.
                .with_max_len(4)
                .map_init(
                    || (vol.reader(), SegmentBuf::default()),
                    |(reader, buf), i| self.scan_segment(&scan, &*reader, buf, i),
                )
                .collect::<Vec<Result<SegmentState>>>()
        };
        let segs = match &self.pool {
            Some(pool) => pool.install(segments),
            None => segments(),
        };
        Ok(VolumeState {
            name: vol.name.clone(),
            size: vol.size,
            segment_size: SEGMENT_SIZE as u64,
            segments: segs.into_iter().collect::<Result<_>>()?,
        })
    }
}

/// The segment nodes of each volume at the group's last point, where that
/// volume has block maps: without agent state these are the bases of block
/// deltas. Empty (and nothing read) otherwise.
fn prior_segments(
    repo: &dyn TenantRepository,
    keys: &Keys,
    last: Option<&crate::point::PointRecord>,
    sources: &[VolumeSource],
) -> Result<Vec<Vec<Option<ObjectId>>>> {
    let Some(last) = last else {
        return Ok(vec![Vec::new(); sources.len()]);
    };
    let store = repo.store(&last.header.group)?;
    let reader = ObjectReader::new(store.as_ref(), keys);
    let point = last.open(keys, &repo.describe())?;
    let mut out = Vec::with_capacity(sources.len());
    for src in sources {
        match point
            .body
            .volumes
            .iter()
            .find(|v| v.name == src.name && v.segment_size == SEGMENT_SIZE as u64 && v.block_maps)
        {
            Some(entry) => out.push(volume_leaves(&reader, entry)?),
            None => out.push(Vec::new()),
        }
    }
    Ok(out)
}

/// Backs up the volumes of a group into a new recovery point.
pub fn backup(repo: &dyn TenantRepository, keys: &Keys, opts: &BackupOptions) -> Result<BackupSummary> {
    let started = Instant::now();
    check_name("group", &opts.group)?;
    if opts.volumes.is_empty() {
        return Err(Error::Invalid {
            what: "group",
            value: opts.group.clone(),
            reason: "no volume given: pass --volume NAME=PATH".into(),
        });
    }
    for (i, (name, _)) in opts.volumes.iter().enumerate() {
        check_name("volume name", name)?;
        if opts.volumes[..i].iter().any(|(n, _)| n == name) {
            return Err(Error::Invalid {
                what: "volume name",
                value: name.clone(),
                reason: "given twice in one group".into(),
            });
        }
    }
    if opts.freeze.is_some() != opts.thaw.is_some() {
        return Err(Error::Invalid {
            what: "hooks",
            value: opts.freeze.clone().or(opts.thaw.clone()).unwrap_or_default(),
            reason: "--freeze and --thaw go together".into(),
        });
    }
    let sources = opts
        .volumes
        .iter()
        .map(|(n, p)| VolumeSource::open(n, p))
        .collect::<Result<Vec<_>>>()?;
    let store = repo.store(&opts.group)?;
    let repo_id = repo.repository_id();
    let points = repo.points(Some(&opts.group))?;
    let last = points.last().cloned();
    let state_path = AgentState::path(&opts.state_dir, &repo_id, repo.tenant(), &opts.group);
    let base = AgentState::load(&state_path).filter(|s| {
        s.repository_id == repo_id
            && s.key_fingerprint == keys.fingerprint_hex()
            && points.iter().any(|p| p.header.seq == s.base_seq)
    });
    let ctx = Ctx {
        keys,
        store: store.as_ref(),
        block_map: opts.block_map,
        counters: Counters::default(),
        cancel: &opts.cancel,
        progress: opts.progress.as_ref(),
        total: sources.iter().map(|s| s.size).sum::<u64>() * if opts.freeze.is_some() { 2 } else { 1 },
        pool: match store.callers_per_core() {
            1 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(rayon::current_num_threads() * n)
                    .thread_name(|i| format!("backup-{i}"))
                    .build()
                    .map_err(|e| Error::io("start the backup's workers", std::io::Error::other(e)))?,
            ),
        },
    };
    let result = (|| -> Result<BackupSummary> {
        // Bases of block deltas: the nodes the agent state remembers, else (no
        // state, e.g. after a failover) the last point's, if it has block maps.
        let priors: Vec<Vec<Option<ObjectId>>> = match &base {
            Some(b) => sources
                .iter()
                .map(|v| {
                    b.volume(&v.name, SEGMENT_SIZE as u64)
                        .map(|s| s.segments.iter().map(|s| s.node.filter(|_| s.mapped)).collect())
                        .unwrap_or_default()
                })
                .collect(),
            None => prior_segments(repo, keys, last.as_ref(), &sources).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the last point's index; changed segments are stored in full");
                vec![Vec::new(); sources.len()]
            }),
        };
        let scan_all = |prev: &dyn Fn(&VolumeSource) -> Option<VolumeState>| -> Result<Vec<VolumeState>> {
            sources
                .iter()
                .zip(&priors)
                .map(|(v, p)| ctx.scan_volume(v, prev(v).as_ref(), p))
                .collect()
        };
        let from_state = |v: &VolumeSource| {
            base.as_ref()
                .and_then(|b| b.volume(&v.name, SEGMENT_SIZE as u64))
                .cloned()
        };
        let (scanned, taken_at, consistency, frozen_ms) = match (&opts.freeze, &opts.thaw) {
            (Some(freeze), Some(thaw)) => {
                let live = scan_all(&from_state)?;
                let guard = ThawGuard::freeze(freeze, thaw)?;
                let taken_at = Utc::now();
                let frozen = scan_all(&|v: &VolumeSource| live.iter().find(|s| s.name == v.name).cloned())?;
                let ms = guard.thaw()?;
                tracing::info!(group = %opts.group, frozen_ms = ms, "volumes thawed");
                (frozen, taken_at, Consistency::Frozen, Some(ms))
            }
            _ => {
                let taken_at = Utc::now();
                (scan_all(&from_state)?, taken_at, Consistency::Fuzzy, None)
            }
        };
        // Index trees, then durability, then the commit.
        let mut entries = Vec::new();
        for (src, sv) in sources.iter().zip(&scanned) {
            let leaves: Vec<Option<ObjectId>> = sv.segments.iter().map(|s| s.node).collect();
            // Build the whole tree, ask the store once which nodes it lacks, and
            // put those bottom up (the order they were built in).
            let mut nodes = Vec::new();
            let root = build_tree(&leaves, |node| {
                let (refs, plain) = node.encode();
                let id = keys.node_id(&refs, &plain);
                nodes.push((id, refs, plain));
                Ok::<_, Error>(id)
            })?;
            let ids: Vec<ObjectId> = nodes.iter().map(|n| n.0).collect();
            let missing = store.missing(&ids)?;
            for ((id, refs, plain), missing) in nodes.iter().zip(missing) {
                if missing {
                    ctx.put_new(ObjectKind::IndexNode, id, refs, plain)?;
                }
            }
            let mut h = VolumeHasher::new(src.size);
            for s in &sv.segments {
                h.segment(&s.hash);
            }
            entries.push(VolumeEntry {
                name: src.name.clone(),
                size: src.size,
                segment_size: SEGMENT_SIZE as u64,
                root: root.id,
                levels: root.levels,
                volume_hash: h.finish_hex(),
                data_bytes: sv.segments.iter().map(|s| s.data_bytes as u64).sum(),
                block_maps: sv.segments.iter().any(|s| s.mapped),
            });
        }
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        store.sync()?;
        for e in &entries {
            if let Some(root) = e.root
                && !store.contains(&root)?
            {
                // Stored and synced, yet gone: a garbage collection with a short
                // grace ran on the receiver meanwhile. The next cycle re-sends it.
                return Err(Error::Conflict {
                    repository: repo.describe(),
                    message: format!(
                        "object {root} of this cycle is no longer present (a garbage collection ran meanwhile); \
                         the cycle must be redone"
                    ),
                });
            }
        }
        let seq = last.as_ref().map(|p| p.header.seq).unwrap_or(0) + 1;
        let point = RecoveryPoint {
            header: PointHeader {
                tenant: repo.tenant().into(),
                group: opts.group.clone(),
                seq,
                taken_at,
                consistency,
                key_id: keys.key_id(),
                roots: entries.iter().map(|e| RootRef(e.root)).collect(),
            },
            body: PointBody {
                volumes: entries,
                frozen_ms,
                written_by: format!("lifeline {}", env!("CARGO_PKG_VERSION")),
            },
        };
        repo.commit_point(
            &point.seal(keys),
            &CycleReport {
                elapsed_secs: started.elapsed().as_secs_f64(),
                bytes_sent: ctx.counters.stored.load(Ordering::Relaxed),
            },
        )?;
        let state = AgentState {
            repository_id: repo_id.clone(),
            key_fingerprint: keys.fingerprint_hex(),
            base_seq: seq,
            volumes: scanned,
        };
        if let Err(e) = state.save(&state_path) {
            // The point is committed; without state the next backup only rescans.
            tracing::warn!(error = %e, "could not save agent state; the next backup will re-chunk every segment");
        }
        let c = &ctx.counters;
        Ok(BackupSummary {
            group: opts.group.clone(),
            seq,
            taken_at,
            consistency,
            volumes: sources.len(),
            bytes_scanned: c.scanned.load(Ordering::Relaxed),
            bytes_read: c.read.load(Ordering::Relaxed),
            bytes_new: c.new.load(Ordering::Relaxed),
            bytes_stored: c.stored.load(Ordering::Relaxed),
            objects_new: c.objects.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
            segments_changed: c.changed.load(Ordering::Relaxed),
            segments_delta: c.delta.load(Ordering::Relaxed),
            frozen_ms,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    })();
    if result.is_err() {
        store.abandon();
    }
    result
}
