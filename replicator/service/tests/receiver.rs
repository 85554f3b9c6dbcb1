//! A real receiver served in-process over mutual TLS, driven by raw gRPC
//! clients: every check the receiver makes on untrusted input answers with the
//! right status code and a message that names the problem, the receiver keeps
//! serving after each refusal, agents can add but never overwrite, and a real
//! backup through [`RemoteRepository`] commits a point that verifies clean.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::admin_client::AdminClient;
use lifeline_replicator::file_formats::MAX_OBJECT_LEN;
use lifeline_replicator::{
    BackupOptions, Consistency, Keys, ObjectId, ObjectKind, PointBody, PointHeader, PointRecord, RecoveryPoint,
    RootRef, VolumeEntry, seal_object,
};
use lifeline_service::RemoteRepository;
use support::*;
use tokio::runtime::Runtime;
use tonic::{Code, Response, Status};

fn put(
    rt: &Runtime,
    c: &mut Replication,
    objects: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Response<pb::PutSummary>, Status> {
    // Two objects per message: batches and single objects both travel.
    let objects: Vec<pb::SealedObject> = objects
        .into_iter()
        .map(|(id, sealed)| pb::SealedObject {
            id,
            sealed: sealed.into(),
        })
        .collect();
    let msgs: Vec<pb::SealedObjects> = objects
        .chunks(2)
        .map(|c| pb::SealedObjects { objects: c.to_vec() })
        .collect();
    block(rt, c.put_objects(tokio_stream::iter(msgs)))
}

/// The receiver still answers: `present` are held, `absent` are not.
#[track_caller]
fn still_serving(rt: &Runtime, c: &mut Replication, present: &[ObjectId], absent: &[ObjectId]) {
    let all: Vec<ObjectId> = present.iter().chain(absent).copied().collect();
    let mask = ok("FilterMissing after a refusal", block(rt, c.filter_missing(ids(&all)))).missing;
    let want: Vec<bool> = present
        .iter()
        .map(|_| false)
        .chain(absent.iter().map(|_| true))
        .collect();
    assert_eq!(mask, want, "FilterMissing after a refusal");
}

/// A point record for `tenant`/`group` at `seq` whose only root is `root`.
fn record(keys: &Keys, tenant: &str, group: &str, seq: u64, root: ObjectId) -> Vec<u8> {
    let point = RecoveryPoint {
        header: PointHeader {
            tenant: tenant.into(),
            group: group.into(),
            seq,
            taken_at: chrono::Utc::now(),
            consistency: Consistency::Fuzzy,
            key_id: keys.key_id(),
            roots: vec![RootRef(Some(root))],
        },
        body: PointBody {
            volumes: vec![VolumeEntry {
                name: "disk".into(),
                size: 4096,
                segment_size: 4 << 20,
                root: Some(root),
                levels: 1,
                volume_hash: String::new(),
                data_bytes: 4096,
                block_maps: false,
            }],
            frozen_ms: None,
            written_by: "receiver test".into(),
        },
    };
    serde_json::to_vec(&point.seal(keys)).unwrap()
}

/// Deterministic, incompressible bytes with a run of zeros (a hole candidate).
fn volume(path: &Path) {
    let mut data = Vec::with_capacity(5 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.resize(5 << 20, 0);
    data.extend_from_slice(b"tail of the volume");
    std::fs::write(path, data).unwrap();
}

/// One backup of volume `disk` = `vol` into group `g` through `remote`.
fn backup_of(remote: &RemoteRepository, keys: &Keys, vol: &Path, dir: &Path) -> lifeline_replicator::BackupSummary {
    lifeline_replicator::backup(
        remote,
        keys,
        &BackupOptions {
            group: "g".into(),
            volumes: vec![("disk".into(), vol.to_path_buf())],
            freeze: None,
            thaw: None,
            state_dir: dir.join("state"),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            block_map: false,
        },
    )
    .unwrap()
}

fn start(dir: &Path) -> Served {
    serve_receiver(dir, certificates(dir, &["a@t", "b@t"]), allow(&[("a", "g")]))
}

#[test]
fn receiver_checks_every_call_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path());
    let rt = &srv.rt;
    let keys = Keys::derive(&[7; 32]);
    let mut a = replication(rt, &srv.tls, "a", &srv.url);
    let mut b = replication(rt, &srv.tls, "b", &srv.url);
    let mut ops = replication(rt, &srv.tls, "ops", &srv.url);

    let chunk_plain = b"the first chunk of tenant t, ".repeat(200);
    let chunk = keys.chunk_id(&chunk_plain);
    let never = keys.chunk_id(b"a chunk nobody ever sends");

    // --- 0. Before any session: nothing exists for the tenant; only a writer creates it.
    refused(
        "FilterMissing before any session",
        block(rt, a.filter_missing(ids(&[chunk]))),
        Code::FailedPrecondition,
        &["tenant `t`", "open a session first"],
    );
    refused(
        "OpenSession by b (may write nothing) for a new tenant",
        block(rt, b.open_session(session(&keys))),
        Code::PermissionDenied,
        &["`b`", "cannot create tenant `t`"],
    );
    refused(
        "OpenSession by admin ops",
        block(rt, ops.open_session(session(&keys))),
        Code::PermissionDenied,
        &["admin `ops` cannot replicate"],
    );

    // --- 1. OpenSession.
    refused(
        "OpenSession with protocol 999",
        block(
            rt,
            a.open_session(pb::OpenSessionRequest {
                protocol_version: 999,
                key_fingerprint: keys.fingerprint().to_vec(),
            }),
        ),
        Code::FailedPrecondition,
        &["protocol version 999", "upgrade"],
    );
    refused(
        "OpenSession with a 5-byte fingerprint",
        block(
            rt,
            a.open_session(pb::OpenSessionRequest {
                protocol_version: lifeline_proto::PROTOCOL_VERSION,
                key_fingerprint: vec![1, 2, 3, 4, 5],
            }),
        ),
        Code::InvalidArgument,
        &["key_fingerprint", "16 bytes"],
    );
    let open = ok("OpenSession", block(rt, a.open_session(session(&keys))));
    assert_eq!(open.tenant, "t");
    assert_eq!(open.agent, "a");
    assert_eq!(open.protocol_version, lifeline_proto::PROTOCOL_VERSION);
    assert!(!open.repository_id.is_empty());
    refused(
        "OpenSession with another key",
        block(
            rt,
            a.open_session(pb::OpenSessionRequest {
                protocol_version: lifeline_proto::PROTOCOL_VERSION,
                key_fingerprint: Keys::derive(&[8; 32]).fingerprint().to_vec(),
            }),
        ),
        Code::PermissionDenied,
        &["does not match tenant `t`'s key"],
    );

    // --- 2. FilterMissing.
    refused(
        "FilterMissing with a 31-byte id",
        block(
            rt,
            a.filter_missing(pb::ObjectIds {
                ids: vec![chunk.0.to_vec(), vec![0; 31]],
            }),
        ),
        Code::InvalidArgument,
        &["31 bytes", "32 bytes"],
    );
    refused(
        "FilterMissing with 5000 ids",
        block(
            rt,
            a.filter_missing(pb::ObjectIds {
                ids: vec![chunk.0.to_vec(); 5000],
            }),
        ),
        Code::InvalidArgument,
        &["5000 ids", "at most 4096"],
    );
    let mask = ok(
        "FilterMissing",
        block(rt, a.filter_missing(ids(&[chunk, never, chunk]))),
    );
    assert_eq!(mask.missing, vec![true, true, true]);

    // --- 3. PutObjects.
    // (a) a sealed chunk is stored.
    let sealed = seal_object(&keys, ObjectKind::Chunk, &chunk, &[], &chunk_plain);
    let s = ok(
        "PutObjects of a sealed chunk",
        put(rt, &mut a, vec![(chunk.0.to_vec(), sealed.clone())]),
    );
    assert_eq!(
        (s.objects, s.bytes, s.already_present),
        (1, sealed.len() as u64, 0),
        "summary of the first put"
    );
    still_serving(rt, &mut a, &[chunk], &[never]);

    // (b) the same id with other (well-formed) bytes: accepted as present, not stored.
    let impostor = seal_object(
        &keys,
        ObjectKind::Chunk,
        &chunk,
        &[],
        b"other content under the same id",
    );
    assert_ne!(impostor, sealed);
    let s = ok(
        "PutObjects of the same id with other bytes",
        put(rt, &mut a, vec![(chunk.0.to_vec(), impostor)]),
    );
    assert_eq!(
        (s.objects, s.bytes, s.already_present),
        (1, 0, 1),
        "summary of the re-put"
    );
    let back = ok("ReadObjects", block(rt, a.read_objects(ids(&[chunk]))));
    assert_eq!(back.objects.len(), 1);
    assert_eq!(back.objects[0].id, chunk.0.to_vec());
    assert!(back.objects[0].sealed == sealed, "the stored object was overwritten");

    // (c) one flipped byte: the trailer does not match.
    let other_plain = b"a second chunk, damaged on the way".repeat(50);
    let other = keys.chunk_id(&other_plain);
    let mut flipped = seal_object(&keys, ObjectKind::Chunk, &other, &[], &other_plain);
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    refused(
        "PutObjects of an object with a flipped byte",
        put(rt, &mut a, vec![(other.0.to_vec(), flipped)]),
        Code::DataLoss,
        &[&other.to_hex(), "damaged in transit", "checksum mismatch"],
    );
    still_serving(rt, &mut a, &[chunk], &[other, never]);

    // (d) larger than an object may be, yet within the message limit.
    let big = vec![0u8; MAX_OBJECT_LEN + (1 << 20)];
    assert!(big.len() < MESSAGE_LIMIT - 1024);
    refused(
        "PutObjects of a 9 MiB object",
        put(rt, &mut a, vec![(other.0.to_vec(), big)]),
        Code::InvalidArgument,
        &[&other.to_hex(), &format!("larger than {MAX_OBJECT_LEN} bytes")],
    );
    still_serving(rt, &mut a, &[chunk], &[other, never]);

    // (e) a segment node referencing a chunk the receiver lacks.
    let node_plain = b"extents".to_vec();
    let refs = [chunk, never];
    let node = keys.node_id(&refs, &node_plain);
    let node_sealed = seal_object(&keys, ObjectKind::SegmentNode, &node, &refs, &node_plain);
    refused(
        "PutObjects of a node referencing an absent chunk",
        put(rt, &mut a, vec![(node.0.to_vec(), node_sealed)]),
        Code::Aborted,
        &[&node.to_hex(), &never.to_hex(), "send referenced objects first"],
    );
    still_serving(rt, &mut a, &[chunk], &[node, never]);

    // (e') ... but a chunk then a node referencing it, in one stream, is accepted.
    let other_sealed = seal_object(&keys, ObjectKind::Chunk, &other, &[], &other_plain);
    let refs = [chunk, other];
    let good_node = keys.node_id(&refs, &node_plain);
    let good_node_sealed = seal_object(&keys, ObjectKind::SegmentNode, &good_node, &refs, &node_plain);
    let s = ok(
        "PutObjects of a chunk and a node referencing it",
        put(
            rt,
            &mut a,
            vec![
                (other.0.to_vec(), other_sealed.clone()),
                (good_node.0.to_vec(), good_node_sealed.clone()),
            ],
        ),
    );
    assert_eq!(
        (s.objects, s.bytes, s.already_present),
        (2, (other_sealed.len() + good_node_sealed.len()) as u64, 0)
    );
    still_serving(rt, &mut a, &[chunk, other, good_node], &[node, never]);

    // (f) garbage.
    let garbage_id = keys.chunk_id(b"garbage");
    refused(
        "PutObjects of garbage",
        put(
            rt,
            &mut a,
            vec![(
                garbage_id.0.to_vec(),
                b"this is not a sealed object at all, only text".repeat(4),
            )],
        ),
        Code::DataLoss,
        &[&garbage_id.to_hex(), "not a Lifeline object"],
    );
    still_serving(rt, &mut a, &[chunk, other], &[garbage_id]);

    // (g) a malformed id.
    refused(
        "PutObjects with a 31-byte id",
        put(rt, &mut a, vec![(vec![0; 31], sealed.clone())]),
        Code::InvalidArgument,
        &["31 bytes"],
    );
    still_serving(rt, &mut a, &[chunk, other], &[garbage_id]);

    // --- 4. CommitPoint and authorisation.
    refused(
        "CommitPoint of garbage JSON",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: b"{\"header\": 12".to_vec(),
                ..Default::default()
            }),
        ),
        Code::InvalidArgument,
        &["undecodable point record"],
    );
    refused(
        "CommitPoint for tenant `other`",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "other", "g", 1, chunk),
                ..Default::default()
            }),
        ),
        Code::PermissionDenied,
        &["agent `a` of tenant `t`", "tenant `other`"],
    );
    refused(
        "CommitPoint for group `h`",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "h", 1, chunk),
                ..Default::default()
            }),
        ),
        Code::PermissionDenied,
        &["agent `a`", "group `h`"],
    );
    refused(
        "CommitPoint for an invalid group name",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "../g", 1, chunk),
                ..Default::default()
            }),
        ),
        Code::InvalidArgument,
        &["group", "../g"],
    );
    ok(
        "OpenSession by b once the tenant exists",
        block(rt, b.open_session(session(&keys))),
    );
    refused(
        "CommitPoint by b",
        block(
            rt,
            b.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "g", 1, chunk),
                ..Default::default()
            }),
        ),
        Code::PermissionDenied,
        &["agent `b`", "group `g`"],
    );
    let b_plain = b"b's chunk".repeat(10);
    let b_chunk = keys.chunk_id(&b_plain);
    refused(
        "PutObjects by b",
        put(
            rt,
            &mut b,
            vec![(
                b_chunk.0.to_vec(),
                seal_object(&keys, ObjectKind::Chunk, &b_chunk, &[], &b_plain),
            )],
        ),
        Code::PermissionDenied,
        &["agent `b` may write no group"],
    );
    still_serving(rt, &mut b, &[chunk], &[b_chunk]);
    refused(
        "CommitPoint whose root is missing",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "g", 1, never),
                ..Default::default()
            }),
        ),
        Code::FailedPrecondition,
        &["point 1 of group `g`", &never.to_hex(), "does not hold"],
    );
    let none = ok(
        "ListPoints",
        block(
            rt,
            a.list_points(pb::ListPointsRequest {
                group: String::new(),
                ..Default::default()
            }),
        ),
    );
    assert!(none.records.is_empty(), "a refused commit left a point");

    // A real backup through the remote repository (outside any runtime: it owns its own).
    let vol = dir.path().join("disk.img");
    volume(&vol);
    let summary = {
        let remote = RemoteRepository::connect(&srv.url, &srv.tls, "a", &keys).unwrap();
        backup_of(&remote, &keys, &vol, dir.path())
    };
    assert_eq!(summary.seq, 1);
    assert!(summary.objects_new > 0);
    let listed = ok(
        "ListPoints after the backup",
        block(
            rt,
            a.list_points(pb::ListPointsRequest {
                group: "g".into(),
                ..Default::default()
            }),
        ),
    );
    assert_eq!(listed.records.len(), 1);
    let committed: PointRecord = serde_json::from_slice(&listed.records[0]).unwrap();
    assert_eq!(
        (
            committed.header.tenant.as_str(),
            committed.header.group.as_str(),
            committed.header.seq
        ),
        ("t", "g", 1)
    );
    let opened = committed.open(&keys, "receiver").unwrap();
    assert_eq!(opened.body.volumes.len(), 1);
    assert_eq!(opened.body.volumes[0].size, std::fs::metadata(&vol).unwrap().len());
    // Committing the same point again is a seq conflict: an agent cannot overwrite a point.
    refused(
        "CommitPoint of an existing point",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: listed.records[0].clone(),
                ..Default::default()
            }),
        ),
        Code::Aborted,
        &["point 1 of group `g`"],
    );
    // Nor replace it with another record under the same seq.
    let root = committed.header.roots[0].0.expect("the volume has data");
    refused(
        "CommitPoint of another record with an existing seq",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "g", 1, root),
                ..Default::default()
            }),
        ),
        Code::Aborted,
        &["point 1 of group `g`"],
    );
    let again = ok(
        "ListPoints after the refused commits",
        block(
            rt,
            a.list_points(pb::ListPointsRequest {
                group: "g".into(),
                ..Default::default()
            }),
        ),
    );
    assert_eq!(again.records, listed.records, "a committed point changed");

    // --- 5. ReadObjects.
    refused(
        "ReadObjects with 300 ids",
        block(
            rt,
            a.read_objects(pb::ObjectIds {
                ids: vec![chunk.0.to_vec(); 300],
            }),
        ),
        Code::InvalidArgument,
        &["300 ids", "at most 256"],
    );
    refused(
        "ReadObjects of an unknown id",
        block(rt, a.read_objects(ids(&[chunk, never]))),
        Code::NotFound,
        &[&never.to_hex(), "missing"],
    );
    let back = ok(
        "ReadObjects of the root",
        block(rt, a.read_objects(ids(&[root, chunk]))),
    );
    assert_eq!(back.objects.len(), 2);
    assert!(back.objects[1].sealed == sealed);

    // --- 6. Admin.
    let mut agent_admin = AdminClient::new(channel(rt, &srv.tls, "a", &srv.url));
    refused(
        "Admin.Verify by an agent",
        block(rt, agent_admin.verify(pb::VerifyRequest { tenant: String::new() })),
        Code::PermissionDenied,
        &["agent `a` cannot run admin operations"],
    );
    let mut admin = AdminClient::new(channel(rt, &srv.tls, "ops", &srv.url)).max_decoding_message_size(MESSAGE_LIMIT);
    let v = ok(
        "Admin.Verify by ops",
        block(rt, admin.verify(pb::VerifyRequest { tenant: String::new() })),
    );
    assert_eq!(v.tenants, vec!["t".to_string()]);
    assert_eq!(v.reports.len(), 1);
    let report: serde_json::Value = serde_json::from_str(&v.reports[0]).unwrap();
    assert_eq!(report["damaged"], serde_json::json!([]), "report: {report}");
    assert_eq!(report["missing"], serde_json::json!([]), "report: {report}");
    assert_eq!(report["affected_points"], serde_json::json!([]), "report: {report}");
    assert_eq!(report["points"], serde_json::json!(1), "report: {report}");
    // Every object put above that was accepted, plus the backup's.
    let objects = report["objects"].as_u64().unwrap();
    assert_eq!(objects, 3 + summary.objects_new, "report: {report}");

    // --- 7. Shutdown: the server ends (idle client connections do not hold it).
    let mut srv = srv;
    let task = srv.stop();
    let rt = &srv.rt;
    let served = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
        .expect("the receiver did not stop within 30 s of the shutdown signal")
        .expect("the server task panicked");
    served.expect("serve returned an error");
    assert!(
        std::net::TcpStream::connect(srv.addr).is_err(),
        "the receiver still accepts connections after shutdown"
    );
    let after = block(rt, a.filter_missing(ids(&[chunk])));
    assert!(after.is_err(), "a call succeeded after shutdown");
    drop((a, b, ops, agent_admin, admin));
}

