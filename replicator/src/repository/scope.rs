//! Dedup scopes: a group may keep its objects in a store of its own instead of
//! its tenant's shared one (see [`Repository::create_scope`] and FORMAT.md,
//! "Dedup scopes").

use chrono::Utc;

use super::Repository;
use crate::error::{Error, Result};
use crate::point::check_name;
use crate::record_object;
use std::sync::Arc;

use crate::object_id::ObjectId;
use crate::store::{ChunkStore, LocalDirStore};

impl Repository {
    /// The store that holds `group`'s objects: the group's own when it has
    /// its own dedup scope ([`create_scope`](Self::create_scope)), else its
    /// tenant's shared store. Backup, restore, serve and the receiver reach a
    /// group's objects only through this.
    pub fn group_store(&self, tenant: &str, group: &str) -> Result<Arc<dyn ChunkStore>> {
        Ok(self.local_group_store(tenant, group)?)
    }

    /// [`group_store`](Self::group_store), as the local-directory store it is.
    pub(crate) fn local_group_store(&self, tenant: &str, group: &str) -> Result<Arc<LocalDirStore>> {
        let scope = self.scope_of(tenant, group)?;
        self.local_store_in(tenant, scope.as_deref())
    }

    /// Objects of a tenant put but not yet durable (uploads in progress), in
    /// every store of the tenant.
    pub fn pending_objects(&self, tenant: &str) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for scope in self.stores_of(tenant)? {
            out.extend(self.local_store_in(tenant, scope.as_deref())?.pending_ids());
        }
        Ok(out)
    }

    /// The scope a group's objects belong to: `Some(group)` when the group has
    /// its own, `None` for its tenant's shared store.
    pub fn scope_of(&self, tenant: &str, group: &str) -> Result<Option<String>> {
        Ok(self.catalog.scopes(tenant)?.into_iter().find(|g| g == group))
    }

    /// The groups of a tenant with their own dedup scope.
    pub fn scopes(&self, tenant: &str) -> Result<Vec<String>> {
        self.catalog.scopes(tenant)
    }

    /// Every store of a tenant: the shared one (`None`) first, then each
    /// group's own.
    pub fn stores_of(&self, tenant: &str) -> Result<Vec<Option<String>>> {
        let mut out = vec![None];
        out.extend(self.catalog.scopes(tenant)?.into_iter().map(Some));
        Ok(out)
    }

    /// Gives `group` of `tenant` its own dedup scope: from now on its objects
    /// are stored, deduplicated and collected apart from the tenant's shared
    /// store, so a writer of another group (which holds the same tenant key)
    /// cannot plant objects that this group would deduplicate against; a
    /// receiver takes uploads into it only from identities allowed to write the
    /// group. Set before the group's first point (its earlier points would
    /// reference the shared store): a group with points is refused. Returns
    /// `false` when the group already has its own scope. The record object is
    /// written before the catalog records it (the truth first).
    pub fn create_scope(&self, tenant: &str, group: &str) -> Result<bool> {
        check_name("tenant", tenant)?;
        check_name("group", group)?;
        let _g = self.commit.lock().expect("commit lock");
        if self.catalog.tenant(tenant)?.is_none() {
            return Err(self.no_such_tenant(tenant));
        }
        if self.scope_of(tenant, group)?.is_some() {
            return Ok(false);
        }
        if let Some(last) = self.catalog.last_point(tenant, group)? {
            return Err(Error::Invalid {
                what: "dedup scope",
                value: format!("{tenant}/{group}"),
                reason: format!(
                    "group `{group}` of tenant `{tenant}` already has points (up to {}) whose objects are in the \
                     tenant's shared store; a group gets its own scope before its first point: use a new group name",
                    last.header.seq
                ),
            });
        }
        if self.s3.is_none() {
            LocalDirStore::create(&self.path.join(objects_prefix(tenant, Some(group))))?;
        }
        let rec = crate::catalog::ScopeRecord {
            tenant: tenant.into(),
            group: group.into(),
            created: Utc::now().to_rfc3339(),
        };
        let key = record_object::scope_key(tenant, group);
        if !self.storage.put_if_absent(&key, &record_object::encode_scope(&rec))? {
            // Left by a creation a crash interrupted: it says the same.
            let loc = self.storage.locate(&key);
            record_object::decode_scope(&key, &self.storage.get(&key)?.unwrap_or_default(), &loc)?;
        }
        self.catalog.create_scope(&rec)
    }
}

/// The name of a store, which keys its object index in the catalog: the
/// tenant for its shared store, `tenant/group` for a group's own (names hold
/// no `/`).
pub(crate) fn store_name(tenant: &str, scope: Option<&str>) -> String {
    match scope {
        None => tenant.into(),
        Some(g) => format!("{tenant}/{g}"),
    }
}

/// Where a store's objects live, relative to the repository (a directory, or
/// a key prefix in a bucket).
pub(crate) fn objects_prefix(tenant: &str, scope: Option<&str>) -> String {
    match scope {
        None => format!("tenants/{tenant}/objects"),
        Some(g) => format!("tenants/{tenant}/groups/{g}/objects"),
    }
}
