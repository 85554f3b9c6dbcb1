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

/// A maximal run of all-zero or of non-zero 4 KiB blocks within a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub zero: bool,
    pub range: Range<usize>,
}

/// Splits a segment into alternating runs of zero and non-zero 4 KiB blocks (the
/// last block may be shorter). Canonical: equal bytes give equal runs.
pub fn runs(segment: &[u8]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, block) in segment.chunks(ZERO_BLOCK).enumerate() {
        let zero = is_zero(block);
        let start = i * ZERO_BLOCK;
        match out.last_mut() {
            Some(r) if r.zero == zero => r.range.end = start + block.len(),
            _ => out.push(Run {
                zero,
                range: start..start + block.len(),
            }),
        }
    }
    out
}

/// Cuts `segment` into holes and chunks, in order, covering it exactly: zero runs
/// become holes, data runs are cut by FastCDC.
pub fn cut_segment(segment: &[u8], seed: u64) -> Vec<Piece> {
    cut_runs(segment, &runs(segment), seed)
}

/// [`cut_segment`] over runs already computed.
pub fn cut_runs(segment: &[u8], runs: &[Run], seed: u64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for run in runs {
        if run.zero {
            pieces.push(Piece::Hole(run.range.len()));
            continue;
        }
        let cdc = fastcdc::v2020::FastCDC::with_level_and_seed(
            &segment[run.range.clone()],
            CHUNK_MIN,
            CHUNK_AVG,
            CHUNK_MAX,
            fastcdc::v2020::Normalization::Level1,
            seed,
        );
        for c in cdc {
            let start = run.range.start + c.offset;
            pieces.push(Piece::Chunk(start..start + c.length));
        }
    }
    pieces
}

/// The hash of a segment: BLAKE3 over its runs, `"Z" ‖ length u64` for a zero
/// run and `"D" ‖ length u64 ‖ bytes` for a data run. It commits to every byte yet
/// costs nothing for zeros, so sparse volumes hash (and restore) at the speed of
/// their data.
pub fn segment_hash(segment: &[u8], runs: &[Run]) -> [u8; 32] {
    let mut h = SegmentHasher::default();
    for r in runs {
        if r.zero {
            h.zero_run(r.range.len() as u64);
        } else {
            h.data_run(r.range.len() as u64);
            h.data(&segment[r.range.clone()]);
        }
    }
    h.finish()
}

/// Builds a [`segment_hash`] incrementally (a data run's bytes may come in pieces).
#[derive(Default)]
pub struct SegmentHasher(blake3::Hasher);

impl SegmentHasher {
    pub fn zero_run(&mut self, len: u64) {
        self.0.update(b"Z");
        self.0.update(&len.to_le_bytes());
    }
    pub fn data_run(&mut self, len: u64) {
        self.0.update(b"D");
        self.0.update(&len.to_le_bytes());
    }
    pub fn data(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
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
    fn segment_hash_is_canonical() {
        let mut a = vec![0u8; 40_000];
        a[5000] = 1;
        let mut b = a.clone();
        assert_eq!(segment_hash(&a, &runs(&a)), segment_hash(&b, &runs(&b)));
        b[30_000] = 1;
        assert_ne!(segment_hash(&a, &runs(&a)), segment_hash(&b, &runs(&b)));
        let z = vec![0u8; 9000];
        assert_eq!(
            runs(&z),
            vec![Run {
                zero: true,
                range: 0..9000
            }]
        );
        assert_ne!(segment_hash(&z, &runs(&z)), segment_hash(&z[..8999], &runs(&z[..8999])));
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
