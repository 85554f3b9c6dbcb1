//! `lifeline mount`: the volumes of a point (or of every point of a group) as
//! read-only files in a FUSE mount, so an operator can loop-mount one and copy
//! a single file out. Reads go through the same path as `lifeline serve`
//! ([`Export`] over a [`PointImage`], decoded segments in a shared bounded
//! [`SegmentCache`], read-ahead for sequential readers); nothing is written
//! anywhere, the repository least of all.
//!
//! A read that meets a damaged or missing object fails with EIO (the object is
//! named in the log), never with other bytes: FUSE would fill the rest of a
//! short read with zeros, so a read is answered whole or not at all.
//!
//! FUSE comes from the `fuser` crate without libfuse: as root it mounts with
//! the mount(2) syscall; other users need the setuid `fusermount3` (Debian
//! `fuse3`). Several threads answer the kernel's requests (one `/dev/fuse`
//! descriptor each), and reads may be as large as the kernel allows (FUSE's
//! 256 pages: 1 MiB).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyXattr, Request, Session, SessionUnmounter,
};

use super::export::Export;
use super::point_files::{NodeKind, PointFiles, ROOT_INODE, point_dir_name};
use super::point_image::PointImage;
use super::segment_cache::SegmentCache;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::point::RecoveryPoint;
use crate::restore::{PointSelector, select_point};
use crate::tenant_repository::TenantRepository;

/// Threads answering the kernel's requests.
const FUSE_THREADS: usize = 4;
/// Threads decoding segments ahead of sequential readers.
const READ_AHEAD_THREADS: usize = 2;
/// How long the kernel may keep names and attributes: they never change.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a stop keeps retrying an unmount that finds the mount busy: the
/// loop device of a loop mount that was just unmounted lets go of its image
/// a moment later.
const BUSY_GRACE: Duration = Duration::from_secs(3);
/// How long the kernel may take to end the session after an unmount.
const SESSION_END_GRACE: Duration = Duration::from_secs(2);

/// Which points to show.
#[derive(Debug, Clone, Copy)]
pub enum MountPoints {
    /// One point: its volumes at the top, `DIR/<volume>.img`.
    One(PointSelector),
    /// Every point of the group: `DIR/<seq>-<taken_at>/<volume>.img`.
    All,
}

/// What to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub group: String,
    pub points: MountPoints,
    /// Bound of the decoded segment cache shared by every image.
    pub cache_bytes: usize,
}

/// A point shown by a mount.
#[derive(Debug, Clone)]
pub struct MountedPoint {
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    /// Its directory in an every-point mount; `None`: the top.
    pub dir: Option<String>,
    /// (name, size) of each volume, in order.
    pub volumes: Vec<(String, u64)>,
}

/// The points opened for mounting.
pub struct MountContent {
    pub files: PointFiles,
    pub points: Vec<MountedPoint>,
    /// Points of an every-point mount that could not be opened (not shown).
    pub skipped: Vec<(u64, Error)>,
}

