//! The catalogue of runbook actions: each one's parameters, outputs, default
//! timeout, and what it does in each mode. Validation, `lifeline plan`, the
//! engine and `runbooks/README.md` all read this one table, so they cannot
//! disagree. A test checks that the README documents every action.

use serde::Serialize;

/// How a run is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Disaster: the primary is presumed lost; promote the latest committed point.
    Failover,
    /// Planned move with zero data loss: stop writes, final sync, then fail over.
    Switchover,
    /// Back home after a failover: seed the original site, replicate what it lacks, switch over.
    Failback,
    /// A test failover into a sandbox; production and replication go on untouched.
    Drill,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Failover => "failover",
            Mode::Switchover => "switchover",
            Mode::Failback => "failback",
            Mode::Drill => "drill",
        }
    }
    pub const ALL: [Mode; 4] = [Mode::Failover, Mode::Switchover, Mode::Failback, Mode::Drill];
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    StrList,
    StrTable,
    Duration,
    Bool,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::StrList => "a list of strings",
            Kind::StrTable => "a table of strings",
            Kind::Duration => "a duration string such as \"5s\"",
            Kind::Bool => "true or false",
        }
    }
    pub fn example(self) -> &'static str {
        match self {
            Kind::Str => "\"...\"",
            Kind::Int => "200",
            Kind::StrList => "[\"a\", \"b\"]",
            Kind::StrTable => "{ NAME = \"value\" }",
            Kind::Duration => "\"5s\"",
            Kind::Bool => "true",
        }
    }
}

/// One parameter of an action.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

const fn p(name: &'static str, kind: Kind, required: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required,
        doc,
    }
}

/// What an action does in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Runs; a failure is a failure.
    Run,
    /// Runs; a failure is recorded and the step counts as done (e.g. the primary
    /// site is presumed lost in a failover, so stopping its agent may not work).
    BestEffort,
    /// Does not run.
    Skip,
}

/// An action, typed: what validation turns a step's `action = "…"` into, so the
/// engine's dispatch is an exhaustive match (a new action that the engine does
/// not run does not compile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `replication.stop`
    ReplicationStop,
    /// `replication.final_sync`
    ReplicationFinalSync,
    /// `replication.seed`
    ReplicationSeed,
    /// `replication.reverse`
    ReplicationReverse,
    /// `volume.promote`
    VolumePromote,
    /// `service.start`
    ServiceStart,
    /// `service.stop`
    ServiceStop,
    /// `check.tcp`
    CheckTcp,
    /// `check.http`
    CheckHttp,
    /// `check.command`
    CheckCommand,
    /// `check.volume`
    CheckVolume,
    /// `check.workload`
    CheckWorkload,
    /// `traffic.switch`
    TrafficSwitch,
    /// `approval`
    Approval,
    /// `wait`
    Wait,
    /// `notify`
    Notify,
}

impl Action {
    /// The action's name in runbooks.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The action's entry in the catalogue.
    pub fn spec(self) -> &'static ActionSpec {
        ACTIONS
            .iter()
            .find(|a| a.kind == self)
            .expect("every action is in the catalogue")
    }

    /// A `check.*` action: its evidence goes in a drill's report.
    pub fn is_check(self) -> bool {
        self.name().starts_with("check.")
    }

    /// The action named `name`, if any.
    pub fn from_name(name: &str) -> Option<Action> {
        action(name).map(|a| a.kind)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One action of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub kind: Action,
    pub name: &'static str,
    pub doc: &'static str,
    pub params: &'static [ParamSpec],
    /// Exactly one of these parameters must be given (empty: no such rule).
    pub one_of: &'static [&'static str],
    /// Outputs later steps read as `${steps.ID.NAME}`; `NAME.*` means one per volume.
    pub outputs: &'static [&'static str],
    pub default_timeout_secs: u64,
    /// Behaviour in failover, switchover, failback, drill, with the reason.
    pub modes: [(Behaviour, &'static str); 4],
    /// What it acts on outside a drill's sandbox, and so what a drill must
    /// skip or substitute.
    pub reach: Reach,
}

/// What an action acts on beyond the run's own directory and processes.
///
/// A drill never touches production: an action that reaches it is skipped in
/// a drill by default, and runs there only when a `drill = { ... }`
/// substitution replaces each production target it uses (validation refuses
/// anything else, and the engine refuses at run time what validation could not
/// see: a file resolved outside the sandbox, any replication call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The sandbox, or nothing it changes: promotes into the sandbox in a drill,
    /// starts the run's own processes, checks, waits, notifies (the event says
    /// `"mode": "drill"`).
    Sandbox,
    /// Production, through these parameters when a step uses them: a drill
    /// substitution must replace each (`file` with a path under `${run.dir}`,
    /// `command` with another command). A step using none of them (e.g.
    /// `service.stop` with `step`) acts only on the run's own processes.
    Targets(&'static [&'static str]),
    /// Production replication, with no parameter a drill could point into the
    /// sandbox: a drill always skips it.
    Replication,
}

