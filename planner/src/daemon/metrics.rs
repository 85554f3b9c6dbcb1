//! What the daemon reports to Prometheus: [`DaemonMetrics`], every family the
//! daemon exports, declared once with its name, help, type and labels, over the
//! `prometheus-client` registry; [`DaemonMetrics::render`], the families in the
//! Prometheus text format 0.0.4; and [`serve`], the `/metrics` endpoint.
//!
//! # Names are an interface
//!
//! Names, types, help texts and label names are the ones README.md documents and
//! dashboards query; `the_families_are_the_documented_ones` pins them. Three
//! things follow from the crate:
//! - a counter is registered without its `_total` and a help text without its
//!   final period, which the encoder and the registry append: [`register`]
//!   takes the names as they are exposed and strips both, so a grep for a
//!   series name finds its declaration;
//! - the crate has no summary type, and `lifeline_job_duration_seconds` has been
//!   a summary without quantiles (its `_sum` and `_count`, from which Prometheus
//!   computes rates and means): it is [`JobDurations`] here, rendered after the
//!   registry in the same format;
//! - series within a family come out in no fixed order (families come in the
//!   order they are registered, alphabetical here).
//!
//! # Values
//!
//! A series appears when it is first set: a family without series is not
//! rendered, and the families without labels are families of [`NoLabels`], so
//! that `lifeline_verify_clean` is absent before the first verify rather than 0,
//! which would say "damaged". Counters count whole things (jobs, points, bytes)
//! in `u64`, so they only go up. A duration that is negative or not finite is
//! dropped with a warning: one bad clock reading should not poison a rate.

mod endpoint;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

pub use endpoint::serve;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A gauge of seconds, timestamps or other fractional values.
pub type GaugeF64 = Gauge<f64, AtomicU64>;

/// The label set of a series without labels, so that an unlabelled metric is
/// absent until first set, as labelled ones are.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(&self, _: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

/// `{group}`. Fields are in the order the series show them (alphabetical).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// `{group, verdict}` of `lifeline_group_last_drill_verdict`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub group: String,
    pub verdict: &'static str,
}

/// `{group, job, result}` of `lifeline_job_runs_total`; `group` is empty for
/// the site's jobs (verify, gc).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResultLabels {
    pub group: String,
    pub job: &'static str,
    pub result: &'static str,
}

/// `{group, job}` of `lifeline_job_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct JobLabels {
    pub group: String,
    pub job: &'static str,
}

/// `{group}` for a group's series.
pub fn group(name: &str) -> GroupLabels {
    GroupLabels { group: name.to_owned() }
}

/// Every family the daemon exports, each declared once; share it as
/// `Arc<DaemonMetrics>`. The fields are named after the series they expose,
/// without the `lifeline_` prefix.
#[derive(Debug)]
pub struct DaemonMetrics {
    registry: Registry,
    pub daemon_config_reloads_total: Family<NoLabels, Counter>,
    pub gc_bytes_reclaimed_total: Family<NoLabels, Counter>,
    pub group_bytes_new_total: Family<GroupLabels, Counter>,
    pub group_bytes_sent_total: Family<GroupLabels, Counter>,
    pub group_bytes_stored_total: Family<GroupLabels, Counter>,
    pub group_cycle_duration_seconds: Family<GroupLabels, GaugeF64>,
    pub group_errors_total: Family<GroupLabels, Counter>,
    pub group_last_drill_cpu_seconds: Family<GroupLabels, GaugeF64>,
    pub group_last_drill_passed: Family<GroupLabels, Gauge>,
    pub group_last_drill_replication_lag_seconds: Family<GroupLabels, GaugeF64>,
    pub group_last_drill_repository_read_bytes: Family<GroupLabels, Gauge>,
    pub group_last_drill_timestamp_seconds: Family<GroupLabels, GaugeF64>,
    pub group_last_drill_verdict: Family<VerdictLabels, Gauge>,
    pub group_last_point_timestamp_seconds: Family<GroupLabels, GaugeF64>,
    pub group_rpo_objective_seconds: Family<GroupLabels, GaugeF64>,
    pub group_rpo_seconds: Family<GroupLabels, GaugeF64>,
    pub job_duration_seconds: JobDurations,
    pub job_runs_total: Family<JobResultLabels, Counter>,
    pub prune_points_removed_total: Family<GroupLabels, Counter>,
    pub verify_clean: Family<NoLabels, Gauge>,
}