/// Opens the point records (no volume data is read) and lays out the files.
/// One point that fails to open fails the mount; with every point, the ones
/// that open are shown and the others are listed in `skipped`, unless none
/// opens.
pub fn open_for_mounting(repo: &dyn TenantRepository, keys: &Keys, opts: &MountOptions) -> Result<MountContent> {
    let records = match opts.points {
        MountPoints::One(sel) => vec![select_point(repo, &opts.group, sel)?],
        MountPoints::All => {
            let all = repo.points(Some(&opts.group))?;
            if all.is_empty() {
                // The same "no point" error, saying what to do.
                select_point(repo, &opts.group, PointSelector::Latest)?;
            }
            all
        }
    };
    let location = repo.describe();
    let cache = Arc::new(SegmentCache::new(opts.cache_bytes));
    let store = repo.store(&opts.group)?;
    let mut files = PointFiles::new(SystemTime::now());
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    let mut number = 0usize;
    for record in &records {
        let point: RecoveryPoint = match record.open(keys, &location) {
            Ok(p) => p,
            Err(e) if matches!(opts.points, MountPoints::All) => {
                skipped.push((record.header.seq, e));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mtime = SystemTime::from(point.header.taken_at);
        let (parent, dir) = match opts.points {
            MountPoints::One(_) => (ROOT_INODE, None),
            MountPoints::All => {
                let name = point_dir_name(point.header.seq, point.header.taken_at);
                (files.add_dir(ROOT_INODE, name.clone(), mtime), Some(name))
            }
        };
        let mut volumes = Vec::new();
        for entry in &point.body.volumes {
            let image = PointImage::new(store.clone(), keys.clone(), number, entry, cache.clone());
            number += 1;
            files.add_image(parent, Arc::new(Export::new(image, None)), mtime);
            volumes.push((entry.name.clone(), entry.size));
        }
        points.push(MountedPoint {
            seq: point.header.seq,
            taken_at: point.header.taken_at,
            dir,
            volumes,
        });
    }
    if points.is_empty()
        && let Some((_, e)) = skipped.pop()
    {
        return Err(e);
    }
    Ok(MountContent { files, points, skipped })
}

/// Checks that `dir` is an empty directory, before anything is mounted on it
/// (a mount would hide what it holds).
pub fn check_mount_dir(dir: &Path) -> Result<()> {
    let bad = |reason: String| Error::MountDirectory {
        dir: dir.to_path_buf(),
        reason,
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "does not exist: create it first (mkdir {})",
                dir.display()
            )));
        }
        Err(e) => return Err(bad(format!("cannot be read ({e})"))),
    };
    if !meta.is_dir() {
        return Err(bad("is not a directory: give an empty directory to mount on".into()));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| bad(format!("cannot be listed ({e})")))?;
    if let Some(first) = entries.next() {
        let first = first.map_err(|e| bad(format!("cannot be listed ({e})")))?;
        return Err(bad(format!(
            "is not empty (it holds `{}`{}): mounting would hide its files; give an empty directory",
            first.file_name().to_string_lossy(),
            match entries.count() {
                0 => String::new(),
                n => format!(" and {n} more"),
            }
        )));
    }
    Ok(())
}

enum MountEvent {
    /// Unmount and end (SIGINT, SIGTERM).
    Stop,
    /// The kernel ended the session (unmounted, from here or from outside).
    Ended,
}

/// Asks a running [`PointMount`] to unmount (from any thread, e.g. a signal
/// watcher).
#[derive(Clone)]
pub struct MountStopper(Sender<MountEvent>);

impl MountStopper {
    pub fn stop(&self) {
        let _ = self.0.send(MountEvent::Stop);
    }
}

/// How a mount ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted on a [`MountStopper::stop`].
    Stopped,
    /// Unmounted by someone else (`umount DIR`).
    FromOutside,
}

/// Points mounted on a directory.
pub struct PointMount {
    dir: PathBuf,
    session: JoinHandle<std::io::Result<()>>,
    stopper: Sender<MountEvent>,
    events: Receiver<MountEvent>,
    read_ahead: Vec<JoinHandle<()>>,
}

/// fuser's own unmount, taken by the file system when its session ends.
type FuserUnmount = Arc<OnceLock<Mutex<SessionUnmounter>>>;

