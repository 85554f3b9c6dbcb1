//! Lifeline's control plane and the `lifeline` command line. Every command is a
//! function here (in `commands`), so tests reach the same code the binary runs.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control_socket;
pub mod daemon;
pub mod demo;
pub mod drill;
pub mod engine;
pub mod plan;
pub mod progress;
pub mod repo_target;
pub mod report;
pub mod run_catalog;
pub mod runbook;
pub mod sandbox;
pub mod state_dir;
