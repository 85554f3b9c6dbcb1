//! Reading volumes (regular or sparse files, block devices) segment by segment.
//! Holes of sparse files are found with SEEK_DATA / SEEK_HOLE and never read.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::chunker::SEGMENT_SIZE;
use crate::error::{Error, IoContext, Result};

/// A volume to read: a file or a block device.
#[derive(Debug, Clone)]
pub struct VolumeSource {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub is_block_device: bool,
}

impl VolumeSource {
    /// Checks that the volume exists and measures it.
    pub fn open(name: &str, path: &Path) -> Result<Self> {
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::VolumeNotFound { path: path.into() },
            _ => Error::io(format!("volume `{name}` at {}", path.display()), e),
        })?;
        let is_block_device = meta.file_type().is_block_device();
        if !is_block_device && !meta.is_file() {
            return Err(Error::Invalid {
                what: "volume",
                value: path.display().to_string(),
                reason: "not a regular file or a block device".into(),
            });
        }
        let file = self::File::open(path).ctx(|| format!("open volume `{name}` at {}", path.display()))?;
        let size = if is_block_device {
            rustix::fs::seek(&file, rustix::fs::SeekFrom::End(0))
                .ctx(|| format!("measure block device {}", path.display()))?
        } else {
            meta.len()
        };
        Ok(VolumeSource {
            name: name.into(),
            path: path.into(),
            size,
            is_block_device,
        })
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.size.div_ceil(SEGMENT_SIZE as u64) as usize
    }

    /// Length of segment `i`.
    pub fn segment_len(&self, i: usize) -> usize {
        let start = i as u64 * SEGMENT_SIZE as u64;
        (self.size - start).min(SEGMENT_SIZE as u64) as usize
    }

    /// Opens a handle for one reader thread (each thread seeks its own handle).
    pub fn reader(&self) -> Result<File> {
        File::open(&self.path).ctx(|| format!("open volume `{}` at {}", self.name, self.path.display()))
    }

    /// Reads segment `i` into `buf` (the segment's length, holes as zeros).
    /// Returns the number of bytes actually read (0: the segment is all holes).
    pub fn read_segment(&self, file: &File, i: usize, buf: &mut SegmentBuf) -> Result<u64> {
        let start = i as u64 * SEGMENT_SIZE as u64;
        let len = self.segment_len(i);
        let end = start + len as u64;
        let ctx = || format!("read volume `{}` at {} offset {start}", self.name, self.path.display());
        // The data ranges, relative to the segment.
        let data: Vec<std::ops::Range<usize>> = if self.is_block_device {
            std::iter::once(0..len).collect()
        } else {
            let mut data = Vec::new();
            let mut pos = start;
            while pos < end {
                let at = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(pos)) {
                    Ok(d) => d,
                    Err(rustix::io::Errno::NXIO) => break,
                    Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => pos,
                    Err(e) => return Err(Error::io(ctx(), e.into())),
                };
                if at >= end {
                    break;
                }
                let hole = match rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(at)) {
                    Ok(h) => h.min(end),
                    Err(_) => end,
                };
                let hole = hole.max(at + 1).min(end);
                data.push((at - start) as usize..(hole - start) as usize);
                pos = hole;
            }
            data
        };
        let out = buf.prepare(len, data.clone());
        let mut read = 0;
        for r in data {
            file.read_exact_at(&mut out[r.clone()], start + r.start as u64)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::io(ctx(), std::io::Error::other("the volume shrank during the backup"))
                    } else {
                        Error::io(ctx(), e)
                    }
                })?;
            read += r.len() as u64;
        }
        Ok(read)
    }
}

/// A segment's bytes as [`VolumeSource::read_segment`] leaves them, reused from
/// one segment to the next. It remembers which ranges may hold data, so the
/// next read zeroes only those it does not overwrite: the empty segments of a
/// sparse volume cost no memset, and neither does data read over data.
#[derive(Debug, Default)]
pub struct SegmentBuf {
    bytes: Vec<u8>,
    /// Sorted ranges outside which every byte is zero.
    dirty: Vec<std::ops::Range<usize>>,
}

