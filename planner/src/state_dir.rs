//! Where the agent and planner keep their local state.

use std::path::{Path, PathBuf};

/// `/var/lib/lifeline` as root, else `$XDG_STATE_HOME/lifeline`, else
/// `~/.local/state/lifeline`.
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/lifeline");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lifeline");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/lifeline")
}

/// The planner's directory in a state directory.
pub fn planner_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("planner")
}
