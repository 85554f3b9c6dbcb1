//! The one narrow interface through which a repository reaches the objects that
//! are its truth: a flat namespace of whole objects under slash-separated keys
//! (`config`, `tenants/acme/tenant`, `tenants/acme/points/db/00000000000000000007`).
//!
//! [`LocalDirStorage`] keeps each object as a file under a directory (the
//! embedded default). Packs of sealed objects are still written by
//! [`crate::LocalDirStore`] in the same directory, with their own batched
//! durability protocol (FORMAT.md, "Object store protocol").

use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// A store of immutable objects addressed by key.
///
/// Contract, for every backend:
/// - **Keys** are relative, `/`-separated, of the characters `[A-Za-z0-9._-]` per
///   component; a component never starts with `.` (names starting with `.` are
///   the backend's own temp files).
/// - [`put_if_absent`](Self::put_if_absent) creates the object whole or not at
///   all, **never overwrites**, and is **durable on return** (a crash after it
///   returned keeps the object; a crash before leaves either nothing or the whole
///   object). `Ok(false)`: the key existed, nothing was written.
/// - [`replace`](Self::replace) atomically replaces an object (or creates it):
///   readers see the old or the new bytes, never a mix. Durable on return. Used
///   only for the repository config at a format upgrade.
/// - [`get`](Self::get) / [`get_range`](Self::get_range) return exactly what was
///   stored, or `Ok(None)` when the object does not exist. A range past the end
///   is cut at the end.
/// - [`list`](Self::list) returns every object whose key starts with `prefix`
///   (with its size), in key order, including every object whose put returned
///   before the call.
/// - [`delete`](Self::delete) removes an object; deleting an absent object is not
///   an error. Durable on return.
///
/// Concurrency: calls may come from many threads. One process owns a repository
/// at a time (enforced above this trait), so no two writers race on one key.
pub trait ObjectStorage: Send + Sync {
    /// Where the storage is, for messages (`/srv/repo`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
    /// Where one object is, for messages.
    fn locate(&self, key: &str) -> String;
    /// Creates `key` unless it exists (see the trait docs).
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Creates or atomically replaces `key`.
    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// The whole object.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// `len` bytes from `offset`.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>>;
    /// Objects under `prefix`, with their sizes, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
    /// Removes `key` (idempotent).
    fn delete(&self, key: &str) -> Result<()>;
    /// [`put_if_absent`](Self::put_if_absent) of several objects (a network
    /// store sends them in parallel); all durable when it returns `Ok`.
    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Result<()> {
        for (k, b) in items {
            self.put_if_absent(k, b)?;
        }
        Ok(())
    }
    /// The last `len` bytes of an object (all of it when shorter), with the
    /// object's size.
    fn get_tail(&self, key: &str, len: u64) -> Result<Option<(Vec<u8>, u64)>> {
        let Some((size, _)) = self.stat(key)? else {
            return Ok(None);
        };
        let from = size.saturating_sub(len);
        Ok(self.get_range(key, from, size - from)?.map(|b| (b, size)))
    }
    /// Size and modification time of an object.
    fn stat(&self, key: &str) -> Result<Option<(u64, std::time::SystemTime)>>;
    /// Ranged reads worth running at once (1: the caller's thread is as fast).
    fn parallel_reads(&self) -> usize {
        1
    }
}

/// Checks a key against the contract's alphabet (keys are made by this crate
/// from checked names; this catches a programming error, not user input).
pub(crate) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|c| {
            !c.is_empty() && !c.starts_with('.') && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "object key",
            value: key.into(),
            reason: "keys are /-separated names of [A-Za-z0-9._-] not starting with `.`".into(),
        })
    }
}

/// Objects as files under a directory: `DIR/<key>`.
pub struct LocalDirStorage {
    root: PathBuf,
}

impl LocalDirStorage {
    /// Storage rooted at `root` (which must exist).
    pub fn new(root: &Path) -> Self {
        LocalDirStorage { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates the directories down to `dir`, making each new name durable.
    fn make_dirs(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = fsutil::parent_dir(dir);
        self.make_dirs(&parent)?;
        match fs::create_dir(dir) {
            Ok(()) => fsutil::fsync_dir(&parent),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("create {}", dir.display()), e)),
        }
    }