impl SegmentBuf {
    /// Makes the buffer `len` bytes, zero outside `data` (sorted, disjoint),
    /// and records `data` as the ranges the caller writes next.
    fn prepare(&mut self, len: usize, data: Vec<std::ops::Range<usize>>) -> &mut [u8] {
        if self.bytes.len() != len {
            self.bytes.clear();
            self.bytes.resize(len, 0);
            self.dirty.clear();
        }
        for gap in subtract(&self.dirty, &data) {
            self.bytes[gap].fill(0);
        }
        self.dirty = data;
        &mut self.bytes
    }
}

impl std::ops::Deref for SegmentBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The parts of the ranges of `from` outside every range of `minus` (both
/// sorted and disjoint), in one pass over both.
fn subtract(from: &[std::ops::Range<usize>], minus: &[std::ops::Range<usize>]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut j = 0;
    for r in from {
        // Ranges of `minus` that end before `r` cannot reach a later one either.
        while j < minus.len() && minus[j].end <= r.start {
            j += 1;
        }
        let mut pos = r.start;
        let mut k = j;
        while k < minus.len() && minus[k].start < r.end {
            if minus[k].start > pos {
                out.push(pos..minus[k].start);
            }
            pos = pos.max(minus[k].end);
            k += 1;
        }
        if pos < r.end {
            out.push(pos..r.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn sparse_file_reads_data_and_zero_fills_holes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        let mut f = File::create(&p).unwrap();
        f.set_len(10 << 20).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        drop(f);
        let v = VolumeSource::open("v", &p).unwrap();
        assert_eq!(v.segments(), 3);
        let r = v.reader().unwrap();
        let mut buf = SegmentBuf::default();
        assert_eq!(v.read_segment(&r, 0, &mut buf).unwrap(), 0);
        assert!(buf.iter().all(|&b| b == 0));
        let n = v.read_segment(&r, 1, &mut buf).unwrap();
        assert!(n >= 8192);
        assert_eq!(buf[(1 << 20)..(1 << 20) + 8192], [7u8; 8192]);
        assert_eq!(buf.iter().filter(|&&b| b != 0).count(), 8192);
        assert_eq!(v.segment_len(2), 2 << 20);
    }

    #[test]
    fn a_reused_buffer_reads_every_segment_exactly() {
        // Segment 0 dense, 1 a hole, 2 data in the middle, 3 data at both
        // ends: read in an order where each read follows data elsewhere.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        let seg = SEGMENT_SIZE as u64;
        let mut f = File::create(&p).unwrap();
        f.set_len(4 * seg).unwrap();
        let mut fill = |at: u64, len: usize, byte: u8| {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![byte; len]).unwrap();
        };
        fill(0, SEGMENT_SIZE, 0xaa);
        fill(2 * seg + seg / 2, 8192, 0x11);
        fill(3 * seg, 4096, 0x22);
        fill(4 * seg - 4096, 4096, 0x33);
        drop(f);
        let whole = std::fs::read(&p).unwrap();
        let v = VolumeSource::open("v", &p).unwrap();
        let r = v.reader().unwrap();
        let mut buf = SegmentBuf::default();
        for i in [0, 1, 0, 2, 3, 0, 3, 2, 1] {
            v.read_segment(&r, i, &mut buf).unwrap();
            let at = i * SEGMENT_SIZE;
            assert!(buf[..] == whole[at..at + SEGMENT_SIZE], "segment {i} read wrong");
        }
    }

    #[test]
    fn subtract_leaves_what_no_range_covers() {
        let one = |r: std::ops::Range<usize>| vec![r];
        assert_eq!(subtract(&one(0..10), &[]), one(0..10));
        assert_eq!(subtract(&one(0..10), &[2..4, 6..8]), vec![0..2, 4..6, 8..10]);
        assert_eq!(subtract(&one(3..7), &[0..4, 6..12]), one(4..6));
        assert!(subtract(&one(3..7), &one(0..12)).is_empty());
        assert_eq!(subtract(&one(3..7), &[0..1, 8..9]), one(3..7));
        // Several ranges on both sides, one of `minus` spanning two of `from`.
        assert_eq!(
            subtract(&[0..4, 6..10, 12..20, 30..31], &[1..2, 3..7, 9..13, 15..16]),
            vec![0..1, 2..3, 7..9, 13..15, 16..20, 30..31]
        );
    }

    #[test]
    fn missing_volume_is_named() {
        let e = VolumeSource::open("x", Path::new("/nonexistent/vol"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/vol") && e.contains("does not exist"), "{e}");
    }
}
