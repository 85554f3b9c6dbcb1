//! Instant promote: `volume.promote` with `instant = true`. Instead of restoring
//! every byte before the next step may start, the run serves the point over NBD
//! from this process (the replicator's serve library, on 127.0.0.1:0) and
//! attaches each volume as a file through `nbdfuse`, so services start on the
//! point at once and RTO does not grow with volume size. Clients' writes go to
//! an overlay in the run's directory; the point in the repository never changes.
//!
//! Where the files appear: in a drill without hydration, exactly where the full
//! promote would have written the volume (the sandbox's `volumes/NAME.img`),
//! mounted over an empty file ("naked" nbdfuse mount); otherwise (a failover
//! hydrating the targets, or a drill asked to hydrate) in the run's
//! `instant/NAME.img`, the target being what hydration writes.
//!
//! Hydration (serve's `Hydration`, one thread per volume) copies the point into
//! the targets while clients read and write; client writes reach the target
//! too. Its progress is a typed [`HydrationRecord`] in the run record (events
//! `hydration_progress`, shown by `lifeline runs`), and `hydration.json` in the
//! overlay directory, written as `lifeline serve` writes it, for scripts. It is on by default in a
//! failover, switchover and failback, off in a drill (`hydrate = true` in a
//! drill writes only inside the sandbox: drill targets are sandbox paths).
//!
//! Teardown (at the end of the run, whatever its outcome, Ctrl-C included):
//! a run that hydrates waits for hydration to finish unless it was aborted;
//! then each mount is unmounted (never deleted through) and nbdfuse waited
//! for, the server stopped (overlays flushed), and the overlay removed — only
//! when nothing in it can be lost: in a drill (its writes are the drill's
//! own, and the teardown says how many blocks it discarded) or when every
//! hydration finished (the targets hold every write). An unfinished hydration
//! of a recovery keeps its overlay and says how to resume it
//! (`lifeline serve --overlay-dir ... --hydrate ...`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lifeline_replicator::serve::{
    DEFAULT_CACHE_BYTES, Export, Hydration, HydrationProgress, HydrationStatusFile, ReadMeter, ServeOptions, Shutdown,
    open_for_serving,
};
use lifeline_replicator::{Keys, PointSelector, TenantRepository};

use super::Shared;

/// The program that attaches an export as a file.
pub const NBDFUSE: &str = "nbdfuse";
/// How long nbdfuse may take to say it serves (its pid file).
const ATTACH_DEADLINE: Duration = Duration::from_secs(20);
/// How long nbdfuse may take to exit once its mount is gone.
const DETACH_GRACE: Duration = Duration::from_secs(10);
/// Least time between two recorded hydration progress events.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub use crate::run_record::{HydrationRecord, HydrationState};

/// What an instant promote needs to know, resolved by the `volume.promote` step.
pub struct InstantRequest {
    pub step: String,
    pub group: String,
    pub seq: u64,
    /// (volume, target path) of each volume to attach.
    pub volumes: Vec<(String, PathBuf)>,
    pub run_dir: PathBuf,
    pub hydrate: bool,
    /// Bytes per second at most (0: no limit).
    pub hydrate_rate: u64,
    pub drill: bool,
    /// The `lifeline serve` arguments that reach the same repository (repo,
    /// key file, TLS), for the command that resumes a kept overlay.
    pub serve_args: Vec<String>,
}

/// One volume attached as a file.
struct Attachment {
    volume: String,
    file: PathBuf,
    child: Child,
}

/// A point served by this run, its mounts and hydrations. Lives in
/// [`Shared`] from its promote to the run's teardown.
pub struct InstantPromote {
    pub step: String,
    drill: bool,
    /// `lifeline serve ...` that resumes this promote's hydration from its
    /// overlay (same point, same targets).
    resume: String,
    shutdown: Shutdown,
    server: Option<JoinHandle<std::io::Result<()>>>,
    exports: Vec<Arc<Export>>,
    mounts: Vec<Attachment>,
    overlay_dir: PathBuf,
    hydration_stop: Arc<AtomicBool>,
    hydrations: Vec<JoinHandle<()>>,
    hydrations_started: bool,
    pending: Vec<Hydration>,
    /// `hydration.json` in the overlay, as `lifeline serve` keeps it (when hydrating).
    status: Option<Arc<HydrationStatusFile>>,
    /// The NBD server's address.
    addr: std::net::SocketAddr,
    /// What the server read from the repository.
    reads: Arc<ReadMeter>,
    /// Kept open while the exports read from it.
    target: Option<Box<dyn std::any::Any + Send>>,
}

