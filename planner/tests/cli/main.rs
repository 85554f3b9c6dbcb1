//! End-to-end tests of the `lifeline` binary: every test runs the real command
//! against temporary directories and checks the behaviour, the exit code (0 ok,
//! 1 check failed, 2 error, 130 interrupted) and that error messages name the
//! object and say what to do.

mod checks;
mod common;
mod console;
mod daemon;
mod dedup_scope;
mod identities;
mod instant;
mod metrics;
mod mount;
mod postgres;
mod preempt;
mod replication;
mod repository_truth;
mod runbooks;
mod runs;
mod s3;
mod sandbox;
mod serve;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use common::*;

// ---------------------------------------------------------------------------
// 1. Round trip
// ---------------------------------------------------------------------------

#[test]
fn round_trip_two_volumes_sparse_restore_and_verify() {
    let sb = Sandbox::new(); // asserts `key new` and `init`

    // Volume a: 3 MiB random, 1 MiB of written zeros, a 16 MiB hole, 1 MiB
    // random, a 3 MiB hole at the end (set_len). 24 MiB, 4 MiB of data.
    let a = sb.path("a.img");
    let f = File::create(&a).unwrap();
    write_random_at(&f, 0, 3 * MIB, 1);
    f.write_all_at(&vec![0u8; MIB as usize], 3 * MIB).unwrap();
    write_random_at(&f, 20 * MIB, MIB, 2);
    f.set_len(24 * MIB).unwrap();
    f.sync_all().unwrap();
    drop(f);
    // Volume b: small and text-like, with a size that is no multiple of 4 KiB.
    let b = sb.path("b.txt");
    fs::write(&b, text_like(100_003, 3)).unwrap();
    let b_len = 100_003u64;

    let sum = sb.backup_json("app", &[("a", &a), ("b", &b)]);
    assert_eq!(u(&sum, "seq"), 1, "{sum}");
    assert_eq!(
        u(&sum, "bytes_scanned"),
        24 * MIB + b_len,
        "holes count as scanned: {sum}"
    );
    let new = u(&sum, "bytes_new");
    assert!(
        new >= 4 * MIB && new <= 4 * MIB + b_len,
        "only data is new (no zeros, no holes): {sum}"
    );
    assert!(u(&sum, "bytes_stored") > 0, "{sum}");
    assert!(sum["elapsed_secs"].as_f64().is_some_and(|t| t >= 0.0), "{sum}");
    assert_eq!(sum["consistency"], "fuzzy", "{sum}");

    let points = sb.points();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0]["seq"], 1);
    assert_eq!(points[0]["group"], "app");
    assert_eq!(points[0]["consistency"], "fuzzy");
    assert_eq!(points[0]["volume_count"], 2);
    // With the key, points also opens each point and lists its volumes.
    let keyed = run(&["points", "--repo", s(&sb.repo), "--key-file", s(&sb.key), "--json"])
        .ok()
        .json();
    assert_volumes(&keyed[0], &[("a", 24 * MIB), ("b", b_len)]);

    let out_a = sb.path("restored-a.img");
    sb.restore("app", "latest", "a", &out_a).ok().stdout_has(&[
        "restored volume `a` of point 1",
        s(&out_a),
        "volume hash verified",
    ]);
    assert_sparse_copy(&a, &out_a, 8 * MIB, "a 24 MiB volume with 4 MiB of data");
    let out_b = sb.path("restored-b.txt");
    let r = sb.restore_json("app", "latest", "b", &out_b);
    assert_eq!(u(&r, "seq"), 1);
    assert_eq!(u(&r, "size"), b_len);
    assert_same_content(&b, &out_b);

    sb.verify(false)
        .ok()
        .stdout_has(&["no-key verify", "1 points", "ok: no damage found"]);
    sb.verify(true)
        .ok()
        .stdout_has(&["deep verify", "2 volume hashes", "ok: no damage found"]);
}

// ---------------------------------------------------------------------------
// 2. Incremental backups, dedup and point selection
// ---------------------------------------------------------------------------

/// The midpoint of two `taken_at` values (printed in truncated milliseconds).
fn between(earlier: &serde_json::Value, later: &serde_json::Value) -> String {
    let (t1, t2) = (
        parse_utc_ms(earlier["taken_at"].as_str().unwrap()),
        parse_utc_ms(later["taken_at"].as_str().unwrap()),
    );
    assert!(
        t2 - t1 >= 4,
        "points too close to pick a time between them: {earlier} {later}"
    );
    format_utc_ms((t1 + t2) / 2)
}

