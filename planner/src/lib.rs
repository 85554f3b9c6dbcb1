//! Lifeline's control plane and the `lifeline` command line. Every command is a
//! function here (in `commands`), so tests reach the same code the binary runs.

pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod progress;
pub mod repo_target;
pub mod state_dir;
