//! Instant recovery: the volumes of a recovery point served over NBD as soon as
//! the point is opened (`lifeline serve`), reading through the point's index
//! and writing to an overlay, so a service can start on a point before any
//! restore and RTO does not grow with volume size.
//!
//! - [`nbd`]: the wire protocol;
//! - `point_image`: a volume of a point read in place through its index;
//! - `segment_cache`: decoded segments shared by every export, bounded;
//! - `overlay`: clients' writes and their durable block bitmap;
//! - `export`: one volume served (point + overlay);
//! - `hydrate`: copying a served volume into a target in the background;
//! - `hydration_status`: its progress as a JSON file in the overlay directory,
//!   for scripts and monitoring;
//! - `read_meter`: the bytes the exports read from the repository;
//! - `server`: connections, negotiation, requests;
//! - `point_files`, `mount`: the same volumes as read-only files in a FUSE
//!   mount (`lifeline mount`), for restoring single files through a loop mount.
//!
//! Opening a point reads its point record only (the point list and one sealed
//! object, whatever the volume sizes); index nodes, segment nodes and chunks
//! are read when a client asks for the blocks they cover.

pub mod nbd;

mod export;
mod hydrate;
mod hydration_status;
mod mount;
mod overlay;
mod point_files;
mod point_image;
mod read_meter;
mod segment_cache;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use export::{Export, READ_AHEAD_SEGMENTS};
pub use hydrate::{Hydration, HydrationProgress, HydrationTarget};
pub use hydration_status::{
    HYDRATION_STATUS_FILE, HYDRATION_STATUS_SCHEMA, HYDRATION_STATUS_VERSION, HydrationState, HydrationStatus,
    HydrationStatusFile, VolumeHydration,
};
pub use mount::{
    MountContent, MountOptions, MountPoints, MountStopper, MountedPoint, PointMount, Unmounted, check_mount_dir,
    open_for_mounting,
};
pub use overlay::{OVERLAY_BLOCK, OverlayMeta, VolumeOverlay};
pub use point_files::{FileNode, NodeKind, PointFiles, ROOT_INODE, image_name, point_dir_name};
pub use point_image::{Extent, PointImage};
pub use read_meter::{MeteredStore, ReadMeter};
pub use segment_cache::SegmentCache;
pub use server::{NbdServer, Shutdown};

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::point::RecoveryPoint;
use crate::restore::{PointSelector, select_point};
use crate::tenant_repository::TenantRepository;

/// Default bound of the decoded segment cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub group: String,
    pub point: PointSelector,
    /// Volumes to export; empty: every volume of the point.
    pub volumes: Vec<String>,
    /// Where writes go; required unless `read_only`.
    pub overlay_dir: Option<PathBuf>,
    pub read_only: bool,
    pub cache_bytes: usize,
}

/// A point opened for serving.
pub struct ServedPoint {
    pub server: NbdServer,
    pub group: String,
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    /// (name, size) of each export, in order.
    pub volumes: Vec<(String, u64)>,
    /// Blocks already in the overlay (from an earlier run), per export.
    pub overlay_blocks: Vec<u64>,
    /// What the exports have read from the repository so far.
    pub reads: Arc<ReadMeter>,
}

/// Opens the point and its overlay, ready to [`NbdServer::serve`]. Reads the
/// point record only; refuses an overlay directory of another point.
pub fn open_for_serving(repo: &dyn TenantRepository, keys: &Keys, opts: &ServeOptions) -> Result<ServedPoint> {
    let record = select_point(repo, &opts.group, opts.point)?;
    let point: RecoveryPoint = record.open(keys, &repo.describe())?;
    let mut entries = Vec::new();
    if opts.volumes.is_empty() {
        entries.extend(point.body.volumes.iter().cloned());
    } else {
        for v in &opts.volumes {
            let e = point
                .body
                .volumes
                .iter()
                .find(|e| &e.name == v)
                .ok_or_else(|| Error::NoSuchVolume {
                    group: opts.group.clone(),
                    seq: point.header.seq,
                    volume: v.clone(),
                    available: point
                        .body
                        .volumes
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if !entries.iter().any(|x: &crate::point::VolumeEntry| x.name == e.name) {
                entries.push(e.clone());
            }
        }
    }
    let volumes: Vec<(String, u64)> = entries.iter().map(|e| (e.name.clone(), e.size)).collect();
    let overlay_dir = match (&opts.overlay_dir, opts.read_only) {
        (_, true) => None,
        (Some(d), false) => Some(d.clone()),
        (None, false) => {
            return Err(Error::Invalid {
                what: "serve options",
                value: "no overlay directory".into(),
                reason: "writes need an overlay directory, or serve read-only".into(),
            });
        }
    };
    if let Some(dir) = &overlay_dir {
        OverlayMeta {
            repository_id: repo.repository_id(),
            tenant: repo.tenant().to_string(),
            group: opts.group.clone(),
            seq: point.header.seq,
            volumes: volumes.clone(),
        }
        .claim(dir)?;
    }
    let cache = Arc::new(SegmentCache::new(opts.cache_bytes));
    let reads = Arc::new(ReadMeter::default());
    let store: Arc<dyn crate::store::ChunkStore> = Arc::new(MeteredStore::new(repo.store(&opts.group)?, reads.clone()));
    let mut exports = Vec::new();
    let mut overlay_blocks = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let image = PointImage::new(store.clone(), keys.clone(), i, e, cache.clone());
        let overlay = overlay_dir
            .as_ref()
            .map(|d| VolumeOverlay::open(d, &e.name, e.size))
            .transpose()?;
        overlay_blocks.push(overlay.as_ref().map_or(0, |o| o.blocks_written()));
        exports.push(Export::new(image, overlay));
    }
    Ok(ServedPoint {
        server: NbdServer::new(exports),
        group: opts.group.clone(),
        seq: point.header.seq,
        taken_at: point.header.taken_at,
        volumes,
        overlay_blocks,
        reads,
    })
}
