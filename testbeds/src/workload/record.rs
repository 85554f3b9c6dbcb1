//! The sample workload's on-volume format: a superblock, a ring of fixed-size
//! records, and an optional ballast region of seeded pseudo-random bytes (so a
//! first sync has real data to move). Decoders take untrusted bytes (a
//! recovered volume) and never panic. Layouts are in `FORMAT.md`
//! ("Sample workload volume"); do not change these constants: a new layout gets
//! a new version.

use chrono::{DateTime, Utc};

/// Superblock magic ("Lifeline Workload Volume").
pub const SUPERBLOCK_MAGIC: &[u8; 4] = b"LLWV";
/// Record magic ("Lifeline Workload Record").
pub const RECORD_MAGIC: &[u8; 4] = b"LLWR";
/// Version of both layouts.
pub const FORMAT_VERSION: u8 = 1;
/// The superblock occupies the first 4 KiB; the ring starts right after it.
pub const SUPERBLOCK_LEN: u64 = 4096;
/// Bytes of the superblock covered by its hash.
const SUPERBLOCK_BODY: usize = 72;
/// Size of one record slot.
pub const RECORD_LEN: usize = 512;
/// Bytes of a record covered by its hash (the hash fills the rest).
const RECORD_BODY: usize = RECORD_LEN - 32;
/// Offset of the payload inside a record.
const PAYLOAD_AT: usize = 32;
/// Largest payload.
pub const MAX_PAYLOAD: usize = RECORD_BODY - PAYLOAD_AT;

/// The volume's description, written once at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Random; every record carries it, so stale records of another volume are told apart.
    pub volume_id: u64,
    /// Number of record slots in the ring.
    pub slots: u64,
    /// Offset of the first slot.
    pub ring_offset: u64,
    /// Offset and length of the ballast region (length 0: none).
    pub ballast_offset: u64,
    pub ballast_len: u64,
    /// Seed of the ballast bytes.
    pub ballast_seed: u64,
    /// Creation time, Unix nanoseconds.
    pub created_ns: i64,
}

/// Why a superblock or a record slot does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("too short ({0} bytes)")]
    TooShort(usize),
    #[error("no magic")]
    NoMagic,
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("checksum mismatch")]
    Checksum,
    #[error("invalid field: {0}")]
    Field(&'static str),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Superblock {
    /// The 4 KiB superblock.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN as usize];
        b[0..4].copy_from_slice(SUPERBLOCK_MAGIC);
        b[4] = FORMAT_VERSION;
        b[8..16].copy_from_slice(&self.volume_id.to_le_bytes());
        b[16..20].copy_from_slice(&(RECORD_LEN as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.slots.to_le_bytes());
        b[32..40].copy_from_slice(&self.ring_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.ballast_offset.to_le_bytes());
        b[48..56].copy_from_slice(&self.ballast_len.to_le_bytes());
        b[56..64].copy_from_slice(&self.ballast_seed.to_le_bytes());
        b[64..72].copy_from_slice(&self.created_ns.to_le_bytes());
        let h = blake3::hash(&b[..SUPERBLOCK_BODY]);
        b[SUPERBLOCK_BODY..SUPERBLOCK_BODY + 32].copy_from_slice(h.as_bytes());
        b
    }

    /// Decodes and checks a superblock.
    pub fn decode(b: &[u8]) -> Result<Superblock, DecodeError> {
        if b.len() < SUPERBLOCK_BODY + 32 {
            return Err(DecodeError::TooShort(b.len()));
        }
        if &b[0..4] != SUPERBLOCK_MAGIC {
            return Err(DecodeError::NoMagic);
        }
        if b[4] != FORMAT_VERSION {
            return Err(DecodeError::Version(b[4]));
        }
        if blake3::hash(&b[..SUPERBLOCK_BODY]).as_bytes() != &b[SUPERBLOCK_BODY..SUPERBLOCK_BODY + 32] {
            return Err(DecodeError::Checksum);
        }
        if u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")) as usize != RECORD_LEN {
            return Err(DecodeError::Field("record size"));
        }
        let sb = Superblock {
            volume_id: u64_at(b, 8),
            slots: u64_at(b, 24),
            ring_offset: u64_at(b, 32),
            ballast_offset: u64_at(b, 40),
            ballast_len: u64_at(b, 48),
            ballast_seed: u64_at(b, 56),
            created_ns: u64_at(b, 64) as i64,
        };
        if sb.slots == 0 || sb.ring_offset < SUPERBLOCK_LEN {
            return Err(DecodeError::Field("ring"));
        }
        let ring_end = sb
            .slots
            .checked_mul(RECORD_LEN as u64)
            .and_then(|n| n.checked_add(sb.ring_offset))
            .ok_or(DecodeError::Field("ring"))?;
        if sb.ballast_len > 0
            && (sb.ballast_offset < ring_end || sb.ballast_offset.checked_add(sb.ballast_len).is_none())
        {
            return Err(DecodeError::Field("ballast"));
        }
        Ok(sb)
    }

    /// Byte offset of the slot that holds record `seq` (seqs start at 1).
    pub fn slot_offset(&self, seq: u64) -> u64 {
        self.ring_offset + (seq.saturating_sub(1) % self.slots) * RECORD_LEN as u64
    }

    /// End of the ring.
    pub fn ring_end(&self) -> u64 {
        self.ring_offset + self.slots * RECORD_LEN as u64
    }
}

