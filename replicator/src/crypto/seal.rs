//! Sealed objects: the only form in which data reaches a repository.
//!
//! ```text
//! header   magic "LLOB" | version u8 | kind u8 | flags u16 | key id u32 | nonce [12]
//!          | ref count u32 | refs [32] * n                         (cleartext)
//! body     AES-256-GCM( envelope u8 | payload ) + tag [16]
//!          AAD = object id [32] || header
//! trailer  BLAKE3(header || body) [32]                             (checkable without the key)
//! ```
//! The envelope byte says whether the payload is a zstd frame or raw bytes; it is
//! encrypted, so compressibility is not shown in clear. The references are in clear
//! (bound to the ciphertext by the AAD) so a repository without the key can check
//! that a point is complete, mark for garbage collection and map damage to points.

use std::cell::RefCell;

use crate::crypto::Keys;
use crate::file_formats::{
    ENVELOPE_RAW, ENVELOPE_ZSTD, MAX_OBJECT_LEN, MAX_OBJECT_REFS, OBJECT_HEADER_LEN, OBJECT_MAGIC, OBJECT_VERSION,
    TAG_LEN, TRAILER_LEN,
};
use crate::fsutil;
use crate::object_id::ObjectId;

/// zstd level for objects: level 1 compresses text-like volume data within a few
/// percent of level 3 at roughly twice the speed on this class of machine
/// (`lifeline bench` prints both).
pub const ZSTD_LEVEL: i32 = 1;

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A piece of volume content.
    Chunk = 1,
    /// The extents of one segment (chunk references and holes).
    SegmentNode = 2,
    /// An inner node of a volume's Merkle tree.
    IndexNode = 3,
}

impl ObjectKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(ObjectKind::Chunk),
            2 => Some(ObjectKind::SegmentNode),
            3 => Some(ObjectKind::IndexNode),
            _ => None,
        }
    }

    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "chunk",
            ObjectKind::SegmentNode => "segment node",
            ObjectKind::IndexNode => "index node",
        }
    }
}

/// The cleartext part of a sealed object, readable without the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    pub kind: ObjectKind,
    pub key_id: u32,
    pub refs: Vec<ObjectId>,
    /// Length of the header in bytes.
    pub header_len: usize,
}

/// A sealed object checked for structure and trailer (not yet authenticated).
pub struct SealedObject {
    pub header: SealedHeader,
}

impl SealedObject {
    /// Parses and checks structure and trailer hash: the no-key scrub. The error
    /// text says what is wrong; the caller names the object.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        Self::parse_checked(bytes, true)
    }

    /// [`parse`](Self::parse), with the trailer hash checked only when `trailer`
    /// (a caller about to authenticate the object with AES-GCM learns nothing
    /// more from it).
    fn parse_checked(bytes: &[u8], trailer_check: bool) -> Result<Self, String> {
        if bytes.len() > MAX_OBJECT_LEN {
            return Err(format!("{} bytes, more than the {MAX_OBJECT_LEN} allowed", bytes.len()));
        }
        if bytes.len() < OBJECT_HEADER_LEN + 1 + TAG_LEN + TRAILER_LEN {
            return Err(format!("truncated: {} bytes", bytes.len()));
        }
        if bytes[..4] != OBJECT_MAGIC {
            return Err("bad magic: not a Lifeline object".into());
        }
        let (content, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
        if trailer_check && blake3::hash(content).as_bytes() != trailer {
            return Err("checksum mismatch: bit rot, truncation or tampering".into());
        }
        if bytes[4] != OBJECT_VERSION {
            return Err(format!("unknown object version {}", bytes[4]));
        }
        let kind = ObjectKind::from_u8(bytes[5]).ok_or_else(|| format!("unknown kind {}", bytes[5]))?;
        let key_id = u32::from_le_bytes(bytes[8..12].try_into().expect("4"));
        let nrefs = u32::from_le_bytes(bytes[24..28].try_into().expect("4")) as usize;
        if nrefs > MAX_OBJECT_REFS {
            return Err(format!("{nrefs} references, more than the {MAX_OBJECT_REFS} allowed"));
        }
        let header_len = OBJECT_HEADER_LEN + 32 * nrefs;
        if content.len() < header_len + 1 + TAG_LEN {
            return Err("truncated: header longer than the object".into());
        }
        if kind == ObjectKind::Chunk && nrefs != 0 {
            return Err("a chunk with references".into());
        }
        let refs = bytes[OBJECT_HEADER_LEN..header_len]
            .chunks_exact(32)
            .map(|c| ObjectId(c.try_into().expect("32")))
            .collect();
        Ok(SealedObject {
            header: SealedHeader {
                kind,
                key_id,
                refs,
                header_len,
            },
        })
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses a zstd frame into `out` (a slice, or a Vec's spare capacity)
/// with this thread's decompressor; returns the bytes written.
fn decompress_into<C: zstd::zstd_safe::WriteBuf + ?Sized>(frame: &[u8], out: &mut C) -> Result<usize, OpenError> {
    DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            d.as_mut().expect("just set").decompress_to_buffer(frame, out)
        })
        .map_err(|e| OpenError::Damaged(format!("bad compressed payload: {e}")))
}

fn compress(plain: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let out = c.as_mut()?.compress(plain).ok()?;
        // Keep compression only where it pays for the decompression later.
        (out.len() + out.len() / 32 < plain.len()).then_some(out)
    })
}