impl PointMount {
    /// Mounts `content` read-only on the empty directory `dir` and starts
    /// answering reads; the files are there when this returns.
    pub fn mount(content: MountContent, dir: &Path) -> Result<PointMount> {
        check_mount_dir(dir)?;
        let (stopper, events) = mpsc::channel();
        let (ra_tx, ra_rx) = sync_channel::<(Arc<Export>, usize)>(64);
        let ra_rx = Arc::new(Mutex::new(ra_rx));
        let fuser_unmount = FuserUnmount::default();
        let fs = PointFs {
            files: content.files,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            read_ahead: ra_tx,
            ended: stopper.clone(),
            fuser_unmount: fuser_unmount.clone(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lifeline".into()),
            MountOption::Subtype("lifeline".into()),
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoExec,
            MountOption::NoAtime,
            MountOption::DefaultPermissions,
        ];
        config.n_threads = Some(FUSE_THREADS);
        config.clone_fd = true;
        let mut session = Session::new(fs, dir, &config).map_err(|e| mount_error(dir, e))?;
        let _ = fuser_unmount.set(Mutex::new(session.unmount_callable()));
        // Run here rather than with `Session::spawn`, which would keep the
        // mount from the unmounter above.
        let session = std::thread::Builder::new()
            .name("lifeline-fuse".into())
            .spawn(move || session.run())
            .map_err(|e| Error::io("start the FUSE session thread", e))?;
        let read_ahead = (0..READ_AHEAD_THREADS)
            .map(|_| {
                let rx = ra_rx.clone();
                std::thread::spawn(move || read_ahead_worker(&rx))
            })
            .collect();
        Ok(PointMount {
            dir: dir.to_path_buf(),
            session,
            stopper,
            events,
            read_ahead,
        })
    }

    /// Waits up to `grace` for the kernel to end the session.
    fn session_ends_within(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(MountEvent::Ended) | Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                // Another Ctrl-C: the unmount is done already.
                Ok(MountEvent::Stop) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    pub fn stopper(&self) -> MountStopper {
        MountStopper(self.stopper.clone())
    }

    /// Serves until a stop or an unmount from outside. A stop that finds the
    /// mount busy (a loop device still on an image) calls `busy` with the
    /// error and keeps serving until the next stop.
    pub fn wait(self, mut busy: impl FnMut(&Error)) -> Result<Unmounted> {
        let how = loop {
            match self.events.recv() {
                Ok(MountEvent::Ended) | Err(_) => break Unmounted::FromOutside,
                Ok(MountEvent::Stop) => match unmount(&self.dir) {
                    Ok(()) => break Unmounted::Stopped,
                    Err(e @ Error::MountBusy { .. }) => busy(&e),
                    Err(e) => return Err(e),
                },
            }
        };
        if how == Unmounted::Stopped && !self.session_ends_within(SESSION_END_GRACE) {
            // Unmounted here, but a copy of the mount lives on in another
            // mount namespace (one created while mounted: `unshare -m`, a
            // container), so the kernel keeps the session. Returning lets the
            // process exit, which closes /dev/fuse and ends it there too.
            tracing::warn!(
                dir = %self.dir.display(),
                "unmounted, but a copy of the mount lives on in another mount namespace; it ends when this process exits"
            );
            return Ok(how);
        }
        // The unmount aborted the kernel's connection: the session's threads
        // see it and return.
        let ended = self
            .session
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the FUSE session thread panicked")));
        ended.map_err(|e| Error::io(format!("FUSE session of {}", self.dir.display()), e))?;
        for w in self.read_ahead {
            let _ = w.join();
        }
        Ok(how)
    }
}

/// Unmounts `dir`, retrying a busy mount for [`BUSY_GRACE`].
fn unmount(dir: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        match rustix::mount::unmount(dir, rustix::mount::UnmountFlags::empty()) {
            // EINVAL: not a mount point any more (unmounted from outside
            // meanwhile); the session has ended or is ending.
            Ok(()) | Err(rustix::io::Errno::INVAL) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if started.elapsed() < BUSY_GRACE => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(rustix::io::Errno::BUSY) => return Err(Error::MountBusy { dir: dir.to_path_buf() }),
            Err(e) => {
                return Err(Error::io(
                    format!("unmount {}", dir.display()),
                    std::io::Error::from_raw_os_error(e.raw_os_error()),
                ));
            }
        }
    }
}

fn mount_error(dir: &Path, e: std::io::Error) -> Error {
    let fix = if !Path::new("/dev/fuse").exists() {
        "there is no /dev/fuse: load the module (modprobe fuse), or give the container /dev/fuse"
    } else if !rustix::process::geteuid().is_root() {
        "mounting needs root, or the setuid fusermount3 for other users (Debian: apt-get install fuse3)"
    } else {
        "check that /dev/fuse can be opened and that the directory is not already a mount point"
    };
    Error::Mount {
        dir: dir.to_path_buf(),
        source: e,
        fix: fix.into(),
    }
}

fn read_ahead_worker(rx: &Mutex<Receiver<(Arc<Export>, usize)>>) {
    loop {
        let job = rx.lock().expect("read-ahead queue").recv();
        // The channel closes when the file system is dropped.
        let Ok((export, segment)) = job else { return };
        // An error here is reported by the read that needs the segment.
        let _ = export.image().segment(segment);
    }
}

/// The file system the kernel talks to.
struct PointFs {
    files: PointFiles,
    uid: u32,
    gid: u32,
    read_ahead: SyncSender<(Arc<Export>, usize)>,
    ended: Sender<MountEvent>,
    fuser_unmount: FuserUnmount,
}

impl PointFs {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.files.get(ino)?;
        let (kind, size, perm, nlink) = match &node.kind {
            NodeKind::Dir(children) => (FileType::Directory, 0, 0o555, 2 + children.len() as u32),
            NodeKind::Image(e) => (FileType::RegularFile, e.size(), 0o444, 1),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            // What cp and friends take as their buffer size.
            blksize: 1 << 20,
            flags: 0,
        })
    }
}