/// One record: what the workload wrote and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub volume_id: u64,
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// When it was written, Unix nanoseconds.
    pub written_ns: i64,
    pub payload: Vec<u8>,
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// All zeros: never written.
    Empty,
    Record(Record),
    /// Not zeros and not a valid record.
    Damaged(DecodeError),
}

impl Record {
    /// A record with a payload derived from its seq (readable text, compressible).
    pub fn new(volume_id: u64, seq: u64, written_ns: i64) -> Record {
        let mut payload = format!("record {seq} of volume {volume_id:016x} written at {written_ns} ns; ").into_bytes();
        while payload.len() < 200 {
            payload.extend_from_slice(b"lifeline sample workload; ");
        }
        payload.truncate(200);
        Record {
            volume_id,
            seq,
            written_ns,
            payload,
        }
    }

    /// When it was written.
    pub fn written_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.written_ns)
    }

    /// The 512-byte slot image. Payloads longer than [`MAX_PAYLOAD`] are cut.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        let n = self.payload.len().min(MAX_PAYLOAD);
        b[0..4].copy_from_slice(RECORD_MAGIC);
        b[4] = FORMAT_VERSION;
        b[6..8].copy_from_slice(&(n as u16).to_le_bytes());
        b[8..16].copy_from_slice(&self.volume_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.written_ns.to_le_bytes());
        b[PAYLOAD_AT..PAYLOAD_AT + n].copy_from_slice(&self.payload[..n]);
        let h = blake3::hash(&b[..RECORD_BODY]);
        b[RECORD_BODY..].copy_from_slice(h.as_bytes());
        b
    }

    /// Decodes one slot of untrusted bytes.
    pub fn decode(b: &[u8]) -> Slot {
        if b.len() < RECORD_LEN {
            return Slot::Damaged(DecodeError::TooShort(b.len()));
        }
        let b = &b[..RECORD_LEN];
        if b.iter().all(|&x| x == 0) {
            return Slot::Empty;
        }
        if &b[0..4] != RECORD_MAGIC {
            return Slot::Damaged(DecodeError::NoMagic);
        }
        if b[4] != FORMAT_VERSION {
            return Slot::Damaged(DecodeError::Version(b[4]));
        }
        if blake3::hash(&b[..RECORD_BODY]).as_bytes() != &b[RECORD_BODY..] {
            return Slot::Damaged(DecodeError::Checksum);
        }
        let n = u16::from_le_bytes([b[6], b[7]]) as usize;
        if n > MAX_PAYLOAD || b[5] != 0 {
            return Slot::Damaged(DecodeError::Field("payload length"));
        }
        let seq = u64_at(b, 16);
        if seq == 0 {
            return Slot::Damaged(DecodeError::Field("seq"));
        }
        Slot::Record(Record {
            volume_id: u64_at(b, 8),
            seq,
            written_ns: u64_at(b, 24) as i64,
            payload: b[PAYLOAD_AT..PAYLOAD_AT + n].to_vec(),
        })
    }
}

