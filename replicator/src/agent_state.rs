//! The agent's local state: per volume, the BLAKE3 hash and segment node id of
//! every segment of the last committed point, so the next backup hashes an
//! unchanged segment but neither re-chunks nor re-seals it.
//!
//! Lives in the agent's state directory, never in the repository:
//! `STATE_DIR/agent/<repository id>/<tenant>/<group>.state`.
//!
//! ```text
//! "LLAS" | version u8 | header length u32 | header JSON
//! | per volume in header order: (segment hash [32], flag u8, node id [32], data bytes u32) * segments
//! flag: 0 all-zero segment (no node), 1 node, 2 node with a block map or a
//! block delta (version 2; version 1 files have no 2 and are still read)
//! | BLAKE3 of everything before [32]
//! ```
//! Written atomically after the point commits; a damaged or foreign file is
//! ignored (the next backup rescans in full, which is slower but correct).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::file_formats::{AGENT_STATE_MAGIC, AGENT_STATE_VERSION};
use crate::fsutil;
use crate::object_id::ObjectId;

/// What the agent remembers of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentState {
    pub hash: [u8; 32],
    pub node: Option<ObjectId>,
    /// Non-hole bytes of the segment.
    pub data_bytes: u32,
    /// The node has a block map or is a block delta over one: a change to the
    /// segment can be stored as a block delta.
    pub mapped: bool,
}

/// What the agent remembers of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeState {
    pub name: String,
    pub size: u64,
    pub segment_size: u64,
    pub segments: Vec<SegmentState>,
}

/// State of one group against one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentState {
    pub repository_id: String,
    pub key_fingerprint: String,
    pub base_seq: u64,
    pub volumes: Vec<VolumeState>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    repository_id: String,
    key_fingerprint: String,
    base_seq: u64,
    volumes: Vec<(String, u64, u64, u64)>,
}

impl AgentState {
    /// Where the state of `group` lives.
    pub fn path(state_dir: &Path, repository_id: &str, tenant: &str, group: &str) -> PathBuf {
        state_dir
            .join("agent")
            .join(repository_id)
            .join(tenant)
            .join(format!("{group}.state"))
    }

    /// Loads a state file; `None` when absent, damaged or of another format.
    pub fn load(path: &Path) -> Option<AgentState> {
        let bytes = fs::read(path).ok()?;
        let decoded = Self::decode(&bytes);
        if decoded.is_none() {
            tracing::warn!(path = %path.display(), "ignoring damaged agent state; this backup rescans every segment");
        }
        decoded
    }

    #[cfg(test)]
    fn load_bytes(bytes: &[u8]) -> Option<AgentState> {
        Self::decode(bytes)
    }

