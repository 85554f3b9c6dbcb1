//! The registry of testbeds on this machine: a copy of each testbed's state in
//! `/run/lifeline-testbeds/` (root) or `$TMPDIR/lifeline-testbeds-UID/`, so the
//! next `up` finds what a crashed run left (its directory gone, or its owner
//! process dead) and removes it: processes, namespaces, mounts, files.

use std::fs;
use std::path::PathBuf;

use super::state::TestbedState;
use crate::error::{Result, TestbedError};

/// Where the entries live.
pub fn registry_dir() -> PathBuf {
    if super::is_root() {
        PathBuf::from("/run/lifeline-testbeds")
    } else {
        let uid = rustix::process::getuid().as_raw();
        std::env::temp_dir().join(format!("lifeline-testbeds-{uid}"))
    }
}

fn entry(id: &str) -> PathBuf {
    registry_dir().join(format!("{id}.json"))
}

/// Records (or updates) a testbed.
pub fn register(st: &TestbedState) -> Result<()> {
    let dir = registry_dir();
    fs::create_dir_all(&dir).map_err(|e| TestbedError::io(format!("create {}", dir.display()), e))?;
    st.write_to(&entry(&st.id))
}

/// Forgets a testbed.
pub fn unregister(id: &str) {
    let _ = fs::remove_file(entry(id));
}

/// Every registered testbed.
pub fn entries() -> Vec<TestbedState> {
    let Ok(rd) = fs::read_dir(registry_dir()) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

/// True when `st` is a leftover: its directory no longer holds it, or the
/// process that owned it is gone.
pub fn is_leftover(st: &TestbedState) -> bool {
    let here = TestbedState::load(&st.dir).ok();
    if here.as_ref().map(|h| &h.id) != Some(&st.id) {
        return true;
    }
    match &st.owner {
        Some(o) => super::process::start_time(o.pid) != Some(o.start_time),
        None => false,
    }
}
