//! Looking inside a repository: its pack files, parsed from their header and
//! footer as FORMAT.md lays them out (without the replicator's code, so a
//! format change that the code follows is still caught).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The default tenant's object directory.
pub fn objects_dir(repo: &Path) -> PathBuf {
    repo.join("tenants/default/objects")
}

/// The default tenant's pack directory.
pub fn packs_dir(repo: &Path) -> PathBuf {
    objects_dir(repo).join("packs")
}

/// Pack file layout (replicator/src/store/pack.rs).
pub const PACK_MAGIC: &[u8; 4] = b"LLPK";
pub const PACK_END_MAGIC: &[u8; 4] = b"LLPE";
pub const PACK_HEADER_LEN: u64 = 8;
/// `id [32] | offset u64 | length u32 | kind u8`.
pub const PACK_ENTRY_LEN: u64 = 45;
/// `n u32 | BLAKE3 [32] | "LLPE"`.
pub const PACK_TRAILER_LEN: u64 = 40;

/// Object kinds (byte 5 of a sealed object, and of its pack footer entry).
pub const KIND_CHUNK: u8 = 1;
pub const KIND_SEGMENT_NODE: u8 = 2;
pub const KIND_INDEX_NODE: u8 = 3;

/// One object inside a durable pack, as its pack's footer lists it.
#[derive(Debug, Clone)]
pub struct PackObject {
    pub pack: PathBuf,
    pub id_hex: String,
    pub offset: u64,
    pub len: u64,
    pub kind: u8,
}

fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Durable packs: `packs/<2 hex>/<32 hex>` (not `tmp/`), in path order. Cheap
/// enough to poll.
pub fn durable_packs(repo: &Path) -> Vec<PathBuf> {
    // `init` creates `packs/`: a missing one means the layout changed, and an
    // empty answer would make every check on it pass vacuously.
    let dir = packs_dir(repo);
    assert!(dir.is_dir(), "{} is missing: did the layout change?", dir.display());
    durable_packs_in(&dir)
}

/// A tenant's pack directory in a repository that a receiver serves
/// (`tenants/<tenant>/objects/packs`).
pub fn tenant_packs_dir(repo: &Path, tenant: &str) -> PathBuf {
    repo.join("tenants").join(tenant).join("objects/packs")
}

/// Durable packs under a pack directory (none while it does not exist yet: a
/// receiver creates a tenant's directory at its first session).
pub fn durable_packs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(shards) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for shard in shards.flatten() {
        let sname = shard.file_name().to_string_lossy().into_owned();
        if !is_hex(&sname, 2) {
            continue;
        }
        let Ok(entries) = fs::read_dir(shard.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_hex(&name, 32) && name.starts_with(&sname) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The objects of one pack, parsed from its header and footer (the footer's
/// BLAKE3 is not checked: the tests do not depend on blake3), in pack order.
#[track_caller]
pub fn read_pack(pack: &Path) -> Vec<PackObject> {
    let f = File::open(pack).unwrap_or_else(|e| panic!("open pack {}: {e}", pack.display()));
    let len = f.metadata().expect("stat pack").len();
    assert!(
        len >= PACK_HEADER_LEN + PACK_TRAILER_LEN,
        "pack {} is too short ({len} bytes)",
        pack.display()
    );
    let mut header = [0u8; 8];
    f.read_exact_at(&mut header, 0).expect("read pack header");
    assert_eq!(&header[..4], PACK_MAGIC, "pack {} header magic", pack.display());
    assert_eq!(
        header[4..],
        [1, 0, 0, 0],
        "pack {} version / reserved bytes",
        pack.display()
    );
    let mut trailer = [0u8; PACK_TRAILER_LEN as usize];
    f.read_exact_at(&mut trailer, len - PACK_TRAILER_LEN)
        .expect("read pack trailer");
    assert_eq!(&trailer[36..], PACK_END_MAGIC, "pack {} end magic", pack.display());
    let n = u32::from_le_bytes(trailer[..4].try_into().unwrap()) as u64;
    let footer_len = n * PACK_ENTRY_LEN + PACK_TRAILER_LEN;
    assert!(
        footer_len <= len - PACK_HEADER_LEN,
        "pack {}: footer of {n} entries is longer than the pack",
        pack.display()
    );
    let data_end = len - footer_len;
    let mut entries = vec![0u8; (n * PACK_ENTRY_LEN) as usize];
    f.read_exact_at(&mut entries, data_end).expect("read pack footer");
    let mut out: Vec<PackObject> = entries
        .chunks_exact(PACK_ENTRY_LEN as usize)
        .map(|e| {
            let o = PackObject {
                pack: pack.to_path_buf(),
                id_hex: e[..32].iter().map(|b| format!("{b:02x}")).collect(),
                offset: u64::from_le_bytes(e[32..40].try_into().unwrap()),
                len: u32::from_le_bytes(e[40..44].try_into().unwrap()) as u64,
                kind: e[44],
            };
            assert!(
                o.offset >= PACK_HEADER_LEN && o.offset + o.len <= data_end,
                "pack {}: entry out of bounds: {o:?}",
                pack.display()
            );
            assert!(
                (KIND_CHUNK..=KIND_INDEX_NODE).contains(&o.kind),
                "pack {}: bad kind: {o:?}",
                pack.display()
            );
            o
        })
        .collect();
    out.sort_by_key(|o| o.offset);
    out
}

/// Every object of every durable pack.
#[track_caller]
pub fn pack_objects(repo: &Path) -> Vec<PackObject> {
    durable_packs(repo).iter().flat_map(|p| read_pack(p)).collect()
}

/// Every file under `packs/tmp/` (any depth): packs that were never made durable.
pub fn tmp_packs(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let tmp = packs_dir(repo).join("tmp");
    assert!(tmp.is_dir(), "{} is missing: did the layout change?", tmp.display());
    let mut out = Vec::new();
    walk(&tmp, &mut out);
    out
}

/// The largest chunk among `objs`.
#[track_caller]
pub fn largest_chunk(objs: &[PackObject]) -> &PackObject {
    objs.iter()
        .filter(|o| o.kind == KIND_CHUNK)
        .max_by_key(|o| o.len)
        .expect("a chunk")
}

/// Flips the bits `mask` of the byte in the middle of `o` in its pack: (the
/// pack, open for writing, the byte's offset, the byte as it was) to put it
/// back with.
pub fn flip_middle_byte(o: &PackObject, mask: u8) -> (File, u64, [u8; 1]) {
    let pack = fs::OpenOptions::new().read(true).write(true).open(&o.pack).unwrap();
    let at = o.offset + o.len / 2;
    let mut byte = [0u8; 1];
    pack.read_exact_at(&mut byte, at).unwrap();
    pack.write_all_at(&[byte[0] ^ mask], at).unwrap();
    (pack, at, byte)
}
