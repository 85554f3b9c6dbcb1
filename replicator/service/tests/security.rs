//! Attacks on a shared receiver, made as an attacker would make them: a real
//! receiver over mutual TLS, clients speaking the real gRPC protocol with the
//! deployment's own certificates. Each test asserts that the attack is refused
//! (or bounded), that the receiver keeps serving, and that nothing genuine is
//! lost.
//!
//! - `ReadObjects` with 256 copies of the id of an 8 MiB object, alone and ten
//!   at once: bounded answers, bounded receiver memory (its peak is printed:
//!   `cargo test --release -p lifeline-service --test security -- --nocapture`);
//! - leases (`Pin`) taken or released by an identity that may not write the
//!   group, or released by another identity than the holder's;
//! - `--allow NAME@TENANT`: the same agent name in another tenant writes nothing;
//! - error messages carry none of the receiver's paths.

mod support;

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_replicator::file_formats::MAX_OBJECT_LEN;
use lifeline_replicator::{BackupOptions, Keys, ObjectId};
use lifeline_service::{
    CertsRequest, MAX_READ_ANSWER, Receiver, ReceiverConfig, RemoteRepository, TlsDir, mint_certificates, serve,
};
use support::*;
use tokio::runtime::Runtime;
use tonic::{Code, Response, Status};

fn put(
    rt: &Runtime,
    c: &mut Replication,
    objects: Vec<(ObjectId, Vec<u8>)>,
) -> Result<Response<pb::PutSummary>, Status> {
    let msgs: Vec<pb::SealedObjects> = objects
        .into_iter()
        .map(|(id, sealed)| pb::SealedObjects {
            objects: vec![pb::SealedObject {
                id: id.0.to_vec(),
                sealed: sealed.into(),
            }],
        })
        .collect();
    block(rt, c.put_objects(tokio_stream::iter(msgs)))
}

/// Incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    xorshift_bytes(seed.wrapping_mul(2).wrapping_add(1), len)
}

/// A sealed chunk of incompressible bytes within 64 KiB of the largest an
/// object may be.
fn large_object(keys: &Keys, seed: u64) -> (ObjectId, Vec<u8>) {
    sealed_chunk(keys, &noise(MAX_OBJECT_LEN - (64 << 10), seed))
}

/// A sealed chunk as large as an object may be (within 64 KiB).
fn largest_object(keys: &Keys) -> (ObjectId, Vec<u8>) {
    let (id, sealed) = large_object(keys, 42);
    assert!(sealed.len() <= MAX_OBJECT_LEN && sealed.len() > MAX_OBJECT_LEN - (128 << 10));
    (id, sealed)
}

fn small_object(keys: &Keys, i: u64) -> (ObjectId, Vec<u8>) {
    sealed_chunk(keys, &noise(4096, 1000 + i))
}

/// Certificates of one deployment: `agents` (NAME@TENANT) in `dir/tls`, and
/// each of `elsewhere` in `dir/tls-NAME@TENANT` (files are named by agent name
/// only, so the same name in two tenants needs two directories).
fn certificates(dir: &Path, agents: &[&str], elsewhere: &[&str]) -> TlsDir {
    let tls = support::certificates(dir, agents);
    for a in elsewhere {
        mint_certificates(&CertsRequest {
            ca_dir: dir.join("ca"),
            out: dir.join(format!("tls-{a}")),
            receiver_sans: vec![],
            agents: vec![a.to_string()],
            admins: vec![],
            days: 30,
            ..Default::default()
        })
        .unwrap();
    }
    tls
}

/// One real backup of a small volume into group `g` as `agent`: point `seq`.
fn backup(url: &str, tls: &TlsDir, agent: &str, keys: &Keys, dir: &Path, seed: u64) -> u64 {
    let vol = dir.join(format!("disk-{seed}.img"));
    std::fs::write(&vol, noise(1 << 20, seed)).unwrap();
    let remote = RemoteRepository::connect(url, tls, agent, keys).unwrap();
    lifeline_replicator::backup(
        &remote,
        keys,
        &BackupOptions {
            group: "g".into(),
            volumes: vec![("disk".into(), vol)],
            freeze: None,
            thaw: None,
            state_dir: dir.join(format!("state-{agent}")),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            block_map: false,
        },
    )
    .unwrap()
    .seq
}

