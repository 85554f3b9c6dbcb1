//! Hydration: copying a served volume into a target file or device in the
//! background while clients keep reading and writing, so that the target
//! becomes the recovered volume without a restore before service start.
//!
//! Segments are copied in order, each read from the export (overlay blocks
//! win) and written to the target under the export's write lock; a client
//! write into a part already copied is written to the target as well, under
//! the same lock, so the copied part always equals the export. A cursor file
//! in the overlay directory records how far the target is durable: it is
//! advanced only after the target was fsynced. A restart resumes there, after
//! writing every overlay block below the cursor to the target again (a write
//! flushed to the overlay is never lost, even if the target missed it).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::file_formats::{HYDRATE_CURSOR_MAGIC, HYDRATE_CURSOR_VERSION};

use super::export::Export;
use super::overlay::OVERLAY_BLOCK;

/// The target of a hydration, shared with the export's write path.
pub struct HydrationTarget {
    path: PathBuf,
    file: File,
    /// Bytes of the volume copied so far (a segment boundary, or the size).
    copied: AtomicU64,
}

impl HydrationTarget {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn copied(&self) -> u64 {
        self.copied.load(Ordering::Acquire)
    }

    /// Writes export bytes that a client changed at `offset`, if that part was
    /// copied already (the caller holds the export's write lock).
    pub fn write_through(&self, offset: u64, data: &[u8]) -> Result<()> {
        let copied = self.copied();
        if offset >= copied || data.is_empty() {
            return Ok(());
        }
        let n = ((copied - offset) as usize).min(data.len());
        self.file
            .write_all_at(&data[..n], offset)
            .ctx(|| format!("write hydration target {} at {offset}", self.path.display()))
    }

    /// Makes `[at, at + len)` of the target read as zeros: a hole punched (a
    /// file stays sparse; a block device zeroes the range), else zeros written.
    fn zero(&self, at: u64, len: u64) -> Result<()> {
        let punched = rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            at,
            len,
        );
        if punched.is_ok() {
            return Ok(());
        }
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], at + done)
                .ctx(|| format!("zero hydration target {} at {}", self.path.display(), at + done))?;
            done += n as u64;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("fsync hydration target {}", self.path.display()))
    }
}

/// Cursor file: `"LLHY" | version u8 | reserved [3] | volume size u64 | copied u64 |
/// target path length u32 | target path`, little endian, written atomically.
fn encode_cursor(size: u64, copied: u64, target: &Path) -> Vec<u8> {
    let p = target.as_os_str().as_encoded_bytes();
    let mut b = Vec::with_capacity(28 + p.len());
    b.extend_from_slice(&HYDRATE_CURSOR_MAGIC);
    b.push(HYDRATE_CURSOR_VERSION);
    b.extend_from_slice(&[0; 3]);
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&copied.to_le_bytes());
    b.extend_from_slice(&(p.len() as u32).to_le_bytes());
    b.extend_from_slice(p);
    b
}

fn decode_cursor(b: &[u8]) -> Option<(u64, u64, Vec<u8>)> {
    if b.len() < 28 || b[..4] != HYDRATE_CURSOR_MAGIC || b[4] != HYDRATE_CURSOR_VERSION {
        return None;
    }
    let size = u64::from_le_bytes(b[8..16].try_into().ok()?);
    let copied = u64::from_le_bytes(b[16..24].try_into().ok()?);
    let n = u32::from_le_bytes(b[24..28].try_into().ok()?) as usize;
    (b.len() == 28 + n && copied <= size).then(|| (size, copied, b[28..].to_vec()))
}

/// Progress of one hydration.
#[derive(Debug, Clone, Copy)]
pub struct HydrationProgress {
    pub copied: u64,
    pub size: u64,
    /// Where this run started (a resumed run starts above 0).
    pub resumed_from: u64,
    pub done: bool,
}

/// A hydration of one export into `target`, its cursor in `cursor_path`.
pub struct Hydration {
    export: Arc<Export>,
    target: Arc<HydrationTarget>,
    cursor_path: PathBuf,
    resumed_from: u64,
    /// Bytes per second at most (0: no limit).
    rate: u64,
    /// Zeros must be written (a device, or a resumed file), not left as holes.
    write_zeros: bool,
}

