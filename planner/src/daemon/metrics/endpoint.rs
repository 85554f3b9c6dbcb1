//! The `/metrics` endpoint: an axum router on hyper's HTTP/1 server.
//!
//! `GET /metrics` (and `HEAD`) answers the registry rendered at that moment,
//! `GET /` a pointer to it, other paths 404 and other methods 405. One request
//! per connection: keep-alive is off, so the response says `connection: close`
//! and the server closes, which is what a scraper expects and what keeps a
//! connection's life bounded. A client gets 5 seconds to send its request
//! head, of at most 8 KiB (hyper's smallest buffer): past the time the
//! connection is closed, past the size it is answered 431. At most 64
//! connections are served at once, the next wait in the listen backlog, and a
//! connection lives at most 15 seconds, so slow or hostile clients cannot pin
//! the daemon. On shutdown the listener closes at once, open connections get a
//! second to finish their answer, and the rest are dropped: scrapes are short
//! and Prometheus retries. The loop is [`crate::daemon::http_server`]'s,
//! shared with the console.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::{CONTENT_TYPE, DaemonMetrics};

use crate::daemon::http_server::{Limits, serve_router};

/// Serves `metrics` over HTTP on `listener` until `shutdown` completes (see the
/// module docs). Tests bind `127.0.0.1:0` and pass the listener in.
pub async fn serve(listener: TcpListener, metrics: Arc<DaemonMetrics>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, metrics, shutdown, Limits::default()).await;
}

fn router(metrics: Arc<DaemonMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape).fallback(method_not_allowed))
        .route(
            "/",
            get(|| async { "Lifeline daemon\n\nPrometheus metrics: /metrics\n" }).fallback(method_not_allowed),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; the metrics are at /metrics\n") })
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<DaemonMetrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "only GET and HEAD are served\n",
    )
}

