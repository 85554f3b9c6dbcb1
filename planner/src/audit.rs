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

use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
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
                .with_context(|| format!("{} is not a planner key (64 hex digits)", path.display()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
            let key = SigningKey::from_bytes(&bytes);
            write_atomic(&path, format!("{}\n", hex::encode(bytes)).as_bytes(), 0o600)?;
            write_atomic(
                &dir.join("planner.pub"),
                format!("{}\n", hex::encode(key.verifying_key().to_bytes())).as_bytes(),
                0o644,
            )?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Reads a public key file (64 hex digits).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read public key {}", path.display()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not an ed25519 public key (64 hex digits)", path.display()))?;
    VerifyingKey::from_bytes(&bytes).with_context(|| format!("{} is not a valid ed25519 public key", path.display()))
}

/// Temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync {}", dir.display()))?;
    Ok(())
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
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let key = signing_key(dir)?;
        let path = dir.join("audit.jsonl");
        let head_path = dir.join("audit.head.json");
        let mut seq = 0;
        let mut last_hash = ZERO.to_string();
        let mut torn = None;
        if path.exists() {
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            let complete = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
            if complete < bytes.len() {
                torn = Some(bytes.len() - complete);
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(complete as u64)?;
                f.sync_all()?;
            }
            for line in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let e: AuditEntry = serde_json::from_slice(line).with_context(|| {
                    format!(
                        "{}: entry {} is not valid (run `lifeline audit verify`)",
                        path.display(),
                        seq + 1
                    )
                })?;
                if e.prev != last_hash || e.seq != seq + 1 {
                    bail!(
                        "{}: the chain breaks at entry {} (run `lifeline audit verify`); the planner will not append to a broken log",
                        path.display(),
                        seq + 1
                    );
                }
                seq = e.seq;
                last_hash = blake3::hash(line).to_hex().to_string();
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
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
            .with_context(|| format!("append to {}", self.path.display()))?;
        self.seq = e.seq;
        self.last_hash = blake3::hash(&line).to_hex().to_string();
        let head = self.sign_head();
        write_atomic(
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

/// What `audit verify` found.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub head: Option<SignedHead>,
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the log in `dir` against `key` (the planner's own public key when
/// `None`), and that every head in `expected_heads` (from run records) lies on
/// the chain.
pub fn verify(dir: &Path, key: Option<&VerifyingKey>, expected_heads: &[(String, SignedHead)]) -> Result<AuditReport> {
    let path = dir.join("audit.jsonl");
    let own;
    let key = match key {
        Some(k) => k,
        None => {
            own = read_public_key(&dir.join("planner.pub"))?;
            &own
        }
    };
    let mut problems = Vec::new();
    let f = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut hashes = vec![ZERO.to_string()];
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
    let check_head = |what: &str, h: &SignedHead| {
        let mut problems = Vec::new();
        let sig_ok = hex::decode(&h.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .is_some_and(|s| key.verify(&head_message(h.seq, &h.hash), &s).is_ok());
        if !sig_ok {
            problems.push(format!(
                "{what}: the signature over entry {} does not verify with the planner's key (forged or recomputed)",
                h.seq
            ));
        }
        match hashes.get(h.seq as usize) {
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
    };
    if let Some(h) = &head {
        problems.extend(check_head("signed head", h));
        if h.seq < n {
            problems.push(format!(
                "entries {}..{n} come after the signed head (appended without the planner's key)",
                h.seq + 1
            ));
        }
    }
    for (run, h) in expected_heads {
        problems.extend(check_head(&format!("run {run}"), h));
    }
    Ok(AuditReport {
        entries: n,
        head,
        problems,
    })
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
            r.problems.iter().any(|p| p.contains("does not verify")),
            "{:?}",
            r.problems
        );
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