impl Default for DaemonMetrics {
    fn default() -> DaemonMetrics {
        DaemonMetrics::new()
    }
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let mut m = DaemonMetrics {
            registry: Registry::default(),
            daemon_config_reloads_total: Family::default(),
            gc_bytes_reclaimed_total: Family::default(),
            group_bytes_new_total: Family::default(),
            group_bytes_sent_total: Family::default(),
            group_bytes_stored_total: Family::default(),
            group_cycle_duration_seconds: Family::default(),
            group_errors_total: Family::default(),
            group_last_drill_cpu_seconds: Family::default(),
            group_last_drill_passed: Family::default(),
            group_last_drill_replication_lag_seconds: Family::default(),
            group_last_drill_repository_read_bytes: Family::default(),
            group_last_drill_timestamp_seconds: Family::default(),
            group_last_drill_verdict: Family::default(),
            group_last_point_timestamp_seconds: Family::default(),
            group_rpo_objective_seconds: Family::default(),
            group_rpo_seconds: Family::default(),
            job_duration_seconds: JobDurations::default(),
            job_runs_total: Family::default(),
            prune_points_removed_total: Family::default(),
            verify_clean: Family::default(),
        };
        let r = &mut m.registry;
        register(
            r,
            "lifeline_daemon_config_reloads_total",
            "Configuration reloads (SIGHUP) that succeeded.",
            &m.daemon_config_reloads_total,
        );
        register(
            r,
            "lifeline_gc_bytes_reclaimed_total",
            "Disk space garbage collection freed.",
            &m.gc_bytes_reclaimed_total,
        );
        register(
            r,
            "lifeline_group_bytes_new_total",
            "Plaintext bytes of new data (after deduplication, before compression) of the group's cycles.",
            &m.group_bytes_new_total,
        );
        register(
            r,
            "lifeline_group_bytes_sent_total",
            "Sealed bytes the group's cycles sent to the repository.",
            &m.group_bytes_sent_total,
        );
        // What the repository's disk holds: sealed (compressed, encrypted) bytes,
        // the index included, as the sent bytes; not the plaintext that was new.
        register(
            r,
            "lifeline_group_bytes_stored_total",
            "Sealed bytes (compressed and encrypted, index included) the repository stored for the group.",
            &m.group_bytes_stored_total,
        );
        register(
            r,
            "lifeline_group_cycle_duration_seconds",
            "How long the group's last cycle took.",
            &m.group_cycle_duration_seconds,
        );
        register(
            r,
            "lifeline_group_errors_total",
            "Failed jobs of the group.",
            &m.group_errors_total,
        );
        register(
            r,
            "lifeline_group_last_drill_cpu_seconds",
            "CPU time (user and system) of the group's last drill: the drill process and every process it waited for.",
            &m.group_last_drill_cpu_seconds,
        );
        register(
            r,
            "lifeline_group_last_drill_passed",
            "1 when the group's last drill passed (with or without warnings).",
            &m.group_last_drill_passed,
        );
        register(
            r,
            "lifeline_group_last_drill_replication_lag_seconds",
            "The group's largest replication lag from the start to the end of its last drill, as the drill sampled it on the receiver.",
            &m.group_last_drill_replication_lag_seconds,
        );
        register(
            r,
            "lifeline_group_last_drill_repository_read_bytes",
            "Sealed bytes the instant promote of the group's last drill read from the repository.",
            &m.group_last_drill_repository_read_bytes,
        );
        register(
            r,
            "lifeline_group_last_drill_timestamp_seconds",
            "When the group's last drill ended (Unix time).",
            &m.group_last_drill_timestamp_seconds,
        );
        register(
            r,
            "lifeline_group_last_drill_verdict",
            "The verdict of the group's last drill (1 for the verdict it had).",
            &m.group_last_drill_verdict,
        );
        register(
            r,
            "lifeline_group_last_point_timestamp_seconds",
            "When the group's newest point was taken (Unix time).",
            &m.group_last_point_timestamp_seconds,
        );
        register(
            r,
            "lifeline_group_rpo_objective_seconds",
            "The group's recovery point objective.",
            &m.group_rpo_objective_seconds,
        );
        register(
            r,
            "lifeline_group_rpo_seconds",
            "Current RPO: now minus when the group's newest point was taken.",
            &m.group_rpo_seconds,
        );
        // lifeline_job_duration_seconds: see JobDurations.
        register(r, "lifeline_job_runs_total", "Jobs run, by result.", &m.job_runs_total);
        register(
            r,
            "lifeline_prune_points_removed_total",
            "Points prune removed.",
            &m.prune_points_removed_total,
        );
        register(
            r,
            "lifeline_verify_clean",
            "1 when the last scheduled verify found nothing missing or damaged.",
            &m.verify_clean,
        );
        m
    }

    /// Every family in the text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String does not fail");
        self.job_duration_seconds.render(&mut out);
        out
    }
}

