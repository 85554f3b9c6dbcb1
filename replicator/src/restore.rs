//! Materialises a volume at a point into a file or a block device: segments in
//! parallel, holes left sparse in files, each object authenticated as it is read,
//! and a final check of the whole-volume hash computed from the bytes written.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use rayon::prelude::*;

use crate::backup::Progress;
use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, IoContext, Result};
use crate::index::{IndexNode, SegmentNode, walk_tree};
use crate::object_id::ObjectId;
use crate::point::{PointRecord, RecoveryPoint, VolumeEntry};
use crate::reader::ObjectReader;
use crate::repository::Repository;
use crate::volume_hash::{VolumeHasher, zero_segment_hash};

/// Which point: the newest, a seq, or the newest at or before an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointSelector {
    Latest,
    Seq(u64),
    AtOrBefore(DateTime<Utc>),
}

impl FromStr for PointSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(PointSelector::Latest);
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(PointSelector::Seq(n));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| PointSelector::AtOrBefore(t.with_timezone(&Utc)))
            .map_err(|_| Error::Invalid {
                what: "point",
                value: s.into(),
                reason: "write `latest`, a seq number, or an RFC 3339 time such as 2026-11-25T08:00:00Z".into(),
            })
    }
}

/// Picks a point of a group.
pub fn select_point(repo: &Repository, tenant: &str, group: &str, sel: PointSelector) -> Result<PointRecord> {
    let points = repo.points(tenant, Some(group))?;
    let found = match sel {
        PointSelector::Latest => points.last().cloned(),
        PointSelector::Seq(n) => points.iter().find(|p| p.header.seq == n).cloned(),
        // Point times are shown to the millisecond (`lifeline points`): a time
        // copied from there must select that point, not the one before it.
        PointSelector::AtOrBefore(t) => points
            .iter()
            .rev()
            .find(|p| p.header.taken_at.trunc_subsecs(3) <= t)
            .cloned(),
    };
    found.ok_or_else(|| Error::NoPoint {
        group: group.into(),
        detail: match (sel, points.is_empty()) {
            (_, true) => format!(" in {}: run `lifeline backup` first", repo.path().display()),
            (PointSelector::Seq(n), _) => format!(" with seq {n}: `lifeline points` lists them"),
            (PointSelector::AtOrBefore(t), _) => {
                format!(" at or before {}: `lifeline points` lists them", t.to_rfc3339())
            }
            (PointSelector::Latest, _) => String::new(),
        },
    })
}

/// What to restore where.
#[derive(Clone)]
pub struct RestoreOptions {
    pub tenant: String,
    pub group: String,
    pub point: PointSelector,
    pub volume: String,
    pub target: PathBuf,
    pub progress: Option<Progress>,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub group: String,
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    pub volume: String,
    pub target: PathBuf,
    pub size: u64,
    /// Bytes written (holes skipped in files).
    pub bytes_written: u64,
    pub volume_hash: String,
    pub elapsed_secs: f64,
}

struct Target {
    file: File,
    is_block_device: bool,
}

fn open_target(path: &Path, entry: &VolumeEntry) -> Result<Target> {
    let not_writable = |e: std::io::Error| {
        Error::io(
            format!(
                "cannot write restore target {} (choose a writable path)",
                path.display()
            ),
            e,
        )
    };
    let meta = fs::metadata(path).ok();
    if let Some(m) = &meta
        && m.file_type().is_block_device()
    {
        let file = OpenOptions::new().write(true).open(path).map_err(not_writable)?;
        let size =
            rustix::fs::seek(&file, rustix::fs::SeekFrom::End(0)).ctx(|| format!("measure {}", path.display()))?;
        if size < entry.size {
            return Err(Error::TargetTooSmall {
                path: path.into(),
                needed: entry.size,
                available: size,
            });
        }
        return Ok(Target {
            file,
            is_block_device: true,
        });
    }
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(Error::Invalid {
            what: "restore target",
            value: path.display().to_string(),
            reason: "is a directory: give a file or block device path".into(),
        });
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(not_writable)?;
    let st = rustix::fs::fstatvfs(&file).ctx(|| format!("statvfs {}", path.display()))?;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if available < entry.data_bytes {
        return Err(Error::TargetTooSmall {
            path: path.into(),
            needed: entry.data_bytes,
            available,
        });
    }
    file.set_len(entry.size).map_err(|e| {
        Error::io(
            format!("size restore target {} to {} bytes", path.display(), entry.size),
            e,
        )
    })?;
    Ok(Target {
        file,
        is_block_device: false,
    })
}

/// The leaves (segment node ids) of a volume's tree.
pub(crate) fn volume_leaves(reader: &ObjectReader, entry: &VolumeEntry) -> Result<Vec<Option<ObjectId>>> {
    walk_tree(entry.tree_root(), entry.segments(), |id| {
        let (refs, plain) = reader.read(id, ObjectKind::IndexNode)?;
        IndexNode::decode(&refs, &plain).map_err(|reason| reader.damaged(id, reason))
    })
}

