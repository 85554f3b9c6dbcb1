//! Who may see what on the console.
//!
//! - **No authentication configured**: only on a loopback address (the daemon
//!   refuses to start the console on any other without it, see
//!   [`check_bind`]). Everyone who reaches it reads; nobody acts.
//! - **Bearer tokens** from files: `http_token_file` gives the `admin` role,
//!   `http_auditor_token_file` the read-only `auditor` role. A token is sent as
//!   `Authorization: Bearer TOKEN`, or, for a browser, as the `lifeline_token`
//!   cookie that `POST /login` sets (HttpOnly, SameSite=Strict). Tokens are
//!   compared through their BLAKE3 hashes, whose equality is constant-time.
//! - **Client certificates** from the deployment's CA (`--http-tls`): common
//!   name `admin:NAME` is an admin, `auditor:NAME` (minted by `lifeline certs
//!   new --auditor NAME`) an auditor; any other identity is refused.
//!
//! Once any of these is configured, every request but the login page and the
//! static assets needs a credential. Reading (pages, the API, reports,
//! metrics) needs `auditor` or `admin`; the actions (`POST /api/v1/…`) need
//! `admin` and a `x-lifeline-csrf` header (which no cross-site form or simple
//! request can carry), and when the browser sends `Origin`, it must be this
//! console's.

use std::net::SocketAddr;
use std::path::Path;

use super::error::{ConsoleError, Result};
use axum::http::HeaderMap;
use serde::Serialize;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything the console shows, and acts.
    Admin,
    /// Reads drills, reports and states; acts on nothing.
    Auditor,
    /// Loopback without authentication configured: reads, acts on nothing.
    Local,
}

/// The console's credentials.
#[derive(Clone, Default)]
pub struct Auth {
    admin_token: Option<blake3::Hash>,
    auditor_token: Option<blake3::Hash>,
    /// Client certificates are checked by TLS (`--http-tls`).
    pub client_certs: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens, not even hashed.
        f.debug_struct("Auth")
            .field("admin_token", &self.admin_token.is_some())
            .field("auditor_token", &self.auditor_token.is_some())
            .field("client_certs", &self.client_certs)
            .finish()
    }
}

/// The cookie a browser session carries its token in.
pub const COOKIE: &str = "lifeline_token";
/// The header the admin actions need.
pub const CSRF_HEADER: &str = "x-lifeline-csrf";
/// Tokens shorter than this are refused: guessable.
pub(crate) const MIN_TOKEN: usize = 16;

pub use crate::daemon::http_server::PeerIdentity;

fn read_token(path: &Path) -> Result<blake3::Hash> {
    let text = std::fs::read_to_string(path).map_err(|source| ConsoleError::ReadToken {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.len() < MIN_TOKEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConsoleError::WeakToken {
            path: path.to_path_buf(),
        });
    }
    Ok(blake3::hash(token.as_bytes()))
}

impl Auth {
    /// Tokens from files.
    pub fn from_files(admin: Option<&Path>, auditor: Option<&Path>, client_certs: bool) -> Result<Auth> {
        Ok(Auth {
            admin_token: admin.map(read_token).transpose()?,
            auditor_token: auditor.map(read_token).transpose()?,
            client_certs,
        })
    }

    /// Whether any authentication is configured.
    pub fn configured(&self) -> bool {
        self.admin_token.is_some() || self.auditor_token.is_some() || self.client_certs
    }

    /// The role of a token, if it is one.
    pub fn token_role(&self, token: &str) -> Option<Role> {
        let h = blake3::hash(token.as_bytes());
        // Both compared, so the time does not tell which one matched.
        let admin = self.admin_token.is_some_and(|t| t == h);
        let auditor = self.auditor_token.is_some_and(|t| t == h);
        if admin {
            Some(Role::Admin)
        } else if auditor {
            Some(Role::Auditor)
        } else {
            None
        }
    }

