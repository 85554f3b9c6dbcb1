//! `lifeline agent`'s options: flags, `LIFELINE_*` variables and the
//! configuration, merged into the settings one agent runs with.

use std::path::PathBuf;
use std::time::Duration;

use super::{Config, ConfigError, values};

/// `lifeline agent`'s options. Like [`DaemonOptions`](super::DaemonOptions),
/// one struct serves the three sources: flags and `LIFELINE_*` environment
/// variables (clap reads both; a flag wins over its variable), and the
/// configuration, whose values for an agent [`of_config`](Self::of_config)
/// gathers from where a deployment keeps them: the group's `[groups.G]` table
/// (`volumes`, `interval`, `retry_for`, `limit_upload`, `control`,
/// `block_map`, `agent`), its secondary site's `receiver`, `[tls]`,
/// `key_file` and `state_dir`. Every value is typed where it enters
/// ([`values`]): a bad flag or variable is refused by clap, a bad value in the
/// file when the file is read, with its line and column.
/// [`resolve`](Self::resolve) merges the sources and applies the defaults.
#[derive(Debug, Default, Clone, PartialEq, clap::Args)]
pub struct AgentOptions {
    /// Receiver address, https://HOST:PORT [default: the group's secondary site's receiver].
    #[arg(long, env = "LIFELINE_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// TLS directory (ca.pem and this host's identities) [default: [tls] dir of the configuration].
    #[arg(long, env = "LIFELINE_TLS_DIR", value_name = "TLSDIR")]
    pub tls_dir: Option<PathBuf>,
    /// Identity to present (NAME.pem/.key in --tls-dir); its certificate also serves the control API
    /// [default: the group's `agent`, else [tls] identity].
    #[arg(long, env = "LIFELINE_IDENTITY", value_name = "NAME")]
    pub identity: Option<String>,
    /// Key file [default: key_file from the configuration].
    #[arg(long, env = "LIFELINE_KEY_FILE", value_name = "KEYFILE")]
    pub key_file: Option<PathBuf>,
    /// A volume of the group: NAME=PATH. Repeat for each [default: the group's volumes].
    #[arg(long = "volume", value_name = "NAME=PATH", value_parser = values::volume)]
    pub volumes: Vec<(String, PathBuf)>,
    /// Time between the starts of two cycles, e.g. 5s, 2m, 1h [default: the group's interval].
    #[arg(long, env = "LIFELINE_INTERVAL", value_name = "DURATION", value_parser = values::interval)]
    pub interval: Option<Duration>,
    /// How long to retry transient failures (receiver down, link cut) before giving up
    /// [default: the group's retry_for, else 60s].
    #[arg(long, env = "LIFELINE_RETRY_FOR", value_name = "DURATION", value_parser = values::duration)]
    pub retry_for: Option<Duration>,
    /// Smooth upload limit, e.g. 50MiB (per second) or 200Mbit [default: the group's limit_upload, else none].
    #[arg(long, env = "LIFELINE_LIMIT_UPLOAD", value_name = "RATE", value_parser = values::rate)]
    pub limit_upload: Option<u64>,
    /// Serve the control API (status, pause, resume, sync-now, retarget) on ADDR
    /// [default: the group's control]; with port 0 the bound address is printed as
    /// `control listening on ADDR`.
    #[arg(long, env = "LIFELINE_CONTROL", value_name = "ADDR", value_parser = values::address)]
    pub control: Option<String>,
    /// Command that quiesces the volumes before each point (e.g. `fsfreeze -f /mnt`); needs --thaw
    /// [default: the group's `freeze`, for the forward agent only].
    #[arg(long, env = "LIFELINE_FREEZE", value_name = "CMD", requires = "thaw")]
    pub freeze: Option<String>,
    /// Command that resumes them; always runs once --freeze was attempted [default: the group's `thaw`].
    #[arg(long, env = "LIFELINE_THAW", value_name = "CMD", requires = "freeze")]
    pub thaw: Option<String>,
    /// Agent state directory (what the last point held, to send only changes) [default: state_dir of
    /// the configuration, else /var/lib/lifeline as root, else $XDG_STATE_HOME/lifeline].
    #[arg(long, env = "LIFELINE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also store a map of 4 KiB block hashes with each changed segment (0.4% of
    /// its size), so a later point that changes scattered blocks, e.g. the reverse
    /// replication of a failback, sends only those blocks [config: block_map].
    #[arg(long, env = "LIFELINE_BLOCK_MAP")]
    pub block_map: bool,
}

