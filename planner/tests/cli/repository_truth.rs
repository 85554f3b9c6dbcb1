//! The repository's truth is its objects, through the real binary: a catalog
//! that lost points is refused by `points`, reported by `verify` (exit 1),
//! never swept by `gc`, and rebuilt by `repair`.

use std::fs;

use super::common::*;

fn pack_files(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let packs = repo.join("tenants/default/objects/packs");
    for shard in fs::read_dir(packs).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().unwrap() != "tmp" {
            out.extend(fs::read_dir(shard).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_catalog_that_lost_points_is_refused_reported_never_collected_and_repaired() {
    let sb = Sandbox::new();
    let v = sb.path("db.img");
    write_random_file(&v, 8 * MIB, 1);
    sb.backup_json("db", &[("db", &v)]);
    // A stale copy of the catalog (a bad restore of the disk, a damaged log
    // that sled reads up to the damage): it knows point 1 only.
    let stale = sb.path("stale-catalog");
    copy_dir(&sb.repo.join("catalog"), &stale);
    for i in 0..2u64 {
        let f = fs::OpenOptions::new().write(true).open(&v).unwrap();
        write_random_at(&f, i * 2 * MIB, 512 * KIB, 10 + i);
        sb.backup_json("db", &[("db", &v)]);
    }
    let latest = fs::read(&v).unwrap();
    fs::remove_dir_all(sb.repo.join("catalog")).unwrap();
    copy_dir(&stale, &sb.repo.join("catalog"));
    let packs = pack_files(&sb.repo);
    let repo = s(&sb.repo);

    run(&["points", "--repo", repo]).fails(
        2,
        &[
            "point 2 of group `db`",
            "missing from the catalog",
            "lifeline repair --repo",
        ],
    );
    sb.verify(true)
        .code(1)
        .stdout_has(&["point 2 of group `db`", "missing from the catalog", "lifeline repair"]);
    sb.verify(false).code(1);
    run(&["gc", "--repo", repo, "--grace", "0s"]).fails(2, &["lifeline repair"]);
    assert_eq!(pack_files(&sb.repo), packs, "nothing was collected");

    run(&["repair", "--repo", repo]).ok().stdout_has(&[
        "3 point(s)",
        "group default/db: 3 point(s), newest 3",
        "catalog.old-",
    ]);
    assert_eq!(sb.points().len(), 3);
    sb.verify(true).ok().stdout_has(&["ok: no damage found"]);
    let out = sb.path("restored.img");
    sb.restore("db", "latest", "db", &out).ok();
    assert!(
        fs::read(&out).unwrap() == latest,
        "the latest point restores bit for bit"
    );

    // A catalog deleted outright: refused, and verify calls it damage too.
    fs::remove_dir_all(sb.repo.join("catalog")).unwrap();
    run(&["points", "--repo", repo]).fails(2, &["catalog", "is missing", "lifeline repair --repo"]);
    sb.verify(false).code(1).stdout_has(&["is missing"]);
    let r = run(&["repair", "--repo", repo, "--json"]).ok().json();
    assert_eq!(r["points"], 3, "{r}");
    assert_eq!(sb.points().len(), 3);
}