// ---------------------------------------------------------------------------
// Finding 2: ReadObjects ran the receiver out of memory.

/// Duplicates are answered once, the answer is cut at the cap while reading,
/// and a remote restore still reads everything (it asks again for the rest).
#[test]
fn read_objects_answers_each_id_once_and_within_the_cap() {
    let (_dir, srv, keys, mut a) = agent_a(3);
    let rt = &srv.rt;
    let (big, big_sealed) = largest_object(&keys);
    let (big2, big2_sealed) = large_object(&keys, 43);
    let smalls: Vec<(ObjectId, Vec<u8>)> = (0..3).map(|i| small_object(&keys, i)).collect();
    let mut all = vec![(big, big_sealed.clone()), (big2, big2_sealed.clone())];
    all.extend(smalls.iter().cloned());
    ok("PutObjects", put(rt, &mut a, all));

    // The attack: one id, 256 times.
    let answer = ok(
        "ReadObjects of 256 copies of one id",
        block(rt, a.read_objects(ids(&[big; 256]))),
    );
    assert_eq!(answer.objects.len(), 1, "a duplicate id was answered more than once");
    assert_eq!(answer.objects[0].id, big.0.to_vec());
    assert!(answer.objects[0].sealed == big_sealed);

    // Two 8 MiB objects exceed the 12 MiB cap: the answer is the first only.
    let answer = ok(
        "ReadObjects of two large objects",
        block(rt, a.read_objects(ids(&[big, big2, big, big2]))),
    );
    assert_eq!(answer.objects.len(), 1);
    assert_eq!(answer.objects[0].id, big.0.to_vec());
    let total: usize = answer.objects.iter().map(|o| o.sealed.len()).sum();
    assert!(total <= MAX_READ_ANSWER);

    // Small objects after a large one fit: answered in the order first asked.
    let order = [smalls[0].0, big, smalls[0].0, smalls[1].0, smalls[2].0, big];
    let answer = ok("ReadObjects of a mix", block(rt, a.read_objects(ids(&order))));
    let got: Vec<Vec<u8>> = answer.objects.iter().map(|o| o.id.clone()).collect();
    let want: Vec<Vec<u8>> = [smalls[0].0, big, smalls[1].0, smalls[2].0]
        .iter()
        .map(|i| i.0.to_vec())
        .collect();
    assert_eq!(got, want);

    // Answers release their budget once sent: many large reads one after
    // another on one connection never wait for it.
    let started = std::time::Instant::now();
    for _ in 0..12 {
        let answer = ok("ReadObjects, again", block(rt, a.read_objects(ids(&[big2, big]))));
        assert_eq!(answer.objects.len(), 1);
    }
    assert!(started.elapsed() < Duration::from_secs(20), "reads waited for budget");

    // The client asks again for what an answer left out: a read through the
    // remote store gets every object, duplicates included, in order.
    let remote = RemoteRepository::connect(&srv.url, &srv.tls, "a", &keys).unwrap();
    use lifeline_replicator::TenantRepository;
    let store = remote.store("g").unwrap();
    let wanted = [big, big2, smalls[1].0, big, smalls[0].0];
    let read = store.get_many(&wanted).unwrap();
    let expect = [&big_sealed, &big2_sealed, &smalls[1].1, &big_sealed, &smalls[0].1];
    assert_eq!(read.len(), expect.len());
    for (i, (r, e)) in read.iter().zip(expect).enumerate() {
        assert!(r == e, "object {i} of the remote read differs");
    }
    assert!(store.get(&big2).unwrap() == big2_sealed);
}

