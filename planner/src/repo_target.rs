//! `--repo` names a local directory or a receiver (`https://HOST:PORT`); this opens
//! either as a tenant's repository for backup, restore and points.

use std::path::Path;

use lifeline_replicator::{DEFAULT_TENANT, KeyFile, Keys, Repository, TenantRepository};
use lifeline_service::{RemoteRepository, ServiceError, TlsDir};

/// Result with [`RepoTargetError`].
pub type Result<T, E = RepoTargetError> = std::result::Result<T, E>;

/// Why a repository could not be reached or a value for it not read.
#[derive(Debug, thiserror::Error)]
pub enum RepoTargetError {
    #[error(
        "--repo {url} is a receiver: pass --tls-dir TLSDIR and --identity NAME (or set [tls] dir and \
         identity, or admin, in the configuration given with --config)"
    )]
    ReceiverNeedsTls { url: String },
    #[error("`{url}`: receivers speak TLS only; use https://")]
    PlainHttp { url: String },
    #[error("open a session with {url} as `{identity}`: {source}")]
    Session {
        url: String,
        identity: String,
        #[source]
        source: Box<ServiceError>,
    },
    /// A duration not in the one dialect; the text says which and why.
    #[error("{0}")]
    Duration(String),
    #[error("{0}")]
    Replicator(#[from] lifeline_replicator::Error),
}

/// How to reach a receiver when `--repo` is an https:// URL.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RemoteArgs {
    /// TLS directory (ca.pem and this host's identities), for an https:// --repo [default: [tls] dir of the configuration].
    #[arg(long, value_name = "TLSDIR")]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Identity to present (NAME.pem/.key in --tls-dir), for an https:// --repo [default: from the
    /// configuration: [tls] admin for prune, gc and verify; the group's agent for `agent`; else [tls] identity].
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
}

impl RemoteArgs {
    /// Both flags, or an error that says what is missing.
    pub fn require(&self, url: &str) -> Result<(&std::path::Path, &str)> {
        match (&self.tls_dir, &self.identity) {
            (Some(t), Some(i)) => Ok((t, i)),
            _ => Err(RepoTargetError::ReceiverNeedsTls { url: url.to_string() }),
        }
    }
}

/// The passphrase for wrapped key files, from the environment.
pub fn passphrase() -> Option<String> {
    std::env::var("LIFELINE_PASSPHRASE").ok()
}

/// Loads a key file (unwrapping it with LIFELINE_PASSPHRASE when needed).
pub fn load_key(path: &Path) -> Result<KeyFile> {
    Ok(KeyFile::load(path, passphrase().as_deref())?)
}

/// An opened repository.
pub enum RepoTarget {
    Local(Box<Repository>),
    Remote(Box<RemoteRepository>),
}

/// True when `--repo` is a receiver URL.
pub fn is_url(repo: &Path) -> bool {
    repo.to_str()
        .is_some_and(|s| s.starts_with("https://") || s.starts_with("http://"))
}

impl RepoTarget {
    /// Opens `repo` with the tenant's key: a local repository checks the key's
    /// fingerprint; a receiver checks it when the session opens.
    pub fn open(repo: &Path, remote: &RemoteArgs, key: &KeyFile) -> Result<(RepoTarget, Keys)> {
        let (target, keys) = Self::open_with(repo, remote, Some(key))?;
        Ok((target, keys.expect("a key was given")))
    }

    /// [`open`](Self::open) for tenant `tenant` of a local or s3:// repository
    /// (a receiver's tenant is the one in the client certificate).
    pub fn open_tenant(repo: &Path, remote: &RemoteArgs, key: &KeyFile, tenant: &str) -> Result<(RepoTarget, Keys)> {
        if is_url(repo) {
            return Self::open(repo, remote, key);
        }
        let r = Repository::open(repo)?;
        let keys = r.check_key(tenant, key)?;
        Ok((RepoTarget::Local(Box::new(r)), keys))
    }

    /// [`open`](Self::open) with an optional key (enough to list points).
    pub fn open_with(repo: &Path, remote: &RemoteArgs, key: Option<&KeyFile>) -> Result<(RepoTarget, Option<Keys>)> {
        if !is_url(repo) {
            let r = Repository::open(repo)?;
            let keys = key.map(|k| r.check_key(DEFAULT_TENANT, k)).transpose()?;
            return Ok((RepoTarget::Local(Box::new(r)), keys));
        }
        let url = repo.to_str().expect("utf-8 url");
        if url.starts_with("http://") {
            return Err(RepoTargetError::PlainHttp { url: url.to_string() });
        }
        let (tls_dir, identity) = remote.require(url)?;
        let keys = key.map(|k| k.keys());
        let r =
            RemoteRepository::connect_with(url, &TlsDir::new(tls_dir), identity, keys.as_ref()).map_err(|source| {
                RepoTargetError::Session {
                    url: url.to_string(),
                    identity: identity.to_string(),
                    source: Box::new(source),
                }
            })?;
        Ok((RepoTarget::Remote(Box::new(r)), keys))
    }

    /// The tenant's view.
    pub fn tenant(&self) -> Result<Box<dyn TenantRepository + '_>> {
        self.tenant_named(None)
    }

    /// The view of tenant `name` of a local repository (default: `default`); a
    /// receiver's tenant is the one in the client certificate.
    pub fn tenant_named(&self, name: Option<&str>) -> Result<Box<dyn TenantRepository + '_>> {
        Ok(match self {
            RepoTarget::Local(r) => Box::new(r.tenant(name.unwrap_or(DEFAULT_TENANT))?),
            RepoTarget::Remote(r) => Box::new(RemoteView(r)),
        })
    }
}

/// Borrowing adapter so both arms return the same boxed trait object.
struct RemoteView<'a>(&'a RemoteRepository);

impl TenantRepository for RemoteView<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn repository_id(&self) -> String {
        self.0.repository_id()
    }
    fn tenant(&self) -> &str {
        self.0.tenant()
    }
    fn store(&self, group: &str) -> lifeline_replicator::Result<std::sync::Arc<dyn lifeline_replicator::ChunkStore>> {
        self.0.store(group)
    }
    fn points(&self, group: Option<&str>) -> lifeline_replicator::Result<Vec<lifeline_replicator::PointRecord>> {
        self.0.points(group)
    }
    fn commit_point(
        &self,
        point: &lifeline_replicator::PointRecord,
        cycle: &lifeline_replicator::CycleReport,
    ) -> lifeline_replicator::Result<()> {
        self.0.commit_point(point, cycle)
    }
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: std::time::Duration) -> lifeline_replicator::Result<()> {
        self.0.pin(group, seq, holder, ttl)
    }
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> lifeline_replicator::Result<()> {
        self.0.unpin(group, seq, holder)
    }
}

/// Parses a duration in the one dialect ([`lifeline_replicator::units`]):
/// `5s`, `250ms`, `2m`, `1h30m`, `1d`, a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    lifeline_replicator::units::parse_duration(s).map_err(RepoTargetError::Duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap().as_secs(), 5);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
