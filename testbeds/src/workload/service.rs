//! The sample workload: a service that appends timestamped, sequence-numbered,
//! checksummed records to its volume (a raw image file) on a cadence, fsyncs on
//! another, and logs when each record was written and became durable. `pause`
//! quiesces it (stop writing, fsync, then answer) for an agent's freeze hook,
//! with a lease so a killed agent cannot leave it paused forever; `resume` is
//! the thaw hook. The HTTP face is in `http.rs`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::durability_log::DurabilityLog;
use super::record::{RECORD_LEN, Record, SUPERBLOCK_LEN, Slot, Superblock, ballast_fill};
use crate::error::{Result, TestbedError};

/// How the workload runs.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// The volume: created (sparse) when absent, resumed when it holds a workload.
    pub volume: PathBuf,
    /// Size of a new volume.
    pub size: u64,
    /// Bytes of the record ring (a multiple of 512).
    pub ring: u64,
    /// Bytes of seeded pseudo-random ballast after the ring (0: none).
    pub ballast: u64,
    /// The durability log (outside the volume).
    pub durable_log: PathBuf,
    /// One record every this often.
    pub write_every: Duration,
    /// One fsync every this often.
    pub fsync_every: Duration,
    /// A pause ends by itself after this long.
    pub pause_lease: Duration,
}

impl WorkloadOptions {
    /// Defaults for a volume at `volume`: 32 MiB with an 8 MiB ring and 16 MiB of
    /// ballast, a record every 20 ms, an fsync every 200 ms, pauses of at most 60 s.
    pub fn new(volume: &Path) -> WorkloadOptions {
        WorkloadOptions {
            volume: volume.to_path_buf(),
            size: 32 << 20,
            ring: 8 << 20,
            ballast: 16 << 20,
            durable_log: default_durable_log(volume),
            write_every: Duration::from_millis(20),
            fsync_every: Duration::from_millis(200),
            pause_lease: Duration::from_secs(60),
        }
    }
}

/// `VOLUME.durable`, beside the volume.
pub fn default_durable_log(volume: &Path) -> PathBuf {
    let mut p = volume.as_os_str().to_owned();
    p.push(".durable");
    PathBuf::from(p)
}

/// What `/health` and `/last-durable` answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WorkloadStatus {
    pub paused: bool,
    /// Newest record written (0: none).
    pub last_seq: u64,
    pub last_written_at: Option<String>,
    /// Newest record durable.
    pub durable_seq: u64,
    pub durable_at: Option<String>,
    pub volume: String,
}

struct Inner {
    file: File,
    log: DurabilityLog,
    next_seq: u64,
    last_written: Option<(u64, i64)>,
    last_durable: Option<(u64, i64)>,
    paused_until: Option<Instant>,
    last_fsync: Instant,
}

