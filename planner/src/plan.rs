//! Planning: a checked runbook, the deployment and a mode become a [`Plan`]: the
//! steps in execution order, grouped into levels that may run in parallel, each
//! with what it will do in this mode and its parameters resolved (everything but
//! the outputs of earlier steps, which exist only at run time). Planning is a
//! pure function: `lifeline plan` prints it and touches nothing, and the engine
//! executes exactly what it printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::runbook::actions::{self, Action, Behaviour, Mode};
use crate::runbook::template::{self, Ref};
use crate::runbook::{DrillBehaviour, OnFailure, Params, Pos, Retry, Runbook, Value, format_duration};

/// What the run is asked to do, beyond the runbook.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub mode: Mode,
    /// `--point`: latest, a seq or an RFC 3339 time.
    pub point: Option<String>,
    pub run_id: String,
    /// The run's working directory (logs; a drill's sandbox).
    pub run_dir: PathBuf,
    /// Ports to use instead of the runbook's (a drill binds free ones).
    pub ports: BTreeMap<String, u16>,
    /// This `lifeline` binary, for `${run.bin}`.
    pub bin: String,
    /// A drill's network namespace: services and checks run inside it.
    pub netns: Option<String>,
}

/// This `lifeline` binary's path (for `${run.bin}`), else `lifeline` from PATH.
pub fn this_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "lifeline".into())
}

/// An agent the planner drives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AgentRef {
    pub name: String,
    pub control: String,
}

/// The group as this mode sees it: which way data flows and where volumes are.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Direction {
    pub group: String,
    pub tenant: String,
    pub rpo: Option<String>,
    pub rto: Option<String>,
    /// The site recovered from (the primary, or in a failback the recovery site).
    pub from_site: String,
    /// The site recovered onto.
    pub to_site: String,
    /// The agent that replicates `from_site` to `to_site`.
    pub source_agent: Option<AgentRef>,
    /// The agent that replicates the other way.
    pub reverse_agent: Option<AgentRef>,
    /// Volumes on `from_site`, by name.
    pub source_volumes: BTreeMap<String, PathBuf>,
    /// Where each volume is promoted to.
    pub target_volumes: BTreeMap<String, PathBuf>,
    /// The repository on `to_site` points are read from: its receiver, else its directory.
    pub to_repo: Option<String>,
    /// `to_site`'s repository directory (a failback seeds it).
    pub to_repo_dir: Option<PathBuf>,
}

impl Direction {
    /// Works out the direction of `mode` for `group` from the configuration.
    pub fn of(config: &Config, group: &str, mode: Mode, run_dir: &Path) -> Direction {
        let g = config.group(group).cloned().unwrap_or_default();
        let primary = g.primary.clone().unwrap_or_else(|| "primary".into());
        let secondary = g.secondary.clone().unwrap_or_else(|| "secondary".into());
        let default_agent = config.tls.as_ref().and_then(|t| t.identity.clone());
        let forward = g.control.as_ref().map(|c| AgentRef {
            name: g.agent.clone().or(default_agent.clone()).unwrap_or_default(),
            control: c.clone(),
        });
        let reverse = g.reverse_control.as_ref().map(|c| AgentRef {
            name: g.reverse_agent.clone().unwrap_or_default(),
            control: c.clone(),
        });
        let (from_site, to_site, source_agent, reverse_agent, source_volumes, mut target_volumes) =
            if mode == Mode::Failback {
                (
                    secondary,
                    primary,
                    reverse,
                    forward,
                    g.targets.clone(),
                    g.volumes.clone(),
                )
            } else {
                (
                    primary,
                    secondary,
                    forward,
                    reverse,
                    g.volumes.clone(),
                    g.targets.clone(),
                )
            };
        if mode == Mode::Drill {
            target_volumes = g
                .volumes
                .keys()
                .map(|v| (v.clone(), run_dir.join("volumes").join(format!("{v}.img"))))
                .collect();
        }
        let site = config.sites.get(&to_site);
        Direction {
            group: group.into(),
            tenant: g
                .tenant
                .clone()
                .unwrap_or_else(|| lifeline_replicator::DEFAULT_TENANT.into()),
            rpo: g.rpo.clone(),
            rto: g.rto.clone(),
            from_site,
            to_site,
            source_agent,
            reverse_agent,
            source_volumes,
            target_volumes,
            to_repo: site.and_then(|s| {
                s.receiver
                    .clone()
                    .or_else(|| s.repo.as_ref().map(|p| p.display().to_string()))
            }),
            to_repo_dir: site.and_then(|s| s.repo.clone()),
        }
    }
}

