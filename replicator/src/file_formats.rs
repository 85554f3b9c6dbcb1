//! Magic numbers, versions and fixed sizes of every persisted encoding.
//!
//! Each constant says how it was chosen. DO NOT MODIFY any of them: repositories,
//! key files and agent state written by earlier builds depend on them. A change of
//! format gets a new version number and a reader for the old one. The layouts are
//! documented in `FORMAT.md` at the top of the workspace.

/// First line of the `lifeline-repo` marker file at the root of a repository.
pub const REPOSITORY_MARKER: &str = "LIFELINE-REPOSITORY";
/// Name of the marker file.
pub const REPOSITORY_MARKER_FILE: &str = "lifeline-repo";
/// Repository format version written by this build (and the highest it reads).
/// 2: segment nodes may carry block maps, and delta segment nodes exist. A
/// format 1 repository is upgraded when this build opens it (nothing to rewrite
/// but the marker and the catalog config), so older builds refuse it.
/// 3: the repository's records are objects too (`meta/config`, `meta/tenants/*`,
/// `meta/points/*`), and the catalog is a cache rebuilt from them; a format 2
/// repository is upgraded at open by writing those objects from its catalog.
/// 4: point records carry `committed_at`, the committing repository's clock,
/// which retention reads (an agent cannot date points into the future); earlier
/// points have none. Upgraded at open by rewriting the marker and config only.
/// 5: a group may have its own dedup scope (`meta/scopes/<tenant>/<group>`, its
/// objects under `tenants/<tenant>/groups/<group>/objects`); builds that know
/// nothing of scopes would store such a group's objects in the tenant's shared
/// store, so they must refuse it. Upgraded at open by rewriting the marker and
/// config only.
pub const REPOSITORY_FORMAT: u32 = 5;

/// Magic of the repository config object: "LLRC" (LifeLine Repository Config).
pub const CONFIG_OBJECT_MAGIC: [u8; 4] = *b"LLRC";
/// Magic of a tenant record object: "LLTN" (LifeLine TeNant).
pub const TENANT_OBJECT_MAGIC: [u8; 4] = *b"LLTN";
/// Magic of a point object: "LLPT" (LifeLine PoinT).
pub const POINT_OBJECT_MAGIC: [u8; 4] = *b"LLPT";
/// Magic of a dedup scope record object: "LLSC" (LifeLine SCope).
pub const SCOPE_OBJECT_MAGIC: [u8; 4] = *b"LLSC";
/// Version of the record object encoding (config, tenant, point).
pub const RECORD_OBJECT_VERSION: u8 = 1;
/// Trailer of a record object: BLAKE3 of every byte before it.
pub const RECORD_TRAILER_LEN: usize = 32;

/// Magic of a sealed object: ASCII "LLOB" (LifeLine OBject).
pub const OBJECT_MAGIC: [u8; 4] = *b"LLOB";
/// Sealed object format version.
pub const OBJECT_VERSION: u8 = 1;
/// Fixed part of a sealed object header: magic 4, version 1, kind 1, flags 2,
/// key id 4, nonce 12, ref count 4.
pub const OBJECT_HEADER_LEN: usize = 28;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Trailer: BLAKE3 of every byte before it (checked without the key).
pub const TRAILER_LEN: usize = 32;
/// Largest sealed object accepted from disk or network (a 256 KiB chunk that does
/// not compress is far below it; index nodes are a few KiB).
pub const MAX_OBJECT_LEN: usize = 8 << 20;
/// Largest number of references one object may carry (a 4 MiB segment of 4 KiB
/// chunks has 1024; an index node has at most [`INDEX_FANOUT`]).
pub const MAX_OBJECT_REFS: usize = 65_536;

/// Plaintext envelope byte: payload stored as is.
pub const ENVELOPE_RAW: u8 = 0;
/// Plaintext envelope byte: payload is a zstd frame.
pub const ENVELOPE_ZSTD: u8 = 1;

