//! The `Replication` service a receiver offers to agents: sessions, dedup,
//! uploads, commits, listing and reading points, leases and status. Every
//! handler authorises the caller from its certificate (see
//! [`Receiver`](crate::receiver::Receiver)) and checks every frame before it
//! touches the repository; the limits it enforces, and what they make the
//! receiver hold, are stated in the receiver module's docs.

use std::collections::HashSet;
use std::sync::Arc;

use lifeline_proto::v1 as pb;
use lifeline_proto::v1::replication_server::Replication;
use lifeline_replicator::file_formats::MAX_OBJECT_LEN;
use lifeline_replicator::{ObjectId, ObjectKind, PointRecord, SealedObject, TenantRecord};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::budget::Held;
use crate::identity::Peer;
use crate::receiver::{
    BUDGET_WAIT, MAX_IDS, MAX_LIST_PAGE, MAX_LIST_UNPAGED, MAX_READ_ANSWER, MAX_READ_IDS, MAX_RECORD, Receiver,
    blocking,
};
use crate::status::to_status;

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

/// The group a `FilterMissing`, `PutObjects` or `ReadObjects` call names in
/// its metadata ([`GROUP_METADATA`](crate::remote::GROUP_METADATA)), checked;
/// `None`: the tenant's shared store (clients before dedup scopes).
fn group_of<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = req.metadata().get(crate::remote::GROUP_METADATA) else {
        return Ok(None);
    };
    let g = v
        .to_str()
        .map_err(|_| Status::invalid_argument("the group in the request metadata is not text"))?;
    lifeline_replicator::check_name("group", g).map_err(to_status)?;
    Ok(Some(g.into()))
}

/// The store a call reaches: the named group's (its own when it has its own
/// dedup scope), else the tenant's shared one.
fn store_for(
    repo: &lifeline_replicator::Repository,
    tenant: &str,
    group: Option<&str>,
) -> Result<Arc<dyn lifeline_replicator::ChunkStore>, Status> {
    match group {
        Some(g) => repo.group_store(tenant, g),
        None => repo.store(tenant),
    }
    .map_err(to_status)
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

/// The gRPC face of a [`Receiver`].
#[derive(Clone)]
pub struct ReceiverService(Arc<Receiver>);

impl ReceiverService {
    pub fn new(receiver: Arc<Receiver>) -> ReceiverService {
        ReceiverService(receiver)
    }
}

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
        let group = group_of(&req)?;
        if !self.may_write(&agent, &tenant, group.as_deref()) {
            return Err(Status::permission_denied(match &group {
                None => format!("agent `{agent}` may write no group on this receiver (receiver --allow {agent}=GROUP)"),
                Some(g) => format!(
                    "agent `{agent}` may not write group `{g}`, so it may not upload to its store (receiver --allow {agent}=GROUP)"
                ),
            }));
        }
        let store = store_for(&*self.repo()?, &tenant, group.as_deref())?;
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
            let store = repo.group_store(&tenant, &group).map_err(to_status)?;
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
                if let Some(id) =
                    lifeline_replicator::first_missing(&repo, &tenant, &group, &roots).map_err(to_status)?
                {
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
            let repo = me.repo()?;
            match repo.create_tenant_record(&rec) {
                Err(lifeline_replicator::Error::WrongKey { expected, .. }) => Err(Status::permission_denied(format!(
                    "key fingerprint {fp} does not match tenant `{t}`'s key ({expected}): use the tenant's key file"
                ))),
                r => r.map_err(to_status),
            }?;
            // Scopes configured for this tenant exist before its first upload.
            me.create_scopes(&repo, &t).map_err(to_status)
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
        let group = group_of(&req)?;
        let ids = ids_from(&req.into_inner().ids, MAX_IDS)?;
        let me = self.0.clone();
        let missing = blocking(move || {
            let store = store_for(&*me.repo()?, &tenant, group.as_deref())?;
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
        let group = group_of(&req)?;
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
            let store = store_for(&*me.repo()?, &tenant, group.as_deref())?;
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
