//! Root-only fixtures: a loop device and a tmpfs mount, each undone on drop
//! (failure and panic included); and what is mounted where, to check that a
//! run left no mount behind.

use std::fs;
use std::path::{Path, PathBuf};

use super::{s, sh};

/// A loop device over a file, detached on drop.
pub struct LoopDevice {
    pub device: PathBuf,
}

impl LoopDevice {
    pub fn attach(backing: &Path) -> Result<LoopDevice, String> {
        let dev = sh("losetup", &["-f", "--show", s(backing)])?.trim().to_string();
        if dev.is_empty() {
            return Err("losetup printed no device".into());
        }
        Ok(LoopDevice { device: dev.into() })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = sh("losetup", &["-d", s(&self.device)]) {
            eprintln!("warning: could not detach {}: {e}", self.device.display());
        }
    }
}

/// A tmpfs mounted on a directory, lazily unmounted on drop.
pub struct TmpfsMount {
    pub dir: PathBuf,
}

impl TmpfsMount {
    pub fn mount(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        sh(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(dir)],
        )?;
        Ok(TmpfsMount { dir: dir.into() })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Err(e) = sh("umount", &["-l", s(&self.dir)]) {
            eprintln!("warning: could not unmount {}: {e}", self.dir.display());
        }
    }
}

/// Mount points at or under `root` as this process sees them.
pub fn mounts_under(root: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| Path::new(m).starts_with(root))
        .collect()
}
