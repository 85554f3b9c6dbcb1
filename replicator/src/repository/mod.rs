//! A repository on a site: a chunk store per tenant plus a catalog.
//!
//! ```text
//! REPO/lifeline-repo              marker: "LIFELINE-REPOSITORY", format, repository id
//! REPO/catalog/                   sled catalog (config, tenants, points)
//! REPO/tenants/<tenant>/objects/  the tenant's sealed objects in packs (LocalDirStore)
//! REPO/tenants/<tenant>/groups/<group>/objects/  those of a group with its own dedup scope
//! ```
//! The marker is written last at init, so a crash during init leaves no
//! half-initialised repository that looks valid. Opening takes the catalog's
//! exclusive lock: one process owns a repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::catalog::{Catalog, RepositoryConfig, SledCatalog, TenantRecord};
use crate::crypto::{KeyFile, Keys};
use crate::error::{Error, IoContext, Result};
use crate::file_formats::{REPOSITORY_FORMAT, REPOSITORY_MARKER, REPOSITORY_MARKER_FILE};
use crate::fsutil;
use crate::object_id::ObjectId;
use crate::point::{MAX_CLOCK_SKEW, PointRecord, check_name};
use crate::record_object;
use crate::store::{ChunkStore, LocalDirStorage, LocalDirStore, ObjectStorage, S3Location, S3Settings, S3Storage};

mod compare;
mod s3;
mod scope;

pub use compare::Comparison;
pub(crate) use scope::{objects_prefix, store_name};

pub use s3::{OWNER_KEY, OwnerLease, S3Context, s3_cache_dir, set_s3_context};
use s3::{S3Place, require_state_dir, state_dir_of_cache};
pub(crate) use s3::{cache_owner_id, s3_context, take_lease};

/// File a serving process writes in the repository to say who owns it.
pub const OWNER_FILE: &str = "owner";

/// Records that this process serves the repository at `url` (removed on drop).
pub struct OwnerNote(Option<PathBuf>);

/// The local directory of a repository: itself, or an S3 repository's cache.
fn local_dir_of(repo: &Path) -> Option<PathBuf> {
    match repo.to_str().and_then(S3Location::parse) {
        None => Some(repo.to_path_buf()),
        Some(Ok(loc)) => s3_context().state_dir.map(|d| s3_cache_dir(&d, &loc)),
        Some(Err(_)) => None,
    }
}

impl OwnerNote {
    /// Writes `REPO/owner` (an S3 repository's: in its cache directory).
    pub fn write(repo: &Path, what: &str, url: &str) -> Result<OwnerNote> {
        let Some(dir) = local_dir_of(repo) else {
            return Ok(OwnerNote(None));
        };
        let p = dir.join(OWNER_FILE);
        let text = format!("pid {}\nserver {what}\nurl {url}\n", std::process::id());
        fsutil::write_atomic(&p, text.as_bytes())?;
        Ok(OwnerNote(Some(p)))
    }
}

impl Drop for OwnerNote {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

fn owner_note(repo: &Path) -> String {
    let Some(dir) = local_dir_of(repo) else {
        return String::new();
    };
    let Ok(text) = fs::read_to_string(dir.join(OWNER_FILE)) else {
        return String::new();
    };
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(str::trim))
            .unwrap_or("?")
            .to_string()
    };
    format!(
        " ({} PID {} serving {}: use --repo {} --tls-dir TLSDIR --identity ADMIN)",
        field("server "),
        field("pid "),
        field("url "),
        field("url ")
    )
}

/// The tenant of a local repository created by `lifeline init`.
pub const DEFAULT_TENANT: &str = "default";

