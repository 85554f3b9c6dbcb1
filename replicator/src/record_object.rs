//! Record objects: the repository config, each tenant's record and each
//! recovery point, stored as immutable objects beside the packs so that the
//! objects alone describe the repository and the catalog can be rebuilt from
//! them (`lifeline repair`).
//!
//! ```text
//! meta/config                                   repository config (format, id, created)
//! meta/tenants/<tenant>                         tenant record (name, key fingerprint, created)
//! meta/points/<tenant>/<group>/<seq, 20 digits> point record (cleartext header, sealed body)
//! meta/scopes/<tenant>/<group>                  a group with its own dedup scope (tenant, group, created)
//! ```
//! Encoding (FORMAT.md, "Record objects"): magic, version, the record's JSON (as
//! the catalog stores it), and a BLAKE3 trailer over everything before it, so a
//! damaged byte is detected without the key; a point's body is also sealed with
//! AES-256-GCM bound to its header, so an altered point fails authentication
//! with the key.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalog::{RepositoryConfig, ScopeRecord, TenantRecord};
use crate::error::{Error, Result};
use crate::file_formats::{RECORD_OBJECT_VERSION, RECORD_TRAILER_LEN};
use crate::point::PointRecord;

/// What a record object holds; its magic tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Config,
    Tenant,
    Point,
    Scope,
}

impl RecordKind {
    fn magic(self) -> [u8; 4] {
        use crate::file_formats::{CONFIG_OBJECT_MAGIC, POINT_OBJECT_MAGIC, SCOPE_OBJECT_MAGIC, TENANT_OBJECT_MAGIC};
        match self {
            RecordKind::Config => CONFIG_OBJECT_MAGIC,
            RecordKind::Tenant => TENANT_OBJECT_MAGIC,
            RecordKind::Point => POINT_OBJECT_MAGIC,
            RecordKind::Scope => SCOPE_OBJECT_MAGIC,
        }
    }

    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Config => "repository config object",
            RecordKind::Tenant => "tenant record object",
            RecordKind::Point => "point object",
            RecordKind::Scope => "dedup scope record object",
        }
    }
}

/// Key of the repository config object.
pub const CONFIG_KEY: &str = "meta/config";
/// Prefix of the tenant record objects.
pub const TENANTS_PREFIX: &str = "meta/tenants/";
/// Prefix of every point object.
pub const POINTS_PREFIX: &str = "meta/points/";

/// Prefix of the dedup scope record objects.
pub const SCOPES_PREFIX: &str = "meta/scopes/";

/// Key of the record object of a group's own dedup scope.
pub fn scope_key(tenant: &str, group: &str) -> String {
    format!("{SCOPES_PREFIX}{tenant}/{group}")
}

/// `(tenant, group)` of a scope record object's key, or `None` for a key that
/// is not one.
pub fn parse_scope_key(key: &str) -> Option<(String, String)> {
    let (t, g) = key.strip_prefix(SCOPES_PREFIX)?.split_once('/')?;
    if g.contains('/') {
        return None;
    }
    Some((t.into(), g.into()))
}

/// A scope record object's bytes.
pub fn encode_scope(s: &ScopeRecord) -> Vec<u8> {
    encode(RecordKind::Scope, s)
}

/// Decodes a scope record object and checks that it sits under its own key.
pub fn decode_scope(key: &str, bytes: &[u8], location: &str) -> Result<ScopeRecord> {
    let s: ScopeRecord = decode(RecordKind::Scope, bytes, location)?;
    if scope_key(&s.tenant, &s.group) != key {
        return Err(Error::RepositoryObjectDamaged {
            what: RecordKind::Scope.name().into(),
            location: location.into(),
            reason: format!(
                "it names group `{}` of tenant `{}`, not the group its key names",
                s.group, s.tenant
            ),
            remedy: "run `lifeline repair`".into(),
        });
    }
    Ok(s)
}

/// Key of a tenant's record object.
pub fn tenant_key(tenant: &str) -> String {
    format!("{TENANTS_PREFIX}{tenant}")
}

/// Prefix of a tenant's point objects.
pub fn tenant_points_prefix(tenant: &str) -> String {
    format!("{POINTS_PREFIX}{tenant}/")
}

/// Key of a point object: the seq zero-padded so keys sort in seq order.
pub fn point_key(tenant: &str, group: &str, seq: u64) -> String {
    format!("{POINTS_PREFIX}{tenant}/{group}/{seq:020}")
}