/// Many uploads at once of the largest objects, more than the upload budget
/// in all: every upload completes (those waiting for budget store what they
/// hold first, so they never wait on each other) and the receiver serves on.
#[test]
fn concurrent_large_uploads_share_the_upload_budget() {
    let (dir, srv, keys, mut a) = agent_a(4);
    let rt = &srv.rt;
    let objects: Vec<(ObjectId, prost::bytes::Bytes)> = (0..4u64)
        .map(|i| {
            let (id, sealed) = large_object(&keys, 500 + i);
            (id, sealed.into())
        })
        .collect();
    // A message of two 8 MiB objects is over what an upload message may be.
    let two = pb::SealedObjects {
        objects: objects[..2]
            .iter()
            .map(|(id, sealed)| pb::SealedObject {
                id: id.0.to_vec(),
                sealed: sealed.clone(),
            })
            .collect(),
    };
    let s = block(rt, a.put_objects(tokio_stream::iter(vec![two]))).expect_err("a 16 MiB message was accepted");
    assert!(
        matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{:?}: {}",
        s.code(),
        s.message()
    );
    // 12 streams × 16 messages of one 8 MiB object: 1.5 GiB through a 128 MiB budget.
    let uploads: Vec<_> = (0..12)
        .map(|n| {
            let tls = TlsDir::new(&dir.path().join("tls"));
            let url = srv.url.clone();
            let msgs: Vec<pb::SealedObjects> = (0..16)
                .map(|m| pb::SealedObjects {
                    objects: [(n + m) % 4]
                        .iter()
                        .map(|&k| pb::SealedObject {
                            id: objects[k].0.0.to_vec(),
                            sealed: objects[k].1.clone(),
                        })
                        .collect(),
                })
                .collect();
            rt.spawn(async move {
                let mut c = connect(&tls, "a", &url).await;
                c.put_objects(tokio_stream::iter(msgs)).await
            })
        })
        .collect();
    for u in uploads {
        let summary = ok("one of 12 concurrent uploads", block(rt, u).unwrap());
        assert_eq!(summary.objects, 16);
    }
    let all: Vec<ObjectId> = objects.iter().map(|o| o.0).collect();
    let mask = ok("FilterMissing", block(rt, a.filter_missing(ids(&all)))).missing;
    assert_eq!(mask, vec![false; 4]);
    let back = ok("ReadObjects", block(rt, a.read_objects(ids(&all[..1])))).objects;
    assert!(back[0].sealed == objects[0].1);
}

/// The receiver as its own process, for a memory figure of its own. Started
/// by `read_objects_memory_stays_bounded`; does nothing when run by hand.
#[test]
#[ignore = "started by read_objects_memory_stays_bounded"]
fn receiver_process() {
    let Ok(dir) = std::env::var("LIFELINE_TEST_RECEIVER_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let receiver = Receiver::open(&ReceiverConfig {
        repo: dir.join("repo"),
        allow: allow(&[("a", "g")]),
    })
    .unwrap();
    let tls = TlsDir::new(&dir.join("tls"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        // Serves until the parent closes stdin.
        let eof = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        });
        serve(listener, tls.server_config().unwrap(), Arc::new(receiver), async move {
            let _ = eof.await;
        })
        .await
        .unwrap();
    });
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The receiver of [`receiver_process`], started as a child: (child, URL).
fn receiver_child(dir: &Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "receiver_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LIFELINE_TEST_RECEIVER_DIR", dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the receiver process ended").unwrap();
        // libtest may print `test receiver_process ... ` before it on the line.
        if let Some((_, a)) = line.split_once("LISTENING ") {
            break a.trim().to_string();
        }
    };
    // Drains the rest of its output, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, format!("https://{addr}"))
}

/// Ends a [`receiver_child`]: it must still be running, and stop cleanly.
fn stop_child(mut child: std::process::Child) {
    assert!(child.try_wait().unwrap().is_none(), "the receiver process died");
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "the receiver process ended with {status}");
}

