//! Flags of the runbook commands (plan, failover, switchover, failback,
//! resume, runs, approve, abort, drill, probe) and of reports, keys and the
//! audit log.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lifeline_planner::run_catalog::PlannerArgs;

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

// How a run is driven (failover, switchover, failback, resume): the planner's
// state and operator, steps at once, and the output.
#[derive(Args, Debug)]
pub struct DriveArgs {
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
pub struct RunArgs {
    /// The runbook file.
    pub runbook: PathBuf,
    /// The point to promote: `latest`, a seq, or an RFC 3339 time [default:
    /// the latest in a failover; the final sync's point in a switchover or failback].
    #[arg(long, value_name = "latest|SEQ|TIME")]
    pub point: Option<String>,
    #[command(flatten)]
    pub drive: DriveArgs,
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
    pub drive: DriveArgs,
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
