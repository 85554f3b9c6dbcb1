//! A drill's sandbox directory and what its teardown may touch.
//!
//! A drill's steps may mount things under the sandbox (a loop-mounted promoted
//! image, a tmpfs, a bind mount of a directory from elsewhere). Teardown must
//! never delete through such a mount: the data behind a bind mount is not the
//! drill's. So teardown (1) unmounts what is mounted under the sandbox, deepest
//! and latest first, as listed in `/proc/self/mountinfo`; (2) detaches the loop
//! devices whose backing file lies in the sandbox; (3) deletes the directory
//! tree without ever crossing into another mount: each directory is opened
//! with `O_NOFOLLOW` relative to its parent and compared (device and mount id)
//! with the sandbox root before anything in it is removed. Whatever could not
//! be unmounted or removed is a [`Leftover`] that names the path and the
//! command that cleans it up.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

/// Set (to `1`) in a drill re-executed in its own mount namespace.
pub const PRIVATE_MOUNTS_ENV: &str = "LIFELINE_DRILL_MOUNT_NS";

/// Runs this process on in a mount namespace of its own, shared by every step
/// of the drill and gone with its last process: it re-executes itself (same
/// PID, same arguments) under `unshare --mount --propagation slave`, so mounts
/// made by one step are seen by the next, never by the host, and vanish with
/// the run; the host's own mounts and unmounts still reach it. Returns `Ok`
/// when the process already runs in one, and the reason when it cannot (not
/// root, no unshare(1), no permission): the steps then share the host's mount
/// namespace and teardown alone removes what they mounted. Call it before
/// anything else, while the process has done nothing it would redo.
pub fn enter_private_mount_namespace() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    if in_private_mount_namespace() {
        return Ok(());
    }
    if !is_root() {
        return Err("not root".into());
    }
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`unshare --mount` failed ({s})")),
        Err(e) => return Err(format!("cannot run unshare (install util-linux): {e}")),
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let err = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PRIVATE_MOUNTS_ENV, "1")
        .exec();
    Err(format!("cannot re-execute under unshare: {err}"))
}

/// Whether this process runs in a drill's own mount namespace.
pub fn in_private_mount_namespace() -> bool {
    std::env::var_os(PRIVATE_MOUNTS_ENV).is_some_and(|v| v == "1")
}

/// Something teardown could not clean up, and how an operator does it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} {path} was left behind ({why}); clean it up with `{fix}`")]
pub struct Leftover {
    /// "mount", "loop device", "directory", "file".
    pub what: &'static str,
    pub path: PathBuf,
    pub why: String,
    /// The exact shell command that cleans it up.
    pub fix: String,
}

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub id: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// What a teardown did and what it left.
#[derive(Debug, Default, Clone)]
pub struct Teardown {
    pub done: Vec<String>,
    pub leftovers: Vec<Leftover>,
}

/// The sandbox directory of one run.
pub struct Sandbox {
    root: PathBuf,
}

/// How long an unmount is retried while the mount is busy (processes just
/// stopped may still hold it for a moment).
const BUSY_GRACE: Duration = Duration::from_secs(5);

/// Undoes the octal escapes of mountinfo paths (`\040` for a space, ...).
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// The mounts at or under `root` in a mountinfo text, in the order to unmount
/// them: deepest first, and of two at the same depth the later one first.
/// Pure.
pub fn mounts_under(root: &Path, mountinfo: &str) -> Vec<MountEntry> {
    let mut found: Vec<MountEntry> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                id: f.first()?.parse().ok()?,
                mount_point: unescape(f.get(4)?),
                fstype: r.first()?.to_string(),
                source: r.get(1).map(|s| unescape(s).display().to_string()).unwrap_or_default(),
            })
        })
        .filter(|m| m.mount_point.starts_with(root))
        .collect();
    found.reverse();
    found.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    found
}

