//! A receiver seen as a [`TenantRepository`], so `backup`, `restore` and `points`
//! work against `https://HOST:PORT` exactly as against a local directory. The
//! client owns its tokio runtime (the data path above it is synchronous).
//!
//! Uploads are pipelined: `put` hands the sealed object to a streaming
//! `PutObjects` call running in the background (bounded queue: sealing runs ahead
//! of the network by at most the queue), and `sync` ends the stream and waits
//! for the receiver's answer, which comes only once every object is durable.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_client::ReplicationClient;
use lifeline_replicator::{
    ChunkStore, CycleReport, Error, Keys, ObjectId, PointRecord, StoredObject, TenantRepository,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::ServiceError;
use crate::rate_limit::RateLimit;
use crate::receiver::MAX_MESSAGE;
use crate::tls::{TlsDir, client_endpoint, client_runtime};

/// Batches in flight between the sealers and the stream.
const QUEUE: usize = 16;
/// A batch of objects (one `PutObjects` message) leaves when it holds this
/// many bytes or objects: the per-message costs of gRPC, HTTP/2 and the
/// receiver's hand-offs are paid per batch instead of per object.
const UPLOAD_BATCH_BYTES: usize = 512 << 10;
const UPLOAD_BATCH_OBJECTS: usize = 256;
const FILTER_BATCH: usize = 4096;

struct Upload {
    tx: mpsc::Sender<pb::SealedObjects>,
    task: JoinHandle<Result<pb::PutSummary, tonic::Status>>,
    /// Objects put but not yet handed to the stream.
    batch: Vec<pb::SealedObject>,
    batch_bytes: usize,
}

struct Shared {
    url: String,
    rt: Runtime,
    client: ReplicationClient<Channel>,
    /// One upload per group's store (a group with its own dedup scope has
    /// its own store on the receiver).
    uploads: Mutex<std::collections::HashMap<String, Arc<GroupUpload>>>,
    limit: Mutex<Option<Arc<RateLimit>>>,
}

/// The upload in progress to one group's store.
#[derive(Default)]
struct GroupUpload {
    upload: Mutex<Option<Upload>>,
    /// Ids handed to the current upload (not yet durable).
    pending: Mutex<HashSet<ObjectId>>,
}

/// One group's replication status on a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStatus {
    pub tenant: String,
    pub group: String,
    pub points: u64,
    pub last_seq: u64,
    pub last_taken_at: chrono::DateTime<chrono::Utc>,
    pub last_cycle_secs: f64,
    pub last_bytes_sent: u64,
    pub errors: u64,
}

/// A tenant's repository on a receiver.
pub struct RemoteRepository {
    shared: Arc<Shared>,
    tenant: String,
    repository_id: String,
}

/// The object store of one group of a [`RemoteRepository`]. Every call names
/// the group in the request metadata ([`GROUP_METADATA`]): the receiver keeps
/// the objects of a group with its own dedup scope apart.
pub struct RemoteStore {
    shared: Arc<Shared>,
    group: String,
    up: Arc<GroupUpload>,
}

/// The request metadata that names the group whose store a `FilterMissing`,
/// `PutObjects` or `ReadObjects` call is for (absent: the tenant's shared
/// store).
pub const GROUP_METADATA: &str = "lifeline-group";

/// `msg` as a request naming `group` in its metadata.
fn for_group<T>(group: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = group.parse() {
        req.metadata_mut().insert(GROUP_METADATA, v);
    }
    req
}

/// Maps a status from the receiver to a domain error: refusals are permanent,
/// unavailability is transient (the agent retries).
pub(crate) fn remote(url: &str, s: tonic::Status) -> Error {
    remote_named(format!("receiver {url}"), s)
}

/// [`remote`] for a peer that is not a receiver (an agent's control API).
pub(crate) fn remote_named(repository: String, s: tonic::Status) -> Error {
    use tonic::Code::*;
    let message = format!("{}: {}", code_name(s.code()), s.message());
    match s.code() {
        Aborted => Error::Conflict {
            repository,
            message: s.message().to_string(),
        },
        Unavailable | DeadlineExceeded | ResourceExhausted | Cancelled | Unknown | Internal
            if !looks_like_tls_refusal(s.message()) =>
        {
            Error::Unavailable { repository, message }
        }
        _ => Error::Refused { repository, message },
    }
}