/// What one `lifeline agent` runs with: its [`AgentOptions`] resolved, with
/// nothing left to default.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub group: String,
    /// The receiver, https://HOST:PORT.
    pub receiver: String,
    pub tls_dir: PathBuf,
    pub identity: String,
    pub key_file: PathBuf,
    pub volumes: Vec<(String, PathBuf)>,
    /// Between the starts of two cycles; `None`: one cycle (`--once`).
    pub interval: Option<Duration>,
    pub retry_for: Duration,
    /// Bytes per second.
    pub limit_upload: Option<u64>,
    /// Where the control API listens.
    pub control: Option<String>,
    /// The freeze and thaw commands.
    pub hooks: Option<(String, String)>,
    /// Why the group's hooks are not this agent's, for the operator.
    pub hooks_skipped: Option<String>,
    pub state_dir: PathBuf,
    pub block_map: bool,
}

impl AgentOptions {
    /// The configuration's values for an agent of `group` (none where it has
    /// none). The group's freeze and thaw hooks are not among them: they are
    /// the forward agent's only, which [`resolve`](Self::resolve) decides once
    /// the volumes and the identity are known.
    pub fn of_config(config: &Config, group: &str) -> AgentOptions {
        let g = config.group(group);
        AgentOptions {
            repo: config.receiver_of(group).map(String::from),
            tls_dir: config.tls.as_ref().map(|t| t.dir.clone()),
            identity: config.agent_identity(group),
            key_file: config.key_file.clone(),
            volumes: g
                .map(|g| g.volumes.iter().map(|(n, p)| (n.clone(), p.clone())).collect())
                .unwrap_or_default(),
            interval: g.and_then(|g| g.interval),
            retry_for: g.and_then(|g| g.retry_for),
            limit_upload: g.and_then(|g| g.limit_upload),
            control: g.and_then(|g| g.control.clone()),
            freeze: None,
            thaw: None,
            state_dir: config.state_dir.clone(),
            block_map: g.is_some_and(|g| g.block_map),
        }
    }

    /// These options (flags, environment) where set, else the file's.
    pub fn over(&self, file: &AgentOptions) -> AgentOptions {
        AgentOptions {
            repo: self.repo.clone().or_else(|| file.repo.clone()),
            tls_dir: self.tls_dir.clone().or_else(|| file.tls_dir.clone()),
            identity: self.identity.clone().or_else(|| file.identity.clone()),
            key_file: self.key_file.clone().or_else(|| file.key_file.clone()),
            volumes: if self.volumes.is_empty() {
                file.volumes.clone()
            } else {
                self.volumes.clone()
            },
            interval: self.interval.or(file.interval),
            retry_for: self.retry_for.or(file.retry_for),
            limit_upload: self.limit_upload.or(file.limit_upload),
            control: self.control.clone().or_else(|| file.control.clone()),
            freeze: self.freeze.clone().or_else(|| file.freeze.clone()),
            thaw: self.thaw.clone().or_else(|| file.thaw.clone()),
            state_dir: self.state_dir.clone().or_else(|| file.state_dir.clone()),
            block_map: self.block_map || file.block_map,
        }
    }