#[test]
fn incremental_backup_dedups_and_points_are_selectable() {
    let sb = Sandbox::new();
    let v = sb.path("db.img");
    write_random_file(&v, 12 * MIB, 20);
    let old = sb.path("db.old");
    fs::copy(&v, &old).unwrap();

    let first = sb.backup_json("db", &[("db", &v)]);
    assert_eq!(u(&first, "seq"), 1);
    assert_eq!(u(&first, "bytes_new"), 12 * MIB, "{first}");

    let same = sb.backup_json("db", &[("db", &v)]);
    assert_eq!(u(&same, "seq"), 2);
    assert_eq!(u(&same, "bytes_new"), 0, "unchanged volume stored new data: {same}");
    assert!(u(&same, "bytes_stored") < 64 * KIB, "{same}");
    assert_eq!(u(&same, "segments_changed"), 0, "{same}");

    // Overwrite four scattered 4 KiB blocks.
    let f = OpenOptions::new().write(true).open(&v).unwrap();
    let offsets = [MIB + 8 * KIB, 5 * MIB + 12 * KIB, 9 * MIB + 4 * KIB, 11 * MIB];
    for (i, off) in offsets.iter().enumerate() {
        f.write_all_at(&random_bytes(4096, 100 + i as u64), *off).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let overwritten = 4 * 4 * KIB;
    let changed = sb.backup_json("db", &[("db", &v)]);
    assert_eq!(u(&changed, "seq"), 3);
    let new = u(&changed, "bytes_new");
    // Chunks are 4 / 16 / 64 KiB min / average / max with a key-seeded cut
    // function: a 4 KiB overwrite changes the (at most two) chunks it overlaps
    // and may move the next cut, so at most three chunks of 64 KiB each. The
    // median is about 32 KiB per overwrite, but a fixed 10x bound failed for
    // a few keys in a hundred.
    let bound = offsets.len() as u64 * 3 * 64 * KIB;
    assert!(
        new > 0 && new <= bound,
        "{overwritten} bytes overwritten but {new} new bytes stored (at most {bound} expected): {changed}"
    );
    assert_eq!(u(&changed, "segments_changed"), 3, "{changed}");

    let out = sb.path("out.img");
    assert_eq!(u(&sb.restore_json("db", "1", "db", &out), "seq"), 1);
    assert_same_content(&old, &out);
    assert_eq!(u(&sb.restore_json("db", "latest", "db", &out), "seq"), 3);
    assert_same_content(&v, &out);

    // A time between two points selects the earlier one.
    let points = sb.points();
    assert_eq!(points.iter().map(|p| u(p, "seq")).collect::<Vec<_>>(), [1, 2, 3]);
    let t12 = between(&points[0], &points[1]);
    assert_eq!(u(&sb.restore_json("db", &t12, "db", &out), "seq"), 1, "--point {t12}");
    assert_same_content(&old, &out);
    let t23 = between(&points[1], &points[2]);
    assert_eq!(u(&sb.restore_json("db", &t23, "db", &out), "seq"), 2, "--point {t23}");
    assert_same_content(&old, &out);

    // The time `points` shows for a point (truncated to the millisecond) selects
    // that point, not the one before it.
    for p in &points {
        let shown = p["taken_at"].as_str().unwrap();
        assert_eq!(
            u(&sb.restore_json("db", shown, "db", &out), "seq"),
            u(p, "seq"),
            "--point {shown}"
        );
    }

    // Selectors that match nothing, or do not parse.
    let before = format_utc_ms(parse_utc_ms(points[0]["taken_at"].as_str().unwrap()) - 60_000);
    sb.restore("db", &before, "db", &out).fails(
        EXIT_ERROR,
        &["group `db` has no recovery point at or before", "lifeline points"],
    );
    sb.restore("db", "9", "db", &out)
        .fails(EXIT_ERROR, &["has no recovery point with seq 9", "lifeline points"]);
    sb.restore("db", "yesterday", "db", &out)
        .fails(EXIT_ERROR, &["invalid point `yesterday`", "RFC 3339"]);
    sb.restore("nosuch", "latest", "db", &out)
        .fails(EXIT_ERROR, &["group `nosuch` has no recovery point", "lifeline backup"]);
}

// ---------------------------------------------------------------------------
// 3. Lost agent state
// ---------------------------------------------------------------------------

#[test]
fn deleted_state_dir_rescans_but_dedups_against_repository() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 8 * MIB, 30);
    let first = sb.backup_json("g", &[("v", &v)]);
    assert!(
        sb.state.is_dir(),
        "backup did not write its state to --state-dir {}",
        sb.state.display()
    );

    fs::remove_dir_all(&sb.state).unwrap();
    let second = sb.backup_json("g", &[("v", &v)]);
    assert_eq!(u(&second, "seq"), 2);
    assert_eq!(
        u(&second, "segments_changed"),
        u(&second, "segments"),
        "without state every segment is rescanned: {second}"
    );
    assert_eq!(u(&second, "bytes_new"), 0, "first: {first}\nsecond: {second}");
    assert!(u(&second, "bytes_stored") < 64 * KIB, "{second}");
    assert!(sb.state.is_dir(), "state not rewritten");

    let out = sb.path("out.img");
    sb.restore("g", "2", "v", &out).ok();
    assert_same_content(&v, &out);
}

// ---------------------------------------------------------------------------
// 4. Keys
// ---------------------------------------------------------------------------

