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
//!
//! # Where the receiver's parts are
//!
//! This file holds the [`Receiver`] itself (its repository, its allow list,
//! the catalog recovery and the checks every call shares) and the limits
//! above. The agents' `Replication` service is in `replication.rs`; the
//! `Admin` service (verify, prune, garbage collection), with its typed
//! requests, is in `admin.rs`; `server.rs` serves both on one listener. Each
//! of those imports this file, never the other way round.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeline_replicator::Repository;
use lifeline_replicator::file_formats::MAX_OBJECT_LEN;
use tonic::{Request, Status};

use crate::budget::Budget;
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
pub(crate) const MAX_IDS: usize = 4096;
/// Ids one `ReadObjects` call may ask for.
pub const MAX_READ_IDS: usize = 256;
pub(crate) const MAX_RECORD: usize = 1 << 20;
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
pub(crate) const BUDGET_WAIT: Duration = Duration::from_secs(30);
/// Bytes of point records in one page of `ListPoints`.
pub(crate) const MAX_LIST_PAGE: usize = 8 << 20;
/// ... and in an unpaged answer (older clients), which is refused beyond it.
pub(crate) const MAX_LIST_UNPAGED: usize = MAX_MESSAGE - (1 << 20);

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

/// Creates the scopes of `own_scopes` that belong to `tenant` (existing ones
/// are kept; a group that already has points in the shared store is refused,
/// naming it).
fn create_scopes(
    repo: &Repository,
    own_scopes: &[(String, String)],
    tenant: &str,
) -> Result<(), lifeline_replicator::Error> {
    for (_, g) in own_scopes.iter().filter(|(t, _)| t == tenant) {
        if repo.create_scope(tenant, g)? {
            tracing::info!(%tenant, group = %g, "group given its own dedup scope");
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
    own_scopes: Vec<(String, String)>,
    /// Per (tenant, group): the last committed cycle as its agent reported it.
    pub(crate) cycles: std::sync::Mutex<HashMap<(String, String), (f64, u64)>>,
    /// Per (tenant, agent): failed uploads and commits since start.
    pub(crate) errors: std::sync::Mutex<HashMap<(String, String), u64>>,
    /// A write failed since the last health check: [`Receiver::recover`] looks.
    suspect: std::sync::atomic::AtomicBool,
    /// Garbage collection alongside uploads.
    pub(crate) gc: GcCoordinator,
    /// Bytes held by `ReadObjects` answers until sent.
    pub(crate) read_budget: Budget,
    /// Bytes received by `PutObjects` and not yet stored.
    pub(crate) upload_budget: Budget,
    /// Serialises the check and the write of a lease.
    pub(crate) pins: std::sync::Mutex<()>,
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
            own_scopes: Vec::new(),
            cycles: Default::default(),
            errors: Default::default(),
            suspect: Default::default(),
            gc: GcCoordinator::default(),
            read_budget: Budget::new(READ_BUDGET, "reads"),
            upload_budget: Budget::new(UPLOAD_BUDGET, "uploads"),
            pins: Default::default(),
        })
    }

    /// Gives each `(tenant, group)` of `own_scopes` its own dedup scope
    /// (`Repository::create_scope`): now for tenants the repository has, and
    /// for a new tenant when its first session creates it. A group that already
    /// has points in its tenant's shared store is refused, naming it.
    pub fn with_own_scopes(
        mut self,
        own_scopes: Vec<(String, String)>,
    ) -> Result<Receiver, lifeline_replicator::Error> {
        for (t, g) in &own_scopes {
            lifeline_replicator::check_name("tenant", t)?;
            lifeline_replicator::check_name("group", g)?;
        }
        let repo = self.repo().map_err(|s| lifeline_replicator::Error::Invalid {
            what: "receiver",
            value: self.path.display().to_string(),
            reason: s.message().to_string(),
        })?;
        for tenant in repo.catalog().tenants()? {
            create_scopes(&repo, &own_scopes, &tenant)?;
        }
        self.own_scopes = own_scopes;
        Ok(self)
    }

    /// Gives the groups of `tenant` configured with their own dedup scope
    /// their scope (a tenant's first session calls it once the tenant exists).
    pub(crate) fn create_scopes(&self, repo: &Repository, tenant: &str) -> Result<(), lifeline_replicator::Error> {
        create_scopes(repo, &self.own_scopes, tenant)
    }

    /// The groups agent `name` of `tenant` may write: those allowed to
    /// `NAME@TENANT` and to the bare `NAME`.
    fn groups_of<'a>(&'a self, name: &str, tenant: &str) -> impl Iterator<Item = &'a String> + 'a {
        let scoped = self.allow.get(&format!("{name}@{tenant}"));
        let bare = self.allow.get(name);
        scoped.into_iter().chain(bare).flatten()
    }

    /// Agent `name` of `tenant` may write `group` (any group when `None`).
    pub(crate) fn may_write(&self, name: &str, tenant: &str, group: Option<&str>) -> bool {
        self.groups_of(name, tenant).any(|g| group.is_none_or(|w| w == g))
    }

    /// The repository, or UNAVAILABLE while it is being reopened.
    pub(crate) fn repo(&self) -> Result<Arc<Repository>, Status> {
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

    pub(crate) fn agent<T>(&self, req: &Request<T>) -> Result<(String, String), Status> {
        match Peer::of(req)? {
            Peer::Agent { name, tenant } => Ok((name, tenant)),
            Peer::Admin { name } => Err(Status::permission_denied(format!(
                "admin `{name}` cannot replicate; use an agent identity"
            ))),
        }
    }

    /// Counts a failed upload or commit of `agent` (shown by status).
    pub(crate) fn count<T>(&self, tenant: &str, agent: &str, r: Result<T, Status>) -> Result<T, Status> {
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

    pub(crate) fn tenant_known(&self, tenant: &str) -> Result<(), Status> {
        match self.repo()?.catalog().tenant(tenant).map_err(to_status)? {
            Some(_) => Ok(()),
            None => Err(Status::failed_precondition(format!(
                "tenant `{tenant}` has no namespace yet: open a session first"
            ))),
        }
    }
}

/// Runs `f` on a blocking thread (catalog and store calls are synchronous).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}
