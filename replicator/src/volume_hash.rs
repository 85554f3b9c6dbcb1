//! The whole-volume hash recorded in each point and checked after every restore.
//!
//! `BLAKE3-derive-key("lifeline 2026-11 volume hash v1", size u64 LE || H(seg 0) || H(seg 1) ...)`
//! where `H(seg i)` is the [`segment_hash`](crate::chunker::segment_hash) of
//! segment i (its runs of zero and data blocks). It commits to every byte of the
//! volume, yet is computed from per-segment hashes the scan already has: no second
//! read, parallel, and zeros cost nothing to hash.

use crate::chunker::SegmentHasher;
use crate::file_formats::KDF_VOLUME_HASH;

/// The [`segment_hash`](crate::chunker::segment_hash) of `len` zero bytes.
pub fn zero_segment_hash(len: usize) -> [u8; 32] {
    let mut h = SegmentHasher::default();
    if len > 0 {
        h.zero_run(len as u64);
    }
    h.finish()
}

/// Accumulates segment hashes in order.
pub struct VolumeHasher(blake3::Hasher);

impl VolumeHasher {
    /// Starts the hash of a volume of `size` bytes.
    pub fn new(size: u64) -> Self {
        let mut h = blake3::Hasher::new_derive_key(KDF_VOLUME_HASH);
        h.update(&size.to_le_bytes());
        VolumeHasher(h)
    }

    /// Adds the next segment's hash.
    pub fn segment(&mut self, hash: &[u8; 32]) {
        self.0.update(hash);
    }

    /// The volume hash as hex.
    pub fn finish_hex(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::{runs, segment_hash};

    #[test]
    fn zero_hash_matches_segment_hash_of_zeros() {
        for len in [0usize, 100, 4096, 4 << 20] {
            let z = vec![0u8; len];
            assert_eq!(zero_segment_hash(len), segment_hash(&z, &runs(&z)));
        }
    }
}