/// How a step will be undone on rollback.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// The runbook's `undo`.
    Action {
        action: String,
        params: BTreeMap<String, Value>,
        /// What it does, as the plan shows it (its own parameters, not the step's).
        description: String,
    },
    /// The action's own undo (stop the process it started, restore the file it
    /// rewrote, resume the agent it paused).
    Builtin { description: String },
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub action: String,
    /// `action`, typed (validation found it in the catalogue).
    #[serde(skip)]
    pub kind: Action,
    /// 0-based: every step of a level may run at once.
    pub level: usize,
    pub behaviour: Behaviour,
    /// Why it runs, is skipped or is best effort in this mode.
    pub reason: String,
    /// What it will do, in words.
    pub description: String,
    /// Parameters with everything known before the run resolved.
    pub params: BTreeMap<String, Value>,
    pub after: Vec<String>,
    #[serde(with = "crate::runbook::duration_ms")]
    pub timeout: Duration,
    pub retry: Retry,
    pub on_failure: OnFailure,
    pub undo: Option<Undo>,
    #[serde(skip)]
    pub pos: Pos,
}

/// A runbook planned for one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runbook: String,
    pub file: PathBuf,
    pub digest: String,
    pub mode: Mode,
    pub point: Option<String>,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub direction: Direction,
    pub ports: BTreeMap<String, u16>,
    /// The network namespace services and checks run in (a drill's sandbox).
    pub netns: Option<String>,
    /// Step ids per level, in execution order.
    pub levels: Vec<Vec<String>>,
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Plans a checked runbook (see [`Runbook::parse`] and
/// [`check_against`](crate::runbook::check_against)). Pure: no I/O.
pub fn plan(rb: &Runbook, config: &Config, opts: &PlanOptions) -> Result<Plan, String> {
    let direction = Direction::of(config, &rb.group.value, opts.mode, &opts.run_dir);
    let mut ports: BTreeMap<String, u16> = rb.ports.iter().map(|(k, v)| (k.clone(), v.value)).collect();
    for (k, v) in &opts.ports {
        ports.insert(k.clone(), *v);
    }
    let levels = levels(rb);
    let ctx = Context {
        rb,
        opts,
        direction: &direction,
        ports: &ports,
    };
    let mut steps = Vec::new();
    for (level, ids) in levels.iter().enumerate() {
        for id in ids {
            let s = rb.step(id).expect("levels hold the runbook's steps");
            let spec = actions::action(&s.action.value).expect("checked runbook");
            let (mut behaviour, mut reason) = spec.behaviour(opts.mode);
            let mut params: Params = s.params.clone();
            let mut reason_owned = None;
            if opts.mode == Mode::Drill {
                // Validation refuses these; a drill refuses them again, whoever built the runbook.
                if let Some(p) = crate::runbook::drill_problems(spec, s).first() {
                    return Err(format!(
                        "{}:{}:{}: {} (a drill never touches production)",
                        rb.file.display(),
                        p.pos.line,
                        p.pos.col,
                        p.message
                    ));
                }
                match &s.drill {
                    DrillBehaviour::Skip => {
                        behaviour = Behaviour::Skip;
                        reason = "drill = \"skip\"";
                    }
                    DrillBehaviour::Run => {
                        behaviour = Behaviour::Run;
                        reason = "drill = \"run\"";
                    }
                    DrillBehaviour::Substitute(sub) => {
                        behaviour = Behaviour::Run;
                        reason_owned = Some(format!(
                            "in the sandbox, with {} substituted",
                            sub.keys().cloned().collect::<Vec<_>>().join(", ")
                        ));
                        for (k, v) in sub {
                            params.insert(k.clone(), v.clone());
                        }
                    }
                    DrillBehaviour::Default => {}
                }
            }
            // Stopping a process this run started is always this run's business.
            if spec.name == "service.stop" && params.contains_key("step") && s.drill != DrillBehaviour::Skip {
                behaviour = Behaviour::Run;
                reason = "stop a process this run started";
            }
            let resolved: BTreeMap<String, Value> = params
                .iter()
                .map(|(k, v)| Ok((k.clone(), ctx.resolve(&v.value)?)))
                .collect::<Result<_, String>>()
                .map_err(|e| format!("step `{id}`: {e}"))?;
            let undo = match &s.undo {
                // A runbook's undo has no drill substitution: in a drill, one that
                // would act on production gives way to the action's own undo (of
                // the drill's parameters, e.g. put the sandbox file back).
                Some(u)
                    if opts.mode == Mode::Drill
                        && actions::action(&u.action.value)
                            .is_none_or(|a| a.reaches_production(|p| u.params.contains_key(p))) =>
                {
                    builtin_undo(spec.name, &resolved).map(|d| Undo::Builtin { description: d })
                }
                Some(u) => {
                    let params: BTreeMap<String, Value> = u
                        .params
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), ctx.resolve(&v.value)?)))
                        .collect::<Result<_, String>>()
                        .map_err(|e| format!("step `{id}` undo: {e}"))?;
                    Some(Undo::Action {
                        action: u.action.value.clone(),
                        description: describe(&u.action.value, &params, &direction, opts),
                        params,
                    })
                }
                None => builtin_undo(spec.name, &resolved).map(|d| Undo::Builtin { description: d }),
            };
            let timeout = s
                .timeout
                .as_ref()
                .map(|t| t.value)
                .unwrap_or(Duration::from_secs(spec.default_timeout_secs));
            steps.push(PlannedStep {
                id: id.clone(),
                action: spec.name.into(),
                kind: spec.kind,
                level,
                behaviour,
                reason: reason_owned.unwrap_or_else(|| reason.to_string()),
                description: describe(spec.name, &resolved, &direction, opts),
                params: resolved,
                after: s.after.iter().map(|d| d.value.clone()).collect(),
                timeout,
                retry: s.retry,
                on_failure: s.on_failure,
                undo,
                pos: s.pos,
            });
        }
    }
    Ok(Plan {
        runbook: rb.name.clone(),
        file: rb.file.clone(),
        digest: rb.digest.clone(),
        mode: opts.mode,
        point: opts.point.clone(),
        run_id: opts.run_id.clone(),
        run_dir: opts.run_dir.clone(),
        direction,
        ports,
        netns: opts.netns.clone(),
        levels,
        steps,
    })
}

