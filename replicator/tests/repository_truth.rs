//! The repository's truth is its objects: a catalog that is damaged, lost or
//! out of step with the point objects is refused (never used with fewer
//! points), verify calls it damage, GC refuses to sweep, and `repair` rebuilds
//! it from the objects alone. Real files, real sled, real packs.

#[path = "support/points.rs"]
mod points;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    BackupOptions, DEFAULT_TENANT, Error, KeyFile, Keys, PointSelector, Repository, RestoreOptions, VerifyOptions,
    backup, gc, repair, restore, verify,
};
use points::no_progress;

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    keys: Keys,
    /// The volume's content at each point (index = seq - 1).
    versions: Vec<Vec<u8>>,
}

impl Env {
    fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }
}

fn backup_once(root: &Path, repo: &Repository, keys: &Keys, vol: &Path) {
    points::backup_disk(repo, keys, vol, root.join("state")).unwrap();
}

/// A repository with three points of a 12 MiB volume that changes between them.
fn three_points() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let key = KeyFile::create(&root.join("k"), None).unwrap();
    let repo = Repository::init(&root.join("repo"), &key.keys(), DEFAULT_TENANT).unwrap();
    let vol = root.join("vol.img");
    let mut data = sample_data(12 << 20, 7);
    let mut versions = Vec::new();
    for i in 0..3u8 {
        data[(i as usize) * (4 << 20) + 1000..][..5000].fill(i + 1);
        fs::write(&vol, &data).unwrap();
        backup_once(&root, &repo, &key.keys(), &vol);
        versions.push(data.clone());
    }
    Env {
        keys: key.keys(),
        _dir: dir,
        root,
        versions,
    }
}

fn restore_seq(e: &Env, repo: &Repository, seq: u64) -> Vec<u8> {
    points::restore_seq(repo, &e.keys, seq, &e.root)
}

fn deep_verify(e: &Env, repo: &Repository) -> lifeline_replicator::VerifyReport {
    points::deep_verify(repo, &e.keys)
}

fn refused_naming_repair(r: Result<Repository, Error>) -> String {
    match r {
        Ok(_) => panic!("a damaged catalog was opened"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("lifeline repair --repo"), "{text}");
            text
        }
    }
}

fn pack_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let packs = repo.join("tenants").join(DEFAULT_TENANT).join("objects").join("packs");
    for shard in fs::read_dir(packs).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().unwrap() == "tmp" {
            continue;
        }
        for p in fs::read_dir(shard).unwrap() {
            out.push(p.unwrap().path());
        }
    }
    out.sort();
    out
}

fn point_object(repo: &Path, seq: u64) -> PathBuf {
    repo.join(format!("meta/points/{DEFAULT_TENANT}/db/{seq:020}"))
}

/// Every point restores bit for bit, and deep verify is clean.
fn assert_whole(e: &Env) {
    let repo = Repository::open(&e.repo()).unwrap();
    let points = repo.points(DEFAULT_TENANT, Some("db")).unwrap();
    assert_eq!(points.iter().map(|p| p.header.seq).collect::<Vec<_>>(), [1, 2, 3]);
    for seq in 1..=3 {
        assert!(
            restore_seq(e, &repo, seq) == e.versions[seq as usize - 1],
            "point {seq} restores wrong"
        );
    }
    let v = deep_verify(e, &repo);
    assert!(v.is_clean(), "{v:?}");
}

#[test]
fn every_record_exists_as_an_object() {
    let e = three_points();
    let repo = e.repo();
    assert!(repo.join("meta/config").is_file());
    assert!(repo.join(format!("meta/tenants/{DEFAULT_TENANT}")).is_file());
    for seq in 1..=3 {
        assert!(point_object(&repo, seq).is_file(), "point object {seq}");
    }
    assert_whole(&e);
}