async fn serve_with(
    listener: TcpListener,
    metrics: Arc<DaemonMetrics>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    serve_router(listener, router(metrics), None, shutdown, limits, "metrics endpoint").await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    /// A server on 127.0.0.1:0 and the means to stop it.
    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(metrics: Arc<DaemonMetrics>, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            metrics,
            async {
                let _ = stopped.await;
            },
            limits,
        ));
        Server { addr, stop, task }
    }

    impl Server {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    /// Sends `request` as is and reads until the server closes.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
        read.await.expect("the server closes the connection").unwrap();
        String::from_utf8(response).unwrap()
    }

    /// The status line, the headers (lower-cased names) and the body.
    fn split_response(response: &str) -> (&str, BTreeMap<String, String>, &str) {
        let (head, body) = response.split_once("\r\n\r\n").expect("a complete response head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        (status, headers, body)
    }

    fn metrics() -> Arc<DaemonMetrics> {
        let m = DaemonMetrics::new();
        m.group_rpo_seconds.get_or_create(&super::super::group("db")).set(4.0);
        Arc::new(m)
    }

    #[tokio::test]
    async fn answers_heads_and_scrapes_with_the_text_format() {
        let metrics = metrics();
        let server = start(metrics.clone(), Limits::default()).await;
        let response = exchange(server.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (status, headers, body) = split_response(&response);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(headers["content-type"], CONTENT_TYPE);
        assert_eq!(headers["content-length"], body.len().to_string());
        assert_eq!(headers["connection"], "close");
        assert_eq!(body, metrics.render());

        let response = exchange(server.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        let (status, headers, body) = split_response(&response);
        assert_eq!((status, body), ("HTTP/1.1 200 OK", ""));
        assert_eq!(headers["content-length"], metrics.render().len().to_string());
        server.stop().await;
    }

    #[tokio::test]
    async fn answers_other_requests() {
        let server = start(Arc::new(DaemonMetrics::new()), Limits::default()).await;
        // hyper and axum's answers where they differ from the server this one
        // replaced: a request target that is not a path is routed by what the
        // URI parser makes of it, and header values may hold non-ASCII bytes
        // (RFC 9110's obs-text).
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"GET /metric HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1\r\nX-Bytes: \xff\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"GET /metrics HTTP/1.1\n\n", "HTTP/1.1 200 OK"),
        ];
        for (request, want) in cases {
            let response = exchange(server.addr, request).await;
            let (status, headers, body) = split_response(&response);
            assert_eq!(status, *want, "{}", String::from_utf8_lossy(request));
            assert_eq!(headers["content-length"], body.len().to_string());
        }
        let response = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(split_response(&response).2.contains("/metrics"));
        let response = exchange(server.addr, b"DELETE / HTTP/1.1\r\n\r\n").await;
        assert_eq!(split_response(&response).1["allow"], "GET, HEAD");
        server.stop().await;
    }

    #[tokio::test]
    async fn refuses_oversized_and_slow_requests() {
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(Arc::new(DaemonMetrics::new()), limits).await;

        // hyper answers an oversized head 431 (the server it replaced said 400).
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        big.resize(9 * 1024, b'a');
        let response = exchange(server.addr, &big).await;
        assert!(
            response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{response}"
        );

        // A head that fits only with its terminator past 8 KiB is too long too.
        let mut edge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        edge.resize(8 * 1024 - 2, b'a');
        edge.extend_from_slice(b"\r\n\r\n");
        let response = exchange(server.addr, &edge).await;
        assert!(
            response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{response}"
        );

        // A client that starts a request and stalls is dropped: hyper closes
        // the connection without an answer (the server it replaced said 408).
        let response = exchange(server.addr, b"GET /metr").await;
        assert!(response.is_empty(), "{response}");

        // A client that sends nothing at all ties up nothing once it times out,
        // and does not block others meanwhile.
        let idle = TcpStream::connect(server.addr).await.unwrap();
        let response = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        drop(idle);
        server.stop().await;
    }

    #[tokio::test]
    async fn at_the_connection_cap_the_next_client_waits() {
        let limits = Limits {
            max_connections: 1,
            head_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let server = start(Arc::new(DaemonMetrics::new()), limits).await;
        let t0 = std::time::Instant::now();
        let idle = TcpStream::connect(server.addr).await.unwrap();
        // Served once the idle one has timed out, not before.
        let response = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
        drop(idle);
        server.stop().await;
    }

    #[tokio::test]
    async fn stops_on_shutdown_with_connections_open() {
        let server = start(Arc::new(DaemonMetrics::new()), Limits::default()).await;
        let addr = server.addr;
        let _idle = TcpStream::connect(addr).await.unwrap();
        server.stop().await;
        // The listener is closed with the server.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    /// Any request head gets an answer (or, incomplete, a close), never a
    /// panic, and the server goes on serving.
    #[test]
    fn any_request_head_gets_an_answer() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = rt.block_on(start(Arc::new(DaemonMetrics::new()), limits));
        let addr = server.addr;
        let config = proptest::test_runner::Config {
            cases: 64,
            ..Default::default()
        };
        proptest::proptest!(config, |(head in proptest::collection::vec(proptest::num::u8::ANY, 0..512))| {
            let response = rt.block_on(async {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let mut request = head.clone();
                request.extend_from_slice(b"\r\n\r\n");
                // The server may close before reading it all.
                let _ = stream.write_all(&request).await;
                let _ = stream.shutdown().await;
                let mut response = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
                let _ = read.await.expect("the server closes the connection");
                response
            });
            let status = String::from_utf8_lossy(response.get(9..12).unwrap_or_default()).into_owned();
            proptest::prop_assert!(
                response.is_empty() || ["200", "400", "404", "405", "431"].contains(&status.as_str()),
                "{}", String::from_utf8_lossy(&response)
            );
        });
        let response = rt.block_on(exchange(addr, b"GET / HTTP/1.1\r\n\r\n"));
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        rt.block_on(server.stop());
    }
}
