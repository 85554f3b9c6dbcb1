//! The one mapping from domain errors to gRPC status codes, and back on the
//! client side.

use lifeline_replicator::Error;
use tonic::{Code, Status};

/// Maps a replicator error to a gRPC status.
pub fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::ObjectDamaged { .. } | Error::ObjectAuthentication { .. } => Code::DataLoss,
        Error::ObjectMissing { .. } | Error::NoPoint { .. } | Error::NoSuchTenant { .. } => Code::NotFound,
        Error::CommitConflict { .. } | Error::Conflict { .. } => Code::Aborted,
        Error::WrongKey { .. } => Code::PermissionDenied,
        Error::Invalid { .. } | Error::MalformedIndex(_) => Code::InvalidArgument,
        Error::CatalogLocked { .. } => Code::Unavailable,
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}