#[test]
fn wrong_missing_and_passphrase_keys_are_refused() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, MIB, 40);
    sb.backup_json("g", &[("v", &v)]);
    let repo = s(&sb.repo);
    let out = sb.path("out.img");

    // Another key.
    let other = sb.path("other.key");
    run(&["key", "new", "--out", s(&other)]).ok();
    let wrong = ["does not match repository", s(&other), repo, "lifeline init"];
    let spec = format!("v={}", s(&v));
    let st = s(&sb.state);
    run(&[
        "backup",
        "--repo",
        repo,
        "--key-file",
        s(&other),
        "--group",
        "g",
        "--volume",
        &spec,
        "--state-dir",
        st,
    ])
    .fails(EXIT_ERROR, &wrong);
    run(&[
        "restore",
        "--repo",
        repo,
        "--key-file",
        s(&other),
        "--group",
        "g",
        "--volume",
        "v",
        "--to",
        s(&out),
    ])
    .fails(EXIT_ERROR, &wrong);
    assert!(!out.exists(), "a refused restore created its target");
    run(&["points", "--repo", repo, "--key-file", s(&other)]).fails(EXIT_ERROR, &wrong);
    run(&["verify", "--repo", repo, "--key-file", s(&other)]).fails(EXIT_ERROR, &wrong);
    assert_eq!(sb.points().len(), 1, "a refused backup committed a point");

    // A key file that does not exist.
    let missing = sb.path("no-such.key");
    let named = [s(&missing), "does not exist", "lifeline key new"];
    run(&[
        "backup",
        "--repo",
        repo,
        "--key-file",
        s(&missing),
        "--group",
        "g",
        "--volume",
        &spec,
        "--state-dir",
        st,
    ])
    .fails(EXIT_ERROR, &named);
    run(&[
        "restore",
        "--repo",
        repo,
        "--key-file",
        s(&missing),
        "--group",
        "g",
        "--volume",
        "v",
        "--to",
        s(&out),
    ])
    .fails(EXIT_ERROR, &named);
    run(&["points", "--repo", repo, "--key-file", s(&missing)]).fails(EXIT_ERROR, &named);
    run(&["init", "--repo", s(&sb.path("repo2")), "--key-file", s(&missing)]).fails(EXIT_ERROR, &named);

    // A passphrase-wrapped key.
    let wrapped = sb.path("wrapped.key");
    run_env(&["key", "new", "--out", s(&wrapped)], &[("LIFELINE_PASSPHRASE", "x")])
        .ok()
        .stdout_has(&["wrapped by LIFELINE_PASSPHRASE"]);
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&wrapped).unwrap()).unwrap();
    assert_eq!(json["wrapping"], "argon2id", "{json}");
    assert!(
        json.get("key").is_none(),
        "a wrapped key file holds the key in clear: {json}"
    );
    let repo2 = sb.path("repo2");
    run(&["init", "--repo", s(&repo2), "--key-file", s(&wrapped)]).fails(
        EXIT_ERROR,
        &[s(&wrapped), "protected by a passphrase", "set LIFELINE_PASSPHRASE"],
    );
    run_env(
        &["init", "--repo", s(&repo2), "--key-file", s(&wrapped)],
        &[("LIFELINE_PASSPHRASE", "y")],
    )
    .fails(EXIT_ERROR, &[s(&wrapped), "wrong passphrase"]);
    assert!(
        !repo2.join("lifeline-repo").exists(),
        "init with a wrong passphrase created a repository"
    );
    run_env(
        &["init", "--repo", s(&repo2), "--key-file", s(&wrapped)],
        &[("LIFELINE_PASSPHRASE", "x")],
    )
    .ok();

    // `key new` never overwrites.
    let before = fs::read(&sb.key).unwrap();
    run(&["key", "new", "--out", s(&sb.key)])
        .fails(EXIT_ERROR, &[s(&sb.key), "already exists", "refusing to overwrite"]);
    assert_eq!(fs::read(&sb.key).unwrap(), before, "key file changed");
    sb.verify(true).ok();
}

// ---------------------------------------------------------------------------
// 5. Not a repository, double init
// ---------------------------------------------------------------------------

#[test]
fn not_a_repository_and_double_init_are_refused() {
    let sb = Sandbox::new();
    let empty = sb.path("empty");
    fs::create_dir(&empty).unwrap();
    let not_repo = [s(&empty), "is not a Lifeline repository", "lifeline init"];
    run(&["points", "--repo", s(&empty)]).fails(EXIT_ERROR, &not_repo);
    run(&["verify", "--repo", s(&empty)]).fails(EXIT_ERROR, &not_repo);
    let v = sb.path("v.img");
    write_random_file(&v, MIB, 50);
    let spec = format!("v={}", s(&v));
    let st = s(&sb.state);
    run(&[
        "backup",
        "--repo",
        s(&empty),
        "--key-file",
        s(&sb.key),
        "--group",
        "g",
        "--volume",
        &spec,
        "--state-dir",
        st,
    ])
    .fails(EXIT_ERROR, &not_repo);
    let out = sb.path("out.img");
    run(&[
        "restore",
        "--repo",
        s(&empty),
        "--key-file",
        s(&sb.key),
        "--group",
        "g",
        "--volume",
        "v",
        "--to",
        s(&out),
    ])
    .fails(EXIT_ERROR, &not_repo);
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "commands wrote into a non-repository"
    );
    let absent = sb.path("absent");
    run(&["points", "--repo", s(&absent)]).fails(EXIT_ERROR, &[s(&absent), "is not a Lifeline repository"]);

    run(&["init", "--repo", s(&sb.repo), "--key-file", s(&sb.key)]).fails(EXIT_ERROR, &[s(&sb.repo), "already holds"]);
    let full = sb.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("data"), "x").unwrap();
    run(&["init", "--repo", s(&full), "--key-file", s(&sb.key)]).fails(EXIT_ERROR, &[s(&full), "is not empty"]);
    sb.verify(false).ok();
}

// ---------------------------------------------------------------------------
// 6. Volume arguments
// ---------------------------------------------------------------------------

#[test]
fn missing_or_invalid_volume_is_named() {
    let sb = Sandbox::new();
    let good = sb.path("good.img");
    write_random_file(&good, MIB, 60);
    let missing = sb.path("no/such/volume.img");
    sb.backup("g", &[("good", &good), ("gone", &missing)], &[])
        .fails(EXIT_ERROR, &[s(&missing), "does not exist", "--volume NAME=PATH"]);
    let dir = sb.path("a-dir");
    fs::create_dir(&dir).unwrap();
    sb.backup("g", &[("d", &dir)], &[])
        .fails(EXIT_ERROR, &[s(&dir), "not a regular file or a block device"]);
    sb.backup("g", &[("x", &good), ("x", &good)], &[])
        .fails(EXIT_ERROR, &["volume name `x`", "given twice"]);
    let st = s(&sb.state);
    run(&sb.args("backup", "g", &["--volume", "nopath", "--state-dir", st]))
        .fails(EXIT_ERROR, &["invalid --volume `nopath`", "NAME=PATH"]);
    assert!(sb.points().is_empty(), "a failed backup committed a point");
    assert!(durable_packs(&sb.repo).is_empty(), "a refused backup stored objects");
}

// ---------------------------------------------------------------------------
// 7. Corruption
// ---------------------------------------------------------------------------