/// Registers `metric` so that it is exposed as `name` with `help`: the
/// registry appends a period to the help text and the encoder `_total` to a
/// counter's name, so both are stripped here.
///
/// # Panics
/// If a counter's name does not end in `_total` or a help text in a period.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: &M) {
    let name = if metric.metric_type() == MetricType::Counter {
        name.strip_suffix("_total")
            .unwrap_or_else(|| panic!("counter `{name}` must end in _total"))
    } else {
        name
    };
    let help = help
        .strip_suffix('.')
        .unwrap_or_else(|| panic!("the help of `{name}` must end with a period"));
    registry.register(name, help, metric.clone());
}

/// `lifeline_job_duration_seconds`: how long jobs took, as a summary without
/// quantiles (`_sum` and `_count` per job and group), which prometheus-client
/// has no type for.
#[derive(Debug, Default)]
pub struct JobDurations {
    /// Per series: the sum of the durations in seconds, and their number.
    series: Mutex<BTreeMap<JobLabels, (f64, u64)>>,
}

impl JobDurations {
    const NAME: &str = "lifeline_job_duration_seconds";
    const HELP: &str = "Time jobs took.";

    /// Records one job that took `secs` seconds. A negative or non-finite
    /// duration is dropped with a warning.
    pub fn observe(&self, labels: JobLabels, secs: f64) {
        if !(secs.is_finite() && secs >= 0.0) {
            tracing::warn!(
                metric = Self::NAME,
                secs,
                "duration observation dropped: not a finite, non-negative time"
            );
            return;
        }
        // An update cannot panic half-way, so a poisoned lock holds no half-made one.
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let (sum, count) = series.entry(labels).or_default();
        *sum += secs;
        *count += 1;
    }

    /// Appends the family in the text format, as the registry renders its own:
    /// nothing before the first observation.
    fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if series.is_empty() {
            return;
        }
        let name = Self::NAME;
        let _ = writeln!(out, "# HELP {name} {}", Self::HELP);
        let _ = writeln!(out, "# TYPE {name} summary");
        for (labels, (sum, count)) in series.iter() {
            let labels = format!(
                "{{group=\"{}\",job=\"{}\"}}",
                escape_label_value(&labels.group),
                escape_label_value(labels.job)
            );
            // Rust's shortest round-trip decimal; sums are finite (see `observe`).
            let _ = writeln!(out, "{name}_sum{labels} {sum}");
            let _ = writeln!(out, "{name}_count{labels} {count}");
        }
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(group: &str, job: &'static str) -> JobLabels {
        JobLabels {
            group: group.into(),
            job,
        }
    }