/// Seals `plaintext` as an object of `kind` with id `id` referencing `refs`.
pub fn seal_object(keys: &Keys, kind: ObjectKind, id: &ObjectId, refs: &[ObjectId], plaintext: &[u8]) -> Vec<u8> {
    assert!(refs.len() <= MAX_OBJECT_REFS, "too many references");
    let header_len = OBJECT_HEADER_LEN + 32 * refs.len();
    let compressed = compress(plaintext);
    let payload: &[u8] = compressed.as_deref().unwrap_or(plaintext);
    let mut out = Vec::with_capacity(header_len + 1 + payload.len() + TAG_LEN + TRAILER_LEN);
    let mut nonce = [0u8; 12];
    fsutil::random_bytes(&mut nonce);
    out.extend_from_slice(&OBJECT_MAGIC);
    out.push(OBJECT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&keys.key_id().to_le_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(refs.len() as u32).to_le_bytes());
    for r in refs {
        out.extend_from_slice(&r.0);
    }
    out.push(if compressed.is_some() {
        ENVELOPE_ZSTD
    } else {
        ENVELOPE_RAW
    });
    out.extend_from_slice(payload);
    let mut aad = Vec::with_capacity(32 + header_len);
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(&out[..header_len]);
    let tag = keys.cipher().seal_in_place(&nonce, &aad, &mut out[header_len..]);
    out.extend_from_slice(&tag);
    let trailer = blake3::hash(&out);
    out.extend_from_slice(trailer.as_bytes());
    out
}

/// Why an object could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Structure or trailer check failed (no key needed to see it).
    Damaged(String),
    /// Sealed under another key id.
    OtherKey(u32),
    /// AES-GCM rejected it: wrong key or altered content.
    Authentication,
    /// Decrypted, but the content does not hash to the id it is stored under.
    IdMismatch,
}

/// Checks, decrypts, decompresses and verifies the id of an object stored as `id`.
pub fn open_object(keys: &Keys, id: &ObjectId, bytes: &[u8]) -> Result<(SealedHeader, Vec<u8>), OpenError> {
    let obj = SealedObject::parse(bytes).map_err(OpenError::Damaged)?;
    let h = obj.header;
    if h.key_id != keys.key_id() {
        return Err(OpenError::OtherKey(h.key_id));
    }
    let nonce: [u8; 12] = bytes[12..24].try_into().expect("12");
    let body_end = bytes.len() - TRAILER_LEN - TAG_LEN;
    let tag: [u8; TAG_LEN] = bytes[body_end..body_end + TAG_LEN].try_into().expect("16");
    let mut buf = bytes[h.header_len..body_end].to_vec();
    let mut aad = Vec::with_capacity(32 + h.header_len);
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(&bytes[..h.header_len]);
    keys.cipher()
        .open_in_place(&nonce, &aad, &mut buf, &tag)
        .map_err(|_| OpenError::Authentication)?;
    let plain = match buf.first() {
        Some(&ENVELOPE_RAW) => {
            buf.remove(0);
            buf
        }
        Some(&ENVELOPE_ZSTD) => {
            let size = zstd::zstd_safe::get_frame_content_size(&buf[1..])
                .ok()
                .flatten()
                .filter(|&s| s as usize <= MAX_OBJECT_LEN)
                .ok_or_else(|| OpenError::Damaged("bad compressed payload".into()))?;
            let mut plain = Vec::with_capacity(size as usize);
            decompress_into(&buf[1..], &mut plain)?;
            plain
        }
        _ => return Err(OpenError::Damaged("bad envelope".into())),
    };
    let actual = match h.kind {
        ObjectKind::Chunk => keys.chunk_id(&plain),
        ObjectKind::SegmentNode | ObjectKind::IndexNode => keys.node_id(&h.refs, &plain),
    };
    if actual != *id {
        return Err(OpenError::IdMismatch);
    }
    Ok((h, plain))
}