/// The running workload; shared between its writer thread and its HTTP server.
pub struct Workload {
    opts: WorkloadOptions,
    sb: Superblock,
    inner: Mutex<Inner>,
    stop: AtomicBool,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Workload {
    /// Opens or creates the volume and the durability log.
    pub fn open(opts: WorkloadOptions) -> Result<Arc<Workload>> {
        let v = &opts.volume;
        let ctx = |what: &str| {
            let what = format!("{what} {}", v.display());
            move |e| TestbedError::io(what, e)
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(v)
            .map_err(ctx("open volume"))?;
        let mut head = vec![0u8; SUPERBLOCK_LEN as usize];
        let len = file.metadata().map_err(ctx("stat volume"))?.len();
        let existing = if len >= SUPERBLOCK_LEN {
            file.read_exact_at(&mut head, 0).map_err(ctx("read volume"))?;
            Superblock::decode(&head).ok()
        } else {
            None
        };
        let (sb, next_seq) = match existing {
            Some(sb) => {
                let last = scan_last_seq(&file, &sb).map_err(ctx("scan volume"))?;
                (sb, last + 1)
            }
            None => (create_volume(&file, &opts).map_err(ctx("create volume"))?, 1),
        };
        let log = DurabilityLog::open(&opts.durable_log, sb.volume_id)?;
        tracing::info!(volume = %v.display(), next_seq, "workload opened");
        Ok(Arc::new(Workload {
            opts,
            sb,
            inner: Mutex::new(Inner {
                file,
                log,
                next_seq,
                last_written: None,
                last_durable: None,
                paused_until: None,
                last_fsync: Instant::now(),
            }),
            stop: AtomicBool::new(false),
        }))
    }

    /// The volume's superblock.
    pub fn superblock(&self) -> Superblock {
        self.sb
    }

    fn fsync(&self, inner: &mut Inner) -> std::io::Result<()> {
        inner.file.sync_data()?;
        inner.last_fsync = Instant::now();
        if let Some((seq, _)) = inner.last_written
            && inner.last_durable.map(|d| d.0) != Some(seq)
        {
            let t = now_ns();
            inner.log.durable(seq, t)?;
            inner.last_durable = Some((seq, t));
        }
        Ok(())
    }

    /// Writes the next record unless paused, and fsyncs when one is due.
    pub fn tick(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock().expect("workload");
        if let Some(until) = inner.paused_until {
            if Instant::now() < until {
                return Ok(());
            }
            tracing::warn!("workload: pause lease expired, writing again");
            inner.paused_until = None;
        }
        let seq = inner.next_seq;
        let t = now_ns();
        let rec = Record::new(self.sb.volume_id, seq, t).encode();
        inner.file.write_all_at(&rec, self.sb.slot_offset(seq))?;
        inner.log.written(seq, t)?;
        inner.next_seq += 1;
        inner.last_written = Some((seq, t));
        if inner.last_fsync.elapsed() >= self.opts.fsync_every {
            self.fsync(&mut inner)?;
        }
        Ok(())
    }

    /// Stops writing (for `lease`, or the configured lease), makes everything
    /// written durable, and returns the status after that.
    pub fn pause(&self, lease: Option<Duration>) -> std::io::Result<WorkloadStatus> {
        let mut inner = self.inner.lock().expect("workload");
        inner.paused_until = Some(Instant::now() + lease.unwrap_or(self.opts.pause_lease));
        self.fsync(&mut inner)?;
        drop(inner);
        Ok(self.status())
    }

    /// Writes again.
    pub fn resume(&self) -> WorkloadStatus {
        self.inner.lock().expect("workload").paused_until = None;
        self.status()
    }

    /// The current status.
    pub fn status(&self) -> WorkloadStatus {
        let inner = self.inner.lock().expect("workload");
        WorkloadStatus {
            paused: inner.paused_until.is_some_and(|u| Instant::now() < u),
            last_seq: inner.last_written.map(|w| w.0).unwrap_or(0),
            last_written_at: inner.last_written.map(|w| rfc3339(w.1)),
            durable_seq: inner.last_durable.map(|d| d.0).unwrap_or(0),
            durable_at: inner.last_durable.map(|d| rfc3339(d.1)),
            volume: self.opts.volume.display().to_string(),
        }
    }

    /// Asks the writer loop to end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The writer loop: a record every `write_every` until [`stop`](Self::stop),
    /// then a last fsync.
    pub fn run_writer(&self) -> std::io::Result<()> {
        let mut next = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            self.tick()?;
            next += self.opts.write_every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
        let mut inner = self.inner.lock().expect("workload");
        self.fsync(&mut inner)
    }
}

/// Lays out a new volume: size, superblock, ballast; fsync'd.
fn create_volume(file: &File, opts: &WorkloadOptions) -> std::io::Result<Superblock> {
    let ring = opts.ring / RECORD_LEN as u64 * RECORD_LEN as u64;
    let slots = ring / RECORD_LEN as u64;
    let ballast_offset = SUPERBLOCK_LEN + ring;
    let need = ballast_offset + opts.ballast;
    if slots == 0 || need > opts.size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a {} byte volume cannot hold a {} byte ring and {} bytes of ballast",
                opts.size, opts.ring, opts.ballast
            ),
        ));
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| std::io::Error::other(e.to_string()))?;
    let sb = Superblock {
        volume_id: u64::from_le_bytes(id[..8].try_into().expect("8")),
        slots,
        ring_offset: SUPERBLOCK_LEN,
        ballast_offset,
        ballast_len: opts.ballast,
        ballast_seed: u64::from_le_bytes(id[8..].try_into().expect("8")),
        created_ns: now_ns(),
    };
    file.set_len(0)?;
    file.set_len(opts.size)?;
    file.write_all_at(&sb.encode(), 0)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < sb.ballast_len {
        let n = (sb.ballast_len - done).min(buf.len() as u64) as usize;
        ballast_fill(sb.ballast_seed, done, &mut buf[..n]);
        file.write_all_at(&buf[..n], sb.ballast_offset + done)?;
        done += n as u64;
    }
    file.sync_all()?;
    Ok(sb)
}

/// The newest record on an existing volume (0: none).
fn scan_last_seq(file: &File, sb: &Superblock) -> std::io::Result<u64> {
    let mut last = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = sb.ring_offset;
    while off < sb.ring_end() {
        let n = (sb.ring_end() - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)?;
        for slot in buf[..n].chunks_exact(RECORD_LEN) {
            if let Slot::Record(r) = Record::decode(slot)
                && r.volume_id == sb.volume_id
            {
                last = last.max(r.seq);
            }
        }
        off += n as u64;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dir: &Path) -> WorkloadOptions {
        WorkloadOptions {
            size: 1 << 20,
            ring: 64 << 10,
            ballast: 256 << 10,
            fsync_every: Duration::ZERO,
            ..WorkloadOptions::new(&dir.join("v.img"))
        }
    }

    #[test]
    fn pause_stops_writes_and_makes_them_durable_and_a_reopen_continues() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::open(small(dir.path())).unwrap();
        for _ in 0..5 {
            w.tick().unwrap();
        }
        let st = w.pause(None).unwrap();
        assert!(st.paused);
        assert_eq!((st.last_seq, st.durable_seq), (5, 5));
        w.tick().unwrap();
        assert_eq!(w.status().last_seq, 5, "a paused workload does not write");
        assert!(!w.resume().paused);
        w.tick().unwrap();
        assert_eq!(w.status().last_seq, 6);
        drop(w);
        let w = Workload::open(small(dir.path())).unwrap();
        w.tick().unwrap();
        assert_eq!(w.status().last_seq, 7);
    }

    #[test]
    fn a_pause_lease_expires() {
        let dir = tempfile::tempdir().unwrap();
        let w = Workload::open(small(dir.path())).unwrap();
        w.pause(Some(Duration::ZERO)).unwrap();
        w.tick().unwrap();
        assert_eq!(w.status().last_seq, 1);
    }
}
