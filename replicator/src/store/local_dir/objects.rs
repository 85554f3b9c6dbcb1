//! Packs as objects in object storage: their keys, their listing, their
//! footers read with two ranged reads, and the cache of 4 MiB segments that
//! reads inside them go through.

use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::object_id::ObjectId;
use crate::store::ObjectStorage;
use crate::store::pack::{self, ObjectLocation, PACK_HEADER_LEN, PackId};

/// Bytes of a pack fetched by one ranged read of an object-storage pack:
/// reads in pack order (a restore, a verify) cost one request per segment.
pub(super) const SEGMENT_BYTES: u64 = 4 << 20;
/// Segments kept (96 MiB).
const SEGMENT_CACHE: usize = 24;

/// Recently read segments of object-storage packs, least recently used first,
/// and the segments being fetched: readers that need a segment another reader
/// is fetching wait for it instead of fetching it again (a restore's decoders
/// read neighbouring parts of the same packs at once).
#[derive(Default)]
pub(super) struct Segments {
    state: Mutex<SegmentState>,
    fetched: std::sync::Condvar,
}

#[derive(Default)]
struct SegmentState {
    cached: Vec<(SegmentKey, Arc<Vec<u8>>)>,
    fetching: Vec<SegmentKey>,
}

/// A segment: its pack and its index within the pack.
type SegmentKey = (PackId, u64);

impl Segments {
    /// The segment, from the cache, from a fetch under way, or from `fetch`
    /// (`Ok(None)`: the pack object is gone).
    pub(super) fn get_or_fetch(
        &self,
        key: SegmentKey,
        fetch: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Arc<Vec<u8>>>> {
        let mut st = self.state.lock().expect("segments");
        loop {
            if let Some(i) = st.cached.iter().position(|(k, _)| *k == key) {
                let hit = st.cached.remove(i);
                let bytes = hit.1.clone();
                st.cached.push(hit);
                return Ok(Some(bytes));
            }
            if !st.fetching.contains(&key) {
                break;
            }
            st = self.fetched.wait(st).expect("segments");
        }
        st.fetching.push(key);
        drop(st);
        let got = fetch().map(|b| b.map(Arc::new));
        let mut st = self.state.lock().expect("segments");
        st.fetching.retain(|k| *k != key);
        if let Ok(Some(bytes)) = &got {
            if st.cached.len() >= SEGMENT_CACHE {
                st.cached.remove(0);
            }
            st.cached.push((key, bytes.clone()));
        }
        drop(st);
        // Waiters find the segment cached, or fetch it themselves after a failure.
        self.fetched.notify_all();
        got
    }

    pub(super) fn forget(&self, pack: &PackId) {
        self.state
            .lock()
            .expect("segments")
            .cached
            .retain(|((p, _), _)| p != pack);
    }
}

/// The key of a pack of the store under `prefix` in object storage (the
/// same layout as a directory store's files: `PREFIX/packs/<ab>/<id>`).
pub(crate) fn pack_key(prefix: &str, id: &PackId) -> String {
    let hex = id.to_hex();
    format!("{prefix}/packs/{}/{hex}", &hex[..2])
}

/// Every pack object under `prefix` (a tenant's `tenants/T/objects`), with
/// its key and size: what `lifeline repair` indexes.
pub(crate) fn pack_objects(storage: &dyn ObjectStorage, prefix: &str) -> Result<Vec<(PackId, String, u64)>> {
    let dir = format!("{prefix}/packs/");
    Ok(storage
        .list(&dir)?
        .into_iter()
        .filter_map(|(key, size)| {
            let rest = key.strip_prefix(&dir)?;
            let (shard, name) = rest.split_once('/')?;
            let id = PackId::from_hex(name)?;
            (shard.len() == 2 && name.starts_with(shard)).then_some((id, key, size))
        })
        .collect())
}

/// The checked footer of the pack object `key`, or why it cannot be read.
pub(crate) fn read_object_footer(
    storage: &dyn ObjectStorage,
    key: &str,
    id: PackId,
) -> Result<Vec<(ObjectId, ObjectLocation)>, String> {
    let (last, len) = storage
        .get_tail(key, 40)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the pack is gone".to_string())?;
    if len < PACK_HEADER_LEN + 40 || last.len() < 40 {
        return Err("too short for a pack".into());
    }
    let n = u32::from_le_bytes(last[..4].try_into().expect("4")) as usize;
    let flen = pack::footer_len(n);
    if flen > len - PACK_HEADER_LEN {
        return Err("footer longer than the pack".into());
    }
    let (tail, len2) = storage
        .get_tail(key, flen)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the pack is gone".to_string())?;
    if len2 != len || tail.len() as u64 != flen {
        return Err("the pack changed while its footer was read".into());
    }
    pack::parse_footer(id, &tail, len)
}
