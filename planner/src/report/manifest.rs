//! The signed manifest of a report directory (`manifest.json`): the BLAKE3 of
//! report.json, report.html and report.xml, signed with the planner's ed25519
//! key over `"lifeline report manifest v1\0" ‖ drill id ‖ "\0" ‖ for each file in
//! name order: name ‖ "\0" ‖ hash hex ‖ "\0"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Domain separation of manifest signatures. Do not modify.
const CONTEXT: &[u8] = b"lifeline report manifest v1\0";
pub const FILES: [&str; 3] = ["report.json", "report.html", "report.xml"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub version: u32,
    pub drill_id: String,
    /// File name → BLAKE3 hex.
    pub files: BTreeMap<String, String>,
    pub signed_at: String,
    /// The signer's public key, hex — for reading only: verify against a key you trust.
    pub public_key: String,
    pub signature: String,
}

fn message(drill_id: &str, files: &BTreeMap<String, String>) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(drill_id.as_bytes());
    m.push(0);
    for (name, hash) in files {
        m.extend_from_slice(name.as_bytes());
        m.push(0);
        m.extend_from_slice(hash.as_bytes());
        m.push(0);
    }
    m
}

fn hash_file(p: &Path) -> Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Hashes the report files in `dir`, signs, writes `manifest.json`; returns the
/// manifest's own BLAKE3 (what goes into the audit chain).
pub fn sign_and_write(dir: &Path, drill_id: &str, key: &SigningKey) -> Result<String> {
    let mut files = BTreeMap::new();
    for f in FILES {
        files.insert(f.to_string(), hash_file(&dir.join(f))?);
    }
    let sig = key.sign(&message(drill_id, &files));
    let m = Manifest {
        schema: "lifeline.report-manifest".into(),
        version: 1,
        drill_id: drill_id.into(),
        files,
        signed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(sig.to_bytes()),
    };
    let bytes = serde_json::to_vec_pretty(&m)?;
    crate::audit::write_atomic(&dir.join("manifest.json"), &bytes, 0o644)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// What `report verify` found.
#[derive(Debug, Serialize)]
pub struct ManifestCheck {
    pub dir: PathBuf,
    pub drill_id: Option<String>,
    pub problems: Vec<String>,
}

impl ManifestCheck {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a report directory (or its report.json) against `key`.
pub fn verify_dir(path: &Path, key: &VerifyingKey) -> Result<ManifestCheck> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut problems = Vec::new();
    let mpath = dir.join("manifest.json");
    let m: Manifest = match std::fs::read(&mpath) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("manifest.json is not a report manifest: {e}"));
                return Ok(ManifestCheck {
                    dir,
                    drill_id: None,
                    problems,
                });
            }
        },
        Err(e) => {
            problems.push(format!(
                "{}: {e} (not a report directory, or the manifest was removed)",
                mpath.display()
            ));
            return Ok(ManifestCheck {
                dir,
                drill_id: None,
                problems,
            });
        }
    };
    let sig_ok = hex::decode(&m.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .is_some_and(|s| key.verify(&message(&m.drill_id, &m.files), &s).is_ok());
    if !sig_ok {
        problems.push(
            "manifest.json: the signature does not verify with the trusted key (the manifest was edited, or signed by another key)"
                .into(),
        );
    }
    for f in FILES {
        match (m.files.get(f), hash_file(&dir.join(f))) {
            (None, _) => problems.push(format!("{f} is not covered by the manifest")),
            (Some(_), Err(_)) => problems.push(format!("{f} is missing")),
            (Some(want), Ok(got)) if *want != got => problems.push(format!(
                "{f} was modified after signing (BLAKE3 {} ≠ signed {})",
                &got[..16],
                &want[..16]
            )),
            _ => {}
        }
    }
    Ok(ManifestCheck {
        dir,
        drill_id: Some(m.drill_id),
        problems,
    })
}