/// The ballast bytes at `offset` (relative to the ballast start) for `seed`:
/// a splitmix64 stream, 8 bytes per step, so any range can be regenerated.
pub fn ballast_fill(seed: u64, offset: u64, buf: &mut [u8]) {
    debug_assert_eq!(offset % 8, 0);
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    state = state.wrapping_add((offset / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for c in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        c.copy_from_slice(&z.to_le_bytes()[..c.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_and_damage_is_seen() {
        let r = Record::new(7, 42, 1_700_000_000_123_456_789);
        let b = r.encode();
        assert_eq!(Record::decode(&b), Slot::Record(r.clone()));
        assert_eq!(Record::decode(&[0u8; RECORD_LEN]), Slot::Empty);
        let mut bad = b;
        bad[100] ^= 1;
        assert_eq!(Record::decode(&bad), Slot::Damaged(DecodeError::Checksum));
        assert_eq!(Record::decode(&b[..10]), Slot::Damaged(DecodeError::TooShort(10)));
    }

    #[test]
    fn superblocks_round_trip() {
        let sb = Superblock {
            volume_id: 99,
            slots: 16384,
            ring_offset: SUPERBLOCK_LEN,
            ballast_offset: SUPERBLOCK_LEN + 16384 * 512,
            ballast_len: 1 << 20,
            ballast_seed: 5,
            created_ns: 12,
        };
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb));
        assert_eq!(sb.slot_offset(1), SUPERBLOCK_LEN);
        assert_eq!(sb.slot_offset(16385), SUPERBLOCK_LEN);
    }

    #[test]
    fn ballast_ranges_regenerate() {
        let mut whole = vec![0u8; 4096];
        ballast_fill(3, 0, &mut whole);
        let mut part = vec![0u8; 1024];
        ballast_fill(3, 2048, &mut part);
        assert_eq!(&whole[2048..3072], &part[..]);
    }

    proptest! {
        // Untrusted bytes: the decoders never panic, and what decodes re-encodes to the same bytes.
        #[test]
        fn record_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Slot::Record(r) = Record::decode(&bytes) {
                prop_assert_eq!(&r.encode()[..], &bytes[..RECORD_LEN]);
            }
        }

        #[test]
        fn damaged_records_never_decode(seq in 1u64.., ns in any::<i64>(), at in 0usize..RECORD_LEN, bit in 0u8..8) {
            let mut b = Record::new(1, seq, ns).encode();
            b[at] ^= 1 << bit;
            prop_assert!(!matches!(Record::decode(&b), Slot::Record(_)));
        }

        #[test]
        fn superblock_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Superblock::decode(&bytes);
        }

        #[test]
        fn valid_looking_superblocks_with_any_fields_never_panic(slots in any::<u64>(), ring in any::<u64>(), bo in any::<u64>(), bl in any::<u64>()) {
            let sb = Superblock { volume_id: 1, slots, ring_offset: ring, ballast_offset: bo, ballast_len: bl, ballast_seed: 0, created_ns: 0 };
            if let Ok(d) = Superblock::decode(&sb.encode()) {
                let _ = d.slot_offset(u64::MAX);
                prop_assert!(d.ring_end() >= d.ring_offset);
            }
        }
    }
}
