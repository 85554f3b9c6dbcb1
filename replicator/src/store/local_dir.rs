//! The local-directory backend.
//!
//! ```text
//! DIR/<ab>/<64 hex id>     objects, sharded by the first byte of the id
//! DIR/tmp/<ab>/<id>.<rnd>  objects written but not yet durable (sharded too, so
//!                          parallel writers do not contend on one directory)
//! ```
//! A put writes the object to `tmp/` without fsync. [`LocalDirStore::sync`] then
//! issues one `syncfs` (one flush for the whole batch instead of one fsync per
//! object), renames each file into its shard with `RENAME_NOREPLACE` (an existing
//! object is never overwritten) and fsyncs the shard directories. An object is
//! therefore visible under its id only once its bytes are durable; a crash leaves
//! at worst files in `tmp/`, which [`LocalDirStore::open`] removes. Puts are synced
//! in batches of [`SYNC_BATCH_BYTES`] so a long backup persists its progress and an
//! interrupted one resumes without resending.
//!
//! Within a batch, objects are published in the order of their kind byte (chunks,
//! then segment nodes, then index nodes), with the shard directories fsynced
//! between kinds. Since writers put an object only after what it references, this
//! keeps the invariant that **an object visible under its id has every object it
//! references visible too**, even across a crash in the middle of a sync; a later
//! backup can then trust any node it finds instead of re-walking it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::object_id::ObjectId;
use crate::store::{ChunkStore, StoredObject};

/// Pending bytes that trigger a sync during a long write.
pub const SYNC_BATCH_BYTES: u64 = 256 << 20;

#[derive(Default)]
struct Pending {
    /// id → (kind byte of the sealed object, temp path)
    files: HashMap<ObjectId, (u8, PathBuf)>,
    bytes: u64,
    deleted_shards: HashSet<u8>,
}

/// Objects as files in a local directory.
pub struct LocalDirStore {
    dir: PathBuf,
    pending: Mutex<Pending>,
    /// Serialises syncs so renames never race.
    sync_lock: Mutex<()>,
}

impl LocalDirStore {
    /// Creates the directory layout (shards and `tmp/`), durably.
    pub fn create(dir: &Path) -> Result<()> {
        for b in 0..=255u8 {
            for shard in [dir.join(hex::encode([b])), dir.join("tmp").join(hex::encode([b]))] {
                fs::create_dir_all(&shard).ctx(|| format!("create {}", shard.display()))?;
            }
        }
        fsutil::fsync_dir(dir)?;
        fsutil::fsync_dir(&fsutil::parent_dir(dir))
    }

    /// Opens a store created by [`create`](Self::create) and removes stale temp
    /// files left by a crash. Only the owner of the repository may call it.
    pub fn open(dir: &Path) -> Result<Self> {
        for b in 0..=255u8 {
            let tmp = dir.join("tmp").join(hex::encode([b]));
            let entries =
                fs::read_dir(&tmp).ctx(|| format!("open object store {} (is it a repository?)", dir.display()))?;
            for e in entries {
                let e = e.ctx(|| format!("list {}", tmp.display()))?;
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(LocalDirStore {
            dir: dir.to_path_buf(),
            pending: Mutex::new(Pending::default()),
            sync_lock: Mutex::new(()),
        })
    }

    fn path_of(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    fn flush(&self, batch: Pending) -> Result<()> {
        if batch.files.is_empty() && batch.deleted_shards.is_empty() {
            return Ok(());
        }
        let dirfd = fs::File::open(&self.dir).ctx(|| format!("open {}", self.dir.display()))?;
        rustix::fs::syncfs(&dirfd).ctx(|| format!("syncfs {}", self.dir.display()))?;
        let mut shards: HashSet<u8> = batch.deleted_shards;
        let mut files: Vec<(u8, ObjectId, PathBuf)> =
            batch.files.into_iter().map(|(id, (kind, tmp))| (kind, id, tmp)).collect();
        files.sort_unstable_by_key(|f| f.0);
        for (i, (kind, id, tmp)) in files.iter().enumerate() {
            let dst = self.path_of(id);
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                tmp,
                rustix::fs::CWD,
                &dst,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    shards.insert(id.0[0]);
                }
                Err(rustix::io::Errno::EXIST) => {
                    let _ = fs::remove_file(tmp);
                }
                Err(e) => {
                    return Err(Error::io(format!("store object {} at {}", id, dst.display()), e.into()));
                }
            }
            // Last of its kind: make these names durable before publishing referrers.
            if files.get(i + 1).is_none_or(|next| next.0 != *kind) {
                for s in shards.drain() {
                    fsutil::fsync_dir(&self.dir.join(hex::encode([s])))?;
                }
            }
        }
        for s in shards {
            fsutil::fsync_dir(&self.dir.join(hex::encode([s])))?;
        }
        Ok(())
    }

    fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("pending lock"))
    }
}