/// A handshake refused for a certificate problem will not fix itself by retrying.
fn looks_like_tls_refusal(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    ["certificate", "unknownissuer", "bad cert"]
        .iter()
        .any(|k| m.contains(k))
}

fn code_name(c: tonic::Code) -> &'static str {
    match c {
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::Unavailable => "unavailable (is the receiver running and reachable?)",
        tonic::Code::DataLoss => "data loss",
        tonic::Code::NotFound => "not found",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::ResourceExhausted => "out of space or resources",
        _ => "error",
    }
}

impl RemoteRepository {
    /// Connects to `url` as identity `name` from `tls`, opens a session and checks
    /// the tenant's key fingerprint. A refusal (wrong CA, unknown identity, wrong
    /// key) is an error at once.
    pub fn connect(url: &str, tls: &TlsDir, name: &str, keys: &Keys) -> Result<RemoteRepository, ServiceError> {
        Self::connect_with(url, tls, name, Some(keys))
    }

    /// [`connect`](Self::connect) without a key: enough to list points; the
    /// tenant's namespace is not created and no fingerprint is checked.
    pub fn connect_with(
        url: &str,
        tls: &TlsDir,
        name: &str,
        keys: Option<&Keys>,
    ) -> Result<RemoteRepository, ServiceError> {
        let rt = client_runtime(2)?;
        let endpoint = client_endpoint(url, tls, name, None)?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .connect_timeout(std::time::Duration::from_secs(10))
            // A receiver that stops answering (paused, partitioned) fails the
            // call within ~15 s instead of hanging the agent; it then retries.
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = rt.block_on(endpoint.connect()).map_err(|e| {
            let message = format!("cannot connect: {e} ({})", source_chain(&e));
            let repository = format!("receiver {url}");
            ServiceError::Replicator(if looks_like_tls_refusal(&message) {
                Error::Refused { repository, message }
            } else {
                Error::Unavailable { repository, message }
            })
        })?;
        let mut client = ReplicationClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let open = rt
            .block_on(client.open_session(pb::OpenSessionRequest {
                protocol_version: lifeline_proto::PROTOCOL_VERSION,
                key_fingerprint: keys.map(|k| k.fingerprint().to_vec()).unwrap_or_default(),
            }))
            .map_err(|s| ServiceError::Replicator(remote(url, s)))?
            .into_inner();
        Ok(RemoteRepository {
            shared: Arc::new(Shared {
                url: url.into(),
                rt,
                client,
                uploads: Mutex::new(Default::default()),
                limit: Mutex::new(None),
            }),
            tenant: open.tenant,
            repository_id: open.repository_id,
        })
    }
}

impl RemoteRepository {
    /// Limits uploads to `bytes_per_sec`, smoothly.
    pub fn set_upload_limit(&self, bytes_per_sec: Option<u64>) {
        *self.shared.limit.lock().expect("limit") = bytes_per_sec.map(|r| Arc::new(RateLimit::new(r)));
    }

    /// Per-group replication status of this tenant, as the receiver sees it.
    pub fn status(&self) -> lifeline_replicator::Result<Vec<GroupStatus>> {
        let s = &self.shared;
        Ok(s.rt
            .block_on(s.client.clone().status(pb::StatusRequest {}))
            .map_err(|e| remote(&s.url, e))?
            .into_inner()
            .groups
            .into_iter()
            .map(GroupStatus::from)
            .collect())
    }
}

/// Per-group replication status on a receiver, without a session: an agent
/// identity sees its tenant's groups, an admin identity every tenant's.
pub fn remote_status(url: &str, tls: &TlsDir, name: &str) -> Result<Vec<GroupStatus>, ServiceError> {
    let rt = client_runtime(0)?;
    let endpoint = client_endpoint(url, tls, name, None)?;
    let groups = rt
        .block_on(async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("{e}: {}", source_chain(&e))))?;
            ReplicationClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .status(pb::StatusRequest {})
                .await
        })
        .map_err(|s| ServiceError::Replicator(remote(url, s)))?
        .into_inner()
        .groups;
    Ok(groups.into_iter().map(GroupStatus::from).collect())
}

