//! Sibling groups of one tenant whose agents must not trust each other: a
//! receiver started with `--own-scope GROUP@TENANT` keeps that group's objects
//! apart, so the agent of another group (which holds the tenant's key and can
//! compute every id) cannot plant objects it would deduplicate against. The
//! attack runs as an attacker would: the real `lifeline receiver`, the
//! attacker's agent certificate and key, the real replication protocol.

use std::fs;

use lifeline_replicator::{KeyFile, ObjectKind, TenantRepository, seal_object};
use lifeline_service::{RemoteRepository, TlsDir};

use crate::common::*;

#[test]
fn a_siblings_agent_cannot_plant_objects_in_a_group_with_its_own_scope() {
    let site = Site::new(&["web@acme", "db@acme"]);
    let key = site.key("acme");
    let receiver = ReceiverProc::start_with(
        &site.repo,
        &site.tls,
        "127.0.0.1:0",
        &["web@acme=web", "db@acme=db,shop"],
        &["--own-scope", "db@acme"],
    )
    .unwrap_or_else(|r| panic!("the receiver did not start: {}", r.stderr));
    // Two volumes of one chunk each, which db's agent backs up into `db` (its
    // own scope) and `shop` (the tenant's shared scope).
    let (db_vol, shop_vol) = (site.path("db.img"), site.path("shop.img"));
    write_random_file(&db_vol, 3000, 11);
    write_random_file(&shop_vol, 3000, 12);
    let (db_data, shop_data) = (fs::read(&db_vol).unwrap(), fs::read(&shop_vol).unwrap());

    // web's agent, with the tenant key, opens a session of its own...
    let keys = KeyFile::load(&key, None).unwrap().keys();
    let web = RemoteRepository::connect(&receiver.url(), &TlsDir::new(&site.tls), "web", &keys).unwrap();
    let plant = |group: &str, data: &[u8]| {
        let id = keys.chunk_id(data);
        let store = web.store(group).unwrap();
        let garbage = seal_object(&keys, ObjectKind::Chunk, &id, &[], b"planted by web's agent");
        store.put(&id, &garbage).and_then(|_| store.sync())
    };
    // ... cannot upload into db's store (it may not write db) ...
    let refused = plant("db", &db_data)
        .expect_err("an upload into db's own scope")
        .to_string();
    assert!(
        refused.contains("may not write group `db`") && !refused.contains(s(&site.repo)),
        "{refused}"
    );
    // ... and what it uploads as its own goes to the shared store.
    plant("web", &db_data).unwrap();
    plant("web", &shop_data).unwrap();

    let db = site.client(&receiver, "db", &key);
    db.backup("db", &[("disk", &db_vol)], &[]).ok();
    db.backup("shop", &[("disk", &shop_vol)], &[]).ok();
    let out = site.path("out.img");
    db.restore("db", "latest", "disk", &out).ok();
    assert_eq!(
        fs::read(&out).unwrap(),
        db_data,
        "db's point is whole: it stored its own copy"
    );
    // The control: shop shares the tenant's scope and deduplicated against the
    // plant, so its point cannot be restored (refused by name, never wrong).
    let r = db.restore("shop", "latest", "disk", &site.path("shop-out.img")).code(2);
    assert!(r.stderr.contains(&keys.chunk_id(&shop_data).to_hex()), "{}", r.stderr);
    receiver.stop();

    // On the secondary's own disk: the scope is listed, and the deep scrub
    // names the plant and only the point it breaks.
    let scopes = run(&["scope", "--repo", s(&site.repo), "--tenant", "acme", "--json"])
        .ok()
        .json();
    assert_eq!(scopes["own_scopes"], serde_json::json!(["db"]), "{scopes}");
    let v = run(&[
        "verify",
        "--repo",
        s(&site.repo),
        "--tenant",
        "acme",
        "--key-file",
        s(&key),
        "--json",
    ])
    .code(1)
    .json();
    let affected: Vec<String> = v["affected_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["group"].as_str().unwrap(), p["seq"]))
        .collect();
    assert_eq!(affected, ["shop/1"], "{v}");
}

#[test]
fn scope_gives_a_local_group_its_own_scope_before_its_first_point_only() {
    let sb = Sandbox::new();
    let r = run(&["scope", "--repo", s(&sb.repo), "--group", "db"]).ok();
    assert!(
        r.stdout
            .contains("group db of tenant default: has its own dedup scope now"),
        "{}",
        r.stdout
    );
    let r = run(&["scope", "--repo", s(&sb.repo)]).ok();
    assert!(r.stdout.contains("group db has its own dedup scope"), "{}", r.stdout);
    let vol = sb.path("v.img");
    write_random_file(&vol, 2 * MIB, 4);
    sb.backup("db", &[("disk", &vol)], &[]).ok();
    sb.backup("web", &[("disk", &vol)], &[]).ok();
    let r = run(&["scope", "--repo", s(&sb.repo), "--group", "web"]).code(2);
    assert!(
        r.stderr.contains("already has points") && r.stderr.contains("new group name"),
        "{}",
        r.stderr
    );
    // A receiver refuses to start with such a group given its own scope.
    let tls = sb.path("tls");
    certs(&sb.path("ca"), &tls, true, &["a@default"], &[]).ok();
    let refused = ReceiverProc::start_with(
        &sb.repo,
        &tls,
        "127.0.0.1:0",
        &["a=web"],
        &["--own-scope", "web@default"],
    )
    .err()
    .expect("the receiver refused to start");
    assert!(refused.stderr.contains("already has points"), "{}", refused.stderr);
}
