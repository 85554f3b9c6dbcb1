//! `lifeline certs new`: a small CA for a deployment and certificates under it.
//! The CA's private key is written only into the CA directory, never into the
//! TLS directory that is copied to hosts.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::ServiceError;
use crate::identity::Peer;

/// The TLS name under which agent `name` serves its control API.
pub fn agent_control_domain(name: &str) -> String {
    format!("{name}.agents.lifeline")
}

/// What to mint.
#[derive(Debug, Clone, Default)]
pub struct CertsRequest {
    pub ca_dir: PathBuf,
    pub out: PathBuf,
    /// DNS names or IP addresses of the receiver (a receiver cert when non-empty).
    pub receiver_sans: Vec<String>,
    /// `NAME@TENANT` per agent.
    pub agents: Vec<String>,
    /// Admin names.
    pub admins: Vec<String>,
    /// Read-only console identities (`auditor:NAME`): they read the console of
    /// a daemon served with client certificates, and nothing else accepts them.
    pub auditors: Vec<String>,
    /// DNS names or IP addresses of a daemon's console (`console.pem`/`.key`,
    /// a server certificate for `lifeline daemon --http-tls`).
    pub console_sans: Vec<String>,
    /// Validity in days.
    pub days: u32,
}

fn tls(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Tls(e.to_string())
}

/// Writes a certificate or key atomically (the one write path: temp, fsync,
/// rename, directory fsync), private keys readable by their owner only.
fn write(path: &Path, text: &str, private: bool) -> Result<(), ServiceError> {
    let mode = if private { 0o600 } else { 0o644 };
    Ok(lifeline_replicator::write_atomic_mode(path, text.as_bytes(), mode)?)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(days.max(1) as u64 * 86_400)).into();
}

/// Creates the CA if absent (else signs with it) and writes the requested
/// certificates. Returns the files written.
pub fn mint_certificates(req: &CertsRequest) -> Result<Vec<PathBuf>, ServiceError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ServiceError::Io {
            context: format!("create {}", p.display()),
            source: e,
        }
    };
    fs::create_dir_all(&req.ca_dir).map_err(io(&req.ca_dir))?;
    fs::create_dir_all(&req.out).map_err(io(&req.out))?;
    if req.ca_dir.canonicalize().ok() == req.out.canonicalize().ok() {
        return Err(ServiceError::Invalid(
            "--out must differ from --ca-dir: the TLS directory goes to hosts, the CA key must not".into(),
        ));
    }
    let days = if req.days == 0 { 825 } else { req.days };
    let mut written = Vec::new();
    let ca_pem_path = req.ca_dir.join("ca.pem");
    let ca_key_path = req.ca_dir.join("ca.key");
    let (ca_pem, ca_key) = if ca_pem_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_pem_path).map_err(io(&ca_pem_path))?;
        let key = KeyPair::from_pem(&fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?).map_err(tls)?;
        (pem, key)
    } else {
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Lifeline deployment CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, days.max(3650));
        let cert = params.self_signed(&key).map_err(tls)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&ca_pem_path, &cert.pem(), false)?;
        written.extend([ca_key_path.clone(), ca_pem_path.clone()]);
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).map_err(tls)?;
    let out_ca = req.out.join("ca.pem");
    write(&out_ca, &ca_pem, false)?;
    written.push(out_ca);
    let mut leaf = |file: &str, cn: &str, sans: Vec<String>, server: bool, client: bool| -> Result<(), ServiceError> {
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(sans).map_err(tls)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = Vec::new();
        if server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        validity(&mut params, days);
        let cert = params.signed_by(&key, &issuer).map_err(tls)?;
        let kp = req.out.join(format!("{file}.key"));
        let cp = req.out.join(format!("{file}.pem"));
        write(&kp, &key.serialize_pem(), true)?;
        write(&cp, &cert.pem(), false)?;
        written.extend([cp, kp]);
        Ok(())
    };
    if !req.receiver_sans.is_empty() {
        leaf("receiver", "Lifeline receiver", req.receiver_sans.clone(), true, false)?;
    }
    for a in &req.agents {
        let (name, tenant) = a
            .split_once('@')
            .ok_or_else(|| ServiceError::Invalid(format!("--agent `{a}`: write NAME@TENANT")))?;
        let peer = Peer::Agent {
            name: name.into(),
            tenant: tenant.into(),
        };
        if Peer::from_common_name(&peer.common_name()).is_none() {
            return Err(ServiceError::Invalid(format!(
                "--agent `{a}`: names are 1 to 64 letters, digits, `.`, `_` or `-`"
            )));
        }
        // An agent also serves its control API, under the name `NAME.agents.lifeline`.
        leaf(name, &peer.common_name(), vec![agent_control_domain(name)], true, true)?;
    }
    for n in &req.admins {
        let peer = Peer::Admin { name: n.clone() };
        if Peer::from_common_name(&peer.common_name()).is_none() {
            return Err(ServiceError::Invalid(format!("--admin `{n}`: invalid name")));
        }
        leaf(n, &peer.common_name(), vec![], false, true)?;
    }
    for n in &req.auditors {
        lifeline_replicator::check_name("auditor", n)
            .map_err(|_| ServiceError::Invalid(format!("--auditor `{n}`: invalid name")))?;
        leaf(n, &format!("auditor:{n}"), vec![], false, true)?;
    }
    if !req.console_sans.is_empty() {
        leaf("console", "Lifeline console", req.console_sans.clone(), true, false)?;
    }
    Ok(written)
}
