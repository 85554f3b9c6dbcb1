//! The local-directory backend: sealed objects appended to pack files, located
//! through the catalog's object index.
//!
//! ```text
//! DIR/packs/<ab>/<pack id>     durable packs, sharded by the first byte of the id
//!                              (shard directories are created on first use)
//! DIR/packs/tmp/<pack id>.tmp  packs being written (removed when the store opens)
//! ```
//! A put appends the sealed object to the open pack (no fsync) and remembers it as
//! pending. [`LocalDirStore::sync`] closes the open pack (footer), issues one
//! `syncfs` for the whole batch, renames each pack into its shard with
//! `RENAME_NOREPLACE`, fsyncs the shard directories, and only then publishes the
//! pack's entries in the object index (one atomic, flushed sled batch per pack, in
//! the order the packs were written). An object is therefore visible only once
//! its bytes are durable, and since writers put an object after everything it
//! references, **a visible object has every object it references visible too**.
//! A crash leaves at worst temp packs (removed at open) or a durable pack not yet
//! published, which [`LocalDirStore::open`] re-indexes from its footer, so an
//! interrupted backup resumes without resending. Finished packs are synced in
//! batches of [`SYNC_BATCH_BYTES`] during long writes, on a thread of their
//! own while the writes go on.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::object_id::ObjectId;
use crate::store::ObjectIndex;
use crate::store::pack::{self, ObjectLocation, PACK_HEADER_LEN, PACK_TARGET_BYTES, PackId};
use crate::store::{ChunkStore, ObjectStorage, StoredObject};

mod collect;
mod compact;
mod objects;
mod store_impl;

pub use collect::{CollectReport, SweepPlan};
use objects::{SEGMENT_BYTES, Segments};
pub(crate) use objects::{pack_key, pack_objects, read_object_footer};

/// Bytes of closed packs that trigger a sync during a long write.
pub const SYNC_BATCH_BYTES: u64 = 256 << 20;
/// A published pack below this size is small: compaction merges it.
pub const SMALL_PACK_BYTES: u64 = 12 << 20;
/// Small packs that start a compaction at the next sync: after N cycles too
/// small to fill a pack, at most `COMPACT_AT - 1` small packs remain beside
/// packs of 12-16 MiB.
pub const COMPACT_AT: usize = 8;
/// Open pack files kept for reading.
const READER_CACHE: usize = 256;
/// Pack footers [`FooterCache`] keeps (a few MiB at most).
const FOOTER_CACHE: usize = 16;

/// The objects of the packs read last, from their footers: a restore reads
/// chunks in about the order they were written, so a run of reads from one
/// pack costs one index lookup (and one footer read) instead of one lookup
/// per object. Only durable, published packs are here; a pack leaves when
/// its file is deleted, and every pack leaves when objects are removed from
/// the index. A footer read after a removal may still list an object removed
/// from a pack that stays (dead, or damaged and dropped by `verify --repair`
/// and since stored anew elsewhere): `get_many` may then return that copy,
/// and its callers (restore, deep verify) authenticate every object and read
/// one that fails again with `get`, through the index.
#[derive(Default)]
struct FooterCache {
    /// Most recently used last.
    packs: Vec<(PackId, Arc<HashMap<ObjectId, ObjectLocation>>)>,
}

impl FooterCache {
    fn find(&mut self, id: &ObjectId) -> Option<ObjectLocation> {
        let i = self.packs.iter().rposition(|(_, m)| m.contains_key(id))?;
        let loc = self.packs[i].1[id];
        if i + 1 != self.packs.len() {
            let hit = self.packs.remove(i);
            self.packs.push(hit);
        }
        Some(loc)
    }

    fn has(&self, pack: &PackId) -> bool {
        self.packs.iter().any(|(p, _)| p == pack)
    }

    fn insert(&mut self, pack: PackId, objects: HashMap<ObjectId, ObjectLocation>) {
        if self.has(&pack) {
            return;
        }
        if self.packs.len() >= FOOTER_CACHE {
            self.packs.remove(0);
        }
        self.packs.push((pack, Arc::new(objects)));
    }

    fn forget(&mut self, pack: &PackId) {
        self.packs.retain(|(p, _)| p != pack);
    }
}

/// Where a store's packs live.
enum Backend {
    /// Pack files under `DIR/packs`: streamed to temp files, made durable with
    /// one `syncfs` per batch, read with `pread` through cached handles.
    Dir,
    /// Whole objects `PREFIX/packs/<ab>/<pack id>` of an [`ObjectStorage`]
    /// (S3): each pack is built in memory and stored with one put (several in
    /// parallel), read with ranged gets through [`Segments`]. The store's
    /// directory is only a scratch directory then.
    Objects {
        storage: Arc<dyn ObjectStorage>,
        prefix: String,
        segments: Segments,
    },
}

/// The bytes of a pack being written: a temp file, or memory (object storage).
#[derive(Clone)]
enum PackBody {
    File(Arc<File>),
    Mem(Arc<RwLock<Vec<u8>>>),
}