impl From<pb::GroupStatus> for GroupStatus {
    fn from(g: pb::GroupStatus) -> GroupStatus {
        GroupStatus {
            tenant: g.tenant,
            group: g.group,
            points: g.points,
            last_seq: g.last_seq,
            last_taken_at: chrono::DateTime::from_timestamp_millis(g.last_taken_at_unix_ms).unwrap_or_default(),
            last_cycle_secs: g.last_cycle_secs,
            last_bytes_sent: g.last_bytes_sent,
            errors: g.errors,
        }
    }
}

type AdminClient = pb::admin_client::AdminClient<tonic::transport::Channel>;

/// One call to a receiver's admin service as admin `admin`.
fn admin_call<T, F>(
    url: &str,
    tls: &TlsDir,
    admin: &str,
    call: impl FnOnce(AdminClient) -> F,
) -> Result<T, ServiceError>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let rt = client_runtime(0)?;
    let endpoint = client_endpoint(url, tls, admin, None)?;
    Ok(rt
        .block_on(async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("{e}: {}", source_chain(&e))))?;
            call(AdminClient::new(channel).max_decoding_message_size(MAX_MESSAGE)).await
        })
        .map_err(|s| ServiceError::Replicator(remote(url, s)))?
        .into_inner())
}

/// Runs the no-key verify of `tenant` (or every tenant) on a receiver, as an admin.
/// Returns (tenant, report JSON) pairs.
pub fn remote_verify(
    url: &str,
    tls: &TlsDir,
    admin: &str,
    tenant: Option<&str>,
) -> Result<Vec<(String, String)>, ServiceError> {
    let req = pb::VerifyRequest {
        tenant: tenant.unwrap_or_default().into(),
    };
    let resp = admin_call(url, tls, admin, |mut c| async move { c.verify(req).await })?;
    Ok(resp.tenants.into_iter().zip(resp.reports).collect())
}

/// Prunes a group on a receiver as admin `admin`: the decisions (JSON, newest
/// first) and the seqs removed (none with `dry_run`).
pub fn remote_prune(
    url: &str,
    tls: &TlsDir,
    admin: &str,
    req: pb::PruneRequest,
) -> Result<(String, Vec<u64>), ServiceError> {
    let resp = admin_call(url, tls, admin, |mut c| async move { c.prune(req).await })?;
    Ok((resp.decisions, resp.removed))
}

/// Collects garbage on a receiver as admin `admin`, while its agents keep
/// uploading: one JSON report per tenant.
pub fn remote_gc(url: &str, tls: &TlsDir, admin: &str, req: pb::GcRequest) -> Result<Vec<String>, ServiceError> {
    Ok(admin_call(url, tls, admin, |mut c| async move { c.gc(req).await })?.reports)
}

/// Takes or renews (`ttl` given) or releases (`None`) `holder`'s lease on
/// point `seq` of `tenant`'s `group` on a receiver, as admin `admin`: an
/// admin may lease any point and end any lease (the receiver records the
/// admin as the lease's owner). The planner leases the points its runs
/// promote this way, so that its read identity needs no write permission.
#[allow(clippy::too_many_arguments)]
pub fn remote_pin(
    url: &str,
    tls: &TlsDir,
    admin: &str,
    tenant: &str,
    group: &str,
    seq: u64,
    holder: &str,
    ttl: Option<std::time::Duration>,
) -> Result<(), ServiceError> {
    let req = pb::PinRequest {
        group: group.into(),
        seq,
        holder: holder.into(),
        ttl_secs: ttl.map_or(0, |t| t.as_secs().clamp(1, 7 * 86_400)),
        release: ttl.is_none(),
        tenant: tenant.into(),
    };
    let rt = client_runtime(0)?;
    let endpoint = client_endpoint(url, tls, admin, None)?;
    rt.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("{e}: {}", source_chain(&e))))?;
        ReplicationClient::new(channel).pin(req).await
    })
    .map_err(|s| ServiceError::Replicator(remote(url, s)))?;
    Ok(())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