/// A [`receiver_child`] in a directory of its own, with a runtime and agent
/// `a`'s session open on it.
struct ChildSession {
    dir: tempfile::TempDir,
    child: std::process::Child,
    pid: u32,
    url: String,
    rt: Runtime,
    a: Replication,
}

fn child_session(keys: &Keys) -> ChildSession {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path(), &["a@t"], &[]);
    let (child, url) = receiver_child(dir.path());
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut a = replication(&rt, &tls, "a", &url);
    ok("OpenSession", block(&rt, a.open_session(session(keys))));
    ChildSession {
        dir,
        child,
        pid,
        url,
        rt,
        a,
    }
}

/// Process `pid`'s memory around `work`: resident KiB before, peak KiB while
/// it ran, growth in MiB, and how long it took.
struct Memory {
    rss_before: u64,
    peak: u64,
    growth_mib: f64,
    elapsed: Duration,
}

fn memory_during(pid: u32, work: impl FnOnce()) -> Memory {
    let rss_before = proc_kib(pid, "VmRSS:");
    // Peak RSS from now on (Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let started = std::time::Instant::now();
    work();
    let elapsed = started.elapsed();
    let peak = proc_kib(pid, "VmHWM:");
    Memory {
        rss_before,
        peak,
        growth_mib: peak.saturating_sub(rss_before) as f64 / 1024.0,
        elapsed,
    }
}

impl Memory {
    /// Prints the figure: `receiver memory under {load}: …(all {done} in … s)`.
    fn print(&self, load: &str, done: &str) {
        println!(
            "receiver memory under {load}: RSS before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB (all {done} in {:.2} \
             s)",
            self.rss_before as f64 / 1024.0,
            self.peak as f64 / 1024.0,
            self.growth_mib,
            self.elapsed.as_secs_f64()
        );
    }
}

/// One call per input at once, each by agent `a` on a connection of its own
/// to the [`ChildSession`]'s receiver: their answers, in input order.
fn concurrently<I, T, Fut>(
    s: &ChildSession,
    inputs: Vec<I>,
    call: impl Fn(Replication, I) -> Fut + Copy + Send + Sync + 'static,
) -> Vec<T>
where
    I: Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let tasks: Vec<_> = inputs
        .into_iter()
        .map(|input| {
            let tls = TlsDir::new(&s.dir.path().join("tls"));
            let url = s.url.clone();
            s.rt.spawn(async move { call(connect(&tls, "a", &url).await, input).await })
        })
        .collect();
    tasks.into_iter().map(|t| block(&s.rt, t).unwrap()).collect()
}

/// Ten clients at once, each asking for 256 copies of an 8 MiB object (the
/// finding: one such call took a receiver from 36 MB to 4.2 GB). Every call is
/// answered with the object once, and the receiver's peak memory grows by a
/// bounded amount, printed as a figure.
#[test]
fn read_objects_memory_stays_bounded() {
    let keys = Keys::derive(&[5; 32]);
    let mut s = child_session(&keys);
    let (big, big_sealed) = largest_object(&keys);
    let (small, _) = small_object(&keys, 7);
    ok(
        "PutObjects",
        put(
            &s.rt,
            &mut s.a,
            vec![(big, big_sealed.clone()), (small_object(&keys, 7))],
        ),
    );
    // One call first (warms up the runtime, pack readers, TLS sessions).
    let one = ok("ReadObjects", block(&s.rt, s.a.read_objects(ids(&[big; 256]))));
    assert_eq!(one.objects.len(), 1);

    let m = memory_during(s.pid, || {
        let answers = concurrently(&s, vec![(); 10], move |mut c, ()| async move {
            c.read_objects(ids(&[big; 256])).await
        });
        for answer in answers {
            let objects = ok("one of 10 concurrent ReadObjects", answer).objects;
            assert_eq!(objects.len(), 1, "answered more than once");
            assert!(objects[0].sealed == big_sealed);
        }
    });
    m.print(
        &format!(
            "10 concurrent ReadObjects of 256 x one {:.1} MiB object",
            big_sealed.len() as f64 / (1 << 20) as f64
        ),
        "answered",
    );
    let growth_mib = m.growth_mib;
    assert!(growth_mib < 300.0, "the receiver grew by {growth_mib:.1} MiB");
    // Still serving: a presence query and a small read.
    let mask = ok(
        "FilterMissing after the attack",
        block(&s.rt, s.a.filter_missing(ids(&[big, small]))),
    )
    .missing;
    assert_eq!(mask, vec![false, false]);
    assert_eq!(
        ok(
            "ReadObjects after the attack",
            block(&s.rt, s.a.read_objects(ids(&[small])))
        )
        .objects
        .len(),
        1
    );
    stop_child(s.child);
}

