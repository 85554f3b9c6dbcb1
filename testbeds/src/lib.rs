//! Two-site testbeds on one machine, the sample workload, and fault injection:
//! what the end-to-end suite (and a person rehearsing a disaster) runs Lifeline
//! against.
//!
//! - [`Testbed`]: `up` / `down` / `status` of a two-site environment, *local*
//!   (two site directories, loopback ports) or *netns* (two network namespaces
//!   joined by a veth pair; root and iproute2), with a receiver per site, the
//!   workload and an agent replicating it through the [`ImpairmentProxy`];
//! - [`Fault`]: kill -9 and restart of agent or receiver, link cut and heal,
//!   latency / jitter / bandwidth / stalls / loss, disk full, damaged objects;
//! - the workload ([`Workload`], [`check_volume`]): records whose own content
//!   tells how much data a recovery lost.
//!
//! The formats of the workload volume, its durability log and `testbed.json`
//! are in `FORMAT.md`.

mod error;
mod impairment_proxy;
mod testbed;
mod units;
mod workload;

pub use error::{Result, TestbedError};
pub use impairment_proxy::{Impairment, ImpairmentProxy, ProxyCommand, ProxyState, proxy_call};
pub use testbed::fault::{Fault, FaultOutcome, ObjectDamage, StoredObject, corrupt_object, stored_objects};
pub use testbed::netns::NetnsLink;
pub use testbed::state::{AgentInfo, LinkState, Paths, ProcessState, SiteState, TestbedState, WorkloadInfo};
pub use testbed::{
    ADMIN, AGENT, Flavour, GROUP, SPARE_GROUP, TENANT, Testbed, TestbedGuard, TestbedSpec, VOLUME, is_root, which,
};
pub use units::{parse_duration, parse_rate, parse_size};
pub use workload::checker::{CheckOptions, CheckReport, DamagedSlot, check_path, check_volume, describe};
pub use workload::durability_log::{DurabilityHistory, DurabilityLog};
pub use workload::http::{http_call, serve_http};
pub use workload::record::{Record, Slot, Superblock};
pub use workload::service::{Workload, WorkloadOptions, WorkloadStatus, default_durable_log};
