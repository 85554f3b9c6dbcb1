//! Lifeline's control plane: runbooks and their plans, the run engine, drills and
//! their signed reports, the audit chain, the daemon. The `lifeline` binary
//! (`src/bin/lifeline/`) is a thin layer over this library and the replicator's;
//! nothing here reaches up into it.

pub mod audit;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod engine;
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

#[cfg(test)]
mod layers;