/// An open repository, owned by this process.
pub struct Repository {
    /// The repository's directory; for an S3 repository, its cache directory.
    path: PathBuf,
    /// What the user named: the directory, or `s3://BUCKET/PREFIX`.
    name: PathBuf,
    s3: Option<S3Place>,
    config: RepositoryConfig,
    catalog: Arc<dyn Catalog>,
    /// Where the record objects (config, tenants, points) live.
    storage: Arc<dyn ObjectStorage>,
    /// One store per tenant per process: opening a store cleans its temp files.
    stores: Mutex<HashMap<String, Arc<LocalDirStore>>>,
    /// Serialises commits and prunes: a point object is written before the
    /// catalog records it, and a group's next seq is read in between.
    commit: Mutex<()>,
}

impl Repository {
    /// Creates a repository in a new or empty directory, with one tenant whose key
    /// fingerprint is recorded (only the fingerprint).
    pub fn init(path: &Path, keys: &Keys, tenant: &str) -> Result<Repository> {
        check_name("tenant", tenant)?;
        let repo = Self::create_empty(path)?;
        repo.create_tenant(tenant, keys)?;
        Ok(repo)
    }

    /// Opens the repository at `path` (a directory or `s3://…`), or creates an
    /// empty one there when there is none (a receiver's).
    pub fn open_or_create(path: &Path) -> Result<Repository> {
        if path.to_str().and_then(S3Location::parse).is_some() {
            return match Self::open(path) {
                Err(Error::NotARepository { .. }) => Self::create_empty(path),
                r => r,
            };
        }
        if path.join(REPOSITORY_MARKER_FILE).exists() {
            Self::open(path)
        } else {
            Self::create_empty(path)
        }
    }

