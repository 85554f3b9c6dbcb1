//! HTTPS for the console (`--http-tls`): the server certificate `console.pem`
//! and `console.key` of the host's TLS directory (`lifeline certs new
//! --console-san HOST`), and client certificates checked against the
//! deployment's CA (`ca.pem`). A client certificate is optional at the TLS
//! level, so a program with a bearer token needs none; the console then gives
//! `admin:NAME` the admin role and `auditor:NAME` (`lifeline certs new
//! --auditor NAME`) the auditor role, and refuses any other identity.

use std::path::Path;
use std::sync::Arc;

use super::error::{ConsoleError, Result};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|source| ConsoleError::ReadTlsFile {
        path: p.clone(),
        dir: dir.to_path_buf(),
        source,
    })
}

/// The acceptor for the TLS directory `dir`.
pub fn acceptor(dir: &Path) -> Result<TlsAcceptor> {
    let provider = Arc::new(crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(dir, "ca.pem")?) {
        roots
            .add(c.map_err(ConsoleError::tls("ca.pem: not a PEM certificate"))?)
            .map_err(ConsoleError::tls("ca.pem: not a CA certificate"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(ConsoleError::tls("console over HTTPS: the client certificate verifier"))?;
    let chain = CertificateDer::pem_slice_iter(&read(dir, "console.pem")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConsoleError::tls("console.pem: not a PEM certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(&read(dir, "console.key")?)
        .map_err(ConsoleError::tls("console.key: not a PEM key"))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(ConsoleError::tls("console.pem and console.key do not match"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
