//! The workload checker: reads a (recovered) workload volume and says what it
//! holds: the last valid record, any damage (slots that do not decode, records
//! of another volume or in the wrong slot, records missing between the oldest
//! and newest, ballast that differs), and, relative to an instant, the data
//! lost. Loss is measured from the application's side, independently of
//! Lifeline's bookkeeping: with the workload's durability log it counts only
//! records that were durable at that instant (`lost_records`), and `lost_secs`
//! is how long before the instant the oldest lost record was written, which is
//! never more than the RPO at that instant when every write made before the
//! point's `taken_at` was recovered. Without the log, `lost_secs` is the upper
//! bound `at - last recovered write`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::durability_log::DurabilityHistory;
use super::record::{RECORD_LEN, Record, SUPERBLOCK_LEN, Slot, Superblock, ballast_fill};
use crate::error::{Result, TestbedError};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub volume: PathBuf,
    /// The instant to measure loss against (a disaster, a drill's start).
    pub at: Option<DateTime<Utc>>,
    /// The workload's durability log.
    pub durable_log: Option<PathBuf>,
}

/// One damaged slot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DamagedSlot {
    pub slot: u64,
    pub offset: u64,
    pub reason: String,
}

/// What the checker found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    pub volume: String,
    /// No damage, nothing missing, ballast intact.
    pub clean: bool,
    /// Why the superblock is unusable (then nothing else is checked).
    pub superblock_error: Option<String>,
    pub volume_id: Option<String>,
    pub slots: u64,
    /// Valid records found.
    pub records: u64,
    pub first_seq: u64,
    /// The last valid record (0: none).
    pub last_seq: u64,
    pub last_written_at: Option<String>,
    pub damaged: Vec<DamagedSlot>,
    /// Inclusive seq ranges that should be on the volume and are not.
    pub missing: Vec<(u64, u64)>,
    pub ballast_ok: bool,
    /// First differing byte offset in the ballast.
    pub ballast_first_difference: Option<u64>,
    pub at: Option<String>,
    /// Newest record durable at `at` (from the durability log).
    pub durable_seq_at: Option<u64>,
    /// Records durable at `at` and not on the volume (needs the log).
    pub lost_records: Option<u64>,
    /// Seconds before `at` that the oldest lost record was written (0: none lost).
    pub lost_secs: Option<f64>,
    /// True when `lost_secs` is the upper bound `at - last_written_at` (no log).
    pub lost_is_upper_bound: bool,
}