impl Hydration {
    /// Opens (or resumes) the hydration of `export` into `target`, its cursor
    /// kept in `overlay_dir`. The target is attached to the export so client
    /// writes reach it.
    pub fn open(export: Arc<Export>, overlay_dir: &Path, target: &Path, rate: u64) -> Result<Hydration> {
        let size = export.size();
        let cursor_name = format!("{}.hydrate", export.name());
        crate::fsutil::remove_temp_files(overlay_dir, &cursor_name);
        let cursor_path = overlay_dir.join(cursor_name);
        let meta = std::fs::metadata(target).ok();
        let is_device = meta.as_ref().is_some_and(|m| m.file_type().is_block_device());
        let mut resume = 0;
        if let Ok(b) = std::fs::read(&cursor_path)
            && let Some((s, copied, p)) = decode_cursor(&b)
            && s == size
            && p == target.as_os_str().as_encoded_bytes()
            && (is_device || meta.as_ref().is_some_and(|m| m.len() == size))
        {
            resume = copied;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(!is_device)
            .truncate(false)
            .open(target)
            .ctx(|| format!("open hydration target {} (choose a writable path)", target.display()))?;
        if !is_device {
            if resume == 0 {
                // A fresh start: all holes, so zeros need no writing.
                file.set_len(0)
                    .ctx(|| format!("truncate hydration target {}", target.display()))?;
            }
            file.set_len(size)
                .ctx(|| format!("size hydration target {} to {size} bytes", target.display()))?;
        }
        let t = Arc::new(HydrationTarget {
            path: target.to_path_buf(),
            file,
            copied: AtomicU64::new(0),
        });
        let overlay = export.overlay().ok_or_else(|| Error::Invalid {
            what: "hydration",
            value: target.display().to_string(),
            reason: "a read-only export has no overlay to keep its progress: drop --read-only".into(),
        })?;
        // Overlay blocks win, below the cursor too: written again before anything else.
        {
            let _one = export.lock_writes();
            let mut buf = vec![0u8; OVERLAY_BLOCK as usize];
            for (s, e, mine) in overlay.runs(0, resume) {
                if !mine {
                    continue;
                }
                let mut at = s;
                while at < e {
                    let n = (e - at).min(OVERLAY_BLOCK) as usize;
                    overlay.read(at, &mut buf[..n])?;
                    t.file
                        .write_all_at(&buf[..n], at)
                        .ctx(|| format!("write hydration target {} at {at}", target.display()))?;
                    at += n as u64;
                }
            }
            t.sync()?;
            t.copied.store(resume, Ordering::Release);
            export.attach_hydration(t.clone());
        }
        Ok(Hydration {
            export,
            target: t,
            cursor_path,
            resumed_from: resume,
            rate,
            write_zeros: is_device || resume > 0,
        })
    }

    pub fn export_name(&self) -> &str {
        self.export.name()
    }

    pub fn target_path(&self) -> &Path {
        &self.target.path
    }

    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// The volume's size.
    pub fn size(&self) -> u64 {
        self.export.size()
    }

    /// Bytes per second at most (0: no limit).
    pub fn rate_limit(&self) -> u64 {
        self.rate
    }

    fn persist(&self, copied: u64) -> Result<()> {
        self.target.sync()?;
        crate::fsutil::write_atomic(
            &self.cursor_path,
            &encode_cursor(self.export.size(), copied, &self.target.path),
        )
    }

    /// Copies the rest, calling `progress` now and then, until done or `stop`.
    pub fn run(&self, stop: &AtomicBool, mut progress: impl FnMut(HydrationProgress)) -> Result<HydrationProgress> {
        let size = self.export.size();
        let seg = self.export.image().segment_size();
        let started = Instant::now();
        let mut since_persist = Instant::now();
        let mut at = self.target.copied();
        let mut buf = vec![0u8; seg as usize];
        let report = |copied: u64, done: bool| HydrationProgress {
            copied,
            size,
            resumed_from: self.resumed_from,
            done,
        };
        progress(report(at, at >= size));
        while at < size {
            if stop.load(Ordering::Relaxed) {
                self.persist(at)?;
                return Ok(report(at, false));
            }
            let n = (size - at).min(seg) as usize;
            {
                let _one = self.export.lock_writes();
                let hole = self.export.is_hole(at, n as u64)?;
                if !hole {
                    self.export.read(at, &mut buf[..n])?;
                    let runs = crate::chunker::runs(&buf[..n]);
                    for r in runs.iter().filter(|r| !r.zero) {
                        self.target
                            .file
                            .write_all_at(&buf[r.range.clone()], at + r.range.start as u64)
                            .ctx(|| format!("write hydration target {}", self.target.path.display()))?;
                    }
                    // Zero runs of a fresh file are holes already; a device, or a
                    // file resumed (which may hold bytes past its cursor), gets them.
                    if self.write_zeros {
                        for r in runs.iter().filter(|r| r.zero) {
                            self.target.zero(at + r.range.start as u64, r.range.len() as u64)?;
                        }
                    }
                } else if self.write_zeros {
                    self.target.zero(at, n as u64)?;
                }
                at += n as u64;
                self.target.copied.store(at, Ordering::Release);
            }
            if since_persist.elapsed() >= Duration::from_millis(500) || at >= size {
                self.persist(at)?;
                since_persist = Instant::now();
                progress(report(at, at >= size));
            }
            if self.rate > 0 {
                let due = Duration::from_secs_f64((at - self.resumed_from) as f64 / self.rate as f64);
                while let Some(wait) = due.checked_sub(started.elapsed()) {
                    if wait.is_zero() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
            }
        }
        Ok(report(at, true))
    }
}