    fn decode(bytes: &[u8]) -> Option<AgentState> {
        // Version 1 (no flag 2) is read as is; an earlier build ignores version 2.
        if bytes.len() < 41 || bytes[..4] != AGENT_STATE_MAGIC || !(1..=AGENT_STATE_VERSION).contains(&bytes[4]) {
            return None;
        }
        let max_flag = if bytes[4] == 1 { 1 } else { 2 };
        let (content, trailer) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(content).as_bytes() != trailer {
            return None;
        }
        let hlen = u32::from_le_bytes(content[5..9].try_into().ok()?) as usize;
        let header: Header = serde_json::from_slice(content.get(9..9 + hlen)?).ok()?;
        let mut rest = &content[9 + hlen..];
        let mut volumes = Vec::new();
        for (name, size, segment_size, n) in header.volumes {
            let n = n as usize;
            let (mine, tail) = rest.split_at_checked(n.checked_mul(69)?)?;
            rest = tail;
            let segments = mine
                .chunks_exact(69)
                .map(|c| {
                    Some(SegmentState {
                        hash: c[..32].try_into().expect("32"),
                        node: match c[32] {
                            0 => None,
                            f if f <= max_flag => Some(ObjectId(c[33..65].try_into().expect("32"))),
                            _ => return None,
                        },
                        data_bytes: u32::from_le_bytes(c[65..69].try_into().expect("4")),
                        mapped: c[32] == 2,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            volumes.push(VolumeState {
                name,
                size,
                segment_size,
                segments,
            });
        }
        rest.is_empty().then_some(AgentState {
            repository_id: header.repository_id,
            key_fingerprint: header.key_fingerprint,
            base_seq: header.base_seq,
            volumes,
        })
    }

    /// Writes the state atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = Header {
            repository_id: self.repository_id.clone(),
            key_fingerprint: self.key_fingerprint.clone(),
            base_seq: self.base_seq,
            volumes: self
                .volumes
                .iter()
                .map(|v| (v.name.clone(), v.size, v.segment_size, v.segments.len() as u64))
                .collect(),
        };
        let h = serde_json::to_vec(&header).expect("serialisable");
        let mut out =
            Vec::with_capacity(41 + h.len() + self.volumes.iter().map(|v| v.segments.len() * 69).sum::<usize>());
        out.extend_from_slice(&AGENT_STATE_MAGIC);
        // Version 1 when nothing is mapped: an earlier build still reads it.
        let mapped = self.volumes.iter().any(|v| v.segments.iter().any(|s| s.mapped));
        out.push(if mapped { AGENT_STATE_VERSION } else { 1 });
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
        for v in &self.volumes {
            for s in &v.segments {
                out.extend_from_slice(&s.hash);
                match s.node {
                    Some(id) => {
                        out.push(if s.mapped { 2 } else { 1 });
                        out.extend_from_slice(&id.0);
                    }
                    None => out.extend_from_slice(&[0u8; 33]),
                }
                out.extend_from_slice(&s.data_bytes.to_le_bytes());
            }
        }
        let t = blake3::hash(&out);
        out.extend_from_slice(t.as_bytes());
        let dir = fsutil::parent_dir(path);
        fs::create_dir_all(&dir)
            .map_err(|e| crate::Error::io(format!("create state directory {}", dir.display()), e))?;
        fsutil::write_atomic(path, &out)
    }

    /// The remembered state of a volume, if compatible.
    pub fn volume(&self, name: &str, segment_size: u64) -> Option<&VolumeState> {
        self.volumes
            .iter()
            .find(|v| v.name == name && v.segment_size == segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let p = AgentState::path(d.path(), "r", "t", "g");
        let s = AgentState {
            repository_id: "r".into(),
            key_fingerprint: "f".into(),
            base_seq: 3,
            volumes: vec![VolumeState {
                name: "a".into(),
                size: 9,
                segment_size: 4,
                segments: vec![
                    SegmentState {
                        hash: [1; 32],
                        node: None,
                        data_bytes: 0,
                        mapped: false,
                    },
                    SegmentState {
                        hash: [2; 32],
                        node: Some(ObjectId([5; 32])),
                        data_bytes: 7,
                        mapped: false,
                    },
                    SegmentState {
                        hash: [3; 32],
                        node: Some(ObjectId([6; 32])),
                        data_bytes: 9,
                        mapped: true,
                    },
                ],
            }],
        };
        s.save(&p).unwrap();
        assert_eq!(AgentState::load(&p).unwrap(), s);
        assert_eq!(fs::read(&p).unwrap()[4], 2, "mapped nodes need version 2");
        // A version 1 file cannot say "mapped".
        let mut v1 = fs::read(&p).unwrap();
        v1[4] = 1;
        let n = v1.len() - 32;
        let t = blake3::hash(&v1[..n]);
        v1[n..].copy_from_slice(t.as_bytes());
        assert!(AgentState::load_bytes(&v1).is_none());
        // Without mapped nodes the file is version 1, which earlier builds read.
        let mut plain = s.clone();
        plain.volumes[0].segments.pop();
        plain.save(&p).unwrap();
        assert_eq!(fs::read(&p).unwrap()[4], 1);
        assert_eq!(AgentState::load(&p).unwrap(), plain);
        let mut b = fs::read(&p).unwrap();
        b[50] ^= 1;
        fs::write(&p, b).unwrap();
        assert!(AgentState::load(&p).is_none());
    }

    proptest::proptest! {
        /// A state file with a valid magic, version and trailer whose header
        /// length and segment counts say anything: decoding never panics, and
        /// what it accepts has as many segments as it claims.
        #[test]
        fn crafted_lengths_never_panic(
            version in 1u8..=2,
            hlen in proptest::prop_oneof![0u32..200, (u32::MAX - 100)..=u32::MAX],
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            json in proptest::prop_oneof![
                proptest::strategy::Just(String::new()),
                proptest::strategy::Just(r#"{"repository_id":"r","key_fingerprint":"f","base_seq":1,"volumes":[["a",9,4,4294967295]]}"#.to_string()),
                proptest::strategy::Just(r#"{"repository_id":"r","key_fingerprint":"f","base_seq":1,"volumes":[["a",9,4,1]]}"#.to_string()),
            ],
        ) {
            let mut b = AGENT_STATE_MAGIC.to_vec();
            b.push(version);
            let hlen = if json.is_empty() { hlen } else { json.len() as u32 };
            b.extend_from_slice(&hlen.to_le_bytes());
            b.extend_from_slice(json.as_bytes());
            b.extend_from_slice(&body);
            let t = blake3::hash(&b);
            b.extend_from_slice(t.as_bytes());
            if let Some(st) = AgentState::load_bytes(&b) {
                for v in &st.volumes {
                    proptest::prop_assert!(v.segments.len() * 69 <= body.len());
                }
            }
        }
    }
}
