//! The replicator's error type. Every message names the object it is about and,
//! where there is one, the thing the operator should do next.

use std::io;
use std::path::PathBuf;

/// Result with the replicator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the data path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "{path} is not a Lifeline repository (no `lifeline-repo` marker): run `lifeline init --repo {path} --key-file KEYFILE` to create one, or check the path"
    )]
    NotARepository { path: PathBuf },

    #[error("{path} already holds a Lifeline repository; refusing to initialise it again")]
    AlreadyARepository { path: PathBuf },

    #[error("{path} is not empty; `lifeline init` wants a new or empty directory")]
    DirectoryNotEmpty { path: PathBuf },

    #[error(
        "repository {path} was written by a newer Lifeline (format {found}, this build reads up to {supported}): upgrade lifeline"
    )]
    UnsupportedFormat { path: PathBuf, found: u32, supported: u32 },

    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },

    #[error(
        "key file {key_file} does not match repository {repo} (key fingerprint {found}, the repository expects {expected}): use the key file given to `lifeline init` for this repository"
    )]
    WrongKey {
        key_file: PathBuf,
        repo: PathBuf,
        expected: String,
        found: String,
    },

    #[error("object {id} in {location} is damaged ({reason}): run `lifeline verify` to list the points it affects")]
    ObjectDamaged {
        id: String,
        location: String,
        reason: String,
    },

    #[error(
        "object {id} in {location} failed authentication (wrong key file, or the object was altered): run `lifeline verify --key-file KEYFILE`"
    )]
    ObjectAuthentication { id: String, location: String },

    #[error("object {id} is missing from {location}: run `lifeline verify` to list the points it affects")]
    ObjectMissing { id: String, location: String },

    #[error(
        "the catalog of repository {path} is in use by another process{owner} (only one process may own it): reach the repository through that process, or stop it first"
    )]
    CatalogLocked { path: PathBuf, owner: String },

    #[error(
        "the catalog of repository {repo} {problem}; nothing was changed. Its objects are the truth: run `lifeline repair --repo {repo}` to rebuild the catalog from them (it keeps the old catalog beside the new one)"
    )]
    CatalogDisagrees { repo: String, problem: String },

    #[error("{what} {location} is damaged ({reason}): {remedy}")]
    RepositoryObjectDamaged {
        what: String,
        location: String,
        reason: String,
        remedy: String,
    },

    #[error("catalog of repository {path}: {source}")]
    Catalog {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    #[error("catalog of repository {path}: {what} is undecodable ({reason})")]
    CatalogRecord {
        path: PathBuf,
        what: String,
        reason: String,
    },

    #[error(
        "repository {repo} has no tenant `{tenant}` (it has: {available}): pass --tenant NAME, or run `lifeline init` for a local repository"
    )]
    NoSuchTenant {
        repo: PathBuf,
        tenant: String,
        available: String,
    },

    #[error("group `{group}` has no recovery point{detail}")]
    NoPoint { group: String, detail: String },

    #[error("point {seq} of group `{group}` has no volume `{volume}` (it has: {available})")]
    NoSuchVolume {
        group: String,
        seq: u64,
        volume: String,
        available: String,
    },

    #[error("point {seq} of group `{group}` was committed concurrently; retry the backup")]
    CommitConflict { group: String, seq: u64 },

    /// Something ran concurrently (a garbage collection, another commit) and the
    /// cycle must be redone; `message` says what.
    #[error("{repository}: {message}")]
    Conflict { repository: String, message: String },

    #[error("volume {path} does not exist: check the --volume NAME=PATH argument")]
    VolumeNotFound { path: PathBuf },

    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error(
        "restore target {path} is too small: the volume needs {needed} bytes, {available} are available; choose a larger device or free space"
    )]
    TargetTooSmall { path: PathBuf, needed: u64, available: u64 },

    #[error(
        "restored volume `{volume}` at {path} does not match the point's volume hash (expected {expected}, got {actual}): the data is NOT a faithful copy; run `lifeline verify --key-file KEYFILE`"
    )]
    VolumeHashMismatch {
        volume: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{hook} hook `{command}` failed: {reason}")]
    Hook {
        hook: &'static str,
        command: String,
        reason: String,
    },

    #[error("interrupted; nothing was committed (the earlier points are intact)")]
    Interrupted,

    #[error("{op} {location}: {reason}; {fix}")]
    Storage {
        op: String,
        location: String,
        reason: String,
        fix: String,
    },

    #[error("{repository} refused the request: {message}")]
    Refused { repository: String, message: String },

    #[error("{repository} is unavailable: {message} (retry later)")]
    Unavailable { repository: String, message: String },

    #[error("a volume index is malformed ({0}): run `lifeline verify` to list the points affected")]
    MalformedIndex(String),

    /// One failure seen by several callers (readers waiting on one segment).
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),

    #[error("overlay directory {dir}: {reason}")]
    Overlay { dir: PathBuf, reason: String },

    #[error("mount directory {dir} {reason}")]
    MountDirectory { dir: PathBuf, reason: String },

    #[error("mount FUSE on {dir}: {source}; {fix}")]
    Mount {
        dir: PathBuf,
        #[source]
        source: io::Error,
        fix: String,
    },

    #[error(
        "{dir} is busy, still mounted: something uses its images (a loop mount of one: `umount` it first; `losetup -a` lists loop devices), then stop again"
    )]
    MountBusy { dir: PathBuf },
}

impl From<String> for Error {
    fn from(reason: String) -> Self {
        Error::MalformedIndex(reason)
    }
}

impl Error {
    /// True when the same request may succeed later (a receiver restarting, a cut
    /// link, a full disk being cleaned up).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::CommitConflict { .. } | Error::Conflict { .. } => true,
            Error::Io { source, .. } => source.raw_os_error() == Some(28),
            _ => false,
        }
    }

    /// Wraps an I/O error with what was being done to which path.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let mut context = context.into();
        if source.raw_os_error() == Some(28) {
            // ENOSPC: say what to do; the failed operation left no partial state.
            context.push_str(" (the file system is full: free space there and retry; nothing partial was kept)");
        }
        Error::Io { context, source }
    }
}

/// Attaches a context to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e.into()))
    }
}