use crate::run_record::now;

/// `nbd://127.0.0.1:PORT/NAME`, the name percent-encoded.
fn export_uri(addr: std::net::SocketAddr, name: &str) -> String {
    let mut n = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            n.push(b as char);
        } else {
            n.push_str(&format!("%{b:02X}"));
        }
    }
    format!("nbd://{addr}/{n}")
}

/// Whether nbdfuse and /dev/fuse are here; the reason when not.
pub fn attach_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent (no FUSE in this kernel or container)".into());
    }
    let ok = Command::new(NBDFUSE)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| format!("`{NBDFUSE}` is not installed (Debian package nbdfuse)"))
}

/// Opens the point for serving, starts the NBD server and attaches every
/// volume. Blocking. On error, whatever was started is stopped again.
pub fn start(
    repo: &dyn TenantRepository,
    keys: &Keys,
    req: &InstantRequest,
) -> Result<(InstantPromote, Vec<(String, PathBuf)>), String> {
    if let Some(why) = attach_unavailable() {
        return Err(format!(
            "instant promote cannot attach volumes: {why}; use a full promote (drop `instant = true`)"
        ));
    }
    let work = req.run_dir.join("instant");
    let overlay_dir = work.join("overlay");
    std::fs::create_dir_all(&overlay_dir).map_err(|e| format!("create {}: {e}", overlay_dir.display()))?;
    let served = open_for_serving(
        repo,
        keys,
        &ServeOptions {
            group: req.group.clone(),
            point: PointSelector::Seq(req.seq),
            volumes: req.volumes.iter().map(|v| v.0.clone()).collect(),
            overlay_dir: Some(overlay_dir.clone()),
            read_only: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
        },
    )
    .map_err(|e| format!("serve point {} of group `{}`: {e}", req.seq, req.group))?;
    let exports: Vec<Arc<Export>> = served.server.exports().to_vec();
    let reads = served.reads.clone();
    let mut pending = Vec::new();
    if req.hydrate {
        for (name, target) in &req.volumes {
            let export = exports
                .iter()
                .find(|e| e.name() == name)
                .cloned()
                .ok_or_else(|| format!("volume `{name}` is not served"))?;
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            pending.push(
                Hydration::open(export, &overlay_dir, target, req.hydrate_rate)
                    .map_err(|e| format!("hydrate volume `{name}` into {}: {e}", target.display()))?,
            );
        }
    }
    // Scripts watch a run's hydration as they watch `lifeline serve`'s.
    let status = if pending.is_empty() {
        None
    } else {
        Some(Arc::new(
            HydrationStatusFile::create(&overlay_dir, &req.group, req.seq, served.reads.clone(), &pending)
                .map_err(|e| format!("hydration status in {}: {e}", overlay_dir.display()))?,
        ))
    };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listen on 127.0.0.1:0: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shutdown = Shutdown::new(&listener).map_err(|e| e.to_string())?;
    let server = served.server;
    let handle = std::thread::Builder::new()
        .name("instant-nbd".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || server.serve(listener, &shutdown)
        })
        .map_err(|e| format!("start the NBD server thread: {e}"))?;
    let mut ip = InstantPromote {
        step: req.step.clone(),
        drill: req.drill,
        resume: {
            let mut a = vec!["lifeline".to_string(), "serve".to_string()];
            a.extend(req.serve_args.iter().cloned());
            a.extend([
                "--group".to_string(),
                req.group.clone(),
                "--point".to_string(),
                req.seq.to_string(),
                "--overlay-dir".to_string(),
                overlay_dir.display().to_string(),
                "--listen".to_string(),
                "127.0.0.1:0".to_string(),
            ]);
            for (name, target) in &req.volumes {
                a.push("--volume".into());
                a.push(name.clone());
                if req.hydrate {
                    a.push("--hydrate".into());
                    a.push(format!("{name}={}", target.display()));
                }
            }
            a.iter().map(|x| shell_quote(x)).collect::<Vec<_>>().join(" ")
        },
        shutdown,
        server: Some(handle),
        exports,
        mounts: Vec::new(),
        overlay_dir,
        hydration_stop: Arc::new(AtomicBool::new(false)),
        hydrations: Vec::new(),
        hydrations_started: false,
        pending,
        status,
        addr,
        reads,
        target: None,
    };
    let mut files = Vec::new();
    for (name, target) in &req.volumes {
        // In a drill that does not hydrate, the file is where the full promote
        // would have put it; otherwise the target is hydration's.
        let file = if req.drill && !req.hydrate {
            target.clone()
        } else {
            work.join(format!("{name}.img"))
        };
        match attach(&work, name, &file, &export_uri(addr, name)) {
            Ok(child) => {
                ip.mounts.push(Attachment {
                    volume: name.clone(),
                    file: file.clone(),
                    child,
                });
                files.push((name.clone(), file));
            }
            Err(e) => {
                let notes = ip.tear_down(false);
                return Err(format!("{e} (torn down: {})", notes.join("; ")));
            }
        }
    }
    Ok((ip, files))
}