/// Asserts that verify's output has an `affected point 1` line naming `id` (by a
/// prefix: the line shortens ids) and `what`.
#[track_caller]
fn assert_affected(stdout: &str, id: &str, what: &str) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("affected point 1 of group `g`"))
        .unwrap_or_else(|| panic!("no affected point line:\n{stdout}"));
    assert!(
        line.contains(&format!("object {}", &id[..8])) && line.contains(what),
        "{line}"
    );
}

/// A fresh sandbox holding one point (seq 1 of group `g`) of a random volume `v`
/// of `size` bytes, and the objects of its packs. One volume, one point: every
/// object belongs to the point.
fn one_point_repo(size: u64, seed: u64) -> (Sandbox, Vec<PackObject>) {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, size, seed);
    sb.backup_json("g", &[("v", &v)]);
    let objs = pack_objects(&sb.repo);
    assert!(objs.len() > 100, "expected hundreds of objects, found {}", objs.len());
    assert!(tmp_packs(&sb.repo).is_empty(), "a finished backup left temp packs");
    sb.verify(false).ok().stdout_has(&["ok: no damage found"]);
    (sb, objs)
}

/// How verify and restore name where an object lives.
fn location(o: &PackObject) -> String {
    format!("pack {} at offset {}", o.pack.display(), o.offset)
}

/// The ids in verify's `damaged  <id> at ...` (or `missing  <id>: ...`) lines.
fn listed_ids<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| l.split([' ', ':']).next().unwrap())
        .collect()
}

#[test]
fn damaged_truncated_and_missing_objects_are_reported() {
    // Separate repositories, so the cases cannot hide or cause each other.

    // (a) One flipped bit in the middle of the largest chunk.
    let (sb, objs) = one_point_repo(8 * MIB, 70);
    let out = sb.path("out.img");
    let o = largest_chunk(&objs);
    let (pack, at, byte) = flip_middle_byte(o, 0x10);
    let r = sb.verify(false).code(EXIT_CHECK_FAILED).stdout_has(&[
        &format!("damaged  {} at {}", o.id_hex, location(o)),
        "checksum mismatch",
        "FAILED",
    ]);
    assert_eq!(listed_ids(&r.stdout, "damaged  "), [o.id_hex.as_str()], "{}", r.stdout);
    assert_affected(&r.stdout, &o.id_hex, "is damaged");
    assert!(!r.stdout.contains("ok: no damage found"), "{}", r.stdout);
    let j = run(&["verify", "--repo", s(&sb.repo), "--json"])
        .code(EXIT_CHECK_FAILED)
        .json();
    assert_eq!(j["damaged"][0]["id"], o.id_hex.as_str(), "{j}");
    assert_eq!(j["affected_points"][0]["seq"], 1, "{j}");
    sb.verify(true)
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&[&o.id_hex, "affected point 1"]);
    sb.restore("g", "latest", "v", &out).fails(
        EXIT_ERROR,
        &[&format!("object {}", o.id_hex), "damaged", "lifeline verify"],
    );
    // The flip was the only damage.
    pack.write_all_at(&byte, at).unwrap();
    drop(pack);
    sb.verify(false).ok();

    // (b) A pack truncated in the middle of an object: that object and every
    // object after it in the pack are cut off; the ones before are intact.
    let (sb, objs) = one_point_repo(8 * MIB, 71);
    let o = largest_chunk(&objs);
    let cut: Vec<&str> = objs
        .iter()
        .filter(|x| x.pack == o.pack && x.offset >= o.offset)
        .map(|x| x.id_hex.as_str())
        .collect();
    OpenOptions::new()
        .write(true)
        .open(&o.pack)
        .unwrap()
        .set_len(o.offset + o.len / 2)
        .unwrap();
    let r = sb
        .verify(false)
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&[&format!("damaged  {} at {}", o.id_hex, location(o)), "FAILED"]);
    let line = r.stdout.lines().find(|l| l.contains(&o.id_hex)).unwrap();
    assert!(line.contains("truncated"), "{line}");
    let mut damaged = listed_ids(&r.stdout, "damaged  ");
    damaged.sort_unstable();
    let mut expected = cut.clone();
    expected.sort_unstable();
    assert_eq!(
        damaged, expected,
        "exactly the objects at or after the cut are damaged:\n{}",
        r.stdout
    );
    let first = r
        .stdout
        .lines()
        .find(|l| l.starts_with("affected point 1 of group `g`"))
        .unwrap_or_else(|| panic!("no affected point line:\n{}", r.stdout));
    assert!(
        first.contains("is damaged") && cut.iter().any(|id| first.contains(&format!("object {}", &id[..8]))),
        "{first}"
    );
    let r = sb
        .restore("g", "latest", "v", &out)
        .fails(EXIT_ERROR, &["damaged", "lifeline verify"]);
    assert!(
        cut.iter().any(|id| r.stderr.contains(&format!("object {id}"))),
        "restore names no object of the cut-off part: {}",
        r.stderr
    );

    // (c) A whole pack deleted. 24 MiB of random data fills more than one
    // 16 MiB pack; delete one without the index nodes (they are written last),
    // so the root stays readable and verify can name what the point lost.
    let (sb, objs) = one_point_repo(24 * MIB, 72);
    let packs = durable_packs(&sb.repo);
    assert!(packs.len() >= 2, "expected several packs: {packs:?}");
    let gone = packs
        .iter()
        .find(|p| objs.iter().all(|o| &o.pack != *p || o.kind != KIND_INDEX_NODE))
        .expect("a pack without index nodes");
    let lost: Vec<&str> = objs
        .iter()
        .filter(|o| &o.pack == gone)
        .map(|o| o.id_hex.as_str())
        .collect();
    fs::remove_file(gone).unwrap();
    let r = sb
        .verify(false)
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["referenced by point 1 of group `g`", "FAILED"]);
    // Every object of the pack is listed; the first one the point's tree
    // reaches is named as referenced by the point.
    let mut missing = listed_ids(&r.stdout, "missing  ");
    missing.sort_unstable();
    let mut expected = lost.clone();
    expected.sort_unstable();
    assert_eq!(
        missing, expected,
        "not exactly the deleted pack's objects are missing:\n{}",
        r.stdout
    );
    let referenced: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.ends_with("referenced by point 1 of group `g`"))
        .collect();
    assert_eq!(referenced.len(), 1, "{}", r.stdout);
    let first = listed_ids(referenced[0], "missing  ")[0];
    assert!(listed_ids(&r.stdout, "damaged  ").is_empty(), "{}", r.stdout);
    assert_affected(&r.stdout, first, "is missing");
    let r = sb
        .restore("g", "latest", "v", &out)
        .fails(EXIT_ERROR, &["is missing", "lifeline verify"]);
    assert!(
        lost.iter().any(|id| r.stderr.contains(&format!("object {id}"))),
        "restore names no object of the deleted pack: {}",
        r.stderr
    );
}

