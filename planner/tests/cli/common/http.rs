//! A minimal HTTP/1.1 client for the daemon's servers (one request per
//! connection, as they serve), so tests see the bytes on the wire.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `method path` to `addr` (HOST:PORT) with `headers`, reads the answer.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    exchange(c, addr, method, path, headers)
}

/// [`request`] over TLS with `config` (its client certificate, if any).
pub fn request_tls(
    config: &std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).unwrap();
    let conn = tokio_rustls::rustls::ClientConnection::new(config.clone(), name).unwrap();
    exchange(
        tokio_rustls::rustls::StreamOwned::new(conn, tcp),
        addr,
        method,
        path,
        headers,
    )
}

fn exchange(mut c: impl Read + Write, addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    match c.read_to_end(&mut resp) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify, after its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => panic!("read the answer: {e}"),
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {resp}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[])
}

/// Reads a server-sent event stream until an event named `name` arrives (its
/// data), or `timeout` passes (`None`).
pub fn sse_until(addr: &str, path: &str, headers: &[(&str, &str)], name: &str, timeout: Duration) -> Option<String> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let deadline = Instant::now() + timeout;
    let mut event = String::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(_) => continue,
        }
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event: ").or_else(|| l.strip_prefix("event:")) {
            event = e.trim().to_string();
        } else if let Some(d) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))
            && event == name
        {
            return Some(d.trim().to_string());
        }
    }
    None
}
