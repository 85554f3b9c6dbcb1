//! Reads and authenticates objects, turning every failure into an error that
//! names the object and where it lives.

use crate::crypto::seal::{OpenError, open_chunk_into, rejection};
use crate::crypto::{Keys, ObjectKind, open_object};
use crate::error::{Error, Result};
use crate::object_id::ObjectId;
use crate::store::ChunkStore;

/// Fetches objects from a store and opens them with a tenant's keys.
pub struct ObjectReader<'a> {
    store: &'a dyn ChunkStore,
    keys: &'a Keys,
}

impl<'a> ObjectReader<'a> {
    pub fn new(store: &'a dyn ChunkStore, keys: &'a Keys) -> Self {
        ObjectReader { store, keys }
    }

    /// Reads, authenticates and checks the kind of an object; returns (refs, plaintext).
    pub fn read(&self, id: &ObjectId, kind: ObjectKind) -> Result<(Vec<ObjectId>, Vec<u8>)> {
        let bytes = self.store.get(id)?;
        let (h, plain) = open_object(self.keys, id, &bytes).map_err(|e| self.open_error(id, e))?;
        if h.kind != kind {
            return Err(self.damaged(
                id,
                format!("is a {} where a {} was expected", h.kind.name(), kind.name()),
            ));
        }
        Ok((h.refs, plain))
    }

    /// Fetches several sealed objects as stored, in order (one round trip to a
    /// remote store), for [`open_chunk_into`](Self::open_chunk_into).
    pub fn fetch_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        self.store.get_many(ids)
    }

    /// Authenticates and opens a fetched chunk straight into `out` (exactly its
    /// length); see [`open_chunk_into`](crate::crypto::seal::open_chunk_into).
    /// A chunk that fails is read again with [`ChunkStore::get`] and opened
    /// from there: a batch read may have found an older copy of it (a damaged
    /// one that `verify --repair` dropped from the index, in a pack kept for
    /// its other objects; see [`ChunkStore::get_many`]). Only if that copy
    /// fails too is the chunk reported, as damaged or altered as its stored
    /// bytes say.
    pub fn open_chunk_into(&self, id: &ObjectId, bytes: &mut [u8], out: &mut [u8]) -> Result<()> {
        if open_chunk_into(self.keys, id, bytes, out).is_ok() {
            return Ok(());
        }
        let stored = self.store.get(id)?;
        match open_chunk_into(self.keys, id, &mut stored.clone(), out) {
            Ok(()) => Ok(()),
            Err(OpenError::Authentication) => Err(self.open_error(id, rejection(&stored))),
            Err(e) => Err(self.open_error(id, e)),
        }
    }

    /// Maps an open failure to an error naming the object.
    pub fn open_error(&self, id: &ObjectId, e: OpenError) -> Error {
        let location = self.store.location(id);
        match e {
            OpenError::Damaged(reason) => Error::ObjectDamaged {
                id: id.to_hex(),
                location,
                reason,
            },
            OpenError::OtherKey(k) => Error::ObjectDamaged {
                id: id.to_hex(),
                location,
                reason: format!("sealed under key id {k:08x}, not this key's {:08x}", self.keys.key_id()),
            },
            OpenError::Authentication => Error::ObjectAuthentication {
                id: id.to_hex(),
                location,
            },
            OpenError::IdMismatch => Error::ObjectDamaged {
                id: id.to_hex(),
                location,
                reason: "content does not hash to its id".into(),
            },
        }
    }

    /// A damage error for an object whose content is structurally wrong.
    pub fn damaged(&self, id: &ObjectId, reason: String) -> Error {
        Error::ObjectDamaged {
            id: id.to_hex(),
            location: self.store.location(id),
            reason,
        }
    }
}