impl Filesystem for PointFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // As much readahead as the kernel offers, and room for the kernel to
        // keep every thread busy with it.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        // The mount is gone by now (unmounted here or from outside). Taking
        // fuser's handle of it keeps fuser from trying again when the session
        // drops it: fuser 0.18 takes a dead connection for a live mount and
        // would log a failed unmount (EINVAL, ignored here).
        if let Some(u) = self.fuser_unmount.get() {
            let _ = u.lock().expect("fuser unmount").unmount();
        }
        let _ = self.ended.send(MountEvent::Ended);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok()
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Nothing is ever written.
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 { reply.size(0) } else { reply.data(&[]) }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = name
            .to_str()
            .and_then(|n| self.files.lookup(parent.0, n))
            .and_then(|ino| self.attr(ino));
        match found {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.files.get(ino.0).map(|n| &n.kind) {
            None => reply.error(Errno::ENOENT),
            Some(NodeKind::Dir(_)) => reply.error(Errno::EISDIR),
            Some(NodeKind::Image(_)) if flags.acc_mode() != OpenAccMode::O_RDONLY => reply.error(Errno::EROFS),
            // The bytes of a point never change: the page cache may keep them
            // across opens.
            Some(NodeKind::Image(_)) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let export = match self.files.get(ino.0).map(|n| &n.kind) {
            Some(NodeKind::Image(e)) => e,
            Some(NodeKind::Dir(_)) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let len = export.size().saturating_sub(offset).min(size as u64);
        if len == 0 {
            return reply.data(&[]);
        }
        for segment in export.read_ahead(offset, len) {
            if let Err(TrySendError::Disconnected(_)) = self.read_ahead.try_send((export.clone(), segment)) {
                break;
            }
        }
        let mut buf = vec![0u8; len as usize];
        match export.read(offset, &mut buf) {
            Ok(()) => reply.data(&buf),
            Err(e) => {
                tracing::error!(
                    file = %self.files.path(ino.0),
                    volume = export.name(),
                    offset,
                    length = len,
                    "read failed, answered EIO: {e}"
                );
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(node) = self.files.get(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let NodeKind::Dir(children) = &node.kind else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, "."),
            (node.parent, FileType::Directory, ".."),
        ];
        for c in children {
            let Some(child) = self.files.get(*c) else { continue };
            let kind = match child.kind {
                NodeKind::Dir(_) => FileType::Directory,
                NodeKind::Image(_) => FileType::RegularFile,
            };
            entries.push((*c, kind, child.name.as_str()));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            // The offset given with an entry is where the next listing resumes.
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok()
    }
}
