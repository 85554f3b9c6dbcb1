//! Command-line definitions: one place for flags and help.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
pub use lifeline_planner::daemon::DaemonArgs;
pub use lifeline_planner::repo_target::RemoteArgs;
pub use lifeline_planner::run_catalog::PlannerArgs;

/// Lifeline: disaster-recovery replication. Deduplicated, compressed, encrypted
/// recovery points of block volumes; restore, verify, drills.
#[derive(Parser, Debug)]
#[command(name = "lifeline", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $LIFELINE_CONFIG, else ./lifeline.toml if present].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage key files.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create a repository in a new or empty directory.
    Init(InitArgs),
    /// Back up the volumes of a protection group into a new recovery point.
    Backup(BackupArgs),
    /// List the recovery points of a repository.
    Points(PointsArgs),
    /// Write a volume at a recovery point to a file or block device.
    Restore(RestoreArgs),
    /// Serve the volumes of a recovery point over NBD at once (instant recovery):
    /// reads go through the point's index, writes to an overlay; the repository
    /// is never changed. Prints `listening on nbd://HOST:PORT` first.
    Serve(ServeArgs),
    /// Show the volumes of a recovery point as read-only files (FUSE), to restore
    /// single files: `mount -o loop,ro DIR/VOLUME.img /mnt`, copy, `umount /mnt`.
    /// Prints `mounted at DIR` first; unmounts on Ctrl-C or SIGTERM. The repository
    /// is never changed.
    #[command(
        after_help = "Layout: one point: DIR/<volume>.img. With --all-points: DIR/<seq>-<taken_at>/<volume>.img,\n\
                      taken_at in UTC to the second with `-` for `:` (e.g. DIR/12-2026-12-05T10-30-00Z/db.img).\n\
                      A read of a damaged object fails with EIO (the object is named in the log), never with\n\
                      other bytes. Needs root, or fusermount3 (Debian: fuse3) for other users."
    )]
    Mount(MountArgs),
    /// Check a repository: every object (without a key), or also decrypt and check
    /// every id, node, point and volume hash (with --key-file).
    Verify(VerifyArgs),
    /// Measure the speed of each stage of the data path on this machine.
    Bench(BenchArgs),
    /// The tour: two sites on this machine, the sample workload replicated, a drill
    /// of the built-in demo runbook, achieved RPO/RTO and a signed report in ./lifeline-demo.
    Demo(DemoArgs),
    /// Remove the points of a group that its retention policy does not keep
    /// (`--dry-run`: print each point with "keep (reasons)" or "remove").
    Prune(PruneArgs),
    /// Delete the objects no point references (after prune) and reclaim their space.
    Gc(GcArgs),
    /// Rebuild a repository's catalog from its objects alone (pack footers, point
    /// objects, tenant records): after the catalog was damaged, deleted or left by
    /// an older build. The old catalog is kept beside the new one.
    Repair(RepairArgs),
    /// Mint a deployment CA and certificates for receivers, agents and admins.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Serve a repository directory to agents over gRPC with mutual TLS.
    Receiver(ReceiverArgs),
    /// Replicate protection groups to a receiver, once or on an interval.
    Agent(AgentArgs),
    /// Run what the configuration gives a site: its receiver, scheduled points
    /// (replication or backups) per group, prunes, drills, verifies and garbage
    /// collection, with a Prometheus endpoint. SIGHUP reloads the configuration;
    /// SIGTERM/SIGINT stop it after the running jobs.
    Daemon(DaemonArgs),
    /// Replication status of the caller tenant's groups on a receiver.
    Status(StatusArgs),
    /// Drive a running agent through its control API (admin identity).
    Control(ControlArgs),
    /// Print what a runbook would do in a mode (the steps in order, resolved); touches nothing.
    Plan(PlanArgs),
    /// Fail a group over to its recovery site (disaster: the primary is presumed lost).
    Failover(RunArgs),
    /// Move a group to its recovery site with zero data loss (planned).
    Switchover(RunArgs),
    /// Bring a group back to its original site after a failover (reprotect, then switch over home).
    Failback(RunArgs),
    /// Continue a run that stopped (planner killed, machine rebooted); finished steps are not re-run.
    Resume(ResumeArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Approve an approval step of a running run.
    Approve(ApproveArgs),
    /// Abort a run: running steps are stopped, the processes it started are stopped.
    Abort(AbortArgs),
    /// The planner's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A test failover into a sandbox while production and replication go on:
    /// measures the RPO and RTO achieved and writes a signed report.
    Drill(DrillArgs),
    /// Drill reports: verify one, list them over time.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The planner's signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Two-site testbeds for rehearsals and tests: up, status, fault, down.
    #[command(subcommand)]
    Testbed(TestbedCommand),
    /// One connection attempt (used by drills to check services inside their
    /// network namespace): exit 0 when it passes.
    #[command(hide = true)]
    Probe(ProbeArgs),
    /// The sample workload of the testbeds: run, pause, resume, check.
    #[command(subcommand, hide = true)]
    Workload(WorkloadCommand),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Tenant of a local repository [default: the group's `tenant`, else `default`].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Protection group whose points to prune.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// Keep every point taken within this long before now (e.g. 24h).
    #[arg(long, value_name = "DURATION")]
    pub journal: Option<String>,
    /// Keep the N newest points.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest point of each of the N most recent hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest point of each of the N most recent days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest point of each of the N most recent weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest point of each of the N most recent months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest point of each of the N most recent years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every point taken within this long before the newest point.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Time zone of the calendar buckets: UTC, an offset like +01:00, or a name like Europe/Berlin [default: the group's, else UTC].
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Print the decision for each point; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Tenant to collect [default: every tenant].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Objects in packs younger than this are never collected (0s when no upload runs).
    /// Through a receiver, collection is safe against uploads running meanwhile
    /// whatever the grace; a short one may make an agent redo a cycle.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: String,
    /// Report what would be collected; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Repository directory, or s3://BUCKET/PREFIX (stop any receiver serving it first).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub repo: PathBuf,
    /// Where an s3:// repository's local cache is rebuilt (and who owns the
    /// repository afterwards) [default: state_dir of the configuration, else
    /// /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// `tcp HOST:PORT` or `http URL`.
    pub kind: String,
    /// HOST:PORT for tcp, the URL for http.
    pub target: String,
    /// http: the status that passes.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// http: text the body must contain.
    #[arg(long)]
    pub body_contains: Option<String>,
    /// https: trust only the CA certificates in this PEM file.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The runbook file.
    pub runbook: PathBuf,
    /// What the run would be: each action's behaviour depends on the mode.
    #[arg(long, value_enum)]
    pub mode: lifeline_planner::runbook::actions::Mode,
    /// `latest`, a seq, or an RFC 3339 time.
    #[arg(long, value_name = "latest|SEQ|TIME")]
    pub point: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The runbook file.
    pub runbook: PathBuf,
    /// The point to promote: `latest`, a seq, or an RFC 3339 time [default:
    /// the latest in a failover; the final sync's point in a switchover or failback].
    #[arg(long, value_name = "latest|SEQ|TIME")]
    pub point: Option<String>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Steps running at once at most.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Print a JSON event per line instead of live progress.
    #[arg(long)]
    pub json: bool,
    /// When a drill holds the planner catalog, it is asked to stop (a recovery
    /// always wins over a drill); how long to wait for it to tear down and
    /// release the catalog.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub preempt_wait: String,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run id (see `lifeline runs`).
    pub run: String,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Steps running at once at most.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Print a JSON event per line instead of live progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The run id (see `lifeline runs`).
    pub run: String,
    /// The id of the approval step to approve.
    pub step: String,
    #[command(flatten)]
    pub planner: PlannerArgs,
}

#[derive(Args, Debug)]
pub struct AbortArgs {
    /// The run id (see `lifeline runs`).
    pub run: String,
    #[command(flatten)]
    pub planner: PlannerArgs,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// The runbook file.
    pub runbook: PathBuf,
    /// `latest`, a seq, or an RFC 3339 time.
    #[arg(long, value_name = "latest|SEQ|TIME")]
    pub point: Option<String>,
    /// Where reports go (a directory per drill) [default: ./lifeline-reports].
    #[arg(long, value_name = "DIR", default_value = "lifeline-reports")]
    pub report_dir: PathBuf,
    /// Leave the sandbox (volumes, logs) for inspection; its processes are stopped anyway.
    #[arg(long)]
    pub keep: bool,
    /// Do not give the sandbox a network namespace of its own (one is made when root with iproute2).
    #[arg(long)]
    pub no_netns: bool,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Steps running at once at most.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Print a JSON event per line, then the report's summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Check a report against the signer's public key: any edit of report.json,
    /// report.html, report.xml or manifest.json is found and named.
    Verify {
        /// The report directory, or its report.json.
        path: PathBuf,
        /// Public key to trust (from `lifeline keys show-signer`) [default: the planner's own in the state directory].
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// Also check that the report's manifest digest is on this audit log's
        /// chain (a copy of STATE/planner, or the state directory), signed by
        /// --pubkey: an old, substituted or re-signed report is not.
        #[arg(long, value_name = "DIR", requires = "pubkey")]
        audit_log: Option<PathBuf>,
        #[command(flatten)]
        planner: PlannerArgs,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drills over time: achieved RPO/RTO trend, each group's last passing drill, overdue groups.
    List {
        #[command(flatten)]
        planner: PlannerArgs,
        /// Print the drills, trends and overdue groups as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print the planner's public key (hex), to hand to auditors for `report verify --pubkey`.
    ShowSigner {
        #[command(flatten)]
        planner: PlannerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit chain: every entry's hash link, the signed head, and the
    /// copies of the head in the catalog's run records.
    Verify {
        /// Public key to trust, held by the auditor off the planner host (from
        /// `lifeline keys show-signer`): a log re-signed with another key fails
        /// [default: planner.pub beside the log, which proves no more than the host].
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        #[command(flatten)]
        planner: PlannerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The agent's control address, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub control: String,
    /// The agent's identity name (its certificate serves the control API).
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    /// TLS directory with ca.pem and the admin identity [default: [tls] dir of the configuration].
    #[arg(long, value_name = "TLSDIR")]
    pub tls_dir: Option<PathBuf>,
    /// Admin identity to present [default: [tls] admin of the configuration].
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub call: ControlSubcommand,
}

#[derive(Subcommand, Debug)]
pub enum ControlSubcommand {
    /// Show the agent's state.
    Status,
    /// Finish the current cycle and start no new one until resume.
    Pause,
    /// Start cycles again.
    Resume,
    /// Return once a point holding everything written before the call is committed.
    SyncNow,
    /// Replicate to another receiver from the next cycle on.
    Retarget {
        /// The new receiver, https://HOST:PORT.
        url: String,
    },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Receiver address, https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub repo: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create CADIR/ca.pem + ca.key if absent (else sign with them) and write
    /// TLSDIR/ca.pem, receiver.pem/.key (with --receiver-san) and NAME.pem/.key per
    /// identity. The CA key never goes into TLSDIR.
    New(CertsArgs),
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory holding the CA (created if absent). Keep it off the hosts.
    #[arg(long, value_name = "CADIR")]
    pub ca_dir: PathBuf,
    /// TLS directory to write (copy it to the hosts that need it).
    #[arg(long, value_name = "TLSDIR")]
    pub out: PathBuf,
    /// DNS name or IP address of the receiver (repeat); writes receiver.pem/.key.
    #[arg(long = "receiver-san", value_name = "HOST")]
    pub receiver_sans: Vec<String>,
    /// An agent identity NAME@TENANT (repeat).
    #[arg(long = "agent", value_name = "NAME@TENANT")]
    pub agents: Vec<String>,
    /// An admin identity (repeat).
    #[arg(long = "admin", value_name = "NAME")]
    pub admins: Vec<String>,
    /// A read-only auditor identity for the daemon's console (repeat).
    #[arg(long = "auditor", value_name = "NAME")]
    pub auditors: Vec<String>,
    /// DNS name or IP address of a daemon's console (repeat); writes console.pem/.key (--http-tls).
    #[arg(long = "console-san", value_name = "HOST")]
    pub console_sans: Vec<String>,
    /// Validity of the new certificates in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct ReceiverArgs {
    /// Take repo, listen and allow from this site of the configuration.
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Repository directory (created if absent), or s3://BUCKET/PREFIX (an empty
    /// bucket or prefix is initialised; the local cache lives in --state-dir).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub repo: Option<PathBuf>,
    /// Where an s3:// repository's local cache lives [default: state_dir of the
    /// configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address to listen on; with port 0 the bound address is printed first.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// TLS directory with ca.pem and receiver.pem/.key.
    #[arg(long, value_name = "TLSDIR")]
    pub tls_dir: Option<PathBuf>,
    /// Groups an agent may write: NAME@TENANT=GROUP[,GROUP...], or
    /// NAME=GROUP[,GROUP...] for that agent name in every tenant (repeat).
    #[arg(long = "allow", value_name = "NAME[@TENANT]=GROUP[,GROUP...]")]
    pub allow: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Receiver address, https://HOST:PORT [default: the group's secondary site's receiver].
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Key file [default: key_file from the configuration].
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: Option<PathBuf>,
    /// Protection group to replicate (its volumes, interval and hooks come from the configuration).
    #[arg(long, value_name = "G")]
    pub group: String,
    /// A volume of the group: NAME=PATH. Repeat for each [default: the group's volumes].
    #[arg(long = "volume", value_name = "NAME=PATH")]
    pub volumes: Vec<String>,
    /// Replicate once and exit.
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// One JSON object per line on stdout for each cycle (`{"event":"cycle","seq":…,"bytes_sent":…,"lag_secs":…}`),
    /// retarget and retry, instead of text, for machines.
    #[arg(long)]
    pub json: bool,
    /// Time between the starts of two cycles, e.g. 5s, 2m, 1h [default: the group's interval].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// How long to retry transient failures (receiver down, link cut) before giving up [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub retry_for: Option<String>,
    /// Smooth upload limit, e.g. 50MiB (per second) or 200Mbit.
    #[arg(long, value_name = "RATE")]
    pub limit_upload: Option<String>,
    /// Serve the control API (status, pause, resume, sync-now, retarget) on ADDR;
    /// with port 0 the bound address is printed as `control listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub control: Option<String>,
    /// Command that quiesces the volumes before each point (e.g. `fsfreeze -f /mnt`); needs --thaw [default: the group's `freeze`, for the forward agent only].
    #[arg(long, value_name = "CMD", requires = "thaw")]
    pub freeze: Option<String>,
    /// Command that resumes them; always runs once --freeze was attempted [default: the group's `thaw`].
    #[arg(long, value_name = "CMD", requires = "freeze")]
    pub thaw: Option<String>,
    /// Agent state directory (what the last point held, to send only changes) [default: state_dir of the configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also store a map of 4 KiB block hashes with each changed segment (0.4% of
    /// its size), so a later point that changes scattered blocks, e.g. the reverse
    /// replication of a failback, sends only those blocks [config: block_map].
    #[arg(long)]
    pub block_map: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a new 256-bit master key (mode 0600). With LIFELINE_PASSPHRASE set, the
    /// key is wrapped by that passphrase (argon2id).
    New {
        /// Where to write the key file (must not exist).
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RepoArg {
    /// Repository: a directory, s3://BUCKET/PREFIX (endpoint and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the
    /// configuration's [s3] table), or https://HOST:PORT of a receiver (with --tls-dir
    /// and --identity).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX|URL")]
    pub repo: PathBuf,
    /// State directory: the agent's state (what the last point held, to send only
    /// changes) and the local cache of an s3:// repository [default: state_dir of the
    /// configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Key file written by `lifeline key new` (only its fingerprint is recorded).
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: PathBuf,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Key file written by `lifeline key new`.
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: PathBuf,
    /// Protection group name.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// A volume of the group: NAME=PATH (file or block device). Repeat for each.
    #[arg(long = "volume", value_name = "NAME=PATH", required = true)]
    pub volumes: Vec<String>,
    /// Command that quiesces the volumes (e.g. `fsfreeze -f /mnt`); needs --thaw.
    #[arg(long, value_name = "CMD", requires = "thaw")]
    pub freeze: Option<String>,
    /// Command that resumes them; always runs once --freeze was attempted.
    #[arg(long, value_name = "CMD", requires = "freeze")]
    pub thaw: Option<String>,
    /// Also store a map of 4 KiB block hashes with each changed segment (0.4% of
    /// its size), so a later point that changes scattered blocks, e.g. the reverse
    /// replication of a failback, sends only those blocks [config: block_map].
    #[arg(long)]
    pub block_map: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PointsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Tenant of a local repository [default: `default`; on a receiver, the certificate's].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Only this group.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// Also open each point and show its volumes (names, sizes).
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Key file written by `lifeline key new` (the tenant's key).
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: PathBuf,
    /// Tenant of a local or s3:// repository [default: `default`; on a receiver, the certificate's].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Protection group whose point to restore.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// `latest`, a seq, or an RFC 3339 time (the newest point at or before it).
    #[arg(long, value_name = "latest|SEQ|TIME", default_value = "latest")]
    pub point: String,
    /// Volume name within the point.
    #[arg(long, value_name = "NAME")]
    pub volume: String,
    /// Target file (created or replaced, sparse) or block device.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Key file written by `lifeline key new` (the tenant's key).
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: PathBuf,
    /// Tenant of a local or s3:// repository [default: `default`; on a receiver, the certificate's].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Protection group whose point to serve.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// `latest`, a seq, or an RFC 3339 time (the newest point at or before it).
    #[arg(long, value_name = "latest|SEQ|TIME", default_value = "latest")]
    pub point: String,
    /// Volume to export, as an NBD export of the same name (repeat it) [default: every volume of the point].
    #[arg(long, value_name = "NAME")]
    pub volume: Vec<String>,
    /// Address to listen on, e.g. 127.0.0.1:10809 (port 0: any free port). NBD has no
    /// authentication: listen on loopback or a sandbox network only.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Directory of the overlay that keeps clients' writes (and survives a restart
    /// with the same point) [default: a temporary directory removed at exit].
    #[arg(long, value_name = "DIR")]
    pub overlay_dir: Option<PathBuf>,
    /// Refuse writes (EPERM); no overlay.
    #[arg(long)]
    pub read_only: bool,
    /// Bound of the cache of decoded segments, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub cache_mib: usize,
    /// Copy volume V into PATH (a file or block device) in the background while
    /// serving; overlay writes win, and a restart with the same --overlay-dir
    /// resumes where it stopped (repeat it per volume).
    #[arg(long, value_name = "V=PATH")]
    pub hydrate: Vec<String>,
    /// Hydrate at most this fast, per volume, e.g. 50MiB (per second) or 200mbit [default: no limit].
    #[arg(long, value_name = "RATE")]
    pub hydrate_rate: Option<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Key file written by `lifeline key new` (the tenant's key).
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: PathBuf,
    /// Tenant of a local or s3:// repository [default: `default`; on a receiver, the certificate's].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Protection group whose points to show.
    #[arg(long, value_name = "G")]
    pub group: String,
    /// `latest`, a seq, or an RFC 3339 time (the newest point at or before it) [default: latest].
    #[arg(long, value_name = "latest|SEQ|TIME", conflicts_with = "all_points")]
    pub point: Option<String>,
    /// Show every point of the group, each in a directory `<seq>-<taken_at>`, to browse in time.
    #[arg(long)]
    pub all_points: bool,
    /// Bound of the cache of decoded segments, in MiB (shared by every image).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub cache_mib: usize,
    /// Empty directory to mount on.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Tenant to verify [default: `default` locally, every tenant on a receiver].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Drop damaged and missing objects (and the nodes above them) from the index
    /// so the next backup stores them again and heals the points that share them.
    #[arg(long)]
    pub repair: bool,
    /// With the key: decrypt and check every id, node, point and volume hash.
    #[arg(long, value_name = "KEYFILE")]
    pub key_file: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Data to measure on (the first 256 MiB per stage; the whole file through the
    /// pipeline). Default: generated sample data.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Measure the planner instead: validating and planning a 200-step runbook,
    /// and the engine's overhead per step (persisted run state and audit log).
    #[arg(long)]
    pub planner: bool,
    /// Measure prune + garbage collection of a synthetic repository instead.
    #[arg(long)]
    pub gc: bool,
    /// Measure `lifeline repair` of a synthetic repository (--points × --per-point
    /// objects) whose catalog was deleted, and opening it afterwards.
    #[arg(long)]
    pub repair: bool,
    /// Measure how many pack files N small agent cycles leave (--cycle-bytes each).
    #[arg(long, value_name = "N")]
    pub cycles: Option<u64>,
    /// With --cycles: random bytes written before each cycle.
    #[arg(long, default_value_t = 100 << 10, value_name = "BYTES")]
    pub cycle_bytes: usize,
    /// Flip N single bytes, one at a time, spread over every file of a local
    /// repository of three points; after each, open (repairing when refused),
    /// deep-verify and restore every point: count points lost, silently wrong
    /// restores and damage verify called clean.
    #[arg(long, value_name = "N")]
    pub damage: Option<u64>,
    /// Back --file up and restore it through a local repository, then through
    /// this new s3:// repository (an empty bucket or prefix; endpoint and
    /// credentials as for --repo): throughput of each and S3 requests per GiB.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub s3: Option<String>,
    /// With --gc or --repair: points in the synthetic repository.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub points: u64,
    /// With --gc or --repair: chunks per point (each point's own), plus one node.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub per_point: u64,
    /// With --gc: points prune keeps (the newest).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub keep: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the data-path tour's directory instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Size of the sample volume in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub size_mib: u64,
    /// Only the tour of the data path: back up, change, back up, restore, verify.
    #[arg(long)]
    pub data_path: bool,
    /// Drill runbooks/demo-instant.toml: the point served and attached at once
    /// (nbdfuse), hydrated into the sandbox in the background.
    #[arg(long, conflicts_with = "data_path")]
    pub instant: bool,
    /// After the drill, serve the operations console on ADDR (e.g. 127.0.0.1:9188)
    /// over the running demo until Ctrl-C, then tear the demo down.
    #[arg(long, conflicts_with = "data_path", value_name = "ADDR")]
    pub console: Option<String>,
}

/// Logs go to stderr; `RUST_LOG` sets the level (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The message for an error that ended a command: the error and its causes,
/// skipping a cause whose text the message already holds (the replicator's I/O
/// and catalog errors print their source themselves).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Exit code for an error that ended a command.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<lifeline_replicator::Error>() {
        Some(lifeline_replicator::Error::Interrupted) => ExitCode::from(130),
        Some(lifeline_replicator::Error::VolumeHashMismatch { .. }) => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag and positional of every subcommand, as `lifeline SUB --FLAG`,
    /// that `--help` shows without a line of help.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if a.is_hide_set() || a.get_help().is_some() || a.get_long_help().is_some() {
                continue;
            }
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let name = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| id.to_uppercase());
            out.push(format!("{path} {name}"));
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_of_every_subcommand_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "lifeline", &mut missing);
        assert!(missing.is_empty(), "flags without help text:\n{}", missing.join("\n"));
    }
}
