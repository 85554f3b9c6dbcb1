//! The index a store keeps its objects' locations in. The store defines what it
//! needs; the catalog ([`crate::SledObjectIndex`]) keeps it.

use super::{ObjectLocation, PackId};
use crate::error::Result;
use crate::object_id::ObjectId;

/// Where a tenant's objects are: id → pack, offset, length. Kept in the catalog
/// so presence checks and reads need no directory listing.
///
/// Durability: [`publish`](Self::publish) and [`remove`](Self::remove) return once
/// durable. Visibility is atomic per publish: all entries of a pack or none.
pub trait ObjectIndex: Send + Sync {
    /// Location of an object.
    fn get(&self, id: &ObjectId) -> Result<Option<ObjectLocation>>;
    /// Makes the objects of a durable pack visible (an existing entry for the same
    /// id is replaced: equal ids mean equal content).
    fn publish(&self, pack: PackId, entries: &[(ObjectId, ObjectLocation)]) -> Result<()>;
    /// Records the entries of durable packs, and the packs they are in, as
    /// [`publish`](Self::publish) does, but durable only after
    /// [`flush`](Self::flush) and not atomically: a rebuild of the whole
    /// index, swapped in only when complete. Sorts `entries` by id (a fresh
    /// tree fills fastest in key order); for one id the last entry wins.
    fn load(&self, entries: &mut [(ObjectId, ObjectLocation)]) -> Result<()>;
    /// True when the pack was published.
    fn has_pack(&self, pack: &PackId) -> Result<bool>;
    /// Moves entries into the durable pack `pack` (compaction): each entry is
    /// changed only while it still points into one of `from` (an entry
    /// removed or moved meanwhile stays as it is), `pack` is recorded, and the
    /// packs of `doom` are marked to be deleted, all in one atomic, durable
    /// step.
    fn relocate(
        &self,
        pack: PackId,
        entries: &[(ObjectId, ObjectLocation)],
        from: &[PackId],
        doom: &[PackId],
    ) -> Result<()>;
    /// Every published pack not marked to be deleted, with the bytes of the
    /// objects it was published with.
    fn packs(&self) -> Result<Vec<(PackId, u64)>>;
    /// Removes entries (garbage collection), durably.
    fn remove(&self, ids: &[ObjectId]) -> Result<()> {
        self.remove_unsynced(ids)?;
        self.flush()
    }
    /// Removes entries, visible at once but durable only after [`flush`](Self::flush)
    /// (a long sweep flushes once, before it deletes pack files).
    fn remove_unsynced(&self, ids: &[ObjectId]) -> Result<()>;
    /// Makes every earlier change durable.
    fn flush(&self) -> Result<()>;
    /// Marks a pack whose objects garbage collection removed as to be deleted
    /// (durable with the next [`flush`](Self::flush), together with the
    /// removals): an interrupted collection's successor deletes its file.
    fn doom_pack(&self, pack: &PackId) -> Result<()>;
    /// Packs marked by [`doom_pack`](Self::doom_pack) and not forgotten yet.
    fn doomed_packs(&self) -> Result<Vec<PackId>>;
    /// Forgets a pack whose file garbage collection deleted (after its entries
    /// were removed); durable after [`flush`](Self::flush).
    fn forget_pack(&self, pack: &PackId) -> Result<()>;
    /// Calls `f` for every entry, in id order.
    fn for_each(&self, f: &mut dyn FnMut(ObjectId, ObjectLocation) -> Result<()>) -> Result<()>;
}
