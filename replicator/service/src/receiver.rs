//! The receiver: serves a site's repository to agents over gRPC with mutual TLS.
//! It never holds a key. It checks every frame (sizes, ids, the object's trailer
//! hash, references present), authorises every call from the client
//! certificate, and is append-only for agents: they can add objects and points
//! to their groups, never delete or overwrite.
//!
//! # Memory bounds
//!
//! What an identity of the deployment can make a receiver hold, per call and
//! for the whole receiver (figures measured in the README's security section):
//!
//! - a request message is at most [`MAX_REQUEST`] (2 MiB) once decoded, or
//!   [`MAX_UPLOAD_MESSAGE`] (10 MiB) for `PutObjects`;
//! - `ReadObjects`: at most [`MAX_READ_IDS`] ids; duplicates are read and
//!   answered once; the answer is cut while reading at [`MAX_READ_ANSWER`]
//!   (12 MiB) of sealed bytes, and every answer of the receiver counts twice
//!   its bytes (the read copy and the encoded copy) against one
//!   [`READ_BUDGET`] (64 MiB) until it has been sent. A call that cannot get
//!   the budget for its first object within 30 s is answered
//!   RESOURCE_EXHAUSTED (the client retries); later objects are read only
//!   while budget is free, else the answer is a shorter prefix;
//! - `PutObjects`: each message's bytes are counted against one
//!   [`UPLOAD_BUDGET`] (128 MiB) until the batch holding them is stored; a
//!   call waits for budget holding nothing but the message it just received;
//! - `ListPoints`: pages of at most 8 MiB of records (an unpaged call over
//!   15 MiB is refused); `FilterMissing`: at most 4096 ids; `CommitPoint`: a
//!   record of at most 1 MiB; `Pin`, `OpenSession`, `Status`: small answers.
//!
//! So reads make the receiver hold about `2 × READ_BUDGET` (the budget counts
//! the read and encoded copies; the encoder's buffer growth and the allocator
//! add as much again: +123 MiB measured under ten concurrent worst-case
//! calls), uploads `UPLOAD_BUDGET`, plus per open call one decoded request
//! message and its HTTP/2 stream window (4 MiB): +196 MiB measured under
//! twelve concurrent uploads of the largest messages. The receiver does not
//! limit the number of connections.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_server::{Replication, ReplicationServer};
use lifeline_replicator::file_formats::MAX_OBJECT_LEN;
use lifeline_replicator::{ObjectId, ObjectKind, PointRecord, Repository, SealedObject, TenantRecord};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::budget::{Budget, Held, HoldUntilSent, UploadsApart};
use crate::gc::GcCoordinator;
use crate::identity::Peer;
use crate::status::to_status;

/// Largest gRPC message sent or accepted (a batch of objects or ids).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Largest request message of any call but `PutObjects` (an id list, a point
/// record of at most 1 MiB): decoded before any check, so kept small.
pub const MAX_REQUEST: usize = 2 << 20;
/// Largest `PutObjects` message accepted: one object at its largest and some
/// smaller ones (the client closes a message at 512 KiB).
pub const MAX_UPLOAD_MESSAGE: usize = MAX_OBJECT_LEN + (2 << 20);
const MAX_IDS: usize = 4096;
/// Ids one `ReadObjects` call may ask for.
pub const MAX_READ_IDS: usize = 256;
const MAX_RECORD: usize = 1 << 20;
/// Sealed bytes one `ReadObjects` answer carries at most (always at least its
/// first object, which is at most [`MAX_OBJECT_LEN`]): the rest of the ids
/// are asked again.
pub const MAX_READ_ANSWER: usize = 12 << 20;
/// Bytes every `ReadObjects` answer of a receiver holds at once, counting each
/// answer twice (read and encoded) until it is sent.
pub const READ_BUDGET: usize = 64 << 20;
/// Bytes of objects received by every `PutObjects` call of a receiver and not
/// yet stored, at once.
pub const UPLOAD_BUDGET: usize = 128 << 20;
/// How long a call waits for its memory budget before RESOURCE_EXHAUSTED.
const BUDGET_WAIT: Duration = Duration::from_secs(30);
/// Bytes of point records in one page of `ListPoints`.
const MAX_LIST_PAGE: usize = 8 << 20;
/// ... and in an unpaged answer (older clients), which is refused beyond it.
const MAX_LIST_UNPAGED: usize = MAX_MESSAGE - (1 << 20);

/// What a receiver serves and to whom.
#[derive(Debug, Clone, Default)]
pub struct ReceiverConfig {
    pub repo: PathBuf,
    /// Agent → groups it may write. The agent is `NAME@TENANT`, or a bare
    /// `NAME`: that name in every tenant.
    pub allow: HashMap<String, Vec<String>>,
}

/// Checks the agents of an allow list: `NAME` or `NAME@TENANT`, and the groups.
fn check_allow(allow: &HashMap<String, Vec<String>>) -> Result<(), lifeline_replicator::Error> {
    for (agent, groups) in allow {
        match agent.split_once('@') {
            Some((name, tenant)) => {
                lifeline_replicator::check_name("agent", name)?;
                lifeline_replicator::check_name("tenant", tenant)?;
            }
            None => lifeline_replicator::check_name("agent", agent)?,
        }
        for g in groups {
            lifeline_replicator::check_name("group", g)?;
        }
    }
    Ok(())
}

