//! Compaction: small packs (cycles too small to fill one) merged into shared
//! packs as they accumulate, their live objects moved atomically in the index
//! and only while they are still in the old packs.

use super::*;

impl Packs {
    /// Merges the small packs once [`COMPACT_AT`] of them accumulated (every
    /// sync closes a pack, so small cycles would otherwise leave one small
    /// pack each, forever): their objects still in the index are copied into
    /// new packs of up to [`PACK_TARGET_BYTES`], made durable and put in place
    /// like any pack, the index entries moved to them and the old packs marked
    /// to be deleted in one atomic step, then the old files deleted. Called
    /// with the sync lock held, so no other sync publishes meanwhile; the move
    /// changes an entry only while it still points into an old pack, so an
    /// object removed meanwhile is never brought back. A pack whose footer or
    /// one of whose objects fails its check is left as it is (for `verify`).
    /// Each byte of a small cycle is copied a few times before it rests in a
    /// pack of at least [`SMALL_PACK_BYTES`].
    pub(super) fn compact_small_packs(&self) -> Result<()> {
        let small = self.small.lock().expect("small packs").clone();
        if small.len() < COMPACT_AT {
            return Ok(());
        }
        let mut sources = Vec::new();
        let mut moved: Vec<(ObjectId, Vec<u8>, u8)> = Vec::new();
        'pack: for (pack, _) in &small {
            let Ok(entries) = self.footer(pack) else {
                continue;
            };
            let mut objects = Vec::new();
            for (id, loc) in entries {
                if self.index.get(&id)? != Some(loc) {
                    continue; // removed, or held by another pack
                }
                let buf = match self.read_published(&id, &loc) {
                    Ok(Some(b)) if crate::crypto::SealedObject::parse(&b).is_ok() => b,
                    _ => continue 'pack,
                };
                objects.push((id, buf, loc.kind));
            }
            sources.push(*pack);
            moved.extend(objects);
        }
        if sources.len() < 2 {
            return Ok(());
        }
        // Write the new packs.
        let mut written: Vec<OpenPack> = Vec::new();
        let mut current: Option<OpenPack> = None;
        let result = (|| {
            for (id, bytes, kind) in &moved {
                if current.is_none() {
                    current = Some(self.new_pack()?);
                }
                let p = current.as_mut().expect("open pack");
                p.file
                    .write_at(bytes, p.len)
                    .ctx(|| format!("write pack {}", p.tmp.display()))?;
                p.entries.push((
                    *id,
                    ObjectLocation {
                        pack: p.id,
                        offset: p.len,
                        len: bytes.len() as u32,
                        kind: *kind,
                    },
                ));
                p.len += bytes.len() as u64;
                if p.len >= PACK_TARGET_BYTES {
                    written.push(finish_pack(current.take().expect("open pack"))?);
                }
            }
            if let Some(p) = current.take() {
                written.push(finish_pack(p)?);
            }
            self.put_in_place(&written)
        })();
        if let Err(e) = result {
            for p in written.iter().chain(current.iter()) {
                p.discard();
            }
            return Err(e);
        }
        // Move the entries, then delete the old packs.
        for (i, p) in written.iter().enumerate() {
            let doom: &[PackId] = if i + 1 == written.len() { &sources } else { &[] };
            self.index.relocate(p.id, &p.entries, &sources, doom)?;
            if let PackBody::File(f) = &p.file {
                self.readers.lock().expect("readers").insert(p.id, f.clone());
            }
        }
        self.delete_packs(&sources)?;
        let mut small = self.small.lock().expect("small packs");
        small.retain(|(p, _)| !sources.contains(p));
        for p in &written {
            if p.len < SMALL_PACK_BYTES {
                small.push((p.id, p.len));
            }
        }
        tracing::debug!(store = %self.dir.display(), merged = sources.len(), into = written.len(), objects = moved.len(), "compacted small packs");
        Ok(())
    }
}

/// Writes a compacted pack's footer and makes it durable.
fn finish_pack(mut p: OpenPack) -> Result<OpenPack> {
    let footer = pack::footer(&p.entries);
    p.file
        .write_at(&footer, p.len)
        .ctx(|| format!("write pack footer {}", p.tmp.display()))?;
    p.len += footer.len() as u64;
    p.file.sync_all().ctx(|| format!("fsync {}", p.tmp.display()))?;
    Ok(p)
}
