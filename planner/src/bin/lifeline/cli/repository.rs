//! Flags of the commands that work on a repository: init, backup, points,
//! restore, serve, mount, verify, prune, gc, repair, key.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lifeline_planner::repo_target::RemoteArgs;

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
pub struct ScopeArgs {
    /// Repository directory, or s3://BUCKET/PREFIX (on a receiver's site, give
    /// the receiver `--own-scope GROUP@TENANT` instead).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub repo: PathBuf,
    /// Where an s3:// repository's local cache lives [default: state_dir of the
    /// configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, value_name = "DIR", env = "LIFELINE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The group's tenant.
    #[arg(long, value_name = "TENANT", default_value = lifeline_replicator::DEFAULT_TENANT)]
    pub tenant: String,
    /// The group to give its own dedup scope; without it, list the tenant's.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
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
