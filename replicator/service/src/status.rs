//! The one mapping from domain errors to gRPC status codes, and back on the
//! client side.
//!
//! What a client is told names the object, the point or the group and what to
//! do, never the receiver's paths, other tenants or internal details: those
//! are logged on the receiver, where its operator reads them.

use lifeline_replicator::Error;
use tonic::{Code, Status};

/// Maps a replicator error to a gRPC status whose message is safe to send to
/// a client; the full error is logged here.
pub fn to_status(e: Error) -> Status {
    let (code, message) = match &e {
        Error::ObjectDamaged { id, reason, .. } => (
            Code::DataLoss,
            format!(
                "object {id} is damaged on the receiver ({}): its operator can run `lifeline verify`",
                scrub(reason)
            ),
        ),
        Error::ObjectAuthentication { id, .. } => (
            Code::DataLoss,
            format!("object {id} failed authentication on the receiver: its operator can run `lifeline verify`"),
        ),
        Error::ObjectMissing { id, .. } => (
            Code::NotFound,
            format!("object {id} is missing on the receiver: its operator can run `lifeline verify`"),
        ),
        Error::NoPoint { .. } | Error::NoSuchVolume { .. } | Error::CommitConflict { .. } => {
            (code_of(&e), e.to_string())
        }
        Error::NoSuchTenant { tenant, .. } => (Code::NotFound, format!("the receiver has no tenant `{tenant}`")),
        Error::Conflict { message, .. } => (Code::Aborted, scrub(message)),
        Error::WrongKey { expected, found, .. } => (
            Code::PermissionDenied,
            format!("key fingerprint {found} does not match the tenant's key ({expected}): use the tenant's key file"),
        ),
        Error::Invalid { what, value, reason } => (
            Code::InvalidArgument,
            format!("invalid {what} `{}`: {}", scrub(value), scrub(reason)),
        ),
        Error::MalformedIndex(reason) => (
            Code::InvalidArgument,
            format!("a volume index is malformed ({})", scrub(reason)),
        ),
        Error::CatalogLocked { .. } => (
            Code::Unavailable,
            "the receiver's catalog is held by another process: retry later".to_string(),
        ),
        Error::Unavailable { message, .. } => (
            Code::Unavailable,
            format!("the receiver is unavailable: {} (retry later)", scrub(message)),
        ),
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => (
            Code::ResourceExhausted,
            "the receiver is out of disk space: retry later (its operator frees space)".to_string(),
        ),
        _ => (
            Code::Internal,
            "the receiver failed to serve this request (the cause is in its log): retry, or ask its operator"
                .to_string(),
        ),
    };
    if matches!(
        code,
        Code::Internal | Code::DataLoss | Code::Unavailable | Code::ResourceExhausted
    ) {
        tracing::error!(error = %e, "request failed");
    } else {
        tracing::debug!(error = %e, "request refused");
    }
    Status::new(code, message)
}

fn code_of(e: &Error) -> Code {
    match e {
        Error::NoPoint { .. } | Error::NoSuchVolume { .. } => Code::NotFound,
        Error::CommitConflict { .. } => Code::Aborted,
        _ => Code::Internal,
    }
}

/// Replaces anything that looks like an absolute path in a message meant for a
/// client with `<path>`.
fn scrub(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let bare = w.trim_start_matches(['(', '`', '\'', '"']);
            if bare.starts_with('/') && bare.len() > 1 {
                "<path>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_to_clients_carry_no_paths() {
        let e = Error::ObjectMissing {
            id: "ab".repeat(32),
            location: "/srv/rep/tenants/t".into(),
        };
        let s = to_status(e);
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains(&"ab".repeat(32)));
        assert!(!s.message().contains("/srv"), "{}", s.message());
        let s = to_status(Error::io("read /srv/rep/packs/01", std::io::Error::other("boom")));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/srv"), "{}", s.message());
        assert_eq!(scrub("pack (/srv/rep/x) is short"), "pack <path> is short");
    }
}
