//! The round trips the repository tests make on one volume `disk` of group
//! `db` in the default tenant: back it up, restore a point, scrub with the key.
//! Include with `#[path = "support/points.rs"] mod points;`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use lifeline_replicator::{
    BackupOptions, DEFAULT_TENANT, Error, Keys, PointSelector, RepairProgress, Repository, RestoreOptions,
    VerifyOptions, VerifyReport, backup, restore, verify,
};

/// One backup of `vol` as volume `disk` of group `db`, with its agent state in `state_dir`.
pub fn backup_disk(repo: &Repository, keys: &Keys, vol: &Path, state_dir: PathBuf) -> Result<(), Error> {
    backup(
        &repo.tenant(DEFAULT_TENANT).unwrap(),
        keys,
        &BackupOptions {
            group: "db".into(),
            volumes: vec![("disk".into(), vol.to_path_buf())],
            freeze: None,
            thaw: None,
            state_dir,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            block_map: false,
        },
    )
    .map(|_| ())
}

/// Volume `disk` of point `seq`, restored to a file in `dir` and read back.
pub fn restore_seq(repo: &Repository, keys: &Keys, seq: u64, dir: &Path) -> Vec<u8> {
    let target = dir.join(format!("restored-{seq}"));
    let _ = fs::remove_file(&target);
    restore(
        &repo.tenant(DEFAULT_TENANT).unwrap(),
        keys,
        &RestoreOptions {
            group: "db".into(),
            point: PointSelector::Seq(seq),
            volume: "disk".into(),
            target: target.clone(),
            progress: None,
        },
    )
    .unwrap();
    fs::read(target).unwrap()
}

/// The deep scrub (with the key) of the default tenant.
pub fn deep_verify(repo: &Repository, keys: &Keys) -> VerifyReport {
    verify(
        repo,
        &VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys: Some(keys.clone()),
            progress: None,
            repair: false,
        },
    )
    .unwrap()
}

/// A repair that reports nothing.
pub fn no_progress(_: RepairProgress) {}
