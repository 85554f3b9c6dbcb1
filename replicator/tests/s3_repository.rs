//! `s3://` repositories on a real Garage (single node and a 3-node cluster
//! with replication factor 3): backup, restore bit for bit, verify, GC,
//! prune, repair of a lost cache from the bucket alone, the owner lease, and
//! the faults (wrong credentials, missing bucket, a bucket of another
//! repository, a connection cut mid-PUT, a node killed mid-upload). Tests
//! skip with a message where `garage` is not installed.

#[path = "support/cut_proxy.rs"]
mod cut_proxy;
#[path = "support/garage.rs"]
mod garage;
#[path = "support/points.rs"]
mod points;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use garage::Garage;
use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    DEFAULT_TENANT, Error, KeyFile, Keys, ObjectStorage, Repository, S3Location, S3Settings, S3Storage, gc, repair_s3,
};
use points::no_progress;

fn settings(g: &Garage, endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.into()),
        region: Some(g.region().into()),
        access_key_id: Some(g.key_id().into()),
        secret_access_key: Some(g.secret().into()),
        path_style: Some(true),
    }
}

fn loc(url: &str) -> S3Location {
    S3Location::parse(url).unwrap().unwrap()
}

struct Site {
    dir: tempfile::TempDir,
    keys: Keys,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyFile::create(&dir.path().join("k"), None).unwrap();
        Site { keys: key.keys(), dir }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn state(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }
}

fn try_backup(site: &Site, repo: &Repository, vol: &Path) -> Result<(), Error> {
    points::backup_disk(repo, &site.keys, vol, site.root().join("agent-state"))
}

fn restore_seq(site: &Site, repo: &Repository, seq: u64) -> Vec<u8> {
    points::restore_seq(repo, &site.keys, seq, site.root())
}

fn deep_verify(site: &Site, repo: &Repository) -> lifeline_replicator::VerifyReport {
    points::deep_verify(repo, &site.keys)
}

/// A new bucket `bucket` of `g` and a repository initialised at `url` in it,
/// with its cache in the site's `state`.
fn bucket_repo(g: &Garage, bucket: &str, url: &str) -> (Site, S3Settings, S3Location, Repository) {
    g.create_bucket(bucket);
    let site = Site::new();
    let s = settings(g, &g.endpoint());
    let l = loc(url);
    let repo = Repository::init_s3(&l, &s, &site.state("state"), &site.keys, DEFAULT_TENANT).unwrap();
    (site, s, l, repo)
}

/// A 24 MiB volume `vol.img` of sample data: its path and content.
fn volume_24m(site: &Site, seed: u64) -> (PathBuf, Vec<u8>) {
    let vol = site.root().join("vol.img");
    let data = sample_data(24 << 20, seed);
    fs::write(&vol, &data).unwrap();
    (vol, data)
}

/// Three points of a 40 MiB volume (more than two packs), changed between them.
fn three_points(site: &Site, repo: &Repository) -> Vec<Vec<u8>> {
    let vol = site.root().join("vol.img");
    let mut data = sample_data(40 << 20, 11);
    let mut versions = Vec::new();
    for i in 0..3u8 {
        data[(i as usize) * (9 << 20) + 777..][..70_000].fill(i + 1);
        fs::write(&vol, &data).unwrap();
        try_backup(site, repo, &vol).unwrap();
        versions.push(data.clone());
    }
    versions
}

