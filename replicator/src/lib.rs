//! Lifeline's replicator core: the data path from volumes to recovery points and
//! back. Synchronous (no tokio, no protocol types): the services that carry it over
//! the network live above it.
//!
//! - [`chunker`]: segments, holes and FastCDC chunks;
//! - `crypto`: key file, key derivation, sealed objects;
//! - [`index`]: the Merkle tree of a volume at a point;
//! - `store` / `catalog`: where objects and points live ([`ChunkStore`], [`Catalog`]);
//! - `backup`, `restore`, `verify`, `bench`: the operations;
//! - [`serve`]: instant recovery, a point's volumes served over NBD with an overlay.
//!
//! On-disk formats are documented in `FORMAT.md` at the top of the workspace; their
//! magic numbers are in [`file_formats`].

mod agent_state;
mod backup;
pub mod bench;
mod catalog;
pub mod chunker;
mod crypto;
mod error;
pub mod file_formats;
mod fsutil;
mod gc;
mod hooks;
pub mod index;
mod object_id;
mod point;
mod point_reader;
mod progress;
mod reader;
mod record_object;
mod repair;
mod repository;
mod restore;
mod retention;
pub mod serve;
mod store;
mod tenant_repository;
pub mod units;
mod verify;
mod volume;
mod volume_hash;
mod zone;

pub use agent_state::{AgentState, SegmentState, VolumeState};
pub use backup::{BackupOptions, BackupSummary, backup};
pub use catalog::{
    Catalog, ObjectIndex, PinRecord, RepositoryConfig, ScopeRecord, SledCatalog, SledObjectIndex, TenantRecord,
};
pub use crypto::{KeyFile, Keys, ObjectKind, SealedHeader, SealedObject, open_object, seal_object};
pub use error::{Error, Result};
pub use fsutil::{write_atomic, write_atomic_mode};
pub use gc::{GcReport, first_missing, gc, gc_with};
pub use hooks::{ThawGuard, run_hook};
pub use object_id::ObjectId;
pub use point::{
    Consistency, MAX_CLOCK_SKEW, PointBody, PointHeader, PointRecord, RecoveryPoint, RootRef, VolumeEntry, check_name,
};
pub use progress::Progress;
pub use repair::{RepairProgress, RepairReport, repair, repair_s3};
pub use repository::{
    Comparison, DEFAULT_TENANT, OWNER_FILE, OWNER_KEY, OwnerLease, OwnerNote, Repository, S3Context, s3_cache_dir,
    set_s3_context,
};
pub use restore::{PointSelector, RestoreOptions, RestoreSummary, restore, select_point};
pub use retention::{Decision, KeepReason, RetentionPolicy, decide, plan as plan_prune, retention_times};
pub use store::{
    ChunkStore, CollectReport, LocalDirStorage, LocalDirStore, ObjectLocation, ObjectStorage, PackId, S3Counts,
    S3Location, S3Settings, S3Stats, S3Storage, StoredObject, SweepPlan,
};
pub use tenant_repository::{CycleReport, LocalTenant, TenantRepository};
pub use verify::{AffectedPoint, DamagedObject, VerifyOptions, VerifyReport, verify};
pub use volume::VolumeSource;
pub use volume_hash::{VolumeHasher, hash_volume, zero_segment_hash};
pub use zone::Tz;
