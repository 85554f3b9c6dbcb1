//! Garbage collection through a receiver while an agent uploads: whatever the
//! instant the collection runs at, nothing a point needs is lost, every point
//! restores bit for bit, and an agent whose cycle raced a collection either
//! commits at once or is told to retry and then commits.
//!
//! The scenario: point 1 holds content A, point 2 content B; prune removes
//! point 1, so A's objects are garbage, still present. Then the volume goes
//! back to A: the agent's dedup query finds A's chunks present and does not
//! resend them; a collection at the wrong instant would delete them under it.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_replicator::{
    BackupOptions, BackupSummary, ChunkStore, CycleReport, KeyFile, Keys, ObjectId, PointRecord, PointSelector,
    RestoreOptions, StoredObject, TenantRepository, backup, restore,
};
use lifeline_service::RemoteRepository;
use support::*;

const MIB: usize = 1 << 20;

/// Where in an agent's cycle the test acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// After the first dedup answer.
    AfterFirstAnswer,
    /// After the first object is handed to the upload.
    AfterFirstPut,
    /// Before the upload is made durable.
    BeforeSync,
    /// Before the point is committed.
    BeforeCommit,
}

type Action = Box<dyn Fn() + Send + Sync>;

/// An agent's view of the receiver that runs `action` once, when the cycle
/// reaches `stage`.
struct Hooked {
    inner: RemoteRepository,
    hook: Arc<Hook>,
}

struct Hook {
    stage: Stage,
    fired: AtomicBool,
    action: Action,
}

impl Hook {
    fn at(&self, stage: Stage) {
        if stage == self.stage && !self.fired.swap(true, Ordering::SeqCst) {
            (self.action)();
        }
    }
}

struct HookedStore {
    inner: Arc<dyn ChunkStore>,
    hook: Arc<Hook>,
}

impl ChunkStore for HookedStore {
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> lifeline_replicator::Result<bool> {
        let r = self.inner.put(id, sealed);
        self.hook.at(Stage::AfterFirstPut);
        r
    }
    fn contains(&self, id: &ObjectId) -> lifeline_replicator::Result<bool> {
        Ok(!self.missing(std::slice::from_ref(id))?[0])
    }
    fn missing(&self, ids: &[ObjectId]) -> lifeline_replicator::Result<Vec<bool>> {
        let r = self.inner.missing(ids);
        self.hook.at(Stage::AfterFirstAnswer);
        r
    }
    fn get(&self, id: &ObjectId) -> lifeline_replicator::Result<Vec<u8>> {
        self.inner.get(id)
    }
    fn sync(&self) -> lifeline_replicator::Result<()> {
        self.hook.at(Stage::BeforeSync);
        self.inner.sync()
    }
    fn abandon(&self) {
        self.inner.abandon()
    }
    fn list(
        &self,
        f: &mut dyn FnMut(StoredObject) -> lifeline_replicator::Result<()>,
    ) -> lifeline_replicator::Result<()> {
        self.inner.list(f)
    }
    fn delete(&self, id: &ObjectId) -> lifeline_replicator::Result<()> {
        self.inner.delete(id)
    }
    fn location(&self, id: &ObjectId) -> String {
        self.inner.location(id)
    }
}

impl TenantRepository for Hooked {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn repository_id(&self) -> String {
        self.inner.repository_id()
    }
    fn tenant(&self) -> &str {
        self.inner.tenant()
    }
    fn store(&self, group: &str) -> lifeline_replicator::Result<Arc<dyn ChunkStore>> {
        Ok(Arc::new(HookedStore {
            inner: self.inner.store(group)?,
            hook: self.hook.clone(),
        }))
    }
    fn points(&self, group: Option<&str>) -> lifeline_replicator::Result<Vec<PointRecord>> {
        self.inner.points(group)
    }
    fn commit_point(&self, point: &PointRecord, cycle: &CycleReport) -> lifeline_replicator::Result<()> {
        self.hook.at(Stage::BeforeCommit);
        self.inner.commit_point(point, cycle)
    }
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: Duration) -> lifeline_replicator::Result<()> {
        self.inner.pin(group, seq, holder, ttl)
    }
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> lifeline_replicator::Result<()> {
        self.inner.unpin(group, seq, holder)
    }
}

struct Site {
    dir: tempfile::TempDir,
    srv: Served,
    keys: Keys,
    vol: PathBuf,
}

fn start() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path(), &["a@t"]);
    let srv = serve_receiver(dir.path(), tls, allow(&[("a", "g")]));
    let key = KeyFile::create(&dir.path().join("k.key"), None).unwrap();
    let vol = dir.path().join("disk.img");
    Site {
        keys: key.keys(),
        srv,
        vol,
        dir,
    }
}

/// Incompressible content, different per seed.
fn content(seed: u64, len: usize) -> Vec<u8> {
    xorshift_bytes(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, len)
}

impl Site {
    fn connect(&self) -> RemoteRepository {
        RemoteRepository::connect(&self.srv.url, &self.srv.tls, "a", &self.keys).unwrap()
    }

