//! A TLS directory: the deployment's CA certificate and this host's identities
//! (`NAME.pem` + `NAME.key`, `receiver.pem` + `receiver.key`). It never holds the
//! CA's private key.

use std::fs;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

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
        Ok(ServerTlsConfig::new()
            .identity(self.identity("receiver")?)
            .client_ca_root(Certificate::from_pem(self.ca_pem()?)))
    }

    /// Client config for identity `name`, checking the receiver against the CA.
    pub fn client_config(&self, name: &str, domain: &str) -> Result<ClientTlsConfig, ServiceError> {
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca_pem()?))
            .identity(self.identity(name)?)
            .domain_name(domain))
    }
}
