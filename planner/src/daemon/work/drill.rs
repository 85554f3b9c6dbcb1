//! Scheduled drills: each a `lifeline drill` child process whose report
//! goes to STATE_DIR/daemon/drill-reports, and what each cost, measured: the
//! CPU time of the drill process and every process it waited for (read from
//! /proc when it has exited, before it is reaped), the bytes its instant
//! promote read from the repository and the group's replication lag while it
//! ran (both from the drill's own report), so an operator sees what proving
//! every point costs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use chrono::Utc;
use serde::Serialize;

use crate::daemon::metrics::{self, VerdictLabels};
use crate::daemon::shared::Shared;
use crate::daemon::{DaemonError, Result};
use crate::io_error::doing;

impl Shared {
    /// Where scheduled drills write their reports (a directory per drill):
    /// STATE_DIR/daemon/drill-reports.
    pub(crate) fn drill_reports(&self) -> PathBuf {
        self.state_dir.join("daemon").join("drill-reports")
    }

    pub(crate) fn drill(&self, group: &str, runbook: &Path) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let reports = self.drill_reports();
        let mut child = std::process::Command::new(crate::plan::this_binary())
            .arg("--config")
            .arg(&l.path)
            .arg("drill")
            .arg(runbook)
            .arg("--json")
            .arg("--report-dir")
            .arg(&reports)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(doing("start `lifeline drill`".into()))?;
        let pid = child.id();
        self.children.lock().expect("children").insert(pid);
        if self.stop.load(Ordering::Relaxed) {
            // Stopping began between the check and the spawn.
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
        }
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut b);
                }
                b
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let cpu_secs = cpu_at_exit(pid);
        let status = child.wait();
        self.children.lock().expect("children").remove(&pid);
        let status = status.map_err(doing("wait for `lifeline drill`".into()))?;
        let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
        let stdout = String::from_utf8_lossy(&stdout);
        let report = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["event"] == "drill_report");
        let Some(mut report) = report else {
            return Err(DaemonError::DrillWithoutReport {
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string(),
            });
        };
        let cost = DrillCost::of(cpu_secs, &report);
        report["cost"] = serde_json::to_value(&cost).expect("a cost serializes");
        let verdict = report["verdict"].as_str().unwrap_or("unknown").to_string();
        let m = &self.metrics;
        let labels = metrics::group(group);
        m.group_last_drill_timestamp_seconds
            .get_or_create(&labels)
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        m.group_last_drill_passed
            .get_or_create(&labels)
            .set(i64::from(verdict != "failed"));
        for v in ["passed", "passed_with_warnings", "failed"] {
            m.group_last_drill_verdict
                .get_or_create(&VerdictLabels {
                    group: group.to_owned(),
                    verdict: v,
                })
                .set(i64::from(v == verdict));
        }
        if let Some(c) = cost.cpu_secs {
            m.group_last_drill_cpu_seconds.get_or_create(&labels).set(c);
        }
        if let Some(b) = cost.repository_read_bytes {
            m.group_last_drill_repository_read_bytes
                .get_or_create(&labels)
                .set(b as i64);
        }
        if let Some(s) = cost.lag_max_secs {
            m.group_last_drill_replication_lag_seconds.get_or_create(&labels).set(s);
        }
        Ok((
            report.clone(),
            format!(
                "verdict {verdict}, report in {}; cost: {}",
                report["report_dir"].as_str().unwrap_or("(none)"),
                cost.summary()
            ),
        ))
    }
}

/// What one drill cost; `None` where it was not measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DrillCost {
    /// User + system CPU seconds of the `lifeline drill` process and of every
    /// process it waited for (the services, checks and nbdfuse it started).
    pub(crate) cpu_secs: Option<f64>,
    /// Sealed bytes its instant promote read from the repository (a full
    /// promote's restore is not counted).
    pub(crate) repository_read_bytes: Option<u64>,
    /// The group's replication lag (now − the newest point's `taken_at`, on
    /// the receiver) at the drill's start, at most from its start to its end
    /// (a drill shorter than the sampling period has no sample in between),
    /// and at its end.
    pub(crate) lag_before_secs: Option<f64>,
    pub(crate) lag_max_secs: Option<f64>,
    pub(crate) lag_after_secs: Option<f64>,
    /// Why the lag was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lag_unavailable: Option<String>,
}

