//! Flags of the replication services: agent, receiver, its control API and
//! status, and certificates.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lifeline_planner::config::AgentOptions;
use lifeline_planner::repo_target::RemoteArgs;

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
    /// Take repo, listen, allow and own_scopes from this site of the configuration.
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
    /// Give GROUP of TENANT its own dedup scope (repeat): its objects are kept,
    /// deduplicated and collected apart from the tenant's shared store, and
    /// only agents allowed to write GROUP may upload to them. For groups whose
    /// agents must not trust the tenant's other agents; set before the group's
    /// first point (see `lifeline scope`).
    #[arg(long = "own-scope", value_name = "GROUP@TENANT")]
    pub own_scope: Vec<String>,
}

/// `lifeline agent`'s command line: the group, how to run, and the options
/// that also come from `LIFELINE_*` variables and the configuration.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Protection group to replicate (its volumes, interval and hooks come from the configuration).
    #[arg(long, value_name = "G")]
    pub group: String,
    /// Replicate once and exit (whatever interval is set).
    #[arg(long)]
    pub once: bool,
    /// One JSON object per line on stdout for each cycle (`{"event":"cycle","seq":…,"bytes_sent":…,"lag_secs":…}`),
    /// retarget and retry, instead of text, for machines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: AgentOptions,
}
