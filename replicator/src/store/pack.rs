//! Pack files: many sealed objects in one file, so a repository holds thousands
//! of files instead of millions, writes create few inodes and restores read long
//! runs instead of one small file per chunk.
//!
//! ```text
//! header   "LLPK" | version u8 = 1 | reserved [3] = 0
//! objects  sealed objects back to back (each carries its own trailer hash)
//! footer   (id [32] | offset u64 | length u32 | kind u8) * n
//!          | n u32 | BLAKE3 of the footer entries and n [32] | "LLPE"
//! ```
//! The footer makes a pack self-describing: a pack that became durable but whose
//! index entries were lost in a crash is re-indexed from it when the store opens.

use std::fmt;

use crate::file_formats::MAX_OBJECT_LEN;
use crate::object_id::ObjectId;

/// Magic at the start of a pack: "LLPK".
pub const PACK_MAGIC: [u8; 4] = *b"LLPK";
/// Magic at the very end of a pack: "LLPE".
pub const PACK_END_MAGIC: [u8; 4] = *b"LLPE";
/// Pack format version.
pub const PACK_VERSION: u8 = 1;
/// Header length.
pub const PACK_HEADER_LEN: u64 = 8;
/// Size of one footer entry.
pub const FOOTER_ENTRY_LEN: usize = 32 + 8 + 4 + 1;
/// A pack is closed once it holds this much: large enough for long sequential
/// reads, small enough that a crash loses little unsynced work.
pub const PACK_TARGET_BYTES: u64 = 16 << 20;

/// Random 128-bit pack id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        crate::fsutil::random_bytes(&mut b);
        PackId(b)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(PackId(b))
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({})", self.to_hex())
    }
}

/// Where an object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLocation {
    pub pack: PackId,
    pub offset: u64,
    pub len: u32,
    /// Kind byte of the sealed object.
    pub kind: u8,
}

/// The pack header.
pub fn header() -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&PACK_MAGIC);
    h[4] = PACK_VERSION;
    h
}

/// Encodes the footer for `entries`.
pub fn footer(entries: &[(ObjectId, ObjectLocation)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * FOOTER_ENTRY_LEN + 40);
    for (id, loc) in entries {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.len.to_le_bytes());
        out.push(loc.kind);
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let h = blake3::hash(&out);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&PACK_END_MAGIC);
    out
}

/// Decodes and checks the footer at the end of a whole pack file's bytes
/// (`tail` is at least the footer; `file_len` the pack length).
pub fn parse_footer(pack: PackId, tail: &[u8], file_len: u64) -> Result<Vec<(ObjectId, ObjectLocation)>, String> {
    if tail.len() < 40 || tail[tail.len() - 4..] != PACK_END_MAGIC {
        return Err("no pack footer (truncated pack)".into());
    }
    let n = u32::from_le_bytes(tail[tail.len() - 40..tail.len() - 36].try_into().expect("4")) as usize;
    let body_len = n.checked_mul(FOOTER_ENTRY_LEN).ok_or("bad footer count")? + 4;
    if tail.len() < body_len + 36 {
        return Err("footer longer than the bytes given".into());
    }
    let body = &tail[tail.len() - 36 - body_len..tail.len() - 36];
    if blake3::hash(body).as_bytes() != &tail[tail.len() - 36..tail.len() - 4] {
        return Err("footer checksum mismatch".into());
    }
    let data_end = file_len
        .checked_sub(body_len as u64 + 36)
        .ok_or("footer longer than the pack")?;
    let mut out = Vec::with_capacity(n);
    for e in body[..body_len - 4].chunks_exact(FOOTER_ENTRY_LEN) {
        let id = ObjectId(e[..32].try_into().expect("32"));
        let offset = u64::from_le_bytes(e[32..40].try_into().expect("8"));
        let len = u32::from_le_bytes(e[40..44].try_into().expect("4"));
        // Untrusted numbers: checked, so a crafted entry cannot wrap around
        // into a small end (and be read as a huge object).
        if offset < PACK_HEADER_LEN
            || len as usize > MAX_OBJECT_LEN
            || offset.checked_add(len as u64).is_none_or(|end| end > data_end)
        {
            return Err(format!("footer entry for {} is out of bounds", id.short()));
        }
        out.push((
            id,
            ObjectLocation {
                pack,
                offset,
                len,
                kind: e[44],
            },
        ));
    }
    Ok(out)
}

/// Length of the footer for `n` entries.
pub fn footer_len(n: usize) -> u64 {
    (n * FOOTER_ENTRY_LEN + 40) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn footer_round_trip() {
        let p = PackId([1; 16]);
        let entries: Vec<_> = (0..5u8)
            .map(|i| {
                (
                    ObjectId([i; 32]),
                    ObjectLocation {
                        pack: p,
                        offset: 8 + i as u64 * 10,
                        len: 10,
                        kind: 1,
                    },
                )
            })
            .collect();
        let f = footer(&entries);
        assert_eq!(f.len() as u64, footer_len(5));
        let file_len = 8 + 50 + f.len() as u64;
        assert_eq!(parse_footer(p, &f, file_len).unwrap(), entries);
        let mut bad = f.clone();
        bad[3] ^= 1;
        assert!(parse_footer(p, &bad, file_len).is_err());
        assert!(parse_footer(p, &f, 8 + 40 + f.len() as u64).is_err(), "out of bounds");
    }

    /// A footer with a valid checksum whose entries say anything: what it
    /// accepts lies inside the pack's data, whatever the numbers.
    fn crafted(entries: &[(u64, u32)]) -> Vec<u8> {
        let entries: Vec<_> = entries
            .iter()
            .map(|&(offset, len)| {
                (
                    ObjectId([7; 32]),
                    ObjectLocation {
                        pack: PackId([2; 16]),
                        offset,
                        len,
                        kind: 1,
                    },
                )
            })
            .collect();
        footer(&entries)
    }

    #[test]
    fn an_entry_whose_end_wraps_around_is_refused() {
        let f = crafted(&[(u64::MAX - 10, 100)]);
        let e = parse_footer(PackId([2; 16]), &f, 1 << 20).unwrap_err();
        assert!(e.contains("out of bounds"), "{e}");
        let f = crafted(&[(8, u32::MAX)]);
        assert!(
            parse_footer(PackId([2; 16]), &f, 8 << 30).is_err(),
            "longer than any object"
        );
    }

    proptest! {
        #[test]
        fn crafted_entries_are_accepted_only_inside_the_data(
            entries in proptest::collection::vec(
                (prop_oneof![0u64..4096, (u64::MAX - 4096)..=u64::MAX, any::<u64>()], any::<u32>()),
                0..8,
            ),
            data in 0u64..8192,
        ) {
            let f = crafted(&entries);
            let file_len = PACK_HEADER_LEN + data + f.len() as u64;
            if let Ok(got) = parse_footer(PackId([2; 16]), &f, file_len) {
                for (_, loc) in got {
                    let end = loc.offset.checked_add(loc.len as u64);
                    prop_assert!(loc.offset >= PACK_HEADER_LEN && end.is_some_and(|e| e <= PACK_HEADER_LEN + data));
                }
            }
        }

        #[test]
        fn footer_parser_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300), len in 0u64..10_000) {
            let _ = parse_footer(PackId([0; 16]), &tail, len.max(tail.len() as u64));
        }
    }
}