impl TenantRepository for RemoteRepository {
    fn describe(&self) -> String {
        self.shared.url.clone()
    }
    fn repository_id(&self) -> String {
        self.repository_id.clone()
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn store(&self, group: &str) -> lifeline_replicator::Result<Arc<dyn ChunkStore>> {
        lifeline_replicator::check_name("group", group)?;
        let up = self
            .shared
            .uploads
            .lock()
            .expect("uploads")
            .entry(group.into())
            .or_default()
            .clone();
        Ok(Arc::new(RemoteStore {
            shared: self.shared.clone(),
            group: group.into(),
            up,
        }))
    }
    /// Reads the listing in pages (the receiver bounds each answer).
    fn points(&self, group: Option<&str>) -> lifeline_replicator::Result<Vec<PointRecord>> {
        let s = &self.shared;
        let mut out: Vec<PointRecord> = Vec::new();
        loop {
            let (after_group, after_seq) = out
                .last()
                .map(|p| (p.header.group.clone(), p.header.seq))
                .unwrap_or_default();
            let resp =
                s.rt.block_on(s.client.clone().list_points(pb::ListPointsRequest {
                    group: group.unwrap_or_default().into(),
                    paged: true,
                    after_group,
                    after_seq,
                }))
                .map_err(|e| remote(&s.url, e))?
                .into_inner();
            let before = out.len();
            for r in &resp.records {
                out.push(serde_json::from_slice(r).map_err(|e| Error::Invalid {
                    what: "point record from the receiver",
                    value: String::new(),
                    reason: e.to_string(),
                })?);
            }
            if !resp.more {
                return Ok(out);
            }
            if out.len() == before {
                return Err(Error::Invalid {
                    what: "answer from the receiver",
                    value: s.url.clone(),
                    reason: "a page of points said more follow but held none".into(),
                });
            }
        }
    }
    fn commit_point(&self, point: &PointRecord, cycle: &CycleReport) -> lifeline_replicator::Result<()> {
        let s = &self.shared;
        s.rt.block_on(s.client.clone().commit_point(pb::CommitPointRequest {
            record: serde_json::to_vec(point).expect("serialisable"),
            cycle_secs: cycle.elapsed_secs,
            bytes_sent: cycle.bytes_sent,
        }))
        // Aborted (another commit of the same seq, or a garbage collection that
        // removed something this cycle relied on) is a conflict: the agent redoes the cycle.
        .map_err(|e| remote(&s.url, e))?;
        Ok(())
    }
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: std::time::Duration) -> lifeline_replicator::Result<()> {
        self.pin_call(group, seq, holder, ttl.as_secs().clamp(1, 7 * 86_400), false)
    }
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> lifeline_replicator::Result<()> {
        self.pin_call(group, seq, holder, 0, true)
    }
}

impl RemoteRepository {
    fn pin_call(
        &self,
        group: &str,
        seq: u64,
        holder: &str,
        ttl_secs: u64,
        release: bool,
    ) -> lifeline_replicator::Result<()> {
        let s = &self.shared;
        s.rt.block_on(s.client.clone().pin(pb::PinRequest {
            group: group.into(),
            seq,
            holder: holder.into(),
            ttl_secs,
            release,
            // An agent's tenant is its certificate's.
            tenant: String::new(),
        }))
        .map_err(|e| remote(&s.url, e))?;
        Ok(())
    }
}

impl RemoteStore {
    /// One `ReadObjects` call; retried a few times while the receiver is busy
    /// (its read budget in use).
    fn read_objects(&self, ids: &[ObjectId]) -> lifeline_replicator::Result<Vec<pb::SealedObject>> {
        let s = &self.shared;
        let mut pause = std::time::Duration::from_millis(200);
        for attempt in 0.. {
            let r = s.rt.block_on(s.client.clone().read_objects(for_group(
                &self.group,
                pb::ObjectIds {
                    ids: ids.iter().map(|i| i.0.to_vec()).collect(),
                },
            )));
            match r {
                Ok(resp) => return Ok(resp.into_inner().objects),
                Err(e) if e.code() == tonic::Code::ResourceExhausted && attempt < 5 => {
                    tracing::debug!(message = e.message(), "receiver busy; reading again");
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) if e.code() == tonic::Code::NotFound => {
                    // The receiver names the missing object; a single id is that one.
                    let id = match ids {
                        [one] => one.to_hex(),
                        _ => e.message().to_string(),
                    };
                    return Err(Error::ObjectMissing {
                        id,
                        location: s.url.clone(),
                    });
                }
                Err(e) => return Err(remote(&s.url, e)),
            }
        }
        unreachable!("the loop returns")
    }

