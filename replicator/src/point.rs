//! Recovery points: an immutable, crash-consistent image of every volume of a
//! protection group at one instant.
//!
//! A point is stored in the catalog as a [`PointRecord`]: a cleartext header
//! (tenant, group, seq, `taken_at`, consistency, key id, root ids) that a
//! repository without the key can use to check completeness, mark for GC and map
//! damage, and a body sealed with AES-256-GCM (volume names, sizes, roots and
//! whole-volume hashes) whose AAD is the canonical encoding of the header.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::file_formats::KDF_POINT_AAD;
use crate::fsutil;
use crate::index::TreeRoot;
use crate::object_id::ObjectId;

/// Whether a point's volumes were quiesced while read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Read between a freeze and a thaw hook: crash consistent across the group.
    Frozen,
    /// Read live: each segment is consistent, the volume as a whole may not be.
    Fuzzy,
}

impl Consistency {
    /// Lowercase name, as shown by `points`.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Frozen => "frozen",
            Consistency::Fuzzy => "fuzzy",
        }
    }
}

mod hex_id {
    use super::ObjectId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<ObjectId>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(id) => s.serialize_str(&id.to_hex()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ObjectId>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| ObjectId::from_hex(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A root id in the cleartext header (`None` for an empty or all-hole volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRef(#[serde(with = "hex_id")] pub Option<ObjectId>);

/// The cleartext header of a point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointHeader {
    pub tenant: String,
    pub group: String,
    pub seq: u64,
    /// The instant the point's data is guaranteed to contain.
    pub taken_at: DateTime<Utc>,
    pub consistency: Consistency,
    pub key_id: u32,
    /// Root of each volume's tree, in the body's volume order.
    pub roots: Vec<RootRef>,
}

/// One volume of a point (sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    pub name: String,
    pub size: u64,
    pub segment_size: u64,
    #[serde(with = "hex_id")]
    pub root: Option<ObjectId>,
    pub levels: u8,
    /// See [`crate::volume_hash`].
    pub volume_hash: String,
    /// Non-hole bytes: what a sparse restore allocates.
    #[serde(default)]
    pub data_bytes: u64,
    /// Some segment nodes carry block maps or are block deltas: a later backup
    /// without agent state reads this tree to store changes as block deltas
    /// (and reads nothing when false). Absent in earlier points.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_maps: bool,
}

impl VolumeEntry {
    /// The root of this volume's tree.
    pub fn tree_root(&self) -> TreeRoot {
        TreeRoot {
            id: self.root,
            levels: self.levels,
        }
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.size.div_ceil(self.segment_size) as usize
    }
}

/// The sealed body of a point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointBody {
    pub volumes: Vec<VolumeEntry>,
    /// How long the volumes were frozen, when they were.
    #[serde(default)]
    pub frozen_ms: Option<u64>,
    /// The lifeline version that wrote the point.
    pub written_by: String,
}

/// A point as persisted: cleartext header + sealed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRecord {
    pub header: PointHeader,
    pub nonce: String,
    pub sealed_body: String,
    /// When the repository committed the point, by the clock of the process
    /// that owns the repository (the receiver, for replicated points): a time
    /// no agent can set. Outside the header, so outside the body's AAD: the
    /// agent seals before the commit. Absent in points of earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<DateTime<Utc>>,
}

/// How far ahead of the committing clock a point's `taken_at` may be: clocks
/// of agent and receiver hosts disagree by milliseconds under NTP, and by
/// minutes without it. A later `taken_at` is refused at commit.
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// A point opened with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub header: PointHeader,
    pub body: PointBody,
}

fn aad(header: &PointHeader) -> Vec<u8> {
    let mut aad = blake3::derive_key(KDF_POINT_AAD, &serde_json::to_vec(header).expect("serialisable")).to_vec();
    aad.extend_from_slice(&header.seq.to_le_bytes());
    aad
}

impl RecoveryPoint {
    /// Seals the body under the data key, bound to the header.
    pub fn seal(&self, keys: &Keys) -> PointRecord {
        let mut nonce = [0u8; 12];
        fsutil::random_bytes(&mut nonce);
        let body = serde_json::to_vec(&self.body).expect("serialisable");
        let ct = keys.cipher().encrypt(&nonce, &aad(&self.header), &body);
        PointRecord {
            header: self.header.clone(),
            nonce: hex::encode(nonce),
            sealed_body: hex::encode(ct),
            committed_at: None,
        }
    }
}

impl PointRecord {
    /// The time retention buckets this point by: the earlier of the agent's
    /// `taken_at` and the repository's commit time, so no agent can push a
    /// point forward in time (see [`crate::retention::retention_times`]).
    pub fn retention_time(&self) -> DateTime<Utc> {
        match self.committed_at {
            Some(c) => c.min(self.header.taken_at),
            None => self.header.taken_at,
        }
    }

    fn name(&self) -> String {
        format!("point {} of group `{}`", self.header.seq, self.header.group)
    }

    /// Opens the body; checks that it agrees with the header.
    pub fn open(&self, keys: &Keys, location: &str) -> Result<RecoveryPoint> {
        let auth = || Error::ObjectAuthentication {
            id: self.name(),
            location: location.into(),
        };
        let damaged = |reason: &str| Error::ObjectDamaged {
            id: self.name(),
            location: location.into(),
            reason: reason.into(),
        };
        if self.header.key_id != keys.key_id() {
            return Err(auth());
        }
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|_| damaged("bad nonce"))?;
        let ct = hex::decode(&self.sealed_body).map_err(|_| damaged("bad body encoding"))?;
        let plain = keys
            .cipher()
            .decrypt(&nonce, &aad(&self.header), &ct)
            .map_err(|_| auth())?;
        let body: PointBody = serde_json::from_slice(&plain).map_err(|e| damaged(&e.to_string()))?;
        let roots: Vec<RootRef> = body.volumes.iter().map(|v| RootRef(v.root)).collect();
        if roots != self.header.roots {
            return Err(damaged("sealed volume roots disagree with the header"));
        }
        Ok(RecoveryPoint {
            header: self.header.clone(),
            body,
        })
    }
}

/// Checks a tenant, group or volume name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `-`.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what,
            value: name.chars().take(80).collect(),
            reason: "use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> RecoveryPoint {
        let root = Some(ObjectId([3; 32]));
        RecoveryPoint {
            header: PointHeader {
                tenant: "default".into(),
                group: "g".into(),
                seq: 4,
                taken_at: Utc::now(),
                consistency: Consistency::Fuzzy,
                key_id: Keys::derive(&[1; 32]).key_id(),
                roots: vec![RootRef(root)],
            },
            body: PointBody {
                volumes: vec![VolumeEntry {
                    name: "db".into(),
                    size: 10,
                    segment_size: 4 << 20,
                    root,
                    levels: 1,
                    volume_hash: "00".into(),
                    data_bytes: 10,
                    block_maps: false,
                }],
                frozen_ms: None,
                written_by: "test".into(),
            },
        }
    }

    #[test]
    fn seal_open_and_tamper() {
        let k = Keys::derive(&[1; 32]);
        let p = point();
        let rec = p.seal(&k);
        assert_eq!(rec.open(&k, "here").unwrap(), p);
        let mut bad = rec.clone();
        bad.header.seq = 5;
        assert!(matches!(bad.open(&k, "here"), Err(Error::ObjectAuthentication { .. })));
        assert!(rec.open(&Keys::derive(&[2; 32]), "here").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("group", "db-01.prod_a").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name("group", bad).is_err(), "{bad}");
        }
    }
}