/// Starts nbdfuse over `file` (an empty regular file made for it) and waits
/// until it serves.
fn attach(work: &Path, name: &str, file: &Path, uri: &str) -> Result<Child, String> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(file) {
        Ok(m) if m.is_file() && m.len() == 0 => {}
        Ok(_) => {
            return Err(format!(
                "{} already exists: an instant promote attaches volumes over a fresh empty file only",
                file.display()
            ));
        }
        Err(_) => {
            std::fs::File::create(file).map_err(|e| format!("create {}: {e}", file.display()))?;
        }
    }
    let pidfile = work.join(format!("nbdfuse-{name}.pid"));
    let log = work.join(format!("nbdfuse-{name}.log"));
    let _ = std::fs::remove_file(&pidfile);
    let err = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let mut child = Command::new(NBDFUSE)
        .arg("-P")
        .arg(&pidfile)
        .arg(file)
        .arg(uri)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("start {NBDFUSE} for volume `{name}`: {e}"))?;
    let deadline = Instant::now() + ATTACH_DEADLINE;
    loop {
        if std::fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0) {
            return Ok(child);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let msg = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "{NBDFUSE} for volume `{name}` exited ({st}) before serving {}: {}",
                file.display(),
                msg.trim()
            ));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{NBDFUSE} for volume `{name}` did not serve {} within {}s (log: {})",
                file.display(),
                ATTACH_DEADLINE.as_secs(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl InstantPromote {
    /// Keeps `x` (the repository the exports read) open until teardown.
    pub fn keep_open(&mut self, x: Box<dyn std::any::Any + Send>) {
        self.target = Some(x);
    }

    /// `nbd://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("nbd://{}", self.addr)
    }

    pub fn overlay_dir(&self) -> &Path {
        &self.overlay_dir
    }

    /// Starts the hydrations opened by [`start`], each recording its progress
    /// in the run record.
    pub fn start_hydrations(&mut self, shared: &Arc<Shared>) {
        self.hydrations_started |= !self.pending.is_empty();
        for h in self.pending.drain(..) {
            let rec = HydrationRecord {
                step: self.step.clone(),
                volume: h.export_name().to_string(),
                target: h.target_path().to_path_buf(),
                size: 0,
                copied: h.resumed_from(),
                state: HydrationState::Running,
                started_at: now(),
                ended_at: None,
                error: None,
            };
            let _ = shared.transition(
                "hydration_started",
                None,
                Some(format!("hydrating {} into {}", rec.volume, rec.target.display())),
                None,
                |r| r.hydrations.push(rec.clone()),
            );
            let (shared, stop, status) = (shared.clone(), self.hydration_stop.clone(), self.status.clone());
            let (step, volume) = (rec.step.clone(), rec.volume.clone());
            let update = move |shared: &Shared, event: &str, f: &dyn Fn(&mut HydrationRecord)| {
                let mine = |x: &HydrationRecord| x.step == step && x.volume == volume;
                let msg = {
                    let rec = shared.record.lock().expect("record");
                    rec.hydrations.iter().find(|x| mine(x)).map(|x| {
                        let mut y = x.clone();
                        f(&mut y);
                        format!("hydration of {}", y.summary())
                    })
                };
                let _ = shared.transition(event, None, msg, None, |r| {
                    if let Some(x) = r.hydrations.iter_mut().find(|x| mine(x)) {
                        f(x);
                    }
                });
            };
            let handle = std::thread::spawn(move || {
                let mut last = Instant::now() - PROGRESS_EVERY;
                let result = h.run(&stop, |p: HydrationProgress| {
                    if let Some(st) = &status {
                        st.progress(h.export_name(), &p);
                    }
                    if last.elapsed() >= PROGRESS_EVERY && !p.done {
                        last = Instant::now();
                        update(&shared, "hydration_progress", &|x| {
                            x.copied = p.copied;
                            x.size = p.size;
                        });
                        if let Some(Err(e)) = status.as_ref().map(|st| st.write()) {
                            tracing::warn!(error = %e, "cannot write the hydration status");
                        }
                    }
                });
                if let Some(Err(e)) = status
                    .as_ref()
                    .map(|st| st.finish(h.export_name(), result.as_ref().map_err(|e| e.to_string())))
                {
                    tracing::warn!(error = %e, "cannot write the hydration status");
                }
                match result {
                    Ok(p) => update(
                        &shared,
                        if p.done { "hydration_done" } else { "hydration_stopped" },
                        &|x| {
                            x.copied = p.copied;
                            x.size = p.size;
                            x.state = if p.done {
                                HydrationState::Done
                            } else {
                                HydrationState::Stopped
                            };
                            x.ended_at = Some(now());
                        },
                    ),
                    Err(e) => {
                        tracing::error!(volume = %h.export_name(), error = %e, "hydration failed");
                        let e = e.to_string();
                        update(&shared, "hydration_failed", &|x| {
                            x.state = HydrationState::Failed;
                            x.error = Some(e.clone());
                            x.ended_at = Some(now());
                        })
                    }
                }
            });
            self.hydrations.push(handle);
        }
    }

    /// Whether every hydration thread has ended.
    pub fn hydrations_finished(&self) -> bool {
        self.hydrations.iter().all(|h| h.is_finished())
    }

    /// Asks the hydrations to stop (their cursor is persisted in the overlay).
    pub fn stop_hydrations(&self) {
        self.hydration_stop.store(true, Ordering::SeqCst);
    }

    /// Unmounts, stops nbdfuse and the server, and removes the overlay when
    /// nothing in it can be lost (`hydrated`: every hydration finished, so the
    /// targets hold every write). Returns what it did, each a sentence.
    pub fn tear_down(&mut self, hydrated: bool) -> Vec<String> {
        let mut notes = Vec::new();
        self.stop_hydrations();
        for h in self.hydrations.drain(..) {
            let _ = h.join();
        }
        let mut all_detached = true;
        for m in self.mounts.drain(..).rev() {
            match detach(m) {
                Ok(n) => notes.push(n),
                Err(e) => {
                    all_detached = false;
                    notes.push(e);
                }
            }
        }
        self.shutdown.trigger();
        if let Some(h) = self.server.take() {
            match h.join() {
                Ok(Ok(())) => notes.push("stopped the NBD server (overlay flushed)".into()),
                Ok(Err(e)) => notes.push(format!("the NBD server ended with an error: {e}")),
                Err(_) => notes.push("the NBD server thread panicked".into()),
            }
        }
        self.target = None;
        let blocks: u64 = self
            .exports
            .iter()
            .filter_map(|e| e.overlay().map(|o| o.blocks_written()))
            .sum();
        let dir = self.overlay_dir.display().to_string();
        if !all_detached {
            notes.push(format!(
                "kept the overlay {dir} ({blocks} written blocks): a volume is still attached"
            ));
        } else if self.drill || hydrated {
            match std::fs::remove_dir_all(&self.overlay_dir) {
                Ok(()) => notes.push(if self.drill {
                    format!("removed the overlay {dir} (discarded the drill's {blocks} written blocks)")
                } else {
                    format!(
                        "removed the overlay {dir}: hydration finished, the targets hold its {blocks} written blocks"
                    )
                }),
                Err(e) => notes.push(format!("could not remove the overlay {dir}: {e}")),
            }
        } else {
            notes.push(format!(
                "kept the overlay {dir} ({blocks} written blocks): {}; its writes are kept there, resume with `{}`",
                if self.hydrations_started {
                    "hydration did not finish"
                } else {
                    "nothing was hydrated"
                },
                self.resume
            ));
        }
        notes
    }
}