#[test]
fn a_lost_catalog_is_refused_and_repair_brings_every_point_back() {
    let e = three_points();
    let packs = pack_files(&e.repo());
    fs::remove_dir_all(e.repo().join("catalog")).unwrap();
    refused_naming_repair(Repository::open(&e.repo()));
    // Deleted and replaced by an empty database (what sled makes of a missing
    // directory): refused too, GC never gets to run.
    fs::create_dir(e.repo().join("catalog")).unwrap();
    refused_naming_repair(Repository::open(&e.repo()));
    assert_eq!(pack_files(&e.repo()), packs, "nothing was deleted");

    let r = repair(&e.repo(), &no_progress).unwrap();
    assert_eq!(r.points, 3, "{r:?}");
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_eq!(r.packs, packs.len() as u64);
    assert_whole(&e);
}

#[test]
fn single_byte_flips_in_the_catalog_never_lose_a_point_silently() {
    let e = three_points();
    let pristine = e.root.join("pristine");
    copy_dir(&e.repo(), &pristine);
    let db = pristine.join("catalog").join("db");
    let len = fs::metadata(&db).unwrap().len();
    let mut refused = 0;
    for i in 0..24u64 {
        let offset = i * len / 24 + 37;
        fs::remove_dir_all(e.repo()).unwrap();
        copy_dir(&pristine, &e.repo());
        let f = fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(e.repo().join("catalog/db"))
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, offset).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], offset).unwrap();
        drop(f);
        match Repository::open(&e.repo()) {
            Ok(repo) => {
                // Opened: then it lists every point (sled read past the damage).
                let n = repo.points(DEFAULT_TENANT, Some("db")).unwrap().len();
                assert_eq!(n, 3, "offset {offset}: opened with {n} points");
            }
            Err(err) => {
                refused += 1;
                assert!(err.to_string().contains("lifeline repair"), "offset {offset}: {err}");
                let r = repair(&e.repo(), &no_progress).unwrap();
                assert_eq!(r.points, 3, "offset {offset}: {r:?}");
            }
        }
        let repo = Repository::open(&e.repo()).unwrap();
        assert!(restore_seq(&e, &repo, 3) == e.versions[2], "offset {offset}");
    }
    println!("{refused} of 24 flips were refused at open and repaired");
}

