//! The key file: a tenant's 256-bit master key, optionally wrapped by a passphrase
//! stretched with argon2id. JSON, mode 0600, written atomically, never overwritten.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::Keys;
use crate::crypto::cipher::DataCipher;
use crate::error::{Error, IoContext, Result};
use crate::file_formats::{KEY_FILE_FORMAT, KEY_FILE_VERSION};
use crate::fsutil;

/// argon2id cost: 64 MiB, 3 passes, 1 lane (OWASP's first recommended setting).
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
const WRAP_AAD: &[u8] = b"lifeline-key v1 wrapped master key";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    format: String,
    version: u32,
    created: String,
    fingerprint: String,
    wrapping: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2id: Option<Argon2Json>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Argon2Json {
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
    nonce: String,
    wrapped_key: String,
}

/// A loaded master key.
pub struct KeyFile {
    master: [u8; 32],
    path: PathBuf,
}

impl KeyFile {
    /// Generates a new master key and writes it to `path` (mode 0600). Refuses to
    /// overwrite an existing file: losing a key loses every point sealed with it.
    pub fn create(path: &Path, passphrase: Option<&str>) -> Result<KeyFile> {
        if path.exists() {
            return Err(Error::KeyFile {
                path: path.into(),
                reason: "already exists; refusing to overwrite a key (every point sealed with it would become unreadable): choose another --out".into(),
            });
        }
        let mut master = [0u8; 32];
        fsutil::random_bytes(&mut master);
        let keys = Keys::derive(&master);
        let mut json = KeyFileJson {
            format: KEY_FILE_FORMAT.into(),
            version: KEY_FILE_VERSION,
            created: chrono::Utc::now().to_rfc3339(),
            fingerprint: keys.fingerprint_hex(),
            wrapping: "none".into(),
            key: None,
            argon2id: None,
        };
        match passphrase {
            None => json.key = Some(hex::encode(master)),
            Some(pass) => {
                if pass.is_empty() {
                    return Err(Error::KeyFile {
                        path: path.into(),
                        reason:
                            "LIFELINE_PASSPHRASE is set but empty: set a passphrase, or unset it for an unwrapped key"
                                .into(),
                    });
                }
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 12];
                fsutil::random_bytes(&mut salt);
                fsutil::random_bytes(&mut nonce);
                let kek = stretch(path, pass, &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
                let wrapped = DataCipher::new(&kek).encrypt(&nonce, WRAP_AAD, &master);
                json.wrapping = "argon2id".into();
                json.argon2id = Some(Argon2Json {
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                    salt: hex::encode(salt),
                    nonce: hex::encode(nonce),
                    wrapped_key: hex::encode(wrapped),
                });
            }
        }
        let mut text = serde_json::to_string_pretty(&json).expect("serialisable");
        text.push('\n');
        write_new_private(path, text.as_bytes())?;
        Ok(KeyFile {
            master,
            path: path.into(),
        })
    }

