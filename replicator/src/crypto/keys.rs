//! The keys derived from a tenant's master key.

use super::cipher::DataCipher;
use crate::file_formats::{
    KDF_BLOCK_MAP_KEY, KDF_CDC_SEED, KDF_DATA_KEY, KDF_FINGERPRINT, KDF_ID_KEY, KDF_NODE_ID_KEY, MAP_HASH_LEN,
};
use crate::object_id::ObjectId;

/// Everything derived from one master key. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    id_key: [u8; 32],
    node_id_key: [u8; 32],
    block_key: [u8; 32],
    cipher: DataCipher,
    cdc_seed: u64,
    fingerprint: [u8; 16],
    key_id: u32,
}

impl Keys {
    /// Derives every key from the master key.
    pub fn derive(master: &[u8; 32]) -> Self {
        let data_key = blake3::derive_key(KDF_DATA_KEY, master);
        let fp = blake3::derive_key(KDF_FINGERPRINT, master);
        let seed = blake3::derive_key(KDF_CDC_SEED, master);
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(&fp[..16]);
        Keys {
            id_key: blake3::derive_key(KDF_ID_KEY, master),
            node_id_key: blake3::derive_key(KDF_NODE_ID_KEY, master),
            block_key: blake3::derive_key(KDF_BLOCK_MAP_KEY, master),
            cipher: DataCipher::new(&data_key),
            cdc_seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
            fingerprint,
            key_id: u32::from_le_bytes(fp[16..20].try_into().expect("4 bytes")),
        }
    }

    /// Id of a chunk: BLAKE3 of its plaintext keyed by the id key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ObjectId {
        ObjectId(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// Id of an index or segment node: keyed BLAKE3 over its references and plaintext,
    /// under a key distinct from the chunk id key so a node never collides with a chunk.
    pub fn node_id(&self, refs: &[ObjectId], plaintext: &[u8]) -> ObjectId {
        let mut h = blake3::Hasher::new_keyed(&self.node_id_key);
        h.update(&(refs.len() as u32).to_le_bytes());
        for r in refs {
            h.update(&r.0);
        }
        h.update(plaintext);
        ObjectId(*h.finalize().as_bytes())
    }

    /// Hash of one block in a block map: keyed BLAKE3 under its own key (so it
    /// says nothing about chunk ids), truncated to 128 bits.
    pub fn block_hash(&self, block: &[u8]) -> [u8; MAP_HASH_LEN] {
        let h = blake3::keyed_hash(&self.block_key, block);
        h.as_bytes()[..MAP_HASH_LEN].try_into().expect("16 bytes")
    }

    /// The AES-256-GCM cipher of the data key.
    pub(crate) fn cipher(&self) -> &DataCipher {
        &self.cipher
    }

    /// Seed of FastCDC's gear table: chunk boundaries depend on the key, so chunk
    /// sizes do not fingerprint known content.
    pub fn cdc_seed(&self) -> u64 {
        self.cdc_seed
    }

    /// 128-bit fingerprint recorded in the repository to refuse a wrong key at once.
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    /// Fingerprint as hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// Key id written in each sealed object's header (for key rotation).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_distinct_and_stable() {
        let a = Keys::derive(&[7u8; 32]);
        let b = Keys::derive(&[7u8; 32]);
        let c = Keys::derive(&[8u8; 32]);
        assert_eq!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), c.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), a.node_id(&[], b"x"));
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_ne!(a.cdc_seed(), c.cdc_seed());
    }
}