/// Twelve uploads at once, each of 16 messages of one 8 MiB object (the
/// largest messages an agent may send): the receiver's peak memory is bounded
/// by its upload budget plus the message each waiting call holds, printed as
/// a figure.
#[test]
fn put_objects_memory_stays_bounded() {
    let keys = Keys::derive(&[12; 32]);
    let mut s = child_session(&keys);
    let objects: Vec<(ObjectId, prost::bytes::Bytes)> = (0..4u64)
        .map(|i| {
            let (id, sealed) = large_object(&keys, 700 + i);
            (id, sealed.into())
        })
        .collect();
    let message = |k: usize| pb::SealedObjects {
        objects: [k % 4]
            .iter()
            .map(|&k| pb::SealedObject {
                id: objects[k].0.0.to_vec(),
                sealed: objects[k].1.clone(),
            })
            .collect(),
    };
    ok(
        "a first upload",
        block(
            &s.rt,
            s.a.put_objects(tokio_stream::iter((0..4).map(message).collect::<Vec<_>>())),
        ),
    );
    let m = memory_during(s.pid, || {
        let uploads: Vec<Vec<pb::SealedObjects>> = (0..12).map(|n| (0..16).map(|m| message(n + m)).collect()).collect();
        let answers = concurrently(&s, uploads, |mut c, msgs| async move {
            c.put_objects(tokio_stream::iter(msgs)).await
        });
        for answer in answers {
            assert_eq!(ok("one of 12 concurrent uploads", answer).objects, 16);
        }
    });
    m.print(
        &format!(
            "12 concurrent PutObjects of 16 x one {:.1} MiB object (1.5 GiB)",
            objects[0].1.len() as f64 / (1 << 20) as f64
        ),
        "stored",
    );
    let mask = ok(
        "FilterMissing after the uploads",
        block(&s.rt, s.a.filter_missing(ids(&[objects[3].0]))),
    )
    .missing;
    assert_eq!(mask, vec![false]);
    stop_child(s.child);
}

// ---------------------------------------------------------------------------
// Finding 5: pins.

