//! Building blocks of `lifeline daemon`, the long-running process that takes
//! recovery points on a schedule.
//!
//! - [`schedule`]: when a job runs. A schedule (an interval or a cron
//!   expression in a time zone) and [`schedule::Due`], a pure job clock that the
//!   daemon asks "is it time?" with the current instant, so every rule (missed
//!   runs, start-up, daylight-saving changes) is tested without sleeping.

pub mod schedule;
