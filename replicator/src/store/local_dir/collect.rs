//! Garbage collection of a local-directory or object-storage store: the scan
//! that plans a sweep (live and dead objects per pack, dead ids spilled to a
//! file) and the sweep that removes dead objects from the index and deletes
//! the packs left without a live one.

use std::collections::HashMap;
use std::io::ErrorKind;

use super::*;

/// What [`LocalDirStore::collect`] did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectReport {
    pub objects_live: u64,
    pub objects_removed: u64,
    /// Sealed bytes of the removed objects.
    pub bytes_removed: u64,
    /// Objects in packs younger than the grace period (kept, with everything
    /// they reference).
    pub objects_in_grace: u64,
    pub packs_deleted: u64,
    /// Disk space freed: the deleted pack files.
    pub bytes_reclaimed: u64,
    /// Bytes of removed objects still inside packs that hold live objects too
    /// (freed when a small pack is merged; larger packs are not repacked yet).
    pub bytes_in_shared_packs: u64,
}

impl CollectReport {
    /// Adds what another store's collection did (a tenant's stores, one
    /// report).
    pub fn add(&mut self, o: &CollectReport) {
        self.objects_live += o.objects_live;
        self.objects_removed += o.objects_removed;
        self.bytes_removed += o.bytes_removed;
        self.objects_in_grace += o.objects_in_grace;
        self.packs_deleted += o.packs_deleted;
        self.bytes_reclaimed += o.bytes_reclaimed;
        self.bytes_in_shared_packs += o.bytes_in_shared_packs;
    }
}

/// What the scan of a sweep found: per pack, live and dead objects. The dead
/// ids themselves are spilled to a file (32 bytes each), so memory does not
/// grow with the number of dead objects.
#[derive(Debug, Default)]
pub struct SweepPlan {
    report: CollectReport,
    /// Packs holding at least one object that stays.
    live_packs: std::collections::HashSet<PackId>,
    /// Packs holding dead objects: their sealed bytes.
    dead_bytes: HashMap<PackId, u64>,
}