struct Context<'a> {
    rb: &'a Runbook,
    opts: &'a PlanOptions,
    direction: &'a Direction,
    ports: &'a BTreeMap<String, u16>,
}

impl Context<'_> {
    fn lookup(&self, r: &Ref) -> Option<String> {
        let d = self.direction;
        match r {
            Ref::Var(v) => self.rb.variables.get(v).map(|v| match &v.value {
                Value::Str(s) => s.clone(),
                other => other.to_string(),
            }),
            Ref::Port(p) => self.ports.get(p).map(u16::to_string),
            Ref::Group(f) => match f.as_str() {
                "name" => Some(d.group.clone()),
                "tenant" => Some(d.tenant.clone()),
                "rpo" => d.rpo.clone(),
                "rto" => d.rto.clone(),
                _ => None,
            },
            Ref::Volume(v) => d.source_volumes.get(v).map(|p| p.display().to_string()),
            Ref::Target(v) => d.target_volumes.get(v).map(|p| p.display().to_string()),
            Ref::Run(f) => match f.as_str() {
                "id" => Some(self.opts.run_id.clone()),
                "mode" => Some(self.opts.mode.to_string()),
                "dir" => Some(self.opts.run_dir.display().to_string()),
                "point" => Some(self.opts.point.clone().unwrap_or_else(|| "latest".into())),
                "bin" => Some(self.opts.bin.clone()),
                _ => None,
            },
            Ref::Step { .. } => None,
        }
    }

    fn resolve(&self, v: &Value) -> Result<Value, String> {
        v.map_strings(&mut |s| {
            let out = template::render_partial(s, &mut |r| match r {
                Ref::Step { .. } => None,
                other => self.lookup(other),
            })?;
            // Anything but a step output left unresolved has no value: say which.
            for piece in template::parse(&out)? {
                if let template::Piece::Ref(r, raw) = piece {
                    let why = match r {
                        Ref::Step { .. } => continue,
                        Ref::Target(v) => format!(
                            "group `{}` has no target path for volume `{v}` on site {} (targets in lifeline.toml)",
                            self.direction.group, self.direction.to_site
                        ),
                        Ref::Volume(v) => format!("group `{}` has no volume `{v}`", self.direction.group),
                        Ref::Group(f) => format!("group `{}` sets no {f}", self.direction.group),
                        _ => "it is not defined".into(),
                    };
                    return Err(format!("`${{{raw}}}` has no value: {why}"));
                }
            }
            Ok(out)
        })
    }
}