/// `--limit-upload` holds with batched uploads: 3 MiB of incompressible data at
/// 1 MiB/s cannot arrive in less than the limit allows (minus the bucket's
/// 64 KiB burst), and the point it makes is whole.
#[test]
fn an_upload_limit_paces_batched_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path());
    let keys = Keys::derive(&[9; 32]);
    let vol = dir.path().join("disk.img");
    volume(&vol);
    let remote = RemoteRepository::connect(&srv.url, &srv.tls, "a", &keys).unwrap();
    remote.set_upload_limit(Some(1 << 20));
    let started = std::time::Instant::now();
    let summary = backup_of(&remote, &keys, &vol, dir.path());
    let elapsed = started.elapsed().as_secs_f64();
    assert!(summary.bytes_stored > 3 << 20, "{summary:?}");
    let least = (summary.bytes_stored - (64 << 10)) as f64 / (1 << 20) as f64;
    assert!(
        elapsed >= least * 0.95,
        "{} bytes went out in {elapsed:.2} s under a 1 MiB/s limit (at least {least:.2} s)",
        summary.bytes_stored
    );
    drop(remote);
    srv.shutdown();
}

/// A point may rely on objects another upload still has pending (dedup counts
/// them present, so its own cycle sends nothing): the commit makes them durable
/// before it checks, so a committed point never references objects that exist
/// only in an unfinished upload.
#[test]
fn a_commit_makes_the_objects_it_relies_on_durable() {
    let (_dir, srv, keys, mut a) = agent_a(11);
    let rt = &srv.rt;
    let (chunk, sealed) = sealed_chunk(&keys, &b"a chunk of an upload that has not finished, ".repeat(100));
    // An upload that sends the chunk and stays open (not synced).
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SealedObjects>(4);
    let mut uploader = a.clone();
    let upload = rt.spawn(async move {
        uploader
            .put_objects(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Enough objects that the receiver stores this batch before the stream ends.
    let mut objects: Vec<pb::SealedObject> = (0..1100u32)
        .map(|i| {
            let p = format!("filler {i}").into_bytes();
            let id = keys.chunk_id(&p);
            pb::SealedObject {
                id: id.0.to_vec(),
                sealed: seal_object(&keys, ObjectKind::Chunk, &id, &[], &p).into(),
            }
        })
        .collect();
    objects.insert(
        0,
        pb::SealedObject {
            id: chunk.0.to_vec(),
            sealed: sealed.into(),
        },
    );
    block(rt, tx.send(pb::SealedObjects { objects })).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ok("FilterMissing", block(rt, a.filter_missing(ids(&[chunk])))).missing[0] {
        assert!(std::time::Instant::now() < deadline, "the chunk never became pending");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another cycle commits a point whose root is that pending chunk.
    ok(
        "CommitPoint relying on a pending object",
        block(
            rt,
            a.commit_point(pb::CommitPointRequest {
                record: record(&keys, "t", "g", 1, chunk),
                cycle_secs: 0.1,
                bytes_sent: 0,
            }),
        ),
    );
    // The scrub reads only durable objects: the point's root is among them.
    let mut admin = AdminClient::new(channel(rt, &srv.tls, "ops", &srv.url)).max_decoding_message_size(MESSAGE_LIMIT);
    let v = ok(
        "Admin.Verify",
        block(rt, admin.verify(pb::VerifyRequest { tenant: "t".into() })),
    );
    let report: serde_json::Value = serde_json::from_str(&v.reports[0]).unwrap();
    assert_eq!(report["missing"], serde_json::json!([]), "report: {report}");
    assert_eq!(report["damaged"], serde_json::json!([]), "report: {report}");
    drop(tx);
    ok("the open upload, ended", block(rt, upload).unwrap());
}

/// Many workers putting through one remote store while the receiver refuses
/// their upload stream again and again (a damaged object ends it): every put
/// returns. A worker whose send failed once waited for the upload another
/// worker had started meanwhile, whose stream it held open: a hang.
#[test]
fn puts_racing_a_refused_upload_all_return() {
    use lifeline_replicator::TenantRepository;
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path());
    let keys = Keys::derive(&[12; 32]);
    let remote = RemoteRepository::connect(&srv.url, &srv.tls, "a", &keys).unwrap();
    let store = remote.store("g").unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, usize)>();
    // Worker 0 damages every tenth object for as long as another worker
    // runs (and until three of its own puts failed), so the others keep
    // meeting refused uploads; each of them stops after three failed puts
    // (or 3000 puts).
    const WORKERS: usize = 8;
    let others_running = Arc::new(AtomicUsize::new(WORKERS - 1));
    for w in 0..WORKERS {
        let (store, keys, done_tx) = (store.clone(), keys.clone(), done_tx.clone());
        let others_running = others_running.clone();
        std::thread::spawn(move || {
            let mut failures = 0;
            for i in 0..20_000u32 {
                let done = if w == 0 {
                    failures >= 3 && others_running.load(SeqCst) == 0
                } else {
                    failures >= 3 || i >= 3000
                };
                if done {
                    break;
                }
                // 64 KiB that do not compress: eight close a batch.
                let mut x = (((w as u64) << 32 | u64::from(i)) << 1) | 1;
                let plain: Vec<u8> = (0..64 << 10)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let id = keys.chunk_id(&plain);
                let mut sealed = seal_object(&keys, ObjectKind::Chunk, &id, &[], &plain);
                if w == 0 && i % 10 == 5 {
                    // A damaged trailer: the receiver ends the stream.
                    let last = sealed.len() - 1;
                    sealed[last] ^= 1;
                }
                if store.put_owned(&id, sealed).is_err() {
                    failures += 1;
                }
            }
            if w != 0 {
                others_running.fetch_sub(1, SeqCst);
            }
            done_tx.send((w, failures)).unwrap();
        });
    }
    drop(done_tx);
    let mut failed = [0; WORKERS];
    for _ in 0..WORKERS {
        let (w, f) = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a put through a refused upload hung");
        failed[w] = f;
    }
    eprintln!("failed puts per worker: {failed:?}");
    // The race needs failures while other uploads run: the damaging worker's
    // own, and at least one other worker's put that shared a refused stream.
    assert!(failed[0] >= 3, "the damaged objects were refused: {failed:?}");
    assert!(
        failed[1..].iter().any(|&f| f > 0),
        "another worker's put shared a refused upload: {failed:?}"
    );
    store.abandon();
    drop(store);
    drop(remote);
    srv.shutdown();
}
