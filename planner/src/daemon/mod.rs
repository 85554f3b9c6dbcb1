//! Building blocks of `lifeline daemon`, the long-running process that takes
//! recovery points on a schedule and exposes its state to Prometheus.
//!
//! - [`schedule`]: when a job runs. A schedule (an interval or a cron
//!   expression in a time zone) and [`schedule::Due`], a pure job clock that the
//!   daemon asks "is it time?" with the current instant, so every rule (missed
//!   runs, start-up, daylight-saving changes) is tested without sleeping.
//! - [`metrics`]: what the daemon reports. Every metric family declared once in
//!   a typed struct over the `prometheus-client` registry, its rendering in the
//!   Prometheus text format, and the `/metrics` endpoint (axum on hyper).

pub mod metrics;
pub mod run;
pub mod schedule;

/// `lifeline daemon`'s command line.
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// The site of the configuration this daemon runs.
    #[arg(long, value_name = "NAME")]
    pub site: String,
    #[command(flatten)]
    pub options: DaemonOptions,
    /// Agent and planner state directory [default: the configuration's state_dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// One JSON event per line on stdout (the job list, each job's start and end, stop), for machines.
    #[arg(long)]
    pub json: bool,
}

/// `lifeline daemon`'s options. One struct serves the three sources: flags,
/// `LIFELINE_*` environment variables (clap reads both) and the `[daemon]`
/// table of `lifeline.toml` (serde); [`DaemonOptions::over`] merges them, flags
/// and environment first.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonOptions {
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9187).
    #[arg(long, env = "LIFELINE_METRICS", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Operations run at once per tenant (backups, prunes, drills, verifies) [default: 5].
    #[arg(long, env = "LIFELINE_MAX_CONCURRENT", value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// When this site's repository is verified without the key: an interval or a cron expression.
    #[arg(long, env = "LIFELINE_VERIFY_SCHEDULE", value_name = "SCHEDULE")]
    pub verify_schedule: Option<String>,
    /// When this site's repository is garbage collected: an interval or a cron expression.
    #[arg(long, env = "LIFELINE_GC_SCHEDULE", value_name = "SCHEDULE")]
    pub gc_schedule: Option<String>,
    /// Grace period of scheduled collections [default: 1h].
    #[arg(long, env = "LIFELINE_GC_GRACE", value_name = "DURATION")]
    pub gc_grace: Option<String>,
    /// Time zone of the site's cron schedules (verify, gc) [default: UTC].
    #[arg(long, env = "LIFELINE_TIMEZONE", value_name = "TZ")]
    pub timezone: Option<String>,
}

impl DaemonOptions {
    /// These options (flags, environment) where set, else the file's.
    pub fn over(&self, file: &DaemonOptions) -> DaemonOptions {
        DaemonOptions {
            metrics: self.metrics.clone().or_else(|| file.metrics.clone()),
            max_concurrent: self.max_concurrent.or(file.max_concurrent),
            verify_schedule: self.verify_schedule.clone().or_else(|| file.verify_schedule.clone()),
            gc_schedule: self.gc_schedule.clone().or_else(|| file.gc_schedule.clone()),
            gc_grace: self.gc_grace.clone().or_else(|| file.gc_grace.clone()),
            timezone: self.timezone.clone().or_else(|| file.timezone.clone()),
        }
    }
}
