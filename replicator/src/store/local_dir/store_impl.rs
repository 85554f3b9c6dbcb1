//! [`ChunkStore`] for [`LocalDirStore`]: the contract the data path uses.

use super::*;

impl ChunkStore for LocalDirStore {
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> Result<bool> {
        let mut st = self.state.lock().expect("state");
        if st.pending.contains_key(id) || self.index.get(id)?.is_some() {
            return Ok(false);
        }
        if st.current.is_none() {
            st.current = Some(self.new_pack()?);
        }
        let p = st.current.as_mut().expect("open pack");
        let loc = ObjectLocation {
            pack: p.id,
            offset: p.len,
            len: sealed.len() as u32,
            kind: sealed.get(5).copied().unwrap_or(0),
        };
        if let Err(e) = p.file.write_at(sealed, p.len) {
            // The pack may hold a partial object now: drop it whole.
            let p = st.current.take().expect("open pack");
            for (i, _) in &p.entries {
                st.pending.remove(i);
            }
            p.discard();
            // Other writers' objects in that pack went with it.
            self.losses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(Error::io(format!("write object {} to pack {}", id, p.tmp.display()), e));
        }
        p.len += sealed.len() as u64;
        p.entries.push((*id, loc));
        let file = p.file.clone();
        let full = p.len >= PACK_TARGET_BYTES;
        st.pending.insert(*id, (file, loc));
        if full && let Err(e) = Packs::close_current(&mut st) {
            self.losses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(e);
        }
        let flush = st.closed_bytes >= self.sync_batch;
        drop(st);
        if flush {
            self.sync_in_background()?;
        }
        Ok(true)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool> {
        if self.state.lock().expect("state").pending.contains_key(id) {
            return Ok(true);
        }
        Ok(self.index.get(id)?.is_some())
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        self.get_located(id).map(|(bytes, _)| bytes)
    }

    /// Reads objects by the footers of the packs read last where it can
    /// (see [`FooterCache`]), else as [`get`](Self::get) does, then keeps
    /// the footer of the pack it found the object in.
    fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        ids.iter()
            .map(|id| {
                let cached = self.footers.lock().expect("footers").find(id);
                if let Some(loc) = cached
                    && let Some(bytes) = self.read_published(id, &loc)?
                {
                    return Ok(bytes);
                }
                let (bytes, published) = self.get_located(id)?;
                if let Some(pack) = published {
                    self.remember_footer(pack);
                }
                Ok(bytes)
            })
            .collect()
    }

    fn sync(&self) -> Result<()> {
        self.wait_background()?;
        self.flush(true)?;
        // A background sync another writer started meanwhile may have failed
        // and dropped what this one put: say so here too.
        self.wait_background()
    }

    fn losses(&self) -> u64 {
        self.packs.losses.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn abandon(&self) {
        // What a background sync took is durable (or dropped, if it failed);
        // the rest is dropped here.
        if let Err(e) = self.wait_background() {
            tracing::debug!(error = %e, "background sync of an abandoned write failed");
        }
        if self.drop_unsynced() {
            // Other writers sharing the store lose their pending puts too.
            self.losses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.state.lock().expect("state").deleted.clear();
    }

    fn list(&self, f: &mut dyn FnMut(StoredObject) -> Result<()>) -> Result<()> {
        self.index.for_each(&mut |id, loc| {
            f(StoredObject {
                id,
                len: loc.len as u64,
                read_order: (u128::from_be_bytes(loc.pack.0), loc.offset),
            })
        })
    }

    fn delete(&self, id: &ObjectId) -> Result<()> {
        self.state.lock().expect("state").deleted.push(*id);
        Ok(())
    }

    fn location(&self, id: &ObjectId) -> String {
        match self.index.get(id) {
            Ok(Some(loc)) => self.describe(&loc),
            _ => self.describe_store(),
        }
    }

    fn callers_per_core(&self) -> usize {
        match &self.backend {
            Backend::Dir => 1,
            Backend::Objects { storage, .. } => storage.parallel_reads().max(1),
        }
    }
}
