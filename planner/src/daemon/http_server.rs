//! The daemon's one HTTP server loop, shared by `/metrics` (`--metrics`) and
//! the console (`--http`): an axum router served by hyper's HTTP/1, over TCP
//! or TLS, with bounds on what a client can hold.
//!
//! A client gets [`Limits::head_timeout`] to send its request head (and, over
//! TLS, to finish the handshake), of at most 8 KiB (hyper's smallest buffer):
//! past the time the connection is closed, past the size it is answered 431.
//! At most [`Limits::max_connections`] connections are served at once, the
//! next wait in the listen backlog, and a connection lives at most
//! [`Limits::connection_timeout`], so slow or hostile clients cannot pin the
//! daemon. Keep-alive is off: one request per connection. On shutdown the
//! listener closes at once, open connections get [`Limits::shutdown_grace`]
//! to finish their answer, and the rest are dropped.
//!
//! Over TLS with client certificates, each request carries the client
//! certificate's common name as a [`PeerIdentity`] extension.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The common name of the client certificate a request came with (`None`:
/// no certificate, or plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub Option<String>);

/// How long a client may take, and how much it may hold, before the server
/// gives up on it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The request head's maximum size; hyper refuses less than 8 KiB.
    pub max_head: usize,
    pub head_timeout: Duration,
    /// A connection's whole life: head, handling and writing the answer.
    pub connection_timeout: Duration,
    pub max_connections: usize,
    /// How long open connections may take to finish once shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// The metrics endpoint's: scrapes are short.
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(15),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// The console's: an event stream lives up to 5 minutes (then the
    /// browser reconnects), so a connection may live a little longer.
    pub fn console() -> Limits {
        Limits {
            connection_timeout: Duration::from_secs(330),
            ..Limits::default()
        }
    }
}

fn peer_identity(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> PeerIdentity {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|der| {
            let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
            let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
            Some(cn)
        });
    PeerIdentity(cn)
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes; see the module docs. `what` names the server in logs.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
    what: &'static str,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head)
        .keep_alive(false);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let plain = TowerToHyperService::new(router.clone());
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // At the cap, stop accepting: further clients wait in the backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: back off rather than spin.
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (http, watcher) = (http.clone(), graceful.watcher());
        match &tls {
            None => {
                let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), plain.clone()));
                connections.spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(limits.connection_timeout, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "{what}: connection failed"),
                        Err(_) => tracing::debug!("{what}: connection timed out"),
                    }
                });
            }
            Some(acceptor) => {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                connections.spawn(async move {
                    let _slot = slot;
                    let stream = match tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "{what}: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let service = TowerToHyperService::new(router.layer(axum::Extension(peer_identity(&stream))));
                    let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    match tokio::time::timeout(limits.connection_timeout, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "{what}: connection failed"),
                        Err(_) => tracing::debug!("{what}: connection timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("{what}: dropping connections still open at shutdown");
    }
    connections.shutdown().await;
}
