//! One NBD export: a volume of the point with the overlay over it. Reads take
//! overlay blocks from the overlay and the rest from the point; writes go to
//! the overlay only (partial blocks completed from what the export holds), so
//! the repository is never written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::Result;

use super::hydrate::HydrationTarget;
use super::overlay::{OVERLAY_BLOCK, VolumeOverlay};
use super::point_image::{Extent, PointImage};

/// A volume served: the point's image, and its overlay unless read-only.
pub struct Export {
    image: PointImage,
    overlay: Option<VolumeOverlay>,
    /// Writes one at a time: a partial block is read, merged and written back
    /// whole, and two such merges of one block must not interleave.
    writing: Mutex<()>,
    /// Where the last read ended, to see sequential runs.
    last_end: AtomicU64,
    /// A target being hydrated: writes into its copied part go there too.
    hydration: OnceLock<Arc<HydrationTarget>>,
}

/// Segments worth decoding ahead of a sequential reader.
pub const READ_AHEAD_SEGMENTS: usize = 2;

impl Export {
    pub fn new(image: PointImage, overlay: Option<VolumeOverlay>) -> Self {
        Export {
            image,
            overlay,
            writing: Mutex::new(()),
            last_end: AtomicU64::new(u64::MAX),
            hydration: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.image.name()
    }

    pub fn size(&self) -> u64 {
        self.image.size()
    }

    pub fn image(&self) -> &PointImage {
        &self.image
    }

    pub fn overlay(&self) -> Option<&VolumeOverlay> {
        self.overlay.as_ref()
    }

    pub fn read_only(&self) -> bool {
        self.overlay.is_none()
    }

    /// Holds off writes (hydration copies a segment and advances its cursor
    /// under it).
    pub fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().expect("export writes")
    }

    /// Sends writes into the copied part of `target` there too.
    pub fn attach_hydration(&self, target: Arc<HydrationTarget>) {
        let _ = self.hydration.set(target);
    }

    /// Writes bytes that changed at `offset` to a hydration target (under the
    /// write lock).
    fn write_through(&self, offset: u64, data: &[u8]) -> Result<()> {
        match self.hydration.get() {
            Some(t) => t.write_through(offset, data),
            None => Ok(()),
        }
    }

