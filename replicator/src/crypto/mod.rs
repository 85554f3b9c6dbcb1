//! Keys and sealing. A tenant's 256-bit master key (kept in a key file on the
//! tenant's side, never in a repository) yields, by BLAKE3 key derivation, the id
//! keys that name objects, the AES-256-GCM data key that seals them and the seed
//! of the content-defined chunker. The repository only ever sees ciphertext and
//! the key's fingerprint.

pub(crate) mod cipher;
mod key_file;
mod keys;
pub(crate) mod seal;

pub use key_file::KeyFile;
pub use keys::Keys;
pub use seal::{ObjectKind, SealedHeader, SealedObject, open_object, seal_object};