#[test]
fn a_point_missing_from_the_catalog_stops_verify_gc_and_open() {
    let e = three_points();
    let repo = Repository::open(&e.repo()).unwrap();
    let packs = pack_files(&e.repo());
    // The catalog forgets point 2 (what a damaged log does), the object stays.
    repo.catalog().remove_points(DEFAULT_TENANT, "db", &[2]).unwrap();
    repo.catalog().forget_pruned(DEFAULT_TENANT, "db", &[2]).unwrap();
    let v = deep_verify(&e, &repo);
    assert!(!v.is_clean());
    assert!(
        v.records
            .iter()
            .any(|r| r.contains("point 2 of group `db`") && r.contains("missing from the catalog")),
        "{v:?}"
    );
    let err = gc(&repo, DEFAULT_TENANT, std::time::Duration::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lifeline repair"), "{err}");
    assert_eq!(pack_files(&e.repo()), packs, "GC deleted nothing");
    drop(repo);
    refused_naming_repair(Repository::open(&e.repo()));
    let r = repair(&e.repo(), &no_progress).unwrap();
    assert_eq!(r.points, 3);
    assert_whole(&e);
}

#[test]
fn a_catalog_point_without_its_object_is_damage() {
    let e = three_points();
    fs::remove_file(point_object(&e.repo(), 2)).unwrap();
    let text = refused_naming_repair(Repository::open(&e.repo()));
    assert!(
        text.contains("point 2 of group `db`") && text.contains("point object is missing"),
        "{text}"
    );
    let repo = Repository::open_unchecked(&e.repo()).unwrap();
    let v = deep_verify(&e, &repo);
    assert!(v.records.iter().any(|r| r.contains("point object is missing")), "{v:?}");
    let err = gc(&repo, DEFAULT_TENANT, std::time::Duration::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
    drop(repo);
    // The objects are the truth: repair leaves point 2 out and says so.
    let r = repair(&e.repo(), &no_progress).unwrap();
    assert_eq!(r.points, 2);
    assert!(r.only_in_old_catalog.iter().any(|p| p.contains("point 2")), "{r:?}");
    let repo = Repository::open(&e.repo()).unwrap();
    assert!(restore_seq(&e, &repo, 3) == e.versions[2]);
}

#[test]
fn damaged_record_objects_and_footers_are_rewritten_from_an_intact_catalog() {
    let e = three_points();
    let flip = |p: &Path, from_end: u64| {
        let f = fs::OpenOptions::new().write(true).read(true).open(p).unwrap();
        let off = f.metadata().unwrap().len() - from_end;
        let mut b = [0u8];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0x01], off).unwrap();
    };
    flip(&point_object(&e.repo(), 2), 100); // the body
    flip(&point_object(&e.repo(), 3), 5); // the trailer
    flip(&e.repo().join(format!("meta/tenants/{DEFAULT_TENANT}")), 50);
    let packs = pack_files(&e.repo());
    flip(&packs[0], 10); // the footer's hash
    {
        // The keys agree, so it opens; verify names every damaged record, GC refuses.
        let repo = Repository::open(&e.repo()).unwrap();
        let v = deep_verify(&e, &repo);
        for what in ["00000000000000000002", "00000000000000000003", "meta/tenants/default"] {
            assert!(
                v.records.iter().any(|r| r.contains(what) && r.contains("damaged")),
                "{what}: {v:?}"
            );
        }
        let err = gc(&repo, DEFAULT_TENANT, std::time::Duration::ZERO, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused") && err.contains("00000000000000000002"), "{err}");
        assert_eq!(pack_files(&e.repo()), packs, "GC deleted nothing");
    }
    let r = repair(&e.repo(), &no_progress).unwrap();
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_eq!(r.points, 3);
    assert!(r.entries_from_old_catalog > 0, "{r:?}");
    assert_eq!(r.rewritten.len(), 4, "{r:?}");
    assert_whole(&e);
}

#[test]
fn a_damaged_point_object_without_another_copy_is_reported_not_guessed() {
    let e = three_points();
    fs::remove_dir_all(e.repo().join("catalog")).unwrap();
    let p = point_object(&e.repo(), 2);
    let mut b = fs::read(&p).unwrap();
    b[40] ^= 0x20;
    fs::write(&p, b).unwrap();
    let r = repair(&e.repo(), &no_progress).unwrap();
    assert_eq!(r.points, 2);
    assert!(
        r.damaged
            .iter()
            .any(|d| d.contains("00000000000000000002") && d.contains("lost")),
        "{r:?}"
    );
}

#[test]
fn prune_deletes_point_objects_and_an_interrupted_prune_finishes_at_open() {
    let e = three_points();
    let repo = Repository::open(&e.repo()).unwrap();
    repo.remove_points(DEFAULT_TENANT, "db", &[1]).unwrap();
    assert!(!point_object(&e.repo(), 1).exists());
    // A crash after the catalog removed point 2, before its object was deleted.
    repo.catalog().remove_points(DEFAULT_TENANT, "db", &[2]).unwrap();
    drop(repo);
    assert!(point_object(&e.repo(), 2).exists());
    let repo = Repository::open(&e.repo()).unwrap();
    assert!(!point_object(&e.repo(), 2).exists(), "the prune was finished");
    assert_eq!(repo.points(DEFAULT_TENANT, None).unwrap().len(), 1);
    assert!(repo.catalog().pruning(DEFAULT_TENANT).unwrap().is_empty());
    assert!(restore_seq(&e, &repo, 3) == e.versions[2]);
}

#[test]
fn a_commit_interrupted_after_its_point_object_is_recorded_at_open() {
    let e = three_points();
    // The repository as it was before point 3's catalog record: a copy with
    // point 3 taken out of its catalog but its point object and packs in place.
    let repo = Repository::open(&e.repo()).unwrap();
    let p3 = repo.points(DEFAULT_TENANT, Some("db")).unwrap().pop().unwrap();
    drop(repo);
    let copy = e.root.join("copy");
    copy_dir(&e.repo(), &copy);
    remove_newest_from_catalog(&copy, &p3);
    let repo = Repository::open(&copy).unwrap();
    let seqs: Vec<u64> = repo
        .points(DEFAULT_TENANT, Some("db"))
        .unwrap()
        .iter()
        .map(|p| p.header.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3], "the crashed commit was recorded");
}