/// The receiver's state: the repository it owns (its sled catalog is locked by
/// this process) and the authorisations.
pub struct Receiver {
    /// Swapped for a freshly opened one after the catalog failed (see [`Receiver::recover`]).
    repo: std::sync::RwLock<Option<Arc<Repository>>>,
    path: PathBuf,
    allow: HashMap<String, Vec<String>>,
    /// Per (tenant, group): the last committed cycle as its agent reported it.
    cycles: std::sync::Mutex<HashMap<(String, String), (f64, u64)>>,
    /// Per (tenant, agent): failed uploads and commits since start.
    errors: std::sync::Mutex<HashMap<(String, String), u64>>,
    /// A write failed since the last health check: [`Receiver::recover`] looks.
    suspect: std::sync::atomic::AtomicBool,
    /// Garbage collection alongside uploads.
    gc: GcCoordinator,
    /// Bytes held by `ReadObjects` answers until sent.
    read_budget: Budget,
    /// Bytes received by `PutObjects` and not yet stored.
    upload_budget: Budget,
    /// Serialises the check and the write of a lease.
    pins: std::sync::Mutex<()>,
}

impl Receiver {
    /// Opens (or creates) the repository directory.
    pub fn open(cfg: &ReceiverConfig) -> Result<Receiver, lifeline_replicator::Error> {
        check_allow(&cfg.allow)?;
        let repo = Repository::open_or_create(&cfg.repo)?;
        Ok(Receiver {
            repo: std::sync::RwLock::new(Some(Arc::new(repo))),
            path: cfg.repo.clone(),
            allow: cfg.allow.clone(),
            cycles: Default::default(),
            errors: Default::default(),
            suspect: Default::default(),
            gc: GcCoordinator::default(),
            read_budget: Budget::new(READ_BUDGET, "reads"),
            upload_budget: Budget::new(UPLOAD_BUDGET, "uploads"),
            pins: Default::default(),
        })
    }