/// Assembles segment `node` into `buf` (resized to `len`), authenticating every object.
pub(crate) fn assemble_segment(
    reader: &ObjectReader,
    node_id: &ObjectId,
    len: usize,
    buf: &mut Vec<u8>,
) -> Result<SegmentNode> {
    let (refs, plain) = reader.read(node_id, ObjectKind::SegmentNode)?;
    let node = SegmentNode::decode(&refs, &plain).map_err(|reason| reader.damaged(node_id, reason))?;
    if node.len() != len as u64 {
        return Err(reader.damaged(
            node_id,
            format!("covers {} bytes where the segment has {len}", node.len()),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    let mut pos = 0usize;
    for (elen, id) in &node.extents {
        let elen = *elen as usize;
        if let Some(id) = id {
            let (_, chunk) = reader.read(id, ObjectKind::Chunk)?;
            if chunk.len() != elen {
                return Err(reader.damaged(
                    id,
                    format!("holds {} bytes where its segment expects {elen}", chunk.len()),
                ));
            }
            buf[pos..pos + elen].copy_from_slice(&chunk);
        }
        pos += elen;
    }
    Ok(node)
}

/// Restores one volume of a point.
pub fn restore(repo: &Repository, keys: &Keys, opts: &RestoreOptions) -> Result<RestoreSummary> {
    let started = Instant::now();
    let record = select_point(repo, &opts.tenant, &opts.group, opts.point)?;
    let store = repo.store(&opts.tenant)?;
    let location = repo.path().display().to_string();
    let point: RecoveryPoint = record.open(keys, &location)?;
    let entry = point
        .body
        .volumes
        .iter()
        .find(|v| v.name == opts.volume)
        .ok_or_else(|| Error::NoSuchVolume {
            group: opts.group.clone(),
            seq: point.header.seq,
            volume: opts.volume.clone(),
            available: point
                .body
                .volumes
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?
        .clone();
    let reader = ObjectReader::new(store.as_ref(), keys);
    let leaves = volume_leaves(&reader, &entry)?;
    let target = open_target(&opts.target, &entry)?;
    let written = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let seg_size = entry.segment_size as usize;
    let hashes: Vec<Result<[u8; 32]>> = leaves
        .par_iter()
        .enumerate()
        .map_init(
            || Vec::with_capacity(seg_size),
            |buf, (i, leaf)| {
                let offset = i as u64 * entry.segment_size;
                let len = (entry.size - offset).min(entry.segment_size) as usize;
                let write = |data: &[u8], at: u64| {
                    target.file.write_all_at(data, at).map_err(|e| {
                        Error::io(
                            format!("write restore target {} at offset {at}", opts.target.display()),
                            e,
                        )
                    })
                };
                let hash = match leaf {
                    None => {
                        if target.is_block_device {
                            buf.clear();
                            buf.resize(len, 0);
                            write(buf, offset)?;
                            written.fetch_add(len as u64, Ordering::Relaxed);
                        }
                        zero_segment_hash(len)
                    }
                    Some(node_id) => {
                        let node = assemble_segment(&reader, node_id, len, buf)?;
                        if target.is_block_device {
                            write(buf, offset)?;
                            written.fetch_add(len as u64, Ordering::Relaxed);
                        } else {
                            // Write runs of data; leave holes sparse.
                            let mut pos = 0usize;
                            let mut run: Option<usize> = None;
                            for (elen, id) in node.extents.iter().map(|(l, id)| (*l as usize, id)) {
                                match (id, run) {
                                    (Some(_), None) => run = Some(pos),
                                    (None, Some(s)) => {
                                        write(&buf[s..pos], offset + s as u64)?;
                                        written.fetch_add((pos - s) as u64, Ordering::Relaxed);
                                        run = None;
                                    }
                                    _ => {}
                                }
                                pos += elen;
                            }
                            if let Some(s) = run {
                                write(&buf[s..pos], offset + s as u64)?;
                                written.fetch_add((pos - s) as u64, Ordering::Relaxed);
                            }
                        }
                        *blake3::hash(buf).as_bytes()
                    }
                };
                let d = done.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                if let Some(p) = &opts.progress {
                    p(d, entry.size);
                }
                Ok(hash)
            },
        )
        .collect();
    let mut h = VolumeHasher::new(entry.size);
    for s in hashes {
        h.segment(&s?);
    }
    target
        .file
        .sync_all()
        .ctx(|| format!("fsync restore target {}", opts.target.display()))?;
    let actual = h.finish_hex();
    if actual != entry.volume_hash {
        return Err(Error::VolumeHashMismatch {
            volume: entry.name.clone(),
            path: opts.target.clone(),
            expected: entry.volume_hash.clone(),
            actual,
        });
    }
    Ok(RestoreSummary {
        group: opts.group.clone(),
        seq: point.header.seq,
        taken_at: point.header.taken_at,
        volume: entry.name.clone(),
        target: opts.target.clone(),
        size: entry.size,
        bytes_written: written.load(Ordering::Relaxed),
        volume_hash: actual,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!("latest".parse::<PointSelector>().unwrap(), PointSelector::Latest);
        assert_eq!("12".parse::<PointSelector>().unwrap(), PointSelector::Seq(12));
        assert!(matches!(
            "2026-11-25T08:00:00Z".parse::<PointSelector>().unwrap(),
            PointSelector::AtOrBefore(_)
        ));
        let e = "yesterday".parse::<PointSelector>().unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
