//! [`Catalog`] over sled 0.34.
//!
//! Trees: `meta` (`config` → [`RepositoryConfig`]), `tenants` (name → [`TenantRecord`]),
//! `points` (`tenant \0 group \0 seq as u64 big endian` → [`PointRecord`]),
//! `scopes` (`tenant \0 group` → [`ScopeRecord`]). Values
//! are a version byte followed by JSON. Commits take a mutex (one owner process,
//! many threads) and end with a flush, so a returned commit survives a crash.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;

use crate::catalog::{Catalog, ObjectIndex, PinRecord, RepositoryConfig, ScopeRecord, TenantRecord};
use crate::error::{Error, Result};
use crate::file_formats::{CATALOG_VALUE_VERSION, MAX_OBJECT_LEN};
use crate::object_id::ObjectId;
use crate::point::PointRecord;
use crate::store::{ObjectLocation, PackId};

/// The sled-backed catalog.
pub struct SledCatalog {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    /// tenant \0 group \0 seq (u64 BE) holder → version u8 | until (unix ms, i64 LE).
    pins: sled::Tree,
    tenants: sled::Tree,
    points: sled::Tree,
    /// Same keys as `points`, empty values: points removed whose point object
    /// may not be deleted yet.
    pruning: sled::Tree,
    /// Groups with their own dedup scope.
    scopes: sled::Tree,
    commit: Mutex<()>,
}

