//! Freeze and thaw hooks around the reads of a consistent point. The thaw hook
//! runs whatever happens after a freeze was attempted: on success, on error, on
//! an interrupt (the caller turns SIGINT/SIGTERM into a cancel flag, so the
//! process unwinds through [`ThawGuard`] instead of dying frozen), and on panic.

use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};

/// Runs `command` with `sh -c`; fails unless it exits 0.
pub fn run_hook(hook: &'static str, command: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .map_err(|e| Error::Hook {
            hook,
            command: command.into(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Hook {
        hook,
        command: command.into(),
        reason: format!("{}; stderr: {}", out.status, stderr.trim()),
    })
}

/// Thaws on drop. Created just before the freeze hook runs.
pub struct ThawGuard {
    command: Option<String>,
    frozen_at: Instant,
}

impl ThawGuard {
    /// Runs the freeze hook; the guard thaws even if the freeze failed half way.
    pub fn freeze(freeze: &str, thaw: &str) -> Result<ThawGuard> {
        let guard = ThawGuard {
            command: Some(thaw.into()),
            frozen_at: Instant::now(),
        };
        run_hook("freeze", freeze)?;
        Ok(guard)
    }

    /// Thaws now and returns how long the volumes were frozen, in ms.
    pub fn thaw(mut self) -> Result<u64> {
        let ms = self.frozen_at.elapsed().as_millis() as u64;
        let cmd = self.command.take().expect("thaw once");
        run_hook("thaw", &cmd)?;
        Ok(ms)
    }
}

impl Drop for ThawGuard {
    fn drop(&mut self) {
        if let Some(cmd) = self.command.take()
            && let Err(e) = run_hook("thaw", &cmd)
        {
            tracing::error!(error = %e, "thaw hook failed: the application may still be frozen");
            eprintln!("error: {e}: the application may still be frozen; thaw it by hand");
        }
    }
}