    /// Sets one series of every family.
    fn one_of_each() -> DaemonMetrics {
        let m = DaemonMetrics::new();
        let g = group("db");
        m.daemon_config_reloads_total.get_or_create(&NoLabels).inc();
        m.gc_bytes_reclaimed_total.get_or_create(&NoLabels).inc_by(4096);
        m.group_bytes_new_total.get_or_create(&g).inc_by(100);
        m.group_bytes_sent_total.get_or_create(&g).inc_by(120);
        m.group_bytes_stored_total.get_or_create(&g).inc_by(120);
        m.group_cycle_duration_seconds.get_or_create(&g).set(0.25);
        m.group_errors_total.get_or_create(&g).inc();
        m.group_last_drill_cpu_seconds.get_or_create(&g).set(2.5);
        m.group_last_drill_passed.get_or_create(&g).set(1);
        m.group_last_drill_replication_lag_seconds.get_or_create(&g).set(1.5);
        m.group_last_drill_repository_read_bytes
            .get_or_create(&g)
            .set(9_437_184);
        m.group_last_drill_timestamp_seconds
            .get_or_create(&g)
            .set(1_700_000_000.5);
        m.group_last_drill_verdict
            .get_or_create(&VerdictLabels {
                group: "db".into(),
                verdict: "passed",
            })
            .set(1);
        m.group_last_point_timestamp_seconds
            .get_or_create(&g)
            .set(1_700_000_001.25);
        m.group_rpo_objective_seconds.get_or_create(&g).set(30.0);
        m.group_rpo_seconds.get_or_create(&g).set(12.5);
        m.job_duration_seconds.observe(job("db", "point"), 1.5);
        m.job_duration_seconds.observe(job("db", "point"), 0.25);
        m.job_runs_total
            .get_or_create(&JobResultLabels {
                group: "db".into(),
                job: "point",
                result: "ok",
            })
            .inc_by(3);
        m.prune_points_removed_total.get_or_create(&g).inc_by(2);
        m.verify_clean.get_or_create(&NoLabels).set(1);
        m
    }