    /// The groups agent `name` of `tenant` may write: those allowed to
    /// `NAME@TENANT` and to the bare `NAME`.
    fn groups_of<'a>(&'a self, name: &str, tenant: &str) -> impl Iterator<Item = &'a String> + 'a {
        let scoped = self.allow.get(&format!("{name}@{tenant}"));
        let bare = self.allow.get(name);
        scoped.into_iter().chain(bare).flatten()
    }

    /// Agent `name` of `tenant` may write `group` (any group when `None`).
    fn may_write(&self, name: &str, tenant: &str, group: Option<&str>) -> bool {
        self.groups_of(name, tenant).any(|g| group.is_none_or(|w| w == g))
    }

    /// The repository, or UNAVAILABLE while it is being reopened.
    fn repo(&self) -> Result<Arc<Repository>, Status> {
        self.repo
            .read()
            .expect("repo lock")
            .clone()
            .ok_or_else(|| Status::unavailable("the receiver is reopening its catalog after an I/O error; retry"))
    }

    /// After an I/O error (a full disk, say) sled refuses every later operation
    /// until the database is opened again. Checks the catalog and, when it is in
    /// that state and no request holds the repository, reopens it: unpublished
    /// packs are recovered at open, so nothing that was acknowledged is lost.
    /// Returns true when it reopened.
    pub fn recover(&self) -> bool {
        if !self.suspect.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        self.recover_if_failed()
    }

    /// The repository this receiver serves (`None` while it is being reopened).
    pub fn repository(&self) -> Option<Arc<Repository>> {
        self.repo.read().expect("repo lock").clone()
    }

    /// [`recover`](Self::recover) without waiting for a failed request to
    /// suggest it: checks the catalog now (with a small write).
    pub fn recover_if_failed(&self) -> bool {
        use std::sync::atomic::Ordering;
        let healthy = match self.repo.read().expect("repo lock").as_ref() {
            Some(r) => r.catalog().check().is_ok(),
            None => false,
        };
        if healthy {
            return false;
        }
        let mut g = self.repo.write().expect("repo lock");
        if let Some(r) = g.as_ref()
            && Arc::strong_count(r) > 1
        {
            // A request still uses it: try again on the next tick.
            self.suspect.store(true, Ordering::Relaxed);
            return false;
        }
        // Drop the failed database first: sled's lock is released with it.
        *g = None;
        match Repository::open(&self.path) {
            Ok(r) => {
                tracing::warn!(repo = %self.path.display(), "catalog reopened after an I/O error");
                *g = Some(Arc::new(r));
                true
            }
            Err(e) => {
                tracing::error!(repo = %self.path.display(), error = %e, "cannot reopen the catalog yet");
                self.suspect.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// The repository, or Unavailable while its catalog is being reopened.
    fn serving(&self) -> Result<Arc<Repository>, lifeline_replicator::Error> {
        self.repository()
            .ok_or_else(|| lifeline_replicator::Error::Unavailable {
                repository: self.path.display().to_string(),
                message: "the catalog is being reopened after an I/O error".into(),
            })
    }

    /// Collects garbage of `tenant` while agents keep uploading (what the
    /// admin service's Gc does; the receiver's own process may call it directly).
    pub fn gc(
        &self,
        tenant: &str,
        grace: std::time::Duration,
        dry_run: bool,
    ) -> Result<lifeline_replicator::GcReport, lifeline_replicator::Error> {
        let repo = self.serving()?;
        self.gc.collect(&repo, tenant, grace, dry_run)
    }

    /// The no-key scrub of `tenant` (what the admin service's Verify does); no
    /// collection runs meanwhile.
    pub fn verify(&self, tenant: &str) -> Result<lifeline_replicator::VerifyReport, lifeline_replicator::Error> {
        let repo = self.serving()?;
        let _no_gc = self.gc.no_collection();
        lifeline_replicator::verify(
            &repo,
            &lifeline_replicator::VerifyOptions {
                tenant: tenant.into(),
                keys: None,
                progress: None,
                repair: false,
            },
        )
    }

    /// Sets a function every garbage collection calls between its scan and its
    /// sweep (with no lock held): a test seam to hold a collection there while
    /// agents upload. `None` removes it.
    pub fn set_gc_before_sweep(&self, hook: Option<Arc<dyn Fn() + Send + Sync>>) {
        self.gc.set_before_sweep(hook);
    }

    fn agent<T>(&self, req: &Request<T>) -> Result<(String, String), Status> {
        match Peer::of(req)? {
            Peer::Agent { name, tenant } => Ok((name, tenant)),
            Peer::Admin { name } => Err(Status::permission_denied(format!(
                "admin `{name}` cannot replicate; use an agent identity"
            ))),
        }
    }

    /// Counts a failed upload or commit of `agent` (shown by status).
    fn count<T>(&self, tenant: &str, agent: &str, r: Result<T, Status>) -> Result<T, Status> {
        if r.is_err() {
            self.suspect.store(true, std::sync::atomic::Ordering::Relaxed);
            *self
                .errors
                .lock()
                .expect("errors")
                .entry((tenant.to_string(), agent.to_string()))
                .or_default() += 1;
        }
        r
    }

    fn tenant_known(&self, tenant: &str) -> Result<(), Status> {
        match self.repo()?.catalog().tenant(tenant).map_err(to_status)? {
            Some(_) => Ok(()),
            None => Err(Status::failed_precondition(format!(
                "tenant `{tenant}` has no namespace yet: open a session first"
            ))),
        }
    }
}

fn ids_from(raw: &[Vec<u8>], max: usize) -> Result<Vec<ObjectId>, Status> {
    if raw.len() > max {
        return Err(Status::invalid_argument(format!(
            "{} ids in one call; at most {max}",
            raw.len()
        )));
    }
    raw.iter()
        .map(|b| ObjectId::from_slice(b).map_err(|e| Status::invalid_argument(e.to_string())))
        .collect()
}

const BATCH_BYTES: usize = 4 << 20;
const BATCH_OBJECTS: usize = 1024;

/// Checks and stores a batch of sealed objects: (objects, new objects, new
/// bytes). Adds to `touched`, when given, every object stored and everything
/// they reference.
fn store_batch(
    store: &dyn lifeline_replicator::ChunkStore,
    objects: Vec<(ObjectId, prost::bytes::Bytes)>,
    mut touched: Option<&mut Vec<ObjectId>>,
) -> Result<(u64, u64, u64), Status> {
    use rayon::prelude::*;
    let (mut n, mut new, mut bytes) = (0u64, 0u64, 0u64);
    // Structure and trailer hash of every object, on every core; then the
    // stores, in order.
    let parsed: Vec<Result<SealedObject, String>> = objects.par_iter().map(|(_, s)| SealedObject::parse(s)).collect();
    for ((id, sealed), obj) in objects.into_iter().zip(parsed) {
        let obj = obj.map_err(|reason| {
            Status::data_loss(format!(
                "object {id} was damaged in transit or is not a Lifeline object: {reason}"
            ))
        })?;
        // Referential order: a node is accepted only after what it references.
        // A miss is Aborted, not refused: a concurrent upload that failed may
        // have taken the referenced object with it; the agent asks again.
        if obj.header.kind != ObjectKind::Chunk {
            let missing = store.missing(&obj.header.refs).map_err(to_status)?;
            if let Some(pos) = missing.iter().position(|m| *m) {
                return Err(Status::aborted(format!(
                    "object {id} references {} which this receiver does not hold: send referenced objects first",
                    obj.header.refs[pos]
                )));
            }
        }
        n += 1;
        if let Some(t) = touched.as_deref_mut() {
            t.push(id);
            t.extend_from_slice(&obj.header.refs);
        }
        if store.put(&id, &sealed).map_err(to_status)? {
            new += 1;
            bytes += sealed.len() as u64;
        }
    }
    Ok((n, new, bytes))
}

/// A batch being stored on a blocking thread: what [`store_batch`] returns.
type StoreTask = tokio::task::JoinHandle<Result<(u64, u64, u64), Status>>;

/// Waits for a batch to be stored and counts it.
async fn add_stored(summary: &mut pb::PutSummary, task: StoreTask) -> Result<(), Status> {
    let (n, new, bytes) = task
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))??;
    summary.objects += n;
    summary.bytes += bytes;
    summary.already_present += n - new;
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

/// The gRPC face of a [`Receiver`].
#[derive(Clone)]
pub struct ReceiverService(Arc<Receiver>);

impl std::ops::Deref for ReceiverService {
    type Target = Receiver;
    fn deref(&self) -> &Receiver {
        &self.0
    }
}

impl ReceiverService {
    async fn put_objects_inner(
        &self,
        req: Request<Streaming<pb::SealedObjects>>,
    ) -> Result<Response<pb::PutSummary>, Status> {
        let (agent, tenant) = self.agent(&req)?;
        self.tenant_known(&tenant)?;
        if !self.may_write(&agent, &tenant, None) {
            return Err(Status::permission_denied(format!(
                "agent `{agent}` may write no group on this receiver (receiver --allow {agent}=GROUP)"
            )));
        }
        let store = self.repo()?.store(&tenant).map_err(to_status)?;
        let losses = store.losses();
        let mut stream = req.into_inner();
        let mut summary = pb::PutSummary::default();
        // Objects are checked and stored in batches: one hand-off to a blocking
        // thread per few MiB instead of one per object.
        let mut batch: Vec<(ObjectId, prost::bytes::Bytes)> = Vec::new();
        let mut batch_bytes = 0usize;
        // The upload budget the batch holds (released once it is stored).
        let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
        let mut storing: Option<StoreTask> = None;
        loop {
            let msg = stream.next().await;
            let ended = msg.is_none();
            if let Some(msg) = msg {
                let msg = msg?;
                let bytes: usize = msg.objects.iter().map(|o| o.sealed.len() + o.id.len()).sum();
                let permit = match self.upload_budget.try_acquire(bytes) {
                    Some(p) => p,
                    None => {
                        // Wait holding nothing (else uploads waiting on each
                        // other could hold the whole budget): store this
                        // call's objects first.
                        if let Some(prev) = storing.take() {
                            add_stored(&mut summary, prev).await?;
                        }
                        if !batch.is_empty() {
                            let objects = std::mem::take(&mut batch);
                            batch_bytes = 0;
                            let task = self.store_task(&tenant, &store, objects, held.take());
                            add_stored(&mut summary, task).await?;
                        }
                        self.upload_budget.acquire(bytes, BUDGET_WAIT).await?
                    }
                };
                match &mut held {
                    Some(h) => h.merge(permit),
                    None => held = Some(permit),
                }
                for obj in msg.objects {
                    let id = ObjectId::from_slice(&obj.id).map_err(|e| Status::invalid_argument(e.to_string()))?;
                    if obj.sealed.len() > MAX_OBJECT_LEN {
                        return Err(Status::invalid_argument(format!(
                            "object {id} is larger than {MAX_OBJECT_LEN} bytes"
                        )));
                    }
                    batch_bytes += obj.sealed.len();
                    batch.push((id, obj.sealed));
                }
                if batch_bytes < BATCH_BYTES && batch.len() < BATCH_OBJECTS {
                    continue;
                }
            }
            if !batch.is_empty() {
                let objects = std::mem::take(&mut batch);
                batch_bytes = 0;
                // The batch before this one must be stored first (objects are
                // stored in the order they came); then this one is stored while
                // the next arrives, so the stream keeps flowing.
                if let Some(prev) = storing.take() {
                    add_stored(&mut summary, prev).await?;
                }
                storing = Some(self.store_task(&tenant, &store, objects, held.take()));
            }
            if ended {
                break;
            }
        }
        if let Some(prev) = storing.take() {
            add_stored(&mut summary, prev).await?;
        }
        let s2 = store.clone();
        blocking(move || s2.sync().map_err(to_status)).await?;
        if store.losses() != losses {
            // Another upload's failed write dropped objects this one had put.
            return Err(Status::unavailable(
                "a failed write on the receiver (disk full?) dropped objects of this upload before they were \
                 durable: retry (the agent does so by itself)",
            ));
        }
        tracing::debug!(%agent, objects = summary.objects, bytes = summary.bytes, "objects durable");
        Ok(Response::new(summary))
    }

    /// Stores a batch on a blocking thread; `held` (its upload budget) is
    /// released once it is stored.
    fn store_task(
        &self,
        tenant: &str,
        store: &Arc<dyn lifeline_replicator::ChunkStore>,
        objects: Vec<(ObjectId, prost::bytes::Bytes)>,
        held: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> StoreTask {
        // On error nothing is abandoned store-wide: other uploads may rely on
        // objects still pending; the store drops by itself only what it
        // could not write, and unsynced leftovers are synced by later
        // uploads or removed at restart.
        let st = store.clone();
        let me = self.0.clone();
        let t = tenant.to_string();
        tokio::task::spawn_blocking(move || {
            let _held = held;
            // Stores hold off a collection's sweep (see the gc module).
            let _gate = me.gc.read();
            if !me.gc.recording(&t) {
                return store_batch(st.as_ref(), objects, None);
            }
            let mut touched = Vec::new();
            let r = store_batch(st.as_ref(), objects, Some(&mut touched));
            me.gc.touch(&t, touched);
            r
        })
    }

    async fn commit_point_inner(
        &self,
        req: Request<pb::CommitPointRequest>,
    ) -> Result<Response<pb::CommitPointResponse>, Status> {
        let (agent, tenant) = self.agent(&req)?;
        self.tenant_known(&tenant)?;
        let msg = req.into_inner();
        let (cycle_secs, bytes_sent) = (msg.cycle_secs, msg.bytes_sent);
        let raw = msg.record;
        if raw.len() > MAX_RECORD {
            return Err(Status::invalid_argument("point record too large"));
        }
        let rec: PointRecord = serde_json::from_slice(&raw)
            .map_err(|e| Status::invalid_argument(format!("undecodable point record: {e}")))?;
        let h = &rec.header;
        if h.tenant != tenant {
            return Err(Status::permission_denied(format!(
                "agent `{agent}` of tenant `{tenant}` cannot commit for tenant `{}`",
                h.tenant
            )));
        }
        lifeline_replicator::check_name("group", &h.group).map_err(to_status)?;
        if !self.may_write(&agent, &tenant, Some(&h.group)) {
            return Err(Status::permission_denied(format!(
                "agent `{agent}` may not write group `{}` (receiver --allow {agent}=GROUP)",
                h.group
            )));
        }
        let me = self.0.clone();
        let seq = h.seq;
        let group = h.group.clone();
        let key = (tenant.clone(), group.clone());
        blocking(move || {
            let repo = me.repo()?;
            let store = repo.store(&tenant).map_err(to_status)?;
            let roots: Vec<ObjectId> = rec.header.roots.iter().filter_map(|r| r.0).collect();
            // Dedup counts objects still pending in uploads as present, so a
            // cycle may send nothing and rely on them: make everything pending
            // durable first (nothing to do in the usual case, where the cycle's
            // own upload already did), so the check below sees only durable
            // objects or misses.
            store.sync().map_err(to_status)?;
            let _gate = me.gc.read();
            if me.gc.needs_full_check(cycle_secs) {
                // A collection overlapped the agent's cycle: something it was told
                // is present may have been collected since. Check the whole tree.
                if let Some(id) = lifeline_replicator::first_missing(&repo, &tenant, &roots).map_err(to_status)? {
                    return Err(Status::aborted(format!(
                        "point {} of group `{}` references {id}, which garbage collection removed during the \
                         agent's cycle: retry the cycle (the agent does so by itself)",
                        rec.header.seq, rec.header.group
                    )));
                }
            } else {
                let missing = store.missing(&roots).map_err(to_status)?;
                if let Some(pos) = missing.iter().position(|m| *m) {
                    return Err(Status::failed_precondition(format!(
                        "point {} of group `{}` references {} which this receiver does not hold",
                        rec.header.seq, rec.header.group, roots[pos]
                    )));
                }
            }
            repo.commit_point(&rec).map_err(to_status)?;
            me.gc.touch(&tenant, roots);
            Ok(())
        })
        .await?;
        self.cycles
            .lock()
            .expect("cycles")
            .insert(key, (cycle_secs, bytes_sent));
        tracing::info!(%agent, seq, cycle_secs, bytes_sent, "point committed");
        Ok(Response::new(pb::CommitPointResponse { seq }))
    }
}

#[tonic::async_trait]
impl Replication for ReceiverService {
    async fn open_session(
        &self,
        req: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let (agent, tenant) = self.agent(&req)?;
        let r = req.into_inner();
        if r.protocol_version != lifeline_proto::PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version {} is not served here (this receiver speaks {}): upgrade the older side",
                r.protocol_version,
                lifeline_proto::PROTOCOL_VERSION
            )));
        }
        let me = self.0.clone();
        let t = tenant.clone();
        if r.key_fingerprint.is_empty() {
            // A read-only session (listing points): nothing is created.
            tracing::info!(%agent, %tenant, "read-only session opened");
            return Ok(Response::new(pb::OpenSessionResponse {
                protocol_version: lifeline_proto::PROTOCOL_VERSION,
                tenant,
                agent,
                repository_id: self.repo()?.id().into(),
            }));
        }
        let fp: [u8; 16] = r
            .key_fingerprint
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("key_fingerprint must have 16 bytes"))?;
        let fp = hex::encode(fp);
        let may_write = self.may_write(&agent, &tenant, None);
        let a2 = agent.clone();
        blocking(move || {
            // Only an agent allowed to write some group may create a tenant's
            // namespace (and so bind it to a key); others may only read.
            if !may_write && me.repo()?.catalog().tenant(&t).map_err(to_status)?.is_none() {
                return Err(Status::permission_denied(format!(
                    "agent `{a2}` may write no group on this receiver, so it cannot create tenant `{t}` (receiver --allow {a2}=GROUP)"
                )));
            }
            let rec = TenantRecord {
                name: t.clone(),
                key_fingerprint: fp.clone(),
                created: chrono::Utc::now().to_rfc3339(),
            };
            // The first session of a tenant records its key; a later one with
            // another key is refused (in the agent's terms: the repository's
            // path and `lifeline init` mean nothing on the agent's side).
            match me.repo()?.create_tenant_record(&rec) {
                Err(lifeline_replicator::Error::WrongKey { expected, .. }) => Err(Status::permission_denied(format!(
                    "key fingerprint {fp} does not match tenant `{t}`'s key ({expected}): use the tenant's key file"
                ))),
                r => r.map_err(to_status),
            }
        })
        .await?;
        tracing::info!(%agent, %tenant, "session opened");
        Ok(Response::new(pb::OpenSessionResponse {
            protocol_version: lifeline_proto::PROTOCOL_VERSION,
            tenant,
            agent,
            repository_id: self.repo()?.id().into(),
        }))
    }

    async fn filter_missing(&self, req: Request<pb::ObjectIds>) -> Result<Response<pb::MissingMask>, Status> {
        let (_, tenant) = self.agent(&req)?;
        self.tenant_known(&tenant)?;
        let ids = ids_from(&req.into_inner().ids, MAX_IDS)?;
        let me = self.0.clone();
        let missing = blocking(move || {
            let store = me.repo()?.store(&tenant).map_err(to_status)?;
            // An object answered present must survive a collection running now.
            let _gate = me.gc.read();
            let missing = store.missing(&ids).map_err(to_status)?;
            if me.gc.recording(&tenant) {
                me.gc.touch(
                    &tenant,
                    ids.iter().zip(&missing).filter(|(_, m)| !**m).map(|(id, _)| *id),
                );
            }
            Ok(missing)
        })
        .await?;
        Ok(Response::new(pb::MissingMask { missing }))
    }

    async fn put_objects(
        &self,
        req: Request<Streaming<pb::SealedObjects>>,
    ) -> Result<Response<pb::PutSummary>, Status> {
        let (agent, tenant) = self.agent(&req)?;
        let r = self.put_objects_inner(req).await;
        self.count(&tenant, &agent, r)
    }

    async fn commit_point(
        &self,
        req: Request<pb::CommitPointRequest>,
    ) -> Result<Response<pb::CommitPointResponse>, Status> {
        let (agent, tenant) = self.agent(&req)?;
        let r = self.commit_point_inner(req).await;
        self.count(&tenant, &agent, r)
    }

    async fn list_points(
        &self,
        req: Request<pb::ListPointsRequest>,
    ) -> Result<Response<pb::ListPointsResponse>, Status> {
        let tenant = match Peer::of(&req)? {
            Peer::Agent { tenant, .. } => tenant,
            Peer::Admin { .. } => {
                return Err(Status::permission_denied(
                    "admins list points per tenant with an agent identity",
                ));
            }
        };
        let r = req.into_inner();
        let me = self.0.clone();
        let (records, more) = blocking(move || {
            let g = (!r.group.is_empty()).then_some(r.group.as_str());
            let points = me.repo()?.points(&tenant, g).map_err(to_status)?;
            let after = (r.paged && !r.after_group.is_empty()).then_some((r.after_group.as_str(), r.after_seq));
            let cap = if r.paged { MAX_LIST_PAGE } else { MAX_LIST_UNPAGED };
            let (mut records, mut size) = (Vec::new(), 0usize);
            for p in points
                .iter()
                .filter(|p| after.is_none_or(|a| (p.header.group.as_str(), p.header.seq) > a))
            {
                let rec = serde_json::to_vec(p).expect("serialisable");
                if size + rec.len() > cap && !records.is_empty() {
                    if r.paged {
                        return Ok((records, true));
                    }
                    return Err(Status::resource_exhausted(format!(
                        "tenant `{tenant}` has over {cap} bytes of point records: list them with a newer client \
                         (it reads them in pages), or name a group"
                    )));
                }
                size += rec.len();
                records.push(rec);
            }
            Ok((records, false))
        })
        .await?;
        Ok(Response::new(pb::ListPointsResponse { records, more }))
    }

    /// Each distinct id once, in the order first asked; the answer is cut
    /// while reading (see the module docs).
    async fn read_objects(&self, req: Request<pb::ObjectIds>) -> Result<Response<pb::SealedObjects>, Status> {
        let (_, tenant) = self.agent(&req)?;
        self.tenant_known(&tenant)?;
        let mut seen = HashSet::new();
        let ids: Vec<ObjectId> = ids_from(&req.into_inner().ids, MAX_READ_IDS)?
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect();
        if ids.is_empty() {
            return Ok(Response::new(pb::SealedObjects::default()));
        }
        // Room for one object at its largest, read and encoded; the budget for
        // each later one is taken only if free now (a call never waits while
        // holding budget, so calls cannot starve each other).
        let worst = 2 * MAX_OBJECT_LEN;
        let first = self.read_budget.acquire(worst, BUDGET_WAIT).await?;
        let me = self.0.clone();
        let (objects, held) = blocking(move || {
            let store = me.repo()?.store(&tenant).map_err(to_status)?;
            let mut objects = Vec::new();
            let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
            let mut total = 0usize;
            let mut next = Some(first);
            for id in &ids {
                let Some(mut room) = next.take().or_else(|| me.read_budget.try_acquire(worst)) else {
                    break;
                };
                let sealed = store.get(id).map_err(to_status)?;
                if sealed.len() > MAX_OBJECT_LEN {
                    tracing::error!(%tenant, object = %id, len = sealed.len(), "stored object larger than an object may be");
                    return Err(Status::data_loss(format!(
                        "object {id} is damaged on the receiver (larger than {MAX_OBJECT_LEN} bytes): its \
                         operator can run `lifeline verify`"
                    )));
                }
                if !objects.is_empty() && total + sealed.len() > MAX_READ_ANSWER {
                    break;
                }
                total += sealed.len();
                let keep = room.split(2 * sealed.len()).expect("an object is at most MAX_OBJECT_LEN");
                match &mut held {
                    Some(h) => h.merge(keep),
                    None => held = Some(keep),
                }
                objects.push(pb::SealedObject {
                    id: id.0.to_vec(),
                    sealed: sealed.into(),
                });
            }
            Ok((objects, held))
        })
        .await?;
        let mut resp = Response::new(pb::SealedObjects { objects });
        if let Some(h) = held {
            resp.extensions_mut().insert(Held::new(h));
        }
        Ok(resp)
    }

    /// Leases: an agent allowed to write the group, or an admin naming the
    /// tenant; the lease records who took it, and only that identity or an
    /// admin may renew or release it.
    async fn pin(&self, req: Request<pb::PinRequest>) -> Result<Response<pb::PinResponse>, Status> {
        let peer = Peer::of(&req)?;
        let r = req.into_inner();
        let tenant = match &peer {
            Peer::Agent { tenant, .. } => tenant.clone(),
            Peer::Admin { .. } => {
                lifeline_replicator::check_name("tenant", &r.tenant).map_err(to_status)?;
                r.tenant.clone()
            }
        };
        self.tenant_known(&tenant)?;
        lifeline_replicator::check_name("group", &r.group).map_err(to_status)?;
        if let Peer::Agent { name, .. } = &peer
            && !self.may_write(name, &tenant, Some(&r.group))
        {
            return Err(Status::permission_denied(format!(
                "agent `{name}` may not write group `{}`, so it may not lease its points (receiver --allow \
                 {name}@{tenant}={})",
                r.group, r.group
            )));
        }
        if r.holder.is_empty() || r.holder.len() > 128 || r.holder.contains('\0') {
            return Err(Status::invalid_argument("holder must be 1 to 128 bytes without NUL"));
        }
        if !r.release && !(1..=7 * 86_400).contains(&r.ttl_secs) {
            return Err(Status::invalid_argument("ttl_secs must be from 1 to 604800 (7 days)"));
        }
        let me = self.0.clone();
        blocking(move || {
            let repo = me.repo()?;
            let cat = repo.catalog();
            let who = peer.common_name();
            let admin = matches!(peer, Peer::Admin { .. });
            let _one_at_a_time = me.pins.lock().expect("pins");
            let now = chrono::Utc::now();
            let lease = cat.lease(&tenant, &r.group, r.seq, &r.holder).map_err(to_status)?;
            // A lease taken by another identity (an unexpired one, to take or
            // renew; any, to release) is that identity's or an admin's to end.
            // A lease that recorded no owner (taken on the repository's host, or
            // before owners were recorded) may be released by writers of the group.
            let foreign = lease.as_ref().and_then(|l| {
                let owner = l.owner.as_deref()?;
                let live = r.release || l.until > now;
                (owner != who && live).then(|| owner.to_string())
            });
            if let Some(owner) = foreign
                && !admin
            {
                tracing::warn!(%who, %tenant, group = %r.group, seq = r.seq, holder = %r.holder, %owner,
                    release = r.release, "lease of another identity refused");
                return Err(Status::permission_denied(format!(
                    "holder `{}`'s lease on point {} of group `{}` was taken by another identity: only it or an \
                     admin may {} it",
                    r.holder,
                    r.seq,
                    r.group,
                    if r.release { "release" } else { "renew" }
                )));
            }
            if r.release {
                if lease.is_some() {
                    tracing::info!(%who, %tenant, group = %r.group, seq = r.seq, holder = %r.holder, "lease released");
                }
                return cat.unpin(&tenant, &r.group, r.seq, &r.holder).map_err(to_status);
            }
            if !repo
                .points(&tenant, Some(&r.group))
                .map_err(to_status)?
                .iter()
                .any(|p| p.header.seq == r.seq)
            {
                return Err(Status::not_found(format!("group `{}` has no point {}", r.group, r.seq)));
            }
            let until = now + chrono::Duration::seconds(r.ttl_secs as i64);
            tracing::info!(%who, %tenant, group = %r.group, seq = r.seq, holder = %r.holder, "point pinned");
            cat.pin_owned(&tenant, &r.group, r.seq, &r.holder, until, Some(&who))
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::PinResponse {}))
    }

    /// An agent sees its tenant's groups; an admin (read-only here) every tenant's.
    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let tenants = match Peer::of(&req)? {
            Peer::Agent { tenant, .. } => Some(vec![tenant]),
            Peer::Admin { .. } => None,
        };
        let me = self.0.clone();
        let groups = blocking(move || {
            let tenants = match tenants {
                Some(t) => t,
                None => me.repo()?.catalog().tenants().map_err(to_status)?,
            };
            let mut all = Vec::new();
            for tenant in tenants {
                all.extend(me.group_status(&tenant)?);
            }
            Ok(all)
        })
        .await?;
        Ok(Response::new(pb::StatusResponse { groups }))
    }
}

