//! The storage contract for sealed objects.

use crate::error::Result;
use crate::object_id::ObjectId;

/// One stored object as listed by [`ChunkStore::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject {
    pub id: ObjectId,
    pub len: u64,
    /// Sorting objects by this key gives the fastest order to read them in.
    pub read_order: (u128, u64),
}

/// A store of sealed objects, keyed by [`ObjectId`]. Implementations are shared
/// between threads (`&self` everywhere); one process owns a store at a time (the
/// owner of the repository's catalog).
///
/// Contract, for every backend:
/// - [`put`](Self::put) is idempotent and **never overwrites**: if an object with the
///   id exists (durable or pending), it does nothing and returns `false`.
/// - A put is **not durable until [`sync`](Self::sync) returns**. A crash before
///   then may lose it, but never leaves a partial or wrong object under its id.
///   A backend may make objects durable earlier (for example in batches).
/// - [`get`](Self::get) returns exactly the bytes put; it does not authenticate
///   them (the caller opens the sealed object, which does).
/// - **Referential order**: an object becomes visible only once every object it
///   references (the cleartext references of its header) is visible, provided the
///   caller put the referenced objects first. A present node can be trusted to be
///   complete.
/// - [`list`](Self::list) enumerates durable objects; objects put while it runs
///   may or may not appear.
/// - [`delete`](Self::delete) is for garbage collection only; it is durable after
///   `sync`. Deleting an absent object is not an error.
pub trait ChunkStore: Send + Sync {
    /// Stores a sealed object; `false` when it was already there.
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> Result<bool>;
    /// [`put`](Self::put) for a caller that no longer needs the bytes: a
    /// network store sends them without copying them first.
    fn put_owned(&self, id: &ObjectId, sealed: Vec<u8>) -> Result<bool> {
        self.put(id, &sealed)
    }
    /// True when the object is stored or pending.
    fn contains(&self, id: &ObjectId) -> Result<bool>;
    /// For each id, true when the store lacks it (one round trip for a remote store).
    fn missing(&self, ids: &[ObjectId]) -> Result<Vec<bool>> {
        ids.iter().map(|id| self.contains(id).map(|c| !c)).collect()
    }
    /// Reads an object; `Error::ObjectMissing` when absent.
    fn get(&self, id: &ObjectId) -> Result<Vec<u8>>;
    /// Reads several objects, in order (one round trip for a remote store).
    /// Unlike [`get`](Self::get), it may return a copy of an object that was
    /// removed from the store while its bytes remain (a local store finds
    /// objects through pack footers): the bytes put under that id, or a
    /// damaged copy. Callers authenticate what they read and, when that
    /// fails, read the object again with `get`.
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        ids.iter().map(|id| self.get(id)).collect()
    }
    /// How many callers per core keep the cores busy: 1 for a store that
    /// answers on the caller's thread; more for one whose calls wait on the
    /// network, so a core works on the next segment while one caller waits
    /// for an answer.
    fn callers_per_core(&self) -> usize {
        1
    }
    /// Makes every earlier put and delete durable.
    fn sync(&self) -> Result<()>;
    /// How many times a failure (a full disk, an I/O error) dropped puts that
    /// were not yet durable. The caller whose put or sync failed is told by
    /// the error; another writer sharing the store learns it here: if this
    /// changed between its first put and the end of its sync, its puts may be
    /// lost and must be made again.
    fn losses(&self) -> u64 {
        0
    }
    /// Drops pending puts that were not synced (after a failed backup).
    fn abandon(&self);
    /// Calls `f` for each durable object.
    fn list(&self, f: &mut dyn FnMut(StoredObject) -> Result<()>) -> Result<()>;
    /// Removes an object (garbage collection).
    fn delete(&self, id: &ObjectId) -> Result<()>;
    /// Where an object lives, for messages (a path or a URL).
    fn location(&self, id: &ObjectId) -> String;
}