impl PackBody {
    /// Appends `bytes` at `offset` (the current end).
    fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        match self {
            PackBody::File(f) => f.write_all_at(bytes, offset),
            PackBody::Mem(m) => {
                let mut m = m.write().expect("pack body");
                m.truncate(offset as usize);
                m.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self {
            PackBody::File(f) => f.read_exact_at(buf, offset),
            PackBody::Mem(m) => {
                let m = m.read().expect("pack body");
                let end = offset as usize + buf.len();
                if end > m.len() {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                buf.copy_from_slice(&m[offset as usize..end]);
                Ok(())
            }
        }
    }

    fn sync_all(&self) -> std::io::Result<()> {
        match self {
            PackBody::File(f) => f.sync_all(),
            PackBody::Mem(_) => Ok(()),
        }
    }
}

struct OpenPack {
    id: PackId,
    file: PackBody,
    /// The temp file (a directory store), or the pack's URL (object storage:
    /// for messages only).
    tmp: PathBuf,
    len: u64,
    entries: Vec<(ObjectId, ObjectLocation)>,
}

impl OpenPack {
    /// Removes the temp file of a pack that will not be stored.
    fn discard(&self) {
        if let PackBody::File(_) = self.file {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[derive(Default)]
struct WriteState {
    current: Option<OpenPack>,
    closed: Vec<OpenPack>,
    closed_bytes: u64,
    /// Objects put but not yet published, with the pack body that holds them.
    pending: HashMap<ObjectId, (PackBody, ObjectLocation)>,
    deleted: Vec<ObjectId>,
}

/// Objects in pack files in a local directory.
///
/// Finished packs are made durable in the background during a long write
/// (every [`SYNC_BATCH_BYTES`]), so a writer never waits for the disk in the
/// middle of an upload; [`sync`](ChunkStore::sync) waits for that background
/// work and reports its failure, as does the next put.
pub struct LocalDirStore {
    packs: Arc<Packs>,
    /// The background sync of finished packs, while one runs.
    background: Mutex<Option<std::thread::JoinHandle<Result<()>>>>,
}

impl std::ops::Deref for LocalDirStore {
    type Target = Packs;
    fn deref(&self) -> &Packs {
        &self.packs
    }
}

/// The pack files of a [`LocalDirStore`], their index and write state: what
/// the store and its background sync share.
pub struct Packs {
    dir: PathBuf,
    backend: Backend,
    index: Arc<dyn ObjectIndex>,
    state: Mutex<WriteState>,
    /// Serialises syncs so packs are published in order.
    sync_lock: Mutex<()>,
    readers: Mutex<HashMap<PackId, Arc<File>>>,
    /// Footers of the packs [`get_many`](ChunkStore::get_many) read last.
    footers: Mutex<FooterCache>,
    /// Times a failed sync dropped objects that were put but not durable.
    losses: std::sync::atomic::AtomicU64,
    /// Published packs smaller than [`SMALL_PACK_BYTES`], with their bytes:
    /// what compaction merges.
    small: Mutex<Vec<(PackId, u64)>>,
    /// Bytes of finished packs that start a background sync.
    sync_batch: u64,
}

impl LocalDirStore {
    /// Creates the directory layout, durably.
    pub fn create(dir: &Path) -> Result<()> {
        let packs = dir.join("packs");
        fs::create_dir_all(packs.join("tmp")).ctx(|| format!("create {}", packs.display()))?;
        fsutil::fsync_dir(&packs)?;
        fsutil::fsync_dir(dir)?;
        fsutil::fsync_dir(&fsutil::parent_dir(dir))
    }

    /// Opens a store: removes temp packs left by a crash and publishes durable packs
    /// whose index entries were lost. Only the owner of the repository may open it,
    /// once per process.
    pub fn open(dir: &Path, index: Arc<dyn ObjectIndex>) -> Result<Self> {
        let packs = dir.join("packs");
        let tmp = packs.join("tmp");
        for e in fs::read_dir(&tmp).ctx(|| format!("open object store {} (is it a repository?)", dir.display()))? {
            let e = e.ctx(|| format!("list {}", tmp.display()))?;
            let _ = fs::remove_file(e.path());
        }
        Self::assemble(dir, Backend::Dir, index)
    }

    /// Opens the store of packs under `prefix` in `storage` (an S3 bucket),
    /// with `scratch` as its local scratch directory. Unlike a directory, the
    /// storage is not listed at open (a bucket is listed only by `repair` and
    /// garbage collection): a pack a crash left stored but unpublished holds
    /// objects the next backup sends again, and `lifeline repair` indexes it.
    pub fn open_objects(
        storage: Arc<dyn ObjectStorage>,
        prefix: &str,
        scratch: &Path,
        index: Arc<dyn ObjectIndex>,
    ) -> Result<Self> {
        fs::create_dir_all(scratch).ctx(|| format!("create {}", scratch.display()))?;
        let backend = Backend::Objects {
            storage,
            prefix: prefix.trim_end_matches('/').to_string(),
            segments: Segments::default(),
        };
        Self::assemble(scratch, backend, index)
    }

    fn assemble(dir: &Path, backend: Backend, index: Arc<dyn ObjectIndex>) -> Result<Self> {
        let store = LocalDirStore {
            packs: Arc::new(Packs {
                dir: dir.to_path_buf(),
                backend,
                index,
                state: Mutex::new(WriteState::default()),
                sync_lock: Mutex::new(()),
                readers: Mutex::new(HashMap::new()),
                footers: Mutex::new(FooterCache::default()),
                losses: Default::default(),
                small: Mutex::new(Vec::new()),
                sync_batch: SYNC_BATCH_BYTES,
            }),
            background: Mutex::new(None),
        };
        store.recover()?;
        store.delete_doomed_packs()?;
        *store.small.lock().expect("small packs") = store
            .index
            .packs()?
            .into_iter()
            .filter(|(_, bytes)| *bytes < SMALL_PACK_BYTES)
            .collect();
        Ok(store)
    }

    /// Starts making the finished packs durable on a thread of its own,
    /// unless that already runs; reports the failure of an earlier one.
    fn sync_in_background(&self) -> Result<()> {
        let mut bg = self.background.lock().expect("background sync");
        if bg.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if let Some(h) = bg.take() {
            h.join().expect("background sync panicked")?;
        }
        let packs = self.packs.clone();
        *bg = Some(
            std::thread::Builder::new()
                .name("pack-sync".into())
                .spawn(move || packs.flush(false))
                .map_err(|e| Error::io("start the background sync of packs", e))?,
        );
        Ok(())
    }

    /// Waits for the background sync, if one runs, and returns its result.
    fn wait_background(&self) -> Result<()> {
        let h = self.background.lock().expect("background sync").take();
        match h {
            Some(h) => h.join().expect("background sync panicked"),
            None => Ok(()),
        }
    }
}

impl Packs {
    fn recover(&self) -> Result<()> {
        if !matches!(self.backend, Backend::Dir) {
            return Ok(());
        }
        for b in 0..=255u8 {
            let shard = self.dir.join("packs").join(hex::encode([b]));
            if !shard.exists() {
                continue;
            }
            for e in fs::read_dir(&shard).ctx(|| format!("list {}", shard.display()))? {
                let e = e.ctx(|| format!("list {}", shard.display()))?;
                let Some(id) = e.file_name().to_str().and_then(PackId::from_hex) else {
                    continue;
                };
                if self.index.has_pack(&id)? {
                    continue;
                }
                match read_footer(&e.path(), id) {
                    Ok(entries) => {
                        tracing::info!(pack = %id.to_hex(), objects = entries.len(), "publishing a durable pack left unpublished by a crash");
                        self.index.publish(id, &entries)?;
                    }
                    Err(reason) => {
                        tracing::warn!(pack = %e.path().display(), %reason, "unpublished pack is unreadable; leaving it out of the index");
                    }
                }
            }
        }
        Ok(())
    }

    fn pack_path(&self, id: &PackId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join("packs").join(&hex[..2]).join(hex)
    }

    /// Where a pack is, for messages: its path or its URL.
    fn pack_location(&self, id: &PackId) -> String {
        match &self.backend {
            Backend::Dir => self.pack_path(id).display().to_string(),
            Backend::Objects { storage, prefix, .. } => storage.locate(&pack_key(prefix, id)),
        }
    }

    /// The checked footer of a durable pack, or why it cannot be read.
    fn footer(&self, id: &PackId) -> Result<Vec<(ObjectId, ObjectLocation)>, String> {
        match &self.backend {
            Backend::Dir => read_footer(&self.pack_path(id), *id),
            Backend::Objects { storage, prefix, .. } => {
                read_object_footer(storage.as_ref(), &pack_key(prefix, id), *id)
            }
        }
    }

    /// Size and modification time of a durable pack (`None`: it is gone).
    fn pack_stat(&self, id: &PackId) -> Result<Option<(u64, std::time::SystemTime)>> {
        match &self.backend {
            Backend::Dir => match fs::metadata(self.pack_path(id)) {
                Ok(m) => Ok(Some((
                    m.len(),
                    m.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH),
                ))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(format!("stat pack {}", self.pack_path(id).display()), e)),
            },
            Backend::Objects { storage, prefix, .. } => storage.stat(&pack_key(prefix, id)),
        }
    }

    /// Reads the object at `loc` from its durable pack; `None` when the pack
    /// is gone.
    fn read_published(&self, id: &ObjectId, loc: &ObjectLocation) -> Result<Option<Vec<u8>>> {
        let Backend::Objects {
            storage,
            prefix,
            segments,
        } = &self.backend
        else {
            let Some(file) = self.reader(&loc.pack)? else {
                return Ok(None);
            };
            return self
                .read_at(id, &PackBody::File(file), loc, &self.pack_location(&loc.pack))
                .map(Some);
        };
        let key = pack_key(prefix, &loc.pack);
        let end = loc
            .offset
            .checked_add(loc.len as u64)
            .ok_or_else(|| Error::ObjectDamaged {
                id: id.to_hex(),
                location: self.describe(loc),
                reason: "its location ends past 2^64 (a damaged index entry)".into(),
            })?;
        let start = loc.offset;
        let mut out = Vec::with_capacity(loc.len as usize);
        let mut seg = start / SEGMENT_BYTES;
        while seg * SEGMENT_BYTES < end {
            let Some(bytes) = segments.get_or_fetch((loc.pack, seg), || {
                storage.get_range(&key, seg * SEGMENT_BYTES, SEGMENT_BYTES)
            })?
            else {
                return Ok(None);
            };
            let seg_start = seg * SEGMENT_BYTES;
            let from = (start.max(seg_start) - seg_start) as usize;
            let to = ((end.min(seg_start + SEGMENT_BYTES)) - seg_start) as usize;
            if to > bytes.len() {
                return Err(Error::ObjectDamaged {
                    id: id.to_hex(),
                    location: self.describe(loc),
                    reason: "its pack object is truncated".into(),
                });
            }
            out.extend_from_slice(&bytes[from..to]);
            seg += 1;
        }
        Ok(Some(out))
    }

    fn reader(&self, id: &PackId) -> Result<Option<Arc<File>>> {
        if let Some(f) = self.readers.lock().expect("readers").get(id) {
            return Ok(Some(f.clone()));
        }
        let path = self.pack_path(id);
        let f = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("open pack {}", path.display()), e)),
        };
        let mut r = self.readers.lock().expect("readers");
        if r.len() >= READER_CACHE {
            r.clear();
        }
        r.insert(*id, f.clone());
        Ok(Some(f))
    }

    fn close_current(state: &mut WriteState) -> Result<()> {
        let Some(mut p) = state.current.take() else {
            return Ok(());
        };
        let footer = pack::footer(&p.entries);
        if let Err(e) = p.file.write_at(&footer, p.len) {
            // The pack cannot be finished: forget it whole, so nothing claims
            // its objects are present.
            for (id, _) in &p.entries {
                state.pending.remove(id);
            }
            p.discard();
            return Err(Error::io(format!("write pack footer {}", p.tmp.display()), e));
        }
        p.len += footer.len() as u64;
        state.closed_bytes += p.len;
        state.closed.push(p);
        Ok(())
    }

    fn new_pack(&self) -> Result<OpenPack> {
        let id = PackId::random();
        if let Backend::Objects { storage, prefix, .. } = &self.backend {
            let body = PackBody::Mem(Arc::new(RwLock::new(Vec::with_capacity(
                (PACK_TARGET_BYTES + (1 << 20)) as usize,
            ))));
            body.write_at(&pack::header(), 0)
                .map_err(|e| Error::io("start a pack", e))?;
            return Ok(OpenPack {
                id,
                file: body,
                tmp: PathBuf::from(storage.locate(&pack_key(prefix, &id))),
                len: PACK_HEADER_LEN,
                entries: Vec::new(),
            });
        }
        let tmp = self.dir.join("packs/tmp").join(format!("{}.tmp", id.to_hex()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx(|| format!("create pack {}", tmp.display()))?;
        file.write_all_at(&pack::header(), 0)
            .ctx(|| format!("write pack {}", tmp.display()))?;
        Ok(OpenPack {
            id,
            file: PackBody::File(Arc::new(file)),
            tmp,
            len: PACK_HEADER_LEN,
            entries: Vec::new(),
        })
    }

    /// Publishes every closed pack (and the open one when `all`).
    ///
    /// A failure drops every object not yet durable, not only those of the
    /// packs that failed: a later pack may hold a node whose chunks were in
    /// them, and must never become visible without them. Writers learn of it
    /// from the error or from [`losses`](ChunkStore::losses).
    fn flush(&self, all: bool) -> Result<()> {
        let _g = self.sync_lock.lock().expect("sync lock");
        let r = self.flush_locked(all);
        if r.is_err() {
            self.drop_unsynced();
            self.losses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        } else if all {
            // What was put is durable already; a compaction that fails leaves
            // every object where it was (or its old packs marked to be
            // deleted at the next open) and is tried again at the next sync.
            if let Err(e) = self.compact_small_packs() {
                tracing::warn!(store = %self.dir.display(), error = %e, "compaction of small packs failed; retried at the next sync");
            }
        }
        r
    }

    /// Drops the open and the finished packs not yet synced, with their
    /// objects; true when there were any.
    fn drop_unsynced(&self) -> bool {
        let mut st = self.state.lock().expect("state");
        let mut packs = std::mem::take(&mut st.closed);
        packs.extend(st.current.take());
        let dropped = !packs.is_empty();
        for p in packs {
            for (id, _) in &p.entries {
                st.pending.remove(id);
            }
            p.discard();
        }
        st.closed_bytes = 0;
        dropped
    }

    fn flush_locked(&self, all: bool) -> Result<()> {
        let (packs, deleted) = {
            let mut st = self.state.lock().expect("state");
            if all {
                Self::close_current(&mut st)?;
            }
            st.closed_bytes = 0;
            (std::mem::take(&mut st.closed), std::mem::take(&mut st.deleted))
        };
        let result = self.publish(&packs);
        let mut st = self.state.lock().expect("state");
        for p in &packs {
            for (id, _) in &p.entries {
                st.pending.remove(id);
            }
        }
        drop(st);
        if let Err(e) = result {
            for p in &packs {
                p.discard();
            }
            return Err(e);
        }
        if !deleted.is_empty() {
            self.index.remove(&deleted)?;
            self.footers.lock().expect("footers").packs.clear();
        }
        Ok(())
    }

    fn publish(&self, packs: &[OpenPack]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        self.put_in_place(packs)?;
        for p in packs {
            self.index.publish(p.id, &p.entries)?;
            if let PackBody::File(f) = &p.file {
                self.readers.lock().expect("readers").insert(p.id, f.clone());
            }
            if p.len < SMALL_PACK_BYTES {
                self.small.lock().expect("small packs").push((p.id, p.len));
            }
        }
        Ok(())
    }

    /// Makes finished packs durable and moves them into their shard
    /// directories (never over an existing file); the index does not know
    /// them yet.
    fn put_in_place(&self, packs: &[OpenPack]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        if let Backend::Objects { storage, prefix, .. } = &self.backend {
            let keys: Vec<String> = packs.iter().map(|p| pack_key(prefix, &p.id)).collect();
            let bodies: Vec<_> = packs
                .iter()
                .map(|p| match &p.file {
                    PackBody::Mem(m) => m.read().expect("pack body"),
                    PackBody::File(_) => unreachable!("object-storage packs are built in memory"),
                })
                .collect();
            let items: Vec<(&str, &[u8])> = keys
                .iter()
                .zip(&bodies)
                .map(|(k, b)| (k.as_str(), b.as_slice()))
                .collect();
            return storage.put_many_if_absent(&items);
        }
        let root = fs::File::open(&self.dir).ctx(|| format!("open {}", self.dir.display()))?;
        rustix::fs::syncfs(&root).ctx(|| format!("syncfs {}", self.dir.display()))?;
        let mut shards = std::collections::BTreeSet::new();
        for p in packs {
            let dst = self.pack_path(&p.id);
            let shard = fsutil::parent_dir(&dst);
            if !shard.exists() {
                // Shard directories are made on first use; the new name must be durable too.
                fs::create_dir_all(&shard).ctx(|| format!("create {}", shard.display()))?;
                fsutil::fsync_dir(&self.dir.join("packs"))?;
            }
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &p.tmp,
                rustix::fs::CWD,
                &dst,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(|e| Error::io(format!("store pack {}", dst.display()), e.into()))?;
            shards.insert(p.id.0[0]);
        }
        for s in shards {
            fsutil::fsync_dir(&self.dir.join("packs").join(hex::encode([s])))?;
        }
        Ok(())
    }

    fn read_at(&self, id: &ObjectId, file: &PackBody, loc: &ObjectLocation, path: &str) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                Error::ObjectDamaged {
                    id: id.to_hex(),
                    location: self.describe(loc),
                    reason: "its pack file is truncated".into(),
                }
            } else {
                Error::io(format!("read object {id} from {path}"), e)
            }
        })?;
        Ok(buf)
    }

    /// Reads an object, pending or published; with the published pack it
    /// was found in.
    fn get_located(&self, id: &ObjectId) -> Result<(Vec<u8>, Option<PackId>)> {
        let pending = self.state.lock().expect("state").pending.get(id).cloned();
        if let Some((file, loc)) = pending {
            return Ok((self.read_at(id, &file, &loc, &self.describe_store())?, None));
        }
        let missing = || Error::ObjectMissing {
            id: id.to_hex(),
            location: self.describe_store(),
        };
        let loc = self.index.get(id)?.ok_or_else(missing)?;
        if let Some(bytes) = self.read_published(id, &loc)? {
            return Ok((bytes, Some(loc.pack)));
        }
        // Compaction may have moved the object and deleted its old pack
        // between the lookup and the read: look again once.
        let again = self.index.get(id)?.ok_or_else(missing)?;
        let gone = || Error::ObjectMissing {
            id: id.to_hex(),
            location: format!("{} (its pack is gone)", self.pack_location(&again.pack)),
        };
        if again.pack == loc.pack {
            return Err(gone());
        }
        let bytes = self.read_published(id, &again)?.ok_or_else(gone)?;
        Ok((bytes, Some(again.pack)))
    }

    /// The store, for messages (its directory or its URL).
    fn describe_store(&self) -> String {
        match &self.backend {
            Backend::Dir => self.dir.display().to_string(),
            Backend::Objects { storage, prefix, .. } => storage.locate(prefix),
        }
    }

    /// Caches the footer of a published pack, unless it is cached already.
    /// A footer that cannot be read is simply not cached: reads of the
    /// pack's objects then go through the index.
    fn remember_footer(&self, pack: PackId) {
        if self.footers.lock().expect("footers").has(&pack) {
            return;
        }
        match self.footer(&pack) {
            Ok(entries) => self
                .footers
                .lock()
                .expect("footers")
                .insert(pack, entries.into_iter().collect()),
            Err(reason) => {
                tracing::debug!(pack = %pack.to_hex(), %reason, "pack footer unreadable; reading its objects through the index")
            }
        }
    }

    fn describe(&self, loc: &ObjectLocation) -> String {
        format!("pack {} at offset {}", self.pack_location(&loc.pack), loc.offset)
    }
}