/// Magic of a segment node's plaintext: "LLSG".
pub const SEGMENT_NODE_MAGIC: [u8; 4] = *b"LLSG";
/// Magic of an index node's plaintext: "LLIX".
pub const INDEX_NODE_MAGIC: [u8; 4] = *b"LLIX";
/// Index and segment node encoding version.
pub const NODE_VERSION: u8 = 1;
/// Segment node version that ends with a reference to the segment's block map.
pub const SEGMENT_NODE_MAPPED_VERSION: u8 = 2;
/// Magic of a delta segment node's plaintext: "LLSD". A delta segment is a full
/// segment node with a block map (its base) plus patches of whole 4 KiB blocks.
pub const DELTA_NODE_MAGIC: [u8; 4] = *b"LLSD";
/// Delta segment node encoding version.
pub const DELTA_NODE_VERSION: u8 = 1;
/// Magic of a block map's plaintext: "LLBM".
pub const BLOCK_MAP_MAGIC: [u8; 4] = *b"LLBM";
/// Block map encoding version.
pub const BLOCK_MAP_VERSION: u8 = 1;
/// Block of a block map: the 4 KiB a file system or database writes at once, so
/// a scattered small write changes one block, and aligned to segments (4 MiB),
/// hence to the volume.
pub const MAP_BLOCK: usize = 4096;
/// Bytes of a block's keyed hash in a block map: 128 bits make an undetected
/// change (two different blocks with one hash) a 2^-128 event per block, at 0.4%
/// of the segment's size.
pub const MAP_HASH_LEN: usize = 16;
/// Children per index node. 64 ids of 32 bytes keep a node at ~2 KiB, so a point
/// where one block changed in a 1 TiB volume adds 4 index nodes (~9 KiB).
pub const INDEX_FANOUT: usize = 64;
/// Marks a hole (an all-zero extent or subtree) where a reference index would be.
pub const HOLE_REF: u32 = u32::MAX;

/// Magic of agent state files: "LLAS".
pub const AGENT_STATE_MAGIC: [u8; 4] = *b"LLAS";
/// Agent state format version (2: a segment's flag may say its node is mapped;
/// version 1 files are still read).
pub const AGENT_STATE_VERSION: u8 = 2;

/// Magic of an overlay directory's `overlay.meta` (`lifeline serve`): "LLOM".
pub const OVERLAY_META_MAGIC: [u8; 4] = *b"LLOM";
/// Overlay meta format version.
pub const OVERLAY_META_VERSION: u8 = 1;
/// Magic of an overlay block bitmap `<volume>.bitmap`: "LLBT".
pub const OVERLAY_BITMAP_MAGIC: [u8; 4] = *b"LLBT";
/// Overlay bitmap format version.
pub const OVERLAY_BITMAP_VERSION: u8 = 1;

/// Magic of a hydration cursor `<volume>.hydrate` in an overlay directory: "LLHY".
pub const HYDRATE_CURSOR_MAGIC: [u8; 4] = *b"LLHY";
/// Hydration cursor format version.
pub const HYDRATE_CURSOR_VERSION: u8 = 1;

/// Version byte that prefixes every value in the catalog.
pub const CATALOG_VALUE_VERSION: u8 = 1;

/// Key file `format` field.
pub const KEY_FILE_FORMAT: &str = "lifeline-key";
/// Key file version.
pub const KEY_FILE_VERSION: u32 = 1;

/// BLAKE3 key-derivation contexts (globally unique, hard-coded, per the BLAKE3
/// guidance for `derive_key`).
pub const KDF_ID_KEY: &str = "lifeline 2026-11 chunk id key v1";
pub const KDF_NODE_ID_KEY: &str = "lifeline 2026-11 index node id key v1";
pub const KDF_DATA_KEY: &str = "lifeline 2026-11 data encryption key v1";
pub const KDF_CDC_SEED: &str = "lifeline 2026-11 content defined chunking seed v1";
pub const KDF_FINGERPRINT: &str = "lifeline 2026-11 key fingerprint v1";
pub const KDF_POINT_AAD: &str = "lifeline 2026-11 point header v1";
pub const KDF_VOLUME_HASH: &str = "lifeline 2026-11 volume hash v1";
pub const KDF_BLOCK_MAP_KEY: &str = "lifeline 2026-11 block map key v1";
