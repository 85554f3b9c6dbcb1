//! A site's small disk: a size-limited tmpfs mounted in the testbed directory
//! (root only), holding the secondary's repository so a disk-full fault can
//! really fill it. Filling writes a `filler` file until ENOSPC; freeing removes it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::netns::run;
use crate::error::{Result, TestbedError};

/// The filler file's name on a disk.
pub const FILLER: &str = "filler";

/// Mounts a tmpfs of `bytes` on `dir` (created).
pub fn mount_tmpfs(dir: &Path, bytes: u64) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| TestbedError::io(format!("create {}", dir.display()), e))?;
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={bytes},mode=0700"),
            "lifeline-testbed",
            path_str(dir)?,
        ],
    )?;
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| TestbedError::Invalid(format!("{} is not UTF-8", p.display())))
}

/// True when `dir` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Some(d) = dir.to_str() else { return false };
    info.lines().any(|l| l.split_whitespace().nth(4) == Some(d))
}

/// Unmounts `dir` (lazily, so a straggler holding a file cannot block it).
pub fn unmount(dir: &Path) -> Result<()> {
    if is_mounted(dir) {
        run("umount", &["-l", path_str(dir)?])?;
    }
    Ok(())
}

/// Writes a filler file on the disk at `dir` until it is full; returns its size.
pub fn fill(dir: &Path) -> Result<u64> {
    let path = dir.join(FILLER);
    let mut f = File::create(&path).map_err(|e| TestbedError::io(format!("create {}", path.display()), e))?;
    let buf = vec![0xa5u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(TestbedError::io(format!("fill {}", path.display()), e)),
        }
    }
    Ok(written)
}

/// Removes the filler file.
pub fn free(dir: &Path) -> Result<()> {
    let path = dir.join(FILLER);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TestbedError::io(format!("remove {}", path.display()), e)),
    }
}