    /// The exposition of every family, byte for byte.
    #[test]
    fn renders_the_text_format() {
        let want = "\
# HELP lifeline_daemon_config_reloads_total Configuration reloads (SIGHUP) that succeeded.
# TYPE lifeline_daemon_config_reloads_total counter
lifeline_daemon_config_reloads_total 1
# HELP lifeline_gc_bytes_reclaimed_total Disk space garbage collection freed.
# TYPE lifeline_gc_bytes_reclaimed_total counter
lifeline_gc_bytes_reclaimed_total 4096
# HELP lifeline_group_bytes_new_total Plaintext bytes of new data (after deduplication, before compression) of the group's cycles.
# TYPE lifeline_group_bytes_new_total counter
lifeline_group_bytes_new_total{group=\"db\"} 100
# HELP lifeline_group_bytes_sent_total Sealed bytes the group's cycles sent to the repository.
# TYPE lifeline_group_bytes_sent_total counter
lifeline_group_bytes_sent_total{group=\"db\"} 120
# HELP lifeline_group_bytes_stored_total Sealed bytes (compressed and encrypted, index included) the repository stored for the group.
# TYPE lifeline_group_bytes_stored_total counter
lifeline_group_bytes_stored_total{group=\"db\"} 120
# HELP lifeline_group_cycle_duration_seconds How long the group's last cycle took.
# TYPE lifeline_group_cycle_duration_seconds gauge
lifeline_group_cycle_duration_seconds{group=\"db\"} 0.25
# HELP lifeline_group_errors_total Failed jobs of the group.
# TYPE lifeline_group_errors_total counter
lifeline_group_errors_total{group=\"db\"} 1
# HELP lifeline_group_last_drill_cpu_seconds CPU time (user and system) of the group's last drill: the drill process and every process it waited for.
# TYPE lifeline_group_last_drill_cpu_seconds gauge
lifeline_group_last_drill_cpu_seconds{group=\"db\"} 2.5
# HELP lifeline_group_last_drill_passed 1 when the group's last drill passed (with or without warnings).
# TYPE lifeline_group_last_drill_passed gauge
lifeline_group_last_drill_passed{group=\"db\"} 1
# HELP lifeline_group_last_drill_replication_lag_seconds The group's largest replication lag from the start to the end of its last drill, as the drill sampled it on the receiver.
# TYPE lifeline_group_last_drill_replication_lag_seconds gauge
lifeline_group_last_drill_replication_lag_seconds{group=\"db\"} 1.5
# HELP lifeline_group_last_drill_repository_read_bytes Sealed bytes the instant promote of the group's last drill read from the repository.
# TYPE lifeline_group_last_drill_repository_read_bytes gauge
lifeline_group_last_drill_repository_read_bytes{group=\"db\"} 9437184
# HELP lifeline_group_last_drill_timestamp_seconds When the group's last drill ended (Unix time).
# TYPE lifeline_group_last_drill_timestamp_seconds gauge
lifeline_group_last_drill_timestamp_seconds{group=\"db\"} 1700000000.5
# HELP lifeline_group_last_drill_verdict The verdict of the group's last drill (1 for the verdict it had).
# TYPE lifeline_group_last_drill_verdict gauge
lifeline_group_last_drill_verdict{group=\"db\",verdict=\"passed\"} 1
# HELP lifeline_group_last_point_timestamp_seconds When the group's newest point was taken (Unix time).
# TYPE lifeline_group_last_point_timestamp_seconds gauge
lifeline_group_last_point_timestamp_seconds{group=\"db\"} 1700000001.25
# HELP lifeline_group_rpo_objective_seconds The group's recovery point objective.
# TYPE lifeline_group_rpo_objective_seconds gauge
lifeline_group_rpo_objective_seconds{group=\"db\"} 30.0
# HELP lifeline_group_rpo_seconds Current RPO: now minus when the group's newest point was taken.
# TYPE lifeline_group_rpo_seconds gauge
lifeline_group_rpo_seconds{group=\"db\"} 12.5
# HELP lifeline_job_runs_total Jobs run, by result.
# TYPE lifeline_job_runs_total counter
lifeline_job_runs_total{group=\"db\",job=\"point\",result=\"ok\"} 3
# HELP lifeline_prune_points_removed_total Points prune removed.
# TYPE lifeline_prune_points_removed_total counter
lifeline_prune_points_removed_total{group=\"db\"} 2
# HELP lifeline_verify_clean 1 when the last scheduled verify found nothing missing or damaged.
# TYPE lifeline_verify_clean gauge
lifeline_verify_clean 1
# HELP lifeline_job_duration_seconds Time jobs took.
# TYPE lifeline_job_duration_seconds summary
lifeline_job_duration_seconds_sum{group=\"db\",job=\"point\"} 1.75
lifeline_job_duration_seconds_count{group=\"db\",job=\"point\"} 2
";
        assert_eq!(one_of_each().render(), want);
        // Nothing is rendered before something is set.
        assert_eq!(DaemonMetrics::new().render(), "");
    }

    /// The families README.md documents, as the daemon exposed them before
    /// prometheus-client (captured from a daemon's scrapes): each exposed name,
    /// its type and its label names. Dashboards depend on them.
    const DOCUMENTED: &[(&str, &str, &[&str])] = &[
        ("lifeline_daemon_config_reloads_total", "counter", &[]),
        ("lifeline_gc_bytes_reclaimed_total", "counter", &[]),
        ("lifeline_group_bytes_new_total", "counter", &["group"]),
        ("lifeline_group_bytes_sent_total", "counter", &["group"]),
        ("lifeline_group_bytes_stored_total", "counter", &["group"]),
        ("lifeline_group_cycle_duration_seconds", "gauge", &["group"]),
        ("lifeline_group_errors_total", "counter", &["group"]),
        ("lifeline_group_last_drill_cpu_seconds", "gauge", &["group"]),
        ("lifeline_group_last_drill_passed", "gauge", &["group"]),
        ("lifeline_group_last_drill_replication_lag_seconds", "gauge", &["group"]),
        ("lifeline_group_last_drill_repository_read_bytes", "gauge", &["group"]),
        ("lifeline_group_last_drill_timestamp_seconds", "gauge", &["group"]),
        ("lifeline_group_last_drill_verdict", "gauge", &["group", "verdict"]),
        ("lifeline_group_last_point_timestamp_seconds", "gauge", &["group"]),
        ("lifeline_group_rpo_objective_seconds", "gauge", &["group"]),
        ("lifeline_group_rpo_seconds", "gauge", &["group"]),
        ("lifeline_job_duration_seconds", "summary", &["group", "job"]),
        ("lifeline_job_runs_total", "counter", &["group", "job", "result"]),
        ("lifeline_prune_points_removed_total", "counter", &["group"]),
        ("lifeline_verify_clean", "gauge", &[]),
    ];

    #[test]
    fn the_families_are_the_documented_ones() {
        let text = one_of_each().render();
        let mut types = BTreeMap::new();
        // Sample name -> label names.
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                let name_end = line.find(['{', ' ']).unwrap();
                let labels: Vec<String> = line[name_end..]
                    .strip_prefix('{')
                    .and_then(|l| l.split_once('}'))
                    .map(|(l, _)| {
                        l.split(',')
                            .map(|kv| kv.split_once('=').unwrap().0.to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                samples.insert(line[..name_end].to_owned(), labels);
            }
        }
        let mut want_types = BTreeMap::new();
        let mut want_samples = BTreeMap::new();
        let readme = include_str!("../../../README.md");
        for (name, kind, labels) in DOCUMENTED {
            want_types.insert(name.to_string(), kind.to_string());
            let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            if *kind == "summary" {
                want_samples.insert(format!("{name}_sum"), labels.clone());
                want_samples.insert(format!("{name}_count"), labels);
            } else {
                want_samples.insert(name.to_string(), labels);
            }
            // README names a group's series after the first as `_rpo_seconds`.
            let short = name.strip_prefix("lifeline_group").unwrap_or(name);
            assert!(
                readme.contains(&format!("`{name}")) || readme.contains(&format!("`{short}")),
                "{name} is not in README.md"
            );
        }
        assert_eq!(types, want_types);
        assert_eq!(samples, want_samples);
    }

    #[test]
    fn bad_durations_are_dropped() {
        let m = DaemonMetrics::new();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            m.job_duration_seconds.observe(job("db", "prune"), bad);
        }
        assert_eq!(m.render(), "");
        m.job_duration_seconds.observe(job("d\"b\\\n", "prune"), 0.0);
        assert!(m.render().contains(
            "lifeline_job_duration_seconds_sum{group=\"d\\\"b\\\\\\n\",job=\"prune\"} 0\n\
             lifeline_job_duration_seconds_count{group=\"d\\\"b\\\\\\n\",job=\"prune\"} 1\n"
        ));
    }

    #[test]
    #[should_panic(expected = "counter `lifeline_points` must end in _total")]
    fn a_counter_is_named_with_its_total() {
        register(
            &mut Registry::default(),
            "lifeline_points",
            "Points.",
            &Counter::<u64>::default(),
        );
    }

    #[test]
    #[should_panic(expected = "the help of `x` must end with a period")]
    fn a_help_text_is_a_sentence() {
        register(&mut Registry::default(), "x", "no period", &Gauge::<i64>::default());
    }
}