/// `(tenant, group, seq)` of a point object's key, or `None` for a key that is
/// not one.
pub fn parse_point_key(key: &str) -> Option<(String, String, u64)> {
    let rest = key.strip_prefix(POINTS_PREFIX)?;
    let mut parts = rest.split('/');
    let (t, g, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((t.into(), g.into(), s.parse().ok()?))
}

/// Encodes a record: magic | version u8 | reserved [3] | JSON length u32 | JSON | BLAKE3 of all before.
pub fn encode<T: Serialize>(kind: RecordKind, record: &T) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("records serialise");
    let mut out = Vec::with_capacity(12 + json.len() + RECORD_TRAILER_LEN);
    out.extend_from_slice(&kind.magic());
    out.push(RECORD_OBJECT_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let trailer = blake3::hash(&out);
    out.extend_from_slice(trailer.as_bytes());
    out
}

/// The bytes a record object's trailer covers, checked; `Err` says what is wrong.
pub fn check(kind: RecordKind, bytes: &[u8]) -> std::result::Result<&[u8], String> {
    if bytes.len() < 12 + RECORD_TRAILER_LEN {
        return Err(format!("{} bytes, too short", bytes.len()));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - RECORD_TRAILER_LEN);
    if blake3::hash(body).as_bytes() != trailer {
        return Err("its BLAKE3 trailer does not match (bit rot, truncation or alteration)".into());
    }
    if body[0..4] != kind.magic() {
        return Err(format!(
            "not a {} (magic {:?})",
            kind.name(),
            String::from_utf8_lossy(&body[0..4])
        ));
    }
    if body[4] != RECORD_OBJECT_VERSION {
        return Err(format!(
            "version {} (this build reads {RECORD_OBJECT_VERSION}): upgrade lifeline",
            body[4]
        ));
    }
    let len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    if len != body.len() - 12 {
        return Err(format!("length field {len} disagrees with the object's size"));
    }
    Ok(&body[12..])
}

/// Decodes a record object; `location` names it in errors.
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8], location: &str) -> Result<T> {
    let damaged = |reason: String| {
        Error::RepositoryObjectDamaged {
        what: kind.name().into(),
        location: location.into(),
        reason,
        remedy: "run `lifeline verify` to see what it affects, then `lifeline repair`, which rewrites it from an intact catalog copy where there is one".into(),
    }
    };
    let json = check(kind, bytes).map_err(damaged)?;
    serde_json::from_slice(json).map_err(|e| damaged(format!("undecodable record: {e}")))
}

/// The config object's bytes.
pub fn encode_config(c: &RepositoryConfig) -> Vec<u8> {
    encode(RecordKind::Config, c)
}

/// A tenant record object's bytes.
pub fn encode_tenant(t: &TenantRecord) -> Vec<u8> {
    encode(RecordKind::Tenant, t)
}

/// A point object's bytes.
pub fn encode_point(p: &PointRecord) -> Vec<u8> {
    encode(RecordKind::Point, p)
}

/// Decodes a point object and checks that it sits under its own key.
pub fn decode_point(key: &str, bytes: &[u8], location: &str) -> Result<PointRecord> {
    let p: PointRecord = decode(RecordKind::Point, bytes, location)?;
    let h = &p.header;
    if point_key(&h.tenant, &h.group, h.seq) != key {
        return Err(Error::RepositoryObjectDamaged {
            what: RecordKind::Point.name().into(),
            location: location.into(),
            reason: format!(
                "it holds point {} of group `{}` of tenant `{}`, not the point its name says",
                h.seq, h.group, h.tenant
            ),
            remedy: "it was moved or altered: run `lifeline repair`, which leaves it out".into(),
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn point_keys_round_trip_and_sort_by_seq() {
        let k = point_key("acme", "db-1", 42);
        assert_eq!(k, "meta/points/acme/db-1/00000000000000000042");
        assert_eq!(parse_point_key(&k), Some(("acme".into(), "db-1".into(), 42)));
        assert!(point_key("t", "g", 9) < point_key("t", "g", 10));
        for bad in [
            "meta/points/t/g",
            "meta/points/t/g/12",
            "meta/points/t/g/0000000000000000000x",
            "x/t/g/1",
        ] {
            assert_eq!(parse_point_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_every_damage_is_named() {
        let t = TenantRecord {
            name: "acme".into(),
            key_fingerprint: "ab".repeat(16),
            created: "2026-12-04T00:00:00Z".into(),
        };
        let bytes = encode_tenant(&t);
        assert_eq!(decode::<TenantRecord>(RecordKind::Tenant, &bytes, "x").unwrap(), t);
        // Wrong kind.
        let e = decode::<TenantRecord>(RecordKind::Point, &bytes, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a point object"), "{e}");
        // Every single-byte flip is detected.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let e = decode::<TenantRecord>(RecordKind::Tenant, &b, "/r/meta/tenants/acme")
                .unwrap_err()
                .to_string();
            assert!(e.contains("/r/meta/tenants/acme") && e.contains("damaged"), "{e}");
        }
        assert!(decode::<TenantRecord>(RecordKind::Tenant, &bytes[..bytes.len() - 1], "x").is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<TenantRecord>(RecordKind::Tenant, &bytes, "x");
            let _ = decode_point("meta/points/t/g/00000000000000000001", &bytes, "x");
        }
    }
}
