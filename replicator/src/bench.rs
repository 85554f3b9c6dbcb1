//! `lifeline bench`: the speed of each stage of the data path on one core, and of
//! the whole pipeline on every core, on the same data, so every change is judged
//! against the raw speed of its primitives on the same machine.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::backup::{BackupOptions, backup};
use crate::chunker::{CHUNK_AVG, Piece, SEGMENT_SIZE, cut_segment};
use crate::crypto::{KeyFile, Keys, ObjectKind, seal_object};
use crate::error::{IoContext, Result};
use crate::object_id::ObjectId;
use crate::repository::{DEFAULT_TENANT, Repository};
use crate::restore::{PointSelector, RestoreOptions, restore};

/// Sample size read from `--file` (or generated) for the per-stage figures.
pub const SAMPLE_BYTES: usize = 256 << 20;

/// One measured stage.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub threads: usize,
    pub bytes: u64,
    pub secs: f64,
    pub mb_per_s: f64,
}

impl Stage {
    fn new(stage: &str, threads: usize, bytes: u64, secs: f64) -> Stage {
        Stage {
            stage: stage.into(),
            threads,
            bytes,
            secs,
            mb_per_s: bytes as f64 / 1e6 / secs.max(1e-9),
        }
    }
}

/// Deterministic sample data resembling a used filesystem: text-like runs
/// (compressible), random runs, repeated blocks and zero runs.
pub fn sample_data(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const WORDS: &[&str] = &[
        "replica", "volume", "point ", "lifeline", "segment", "chunk\n", "the ", "of ", "data ", "and ",
    ];
    while out.len() < len {
        let run = (next() % (512 << 10)) as usize + 4096;
        let run = run.min(len - out.len());
        match next() % 10 {
            0..=4 => {
                let target = out.len() + run;
                while out.len() < target {
                    let w = WORDS[(next() % WORDS.len() as u64) as usize];
                    out.extend_from_slice(w.as_bytes());
                    if next() % 7 == 0 {
                        out.extend_from_slice(format!("{}", next() % 100_000).as_bytes());
                    }
                }
                out.truncate(len);
            }
            5..=7 => {
                for _ in 0..run / 8 {
                    out.extend_from_slice(&next().to_le_bytes());
                }
            }
            _ => out.resize(out.len() + run, 0),
        }
    }
    out.truncate(len);
    out
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

/// Runs every stage and the pipeline; `file` is the data to use (else generated).
pub fn run(file: Option<&Path>, work_dir: &Path) -> Result<Vec<Stage>> {
    let mut stages = Vec::new();
    let (sample, source): (Vec<u8>, PathBuf) = match file {
        Some(p) => {
            let mut buf = Vec::with_capacity(SAMPLE_BYTES);
            let (r, secs) = time(|| {
                fs::File::open(p)
                    .and_then(|f| f.take(SAMPLE_BYTES as u64).read_to_end(&mut buf))
                    .ctx(|| format!("read {}", p.display()))
            });
            r?;
            stages.push(Stage::new("read (page cache or disk)", 1, buf.len() as u64, secs));
            (buf, p.to_path_buf())
        }
        None => {
            let data = sample_data(SAMPLE_BYTES, 7);
            let p = work_dir.join("sample.img");
            fs::write(&p, &data).ctx(|| format!("write {}", p.display()))?;
            // Flush it now so the pipeline's first sync does not pay for it.
            fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("fsync {}", p.display()))?;
            (data, p)
        }
    };
    let n = sample.len() as u64;
    let keys = Keys::derive(&[9u8; 32]);
    // Chunking.
    let (pieces, secs) = time(|| {
        sample
            .chunks(SEGMENT_SIZE)
            .enumerate()
            .flat_map(|(i, seg)| {
                cut_segment(seg, keys.cdc_seed())
                    .into_iter()
                    .filter_map(move |p| match p {
                        Piece::Chunk(r) => Some(i * SEGMENT_SIZE + r.start..i * SEGMENT_SIZE + r.end),
                        Piece::Hole(_) => None,
                    })
            })
            .collect::<Vec<_>>()
    });
    stages.push(Stage::new("chunk (zero detection + FastCDC)", 1, n, secs));
    let data: u64 = pieces.iter().map(|r| r.len() as u64).sum();
    let (_, secs) = time(|| blake3::hash(&sample));
    stages.push(Stage::new("hash (BLAKE3, segment change detection)", 1, n, secs));
    let (_, secs) = time(|| {
        pieces
            .iter()
            .map(|r| keys.chunk_id(&sample[r.clone()]).0[0])
            .fold(0u8, |a, b| a ^ b)
    });
    stages.push(Stage::new("hash (keyed BLAKE3 chunk ids)", 1, data, secs));
    for level in [1, 3] {
        let (_, secs) = time(|| {
            let mut c = zstd::bulk::Compressor::new(level).expect("zstd");
            pieces
                .iter()
                .map(|r| c.compress(&sample[r.clone()]).map(|v| v.len()).unwrap_or(0))
                .sum::<usize>()
        });
        stages.push(Stage::new(&format!("compress (zstd level {level})"), 1, data, secs));
    }
    let (_, secs) = time(|| {
        let mut buf = Vec::with_capacity(CHUNK_AVG as usize * 4);
        for r in &pieces {
            buf.clear();
            buf.extend_from_slice(&sample[r.clone()]);
            let _ = keys.cipher().seal_in_place(&[0u8; 12], b"", &mut buf);
        }
    });
    stages.push(Stage::new("encrypt (AES-256-GCM)", 1, data, secs));
    let (_, secs) = time(|| {
        pieces
            .iter()
            .map(|r| {
                let c = &sample[r.clone()];
                seal_object(&keys, ObjectKind::Chunk, &keys.chunk_id(c), &[], c).len()
            })
            .sum::<usize>()
    });
    stages.push(Stage::new("seal (id + compress + encrypt)", 1, data, secs));
    drop(pieces);
    drop(sample);
    // The whole pipeline on every core, through a real repository.
    let threads = rayon::current_num_threads();
    let repo_dir = work_dir.join("repo");
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let repo = Repository::init(&repo_dir, &key.keys(), DEFAULT_TENANT)?;
    let opts = one_volume("bench", "sample", &source, work_dir);
    let keys = key.keys();
    let first = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    stages.push(Stage::new(
        "backup, first (pipeline)",
        threads,
        first.bytes_scanned,
        first.elapsed_secs,
    ));
    let again = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    stages.push(Stage::new(
        "backup, unchanged (pipeline)",
        threads,
        again.bytes_scanned,
        again.elapsed_secs,
    ));
    let r = restore(
        &repo.tenant(DEFAULT_TENANT)?,
        &keys,
        &RestoreOptions {
            group: "bench".into(),
            point: PointSelector::Latest,
            volume: "sample".into(),
            target: work_dir.join("restored.img"),
            progress: None,
        },
    )?;
    stages.push(Stage::new("restore (pipeline)", threads, r.size, r.elapsed_secs));
    Ok(stages)
}