/// Unmounts one attachment (never deleting through it) and waits for its
/// nbdfuse; then removes the empty file it was mounted over.
fn detach(mut m: Attachment) -> Result<String, String> {
    let unmounted = unmount_retrying(&m.file);
    // nbdfuse exits once its mount is gone; one whose unmount failed because
    // it had died is reaped here too.
    let pid = m.child.id();
    let exited = wait_exit(&mut m.child, DETACH_GRACE);
    match (unmounted, exited) {
        (Ok(()), true) => {
            let _ = std::fs::remove_file(&m.file);
            Ok(format!(
                "unmounted {} ({NBDFUSE} {pid} of volume `{}` exited)",
                m.file.display(),
                m.volume
            ))
        }
        (Ok(()), false) => Err(format!(
            "unmounted {} but {NBDFUSE} {pid} did not exit, even after SIGKILL",
            m.file.display()
        )),
        (Err(e), _) => Err(format!(
            "could not unmount {} (volume `{}`): {e}; nothing in it was deleted; unmount it with `umount {}` once \
             nothing uses it",
            m.file.display(),
            m.volume,
            m.file.display()
        )),
    }
}

fn unmount_retrying(file: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rustix::mount::unmount(file, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(rustix::io::Errno::BUSY) => return Err("busy: a process still has the file open".into()),
            Err(rustix::io::Errno::INVAL) if !is_mounted(file) => return Ok(()),
            Err(rustix::io::Errno::PERM) => {
                // Not root: fusermount is how a user unmounts FUSE.
                for tool in ["fusermount3", "fusermount"] {
                    if Command::new(tool)
                        .arg("-u")
                        .arg(file)
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                    {
                        return Ok(());
                    }
                }
                return Err("not permitted, and fusermount -u failed".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether `path` is a mount point in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            crate::sandbox::mounts_under(path, &m)
                .iter()
                .any(|e| e.mount_point == path)
        })
        .unwrap_or(false)
}

/// Waits for nbdfuse to exit; SIGTERM, then SIGKILL when it does not.
fn wait_exit(child: &mut Child, grace: Duration) -> bool {
    let exited = |child: &mut Child, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if exited(child, grace) {
        return true;
    }
    if let Some(p) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        if exited(child, Duration::from_secs(3)) {
            return true;
        }
    }
    let _ = child.kill();
    exited(child, Duration::from_secs(3))
}