#[test]
fn repair_drops_lost_objects_and_the_next_backup_heals_the_point() {
    // A pack lost to the disk: verify finds it, --repair drops its objects (and
    // the nodes above them) from the index, and backing up the same data again
    // stores them anew, which makes the old point restorable again.
    let (sb, _objs) = one_point_repo(24 * MIB, 73);
    let v = sb.path("v.img");
    let packs = durable_packs(&sb.repo);
    fs::remove_file(&packs[0]).unwrap();
    sb.verify(false).code(EXIT_CHECK_FAILED).stdout_has(&["missing  "]);
    let r = run(&["verify", "--repo", s(&sb.repo), "--repair"])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["repair: dropped"]);
    assert!(r.stdout.contains("affected point 1"), "{}", r.stdout);
    // The point is still damaged, but the index no longer lists the lost objects.
    let j = run(&["verify", "--repo", s(&sb.repo), "--json"])
        .code(EXIT_CHECK_FAILED)
        .json();
    assert!(j["damaged"].as_array().unwrap().is_empty(), "{j}");
    // Same data again: the lost chunks are stored anew (the state dir says the
    // segments are unchanged, but their nodes left the index).
    let b = sb.backup_json("g", &[("v", &v)]);
    assert!(u(&b, "bytes_new") > 0, "{b}");
    sb.verify(false).ok().stdout_has(&["ok: no damage found"]);
    sb.verify(true).ok();
    let out = sb.path("healed.img");
    sb.restore("g", "1", "v", &out).ok();
    assert_same_content(&v, &out);
}

#[test]
fn a_damaged_chunk_repaired_in_a_pack_that_stays_restores_from_its_new_copy() {
    // One flipped bit in a chunk whose pack holds live neighbours: --repair
    // drops it (and the nodes above it) from the index, the next backup of
    // the same data stores it anew in another pack, and restores and a deep
    // verify read the new copy, never the damaged one left in the old pack
    // (which a restore reading the neighbours through that pack's footer
    // still finds).
    let (sb, objs) = one_point_repo(24 * MIB, 74);
    let v = sb.path("v.img");
    let chunks: Vec<&PackObject> = objs.iter().filter(|o| o.kind == KIND_CHUNK).collect();
    let o = chunks[chunks.len() / 2];
    assert!(
        chunks.iter().filter(|c| c.pack == o.pack).count() > 10,
        "the damaged chunk's pack holds live neighbours"
    );
    let pack = OpenOptions::new().read(true).write(true).open(&o.pack).unwrap();
    let at = o.offset + o.len / 2;
    let mut byte = [0u8; 1];
    pack.read_exact_at(&mut byte, at).unwrap();
    pack.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(pack);
    run(&["verify", "--repo", s(&sb.repo), "--repair"])
        .code(EXIT_CHECK_FAILED)
        .stdout_has(&["repair: dropped"]);
    let b = sb.backup_json("g", &[("v", &v)]);
    assert!(u(&b, "bytes_new") > 0, "{b}");
    assert!(o.pack.exists(), "the damaged chunk's pack stays: its neighbours live");
    for point in ["1", "2"] {
        let out = sb.path(&format!("healed-{point}.img"));
        sb.restore("g", point, "v", &out).ok();
        assert_same_content(&v, &out);
    }
    sb.verify(true).ok();
}

// ---------------------------------------------------------------------------
// 8. Restore targets
// ---------------------------------------------------------------------------

#[test]
fn restore_target_problems_name_the_target() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 4 * MIB, 80);
    sb.backup_json("g", &[("v", &v)]);

    // Under a regular file: fails for root too.
    let file = sb.path("plain-file");
    fs::write(&file, "not a directory").unwrap();
    let under_file = file.join("x.img");
    sb.restore("g", "latest", "v", &under_file).fails(
        EXIT_ERROR,
        &["cannot write restore target", s(&under_file), "choose a writable path"],
    );
    let no_dir = sb.path("no/such/dir/x.img");
    let r = sb.restore("g", "latest", "v", &no_dir).fails(
        EXIT_ERROR,
        &["cannot write restore target", s(&no_dir), "choose a writable path"],
    );
    assert_eq!(r.stderr.matches("os error").count(), 1, "cause repeated: {}", r.stderr);
    let dir = sb.path("a-dir");
    fs::create_dir(&dir).unwrap();
    sb.restore("g", "latest", "v", &dir)
        .fails(EXIT_ERROR, &[s(&dir), "is a directory"]);
    let out = sb.path("out.img");
    sb.restore("g", "latest", "nosuch", &out).fails(
        EXIT_ERROR,
        &["point 1 of group `g` has no volume `nosuch`", "it has: v"],
    );

    // A block device smaller than the volume.
    if !is_root() {
        eprintln!("SKIP restore to a too-small block device: needs root for losetup");
        return;
    }
    let backing = sb.path("loop-backing.img");
    File::create(&backing).unwrap().set_len(MIB).unwrap();
    let dev = match LoopDevice::attach(&backing) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP restore to a too-small block device: losetup failed: {e}");
            return;
        }
    };
    sb.restore("g", "latest", "v", &dev.device).fails(
        EXIT_ERROR,
        &[
            &format!("restore target {} is too small", dev.device.display()),
            &format!("needs {} bytes", 4 * MIB),
            "choose a larger device",
        ],
    );
}

