//! Lifeline's replication services: the receiver that serves a repository to
//! agents over gRPC with mutual TLS, the client that lets backup and restore use a
//! receiver as a [`TenantRepository`](lifeline_replicator::TenantRepository), and
//! the certificates that bind identities (agent `NAME@TENANT`, admin `NAME`) to
//! one deployment's CA. Proto types stay in this crate: they are converted to
//! validated domain types at the boundary.
//!
//! The receiver is four files: `receiver.rs` (its state, its limits and the
//! checks every call shares), `replication.rs` (the agents' `Replication`
//! service), `admin.rs` (the `Admin` service; `TryFrom` turns each request into
//! a typed one) and `server.rs` (both services on one listener).

mod admin;
mod agent;
mod budget;
mod certs;
mod control;
mod gc;
mod identity;
mod rate_limit;
mod receiver;
mod remote;
mod replication;
mod server;
mod status;
mod tls;

pub use agent::{
    AgentError, AgentEvent, AgentExit, AgentOptions, CycleReport, DEFAULT_RETRY_FOR, FIRST_BACKOFF, MAX_BACKOFF,
    run_agent,
};
pub use certs::{CertsRequest, agent_control_domain, mint_certificates};
pub use control::{AgentControl, ControlAnswer, ControlCall, call_agent, serve_control};
pub use identity::Peer;
pub use lifeline_proto::v1::AgentStatus;
pub use rate_limit::{RateLimit, parse_rate};
pub use receiver::{MAX_READ_ANSWER, MAX_READ_IDS, READ_BUDGET, Receiver, ReceiverConfig, UPLOAD_BUDGET};
pub use remote::{GroupStatus, RemoteRepository, remote_gc, remote_pin, remote_prune, remote_status, remote_verify};
pub use server::serve;
pub use tls::{TlsDir, ensure_crypto_provider};

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("TLS material: {0}")]
    Tls(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Replicator(#[from] lifeline_replicator::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}