/// Every pack file of the store in `dir` (a tenant's `objects` directory),
/// temp packs excepted: what `lifeline repair` indexes.
pub(crate) fn pack_files(dir: &Path) -> Result<Vec<(PackId, PathBuf)>> {
    let mut out = Vec::new();
    for b in 0..=255u8 {
        let shard = dir.join("packs").join(hex::encode([b]));
        let entries = match fs::read_dir(&shard) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("list {}", shard.display()), e)),
        };
        for e in entries {
            let e = e.ctx(|| format!("list {}", shard.display()))?;
            if let Some(id) = e.file_name().to_str().and_then(PackId::from_hex) {
                out.push((id, e.path()));
            }
        }
    }
    Ok(out)
}

/// The checked footer of the pack file at `path`, or why it cannot be read.
pub(crate) fn read_footer(path: &Path, id: PackId) -> Result<Vec<(ObjectId, ObjectLocation)>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len < PACK_HEADER_LEN + 40 {
        return Err("too short for a pack".into());
    }
    let mut last = [0u8; 40];
    f.read_exact_at(&mut last, len - 40).map_err(|e| e.to_string())?;
    let n = u32::from_le_bytes(last[..4].try_into().expect("4")) as usize;
    let flen = pack::footer_len(n);
    if flen > len - PACK_HEADER_LEN {
        return Err("footer longer than the pack".into());
    }
    let mut tail = vec![0u8; flen as usize];
    f.read_exact_at(&mut tail, len - flen).map_err(|e| e.to_string())?;
    pack::parse_footer(id, &tail, len)
}

