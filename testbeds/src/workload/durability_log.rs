//! The workload's durability log: a text file beside (never inside) its volume
//! that says when each record was written and up to which record the volume was
//! durable (fsync'd) when. The checker uses it to count as lost only what was
//! durable at the instant of a disaster. Appended line by line (each line one
//! `write`), so it survives a kill -9 of the workload; a torn last line is
//! ignored. Layout in `FORMAT.md` ("Workload durability log").

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{Result, TestbedError};

/// First line of the file.
pub const DURABILITY_LOG_HEADER: &str = "LIFELINE-WORKLOAD-DURABILITY 1";

/// An open log, for appending.
pub struct DurabilityLog {
    file: File,
}

/// What the log says about one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurabilityHistory {
    /// `(seq, written_ns)` for every record written, in order.
    pub written: Vec<(u64, i64)>,
    /// `(seq, durable_ns)`: after each fsync, every record up to `seq` was durable.
    pub durable: Vec<(u64, i64)>,
}

impl DurabilityLog {
    /// Opens `path` for appending, writing the header when it is new.
    pub fn open(path: &Path, volume_id: u64) -> Result<DurabilityLog> {
        let ctx = |e| TestbedError::io(format!("open durability log {}", path.display()), e);
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(ctx)?;
        if file.metadata().map_err(ctx)?.len() == 0 {
            file.write_all(format!("{DURABILITY_LOG_HEADER} {volume_id:016x}\n").as_bytes())
                .map_err(ctx)?;
        }
        Ok(DurabilityLog { file })
    }

    /// Record `seq` was written at `ns`.
    pub fn written(&mut self, seq: u64, ns: i64) -> std::io::Result<()> {
        self.file.write_all(format!("w {seq} {ns}\n").as_bytes())
    }

    /// Records up to `seq` became durable at `ns`.
    pub fn durable(&mut self, seq: u64, ns: i64) -> std::io::Result<()> {
        self.file.write_all(format!("d {seq} {ns}\n").as_bytes())
    }
}

impl DurabilityHistory {
    /// Reads a log; unparsable lines (a torn last line) are skipped.
    pub fn load(path: &Path) -> Result<DurabilityHistory> {
        let f = File::open(path).map_err(|e| TestbedError::io(format!("open durability log {}", path.display()), e))?;
        let mut lines = BufReader::new(f).lines();
        match lines.next() {
            Some(Ok(h)) if h.starts_with(DURABILITY_LOG_HEADER) => {}
            _ => {
                return Err(TestbedError::Invalid(format!(
                    "{} is not a workload durability log (no `{DURABILITY_LOG_HEADER}` header)",
                    path.display()
                )));
            }
        }
        let mut h = DurabilityHistory::default();
        for line in lines.map_while(|l| l.ok()) {
            let mut f = line.split(' ');
            let (Some(kind), Some(seq), Some(ns), None) = (f.next(), f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(seq), Ok(ns)) = (seq.parse::<u64>(), ns.parse::<i64>()) else {
                continue;
            };
            match kind {
                "w" => h.written.push((seq, ns)),
                "d" => h.durable.push((seq, ns)),
                _ => {}
            }
        }
        Ok(h)
    }

    /// The newest record durable at `ns` (0: none).
    pub fn durable_seq_at(&self, ns: i64) -> u64 {
        self.durable
            .iter()
            .filter(|(_, t)| *t <= ns)
            .map(|(s, _)| *s)
            .max()
            .unwrap_or(0)
    }

    /// When record `seq` was written, if the log says.
    pub fn written_ns(&self, seq: u64) -> Option<i64> {
        // The log is in seq order, but a restarted workload may append again: take the last.
        self.written.iter().rev().find(|(s, _)| *s == seq).map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_round_trips_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.log");
        let mut log = DurabilityLog::open(&p, 7).unwrap();
        log.written(1, 100).unwrap();
        log.written(2, 200).unwrap();
        log.durable(2, 250).unwrap();
        log.written(3, 300).unwrap();
        log.durable(3, 350).unwrap();
        drop(log);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"w 4 4")
            .unwrap();
        let h = DurabilityHistory::load(&p).unwrap();
        assert_eq!(h.written.len(), 4); // "w 4 4" parses: only its meaning is partial
        assert_eq!(h.durable_seq_at(249), 0);
        assert_eq!(h.durable_seq_at(250), 2);
        assert_eq!(h.durable_seq_at(i64::MAX), 3);
        assert_eq!(h.written_ns(3), Some(300));
    }
}
