//! `s3://` repositories: the process's S3 context, the local cache of a
//! bucket in the state directory, the owner lease, and creating and opening a
//! repository whose objects live in a bucket.

use super::*;

/// Where this process keeps the local caches of `s3://` repositories, and how
/// it reaches S3: set once by the CLI (from `--state-dir` and the `[s3]` table
/// of lifeline.toml) before it opens a repository.
#[derive(Debug, Clone, Default)]
pub struct S3Context {
    /// The state directory; a bucket's cache is `STATE/s3/BUCKET/PREFIX`.
    pub state_dir: Option<PathBuf>,
    pub settings: S3Settings,
}

static S3_CONTEXT: Mutex<Option<S3Context>> = Mutex::new(None);

/// Sets how `s3://` repositories are reached (see [`S3Context`]).
pub fn set_s3_context(ctx: S3Context) {
    *S3_CONTEXT.lock().expect("s3 context") = Some(ctx);
}

pub(crate) fn s3_context() -> S3Context {
    S3_CONTEXT.lock().expect("s3 context").clone().unwrap_or_default()
}

/// The key of an S3 repository's owner lease (see [`Repository::open_s3`]).
pub const OWNER_KEY: &str = "meta/owner";
/// File in an S3 repository's cache directory with this cache's owner id.
const CACHE_OWNER_FILE: &str = "owner-id";

/// Who owns an S3 repository (the object `meta/owner`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerLease {
    /// Random id of the owning cache (`STATE/s3/…/owner-id`).
    pub owner: String,
    pub host: String,
    pub cache: String,
    pub since: String,
}

/// An S3 repository's local side: the cache directory and its owner id.
pub(super) struct S3Place {
    pub(super) location: S3Location,
}

/// The cache directory of `location` under `state_dir`.
pub fn s3_cache_dir(state_dir: &Path, location: &S3Location) -> PathBuf {
    let d = state_dir.join("s3").join(&location.bucket);
    if location.prefix.is_empty() {
        d.join("_")
    } else {
        d.join("_").join(&location.prefix)
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Repository {
    /// `init` of an `s3://` repository, its cache under `state_dir`.
    pub fn init_s3(
        location: &S3Location,
        settings: &S3Settings,
        state_dir: &Path,
        keys: &Keys,
        tenant: &str,
    ) -> Result<Repository> {
        check_name("tenant", tenant)?;
        let repo = Self::create_empty_s3(location, settings, state_dir)?;
        repo.create_tenant(tenant, keys)?;
        Ok(repo)
    }

    /// Creates a repository in an empty bucket (or an unused prefix of one),
    /// with its cache under `state_dir`; this process becomes its owner.
    pub fn create_empty_s3(location: &S3Location, settings: &S3Settings, state_dir: &Path) -> Result<Repository> {
        let storage: Arc<dyn ObjectStorage> = Arc::new(S3Storage::new(location, settings)?);
        let url = PathBuf::from(location.url());
        if storage.get(record_object::CONFIG_KEY)?.is_some() {
            return Err(Error::AlreadyARepository { path: url });
        }
        if !storage.list("")?.is_empty() {
            return Err(Error::Invalid {
                what: "S3 repository",
                value: location.url(),
                reason: "the bucket prefix already holds objects; `lifeline init` wants an empty bucket or an unused \
                         prefix (s3://BUCKET/PREFIX)"
                    .into(),
            });
        }
        let cache = s3_cache_dir(state_dir, location);
        if cache.exists() {
            // A cache of an earlier repository at this URL (the bucket was
            // emptied): it describes nothing that exists now.
            fs::remove_dir_all(&cache).ctx(|| format!("remove the stale cache {}", cache.display()))?;
        }
        fs::create_dir_all(&cache).ctx(|| format!("create the repository cache {}", cache.display()))?;
        let owner = cache_owner_id(&cache)?;
        take_lease(storage.as_ref(), &owner, &cache)?;
        let catalog = SledCatalog::open(&cache.join("catalog"))?;
        let mut id = [0u8; 16];
        fsutil::random_bytes(&mut id);
        let config = RepositoryConfig {
            format: REPOSITORY_FORMAT,
            id: hex::encode(id),
            created: chrono::Utc::now().to_rfc3339(),
        };
        catalog.set_config(&config)?;
        // The config object last: it is what makes the prefix a repository.
        storage.replace(record_object::CONFIG_KEY, &record_object::encode_config(&config))?;
        let mut repo = Repository::assemble(&cache, config, catalog, storage);
        repo.name = url;
        repo.s3 = Some(S3Place {
            location: location.clone(),
        });
        Ok(repo)
    }

    /// Opens an `s3://` repository through its cache under `state_dir`, and
    /// checks the cache against the bucket as [`open`](Self::open) checks a
    /// catalog. One process owns a repository: the lease object `meta/owner`
    /// names the cache that owns it, and another cache is refused (Garage
    /// and older S3 stores have no conditional create, so the lease is
    /// checked at open rather than enforced by the store; `repair` takes a
    /// repository over deliberately).
    pub fn open_s3(location: &S3Location, settings: &S3Settings, state_dir: &Path) -> Result<Repository> {
        let repo = Self::open_s3_unchecked(location, settings, state_dir)?;
        let comparison = repo.finish_interrupted()?;
        if !comparison.agrees() {
            return Err(Error::CatalogDisagrees {
                repo: repo.repair_target(),
                problem: comparison.summary(),
            });
        }
        Ok(repo)
    }

    /// [`open_s3`](Self::open_s3) without comparing the cache with the objects.
    pub fn open_s3_unchecked(location: &S3Location, settings: &S3Settings, state_dir: &Path) -> Result<Repository> {
        let storage: Arc<dyn ObjectStorage> = Arc::new(S3Storage::new(location, settings)?);
        let url = location.url();
        let cache = s3_cache_dir(state_dir, location);
        let repair_target = format!("{url} --state-dir {}", state_dir.display());
        let disagrees = |problem: String| Error::CatalogDisagrees {
            repo: repair_target.clone(),
            problem,
        };
        let config_loc = storage.locate(record_object::CONFIG_KEY);
        let Some(bytes) = storage.get(record_object::CONFIG_KEY)? else {
            return Err(Error::NotARepository { path: url.into() });
        };
        let config: RepositoryConfig = record_object::decode(record_object::RecordKind::Config, &bytes, &config_loc)?;
        if config.format > REPOSITORY_FORMAT {
            return Err(Error::UnsupportedFormat {
                path: url.into(),
                found: config.format,
                supported: REPOSITORY_FORMAT,
            });
        }
        if !cache.join("catalog").is_dir() || !cache.join(CACHE_OWNER_FILE).is_file() {
            return Err(disagrees(format!(
                "has no local cache in {} (a new machine, or its state directory was lost)",
                cache.display()
            )));
        }
        let owner = cache_owner_id(&cache)?;
        check_lease(storage.as_ref(), &owner, &cache, &repair_target)?;
        let catalog = SledCatalog::open(&cache.join("catalog")).map_err(|e| match e {
            Error::Catalog { source, .. } => disagrees(format!("fails to open ({source})")),
            e => e,
        })?;
        match catalog.config() {
            Ok(Some(c)) if c.id == config.id => {}
            Ok(Some(c)) => {
                return Err(disagrees(format!(
                    "in {} belongs to repository {}, but the bucket holds repository {}",
                    cache.display(),
                    c.id,
                    config.id
                )));
            }
            Ok(None) => return Err(disagrees("is empty (it holds no repository config)".into())),
            Err(e) => return Err(disagrees(format!("is unreadable ({e})"))),
        }
        let mut config = config;
        if config.format < REPOSITORY_FORMAT {
            // Format 4 adds the commit time to point records: nothing to
            // rewrite, but builds that read only format 3 must refuse them.
            config.format = REPOSITORY_FORMAT;
            storage.replace(record_object::CONFIG_KEY, &record_object::encode_config(&config))?;
            catalog.set_config(&config)?;
        }
        let mut repo = Repository::assemble(&cache, config, catalog, storage);
        repo.name = url.into();
        repo.s3 = Some(S3Place {
            location: location.clone(),
        });
        Ok(repo)
    }
}

/// The state directory an S3 cache directory lies in.
pub(super) fn state_dir_of_cache(cache: &Path) -> PathBuf {
    cache
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "s3"))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache.to_path_buf())
}

