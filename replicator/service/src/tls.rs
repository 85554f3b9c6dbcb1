//! A TLS directory: the deployment's CA certificate and this host's identities
//! (`NAME.pem` + `NAME.key`, `receiver.pem` + `receiver.key`). It never holds the
//! CA's private key.

use std::fs;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::pem::{Pem, parse_x509_pem};

use crate::ServiceError;

/// TLS material of one host.
#[derive(Debug, Clone)]
pub struct TlsDir {
    dir: PathBuf,
}

impl TlsDir {
    pub fn new(dir: &Path) -> Self {
        TlsDir { dir: dir.into() }
    }

    fn read(&self, name: &str) -> Result<String, ServiceError> {
        let p = self.dir.join(name);
        fs::read_to_string(&p).map_err(|e| {
            ServiceError::Tls(format!(
                "cannot read {}: {e} (create it with `lifeline certs new --ca-dir CADIR --out {}`)",
                p.display(),
                self.dir.display()
            ))
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> Result<String, ServiceError> {
        self.read("ca.pem")
    }

    /// An identity's certificate and key.
    pub fn identity(&self, name: &str) -> Result<Identity, ServiceError> {
        Ok(Identity::from_pem(
            self.read(&format!("{name}.pem"))?,
            self.read(&format!("{name}.key"))?,
        ))
    }

    /// Server config: the receiver's identity, client certificates required and
    /// checked against the CA.
    pub fn server_config(&self) -> Result<ServerTlsConfig, ServiceError> {
        ensure_crypto_provider();
        Ok(ServerTlsConfig::new()
            .identity(self.identity("receiver")?)
            .client_ca_root(Certificate::from_pem(self.ca_pem()?)))
    }

    /// Checks that identity `name`'s certificate was issued by a CA of `ca.pem` and
    /// is valid now. A receiver refuses any other certificate, but only after the
    /// client's side of the TLS 1.3 handshake is done, so the client would see a
    /// dropped connection and retry it as if the receiver were down.
    pub fn check_identity(&self, name: &str) -> Result<(), ServiceError> {
        let file = self.dir.join(format!("{name}.pem"));
        let ca_file = self.dir.join("ca.pem");
        let unreadable = |p: &Path, e: &dyn std::fmt::Display| {
            ServiceError::Tls(format!("{}: not a PEM certificate: {e}", p.display()))
        };
        let cert_pem = self.read(&format!("{name}.pem"))?;
        let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|e| unreadable(&file, &e))?;
        let cert = pem.parse_x509().map_err(|e| unreadable(&file, &e))?;
        let ca_pem = self.ca_pem()?;
        let mut issued = false;
        for ca in Pem::iter_from_buffer(ca_pem.as_bytes()) {
            let ca = ca.map_err(|e| unreadable(&ca_file, &e))?;
            let ca = ca.parse_x509().map_err(|e| unreadable(&ca_file, &e))?;
            issued |= cert.verify_signature(Some(ca.public_key())).is_ok();
        }
        if !issued {
            return Err(ServiceError::Tls(format!(
                "certificate {} was not issued by the CA in {} (a certificate of another deployment?): the receiver would refuse it; mint it with `lifeline certs new --ca-dir CADIR --out {}` using this deployment's CA directory",
                file.display(),
                ca_file.display(),
                self.dir.display()
            )));
        }
        let v = cert.validity();
        if !v.is_valid() {
            return Err(ServiceError::Tls(format!(
                "certificate {} is valid only from {} to {}: the receiver would refuse it; mint a new one with `lifeline certs new`",
                file.display(),
                v.not_before,
                v.not_after
            )));
        }
        Ok(())
    }

    /// Client config for identity `name`, checking the receiver against the CA.
    pub fn client_config(&self, name: &str, domain: &str) -> Result<ClientTlsConfig, ServiceError> {
        ensure_crypto_provider();
        self.check_identity(name)?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca_pem()?))
            .identity(self.identity(name)?)
            .domain_name(domain))
    }
}

/// A runtime for a synchronous caller's network calls (`threads` 0: current thread).
pub(crate) fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime, ServiceError> {
    let mut b = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads).thread_name("lifeline-net");
        b
    };
    b.enable_all().build().map_err(|e| ServiceError::Io {
        context: "start network runtime".into(),
        source: e,
    })
}

/// An mTLS endpoint for `url` (https://HOST:PORT) as identity `name`; the peer's
/// certificate must name `domain` (default: the URL's host).
pub(crate) fn client_endpoint(
    url: &str,
    tls: &TlsDir,
    name: &str,
    domain: Option<&str>,
) -> Result<tonic::transport::Endpoint, ServiceError> {
    let host = url
        .strip_prefix("https://")
        .and_then(|r| r.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ServiceError::Invalid(format!("`{url}` is not an https://HOST:PORT address")))?;
    tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| ServiceError::Invalid(format!("`{url}`: {e}")))?
        .tls_config(tls.client_config(name, domain.unwrap_or(host))?)
        .map_err(|e| ServiceError::Tls(e.to_string()))
}

/// Makes ring rustls's process-wide provider (tonic builds its TLS configs
/// from it). With both ring (tonic) and aws-lc-rs (object_store, for S3)
/// linked, rustls would otherwise refuse to choose and panic. Idempotent.
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertsRequest, mint_certificates};

    #[test]
    fn expired_and_foreign_identities_are_refused_before_connecting() {
        let d = tempfile::tempdir().unwrap();
        let (ca_dir, out) = (d.path().join("ca"), d.path().join("tls"));
        mint_certificates(&CertsRequest {
            ca_dir: ca_dir.clone(),
            out: out.clone(),
            agents: vec!["a@t".into()],
            days: 30,
            ..CertsRequest::default()
        })
        .unwrap();
        let tls = TlsDir::new(&out);
        tls.check_identity("a").unwrap();

        // An agent certificate of this CA that expired yesterday.
        let ca_key = rcgen::KeyPair::from_pem(&fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&fs::read_to_string(ca_dir.join("ca.pem")).unwrap(), &ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "agent:old@t");
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(10 * 86_400)).into();
        params.not_after = (now - std::time::Duration::from_secs(86_400)).into();
        let cert = params.signed_by(&key, &issuer).unwrap();
        fs::write(out.join("old.pem"), cert.pem()).unwrap();
        fs::write(out.join("old.key"), key.serialize_pem()).unwrap();
        let e = tls.check_identity("old").unwrap_err().to_string();
        assert!(e.contains("is valid only from"), "{e}");

        // A certificate of another deployment's CA.
        let other = d.path().join("other");
        mint_certificates(&CertsRequest {
            ca_dir: d.path().join("ca2"),
            out: other.clone(),
            agents: vec!["b@t".into()],
            days: 30,
            ..CertsRequest::default()
        })
        .unwrap();
        fs::copy(other.join("b.pem"), out.join("b.pem")).unwrap();
        fs::copy(other.join("b.key"), out.join("b.key")).unwrap();
        let e = tls.check_identity("b").unwrap_err().to_string();
        assert!(e.contains("was not issued by the CA"), "{e}");
        let e = tls.client_config("b", "127.0.0.1").unwrap_err().to_string();
        assert!(e.contains("was not issued by the CA"), "{e}");
    }
}
