//! The planner's audit log: append-only, hash-chained, with a signed head.
//!
//! `STATE/planner/audit.jsonl` holds one JSON entry per line. Each entry carries
//! `prev`, the BLAKE3 (hex) of the previous line's bytes (the first: 64 zeros),
//! so editing, removing or reordering an entry breaks the link after it. After
//! every append the head — `(seq, hash of the last line)` — is signed with the
//! planner's ed25519 key (`planner.key`, created on first use, mode 0600) into
//! `audit.head.json`, and copied into each run's record and report: a truncated
//! chain no longer ends at the signed head, and a recomputed chain cannot be
//! signed without the key. `lifeline audit verify` checks all of it.
//!
//! Only the process that owns the planner's catalog writes the log, so appends
//! never interleave. A line torn by a crash (no final newline) was never covered
//! by a signed head; it is cut off, and the cut recorded, when the log is opened.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::io_error::doing;

/// Result with [`AuditError`].
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why the audit log or a key of it cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Io(#[from] crate::io_error::IoError),
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{path} is not {what}")]
    NotAKey { path: PathBuf, what: &'static str },
    #[error("{path} is not a valid ed25519 public key: {source}")]
    InvalidPublicKey {
        path: PathBuf,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
    #[error("random key: {0}")]
    Random(getrandom::Error),
    #[error("{path}: entry {entry} is not valid (run `lifeline audit verify`): {source}")]
    InvalidEntry {
        path: PathBuf,
        entry: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: the chain breaks at entry {entry} (run `lifeline audit verify`); the planner will not append to a broken log"
    )]
    ChainBroken { path: PathBuf, entry: u64 },
    #[error("{0}")]
    Replicator(#[from] lifeline_replicator::Error),
}

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The event of the entry that records a drill report's manifest digest.
pub const REPORT_WRITTEN: &str = "report_written";
/// Domain separation of head signatures. Do not modify.
const HEAD_CONTEXT: &[u8] = b"lifeline audit head v1\0";

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub seq: u64,
    pub prev: String,
    pub at: String,
    /// The OS user.
    pub user: String,
    /// `--operator`, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<String>,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<String>,
    /// What happened, in words or as the result.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<serde_json::Value>,
}

/// The signed end of the chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    /// ed25519 over `HEAD_CONTEXT ‖ seq u64 LE ‖ hash`, hex.
    pub signature: String,
    /// The planner's public key, hex (for reading; verify against a trusted copy).
    pub public_key: String,
}

fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = HEAD_CONTEXT.to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

/// The planner's signing key: `DIR/planner.key` (secret, 0600) and `DIR/planner.pub`.
pub fn signing_key(dir: &Path) -> Result<SigningKey> {
    let path = dir.join("planner.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| AuditError::NotAKey {
                    path: path.clone(),
                    what: "a planner key (64 hex digits)",
                })?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(AuditError::Random)?;
            let key = SigningKey::from_bytes(&bytes);
            lifeline_replicator::write_atomic_mode(&path, format!("{}\n", hex::encode(bytes)).as_bytes(), 0o600)?;
            lifeline_replicator::write_atomic_mode(
                &dir.join("planner.pub"),
                format!("{}\n", hex::encode(key.verifying_key().to_bytes())).as_bytes(),
                0o644,
            )?;
            Ok(key)
        }
        Err(e) => Err(doing(format!("read {}", path.display()))(e).into()),
    }
}

/// Reads a public key file (64 hex digits).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).map_err(doing(format!("read public key {}", path.display())))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AuditError::NotAKey {
            path: path.to_path_buf(),
            what: "an ed25519 public key (64 hex digits)",
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|source| AuditError::InvalidPublicKey {
        path: path.to_path_buf(),
        source,
    })
}