// ---------------------------------------------------------------------------
// 9. Disk full
// ---------------------------------------------------------------------------

#[test]
fn disk_full_during_backup_leaves_a_valid_repository() {
    if !is_root() {
        eprintln!("SKIP disk-full test: needs root to mount a small tmpfs");
        return;
    }
    let sb = match Sandbox::on_tmpfs("8m") {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("SKIP disk-full test: cannot mount a tmpfs: {e}");
            return;
        }
    };
    let v = sb.path("big.img");
    write_random_file(&v, 32 * MIB, 90);
    let r = sb
        .backup("g", &[("v", &v)], &[])
        .fails(EXIT_ERROR, &["No space left", s(&objects_dir(&sb.repo))]);
    assert_eq!(
        r.stderr.matches("No space left").count(),
        1,
        "cause repeated: {}",
        r.stderr
    );
    assert!(sb.points().is_empty(), "a failed backup committed a point");
    let leftovers = tmp_packs(&sb.repo);
    assert!(leftovers.is_empty(), "a failed backup left temp packs: {leftovers:?}");
    sb.verify(false).ok().stdout_has(&["ok: no damage found"]);
    sb.verify(true).ok();

    // Shrink the volume: now it fits.
    OpenOptions::new()
        .write(true)
        .open(&v)
        .unwrap()
        .set_len(2 * MIB)
        .unwrap();
    let s1 = sb.backup_json("g", &[("v", &v)]);
    assert_eq!(u(&s1, "seq"), 1, "{s1}");
    assert_eq!(sb.points().len(), 1);
    let out = sb.path("out.img");
    sb.restore("g", "latest", "v", &out).ok();
    assert_same_content(&v, &out);
    sb.verify(true).ok();
}

// ---------------------------------------------------------------------------
// 10. kill -9
// ---------------------------------------------------------------------------

#[test]
fn kill_9_during_backup_keeps_repository_valid_and_next_backup_resumes() {
    let sb = Sandbox::new();
    // Closed 16 MiB packs become durable in batches of 256 MiB (SYNC_BATCH_BYTES):
    // the volume is twice that, so the first batch lands well before the commit.
    let size = 512 * MIB;
    let v = sb.path("big.img");
    write_random_file(&v, size, 100);
    let owned = sb.backup_args("g", &[("v", &v)], &["--json"]);
    let args = strs(&owned);
    let mut child = spawn(&args);
    let mut exited = false;
    let seen = poll_until(Duration::from_secs(120), || {
        exited = child.try_wait().expect("try_wait").is_some();
        exited || !durable_packs(&sb.repo).is_empty()
    });
    if exited || !seen {
        let _ = child.kill();
        let r = finish(child, &args);
        panic!(
            "{}: {}",
            if exited {
                "the backup ended before any pack became durable; use a bigger volume"
            } else {
                "no durable pack appeared within 120 s"
            },
            r.stderr
        );
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "backup was not killed: {status:?}");

    // Every durable pack is whole (its footer parses); the objects in them are
    // what arrived.
    let arrived = pack_objects(&sb.repo);
    let arrived_bytes: u64 = arrived.iter().map(|o| o.len).sum();
    eprintln!(
        "killed with {} durable packs ({} objects, {arrived_bytes} bytes) and {} temp packs",
        durable_packs(&sb.repo).len(),
        arrived.len(),
        tmp_packs(&sb.repo).len()
    );
    assert!(!arrived.is_empty());
    assert!(sb.points().is_empty(), "a killed backup committed a point");
    run(&["points", "--repo", s(&sb.repo)]).ok().stdout_has(&["no points"]);
    sb.verify(false).ok().stdout_has(&["ok: no damage found"]);
    let leftovers = tmp_packs(&sb.repo);
    assert!(
        leftovers.is_empty(),
        "opening the store did not remove stale temp packs: {leftovers:?}"
    );

    let second = sb.backup_json("g", &[("v", &v)]);
    assert_eq!(u(&second, "seq"), 1, "{second}");
    // A full backup stores every object the point needs: all of them, as both
    // runs backed up the same volume with the same key.
    let all = pack_objects(&sb.repo);
    let total: u64 = all.iter().map(|o| o.len).sum();
    let mut ids: Vec<&str> = all.iter().map(|o| o.id_hex.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "an object was stored twice");
    let stored = u(&second, "bytes_stored");
    assert!(stored < total, "nothing was reused: {second}");
    assert_eq!(
        stored,
        total - arrived_bytes,
        "the resumed backup should store exactly what had not arrived ({} objects, {arrived_bytes} bytes had): {second}",
        arrived.len()
    );
    assert!(u(&second, "bytes_new") < size, "{second}");
    assert!(tmp_packs(&sb.repo).is_empty(), "a finished backup left temp packs");
    sb.verify(true)
        .ok()
        .stdout_has(&["1 volume hashes", "ok: no damage found"]);
}

// ---------------------------------------------------------------------------
// 11. Freeze / thaw hooks
// ---------------------------------------------------------------------------

