//! Object ids: 32-byte keyed BLAKE3 hashes, shown as lowercase hex.

use std::fmt;

use crate::error::{Error, Result};

/// The id of a stored object. For a chunk it is the BLAKE3 hash of its plaintext
/// keyed by the tenant's id key, so equal content gets the same id (dedup) and the
/// id reveals nothing to whoever lacks the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| Error::Invalid {
            what: "object id",
            value: s.chars().take(80).collect(),
            reason: e.to_string(),
        })?;
        Ok(ObjectId(out))
    }

    /// Takes an id from untrusted bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b.try_into().map_err(|_| Error::Invalid {
            what: "object id",
            value: format!("{} bytes", b.len()),
            reason: "an object id has 32 bytes".into(),
        })?;
        Ok(ObjectId(arr))
    }

    /// First 12 hex characters, for messages and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}
