//! Materialises a volume at a point into a file or a block device: segments in
//! parallel, holes left sparse in files, each object authenticated as it is read,
//! and a final check of the whole-volume hash computed from the bytes written.

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};

use crate::crypto::Keys;
use crate::error::{Error, IoContext, Result};
use crate::object_id::ObjectId;
use crate::point::{PointRecord, RecoveryPoint, VolumeEntry};
use crate::point_reader::{assemble_segment, volume_leaves};
use crate::progress::Progress;
use crate::reader::ObjectReader;
use crate::tenant_repository::TenantRepository;
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
pub fn select_point(repo: &dyn TenantRepository, group: &str, sel: PointSelector) -> Result<PointRecord> {
    let points = repo.points(Some(group))?;
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
            (_, true) => format!(" in {}: run `lifeline backup` first", repo.describe()),
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
    /// Of `elapsed_secs`, the time the final fsync took to make the volume durable.
    pub sync_secs: f64,
}

struct Target {
    file: File,
    /// The same file opened with O_DIRECT, where the file system allows it:
    /// whole aligned blocks go straight to the device (no copy into the page
    /// cache, nothing left to flush at the final fsync, no cache evicted by a
    /// restore larger than memory). `None`: every write is buffered.
    direct: Option<File>,
    is_block_device: bool,
}

/// Alignment of O_DIRECT buffers, offsets and lengths: a page, a multiple of
/// any device's logical block size.
const DIRECT_ALIGN: usize = 4096;

/// Shortest write that goes direct. A direct write into a hole allocates under
/// the inode's lock and waits for the device: fine for a 4 MiB run, but a
/// volume with thousands of scattered 4 KiB blocks (a file system's metadata,
/// a database's pages) restores much faster through the page cache, where the
/// kernel sorts and merges them at the final fsync (measured on ext4: 1.6 s
/// all direct, 1.13 s with this threshold, on the 3 GiB benchmark image).
const DIRECT_MIN: usize = 256 << 10;

fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // EINVAL where the file system has no direct I/O (tmpfs): buffered it is.
    OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .ok()
}

impl Target {
    /// Writes `data` at `at`: its aligned whole blocks directly when it is long
    /// enough and the file system allows, anything else (short runs, a short
    /// tail) through the page cache. Returns the range written through the
    /// page cache, if any.
    fn write(&self, data: &[u8], at: u64, path: &Path) -> Result<Option<Range<u64>>> {
        let err = |at: u64, e| Error::io(format!("write restore target {} at offset {at}", path.display()), e);
        let aligned = (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN) && at.is_multiple_of(DIRECT_ALIGN as u64);
        let direct_len = if aligned && data.len() >= DIRECT_MIN {
            data.len() / DIRECT_ALIGN * DIRECT_ALIGN
        } else {
            0
        };
        let mut done = 0;
        if let (Some(direct), true) = (&self.direct, direct_len > 0) {
            match direct.write_all_at(&data[..direct_len], at) {
                Ok(()) => done = direct_len,
                // A file system that accepted the open but not the write.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {}
                Err(e) => return Err(err(at, e)),
            }
        }
        if done < data.len() {
            let at = at + done as u64;
            self.file.write_all_at(&data[done..], at).map_err(|e| err(at, e))?;
            return Ok(Some(at..at + (data.len() - done) as u64));
        }
        Ok(None)
    }

    /// Starts writing back what went through the page cache in `range`, so
    /// the final fsync does not wait for a whole volume's short runs at once
    /// (thousands of scattered blocks of a file system's metadata).
    fn write_back(&self, range: Range<u64>) {
        let _ = rustix::fs::fadvise(
            &self.file,
            range.start,
            std::num::NonZeroU64::new(range.end - range.start),
            rustix::fs::Advice::DontNeed,
        );
    }
}

/// A decoded segment on its way to the target.
struct WriteJob {
    i: usize,
    offset: u64,
    len: usize,
    buf: AlignedBuf,
    /// Ranges of the segment to write.
    runs: Vec<Range<usize>>,
}

/// A segment buffer whose start is aligned for O_DIRECT.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let mem = vec![0u8; len + DIRECT_ALIGN];
        let start = mem.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { mem, start }
    }

    fn slice(&mut self, len: usize) -> &mut [u8] {
        if self.mem.len() < self.start + len {
            *self = AlignedBuf::new(len);
        }
        &mut self.mem[self.start..self.start + len]
    }
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
            direct: open_direct(path),
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
        direct: open_direct(path),
        is_block_device: false,
    })
}