/// The parameters through which an action reaches production, as a drill
/// substitution must replace them.
pub const FILE_TARGET: &str = "file";
pub const COMMAND_TARGET: &str = "command";

impl ActionSpec {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
    pub fn behaviour(&self, mode: Mode) -> (Behaviour, &'static str) {
        self.modes[Mode::ALL.iter().position(|m| *m == mode).expect("every mode")]
    }
    /// Does the action have output `name` (`path.db` matches `path.*`)?
    /// The volume a per-volume output (`NAME.*`, e.g. `path.db`) names, if it is one.
    pub fn volume_of_output<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.outputs.iter().find_map(|o| {
            let prefix = o.strip_suffix(".*")?;
            name.strip_prefix(prefix)?.strip_prefix('.').filter(|v| !v.is_empty())
        })
    }

    /// The production targets (see [`Reach`]) a call whose parameters are
    /// `has` uses: none for an action that stays in the sandbox.
    pub fn production_targets(&self, has: impl Fn(&str) -> bool) -> Vec<&'static str> {
        match self.reach {
            Reach::Targets(t) => t.iter().copied().filter(|p| has(p)).collect(),
            Reach::Sandbox | Reach::Replication => Vec::new(),
        }
    }

    /// Does a call whose parameters are `has` act on production?
    pub fn reaches_production(&self, has: impl Fn(&str) -> bool) -> bool {
        self.reach == Reach::Replication || !self.production_targets(has).is_empty()
    }

    pub fn has_output(&self, name: &str) -> bool {
        self.outputs.iter().any(|o| match o.strip_suffix(".*") {
            Some(prefix) => name
                .strip_prefix(prefix)
                .is_some_and(|r| r.starts_with('.') && r.len() > 1),
            None => *o == name,
        })
    }
}

use Behaviour::{BestEffort, Run, Skip};
use Kind::*;

const AGENT: ParamSpec = p(
    "agent",
    Str,
    false,
    "identity of the agent to drive [default: the group's agent for this direction]",
);
const CONTROL: ParamSpec = p(
    "control",
    Str,
    false,
    "the agent's control address HOST:PORT [default: from the group]",
);
const COMMAND: ParamSpec = p("command", Str, false, "program to run (looked up in PATH)");
const ARGS: ParamSpec = p("args", StrList, false, "its arguments");
const ENV: ParamSpec = p("env", StrTable, false, "extra environment variables");
const CWD: ParamSpec = p("cwd", Str, false, "working directory [default: the run's directory]");

