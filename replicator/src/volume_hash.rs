//! The whole-volume hash recorded in each point and checked after every restore.
//!
//! `BLAKE3-derive-key("lifeline 2026-11 volume hash v1", size u64 LE || H(seg 0) || H(seg 1) ...)`
//! where `H(seg i)` is the plain BLAKE3 of segment i's bytes (holes as zeros).
//! It commits to every byte of the volume, yet is computed from per-segment hashes
//! the scan already has: no second read, parallel, and a hole segment costs a
//! cached constant instead of hashing gigabytes of zeros.

use std::sync::OnceLock;

use crate::chunker::SEGMENT_SIZE;
use crate::file_formats::KDF_VOLUME_HASH;

/// BLAKE3 of `len` zero bytes (cached for the full segment length).
pub fn zero_segment_hash(len: usize) -> [u8; 32] {
    static FULL: OnceLock<[u8; 32]> = OnceLock::new();
    let compute = |len: usize| {
        let mut h = blake3::Hasher::new();
        let zeros = [0u8; 65536];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len());
            h.update(&zeros[..n]);
            left -= n;
        }
        *h.finalize().as_bytes()
    };
    if len == SEGMENT_SIZE {
        *FULL.get_or_init(|| compute(SEGMENT_SIZE))
    } else {
        compute(len)
    }
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

    #[test]
    fn zero_hash_matches_plain_blake3() {
        assert_eq!(
            zero_segment_hash(SEGMENT_SIZE),
            *blake3::hash(&vec![0u8; SEGMENT_SIZE]).as_bytes()
        );
        assert_eq!(zero_segment_hash(100), *blake3::hash(&[0u8; 100]).as_bytes());
    }
}