fn rfc3339(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Checks a workload volume.
pub fn check_volume(opts: &CheckOptions) -> Result<CheckReport> {
    let v = &opts.volume;
    let ctx = |what: &str| {
        let what = format!("{what} {}", v.display());
        move |e| TestbedError::io(what, e)
    };
    let file = File::open(v).map_err(ctx("open volume"))?;
    let len = file.metadata().map_err(ctx("stat volume"))?.len();
    let mut report = CheckReport {
        volume: v.display().to_string(),
        clean: false,
        superblock_error: None,
        volume_id: None,
        slots: 0,
        records: 0,
        first_seq: 0,
        last_seq: 0,
        last_written_at: None,
        damaged: Vec::new(),
        missing: Vec::new(),
        ballast_ok: false,
        ballast_first_difference: None,
        at: opts.at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        durable_seq_at: None,
        lost_records: None,
        lost_secs: None,
        lost_is_upper_bound: false,
    };
    let mut head = vec![0u8; SUPERBLOCK_LEN as usize];
    let sb = if len < SUPERBLOCK_LEN {
        Err(format!("the volume is only {len} bytes"))
    } else {
        file.read_exact_at(&mut head, 0).map_err(ctx("read volume"))?;
        Superblock::decode(&head).map_err(|e| e.to_string())
    };
    let sb = match sb {
        Ok(sb) if sb.ring_end() <= len && sb.ballast_offset.saturating_add(sb.ballast_len) <= len => sb,
        Ok(_) => {
            report.superblock_error = Some(format!("the layout does not fit the volume's {len} bytes"));
            return Ok(report);
        }
        Err(e) => {
            report.superblock_error = Some(e);
            return Ok(report);
        }
    };
    report.volume_id = Some(format!("{:016x}", sb.volume_id));
    report.slots = sb.slots;

    // Records: (seq, written_ns) of every valid one.
    let mut found: Vec<(u64, i64)> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = sb.ring_offset;
    while off < sb.ring_end() {
        let n = (sb.ring_end() - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off).map_err(ctx("read volume"))?;
        for (i, raw) in buf[..n].chunks_exact(RECORD_LEN).enumerate() {
            let at = off + (i * RECORD_LEN) as u64;
            let slot = (at - sb.ring_offset) / RECORD_LEN as u64;
            let damage = |reason: String| DamagedSlot {
                slot,
                offset: at,
                reason,
            };
            match Record::decode(raw) {
                Slot::Empty => {}
                Slot::Damaged(e) => report.damaged.push(damage(e.to_string())),
                Slot::Record(r) if r.volume_id != sb.volume_id => report
                    .damaged
                    .push(damage(format!("record of another volume ({:016x})", r.volume_id))),
                Slot::Record(r) if sb.slot_offset(r.seq) != at => report
                    .damaged
                    .push(damage(format!("record {} in the wrong slot", r.seq))),
                Slot::Record(r) => found.push((r.seq, r.written_ns)),
            }
        }
        off += n as u64;
    }
    found.sort_unstable();
    report.records = found.len() as u64;
    if let (Some(first), Some(last)) = (found.first(), found.last()) {
        report.first_seq = first.0;
        report.last_seq = last.0;
        report.last_written_at = Some(rfc3339(last.1));
        // Every seq from the oldest the ring can still hold up to the newest must be there.
        let lo = last.0.saturating_sub(sb.slots - 1).max(1);
        let mut expect = lo;
        for &(seq, _) in found.iter().filter(|(s, _)| *s >= lo) {
            if seq > expect {
                report.missing.push((expect, seq - 1));
            }
            expect = seq + 1;
        }
    }

    // Ballast.
    report.ballast_ok = true;
    let mut want = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < sb.ballast_len {
        let n = (sb.ballast_len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], sb.ballast_offset + done)
            .map_err(ctx("read volume"))?;
        ballast_fill(sb.ballast_seed, done, &mut want[..n]);
        if let Some(i) = buf[..n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
            report.ballast_ok = false;
            report.ballast_first_difference = Some(sb.ballast_offset + done + i as u64);
            break;
        }
        done += n as u64;
    }
    report.clean = report.damaged.is_empty() && report.missing.is_empty() && report.ballast_ok;

    // Loss relative to an instant.
    if let Some(at) = opts.at {
        let at_ns = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        match &opts.durable_log {
            Some(p) => {
                let h = DurabilityHistory::load(p)?;
                let durable = h.durable_seq_at(at_ns);
                let lost = durable.saturating_sub(report.last_seq);
                report.durable_seq_at = Some(durable);
                report.lost_records = Some(lost);
                report.lost_secs = Some(if lost == 0 {
                    0.0
                } else {
                    let first_lost = report.last_seq + 1;
                    let wa = h.written_ns(first_lost).ok_or_else(|| {
                        TestbedError::Invalid(format!(
                            "the durability log {} has no write of record {first_lost}: is it this volume's?",
                            p.display()
                        ))
                    })?;
                    ((at_ns - wa) as f64 / 1e9).max(0.0)
                });
            }
            None => {
                let last = found.last().map(|l| l.1).unwrap_or(sb.created_ns);
                report.lost_secs = Some(((at_ns - last) as f64 / 1e9).max(0.0));
                report.lost_is_upper_bound = true;
            }
        }
    }
    Ok(report)
}

/// The report as text lines, for people.
pub fn describe(r: &CheckReport) -> String {
    let mut out = Vec::new();
    if let Some(e) = &r.superblock_error {
        out.push(format!("{}: not a workload volume: superblock {e}", r.volume));
        return out.join("\n");
    }
    out.push(format!(
        "{}: {} ({} records, seq {}..={}, last written {})",
        r.volume,
        if r.clean { "clean" } else { "DAMAGED" },
        r.records,
        r.first_seq,
        r.last_seq,
        r.last_written_at.as_deref().unwrap_or("never")
    ));
    for d in &r.damaged {
        out.push(format!(
            "  damaged slot {} at offset {}: {}",
            d.slot, d.offset, d.reason
        ));
    }
    for (a, b) in &r.missing {
        out.push(format!("  missing records {a}..={b}"));
    }
    if let Some(off) = r.ballast_first_difference {
        out.push(format!("  ballast differs at offset {off}"));
    }
    if let (Some(at), Some(secs)) = (&r.at, r.lost_secs) {
        match r.lost_records {
            Some(n) => out.push(format!(
                "  at {at}: {n} durable records lost ({secs:.3} s of writes; durable up to {})",
                r.durable_seq_at.unwrap_or(0)
            )),
            None => out.push(format!(
                "  at {at}: at most {secs:.3} s of writes lost (no durability log)"
            )),
        }
    }
    out.join("\n")
}

