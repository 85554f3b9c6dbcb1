//! `DIR/testbed.json`: everything `testbed up` created (sites, addresses,
//! processes with their command lines and pids, link state, mounts, paths), so
//! that `status`, `fault` and `down` (and the next `up`, finding a leftover)
//! can act on it. Written atomically. Layout in `FORMAT.md` ("Testbed state").

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Flavour;
use super::netns::NetnsLink;
use crate::error::{Result, TestbedError};

/// `format` of the file.
pub const STATE_FORMAT: &str = "lifeline-testbed";
/// `version` of the file.
pub const STATE_VERSION: u32 = 1;
/// File name inside the testbed directory.
pub const STATE_FILE: &str = "testbed.json";

/// The process that owns a testbed (a test); when it is gone, the testbed is a leftover.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`, so a reused pid is not taken for the owner.
    pub start_time: u64,
}

/// One site.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteState {
    /// Network namespace (netns flavour).
    pub namespace: Option<String>,
    /// The site's address: 127.0.0.1, or its veth address.
    pub address: String,
    pub dir: PathBuf,
    pub repo: PathBuf,
    /// `https://ADDR:PORT` of its receiver (reachable inside its namespace).
    pub receiver_url: String,
    pub listen: String,
    /// A size-limited tmpfs holding the repository (root only), for disk-full faults.
    pub disk: Option<PathBuf>,
}

/// The link between the sites.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkState {
    /// `up` or `cut`.
    pub state: String,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Bytes per second (proxy in the local flavour, `tc tbf` in netns).
    pub rate_bytes_per_sec: Option<u64>,
    pub stall_every_ms: Option<u64>,
    pub stall_for_ms: u64,
    /// Packet loss in percent (netns only: nftables).
    pub loss_percent: f64,
    /// The proxy's control socket.
    pub proxy_socket: PathBuf,
    /// The agent's receiver URL: the proxy, on the primary site.
    pub proxy_url: String,
    pub netns: Option<NetnsLink>,
}

/// One process `up` started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessState {
    pub name: String,
    pub site: String,
    pub namespace: Option<String>,
    /// The command line (restarts reuse it; ports are the ones first bound).
    pub argv: Vec<String>,
    pub pid: u32,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The stdout line prefix that says it is ready.
    pub ready: String,
    /// What followed `ready` on that line (the bound address).
    pub ready_value: String,
}

/// The workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub addr: String,
    pub volume: PathBuf,
    pub durable_log: PathBuf,
    pub size: u64,
    pub write_every_ms: u64,
}

/// Identities, group and agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentInfo {
    pub identity: String,
    pub tenant: String,
    pub admin: String,
    pub group: String,
    pub volume: String,
    pub control: String,
    pub interval_ms: u64,
}

/// Paths `up` wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Paths {
    pub ca_dir: PathBuf,
    pub tls_dir: PathBuf,
    pub key_file: PathBuf,
    pub config: PathBuf,
    pub logs: PathBuf,
    pub state_dir: PathBuf,
    pub restore_dir: PathBuf,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestbedState {
    pub format: String,
    pub version: u32,
    /// Short id: names namespaces and veths, and the registry entry.
    pub id: String,
    pub dir: PathBuf,
    pub flavour: Flavour,
    pub created: String,
    pub owner: Option<Owner>,
    /// The `lifeline` binary every process runs.
    pub bin: PathBuf,
    pub sites: BTreeMap<String, SiteState>,
    pub link: LinkState,
    pub processes: BTreeMap<String, ProcessState>,
    pub workload: WorkloadInfo,
    pub agent: AgentInfo,
    pub paths: Paths,
    /// Removed by `down` (in reverse order).
    pub created_paths: Vec<PathBuf>,
    /// Whether `up` created `dir` itself (then `down` removes it).
    pub created_dir: bool,
}

impl TestbedState {
    /// Reads `DIR/testbed.json`.
    pub fn load(dir: &Path) -> Result<TestbedState> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).map_err(|e| TestbedError::State {
            path: path.clone(),
            reason: format!(
                "{e} (is there a testbed here? `lifeline testbed up --dir {}`)",
                dir.display()
            ),
        })?;
        let st: TestbedState = serde_json::from_str(&text).map_err(|e| TestbedError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if st.format != STATE_FORMAT || st.version != STATE_VERSION {
            return Err(TestbedError::State {
                path,
                reason: format!(
                    "format {} version {} is not {STATE_FORMAT} {STATE_VERSION}",
                    st.format, st.version
                ),
            });
        }
        Ok(st)
    }

    /// Writes `path` atomically.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        write_atomic(path, text.as_bytes())
    }

    /// The site of a name, or an error listing the sites.
    pub fn site(&self, name: &str) -> Result<&SiteState> {
        self.sites
            .get(name)
            .ok_or_else(|| TestbedError::Invalid(format!("no site `{name}`: the sites are primary and secondary")))
    }
}

/// Temp file, fsync, rename, fsync of the directory: the repository's one
/// write path ([`lifeline_replicator::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    lifeline_replicator::write_atomic(path, bytes).map_err(|e| TestbedError::Invalid(e.to_string()))
}
