//! The signed manifest of a report directory (`manifest.json`): the BLAKE3 of
//! report.json, report.html and report.xml, signed with the planner's ed25519
//! key over `"lifeline report manifest v1\0" ‖ drill id ‖ "\0" ‖ for each file in
//! name order: name ‖ "\0" ‖ hash hex ‖ "\0"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::io_error::doing;

/// Result with [`ReportError`].
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// Why a report could not be written or checked.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error(
        "{log} holds no audit.jsonl: give a copy of the planner's STATE/planner directory (audit.jsonl and \
         audit.head.json), or its state directory"
    )]
    NoAuditLog { log: PathBuf },
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Replicator(#[from] lifeline_replicator::Error),
}

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
    let bytes = std::fs::read(p).map_err(doing(format!("read {}", p.display())))?;
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
    let bytes = serde_json::to_vec_pretty(&m).expect("serialisable");
    lifeline_replicator::write_atomic_mode(&dir.join("manifest.json"), &bytes, 0o644)?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// What `report verify` found.
#[derive(Debug, Serialize)]
pub struct ManifestCheck {
    pub dir: PathBuf,
    pub drill_id: Option<String>,
    /// With an audit log: the seq of the chain's entry recording this report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_entry: Option<u64>,
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
                    audit_entry: None,
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
                audit_entry: None,
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
        audit_entry: None,
        problems,
    })
}

/// Checks that the report `check` verified is on the audit chain in `log` (a
/// copy of `STATE/planner`, or a state directory), signed by `key`: the chain
/// verifies with `key`, one of its `report_written` entries records this
/// drill's manifest digest, and report.json's copy of the signed head lies on
/// it. A report signed with the planner's key but not on its chain (an old or
/// substituted report, one re-signed after an edit, one from another log)
/// fails.
pub fn verify_on_chain(check: &mut ManifestCheck, log: &Path, key: &VerifyingKey) -> Result<()> {
    let log = if log.join("audit.jsonl").exists() {
        log.to_path_buf()
    } else if crate::state_dir::planner_dir(log).join("audit.jsonl").exists() {
        crate::state_dir::planner_dir(log)
    } else {
        return Err(ReportError::NoAuditLog { log: log.to_path_buf() });
    };
    let chain = crate::audit::verify(&log, Some(key), &[])?;
    for p in &chain.problems {
        check.problems.push(format!("audit log {}: {p}", log.display()));
    }
    let Some(drill_id) = check.drill_id.clone() else {
        return Ok(());
    };
    let Ok(bytes) = std::fs::read(check.dir.join("manifest.json")) else {
        return Ok(());
    };
    let digest = blake3::hash(&bytes).to_hex().to_string();
    match chain.report(&drill_id, &digest) {
        Some(e) => check.audit_entry = Some(e.seq),
        None => {
            let others: Vec<String> = chain
                .reports
                .iter()
                .filter(|r| r.drill_id == drill_id)
                .map(|r| format!("{}… (entry {})", &r.manifest_blake3[..16], r.seq))
                .collect();
            check.problems.push(if others.is_empty() {
                format!(
                    "manifest.json (BLAKE3 {}…) is not on the audit chain in {}: no entry records a report of drill \
                     {drill_id} (an old or substituted report, or a log from another planner)",
                    &digest[..16],
                    log.display()
                )
            } else {
                format!(
                    "manifest.json (BLAKE3 {}…) is not on the audit chain in {}: the chain records drill {drill_id}'s \
                     report as {} (the report was replaced or re-signed)",
                    &digest[..16],
                    log.display(),
                    others.join(", ")
                )
            });
        }
    }
    let head = std::fs::read(check.dir.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|r| serde_json::from_value::<crate::audit::SignedHead>(r.get("audit_head")?.clone()).ok());
    match head {
        Some(h) => check
            .problems
            .extend(chain.head_problems("report.json's audit head", &h)),
        None => check
            .problems
            .push("report.json holds no audit head to find on the chain".into()),
    }
    Ok(())
}