    /// Creates a repository without tenants (a receiver's: tenants arrive with
    /// their first authorised session).
    pub fn create_empty(path: &Path) -> Result<Repository> {
        if let Some(location) = path.to_str().and_then(S3Location::parse) {
            let ctx = s3_context();
            return Self::create_empty_s3(&location?, &ctx.settings, &require_state_dir(&ctx, path)?);
        }
        if path.join(REPOSITORY_MARKER_FILE).exists() {
            return Err(Error::AlreadyARepository { path: path.into() });
        }
        if path.exists() {
            let leftovers = fs::read_dir(path)
                .ctx(|| format!("read {}", path.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| {
                    !matches!(
                        e.file_name().to_str(),
                        Some("catalog" | "tenants" | "meta" | OWNER_FILE)
                    )
                })
                .count();
            if leftovers > 0 {
                return Err(Error::DirectoryNotEmpty { path: path.into() });
            }
        }
        fs::create_dir_all(path).ctx(|| format!("create repository directory {}", path.display()))?;
        let catalog = SledCatalog::open(&path.join("catalog"))?;
        let mut id = [0u8; 16];
        fsutil::random_bytes(&mut id);
        let config = RepositoryConfig {
            format: REPOSITORY_FORMAT,
            id: hex::encode(id),
            created: chrono::Utc::now().to_rfc3339(),
        };
        catalog.set_config(&config)?;
        let storage: Arc<dyn ObjectStorage> = Arc::new(LocalDirStorage::new(path));
        storage.replace(record_object::CONFIG_KEY, &record_object::encode_config(&config))?;
        let repo = Repository::assemble(path, config, catalog, storage);
        fsutil::write_atomic(
            &path.join(REPOSITORY_MARKER_FILE),
            marker_text(&repo.config.id).as_bytes(),
        )?;
        fsutil::fsync_dir(&fsutil::parent_dir(path))?;
        Ok(repo)
    }

    /// What `lifeline repair --repo` takes to repair this repository.
    fn repair_target(&self) -> String {
        match &self.s3 {
            None => self.name.display().to_string(),
            Some(_) => format!(
                "{} --state-dir {}",
                self.name.display(),
                state_dir_of_cache(&self.path).display()
            ),
        }
    }

    /// What the user named: the directory or `s3://BUCKET/PREFIX`.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Where the repository lives in S3, if it does.
    pub fn s3_location(&self) -> Option<&S3Location> {
        self.s3.as_ref().map(|s| &s.location)
    }

    fn assemble(path: &Path, config: RepositoryConfig, catalog: SledCatalog, storage: Arc<dyn ObjectStorage>) -> Self {
        Repository {
            path: path.into(),
            name: path.into(),
            s3: None,
            config,
            catalog: Arc::new(catalog),
            storage,
            stores: Mutex::new(HashMap::new()),
            commit: Mutex::new(()),
        }
    }

    /// Opens an existing repository (no key needed) and checks its catalog
    /// against its objects: a catalog that fails to open, was lost, or
    /// disagrees with the record objects is refused with an error naming
    /// `lifeline repair` ([`Error::CatalogDisagrees`]), never used with fewer
    /// points. A prune or a commit a crash interrupted is finished first.
    pub fn open(path: &Path) -> Result<Repository> {
        if let Some(location) = path.to_str().and_then(S3Location::parse) {
            let ctx = s3_context();
            return Self::open_s3(&location?, &ctx.settings, &require_state_dir(&ctx, path)?);
        }
        let repo = Self::open_unchecked(path)?;
        let comparison = repo.finish_interrupted()?;
        if !comparison.agrees() {
            return Err(Error::CatalogDisagrees {
                repo: path.display().to_string(),
                problem: comparison.summary(),
            });
        }
        Ok(repo)
    }

    /// Opens a repository without checking the catalog against the objects
    /// (`lifeline verify`, which reports every disagreement as damage). Still
    /// refuses a catalog that fails to open or holds no config.
    pub fn open_unchecked(path: &Path) -> Result<Repository> {
        if let Some(location) = path.to_str().and_then(S3Location::parse) {
            let ctx = s3_context();
            return Self::open_s3_unchecked(&location?, &ctx.settings, &require_state_dir(&ctx, path)?);
        }
        let marker = path.join(REPOSITORY_MARKER_FILE);
        let text = match fs::read_to_string(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotARepository { path: path.into() });
            }
            Err(e) => return Err(Error::io(format!("read {}", marker.display()), e)),
        };
        let mut lines = text.lines();
        if lines.next() != Some(REPOSITORY_MARKER) {
            return Err(Error::NotARepository { path: path.into() });
        }
        let format: u32 = lines
            .next()
            .and_then(|l| l.strip_prefix("format "))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::NotARepository { path: path.into() })?;
        if format > REPOSITORY_FORMAT {
            return Err(Error::UnsupportedFormat {
                path: path.into(),
                found: format,
                supported: REPOSITORY_FORMAT,
            });
        }
        prefetch_catalog(&path.join("catalog").join("db"));
        let marker_id = lines
            .next()
            .and_then(|l| l.strip_prefix("id "))
            .unwrap_or("")
            .to_string();
        let disagrees = |problem: String| Error::CatalogDisagrees {
            repo: path.display().to_string(),
            problem,
        };
        if !path.join("catalog").is_dir() {
            return Err(disagrees("is missing (no `catalog` directory)".into()));
        }
        let catalog = SledCatalog::open(&path.join("catalog")).map_err(|e| match e {
            Error::CatalogLocked { path: p, .. } => Error::CatalogLocked {
                path: p,
                owner: owner_note(path),
            },
            Error::Catalog { source, .. } => disagrees(format!("fails to open ({source})")),
            e => e,
        })?;
        let mut config = match catalog.config() {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(disagrees(
                    "is empty or was replaced (it holds no repository config)".into(),
                ));
            }
            Err(e) => return Err(disagrees(format!("is unreadable ({e})"))),
        };
        if config.id != marker_id {
            return Err(disagrees(format!(
                "belongs to repository {}, not to this one ({marker_id})",
                config.id
            )));
        }
        let storage: Arc<dyn ObjectStorage> = Arc::new(LocalDirStorage::new(path));
        if format < REPOSITORY_FORMAT {
            // Format 2 added block maps and delta segment nodes, format 3 the
            // record objects, format 4 the commit time of points, format 5
            // dedup scopes. Builds that know only an older format must refuse
            // the repository rather than call the new nodes damaged or prune
            // without deleting point objects. The record objects are written
            // from the catalog before the marker says format 3, so a crash
            // midway leaves a format 2 repository that upgrades again. The
            // catalog is ours (one owner), so no other process races this.
            config.format = REPOSITORY_FORMAT;
            upgrade_to_record_objects(&catalog, storage.as_ref(), &config)?;
            catalog.set_config(&config)?;
            fsutil::write_atomic(&marker, marker_text(&config.id).as_bytes())?;
            tracing::info!(
                repository = %path.display(),
                "repository format upgraded from {format} to {REPOSITORY_FORMAT}; \
                 builds that only read format {format} now refuse it"
            );
        }
        Ok(Repository::assemble(path, config, catalog, storage))
    }

    /// The storage of the record objects.
    pub fn storage(&self) -> &Arc<dyn ObjectStorage> {
        &self.storage
    }

    /// Commits a point whose objects are all durable: writes its point object
    /// (the truth), then records it in the catalog. Fails with
    /// `Error::CommitConflict` unless its seq is the group's last + 1.
    pub fn commit_point(&self, point: &PointRecord) -> Result<()> {
        let h = &point.header;
        check_name("tenant", &h.tenant)?;
        check_name("group", &h.group)?;
        let _g = self.commit.lock().expect("commit lock");
        let previous = self.catalog.last_point(&h.tenant, &h.group)?;
        let last = previous.as_ref().map(|p| p.header.seq).unwrap_or(0);
        if h.seq != last + 1 {
            return Err(Error::CommitConflict {
                group: h.group.clone(),
                seq: h.seq,
            });
        }
        let now = Utc::now();
        check_point_times(point, previous.as_ref(), now)?;
        // The repository's own clock, never earlier than the previous commit
        // (a clock stepped back must not reorder points for retention).
        let committed_at = previous
            .as_ref()
            .and_then(|p| p.committed_at)
            .map_or(now, |c| c.max(now));
        let point = &PointRecord {
            committed_at: Some(committed_at),
            ..point.clone()
        };
        let key = record_object::point_key(&h.tenant, &h.group, h.seq);
        let bytes = record_object::encode_point(point);
        if !self.storage.put_if_absent(&key, &bytes)? {
            // Only a leftover of a failed commit can be there (open adopts a
            // crashed one): the same point again is fine (whenever it was
            // committed), another is a conflict.
            let location = self.storage.locate(&key);
            let same = match self.storage.get(&key)? {
                Some(old) => record_object::decode_point(&key, &old, &location).is_ok_and(|old| {
                    PointRecord {
                        committed_at: None,
                        ..old
                    } == PointRecord {
                        committed_at: None,
                        ..point.clone()
                    }
                }),
                None => false,
            };
            if !same {
                return Err(Error::CommitConflict {
                    group: h.group.clone(),
                    seq: h.seq,
                });
            }
        }
        if let Err(e) = self.catalog.commit_point(point) {
            // Not committed: take the object back so the retry can commit anew
            // (if this fails too, the next open adopts the point, which is whole).
            let _ = self.storage.delete(&key);
            return Err(e);
        }
        Ok(())
    }

    /// Prunes a group: plans with [`crate::retention::plan`] (the newest
    /// point and the points leased by running drills and failovers are kept)
    /// and, unless `dry_run`, removes the points it does not keep. Returns
    /// every decision, newest first. A group without points is
    /// [`Error::NoPoint`].
    pub fn prune(
        &self,
        tenant: &str,
        group: &str,
        policy: &crate::RetentionPolicy,
        tz: &crate::Tz,
        dry_run: bool,
    ) -> Result<Vec<crate::Decision>> {
        let points = self.points(tenant, Some(group))?;
        if points.is_empty() {
            return Err(Error::NoPoint {
                group: group.into(),
                detail: format!(" in tenant `{tenant}` (see `lifeline points`)"),
            });
        }
        let now = Utc::now();
        let pinned = self.catalog.pinned(tenant, group, now)?;
        let decisions = crate::retention::plan(&points, policy, now, tz, &pinned);
        let remove: Vec<u64> = decisions.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
        if !dry_run && !remove.is_empty() {
            self.remove_points(tenant, group, &remove)?;
        }
        Ok(decisions)
    }

    /// Removes points of a group (prune): the catalog first, with a durable
    /// mark per point, then the point objects, then the marks (a crash in
    /// between is finished at the next open). Refuses the group's newest point.
    pub fn remove_points(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()> {
        let _g = self.commit.lock().expect("commit lock");
        self.catalog.remove_points(tenant, group, seqs)?;
        for seq in seqs {
            self.storage.delete(&record_object::point_key(tenant, group, *seq))?;
        }
        self.catalog.forget_pruned(tenant, group, seqs)
    }

    /// Deletes the point objects of prunes a crash interrupted, and records the
    /// point of a commit a crash interrupted between its point object and the
    /// catalog (the newest point object of a group, exactly one past the
    /// catalog's last, whose roots are present: what the commit would have
    /// recorded). Returns the comparison of the catalog with the objects
    /// that follows.
    fn finish_interrupted(&self) -> Result<Comparison> {
        for tenant in self.catalog.tenants()? {
            let mut by_group: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
            for (g, seq) in self.catalog.pruning(&tenant)? {
                by_group.entry(g).or_default().push(seq);
            }
            for (g, seqs) in by_group {
                tracing::info!(%tenant, group = %g, points = seqs.len(), "finishing a prune a crash interrupted");
                for seq in &seqs {
                    self.storage.delete(&record_object::point_key(&tenant, &g, *seq))?;
                }
                self.catalog.forget_pruned(&tenant, &g, &seqs)?;
            }
        }
        let comparison = self.compare_with_objects()?;
        let crashed = comparison.crashed_commits();
        if crashed.is_empty() {
            return Ok(comparison);
        }
        for (tenant, group, seq) in crashed {
            let key = record_object::point_key(&tenant, &group, seq);
            let Some(bytes) = self.storage.get(&key)? else { continue };
            let Ok(point) = record_object::decode_point(&key, &bytes, &self.storage.locate(&key)) else {
                continue; // left for the comparison to report
            };
            let roots: Vec<ObjectId> = point.header.roots.iter().filter_map(|r| r.0).collect();
            let store = self.local_group_store(&tenant, &group)?;
            if store.missing(&roots)?.iter().any(|m| *m) {
                continue;
            }
            tracing::warn!(%tenant, %group, seq, "recording point {seq}, whose commit a crash interrupted after its point object was durable");
            self.catalog.commit_point(&point)?;
        }
        self.compare_with_objects()
    }

    /// Compares the catalog's tenants and points with the record objects (keys
    /// only: contents are checked by `verify` and `repair`).
    pub fn compare_with_objects(&self) -> Result<Comparison> {
        // No commit or prune between the two listings: a commit writes its
        // point object before the catalog, so a snapshot without the lock
        // could catch one half-way.
        let _g = self.commit.lock().expect("commit lock");
        let mut c = Comparison::default();
        let in_catalog: BTreeSet<String> = self.catalog.tenants()?.into_iter().collect();
        let objects: BTreeSet<String> = self
            .storage
            .list(record_object::TENANTS_PREFIX)?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(record_object::TENANTS_PREFIX).map(str::to_string))
            .collect();
        c.tenants_without_object = in_catalog.difference(&objects).cloned().collect();
        c.tenants_not_in_catalog = objects.difference(&in_catalog).cloned().collect();
        let mut point_objects: BTreeSet<(String, String, u64)> = BTreeSet::new();
        for (k, _) in self.storage.list(record_object::POINTS_PREFIX)? {
            match record_object::parse_point_key(&k) {
                Some(p) => {
                    point_objects.insert(p);
                }
                None => c.stray_objects.push(self.storage.locate(&k)),
            }
        }
        let mut catalog_points: BTreeSet<(String, String, u64)> = BTreeSet::new();
        for t in &in_catalog {
            for (g, seq) in self.catalog.point_seqs(t)? {
                catalog_points.insert((t.clone(), g, seq));
            }
        }
        let scope_objects: BTreeSet<(String, String)> = self
            .storage
            .list(record_object::SCOPES_PREFIX)?
            .into_iter()
            .filter_map(|(k, _)| record_object::parse_scope_key(&k))
            .collect();
        let mut catalog_scopes: BTreeSet<(String, String)> = BTreeSet::new();
        for t in &in_catalog {
            catalog_scopes.extend(self.catalog.scopes(t)?.into_iter().map(|g| (t.clone(), g)));
        }
        c.scopes_without_object = catalog_scopes.difference(&scope_objects).cloned().collect();
        c.scopes_not_in_catalog = scope_objects.difference(&catalog_scopes).cloned().collect();
        c.objects_not_in_catalog = point_objects.difference(&catalog_points).cloned().collect();
        c.points_without_object = catalog_points.difference(&point_objects).cloned().collect();
        c.catalog_last = catalog_points.iter().fold(BTreeMap::new(), |mut m, (t, g, s)| {
            m.insert((t.clone(), g.clone()), *s);
            m
        });
        Ok(c)
    }

    /// The point objects of a tenant (the truth GC marks from), each decoded
    /// and checked, or the error saying which one is damaged.
    pub fn point_objects(&self, tenant: &str) -> Result<Vec<std::result::Result<PointRecord, Error>>> {
        // A prune between the listing and a read would look like damage.
        let _g = self.commit.lock().expect("commit lock");
        let mut out = Vec::new();
        for (k, _) in self.storage.list(&record_object::tenant_points_prefix(tenant))? {
            let loc = self.storage.locate(&k);
            out.push(match self.storage.get(&k)? {
                Some(b) => record_object::decode_point(&k, &b, &loc),
                None => Err(Error::ObjectMissing {
                    id: k.clone(),
                    location: loc,
                }),
            });
        }
        Ok(out)
    }

    /// Creates a tenant's namespace. Fails if it exists with another key.
    pub fn create_tenant(&self, tenant: &str, keys: &Keys) -> Result<()> {
        let rec = TenantRecord {
            name: tenant.into(),
            key_fingerprint: keys.fingerprint_hex(),
            created: chrono::Utc::now().to_rfc3339(),
        };
        self.create_tenant_record(&rec)
    }

    /// Creates a tenant's namespace from its record (a receiver knows only the
    /// key's fingerprint). Fails if it exists with another fingerprint.
    pub fn create_tenant_record(&self, rec: &TenantRecord) -> Result<()> {
        let tenant = rec.name.as_str();
        check_name("tenant", tenant)?;
        if self.catalog.tenant(tenant)?.is_none() {
            if self.s3.is_none() {
                LocalDirStore::create(&self.path.join(objects_prefix(tenant, None)))?;
            }
            // The object first: a crash before the catalog records the tenant
            // leaves an object the next creation finds (same key: no change).
            let key = record_object::tenant_key(tenant);
            if !self.storage.put_if_absent(&key, &record_object::encode_tenant(rec))? {
                let loc = self.storage.locate(&key);
                let existing: TenantRecord = record_object::decode(
                    record_object::RecordKind::Tenant,
                    &self.storage.get(&key)?.unwrap_or_default(),
                    &loc,
                )?;
                if existing.key_fingerprint != rec.key_fingerprint {
                    return Err(Error::WrongKey {
                        key_file: PathBuf::from("(given key)"),
                        repo: self.name.clone(),
                        expected: existing.key_fingerprint,
                        found: rec.key_fingerprint.clone(),
                    });
                }
            }
        }
        if !self.catalog.create_tenant(rec)? {
            let existing = self.catalog.tenant(tenant)?.expect("exists");
            if existing.key_fingerprint != rec.key_fingerprint {
                return Err(Error::WrongKey {
                    key_file: PathBuf::from("(given key)"),
                    repo: self.name.clone(),
                    expected: existing.key_fingerprint,
                    found: rec.key_fingerprint.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that `key` is the tenant's key: a wrong key is refused before anything
    /// is read or written.
    pub fn check_key(&self, tenant: &str, key: &KeyFile) -> Result<Keys> {
        let keys = key.keys();
        let rec = self
            .catalog
            .tenant(tenant)?
            .ok_or_else(|| self.no_such_tenant(tenant))?;
        if rec.key_fingerprint != keys.fingerprint_hex() {
            return Err(Error::WrongKey {
                key_file: key.path().into(),
                repo: self.name.clone(),
                expected: rec.key_fingerprint,
                found: keys.fingerprint_hex(),
            });
        }
        Ok(keys)
    }

    fn no_such_tenant(&self, tenant: &str) -> Error {
        let available = self.catalog.tenants().map(|t| t.join(", ")).unwrap_or_default();
        Error::NoSuchTenant {
            repo: self.name.clone(),
            tenant: tenant.into(),
            available: if available.is_empty() { "none".into() } else { available },
        }
    }

    /// Opens a tenant's shared object store (removing stale temp files).
    pub fn store(&self, tenant: &str) -> Result<Arc<dyn ChunkStore>> {
        Ok(self.local_store(tenant)?)
    }

    /// [`store`](Self::store), as the local-directory store it is.
    pub(crate) fn local_store(&self, tenant: &str) -> Result<Arc<LocalDirStore>> {
        self.local_store_in(tenant, None)
    }

    /// The store of `scope` in `tenant`: the shared one (`None`) or a group's
    /// own (`Some(group)`).
    pub(crate) fn local_store_in(&self, tenant: &str, scope: Option<&str>) -> Result<Arc<LocalDirStore>> {
        check_name("tenant", tenant)?;
        if self.catalog.tenant(tenant)?.is_none() {
            return Err(self.no_such_tenant(tenant));
        }
        let name = store_name(tenant, scope);
        let mut stores = self.stores.lock().expect("stores");
        if let Some(s) = stores.get(&name) {
            return Ok(s.clone());
        }
        let prefix = objects_prefix(tenant, scope);
        let store = Arc::new(match &self.s3 {
            None => LocalDirStore::open(&self.path.join(&prefix), self.catalog.object_index(&name)?)?,
            Some(_) => LocalDirStore::open_objects(
                self.storage.clone(),
                &prefix,
                &self.path.join("scratch").join(match scope {
                    None => tenant.to_string(),
                    Some(g) => format!("{tenant}@groups/{g}"),
                }),
                self.catalog.object_index(&name)?,
            )?,
        });
        stores.insert(name, store.clone());
        Ok(store)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The repository's random id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Points of a group (or all groups), oldest first, from the catalog.
    pub fn points(&self, tenant: &str, group: Option<&str>) -> Result<Vec<PointRecord>> {
        self.catalog.points(tenant, group)
    }
}

/// Writes the record objects of a repository from its catalog (the upgrade
/// from format 2, whose records lived only there). Idempotent: existing
/// objects are kept.
fn upgrade_to_record_objects(
    catalog: &SledCatalog,
    storage: &dyn ObjectStorage,
    config: &RepositoryConfig,
) -> Result<()> {
    storage.replace(record_object::CONFIG_KEY, &record_object::encode_config(config))?;
    for t in catalog.tenants()? {
        if let Some(rec) = catalog.tenant(&t)? {
            storage.put_if_absent(&record_object::tenant_key(&t), &record_object::encode_tenant(&rec))?;
        }
        for p in catalog.points(&t, None)? {
            let h = &p.header;
            storage.put_if_absent(
                &record_object::point_key(&h.tenant, &h.group, h.seq),
                &record_object::encode_point(&p),
            )?;
        }
    }
    Ok(())
}

/// The marker file's content for repository `id`, in this build's format.
fn marker_text(id: &str) -> String {
    format!("{REPOSITORY_MARKER}\nformat {REPOSITORY_FORMAT}\nid {id}\n")
}

/// Asks the kernel to read a catalog of up to 256 MiB ahead, in one large
/// read: on a cold cache (the first restore after a disaster) its object index
/// is otherwise paged in by thousands of small synchronous reads.
fn prefetch_catalog(db: &Path) {
    const LIMIT: u64 = 256 << 20;
    if let Ok(f) = fs::File::open(db)
        && let Ok(m) = f.metadata()
        && m.len() <= LIMIT
    {
        // Advice only: an error changes nothing but speed.
        let _ = rustix::fs::fadvise(&f, 0, std::num::NonZeroU64::new(m.len()), rustix::fs::Advice::WillNeed);
    }
}

/// What a repository checks of a point's times and roots before it commits
/// it: a point has at least one volume; its `taken_at` is no later than the
/// committing clock plus [`MAX_CLOCK_SKEW`] and no earlier than the group's
/// previous point. An agent (compromised or with a wrong clock) cannot date a
/// point into the future to make retention drop the genuine history, nor
/// before the previous one to reorder it.
fn check_point_times(point: &PointRecord, previous: Option<&PointRecord>, now: DateTime<Utc>) -> Result<()> {
    let h = &point.header;
    let refuse = |reason: String| Error::Invalid {
        what: "point",
        value: format!("point {} of group `{}`", h.seq, h.group),
        reason,
    };
    if h.roots.is_empty() {
        return Err(refuse("it has no volumes (no roots)".into()));
    }
    if h.taken_at > now + MAX_CLOCK_SKEW {
        return Err(refuse(format!(
            "its taken_at {} is {} s ahead of this host's clock ({}), more than the {} s skew allowed: \
             fix the agent host's clock (NTP)",
            h.taken_at.to_rfc3339(),
            (h.taken_at - now).num_seconds(),
            now.to_rfc3339(),
            MAX_CLOCK_SKEW.num_seconds()
        )));
    }
    if let Some(p) = previous
        && h.taken_at < p.header.taken_at
    {
        return Err(refuse(format!(
            "its taken_at {} is earlier than point {}'s ({}): fix the agent host's clock (NTP)",
            h.taken_at.to_rfc3339(),
            p.header.seq,
            p.header.taken_at.to_rfc3339()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_is_upgraded_at_open_and_newer_formats_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("repo");
        let repo = Repository::create_empty(&path).unwrap();
        let id = repo.config.id.clone();
        // As a format 1 build left it.
        let mut config = repo.config.clone();
        config.format = 1;
        repo.catalog.set_config(&config).unwrap();
        drop(repo);
        let marker = path.join(REPOSITORY_MARKER_FILE);
        fs::write(&marker, format!("{REPOSITORY_MARKER}\nformat 1\nid {id}\n")).unwrap();
        let repo = Repository::open(&path).unwrap();
        assert_eq!(repo.config.format, REPOSITORY_FORMAT);
        assert_eq!(repo.catalog.config().unwrap().unwrap().format, REPOSITORY_FORMAT);
        drop(repo);
        let text = fs::read_to_string(&marker).unwrap();
        assert!(text.contains(&format!("format {REPOSITORY_FORMAT}\n")), "{text}");
        assert!(text.contains(&id), "{text}");
        // A newer format than this build reads is refused, naming both.
        fs::write(&marker, format!("{REPOSITORY_MARKER}\nformat 99\nid {id}\n")).unwrap();
        match Repository::open(&path) {
            Err(Error::UnsupportedFormat {
                found: 99, supported, ..
            }) => assert_eq!(supported, REPOSITORY_FORMAT),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a format 99 repository"),
        }
    }
}