impl Packs {
    /// Whether `pack` was written less than `grace` ago (a pack that cannot be
    /// dated counts as young: the safe reading).
    fn pack_is_young(&self, pack: &PackId, grace: std::time::Duration, now: std::time::SystemTime) -> bool {
        if grace.is_zero() {
            return false;
        }
        match self.pack_stat(pack) {
            Ok(Some((_, t))) => now.duration_since(t).unwrap_or_default() < grace,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Objects in packs younger than `grace` (garbage collection keeps them and
    /// everything they reference), and how many objects the index holds.
    pub fn young_objects(&self, grace: std::time::Duration) -> Result<(Vec<ObjectId>, u64)> {
        let now = std::time::SystemTime::now();
        let mut young: HashMap<PackId, bool> = HashMap::new();
        let mut out = Vec::new();
        let mut total = 0u64;
        self.index.for_each(&mut |id, loc| {
            total += 1;
            if *young
                .entry(loc.pack)
                .or_insert_with(|| self.pack_is_young(&loc.pack, grace, now))
            {
                out.push(id);
            }
            Ok(())
        })?;
        Ok((out, total))
    }

    /// Objects put but not yet published (an upload in progress).
    pub fn pending_ids(&self) -> Vec<ObjectId> {
        self.state.lock().expect("state").pending.keys().copied().collect()
    }

    /// The kind byte of an object (pending or published), or `None` when absent.
    pub fn kind_of(&self, id: &ObjectId) -> Result<Option<u8>> {
        if let Some((_, loc)) = self.state.lock().expect("state").pending.get(id) {
            return Ok(Some(loc.kind));
        }
        Ok(self.index.get(id)?.map(|l| l.kind))
    }

    /// A scratch file for a sweep's dead ids, already unlinked (nothing to
    /// clean up after a crash).
    pub fn spill_file(&self) -> Result<File> {
        let dir = match self.backend {
            Backend::Dir => self.dir.join("packs/tmp"),
            Backend::Objects { .. } => self.dir.clone(),
        };
        let path = dir.join(format!("gc-{}.tmp", PackId::random().to_hex()));
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("create {}", path.display()))?;
        let _ = fs::remove_file(&path);
        Ok(f)
    }

    /// Scans the index for a sweep: an object `live(id, kind)` rejects and not in a
    /// pack younger than `grace` is dead; its id is written to `spill`.
    pub fn plan_sweep(
        &self,
        live: &dyn Fn(&ObjectId, u8) -> bool,
        grace: std::time::Duration,
        spill: &mut dyn std::io::Write,
    ) -> Result<SweepPlan> {
        let now = std::time::SystemTime::now();
        let mut young: HashMap<PackId, bool> = HashMap::new();
        let mut plan = SweepPlan::default();
        self.index.for_each(&mut |id, loc| {
            if *young
                .entry(loc.pack)
                .or_insert_with(|| self.pack_is_young(&loc.pack, grace, now))
            {
                plan.report.objects_in_grace += 1;
                plan.live_packs.insert(loc.pack);
            } else if live(&id, loc.kind) {
                plan.report.objects_live += 1;
                plan.live_packs.insert(loc.pack);
            } else {
                plan.report.objects_removed += 1;
                plan.report.bytes_removed += loc.len as u64;
                *plan.dead_bytes.entry(loc.pack).or_default() += loc.len as u64;
                spill
                    .write_all(&id.0)
                    .map_err(|e| Error::io("write the garbage collection's scratch file", e))?;
            }
            Ok(())
        })?;
        Ok(plan)
    }

    /// Applies a sweep: removes the dead ids read from `dead` from the index
    /// (durably, in batches), except those `keep` now wants (objects a
    /// concurrent upload relies on), then deletes the pack files left with no
    /// object and their catalog entries. Dry, only counts. The caller must
    /// exclude writers that could make a dead object reachable meanwhile (see
    /// the `gc` module). Safe to interrupt: index entries go first, then files,
    /// then the packs' catalog entries; a rerun finishes the work.
    pub fn apply_sweep(
        &self,
        mut plan: SweepPlan,
        dead: &mut dyn std::io::Read,
        keep: &dyn Fn(&ObjectId) -> bool,
        dry_run: bool,
    ) -> Result<CollectReport> {
        const BATCH: usize = 256;
        let mut buf = vec![0u8; 32 * BATCH];
        loop {
            let n =
                read_full(dead, &mut buf).map_err(|e| Error::io("read the garbage collection's scratch file", e))?;
            let mut batch = Vec::with_capacity(BATCH);
            for raw in buf[..n - n % 32].chunks_exact(32) {
                let id = ObjectId(raw.try_into().expect("32 bytes"));
                if keep(&id) {
                    // Rescued: its pack stays, and it counts as live.
                    if let Some(loc) = self.index.get(&id)? {
                        plan.live_packs.insert(loc.pack);
                        plan.report.objects_removed -= 1;
                        plan.report.bytes_removed -= loc.len as u64;
                        plan.report.objects_live += 1;
                        if let Some(b) = plan.dead_bytes.get_mut(&loc.pack) {
                            *b -= loc.len as u64;
                        }
                    }
                } else {
                    batch.push(id);
                }
            }
            if !dry_run && !batch.is_empty() {
                self.index.remove_unsynced(&batch)?;
                self.footers.lock().expect("footers").packs.clear();
            }
            if n < buf.len() {
                break;
            }
        }
        let mut r = plan.report;
        let mut empty: Vec<PackId> = plan
            .dead_bytes
            .keys()
            .filter(|p| !plan.live_packs.contains(*p))
            .copied()
            .collect();
        if !dry_run {
            // The plan saw each object once, where it was then: a compaction
            // since may have moved live objects into a pack the plan saw only
            // dead ones in. A pack is deleted only if no index entry points
            // into it now (read from its footer; unreadable: kept).
            let mut still_used = Vec::new();
            for p in &empty {
                let used = match self.footer(p) {
                    Ok(entries) => entries
                        .iter()
                        .map(|(id, _)| self.index.get(id).map(|l| l.is_some_and(|l| l.pack == *p)))
                        .collect::<Result<Vec<bool>>>()?
                        .into_iter()
                        .any(|u| u),
                    Err(_) => self.pack_stat(p)?.is_some(),
                };
                if used {
                    still_used.push(*p);
                }
            }
            empty.retain(|p| !still_used.contains(p));
        }
        for (p, b) in &plan.dead_bytes {
            if plan.live_packs.contains(p) {
                r.bytes_in_shared_packs += b;
            }
        }
        for p in &empty {
            r.packs_deleted += 1;
            r.bytes_reclaimed += self.pack_stat(p)?.map(|(len, _)| len).unwrap_or(0);
        }
        if dry_run {
            return Ok(r);
        }
        // The removals and the doomed packs, durable together before any file
        // goes: a collection interrupted from here on is finished at the next
        // open (see `delete_doomed_packs`).
        for p in &empty {
            self.index.doom_pack(p)?;
        }
        self.index.flush()?;
        self.delete_packs(&empty)?;
        Ok(r)
    }

    /// Deletes pack files whose objects are no longer in the index (file, shard
    /// directory fsync, then the pack's catalog entry).
    pub(super) fn delete_packs(&self, packs: &[PackId]) -> Result<()> {
        self.small
            .lock()
            .expect("small packs")
            .retain(|(p, _)| !packs.contains(p));
        let mut shards = std::collections::BTreeSet::new();
        for p in packs {
            self.readers.lock().expect("readers").remove(p);
            self.footers.lock().expect("footers").forget(p);
            if let Backend::Objects {
                storage,
                prefix,
                segments,
            } = &self.backend
            {
                segments.forget(p);
                storage.delete(&pack_key(prefix, p))?;
                continue;
            }
            let path = self.pack_path(p);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("delete pack {}", path.display()), e)),
            }
            shards.insert(fsutil::parent_dir(&path));
        }
        for s in &shards {
            fsutil::fsync_dir(s)?;
        }
        for p in packs {
            self.index.forget_pack(p)?;
        }
        self.index.flush()
    }

    /// Finishes a garbage collection interrupted between its removals and the
    /// deletion of the packs they emptied.
    pub(super) fn delete_doomed_packs(&self) -> Result<()> {
        let doomed = self.index.doomed_packs()?;
        if !doomed.is_empty() {
            tracing::info!(
                packs = doomed.len(),
                "deleting packs an interrupted garbage collection emptied"
            );
            self.delete_packs(&doomed)?;
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