impl ChunkStore for LocalDirStore {
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> Result<bool> {
        if self.pending.lock().expect("pending lock").files.contains_key(id) || self.path_of(id).exists() {
            return Ok(false);
        }
        let mut rnd = [0u8; 6];
        fsutil::random_bytes(&mut rnd);
        let hex_id = id.to_hex();
        let tmp = self
            .dir
            .join("tmp")
            .join(&hex_id[..2])
            .join(format!("{hex_id}.{}", hex::encode(rnd)));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(sealed)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("write object {} to {}", id, tmp.display()), e));
        }
        let batch = {
            let mut p = self.pending.lock().expect("pending lock");
            if p.files.contains_key(id) {
                // Another thread stored the same content meanwhile.
                drop(p);
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
            p.files.insert(*id, (sealed.get(5).copied().unwrap_or(0), tmp));
            p.bytes += sealed.len() as u64;
            (p.bytes >= SYNC_BATCH_BYTES).then(|| std::mem::take(&mut *p))
        };
        if let Some(batch) = batch {
            let _g = self.sync_lock.lock().expect("sync lock");
            self.flush(batch)?;
        }
        Ok(true)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.pending.lock().expect("pending lock").files.contains_key(id) || self.path_of(id).exists())
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let pending = self.pending.lock().expect("pending lock").files.get(id).map(|f| f.1.clone());
                match pending {
                    Some(tmp) => fs::read(&tmp).ctx(|| format!("read object {} at {}", id, tmp.display())),
                    None => Err(Error::ObjectMissing {
                        id: id.to_hex(),
                        location: self.dir.display().to_string(),
                    }),
                }
            }
            Err(e) => Err(Error::io(format!("read object {} at {}", id, path.display()), e)),
        }
    }

    fn sync(&self) -> Result<()> {
        let _g = self.sync_lock.lock().expect("sync lock");
        let batch = self.take_pending();
        self.flush(batch)
    }

    fn abandon(&self) {
        for (_, (_, tmp)) in self.take_pending().files {
            let _ = fs::remove_file(tmp);
        }
    }

    fn list(&self, f: &mut dyn FnMut(StoredObject) -> Result<()>) -> Result<()> {
        for b in 0..=255u8 {
            let shard = self.dir.join(hex::encode([b]));
            let entries = match fs::read_dir(&shard) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("list {}", shard.display()), e)),
            };
            for e in entries {
                let e = e.ctx(|| format!("list {}", shard.display()))?;
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(|n| ObjectId::from_hex(n).ok()) else {
                    continue;
                };
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                f(StoredObject { id, len })?;
            }
        }
        Ok(())
    }

    fn delete(&self, id: &ObjectId) -> Result<()> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.pending
                    .lock()
                    .expect("pending lock")
                    .deleted_shards
                    .insert(id.0[0]);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete object {} at {}", id, path.display()), e)),
        }
    }

    fn location(&self, id: &ObjectId) -> String {
        self.path_of(id).display().to_string()
    }
}

impl Drop for LocalDirStore {
    fn drop(&mut self) {
        // Unsynced puts were never promised; remove their temp files.
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ObjectId {
        ObjectId([b; 32])
    }

    #[test]
    fn put_sync_get_never_overwrite() {
        let d = tempfile::tempdir().unwrap();
        LocalDirStore::create(d.path()).unwrap();
        let s = LocalDirStore::open(d.path()).unwrap();
        assert!(s.put(&id(1), b"one").unwrap());
        assert!(!s.put(&id(1), b"other").unwrap());
        assert!(s.contains(&id(1)).unwrap());
        assert_eq!(s.get(&id(1)).unwrap(), b"one");
        s.sync().unwrap();
        assert!(!s.put(&id(1), b"other").unwrap());
        s.sync().unwrap();
        assert_eq!(s.get(&id(1)).unwrap(), b"one");
        let mut n = 0;
        s.list(&mut |o| {
            assert_eq!(o, StoredObject { id: id(1), len: 3 });
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        s.delete(&id(1)).unwrap();
        s.sync().unwrap();
        assert!(matches!(s.get(&id(1)), Err(Error::ObjectMissing { .. })));
    }

    #[test]
    fn unsynced_puts_vanish_on_reopen() {
        let d = tempfile::tempdir().unwrap();
        LocalDirStore::create(d.path()).unwrap();
        let s = LocalDirStore::open(d.path()).unwrap();
        s.put(&id(2), b"two").unwrap();
        std::mem::forget(s); // as if the process died
        assert_eq!(fs::read_dir(d.path().join("tmp/02")).unwrap().count(), 1);
        let s = LocalDirStore::open(d.path()).unwrap();
        assert_eq!(fs::read_dir(d.path().join("tmp/02")).unwrap().count(), 0);
        assert!(!s.contains(&id(2)).unwrap());
    }
}
