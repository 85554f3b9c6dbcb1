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

    /// Reads segment `i` into `buf` (resized to the segment length, holes as zeros).
    /// Returns the number of bytes actually read (0: the segment is all holes).
    pub fn read_segment(&self, file: &File, i: usize, buf: &mut Vec<u8>) -> Result<u64> {
        let start = i as u64 * SEGMENT_SIZE as u64;
        let len = self.segment_len(i);
        buf.clear();
        buf.resize(len, 0);
        let end = start + len as u64;
        let ctx = || format!("read volume `{}` at {} offset {start}", self.name, self.path.display());
        let read_range = |buf: &mut [u8], from: u64| -> Result<()> {
            file.read_exact_at(buf, from).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::io(ctx(), std::io::Error::other("the volume shrank during the backup"))
                } else {
                    Error::io(ctx(), e)
                }
            })
        };
        if self.is_block_device {
            read_range(buf, start)?;
            return Ok(len as u64);
        }
        let mut pos = start;
        let mut read = 0;
        while pos < end {
            let data = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break,
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => pos,
                Err(e) => return Err(Error::io(ctx(), e.into())),
            };
            if data >= end {
                break;
            }
            let hole = match rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(data)) {
                Ok(h) => h.min(end),
                Err(_) => end,
            };
            let hole = hole.max(data + 1).min(end);
            read_range(&mut buf[(data - start) as usize..(hole - start) as usize], data)?;
            read += hole - data;
            pos = hole;
        }
        Ok(read)
    }
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
        let mut buf = Vec::new();
        assert_eq!(v.read_segment(&r, 0, &mut buf).unwrap(), 0);
        assert!(buf.iter().all(|&b| b == 0));
        let n = v.read_segment(&r, 1, &mut buf).unwrap();
        assert!(n >= 8192);
        assert_eq!(buf[(1 << 20)..(1 << 20) + 8192], [7u8; 8192]);
        assert_eq!(buf.iter().filter(|&&b| b != 0).count(), 8192);
        assert_eq!(v.segment_len(2), 2 << 20);
    }

    #[test]
    fn missing_volume_is_named() {
        let e = VolumeSource::open("x", Path::new("/nonexistent/vol"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/vol") && e.contains("does not exist"), "{e}");
    }
}
