//! Cuts volumes into fixed segments and segments into content-defined chunks.
//!
//! A **segment** (4 MiB) is the unit of change detection, parallel work and
//! resumption. Inside a segment, runs of all-zero 4 KiB blocks become **holes**
//! (never stored, never sent), and each run of data is cut by FastCDC (gear table
//! seeded by the tenant key) into chunks of 4 / 16 / 64 KiB min / average / max.
//!
//! Why these sizes (measured with `lifeline bench` and `testbeds/bench/compare.sh`):
//! a scattered 4 KiB write rewrites the one chunk around it, so the bytes stored per
//! changed block are about the average chunk size. At 16 KiB a 1 %-of-blocks random
//! overwrite of a filesystem image stays within 1.5x the bytes written (writes into
//! free space cost exactly 4 KiB, since zero blocks around them are holes), while
//! the per-object cost (one file, one AEAD, one id) stays small against the
//! throughput of the primitives. 4 MiB segments keep an agent's state at 64 bytes
//! per 4 MiB (16 MiB per TiB) and give both cores long runs of work.

use std::ops::Range;

/// Size of a segment. Changing it changes every segment hash: it is recorded per
/// volume in each point.
pub const SEGMENT_SIZE: usize = 4 << 20;
/// Granularity of hole detection.
pub const ZERO_BLOCK: usize = 4096;
/// FastCDC minimum chunk size.
pub const CHUNK_MIN: u32 = 4 << 10;
/// FastCDC average chunk size.
pub const CHUNK_AVG: u32 = 16 << 10;
/// FastCDC maximum chunk size.
pub const CHUNK_MAX: u32 = 64 << 10;

/// One piece of a segment, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// `len` zero bytes.
    Hole(usize),
    /// The bytes in this range of the segment form one chunk.
    Chunk(Range<usize>),
}

/// True when every byte is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    // OR-folding whole words lets the compiler vectorise; no early exit needed at 4 KiB.
    let (body, tail) = buf.as_chunks::<8>();
    body.iter().fold(0u64, |acc, c| acc | u64::from_ne_bytes(*c)) == 0 && tail.iter().all(|&b| b == 0)
}

/// Cuts `segment` into holes and chunks, in order, covering it exactly.
pub fn cut_segment(segment: &[u8], seed: u64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < segment.len() {
        let block_end = |p: usize| (p + ZERO_BLOCK).min(segment.len());
        // Extend a run of blocks of the same kind (zero or data).
        let zero = is_zero(&segment[pos..block_end(pos)]);
        let mut end = block_end(pos);
        while end < segment.len() && is_zero(&segment[end..block_end(end)]) == zero {
            end = block_end(end);
        }
        if zero {
            match pieces.last_mut() {
                Some(Piece::Hole(n)) => *n += end - pos,
                _ => pieces.push(Piece::Hole(end - pos)),
            }
        } else {
            let run = &segment[pos..end];
            let cdc = fastcdc::v2020::FastCDC::with_level_and_seed(
                run,
                CHUNK_MIN,
                CHUNK_AVG,
                CHUNK_MAX,
                fastcdc::v2020::Normalization::Level1,
                seed,
            );
            for c in cdc {
                pieces.push(Piece::Chunk(pos + c.offset..pos + c.offset + c.length));
            }
        }
        pos = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(seg: &[u8], pieces: &[Piece]) -> bool {
        let mut pos = 0;
        for p in pieces {
            match p {
                Piece::Hole(n) => {
                    if !is_zero(&seg[pos..pos + n]) {
                        return false;
                    }
                    pos += n;
                }
                Piece::Chunk(r) => {
                    if r.start != pos || r.is_empty() || r.len() > CHUNK_MAX as usize {
                        return false;
                    }
                    pos = r.end;
                }
            }
        }
        pos == seg.len()
    }

    #[test]
    fn zero_blocks_become_holes() {
        let mut seg = vec![0u8; 64 << 10];
        seg[5000] = 1;
        let p = cut_segment(&seg, 1);
        assert_eq!(
            p,
            vec![Piece::Hole(4096), Piece::Chunk(4096..8192), Piece::Hole(56 << 10)]
        );
        assert_eq!(cut_segment(&vec![0u8; 10_000], 1), vec![Piece::Hole(10_000)]);
        assert!(cut_segment(&[], 1).is_empty());
    }

    #[test]
    fn local_change_keeps_other_chunks() {
        let seg: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let a = cut_segment(&seg, 9);
        let mut seg2 = seg.clone();
        seg2[500_000] ^= 0xff;
        let b = cut_segment(&seg2, 9);
        let ca: std::collections::HashSet<_> = a
            .iter()
            .map(|p| match p {
                Piece::Chunk(r) => seg[r.clone()].to_vec(),
                _ => vec![],
            })
            .collect();
        let changed = b
            .iter()
            .filter(|p| match p {
                Piece::Chunk(r) => !ca.contains(&seg2[r.clone()]),
                _ => false,
            })
            .count();
        assert!(changed <= 2, "{changed} chunks changed for one byte");
    }

    proptest! {
        #[test]
        fn pieces_cover_the_segment(runs in proptest::collection::vec((any::<bool>(), 1usize..20_000, any::<u8>()), 0..12), seed in any::<u64>()) {
            let mut seg = Vec::new();
            for (zero, len, v) in runs {
                seg.extend((0..len).map(|i| if zero { 0 } else { v.wrapping_add(i as u8) | 1 }));
            }
            let p = cut_segment(&seg, seed);
            prop_assert!(covers(&seg, &p));
        }
    }
}