    fn options(&self) -> BackupOptions {
        BackupOptions {
            group: "g".into(),
            volumes: vec![("disk".into(), self.vol.clone())],
            freeze: None,
            thaw: None,
            state_dir: self.dir.path().join("state"),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            block_map: false,
        }
    }

    /// One cycle through `repo`, retried like the agent retries transient
    /// failures; returns the summary and the number of attempts.
    fn cycle(&self, repo: &dyn TenantRepository) -> (BackupSummary, u32) {
        for attempt in 1..=5 {
            match backup(repo, &self.keys, &self.options()) {
                Ok(s) => return (s, attempt),
                Err(e) if e.is_transient() => eprintln!("attempt {attempt}: {e} (retrying)"),
                Err(e) => panic!("backup failed: {e}"),
            }
        }
        panic!("five attempts failed");
    }

    fn gc(&self) -> serde_json::Value {
        let reports = lifeline_service::remote_gc(
            &self.srv.url,
            &self.srv.tls,
            "ops",
            pb::GcRequest {
                tenant: "t".into(),
                grace_secs: 0,
                dry_run: false,
            },
        )
        .unwrap();
        serde_json::from_str(&reports[0]).unwrap()
    }

    fn prune_to_newest(&self) {
        lifeline_service::remote_prune(
            &self.srv.url,
            &self.srv.tls,
            "ops",
            pb::PruneRequest {
                tenant: "t".into(),
                group: "g".into(),
                keep_last: 1,
                ..Default::default()
            },
        )
        .unwrap();
    }

    fn restore(&self, seq: u64, to: &Path) -> Vec<u8> {
        restore(
            &self.connect(),
            &self.keys,
            &RestoreOptions {
                group: "g".into(),
                point: PointSelector::Seq(seq),
                volume: "disk".into(),
                target: to.to_path_buf(),
                progress: None,
            },
        )
        .unwrap_or_else(|e| panic!("restore point {seq}: {e}"));
        std::fs::read(to).unwrap()
    }

    /// The receiver's no-key scrub finds nothing missing or damaged.
    fn verify_clean(&self) {
        for (tenant, json) in lifeline_service::remote_verify(&self.srv.url, &self.srv.tls, "ops", Some("t")).unwrap() {
            let r: lifeline_replicator::VerifyReport = serde_json::from_str(&json).unwrap();
            assert!(r.is_clean(), "tenant {tenant}: {json}");
        }
    }

    /// Points 1 (A) and 2 (B), then point 1 pruned: A's objects are garbage.
    /// The volume then holds A with its first bytes changed (mostly A's
    /// chunks, a few new ones), which it returns.
    fn prepare(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        std::fs::write(&self.vol, a).unwrap();
        assert_eq!(self.cycle(&self.connect()).0.seq, 1);
        std::fs::write(&self.vol, b).unwrap();
        assert_eq!(self.cycle(&self.connect()).0.seq, 2);
        self.prune_to_newest();
        let mut a2 = a.to_vec();
        a2[..4096].copy_from_slice(&content(99, 4096));
        std::fs::write(&self.vol, &a2).unwrap();
        a2
    }

    fn gc_action(self: &Arc<Self>, reports: Arc<Mutex<Vec<serde_json::Value>>>) -> Action {
        let me = self.clone();
        Box::new(move || reports.lock().unwrap().push(me.gc()))
    }
}

/// A collection that runs whole between the agent's dedup answers and its
/// commit removes what the agent was told is present; the commit notices
/// (`Aborted`), the agent's retry re-sends it, and every point restores.
#[test]
fn gc_inside_an_agent_cycle_never_loses_data() {
    for stage in [
        Stage::AfterFirstAnswer,
        Stage::AfterFirstPut,
        Stage::BeforeSync,
        Stage::BeforeCommit,
    ] {
        let site = Arc::new(start());
        let (a, b) = (content(1, 6 * MIB), content(2, 6 * MIB));
        let a = site.prepare(&a, &b);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let hooked = Hooked {
            inner: site.connect(),
            hook: Arc::new(Hook {
                stage,
                fired: AtomicBool::new(false),
                action: site.gc_action(reports.clone()),
            }),
        };
        let (summary, attempts) = site.cycle(&hooked);
        let r = reports.lock().unwrap()[0].clone();
        assert!(
            r["objects_removed"].as_u64().unwrap() > 0,
            "{stage:?}: the collection removed point 1's objects: {r}"
        );
        if stage == Stage::BeforeCommit {
            assert_eq!(attempts, 2, "{stage:?}: the first commit must be refused");
        }
        assert_eq!(summary.seq, 3, "{stage:?}");
        let out = site.dir.path().join("out.img");
        assert!(site.restore(3, &out) == a, "{stage:?}: point 3 is A, bit for bit");
        assert!(site.restore(2, &out) == b, "{stage:?}: point 2 is B, bit for bit");
        site.verify_clean();
        // A later collection finds the repository consistent and keeps both points.
        site.gc();
        assert!(site.restore(3, &out) == a && site.restore(2, &out) == b, "{stage:?}");
        site.verify_clean();
        eprintln!("{stage:?}: {attempts} attempt(s); gc {r}");
    }
}

