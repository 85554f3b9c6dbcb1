//! The data path end to end through the library, against real files, a real
//! sled catalog and a real local store in temp directories.

#[path = "support/points.rs"]
mod points;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    BackupOptions, DEFAULT_TENANT, KeyFile, Keys, PointSelector, Repository, RestoreOptions, backup, restore,
};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: Repository,
    keys: Keys,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let key = KeyFile::create(&root.join("k"), None).unwrap();
    let repo = Repository::init(&root.join("repo"), &key.keys(), DEFAULT_TENANT).unwrap();
    Env {
        keys: key.keys(),
        _dir: dir,
        root,
        repo,
    }
}

fn opts(e: &Env, group: &str, volumes: &[(&str, &Path)]) -> BackupOptions {
    BackupOptions {
        group: group.into(),
        volumes: volumes.iter().map(|(n, p)| (n.to_string(), p.to_path_buf())).collect(),
        freeze: None,
        thaw: None,
        state_dir: e.root.join("state"),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        block_map: false,
    }
}

fn restore_to(e: &Env, group: &str, volume: &str, point: PointSelector) -> Vec<u8> {
    let target = e.root.join(format!("restored-{group}-{volume}"));
    restore(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &RestoreOptions {
            group: group.into(),
            point,
            volume: volume.into(),
            target: target.clone(),
            progress: None,
        },
    )
    .unwrap();
    fs::read(target).unwrap()
}

#[test]
fn dedup_across_volumes_and_groups() {
    let e = env();
    let data = sample_data(9 << 20, 1);
    let a = e.root.join("a.img");
    let b = e.root.join("b.img");
    fs::write(&a, &data).unwrap();
    fs::write(&b, &data).unwrap();
    let one = backup(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &opts(&e, "g1", &[("a", &a)]),
    )
    .unwrap();
    assert!(one.bytes_new > 0);
    // Same content as another volume, in another group: nothing new to store.
    let two = backup(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &opts(&e, "g2", &[("b", &b)]),
    )
    .unwrap();
    assert_eq!(two.bytes_new, 0, "{two:?}");
    assert_eq!(restore_to(&e, "g2", "b", PointSelector::Latest), data);
    assert_eq!(restore_to(&e, "g1", "a", PointSelector::Seq(1)), data);
}

#[test]
fn one_changed_block_in_a_huge_sparse_volume_costs_a_few_kib() {
    let e = env();
    let v = e.root.join("huge.img");
    let f = File::create(&v).unwrap();
    f.set_len(256 << 30).unwrap(); // 256 GiB, sparse
    for i in 0..64u64 {
        f.write_all_at(&sample_data(64 << 10, i), i * (4 << 30)).unwrap();
    }
    drop(f);
    let first = backup(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &opts(&e, "big", &[("v", &v)]),
    )
    .unwrap();
    assert_eq!(first.bytes_read, 64 * (64 << 10), "holes must not be read");
    OpenOptions::new()
        .write(true)
        .open(&v)
        .unwrap()
        .write_all_at(&[0xabu8; 4096], (100 << 30) + 8192)
        .unwrap();
    let second = backup(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &opts(&e, "big", &[("v", &v)]),
    )
    .unwrap();
    assert_eq!(second.segments_changed, 1);
    assert_eq!(second.bytes_new, 4096);
    // One chunk, one segment node and one index node per level (3 levels here).
    assert!(second.bytes_stored < 4096 + 6 * 1024, "stored {}", second.bytes_stored);
    assert_eq!(deep_verify(&e).volumes_hashed, 2);
}

#[test]
fn volumes_of_odd_sizes_round_trip() {
    let e = env();
    for (i, size) in [0usize, 1, 4095, 4097, (4 << 20) - 1, (4 << 20) + 1, (9 << 20) + 123]
        .into_iter()
        .enumerate()
    {
        let p = e.root.join(format!("v{i}.img"));
        let mut data = sample_data(size, i as u64);
        if size > 10 {
            data[size / 2] = 1;
        }
        fs::write(&p, &data).unwrap();
        let group = format!("odd{i}");
        backup(
            &e.repo.tenant(DEFAULT_TENANT).unwrap(),
            &e.keys,
            &opts(&e, &group, &[("v", &p)]),
        )
        .unwrap();
        assert_eq!(restore_to(&e, &group, "v", PointSelector::Latest), data, "size {size}");
        // Restores write whole blocks with O_DIRECT where the file system has it
        // (ext4 here) and through the page cache where not (tmpfs): both exact.
        if Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").unwrap();
            let target = shm.path().join("v.img");
            restore(
                &e.repo.tenant(DEFAULT_TENANT).unwrap(),
                &e.keys,
                &RestoreOptions {
                    group: group.clone(),
                    point: PointSelector::Latest,
                    volume: "v".into(),
                    target: target.clone(),
                    progress: None,
                },
            )
            .unwrap();
            assert_eq!(fs::read(&target).unwrap(), data, "size {size} on tmpfs");
        }
    }
}