    /// Writes `bytes` to a temp file beside `path`, fsynced; returns its path.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf> {
        let dir = fsutil::parent_dir(path);
        self.make_dirs(&dir)?;
        let mut rnd = [0u8; 6];
        fsutil::random_bytes(&mut rnd);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(rnd)));
        let written = (|| {
            let mut f = fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
            f.write_all(bytes).ctx(|| format!("write {}", tmp.display()))?;
            f.sync_all().ctx(|| format!("fsync {}", tmp.display()))
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn walk(&self, dir: &Path, key: &str, prefix: &str, out: &mut Vec<(String, u64)>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
        };
        for e in entries {
            let e = e.ctx(|| format!("list {}", dir.display()))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let k = if key.is_empty() { name } else { format!("{key}/{name}") };
            // Prune directories that cannot hold a key under the prefix.
            if !(k.starts_with(prefix) || prefix.starts_with(&format!("{k}/"))) {
                continue;
            }
            let ft = e.file_type().ctx(|| format!("stat {}", e.path().display()))?;
            if ft.is_dir() {
                self.walk(&e.path(), &k, prefix, out)?;
            } else if ft.is_file() && k.starts_with(prefix) {
                let len = e.metadata().ctx(|| format!("stat {}", e.path().display()))?.len();
                out.push((k, len));
            }
        }
        Ok(())
    }
}

impl ObjectStorage for LocalDirStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        if path.exists() {
            return Ok(false);
        }
        let tmp = self.write_temp(&path, bytes)?;
        let renamed = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &path,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        match renamed {
            Ok(()) => {
                fsutil::fsync_dir(&fsutil::parent_dir(&path))?;
                Ok(true)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                if e == rustix::io::Errno::EXIST {
                    Ok(false)
                } else {
                    Err(Error::io(format!("store {}", path.display()), e.into()))
                }
            }
        }
    }

    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        self.make_dirs(&fsutil::parent_dir(&path))?;
        fsutil::write_atomic(&path, bytes)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        f.seek(SeekFrom::Start(offset))
            .ctx(|| format!("read {}", path.display()))?;
        let mut out = Vec::new();
        f.take(len)
            .read_to_end(&mut out)
            .ctx(|| format!("read {}", path.display()))?;
        Ok(Some(out))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        self.walk(&self.root, "", prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn stat(&self, key: &str) -> Result<Option<(u64, std::time::SystemTime)>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some((
                m.len(),
                m.modified().ctx(|| format!("stat {}", path.display()))?,
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => fsutil::fsync_dir(&fsutil::parent_dir(&path)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_storage_keeps_the_contract() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalDirStorage::new(d.path());
        assert!(s.put_if_absent("a/b/c", b"one").unwrap());
        assert!(!s.put_if_absent("a/b/c", b"two").unwrap(), "never overwrites");
        assert_eq!(s.get("a/b/c").unwrap().unwrap(), b"one");
        assert_eq!(s.get_range("a/b/c", 1, 10).unwrap().unwrap(), b"ne");
        assert_eq!(s.get("a/b/x").unwrap(), None);
        assert!(s.put_if_absent("a/bb", b"x").unwrap());
        assert!(s.put_if_absent("ab", b"yy").unwrap());
        assert_eq!(
            s.list("a/").unwrap(),
            vec![("a/b/c".to_string(), 3), ("a/bb".to_string(), 1)]
        );
        assert_eq!(s.list("a/b/").unwrap(), vec![("a/b/c".to_string(), 3)]);
        assert_eq!(s.list("").unwrap().len(), 3);
        s.replace("a/bb", b"new").unwrap();
        assert_eq!(s.get("a/bb").unwrap().unwrap(), b"new");
        s.delete("a/bb").unwrap();
        s.delete("a/bb").unwrap();
        assert_eq!(s.get("a/bb").unwrap(), None);
        // Temp files never show in listings; bad keys are refused.
        fs::write(d.path().join("a/.c.tmp-1"), b"t").unwrap();
        assert_eq!(s.list("a/").unwrap().len(), 1);
        for bad in ["", "/a", "a//b", "../x", "a/.x", "a b"] {
            assert!(s.put_if_absent(bad, b"x").is_err(), "{bad}");
        }
    }
}