    /// The caller's role, or why it has none.
    pub fn role(&self, headers: &HeaderMap, peer: Option<&PeerIdentity>) -> Result<Role, &'static str> {
        if !self.configured() {
            return Ok(Role::Local);
        }
        if let Some(PeerIdentity(Some(cn))) = peer {
            if cn.strip_prefix("admin:").is_some() {
                return Ok(Role::Admin);
            }
            if cn.strip_prefix("auditor:").is_some() {
                return Ok(Role::Auditor);
            }
            return Err("the client certificate is no console identity (admin:NAME or auditor:NAME)");
        }
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v);
        match bearer.or(cookie) {
            Some(t) => self
                .token_role(t.trim())
                .ok_or("the token is not this console's (http_token_file or http_auditor_token_file)"),
            None => Err(
                "this console needs authentication: `Authorization: Bearer TOKEN`, a session from /login, or a client certificate",
            ),
        }
    }
}

/// Refuses to serve without authentication on an address other hosts reach.
pub fn check_bind(addr: SocketAddr, auth: &Auth) -> Result<()> {
    if !addr.ip().is_loopback() && !auth.configured() {
        return Err(ConsoleError::Unauthenticated { addr });
    }
    Ok(())
}

/// Whether an action request is same-origin: it carries [`CSRF_HEADER`]
/// (a cross-site page cannot send it without a CORS preflight this server
/// never answers), and its `Origin`, when sent, names this host.
pub fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if headers.get(CSRF_HEADER).is_none() {
        return Err("actions need the `x-lifeline-csrf: 1` header");
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host != host {
            return Err("the request's Origin is not this console");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> (tempfile::TempDir, Auth) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("admin"), "admin-token-0123456789\n").unwrap();
        std::fs::write(d.path().join("auditor"), "auditor-token-0123456789").unwrap();
        let a = Auth::from_files(Some(&d.path().join("admin")), Some(&d.path().join("auditor")), false).unwrap();
        (d, a)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn roles_from_tokens_cookies_and_certificates() {
        let (_d, a) = auth();
        let role = |h: &[(&'static str, &str)]| a.role(&headers(h), None);
        assert_eq!(
            role(&[("authorization", "Bearer admin-token-0123456789")]),
            Ok(Role::Admin)
        );
        assert_eq!(
            role(&[("authorization", "Bearer auditor-token-0123456789")]),
            Ok(Role::Auditor)
        );
        assert_eq!(
            role(&[("cookie", "x=1; lifeline_token=auditor-token-0123456789")]),
            Ok(Role::Auditor)
        );
        assert!(role(&[("authorization", "Bearer admin-token-012345678")]).is_err());
        assert!(role(&[("authorization", "Basic admin-token-0123456789")]).is_err());
        assert!(role(&[]).is_err());
        let cert = |cn: &str| a.role(&HeaderMap::new(), Some(&PeerIdentity(Some(cn.into()))));
        assert_eq!(cert("admin:ops"), Ok(Role::Admin));
        assert_eq!(cert("auditor:kim"), Ok(Role::Auditor));
        assert!(cert("agent:db1@acme").is_err());
        assert_eq!(Auth::default().role(&HeaderMap::new(), None), Ok(Role::Local));
        assert!(!format!("{a:?}").contains("token-0123"));
    }

    #[test]
    fn short_tokens_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("t"), "short").unwrap();
        let e = Auth::from_files(Some(&d.path().join("t")), None, false).unwrap_err();
        assert!(format!("{e:#}").contains("at least 16"), "{e:#}");
    }

    #[test]
    fn non_loopback_needs_authentication() {
        let (_d, a) = auth();
        assert!(check_bind("127.0.0.1:0".parse().unwrap(), &Auth::default()).is_ok());
        assert!(check_bind("[::1]:0".parse().unwrap(), &Auth::default()).is_ok());
        let e = check_bind("0.0.0.0:8080".parse().unwrap(), &Auth::default()).unwrap_err();
        assert!(format!("{e}").contains("http_token_file"), "{e}");
        assert!(check_bind("0.0.0.0:8080".parse().unwrap(), &a).is_ok());
    }

    #[test]
    fn actions_must_be_same_origin() {
        assert!(same_origin(&headers(&[])).is_err());
        assert!(same_origin(&headers(&[("x-lifeline-csrf", "1")])).is_ok());
        assert!(
            same_origin(&headers(&[
                ("x-lifeline-csrf", "1"),
                ("host", "h:1"),
                ("origin", "http://h:1")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                ("x-lifeline-csrf", "1"),
                ("host", "h:1"),
                ("origin", "http://evil:1")
            ]))
            .is_err()
        );
    }
}
