//! A repository on a site: a chunk store per tenant plus a catalog.
//!
//! ```text
//! REPO/lifeline-repo              marker: "LIFELINE-REPOSITORY", format, repository id
//! REPO/catalog/                   sled catalog (config, tenants, points)
//! REPO/tenants/<tenant>/objects/  the tenant's sealed objects in packs (LocalDirStore)
//! ```
//! The marker is written last at init, so a crash during init leaves no
//! half-initialised repository that looks valid. Opening takes the catalog's
//! exclusive lock: one process owns a repository.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::catalog::{Catalog, RepositoryConfig, SledCatalog, TenantRecord};
use crate::crypto::{KeyFile, Keys};
use crate::error::{Error, IoContext, Result};
use crate::file_formats::{REPOSITORY_FORMAT, REPOSITORY_MARKER, REPOSITORY_MARKER_FILE};
use crate::fsutil;
use crate::object_id::ObjectId;
use crate::point::{PointRecord, check_name};
use crate::store::{ChunkStore, LocalDirStore};

/// File a serving process writes in the repository to say who owns it.
pub const OWNER_FILE: &str = "owner";

/// Records that this process serves the repository at `url` (removed on drop).
pub struct OwnerNote(PathBuf);

impl OwnerNote {
    /// Writes `REPO/owner`.
    pub fn write(repo: &Path, what: &str, url: &str) -> Result<OwnerNote> {
        let p = repo.join(OWNER_FILE);
        let text = format!("pid {}\nserver {what}\nurl {url}\n", std::process::id());
        fsutil::write_atomic(&p, text.as_bytes())?;
        Ok(OwnerNote(p))
    }
}

impl Drop for OwnerNote {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn owner_note(repo: &Path) -> String {
    let Ok(text) = fs::read_to_string(repo.join(OWNER_FILE)) else {
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
    path: PathBuf,
    config: RepositoryConfig,
    catalog: Arc<dyn Catalog>,
    /// One store per tenant per process: opening a store cleans its temp files.
    stores: Mutex<HashMap<String, Arc<LocalDirStore>>>,
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

    /// Creates a repository without tenants (a receiver's: tenants arrive with
    /// their first authorised session).
    pub fn create_empty(path: &Path) -> Result<Repository> {
        if path.join(REPOSITORY_MARKER_FILE).exists() {
            return Err(Error::AlreadyARepository { path: path.into() });
        }
        if path.exists() {
            let leftovers = fs::read_dir(path)
                .ctx(|| format!("read {}", path.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| !matches!(e.file_name().to_str(), Some("catalog" | "tenants" | OWNER_FILE)))
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
        let repo = Repository {
            path: path.into(),
            config,
            catalog: Arc::new(catalog),
            stores: Mutex::new(HashMap::new()),
        };
        fsutil::write_atomic(
            &path.join(REPOSITORY_MARKER_FILE),
            marker_text(&repo.config.id).as_bytes(),
        )?;
        fsutil::fsync_dir(&fsutil::parent_dir(path))?;
        Ok(repo)
    }

    /// Opens an existing repository (no key needed).
    pub fn open(path: &Path) -> Result<Repository> {
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
        let catalog = SledCatalog::open(&path.join("catalog")).map_err(|e| match e {
            Error::CatalogLocked { path: p, .. } => Error::CatalogLocked {
                path: p,
                owner: owner_note(path),
            },
            e => e,
        })?;
        let mut config = catalog.config()?.ok_or_else(|| Error::CatalogRecord {
            path: path.join("catalog"),
            what: "repository config".into(),
            reason: "missing (the catalog was lost or replaced)".into(),
        })?;
        if format < REPOSITORY_FORMAT {
            // Format 2 adds block maps and delta segment nodes: builds that only
            // know format 1 must refuse the repository rather than call those
            // nodes damaged (their `verify --repair` would drop them). Nothing
            // else changes, so the upgrade is the marker and the config. The
            // catalog is ours (one owner), so no other process races this.
            config.format = REPOSITORY_FORMAT;
            match catalog
                .set_config(&config)
                .and_then(|()| fsutil::write_atomic(&marker, marker_text(&config.id).as_bytes()))
            {
                Ok(()) => tracing::info!(
                    repository = %path.display(),
                    "repository format upgraded from {format} to {REPOSITORY_FORMAT} (block deltas); \
                     builds that only read format {format} now refuse it"
                ),
                Err(e) => {
                    tracing::warn!(repository = %path.display(), error = %e, "could not upgrade the repository format")
                }
            }
        }
        Ok(Repository {
            path: path.into(),
            config,
            catalog: Arc::new(catalog),
            stores: Mutex::new(HashMap::new()),
        })
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
            LocalDirStore::create(&self.objects_dir(tenant))?;
        }
        if !self.catalog.create_tenant(rec)? {
            let existing = self.catalog.tenant(tenant)?.expect("exists");
            if existing.key_fingerprint != rec.key_fingerprint {
                return Err(Error::WrongKey {
                    key_file: PathBuf::from("(given key)"),
                    repo: self.path.clone(),
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
                repo: self.path.clone(),
                expected: rec.key_fingerprint,
                found: keys.fingerprint_hex(),
            });
        }
        Ok(keys)
    }

    fn no_such_tenant(&self, tenant: &str) -> Error {
        let available = self.catalog.tenants().map(|t| t.join(", ")).unwrap_or_default();
        Error::NoSuchTenant {
            repo: self.path.clone(),
            tenant: tenant.into(),
            available: if available.is_empty() { "none".into() } else { available },
        }
    }

    /// Opens a tenant's object store (removing stale temp files).
    pub fn store(&self, tenant: &str) -> Result<Arc<dyn ChunkStore>> {
        Ok(self.local_store(tenant)?)
    }

    /// [`store`](Self::store), as the local-directory store it is.
    pub(crate) fn local_store(&self, tenant: &str) -> Result<Arc<LocalDirStore>> {
        check_name("tenant", tenant)?;
        if self.catalog.tenant(tenant)?.is_none() {
            return Err(self.no_such_tenant(tenant));
        }
        let mut stores = self.stores.lock().expect("stores");
        if let Some(s) = stores.get(tenant) {
            return Ok(s.clone());
        }
        let store = Arc::new(LocalDirStore::open(
            &self.objects_dir(tenant),
            self.catalog.object_index(tenant)?,
        )?);
        stores.insert(tenant.into(), store.clone());
        Ok(store)
    }

    fn objects_dir(&self, tenant: &str) -> PathBuf {
        self.path.join("tenants").join(tenant).join("objects")
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

    /// Points of a group (or all groups), oldest first.
    /// Removes points of a group (see [`Catalog::remove_points`]).
    pub fn remove_points(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()> {
        self.catalog.remove_points(tenant, group, seqs)
    }

    /// Objects of a tenant put but not yet durable (uploads in progress).
    pub fn pending_objects(&self, tenant: &str) -> Result<Vec<ObjectId>> {
        Ok(self.local_store(tenant)?.pending_ids())
    }

    pub fn points(&self, tenant: &str, group: Option<&str>) -> Result<Vec<PointRecord>> {
        self.catalog.points(tenant, group)
    }
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