    fn start_upload(&self) -> Upload {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut client = self.shared.client.clone();
        let group = self.group.clone();
        let task = self.shared.rt.spawn(async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            client
                .put_objects(for_group(&group, stream))
                .await
                .map(|r| r.into_inner())
        });
        Upload {
            tx,
            task,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// Why an upload stream ended early: the status its call ended with.
    /// `failed` is the upload whose send failed, taken out under the lock, so
    /// this never waits for another caller's newer upload (whose stream
    /// would stay open while it waits: a deadlock).
    fn upload_ended(&self, failed: Upload) -> Error {
        let s = &self.shared;
        self.up.pending.lock().expect("pending").clear();
        let repository = format!("receiver {}", s.url);
        let Upload { tx, task, .. } = failed;
        drop(tx);
        match s.rt.block_on(task) {
            Ok(Err(status)) => remote(&s.url, status),
            Err(e) => Error::io(format!("upload to {repository}"), std::io::Error::other(e)),
            Ok(Ok(_)) => Error::Unavailable {
                repository,
                message: "the upload stream ended early".into(),
            },
        }
    }
}

impl ChunkStore for RemoteStore {
    fn put(&self, id: &ObjectId, sealed: &[u8]) -> lifeline_replicator::Result<bool> {
        self.put_owned(id, sealed.to_vec())
    }

    fn put_owned(&self, id: &ObjectId, sealed: Vec<u8>) -> lifeline_replicator::Result<bool> {
        if self.up.pending.lock().expect("pending").contains(id) {
            return Ok(false);
        }
        let limit = self.shared.limit.lock().expect("limit").clone();
        if let Some(limit) = &limit {
            limit.wait(sealed.len());
        }
        // Bytes that close a batch: under an upload limit, a small share of a
        // second's worth, so the rate stays smooth at any limit.
        let close_at = limit.map_or(UPLOAD_BATCH_BYTES, |l| {
            UPLOAD_BATCH_BYTES.min((l.rate() / 32) as usize).max(1)
        });
        let mut up = self.up.upload.lock().expect("upload");
        // Pending only once in the batch, under the same lock: another thread
        // that sees it pending (and so does not put it) puts what references
        // it after it.
        if !self.up.pending.lock().expect("pending").insert(*id) {
            return Ok(false);
        }
        if up.is_none() {
            *up = Some(self.start_upload());
        }
        let u = up.as_mut().expect("upload");
        u.batch_bytes += sealed.len();
        u.batch.push(pb::SealedObject {
            id: id.0.to_vec(),
            sealed: sealed.into(),
        });
        if u.batch_bytes < close_at && u.batch.len() < UPLOAD_BATCH_OBJECTS {
            return Ok(true);
        }
        let msg = pb::SealedObjects {
            objects: std::mem::take(&mut u.batch),
        };
        u.batch_bytes = 0;
        // Sent under the lock: batches leave in the order their objects were
        // put, so an object still follows everything it references.
        if u.tx.blocking_send(msg).is_err() {
            let failed = up.take().expect("upload");
            drop(up);
            // The stream ended early: the receiver refused something or went away.
            // Say which now: the caller abandons the upload on this error, so no
            // `sync` would report it, and the agent retries only a transient one.
            return Err(self.upload_ended(failed));
        }
        Ok(true)
    }

    /// Two: a backup's worker waits a round trip for each segment's
    /// presence query, while another works.
    fn callers_per_core(&self) -> usize {
        2
    }

    fn contains(&self, id: &ObjectId) -> lifeline_replicator::Result<bool> {
        Ok(!self.missing(std::slice::from_ref(id))?[0])
    }

    fn missing(&self, ids: &[ObjectId]) -> lifeline_replicator::Result<Vec<bool>> {
        let s = &self.shared;
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(FILTER_BATCH) {
            let resp =
                s.rt.block_on(s.client.clone().filter_missing(for_group(
                    &self.group,
                    pb::ObjectIds {
                        ids: batch.iter().map(|i| i.0.to_vec()).collect(),
                    },
                )))
                .map_err(|e| remote(&s.url, e))?
                .into_inner();
            if resp.missing.len() != batch.len() {
                return Err(Error::Invalid {
                    what: "answer from the receiver",
                    value: s.url.clone(),
                    reason: "wrong number of entries in a missing-object mask".into(),
                });
            }
            let pending = self.up.pending.lock().expect("pending");
            out.extend(batch.iter().zip(resp.missing).map(|(id, m)| m && !pending.contains(id)));
        }
        Ok(out)
    }

