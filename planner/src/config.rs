//! `lifeline.toml`: the deployment as one file. Found at `--config`, else
//! `$LIFELINE_CONFIG`, else `./lifeline.toml` when present. Flags override it.
//! Unknown fields, and typed values (durations, rates, addresses) that do not
//! parse, are errors that name the line and column. Every field is documented
//! in `runbooks/lifeline.toml`. The options of `lifeline daemon`
//! ([`DaemonOptions`]) and `lifeline agent` ([`AgentOptions`]) merge the file
//! with flags and `LIFELINE_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod agent_options;
pub mod values;

pub use agent_options::{AgentOptions, AgentSettings};

/// Result with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Why the configuration (or a setting resolved from it) cannot be used; each
/// names the file, the setting and where to give it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown field, or a typed value that does not parse.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: [groups.{group}]: {source}")]
    GroupName {
        path: PathBuf,
        group: String,
        #[source]
        source: Box<lifeline_replicator::Error>,
    },
    #[error("{path}: group `{group}` names site `{site}`, which has no [sites.{site}] section")]
    UnknownSite { path: PathBuf, group: String, site: String },
    #[error("{setting}: {source}")]
    Retention {
        setting: &'static str,
        #[source]
        source: crate::repo_target::RepoTargetError,
    },
    /// `lifeline agent` lacks a setting; the text says which and where to give it.
    #[error("{0}")]
    AgentSetting(String),
}

/// The whole configuration.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Agent and planner state (default: /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline).
    pub state_dir: Option<PathBuf>,
    /// The tenant's key file.
    pub key_file: Option<PathBuf>,
    /// TLS material of this host.
    pub tls: Option<TlsConfig>,
    /// Sites by name (`primary`, `secondary`, ...).
    #[serde(default)]
    pub sites: BTreeMap<String, SiteConfig>,
    /// Protection groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// `lifeline daemon`'s options (flags and LIFELINE_* variables override them).
    #[serde(default)]
    pub daemon: DaemonOptions,
    /// How `s3://` repositories are reached: `endpoint`, `region`,
    /// `access_key_id`, `secret_access_key`, `path_style` (the AWS_* variables
    /// fill in what is left out).
    pub s3: Option<lifeline_replicator::S3Settings>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Directory with ca.pem and this host's NAME.pem/.key.
    pub dir: PathBuf,
    /// Identity this host presents to receivers (the planner reads points with an
    /// agent identity of the tenant, e.g. `planner@acme`, that may write no group).
    pub identity: Option<String>,
    /// Admin identity the planner presents to agents' control APIs.
    pub admin: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// URL of this site's receiver, https://HOST:PORT.
    pub receiver: Option<String>,
    /// Repository directory the receiver serves.
    pub repo: Option<PathBuf>,
    /// Address the receiver listens on.
    pub listen: Option<String>,
    /// Agent → groups it may write on this site's receiver: `NAME@TENANT`, or a
    /// bare `NAME` for that agent name in every tenant.
    #[serde(default)]
    pub allow: BTreeMap<String, Vec<String>>,
    /// Groups given their own dedup scope on this site's receiver,
    /// `GROUP@TENANT` (see `lifeline receiver --own-scope`).
    #[serde(default)]
    pub own_scopes: Vec<String>,
}

impl SiteConfig {
    /// [`own_scopes`](Self::own_scopes) as `(tenant, group)`.
    pub fn own_scopes(&self) -> Result<Vec<(String, String)>, lifeline_replicator::Error> {
        self.own_scopes.iter().map(|s| parse_own_scope(s)).collect()
    }
}