fn builtin_undo(action: &str, params: &BTreeMap<String, Value>) -> Option<String> {
    match action {
        "service.start" => Some("stop the process it started (SIGTERM, then SIGKILL)".into()),
        "traffic.switch" if params.contains_key("file") => Some("put the file back as it was".into()),
        "replication.stop" => Some("resume the agent it paused".into()),
        _ => None,
    }
}

fn s<'a>(params: &'a BTreeMap<String, Value>, k: &str) -> Option<&'a str> {
    params.get(k).and_then(Value::as_str)
}

fn describe(action: &str, p: &BTreeMap<String, Value>, d: &Direction, opts: &PlanOptions) -> String {
    let agent = |which: Option<&AgentRef>| match (s(p, "agent"), s(p, "control"), which) {
        (a, Some(c), w) => format!("agent `{}` at {c}", a.or(w.map(|w| w.name.as_str())).unwrap_or("?")),
        (_, None, Some(w)) => format!("agent `{}` at {}", w.name, w.control),
        (_, None, None) => "the group's agent (no control address configured!)".into(),
    };
    let cmd = || {
        let mut c = s(p, "command").unwrap_or("").to_string();
        if let Some(Value::List(a)) = p.get("args") {
            for x in a {
                c.push(' ');
                c.push_str(x.as_str().unwrap_or(""));
            }
        }
        c
    };
    match action {
        "replication.stop" => format!(
            "pause {} ({} → {})",
            agent(d.source_agent.as_ref()),
            d.from_site,
            d.to_site
        ),
        "replication.final_sync" => format!(
            "sync-now on {}; wait for its point on {}",
            agent(d.source_agent.as_ref()),
            d.to_site
        ),
        "replication.seed" => format!(
            "back up {} on {} into {} (tenant {})",
            d.target_volumes
                .iter()
                .map(|(n, p)| format!("{n}={}", p.display()))
                .collect::<Vec<_>>()
                .join(", "),
            d.to_site,
            s(p, "repo")
                .map(str::to_string)
                .or(d.to_repo_dir.as_ref().map(|p| p.display().to_string()))
                .unwrap_or_else(|| "(no repo configured!)".into()),
            s(p, "tenant").unwrap_or(&d.tenant)
        ),
        "replication.reverse" => format!(
            "resume {} ({} → {})",
            agent(d.reverse_agent.as_ref()),
            d.to_site,
            d.from_site
        ),
        "volume.promote" => {
            let point = s(p, "point")
                .map(str::to_string)
                .or(opts.point.clone())
                .unwrap_or_else(|| match opts.mode {
                    Mode::Switchover | Mode::Failback => "the final sync's point (else latest)".into(),
                    _ => "latest".into(),
                });
            let names: Vec<String> = match p.get("volumes") {
                Some(Value::List(l)) => l.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
                _ => d.target_volumes.keys().cloned().collect(),
            };
            let instant = matches!(p.get("instant"), Some(Value::Bool(true)));
            let hydrate = match p.get("hydrate") {
                Some(Value::Bool(h)) => *h,
                _ => opts.mode != Mode::Drill,
            };
            let verb = match (instant, hydrate) {
                (false, _) => "restore",
                (true, false) => "serve (instant: attached through nbdfuse, writes to an overlay, no hydration)",
                (true, true) => "serve (instant: attached through nbdfuse at once, hydrated in the background)",
            };
            format!(
                "{verb} point {point} of group {} from {} onto {}",
                d.group,
                s(p, "repo")
                    .map(str::to_string)
                    .or(d.to_repo.clone())
                    .unwrap_or_else(|| "(no repository configured!)".into()),
                names
                    .iter()
                    .map(|n| format!(
                        "{n}={}",
                        d.target_volumes
                            .get(n)
                            .map(|p| p.display().to_string())
                            .unwrap_or("(no target!)".into())
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        "service.start" => format!("start `{}`", cmd()),
        "service.stop" => match s(p, "step") {
            Some(st) => format!("stop the process step `{st}` started"),
            None => format!("run `{}`", cmd()),
        },
        "check.tcp" => format!("connect to {}", s(p, "address").unwrap_or("")),
        "check.http" => format!(
            "GET {} expecting {}{}",
            s(p, "url").unwrap_or(""),
            match p.get("status") {
                Some(Value::Int(i)) => i.to_string(),
                _ => "200".into(),
            },
            s(p, "body_contains")
                .map(|b| format!(" and a body containing {b:?}"))
                .unwrap_or_default()
        ),
        "check.command" => format!("run `{}`, expect exit 0", cmd()),
        "check.volume" => {
            let v = s(p, "volume").unwrap_or("");
            let path = s(p, "path")
                .map(str::to_string)
                .or(d.target_volumes.get(v).map(|p| p.display().to_string()))
                .unwrap_or_default();
            let zero = matches!(opts.mode, Mode::Switchover | Mode::Failback);
            format!(
                "hash {path} and compare with the point{}",
                if zero {
                    format!(
                        " and with {} (zero loss)",
                        d.source_volumes
                            .get(v)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                } else {
                    String::new()
                }
            )
        }
        "traffic.switch" => match s(p, "file") {
            Some(f) if p.contains_key("replace") => format!(
                "in {f}, replace {:?} with {:?}",
                s(p, "replace").unwrap_or(""),
                s(p, "with").unwrap_or("")
            ),
            Some(f) => format!("rewrite {f}"),
            None => format!("run `{}`", cmd()),
        },
        "approval" => format!(
            "wait for `lifeline approve {} STEP`{}",
            opts.run_id,
            s(p, "message").map(|m| format!(": {m}")).unwrap_or_default()
        ),
        "wait" => format!("wait {}", s(p, "duration").unwrap_or("")),
        "notify" => format!("POST the event to {}", s(p, "url").unwrap_or("")),
        "check.workload" => format!(
            "count the workload records lost in {} at the run's start",
            s(p, "path")
                .map(str::to_string)
                .or(d
                    .target_volumes
                    .get(s(p, "volume").unwrap_or(""))
                    .map(|p| p.display().to_string()))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Steps by level: a step's level is one more than its deepest dependency's;
/// within a level, file order.
fn levels(rb: &Runbook) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // The runbook is acyclic (checked), so repeated relaxation terminates.
    let mut changed = true;
    while changed {
        changed = false;
        for s in &rb.steps {
            let l = s
                .after
                .iter()
                .filter_map(|d| level.get(d.value.as_str()).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            let deps_known = s.after.iter().all(|d| level.contains_key(d.value.as_str()));
            if deps_known && level.get(s.id.value.as_str()) != Some(&l) {
                level.insert(&s.id.value, l);
                changed = true;
            }
        }
    }
    let depth = level.values().max().map(|m| m + 1).unwrap_or(0);
    let mut out = vec![Vec::new(); depth];
    for s in &rb.steps {
        out[level[s.id.value.as_str()]].push(s.id.value.clone());
    }
    out
}

/// The plan as text for a person.
pub fn render_text(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let d = &plan.direction;
    let _ = writeln!(
        o,
        "runbook {} ({})  digest {}",
        plan.runbook,
        plan.file.display(),
        &plan.digest[..16]
    );
    let _ = writeln!(
        o,
        "mode {}: group {} (tenant {}), {} → {}, point {}{}",
        plan.mode,
        d.group,
        d.tenant,
        d.from_site,
        d.to_site,
        plan.point.as_deref().unwrap_or("latest"),
        match (&d.rpo, &d.rto) {
            (Some(rpo), Some(rto)) => format!(", objectives RPO {rpo} RTO {rto}"),
            _ => String::new(),
        }
    );
    if !plan.ports.is_empty() {
        let _ = writeln!(
            o,
            "ports: {}",
            plan.ports
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (i, ids) in plan.levels.iter().enumerate() {
        let _ = writeln!(
            o,
            "\nlevel {}{}",
            i + 1,
            if ids.len() > 1 {
                format!(" ({} steps in parallel)", ids.len())
            } else {
                String::new()
            }
        );
        for id in ids {
            let s = plan.step(id).expect("planned");
            let tag = match s.behaviour {
                Behaviour::Run => "run ",
                Behaviour::BestEffort => "try ",
                Behaviour::Skip => "skip",
            };
            let _ = writeln!(o, "  [{tag}] {:<20} {:<24} {}", s.id, s.action, s.description);
            if s.behaviour != Behaviour::Run || !s.reason.is_empty() {
                let _ = writeln!(o, "         {:<20} {:<24} ({})", "", "", s.reason);
            }
            if s.behaviour == Behaviour::Skip {
                continue;
            }
            let mut extra = vec![format!("timeout {}", format_duration(s.timeout))];
            if s.retry.attempts > 1 {
                extra.push(format!(
                    "{} attempts, backoff {}",
                    s.retry.attempts,
                    format_duration(s.retry.backoff)
                ));
            }
            if s.on_failure != OnFailure::Abort {
                extra.push(format!("on failure {:?}", s.on_failure).to_lowercase());
            }
            match &s.undo {
                Some(Undo::Action {
                    action, description, ..
                }) => extra.push(format!("undo: {action}: {description}")),
                Some(Undo::Builtin { description }) => extra.push(format!("undo: {description}")),
                None => {}
            }
            let _ = writeln!(o, "         {:<20} {:<24} {}", "", "", extra.join("; "));
            for (k, v) in &s.params {
                let _ = writeln!(o, "         {:<20} {:<24}   {k} = {v}", "", "");
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Runbook;

    const CONFIG: &str = include_str!("../../runbooks/lifeline.toml");

    fn planned(text: &str, mode: Mode) -> Plan {
        let rb = Runbook::parse(text, Path::new("t.toml")).unwrap();
        let config = Config::parse(CONFIG, Path::new("lifeline.toml")).unwrap();
        assert!(crate::runbook::check_against(&rb, &config).is_empty());
        plan(
            &rb,
            &config,
            &PlanOptions {
                mode,
                point: None,
                run_id: "r1".into(),
                run_dir: "/runs/r1".into(),
                ports: BTreeMap::new(),
                bin: "lifeline".into(),
                netns: None,
            },
        )
        .unwrap()
    }

    const RB: &str = r#"
[runbook]
name = "t"
group = "shop"
[runbook.ports]
app = 8080
[[step]]
id = "stop"
action = "replication.stop"
[[step]]
id = "sync"
action = "replication.final_sync"
[[step]]
id = "promote"
action = "volume.promote"
after = ["stop", "sync"]
[[step]]
id = "app"
action = "service.start"
command = "app"
args = ["--data", "${steps.promote.path.db}", "--port", "${ports.app}", "--vol", "${targets.db}"]
after = ["promote"]
[[step]]
id = "up"
action = "check.tcp"
address = "127.0.0.1:${ports.app}"
after = ["app"]
[[step]]
id = "dns"
action = "traffic.switch"
command = "true"
after = ["up"]
"#;

    #[test]
    fn levels_follow_dependencies() {
        let p = planned(RB, Mode::Failover);
        assert_eq!(
            p.levels,
            vec![
                vec!["stop", "sync"],
                vec!["promote"],
                vec!["app"],
                vec!["up"],
                vec!["dns"]
            ]
        );
    }

    #[test]
    fn modes_change_what_steps_do() {
        let f = planned(RB, Mode::Failover);
        assert_eq!(f.step("stop").unwrap().behaviour, Behaviour::BestEffort);
        assert_eq!(f.step("sync").unwrap().behaviour, Behaviour::Skip);
        let s = planned(RB, Mode::Switchover);
        assert_eq!(s.step("sync").unwrap().behaviour, Behaviour::Run);
        let d = planned(RB, Mode::Drill);
        assert_eq!(d.step("stop").unwrap().behaviour, Behaviour::Skip);
        assert_eq!(d.step("dns").unwrap().behaviour, Behaviour::Skip);
        assert_eq!(d.step("promote").unwrap().behaviour, Behaviour::Run);
        // A drill promotes into its sandbox, never onto the real targets.
        assert!(
            d.step("promote")
                .unwrap()
                .description
                .contains("/runs/r1/volumes/db.img")
        );
        let b = planned(RB, Mode::Failback);
        assert_eq!(b.direction.from_site, "secondary");
        assert_eq!(b.direction.target_volumes["db"], PathBuf::from("/dev/vdb"));
    }

    #[test]
    fn parameters_resolve_except_step_outputs() {
        let p = planned(RB, Mode::Failover);
        let args = &p.step("app").unwrap().params["args"];
        assert_eq!(
            args,
            &Value::List(vec![
                Value::Str("--data".into()),
                Value::Str("${steps.promote.path.db}".into()),
                Value::Str("--port".into()),
                Value::Str("8080".into()),
                Value::Str("--vol".into()),
                Value::Str("/dev/vdc".into()),
            ])
        );
        assert_eq!(
            p.step("up").unwrap().params["address"],
            Value::Str("127.0.0.1:8080".into())
        );
    }

    #[test]
    fn the_plan_shows_a_steps_undo_with_its_own_parameters() {
        let text = r#"
[runbook]
name = "t"
group = "shop"
[[step]]
id = "switch"
action = "traffic.switch"
command = "/srv/shop/switch.sh"
args = ["--to", "dr"]
undo = { action = "check.command", command = "/srv/shop/switch-back.sh", args = ["--to", "primary"] }
[[step]]
id = "app"
action = "service.start"
command = "app"
"#;
        let p = planned(text, Mode::Failover);
        let out = render_text(&p);
        let undo_line = out
            .lines()
            .find(|l| l.contains("undo: check.command"))
            .unwrap_or_else(|| panic!("no undo line:\n{out}"));
        assert!(
            undo_line.contains("/srv/shop/switch-back.sh --to primary"),
            "{undo_line}"
        );
        assert!(!undo_line.contains("switch.sh --to dr"), "{undo_line}");
        // An action's own undo is described, without parameters.
        assert!(out.contains("undo: stop the process it started"), "{out}");
    }

    #[test]
    fn in_a_drill_an_undo_that_acts_on_production_gives_way_to_the_actions_own() {
        let text = r#"
[runbook]
name = "t"
group = "shop"
[[step]]
id = "dns"
action = "traffic.switch"
file = "/etc/zone"
content = "dr"
undo = { action = "traffic.switch", file = "/etc/zone", content = "primary" }
drill = { file = "${run.dir}/zone" }
[[step]]
id = "hook"
action = "check.command"
command = "true"
undo = { action = "replication.reverse" }
"#;
        let f = planned(text, Mode::Failover);
        assert!(matches!(f.step("dns").unwrap().undo, Some(Undo::Action { .. })));
        let d = planned(text, Mode::Drill);
        assert_eq!(
            d.step("dns").unwrap().undo,
            Some(Undo::Builtin {
                description: "put the file back as it was".into()
            })
        );
        assert_eq!(
            d.step("dns").unwrap().params["file"],
            Value::Str("/runs/r1/zone".into())
        );
        assert_eq!(d.step("hook").unwrap().undo, None);
    }

    #[test]
    fn planning_a_drill_refuses_a_step_that_would_act_on_production() {
        // Built without validation (as a library caller could): planning refuses it.
        let mut rb = Runbook::parse(RB, Path::new("t.toml")).unwrap();
        let dns = rb.steps.iter_mut().find(|s| s.id.value == "dns").unwrap();
        dns.drill = DrillBehaviour::Substitute(Params::new());
        let config = Config::parse(CONFIG, Path::new("lifeline.toml")).unwrap();
        let opts = PlanOptions {
            mode: Mode::Drill,
            point: None,
            run_id: "r1".into(),
            run_dir: "/runs/r1".into(),
            ports: BTreeMap::new(),
            bin: "lifeline".into(),
            netns: None,
        };
        let e = plan(&rb, &config, &opts).unwrap_err();
        assert!(e.contains("keeps production's `command`"), "{e}");
        let failover = PlanOptions {
            mode: Mode::Failover,
            ..opts
        };
        assert!(plan(&rb, &config, &failover).is_ok());
    }

    #[test]
    fn planning_200_steps_is_fast_and_deterministic() {
        let mut text = String::from("[runbook]\nname = \"big\"\ngroup = \"shop\"\n");
        for i in 0..200 {
            text.push_str(&format!(
                "[[step]]\nid = \"s{i}\"\naction = \"wait\"\nduration = \"1ms\"\n"
            ));
            if i > 0 {
                text.push_str(&format!("after = [\"s{}\"]\n", i / 2));
            }
        }
        let a = planned(&text, Mode::Failover);
        let b = planned(&text, Mode::Failover);
        assert_eq!(a.steps, b.steps);
        assert_eq!(a.steps.len(), 200);
        assert_eq!(a.levels.len(), 9);
    }
}
