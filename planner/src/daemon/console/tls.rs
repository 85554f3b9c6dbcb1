//! HTTPS for the console (`--http-tls`): the server certificate `console.pem`
//! and `console.key` of the host's TLS directory (`lifeline certs new
//! --console-san HOST`), and client certificates checked against the
//! deployment's CA (`ca.pem`). A client certificate is optional at the TLS
//! level, so a program with a bearer token needs none; the console then gives
//! `admin:NAME` the admin role and `auditor:NAME` (`lifeline certs new
//! --auditor NAME`) the auditor role, and refuses any other identity.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    std::fs::read(&p).with_context(|| {
        format!(
            "console over HTTPS: read {} (mint it with `lifeline certs new --ca-dir CADIR --out {} --console-san HOST`)",
            p.display(),
            dir.display()
        )
    })
}

/// The acceptor for the TLS directory `dir`.
pub fn acceptor(dir: &Path) -> Result<TlsAcceptor> {
    let provider = Arc::new(crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(dir, "ca.pem")?) {
        roots
            .add(c.context("ca.pem: not a PEM certificate")?)
            .context("ca.pem: not a CA certificate")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("console over HTTPS: the client certificate verifier")?;
    let chain = CertificateDer::pem_slice_iter(&read(dir, "console.pem")?)
        .collect::<Result<Vec<_>, _>>()
        .context("console.pem: not a PEM certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(dir, "console.key")?).context("console.key: not a PEM key")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("console.pem and console.key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