/// The log, open for appending.
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    file: File,
    key: SigningKey,
    seq: u64,
    last_hash: String,
    user: String,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, checking its chain as it reads it.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        std::fs::create_dir_all(dir).map_err(doing(format!("create {}", dir.display())))?;
        let key = signing_key(dir)?;
        let path = dir.join("audit.jsonl");
        let head_path = dir.join("audit.head.json");
        let mut seq = 0;
        let mut last_hash = ZERO.to_string();
        let mut torn = None;
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(doing(format!("read {}", path.display())))?;
            let complete = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
            if complete < bytes.len() {
                torn = Some(bytes.len() - complete);
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(complete as u64)?;
                f.sync_all()?;
            }
            for line in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let e: AuditEntry = serde_json::from_slice(line).map_err(|source| AuditError::InvalidEntry {
                    path: path.clone(),
                    entry: seq + 1,
                    source,
                })?;
                if e.prev != last_hash || e.seq != seq + 1 {
                    return Err(AuditError::ChainBroken {
                        path: path.clone(),
                        entry: seq + 1,
                    });
                }
                seq = e.seq;
                last_hash = blake3::hash(line).to_hex().to_string();
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(doing(format!("open {}", path.display())))?;
        let mut log = AuditLog {
            path,
            head_path,
            file,
            key,
            seq,
            last_hash,
            user: os_user(),
        };
        if let Some(n) = torn {
            log.append(
                None,
                None,
                None,
                "log_recovered",
                Some(serde_json::json!({"cut_bytes": n, "why": "a line torn by a crash was never signed"})),
            )?;
        }
        Ok(log)
    }

    /// Appends one entry, makes it durable and signs the new head.
    pub fn append(
        &mut self,
        operator: Option<&str>,
        run: Option<&str>,
        step: Option<&str>,
        event: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<SignedHead> {
        let e = AuditEntry {
            seq: self.seq + 1,
            prev: self.last_hash.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            user: self.user.clone(),
            operator: operator.map(String::from),
            run: run.map(String::from),
            event: event.into(),
            step: step.map(String::from),
            detail,
        };
        let line = serde_json::to_vec(&e).expect("serialisable");
        let mut buf = line.clone();
        buf.push(b'\n');
        // One write of a whole line to an O_APPEND file, then fsync.
        self.file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(doing(format!("append to {}", self.path.display())))?;
        self.seq = e.seq;
        self.last_hash = blake3::hash(&line).to_hex().to_string();
        let head = self.sign_head();
        lifeline_replicator::write_atomic_mode(
            &self.head_path,
            &serde_json::to_vec_pretty(&head).expect("serialisable"),
            0o644,
        )?;
        Ok(head)
    }

    /// The current head, signed.
    pub fn sign_head(&self) -> SignedHead {
        let sig = self.key.sign(&head_message(self.seq, &self.last_hash));
        SignedHead {
            seq: self.seq,
            hash: self.last_hash.clone(),
            signature: hex::encode(sig.to_bytes()),
            public_key: hex::encode(self.key.verifying_key().to_bytes()),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

/// The OS user running this process.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// Where the key a log was checked against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// A key the auditor holds (`--pubkey`): a rewritten and re-signed log fails.
    Trusted,
    /// `planner.pub` beside the log: whoever holds the planner host can replace
    /// it with the log, so this proves integrity against accidents only.
    BesideTheLog,
}

/// A drill report the chain records: its `report_written` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportOnChain {
    /// The entry's seq.
    pub seq: u64,
    pub drill_id: String,
    /// BLAKE3 (hex) of the report's `manifest.json` bytes.
    pub manifest_blake3: String,
}

/// What a `report_written` entry's `detail.report` holds (see FORMAT.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportDigest {
    pub drill_id: String,
    /// BLAKE3 (hex) of the report's `manifest.json` bytes.
    pub manifest_blake3: String,
    /// Where the drill wrote the report.
    pub dir: String,
    pub verdict: crate::verdict::Verdict,
}

/// The run records of the planner's catalog, as `audit verify` compares them
/// with the log.
#[derive(Debug, Clone)]
pub enum CatalogRuns {
    /// No catalog where the log's state directory keeps it.
    Missing(PathBuf),
    /// Each run and the copy of the signed head its record holds.
    Runs(Vec<(String, Option<SignedHead>)>),
}

