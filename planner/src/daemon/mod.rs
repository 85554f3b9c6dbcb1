//! Building blocks of `lifeline daemon`, the long-running process that takes
//! recovery points on a schedule and exposes its state to Prometheus.
//!
//! - [`schedule`]: when a job runs. A schedule (an interval or a cron
//!   expression in a time zone) and [`schedule::Due`], a pure job clock that the
//!   daemon asks "is it time?" with the current instant, so every rule (missed
//!   runs, start-up, daylight-saving changes) is tested without sleeping.
//! - [`metrics`]: what the daemon reports. A small thread-safe registry of
//!   gauges, counters and summaries, its rendering in the Prometheus text format,
//!   a strict parser of that format, and a minimal HTTP server for `/metrics`.

pub mod metrics;
pub mod schedule;