impl Receiver {
    /// The status of each group of `tenant`.
    fn group_status(&self, tenant: &str) -> Result<Vec<pb::GroupStatus>, Status> {
        let points = self.repo()?.points(tenant, None).map_err(to_status)?;
        let mut by_group: Vec<pb::GroupStatus> = Vec::new();
        for p in points {
            match by_group.last_mut() {
                Some(g) if g.group == p.header.group => {
                    g.last_seq = p.header.seq;
                    g.last_taken_at_unix_ms = p.header.taken_at.timestamp_millis();
                    g.points += 1;
                }
                _ => by_group.push(pb::GroupStatus {
                    group: p.header.group.clone(),
                    last_seq: p.header.seq,
                    last_taken_at_unix_ms: p.header.taken_at.timestamp_millis(),
                    points: 1,
                    tenant: tenant.to_string(),
                    ..Default::default()
                }),
            }
        }
        let cycles = self.cycles.lock().expect("cycles");
        let errors = self.errors.lock().expect("errors");
        for g in &mut by_group {
            if let Some((secs, bytes)) = cycles.get(&(tenant.to_string(), g.group.clone())) {
                g.last_cycle_secs = *secs;
                g.last_bytes_sent = *bytes;
            }
            g.errors = errors
                .iter()
                .filter(|((t, agent), _)| t == tenant && self.may_write(agent, tenant, Some(&g.group)))
                .map(|(_, n)| *n)
                .sum();
        }
        Ok(by_group)
    }
}

