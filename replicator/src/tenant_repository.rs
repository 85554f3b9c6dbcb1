//! What backup and restore need from a repository, whether it is a local
//! directory this process owns or a receiver on another site: one tenant's object
//! store and points. The network implementation lives in the service layer; the
//! core only sees this trait.

use std::sync::Arc;

use crate::error::Result;
use crate::point::PointRecord;
use crate::repository::Repository;
use crate::store::ChunkStore;

/// How a backup cycle went, reported with its commit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CycleReport {
    pub elapsed_secs: f64,
    pub bytes_sent: u64,
}

/// One tenant's view of a repository.
pub trait TenantRepository: Send + Sync {
    /// The repository's path or URL, for messages.
    fn describe(&self) -> String;
    /// The repository's id (keys the agent's local state).
    fn repository_id(&self) -> String;
    /// The tenant's name.
    fn tenant(&self) -> &str;
    /// The object store of `group`: its tenant's shared store, or the group's
    /// own when it has its own dedup scope.
    fn store(&self, group: &str) -> Result<Arc<dyn ChunkStore>>;
    /// Points of one group, or of all, ordered by group then seq.
    fn points(&self, group: Option<&str>) -> Result<Vec<PointRecord>>;
    /// Commits a point whose objects are all durable (seq = last + 1); `cycle`
    /// tells how the cycle that made it went (a receiver shows it in its status).
    fn commit_point(&self, point: &PointRecord, cycle: &CycleReport) -> Result<()>;
    /// Takes or renews `holder`'s lease on a point for `ttl` (a drill or failover
    /// using it): prune keeps it meanwhile.
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: std::time::Duration) -> Result<()>;
    /// Releases the lease.
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> Result<()>;
}

/// A tenant of a local repository.
pub struct LocalTenant<'a> {
    repo: &'a Repository,
    tenant: String,
}

impl Repository {
    /// A tenant's view of this repository.
    pub fn tenant(&self, tenant: &str) -> Result<LocalTenant<'_>> {
        self.store(tenant)?;
        Ok(LocalTenant {
            repo: self,
            tenant: tenant.into(),
        })
    }
}

impl TenantRepository for LocalTenant<'_> {
    fn describe(&self) -> String {
        self.repo.name().display().to_string()
    }
    fn repository_id(&self) -> String {
        self.repo.id().into()
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn store(&self, group: &str) -> Result<Arc<dyn ChunkStore>> {
        self.repo.group_store(&self.tenant, group)
    }
    fn points(&self, group: Option<&str>) -> Result<Vec<PointRecord>> {
        self.repo.points(&self.tenant, group)
    }
    fn commit_point(&self, point: &PointRecord, _cycle: &CycleReport) -> Result<()> {
        self.repo.commit_point(point)
    }
    fn pin(&self, group: &str, seq: u64, holder: &str, ttl: std::time::Duration) -> Result<()> {
        let until = chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7));
        self.repo.catalog().pin(&self.tenant, group, seq, holder, until)
    }
    fn unpin(&self, group: &str, seq: u64, holder: &str) -> Result<()> {
        self.repo.catalog().unpin(&self.tenant, group, seq, holder)
    }
}
