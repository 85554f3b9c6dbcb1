//! The repository's catalog: configuration, tenants and points. [`Catalog`] is the
//! narrow interface; [`SledCatalog`] implements it over sled, which is used nowhere
//! else.

mod records;
mod sled_catalog;

pub use records::{RepositoryConfig, TenantRecord};
pub use sled_catalog::SledCatalog;

use crate::error::Result;
use crate::point::PointRecord;

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
    /// Creates a tenant; `false` (and no change) when it exists.
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool>;
    /// Points of a tenant, of one group or of all, ordered by group then seq.
    fn points(&self, tenant: &str, group: Option<&str>) -> Result<Vec<PointRecord>>;
    /// The newest point of a group.
    fn last_point(&self, tenant: &str, group: &str) -> Result<Option<PointRecord>>;
    /// Commits a point atomically. Fails with `Error::CommitConflict` unless its seq
    /// is the group's last seq + 1. The caller must have made every object the
    /// point references durable first.
    fn commit_point(&self, point: &PointRecord) -> Result<()>;
}
