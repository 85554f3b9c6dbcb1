//! What the receiver tests share: raw gRPC clients over mutual TLS to a real
//! receiver, and assertions on the statuses it answers.

#![allow(dead_code)] // each test crate uses its own part

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_client::ReplicationClient;
use lifeline_replicator::{Keys, ObjectId, ObjectKind, seal_object};
use lifeline_service::{CertsRequest, Receiver, ReceiverConfig, TlsDir, mint_certificates, serve};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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

/// Certificates of one deployment in `dir/tls` (its CA in `dir/ca`): the
/// receiver at 127.0.0.1, `agents` (NAME@TENANT) and the admin `ops`.
pub fn certificates(dir: &Path, agents: &[&str]) -> TlsDir {
    let out = dir.join("tls");
    mint_certificates(&CertsRequest {
        ca_dir: dir.join("ca"),
        out: out.clone(),
        receiver_sans: vec!["127.0.0.1".into()],
        agents: agents.iter().map(|a| a.to_string()).collect(),
        admins: vec!["ops".into()],
        days: 30,
        ..Default::default()
    })
    .unwrap();
    TlsDir::new(&out)
}

/// A receiver's allow list from (agent, group) pairs.
pub fn allow(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (agent, group) in pairs {
        m.entry(agent.to_string()).or_default().push(group.to_string());
    }
    m
}

/// A receiver of the repository `dir/repo` served in this process on a free
/// port of 127.0.0.1, until [`Served::shutdown`] or drop.
pub struct Served {
    pub rt: Runtime,
    pub addr: SocketAddr,
    pub url: String,
    pub tls: TlsDir,
    pub receiver: Arc<Receiver>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

pub fn serve_receiver(dir: &Path, tls: TlsDir, allow: HashMap<String, Vec<String>>) -> Served {
    let receiver = Arc::new(
        Receiver::open(&ReceiverConfig {
            repo: dir.join("repo"),
            allow,
        })
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = rt.spawn(serve(
        listener,
        tls.server_config().unwrap(),
        receiver.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        rt,
        addr,
        url: format!("https://{addr}"),
        tls,
        receiver,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A receiver of `dir/repo` whose one agent, `a@t`, may write group `g`.
pub fn serve_agent_a(dir: &Path) -> Served {
    serve_receiver(dir, certificates(dir, &["a@t"]), allow(&[("a", "g")]))
}

/// A fixture: a temporary directory, [`serve_agent_a`] there, the keys
/// derived from `seed` and agent `a`'s client with its session open.
pub fn agent_a(seed: u8) -> (tempfile::TempDir, Served, Keys, Replication) {
    let dir = tempfile::tempdir().unwrap();
    let srv = serve_agent_a(dir.path());
    let keys = Keys::derive(&[seed; 32]);
    let a = srv.session("a", &keys);
    (dir, srv, keys, a)
}

impl Served {
    /// A replication client as identity `name`, its session for `keys` open.
    pub fn session(&self, name: &str, keys: &Keys) -> Replication {
        let mut c = replication(&self.rt, &self.tls, name, &self.url);
        ok("OpenSession", block(&self.rt, c.open_session(session(keys))));
        c
    }

    /// Signals the server to stop; its task ends once it has.
    pub fn stop(&mut self) -> JoinHandle<Result<(), tonic::transport::Error>> {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap()
    }

    /// Stops serving and asserts the server ended without an error.
    pub fn shutdown(mut self) {
        let task = self.stop();
        self.rt.block_on(task).unwrap().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `len` incompressible bytes: a xorshift64 sequence from `state` (not 0).
pub fn xorshift_bytes(mut state: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A chunk of `plain` sealed with `keys`: (its id, the sealed object).
pub fn sealed_chunk(keys: &Keys, plain: &[u8]) -> (ObjectId, Vec<u8>) {
    let id = keys.chunk_id(plain);
    (id, seal_object(keys, ObjectKind::Chunk, &id, &[], plain))
}