/// The plaintext of chunk `k` of the synthetic repositories below (its
/// number, zero-padded to 64 bytes): what the lookup benchmark derives ids from.
fn bench_chunk(k: u64) -> [u8; 64] {
    let mut plain = [0u8; 64];
    plain[..8].copy_from_slice(&k.to_le_bytes());
    plain
}

/// Point `p` (seq p + 1) of group `bench` of the synthetic repositories, one
/// hour after `start` per point, with one root node.
fn bench_point(
    keys: &Keys,
    p: u64,
    root: ObjectId,
    start: chrono::DateTime<chrono::Utc>,
    written_by: &str,
) -> crate::point::RecoveryPoint {
    use crate::point::{Consistency, PointBody, PointHeader, RecoveryPoint, RootRef};
    RecoveryPoint {
        header: PointHeader {
            tenant: DEFAULT_TENANT.into(),
            group: "bench".into(),
            seq: p + 1,
            taken_at: start + chrono::Duration::hours(p as i64),
            consistency: Consistency::Fuzzy,
            key_id: keys.key_id(),
            roots: vec![RootRef(Some(root))],
        },
        body: PointBody {
            volumes: Vec::new(),
            frozen_ms: None,
            written_by: written_by.into(),
        },
    }
}

/// Builds a synthetic repository in `work_dir/repo` for the prune + GC
/// benchmark: `points` points of group `bench` (tenant `default`), an hour
/// apart, each with `per_point` chunks of its own under one node (about
/// points × (per_point + 1) objects). Returns the repository path.
pub fn build_gc_bench_repo(work_dir: &Path, points: u64, per_point: u64) -> Result<PathBuf> {
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let keys = key.keys();
    let path = work_dir.join("repo");
    let repo = Repository::init(&path, &keys, DEFAULT_TENANT)?;
    let store = repo.store(DEFAULT_TENANT)?;
    let start = chrono::Utc::now() - chrono::Duration::hours(points as i64);
    for p in 0..points {
        let mut refs = Vec::with_capacity(per_point as usize);
        for c in 0..per_point {
            let plain = bench_chunk(p * per_point + c);
            let id = keys.chunk_id(&plain);
            store.put(&id, &seal_object(&keys, ObjectKind::Chunk, &id, &[], &plain))?;
            refs.push(id);
        }
        let plain = p.to_le_bytes();
        let root = keys.node_id(&refs, &plain);
        store.put(&root, &seal_object(&keys, ObjectKind::IndexNode, &root, &refs, &plain))?;
        store.sync()?;
        let point = bench_point(&keys, p, root, start, "gc bench");
        repo.commit_point(&point.seal(&keys))?;
    }
    Ok(path)
}