#[test]
fn stale_agent_state_is_ignored() {
    let e = env();
    let p = e.root.join("v.img");
    fs::write(&p, sample_data(5 << 20, 3)).unwrap();
    backup(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &opts(&e, "g", &[("v", &p)]),
    )
    .unwrap();
    // Another repository with the same state dir: the state is keyed by repository id.
    let key2 = KeyFile::create(&e.root.join("k2"), None).unwrap();
    let repo2 = Repository::init(&e.root.join("repo2"), &key2.keys(), DEFAULT_TENANT).unwrap();
    let s = backup(
        &repo2.tenant(DEFAULT_TENANT).unwrap(),
        &key2.keys(),
        &opts(&e, "g", &[("v", &p)]),
    )
    .unwrap();
    assert!(s.bytes_new > 0, "a fresh repository must receive every chunk");
    assert_eq!(s.segments_changed, s.segments);
}

/// Overwrites `n` scattered 4 KiB blocks (seeded) with fresh data; returns their offsets.
fn scatter(path: &Path, n: u64, seed: u64) -> Vec<u64> {
    let size = fs::metadata(path).unwrap().len();
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let blocks = size / 4096;
    (0..n)
        .map(|i| {
            let b = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i * 7919) >> 7) % blocks;
            f.write_all_at(&sample_data(4096, seed * 1000 + i), b * 4096).unwrap();
            b * 4096
        })
        .collect()
}

fn deep_verify(e: &Env) -> lifeline_replicator::VerifyReport {
    let report = points::deep_verify(&e.repo, &e.keys);
    assert!(report.is_clean(), "{report:?}");
    report
}