/// The loop devices attached to a file at or under `root`: (device, backing file).
fn loops_backed_under(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.as_bytes().starts_with(b"loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop").join("backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = PathBuf::from(backing.strip_suffix(" (deleted)").unwrap_or(backing));
        if backing.starts_with(root) {
            out.push((Path::new("/dev").join(name), backing));
        }
    }
    out.sort();
    out
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn shell_quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-+:=@".contains(&c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Sandbox {
    /// The sandbox at `root` (made absolute and free of symlinks where it exists,
    /// so it compares with the kernel's mount points).
    pub fn new(root: &Path) -> Sandbox {
        Sandbox {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The mounts under the sandbox as this process sees them, in unmount order.
    pub fn mounts(&self) -> Vec<MountEntry> {
        mounts_under(
            &self.root,
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        )
    }

    /// The command that removes the sandbox without crossing into a mount.
    fn rm_command(&self) -> String {
        format!("rm -rf --one-file-system {}", shell_quote(&self.root))
    }

    /// Unmounts what is mounted under the sandbox, detaches the loop devices
    /// backed by files in it, then (when `remove`) deletes it without crossing
    /// a filesystem boundary. Never fails: what it could not do is a leftover.
    pub fn tear_down(&self, remove: bool) -> Teardown {
        let mut t = Teardown::default();
        if !self.root.exists() {
            return t;
        }
        for m in self.mounts() {
            match unmount(&m.mount_point) {
                Ok(()) => t.done.push(format!(
                    "unmounted {} ({} {})",
                    m.mount_point.display(),
                    m.fstype,
                    m.source
                )),
                Err(why) => {
                    let holders = holders_of(&m.mount_point);
                    let pids: Vec<String> = holders.iter().map(|(p, _)| p.to_string()).collect();
                    let users = holders
                        .iter()
                        .map(|(p, c)| format!("{p} ({c})"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let release = if m.fstype.starts_with("fuse") && !is_root() {
                        format!("fusermount -u {}", shell_quote(&m.mount_point))
                    } else {
                        format!("umount {}", shell_quote(&m.mount_point))
                    };
                    t.leftovers.push(Leftover {
                        what: "mount",
                        path: m.mount_point.clone(),
                        why: format!(
                            "{} {} could not be unmounted: {why}{}; nothing in it was deleted{}",
                            m.fstype,
                            m.source,
                            if users.is_empty() {
                                String::new()
                            } else {
                                format!("; used by process {users}")
                            },
                            if in_private_mount_namespace() {
                                "; it is mounted in the drill's own mount namespace and goes with the last process in it"
                            } else {
                                ""
                            }
                        ),
                        // In the drill's own mount namespace the mount is not
                        // the host's to unmount: it goes with the namespace's
                        // last process.
                        fix: match (pids.is_empty(), in_private_mount_namespace()) {
                            (true, true) => self.rm_command(),
                            (true, false) => format!("{release} && {}", self.rm_command()),
                            (false, true) => format!("kill {} && {}", pids.join(" "), self.rm_command()),
                            (false, false) => {
                                format!("kill {} && {release} && {}", pids.join(" "), self.rm_command())
                            }
                        },
                    })
                }
            }
        }
        let attached = self.detach_loops(&mut t);
        if remove {
            if !attached.is_empty() {
                // A loop device still reads a file in the sandbox: keep it all
                // (the leftover says how to detach it, then remove the sandbox).
                t.leftovers.push(Leftover {
                    what: "directory",
                    path: self.root.clone(),
                    why: "kept because a loop device still uses a file in it".into(),
                    fix: self.rm_command(),
                });
            } else {
                match remove_within_filesystem(&self.root) {
                    Ok(()) => t.done.push(format!("removed {}", self.root.display())),
                    Err(more) => {
                        let known: BTreeSet<PathBuf> = t.leftovers.iter().map(|l| l.path.clone()).collect();
                        t.leftovers
                            .extend(more.into_iter().filter(|l| !known.contains(&l.path)));
                    }
                }
            }
        }
        t
    }

    /// Detaches loop devices whose backing file is in the sandbox; returns the
    /// ones that stay attached (recorded as leftovers).
    fn detach_loops(&self, t: &mut Teardown) -> Vec<(PathBuf, PathBuf)> {
        // A loop device set up by `mount -o loop` clears itself on unmount: give
        // it a moment before detaching it by hand.
        let settle = |deadline: Instant| {
            while !loops_backed_under(&self.root).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            loops_backed_under(&self.root)
        };
        let attached = settle(Instant::now() + Duration::from_secs(2));
        for (dev, backing) in &attached {
            let r = std::process::Command::new("losetup").arg("-d").arg(dev).output();
            match r {
                Ok(o) if o.status.success() => t.done.push(format!(
                    "detached loop device {} (backing file {})",
                    dev.display(),
                    backing.display()
                )),
                _ => {}
            }
        }
        let left = if attached.is_empty() {
            attached
        } else {
            settle(Instant::now() + Duration::from_secs(2))
        };
        for (dev, backing) in &left {
            t.leftovers.push(Leftover {
                what: "loop device",
                path: dev.clone(),
                why: format!("still attached to {}", backing.display()),
                fix: format!("losetup -d {} && {}", shell_quote(dev), self.rm_command()),
            });
        }
        left
    }
}

/// Unmounts `path`, retrying for a while when it is busy.
fn unmount(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + BUSY_GRACE;
    loop {
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(rustix::io::Errno::BUSY) => {
                return Err(format!(
                    "busy: something still uses it (see `fuser -vm {}`)",
                    shell_quote(path)
                ));
            }
            Err(rustix::io::Errno::PERM) => return Err("not permitted (not root)".into()),
            // Already gone (e.g. it went with its parent mount).
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) if !is_mount_point(path) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Processes (PID, command name) whose working directory, root or an open
/// file lies at or under `path`: what keeps a mount busy.
fn holders_of(path: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = p.path();
        let under = |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(path));
        let uses = under(dir.join("cwd"))
            || under(dir.join("root"))
            || std::fs::read_dir(dir.join("fd"))
                .map(|fds| fds.flatten().any(|fd| under(fd.path())))
                .unwrap_or(false);
        if uses {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| mounts_under(path, &m).iter().any(|e| e.mount_point == path))
        .unwrap_or(false)
}

/// Where a directory lives: its device and mount.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Place {
    dev: (u32, u32),
    /// `None` where the kernel does not report mount ids (before Linux 5.8).
    mnt: Option<u64>,
}

fn place_of(fd: impl AsFd, name: &OsStr) -> rustix::io::Result<(Place, rustix::fs::FileType)> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let st = rustix::fs::statx(fd, name, flags, StatxFlags::TYPE | StatxFlags::MNT_ID)?;
    let mnt = StatxFlags::from_bits_retain(st.stx_mask)
        .contains(StatxFlags::MNT_ID)
        .then_some(st.stx_mnt_id);
    Ok((
        Place {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            mnt,
        },
        rustix::fs::FileType::from_raw_mode(st.stx_mode as u32),
    ))
}

fn open_dir(fd: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        fd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Deletes `root` and everything under it that is on the same mount as `root`
/// itself. A directory entry on another filesystem or mount (a mount point, a
/// file bind-mounted in) is never entered or removed: it is a leftover, and so
/// are the directories above it. Symbolic links are removed, never followed.
pub fn remove_within_filesystem(root: &Path) -> Result<(), Vec<Leftover>> {
    let fail = |why: String| {
        vec![Leftover {
            what: "directory",
            path: root.to_path_buf(),
            why,
            fix: format!("rm -rf --one-file-system {}", shell_quote(root)),
        }]
    };
    let dir = match open_dir(rustix::fs::CWD, root.as_os_str()) {
        Ok(d) => d,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(fail(format!("cannot open it: {e}"))),
    };
    let (home, _) = place_of(&dir, OsStr::new("")).map_err(|e| fail(format!("cannot stat it: {e}")))?;
    // The root itself must not be a mount point: its contents would be another
    // filesystem's.
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        let above = open_dir(rustix::fs::CWD, parent.as_os_str())
            .and_then(|p| place_of(&p, OsStr::new("")))
            .map_err(|e| fail(format!("cannot stat its parent: {e}")))?;
        if above.0 != home {
            return Err(vec![Leftover {
                what: "mount",
                path: root.to_path_buf(),
                why: "another filesystem is mounted on it; nothing in it was deleted".into(),
                fix: format!(
                    "umount {} && rm -rf --one-file-system {}",
                    shell_quote(root),
                    shell_quote(root)
                ),
            }]);
        }
    }
    let mut leftovers = Vec::new();
    empty_dir(&dir, root, home, root, &mut leftovers);
    drop(dir);
    if leftovers.is_empty()
        && let Err(e) = std::fs::remove_dir(root)
    {
        leftovers.extend(fail(format!("cannot remove it: {e}")));
    }
    if leftovers.is_empty() { Ok(()) } else { Err(leftovers) }
}

/// Empties the directory open as `dir` (at `path`); true when it is empty.
fn empty_dir(dir: &OwnedFd, path: &Path, home: Place, root: &Path, leftovers: &mut Vec<Leftover>) -> bool {
    let rm = format!("rm -rf --one-file-system {}", shell_quote(root));
    let mut entries = match rustix::fs::Dir::read_from(dir) {
        Ok(d) => d,
        Err(e) => {
            leftovers.push(Leftover {
                what: "directory",
                path: path.to_path_buf(),
                why: format!("cannot list it: {e}"),
                fix: rm,
            });
            return false;
        }
    };
    let mut empty = true;
    let mut names = Vec::new();
    for e in entries.by_ref() {
        match e {
            Ok(e) => {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_os_string());
                }
            }
            Err(e) => {
                leftovers.push(Leftover {
                    what: "directory",
                    path: path.to_path_buf(),
                    why: format!("cannot list it: {e}"),
                    fix: rm.clone(),
                });
                return false;
            }
        }
    }
    for name in names {
        let child = path.join(&name);
        let (place, kind) = match place_of(dir, &name) {
            Ok(x) => x,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                leftovers.push(Leftover {
                    what: "file",
                    path: child,
                    why: format!("cannot stat it: {e}"),
                    fix: rm.clone(),
                });
                empty = false;
                continue;
            }
        };
        if place != home {
            leftovers.push(Leftover {
                what: "mount",
                path: child.clone(),
                why: "another filesystem is mounted there; nothing in it was deleted".into(),
                fix: format!("umount {} && {rm}", shell_quote(&child)),
            });
            empty = false;
            continue;
        }
        if kind == rustix::fs::FileType::Directory {
            let sub = match open_dir(dir, &name) {
                Ok(s) => s,
                Err(e) => {
                    leftovers.push(Leftover {
                        what: "directory",
                        path: child,
                        why: format!("cannot open it: {e}"),
                        fix: rm.clone(),
                    });
                    empty = false;
                    continue;
                }
            };
            // Checked again on the open directory: a mount may have appeared
            // between the stat and the open.
            match place_of(&sub, OsStr::new("")) {
                Ok((p, _)) if p == home => {}
                _ => {
                    leftovers.push(Leftover {
                        what: "mount",
                        path: child.clone(),
                        why: "another filesystem is mounted there; nothing in it was deleted".into(),
                        fix: format!("umount {} && {rm}", shell_quote(&child)),
                    });
                    empty = false;
                    continue;
                }
            }
            if !empty_dir(&sub, &child, home, root, leftovers) {
                empty = false;
                continue;
            }
            drop(sub);
            if let Err(e) = rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR) {
                leftovers.push(Leftover {
                    what: "directory",
                    path: child,
                    why: format!("cannot remove it: {e}"),
                    fix: rm.clone(),
                });
                empty = false;
            }
        } else if let Err(e) = rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
            leftovers.push(Leftover {
                what: "file",
                path: child,
                why: format!("cannot remove it: {e}"),
                fix: rm.clone(),
            });
            empty = false;
        }
    }
    empty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_under_the_root_come_deepest_and_latest_first() {
        let info = "\
22 1 0:21 / /proc rw - proc proc rw
90 30 0:50 / /srv/runs/d1/a rw - tmpfs none rw
91 90 7:3 / /srv/runs/d1/a/b rw - ext4 /dev/loop3 rw
92 30 0:52 / /srv/runs/d1/with\\040space rw - tmpfs none rw
93 30 0:53 / /srv/runs/d10 rw - tmpfs none rw
94 90 0:54 / /srv/runs/d1/a rw - tmpfs again rw
";
        let m = mounts_under(Path::new("/srv/runs/d1"), info);
        let points: Vec<String> = m
            .iter()
            .map(|m| format!("{} {}", m.id, m.mount_point.display()))
            .collect();
        assert_eq!(
            points,
            [
                "91 /srv/runs/d1/a/b",
                "94 /srv/runs/d1/a",
                "92 /srv/runs/d1/with space",
                "90 /srv/runs/d1/a"
            ]
        );
        assert_eq!(m[0].source, "/dev/loop3");
        assert_eq!(m[0].fstype, "ext4");
    }

    /// `mount ARGS AT`; true when it succeeded.
    fn mount(args: &[&str], at: &Path) -> bool {
        std::process::Command::new("mount")
            .args(args)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn removal_refuses_a_root_that_is_itself_a_mount_point() {
        if !is_root() {
            eprintln!("SKIP removal_refuses_a_root_that_is_itself_a_mount_point: needs root to mount a tmpfs");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sandbox");
        std::fs::create_dir_all(&root).unwrap();
        if !mount(&["-t", "tmpfs", "-o", "size=1m", "none"], &root) {
            eprintln!("SKIP removal_refuses_a_root_that_is_itself_a_mount_point: mount -t tmpfs failed");
            return;
        }
        std::fs::write(root.join("precious"), "keep").unwrap();
        let left = remove_within_filesystem(&root);
        let survived = std::fs::read_to_string(root.join("precious"));
        let _ = rustix::mount::unmount(&root, rustix::mount::UnmountFlags::DETACH);
        assert_eq!(survived.unwrap(), "keep");
        let left = left.unwrap_err();
        assert_eq!((left[0].what, left[0].path.clone()), ("mount", root));
    }

    #[test]
    fn removal_takes_files_dirs_and_symlinks_but_never_follows_a_link_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sandbox");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/link")).unwrap();
        remove_within_filesystem(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
    }

    /// A tmpfs mounted inside the tree: removal never deletes what is in it,
    /// names it, and says how to clean it up.
    #[test]
    fn removal_never_crosses_into_a_mounted_filesystem() {
        if !is_root() {
            eprintln!("SKIP removal_never_crosses_into_a_mounted_filesystem: needs root to mount a tmpfs");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sandbox");
        let mnt = root.join("deep/mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::write(root.join("deep/own"), "x").unwrap();
        if !mount(&["-t", "tmpfs", "-o", "size=1m", "none"], &mnt) {
            eprintln!("SKIP removal_never_crosses_into_a_mounted_filesystem: mount -t tmpfs failed");
            return;
        }
        std::fs::write(mnt.join("precious"), "keep").unwrap();
        let left = remove_within_filesystem(&root).unwrap_err();
        let survived = std::fs::read_to_string(mnt.join("precious"));
        let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
        assert_eq!(survived.unwrap(), "keep", "removal deleted through the mount");
        assert!(!root.join("deep/own").exists(), "files beside the mount go");
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].what, "mount");
        assert_eq!(left[0].path, mnt);
        assert!(
            left[0].fix.starts_with(&format!("umount {}", mnt.display())),
            "{}",
            left[0]
        );
        assert!(left[0].to_string().contains("rm -rf --one-file-system"), "{}", left[0]);
    }

    /// A sandbox whose run mounted a tmpfs (with a file) and bind-mounted a
    /// directory from outside: teardown unmounts both, removes the sandbox, and
    /// the outside directory keeps its file.
    #[test]
    fn teardown_unmounts_what_the_run_mounted_and_removes_the_rest() {
        if !is_root() {
            eprintln!("SKIP teardown_unmounts_what_the_run_mounted_and_removes_the_rest: needs root to mount");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        let root = dir.path().join("sandbox");
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::create_dir_all(root.join("bound")).unwrap();
        if !mount(&["-t", "tmpfs", "-o", "size=1m", "none"], &root.join("t")) {
            eprintln!("SKIP teardown_unmounts_what_the_run_mounted_and_removes_the_rest: mount -t tmpfs failed");
            return;
        }
        std::fs::write(root.join("t/f"), "x").unwrap();
        assert!(mount(&["--bind", outside.to_str().unwrap()], &root.join("bound")));
        let t = Sandbox::new(&root).tear_down(true);
        assert!(t.leftovers.is_empty(), "{:?}", t.leftovers);
        assert!(!root.exists(), "{:?}", t.done);
        assert_eq!(std::fs::read_to_string(outside.join("precious")).unwrap(), "keep");
        assert!(
            t.done
                .iter()
                .any(|d| d.starts_with("unmounted") && d.contains("/bound")),
            "{:?}",
            t.done
        );
        assert!(
            t.done.iter().any(|d| d.starts_with("unmounted") && d.contains("/t ")),
            "{:?}",
            t.done
        );
    }
}