    fn get(&self, id: &ObjectId) -> lifeline_replicator::Result<Vec<u8>> {
        let mut one = self.get_many(std::slice::from_ref(id))?;
        Ok(one.pop().expect("one object per id"))
    }

    /// Asks for each distinct id once, 256 at a time; the receiver answers a
    /// prefix of them (it bounds each answer), and the rest are asked again.
    fn get_many(&self, ids: &[ObjectId]) -> lifeline_replicator::Result<Vec<Vec<u8>>> {
        let s = &self.shared;
        let mut index: std::collections::HashMap<ObjectId, usize> = std::collections::HashMap::new();
        let mut distinct: Vec<ObjectId> = Vec::new();
        for id in ids {
            index.entry(*id).or_insert_with(|| {
                distinct.push(*id);
                distinct.len() - 1
            });
        }
        let mut got: Vec<prost::bytes::Bytes> = Vec::with_capacity(distinct.len());
        while got.len() < distinct.len() {
            let batch = &distinct[got.len()..distinct.len().min(got.len() + crate::receiver::MAX_READ_IDS)];
            let objects = self.read_objects(batch)?;
            if objects.is_empty() || objects.len() > batch.len() {
                return Err(Error::Invalid {
                    what: "answer from the receiver",
                    value: s.url.clone(),
                    reason: format!("{} objects for {} ids", objects.len(), batch.len()),
                });
            }
            for (id, obj) in batch.iter().zip(objects) {
                if obj.id != id.0 {
                    return Err(Error::ObjectDamaged {
                        id: id.to_hex(),
                        location: s.url.clone(),
                        reason: "the receiver answered with another object".into(),
                    });
                }
                got.push(obj.sealed);
            }
        }
        // Bytes that are unique become a Vec without a copy; repeats are copies.
        let mut uses = vec![0usize; distinct.len()];
        for id in ids {
            uses[index[id]] += 1;
        }
        let mut got: Vec<Option<prost::bytes::Bytes>> = got.into_iter().map(Some).collect();
        Ok(ids
            .iter()
            .map(|id| {
                let i = index[id];
                uses[i] -= 1;
                let b = if uses[i] == 0 {
                    got[i].take().expect("each object taken at its last use")
                } else {
                    got[i].clone().expect("not yet taken")
                };
                Vec::from(b)
            })
            .collect())
    }

    fn sync(&self) -> lifeline_replicator::Result<()> {
        let up = self.up.upload.lock().expect("upload").take();
        let Some(Upload { tx, task, batch, .. }) = up else {
            return Ok(());
        };
        let s = &self.shared;
        // A send fails only when the stream already ended; the task says why.
        if !batch.is_empty() {
            let _ = tx.blocking_send(pb::SealedObjects { objects: batch });
        }
        drop(tx);
        let result = s.rt.block_on(task);
        self.up.pending.lock().expect("pending").clear();
        match result {
            Ok(Ok(summary)) => {
                tracing::debug!(
                    objects = summary.objects,
                    bytes = summary.bytes,
                    "upload durable on the receiver"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(remote(&s.url, e)),
            Err(e) => Err(Error::io(
                format!("upload to receiver {}", s.url),
                std::io::Error::other(e),
            )),
        }
    }

    fn abandon(&self) {
        if let Some(up) = self.up.upload.lock().expect("upload").take() {
            up.task.abort();
        }
        self.up.pending.lock().expect("pending").clear();
    }

    fn list(
        &self,
        _f: &mut dyn FnMut(StoredObject) -> lifeline_replicator::Result<()>,
    ) -> lifeline_replicator::Result<()> {
        Err(Error::Invalid {
            what: "operation",
            value: "list".into(),
            reason: format!(
                "not offered over the network by {}; run it on the receiver",
                self.shared.url
            ),
        })
    }

    fn delete(&self, _id: &ObjectId) -> lifeline_replicator::Result<()> {
        Err(Error::Invalid {
            what: "operation",
            value: "delete".into(),
            reason: "agents cannot delete objects on a receiver".into(),
        })
    }

    fn location(&self, id: &ObjectId) -> String {
        format!("{} (object {})", self.shared.url, id.short())
    }
}
