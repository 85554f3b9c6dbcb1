//! The operations console: what `lifeline daemon --http ADDR` serves on one
//! axum server, next to `/metrics`.
//!
//! - [`state`]: a group's state in one word (`meeting_sla`, `rpo_not_met`,
//!   `drill_overdue`, `paused`, `syncing`, `error`), by one pure function.
//! - [`views`]: the JSON API's answers (`/api/v1/…`), typed, built from the
//!   configuration, the repository, the drill reports and the daemon's
//!   [`Feed`](super::feed::Feed).
//! - [`drills`]: the signed drill reports the daemon's drills wrote, each
//!   checked against the planner's public key (never a key the report carries).
//! - [`pages`]: the HTML pages, rendered on the server so that they read
//!   without JavaScript; `assets/console.js` then follows the event stream.
//! - [`auth`]: who may see what (bearer tokens, client certificates) and the
//!   admin actions' guard against cross-site requests.
//! - [`routes`]: the router, its handlers and the security headers.
//! - [`actions`]: what the admin actions reach beyond the daemon: the
//!   planner's audit chain, which records each before it is taken, and the
//!   running planner, which takes approvals.
//!
//! The console reaches the daemon only through [`ConsoleBackend`], so the
//! API, pages and benchmark run over a fake one too.

pub mod actions;
pub mod auth;
mod backend;
pub mod drills;
mod error;
pub mod pages;
pub mod routes;
pub mod serve;
pub mod state;
pub mod tls;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lifeline_service::AgentControl;
use serde::Serialize;

use super::feed::Feed;
use crate::config::Config;

pub use auth::{Auth, Role};
pub use error::ConsoleError;
pub use routes::router;

/// A recovery point as the console shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointSummary {
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    /// `frozen` or `fuzzy`.
    pub consistency: String,
}

impl PointSummary {
    /// The summaries of `points`, oldest first.
    pub fn of_points(points: impl IntoIterator<Item = lifeline_replicator::PointRecord>) -> Vec<PointSummary> {
        let mut out: Vec<PointSummary> = points
            .into_iter()
            .map(|p| PointSummary {
                seq: p.header.seq,
                taken_at: p.header.taken_at,
                consistency: p.header.consistency.name().into(),
            })
            .collect();
        out.sort_by_key(|p| p.seq);
        out
    }
}

/// What the console needs from the daemon.
pub trait ConsoleBackend: Send + Sync + 'static {
    /// The site this daemon runs.
    fn site(&self) -> String;
    /// The configuration in force (it changes on SIGHUP).
    fn config(&self) -> Arc<Config>;
    /// A group's points, oldest first; `None` when this daemon does not reach
    /// the group's repository (it neither owns it nor writes it).
    fn points(&self, group: &str) -> Option<Vec<PointSummary>>;
    /// The control of a group this daemon replicates with `control` set.
    fn control(&self, group: &str) -> Option<Arc<AgentControl>>;
    /// Where the daemon's drills write their reports.
    fn drill_reports(&self) -> PathBuf;
    /// The planner's public key file (`STATE/planner/planner.pub`).
    fn planner_public_key(&self) -> PathBuf;
    /// The state directory of the planner whose audit chain records the
    /// console's actions and whose runs it approves; `None` when the console
    /// acts on no planner (then every action is refused).
    fn planner_state_dir(&self) -> Option<PathBuf>;
}

/// Everything the handlers share.
pub struct Console {
    pub backend: Arc<dyn ConsoleBackend>,
    pub feed: Arc<Feed>,
    pub drills: drills::DrillIndex,
    pub auth: Auth,
    /// `/metrics` on the same server, when given.
    pub metrics: Option<Arc<super::metrics::DaemonMetrics>>,
    /// The clock (tests and the benchmark pin it).
    pub now: fn() -> DateTime<Utc>,
}

impl Console {
    pub fn new(backend: Arc<dyn ConsoleBackend>, feed: Arc<Feed>, auth: Auth) -> Console {
        Console {
            drills: drills::DrillIndex::new(backend.drill_reports(), backend.planner_public_key()),
            backend,
            feed,
            auth,
            metrics: None,
            now: Utc::now,
        }
    }
}