/// `GROUP@TENANT` (a group given its own dedup scope) as `(tenant, group)`.
pub fn parse_own_scope(s: &str) -> Result<(String, String), lifeline_replicator::Error> {
    let invalid = |reason: &str| lifeline_replicator::Error::Invalid {
        what: "own dedup scope",
        value: s.into(),
        reason: reason.into(),
    };
    let (g, t) = s.split_once('@').ok_or_else(|| invalid("give GROUP@TENANT"))?;
    lifeline_replicator::check_name("group", g)?;
    lifeline_replicator::check_name("tenant", t)?;
    Ok((t.into(), g.into()))
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Site whose agent replicates the group (default `primary`).
    pub primary: Option<String>,
    /// Site that receives it (default `secondary`).
    pub secondary: Option<String>,
    /// Volume name → path on the primary site.
    #[serde(default)]
    pub volumes: BTreeMap<String, PathBuf>,
    /// Volume name → path to restore to on the recovery site.
    #[serde(default)]
    pub targets: BTreeMap<String, PathBuf>,
    /// Recovery point objective, e.g. "30s".
    pub rpo: Option<String>,
    /// Recovery time objective, e.g. "15m".
    pub rto: Option<String>,
    /// Replication interval of the agent, e.g. "5s" (not zero).
    #[serde(default, deserialize_with = "values::de::interval")]
    pub interval: Option<Duration>,
    /// Upload limit of the agent in bytes per second, written e.g. "50MiB" or "200mbit".
    #[serde(default, deserialize_with = "values::de::rate")]
    pub limit_upload: Option<u64>,
    /// Freeze and thaw hooks around the reads.
    pub freeze: Option<String>,
    pub thaw: Option<String>,
    /// Store 4 KiB block maps with changed segments (`--block-map`) [default: false].
    #[serde(default)]
    pub block_map: bool,
    /// How long the agent, and the daemon's point job, retry transient failures, e.g. "60s".
    #[serde(default, deserialize_with = "values::de::duration")]
    pub retry_for: Option<Duration>,
    /// Address of the agent's control API, HOST:PORT, e.g. "127.0.0.1:7444".
    #[serde(default, deserialize_with = "values::de::address")]
    pub control: Option<String>,
    /// Tenant of the group's points (the tenant in the agents' certificates) [default: `default`].
    pub tenant: Option<String>,
    /// Identity name of the primary's agent (its control certificate) [default: the [tls] identity].
    pub agent: Option<String>,
    /// The agent on the recovery site that replicates the targets back to the
    /// primary's receiver (failback), and its control address.
    pub reverse_agent: Option<String>,
    pub reverse_control: Option<String>,
    /// Expected time between drills [default: 30d].
    pub drill_interval: Option<String>,
    /// What `lifeline prune` keeps without flags.
    pub retention: Option<RetentionConfig>,
    /// Time zone of retention's calendar buckets and of cron schedules: `UTC`,
    /// an offset such as `+01:00`, or a name such as `Europe/Berlin` [default: UTC].
    pub timezone: Option<String>,
    /// When `lifeline daemon` takes a point: an interval (`5m`) or a cron
    /// expression with seconds (`0 0 * * * *`) [default: `interval`].
    pub schedule: Option<String>,
    /// When the daemon prunes the group by its retention policy (interval or cron).
    pub prune_schedule: Option<String>,
    /// When the daemon drills the group, and with which runbook.
    pub drill_schedule: Option<String>,
    pub drill_runbook: Option<PathBuf>,
}

impl GroupConfig {
    /// The group's freeze and thaw hooks, for an agent that replicates
    /// `volumes` as `identity`, or why they do not apply to it. The hooks
    /// quiesce the primary site's application (e.g. `fsfreeze -f` of its
    /// filesystem), so they belong to the forward agent only: an agent named
    /// `reverse_agent`, or one whose volumes are not the group's `volumes` (the
    /// reverse agent of a failback reads the recovery site's targets), gets
    /// none, or it would freeze production on the other site and label its own
    /// unfrozen point `frozen`. Pure.
    pub fn hooks_for(
        &self,
        volumes: &[(String, PathBuf)],
        identity: Option<&str>,
    ) -> Result<Option<(String, String)>, String> {
        let (Some(freeze), Some(thaw)) = (&self.freeze, &self.thaw) else {
            return Ok(None);
        };
        if identity.is_some() && identity == self.reverse_agent.as_deref() {
            return Err(format!(
                "agent `{}` is the group's reverse_agent",
                identity.unwrap_or_default()
            ));
        }
        let own: BTreeMap<&str, &Path> = volumes.iter().map(|(n, p)| (n.as_str(), p.as_path())).collect();
        let group: BTreeMap<&str, &Path> = self.volumes.iter().map(|(n, p)| (n.as_str(), p.as_path())).collect();
        if own != group {
            return Err("its volumes are not the group's `volumes` (a reverse agent reads the targets)".into());
        }
        Ok(Some((freeze.clone(), thaw.clone())))
    }
}