    /// What an agent of `group` runs with: these options (flags, environment)
    /// over the configuration's, then the defaults. `once` (`--once`) is one
    /// cycle whatever interval is set. An error names the missing setting and
    /// where to give it.
    pub fn resolve(&self, group: &str, once: bool, config: &Config) -> Result<AgentSettings, ConfigError> {
        let o = self.over(&Self::of_config(config, group));
        if o.volumes.is_empty() {
            return Err(ConfigError::AgentSetting(format!(
                "group `{group}` has no volumes: pass --volume NAME=PATH or list them in [groups.{group}] volumes"
            )));
        }
        let Some(receiver) = o.repo else {
            return Err(ConfigError::AgentSetting(
                "no receiver: pass --repo https://HOST:PORT (or set LIFELINE_REPO, or configure the group's \
                 secondary site)"
                    .into(),
            ));
        };
        let (Some(tls_dir), Some(identity)) = (o.tls_dir, o.identity) else {
            return Err(ConfigError::AgentSetting(format!(
                "the agent needs --tls-dir TLSDIR and --identity NAME (or [tls] dir, and the group's `agent` or \
                 [tls] identity, in the configuration) to reach {receiver}"
            )));
        };
        let interval = match (once, o.interval) {
            (true, _) => None,
            (false, Some(i)) => Some(i),
            (false, None) => {
                return Err(ConfigError::AgentSetting(format!(
                    "pass --once or --interval DURATION (or set LIFELINE_INTERVAL, or interval in [groups.{group}])"
                )));
            }
        };
        let Some(key_file) = o.key_file else {
            return Err(ConfigError::AgentSetting(
                "no key: pass --key-file KEYFILE (or key_file in the configuration)".into(),
            ));
        };
        // --freeze/--thaw as given; else the group's hooks, which are the
        // forward agent's only (see GroupConfig::hooks_for).
        let (hooks, hooks_skipped) = match (o.freeze, o.thaw, config.group(group)) {
            (Some(f), Some(t), _) => (Some((f, t)), None),
            (_, _, Some(g)) => match g.hooks_for(&o.volumes, Some(&identity)) {
                Ok(h) => (h, None),
                Err(why) => (
                    None,
                    Some(format!(
                        "not running group `{group}`'s freeze/thaw hooks: {why}; they quiesce the primary site's \
                         volumes (pass --freeze and --thaw for this agent's own)"
                    )),
                ),
            },
            _ => (None, None),
        };
        Ok(AgentSettings {
            group: group.to_string(),
            receiver,
            tls_dir,
            identity,
            key_file,
            volumes: o.volumes,
            interval,
            retry_for: o.retry_for.unwrap_or(lifeline_service::DEFAULT_RETRY_FOR),
            limit_upload: o.limit_upload,
            control: o.control,
            hooks,
            hooks_skipped,
            state_dir: o.state_dir.unwrap_or_else(crate::state_dir::default_state_dir),
            block_map: o.block_map,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    /// `lifeline agent`'s flags alone, as clap reads them (no variables are
    /// set in the test's environment for these names).
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        options: AgentOptions,
    }

    fn flags(args: &[&str]) -> AgentOptions {
        Flags::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .unwrap()
            .options
    }

    const FILE: &str = "key_file = \"/etc/lifeline/tenant.key\"\nstate_dir = \"/var/lib/lifeline\"\n\
        [tls]\ndir = \"/etc/lifeline/tls\"\nidentity = \"db1\"\n\
        [sites.secondary]\nreceiver = \"https://dr.example.net:7443\"\n\
        [groups.shop]\nvolumes = { db = \"/dev/vdb\" }\ninterval = \"5s\"\nretry_for = \"30s\"\n\
        limit_upload = \"200mbit\"\ncontrol = \"127.0.0.1:7444\"\n";

    fn file() -> Config {
        Config::parse(FILE, Path::new("lifeline.toml")).unwrap()
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_the_defaults() {
        let c = file();
        // The file alone; retry_for and limit_upload are typed at load.
        let s = AgentOptions::default().resolve("shop", false, &c).unwrap();
        assert_eq!(s.receiver, "https://dr.example.net:7443");
        assert_eq!(s.identity, "db1");
        assert_eq!(s.volumes, [("db".to_string(), PathBuf::from("/dev/vdb"))]);
        assert_eq!(s.interval, Some(Duration::from_secs(5)));
        assert_eq!(s.retry_for, Duration::from_secs(30));
        assert_eq!(s.limit_upload, Some(25_000_000));
        assert_eq!(s.control.as_deref(), Some("127.0.0.1:7444"));
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/lifeline"));

        // Flags over the file.
        let f = flags(&[
            "--interval",
            "1m",
            "--retry-for",
            "2s",
            "--limit-upload",
            "50MiB",
            "--volume",
            "db=/srv/db.img",
            "--identity",
            "dr1",
            "--state-dir",
            "/tmp/state",
        ]);
        let s = f.resolve("shop", false, &c).unwrap();
        assert_eq!(s.interval, Some(Duration::from_secs(60)));
        assert_eq!(s.retry_for, Duration::from_secs(2));
        assert_eq!(s.limit_upload, Some(50 << 20));
        assert_eq!(s.volumes, [("db".to_string(), PathBuf::from("/srv/db.img"))]);
        assert_eq!(s.identity, "dr1");
        assert_eq!(s.state_dir, PathBuf::from("/tmp/state"));
        // What the flags leave unset still comes from the file.
        assert_eq!(s.receiver, "https://dr.example.net:7443");
        assert_eq!(s.control.as_deref(), Some("127.0.0.1:7444"));

        // Neither: the defaults.
        let bare = Config::parse(
            "key_file = \"k\"\n[tls]\ndir = \"t\"\nidentity = \"a\"\n[groups.g]\nvolumes = { v = \"/v\" }\n",
            Path::new("lifeline.toml"),
        )
        .unwrap();
        let s = flags(&["--repo", "https://127.0.0.1:1"])
            .resolve("g", true, &bare)
            .unwrap();
        assert_eq!(s.retry_for, lifeline_service::DEFAULT_RETRY_FOR);
        assert_eq!(s.limit_upload, None);
        assert_eq!(s.control, None);
        assert_eq!(s.interval, None, "--once");
        assert!(!s.block_map);
    }

    #[test]
    fn once_wins_over_any_interval() {
        let s = flags(&["--interval", "5s"]).resolve("shop", true, &file()).unwrap();
        assert_eq!(s.interval, None);
        assert_eq!(
            AgentOptions::default().resolve("shop", true, &file()).unwrap().interval,
            None
        );
    }

    #[test]
    fn a_missing_setting_says_where_to_give_it() {
        let empty = Config::default();
        let e = |o: AgentOptions, once| format!("{:#}", o.resolve("g", once, &empty).unwrap_err());
        assert!(e(AgentOptions::default(), true).contains("pass --volume NAME=PATH"));
        let v = flags(&["--volume", "v=/v"]);
        assert!(e(v.clone(), true).contains("pass --repo"));
        let r = flags(&["--volume", "v=/v", "--repo", "https://127.0.0.1:1"]);
        assert!(e(r.clone(), true).contains("--tls-dir TLSDIR and --identity NAME"));
        let t = flags(&[
            "--volume",
            "v=/v",
            "--repo",
            "https://h:1",
            "--tls-dir",
            "t",
            "--identity",
            "a",
        ]);
        assert!(e(t.clone(), false).contains("pass --once or --interval"));
        assert!(e(t, true).contains("pass --key-file"));
    }

    #[test]
    fn bad_flags_are_refused_by_clap_naming_the_flag() {
        for (args, says) in [
            (&["--interval", "5 parsecs"][..], "units are ms, s, m, h, d"),
            (&["--interval", "0s"], "at least 1ms"),
            (&["--limit-upload", "0MB"], "must be above zero"),
            (&["--control", "localhost"], "HOST:PORT"),
            (&["--volume", "nopath"], "NAME=PATH"),
        ] {
            let e = Flags::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(args[0]) && e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn the_groups_hooks_are_the_forward_agents_only() {
        let c = Config::parse(
            &format!("{FILE}freeze = \"fsfreeze -f /srv\"\nthaw = \"fsfreeze -u /srv\"\n"),
            Path::new("lifeline.toml"),
        )
        .unwrap();
        let s = AgentOptions::default().resolve("shop", true, &c).unwrap();
        assert_eq!(s.hooks, Some(("fsfreeze -f /srv".into(), "fsfreeze -u /srv".into())));
        let reverse = flags(&["--volume", "db=/srv/dr.img"])
            .resolve("shop", true, &c)
            .unwrap();
        assert_eq!(reverse.hooks, None);
        assert!(
            reverse
                .hooks_skipped
                .unwrap()
                .contains("not running group `shop`'s freeze/thaw hooks")
        );
        let own = flags(&["--volume", "db=/srv/dr.img", "--freeze", "true", "--thaw", "true"])
            .resolve("shop", true, &c)
            .unwrap();
        assert_eq!(own.hooks, Some(("true".into(), "true".into())));
    }
}
