//! Records kept in the catalog besides points.

use serde::{Deserialize, Serialize};

/// A repository's configuration, fixed at init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Repository format version.
    pub format: u32,
    /// Random id, which keys agents' local state.
    pub id: String,
    pub created: String,
}

/// A tenant: a namespace of points and objects with its own key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    pub name: String,
    /// Fingerprint of the tenant's key, hex. The key itself never reaches the repository.
    pub key_fingerprint: String,
    pub created: String,
}

/// A group with its own dedup scope: its objects are stored, deduplicated and
/// collected apart from the tenant's shared store, and only writers of the group
/// may add to them (see `Repository::create_scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRecord {
    pub tenant: String,
    pub group: String,
    pub created: String,
}