/// What `audit verify` found.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub head: Option<SignedHead>,
    /// The public key (hex) the chain was checked against.
    pub key: String,
    pub key_source: KeySource,
    /// Run heads found on the chain (run records' copies, a report's).
    pub run_heads: usize,
    /// Reports whose manifest digest the chain records.
    pub reports: Vec<ReportOnChain>,
    pub problems: Vec<String>,
    /// BLAKE3 of each line, index = seq (0: the zero hash).
    #[serde(skip)]
    hashes: Vec<String>,
    /// Runs named by entries.
    #[serde(skip)]
    runs_named: std::collections::BTreeSet<String>,
    #[serde(skip)]
    verifying_key: Option<VerifyingKey>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Problems with `h` (a copy of a signed head, named `what`): its signature
    /// by the key, and that the entry it signed is on the chain.
    pub fn head_problems(&self, what: &str, h: &SignedHead) -> Vec<String> {
        let mut problems = Vec::new();
        let key = self.verifying_key.as_ref().expect("set by verify");
        let sig_ok = hex::decode(&h.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .is_some_and(|s| key.verify(&head_message(h.seq, &h.hash), &s).is_ok());
        if !sig_ok {
            let whose = match self.key_source {
                KeySource::Trusted => "the trusted key (--pubkey)",
                KeySource::BesideTheLog => "the planner's key",
            };
            if h.public_key != self.key {
                problems.push(format!(
                    "{what}: entry {} is signed by key {}…, not {whose} {}… (the log was re-signed with another key)",
                    h.seq,
                    h.public_key.get(..16).unwrap_or(&h.public_key),
                    &self.key[..16]
                ));
            } else {
                problems.push(format!(
                    "{what}: the signature over entry {} does not verify with {whose} (forged or recomputed)",
                    h.seq
                ));
            }
        }
        let n = self.entries;
        match self.hashes.get(h.seq as usize) {
            Some(x) if *x == h.hash => {}
            Some(_) => problems.push(format!(
                "{what}: entry {} is not the entry that was signed (the log was rewritten)",
                h.seq
            )),
            None => problems.push(format!(
                "{what}: signed at entry {} but the log has {n} entries (entries were removed from the end)",
                h.seq
            )),
        }
        problems
    }

    /// Compares the log with the catalog's run records: each run the log names
    /// has a record holding a copy of the signed head, and each copy lies on
    /// the chain. A missing catalog, record or copy is a problem: those copies
    /// are what catch a log rewritten from some entry on.
    pub fn check_catalog(&mut self, catalog: &CatalogRuns) {
        match catalog {
            CatalogRuns::Missing(path) => {
                if self.entries > 0 {
                    self.problems.push(format!(
                        "the planner catalog {} is missing: the run records and their copies of the signed head are \
                         gone, so the log cannot be checked against them (restore the catalog from a backup)",
                        path.display()
                    ));
                }
            }
            CatalogRuns::Runs(runs) => {
                let recorded: std::collections::BTreeSet<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
                for run in self.runs_named.iter().filter(|r| !recorded.contains(r.as_str())) {
                    self.problems.push(format!(
                        "run {run} is in the log but has no record in the planner catalog (its copy of the signed head is missing)"
                    ));
                }
                for (run, head) in runs {
                    match head {
                        Some(h) => {
                            let p = self.head_problems(&format!("run {run}"), h);
                            if p.is_empty() {
                                self.run_heads += 1;
                            }
                            self.problems.extend(p);
                        }
                        None => self
                            .problems
                            .push(format!("run {run}: its record holds no copy of the signed head")),
                    }
                }
            }
        }
    }

    /// The chain's entry for a report of `drill_id` whose manifest hashes to
    /// `manifest_blake3`, if it records one.
    pub fn report(&self, drill_id: &str, manifest_blake3: &str) -> Option<&ReportOnChain> {
        self.reports
            .iter()
            .find(|r| r.drill_id == drill_id && r.manifest_blake3 == manifest_blake3)
    }
}

