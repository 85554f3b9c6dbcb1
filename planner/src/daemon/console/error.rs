//! The console's error: what keeps it from starting (credentials, TLS, the
//! address) or from recording an action on the planner's audit chain.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::auth::MIN_TOKEN;

/// Result with [`ConsoleError`].
pub type Result<T, E = ConsoleError> = std::result::Result<T, E>;

/// Everything that can keep the console from serving or from recording.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("read console token {}: {source}", path.display())]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: a console token is one line of at least {MIN_TOKEN} printable characters (e.g. `openssl rand -hex 32 > {}`)",
        path.display(),
        path.display()
    )]
    WeakToken { path: PathBuf },
    /// The tokens or client certificates the console was given cannot be used.
    #[error("console: {0}")]
    Credentials(#[source] Box<ConsoleError>),
    #[error(
        "the console would listen on {addr}, which other hosts reach, without authentication: set \
         http_token_file (and http_auditor_token_file) or http_tls with client certificates, or listen on \
         127.0.0.1"
    )]
    Unauthenticated { addr: SocketAddr },
    #[error("console over HTTPS (http_tls): set [tls] dir, with console.pem/.key and ca.pem")]
    NoTlsDir,
    #[error(
        "console over HTTPS: read {} (mint it with `lifeline certs new --ca-dir CADIR --out {} --console-san HOST`): {source}",
        path.display(),
        dir.display()
    )]
    ReadTlsFile {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `what`: the file or part of the TLS set-up (`ca.pem: not a CA certificate`).
    #[error("{what}: {source}")]
    Tls {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    #[error("the planner running in {} did not record the action: {why}", state_dir.display())]
    NotRecorded { state_dir: PathBuf, why: String },
    #[error("the console could not record the action on the audit chain within {secs} s: {source}")]
    RecordTimedOut {
        secs: u64,
        #[source]
        source: crate::run_catalog::CatalogError,
    },
    #[error("the planner in {}: {why}", state_dir.display())]
    PlannerRefused { state_dir: PathBuf, why: String },
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Catalog(#[from] crate::run_catalog::CatalogError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
}

impl ConsoleError {
    /// A TLS set-up error with what it was about, for `map_err`.
    pub(crate) fn tls<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> ConsoleError {
        move |e| ConsoleError::Tls {
            what,
            source: Box::new(e),
        }
    }
}