#[test]
fn freeze_and_thaw_hooks_run_and_thaw_always_runs() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 4 * MIB, 110);
    let flag = |name: &str| sb.path(name);
    let touch = |name: &str| format!("touch {}", s(&flag(name)));

    sb.backup(
        "g",
        &[("v", &v)],
        &["--freeze", &touch("frozen"), "--thaw", &touch("thawed")],
    )
    .ok()
    .stdout_has(&["point 1 of group `g` committed (frozen", "frozen   "]);
    assert!(flag("frozen").exists(), "freeze hook did not run");
    assert!(flag("thawed").exists(), "thaw hook did not run");
    let points = sb.points();
    assert_eq!(points[0]["consistency"], "frozen", "{points:?}");

    // A failing freeze still thaws, and commits nothing.
    sb.backup("g", &[("v", &v)], &["--freeze", "false", "--thaw", &touch("thawed2")])
        .fails(EXIT_ERROR, &["freeze hook `false` failed"]);
    assert!(flag("thawed2").exists(), "thaw did not run after a failed freeze");
    // A failing thaw fails the backup.
    sb.backup("g", &[("v", &v)], &["--freeze", "true", "--thaw", "exit 3"])
        .fails(EXIT_ERROR, &["thaw hook `exit 3` failed"]);
    assert_eq!(sb.points().len(), 1, "a failed hook committed a point");

    // One without the other is a usage error.
    sb.backup("g", &[("v", &v)], &["--freeze", &touch("frozen3")])
        .fails(EXIT_ERROR, &["--thaw"]);
    sb.backup("g", &[("v", &v)], &["--thaw", &touch("thawed3")])
        .fails(EXIT_ERROR, &["--freeze"]);
    assert!(
        !flag("frozen3").exists() && !flag("thawed3").exists(),
        "a hook ran after a usage error"
    );
    assert_eq!(sb.points().len(), 1);
}

#[test]
fn interrupt_while_frozen_exits_130_thaws_and_commits_nothing() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 4 * MIB, 120);
    let (frozen, go, thawed) = (sb.path("frozen"), sb.path("go"), sb.path("thawed"));
    // The freeze hook holds the backup frozen until the test says go (at most 30 s).
    let freeze = format!(
        "touch {}; i=0; while [ ! -e {} ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done",
        s(&frozen),
        s(&go)
    );
    let thaw = format!("touch {}", s(&thawed));
    let owned = sb.backup_args("g", &[("v", &v)], &["--freeze", &freeze, "--thaw", &thaw]);
    let args = strs(&owned);
    let child = spawn(&args);
    let pid = child.id().to_string();
    assert!(
        poll_until(Duration::from_secs(30), || frozen.exists()),
        "the freeze hook never ran"
    );
    let sent = Command::new("kill").args(["-INT", &pid]).status().expect("run kill");
    assert!(sent.success(), "kill -INT {pid} failed");
    fs::write(&go, "").unwrap();
    finish(child, &args).fails(EXIT_INTERRUPTED, &["interrupted", "nothing was committed"]);
    assert!(thawed.exists(), "an interrupted backup did not thaw");
    assert!(sb.points().is_empty(), "an interrupted backup committed a point");
    assert!(tmp_packs(&sb.repo).is_empty(), "an interrupted backup left temp packs");
    sb.verify(false).ok();
}

// ---------------------------------------------------------------------------
// 12. Help
// ---------------------------------------------------------------------------

