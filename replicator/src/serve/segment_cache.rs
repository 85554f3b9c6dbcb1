//! A bounded cache of decoded segments shared by every export of a server:
//! least recently used out first, and a segment being decoded is waited for by
//! whoever else asks for it, never decoded twice at once (a read-ahead and the
//! read it anticipated meet here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// Which segment: (export number, segment number).
pub type SegmentKey = (usize, usize);

/// A decoded segment (all its bytes, holes as zeros).
pub type Segment = Arc<Vec<u8>>;

type Slot = Arc<OnceLock<std::result::Result<Segment, Arc<Error>>>>;

struct Entry {
    slot: Slot,
    used: u64,
}

/// Decoded segments, at most `capacity` bytes of them.
pub struct SegmentCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<SegmentKey, Entry>,
    tick: u64,
    bytes: usize,
}

impl SegmentCache {
    pub fn new(capacity: usize) -> Self {
        SegmentCache {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// True when the segment is decoded or being decoded.
    pub fn contains(&self, key: SegmentKey) -> bool {
        self.state.lock().expect("segment cache").entries.contains_key(&key)
    }

    /// The segment, decoded with `load` unless it is cached. Concurrent callers
    /// for one key wait for a single `load`. A failed load is not cached: the
    /// next caller tries again (and gets the error again if the damage stays).
    pub fn get(&self, key: SegmentKey, load: impl FnOnce() -> Result<Vec<u8>>) -> Result<Segment> {
        let slot = {
            let mut st = self.state.lock().expect("segment cache");
            st.tick += 1;
            let tick = st.tick;
            let e = st.entries.entry(key).or_insert_with(|| Entry {
                slot: Arc::new(OnceLock::new()),
                used: tick,
            });
            e.used = tick;
            e.slot.clone()
        };
        let mut loaded = false;
        let got = slot.get_or_init(|| {
            loaded = true;
            load().map(Arc::new).map_err(Arc::new)
        });
        match got {
            Ok(seg) => {
                let seg = seg.clone();
                if loaded {
                    self.admitted(key, &slot, seg.len());
                }
                Ok(seg)
            }
            Err(e) => {
                let e = Error::Shared(e.clone());
                self.forget(key, &slot);
                Err(e)
            }
        }
    }

    /// Counts a newly decoded segment and evicts the least recently used
    /// decoded ones beyond the capacity (never the one just added).
    fn admitted(&self, key: SegmentKey, slot: &Slot, len: usize) {
        let mut st = self.state.lock().expect("segment cache");
        if !st.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.slot, slot)) {
            return;
        }
        st.bytes += len;
        while st.bytes > self.capacity {
            let victim = st
                .entries
                .iter()
                .filter(|(k, e)| **k != key && matches!(e.slot.get(), Some(Ok(_))))
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k);
            let Some(victim) = victim else { break };
            if let Some(Entry { slot, .. }) = st.entries.remove(&victim)
                && let Some(Ok(seg)) = slot.get()
            {
                st.bytes -= seg.len();
            }
        }
    }

    fn forget(&self, key: SegmentKey, slot: &Slot) {
        let mut st = self.state.lock().expect("segment cache");
        if st.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.slot, slot)) {
            st.entries.remove(&key);
        }
    }

    /// Bytes of decoded segments held.
    pub fn bytes(&self) -> usize {
        self.state.lock().expect("segment cache").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn bounded_lru_and_one_load_per_key() {
        let c = SegmentCache::new(3 * 10);
        let loads = AtomicUsize::new(0);
        let load = |b: u8| {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![b; 10])
        };
        for k in 0..3 {
            c.get((0, k), || load(k as u8)).unwrap();
        }
        c.get((0, 0), || load(0)).unwrap(); // 0 is now the most recent
        c.get((0, 3), || load(3)).unwrap(); // evicts 1
        assert_eq!(c.bytes(), 30);
        assert!(c.contains((0, 0)) && !c.contains((0, 1)) && c.contains((0, 3)));
        assert_eq!(loads.load(Ordering::SeqCst), 4);
        // Concurrent readers of one key share one load.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    c.get((1, 0), || {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        load(9)
                    })
                    .unwrap()
                });
            }
        });
        assert_eq!(loads.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn failures_are_not_cached() {
        let c = SegmentCache::new(100);
        let e = c.get((0, 0), || Err(crate::error::Error::Interrupted));
        assert!(e.is_err());
        assert!(!c.contains((0, 0)));
        assert_eq!(*c.get((0, 0), || Ok(vec![1])).unwrap(), vec![1]);
    }
}