/// Checks the log in `dir` against `key` (the planner's own public key beside
/// the log when `None`), and that every head in `expected_heads` (from run
/// records) lies on the chain. See [`AuditReport::check_catalog`] for the
/// catalog's side.
pub fn verify(dir: &Path, key: Option<&VerifyingKey>, expected_heads: &[(String, SignedHead)]) -> Result<AuditReport> {
    let path = dir.join("audit.jsonl");
    let (key, key_source) = match key {
        Some(k) => (*k, KeySource::Trusted),
        None => (read_public_key(&dir.join("planner.pub"))?, KeySource::BesideTheLog),
    };
    let mut problems = Vec::new();
    let f = File::open(&path).map_err(doing(format!("open {}", path.display())))?;
    let mut hashes = vec![ZERO.to_string()];
    let mut runs_named = std::collections::BTreeSet::new();
    let mut reports = Vec::new();
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        if line.last() != Some(&b'\n') {
            problems.push(format!("entry {n} is incomplete (torn write, or the file was cut)"));
            break;
        }
        let body = &line[..line.len() - 1];
        match serde_json::from_slice::<AuditEntry>(body) {
            Ok(e) => {
                if e.seq != n {
                    problems.push(format!(
                        "entry {n} says it is entry {} (an entry was removed, inserted or moved)",
                        e.seq
                    ));
                }
                if e.prev != *hashes.last().expect("non-empty") {
                    problems.push(format!(
                        "entry {n} does not link to entry {} (entry {} was edited, removed or reordered)",
                        n - 1,
                        n - 1
                    ));
                }
                if e.event == REPORT_WRITTEN
                    && let Some(r) = e
                        .detail
                        .as_ref()
                        .and_then(|d| d.get("report"))
                        .and_then(|r| serde_json::from_value::<ReportDigest>(r.clone()).ok())
                {
                    reports.push(ReportOnChain {
                        seq: n,
                        drill_id: r.drill_id,
                        manifest_blake3: r.manifest_blake3,
                    });
                }
                if let Some(run) = e.run {
                    runs_named.insert(run);
                }
            }
            Err(e) => problems.push(format!("entry {n} is not a valid entry: {e}")),
        }
        hashes.push(blake3::hash(body).to_hex().to_string());
    }
    let head_path = dir.join("audit.head.json");
    let head: Option<SignedHead> = match std::fs::read(&head_path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push(format!("{} is not a signed head: {e}", head_path.display()));
                None
            }
        },
        Err(_) if n == 0 => None,
        Err(e) => {
            problems.push(format!("{}: {e} (the signed head is missing)", head_path.display()));
            None
        }
    };
    let mut report = AuditReport {
        entries: n,
        head: head.clone(),
        key: hex::encode(key.to_bytes()),
        key_source,
        run_heads: 0,
        reports,
        problems,
        hashes,
        runs_named,
        verifying_key: Some(key),
    };
    if head.is_none() && key_source == KeySource::Trusted && report.problems.is_empty() {
        report.problems.push(format!(
            "{} holds no entry signed by the trusted key (an empty or wiped log)",
            path.display()
        ));
    }
    if let Some(h) = &head {
        let p = report.head_problems("signed head", h);
        report.problems.extend(p);
        if h.seq < n {
            report.problems.push(format!(
                "entries {}..{n} come after the signed head (appended without the planner's key)",
                h.seq + 1
            ));
        }
    }
    for (run, h) in expected_heads {
        let p = report.head_problems(&format!("run {run}"), h);
        if p.is_empty() {
            report.run_heads += 1;
        }
        report.problems.extend(p);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, Vec<SignedHead>) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        let heads = (0..n)
            .map(|i| {
                log.append(
                    Some("ana"),
                    Some("r1"),
                    None,
                    "step_succeeded",
                    Some(serde_json::json!({"i": i})),
                )
                .unwrap()
            })
            .collect();
        (dir, heads)
    }

    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_lines(dir: &Path, l: &[String]) {
        std::fs::write(
            dir.join("audit.jsonl"),
            l.iter().map(|x| format!("{x}\n")).collect::<String>(),
        )
        .unwrap();
    }

    #[test]
    fn an_intact_log_verifies_and_reopens() {
        let (dir, heads) = log_with(5);
        let r = verify(dir.path(), None, &[("r1".into(), heads[2].clone())]).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.entries, 5);
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.append(None, None, None, "more", None).unwrap();
        assert!(verify(dir.path(), None, &[]).unwrap().ok());
    }

    #[test]
    fn edits_removals_reorders_and_truncation_are_caught() {
        let (dir, heads) = log_with(5);
        let orig = lines(dir.path());

        let mut edited = orig.clone();
        edited[1] = edited[1].replace("\"ana\"", "\"eve\"");
        write_lines(dir.path(), &edited);
        let r = verify(dir.path(), None, &[]).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("entry 3 does not link")),
            "{:?}",
            r.problems
        );

        let mut removed = orig.clone();
        removed.remove(2);
        write_lines(dir.path(), &removed);
        assert!(!verify(dir.path(), None, &[]).unwrap().ok());

        let mut reordered = orig.clone();
        reordered.swap(1, 2);
        write_lines(dir.path(), &reordered);
        assert!(!verify(dir.path(), None, &[]).unwrap().ok());

        // Cut the tail and the head file with it: the runs' copies of the head catch it.
        write_lines(dir.path(), &orig[..3]);
        std::fs::remove_file(dir.path().join("audit.head.json")).unwrap();
        let r = verify(dir.path(), None, &[("r1".into(), heads[4].clone())]).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("removed from the end")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_recomputed_chain_fails_the_signature() {
        let (dir, _) = log_with(3);
        // An attacker rewrites entry 2 and recomputes every link after it, and
        // signs with a key of their own.
        let mut l = lines(dir.path());
        let mut prev = ZERO.to_string();
        for (i, line) in l.iter_mut().enumerate() {
            let mut e: AuditEntry = serde_json::from_str(line).unwrap();
            if i == 1 {
                e.user = "eve".into();
            }
            e.prev = prev.clone();
            *line = serde_json::to_string(&e).unwrap();
            prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        }
        write_lines(dir.path(), &l);
        let fake = SigningKey::from_bytes(&[7u8; 32]);
        let head = SignedHead {
            seq: 3,
            hash: prev.clone(),
            signature: hex::encode(fake.sign(&head_message(3, &prev)).to_bytes()),
            public_key: hex::encode(fake.verifying_key().to_bytes()),
        };
        std::fs::write(dir.path().join("audit.head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
        let r = verify(dir.path(), None, &[]).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("signed by key") && p.contains("re-signed")),
            "{:?}",
            r.problems
        );
        // Claiming the planner's key in the head does not help.
        let own = read_public_key(&dir.path().join("planner.pub")).unwrap();
        let head = SignedHead {
            public_key: hex::encode(own.to_bytes()),
            ..head
        };
        std::fs::write(dir.path().join("audit.head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
        let r = verify(dir.path(), None, &[]).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("does not verify")),
            "{:?}",
            r.problems
        );
    }

    /// Rewrites entry 2 of the log in `dir`, recomputes every link after it and
    /// signs the new head with a key of the attacker's, replacing planner.pub.
    fn rewrite_and_resign(dir: &Path) {
        let mut l = lines(dir);
        let mut prev = ZERO.to_string();
        for (i, line) in l.iter_mut().enumerate() {
            let mut e: AuditEntry = serde_json::from_str(line).unwrap();
            if i == 1 {
                e.user = "eve".into();
            }
            e.prev = prev.clone();
            *line = serde_json::to_string(&e).unwrap();
            prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        }
        write_lines(dir, &l);
        let fake = SigningKey::from_bytes(&[7u8; 32]);
        let seq = l.len() as u64;
        let head = SignedHead {
            seq,
            hash: prev.clone(),
            signature: hex::encode(fake.sign(&head_message(seq, &prev)).to_bytes()),
            public_key: hex::encode(fake.verifying_key().to_bytes()),
        };
        std::fs::write(dir.join("audit.head.json"), serde_json::to_vec(&head).unwrap()).unwrap();
        std::fs::write(
            dir.join("planner.pub"),
            format!("{}\n", hex::encode(fake.verifying_key().to_bytes())),
        )
        .unwrap();
    }

    #[test]
    fn a_rewritten_and_resigned_log_fails_against_the_trusted_key_only() {
        let (dir, _) = log_with(3);
        let trusted = read_public_key(&dir.path().join("planner.pub")).unwrap();
        rewrite_and_resign(dir.path());
        // Against the key beside the log (replaced with it), nothing shows.
        let r = verify(dir.path(), None, &[]).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.key_source, KeySource::BesideTheLog);
        let r = verify(dir.path(), Some(&trusted), &[]).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("signed by key") && p.contains("not the trusted key")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_missing_catalog_and_missing_run_heads_are_reported() {
        let (dir, heads) = log_with(3);
        let mut r = verify(dir.path(), None, &[]).unwrap();
        r.check_catalog(&CatalogRuns::Missing(dir.path().join("catalog")));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("catalog") && p.contains("is missing"))
        );

        let mut r = verify(dir.path(), None, &[]).unwrap();
        r.check_catalog(&CatalogRuns::Runs(vec![]));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("run r1 is in the log but has no record")),
            "{:?}",
            r.problems
        );

        let mut r = verify(dir.path(), None, &[]).unwrap();
        r.check_catalog(&CatalogRuns::Runs(vec![("r1".into(), None)]));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("holds no copy of the signed head"))
        );

        let mut r = verify(dir.path(), None, &[]).unwrap();
        r.check_catalog(&CatalogRuns::Runs(vec![("r1".into(), Some(heads[2].clone()))]));
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.run_heads, 1);

        // An empty log with no catalog yet is a fresh planner, not a problem;
        // but against the auditor's key, nothing signed is not "ok".
        let fresh = tempfile::tempdir().unwrap();
        drop(AuditLog::open(fresh.path()).unwrap());
        let mut r = verify(fresh.path(), None, &[]).unwrap();
        r.check_catalog(&CatalogRuns::Missing(fresh.path().join("catalog")));
        assert!(r.ok(), "{:?}", r.problems);
        let trusted = read_public_key(&fresh.path().join("planner.pub")).unwrap();
        let r = verify(fresh.path(), Some(&trusted), &[]).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("no entry signed by the trusted key"))
        );
    }

    #[test]
    fn report_digests_on_the_chain_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        let d = ReportDigest {
            drill_id: "d1".into(),
            manifest_blake3: "ab".repeat(32),
            dir: "/r/d1".into(),
            verdict: crate::verdict::Verdict::Passed,
        };
        log.append(
            None,
            Some("d1"),
            None,
            REPORT_WRITTEN,
            Some(serde_json::json!({"message": "m", "report": d})),
        )
        .unwrap();
        let r = verify(dir.path(), None, &[]).unwrap();
        assert_eq!(r.report("d1", &"ab".repeat(32)).map(|e| e.seq), Some(1));
        assert!(r.report("d1", &"cd".repeat(32)).is_none());
        assert!(r.report("d2", &"ab".repeat(32)).is_none());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_recorded() {
        let (dir, _) = log_with(2);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("audit.jsonl"))
            .unwrap();
        f.write_all(b"{\"seq\":3,\"prev\":").unwrap();
        drop(f);
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.seq, 3);
        let r = verify(dir.path(), None, &[]).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert!(lines(dir.path())[2].contains("log_recovered"));
    }
}
