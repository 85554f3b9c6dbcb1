//! One volume of a recovery point read in place, through its index: a segment
//! is found by descending the tree (index nodes kept once read), decoded
//! whole (every chunk authenticated) into the shared [`SegmentCache`], and a
//! read copies out of it. Nothing is read until a segment is asked for, so
//! opening a point costs the same for any volume size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::{Keys, ObjectKind};
use crate::error::{Error, Result};
use crate::index::{AnySegment, IndexNode, TreeRoot, leaf_at};
use crate::object_id::ObjectId;
use crate::point::VolumeEntry;
use crate::point_reader::{assemble_segment, read_segment_node};
use crate::reader::ObjectReader;
use crate::store::ChunkStore;

use super::segment_cache::{Segment, SegmentCache};

/// A volume at a point, readable by offset.
pub struct PointImage {
    store: Arc<dyn ChunkStore>,
    keys: Keys,
    /// This image's number in the shared cache.
    number: usize,
    name: String,
    size: u64,
    segment_size: u64,
    root: TreeRoot,
    segments: usize,
    index_nodes: Mutex<HashMap<ObjectId, Arc<IndexNode>>>,
    cache: Arc<SegmentCache>,
}

/// A run of a volume and whether it holds data or reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub end: u64,
    pub hole: bool,
}

impl PointImage {
    pub fn new(
        store: Arc<dyn ChunkStore>,
        keys: Keys,
        number: usize,
        entry: &VolumeEntry,
        cache: Arc<SegmentCache>,
    ) -> Self {
        PointImage {
            store,
            keys,
            number,
            name: entry.name.clone(),
            size: entry.size,
            segment_size: entry.segment_size.max(1),
            root: entry.tree_root(),
            segments: entry.segments(),
            index_nodes: Mutex::new(HashMap::new()),
            cache,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    pub fn segment_count(&self) -> usize {
        self.segments
    }

    fn reader(&self) -> ObjectReader<'_> {
        ObjectReader::new(self.store.as_ref(), &self.keys)
    }

    /// The segment node of segment `i`, `None` for an all-zero segment.
    fn leaf(&self, i: usize) -> Result<Option<ObjectId>> {
        let reader = self.reader();
        leaf_at(self.root, self.segments, i, |id| {
            if let Some(n) = self.index_nodes.lock().expect("index nodes").get(id) {
                return Ok(n.clone());
            }
            let (refs, plain) = reader.read(id, ObjectKind::IndexNode)?;
            let node = Arc::new(IndexNode::decode(&refs, &plain).map_err(|reason| reader.damaged(id, reason))?);
            self.index_nodes.lock().expect("index nodes").insert(*id, node.clone());
            Ok::<_, Error>(node)
        })
    }

    fn segment_len(&self, i: usize) -> usize {
        let start = i as u64 * self.segment_size;
        (self.size - start).min(self.segment_size) as usize
    }

    /// Segment `i` decoded (through the cache); `None` when it is a hole.
    pub fn segment(&self, i: usize) -> Result<Option<Segment>> {
        let Some(node) = self.leaf(i)? else { return Ok(None) };
        let len = self.segment_len(i);
        self.cache
            .get((self.number, i), || {
                let mut buf = vec![0u8; len];
                assemble_segment(&self.reader(), &node, &mut buf, true)?;
                Ok(buf)
            })
            .map(Some)
    }

    /// True when segment `i` is decoded or being decoded.
    pub fn is_cached(&self, i: usize) -> bool {
        self.cache.contains((self.number, i))
    }

    /// Fills `buf` with the volume's bytes at `offset` (the caller keeps the
    /// range inside the volume).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let i = (at / self.segment_size) as usize;
            let within = (at % self.segment_size) as usize;
            let n = (self.segment_len(i) - within).min(buf.len() - done);
            match self.segment(i)? {
                Some(seg) => buf[done..done + n].copy_from_slice(&seg[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Data and hole runs of `[start, end)`, from segment nodes alone (no chunk
    /// is read): holes of the tree and the hole extents of full segment nodes;
    /// a delta segment counts as data. Stops early after `budget` segments that
    /// have a node, so one request cannot read a whole huge index.
    pub fn extents(&self, start: u64, end: u64, budget: usize) -> Result<Vec<Extent>> {
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |s: u64, e: u64, hole: bool| {
            let (s, e) = (s.max(start), e.min(end));
            if s >= e {
                return;
            }
            match out.last_mut() {
                Some(l) if l.hole == hole && l.end == s => l.end = e,
                _ => out.push(Extent { start: s, end: e, hole }),
            }
        };
        let mut at = start;
        let mut nodes_read = 0usize;
        while at < end {
            let i = (at / self.segment_size) as usize;
            let seg_start = i as u64 * self.segment_size;
            let seg_end = seg_start + self.segment_len(i) as u64;
            match self.leaf(i)? {
                None => push(seg_start, seg_end, true),
                Some(_) if nodes_read >= budget => break,
                Some(node_id) => {
                    nodes_read += 1;
                    match read_segment_node(&self.reader(), &node_id)? {
                        AnySegment::Full(node) => {
                            let mut pos = seg_start;
                            for (len, id) in &node.extents {
                                push(pos, pos + *len as u64, id.is_none());
                                pos += *len as u64;
                            }
                        }
                        AnySegment::Delta(_) => push(seg_start, seg_end, false),
                    }
                }
            }
            at = seg_end;
        }
        Ok(out)
    }
}