#[test]
fn only_writers_of_the_group_lease_its_points_and_only_the_holder_releases() {
    let dir = tempfile::tempdir().unwrap();
    // a writes g; w also writes g (another writer, another identity); b writes nothing.
    let tls = certificates(dir.path(), &["a@t", "w@t", "b@t"], &[]);
    let srv = serve_receiver(dir.path(), tls, allow(&[("a", "g"), ("w", "g")]));
    let rt = &srv.rt;
    let keys = Keys::derive(&[6; 32]);
    let seq = backup(&srv.url, &srv.tls, "a", &keys, dir.path(), 1);
    let mut a = replication(rt, &srv.tls, "a", &srv.url);
    let mut b = replication(rt, &srv.tls, "b", &srv.url);
    let mut w = replication(rt, &srv.tls, "w", &srv.url);
    let mut ops = replication(rt, &srv.tls, "ops", &srv.url);
    let pin = |holder: &str, ttl_secs: u64, release: bool| pb::PinRequest {
        group: "g".into(),
        seq,
        holder: holder.into(),
        ttl_secs,
        release,
        tenant: String::new(),
    };
    let pinned = || {
        let repo = srv.receiver.repository().unwrap();
        repo.catalog().pinned("t", "g", chrono::Utc::now()).unwrap()
    };
    // The genuine lease: a run's, taken by a writer.
    ok("Pin by a writer", block(rt, a.pin(pin("run-1", 3600, false))));
    assert!(pinned().contains(&seq));

    // 1. b may write no group: it can neither take a lease for 7 days...
    refused(
        "Pin by an agent that writes no group",
        block(rt, b.pin(pin("attacker", 7 * 86_400, false))),
        Code::PermissionDenied,
        &["agent `b` may not write group `g`"],
    );
    // ... nor release the run's lease, nor renew it.
    refused(
        "release of another's lease by an agent that writes no group",
        block(rt, b.pin(pin("run-1", 0, true))),
        Code::PermissionDenied,
        &["agent `b`"],
    );
    // 2. Another writer of the group cannot release or renew the run's lease.
    refused(
        "release of a's lease by writer w",
        block(rt, w.pin(pin("run-1", 0, true))),
        Code::PermissionDenied,
        &["holder `run-1`", "another identity", "release"],
    );
    refused(
        "renewal of a's lease by writer w",
        block(rt, w.pin(pin("run-1", 60, false))),
        Code::PermissionDenied,
        &["another identity", "renew"],
    );
    // The genuine lease holds, with its length.
    let repo = srv.receiver.repository().unwrap();
    let lease = repo.catalog().lease("t", "g", seq, "run-1").unwrap().unwrap();
    assert_eq!(lease.owner.as_deref(), Some("agent:a@t"));
    assert!(lease.until > chrono::Utc::now() + chrono::Duration::minutes(50));
    assert!(pinned().contains(&seq), "the genuine lease was lost");
    // w may lease under its own holder name.
    ok("Pin by writer w, own holder", block(rt, w.pin(pin("run-2", 60, false))));
    ok("release by w of its own lease", block(rt, w.pin(pin("run-2", 0, true))));

    // 3. An admin may end any lease (naming the tenant); the holder may too.
    let mut by_admin = pin("run-1", 0, true);
    by_admin.tenant = "t".into();
    ok("renewal by the holder", block(rt, a.pin(pin("run-1", 7200, false))));
    ok("release by an admin", block(rt, ops.pin(by_admin)));
    assert!(!pinned().contains(&seq));
    ok("Pin again by the holder", block(rt, a.pin(pin("run-1", 60, false))));
    ok("release by the holder", block(rt, a.pin(pin("run-1", 0, true))));
    assert!(!pinned().contains(&seq));
}

// ---------------------------------------------------------------------------
// --allow NAME@TENANT.

