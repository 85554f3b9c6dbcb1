//! Scheduled drills: each a `lifeline drill` child process whose report
//! goes to STATE_DIR/daemon/drill-reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use chrono::Utc;

use crate::daemon::metrics::{self, VerdictLabels};
use crate::daemon::shared::Shared;

impl Shared {
    /// Where scheduled drills write their reports (a directory per drill):
    /// STATE_DIR/daemon/drill-reports.
    pub(crate) fn drill_reports(&self) -> PathBuf {
        self.state_dir.join("daemon").join("drill-reports")
    }

    pub(crate) fn drill(&self, group: &str, runbook: &Path) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let reports = self.drill_reports();
        let out = std::process::Command::new(crate::plan::this_binary())
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
            .context("start `lifeline drill`")?;
        let pid = out.id();
        self.children.lock().expect("children").insert(pid);
        if self.stop.load(Ordering::Relaxed) {
            // Stopping began between the check and the spawn.
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
        }
        let out = out.wait_with_output();
        self.children.lock().expect("children").remove(&pid);
        let out = out.context("wait for `lifeline drill`")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["event"] == "drill_report");
        let Some(report) = report else {
            bail!(
                "the drill ended ({}) without a report: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        };
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
        Ok((
            report.clone(),
            format!(
                "verdict {verdict}, report in {}",
                report["report_dir"].as_str().unwrap_or("(none)")
            ),
        ))
    }
}