impl SledCatalog {
    /// Opens (or creates) the catalog at `path`, taking sled's exclusive lock,
    /// with a page cache of a quarter of its file, between 16 and 256 MiB:
    /// presence lookups at random over a 10 M-object catalog (1.5 GB) ran
    /// at 13 k/s with 16 MiB and at 55–105 k/s with 256 MiB (`lifeline bench
    /// --repair --points 2000 --per-point 4999`).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::metadata(path.join("db")).map_or(0, |m| m.len());
        Self::open_with_cache(path, (file / 4).clamp(16 << 20, 256 << 20))
    }

    /// [`open`](Self::open) with `cache` bytes of sled page cache (a rebuild
    /// of the whole index writes faster with its tree in memory).
    pub fn open_with_cache(path: &Path, cache: u64) -> Result<Self> {
        // sled lets go of its file lock from its flusher thread, up to one
        // flush interval (500 ms) after the last handle is dropped: a reopen in
        // the same process right after a close waits for it instead of failing.
        let mut tries = 0;
        let db = loop {
            match Self::open_db(path, cache) {
                Err(Error::CatalogLocked { .. }) if tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => break r?,
            }
        };
        let err = |e| Error::Catalog {
            path: path.into(),
            source: e,
        };
        Ok(SledCatalog {
            meta: db.open_tree("meta").map_err(err)?,
            tenants: db.open_tree("tenants").map_err(err)?,
            points: db.open_tree("points").map_err(err)?,
            pins: db.open_tree("pins").map_err(err)?,
            pruning: db.open_tree("pruning").map_err(err)?,
            scopes: db.open_tree("scopes").map_err(err)?,
            db,
            path: path.into(),
            commit: Mutex::new(()),
        })
    }

    fn open_db(path: &Path, cache: u64) -> Result<sled::Db> {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
                {
                    Error::CatalogLocked {
                        path: path.into(),
                        owner: String::new(),
                    }
                }
                _ => Error::Catalog {
                    path: path.into(),
                    source: e,
                },
            })
    }

    /// The object index of a tenant (trees `objects/<tenant>` and `packs/<tenant>`).
    pub fn object_index(&self, tenant: &str) -> Result<SledObjectIndex> {
        Ok(SledObjectIndex {
            db: self.db.clone(),
            objects: self
                .db
                .open_tree(format!("objects/{tenant}"))
                .map_err(|e| self.err(e))?,
            packs: self.db.open_tree(format!("packs/{tenant}")).map_err(|e| self.err(e))?,
            path: self.path.clone(),
        })
    }

    fn err(&self, e: sled::Error) -> Error {
        Error::Catalog {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Drops every pack record of a tenant (tests of crash recovery only).
    #[cfg(test)]
    pub(crate) fn clear_pack_records_for_test(&self, tenant: &str) -> usize {
        let t = self.db.open_tree(format!("packs/{tenant}")).unwrap();
        let n = t.len();
        t.clear().unwrap();
        n
    }

    fn encode<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = vec![CATALOG_VALUE_VERSION];
        serde_json::to_writer(&mut out, v).expect("serialisable");
        out
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T> {
        let bad = |reason: String| Error::CatalogRecord {
            path: self.path.clone(),
            what: what.into(),
            reason,
        };
        match bytes.split_first() {
            Some((&CATALOG_VALUE_VERSION, json)) => serde_json::from_slice(json).map_err(|e| bad(e.to_string())),
            Some((v, _)) => Err(bad(format!(
                "value version {v}, this build reads {CATALOG_VALUE_VERSION}: upgrade lifeline"
            ))),
            None => Err(bad("empty value".into())),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn point_key(tenant: &str, group: &str, seq: u64) -> Vec<u8> {
        let mut k = Self::group_prefix(tenant, group);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// `(group, seq)` of the keys of a points-shaped tree under `tenant`.
    fn seqs_in(&self, tree: &sled::Tree, tenant: &str) -> Result<Vec<(String, u64)>> {
        let mut prefix = tenant.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in tree.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(|e| self.err(e))?;
            let rest = &k[prefix.len()..];
            let parsed = rest
                .len()
                .checked_sub(9)
                .filter(|&g| rest[g] == 0)
                .and_then(|g| Some((std::str::from_utf8(&rest[..g]).ok()?, rest[g + 1..].try_into().ok()?)));
            match parsed {
                Some((group, seq)) => out.push((group.to_string(), u64::from_be_bytes(seq))),
                None => {
                    return Err(Error::CatalogRecord {
                        path: self.path.clone(),
                        what: "point key".into(),
                        reason: format!("malformed key {}", hex::encode(&k)),
                    });
                }
            }
        }
        Ok(out)
    }

    fn group_prefix(tenant: &str, group: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(tenant.len() + group.len() + 10);
        k.extend_from_slice(tenant.as_bytes());
        k.push(0);
        k.extend_from_slice(group.as_bytes());
        k.push(0);
        k
    }
}

/// Version byte of a pin value without an owner. Do not modify.
const PIN_VERSION: u8 = 1;
/// Version byte of a pin value that records who took it. Do not modify.
const PIN_VERSION_OWNED: u8 = 2;

/// A pin value: (until in unix ms, owner); `None` when unreadable.
fn decode_pin(v: &[u8]) -> Option<(i64, Option<String>)> {
    let until = i64::from_le_bytes(v.get(1..9)?.try_into().ok()?);
    match v[0] {
        PIN_VERSION if v.len() == 9 => Some((until, None)),
        PIN_VERSION_OWNED => Some((until, Some(std::str::from_utf8(&v[9..]).ok()?.to_string()))),
        _ => None,
    }
}

impl Catalog for SledCatalog {
    fn config(&self) -> Result<Option<RepositoryConfig>> {
        match self.meta.get("config").map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.decode("repository config", &v)?)),
            None => Ok(None),
        }
    }

    fn set_config(&self, config: &RepositoryConfig) -> Result<()> {
        self.meta
            .insert("config", Self::encode(config))
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
        match self.tenants.get(name).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.decode(&format!("tenant `{name}`"), &v)?)),
            None => Ok(None),
        }
    }

    fn tenants(&self) -> Result<Vec<String>> {
        self.tenants
            .iter()
            .keys()
            .map(|k| {
                let k = k.map_err(|e| self.err(e))?;
                Ok(String::from_utf8_lossy(&k).into_owned())
            })
            .collect()
    }

    fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool> {
        let r = self
            .tenants
            .compare_and_swap(
                tenant.name.as_bytes(),
                None as Option<&[u8]>,
                Some(Self::encode(tenant)),
            )
            .map_err(|e| self.err(e))?;
        self.flush()?;
        Ok(r.is_ok())
    }

    fn scopes(&self, tenant: &str) -> Result<Vec<String>> {
        let mut prefix = tenant.as_bytes().to_vec();
        prefix.push(0);
        self.scopes
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(|e| self.err(e))?;
                Ok(String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            })
            .collect()
    }

    fn create_scope(&self, scope: &ScopeRecord) -> Result<bool> {
        let mut key = scope.tenant.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(scope.group.as_bytes());
        let r = self
            .scopes
            .compare_and_swap(key, None as Option<&[u8]>, Some(Self::encode(scope)))
            .map_err(|e| self.err(e))?;
        self.flush()?;
        Ok(r.is_ok())
    }

    fn points(&self, tenant: &str, group: Option<&str>) -> Result<Vec<PointRecord>> {
        let prefix = match group {
            Some(g) => Self::group_prefix(tenant, g),
            None => {
                let mut p = tenant.as_bytes().to_vec();
                p.push(0);
                p
            }
        };
        self.points
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err(e))?;
                self.decode("point", &v)
            })
            .collect()
    }

    fn last_point(&self, tenant: &str, group: &str) -> Result<Option<PointRecord>> {
        match self.points.scan_prefix(Self::group_prefix(tenant, group)).next_back() {
            Some(kv) => {
                let (_, v) = kv.map_err(|e| self.err(e))?;
                Ok(Some(self.decode("point", &v)?))
            }
            None => Ok(None),
        }
    }

    fn object_index(&self, tenant: &str) -> Result<std::sync::Arc<dyn ObjectIndex>> {
        Ok(std::sync::Arc::new(SledCatalog::object_index(self, tenant)?))
    }

    fn commit_point(&self, point: &PointRecord) -> Result<()> {
        let h = &point.header;
        let _g = self.commit.lock().expect("commit lock");
        let last = self.last_point(&h.tenant, &h.group)?.map(|p| p.header.seq).unwrap_or(0);
        if h.seq != last + 1 {
            return Err(Error::CommitConflict {
                group: h.group.clone(),
                seq: h.seq,
            });
        }
        self.points
            .insert(Self::point_key(&h.tenant, &h.group, h.seq), Self::encode(point))
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn pin_owned(
        &self,
        tenant: &str,
        group: &str,
        seq: u64,
        holder: &str,
        until: chrono::DateTime<chrono::Utc>,
        owner: Option<&str>,
    ) -> Result<()> {
        let mut k = Self::point_key(tenant, group, seq);
        k.extend_from_slice(holder.as_bytes());
        let mut v = vec![if owner.is_some() {
            PIN_VERSION_OWNED
        } else {
            PIN_VERSION
        }];
        v.extend_from_slice(&until.timestamp_millis().to_le_bytes());
        v.extend_from_slice(owner.unwrap_or_default().as_bytes());
        self.pins.insert(k, v).map_err(|e| self.err(e))?;
        self.flush()
    }

    fn lease(&self, tenant: &str, group: &str, seq: u64, holder: &str) -> Result<Option<PinRecord>> {
        let mut k = Self::point_key(tenant, group, seq);
        k.extend_from_slice(holder.as_bytes());
        let Some(v) = self.pins.get(k).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        // An unreadable lease holds for a day and names no owner: only an
        // admin (or the repository's host) may release it.
        let (until, owner) = decode_pin(&v).unwrap_or((i64::MAX, Some(String::new())));
        Ok(Some(PinRecord {
            tenant: tenant.into(),
            group: group.into(),
            seq,
            holder: holder.into(),
            until: chrono::DateTime::from_timestamp_millis(until)
                .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(24)),
            owner,
        }))
    }

    fn unpin(&self, tenant: &str, group: &str, seq: u64, holder: &str) -> Result<()> {
        let mut k = Self::point_key(tenant, group, seq);
        k.extend_from_slice(holder.as_bytes());
        self.pins.remove(k).map_err(|e| self.err(e))?;
        self.flush()
    }

    fn pinned(
        &self,
        tenant: &str,
        group: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::BTreeSet<u64>> {
        let prefix = Self::group_prefix(tenant, group);
        let mut out = std::collections::BTreeSet::new();
        for kv in self.pins.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let (Some(seq), Some(until)) = (
                k.get(prefix.len()..prefix.len() + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes),
                decode_pin(&v).map(|(until, _)| until),
            ) else {
                // An unreadable lease keeps its point: the safe reading.
                if let Some(seq) = k.get(prefix.len()..prefix.len() + 8).and_then(|b| b.try_into().ok()) {
                    out.insert(u64::from_be_bytes(seq));
                }
                continue;
            };
            if until > now.timestamp_millis() {
                out.insert(seq);
            }
        }
        Ok(out)
    }

    fn all_pins(&self, tenant: &str) -> Result<Vec<PinRecord>> {
        let mut prefix = tenant.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.pins.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let rest = &k[prefix.len()..];
            let Some(g) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let (Ok(group), Some(seq)) = (
                std::str::from_utf8(&rest[..g]),
                rest.get(g + 1..g + 9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes),
            ) else {
                continue;
            };
            let holder = String::from_utf8_lossy(&rest[g + 9..]).into_owned();
            let decoded = decode_pin(&v);
            let owner = decoded.as_ref().and_then(|(_, o)| o.clone());
            let until = decoded
                .and_then(|(until, _)| chrono::DateTime::from_timestamp_millis(until))
                // An unreadable lease keeps its point for a day: the safe reading.
                .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(24));
            out.push(PinRecord {
                tenant: tenant.into(),
                group: group.into(),
                seq,
                holder,
                until,
                owner,
            });
        }
        Ok(out)
    }

    fn check(&self) -> Result<()> {
        // A write meets sled's sticky error, if any (a flush with nothing pending
        // would not look). Only called after a failed write.
        self.meta
            .insert(b"health", chrono::Utc::now().timestamp().to_be_bytes().to_vec())
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn remove_points(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()> {
        let _g = self.commit.lock().expect("commit lock");
        let last = self.last_point(tenant, group)?.map(|p| p.header.seq).unwrap_or(0);
        if seqs.contains(&last) {
            return Err(Error::Refused {
                repository: self.path.display().to_string(),
                message: format!("point {last} is group `{group}`'s newest: it is never removed"),
            });
        }
        let keys: Vec<Vec<u8>> = seqs.iter().map(|s| Self::point_key(tenant, group, *s)).collect();
        (&self.points, &self.pruning)
            .transaction(|(points, pruning)| {
                for k in &keys {
                    points.remove(k.as_slice())?;
                    pruning.insert(k.as_slice(), &[][..])?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => self.err(e),
                sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
            })?;
        self.flush()
    }

    fn adopt_point(&self, point: &PointRecord) -> Result<()> {
        let h = &point.header;
        let _g = self.commit.lock().expect("commit lock");
        self.points
            .insert(Self::point_key(&h.tenant, &h.group, h.seq), Self::encode(point))
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn point_seqs(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        self.seqs_in(&self.points, tenant)
    }

    fn pruning(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        self.seqs_in(&self.pruning, tenant)
    }

    fn forget_pruned(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(Self::point_key(tenant, group, *seq));
        }
        self.pruning.apply_batch(batch).map_err(|e| self.err(e))?;
        self.flush()
    }
}

/// An object index value: version u8 | pack [16] | offset u64 | length u32 | kind u8.
fn encode_location(loc: &ObjectLocation) -> Vec<u8> {
    let mut v = Vec::with_capacity(30);
    v.push(CATALOG_VALUE_VERSION);
    v.extend_from_slice(&loc.pack.0);
    v.extend_from_slice(&loc.offset.to_le_bytes());
    v.extend_from_slice(&loc.len.to_le_bytes());
    v.push(loc.kind);
    v
}

/// Value of a pack entry whose file garbage collection is deleting (after the
/// version byte); a live pack's value is longer (count and bytes).
const DOOMED_PACK: u8 = b'D';

/// [`ObjectIndex`] over two sled trees. Values: version u8 | pack [16] |
/// offset u64 | length u32 | kind u8 (objects); version u8 | count u32 | bytes u64 (packs).
#[derive(Clone)]
pub struct SledObjectIndex {
    db: sled::Db,
    objects: sled::Tree,
    packs: sled::Tree,
    path: PathBuf,
}

impl SledObjectIndex {
    fn err(&self, e: sled::Error) -> Error {
        Error::Catalog {
            path: self.path.clone(),
            source: e,
        }
    }

    fn decode(&self, key: &[u8], v: &[u8]) -> Result<(ObjectId, ObjectLocation)> {
        let bad = || Error::CatalogRecord {
            path: self.path.clone(),
            what: format!("object index entry {}", hex::encode(key)),
            reason: "malformed".into(),
        };
        decode_location(key, v).ok_or_else(bad)
    }
}

/// An object index entry (key and value), checked: a damaged catalog value
/// must not make a read wrap around or allocate more than an object's size.
fn decode_location(key: &[u8], v: &[u8]) -> Option<(ObjectId, ObjectLocation)> {
    if v.len() != 30 || v[0] != CATALOG_VALUE_VERSION {
        return None;
    }
    let loc = ObjectLocation {
        pack: PackId(v[1..17].try_into().ok()?),
        offset: u64::from_le_bytes(v[17..25].try_into().ok()?),
        len: u32::from_le_bytes(v[25..29].try_into().ok()?),
        kind: v[29],
    };
    if loc.len as usize > MAX_OBJECT_LEN || loc.offset.checked_add(loc.len as u64).is_none() {
        return None;
    }
    Some((ObjectId(key.try_into().ok()?), loc))
}

impl ObjectIndex for SledObjectIndex {
    fn get(&self, id: &ObjectId) -> Result<Option<ObjectLocation>> {
        match self.objects.get(id.0).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.decode(&id.0, &v)?.1)),
            None => Ok(None),
        }
    }

    fn publish(&self, pack: PackId, entries: &[(ObjectId, ObjectLocation)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut bytes = 0u64;
        for (id, loc) in entries {
            batch.insert(&id.0, encode_location(loc));
            bytes += loc.len as u64;
        }
        self.objects.apply_batch(batch).map_err(|e| self.err(e))?;
        let mut p = vec![CATALOG_VALUE_VERSION];
        p.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        p.extend_from_slice(&bytes.to_le_bytes());
        self.packs.insert(pack.0, p).map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn has_pack(&self, pack: &PackId) -> Result<bool> {
        self.packs.contains_key(pack.0).map_err(|e| self.err(e))
    }

    fn load(&self, entries: &mut [(ObjectId, ObjectLocation)]) -> Result<()> {
        use rayon::prelude::*;
        entries.par_sort_by_key(|(id, _)| *id);
        let mut packs: std::collections::HashMap<PackId, (u32, u64)> = Default::default();
        for (_, loc) in entries.iter() {
            let p = packs.entry(loc.pack).or_default();
            p.0 += 1;
            p.1 += loc.len as u64;
        }
        // Small batches: sled's memory grows with the size of its batches
        // (4096 entries: 4x the peak RSS of 1024 in `lifeline bench --repair`).
        // Neither a flush every 256 batches nor writers on several cores
        // bounded it better: at 10 M objects sled's peak varied from 1.5 to
        // 8 GB with how fast it was written (see README, "Catalog cache scale").
        for part in entries.chunks(1024) {
            let mut batch = sled::Batch::default();
            for (id, loc) in part {
                batch.insert(&id.0, encode_location(loc));
            }
            self.objects.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        let mut batch = sled::Batch::default();
        for (pack, (count, bytes)) in packs {
            let mut p = vec![CATALOG_VALUE_VERSION];
            p.extend_from_slice(&count.to_le_bytes());
            p.extend_from_slice(&bytes.to_le_bytes());
            batch.insert(&pack.0, p);
        }
        self.packs.apply_batch(batch).map_err(|e| self.err(e))
    }

    fn relocate(
        &self,
        pack: PackId,
        entries: &[(ObjectId, ObjectLocation)],
        from: &[PackId],
        doom: &[PackId],
    ) -> Result<()> {
        let bytes: u64 = entries.iter().map(|(_, l)| l.len as u64).sum();
        let mut record = vec![CATALOG_VALUE_VERSION];
        record.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        record.extend_from_slice(&bytes.to_le_bytes());
        (&self.objects, &self.packs)
            .transaction(|(objects, packs)| {
                for (id, loc) in entries {
                    let still_there = objects
                        .get(id.0)?
                        .is_some_and(|v| v.len() == 30 && from.iter().any(|p| v[1..17] == p.0));
                    if still_there {
                        objects.insert(&id.0[..], encode_location(loc))?;
                    }
                }
                packs.insert(&pack.0[..], record.as_slice())?;
                for d in doom {
                    packs.insert(&d.0[..], &[CATALOG_VALUE_VERSION, DOOMED_PACK][..])?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => self.err(e),
                sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
            })?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        for kv in self.packs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if let (Ok(id), 13) = (<[u8; 16]>::try_from(k.as_ref()), v.len()) {
                out.push((PackId(id), u64::from_le_bytes(v[5..13].try_into().expect("8 bytes"))));
            }
        }
        Ok(out)
    }

    fn doom_pack(&self, pack: &PackId) -> Result<()> {
        self.packs
            .insert(pack.0, &[CATALOG_VALUE_VERSION, DOOMED_PACK][..])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn doomed_packs(&self) -> Result<Vec<PackId>> {
        let mut out = Vec::new();
        for kv in self.packs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if v.as_ref() == [CATALOG_VALUE_VERSION, DOOMED_PACK]
                && let Ok(id) = <[u8; 16]>::try_from(k.as_ref())
            {
                out.push(PackId(id));
            }
        }
        Ok(out)
    }

    fn forget_pack(&self, pack: &PackId) -> Result<()> {
        self.packs.remove(pack.0).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn remove_unsynced(&self, ids: &[ObjectId]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.0);
        }
        self.objects.apply_batch(batch).map_err(|e| self.err(e))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn for_each(&self, f: &mut dyn FnMut(ObjectId, ObjectLocation) -> Result<()>) -> Result<()> {
        for kv in self.objects.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let (id, loc) = self.decode(&k, &v)?;
            f(id, loc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Consistency, PointHeader};

    fn rec(group: &str, seq: u64) -> PointRecord {
        PointRecord {
            header: PointHeader {
                tenant: "t".into(),
                group: group.into(),
                seq,
                taken_at: chrono::Utc::now(),
                consistency: Consistency::Fuzzy,
                key_id: 1,
                roots: vec![],
            },
            nonce: String::new(),
            sealed_body: String::new(),
            committed_at: None,
        }
    }

    proptest::proptest! {
        #[test]
        fn object_index_entries_never_panic_and_never_wrap(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 30..34),
            mut v in proptest::collection::vec(proptest::prelude::any::<u8>(), 28..32),
        ) {
            if let Some(first) = v.first_mut() {
                *first = CATALOG_VALUE_VERSION;
            }
            if let Some((_, loc)) = decode_location(&key, &v) {
                proptest::prop_assert!(key.len() == 32 && v.len() == 30);
                proptest::prop_assert!(loc.len as usize <= MAX_OBJECT_LEN);
                proptest::prop_assert!(loc.offset.checked_add(loc.len as u64).is_some());
            }
        }
    }

    /// Leases of both value versions: who took one is kept, read back by
    /// `lease` and `all_pins`, and both hold their point.
    #[test]
    fn leases_record_their_owner() {
        let d = tempfile::tempdir().unwrap();
        let c = SledCatalog::open(d.path()).unwrap();
        let until = chrono::Utc::now() + chrono::Duration::hours(1);
        c.pin("t", "g", 1, "local-run", until).unwrap();
        c.pin_owned("t", "g", 2, "run-1", until, Some("agent:a@t")).unwrap();
        let l = c.lease("t", "g", 2, "run-1").unwrap().unwrap();
        assert_eq!(l.owner.as_deref(), Some("agent:a@t"));
        assert_eq!(l.until.timestamp_millis(), until.timestamp_millis());
        assert_eq!(c.lease("t", "g", 1, "local-run").unwrap().unwrap().owner, None);
        assert!(c.lease("t", "g", 2, "run-2").unwrap().is_none());
        let now = chrono::Utc::now();
        assert_eq!(c.pinned("t", "g", now).unwrap(), [1, 2].into());
        let mut all = c.all_pins("t").unwrap();
        all.sort_by_key(|p| p.seq);
        assert_eq!(
            all.iter().map(|p| p.owner.clone()).collect::<Vec<_>>(),
            [None, Some("agent:a@t".to_string())]
        );
        c.unpin("t", "g", 2, "run-1").unwrap();
        assert_eq!(c.pinned("t", "g", now).unwrap(), [1].into());
    }

    #[test]
    fn commit_order_and_durability() {
        let d = tempfile::tempdir().unwrap();
        {
            let c = SledCatalog::open(d.path()).unwrap();
            assert!(matches!(SledCatalog::open(d.path()), Err(Error::CatalogLocked { .. })));
            c.commit_point(&rec("a", 1)).unwrap();
            c.commit_point(&rec("a", 2)).unwrap();
            c.commit_point(&rec("ab", 1)).unwrap();
            assert!(matches!(
                c.commit_point(&rec("a", 2)),
                Err(Error::CommitConflict { .. })
            ));
            assert!(
                c.create_tenant(&TenantRecord {
                    name: "t".into(),
                    key_fingerprint: "f".into(),
                    created: "now".into()
                })
                .unwrap()
            );
            assert!(
                !c.create_tenant(&TenantRecord {
                    name: "t".into(),
                    key_fingerprint: "g".into(),
                    created: "now".into()
                })
                .unwrap()
            );
        }
        let c = SledCatalog::open(d.path()).unwrap();
        assert_eq!(c.points("t", Some("a")).unwrap().len(), 2);
        assert_eq!(c.points("t", None).unwrap().len(), 3);
        assert_eq!(c.last_point("t", "a").unwrap().unwrap().header.seq, 2);
        assert_eq!(c.tenant("t").unwrap().unwrap().key_fingerprint, "f");
    }
}
