//! Where clients' writes go: the repository's point is never changed. Per
//! volume, a sparse data file the volume's size holding written blocks at their
//! offsets, and a bitmap of which 4 KiB blocks are there; the directory's
//! `overlay.meta` says which point and volumes it belongs to, so a restart
//! against another point is refused instead of mixing two volumes' blocks.
//!
//! Durability (FLUSH): the bits to persist are taken first, the data file is
//! fsynced, then those bitmap bytes are written in place and the bitmap file is
//! fsynced. A bit only ever goes from 0 to 1 and is set after its block was
//! written, so any bit on disk names a block whose data was durable before it:
//! after a crash the overlay serves every flushed write and never a block whose
//! data did not reach the disk (an unflushed write reads as the point or as the
//! write, as NBD allows). Layouts are in FORMAT.md ("Overlay").

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::file_formats::{OVERLAY_BITMAP_MAGIC, OVERLAY_BITMAP_VERSION, OVERLAY_META_MAGIC, OVERLAY_META_VERSION};

/// Overlay block size: the unit of the bitmap and of read-modify-write.
pub const OVERLAY_BLOCK: u64 = 4096;
/// Bitmap header: magic [4] | version u8 | reserved [3] | block size u32 | volume size u64.
const BITMAP_HEADER: u64 = 20;
/// Bitmap bytes written back as one unit at a FLUSH.
const BITMAP_PAGE: usize = 4096;
const META_FILE: &str = "overlay.meta";

/// What an overlay directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayMeta {
    pub repository_id: String,
    pub tenant: String,
    pub group: String,
    pub seq: u64,
    /// (name, size) of each volume served, in order.
    pub volumes: Vec<(String, u64)>,
}

impl OverlayMeta {
    fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("serialisable");
        let mut b = Vec::with_capacity(9 + json.len());
        b.extend_from_slice(&OVERLAY_META_MAGIC);
        b.push(OVERLAY_META_VERSION);
        b.extend_from_slice(&(json.len() as u32).to_le_bytes());
        b.extend_from_slice(&json);
        b
    }

    fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        if b.len() < 9 || b[..4] != OVERLAY_META_MAGIC {
            return Err("not an overlay meta file".into());
        }
        if b[4] != OVERLAY_META_VERSION {
            return Err(format!("unknown overlay meta version {}", b[4]));
        }
        let n = u32::from_le_bytes(b[5..9].try_into().expect("4")) as usize;
        if b.len() != 9 + n {
            return Err("truncated overlay meta file".into());
        }
        serde_json::from_slice(&b[9..]).map_err(|e| e.to_string())
    }

    /// Opens the overlay directory `dir` for this point, creating it (and its
    /// meta file, atomically) when new. A directory made for another point,
    /// group, repository or set of volumes is refused.
    pub fn claim(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).ctx(|| format!("create overlay directory {}", dir.display()))?;
        let path = dir.join(META_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let found = OverlayMeta::decode(&bytes).map_err(|reason| Error::Overlay {
                    dir: dir.into(),
                    reason: format!("{}: {reason}", path.display()),
                })?;
                if found != *self {
                    return Err(Error::Overlay {
                        dir: dir.into(),
                        reason: format!(
                            "holds the writes of point {} of group `{}` (volumes {}) in repository {}, not of point {} \
                             of group `{}` (volumes {}) in {}: serve that point with it, or give another --overlay-dir",
                            found.seq,
                            found.group,
                            names(&found.volumes),
                            found.repository_id,
                            self.seq,
                            self.group,
                            names(&self.volumes),
                            self.repository_id
                        ),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(stray) = fs::read_dir(dir)
                    .ctx(|| format!("list overlay directory {}", dir.display()))?
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".bitmap"))
                {
                    return Err(Error::Overlay {
                        dir: dir.into(),
                        reason: format!(
                            "has {} but no {META_FILE}: it is not an overlay this build made; give an empty or new directory",
                            stray.path().display()
                        ),
                    });
                }
                crate::fsutil::write_atomic(&path, &self.encode())
            }
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }
}

