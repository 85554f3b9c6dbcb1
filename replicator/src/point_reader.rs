//! Reading a volume of a point out of its tree: the leaves (segment nodes) of
//! a volume, and each segment assembled into a buffer from its chunks, every
//! object authenticated on the way. Restore, verify, serve and the next
//! backup's diff all read points through here.

use std::ops::Range;

use crate::chunker::{Run, runs, segment_hash};
use crate::crypto::ObjectKind;
use crate::error::Result;
use crate::index::{AnySegment, IndexNode, SegmentNode, walk_tree};
use crate::object_id::ObjectId;
use crate::point::VolumeEntry;
use crate::reader::ObjectReader;

/// The leaves (segment node ids) of a volume's tree.
pub(crate) fn volume_leaves(reader: &ObjectReader, entry: &VolumeEntry) -> Result<Vec<Option<ObjectId>>> {
    walk_tree(entry.tree_root(), entry.segments(), |id| {
        let (refs, plain) = reader.read(id, ObjectKind::IndexNode)?;
        IndexNode::decode(&refs, &plain).map_err(|reason| reader.damaged(id, reason))
    })
}

/// A segment assembled from its node: where its data runs are in the buffer and
/// its [`segment_hash`](crate::chunker::segment_hash).
pub(crate) struct AssembledSegment {
    pub data_runs: Vec<Range<usize>>,
    pub hash: [u8; 32],
}

/// Assembles segment `node_id` into `buf` (exactly the segment's length), authenticating every
/// object. Hole ranges are zeroed only when `zero_holes` (a block device needs the
/// zeros written; a sparse file and the hash do not).
pub(crate) fn assemble_segment(
    reader: &ObjectReader,
    node_id: &ObjectId,
    buf: &mut [u8],
    zero_holes: bool,
) -> Result<AssembledSegment> {
    let len = buf.len();
    let node = match read_segment_node(reader, node_id)? {
        AnySegment::Full(node) => node,
        AnySegment::Delta(delta) => {
            if delta.len as usize != len {
                return Err(reader.damaged(
                    node_id,
                    format!("covers {} bytes where the segment has {len}", delta.len),
                ));
            }
            // The base, zeros included (patches land on it and the runs are
            // found again from the bytes), then the patches over it.
            let base = read_full_segment(reader, &delta.base)?;
            if base.map.is_none() {
                return Err(reader.damaged(node_id, "has a base without a block map".into()));
            }
            assemble_full(reader, &delta.base, &base, buf, true)?;
            let mut places = Vec::with_capacity(delta.patches.len());
            for (off, plen, id) in &delta.patches {
                let range = *off as usize..(*off + *plen) as usize;
                match id {
                    Some(id) => places.push((*id, range.start, range.len())),
                    None => buf[range].fill(0),
                }
            }
            place_chunks(reader, node_id, &places, buf)?;
            let runs = runs(buf);
            return Ok(AssembledSegment {
                hash: segment_hash(buf, &runs),
                data_runs: runs.into_iter().filter(|r| !r.zero).map(|r| r.range).collect(),
            });
        }
    };
    assemble_full(reader, node_id, &node, buf, zero_holes)
}

/// Reads and decodes a segment node of either layout.
pub(crate) fn read_segment_node(reader: &ObjectReader, id: &ObjectId) -> Result<AnySegment> {
    let (refs, plain) = reader.read(id, ObjectKind::SegmentNode)?;
    AnySegment::decode(&refs, &plain).map_err(|reason| reader.damaged(id, reason))
}

/// Reads a segment node that must be a full one (a delta's base).
pub(crate) fn read_full_segment(reader: &ObjectReader, id: &ObjectId) -> Result<SegmentNode> {
    match read_segment_node(reader, id)? {
        AnySegment::Full(node) => Ok(node),
        AnySegment::Delta(_) => Err(reader.damaged(id, "is a delta where a delta's base was expected".into())),
    }
}

/// [`assemble_segment`] for a full segment node already decoded.
fn assemble_full(
    reader: &ObjectReader,
    node_id: &ObjectId,
    node: &SegmentNode,
    buf: &mut [u8],
    zero_holes: bool,
) -> Result<AssembledSegment> {
    let len = buf.len();
    if node.len() != len as u64 {
        return Err(reader.damaged(
            node_id,
            format!("covers {} bytes where the segment has {len}", node.len()),
        ));
    }
    let mut places = Vec::with_capacity(node.extents.len());
    let mut pos = 0usize;
    // The extents' runs of holes and data are the runs the backup hashed.
    let mut runs: Vec<Run> = Vec::new();
    for (elen, id) in &node.extents {
        let elen = *elen as usize;
        match id {
            Some(id) => places.push((*id, pos, elen)),
            None if zero_holes => buf[pos..pos + elen].fill(0),
            None => {}
        }
        let zero = id.is_none();
        match runs.last_mut() {
            Some(r) if r.zero == zero => r.range.end = pos + elen,
            _ => runs.push(Run {
                zero,
                range: pos..pos + elen,
            }),
        }
        pos += elen;
    }
    place_chunks(reader, node_id, &places, buf)?;
    Ok(AssembledSegment {
        hash: segment_hash(buf, &runs),
        data_runs: runs.into_iter().filter(|r| !r.zero).map(|r| r.range).collect(),
    })
}

/// Opens chunks into their places in `buf`: `(chunk, offset, length)`, for the
/// segment node `node_id`. A chunk placed twice is opened once, at its first
/// place, and copied to the others; chunks are fetched 256 at a time (one
/// round trip to a remote store).
fn place_chunks(
    reader: &ObjectReader,
    node_id: &ObjectId,
    places: &[(ObjectId, usize, usize)],
    buf: &mut [u8],
) -> Result<()> {
    let mut first: std::collections::HashMap<ObjectId, (usize, usize)> = std::collections::HashMap::new();
    let mut wanted: Vec<(ObjectId, usize, usize)> = Vec::new();
    let mut copies: Vec<(usize, usize, usize)> = Vec::new();
    for &(id, at, n) in places {
        match first.get(&id) {
            Some(&(from, m)) if m == n => copies.push((from, at, n)),
            Some(&(_, m)) => {
                return Err(reader.damaged(node_id, format!("uses chunk {} as {m} and as {n} bytes", id.short())));
            }
            None => {
                first.insert(id, (at, n));
                wanted.push((id, at, n));
            }
        }
    }
    for batch in wanted.chunks(256) {
        let ids: Vec<ObjectId> = batch.iter().map(|w| w.0).collect();
        for ((id, at, n), mut bytes) in batch.iter().zip(reader.fetch_many(&ids)?) {
            reader.open_chunk_into(id, &mut bytes, &mut buf[*at..*at + *n])?;
        }
    }
    for (from, to, n) in copies {
        buf.copy_within(from..from + n, to);
    }
    Ok(())
}