/// Takes the group's newest point out of a closed repository's catalog (as if
/// the commit had crashed before recording it).
fn remove_newest_from_catalog(repo: &Path, newest: &lifeline_replicator::PointRecord) {
    use lifeline_replicator::{Catalog, ObjectIndex};
    let cat = lifeline_replicator::SledCatalog::open(&repo.join("catalog")).unwrap();
    // A catalog that never had it: rebuilt from the other points.
    let others: Vec<_> = cat
        .points(DEFAULT_TENANT, Some("db"))
        .unwrap()
        .into_iter()
        .filter(|p| p.header.seq != newest.header.seq)
        .collect();
    let tenant = cat.tenant(DEFAULT_TENANT).unwrap().unwrap();
    let config = cat.config().unwrap().unwrap();
    let index: Vec<_> = {
        let mut v = Vec::new();
        cat.object_index(DEFAULT_TENANT)
            .unwrap()
            .for_each(&mut |id, loc| {
                v.push((id, loc));
                Ok(())
            })
            .unwrap();
        v
    };
    drop(cat);
    fs::remove_dir_all(repo.join("catalog")).unwrap();
    let cat = lifeline_replicator::SledCatalog::open(&repo.join("catalog")).unwrap();
    cat.set_config(&config).unwrap();
    cat.create_tenant(&tenant).unwrap();
    for p in &others {
        cat.commit_point(p).unwrap();
    }
    let ix = cat.object_index(DEFAULT_TENANT).unwrap();
    let mut by_pack: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for (id, loc) in index {
        by_pack.entry(loc.pack).or_default().push((id, loc));
    }
    for (pack, entries) in by_pack {
        ix.publish(pack, &entries).unwrap();
    }
}

#[test]
fn a_format_2_repository_is_upgraded_with_point_objects_written_from_its_catalog() {
    use lifeline_replicator::file_formats::REPOSITORY_FORMAT;
    let e = three_points();
    // As a format 2 build left it: no record objects, marker format 2.
    fs::remove_dir_all(e.repo().join("meta")).unwrap();
    let marker = e.repo().join("lifeline-repo");
    let text = fs::read_to_string(&marker)
        .unwrap()
        .replace(&format!("format {REPOSITORY_FORMAT}"), "format 2");
    fs::write(&marker, text).unwrap();
    let repo = Repository::open(&e.repo()).unwrap();
    drop(repo);
    assert!(
        fs::read_to_string(&marker)
            .unwrap()
            .contains(&format!("format {REPOSITORY_FORMAT}"))
    );
    for seq in 1..=3 {
        assert!(point_object(&e.repo(), seq).is_file());
    }
    assert_whole(&e);
    // And the upgraded repository repairs like any other.
    fs::remove_dir_all(e.repo().join("catalog")).unwrap();
    assert_eq!(repair(&e.repo(), &no_progress).unwrap().points, 3);
    assert_whole(&e);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            fs::copy(entry.path(), dst).unwrap();
        }
    }
}

