//! The Lifeline gRPC protocol (`proto/lifeline.proto`), generated at build time by
//! `tonic-prost-build` from a descriptor set compiled by `protox`, so building needs
//! no `protoc`. Proto types stay at the service boundary: the replicator converts
//! them into validated domain types before anything touches a repository.
#![allow(clippy::all)]

/// Version 1 of the replication protocol.
pub mod v1 {
    tonic::include_proto!("lifeline.v1");
}

/// The protocol version this build speaks (2: `PutObjects` streams batches of
/// objects). A receiver refuses a session of another version at `OpenSession`.
pub const PROTOCOL_VERSION: u32 = 2;
