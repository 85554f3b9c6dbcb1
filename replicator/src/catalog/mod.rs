//! The repository's catalog: configuration, tenants and points. [`Catalog`] is the
//! narrow interface; [`SledCatalog`] implements it over sled, which is used nowhere
//! else.

mod records;
mod sled_catalog;

/// The object index the catalog keeps for the store (defined by the store, which writes it).
pub use crate::store::ObjectIndex;
pub use records::{RepositoryConfig, ScopeRecord, TenantRecord};
pub use sled_catalog::{SledCatalog, SledObjectIndex};

use crate::error::Result;
use crate::point::PointRecord;

/// A lease on a point (see [`Catalog::pin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    pub tenant: String,
    pub group: String,
    pub seq: u64,
    pub holder: String,
    pub until: chrono::DateTime<chrono::Utc>,
    /// Who took the lease, as the receiver authenticated it (`agent:NAME@TENANT`
    /// or `admin:NAME`); `None` for a lease taken on the repository's own host
    /// (or before leases recorded it).
    pub owner: Option<String>,
}

/// A repository's catalog. One process owns it at a time (opening it elsewhere
/// fails with `Error::CatalogLocked`); inside that process it is shared between
/// threads.
///
/// Durability: every method that writes returns only after the write is durable
/// (flushed to disk). Every value carries a version byte ([`crate::file_formats::CATALOG_VALUE_VERSION`]).
pub trait Catalog: Send + Sync {
    /// The repository configuration, if set.
    fn config(&self) -> Result<Option<RepositoryConfig>>;
    /// Sets the configuration (at init).
    fn set_config(&self, config: &RepositoryConfig) -> Result<()>;
    /// A tenant's record.
    fn tenant(&self, name: &str) -> Result<Option<TenantRecord>>;
    /// Names of every tenant.
    fn tenants(&self) -> Result<Vec<String>>;
    /// Creates a tenant; `false` (and no change) when it exists.
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool>;
    /// The groups of a tenant that have their own dedup scope, sorted.
    fn scopes(&self, tenant: &str) -> Result<Vec<String>>;
    /// Records a group's own dedup scope; `false` (and no change) when it
    /// exists. Durable when it returns.
    fn create_scope(&self, scope: &ScopeRecord) -> Result<bool>;
    /// Points of a tenant, of one group or of all, ordered by group then seq.
    fn points(&self, tenant: &str, group: Option<&str>) -> Result<Vec<PointRecord>>;
    /// The newest point of a group.
    fn last_point(&self, tenant: &str, group: &str) -> Result<Option<PointRecord>>;
    /// Commits a point atomically. Fails with `Error::CommitConflict` unless its seq
    /// is the group's last seq + 1. The caller must have made every object the
    /// point references durable first.
    fn commit_point(&self, point: &PointRecord) -> Result<()>;
    /// Records a point whatever the group's last seq (a rebuild from point
    /// objects, whose seqs have the gaps prune left). Durable when it returns.
    fn adopt_point(&self, point: &PointRecord) -> Result<()>;
    /// `(group, seq)` of every point of a tenant, in order, without decoding them.
    fn point_seqs(&self, tenant: &str) -> Result<Vec<(String, u64)>>;
    /// Removes points of a group (prune; the repository owner's authority only,
    /// never an agent's). Refuses to remove the group's newest point, so commits
    /// continue its timeline. In the same atomic batch, each removed point is
    /// marked as being pruned until [`forget_pruned`](Self::forget_pruned): its
    /// point object is deleted after this returns, and a crash in between is
    /// finished at the next open. Durable when it returns. The objects the
    /// points referenced stay until garbage collection.
    fn remove_points(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()>;
    /// `(group, seq)` of a tenant's points marked as being pruned.
    fn pruning(&self, tenant: &str) -> Result<Vec<(String, u64)>>;
    /// Drops the pruning marks once the point objects are deleted. Durable when it returns.
    fn forget_pruned(&self, tenant: &str, group: &str, seqs: &[u64]) -> Result<()>;
    /// Takes (or renews) `holder`'s lease on a point until `until`: prune keeps a
    /// point while any unexpired lease holds it. Durable when it returns.
    fn pin(
        &self,
        tenant: &str,
        group: &str,
        seq: u64,
        holder: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        self.pin_owned(tenant, group, seq, holder, until, None)
    }
    /// [`pin`](Self::pin) recording who took the lease (see [`PinRecord::owner`]);
    /// replaces `holder`'s earlier lease, whoever took it: the caller decides
    /// who may (the receiver does, from [`lease`](Self::lease)).
    fn pin_owned(
        &self,
        tenant: &str,
        group: &str,
        seq: u64,
        holder: &str,
        until: chrono::DateTime<chrono::Utc>,
        owner: Option<&str>,
    ) -> Result<()>;
    /// `holder`'s lease on a point, expired or not.
    fn lease(&self, tenant: &str, group: &str, seq: u64, holder: &str) -> Result<Option<PinRecord>>;
    /// Releases `holder`'s lease (no error when there is none).
    fn unpin(&self, tenant: &str, group: &str, seq: u64, holder: &str) -> Result<()>;
    /// Seqs of a group's points held by a lease that has not expired at `now`.
    fn pinned(
        &self,
        tenant: &str,
        group: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::BTreeSet<u64>>;
    /// Every lease of a tenant's points (repair carries them over).
    fn all_pins(&self, tenant: &str) -> Result<Vec<PinRecord>>;
    /// Ok while the catalog accepts work; the error it keeps returning once an
    /// I/O error (a full disk) made it refuse everything until reopened.
    fn check(&self) -> Result<()>;
    /// The object index of a store: a tenant's shared one (`tenant`) or a
    /// group's own (`tenant/group`, see [`scopes`](Self::scopes)).
    fn object_index(&self, store: &str) -> Result<std::sync::Arc<dyn ObjectIndex>>;
}