/// Failback's case: a repository seeded with block maps, then a backup with no
/// agent state of a volume in which scattered 4 KiB blocks changed stores just
/// those blocks (as delta segments over the seed's), and every point restores
/// bit for bit, also once the seed point itself is pruned and collected.
#[test]
fn scattered_block_changes_over_a_mapped_point_store_only_those_blocks() {
    let e = env();
    let v = e.root.join("v.img");
    // 24 MiB + 5 KiB: six full segments and a short one; a hole in segment 2.
    let mut data = sample_data((24 << 20) + 5 * 1024, 7);
    data[(8 << 20)..(9 << 20)].fill(0);
    fs::write(&v, &data).unwrap();
    let tenant = || e.repo.tenant(DEFAULT_TENANT).unwrap();
    let mut o = opts(&e, "db", &[("v", &v)]);
    o.block_map = true;
    let seed = backup(&tenant(), &e.keys, &o).unwrap();
    assert_eq!(seed.segments_delta, 0);

    // The recovery site: another agent, no state for this repository.
    let offsets = scatter(&v, 40, 3);
    let f = OpenOptions::new().write(true).open(&v).unwrap();
    f.write_all_at(&[0u8; 4096], 4096).unwrap(); // a block zeroed
    f.write_all_at(&sample_data(4096, 99), (8 << 20) + 65536).unwrap(); // data in the hole
    f.write_all_at(b"tail", (24 << 20) + 5 * 1024 - 4).unwrap(); // the short last block
    drop(f);
    let changed_bytes = (offsets.len() as u64 + 3) * 4096;
    let mut o2 = opts(&e, "db", &[("v", &v)]);
    o2.state_dir = e.root.join("other-state");
    let two = backup(&tenant(), &e.keys, &o2).unwrap();
    let mut touched: Vec<u64> = offsets.iter().map(|o| o >> 22).chain([0, 2, 6]).collect();
    touched.sort_unstable();
    touched.dedup();
    // Every segment was rescanned (no state); those that changed became deltas,
    // the others are their seed segment again.
    assert_eq!(two.segments_changed, 7, "{two:?}");
    assert_eq!(two.segments_delta, touched.len() as u64, "{two:?}");
    assert!(two.bytes_new <= changed_bytes, "{two:?}");
    // Patches, one delta node per segment, the index nodes above them.
    assert!(two.bytes_stored < changed_bytes + 16 * 1024, "{two:?}");
    let after_two = fs::read(&v).unwrap();

    // With state: a further change deltas against the seed's segment again
    // (earlier patches are found present), and an unchanged cycle stores nothing.
    scatter(&v, 5, 11);
    let three = backup(&tenant(), &e.keys, &o2).unwrap();
    assert!(
        three.segments_delta >= 1 && three.bytes_stored < 10 * 4096 + 16 * 1024,
        "{three:?}"
    );
    let after_three = fs::read(&v).unwrap();
    let four = backup(&tenant(), &e.keys, &o2).unwrap();
    assert_eq!((four.segments_changed, four.bytes_stored), (0, 0), "{four:?}");

    // More than half of a segment rewritten: stored in full again.
    let f = OpenOptions::new().write(true).open(&v).unwrap();
    f.write_all_at(&sample_data(3 << 20, 5), 0).unwrap();
    drop(f);
    let five = backup(&tenant(), &e.keys, &o2).unwrap();
    assert_eq!(five.segments_changed, 1);
    assert_eq!(five.segments_delta, 0, "{five:?}");
    let after_five = fs::read(&v).unwrap();

    assert_eq!(restore_to(&e, "db", "v", PointSelector::Seq(1)), data);
    assert_eq!(restore_to(&e, "db", "v", PointSelector::Seq(2)), after_two);
    assert_eq!(restore_to(&e, "db", "v", PointSelector::Seq(3)), after_three);
    assert_eq!(restore_to(&e, "db", "v", PointSelector::Latest), after_five);
    deep_verify(&e);

    // The seed point goes; its segments live on as the deltas' bases.
    e.repo.remove_points(DEFAULT_TENANT, "db", &[1]).unwrap();
    let report = lifeline_replicator::gc(&e.repo, DEFAULT_TENANT, std::time::Duration::ZERO, false).unwrap();
    assert!(report.collect.objects_removed > 0, "{report:?}");
    assert_eq!(restore_to(&e, "db", "v", PointSelector::Seq(2)), after_two);
    assert_eq!(restore_to(&e, "db", "v", PointSelector::Latest), after_five);
    deep_verify(&e);
}

/// Without block maps nothing changes: no delta, and version 1 segment nodes.
#[test]
fn without_block_maps_changed_segments_are_stored_in_full() {
    let e = env();
    let v = e.root.join("v.img");
    fs::write(&v, sample_data(8 << 20, 1)).unwrap();
    let tenant = || e.repo.tenant(DEFAULT_TENANT).unwrap();
    backup(&tenant(), &e.keys, &opts(&e, "g", &[("v", &v)])).unwrap();
    scatter(&v, 4, 2);
    let mut o = opts(&e, "g", &[("v", &v)]);
    o.state_dir = e.root.join("fresh");
    let two = backup(&tenant(), &e.keys, &o).unwrap();
    assert_eq!(two.segments_delta, 0);
    assert!(two.bytes_new >= 4 * 4096);
    assert_eq!(restore_to(&e, "g", "v", PointSelector::Latest), fs::read(&v).unwrap());
}

/// A tenant whose store counts the objects read from it.
struct CountingTenant<'a> {
    inner: lifeline_replicator::LocalTenant<'a>,
    reads: Arc<std::sync::atomic::AtomicU64>,
}

struct CountingStore {
    inner: Arc<dyn lifeline_replicator::ChunkStore>,
    reads: Arc<std::sync::atomic::AtomicU64>,
}

