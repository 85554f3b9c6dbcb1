//! A temp dir with a key file and an initialised local repository, and the
//! commands the tests run against it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::{Run, TmpfsMount, run, s};

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

    /// `lifeline backup` of `vols` into `group`, with `extra` arguments.
    pub fn backup(&self, group: &str, vols: &[(&str, &Path)], extra: &[&str]) -> Run {
        let specs: Vec<String> = vols.iter().map(|(n, p)| format!("{n}={}", s(p))).collect();
        let mut args = vec![
            "backup",
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
            "--state-dir",
            s(&self.state),
        ];
        for v in &specs {
            args.extend(["--volume", v.as_str()]);
        }
        args.extend(extra);
        run(&args)
    }

    /// A successful `backup --json`; returns its summary.
    #[track_caller]
    pub fn backup_json(&self, group: &str, vols: &[(&str, &Path)]) -> Value {
        let r = self.backup(group, vols, &["--json"]).ok();
        let v = r.json();
        for field in ["seq", "bytes_scanned", "bytes_new", "bytes_stored", "elapsed_secs"] {
            assert!(v.get(field).is_some(), "backup --json lacks `{field}`: {}", r.stdout);
        }
        v
    }

    /// `lifeline points --json` (no key).
    #[track_caller]
    pub fn points(&self) -> Vec<Value> {
        let r = run(&["points", "--repo", s(&self.repo), "--json"]).ok();
        r.json().as_array().cloned().expect("points --json is an array")
    }

    /// `lifeline restore`.
    pub fn restore(&self, group: &str, point: &str, volume: &str, to: &Path) -> Run {
        self.restore_with(group, point, volume, to, &[])
    }

    /// `lifeline restore` with `extra` arguments.
    pub fn restore_with(&self, group: &str, point: &str, volume: &str, to: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "restore",
            "--repo",
            s(&self.repo),
            "--key-file",
            s(&self.key),
            "--group",
            group,
            "--point",
            point,
            "--volume",
            volume,
            "--to",
            s(to),
        ];
        args.extend(extra);
        run(&args)
    }

    /// A successful `restore --json`; returns its summary.
    #[track_caller]
    pub fn restore_json(&self, group: &str, point: &str, volume: &str, to: &Path) -> Value {
        self.restore_with(group, point, volume, to, &["--json"]).ok().json()
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