/// The admin identity behind `req`; agents are refused: they are append-only.
fn admin_of<T>(req: &Request<T>, what: &str) -> Result<String, Status> {
    match Peer::of(req)? {
        Peer::Admin { name } => Ok(name),
        Peer::Agent { name, .. } => Err(Status::permission_denied(format!(
            "agent `{name}` cannot {what}: agents are append-only; use an admin identity"
        ))),
    }
}

/// The admin face of a [`Receiver`].
#[derive(Clone)]
pub struct AdminService(Arc<Receiver>);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn prune(&self, req: Request<pb::PruneRequest>) -> Result<Response<pb::PruneResponse>, Status> {
        let admin = admin_of(&req, "prune")?;
        let r = req.into_inner();
        lifeline_replicator::check_name("tenant", &r.tenant).map_err(to_status)?;
        lifeline_replicator::check_name("group", &r.group).map_err(to_status)?;
        let tz = chrono::FixedOffset::east_opt(r.tz_offset_secs)
            .ok_or_else(|| Status::invalid_argument("tz_offset_secs is out of range"))?;
        let named: Option<chrono_tz::Tz> = if r.tz_name.is_empty() {
            None
        } else {
            Some(r.tz_name.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "unknown time zone `{}`: write an IANA name such as Europe/Berlin",
                    r.tz_name
                ))
            })?)
        };
        let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
        let policy = lifeline_replicator::RetentionPolicy {
            journal: secs(r.journal_secs),
            keep_within: secs(r.keep_within_secs),
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        };
        if policy.is_empty() {
            return Err(Status::invalid_argument(
                "an empty retention policy would keep only the newest point: give at least one rule",
            ));
        }
        let me = self.0.clone();
        tracing::info!(%admin, tenant = %r.tenant, group = %r.group, dry_run = r.dry_run, "prune requested");
        let zone = match named {
            Some(n) => lifeline_replicator::Tz::Named(n),
            None => lifeline_replicator::Tz::Fixed(tz),
        };
        let (decisions, removed) = blocking(move || {
            let ds = me
                .repo()?
                .prune(&r.tenant, &r.group, &policy, &zone, r.dry_run)
                .map_err(to_status)?;
            let remove: Vec<u64> = ds.iter().filter(|d| !d.kept()).map(|d| d.seq).collect();
            Ok((
                serde_json::to_string(&ds).expect("serialisable"),
                if r.dry_run { vec![] } else { remove },
            ))
        })
        .await?;
        Ok(Response::new(pb::PruneResponse { decisions, removed }))
    }

    async fn gc(&self, req: Request<pb::GcRequest>) -> Result<Response<pb::GcResponse>, Status> {
        let admin = admin_of(&req, "collect garbage")?;
        let r = req.into_inner();
        if !r.tenant.is_empty() {
            lifeline_replicator::check_name("tenant", &r.tenant).map_err(to_status)?;
        }
        let me = self.0.clone();
        tracing::info!(%admin, tenant = %r.tenant, grace_secs = r.grace_secs, dry_run = r.dry_run, "garbage collection requested");
        let reports = blocking(move || {
            let repo = me.repo()?;
            let tenants = if r.tenant.is_empty() {
                repo.catalog().tenants().map_err(to_status)?
            } else {
                vec![r.tenant.clone()]
            };
            let mut reports = Vec::new();
            for t in &tenants {
                let report = me
                    .gc
                    .collect(&repo, t, std::time::Duration::from_secs(r.grace_secs), r.dry_run)
                    .map_err(to_status)?;
                tracing::info!(
                    tenant = %t,
                    removed = report.collect.objects_removed,
                    reclaimed = report.collect.bytes_reclaimed,
                    touched = report.objects_touched,
                    "garbage collected"
                );
                reports.push(serde_json::to_string(&report).expect("serialisable"));
            }
            Ok(reports)
        })
        .await?;
        Ok(Response::new(pb::GcResponse { reports }))
    }

    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyResponse>, Status> {
        let admin = admin_of(&req, "run admin operations")?;
        let tenant = req.into_inner().tenant;
        let me = self.0.clone();
        tracing::info!(%admin, %tenant, "verify requested");
        let (tenants, reports) = blocking(move || {
            let tenants = if tenant.is_empty() {
                me.repo()?.catalog().tenants().map_err(to_status)?
            } else {
                vec![tenant]
            };
            let mut reports = Vec::new();
            for t in &tenants {
                let r = me.verify(t).map_err(to_status)?;
                reports.push(serde_json::to_string(&r).expect("serialisable"));
            }
            Ok((tenants, reports))
        })
        .await?;
        Ok(Response::new(pb::VerifyResponse { reports, tenants }))
    }
}

/// Serves the receiver on `listener` until `shutdown` resolves; in-flight calls
/// finish first. An upload that does not finish commits no point; objects it
/// stored stay unreferenced (garbage collection's to remove) and are never lost
/// for other uploads that rely on them.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTlsConfig,
    receiver: Arc<Receiver>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let admin = pb::admin_server::AdminServer::new(AdminService(receiver.clone()));
    // Every second: reopen the catalog if an I/O error left it refusing work.
    let watcher = {
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let r2 = r.clone();
                let _ = tokio::task::spawn_blocking(move || r2.recover()).await;
            }
        })
    };
    let service = ReceiverService(receiver);
    let svc = HoldUntilSent(UploadsApart {
        uploads: ReplicationServer::new(service.clone())
            .max_decoding_message_size(MAX_UPLOAD_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        rest: ReplicationServer::new(service)
            .max_decoding_message_size(MAX_REQUEST)
            .max_encoding_message_size(MAX_MESSAGE),
    });
    let mut server = Server::builder()
        .tls_config(tls)?
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20));
    let r = server
        .add_service(svc)
        .add_service(admin)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await;
    watcher.abort();
    r
}