#[test]
fn an_altered_point_object_fails_authentication_and_is_named() {
    let e = three_points();
    // A deliberate alteration: the sealed body changed, the trailer recomputed
    // (so it passes the no-key check of the object itself).
    let path = point_object(&e.repo(), 2);
    let bytes = fs::read(&path).unwrap();
    let json_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut record: serde_json::Value = serde_json::from_slice(&bytes[12..12 + json_len]).unwrap();
    let body = record["sealed_body"].as_str().unwrap().to_string();
    let flipped = if body.starts_with('0') { "1" } else { "0" };
    record["sealed_body"] = serde_json::Value::String(format!("{flipped}{}", &body[1..]));
    let json = serde_json::to_vec(&record).unwrap();
    let mut altered = bytes[..8].to_vec();
    altered.extend_from_slice(&(json.len() as u32).to_le_bytes());
    altered.extend_from_slice(&json);
    let trailer = blake3::hash(&altered);
    altered.extend_from_slice(trailer.as_bytes());
    fs::write(&path, &altered).unwrap();

    let repo = Repository::open(&e.repo()).unwrap();
    let v = deep_verify(&e, &repo);
    assert!(
        v.affected_points
            .iter()
            .any(|p| p.seq == 2 && p.reason.contains("failed authentication")),
        "{v:?}"
    );
    assert!(
        v.records.iter().any(|r| r.contains("point 2") && r.contains("differs")),
        "{v:?}"
    );
    drop(repo);
    // The object is the truth: after a repair the point is the altered one,
    // and restoring it fails by name instead of returning anything.
    repair(&e.repo(), &no_progress).unwrap();
    let repo = Repository::open(&e.repo()).unwrap();
    let err = restore(
        &repo.tenant(DEFAULT_TENANT).unwrap(),
        &e.keys,
        &RestoreOptions {
            group: "db".into(),
            point: PointSelector::Seq(2),
            volume: "disk".into(),
            target: e.root.join("altered"),
            progress: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("point 2 of group `db`") && err.contains("failed authentication"),
        "{err}"
    );
    assert!(restore_seq(&e, &repo, 3) == e.versions[2]);
}

/// Issue 17, finding 7: a writer of group `a` (which holds the tenant key)
/// plants wrong content under the id of a chunk group `b` will back up later;
/// `b` deduplicates against it. Deep verify names the object and `b`'s point,
/// and a restore of `b` refuses the object instead of returning wrong data.
#[test]
fn a_planted_object_is_named_with_every_group_it_affects() {
    use lifeline_replicator::{ObjectKind, seal_object};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = KeyFile::create(&root.join("k"), None).unwrap();
    let keys = key.keys();
    let repo = Repository::init(&root.join("repo"), &keys, DEFAULT_TENANT).unwrap();
    // What group b will write: a volume of one short data run, one chunk.
    let b_content = sample_data(3000, 9);
    let target = keys.chunk_id(&b_content);
    let store = repo.store(DEFAULT_TENANT).unwrap();
    store
        .put(
            &target,
            &seal_object(&keys, ObjectKind::Chunk, &target, &[], b"planted by group a's writer"),
        )
        .unwrap();
    store.sync().unwrap();
    let vol = root.join("b.img");
    fs::write(&vol, &b_content).unwrap();
    let tenant = repo.tenant(DEFAULT_TENANT).unwrap();
    let mut opts = BackupOptions {
        group: "b".into(),
        volumes: vec![("disk".into(), vol.clone())],
        freeze: None,
        thaw: None,
        state_dir: root.join("state"),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        block_map: false,
    };
    let s = backup(&tenant, &keys, &opts).unwrap();
    assert_eq!(s.seq, 1);
    // Group a's own point, unaffected.
    fs::write(&vol, sample_data(50_000, 10)).unwrap();
    opts.group = "a".into();
    backup(&tenant, &keys, &opts).unwrap();

    let v = verify(
        &repo,
        &VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys: Some(keys.clone()),
            progress: None,
            repair: false,
        },
    )
    .unwrap();
    assert!(!v.is_clean());
    assert!(
        v.damaged
            .iter()
            .any(|d| d.id.contains(&target.to_hex()[..12]) && d.reason.contains("does not hash to its id")),
        "the planted object is named: {:?}",
        v.damaged
    );
    let groups: Vec<(&str, u64)> = v.affected_points.iter().map(|p| (p.group.as_str(), p.seq)).collect();
    assert_eq!(groups, [("b", 1)], "{:?}", v.affected_points);
    let e = restore(
        &tenant,
        &keys,
        &RestoreOptions {
            group: "b".into(),
            point: PointSelector::Latest,
            volume: "disk".into(),
            target: root.join("out"),
            progress: None,
        },
    )
    .unwrap_err();
    let e = e.to_string();
    assert!(e.contains(&target.to_hex()) && e.contains("is damaged"), "{e}");
}