impl Drop for InstantPromote {
    /// A promote whose step was cut short after its point was attached (a
    /// timeout, an abort) still unmounts and stops what it started.
    fn drop(&mut self) {
        if !self.mounts.is_empty() || self.server.is_some() {
            for n in self.tear_down(false) {
                tracing::warn!(step = %self.step, "{n}");
            }
        }
    }
}

/// The run's end for its instant promotes: a run that went well waits for
/// its hydrations (this process serves the volumes until then); then the
/// run's processes are stopped (the mounts cannot go from under them) and each
/// promote is torn down, what it did recorded in the run record.
/// Returns whether the run was interrupted while it waited for hydration.
pub(super) async fn finish(shared: &Arc<Shared>, status: super::RunStatus) -> super::Result<bool> {
    let held: Vec<InstantPromote> = std::mem::take(&mut *shared.instant.lock().expect("instant"));
    if held.is_empty() {
        return Ok(false);
    }
    let mut interrupted = false;
    // A drill hydrates only when asked (into its sandbox); then it waits too,
    // so its report has the hydration's end.
    let run_done = matches!(status, super::RunStatus::Succeeded | super::RunStatus::ReprotectPending);
    if run_done && held.iter().any(|h| !h.hydrations_finished()) {
        shared.transition(
            "hydration_wait",
            None,
            Some(
                "every step done; the run ends when hydration has copied the point into the targets \
                 (this process serves the volumes until then; `lifeline runs` shows the progress)"
                    .into(),
            ),
            None,
            |_| {},
        )?;
        while held.iter().any(|h| !h.hydrations_finished()) {
            if shared.snapshot().abort_requested {
                interrupted = true;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shared.wake.notified() => {}
            }
        }
    }
    // Services on the attached files go first: a mount in use cannot go.
    super::stop_processes(shared, Duration::from_secs(10)).await?;
    for mut ip in held {
        let step = ip.step.clone();
        let hydrated = {
            let rec = shared.record.lock().expect("record");
            let mine: Vec<_> = rec.hydrations.iter().filter(|h| h.step == step).collect();
            !mine.is_empty() && mine.iter().all(|h| h.state == HydrationState::Done)
        };
        let reads = ip.reads.clone();
        let notes = tokio::task::spawn_blocking(move || ip.tear_down(hydrated))
            .await
            .unwrap_or_else(|e| vec![format!("the teardown of the instant promote panicked: {e}")]);
        // Taken after the server stopped: every read it made.
        let read = reads.bytes();
        shared.transition("instant_torn_down", Some(&step), Some(notes.join("; ")), None, |r| {
            r.teardown.extend(notes.iter().cloned());
            r.repository_reads.insert(step.clone(), read);
        })?;
    }
    Ok(interrupted)
}

/// `x` as one shell word.
fn shell_quote(x: &str) -> String {
    if !x.is_empty()
        && x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b))
    {
        x.to_string()
    } else {
        format!("'{}'", x.replace('\'', "'\\''"))
    }
}
