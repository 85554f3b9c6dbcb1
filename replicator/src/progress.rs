//! Progress of long work (backup, restore, verify, repair), told to whoever shows it.

use std::sync::Arc;

/// Progress callback: bytes done, bytes total.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;
