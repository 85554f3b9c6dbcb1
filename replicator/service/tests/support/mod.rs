//! What the receiver tests share: raw gRPC clients over mutual TLS to a real
//! receiver, and assertions on the statuses it answers.

#![allow(dead_code)] // each test crate uses its own part

use std::future::Future;
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_client::ReplicationClient;
use lifeline_replicator::{Keys, ObjectId};
use lifeline_service::TlsDir;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

/// gRPC message limit of the test clients (the receiver's own is lower).
pub const MESSAGE_LIMIT: usize = 16 << 20;

pub type Replication = ReplicationClient<Channel>;

/// Asserts that `r` failed with `code` and a message containing every word.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(what: &str, r: Result<Response<T>, Status>, code: Code, words: &[&str]) -> Status {
    let status = match r {
        Ok(resp) => panic!("{what}: expected {code:?}, got a success: {:?}", resp.into_inner()),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{what}: wrong code; message: {}", status.message());
    for w in words {
        assert!(
            status.message().contains(w),
            "{what}: message `{}` does not mention `{w}`",
            status.message()
        );
    }
    status
}

#[track_caller]
pub fn ok<T>(what: &str, r: Result<Response<T>, Status>) -> T {
    match r {
        Ok(resp) => resp.into_inner(),
        Err(s) => panic!("{what}: expected success, got {:?}: {}", s.code(), s.message()),
    }
}

/// Runs `f` on `rt`, failing the test after two minutes.
pub fn block<F: Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), f).await })
        .expect("a call to the receiver took over two minutes")
}

/// A channel to the receiver at `url` as identity `name`.
pub async fn connect_channel(tls: &TlsDir, name: &str, url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls.client_config(name, "127.0.0.1").unwrap())
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect as `{name}`: {e:?}"))
}

pub fn channel(rt: &Runtime, tls: &TlsDir, name: &str, url: &str) -> Channel {
    block(rt, connect_channel(tls, name, url))
}

/// A replication client as identity `name`.
pub async fn connect(tls: &TlsDir, name: &str, url: &str) -> Replication {
    ReplicationClient::new(connect_channel(tls, name, url).await)
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn replication(rt: &Runtime, tls: &TlsDir, name: &str, url: &str) -> Replication {
    block(rt, connect(tls, name, url))
}

/// The session request of an agent holding `keys`, at this build's protocol.
pub fn session(keys: &Keys) -> pb::OpenSessionRequest {
    pb::OpenSessionRequest {
        protocol_version: lifeline_proto::PROTOCOL_VERSION,
        key_fingerprint: keys.fingerprint().to_vec(),
    }
}

pub fn ids(ids: &[ObjectId]) -> pb::ObjectIds {
    pb::ObjectIds {
        ids: ids.iter().map(|i| i.0.to_vec()).collect(),
    }
}
