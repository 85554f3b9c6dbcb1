//! What the CLI integration tests share, by topic:
//!
//! - [`process`]: running the real `lifeline` binary, to completion or in the
//!   background with a deadline on every wait;
//! - [`sandbox`]: a temp dir with a key and a local repository;
//! - [`sites`]: deployments over the network (certificates, receivers, clients
//!   as one identity) and the small config files runbook tests start from;
//! - [`runbooks`]: runbooks built from the steps that differ;
//! - [`volumes`]: generated volume contents and comparisons;
//! - [`packs`]: looking inside a repository's packs;
//! - [`mounts`]: root-only fixtures (loop devices, tmpfs) that always clean up;
//! - [`exposition`]: the Prometheus text format, parsed.
//!
//! Everything is re-exported here, so a test file reads `use crate::common::*;`.
//! What the other suites share too (a command's outcome, polling, ports, JSON
//! events, times) comes from `lifeline-testkit`.

#![allow(dead_code)]

pub mod cdp;
pub mod exposition;
pub mod http;
pub mod mounts;
pub mod packs;
pub mod process;
pub mod runbooks;
pub mod sandbox;
pub mod sites;
pub mod volumes;

use std::path::Path;

pub use lifeline_testkit::{Run, events, format_utc_ms, free_port, is_root, on_path, parse_utc_ms, poll_until, sh};
pub use mounts::*;
pub use packs::*;
pub use process::*;
pub use runbooks::*;
pub use sandbox::*;
use serde_json::Value;
pub use sites::*;
pub use volumes::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeline");
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// Exit codes of `lifeline`.
pub const EXIT_OK: i32 = 0;
pub const EXIT_CHECK_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// A path as a `&str` (temp dirs are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `u64` field of a JSON object.
#[track_caller]
pub fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a u64 in {v}"))
}

/// The run `id` of a `runs --json` list.
#[track_caller]
pub fn run_by_id(runs: &Value, id: &str) -> Value {
    runs.as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("no run {id} in {runs}"))
        .clone()
}

/// The job names of a daemon's `jobs` event.
pub fn job_names(jobs: &Value) -> Vec<&str> {
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect()
}

/// The check of step `step` in a drill report.
#[track_caller]
pub fn report_check(report: &Value, step: &str) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == step)
        .unwrap_or_else(|| panic!("no `{step}` check: {report:#}"))
        .clone()
}

/// Asserts that `point` (of `points --key-file KEY --json`) lists the volumes
/// `want`, (name, size), in order.
#[track_caller]
pub fn assert_volumes(point: &Value, want: &[(&str, u64)]) {
    let vols = point["volumes"].as_array().expect("volumes with --key-file");
    assert_eq!(
        vols.iter().map(|v| v["name"].as_str().unwrap()).collect::<Vec<_>>(),
        want.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    for (v, (name, size)) in vols.iter().zip(want) {
        assert_eq!(u(v, "size"), *size, "the size of {name}");
    }
}
