//! A group with its own dedup scope: a writer of another group of the same
//! tenant (which holds the same key, so it can compute this group's ids) cannot
//! plant objects this group would deduplicate against; the scope's store is
//! marked, swept, verified and repaired with the rest of the repository. Real
//! files, real sled, real packs.

#[path = "support/points.rs"]
mod points;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    BackupOptions, DEFAULT_TENANT, Error, KeyFile, Keys, ObjectKind, PointSelector, Repository, RestoreOptions, backup,
    gc, repair, restore, seal_object,
};
use points::{deep_verify, no_progress};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    keys: Keys,
}

impl Env {
    fn new() -> (Env, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let key = KeyFile::create(&root.join("k"), None).unwrap();
        let repo = Repository::init(&root.join("repo"), &key.keys(), DEFAULT_TENANT).unwrap();
        (
            Env {
                _dir: dir,
                root,
                keys: key.keys(),
            },
            repo,
        )
    }

    /// A volume file `NAME.img` holding `data`.
    fn volume(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.root.join(format!("{name}.img"));
        fs::write(&p, data).unwrap();
        p
    }

    /// One backup of `vol` as volume `disk` of `group`; returns its seq.
    fn backup(&self, repo: &Repository, group: &str, vol: &Path) -> Result<u64, Error> {
        backup(
            &repo.tenant(DEFAULT_TENANT).unwrap(),
            &self.keys,
            &BackupOptions {
                group: group.into(),
                volumes: vec![("disk".into(), vol.to_path_buf())],
                freeze: None,
                thaw: None,
                state_dir: self.root.join(format!("state-{group}")),
                cancel: Arc::new(AtomicBool::new(false)),
                progress: None,
                block_map: false,
            },
        )
        .map(|s| s.seq)
    }

    /// Volume `disk` of the newest point of `group`, restored and read back.
    fn restore(&self, repo: &Repository, group: &str) -> Result<Vec<u8>, Error> {
        let target = self.root.join(format!("restored-{group}"));
        let _ = fs::remove_file(&target);
        restore(
            &repo.tenant(DEFAULT_TENANT).unwrap(),
            &self.keys,
            &RestoreOptions {
                group: group.into(),
                point: PointSelector::Latest,
                volume: "disk".into(),
                target: target.clone(),
                progress: None,
            },
        )?;
        Ok(fs::read(target).unwrap())
    }

    /// What a writer of `group` (holding the tenant key) stores under the id
    /// of a one-chunk volume holding `content`, which another group will back
    /// up later: garbage sealed under that id.
    fn plant(&self, repo: &Repository, group: &str, content: &[u8]) {
        let id = self.keys.chunk_id(content);
        let store = repo.group_store(DEFAULT_TENANT, group).unwrap();
        let garbage = seal_object(
            &self.keys,
            ObjectKind::Chunk,
            &id,
            &[],
            b"planted by a sibling's writer",
        );
        store.put(&id, &garbage).unwrap();
        store.sync().unwrap();
    }
}

/// `len` pseudo-random bytes (no zero run a backup would take for a hole).
fn random(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut out);
    out
}

#[test]
fn a_group_with_its_own_scope_never_deduplicates_against_a_siblings_plant() {
    let (e, repo) = Env::new();
    assert!(repo.create_scope(DEFAULT_TENANT, "db").unwrap());
    assert!(
        !repo.create_scope(DEFAULT_TENANT, "db").unwrap(),
        "a second creation changes nothing"
    );
    assert_eq!(repo.scopes(DEFAULT_TENANT).unwrap(), ["db"]);
    // One chunk each (a short run of data), planted by the writer of `web`
    // before `db` and `shop` (which shares the tenant's scope) write them.
    let db_content = random(3000, 1);
    let shop_content = random(3000, 2);
    e.plant(&repo, "web", &db_content);
    e.plant(&repo, "web", &shop_content);

    e.backup(&repo, "db", &e.volume("db", &db_content)).unwrap();
    e.backup(&repo, "shop", &e.volume("shop", &shop_content)).unwrap();
    assert_eq!(e.restore(&repo, "db").unwrap(), db_content, "db stored its own copy");
    let err = e.restore(&repo, "shop").unwrap_err().to_string();
    assert!(
        err.contains(&e.keys.chunk_id(&shop_content).to_hex()),
        "without its own scope, shop deduplicated against the plant: {err}"
    );
    // The scrub names the plant and only the point that reached it.
    let v = deep_verify(&repo, &e.keys);
    let affected: Vec<(&str, u64)> = v.affected_points.iter().map(|p| (p.group.as_str(), p.seq)).collect();
    assert_eq!(affected, [("shop", 1)], "{:?}", v.affected_points);

    // GC marks each store from its own groups' points: db's store keeps db's
    // chunk (no point of the shared store references it).
    gc(&repo, DEFAULT_TENANT, std::time::Duration::ZERO, false).unwrap();
    assert_eq!(e.restore(&repo, "db").unwrap(), db_content);
}