fn names(v: &[(String, u64)]) -> String {
    v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
}

/// One volume's overlay: written blocks and the bitmap of which they are.
pub struct VolumeOverlay {
    data_path: PathBuf,
    data: File,
    bitmap_path: PathBuf,
    bitmap_file: File,
    size: u64,
    bits: Vec<AtomicU64>,
    /// Bitmap pages changed since the last FLUSH.
    dirty: Mutex<BTreeSet<usize>>,
    /// One FLUSH at a time.
    flushing: Mutex<()>,
}

impl VolumeOverlay {
    /// Opens (or creates) the overlay of volume `name` of `size` bytes in `dir`,
    /// loading the bitmap of an earlier run.
    pub fn open(dir: &Path, name: &str, size: u64) -> Result<Self> {
        let data_path = dir.join(format!("{name}.overlay"));
        let bitmap_path = dir.join(format!("{name}.bitmap"));
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .ctx(|| format!("open overlay {}", data_path.display()))?;
        data.set_len(size)
            .ctx(|| format!("size overlay {} to {size} bytes", data_path.display()))?;
        let blocks = size.div_ceil(OVERLAY_BLOCK);
        let words = blocks.div_ceil(64) as usize;
        let bitmap_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&bitmap_path)
            .ctx(|| format!("open overlay bitmap {}", bitmap_path.display()))?;
        let bytes = blocks.div_ceil(8);
        let file_len = bitmap_file
            .metadata()
            .ctx(|| format!("stat {}", bitmap_path.display()))?
            .len();
        let mut header = [0u8; BITMAP_HEADER as usize];
        header[..4].copy_from_slice(&OVERLAY_BITMAP_MAGIC);
        header[4] = OVERLAY_BITMAP_VERSION;
        header[8..12].copy_from_slice(&(OVERLAY_BLOCK as u32).to_le_bytes());
        header[12..20].copy_from_slice(&size.to_le_bytes());
        let bits: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        if file_len == 0 {
            bitmap_file
                .write_all_at(&header, 0)
                .and_then(|()| bitmap_file.set_len(BITMAP_HEADER + bytes))
                .and_then(|()| bitmap_file.sync_all())
                .ctx(|| format!("create overlay bitmap {}", bitmap_path.display()))?;
            crate::fsutil::fsync_dir(dir)?;
        } else {
            let bad = |reason: String| Error::Overlay {
                dir: dir.into(),
                reason: format!("bitmap {}: {reason}", bitmap_path.display()),
            };
            if file_len != BITMAP_HEADER + bytes {
                return Err(bad(format!(
                    "is {file_len} bytes where a {size}-byte volume needs {}",
                    BITMAP_HEADER + bytes
                )));
            }
            let mut found = vec![0u8; file_len as usize];
            bitmap_file
                .read_exact_at(&mut found, 0)
                .ctx(|| format!("read {}", bitmap_path.display()))?;
            if found[..BITMAP_HEADER as usize] != header {
                return Err(bad(
                    "header does not match this volume (magic, version, block size or size)".into(),
                ));
            }
            for (w, chunk) in bits.iter().zip(found[BITMAP_HEADER as usize..].chunks(8)) {
                let mut b = [0u8; 8];
                b[..chunk.len()].copy_from_slice(chunk);
                w.store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        }
        Ok(VolumeOverlay {
            data_path,
            data,
            bitmap_path,
            bitmap_file,
            size,
            bits,
            dirty: Mutex::new(BTreeSet::new()),
            flushing: Mutex::new(()),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when block `b` is in the overlay.
    pub fn has(&self, b: u64) -> bool {
        let w = self.bits[(b / 64) as usize].load(Ordering::Acquire);
        w & (1 << (b % 64)) != 0
    }

    /// Blocks in the overlay.
    pub fn blocks_written(&self) -> u64 {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as u64)
            .sum()
    }

    /// Marks blocks `[first, last]` as in the overlay (after their data was
    /// written).
    fn set(&self, first: u64, last: u64) {
        let mut pages = BTreeSet::new();
        for b in first..=last {
            self.bits[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Release);
            pages.insert((b / 8) as usize / BITMAP_PAGE);
        }
        self.dirty.lock().expect("overlay dirty pages").extend(pages);
    }

    /// Runs of `[start, end)` that are (true) or are not (false) in the overlay.
    pub fn runs(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        let mut at = start;
        while at < end {
            let b = at / OVERLAY_BLOCK;
            let next = ((b + 1) * OVERLAY_BLOCK).min(end);
            let mine = self.has(b);
            match out.last_mut() {
                Some(l) if l.2 == mine => l.1 = next,
                _ => out.push((at, next, mine)),
            }
            at = next;
        }
        out
    }

    /// True when no block of `[start, end)` is in the overlay (a word at a time).
    pub fn none_in(&self, start: u64, end: u64) -> bool {
        if end <= start {
            return true;
        }
        let (first, last) = (start / OVERLAY_BLOCK, (end - 1) / OVERLAY_BLOCK);
        let mut b = first;
        while b <= last {
            let w = self.bits[(b / 64) as usize].load(Ordering::Acquire);
            if b.is_multiple_of(64) && last - b >= 63 {
                if w != 0 {
                    return false;
                }
                b += 64;
            } else {
                if w & (1 << (b % 64)) != 0 {
                    return false;
                }
                b += 1;
            }
        }
        true
    }

    /// Reads overlay bytes at `offset` (blocks the caller knows are there).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.data
            .read_exact_at(buf, offset)
            .ctx(|| format!("read overlay {} at {offset}", self.data_path.display()))
    }

    /// Writes whole blocks `data` at block-aligned `offset` (the last block may
    /// end at the volume's end) and marks them.
    pub fn write_blocks(&self, offset: u64, data: &[u8]) -> Result<()> {
        debug_assert!(offset.is_multiple_of(OVERLAY_BLOCK));
        if data.is_empty() {
            return Ok(());
        }
        self.data
            .write_all_at(data, offset)
            .ctx(|| format!("write overlay {} at {offset}", self.data_path.display()))?;
        self.set(offset / OVERLAY_BLOCK, (offset + data.len() as u64 - 1) / OVERLAY_BLOCK);
        Ok(())
    }

    /// Makes whole blocks `[offset, offset + len)` read as zeros (a hole punched
    /// in the data file) and marks them.
    pub fn zero_blocks(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let punched = rustix::fs::fallocate(
            &self.data,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            offset,
            len,
        );
        if punched.is_err() {
            // A file system without hole punching: write the zeros.
            let zeros = vec![0u8; (1 << 20).min(len) as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(zeros.len() as u64) as usize;
                self.data
                    .write_all_at(&zeros[..n], at)
                    .ctx(|| format!("zero overlay {} at {at}", self.data_path.display()))?;
                at += n as u64;
            }
        }
        self.set(offset / OVERLAY_BLOCK, (offset + len - 1) / OVERLAY_BLOCK);
        Ok(())
    }

    /// FLUSH: every write completed before this call is durable when it returns.
    pub fn flush(&self) -> Result<()> {
        let _one = self.flushing.lock().expect("overlay flush");
        // The bitmap bytes to persist, taken before the data is synced: every
        // bit in them was set after its block was written.
        let pages: Vec<usize> = std::mem::take(&mut *self.dirty.lock().expect("overlay dirty pages"))
            .into_iter()
            .collect();
        let snapshot: Vec<(usize, Vec<u8>)> = pages.iter().map(|&p| (p, self.page_bytes(p))).collect();
        self.data
            .sync_data()
            .ctx(|| format!("fsync overlay {}", self.data_path.display()))?;
        if snapshot.is_empty() {
            return Ok(());
        }
        let result = (|| {
            for (p, bytes) in &snapshot {
                let at = BITMAP_HEADER + (*p * BITMAP_PAGE) as u64;
                self.bitmap_file
                    .write_all_at(bytes, at)
                    .ctx(|| format!("write overlay bitmap {}", self.bitmap_path.display()))?;
            }
            self.bitmap_file
                .sync_data()
                .ctx(|| format!("fsync overlay bitmap {}", self.bitmap_path.display()))
        })();
        if result.is_err() {
            // Persist them at the next FLUSH.
            self.dirty.lock().expect("overlay dirty pages").extend(pages);
        }
        result
    }

    /// Bytes of bitmap page `p` as they are in memory now.
    fn page_bytes(&self, p: usize) -> Vec<u8> {
        let total = self.size.div_ceil(OVERLAY_BLOCK).div_ceil(8) as usize;
        let start = p * BITMAP_PAGE;
        let end = (start + BITMAP_PAGE).min(total);
        let mut out = Vec::with_capacity(end - start);
        for w in start / 8..end.div_ceil(8) {
            out.extend_from_slice(&self.bits[w].load(Ordering::Acquire).to_le_bytes());
        }
        out.truncate(end - start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> OverlayMeta {
        OverlayMeta {
            repository_id: "r".into(),
            tenant: "default".into(),
            group: "g".into(),
            seq,
            volumes: vec![("v".into(), 1 << 20)],
        }
    }

    #[test]
    fn meta_is_claimed_once_and_another_point_is_refused() {
        let d = tempfile::tempdir().unwrap();
        meta(1).claim(d.path()).unwrap();
        meta(1).claim(d.path()).unwrap();
        let e = meta(2).claim(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("holds the writes of point 1") && e.contains("not of point 2"),
            "{e}"
        );
        assert_eq!(OverlayMeta::decode(&meta(3).encode()).unwrap(), meta(3));
        assert!(OverlayMeta::decode(b"LLOMx").is_err());
    }

    #[test]
    fn flushed_blocks_survive_a_reopen_and_unflushed_bits_do_not() {
        let d = tempfile::tempdir().unwrap();
        let size = 10 * OVERLAY_BLOCK * 4096 + 100;
        let o = VolumeOverlay::open(d.path(), "v", size).unwrap();
        o.write_blocks(0, &[1u8; 4096]).unwrap();
        o.write_blocks(40_000 * OVERLAY_BLOCK, &[2u8; 8192]).unwrap();
        o.zero_blocks(5 * OVERLAY_BLOCK, 3 * OVERLAY_BLOCK).unwrap();
        // The last, short block of the volume.
        let last = size / OVERLAY_BLOCK * OVERLAY_BLOCK;
        o.write_blocks(last, &[3u8; 100]).unwrap();
        o.flush().unwrap();
        o.write_blocks(OVERLAY_BLOCK, &[9u8; 4096]).unwrap(); // never flushed
        drop(o);
        let o = VolumeOverlay::open(d.path(), "v", size).unwrap();
        assert!(o.has(0) && o.has(40_000) && o.has(40_001) && o.has(5) && o.has(7) && o.has(last / OVERLAY_BLOCK));
        assert!(!o.has(1) && !o.has(8));
        assert_eq!(o.blocks_written(), 7);
        let mut b = vec![0u8; 8192];
        o.read(40_000 * OVERLAY_BLOCK, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 2));
        assert!(o.none_in(8 * OVERLAY_BLOCK, 40_000 * OVERLAY_BLOCK));
        assert!(!o.none_in(0, 40_001 * OVERLAY_BLOCK));
        assert_eq!(
            o.runs(0, 3 * OVERLAY_BLOCK),
            vec![(0, OVERLAY_BLOCK, true), (OVERLAY_BLOCK, 3 * OVERLAY_BLOCK, false)]
        );
        // Another size is refused.
        let e = VolumeOverlay::open(d.path(), "v", size + OVERLAY_BLOCK * 64)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bitmap"), "{e}");
    }
}
