//! AES-256-GCM, the one AEAD of every sealed thing (objects, point bodies,
//! wrapped key files). Backed by `ring`, whose AES-GCM uses the CPU's AES and
//! carry-less multiply units several blocks at a time (VAES / AVX-512 where
//! present): several times the speed of a portable implementation, which
//! matters because every byte a backup stores and a restore writes goes
//! through it. The wire format is standard AES-GCM (96-bit nonce, 128-bit tag),
//! so objects sealed by any earlier build open unchanged.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::file_formats::TAG_LEN;

/// The ciphertext or its tag did not authenticate under this key, nonce and
/// associated data (wrong key, or altered bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic;

/// An AES-256-GCM key. Cheap to clone.
#[derive(Clone)]
pub struct DataCipher {
    key: std::sync::Arc<LessSafeKey>,
}

impl DataCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key");
        DataCipher {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// Encrypts `in_out` in place; returns the tag.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), in_out)
            .expect("AES-GCM encrypts any object below 64 GiB");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    /// Authenticates and decrypts `in_out` in place. On failure the content
    /// of `in_out` is unspecified (ring zeroes it): a caller that wants to
    /// look at the stored bytes again must read them again.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Unauthentic> {
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Unauthentic)
    }

    /// `plain` encrypted, followed by the tag.
    pub fn encrypt(&self, nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + TAG_LEN);
        out.extend_from_slice(plain);
        let tag = self.seal_in_place(nonce, aad, &mut out);
        out.extend_from_slice(&tag);
        out
    }

    /// The plaintext of `sealed` (ciphertext followed by the tag).
    pub fn decrypt(&self, nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unauthentic> {
        let body = sealed.len().checked_sub(TAG_LEN).ok_or(Unauthentic)?;
        let tag: [u8; TAG_LEN] = sealed[body..].try_into().expect("16 bytes");
        let mut out = sealed[..body].to_vec();
        self.open_in_place(nonce, aad, &mut out, &tag)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as the `aes-gcm` crate that sealed earlier repositories:
    /// NIST's AES-256-GCM test case 16 (gcmEncryptExtIV256), so objects written
    /// before the switch still open.
    #[test]
    fn matches_the_nist_vector() {
        let h = |s: &str| hex::decode(s).unwrap();
        let key: [u8; 32] = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = h("cafebabefacedbaddecaf888").try_into().unwrap();
        let plain = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let want = h(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
                      76fc6ece0f4e1768cddf8853bb2d551b",
        );
        let c = DataCipher::new(&key);
        assert_eq!(c.encrypt(&nonce, &aad, &plain), want);
        assert_eq!(c.decrypt(&nonce, &aad, &want).unwrap(), plain);
        let mut bad = want.clone();
        bad[3] ^= 1;
        assert_eq!(c.decrypt(&nonce, &aad, &bad), Err(Unauthentic));
        assert_eq!(c.decrypt(&nonce, b"other", &want), Err(Unauthentic));
        assert_eq!(c.decrypt(&nonce, &aad, &want[..10]), Err(Unauthentic));
    }
}

#[cfg(test)]
mod compat {
    use super::*;
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit};
    use proptest::prelude::*;

    proptest! {
        /// Byte for byte what the portable `aes-gcm` crate (which sealed the
        /// repositories of earlier builds) writes and reads.
        #[test]
        fn agrees_with_the_portable_implementation(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..80),
            plain in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let ours = DataCipher::new(&key).encrypt(&nonce, &aad, &plain);
            let theirs = Aes256Gcm::new(&key.into())
                .encrypt((&nonce).into(), Payload { msg: &plain, aad: &aad })
                .unwrap();
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(DataCipher::new(&key).decrypt(&nonce, &aad, &theirs).unwrap(), plain);
        }
    }
}
