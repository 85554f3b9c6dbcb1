//! A temp dir with a key file and an initialised local repository, and the
//! commands the tests run against it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::{
    Backs, KIB, MIB, PackObject, Run, TmpfsMount, durable_packs, flip_middle_byte, largest_chunk, read_pack, run, s,
    with_volumes, write_random_at,
};

/// A temp dir with a key file and an initialised repository.
pub struct Sandbox {
    /// Dropped (unmounted) before `dir` is removed: fields drop in order.
    pub mount: Option<TmpfsMount>,
    pub dir: TempDir,
    pub key: PathBuf,
    pub repo: PathBuf,
    pub state: PathBuf,
}

impl Sandbox {
    /// Writes a key and initialises a repository, asserting what both print.
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Self::with_repo(dir, repo)
    }

    /// Like [`new`](Self::new) with the repository at `repo`.
    pub fn with_repo(dir: TempDir, repo: PathBuf) -> Sandbox {
        let key = dir.path().join("tenant.key");
        let state = dir.path().join("state");
        run(&["key", "new", "--out", s(&key)])
            .ok()
            .stdout_has(&["wrote key", s(&key), "mode 0600"]);
        run(&["init", "--repo", s(&repo), "--key-file", s(&key)])
            .ok()
            .stdout_has(&["initialised repository", s(&repo)]);
        Sandbox {
            mount: None,
            dir,
            key,
            repo,
            state,
        }
    }

    /// A sandbox whose repository lives on a tmpfs of `size` (root only).
    pub fn on_tmpfs(size: &str) -> Result<Sandbox, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = TmpfsMount::mount(&dir.path().join("small-fs"), size)?;
        let repo = mount.dir.join("repo");
        let mut sb = Self::with_repo(dir, repo);
        sb.mount = Some(mount);
        Ok(sb)
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `COMMAND --repo R --key-file K --group GROUP` of this sandbox, then `rest`.
    pub fn args<'a>(&'a self, command: &'a str, group: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            command,
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
        ];
        args.extend_from_slice(rest);
        args
    }

    /// `lifeline points --json` (no key).
    #[track_caller]
    pub fn points(&self) -> Vec<Value> {
        let r = run(&["points", "--repo", s(&self.repo), "--json"]).ok();
        r.json().as_array().cloned().expect("points --json is an array")
    }

    /// `lifeline prune --repo R --group GROUP` and `rest`.
    pub fn prune(&self, group: &str, rest: &[&str]) -> Run {
        let mut args = vec!["prune", "--repo", s(&self.repo), "--group", group];
        args.extend_from_slice(rest);
        run(&args)
    }

    /// `lifeline restore`.
    pub fn restore(&self, group: &str, point: &str, volume: &str, to: &Path) -> Run {
        self.restore_with(group, point, volume, to, &[])
    }

    /// `lifeline restore` with `extra` arguments.
    pub fn restore_with(&self, group: &str, point: &str, volume: &str, to: &Path, extra: &[&str]) -> Run {
        let mut args = self.args("restore", group, &["--point", point, "--volume", volume, "--to", s(to)]);
        args.extend(extra);
        run(&args)
    }

    /// A successful `restore --json`; returns its summary.
    #[track_caller]
    pub fn restore_json(&self, group: &str, point: &str, volume: &str, to: &Path) -> Value {
        self.restore_with(group, point, volume, to, &["--json"]).ok().json()
    }

    /// A point 1 of group `g` whose volume `v` (12 MiB: zeros, one 4 KiB
    /// random chunk at 5 MiB, 256 KiB of 0x5a at 9 MiB) has one damaged chunk:
    /// the largest, a bit flipped in its middle. Returns that chunk.
    pub fn point_with_a_damaged_chunk(&self) -> PackObject {
        let v = self.path("v.img");
        let f = File::create(&v).unwrap();
        f.set_len(12 * MIB).unwrap();
        // Segment 1: one 4 KiB chunk of random bytes (the largest stored object).
        write_random_at(&f, 5 * MIB, 4096, 30);
        // Segment 2: constant bytes, stored as one tiny deduplicated chunk.
        f.write_all_at(&vec![0x5au8; 256 * KIB as usize], 9 * MIB).unwrap();
        drop(f);
        self.backup_json("g", &[("v", &v)]);
        let objs: Vec<PackObject> = durable_packs(&self.repo).iter().flat_map(|p| read_pack(p)).collect();
        let o = largest_chunk(&objs).clone();
        flip_middle_byte(&o, 0x01);
        o
    }

    /// `lifeline verify`, deep with the key.
    pub fn verify(&self, deep: bool) -> Run {
        if deep {
            run(&["verify", "--repo", s(&self.repo), "--key-file", s(&self.key)])
        } else {
            run(&["verify", "--repo", s(&self.repo)])
        }
    }
}

impl Backs for Sandbox {
    const SUMMARY_FIELDS: &'static [&'static str] =
        &["seq", "bytes_scanned", "bytes_new", "bytes_stored", "elapsed_secs"];

    /// `lifeline backup` of `vols` into `group` with this sandbox's state dir,
    /// then `extra`.
    fn backup_args(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Vec<String> {
        let args = self.args("backup", group, &["--state-dir", s(&self.state)]);
        with_volumes(args.into_iter().map(String::from).collect(), vols, extra)
    }
}