#[test]
fn an_allow_scoped_to_a_tenant_does_not_let_the_same_name_write_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // a@t1 may write g; in t2 only w writes g. a@t2 holds a certificate too.
    let tls = certificates(dir.path(), &["a@t1", "w@t2"], &["a@t2"]);
    let a2_tls = TlsDir::new(&dir.path().join("tls-a@t2"));
    let srv = serve_receiver(dir.path(), tls, allow(&[("a@t1", "g"), ("w", "g")]));
    let rt = &srv.rt;
    let keys1 = Keys::derive(&[1; 32]);
    let keys2 = Keys::derive(&[2; 32]);
    // Genuine: a@t1 and w@t2 back up g of their tenants.
    assert_eq!(backup(&srv.url, &srv.tls, "a", &keys1, dir.path(), 11), 1);
    assert_eq!(backup(&srv.url, &srv.tls, "w", &keys2, dir.path(), 12), 1);

    // The attack: a@t2 writes g in t2.
    let mut a2 = replication(rt, &a2_tls, "a", &srv.url);
    let open = ok(
        "OpenSession by a@t2 (the tenant exists)",
        block(rt, a2.open_session(session(&keys2))),
    );
    assert_eq!((open.agent.as_str(), open.tenant.as_str()), ("a", "t2"));
    let (id, sealed) = small_object(&keys2, 99);
    refused(
        "PutObjects by a@t2",
        put(rt, &mut a2, vec![(id, sealed)]),
        Code::PermissionDenied,
        &["agent `a` may write no group"],
    );
    let remote = RemoteRepository::connect(&srv.url, &a2_tls, "a", &keys2).unwrap();
    use lifeline_replicator::TenantRepository;
    let points = remote.points(Some("g")).unwrap();
    assert_eq!(points.len(), 1);
    let mut forged = points[0].clone();
    forged.header.seq = 2;
    refused(
        "CommitPoint by a@t2",
        block(
            rt,
            a2.commit_point(pb::CommitPointRequest {
                record: serde_json::to_vec(&forged).unwrap(),
                ..Default::default()
            }),
        ),
        Code::PermissionDenied,
        &["agent `a` may not write group `g`"],
    );
    let mut lease = pb::PinRequest {
        group: "g".into(),
        seq: 1,
        holder: "x".into(),
        ttl_secs: 60,
        release: false,
        tenant: String::new(),
    };
    refused(
        "Pin by a@t2",
        block(rt, a2.pin(lease.clone())),
        Code::PermissionDenied,
        &["may not write group `g`"],
    );
    lease.tenant = "t1".into();
    refused(
        "Pin by a@t2 naming tenant t1",
        block(rt, a2.pin(lease)),
        Code::PermissionDenied,
        &["may not write group `g`"],
    );
    // Nothing genuine changed: t2 still has w's one point; a@t1 still writes.
    assert_eq!(remote.points(None).unwrap().len(), 1);
    assert_eq!(backup(&srv.url, &srv.tls, "a", &keys1, dir.path(), 13), 2);

    // A malformed allow list is refused when the receiver opens.
    let bad = Receiver::open(&ReceiverConfig {
        repo: dir.path().join("repo2"),
        allow: allow(&[("a@", "g")]),
    });
    assert!(bad.is_err(), "an allow list naming `a@` was accepted");
}

// ---------------------------------------------------------------------------
// Error messages sent to clients.

#[test]
fn errors_sent_to_clients_name_no_receiver_path() {
    let (dir, srv, keys, mut a) = agent_a(8);
    let rt = &srv.rt;
    let repo_dir = dir.path().join("repo");
    let repo_path = repo_dir.display().to_string();
    let no_path = |what: &str, s: &Status| {
        for p in [repo_path.as_str(), dir.path().to_str().unwrap(), "/tmp", "packs/"] {
            assert!(!s.message().contains(p), "{what}: `{}` names `{p}`", s.message());
        }
    };
    let (id, sealed) = small_object(&keys, 1);
    let (gone, _) = small_object(&keys, 2);
    ok("PutObjects", put(rt, &mut a, vec![(id, sealed)]));

    // A missing object.
    let s = refused(
        "ReadObjects of a missing object",
        block(rt, a.read_objects(ids(&[gone]))),
        Code::NotFound,
        &[&gone.to_hex(), "missing"],
    );
    no_path("missing object", &s);

    // A damaged pack: cut the pack files short under the receiver.
    let mut cut = 0;
    for entry in walk(&repo_dir) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if entry.components().any(|c| c.as_os_str() == "packs") && !name.starts_with('.') {
            let f = std::fs::OpenOptions::new().write(true).open(&entry).unwrap();
            f.set_len(10).unwrap();
            cut += 1;
        }
    }
    assert!(cut > 0, "no pack file found under {repo_path}");
    let s = block(rt, a.read_objects(ids(&[id]))).expect_err("a read from a truncated pack succeeded");
    assert!(
        matches!(s.code(), Code::DataLoss | Code::Internal | Code::NotFound),
        "{:?}: {}",
        s.code(),
        s.message()
    );
    no_path("damaged pack", &s);
    // The receiver still serves.
    ok(
        "FilterMissing after the errors",
        block(rt, a.filter_missing(ids(&[id]))),
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
