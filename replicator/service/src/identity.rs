//! Who is calling: read from the client certificate's common name, which
//! `lifeline certs new` writes as `agent:NAME@TENANT` or `admin:NAME`.

use lifeline_replicator::check_name;
use tonic::Status;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Agent { name: String, tenant: String },
    Admin { name: String },
}

impl Peer {
    /// Parses a common name.
    pub fn from_common_name(cn: &str) -> Option<Peer> {
        if let Some(rest) = cn.strip_prefix("agent:") {
            let (name, tenant) = rest.split_once('@')?;
            check_name("agent", name).ok()?;
            check_name("tenant", tenant).ok()?;
            return Some(Peer::Agent {
                name: name.into(),
                tenant: tenant.into(),
            });
        }
        let name = cn.strip_prefix("admin:")?;
        check_name("admin", name).ok()?;
        Some(Peer::Admin { name: name.into() })
    }

    /// The common name for this peer.
    pub fn common_name(&self) -> String {
        match self {
            Peer::Agent { name, tenant } => format!("agent:{name}@{tenant}"),
            Peer::Admin { name } => format!("admin:{name}"),
        }
    }

    /// The peer of a request (its certificate was already verified against the CA
    /// by the TLS layer).
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Peer, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate from this deployment's CA is required"))?;
        let der = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|_| Status::unauthenticated("unreadable client certificate"))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .ok_or_else(|| Status::unauthenticated("client certificate has no common name"))?;
        Peer::from_common_name(cn).ok_or_else(|| {
            Status::permission_denied(format!(
                "client certificate `{cn}` names no Lifeline identity (agent:NAME@TENANT or admin:NAME)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names() {
        let a = Peer::from_common_name("agent:db1@acme").unwrap();
        assert_eq!(
            a,
            Peer::Agent {
                name: "db1".into(),
                tenant: "acme".into()
            }
        );
        assert_eq!(a.common_name(), "agent:db1@acme");
        assert_eq!(
            Peer::from_common_name("admin:ops"),
            Some(Peer::Admin { name: "ops".into() })
        );
        for bad in ["agent:db1", "agent:@t", "root", "admin:", "agent:a b@t"] {
            assert!(Peer::from_common_name(bad).is_none(), "{bad}");
        }
    }
}
