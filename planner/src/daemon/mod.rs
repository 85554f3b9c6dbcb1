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
//! - [`feed`]: what the daemon has been doing (jobs, replication cycles, the
//!   RPO history), bounded, and a broadcast of each change.
//! - [`console`]: the operations console and its JSON API (`--http`).
//! - [`http_server`]: the one HTTP server loop, with its limits, that
//!   `/metrics` and the console share.

pub mod console;
mod error;
pub mod feed;
pub mod http_server;
pub mod jobs;
pub mod metrics;
pub mod schedule;
pub mod scheduler;
mod shared;
mod work;

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

pub use crate::config::DaemonOptions;
pub use error::{DaemonError, Result};