/// Why AES-GCM rejected an object, from its stored bytes: damage (the trailer
/// or structure is wrong: bit rot, a torn write) or alteration (the trailer
/// matches, so the bytes are as written, but not by this key).
pub fn rejection(stored: &[u8]) -> OpenError {
    match SealedObject::parse(stored) {
        Ok(_) => OpenError::Authentication,
        Err(reason) => OpenError::Damaged(reason),
    }
}

/// Opens a chunk stored as `id` straight into `out`, which must be exactly its
/// plaintext length: decrypted in place in `bytes`, decompressed into `out`.
/// The restore path: AES-GCM authenticates the content under the id and header
/// (any damage or alteration fails), and the restore checks the whole volume's
/// hash at the end, so neither the trailer nor the chunk id is recomputed here
/// (`verify` and [`open_object`] do both). When authentication fails the
/// error is [`OpenError::Authentication`] and `bytes` is left unspecified:
/// [`rejection`] of the stored bytes, read again, tells damage from alteration.
pub fn open_chunk_into(keys: &Keys, id: &ObjectId, bytes: &mut [u8], out: &mut [u8]) -> Result<(), OpenError> {
    let h = SealedObject::parse_checked(bytes, false)
        .map_err(OpenError::Damaged)?
        .header;
    if h.kind != ObjectKind::Chunk {
        return Err(OpenError::Damaged(format!(
            "is a {} where a chunk was expected",
            h.kind.name()
        )));
    }
    if h.key_id != keys.key_id() {
        return Err(OpenError::OtherKey(h.key_id));
    }
    let nonce: [u8; 12] = bytes[12..24].try_into().expect("12");
    let body_end = bytes.len() - TRAILER_LEN - TAG_LEN;
    let tag: [u8; TAG_LEN] = bytes[body_end..body_end + TAG_LEN].try_into().expect("16");
    let mut aad = [0u8; 32 + OBJECT_HEADER_LEN];
    aad[..32].copy_from_slice(&id.0);
    aad[32..].copy_from_slice(&bytes[..OBJECT_HEADER_LEN]);
    // A failure leaves `bytes` unspecified (the cipher wipes what it
    // decrypted), so telling damage from alteration is the caller's, on the
    // stored bytes read again: see [`rejection`].
    keys.cipher()
        .open_in_place(&nonce, &aad, &mut bytes[h.header_len..body_end], &tag)
        .map_err(|_| OpenError::Authentication)?;
    let body = &bytes[h.header_len..body_end];
    let want = out.len();
    let wrong_size = |n: usize| OpenError::Damaged(format!("holds {n} bytes where its segment expects {want}"));
    match body.first() {
        Some(&ENVELOPE_RAW) => {
            if body.len() - 1 != out.len() {
                return Err(wrong_size(body.len() - 1));
            }
            out.copy_from_slice(&body[1..]);
        }
        Some(&ENVELOPE_ZSTD) => {
            let size = zstd::zstd_safe::get_frame_content_size(&body[1..])
                .ok()
                .flatten()
                .ok_or_else(|| OpenError::Damaged("bad compressed payload".into()))?;
            if size != out.len() as u64 {
                return Err(wrong_size(size.min(usize::MAX as u64) as usize));
            }
            let n = decompress_into(&body[1..], out)?;
            if n != out.len() {
                return Err(wrong_size(n));
            }
        }
        _ => return Err(OpenError::Damaged("bad envelope".into())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::derive(&[42u8; 32])
    }

    #[test]
    fn round_trip_compressible_and_random() {
        let k = keys();
        for plain in [
            vec![b'a'; 70_000],
            (0..50_000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ] {
            let id = k.chunk_id(&plain);
            let sealed = seal_object(&k, ObjectKind::Chunk, &id, &[], &plain);
            let (h, out) = open_object(&k, &id, &sealed).unwrap();
            assert_eq!(h.kind, ObjectKind::Chunk);
            assert_eq!(out, plain);
        }
    }

    #[test]
    fn wrong_key_tamper_and_wrong_id_are_refused() {
        let k = keys();
        let plain = b"hello world".repeat(100);
        let id = k.chunk_id(&plain);
        let sealed = seal_object(&k, ObjectKind::Chunk, &id, &[], &plain);
        assert!(matches!(
            open_object(&Keys::derive(&[1u8; 32]), &id, &sealed),
            Err(OpenError::OtherKey(_))
        ));
        let other = k.chunk_id(b"x");
        assert!(matches!(
            open_object(&k, &other, &sealed),
            Err(OpenError::Authentication)
        ));
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert!(matches!(open_object(&k, &id, &bad), Err(OpenError::Damaged(_))));
        // Re-sealing the trailer after tampering still fails authentication.
        let n = bad.len();
        let t = blake3::hash(&bad[..n - 32]);
        bad[n - 32..].copy_from_slice(t.as_bytes());
        assert!(matches!(open_object(&k, &id, &bad), Err(OpenError::Authentication)));
    }

    #[test]
    fn chunks_open_into_place_and_every_fault_is_named() {
        let k = keys();
        for plain in [
            vec![b'a'; 70_000],
            (0..5_000u32).map(|i| ((i * 7919) >> 3) as u8).collect(),
        ] {
            let id = k.chunk_id(&plain);
            let sealed = seal_object(&k, ObjectKind::Chunk, &id, &[], &plain);
            let mut out = vec![0u8; plain.len()];
            open_chunk_into(&k, &id, &mut sealed.clone(), &mut out).unwrap();
            assert_eq!(out, plain);
            let mut short = vec![0u8; plain.len() - 1];
            match open_chunk_into(&k, &id, &mut sealed.clone(), &mut short) {
                Err(OpenError::Damaged(r)) => assert!(r.contains("expects"), "{r}"),
                other => panic!("{other:?}"),
            }
            // A flipped bit is refused, never garbage; the stored bytes say
            // it is damage (the trailer does not match).
            let mut bad = sealed.clone();
            bad[40] ^= 1;
            assert!(matches!(
                open_chunk_into(&k, &id, &mut bad.clone(), &mut out),
                Err(OpenError::Authentication)
            ));
            assert!(matches!(rejection(&bad), OpenError::Damaged(_)));
            // Altered with a matching trailer: authentication fails, and the
            // stored bytes say it is not damage.
            let n = bad.len();
            let t = blake3::hash(&bad[..n - 32]);
            bad[n - 32..].copy_from_slice(t.as_bytes());
            assert!(matches!(
                open_chunk_into(&k, &id, &mut bad.clone(), &mut out),
                Err(OpenError::Authentication)
            ));
            assert!(matches!(rejection(&bad), OpenError::Authentication));
            // Stored under another id, or sealed under another key.
            assert!(matches!(
                open_chunk_into(&k, &k.chunk_id(b"x"), &mut sealed.clone(), &mut out),
                Err(OpenError::Authentication)
            ));
            assert!(matches!(
                open_chunk_into(&Keys::derive(&[1u8; 32]), &id, &mut sealed.clone(), &mut out),
                Err(OpenError::OtherKey(_))
            ));
        }
        let refs = vec![k.chunk_id(b"a")];
        let id = k.node_id(&refs, b"n");
        let mut node = seal_object(&k, ObjectKind::IndexNode, &id, &refs, b"n");
        assert!(matches!(
            open_chunk_into(&k, &id, &mut node, &mut [0u8; 1]),
            Err(OpenError::Damaged(_))
        ));
    }

    #[test]
    fn refs_are_bound() {
        let k = keys();
        let refs = vec![k.chunk_id(b"a"), k.chunk_id(b"b")];
        let plain = b"node".to_vec();
        let id = k.node_id(&refs, &plain);
        let sealed = seal_object(&k, ObjectKind::IndexNode, &id, &refs, &plain);
        let parsed = SealedObject::parse(&sealed).unwrap();
        assert_eq!(parsed.header.refs, refs);
        let (h, out) = open_object(&k, &id, &sealed).unwrap();
        assert_eq!((h.refs, out), (refs, plain));
    }

    proptest! {
        // Fuzzing the decoder of untrusted bytes: never panics, never accepts garbage.
        #[test]
        fn parse_and_open_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let k = keys();
            let _ = SealedObject::parse(&data);
            let r = open_object(&k, &ObjectId([0; 32]), &data);
            prop_assert!(r.is_err());
        }

        #[test]
        fn mutations_are_detected(plain in proptest::collection::vec(any::<u8>(), 1..2000), pos in any::<usize>(), bit in 0u8..8) {
            let k = keys();
            let id = k.chunk_id(&plain);
            let mut sealed = seal_object(&k, ObjectKind::Chunk, &id, &[], &plain);
            let i = pos % sealed.len();
            sealed[i] ^= 1 << bit;
            prop_assert!(open_object(&k, &id, &sealed).is_err());
            prop_assert!(SealedObject::parse(&sealed).is_err());
        }
    }
}