/// Restores one volume of a point.
pub fn restore(repo: &dyn TenantRepository, keys: &Keys, opts: &RestoreOptions) -> Result<RestoreSummary> {
    let started = Instant::now();
    let record = select_point(repo, &opts.group, opts.point)?;
    let store = repo.store(&opts.group)?;
    let location = repo.describe();
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
    // A segment is done once written (or, for a hole, once decoded).
    let report_done = |len: u64| {
        let d = done.fetch_add(len, Ordering::Relaxed) + len;
        if let Some(p) = &opts.progress {
            p(d, entry.size);
        }
    };
    let seg_size = entry.segment_size as usize;
    // Decoders take segments in volume order from a shared counter: one
    // segment per step (data bunched in a few regions of a volume is shared
    // between the cores), and reads that follow the order the packs were
    // written in. Reads of cold packs wait on the disk, so there are a few
    // more decoders than cores. A decoded segment goes to the writer, which
    // owns every write of the target: a direct write into a sparse file holds
    // the inode's lock while it waits for the device, and a decoder that
    // waited there would leave its core idle.
    // A store whose reads wait on the network (object storage) gets as many
    // decoders per core as it has requests in flight per core.
    let decoders = std::thread::available_parallelism().map_or(2, |n| n.get()) * store.callers_per_core().max(2);
    let buffers = decoders + 4;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let writer_gone = std::sync::atomic::AtomicBool::new(false);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<AlignedBuf>(buffers);
    for _ in 0..buffers {
        free_tx.send(AlignedBuf::new(seg_size)).expect("room for every buffer");
    }
    let free_rx = std::sync::Mutex::new(free_rx);
    let (job_tx, job_rx) = std::sync::mpsc::channel::<WriteJob>();
    let decode_one = |i: usize, leaf: &Option<ObjectId>| -> Result<([u8; 32], Option<WriteJob>)> {
        let offset = i as u64 * entry.segment_size;
        let len = (entry.size - offset).min(entry.segment_size) as usize;
        if leaf.is_none() && !target.is_block_device {
            // A hole in a sparse file: nothing to write.
            return Ok((zero_segment_hash(len), None));
        }
        let mut buf = loop {
            match free_rx
                .lock()
                .expect("buffer pool")
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                Ok(b) => break b,
                // The writer panicked: its panic is what the restore reports.
                Err(_) if writer_gone.load(Ordering::Relaxed) => return Err(Error::Interrupted),
                Err(_) => {}
            }
        };
        let out = buf.slice(len);
        let (hash, runs) = match leaf {
            None => {
                out.fill(0);
                (zero_segment_hash(len), std::iter::once(0..len).collect())
            }
            Some(node_id) => match assemble_segment(&reader, node_id, out, target.is_block_device) {
                // A block device gets the whole segment, zeros included; a
                // file the data runs only (holes stay sparse).
                Ok(seg) if target.is_block_device => (seg.hash, std::iter::once(0..len).collect()),
                Ok(seg) => (seg.hash, seg.data_runs),
                Err(e) => {
                    let _ = free_tx.send(buf);
                    return Err(e);
                }
            },
        };
        Ok((
            hash,
            Some(WriteJob {
                i,
                offset,
                len,
                buf,
                runs,
            }),
        ))
    };
    let mut results: Vec<Option<Result<[u8; 32]>>> = (0..leaves.len()).map(|_| None).collect();
    let mut write_errors: Vec<(usize, Error)> = Vec::new();
    let (failed, next, written, leaves, decode_one, report_done) =
        (&failed, &next, &written, &leaves, &decode_one, &report_done);
    let gone = &writer_gone;
    let (target, free_tx) = (&target, &free_tx);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            // Decoders waiting for a buffer learn that none will come back.
            struct Gone<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Gone<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _gone = Gone(gone);
            let mut errors = Vec::new();
            for job in job_rx {
                let WriteJob {
                    i,
                    offset,
                    len,
                    mut buf,
                    runs,
                } = job;
                if !failed.load(Ordering::Relaxed) {
                    let data = buf.slice(len);
                    let mut cached: Option<Range<u64>> = None;
                    for r in &runs {
                        match target.write(&data[r.clone()], offset + r.start as u64, &opts.target) {
                            Ok(c) => {
                                if let Some(c) = c {
                                    cached = Some(cached.map_or(c.clone(), |s| s.start..c.end));
                                }
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                errors.push((i, e));
                                break;
                            }
                        }
                        written.fetch_add(r.len() as u64, Ordering::Relaxed);
                    }
                    if let Some(c) = cached {
                        target.write_back(c);
                    }
                }
                let _ = free_tx.send(buf);
                report_done(len as u64);
            }
            errors
        });
        let workers: Vec<_> = (0..decoders.min(leaves.len().max(1)))
            .map(|_| {
                let job_tx = job_tx.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(leaf) = leaves.get(i) else { break };
                        let r = decode_one(i, leaf).map(|(hash, job)| {
                            match job {
                                Some(job) => job_tx.send(job).expect("the writer runs until the decoders end"),
                                None => {
                                    report_done((entry.size - i as u64 * entry.segment_size).min(entry.segment_size))
                                }
                            }
                            hash
                        });
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        mine.push((i, r));
                    }
                    mine
                })
            })
            .collect();
        drop(job_tx);
        for w in workers {
            for (i, r) in w.join().expect("restore decoder panicked") {
                results[i] = Some(r);
            }
        }
        write_errors = writer.join().expect("restore writer panicked");
    });
    for (i, e) in write_errors {
        results[i] = Some(Err(e));
    }
    // Every segment was decoded and written unless something failed; then the
    // first failure in volume order is the one returned.
    if let Some(e) = results.iter_mut().find_map(|r| match r {
        Some(Err(_)) => r.take().and_then(|r| r.err()),
        _ => None,
    }) {
        return Err(e);
    }
    let mut h = VolumeHasher::new(entry.size);
    for r in results {
        h.segment(&r.expect("every segment restored")?);
    }
    let sync_started = Instant::now();
    target
        .file
        .sync_all()
        .ctx(|| format!("fsync restore target {}", opts.target.display()))?;
    let sync_secs = sync_started.elapsed().as_secs_f64();
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
        sync_secs,
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