    /// Loads a key file; `passphrase` unwraps a passphrase-protected one.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<KeyFile> {
        let bad = |reason: String| Error::KeyFile {
            path: path.into(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad("does not exist: pass the key file written by `lifeline key new`".into())
            } else {
                bad(format!("cannot be read: {e}"))
            }
        })?;
        let json: KeyFileJson =
            serde_json::from_str(&text).map_err(|e| bad(format!("is not a Lifeline key file ({e})")))?;
        if json.format != KEY_FILE_FORMAT {
            return Err(bad(format!("is not a Lifeline key file (format `{}`)", json.format)));
        }
        if json.version > KEY_FILE_VERSION {
            return Err(bad(format!(
                "has version {}, this build reads up to {KEY_FILE_VERSION}: upgrade lifeline",
                json.version
            )));
        }
        let master: [u8; 32] = match (json.wrapping.as_str(), json.key, json.argon2id) {
            ("none", Some(k), None) => decode_fixed(&k).ok_or_else(|| bad("has a malformed key".into()))?,
            ("argon2id", None, Some(a)) => {
                let pass =
                    passphrase.ok_or_else(|| bad("is protected by a passphrase: set LIFELINE_PASSPHRASE".into()))?;
                let salt: [u8; 16] = decode_fixed(&a.salt).ok_or_else(|| bad("has a malformed salt".into()))?;
                let nonce: [u8; 12] = decode_fixed(&a.nonce).ok_or_else(|| bad("has a malformed nonce".into()))?;
                let wrapped = hex::decode(&a.wrapped_key).map_err(|_| bad("has a malformed wrapped key".into()))?;
                if a.m_kib > 4 * 1024 * 1024 || a.t > 64 || a.p > 64 {
                    return Err(bad("asks for an unreasonable argon2id cost".into()));
                }
                let kek = stretch(path, pass, &salt, a.m_kib, a.t, a.p)?;
                let plain = DataCipher::new(&kek)
                    .decrypt(&nonce, WRAP_AAD, &wrapped)
                    .map_err(|_| bad("wrong passphrase (LIFELINE_PASSPHRASE), or the file was altered".into()))?;
                plain
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("has a malformed wrapped key".into()))?
            }
            (w, _, _) => return Err(bad(format!("has an unknown or inconsistent wrapping `{w}`"))),
        };
        let keys = Keys::derive(&master);
        if keys.fingerprint_hex() != json.fingerprint {
            return Err(bad(
                "its key does not match its recorded fingerprint (the file was altered or damaged)".into(),
            ));
        }
        Ok(KeyFile {
            master,
            path: path.into(),
        })
    }

    /// The keys derived from this master key.
    pub fn keys(&self) -> Keys {
        Keys::derive(&self.master)
    }

    /// Where the key was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn decode_fixed<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn stretch(path: &Path, pass: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32]> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| Error::KeyFile {
        path: path.into(),
        reason: format!("bad argon2id parameters: {e}"),
    })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(pass.as_bytes(), salt, &mut out)
        .map_err(|e| Error::KeyFile {
            path: path.into(),
            reason: format!("argon2id failed: {e}"),
        })?;
    Ok(out)
}

/// Writes a new file with mode 0600: temp file, fsync, link into place (fails if
/// the name exists), fsync of the directory.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = fsutil::parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(bytes).ctx(|| format!("write {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyFile {
                    path: path.into(),
                    reason: "already exists; refusing to overwrite a key".into(),
                }
            } else {
                Error::io(format!("create {}", path.display()), e)
            }
        })?;
        fsutil::fsync_dir(&dir)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_wrapped_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = KeyFile::create(&p, None).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(KeyFile::load(&p, None).unwrap().master, k.master);
        assert!(KeyFile::create(&p, None).is_err(), "must not overwrite");

        let w = dir.path().join("w");
        let k = KeyFile::create(&w, Some("correct horse")).unwrap();
        assert_eq!(KeyFile::load(&w, Some("correct horse")).unwrap().master, k.master);
        let e = KeyFile::load(&w, Some("wrong")).err().unwrap().to_string();
        assert!(e.contains("wrong passphrase"), "{e}");
        let e = KeyFile::load(&w, None).err().unwrap().to_string();
        assert!(e.contains("LIFELINE_PASSPHRASE"), "{e}");
    }

    #[test]
    fn damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        KeyFile::create(&p, None).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = json["key"].as_str().unwrap();
        let flipped = if key.starts_with('0') {
            key.replacen('0', "1", 1)
        } else {
            format!("0{}", &key[1..])
        };
        fs::write(&p, text.replace(key, &flipped)).unwrap();
        let e = KeyFile::load(&p, None).err().unwrap().to_string();
        assert!(e.contains("fingerprint"), "{e}");
        fs::write(&p, "garbage").unwrap();
        let e = KeyFile::load(&p, None).err().unwrap().to_string();
        assert!(e.contains("not a Lifeline key file"), "{e}");
    }
}