/// A collection held between its scan and its sweep while the agent asks,
/// uploads and commits: what the agent was told is present is kept (touched),
/// so the agent commits at its first attempt and the point restores.
#[test]
fn objects_answered_present_during_a_collection_survive_its_sweep() {
    let site = Arc::new(start());
    let (a, b) = (content(3, 6 * MIB), content(4, 6 * MIB));
    let a = site.prepare(&a, &b);
    // Hold the next collection before its sweep until the agent is about to commit.
    let (at_sweep_tx, at_sweep) = mpsc::channel::<()>();
    let (go_tx, go) = mpsc::channel::<()>();
    let go = Mutex::new(go);
    let at_sweep_tx = Mutex::new(at_sweep_tx);
    site.srv.receiver.set_gc_before_sweep(Some(Arc::new(move || {
        at_sweep_tx.lock().unwrap().send(()).unwrap();
        go.lock().unwrap().recv_timeout(Duration::from_secs(60)).unwrap();
    })));
    let collector = {
        let site = site.clone();
        std::thread::spawn(move || site.gc())
    };
    at_sweep.recv_timeout(Duration::from_secs(60)).unwrap();
    // The collection has marked and scanned: A's objects are on its dead list.
    let done = Arc::new(Mutex::new(Some(collector)));
    let result = Arc::new(Mutex::new(None));
    let hooked = {
        let (done, result) = (done.clone(), result.clone());
        Hooked {
            inner: site.connect(),
            hook: Arc::new(Hook {
                stage: Stage::BeforeCommit,
                fired: AtomicBool::new(false),
                // Let the sweep run now, after every answer and upload, before the commit.
                action: Box::new(move || {
                    go_tx.send(()).unwrap();
                    let r = done.lock().unwrap().take().unwrap().join().unwrap();
                    *result.lock().unwrap() = Some(r);
                }),
            }),
        }
    };
    let (summary, attempts) = site.cycle(&hooked);
    site.srv.receiver.set_gc_before_sweep(None);
    let r = result.lock().unwrap().take().unwrap();
    assert_eq!(attempts, 1, "nothing the agent relied on was collected: {r}");
    assert!(r["objects_touched"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(summary.seq, 3);
    let out = site.dir.path().join("out.img");
    assert!(site.restore(3, &out) == a, "point 3 is A, bit for bit");
    assert!(site.restore(2, &out) == b, "point 2 is B, bit for bit");
    site.verify_clean();
    // What the collection kept for the agent is referenced now: a second one keeps it.
    let again = site.gc();
    assert!(site.restore(3, &out) == a, "{again}");
}

/// An agent replicating changing content in a loop while collections with no
/// grace run back to back: every point left restores to what was written.
#[test]
fn collections_racing_a_replicating_agent_lose_nothing() {
    let site = Arc::new(start());
    let stop = Arc::new(AtomicBool::new(false));
    let collections = Arc::new(AtomicU32::new(0));
    // Seeds cycle through a small set so later points reuse earlier, pruned content.
    let written: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    // The tenant's namespace exists from the first session on.
    drop(site.connect());
    let retries = Arc::new(AtomicU32::new(0));
    let agent = {
        let retries = retries.clone();
        let (site, written) = (site.clone(), written.clone());
        std::thread::spawn(move || {
            let repo = site.connect();
            for i in 0..12u64 {
                let seed = 10 + i % 3;
                let mut v = content(seed, 4 * MIB);
                // A little unique data each time too.
                v[(i as usize) * 4096..(i as usize) * 4096 + 8].copy_from_slice(&i.to_le_bytes());
                std::fs::write(&site.vol, &v).unwrap();
                let (s, attempts) = site.cycle(&repo);
                retries.fetch_add(attempts - 1, Ordering::Relaxed);
                written.lock().unwrap().insert(s.seq, i);
                if i % 2 == 1 {
                    site.prune_to_newest();
                }
            }
        })
    };
    let collector = {
        let (site, stop, n) = (site.clone(), stop.clone(), collections.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                site.gc();
                n.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    agent.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    collector.join().unwrap();
    assert!(collections.load(Ordering::Relaxed) > 0);
    eprintln!(
        "{} collections during 12 cycles; {} cycles retried",
        collections.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
    site.gc();
    site.verify_clean();
    let points = site.connect().points(Some("g")).unwrap();
    assert!(!points.is_empty());
    let out = site.dir.path().join("out.img");
    for p in points {
        let i = written.lock().unwrap()[&p.header.seq];
        let mut want = content(10 + i % 3, 4 * MIB);
        want[(i as usize) * 4096..(i as usize) * 4096 + 8].copy_from_slice(&i.to_le_bytes());
        assert!(
            site.restore(p.header.seq, &out) == want,
            "point {} restores",
            p.header.seq
        );
    }
}