impl lifeline_replicator::ChunkStore for CountingStore {
    fn put(&self, id: &lifeline_replicator::ObjectId, sealed: &[u8]) -> lifeline_replicator::Result<bool> {
        self.inner.put(id, sealed)
    }
    fn contains(&self, id: &lifeline_replicator::ObjectId) -> lifeline_replicator::Result<bool> {
        self.inner.contains(id)
    }
    fn missing(&self, ids: &[lifeline_replicator::ObjectId]) -> lifeline_replicator::Result<Vec<bool>> {
        self.inner.missing(ids)
    }
    fn get(&self, id: &lifeline_replicator::ObjectId) -> lifeline_replicator::Result<Vec<u8>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.get(id)
    }
    fn get_many(&self, ids: &[lifeline_replicator::ObjectId]) -> lifeline_replicator::Result<Vec<Vec<u8>>> {
        self.reads
            .fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.get_many(ids)
    }
    fn sync(&self) -> lifeline_replicator::Result<()> {
        self.inner.sync()
    }
    fn abandon(&self) {
        self.inner.abandon()
    }
    fn list(
        &self,
        f: &mut dyn FnMut(lifeline_replicator::StoredObject) -> lifeline_replicator::Result<()>,
    ) -> lifeline_replicator::Result<()> {
        self.inner.list(f)
    }
    fn delete(&self, id: &lifeline_replicator::ObjectId) -> lifeline_replicator::Result<()> {
        self.inner.delete(id)
    }
    fn location(&self, id: &lifeline_replicator::ObjectId) -> String {
        self.inner.location(id)
    }
}

impl lifeline_replicator::TenantRepository for CountingTenant<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn repository_id(&self) -> String {
        self.inner.repository_id()
    }
    fn tenant(&self) -> &str {
        self.inner.tenant()
    }
    fn store(&self, group: &str) -> lifeline_replicator::Result<Arc<dyn lifeline_replicator::ChunkStore>> {
        Ok(Arc::new(CountingStore {
            inner: self.inner.store(group)?,
            reads: self.reads.clone(),
        }))
    }
    fn points(&self, group: Option<&str>) -> lifeline_replicator::Result<Vec<lifeline_replicator::PointRecord>> {
        self.inner.points(group)
    }
    fn commit_point(
        &self,
        point: &lifeline_replicator::PointRecord,
        cycle: &lifeline_replicator::CycleReport,
    ) -> lifeline_replicator::Result<()> {
        self.inner.commit_point(point, cycle)
    }
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: std::time::Duration) -> lifeline_replicator::Result<()> {
        self.inner.pin(group, seq, holder, ttl)
    }
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> lifeline_replicator::Result<()> {
        self.inner.unpin(group, seq, holder)
    }
}

/// Block maps cost nothing where they are not used: a backup with no agent
/// state reads no object of the last point unless that point has block maps,
/// and one with state reads none for segments that are not mapped.
#[test]
fn backups_without_block_maps_read_nothing_from_the_repository() {
    let e = env();
    let v = e.root.join("huge.img");
    let f = File::create(&v).unwrap();
    f.set_len(64 << 30).unwrap();
    for i in 0..64u64 {
        f.write_all_at(&sample_data(64 << 10, i), i * (1 << 30)).unwrap();
    }
    // 8 blocks rewritten inside the data regions.
    let touch = |seed: u64| {
        for i in 0..8u64 {
            f.write_all_at(
                &sample_data(4096, seed * 100 + i),
                i * 7 * (1 << 30) + 4096 * (1 + seed % 8),
            )
            .unwrap();
        }
    };
    let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = || CountingTenant {
        inner: e.repo.tenant(DEFAULT_TENANT).unwrap(),
        reads: reads.clone(),
    };
    backup(&counting(), &e.keys, &opts(&e, "s", &[("v", &v)])).unwrap();
    touch(5);
    // With state: the 8 changed segments are not mapped.
    backup(&counting(), &e.keys, &opts(&e, "s", &[("v", &v)])).unwrap();
    // Without state.
    touch(6);
    let mut o = opts(&e, "s", &[("v", &v)]);
    o.state_dir = e.root.join("fresh");
    let three = backup(&counting(), &e.keys, &o).unwrap();
    assert_eq!(three.segments_delta, 0);
    assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 0);
    // With block maps (a full rescan, so that every segment gets one) the next
    // stateless backup reads the last point's index and maps.
    o.block_map = true;
    o.state_dir = e.root.join("fresh-1");
    backup(&counting(), &e.keys, &o).unwrap();
    touch(7);
    o.state_dir = e.root.join("fresh-2");
    let five = backup(&counting(), &e.keys, &o).unwrap();
    assert_eq!(five.segments_delta, 8, "{five:?}");
    assert!(reads.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let target = e.root.join("restored.img");
    restore(
        &e.repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &RestoreOptions {
            group: "s".into(),
            point: PointSelector::Latest,
            volume: "v".into(),
            target: target.clone(),
            progress: None,
        },
    )
    .unwrap();
    assert_eq!(
        lifeline_replicator::hash_volume(&target).unwrap(),
        lifeline_replicator::hash_volume(&v).unwrap()
    );
}
