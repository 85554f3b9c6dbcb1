//! A minimal HTTP/1.0 client for `check.http` and `notify`: one request per
//! connection, no chunked encoding to parse (HTTP/1.0 answers are delimited by
//! the close). Plain http:// only; https is refused with a clear error.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What an HTTP request answered.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn split(url: &str) -> Result<(String, String)> {
    if url.starts_with("https://") {
        bail!(
            "`{url}`: https is not supported by check.http / notify yet; use an http:// endpoint or check.command with curl"
        );
    }
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((addr, path.to_string()))
}

/// Sends one request; the body is capped at 1 MiB.
pub async fn request(method: &str, url: &str, body: Option<&str>) -> Result<Answer> {
    let (addr, path) = split(url)?;
    let mut s = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let host = addr.clone();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lifeline\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())
        .await
        .with_context(|| format!("send to {addr}"))?;
    let mut buf = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut buf)
        .await
        .with_context(|| format!("read from {addr}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url} answered something that is not HTTP: {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Answer { status, body })
}