/// Every action.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        kind: Action::ReplicationStop,
        name: "replication.stop",
        doc: "Pause the group's agent through its control API: it finishes its current cycle and starts no new one.",
        params: &[AGENT, CONTROL],
        one_of: &[],
        outputs: &["reachable"],
        default_timeout_secs: 60,
        modes: [
            (
                BestEffort,
                "the primary site is presumed lost: an unreachable agent is not an error",
            ),
            (Run, "pause the primary's agent after its last cycle"),
            (Run, "pause the recovery site's agent (the reverse replication)"),
            (Skip, "replication goes on during a drill"),
        ],
        reach: Reach::Replication,
    },
    ActionSpec {
        kind: Action::ReplicationFinalSync,
        name: "replication.final_sync",
        doc: "Ask the agent for a point holding every write made before the call (sync-now) and wait for it.",
        params: &[AGENT, CONTROL],
        one_of: &[],
        outputs: &["seq", "taken_at"],
        default_timeout_secs: 600,
        modes: [
            (
                Skip,
                "the primary is presumed lost: the latest committed point is what there is",
            ),
            (
                Run,
                "sync-now on the primary's agent: the point holds the primary's last state",
            ),
            (
                Run,
                "sync-now on the recovery site's agent: the original site gets the current state",
            ),
            (Skip, "a drill uses an existing point"),
        ],
        reach: Reach::Replication,
    },
    ActionSpec {
        kind: Action::ReplicationSeed,
        name: "replication.seed",
        doc: "Failback only: back up the volumes that survived on the original site into that site's repository \
              (a local scan, no network), so the reverse replication sends only what they lack.",
        params: &[
            p(
                "repo",
                Str,
                false,
                "the original site's repository directory [default: its site's `repo`]",
            ),
            p("tenant", Str, false, "tenant to seed [default: the group's tenant]"),
        ],
        one_of: &[],
        outputs: &["seq", "bytes_stored"],
        default_timeout_secs: 3600,
        modes: [
            (Skip, "only a failback seeds the original site"),
            (Skip, "only a failback seeds the original site"),
            (
                Run,
                "local backup of the surviving volumes into the original site's repository",
            ),
            (Skip, "only a failback seeds the original site"),
        ],
        reach: Reach::Replication,
    },
    ActionSpec {
        kind: Action::ReplicationReverse,
        name: "replication.reverse",
        doc: "Protect the new production site: resume the agent that replicates it to the other site.",
        params: &[AGENT, CONTROL],
        one_of: &[],
        outputs: &["reachable"],
        default_timeout_secs: 60,
        modes: [
            (
                BestEffort,
                "resume the recovery site's agent towards the original site; unreachable until it returns (then fail back)",
            ),
            (Run, "resume the recovery site's agent towards the original site"),
            (
                Run,
                "resume the primary's agent towards the secondary: back to normal (unreachable: reprotect pending)",
            ),
            (Skip, "replication goes on during a drill"),
        ],
        reach: Reach::Replication,
    },
    ActionSpec {
        kind: Action::VolumePromote,
        name: "volume.promote",
        doc: "Restore a point of the group onto the recovery site's volumes and check each against the point's volume hash. \
              With `instant = true`, serve the point over NBD from the planner instead and attach each volume as a file \
              (nbdfuse) at once, writes going to an overlay in the run's directory; a failover also hydrates the targets \
              in the background.",
        params: &[
            p(
                "instant",
                Bool,
                false,
                "serve the point and attach its volumes through nbdfuse instead of restoring first [default: false]",
            ),
            p(
                "hydrate",
                Bool,
                false,
                "with `instant`: copy the point into the targets in the background [default: true, false in a drill]",
            ),
            p(
                "hydrate_rate",
                Str,
                false,
                "with `hydrate`: at most this many bytes per second, e.g. \"200MiB/s\" [default: no limit]",
            ),
            p(
                "volumes",
                StrList,
                false,
                "volumes to promote [default: all of the group's]",
            ),
            p(
                "point",
                Str,
                false,
                "latest, a seq or an RFC 3339 time [default: --point, else the final sync's, else latest]",
            ),
            p(
                "repo",
                Str,
                false,
                "repository to read [default: the recovery site's receiver, else its `repo`]",
            ),
        ],
        one_of: &[],
        outputs: &[
            "seq",
            "taken_at",
            "pinned",
            "path.*",
            "hash.*",
            "instant",
            "served",
            "overlay",
            "hydrate.*",
        ],
        default_timeout_secs: 3600,
        modes: [
            (Run, "restore the point onto the secondary's targets"),
            (Run, "restore the final sync's point onto the secondary's targets"),
            (Run, "restore the final sync's point onto the original site's volumes"),
            (Run, "restore the point into the drill's sandbox"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::ServiceStart,
        name: "service.start",
        doc: "Start a long-running process (the application). The run tracks it and stops it on abort or rollback; \
              it keeps running after a successful run.",
        params: &[
            p("command", Str, true, "program to run (looked up in PATH)"),
            ARGS,
            ENV,
            CWD,
        ],
        one_of: &[],
        outputs: &["pid", "log"],
        default_timeout_secs: 30,
        modes: [
            (Run, "start it on the recovery site"),
            (Run, "start it on the recovery site"),
            (Run, "start it on the original site"),
            (Run, "start it in the sandbox (drill substitutions applied)"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::ServiceStop,
        name: "service.stop",
        doc: "Stop a service: the process an earlier service.start step started (`step`), or run a stop command.",
        params: &[
            p("step", Str, false, "id of the service.start step whose process to stop"),
            COMMAND,
            ARGS,
            ENV,
            CWD,
            p(
                "grace",
                Duration,
                false,
                "time between SIGTERM and SIGKILL [default: 10s]",
            ),
        ],
        one_of: &["step", "command"],
        outputs: &[],
        default_timeout_secs: 60,
        modes: [
            (BestEffort, "the primary site may be gone: a failure is not an error"),
            (Run, "stop writes on the primary"),
            (Run, "stop writes on the recovery site"),
            (Skip, "production is never stopped by a drill (a step = ... stop runs)"),
        ],
        reach: Reach::Targets(&[COMMAND_TARGET]),
    },
    ActionSpec {
        kind: Action::CheckTcp,
        name: "check.tcp",
        doc: "Wait until a TCP connection to an address succeeds (fails at the timeout).",
        params: &[p("address", Str, true, "HOST:PORT")],
        one_of: &[],
        outputs: &["elapsed_ms"],
        default_timeout_secs: 60,
        modes: [
            (Run, "check"),
            (Run, "check"),
            (Run, "check"),
            (Run, "check the sandbox"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::CheckHttp,
        name: "check.http",
        doc: "Wait until an HTTP GET answers the expected status (and body) (fails at the timeout).",
        params: &[
            p("url", Str, true, "http(s)://HOST:PORT/PATH"),
            p("status", Int, false, "expected status [default: 200]"),
            p("body_contains", Str, false, "text the body must contain"),
            p(
                "ca_file",
                Str,
                false,
                "https: trust only the CA certificates in this PEM file [default: the system's]",
            ),
        ],
        one_of: &[],
        outputs: &["status", "elapsed_ms"],
        default_timeout_secs: 60,
        modes: [
            (Run, "check"),
            (Run, "check"),
            (Run, "check"),
            (Run, "check the sandbox"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::CheckCommand,
        name: "check.command",
        doc: "Run a command until it exits 0, again every 100 ms, until the step's timeout passes (then it fails with \
              the last attempt's output).",
        params: &[
            p("command", Str, true, "program to run (looked up in PATH)"),
            ARGS,
            ENV,
            CWD,
        ],
        one_of: &[],
        outputs: &["exit", "stdout"],
        default_timeout_secs: 60,
        modes: [
            (Run, "check"),
            (Run, "check"),
            (Run, "check"),
            (Run, "check the sandbox"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::CheckVolume,
        name: "check.volume",
        doc: "Hash a promoted volume and compare it with the point's volume hash; in a switchover or failback also \
              with the source volume, which proves zero data loss.",
        params: &[
            p("volume", Str, true, "volume name in the group"),
            p(
                "path",
                Str,
                false,
                "file or device to hash [default: where volume.promote put it]",
            ),
        ],
        one_of: &[],
        outputs: &["hash", "zero_loss"],
        default_timeout_secs: 3600,
        modes: [
            (Run, "compare with the point"),
            (Run, "compare with the point and with the primary's volume (zero loss)"),
            (
                Run,
                "compare with the point and with the recovery site's volume (zero loss)",
            ),
            (Run, "compare the sandbox copy with the point"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::CheckWorkload,
        name: "check.workload",
        doc: "Read the promoted copy of a volume written by the sample workload (`lifeline workload`) and count \
              what the application lost at the run's start (a drill's T0): records durable then but missing, \
              and how many seconds of writes that is. Fails on corrupt records.",
        params: &[
            p("volume", Str, true, "volume name in the group"),
            p(
                "path",
                Str,
                false,
                "file to read [default: where volume.promote put it]",
            ),
            p(
                "durable_log",
                Str,
                false,
                "the production workload's durability log [default: VOLUME.durable beside the source volume]",
            ),
        ],
        one_of: &[],
        outputs: &["last_seq", "lost_records", "lost_secs", "corrupt_records", "clean"],
        default_timeout_secs: 600,
        modes: [
            (Run, "check"),
            (Run, "check"),
            (Run, "check"),
            (Run, "check the sandbox copy"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::TrafficSwitch,
        name: "traffic.switch",
        doc: "Move users: run a command (DNS update, load-balancer API), or rewrite a file atomically (zone file, \
              HAProxy or nginx upstream): `content` replaces it, or `replace` → `with` edits it. Undone by restoring the file.",
        params: &[
            COMMAND,
            ARGS,
            ENV,
            CWD,
            p("file", Str, false, "file to rewrite"),
            p("content", Str, false, "its new content"),
            p("replace", Str, false, "text to replace in the file"),
            p("with", Str, false, "replacement text"),
        ],
        one_of: &["command", "file"],
        outputs: &[],
        default_timeout_secs: 60,
        modes: [
            (Run, "move users to the recovery site"),
            (Run, "move users to the recovery site"),
            (Run, "move users back to the original site"),
            (
                Skip,
                "a drill never moves production traffic (a drill = { ... } substitution runs)",
            ),
        ],
        reach: Reach::Targets(&[COMMAND_TARGET, FILE_TARGET]),
    },
    ActionSpec {
        kind: Action::Approval,
        name: "approval",
        doc: "Wait until someone runs `lifeline approve RUN STEP` (or the timeout passes: then it fails).",
        params: &[p("message", Str, false, "what the approver should check")],
        one_of: &[],
        outputs: &["approved_by"],
        default_timeout_secs: 86_400,
        modes: [
            (Run, "wait for approval"),
            (Run, "wait for approval"),
            (Run, "wait for approval"),
            (Skip, "drills do not wait for people (drill = \"run\" to wait)"),
        ],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::Wait,
        name: "wait",
        doc: "Wait for a while (e.g. for DNS TTLs to pass).",
        params: &[p("duration", Duration, true, "how long")],
        one_of: &[],
        outputs: &[],
        default_timeout_secs: 0,
        modes: [(Run, "wait"), (Run, "wait"), (Run, "wait"), (Run, "wait")],
        reach: Reach::Sandbox,
    },
    ActionSpec {
        kind: Action::Notify,
        name: "notify",
        doc: "POST a JSON event (run, mode, group, step, message) to a webhook (http:// or https://).",
        params: &[
            p("url", Str, true, "webhook URL (http:// or https://)"),
            p("message", Str, false, "text to send"),
            p(
                "ca_file",
                Str,
                false,
                "https: trust only the CA certificates in this PEM file [default: the system's]",
            ),
        ],
        one_of: &[],
        outputs: &["status"],
        default_timeout_secs: 30,
        modes: [(Run, "notify"), (Run, "notify"), (Run, "notify"), (Run, "notify")],
        reach: Reach::Sandbox,
    },
];

/// The action named `name`.
pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Every action name.
pub fn names() -> Vec<&'static str> {
    ACTIONS.iter().map(|a| a.name).collect()
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("volume.promot", names()), Some("volume.promote"));
        assert_eq!(suggest("check.htp", names()), Some("check.http"));
        assert_eq!(suggest("make.coffee", names()), None);
    }

    #[test]
    fn a_drill_skips_by_default_every_action_that_reaches_production() {
        for a in ACTIONS.iter().filter(|a| a.reach != Reach::Sandbox) {
            assert_eq!(a.behaviour(Mode::Drill).0, Skip, "{}", a.name);
        }
        assert!(action("replication.stop").unwrap().reaches_production(|_| false));
        let stop = action("service.stop").unwrap();
        assert!(stop.reaches_production(|p| p == "command"));
        assert!(!stop.reaches_production(|p| p == "step"));
    }

    #[test]
    fn per_volume_outputs() {
        let a = action("volume.promote").unwrap();
        assert!(a.has_output("path.db"));
        assert!(a.has_output("seq"));
        assert!(!a.has_output("path"));
        assert!(!a.has_output("paths.db"));
    }

    #[test]
    fn the_readme_documents_every_action_and_parameter() {
        let readme = include_str!("../../../runbooks/README.md");
        for a in ACTIONS {
            assert!(
                readme.contains(&format!("`{}`", a.name)),
                "runbooks/README.md lacks `{}`",
                a.name
            );
            for p in a.params {
                assert!(
                    readme.contains(&format!("`{}`", p.name)),
                    "runbooks/README.md lacks parameter `{}` of `{}`",
                    p.name,
                    a.name
                );
            }
        }
    }
}

#[cfg(test)]
mod typed {
    use super::*;

    #[test]
    fn every_action_has_one_kind_and_its_name_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for a in ACTIONS {
            assert!(seen.insert(a.kind), "{} shares its kind", a.name);
            assert_eq!(Action::from_name(a.name), Some(a.kind));
            assert_eq!(a.kind.name(), a.name);
        }
        assert_eq!(Action::from_name("volume.promot"), None);
    }
}