/// `[groups.G.retention]`: see `lifeline prune --help`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub journal: Option<String>,
    pub keep_within: Option<String>,
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default)]
    pub keep_yearly: u32,
}

impl Config {
    /// Loads the configuration: `explicit` (from --config), else $LIFELINE_CONFIG,
    /// else ./lifeline.toml if it exists, else an empty one.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        Ok(Self::load_with_text(explicit)?.0)
    }

    /// Where the configuration is: `explicit`, else $LIFELINE_CONFIG, else
    /// ./lifeline.toml if it exists.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        let env = std::env::var_os("LIFELINE_CONFIG").map(PathBuf::from);
        match (explicit, env) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(p),
            (None, None) if Path::new("lifeline.toml").exists() => Some(PathBuf::from("lifeline.toml")),
            (None, None) => None,
        }
    }

    /// [`load`](Self::load), also returning the file and its text (a run keeps
    /// them so that a resume plans exactly the same run).
    pub fn load_with_text(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>, String)> {
        let Some(path) = Self::locate(explicit) else {
            return Ok((Config::default(), None, String::new()));
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok((Self::parse(&text, &path)?, Some(path), text))
    }

    /// Parses and checks a configuration; errors name file, line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                    (line, col)
                })
                .unwrap_or((0, 0));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column: col,
                message: e.message().to_string(),
            }
        })?;
        for (name, g) in &cfg.groups {
            lifeline_replicator::check_name("group", name).map_err(|source| ConfigError::GroupName {
                path: path.to_path_buf(),
                group: name.clone(),
                source: Box::new(source),
            })?;
            for site in [g.primary.as_deref(), g.secondary.as_deref()].into_iter().flatten() {
                if !cfg.sites.contains_key(site) {
                    return Err(ConfigError::UnknownSite {
                        path: path.to_path_buf(),
                        group: name.clone(),
                        site: site.to_string(),
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// The state directory: the flag, else the configuration's, else the default.
    ///
    /// Always absolute (a relative one is taken from the working directory
    /// now): the planner hands it to services and checks that run elsewhere.
    pub fn state_dir(&self, flag: Option<&Path>) -> PathBuf {
        let dir = flag
            .map(Path::to_path_buf)
            .or_else(|| self.state_dir.clone())
            .unwrap_or_else(crate::state_dir::default_state_dir);
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// A group's configuration.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.get(name)
    }

    /// The retention policy of `[groups.G.retention]`, if any.
    pub fn retention_policy(&self, group: &str) -> Result<Option<lifeline_replicator::RetentionPolicy>> {
        let dur = |s: &Option<String>, setting| {
            s.as_deref()
                .map(crate::repo_target::parse_duration)
                .transpose()
                .map_err(|source| ConfigError::Retention { setting, source })
        };
        let Some(r) = self.group(group).and_then(|g| g.retention.clone()) else {
            return Ok(None);
        };
        Ok(Some(lifeline_replicator::RetentionPolicy {
            journal: dur(&r.journal, "retention.journal")?,
            keep_within: dur(&r.keep_within, "retention.keep_within")?,
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }))
    }

    /// The identity an agent replicating `group` presents to receivers (its
    /// certificate also serves the agent's control API): the group's `agent`,
    /// else `[tls] identity`. `lifeline agent` (without `--identity`) and the
    /// daemon's points present the same one.
    pub fn agent_identity(&self, group: &str) -> Option<String> {
        self.group(group)
            .and_then(|g| g.agent.clone())
            .or_else(|| self.tls.as_ref().and_then(|t| t.identity.clone()))
    }

    /// The receiver URL a group replicates to.
    pub fn receiver_of(&self, group: &str) -> Option<&str> {
        let g = self.groups.get(group)?;
        let site = g.secondary.as_deref().unwrap_or("secondary");
        self.sites.get(site)?.receiver.as_deref()
    }
}

/// `lifeline daemon`'s options. One struct serves the three sources: flags,
/// `LIFELINE_*` environment variables (clap reads both) and the `[daemon]`
/// table of `lifeline.toml` (serde); [`DaemonOptions::over`] merges them, flags
/// and environment first.
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonOptions {
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9187).
    #[arg(long, env = "LIFELINE_METRICS", value_name = "ADDR", value_parser = values::address)]
    #[serde(default, deserialize_with = "values::de::address")]
    pub metrics: Option<String>,
    /// Operations run at once per tenant (backups, prunes, drills, verifies) [default: 5].
    #[arg(long, env = "LIFELINE_MAX_CONCURRENT", value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// When this site's repository is verified without the key: an interval or a cron expression.
    #[arg(long, env = "LIFELINE_VERIFY_SCHEDULE", value_name = "SCHEDULE")]
    pub verify_schedule: Option<String>,
    /// When this site's repository is garbage collected: an interval or a cron expression.
    #[arg(long, env = "LIFELINE_GC_SCHEDULE", value_name = "SCHEDULE")]
    pub gc_schedule: Option<String>,
    /// Grace period of scheduled collections [default: 1h].
    #[arg(long, env = "LIFELINE_GC_GRACE", value_name = "DURATION", value_parser = values::duration)]
    #[serde(default, deserialize_with = "values::de::duration")]
    pub gc_grace: Option<Duration>,
    /// Time zone of the site's cron schedules (verify, gc) [default: UTC].
    #[arg(long, env = "LIFELINE_TIMEZONE", value_name = "TZ")]
    pub timezone: Option<String>,
    /// Serve the operations console, its JSON API (/api/v1/) and /metrics on ADDR (e.g. 127.0.0.1:9188).
    #[arg(long, env = "LIFELINE_HTTP", value_name = "ADDR", value_parser = values::address)]
    #[serde(default, deserialize_with = "values::de::address")]
    pub http: Option<String>,
    /// The console's admin token: a file holding one line (required on a non-loopback address).
    #[arg(long, env = "LIFELINE_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// The console's read-only auditor token: a file holding one line.
    #[arg(long, env = "LIFELINE_HTTP_AUDITOR_TOKEN_FILE", value_name = "FILE")]
    pub http_auditor_token_file: Option<PathBuf>,
    /// Serve the console over HTTPS with [tls] dir's console.pem/.key (`lifeline certs new --console-san HOST`),
    /// accepting client certificates of the deployment's CA (admin:NAME, auditor:NAME).
    #[arg(long, env = "LIFELINE_HTTP_TLS")]
    #[serde(default)]
    pub http_tls: bool,
    /// How often the console's RPO history samples each group, e.g. "60s" [default: 60s; 24 h are kept].
    #[arg(long, env = "LIFELINE_RPO_SAMPLE_EVERY", value_name = "DURATION", value_parser = values::interval)]
    #[serde(default, deserialize_with = "values::de::interval")]
    pub rpo_sample_every: Option<Duration>,
}

impl DaemonOptions {
    /// These options (flags, environment) where set, else the file's.
    pub fn over(&self, file: &DaemonOptions) -> DaemonOptions {
        DaemonOptions {
            metrics: self.metrics.clone().or_else(|| file.metrics.clone()),
            max_concurrent: self.max_concurrent.or(file.max_concurrent),
            verify_schedule: self.verify_schedule.clone().or_else(|| file.verify_schedule.clone()),
            gc_schedule: self.gc_schedule.clone().or_else(|| file.gc_schedule.clone()),
            gc_grace: self.gc_grace.or(file.gc_grace),
            timezone: self.timezone.clone().or_else(|| file.timezone.clone()),
            http: self.http.clone().or_else(|| file.http.clone()),
            http_token_file: self.http_token_file.clone().or_else(|| file.http_token_file.clone()),
            http_auditor_token_file: self
                .http_auditor_token_file
                .clone()
                .or_else(|| file.http_auditor_token_file.clone()),
            rpo_sample_every: self.rpo_sample_every.or(file.rpo_sample_every),
            http_tls: self.http_tls || file.http_tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../runbooks/lifeline.toml");

    #[test]
    fn the_groups_freeze_hooks_are_the_forward_agents_only() {
        let c = Config::parse(
            "[groups.db]\nvolumes = { data = \"/dev/vg/pg\" }\ntargets = { data = \"/srv/dr/pg.img\" }\n\
             freeze = \"fsfreeze -f /srv/pg\"\nthaw = \"fsfreeze -u /srv/pg\"\nagent = \"pg1\"\nreverse_agent = \"dr1\"\n",
            Path::new("lifeline.toml"),
        )
        .unwrap();
        let g = c.group("db").unwrap();
        let forward = vec![("data".to_string(), PathBuf::from("/dev/vg/pg"))];
        let reverse = vec![("data".to_string(), PathBuf::from("/srv/dr/pg.img"))];
        assert_eq!(
            g.hooks_for(&forward, Some("pg1")).unwrap(),
            Some(("fsfreeze -f /srv/pg".into(), "fsfreeze -u /srv/pg".into()))
        );
        // The failback's agent on the recovery site: other volumes, or its name.
        assert!(
            g.hooks_for(&reverse, Some("pg1"))
                .unwrap_err()
                .contains("not the group's `volumes`")
        );
        assert!(
            g.hooks_for(&forward, Some("dr1"))
                .unwrap_err()
                .contains("reverse_agent")
        );
        let none = Config::parse("[groups.db]\nvolumes = { data = \"/dev/vg/pg\" }\n", Path::new("x")).unwrap();
        assert_eq!(none.group("db").unwrap().hooks_for(&reverse, None).unwrap(), None);
    }

    #[test]
    fn a_relative_state_dir_is_made_absolute() {
        let cfg = Config::default();
        let dir = cfg.state_dir(Some(Path::new("rel/state")));
        assert!(dir.is_absolute(), "{}", dir.display());
        assert_eq!(dir, std::env::current_dir().unwrap().join("rel/state"));
        let abs = cfg.state_dir(Some(Path::new("/var/lib/lifeline")));
        assert_eq!(abs, Path::new("/var/lib/lifeline"));
    }

    #[test]
    fn the_example_parses() {
        let c = Config::parse(EXAMPLE, Path::new("runbooks/lifeline.toml")).unwrap();
        assert!(c.group("shop").is_some());
        assert!(c.receiver_of("shop").unwrap().starts_with("https://"));
    }

    #[test]
    fn unknown_fields_name_line_and_column() {
        let e = Config::parse("key_file = \"k\"\n[groups.shop]\nvolumz = {}\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.toml:3:1:"), "{e}");
        assert!(e.contains("volumz"), "{e}");
    }

    #[test]
    fn the_daemon_tables_typed_values_are_read_at_load_naming_line_and_column() {
        let text = "[daemon]\ngc_grace = \"2h\"\nrpo_sample_every = \"30s\"\nhttp = \"127.0.0.1:9188\"\n";
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.daemon.gc_grace, Some(Duration::from_secs(7200)));
        assert_eq!(c.daemon.rpo_sample_every, Some(Duration::from_secs(30)));
        assert_eq!(c.daemon.http.as_deref(), Some("127.0.0.1:9188"));
        for (field, value, says) in [
            ("gc_grace", "\"an hour\"", "invalid duration `an hour`"),
            ("rpo_sample_every", "\"0s\"", "invalid interval `0s`"),
            ("http", "\"9188\"", "invalid address `9188`: write HOST:PORT"),
            ("metrics", "\"localhost\"", "invalid address `localhost`"),
        ] {
            refused_at(&format!("[daemon]\n{field} = {value}\n"), 2, field, says);
        }
    }

    #[test]
    fn typed_values_that_do_not_parse_name_line_and_column() {
        for (field, value, says) in [
            (
                "interval",
                "\"5 parsecs\"",
                "invalid duration `5 parsecs`: units are ms, s, m, h, d",
            ),
            ("interval", "\"0s\"", "invalid interval `0s`"),
            ("retry_for", "\"soon\"", "invalid duration `soon`"),
            ("limit_upload", "\"-5MiB\"", "invalid rate `-5MiB`"),
            (
                "control",
                "\"localhost\"",
                "invalid address `localhost`: write HOST:PORT",
            ),
            ("interval", "5", "invalid type: integer `5`, expected a string"),
        ] {
            refused_at(
                &format!("key_file = \"k\"\n[groups.shop]\n{field} = {value}\n"),
                3,
                field,
                says,
            );
        }
    }

    /// Asserts that `text` (as `x.toml`) is refused at `field`'s value on
    /// `line`, saying `says`.
    #[track_caller]
    fn refused_at(text: &str, line: usize, field: &str, says: &str) {
        let e = Config::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        let column = field.len() + 4;
        assert!(e.starts_with(&format!("x.toml:{line}:{column}: ")), "{e}");
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn groups_must_name_known_sites() {
        let e = Config::parse("[groups.g]\nsecondary = \"dr\"\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[sites.dr]"), "{e}");
    }
}
