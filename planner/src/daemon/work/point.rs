//! Scheduled points: a backup into a local repository or a replication
//! cycle to the receiver, paused through the control API, and the RPO gauges.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeline_replicator::{BackupOptions, TenantRepository, backup};
use lifeline_service::{RemoteRepository, TlsDir};
use serde_json::json;

use crate::daemon::jobs::owner_site;
use crate::daemon::metrics;
use crate::daemon::shared::Shared;
use crate::daemon::{DaemonError, Result};

impl Shared {
    /// Takes a point of `group` unless its control API paused it, and tells
    /// the control API how the cycle went.
    pub(crate) fn point(&self, group: &str, tenant: &str) -> Result<(serde_json::Value, String)> {
        let Some(control) = self.controls.get(group) else {
            return self.take_point(group, tenant, None);
        };
        if control.paused() {
            return Ok((
                json!({"paused": true}),
                "paused through the control API (replication.stop): no point".into(),
            ));
        }
        control.cycle_started();
        let r = self.take_point(group, tenant, Some(control.target()));
        match &r {
            Ok((j, _)) => control.cycle_ok(
                j["seq"].as_u64().unwrap_or_default(),
                j["taken_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now),
                j["cycle_secs"].as_f64().unwrap_or_default(),
            ),
            Err(e) => control.cycle_failed(&format!("{e:#}")),
        }
        r
    }

    /// Takes a point of `group`: replication to its secondary's receiver (or
    /// `target`, where the control API retargeted it), or a backup into its
    /// secondary's repository directory.
    pub(crate) fn take_point(
        &self,
        group: &str,
        tenant: &str,
        target: Option<String>,
    ) -> Result<(serde_json::Value, String)> {
        let l = self.loaded();
        let g = l
            .config
            .group(group)
            .ok_or_else(|| DaemonError::needs("the group left the configuration"))?;
        let keys = self.keys()?;
        let opts = BackupOptions {
            group: group.into(),
            volumes: g.volumes.iter().map(|(n, p)| (n.clone(), p.clone())).collect(),
            freeze: g.freeze.clone(),
            thaw: g.thaw.clone(),
            state_dir: self.state_dir.clone(),
            cancel: self.stop.clone(),
            progress: None,
            block_map: g.block_map,
        };
        let secondary = g.secondary.as_deref().unwrap_or("secondary");
        let site = l.config.sites.get(secondary);
        let attempt = || -> Result<_> {
            let url = target
                .as_deref()
                .filter(|t| !t.is_empty())
                .or_else(|| site.and_then(|s| s.receiver.as_deref()));
            Ok(if let Some(url) = url {
                let remote = {
                    let mut m = self.remotes.lock().expect("remotes");
                    match m.get(group) {
                        Some((connected, r)) if connected == url => r.clone(),
                        _ => {
                            let tls = l.config.tls.as_ref().ok_or_else(|| {
                                DaemonError::needs("replication needs [tls] dir and identity in the configuration")
                            })?;
                            let identity = l.config.agent_identity(group).ok_or_else(|| {
                                DaemonError::needs("replication needs the group's agent (or [tls] identity)")
                            })?;
                            let r = Arc::new(RemoteRepository::connect(
                                url,
                                &TlsDir::new(&tls.dir),
                                &identity,
                                &keys,
                            )?);
                            r.set_upload_limit(g.limit_upload);
                            m.insert(group.into(), (url.to_string(), r.clone()));
                            r
                        }
                    }
                };
                let r = backup(remote.as_ref() as &dyn TenantRepository, &keys, &opts);
                if r.is_err() {
                    // Reconnect next time.
                    self.remotes.lock().expect("remotes").remove(group);
                }
                r?
            } else if let Some(dir) = site.and_then(|s| s.repo.as_deref()) {
                let local = self.local_repo(dir)?;
                let _w = local.writers.read().expect("writers");
                let t = local.repo.tenant(tenant)?;
                backup(&t, &keys, &opts)?
            } else {
                return Err(DaemonError::NoPointTarget {
                    group: group.to_string(),
                    secondary: secondary.to_string(),
                });
            })
        };
        // Like the agent: a transient failure (receiver down, link cut) is
        // retried with a doubling backoff until `retry_for` (default 60s) has
        // passed since the first one; the job then fails with the last error.
        let retry_for = g.retry_for.unwrap_or(lifeline_service::DEFAULT_RETRY_FOR);
        let mut first_failure: Option<Instant> = None;
        let mut backoff = Duration::from_secs(1);
        let mut retries = 0u32;
        let summary = loop {
            match attempt() {
                Ok(s) => break s,
                Err(e) => {
                    let since = *first_failure.get_or_insert_with(Instant::now);
                    if !e.is_transient() || self.stop.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    if since.elapsed() >= retry_for {
                        return Err(DaemonError::GaveUp {
                            retry_for: crate::runbook::format_duration(retry_for),
                            retries,
                            source: Box::new(e),
                        });
                    }
                    retries += 1;
                    self.event(
                        json!({"event": "point_retrying", "group": group, "retry": retries, "in_secs": backoff.as_secs_f64(), "error": format!("{e:#}")}),
                        format!("daemon: point {group}: {e:#}; retrying in {:.1} s", backoff.as_secs_f64()),
                    );
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        };
        let m = &self.metrics;
        let labels = metrics::group(group);
        m.group_cycle_duration_seconds
            .get_or_create(&labels)
            .set(summary.elapsed_secs);
        m.group_bytes_sent_total
            .get_or_create(&labels)
            .inc_by(summary.bytes_stored);
        // What the repository's disk holds: sealed (compressed, encrypted) bytes,
        // the index included, as the sent bytes; not the plaintext that was new.
        m.group_bytes_stored_total
            .get_or_create(&labels)
            .inc_by(summary.bytes_stored);
        m.group_bytes_new_total.get_or_create(&labels).inc_by(summary.bytes_new);
        self.last_points
            .lock()
            .expect("last points")
            .insert(group.to_string(), summary.taken_at);
        self.set_rpo(group, summary.taken_at);
        Ok((
            json!({"seq": summary.seq, "taken_at": summary.taken_at, "bytes_sent": summary.bytes_stored, "bytes_new": summary.bytes_new, "retries": retries, "cycle_secs": summary.elapsed_secs}),
            format!(
                "point {} committed, {} sent",
                summary.seq,
                lifeline_replicator::units::human_bytes(summary.bytes_stored)
            ),
        ))
    }

    pub(crate) fn set_rpo(&self, group: &str, last: DateTime<Utc>) {
        let rpo = (Utc::now() - last).num_milliseconds().max(0) as f64 / 1000.0;
        let labels = metrics::group(group);
        self.metrics.group_rpo_seconds.get_or_create(&labels).set(rpo);
        self.metrics
            .group_last_point_timestamp_seconds
            .get_or_create(&labels)
            .set(last.timestamp_millis() as f64 / 1000.0);
        self.feed.observe_newest_point(group, last, Utc::now());
    }

    /// Refreshes the RPO gauges (now − newest point) of every group this
    /// daemon takes points of or whose repository it owns (a receiver site sees
    /// each group it receives, whether or not its agent reports).
    pub(crate) fn update_rpo_gauges(&self) {
        let l = self.loaded();
        for (name, g) in &l.config.groups {
            if owner_site(&l.config, g).as_deref() != Some(self.site.as_str()) {
                continue;
            }
            let tenant = g.tenant.as_deref().unwrap_or(lifeline_replicator::DEFAULT_TENANT);
            let newest = self
                .owned_repo(name)
                .ok()
                .and_then(|(repo, _)| repo.catalog().last_point(tenant, name).ok().flatten());
            if let Some(p) = newest {
                self.last_points
                    .lock()
                    .expect("last points")
                    .insert(name.clone(), p.header.taken_at);
            }
        }
        let known = self.last_points.lock().expect("last points").clone();
        for (group, at) in known {
            self.set_rpo(&group, at);
        }
    }
}
