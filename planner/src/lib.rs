//! Lifeline's control plane: runbooks and their plans, the run engine, drills and
//! their signed reports, the audit chain, the daemon. The `lifeline` binary
//! (`src/bin/lifeline/`) is a thin layer over this library and the replicator's;
//! nothing here reaches up into it.
//!
//! Layers, lowest first (a module uses only modules on lines above it; the
//! `layers` test fails on any cycle):
//! - `io_error` (an I/O error and what was being done), `verdict`, `state_dir`,
//!   `progress`, `repo_target` (where a repository is);
//! - `config` (lifeline.toml), `audit` (the signed chain);
//! - `runbook` (parse and validate), `plan` (a runbook against a config),
//!   `run_record` and `run_catalog` (a run's durable state), `report`, `sandbox`;
//! - `engine`: the run driver, one file per action family in `engine/actions/`;
//! - `drill`: orchestration, its network namespace, the lag watch, and the
//!   evidence (what a run record proves, as the report states it);
//! - `daemon`: the job plan, the scheduler loop, one file per kind of work in
//!   `daemon/work/`, metrics, the feed of what it did, and the operations
//!   console (`daemon/console/`) on the HTTP server loop it shares with
//!   `/metrics`;
//! - `error`: what the modules' typed errors share (the replicator error that
//!   caused one), for the binary's exit codes.
//!
//! Each module returns its own typed error (thiserror), naming the object and
//! the remedy; untyped errors are the binary's alone (the `layers` test
//! refuses them here).

pub mod audit;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod engine;
pub mod error;
pub mod io_error;
pub mod plan;
pub mod progress;
pub mod repo_target;
pub mod report;
pub mod run_catalog;
pub mod run_record;
pub mod runbook;
pub mod sandbox;
pub mod state_dir;
pub mod verdict;

pub use audit::{AuditError, AuditLog};
pub use config::{Config, ConfigError, DaemonOptions, GroupConfig};
pub use daemon::DaemonError;
pub use drill::{DrillError, DrillOptions, DrillOutcome};
pub use engine::{
    Driving, EngineError, Event, Prepared, RunObserver, RunRecord, RunStatus, StepStatus, Unobserved, execute_run,
};
pub use plan::{Plan, PlanOptions, plan};
pub use report::{DrillReport, ReportError};
pub use run_catalog::{CatalogError, PlannerArgs, PlannerCatalog};
pub use run_record::Outcome;
pub use runbook::{InvalidRunbook, Runbook, RunbookError, load_checked};
pub use verdict::Verdict;

#[cfg(test)]
mod layers;