/// A repository where `db` has its own scope and `db` and `shop` each hold
/// one point of the same `len` bytes (stored once per scope).
fn same_volume_in_both_scopes(len: usize, seed: u64) -> (Env, Repository, Vec<u8>) {
    let (e, repo) = Env::new();
    repo.create_scope(DEFAULT_TENANT, "db").unwrap();
    let data = sample_data(len, seed);
    let vol = e.volume("v", &data);
    e.backup(&repo, "db", &vol).unwrap();
    e.backup(&repo, "shop", &vol).unwrap();
    (e, repo, data)
}

#[test]
fn each_store_is_collected_from_its_own_groups_points() {
    let (e, repo, v1) = same_volume_in_both_scopes(6 << 20, 3);
    let shared = repo.store(DEFAULT_TENANT).unwrap();
    let own = repo.group_store(DEFAULT_TENANT, "db").unwrap();
    let count = |s: &Arc<dyn lifeline_replicator::ChunkStore>| {
        let mut n = 0u64;
        s.list(&mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        n
    };
    let (shared_before, own_before) = (count(&shared), count(&own));
    assert!(shared_before > 0 && own_before > 0);
    assert_eq!(shared_before, own_before, "the same volume, stored once per scope");

    // A new version of db's volume, then prune db's first point: only db's
    // store has garbage; a collection removes it there and nothing in the
    // shared store (whose points are shop's).
    let mut v2 = v1.clone();
    v2[..2 << 20].fill(9);
    e.backup(&repo, "db", &e.volume("v", &v2)).unwrap();
    repo.remove_points(DEFAULT_TENANT, "db", &[1]).unwrap();
    let r = gc(&repo, DEFAULT_TENANT, std::time::Duration::ZERO, false).unwrap();
    assert!(r.collect.objects_removed > 0, "{r:?}");
    assert_eq!(count(&shared), shared_before, "the shared store lost nothing");
    assert_eq!(e.restore(&repo, "db").unwrap(), v2);
    assert_eq!(e.restore(&repo, "shop").unwrap(), v1);
    let v = deep_verify(&repo, &e.keys);
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(v.points, 2);
}

#[test]
fn a_lost_catalog_or_scope_record_is_repaired_and_every_point_restores() {
    let (e, repo, data) = same_volume_in_both_scopes(5 << 20, 4);
    drop(repo);
    let path = e.root.join("repo");

    // The scope record object lost: the catalog disagrees, open refuses.
    let record = path.join("meta/scopes").join(DEFAULT_TENANT).join("db");
    assert!(record.is_file(), "the scope is an object: {}", record.display());
    fs::remove_file(&record).unwrap();
    let err = Repository::open(&path).err().expect("refused").to_string();
    assert!(err.contains("lifeline repair") && err.contains("scope"), "{err}");
    // Repair writes it anew from the store the group has (and the old catalog).
    let r = repair(&path, &no_progress).unwrap();
    assert!(r.rewritten.iter().any(|w| w.contains("scopes")), "{:?}", r.rewritten);
    assert!(record.is_file());

    // The whole catalog lost: repair finds the scope from its object, and the
    // group's packs in its own store.
    fs::remove_dir_all(path.join("catalog")).unwrap();
    let r = repair(&path, &no_progress).unwrap();
    assert!(r.damaged.is_empty(), "{:?}", r.damaged);
    assert_eq!(r.points, 2);
    let repo = Repository::open(&path).unwrap();
    assert_eq!(repo.scopes(DEFAULT_TENANT).unwrap(), ["db"]);
    assert_eq!(e.restore(&repo, "db").unwrap(), data);
    assert_eq!(e.restore(&repo, "shop").unwrap(), data);
    assert!(deep_verify(&repo, &e.keys).is_clean());
}

#[test]
fn a_group_with_points_cannot_be_given_its_own_scope() {
    let (e, repo) = Env::new();
    e.backup(&repo, "db", &e.volume("v", &sample_data(4096, 5))).unwrap();
    let err = repo.create_scope(DEFAULT_TENANT, "db").unwrap_err().to_string();
    assert!(
        err.contains("already has points") && err.contains("new group name"),
        "{err}"
    );
    assert!(repo.scopes(DEFAULT_TENANT).unwrap().is_empty());
    assert!(
        repo.create_scope("nobody", "db").is_err(),
        "an unknown tenant is refused"
    );
    assert!(
        repo.create_scope(DEFAULT_TENANT, "../x").is_err(),
        "a bad name is refused"
    );
}
