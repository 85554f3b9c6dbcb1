//! Command-line definitions: one place for flags and help.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
pub use lifeline_planner::daemon::DaemonArgs;
pub use lifeline_planner::repo_target::RemoteArgs;
pub use lifeline_planner::run_catalog::PlannerArgs;

mod replication;
mod repository;
mod runs;
mod testbed;

pub use replication::*;
pub use repository::*;
pub use runs::*;
pub use testbed::*;

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
    /// Give a group its own dedup scope (--group), or list the groups that have
    /// one: its objects are kept, deduplicated and collected apart from its
    /// tenant's other groups, so their agents cannot plant objects it would
    /// reuse. Set before the group's first point.
    Scope(ScopeArgs),
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
    /// With --repair: objects per pack (1,000 16 KiB chunks fill a 16 MiB pack).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub per_pack: u64,
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

/// Exit code for an error that ended a command: a replicator error decides,
/// whether it ended the command itself or through the planner's errors.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    let cause = e.downcast_ref::<lifeline_replicator::Error>().or_else(|| {
        e.chain()
            .find(|c| lifeline_planner::error::is_planner_error(*c))
            .and_then(lifeline_planner::error::replicator_cause)
    });
    match cause {
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