impl DrillCost {
    /// The CPU time measured here and the rest from the drill's
    /// `drill_report` event.
    fn of(cpu_secs: Option<f64>, report: &serde_json::Value) -> DrillCost {
        let lag = &report["replication_lag"];
        let (before, after) = (lag["before_secs"].as_f64(), lag["after_secs"].as_f64());
        DrillCost {
            cpu_secs,
            repository_read_bytes: report["repository_read_bytes"].as_u64(),
            lag_before_secs: before,
            lag_max_secs: [before, lag["max_during_secs"].as_f64(), after]
                .into_iter()
                .flatten()
                .reduce(f64::max),
            lag_after_secs: after,
            lag_unavailable: lag["unavailable"].as_str().map(String::from),
        }
    }

    /// `0.34 CPU s, 16.1 MiB read from the repository, replication lag max 0.4 s`.
    fn summary(&self) -> String {
        let cpu = self
            .cpu_secs
            .map_or("CPU not measured".into(), |c| format!("{c:.2} CPU s"));
        let read = self
            .repository_read_bytes
            .map_or("no instant promote read".into(), |b| {
                format!("{:.1} MiB read from the repository", b as f64 / (1u64 << 20) as f64)
            });
        let lag = self
            .lag_max_secs
            .map_or("lag not measured".into(), |l| format!("replication lag max {l:.1} s"));
        format!("{cpu}, {read}, {lag}")
    }
}

/// Waits until child `pid` has exited without reaping it, then reads the CPU
/// time it used from /proc while it is a zombie. `None` when that fails.
fn cpu_at_exit(pid: u32) -> Option<f64> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let p = rustix::process::Pid::from_raw(pid as i32)?;
    loop {
        match waitid(WaitId::Pid(p), WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_of_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// utime + stime + cutime + cstime (fields 14 to 17 of proc(5)'s
/// /proc/PID/stat: the process's own CPU time and that of the children it
/// waited for), in seconds.
fn cpu_of_stat(stat: &str, ticks_per_sec: u64) -> Option<f64> {
    let fields = crate::engine::process::stat_fields(stat)?;
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    (ticks_per_sec > 0).then(|| ticks as f64 / ticks_per_sec as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        // A zombie's line: utime 150, stime 50, cutime 230, cstime 70 ticks.
        let stat = "4242 (lifeline (x) y) Z 4000 4242 4000 0 -1 4228 100 0 0 0 150 50 230 70 20 0 1 0 \
                    123456 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(cpu_of_stat(stat, 100), Some(5.0));
        assert_eq!(cpu_of_stat("4242 (x) Z 1 2", 100), None);
        assert_eq!(cpu_of_stat("garbage", 100), None);
    }

    #[test]
    fn the_cost_takes_the_drills_own_measurements() {
        let report = serde_json::json!({
            "event": "drill_report",
            "repository_read_bytes": 9_437_184u64,
            "replication_lag": {"before_secs": 0.8, "max_during_secs": 2.5, "after_secs": 1.0, "unavailable": null},
        });
        let c = DrillCost::of(Some(1.25), &report);
        assert_eq!(c.repository_read_bytes, Some(9_437_184));
        assert_eq!(
            (c.lag_before_secs, c.lag_max_secs, c.lag_after_secs),
            (Some(0.8), Some(2.5), Some(1.0))
        );
        // A drill shorter than the sampling period: the larger of start and end.
        let short =
            serde_json::json!({"replication_lag": {"before_secs": 0.6, "max_during_secs": null, "after_secs": 0.2}});
        assert_eq!(DrillCost::of(Some(0.3), &short).lag_max_secs, Some(0.6));
        assert_eq!(
            c.summary(),
            "1.25 CPU s, 9.0 MiB read from the repository, replication lag max 2.5 s"
        );
        let none = DrillCost::of(
            None,
            &serde_json::json!({"replication_lag": {"unavailable": "no receiver"}}),
        );
        assert_eq!(none.lag_unavailable.as_deref(), Some("no receiver"));
        assert_eq!(
            none.summary(),
            "CPU not measured, no instant promote read, lag not measured"
        );
    }
}