impl Drop for LocalDirStore {
    fn drop(&mut self) {
        // Unsynced puts were never promised; remove their temp packs.
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SledCatalog;

    fn id(b: u8) -> ObjectId {
        ObjectId([b; 32])
    }

    /// A store whose background sync starts after `batch` bytes of packs.
    fn store_with_batch(d: &Path, batch: u64) -> (SledCatalog, Arc<dyn ObjectIndex>, LocalDirStore) {
        let cat = SledCatalog::open(&d.join("catalog")).unwrap();
        let idx: Arc<dyn ObjectIndex> = Arc::new(cat.object_index("t").unwrap());
        LocalDirStore::create(&d.join("objects")).unwrap();
        let mut s = LocalDirStore::open(&d.join("objects"), idx.clone()).unwrap();
        Arc::get_mut(&mut s.packs).unwrap().sync_batch = batch;
        (cat, idx, s)
    }

    /// Objects big enough that eight of them fill a pack.
    fn big(b: u8) -> Vec<u8> {
        vec![b; (PACK_TARGET_BYTES / 8) as usize]
    }

    /// A sealed chunk of `len` bytes of pseudo-random content.
    fn sealed(n: u32, len: usize) -> (ObjectId, Vec<u8>) {
        let keys = crate::crypto::Keys::derive(&[9; 32]);
        let mut plain = vec![0u8; len];
        let mut x = n as u64 * 0x9e37_79b9_7f4a_7c15 + 1;
        for b in plain.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let id = keys.chunk_id(&plain);
        (
            id,
            crate::crypto::seal_object(&keys, crate::crypto::ObjectKind::Chunk, &id, &[], &plain),
        )
    }

    fn pack_count(d: &Path) -> usize {
        pack_files(&d.join("objects")).unwrap().len()
    }

    /// Small syncs (an agent cycle of about 100 KiB each) share packs: every
    /// [`COMPACT_AT`] small packs are merged, so the number of pack files
    /// stays bounded; every object stays readable, through the index and
    /// through a reopened store, and a removed object is not brought back.
    #[test]
    fn small_syncs_are_compacted_into_shared_packs() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, idx, s) = store_with_batch(d.path(), u64::MAX);
        let mut objects = Vec::new();
        for cycle in 0..60u32 {
            for k in 0..3 {
                let (id, bytes) = sealed(cycle * 3 + k, 33 << 10);
                assert!(s.put(&id, &bytes).unwrap());
                objects.push((id, bytes));
            }
            s.sync().unwrap();
            assert!(
                pack_count(d.path()) < COMPACT_AT + 1,
                "cycle {cycle}: {} packs",
                pack_count(d.path())
            );
            if cycle == 20 {
                // Removed (garbage collection, verify --repair): compaction
                // must not copy it back into the index.
                s.delete(&objects[4].0).unwrap();
            }
        }
        assert!(
            idx.get(&objects[4].0).unwrap().is_none(),
            "a removed object stays removed"
        );
        for (i, (id, bytes)) in objects.iter().enumerate() {
            if i != 4 {
                assert_eq!(&s.get(id).unwrap(), bytes, "object {i}");
            }
        }
        // The merged packs hold everything after a reopen, and no pack file
        // is left that the index does not use.
        drop(s);
        let (_cat2, s) = (
            _cat,
            LocalDirStore::open(&d.path().join("objects"), idx.clone()).unwrap(),
        );
        for (i, (id, bytes)) in objects.iter().enumerate() {
            if i != 4 {
                assert_eq!(&s.get(id).unwrap(), bytes, "object {i} after reopen");
            }
        }
        let mut used = std::collections::HashSet::new();
        idx.for_each(&mut |_, loc| {
            used.insert(loc.pack);
            Ok(())
        })
        .unwrap();
        assert_eq!(used.len(), pack_count(d.path()), "every pack file holds live objects");
    }

    /// A compaction between a collection's plan and its sweep (a receiver
    /// plans while uploads go on) may move a live object into a pack the plan
    /// saw only dead objects in: the sweep must not delete that pack.
    #[test]
    fn a_collection_never_deletes_a_pack_a_compaction_moved_live_objects_into() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, _idx, s) = store_with_batch(d.path(), u64::MAX);
        // Enough entries that the index's walk reads later ones after the
        // compaction moved them.
        let per_pack = 300;
        let mut objects: Vec<(ObjectId, Vec<u8>)> =
            (0..(COMPACT_AT * per_pack) as u32).map(|n| sealed(n, 256)).collect();
        objects.sort_by_key(|o| o.0);
        // The smallest id is the one live object: the plan sees it first.
        let live = objects[0].0;
        for (i, (id, bytes)) in objects.iter().enumerate() {
            s.put(id, bytes).unwrap();
            // Seven small packs; the eighth is published, and the packs
            // compacted, by a sync that runs while the plan walks the index.
            if (i + 1) % per_pack == 0 && i + 1 < objects.len() {
                s.sync().unwrap();
            }
        }
        let synced = std::cell::Cell::new(false);
        let mut spill = Vec::new();
        let plan = s
            .plan_sweep(
                &|id, _| {
                    if !synced.replace(true) {
                        s.sync().unwrap();
                    }
                    *id == live
                },
                std::time::Duration::ZERO,
                &mut spill,
            )
            .unwrap();
        assert!(pack_count(d.path()) < COMPACT_AT, "the compaction ran during the plan");
        s.apply_sweep(plan, &mut spill.as_slice(), &|_| false, false).unwrap();
        assert_eq!(s.get(&live).unwrap(), objects[0].1, "the live object survived");
    }

    /// Moving entries changes only those still in the old packs.
    #[test]
    fn relocation_never_brings_back_a_removed_entry() {
        let d = tempfile::tempdir().unwrap();
        let cat = SledCatalog::open(&d.path().join("catalog")).unwrap();
        let idx = cat.object_index("t").unwrap();
        let (old, new) = (PackId([1; 16]), PackId([2; 16]));
        let at = |pack, offset| ObjectLocation {
            pack,
            offset,
            len: 10,
            kind: 1,
        };
        idx.publish(old, &[(id(1), at(old, 8)), (id(2), at(old, 18))]).unwrap();
        idx.remove(&[id(2)]).unwrap();
        idx.relocate(new, &[(id(1), at(new, 8)), (id(2), at(new, 18))], &[old], &[old])
            .unwrap();
        assert_eq!(idx.get(&id(1)).unwrap(), Some(at(new, 8)));
        assert_eq!(idx.get(&id(2)).unwrap(), None);
        assert_eq!(idx.doomed_packs().unwrap(), vec![old]);
        assert!(idx.has_pack(&new).unwrap());
    }

    /// A long write publishes finished packs on a thread of its own while the
    /// puts go on; the open pack waits for `sync`.
    #[test]
    fn finished_packs_are_synced_in_the_background() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, idx, s) = store_with_batch(d.path(), 1);
        for b in 1..=10 {
            assert!(s.put(&id(b), &big(b)).unwrap());
        }
        s.wait_background().unwrap();
        for b in 1..=8 {
            assert!(
                idx.get(&id(b)).unwrap().is_some(),
                "object {b} of the finished pack is published"
            );
        }
        for b in 9..=10 {
            assert!(idx.get(&id(b)).unwrap().is_none(), "object {b} is in the open pack");
            assert!(s.contains(&id(b)).unwrap());
        }
        s.sync().unwrap();
        for b in 1..=10 {
            assert_eq!(s.get(&id(b)).unwrap(), big(b));
            assert!(idx.get(&id(b)).unwrap().is_some());
        }
        assert_eq!(s.losses(), 0);
    }

    /// A failed sync drops every object not yet durable, also those of packs
    /// it did not get to (a node there may reference a chunk that is gone),
    /// and counts the loss for other writers; the store goes on working.
    #[test]
    fn a_failed_sync_drops_everything_not_durable_and_counts_it() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, idx, s) = store_with_batch(d.path(), u64::MAX);
        for b in 1..=10 {
            s.put(&id(b), &big(b)).unwrap();
        }
        // The finished pack's file vanishes before it is published.
        let finished = {
            let st = s.state.lock().unwrap();
            assert_eq!(st.closed.len(), 1);
            st.closed[0].tmp.clone()
        };
        fs::remove_file(&finished).unwrap();
        assert!(s.flush(false).is_err());
        assert_eq!(s.losses(), 1);
        for b in 1..=10 {
            assert!(!s.contains(&id(b)).unwrap(), "object {b} was dropped");
        }
        s.sync().unwrap();
        for b in 1..=10 {
            assert!(idx.get(&id(b)).unwrap().is_none(), "object {b} never became visible");
        }
        assert_eq!(fs::read_dir(d.path().join("objects/packs/tmp")).unwrap().count(), 0);
        assert!(s.put(&id(11), b"after").unwrap());
        s.sync().unwrap();
        assert_eq!(s.get(&id(11)).unwrap(), b"after");
        assert_eq!(s.losses(), 1);
    }

    fn store(d: &Path) -> (SledCatalog, LocalDirStore) {
        let cat = SledCatalog::open(&d.join("catalog")).unwrap();
        let idx: Arc<dyn ObjectIndex> = Arc::new(cat.object_index("t").unwrap());
        LocalDirStore::create(&d.join("objects")).unwrap();
        let s = LocalDirStore::open(&d.join("objects"), idx).unwrap();
        (cat, s)
    }

    /// A collection interrupted after its removals became durable but before
    /// it deleted the packs they emptied: the next open deletes them (no pack
    /// file leaks), and a pack with live objects is untouched.
    #[test]
    fn packs_an_interrupted_collection_emptied_are_deleted_at_the_next_open() {
        let d = tempfile::tempdir().unwrap();
        let cat = SledCatalog::open(&d.path().join("catalog")).unwrap();
        let idx: Arc<dyn ObjectIndex> = Arc::new(cat.object_index("t").unwrap());
        LocalDirStore::create(&d.path().join("objects")).unwrap();
        let s = LocalDirStore::open(&d.path().join("objects"), idx.clone()).unwrap();
        s.put(&id(1), b"dead").unwrap();
        s.sync().unwrap();
        s.put(&id(2), b"live").unwrap();
        s.sync().unwrap();
        let dead = idx.get(&id(1)).unwrap().unwrap().pack;
        let live = idx.get(&id(2)).unwrap().unwrap().pack;
        // What apply_sweep makes durable before deleting files; then a crash.
        idx.remove_unsynced(&[id(1)]).unwrap();
        idx.doom_pack(&dead).unwrap();
        idx.flush().unwrap();
        assert!(s.pack_path(&dead).exists());
        drop(s);
        let s = LocalDirStore::open(&d.path().join("objects"), idx.clone()).unwrap();
        assert!(!s.pack_path(&dead).exists(), "the emptied pack was deleted");
        assert!(!idx.has_pack(&dead).unwrap() && idx.doomed_packs().unwrap().is_empty());
        assert!(s.pack_path(&live).exists());
        assert_eq!(s.get(&id(2)).unwrap(), b"live");
        assert!(!s.contains(&id(1)).unwrap());
    }

    /// `get_many` finds objects through the footers of the packs it read
    /// last: more packs than the cache keeps, read in and out of pack order,
    /// a pending object among them. An object removed from the index is
    /// missing again even while its pack's footer was cached, and a deleted
    /// pack leaves the cache.
    #[test]
    fn get_many_reads_through_pack_footers_and_forgets_what_was_removed() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, idx, s) = store_with_batch(d.path(), u64::MAX);
        let bytes = |b: u8| format!("object {b}").into_bytes();
        for p in 0..20u8 {
            s.put(&id(2 * p + 1), &bytes(2 * p + 1)).unwrap();
            s.put(&id(2 * p + 2), &bytes(2 * p + 2)).unwrap();
            s.sync().unwrap();
        }
        s.put(&id(200), &bytes(200)).unwrap();
        let mut ids: Vec<ObjectId> = (1..=40).map(id).collect();
        ids.push(id(200));
        ids.extend((1..=40).rev().map(id));
        let want: Vec<Vec<u8>> = ids.iter().map(|i| bytes(i.0[0])).collect();
        assert_eq!(s.get_many(&ids).unwrap(), want);
        assert_eq!(s.get_many(&ids).unwrap(), want, "again, from the cached footers");
        {
            let mut f = s.footers.lock().unwrap();
            assert_eq!(f.packs.len(), FOOTER_CACHE);
            assert!(f.find(&id(2)).is_some(), "the pack of object 1 and 2 is cached");
            assert!(f.find(&id(200)).is_none(), "a pending object is in no footer");
        }
        // Object 1 removed: its pack stays (object 2 lives there).
        s.delete(&id(1)).unwrap();
        s.sync().unwrap();
        assert!(matches!(s.get_many(&[id(1)]), Err(Error::ObjectMissing { .. })));
        assert_eq!(s.get_many(&[id(2)]).unwrap(), vec![bytes(2)]);
        // Object 2 removed too and its pack deleted, as a collection does.
        let pack = idx.get(&id(2)).unwrap().unwrap().pack;
        idx.remove(&[id(2)]).unwrap();
        s.delete_packs(&[pack]).unwrap();
        assert!(!s.footers.lock().unwrap().has(&pack));
        assert!(matches!(s.get_many(&[id(2)]), Err(Error::ObjectMissing { .. })));
        assert_eq!(s.get_many(&[id(4), id(3)]).unwrap(), vec![bytes(4), bytes(3)]);
    }

    #[test]
    fn put_sync_get_never_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let (_cat, s) = store(d.path());
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
            assert_eq!((o.id, o.len), (id(1), 3));
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
    fn unsynced_puts_vanish_and_unpublished_packs_are_recovered() {
        let d = tempfile::tempdir().unwrap();
        let (cat, s) = store(d.path());
        s.put(&id(2), b"two").unwrap();
        std::mem::forget(s); // as if the process died before sync
        assert_eq!(fs::read_dir(d.path().join("objects/packs/tmp")).unwrap().count(), 1);
        let idx: Arc<dyn ObjectIndex> = Arc::new(cat.object_index("t").unwrap());
        let s = LocalDirStore::open(&d.path().join("objects"), idx.clone()).unwrap();
        assert_eq!(fs::read_dir(d.path().join("objects/packs/tmp")).unwrap().count(), 0);
        assert!(!s.contains(&id(2)).unwrap());
        // A durable pack whose index entries were lost is published again at open.
        s.put(&id(3), b"three").unwrap();
        s.sync().unwrap();
        idx.remove(&[id(3)]).unwrap();
        assert_eq!(cat.clear_pack_records_for_test("t"), 1);
        drop(s);
        let s = LocalDirStore::open(&d.path().join("objects"), idx).unwrap();
        assert_eq!(s.get(&id(3)).unwrap(), b"three");
    }
}
