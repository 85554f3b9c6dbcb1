//! Starting the console: its credentials, the address check (no
//! unauthenticated console on an address other hosts reach), the listener,
//! the announcement (`console on http://HOST:PORT/`) and the server task.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;

use super::error::{ConsoleError, Result};
use super::{Auth, Console, ConsoleBackend, auth};
use crate::config::DaemonOptions;
use crate::daemon::feed::Feed;
use crate::daemon::http_server::{Limits, serve_router};
use crate::daemon::metrics::DaemonMetrics;

/// Binds the console on `addr` and serves it on `rt` until `shutdown`
/// (over HTTPS with `options.http_tls`, from the TLS directory `tls_dir`);
/// prints where (a JSON event too with `json`). Errors before anything is
/// served: unreadable tokens or certificates, an address it cannot bind, a
/// non-loopback address without authentication.
#[allow(clippy::too_many_arguments)]
pub fn start(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    options: &DaemonOptions,
    tls_dir: Option<&std::path::Path>,
    backend: Arc<dyn ConsoleBackend>,
    feed: Arc<Feed>,
    metrics: Arc<DaemonMetrics>,
    json: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let auth = Auth::from_files(
        options.http_token_file.as_deref(),
        options.http_auditor_token_file.as_deref(),
        options.http_tls,
    )
    .map_err(|e| ConsoleError::Credentials(Box::new(e)))?;
    let tls = match (options.http_tls, tls_dir) {
        (false, _) => None,
        (true, Some(dir)) => Some(super::tls::acceptor(dir)?),
        (true, None) => return Err(ConsoleError::NoTlsDir),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(crate::io_error::doing(format!("console: listen on {addr}")))?;
    let local = listener.local_addr()?;
    auth::check_bind(local, &auth)?;
    let mut console = Console::new(backend, feed, auth);
    console.metrics = Some(metrics);
    let router = super::router(Arc::new(console));
    let url = format!("{}://{local}/", if tls.is_some() { "https" } else { "http" });
    println!("console on {url}");
    if json {
        println!("{}", serde_json::json!({"event": "console", "url": url}));
    }
    std::io::stdout().flush()?;
    Ok(rt.spawn(serve_router(
        listener,
        router,
        tls,
        shutdown,
        Limits::console(),
        "console",
    )))
}
