//! The workload's HTTP/1.1 face, hand-written on tokio (one request per
//! connection, `Connection: close`): `GET /health`, `GET /last-durable`,
//! `POST /pause[?lease=30s]`, `POST /resume` (GET is accepted too), each
//! answering JSON. And the blocking client that freeze / thaw hooks use
//! (`lifeline workload pause --addr ADDR`), so hooks need no curl.

use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::service::Workload;
use crate::error::{Result, TestbedError};
use crate::units::parse_duration;

/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;

fn response(code: u16, body: &str) -> String {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn error_body(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

async fn route(w: &Arc<Workload>, target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/health" => (200, json(&w.status())),
        "/last-durable" => {
            let st = w.status();
            let v = serde_json::json!({ "seq": st.durable_seq, "durable_at": st.durable_at });
            (200, v.to_string())
        }
        "/pause" => {
            let lease = match query.strip_prefix("lease=").map(parse_duration).transpose() {
                Ok(l) => l,
                Err(e) => return (400, error_body(&e.to_string())),
            };
            let w = w.clone();
            match tokio::task::spawn_blocking(move || w.pause(lease)).await {
                Ok(Ok(st)) => (200, json(&st)),
                Ok(Err(e)) => (500, error_body(&format!("fsync failed: {e}"))),
                Err(e) => (500, error_body(&e.to_string())),
            }
        }
        "/resume" => (200, json(&w.resume())),
        _ => (
            404,
            error_body("unknown path: use /health, /last-durable, /pause or /resume"),
        ),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("status serializes")
}

async fn serve_one(w: Arc<Workload>, stream: TcpStream) {
    let (r, mut wr) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut request_line = String::new();
    let answer = match reader.read_line(&mut request_line).await {
        Ok(n) if n > 0 && n < MAX_HEAD => {
            // Read the rest of the head (and ignore it): no request here has a body we need.
            let mut line = String::new();
            let mut total = n;
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        total += k;
                        if line == "\r\n" || line == "\n" || total > MAX_HEAD {
                            break;
                        }
                    }
                }
            }
            let mut parts = request_line.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("GET" | "POST"), Some(target)) => {
                    let (code, body) = route(&w, target).await;
                    response(code, &body)
                }
                _ => response(400, &error_body("expected `GET|POST PATH HTTP/1.1`")),
            }
        }
        _ => return,
    };
    let _ = wr.write_all(answer.as_bytes()).await;
    let _ = wr.shutdown().await;
}

/// Serves the workload's HTTP API on `listener` until `shutdown` resolves.
pub async fn serve_http(w: Arc<Workload>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                if let Ok((s, _)) = accepted {
                    tokio::spawn(serve_one(w.clone(), s));
                }
            }
        }
    }
}

/// A blocking `METHOD PATH` to the workload at `addr`; returns the status code
/// and body. Times out after 30 s (a pause fsyncs first).
pub fn http_call(addr: &str, method: &str, path: &str) -> Result<(u16, String)> {
    let ctx = |what: &str| format!("workload at {addr}: {what}");
    let sock = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| TestbedError::Invalid(format!("workload address `{addr}`: {e} (write HOST:PORT)")))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(10))
        .map_err(|e| TestbedError::io(ctx("connect"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| TestbedError::io(ctx("timeout"), e))?;
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| TestbedError::io(ctx("send"), e))?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| TestbedError::io(ctx("read the answer"), e))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| TestbedError::Invalid(ctx("answer without a head")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| TestbedError::Invalid(ctx(&format!("bad status line {head:?}"))))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::service::WorkloadOptions;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_api_pauses_resumes_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WorkloadOptions {
            size: 1 << 20,
            ring: 64 << 10,
            ballast: 0,
            ..WorkloadOptions::new(&dir.path().join("v.img"))
        };
        let w = Workload::open(opts).unwrap();
        w.tick().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(w.clone(), listener, async {
            let _ = stopped.await;
        }));
        let a = addr.clone();
        let (pause, health, resume, missing) = tokio::task::spawn_blocking(move || {
            (
                http_call(&a, "POST", "/pause?lease=10s").unwrap(),
                http_call(&a, "GET", "/health").unwrap(),
                http_call(&a, "POST", "/resume").unwrap(),
                http_call(&a, "GET", "/nope").unwrap(),
            )
        })
        .await
        .unwrap();
        assert_eq!(pause.0, 200);
        let p: serde_json::Value = serde_json::from_str(&pause.1).unwrap();
        assert_eq!(p["paused"], true);
        assert_eq!(p["durable_seq"], 1);
        assert!(health.1.contains("\"paused\":true"), "{}", health.1);
        assert!(resume.1.contains("\"paused\":false"), "{}", resume.1);
        assert_eq!(missing.0, 404);
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
