//! A minimal HTTP/1.0 client for `check.http` and `notify`: one request per
//! connection, no chunked encoding to parse (HTTP/1.0 answers end with the
//! close). `https://` goes through rustls (ring), trusting the system's roots
//! or, with `ca_file`, only the CA certificates in that PEM file.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, pem, pem::PemObject};

use crate::io_error::doing;

/// Result with [`HttpError`].
pub type Result<T, E = HttpError> = std::result::Result<T, E>;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{url}` is not an http:// or https:// URL")]
    NotHttp { url: String },
    #[error("read CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{path} holds no valid PEM certificate: {source}")]
    NoPemCertificate {
        path: std::path::PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{path}: not a usable CA certificate: {source}")]
    UnusableCa {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("no system CA certificates found (install ca-certificates, or give ca_file = \"PEM\")")]
    NoSystemCa,
    #[error("TLS configuration: {0}")]
    TlsConfig(#[source] rustls::Error),
    #[error("`{host}` is not a server name: {source}")]
    ServerName {
        host: String,
        #[source]
        source: InvalidDnsNameError,
    },
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error("{url} answered something that is not HTTP: {status_line:?}")]
    NotAnHttpAnswer { url: String, status_line: String },
}

/// What an HTTP request answered.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

struct Target {
    tls: bool,
    host: String,
    addr: String,
    path: String,
}

fn split(url: &str) -> Result<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(HttpError::NotHttp { url: url.to_string() });
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, addr) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), hostport.to_string()),
        _ => (
            hostport.to_string(),
            format!("{hostport}:{}", if tls { 443 } else { 80 }),
        ),
    };
    Ok(Target {
        tls,
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        addr,
        path: path.to_string(),
    })
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(f) => {
            let path = || f.to_path_buf();
            for cert in CertificateDer::pem_file_iter(f).map_err(|source| HttpError::CaFile { path: path(), source })? {
                let cert = cert.map_err(|source| HttpError::NoPemCertificate { path: path(), source })?;
                roots
                    .add(cert)
                    .map_err(|source| HttpError::UnusableCa { path: path(), source })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(HttpError::NoSystemCa);
            }
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(HttpError::TlsConfig)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8], what: &str) -> Result<Vec<u8>> {
    s.write_all(req).await.map_err(doing(format!("send to {what}")))?;
    s.flush().await.ok();
    let mut buf = Vec::new();
    match (&mut s).take(1 << 20).read_to_end(&mut buf).await {
        Ok(_) => {}
        // Servers often close TLS without close_notify after an HTTP/1.0 answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(doing(format!("read from {what}"))(e).into()),
    }
    Ok(buf)
}

/// Sends one request; the body read is capped at 1 MiB.
pub async fn request(method: &str, url: &str, body: Option<&str>) -> Result<Answer> {
    request_with(method, url, body, None).await
}

/// [`request`] trusting only the CA certificates in `ca_file` for https.
pub async fn request_with(method: &str, url: &str, body: Option<&str>, ca_file: Option<&Path>) -> Result<Answer> {
    let t = split(url)?;
    let mut req = format!(
        "{method} {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: lifeline\r\n",
        t.path, t.addr
    );
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
    let tcp = TcpStream::connect(&t.addr)
        .await
        .map_err(doing(format!("connect to {}", t.addr)))?;
    let buf = if t.tls {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca_file)?));
        let name = ServerName::try_from(t.host.clone()).map_err(|source| HttpError::ServerName {
            host: t.host.clone(),
            source,
        })?;
        let s = connector.connect(name, tcp).await.map_err(doing(format!(
            "TLS with {} (is its certificate signed by a trusted CA?)",
            t.addr
        )))?;
        exchange(s, req.as_bytes(), &t.addr).await?
    } else {
        exchange(tcp, req.as_bytes(), &t.addr).await?
    };
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::NotAnHttpAnswer {
            url: url.to_string(),
            status_line: status_line.to_string(),
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot https server with a certificate from its own CA; returns its port
    /// and the CA's PEM.
    async fn https_server(answer: &'static str) -> (u16, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (port, ca.pem())
    }

    #[tokio::test]
    async fn https_with_a_private_ca_and_refusal_without_it() {
        let (port, ca) = https_server("HTTP/1.0 201 Created\r\n\r\nhello").await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let url = format!("https://localhost:{port}/hook");
        let a = request_with("POST", &url, Some("{}"), Some(&ca_file)).await.unwrap();
        assert_eq!((a.status, a.body.as_str()), (201, "hello"));
        // The system roots do not know this CA.
        let e = request_with("GET", &url, None, None)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        assert!(e.is_some_and(|e| e.contains("TLS with") || e.contains("no system CA")));
    }

    #[test]
    fn urls() {
        let t = split("https://hooks.example.net/x/y").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.addr.as_str(), t.path.as_str()),
            (true, "hooks.example.net", "hooks.example.net:443", "/x/y")
        );
        let t = split("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("127.0.0.1:8080", "/"));
        assert!(split("ftp://x").is_err());
    }
}
