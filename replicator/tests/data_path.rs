//! The data path end to end through the library, against real files, a real
//! sled catalog and a real local store in temp directories.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    BackupOptions, DEFAULT_TENANT, KeyFile, Keys, PointSelector, Repository, RestoreOptions, VerifyOptions, backup,
    restore, verify,
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
    let report = verify(
        &e.repo,
        &VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys: Some(e.keys.clone()),
            progress: None,
            repair: false,
        },
    )
    .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.volumes_hashed, 2);
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