/// Convenience for tests and the CLI: checks `volume` at `at` with `log`.
pub fn check_path(volume: &Path, at: Option<DateTime<Utc>>, log: Option<&Path>) -> Result<CheckReport> {
    check_volume(&CheckOptions {
        volume: volume.to_path_buf(),
        at,
        durable_log: log.map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::super::service::{Workload, WorkloadOptions};
    use super::*;
    use std::time::Duration;

    fn volume(dir: &Path, records: u64) -> (PathBuf, PathBuf) {
        let opts = WorkloadOptions {
            size: 1 << 20,
            ring: 32 << 10,
            ballast: 128 << 10,
            fsync_every: Duration::ZERO,
            ..WorkloadOptions::new(&dir.join("v.img"))
        };
        let log = opts.durable_log.clone();
        let w = Workload::open(opts).unwrap();
        for _ in 0..records {
            w.tick().unwrap();
        }
        (dir.join("v.img"), log)
    }

    #[test]
    fn a_fresh_volume_is_clean_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (v, log) = volume(dir.path(), 10);
        let r = check_path(&v, Some(Utc::now()), Some(&log)).unwrap();
        assert!(r.clean, "{r:?}");
        assert_eq!((r.first_seq, r.last_seq, r.records), (1, 10, 10));
        assert_eq!(r.lost_records, Some(0));
        assert_eq!(r.lost_secs, Some(0.0));
    }

    #[test]
    fn losses_count_only_durable_records() {
        let dir = tempfile::tempdir().unwrap();
        let (v, log) = volume(dir.path(), 10);
        let at = Utc::now();
        // The "recovered" volume lacks records 8..=10: zero their slots.
        let f = std::fs::OpenOptions::new().write(true).open(&v).unwrap();
        for seq in 8..=10u64 {
            f.write_all_at(&[0u8; RECORD_LEN], SUPERBLOCK_LEN + (seq - 1) * RECORD_LEN as u64)
                .unwrap();
        }
        let r = check_path(&v, Some(at), Some(&log)).unwrap();
        assert!(r.clean, "a point taken earlier is consistent: {r:?}");
        assert_eq!(r.last_seq, 7);
        assert_eq!(r.lost_records, Some(3));
        assert!(r.lost_secs.unwrap() > 0.0);
        // Before anything was durable, nothing was lost.
        let early = DateTime::from_timestamp_nanos(0);
        let r = check_path(&v, Some(early), Some(&log)).unwrap();
        assert_eq!(r.lost_records, Some(0));
    }

    #[test]
    fn damage_gaps_and_ballast_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = volume(dir.path(), 10);
        let f = std::fs::OpenOptions::new().write(true).open(&v).unwrap();
        // A flipped byte in record 3, record 5 gone, a ballast byte changed.
        f.write_all_at(&[0xff], SUPERBLOCK_LEN + 2 * RECORD_LEN as u64 + 100)
            .unwrap();
        f.write_all_at(&[0u8; RECORD_LEN], SUPERBLOCK_LEN + 4 * RECORD_LEN as u64)
            .unwrap();
        let ballast_at = SUPERBLOCK_LEN + (32 << 10) + 777;
        f.write_all_at(&[0x42], ballast_at).unwrap();
        let r = check_path(&v, None, None).unwrap();
        assert!(!r.clean);
        assert_eq!(r.damaged.len(), 1, "{r:?}");
        assert_eq!(r.damaged[0].slot, 2);
        assert_eq!(r.missing, vec![(3, 3), (5, 5)]);
        assert_eq!(r.ballast_first_difference, Some(ballast_at));
        assert!(describe(&r).contains("DAMAGED"));
    }

    #[test]
    fn a_wrapped_ring_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        // 64 slots, 150 records: the ring wrapped twice.
        let (v, _) = volume(dir.path(), 150);
        let r = check_path(&v, None, None).unwrap();
        assert!(r.clean, "{r:?}");
        assert_eq!((r.first_seq, r.last_seq, r.records), (87, 150, 64));
    }

    #[test]
    fn garbage_is_not_a_workload_volume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, vec![7u8; 10_000]).unwrap();
        let r = check_path(&p, None, None).unwrap();
        assert!(!r.clean);
        assert!(r.superblock_error.is_some());
    }
}