#[test]
fn a_bucket_repository_backs_up_restores_verifies_and_survives_the_loss_of_its_cache() {
    let Some(g) = Garage::single() else { return };
    let (site, s, l, repo) = bucket_repo(&g, "dr-repo", "s3://dr-repo/site-b");
    let versions = three_points(&site, &repo);
    for (i, v) in versions.iter().enumerate() {
        assert!(
            restore_seq(&site, &repo, i as u64 + 1) == *v,
            "point {} restores bit for bit",
            i + 1
        );
    }
    let r = deep_verify(&site, &repo);
    assert!(r.is_clean(), "{r:?}");

    // Packs of about 16 MiB, never one object per chunk.
    let storage = S3Storage::new(&l, &s).unwrap();
    let packs: Vec<(String, u64)> = storage.list("tenants/default/objects/packs/").unwrap();
    assert!(!packs.is_empty());
    assert!(packs.len() <= 8, "{} packs for 3 points of 40 MiB", packs.len());
    assert!(storage.list("meta/points/default/db/").unwrap().len() == 3);
    drop(repo);

    // A second cache of the same repository is refused: one owner.
    let other = Repository::open_s3(&l, &s, &site.state("other-state"));
    let e = other.err().expect("a second cache must be refused").to_string();
    assert!(
        e.contains("lifeline repair --repo s3://dr-repo/site-b --state-dir"),
        "{e}"
    );

    // A fresh machine: repair the cache from the bucket alone, then restore.
    let fresh = site.state("fresh-state");
    let report = repair_s3(&l, &s, &fresh, &no_progress).unwrap();
    assert_eq!(report.points, 3, "{report:?}");
    assert!(report.damaged.is_empty(), "{report:?}");
    let repo = Repository::open_s3(&l, &s, &fresh).unwrap();
    assert!(restore_seq(&site, &repo, 3) == versions[2]);
    assert!(deep_verify(&site, &repo).is_clean());
    drop(repo);

    // The old cache lost the lease to the repair: refused, naming the owner.
    let e = Repository::open_s3(&l, &s, &site.state("state"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("owned by the cache") && e.contains("fresh-state"), "{e}");
}

#[test]
fn gc_and_prune_work_on_a_bucket() {
    let Some(g) = Garage::single() else { return };
    let (site, s, l, repo) = bucket_repo(&g, "gc-repo", "s3://gc-repo");
    let versions = three_points(&site, &repo);
    repo.remove_points(DEFAULT_TENANT, "db", &[1, 2]).unwrap();
    let report = gc(&repo, DEFAULT_TENANT, Duration::ZERO, false).unwrap();
    assert!(report.collect.objects_removed > 0, "{report:?}");
    assert!(restore_seq(&site, &repo, 3) == versions[2]);
    assert!(deep_verify(&site, &repo).is_clean());
    let storage = S3Storage::new(&l, &s).unwrap();
    assert_eq!(storage.list("meta/points/").unwrap().len(), 1);
}

#[test]
fn a_group_with_its_own_dedup_scope_keeps_its_packs_under_its_own_prefix() {
    let Some(g) = Garage::single() else { return };
    let (site, s, l, repo) = bucket_repo(&g, "scope-repo", "s3://scope-repo");
    assert!(repo.create_scope(DEFAULT_TENANT, "db").unwrap());
    let versions = three_points(&site, &repo);
    let storage = S3Storage::new(&l, &s).unwrap();
    assert!(
        !storage
            .list("tenants/default/groups/db/objects/packs/")
            .unwrap()
            .is_empty()
    );
    assert!(storage.list("tenants/default/objects/packs/").unwrap().is_empty());
    assert_eq!(storage.list("meta/scopes/default/").unwrap().len(), 1);
    repo.remove_points(DEFAULT_TENANT, "db", &[1, 2]).unwrap();
    let report = gc(&repo, DEFAULT_TENANT, Duration::ZERO, false).unwrap();
    assert!(report.collect.objects_removed > 0, "{report:?}");
    assert!(deep_verify(&site, &repo).is_clean());
    drop(repo);
    // A fresh cache from the bucket alone finds the scope and its packs.
    let fresh = site.state("fresh-state");
    let report = repair_s3(&l, &s, &fresh, &no_progress).unwrap();
    assert!(report.damaged.is_empty(), "{report:?}");
    let repo = Repository::open_s3(&l, &s, &fresh).unwrap();
    assert_eq!(repo.scopes(DEFAULT_TENANT).unwrap(), ["db"]);
    assert!(restore_seq(&site, &repo, 3) == versions[2]);
}

#[test]
fn bad_credentials_a_missing_bucket_and_a_foreign_bucket_are_named_with_the_fix() {
    let Some(g) = Garage::single() else { return };
    g.create_bucket("mine");
    let site = Site::new();
    let s = settings(&g, &g.endpoint());

    let wrong = S3Settings {
        secret_access_key: Some("not-the-secret".into()),
        ..s.clone()
    };
    let init_refused = |url: &str, settings: &S3Settings| {
        Repository::init_s3(&loc(url), settings, &site.state("st"), &site.keys, DEFAULT_TENANT)
            .err()
            .expect("init refused")
            .to_string()
    };
    let e = init_refused("s3://mine/x", &wrong);
    assert!(
        e.contains("refused the credentials") && e.contains("AWS_SECRET_ACCESS_KEY"),
        "{e}"
    );
    let e = init_refused("s3://no-such-bucket/x", &s);
    assert!(
        e.contains("no-such-bucket") && e.contains("garage bucket create"),
        "{e}"
    );

    // The cache of repository A, pointed at a bucket that now holds repository B.
    let a = Repository::init_s3(&loc("s3://mine/r"), &s, &site.state("a"), &site.keys, DEFAULT_TENANT).unwrap();
    drop(a);
    let storage = S3Storage::new(&loc("s3://mine/r"), &s).unwrap();
    for (k, _) in storage.list("").unwrap() {
        storage.delete(&k).unwrap();
    }
    let b = Repository::init_s3(&loc("s3://mine/r"), &s, &site.state("b"), &site.keys, DEFAULT_TENANT).unwrap();
    drop(b);
    // Give A the lease back, as if B's owner were gone: A's cache is still not B's.
    let lease = storage.get(lifeline_replicator::OWNER_KEY).unwrap().unwrap();
    let mut lease: lifeline_replicator::OwnerLease = serde_json::from_slice(&lease).unwrap();
    lease.owner =
        fs::read_to_string(lifeline_replicator::s3_cache_dir(&site.state("a"), &loc("s3://mine/r")).join("owner-id"))
            .unwrap()
            .trim()
            .to_string();
    storage
        .replace(lifeline_replicator::OWNER_KEY, &serde_json::to_vec(&lease).unwrap())
        .unwrap();
    let e = Repository::open_s3(&loc("s3://mine/r"), &s, &site.state("a"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("belongs to repository") && e.contains("lifeline repair --repo s3://mine/r"),
        "{e}"
    );

    // Not a repository at all.
    let e = Repository::open_s3(&loc("s3://mine/empty"), &s, &site.state("c"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a Lifeline repository"), "{e}");
}

#[test]
fn a_connection_cut_mid_put_commits_nothing_and_the_next_backup_completes() {
    let Some(g) = Garage::single() else { return };
    g.create_bucket("cut");
    let site = Site::new();
    let proxy = cut_proxy::CutProxy::new(g.s3_addr(0));
    let s = settings(&g, &proxy.endpoint());
    let l = loc("s3://cut/p");
    let repo = Repository::init_s3(&l, &s, &site.state("state"), &site.keys, DEFAULT_TENANT).unwrap();
    let (vol, data) = volume_24m(&site, 5);
    // Every connection is cut 2 MiB into its upload: the retries fail too.
    proxy.cut_after_upload_bytes(2 << 20);
    let e = try_backup(&site, &repo, &vol).unwrap_err().to_string();
    assert!(e.contains("s3://cut/p"), "the error names the object: {e}");
    assert!(proxy.cuts() > 0);
    assert!(
        repo.points(DEFAULT_TENANT, Some("db")).unwrap().is_empty(),
        "nothing committed"
    );
    proxy.heal();
    try_backup(&site, &repo, &vol).unwrap();
    assert!(restore_seq(&site, &repo, 1) == data);
    assert!(deep_verify(&site, &repo).is_clean());
    // A single cut is retried transparently (and counted).
    let before = lifeline_replicator::S3Storage::new(&l, &s).unwrap().stats().counts();
    proxy.cut_once_after_upload_bytes(1 << 20);
    let mut changed = data.clone();
    changed[3 << 20..][..(8 << 20)].copy_from_slice(&sample_data(8 << 20, 99));
    fs::write(&vol, &changed).unwrap();
    try_backup(&site, &repo, &vol).unwrap();
    let after = lifeline_replicator::S3Storage::new(&l, &s).unwrap().stats().counts();
    assert!(after.since(&before).failed >= 1, "{:?}", after.since(&before));
    assert!(restore_seq(&site, &repo, 2) == changed);
}

#[test]
fn a_three_node_cluster_loses_a_node_mid_upload_and_the_backup_completes() {
    let Some(mut g) = Garage::cluster(3) else { return };
    let (site, s, l, repo) = bucket_repo(&g, "rf3", "s3://rf3/p");
    let vol = site.root().join("vol.img");
    let data = sample_data(64 << 20, 3);
    fs::write(&vol, &data).unwrap();
    let killer = std::thread::scope(|sc| {
        let h = sc.spawn(|| try_backup(&site, &repo, &vol));
        std::thread::sleep(Duration::from_millis(300));
        g.kill_node(2);
        h.join().unwrap()
    });
    killer.unwrap();
    assert!(restore_seq(&site, &repo, 1) == data);
    drop(repo);
    let fresh = site.state("fresh");
    let report = repair_s3(&l, &s, &fresh, &no_progress).unwrap();
    assert_eq!(report.points, 1);
    let repo = Repository::open_s3(&l, &s, &fresh).unwrap();
    assert!(restore_seq(&site, &repo, 1) == data);
}

#[test]
fn an_altered_point_object_in_the_bucket_fails_authentication_and_is_named() {
    let Some(g) = Garage::single() else { return };
    let (site, s, l, repo) = bucket_repo(&g, "auth", "s3://auth/p");
    let versions = three_points(&site, &repo);
    let storage = S3Storage::new(&l, &s).unwrap();
    let key = "meta/points/default/db/00000000000000000002";
    let mut bytes = storage.get(key).unwrap().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    storage.replace(key, &bytes).unwrap();
    let r = deep_verify(&site, &repo);
    assert!(!r.is_clean(), "an altered point object was called clean: {r:?}");
    let text = format!("{:?}", r.records);
    assert!(
        text.contains("s3://auth/p/meta/points/default/db/00000000000000000002"),
        "{text}"
    );
    // The other points still restore.
    assert!(restore_seq(&site, &repo, 3) == versions[2]);
    drop(repo);
    // A repair that finds no intact copy reports the point lost, by name.
    let report = repair_s3(&l, &s, &site.state("fresh"), &no_progress).unwrap();
    assert_eq!(report.points, 2, "{report:?}");
    assert!(
        report
            .damaged
            .iter()
            .any(|d| d.contains("point 2 of group `db` is lost")),
        "{report:?}"
    );
}

/// A tmpfs of `size` at `dir` (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIP: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with a file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    p
}

#[test]
fn a_full_cache_disk_fails_the_backup_with_nothing_committed_and_the_next_one_completes() {
    let Some(g) = Garage::single() else { return };
    g.create_bucket("full");
    let site = Site::new();
    let Some(_fs) = Tmpfs::mount(&site.state("state"), "64m") else {
        return;
    };
    let s = settings(&g, &g.endpoint());
    let l = loc("s3://full/p");
    let repo = Repository::init_s3(&l, &s, &site.state("state"), &site.keys, DEFAULT_TENANT).unwrap();
    let (vol, data) = volume_24m(&site, 17);
    let filler = fill(&site.state("state"));
    let r = try_backup(&site, &repo, &vol);
    let e = r.expect_err("a backup into a full cache disk succeeded").to_string();
    assert!(e.contains("No space left") || e.contains("space"), "{e}");
    drop(repo);
    fs::remove_file(&filler).unwrap();
    let repo = Repository::open_s3(&l, &s, &site.state("state")).unwrap();
    assert!(
        repo.points(DEFAULT_TENANT, Some("db")).unwrap().is_empty(),
        "nothing committed"
    );
    try_backup(&site, &repo, &vol).unwrap();
    assert!(restore_seq(&site, &repo, 1) == data);
    assert!(deep_verify(&site, &repo).is_clean());
}
