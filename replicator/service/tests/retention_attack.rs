//! Issue 17, finding 1: a compromised agent tries to make the owner's
//! retention delete the genuine history by dating points into the future or
//! the past, or by committing points without roots. A real receiver over
//! mutual TLS, the attacker speaking the real gRPC protocol with the group's
//! own agent certificate and the tenant's key (everything a stolen agent host
//! holds), the admin pruning through the real admin service.

mod support;

use chrono::{DateTime, Utc};
use lifeline_proto::v1 as pb;
use lifeline_replicator::{
    Consistency, Keys, MAX_CLOCK_SKEW, ObjectId, PointBody, PointHeader, PointRecord, RecoveryPoint, RootRef,
    VolumeEntry,
};
use support::*;
use tokio::runtime::Runtime;
use tonic::{Code, Status};

/// A sealed point record of group `g` at `seq`, dated `taken_at`, with `roots`.
fn record(keys: &Keys, seq: u64, taken_at: DateTime<Utc>, roots: &[ObjectId]) -> Vec<u8> {
    let point = RecoveryPoint {
        header: PointHeader {
            tenant: "t".into(),
            group: "g".into(),
            seq,
            taken_at,
            consistency: Consistency::Fuzzy,
            key_id: keys.key_id(),
            roots: roots.iter().map(|r| RootRef(Some(*r))).collect(),
        },
        body: PointBody {
            volumes: roots
                .iter()
                .map(|r| VolumeEntry {
                    name: "disk".into(),
                    size: 4096,
                    segment_size: 4 << 20,
                    root: Some(*r),
                    levels: 1,
                    volume_hash: String::new(),
                    data_bytes: 4096,
                    block_maps: false,
                })
                .collect(),
            frozen_ms: None,
            written_by: "attack test".into(),
        },
    };
    serde_json::to_vec(&point.seal(keys)).unwrap()
}

fn commit(rt: &Runtime, c: &mut Replication, rec: Vec<u8>) -> Result<u64, Status> {
    block(
        rt,
        c.commit_point(pb::CommitPointRequest {
            record: rec,
            ..Default::default()
        }),
    )
    .map(|r| r.into_inner().seq)
}

fn points(rt: &Runtime, c: &mut Replication) -> Vec<PointRecord> {
    block(
        rt,
        c.list_points(pb::ListPointsRequest {
            group: "g".into(),
            ..Default::default()
        }),
    )
    .unwrap()
    .into_inner()
    .records
    .iter()
    .map(|r| serde_json::from_slice(r).unwrap())
    .collect()
}

#[test]
fn an_agent_cannot_date_points_to_make_retention_delete_the_genuine_history() {
    let (_dir, srv, keys, mut a) = agent_a(7);
    let rt = &srv.rt;
    let (root, sealed) = sealed_chunk(&keys, &b"a genuine block of the volume ".repeat(100));
    block(
        rt,
        a.put_objects(tokio_stream::iter(vec![pb::SealedObjects {
            objects: vec![pb::SealedObject {
                id: root.0.to_vec(),
                sealed: sealed.into(),
            }],
        }])),
    )
    .unwrap();

    // Ten days of genuine history: one point a day, the newest yesterday.
    let now = Utc::now();
    for d in 1..=10u64 {
        let taken = now - chrono::Duration::days(11 - d as i64);
        assert_eq!(commit(rt, &mut a, record(&keys, d, taken, &[root])).unwrap(), d);
    }
    let genuine = points(rt, &mut a);
    assert_eq!(genuine.len(), 10);
    for p in &genuine {
        let c = p.committed_at.expect("the receiver records its commit time");
        assert!(c >= now && c <= Utc::now(), "commit time {c} is the receiver's clock");
    }

    // The attack of the finding: nine points dated 2099-01-01…09.
    for day in 1..=9 {
        let taken: DateTime<Utc> = format!("2099-01-0{day}T00:00:00Z").parse().unwrap();
        let e = commit(rt, &mut a, record(&keys, 11, taken, &[root])).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains("ahead of this host's clock"), "{}", e.message());
    }
    // Just past the skew allowed: refused; a point back-dated to 1970 (before
    // the previous point): refused; a point without roots: refused.
    let e = commit(
        rt,
        &mut a,
        record(
            &keys,
            11,
            Utc::now() + MAX_CLOCK_SKEW + chrono::Duration::seconds(30),
            &[root],
        ),
    )
    .unwrap_err();
    assert!(e.message().contains("skew allowed"), "{}", e.message());
    let e = commit(rt, &mut a, record(&keys, 11, DateTime::UNIX_EPOCH, &[root])).unwrap_err();
    assert!(e.message().contains("earlier than point 10"), "{}", e.message());
    let e = commit(rt, &mut a, record(&keys, 11, Utc::now(), &[])).unwrap_err();
    assert!(e.message().contains("no roots"), "{}", e.message());
    assert_eq!(
        points(rt, &mut a),
        genuine,
        "nothing was committed by the refused attempts"
    );

    // What the attacker can still do: flood the group with points dated now
    // (at the edge of the skew). They all count as committed now.
    for seq in 11..=19 {
        let taken = Utc::now() + MAX_CLOCK_SKEW - chrono::Duration::seconds(10);
        commit(rt, &mut a, record(&keys, seq, taken, &[root])).unwrap();
    }

    // The admin's ordinary prune keeps the genuine history of the last week.
    let (_, removed) = lifeline_service::remote_prune(
        &srv.url,
        &srv.tls,
        "ops",
        pb::PruneRequest {
            tenant: "t".into(),
            group: "g".into(),
            keep_daily: 7,
            keep_within_secs: 7 * 86_400,
            ..Default::default()
        },
    )
    .unwrap();
    let left: Vec<u64> = points(rt, &mut a).iter().map(|p| p.header.seq).collect();
    for seq in 5..=10 {
        assert!(
            left.contains(&seq),
            "genuine point {seq} (one of the last 6 days) was pruned: left {left:?}, removed {removed:?}"
        );
    }
    assert!(left.contains(&19), "the newest point stays");
}
