//! What serving a point costs the repository: every object the exports fetch
//! (index nodes, segment nodes, chunks) goes through a [`MeteredStore`] that
//! adds its sealed size to a [`ReadMeter`], so a run or a status file can
//! report the bytes read from the repository as measured, not estimated.
//! Objects answered from the decoded segment cache are not read again and
//! do not count; the point record, read once from the catalog when the point
//! is opened, is not an object read and does not count either.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use crate::object_id::ObjectId;
use crate::store::{ChunkStore, StoredObject};

/// Sealed bytes and objects read from a repository.
#[derive(Debug, Default)]
pub struct ReadMeter {
    bytes: AtomicU64,
    objects: AtomicU64,
}

impl ReadMeter {
    /// Sealed bytes read so far (as stored: compressed and encrypted).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Objects read so far.
    pub fn objects(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    fn add(&self, sealed: &[u8]) {
        self.bytes.fetch_add(sealed.len() as u64, Ordering::Relaxed);
        self.objects.fetch_add(1, Ordering::Relaxed);
    }
}

/// A store that counts what is read from it; every other call goes straight
/// through, with the inner store's contract.
pub struct MeteredStore {
    inner: Arc<dyn ChunkStore>,
    meter: Arc<ReadMeter>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ChunkStore>, meter: Arc<ReadMeter>) -> Self {
        MeteredStore { inner, meter }
    }
}

impl ChunkStore for MeteredStore {
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> Result<bool> {
        self.inner.put(id, sealed)
    }

    fn put_owned(&self, id: &ObjectId, sealed: Vec<u8>) -> Result<bool> {
        self.inner.put_owned(id, sealed)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool> {
        self.inner.contains(id)
    }

    fn missing(&self, ids: &[ObjectId]) -> Result<Vec<bool>> {
        self.inner.missing(ids)
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let b = self.inner.get(id)?;
        self.meter.add(&b);
        Ok(b)
    }

    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        let all = self.inner.get_many(ids)?;
        for b in &all {
            self.meter.add(b);
        }
        Ok(all)
    }

    fn callers_per_core(&self) -> usize {
        self.inner.callers_per_core()
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn losses(&self) -> u64 {
        self.inner.losses()
    }

    fn abandon(&self) {
        self.inner.abandon()
    }

    fn list(&self, f: &mut dyn FnMut(StoredObject) -> Result<()>) -> Result<()> {
        self.inner.list(f)
    }

    fn delete(&self, id: &ObjectId) -> Result<()> {
        self.inner.delete(id)
    }

    fn location(&self, id: &ObjectId) -> String {
        self.inner.location(id)
    }
}
