//! Flags of `lifeline testbed`, its faults, its impairment proxy and its
//! workloads.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum TestbedCommand {
    /// Mint a CA, certificates and a key, start a receiver per site, the workload
    /// and an agent replicating it through the impairment proxy; write
    /// DIR/testbed.json and DIR/lifeline.toml. Returns once everything is ready.
    Up(TestbedUpArgs),
    /// Sites, addresses, processes and link state.
    Status {
        /// Directory of the testbed (as given to `up`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inject a fault into a running testbed.
    Fault(TestbedFaultArgs),
    /// Stop and remove everything `up` created.
    Down {
        /// Directory of the testbed (as given to `up`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// The impairment proxy (latency, jitter, rate, stalls, cuts) between sites.
    #[command(hide = true)]
    Proxy(ProxyArgs),
}

#[derive(Args, Debug)]
pub struct TestbedUpArgs {
    /// Directory of the testbed (created if absent).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Two network namespaces joined by a veth pair instead of loopback (root, iproute2).
    #[arg(long)]
    pub netns: bool,
    /// One-way latency added between the sites, e.g. 20ms.
    #[arg(long, value_name = "DURATION")]
    pub latency: Option<String>,
    /// Up to this much more latency, random per chunk, e.g. 5ms.
    #[arg(long, value_name = "DURATION")]
    pub jitter: Option<String>,
    /// Bandwidth between the sites, e.g. 200mbit or 10MiB (tc tbf in netns, the proxy locally).
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// A stall (nothing forwarded) every DURATION, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    pub stall_every: Option<String>,
    /// How long each stall lasts.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub stall_for: String,
    /// Packet loss in percent (netns only: nftables).
    #[arg(long, value_name = "PERCENT")]
    pub loss: Option<f64>,
    /// Agent cycle interval.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub interval: String,
    /// Print testbed.json's summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TestbedFaultArgs {
    /// Directory of the testbed (as given to `up`).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Print what the fault did as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub fault: FaultCommand,
}

#[derive(Subcommand, Debug)]
pub enum FaultCommand {
    /// Partition the sites (proxy drops and refuses connections; link down in netns).
    Cut,
    /// End the partition.
    Heal,
    /// Reset the connections in flight.
    Reset,
    /// kill -9 of the agent.
    KillAgent,
    /// Start the agent again with its command line.
    RestartAgent,
    /// kill -9 of a receiver.
    KillReceiver {
        /// The site whose receiver to kill.
        #[arg(long, default_value = "secondary")]
        site: String,
    },
    /// Start a receiver again on the same address.
    RestartReceiver {
        /// The site whose receiver to start.
        #[arg(long, default_value = "secondary")]
        site: String,
    },
    /// Fill the secondary's disk (a small tmpfs; root) until ENOSPC.
    FillDisk,
    /// Remove what fill-disk wrote.
    FreeDisk,
    /// Damage a stored object in the secondary's repository.
    CorruptObject {
        /// flip (bits in the object), truncate (its pack), delete (its pack).
        #[arg(long, default_value = "flip", value_parser = ["flip", "truncate", "delete"])]
        how: String,
    },
    /// Change the link's impairments while everything runs.
    Impair {
        /// One-way latency between the sites, e.g. 20ms.
        #[arg(long, value_name = "DURATION")]
        latency: Option<String>,
        /// Up to this much more latency, random per chunk.
        #[arg(long, value_name = "DURATION")]
        jitter: Option<String>,
        /// A rate, or `off`.
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
        /// A duration, or `off`.
        #[arg(long, value_name = "DURATION")]
        stall_every: Option<String>,
        /// How long each stall lasts.
        #[arg(long, value_name = "DURATION")]
        stall_for: Option<String>,
        /// Packet loss in percent (netns only).
        #[arg(long, value_name = "PERCENT")]
        loss: Option<f64>,
    },
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address to accept connections on.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Where to forward them.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: String,
    /// One-way latency in each direction, e.g. 10ms (the round trip grows by twice this).
    #[arg(long, visible_alias = "delay", value_name = "DURATION", default_value = "0ms")]
    pub latency: String,
    /// Up to this much more latency, random per chunk.
    #[arg(long, value_name = "DURATION", default_value = "0ms")]
    pub jitter: String,
    /// Bandwidth, e.g. 200mbit or 10MiB.
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// A stall (nothing forwarded) every DURATION.
    #[arg(long, value_name = "DURATION")]
    pub stall_every: Option<String>,
    /// How long each stall lasts.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub stall_for: String,
    /// Serve the control protocol (get, set, cut, heal, reset) on this Unix socket.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WorkloadCommand {
    /// Write records to VOLUME and serve /health, /last-durable, /pause, /resume.
    Run(WorkloadRunArgs),
    /// Quiesce a running workload (stop writing, fsync) for a freeze hook.
    Pause {
        /// The running workload's HTTP address.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        /// The pause ends by itself after this long [default: the workload's].
        #[arg(long, value_name = "DURATION")]
        lease: Option<String>,
    },
    /// Let a paused workload write again (a thaw hook).
    Resume {
        /// The running workload's HTTP address.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
    },
    /// Print a running workload's status.
    Status {
        /// The running workload's HTTP address.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
    },
    /// Check a (recovered) workload volume; exit 1 when damaged.
    Check(WorkloadCheckArgs),
}

#[derive(Args, Debug)]
pub struct WorkloadRunArgs {
    /// The volume (created sparse if absent, continued if it holds a workload).
    #[arg(long, value_name = "IMG")]
    pub volume: PathBuf,
    /// Size of the volume.
    #[arg(long, value_name = "SIZE", default_value = "32MiB")]
    pub size: String,
    /// Bytes of the record ring.
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub ring: String,
    /// Bytes of seeded random ballast after the ring.
    #[arg(long, value_name = "SIZE", default_value = "0")]
    pub ballast: String,
    /// Durability log [default: IMG.durable].
    #[arg(long, value_name = "PATH")]
    pub durable_log: Option<PathBuf>,
    /// Time between two records.
    #[arg(long, value_name = "DURATION", default_value = "20ms")]
    pub write_every: String,
    /// Time between two fsyncs (a record is durable once fsynced).
    #[arg(long, value_name = "DURATION", default_value = "200ms")]
    pub fsync_every: String,
    /// A pause ends by itself after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub pause_lease: String,
    /// HTTP address; with port 0 the bound address is printed as `listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,
}

#[derive(Args, Debug)]
pub struct WorkloadCheckArgs {
    /// The workload volume to check.
    #[arg(long, value_name = "IMG")]
    pub volume: PathBuf,
    /// Measure data lost relative to this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The workload's durability log: count only records durable at --at.
    #[arg(long, value_name = "PATH")]
    pub durable_log: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