pub(super) fn require_state_dir(ctx: &S3Context, repo: &Path) -> Result<PathBuf> {
    ctx.state_dir.clone().ok_or_else(|| Error::Invalid {
        what: "S3 repository",
        value: repo.display().to_string(),
        reason: "an s3:// repository keeps its cache in a state directory: give --state-dir DIR".into(),
    })
}

/// This cache's owner id (made on first use).
pub(crate) fn cache_owner_id(cache: &Path) -> Result<String> {
    let p = cache.join(CACHE_OWNER_FILE);
    match fs::read_to_string(&p) {
        Ok(t) if t.trim().len() == 32 => Ok(t.trim().to_string()),
        Ok(_) | Err(_) => {
            fs::create_dir_all(cache).ctx(|| format!("create {}", cache.display()))?;
            let mut id = [0u8; 16];
            fsutil::random_bytes(&mut id);
            let id = hex::encode(id);
            fsutil::write_atomic(&p, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
    }
}

/// Makes `owner` the owner of the S3 repository in `storage`.
pub(crate) fn take_lease(storage: &dyn ObjectStorage, owner: &str, cache: &Path) -> Result<()> {
    let lease = OwnerLease {
        owner: owner.into(),
        host: hostname(),
        cache: cache.display().to_string(),
        since: chrono::Utc::now().to_rfc3339(),
    };
    storage.replace(OWNER_KEY, &serde_json::to_vec_pretty(&lease).expect("json"))
}

/// Refuses unless the lease names `owner` (a repository without a lease, from
/// before leases, is taken).
pub(super) fn check_lease(storage: &dyn ObjectStorage, owner: &str, cache: &Path, repair_target: &str) -> Result<()> {
    let Some(bytes) = storage.get(OWNER_KEY)? else {
        return take_lease(storage, owner, cache);
    };
    let lease: OwnerLease = serde_json::from_slice(&bytes).map_err(|e| Error::RepositoryObjectDamaged {
        what: "owner lease".into(),
        location: storage.locate(OWNER_KEY),
        reason: e.to_string(),
        remedy: format!("take the repository over with `lifeline repair --repo {repair_target}`"),
    })?;
    if lease.owner == owner {
        return Ok(());
    }
    Err(Error::Conflict {
        repository: storage.describe(),
        message: format!(
            "owned by the cache {} on host {} since {} (one process writes a repository, and this cache is not \
             its owner). Reach the repository through its owner; if that machine is gone for good, take the \
             repository over with `lifeline repair --repo {repair_target}`",
            lease.cache, lease.host, lease.since
        ),
    })
}