    /// Fills `buf` with the export's bytes at `offset` (inside the volume).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset + buf.len() as u64;
        match &self.overlay {
            Some(o) if !o.none_in(offset, end) => {
                for (s, e, mine) in o.runs(offset, end) {
                    let part = &mut buf[(s - offset) as usize..(e - offset) as usize];
                    if mine {
                        o.read(s, part)?;
                    } else {
                        self.image.read(s, part)?;
                    }
                }
                Ok(())
            }
            _ => self.image.read(offset, buf),
        }
    }

    /// True when `[offset, offset + len)` is all holes of the point with no
    /// overlay block (a READ may answer it without data).
    pub fn is_hole(&self, offset: u64, len: u64) -> Result<bool> {
        if len == 0 {
            return Ok(false);
        }
        if let Some(o) = &self.overlay
            && !o.none_in(offset, offset + len)
        {
            return Ok(false);
        }
        let ext = self.image.extents(offset, offset + len, 0)?;
        Ok(ext.len() == 1 && ext[0].hole && ext[0].start == offset && ext[0].end == offset + len)
    }

    /// Segments to decode ahead after a read of `[offset, offset + len)`: the
    /// ones after it when the read continues the previous one or the segment
    /// before it is already decoded (a sequential reader, on one connection or
    /// spread over several).
    pub fn read_ahead(&self, offset: u64, len: u64) -> Vec<usize> {
        let end = offset + len;
        let previous = self.last_end.swap(end, Ordering::Relaxed);
        let seg = self.image.segment_size();
        let first = (offset / seg) as usize;
        let last = ((end.max(1) - 1) / seg) as usize;
        let sequential = previous == offset || (first > 0 && self.image.is_cached(first - 1));
        if !sequential {
            return Vec::new();
        }
        (last + 1..(last + 1 + READ_AHEAD_SEGMENTS).min(self.image.segment_count()))
            .filter(|&i| !self.image.is_cached(i))
            .collect()
    }

    /// Writes `data` at `offset` into the overlay.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let overlay = self.overlay.as_ref().expect("writes are refused on a read-only export");
        if data.is_empty() {
            return Ok(());
        }
        let _one = self.writing.lock().expect("export writes");
        let end = offset + data.len() as u64;
        let start_b = offset / OVERLAY_BLOCK * OVERLAY_BLOCK;
        let end_b = end
            .div_ceil(OVERLAY_BLOCK)
            .saturating_mul(OVERLAY_BLOCK)
            .min(self.size());
        if start_b == offset && end_b == end {
            overlay.write_blocks(offset, data)?;
            return self.write_through(offset, data);
        }
        let mut buf = vec![0u8; (end_b - start_b) as usize];
        if start_b < offset {
            let n = OVERLAY_BLOCK.min(end_b - start_b) as usize;
            self.read(start_b, &mut buf[..n])?;
        }
        let last_b = (end_b - 1) / OVERLAY_BLOCK * OVERLAY_BLOCK;
        if end < end_b && (last_b > start_b || start_b == offset) {
            let at = (last_b - start_b) as usize;
            self.read(last_b, &mut buf[at..])?;
        }
        let at = (offset - start_b) as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        overlay.write_blocks(start_b, &buf)?;
        self.write_through(start_b, &buf)
    }

    /// Makes `[offset, offset + len)` read as zeros (WRITE_ZEROES, TRIM).
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        let overlay = self.overlay.as_ref().expect("writes are refused on a read-only export");
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let inner_start = offset.div_ceil(OVERLAY_BLOCK) * OVERLAY_BLOCK;
        let inner_end = if end == self.size() {
            end
        } else {
            end / OVERLAY_BLOCK * OVERLAY_BLOCK
        };
        if inner_start >= inner_end {
            // Within one block: a partial write of zeros.
            return self.write(offset, &vec![0u8; len as usize]);
        }
        if offset < inner_start {
            self.write(offset, &vec![0u8; (inner_start - offset) as usize])?;
        }
        {
            let _one = self.writing.lock().expect("export writes");
            overlay.zero_blocks(inner_start, inner_end - inner_start)?;
            if self.hydration.get().is_some() {
                let zeros = vec![0u8; (1 << 20).min(inner_end - inner_start) as usize];
                let mut at = inner_start;
                while at < inner_end {
                    let n = (inner_end - at).min(zeros.len() as u64) as usize;
                    self.write_through(at, &zeros[..n])?;
                    at += n as u64;
                }
            }
        }
        if inner_end < end {
            self.write(inner_end, &vec![0u8; (end - inner_end) as usize])?;
        }
        Ok(())
    }

    /// FLUSH: writes completed so far are durable.
    pub fn flush(&self) -> Result<()> {
        if let Some(o) = &self.overlay {
            o.flush()?;
        }
        if let Some(t) = self.hydration.get() {
            t.sync()?;
        }
        Ok(())
    }

    /// Data and hole runs of `[start, end)` (overlay blocks are data), for
    /// block status. May stop short of `end` (never before `start` + 1 byte).
    pub fn extents(&self, start: u64, end: u64) -> Result<Vec<Extent>> {
        /// Segment nodes read per block status request, at most.
        const BUDGET: usize = 256;
        let base = self.image.extents(start, end, BUDGET)?;
        let base = if base.is_empty() {
            // The first segment had a node beyond the budget: impossible with a
            // budget above 0, but answer "data" rather than nothing.
            let seg = self.image.segment_size();
            vec![Extent {
                start,
                end: ((start / seg + 1) * seg).min(end),
                hole: false,
            }]
        } else {
            base
        };
        let Some(o) = &self.overlay else { return Ok(base) };
        let mut out: Vec<Extent> = Vec::with_capacity(base.len());
        let mut push = |e: Extent| match out.last_mut() {
            Some(l) if l.hole == e.hole && l.end == e.start => l.end = e.end,
            _ => out.push(e),
        };
        for e in base {
            if !e.hole || o.none_in(e.start, e.end) {
                push(e);
                continue;
            }
            for (s, t, mine) in o.runs(e.start, e.end) {
                push(Extent {
                    start: s,
                    end: t,
                    hole: !mine,
                });
            }
        }
        Ok(out)
    }
}