/// Builds the same synthetic repository as [`build_gc_bench_repo`] (same
/// objects, same ids, same points), but writes its packs and point objects
/// directly, on every core, and no catalog: what `lifeline repair` rebuilds
/// from. Packs hold `per_pack` objects each (about 1,000: a 16 MiB pack of
/// 16 KiB chunks), so the number of packs and footer entries repair reads is
/// that of a real repository with as many objects, while the objects
/// themselves stay small (64 bytes of data) and the whole fits a small disk.
/// Returns the repository path.
pub fn build_repair_bench_repo(work_dir: &Path, points: u64, per_point: u64, per_pack: u64) -> Result<PathBuf> {
    use crate::point::PointRecord;
    use crate::store::pack::{self, ObjectLocation, PackId};
    use rayon::prelude::*;
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let keys = key.keys();
    let path = work_dir.join("repo");
    let repo = Repository::init(&path, &keys, DEFAULT_TENANT)?;
    let per = per_point + 1;
    let total = points * per;
    let root_of = |p: u64| {
        let refs: Vec<ObjectId> = (0..per_point)
            .map(|c| keys.chunk_id(&bench_chunk(p * per_point + c)))
            .collect();
        let plain = p.to_le_bytes();
        (keys.node_id(&refs, &plain), refs, plain)
    };
    let packs_dir = path.join("tenants").join(DEFAULT_TENANT).join("objects").join("packs");
    let per_pack = per_pack.max(1);
    let roots: Vec<(u64, ObjectId)> = (0..total.div_ceil(per_pack))
        .into_par_iter()
        .map(|j| -> Result<Vec<(u64, ObjectId)>> {
            let id = PackId::random();
            let mut bytes = pack::header().to_vec();
            let mut entries = Vec::new();
            let mut roots = Vec::new();
            for i in j * per_pack..((j + 1) * per_pack).min(total) {
                let (p, c) = (i / per, i % per);
                let (oid, sealed) = if c < per_point {
                    let plain = bench_chunk(p * per_point + c);
                    let oid = keys.chunk_id(&plain);
                    (oid, seal_object(&keys, ObjectKind::Chunk, &oid, &[], &plain))
                } else {
                    let (root, refs, plain) = root_of(p);
                    roots.push((p, root));
                    (root, seal_object(&keys, ObjectKind::IndexNode, &root, &refs, &plain))
                };
                let loc = ObjectLocation {
                    pack: id,
                    offset: bytes.len() as u64,
                    len: sealed.len() as u32,
                    kind: sealed.get(5).copied().unwrap_or(0),
                };
                bytes.extend_from_slice(&sealed);
                entries.push((oid, loc));
            }
            bytes.extend_from_slice(&pack::footer(&entries));
            let hex = id.to_hex();
            let dir = packs_dir.join(&hex[..2]);
            fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
            let file = dir.join(&hex);
            fs::write(&file, &bytes).ctx(|| format!("write {}", file.display()))?;
            Ok(roots)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let start = chrono::Utc::now() - chrono::Duration::hours(points as i64);
    let storage = repo.storage().clone();
    roots.par_iter().try_for_each(|(p, root)| -> Result<()> {
        let point = bench_point(&keys, *p, *root, start, "repair bench");
        let record = PointRecord {
            committed_at: Some(point.header.taken_at),
            ..point.seal(&keys)
        };
        let key = crate::record_object::point_key(DEFAULT_TENANT, "bench", p + 1);
        storage.put_if_absent(&key, &crate::record_object::encode_point(&record))?;
        Ok(())
    })?;
    drop(repo);
    // The catalog init wrote is the one thing repair must rebuild.
    let catalog = path.join("catalog");
    fs::remove_dir_all(&catalog).ctx(|| format!("remove {}", catalog.display()))?;
    Ok(path)
}

/// Presence lookups per second in the catalog cache of a repository built by
/// [`build_gc_bench_repo`] in `work_dir` (what a backup asks for every chunk):
/// `n` ids of existing objects in random order, on every core.
pub fn catalog_lookups(work_dir: &Path, points: u64, per_point: u64, n: u64) -> Result<f64> {
    use rayon::prelude::*;
    let keys = KeyFile::load(&work_dir.join("bench.key"), None)?.keys();
    let repo = Repository::open(&work_dir.join("repo"))?;
    let store = repo.store(DEFAULT_TENANT)?;
    let total = points * per_point;
    let ids: Vec<_> = (0..n)
        .map(|i| {
            // A multiplicative hash spreads the picks over the whole repository.
            let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total.max(1);
            keys.chunk_id(&bench_chunk(k))
        })
        .collect();
    let t = Instant::now();
    let found = ids
        .par_iter()
        .map(|id| store.contains(id).map(u64::from))
        .sum::<Result<u64>>()?;
    let secs = t.elapsed().as_secs_f64();
    if found != n {
        return Err(crate::error::Error::Invalid {
            what: "catalog lookup benchmark",
            value: format!("{found} of {n}"),
            reason: "some existing objects were not found".into(),
        });
    }
    Ok(n as f64 / secs.max(1e-9))
}

/// Backup options for one volume, with the agent state in `work_dir/state`.
fn one_volume(group: &str, volume: &str, path: &Path, work_dir: &Path) -> BackupOptions {
    BackupOptions {
        group: group.into(),
        volumes: vec![(volume.into(), path.to_path_buf())],
        freeze: None,
        thaw: None,
        state_dir: work_dir.join("state"),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        block_map: false,
    }
}

/// What [`s3_compare`] measured: the same volume backed up and restored
/// through a local directory and through an `s3://` repository.
#[derive(Debug, Clone, Serialize)]
pub struct S3Compare {
    pub volume_bytes: u64,
    pub local_backup_mib_s: f64,
    pub local_restore_mib_s: f64,
    pub s3_backup_mib_s: f64,
    pub s3_restore_mib_s: f64,
    /// s3 / local, in percent.
    pub backup_ratio_pct: f64,
    pub restore_ratio_pct: f64,
    /// Bytes the first backup stored (sealed, compressed).
    pub bytes_stored: u64,
    pub first_backup: crate::store::S3Counts,
    pub unchanged_backup: crate::store::S3Counts,
    pub restore: crate::store::S3Counts,
    /// Requests of an unchanged re-backup per GiB of volume (goal <= 10).
    pub unchanged_requests_per_gib: f64,
    /// PUTs of the first backup per GiB of new data stored (goal <= 70).
    pub puts_per_gib_new: f64,
    /// Attempts that failed and were retried, over the whole run.
    pub retried: u64,
}

/// Backs `file` up and restores it through a local repository in
/// `work_dir`, then through a new `s3://` repository at `location` (which
/// must be an empty bucket or prefix), with its cache in `work_dir`.
pub fn s3_compare(
    file: &Path,
    work_dir: &Path,
    location: &crate::store::S3Location,
    settings: &crate::store::S3Settings,
) -> Result<S3Compare> {
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let keys = key.keys();
    let restore_to = |repo: &Repository, name: &str| {
        restore(
            &repo.tenant(DEFAULT_TENANT)?,
            &keys,
            &RestoreOptions {
                group: "bench".into(),
                point: PointSelector::Latest,
                volume: "v".into(),
                target: work_dir.join(name),
                progress: None,
            },
        )
    };
    let mib = |bytes: u64, secs: f64| bytes as f64 / (1 << 20) as f64 / secs.max(1e-9);
    // Local.
    let local = Repository::init(&work_dir.join("local"), &keys, DEFAULT_TENANT)?;
    let first = backup(
        &local.tenant(DEFAULT_TENANT)?,
        &keys,
        &one_volume("bench", "v", file, &work_dir.join("l")),
    )?;
    drop_caches();
    let lr = restore_to(&local, "local.out")?;
    let _ = fs::remove_file(work_dir.join("local.out"));
    drop(local);
    let _ = fs::remove_dir_all(work_dir.join("local"));
    // S3.
    let stats = crate::store::s3::process_stats().clone();
    let repo = Repository::init_s3(location, settings, &work_dir.join("s3-state"), &keys, DEFAULT_TENANT)?;
    let opts = one_volume("bench", "v", file, &work_dir.join("s"));
    let c0 = stats.counts();
    let s3_first = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    let c1 = stats.counts();
    let again = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    let c2 = stats.counts();
    drop_caches();
    let sr = restore_to(&repo, "s3.out")?;
    let c3 = stats.counts();
    let _ = fs::remove_file(work_dir.join("s3.out"));
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let (lb, lrs) = (
        mib(first.bytes_scanned, first.elapsed_secs),
        mib(lr.size, lr.elapsed_secs),
    );
    let (sb, srs) = (
        mib(s3_first.bytes_scanned, s3_first.elapsed_secs),
        mib(sr.size, sr.elapsed_secs),
    );
    Ok(S3Compare {
        volume_bytes: first.bytes_scanned,
        local_backup_mib_s: lb,
        local_restore_mib_s: lrs,
        s3_backup_mib_s: sb,
        s3_restore_mib_s: srs,
        backup_ratio_pct: 100.0 * sb / lb,
        restore_ratio_pct: 100.0 * srs / lrs,
        bytes_stored: s3_first.bytes_stored,
        first_backup: c1.since(&c0),
        unchanged_backup: c2.since(&c1),
        restore: c3.since(&c2),
        unchanged_requests_per_gib: c2.since(&c1).requests() as f64 / gib(again.bytes_scanned),
        puts_per_gib_new: c1.since(&c0).put as f64 / gib(s3_first.bytes_stored.max(1)),
        retried: c3.since(&c0).failed,
    })
}

/// Drops the page cache (as root) so a restore reads the repository, not
/// memory; without root it just does not.
fn drop_caches() {
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// What [`small_cycles`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct SmallCycles {
    pub cycles: u64,
    pub bytes_per_cycle: u64,
    pub pack_files: u64,
    pub pack_bytes: u64,
    pub secs: f64,
}

/// `cycles` backups of a 32 MiB volume into a local repository, each after
/// `bytes_per_cycle` random bytes were written at a random place: how many
/// pack files they leave (the goal is about stored bytes / 16 MiB plus a
/// small constant, not one per cycle).
pub fn small_cycles(work_dir: &Path, cycles: u64, bytes_per_cycle: usize) -> Result<SmallCycles> {
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let keys = key.keys();
    let repo = Repository::init(&work_dir.join("repo"), &keys, DEFAULT_TENANT)?;
    let vol = work_dir.join("volume.img");
    let f = fs::File::create(&vol).ctx(|| format!("create {}", vol.display()))?;
    f.set_len(32 << 20).ctx(|| format!("size {}", vol.display()))?;
    let opts = one_volume("cycles", "v", &vol, work_dir);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let t = Instant::now();
    let mut buf = vec![0u8; bytes_per_cycle];
    for _ in 0..cycles {
        for b in buf.chunks_mut(8) {
            let v = next().to_le_bytes();
            b.copy_from_slice(&v[..b.len()]);
        }
        let at = next() % ((32 << 20) - bytes_per_cycle as u64);
        std::os::unix::fs::FileExt::write_all_at(&f, &buf, at).ctx(|| format!("write {}", vol.display()))?;
        backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let packs =
        crate::store::local_dir::pack_files(&work_dir.join("repo/tenants").join(DEFAULT_TENANT).join("objects"))?;
    let pack_bytes = packs
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(SmallCycles {
        cycles,
        bytes_per_cycle: bytes_per_cycle as u64,
        pack_files: packs.len() as u64,
        pack_bytes,
        secs,
    })
}

/// What [`damage`] found over all its flips.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DamageReport {
    pub flips: u64,
    /// Flips per kind of file: catalog, pack, point object, tenant, config, marker.
    pub by_file: std::collections::BTreeMap<String, u64>,
    /// Opens refused (the catalog failed to open or disagreed with the objects).
    pub refused_at_open: u64,
    /// Repairs run (after a refusal, or after verify found damage in the records).
    pub repairs: u64,
    /// Point records gone after repair.
    pub points_lost: u64,
    /// Restores that succeeded with the wrong content.
    pub wrong_restores: u64,
    /// Restores that failed with a clear error (damaged data detected).
    pub failed_restores: u64,
    /// Flips after which something was wrong (a point lost or a restore
    /// failed) and deep verify still called the repository clean.
    pub damage_called_clean: u64,
    /// Flips that changed nothing a restore or verify could see.
    pub harmless: u64,
    pub secs: f64,
}

/// Flips one byte at a time in every file of a local repository of three
/// points, in turn (catalog files, packs, record objects, marker), and after
/// each: opens it (repairing when refused), deep-verifies (repairing when the
/// records are damaged) and restores every point, counting points lost,
/// silently wrong restores and damage that verify called clean.
pub fn damage(work_dir: &Path, flips: u64) -> Result<DamageReport> {
    use crate::verify::{VerifyOptions, verify};
    let t = Instant::now();
    let key = KeyFile::create(&work_dir.join("bench.key"), None)?;
    let keys = key.keys();
    let pristine = work_dir.join("pristine");
    let vol = work_dir.join("volume.img");
    let mut versions = Vec::new();
    {
        let repo = Repository::init(&pristine, &keys, DEFAULT_TENANT)?;
        let mut data = sample_data(8 << 20, 11);
        for i in 0..3usize {
            data[i * (2 << 20)..][..300 << 10].fill(i as u8 + 1);
            fs::write(&vol, &data).ctx(|| format!("write {}", vol.display()))?;
            backup(
                &repo.tenant(DEFAULT_TENANT)?,
                &keys,
                &one_volume("g", "v", &vol, work_dir),
            )?;
            versions.push(blake3::hash(&data));
        }
    }
    let mut files = Vec::new();
    list_files(&pristine, &mut files)?;
    files.sort();
    let kind_of = |p: &Path| -> &'static str {
        let s = p.to_string_lossy();
        if s.contains("/catalog/") {
            "catalog"
        } else if s.contains("/packs/") {
            "pack"
        } else if s.contains("/meta/points/") {
            "point object"
        } else if s.contains("/meta/tenants/") {
            "tenant object"
        } else if s.ends_with("meta/config") {
            "config object"
        } else {
            "marker"
        }
    };
    let mut report = DamageReport::default();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let repo_dir = work_dir.join("repo");
    let target = work_dir.join("restored.img");
    for i in 0..flips {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = fs::remove_dir_all(&repo_dir);
        copy_tree(&pristine, &repo_dir)?;
        let rel = files[i as usize % files.len()].strip_prefix(&pristine).expect("inside");
        let victim = repo_dir.join(rel);
        let mut bytes = fs::read(&victim).ctx(|| format!("read {}", victim.display()))?;
        if bytes.is_empty() {
            continue;
        }
        let at = (x % bytes.len() as u64) as usize;
        bytes[at] ^= 1 << (x % 8);
        fs::write(&victim, &bytes).ctx(|| format!("write {}", victim.display()))?;
        report.flips += 1;
        *report.by_file.entry(kind_of(&victim).into()).or_default() += 1;

        let repo = match Repository::open(&repo_dir) {
            Ok(r) => r,
            Err(_) => {
                report.refused_at_open += 1;
                report.repairs += 1;
                crate::repair::repair(&repo_dir, &|_| {})?;
                Repository::open(&repo_dir)?
            }
        };
        let opts = VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys: Some(keys.clone()),
            progress: None,
            repair: false,
        };
        let mut v = verify(&repo, &opts)?;
        let repo = if v.records.is_empty() {
            repo
        } else {
            drop(repo);
            report.repairs += 1;
            crate::repair::repair(&repo_dir, &|_| {})?;
            let repo = Repository::open(&repo_dir)?;
            v = verify(&repo, &opts)?;
            repo
        };
        let points = repo.points(DEFAULT_TENANT, Some("g"))?;
        let lost = 3 - points.len() as u64;
        report.points_lost += lost;
        let mut failed = 0;
        for p in &points {
            let _ = fs::remove_file(&target);
            let r = restore(
                &repo.tenant(DEFAULT_TENANT)?,
                &keys,
                &RestoreOptions {
                    group: "g".into(),
                    point: PointSelector::Seq(p.header.seq),
                    volume: "v".into(),
                    target: target.clone(),
                    progress: None,
                },
            );
            match r {
                Ok(_) => {
                    let got = blake3::hash(&fs::read(&target).ctx(|| format!("read {}", target.display()))?);
                    if got != versions[p.header.seq as usize - 1] {
                        report.wrong_restores += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        report.failed_restores += failed;
        if (lost > 0 || failed > 0) && v.is_clean() {
            report.damage_called_clean += 1;
        }
        if lost == 0 && failed == 0 && v.is_clean() {
            report.harmless += 1;
        }
    }
    report.secs = t.elapsed().as_secs_f64();
    Ok(report)
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let e = e.ctx(|| format!("list {}", dir.display()))?;
        let p = e.path();
        if p.is_dir() {
            list_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).ctx(|| format!("create {}", to.display()))?;
    for e in fs::read_dir(from).ctx(|| format!("list {}", from.display()))? {
        let e = e.ctx(|| format!("list {}", from.display()))?;
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst).ctx(|| format!("copy to {}", dst.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_data_is_mixed_and_deterministic() {
        let a = super::sample_data(1 << 20, 3);
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a, super::sample_data(1 << 20, 3));
        assert!(a.contains(&0) && a.contains(&b'e'));
    }
}