#[test]
fn help_works_for_every_subcommand() {
    for sub in [
        &["key", "new"][..],
        &["init"],
        &["backup"],
        &["points"],
        &["restore"],
        &["verify"],
        &["mount"],
        &["bench"],
        &["demo"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        run(&args)
            .ok()
            .stdout_has(&[&format!("Usage: lifeline {}", sub.join(" ")), "Options:", "--help"]);
    }
    run(&["--help"])
        .ok()
        .stdout_has(&["Usage: lifeline", "backup", "restore", "verify"]);
    run(&["backup", "--help"])
        .ok()
        .stdout_has(&["--volume", "--freeze", "--thaw", "--state-dir"]);
    run(&["restore", "--help"]).ok().stdout_has(&["--point", "--to"]);
    run(&["mount", "--help"]).ok().stdout_has(&[
        "--all-points",
        "mounted at DIR",
        "mount -o loop,ro",
        "<seq>-<taken_at>",
        "EIO",
    ]);
    // Flags whose help was missing (every flag's is checked by a unit test in the binary's cli/mod.rs).
    run(&["agent", "--help"]).ok().stdout_has(&[
        "Protection group to replicate",
        "quiesces the volumes",
        "Agent state directory",
    ]);
    run(&["restore", "--help"])
        .ok()
        .stdout_has(&["Key file written by", "Protection group whose point"]);
    run(&["report", "list", "--help"]).ok().stdout_has(&["as JSON"]);
    for mode in ["switchover", "failback"] {
        let r = run(&[mode, "--help"]).ok();
        assert!(!r.stdout.contains("(failover)"), "{}", r.stdout);
        r.stdout_has(&["the final sync's point in a switchover or failback"]);
    }
    run(&["no-such-command"]).code(EXIT_ERROR);
}

// ---------------------------------------------------------------------------
// 13. Demo
// ---------------------------------------------------------------------------

#[test]
fn demo_data_path_tour_runs_clean() {
    run(&["demo", "--data-path", "--size-mib", "8"])
        .ok()
        .stdout_has(&["byte-identical: yes", "clean", "demo ok"]);
}

#[test]
fn demo_drills_the_sample_workload_and_leaves_only_a_verifiable_report() {
    let cwd = tempfile::tempdir().unwrap();
    let out = command(&["demo", "--size-mib", "16"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let r = Run::from_output("demo --size-mib 16".into(), out).ok().stdout_has(&[
        "two sites",
        "drill",
        "RPO achieved",
        "RTO achieved",
        "data lost by the application",
        "report:",
        "verify:",
    ]);
    let left: Vec<String> = fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["lifeline-demo"], "the demo leaves only ./lifeline-demo");
    let demo = cwd.path().join("lifeline-demo");
    assert!(demo.join("signer.pub").exists());
    let reports: Vec<_> = fs::read_dir(demo.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1, "{}", r.stdout);
    let report: serde_json::Value = serde_json::from_slice(&fs::read(reports[0].join("report.json")).unwrap()).unwrap();
    assert_ne!(report["verdict"], "failed", "{report:#}");
    assert!(report["achieved"]["data_loss"]["records"].is_number(), "{report:#}");
    run(&[
        "report",
        "verify",
        s(&reports[0]),
        "--pubkey",
        s(&demo.join("signer.pub")),
    ])
    .ok();
}

// ---------------------------------------------------------------------------
// 14. Prune
// ---------------------------------------------------------------------------

#[test]
fn prune_dry_run_prints_decisions_then_prune_keeps_exactly_the_policy() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 2 * MIB, 5);
    for i in 0..5u64 {
        let f = OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, i * 4096, 4096, 100 + i);
        sb.backup("g", &[("v", &v)], &[]).ok();
    }
    // No policy anywhere: refused, not "keep only the newest".
    sb.prune("g", &[])
        .fails(EXIT_ERROR, &["no retention policy", "--keep-last"]);
    let dry = sb.prune("g", &["--keep-last", "2", "--dry-run"]).ok().stdout_has(&[
        "keep (newest, last)",
        "keep (last)",
        "remove",
        "dry run: nothing removed",
    ]);
    assert_eq!(dry.stdout.matches("remove\n").count(), 3, "{}", dry.stdout);
    assert_eq!(sb.points().len(), 5, "a dry run removes nothing");
    let j = sb.prune("g", &["--keep-last", "2", "--json"]).ok().json();
    assert_eq!(j["remove"], serde_json::json!([3, 2, 1]));
    let seqs: Vec<u64> = sb.points().iter().map(|p| u(p, "seq")).collect();
    assert_eq!(seqs, [4, 5]);
    // Kept points restore bit-identical; a removed one is gone with a clear error.
    let out = sb.path("r.img");
    sb.restore("g", "5", "v", &out).ok();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&v).unwrap());
    sb.restore("g", "2", "v", &out).code(EXIT_ERROR);
    sb.verify(false).ok();
    // The next backup continues the timeline.
    assert_eq!(u(&sb.backup_json("g", &[("v", &v)]), "seq"), 6);
    // Through a receiver: not built yet, and it says so.
    run(&[
        "prune",
        "--repo",
        "https://127.0.0.1:1",
        "--group",
        "g",
        "--keep-last",
        "1",
    ])
    .fails(EXIT_ERROR, &["--tls-dir", "--identity"]);
}

#[test]
fn gc_after_prune_reclaims_dead_packs_and_every_kept_point_still_restores() {
    let sb = Sandbox::new();
    let v = sb.path("v.img");
    write_random_file(&v, 8 * MIB, 21);
    sb.backup("g", &[("v", &v)], &[]).ok();
    // Rewrite the same 2 MiB twice: point 2's new data is dead once points 1 and 2 go.
    for seed in [22u64, 23] {
        let f = OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, 2 * MIB, 2 * MIB, seed);
        sb.backup("g", &[("v", &v)], &[]).ok();
    }
    let repo = s(&sb.repo).to_string();
    sb.prune("g", &["--keep-last", "1"]).ok();
    // Within the default grace period nothing goes.
    let j = run(&["gc", "--repo", &repo, "--json"]).ok().json();
    assert_eq!(j[0]["objects_removed"], 0, "{j}");
    assert!(j[0]["objects_in_grace"].as_u64().unwrap() > 0, "{j}");
    let dry = run(&["gc", "--repo", &repo, "--grace", "0s", "--dry-run", "--json"])
        .ok()
        .json();
    assert!(dry[0]["objects_removed"].as_u64().unwrap() > 0, "{dry}");
    let before = pack_bytes_on_disk(&sb.repo);
    let j = run(&["gc", "--repo", &repo, "--grace", "0s", "--json"]).ok().json();
    assert_eq!(
        j[0]["objects_removed"], dry[0]["objects_removed"],
        "the dry run told the truth"
    );
    assert!(j[0]["packs_deleted"].as_u64().unwrap() >= 1, "{j}");
    let reclaimed = j[0]["bytes_reclaimed"].as_u64().unwrap();
    assert!(reclaimed >= 2 * MIB, "point 2's 2 MiB of new data is reclaimed: {j}");
    assert_eq!(
        before - pack_bytes_on_disk(&sb.repo),
        reclaimed,
        "the report matches the disk"
    );
    // The kept point is whole, bit for bit, and the repository verifies deeply.
    let out = sb.path("r.img");
    sb.restore("g", "3", "v", &out).ok();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&v).unwrap());
    sb.verify(true).ok();
    // Idempotent.
    let again = run(&["gc", "--repo", &repo, "--grace", "0s", "--json"]).ok().json();
    assert_eq!(again[0]["objects_removed"], 0, "{again}");
    // The next backup still dedups against what is left.
    sb.backup("g", &[("v", &v)], &[]).ok();
}

fn pack_bytes_on_disk(repo: &std::path::Path) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        fs::read_dir(p)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    let m = e.metadata().unwrap();
                    if m.is_dir() { walk(&e.path()) } else { m.len() }
                })
                .sum()
            })
            .unwrap_or(0)
    }
    walk(&repo.join("tenants/default/objects/packs"))
}
