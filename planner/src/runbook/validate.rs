//! Checks of a parsed runbook: first those that need only the file
//! ([`check_steps`]), then those that need the deployment ([`check_against`]).
//! Each problem becomes a [`Diagnostic`] at the line and column of the value at
//! fault, with what to write instead.

use std::collections::{BTreeMap, BTreeSet};

use super::actions::{self, ActionSpec, FILE_TARGET, Kind, Reach};
use super::template::{self, Ref};
use super::{Diagnostic, DrillBehaviour, Params, Pos, Runbook, Sink, Step, Value};
use crate::config::Config;

pub(super) fn check_steps(rb: &Runbook, sink: &mut Sink) {
    let mut first: BTreeMap<&str, Pos> = BTreeMap::new();
    for s in &rb.steps {
        let id = s.id.value.as_str();
        if id.is_empty() {
            continue;
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            sink.error(
                s.id.pos,
                format!("step id `{id}` may hold only a-z, 0-9, - and _"),
                Some(format!(
                    "id = \"{}\"",
                    id.to_ascii_lowercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                )),
            );
        }
        if let Some(p) = first.get(id) {
            sink.error(
                s.id.pos,
                format!("duplicate step id `{id}` (first used at line {})", p.line),
                Some("give each step its own id".into()),
            );
        } else {
            first.insert(id, s.id.pos);
        }
    }
    let ids: Vec<&str> = first.keys().copied().collect();

    for s in &rb.steps {
        let spec = match actions::action(&s.action.value) {
            Some(a) => Some(a),
            None if s.action.value.is_empty() => None,
            None => {
                let help = match actions::suggest(&s.action.value, actions::names()) {
                    Some(a) => format!("did you mean `{a}`?"),
                    None => format!("actions: {}", actions::names().join(", ")),
                };
                sink.error(s.action.pos, format!("unknown action `{}`", s.action.value), Some(help));
                None
            }
        };
        if let Some(spec) = spec {
            check_params(spec, &s.params, s.pos, true, &s.id.value, sink);
            check_instant(spec.name, &s.params, sink);
            if let DrillBehaviour::Substitute(sub) = &s.drill {
                check_params(spec, sub, s.pos, false, &s.id.value, sink);
            }
            for p in drill_problems(spec, s) {
                sink.error(p.pos, p.message, Some(p.help));
            }
        }
        if let Some(undo) = &s.undo {
            match actions::action(&undo.action.value) {
                Some(u) => check_params(u, &undo.params, undo.action.pos, true, &s.id.value, sink),
                None => sink.error(
                    undo.action.pos,
                    format!("unknown undo action `{}`", undo.action.value),
                    actions::suggest(&undo.action.value, actions::names()).map(|a| format!("did you mean `{a}`?")),
                ),
            }
        }
        for dep in &s.after {
            if dep.value == s.id.value {
                sink.error(
                    dep.pos,
                    format!("step `{}` depends on itself", s.id.value),
                    Some("remove it from `after`".into()),
                );
            } else if !first.contains_key(dep.value.as_str()) {
                let help = match actions::suggest(&dep.value, ids.iter().copied()) {
                    Some(i) => format!("did you mean `{i}`?"),
                    None => format!("steps: {}", ids.join(", ")),
                };
                sink.error(
                    dep.pos,
                    format!("`after` names unknown step `{}`", dep.value),
                    Some(help),
                );
            }
        }
    }

    let cyclic = report_cycles(rb, sink);
    if cyclic {
        return;
    }
    for s in &rb.steps {
        let ancestors = ancestors(rb, &s.id.value);
        let mut check = |params: &Params| {
            for v in params.values() {
                for text in v.value.strings() {
                    check_template(rb, text, v.pos, &ancestors, &s.id.value, sink);
                }
            }
        };
        check(&s.params);
        if let Some(u) = &s.undo {
            check(&u.params);
        }
        if let DrillBehaviour::Substitute(sub) = &s.drill {
            check(sub);
        }
    }
}

/// Where a step would let a drill act on production, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillProblem {
    pub pos: Pos,
    pub message: String,
    pub help: String,
}

/// The prefix a drill's `file` must start with: the sandbox.
const SANDBOX_PREFIX: &str = "${run.dir}/";

/// Why step `s` (of action `spec`) could act on production in a drill: a
/// drill skips every action that reaches production (see [`Reach`]) unless a
/// substitution replaces each production target the step uses — `file` with a
/// path under `${run.dir}`, `command` with another command — and never runs
/// replication. Validation reports these; planning a drill refuses them too.
pub fn drill_problems(spec: &ActionSpec, s: &Step) -> Vec<DrillProblem> {
    let id = &s.id.value;
    let uses = |p: &str| s.params.contains_key(p);
    let mut out = Vec::new();
    let mut problem = |pos: Pos, message: String, help: &str| {
        out.push(DrillProblem {
            pos,
            message,
            help: help.into(),
        })
    };
    let targets = spec.production_targets(uses);
    match (&s.drill, spec.reach) {
        (DrillBehaviour::Default | DrillBehaviour::Skip, _) => {}
        (DrillBehaviour::Run | DrillBehaviour::Substitute(_), Reach::Replication) => problem(
            s.drill_pos,
            format!(
                "step `{id}`: `{}` drives production replication, so it cannot run in a drill: a drill never touches \
                 production",
                spec.name
            ),
            "drop `drill = ...` (a drill skips it), or write drill = \"skip\"",
        ),
        (DrillBehaviour::Run, _) if targets.is_empty() => {}
        (DrillBehaviour::Run, _) => problem(
            s.drill_pos,
            format!(
                "step `{id}`: `{}` with `{}` acts on production, so it cannot run in a drill as it is",
                spec.name,
                targets.join("`, `")
            ),
            "substitute each production target: drill = { file = \"${run.dir}/NAME\" } or \
             drill = { command = \"...\" }, or drop `drill = \"run\"` (a drill skips it)",
        ),
        (DrillBehaviour::Substitute(sub), Reach::Targets(all)) => {
            for t in &targets {
                let production = s.params.get(*t).map(|v| v.value.to_string()).unwrap_or_default();
                match sub.get(*t) {
                    None => problem(
                        s.drill_pos,
                        format!(
                            "step `{id}`: the drill substitution keeps production's `{t}` ({production}), so the drill \
                             would act on production"
                        ),
                        if *t == FILE_TARGET {
                            "replace it with a file in the sandbox: drill = { file = \"${run.dir}/NAME\", ... }, \
                             or write drill = \"skip\""
                        } else {
                            "replace it with a command that acts on the sandbox: drill = { command = \"...\" }, \
                             or write drill = \"skip\""
                        },
                    ),
                    Some(v) if *t == FILE_TARGET => {
                        if let Value::Str(f) = &v.value
                            && !in_sandbox(f)
                        {
                            problem(
                                v.pos,
                                format!("step `{id}`: a drill's `file` must lie in the sandbox, not {f:?}"),
                                "file = \"${run.dir}/NAME\" (no `..`)",
                            )
                        }
                    }
                    Some(v) => {
                        let args = |p: &Params| p.get("args").map(|a| a.value.clone());
                        let drill_args = args(sub).or(args(&s.params));
                        if s.params.get(*t).map(|p| &p.value) == Some(&v.value) && drill_args == args(&s.params) {
                            problem(
                                v.pos,
                                format!(
                                    "step `{id}`: the drill substitution runs production's command unchanged \
                                     ({production})"
                                ),
                                "substitute a command that acts on the sandbox, or write drill = \"skip\"",
                            )
                        }
                    }
                }
            }
            // A target the step does not use: the drill would hold both kinds.
            if spec.one_of.iter().any(|p| uses(p)) {
                for t in all.iter().filter(|t| !uses(t)) {
                    if let Some(v) = sub.get(*t) {
                        problem(
                            v.pos,
                            format!(
                                "step `{id}`: the drill substitution gives `{t}`, but the step acts through `{}`",
                                spec.one_of
                                    .iter()
                                    .copied()
                                    .filter(|p| uses(p))
                                    .collect::<Vec<_>>()
                                    .join("`, `")
                            ),
                            "a substitution replaces the step's own target: `file` with a file under ${run.dir}, \
                             `command` with another command",
                        )
                    }
                }
            }
        }
        (DrillBehaviour::Substitute(_), Reach::Sandbox) => {}
    }
    out
}

/// Is a runbook's `file` (before interpolation) under the sandbox? The engine
/// checks the resolved path again at run time.
fn in_sandbox(file: &str) -> bool {
    file.strip_prefix(SANDBOX_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && !rest.split('/').any(|c| c == ".."))
}

fn check_params(spec: &ActionSpec, params: &Params, step_pos: Pos, complete: bool, step: &str, sink: &mut Sink) {
    for (name, v) in params {
        let Some(ps) = spec.param(name) else {
            let help = match actions::suggest(name, spec.params.iter().map(|p| p.name)) {
                Some(n) => format!("did you mean `{n}`?"),
                None if spec.params.is_empty() => format!("`{}` takes no parameters", spec.name),
                None => format!(
                    "`{}` takes: {}",
                    spec.name,
                    spec.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                ),
            };
            sink.error(
                v.pos,
                format!("unknown parameter `{name}` for `{}`", spec.name),
                Some(help),
            );
            continue;
        };
        let ok = match (ps.kind, &v.value) {
            (Kind::Str, Value::Str(_)) | (Kind::Int, Value::Int(_)) | (Kind::Bool, Value::Bool(_)) => true,
            (Kind::StrList, Value::List(l)) => l.iter().all(|x| matches!(x, Value::Str(_))),
            (Kind::StrTable, Value::Table(t)) => t.values().all(|x| matches!(x, Value::Str(_))),
            (Kind::Duration, Value::Str(s)) => {
                // An interpolated duration is checked when it runs.
                if !s.contains("${")
                    && let Err(e) = super::parse_duration(s)
                {
                    sink.error(v.pos, format!("`{name}`: {e}"), Some(format!("{name} = \"5s\"")));
                }
                true
            }
            _ => false,
        };
        if !ok {
            sink.error(
                v.pos,
                format!(
                    "`{name}` of `{}` must be {}, not {}",
                    spec.name,
                    ps.kind.describe(),
                    v.value.kind()
                ),
                Some(format!("{name} = {}", ps.kind.example())),
            );
        }
    }
    if !complete {
        return;
    }
    for ps in spec.params.iter().filter(|p| p.required) {
        if !params.contains_key(ps.name) {
            sink.error(
                step_pos,
                format!(
                    "step `{step}`: `{}` needs parameter `{}` ({})",
                    spec.name, ps.name, ps.doc
                ),
                Some(format!("{} = {}", ps.name, ps.kind.example())),
            );
        }
    }
    if !spec.one_of.is_empty() {
        let given: Vec<&str> = spec
            .one_of
            .iter()
            .copied()
            .filter(|p| params.contains_key(*p))
            .collect();
        if given.len() != 1 {
            sink.error(
                step_pos,
                format!(
                    "step `{step}`: `{}` needs exactly one of {} (given: {})",
                    spec.name,
                    spec.one_of
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(", ")
                    }
                ),
                None,
            );
        }
    }
}

/// `hydrate` says where an instant promote copies the point: without
/// `instant = true` there is nothing to hydrate (a full promote restores).
fn check_instant(action: &str, params: &Params, sink: &mut Sink) {
    if action != "volume.promote" {
        return;
    }
    let instant = matches!(params.get("instant").map(|v| &v.value), Some(Value::Bool(true)));
    if let Some(r) = params.get("hydrate_rate")
        && let Value::Str(t) = &r.value
        && !t.contains("${")
        && let Err(e) = lifeline_replicator::units::parse_rate(t)
    {
        sink.error(
            r.pos,
            format!("`hydrate_rate`: {e}"),
            Some("hydrate_rate = \"200MiB/s\"".into()),
        );
    }
    if let Some(h) = params.get("hydrate").or(params.get("hydrate_rate"))
        && !instant
    {
        sink.error(
            h.pos,
            "`hydrate` and `hydrate_rate` apply only to an instant promote (a full promote restores every byte first)"
                .to_string(),
            Some("instant = true".into()),
        );
    }
}

fn check_template(rb: &Runbook, text: &str, pos: Pos, ancestors: &BTreeSet<String>, step: &str, sink: &mut Sink) {
    let pieces = match template::parse(text) {
        Ok(p) => p,
        Err(e) => {
            sink.error(pos, e, None);
            return;
        }
    };
    for piece in pieces {
        let template::Piece::Ref(r, raw) = piece else { continue };
        match &r {
            Ref::Var(v) if !rb.variables.contains_key(v) => sink.error(
                pos,
                format!("`${{{raw}}}`: no variable `{v}`"),
                Some(format!("declare it: [runbook.variables] {v} = \"...\"")),
            ),
            Ref::Port(v) if !rb.ports.contains_key(v) => sink.error(
                pos,
                format!("`${{{raw}}}`: no port `{v}`"),
                Some(format!("declare it: [runbook.ports] {v} = 8080")),
            ),
            Ref::Step { id, output } => match rb.step(id) {
                None => sink.error(pos, format!("`${{{raw}}}`: no step `{id}`"), None),
                Some(_) if id == step => {
                    sink.error(pos, format!("`${{{raw}}}`: a step cannot read its own outputs"), None)
                }
                Some(_) if !ancestors.contains(id) => sink.error(
                    pos,
                    format!("`${{{raw}}}`: step `{step}` reads an output of `{id}` but does not run after it"),
                    Some(format!("add after = [\"{id}\"] to step `{step}`")),
                ),
                Some(s) => {
                    if let Some(spec) = actions::action(&s.action.value)
                        && !spec.has_output(output)
                    {
                        sink.error(
                            pos,
                            format!("`${{{raw}}}`: `{}` has no output `{output}`", spec.name),
                            Some(if spec.outputs.is_empty() {
                                format!("`{}` has no outputs", spec.name)
                            } else {
                                format!("outputs of `{}`: {}", spec.name, spec.outputs.join(", "))
                            }),
                        );
                    }
                }
            },
            _ => {}
        }
    }
}

/// Reports each dependency cycle once; true if there is one.
fn report_cycles(rb: &Runbook, sink: &mut Sink) -> bool {
    // Kahn's algorithm: what remains after peeling sources lies on or behind a cycle.
    let mut indeg: BTreeMap<&str, usize> = rb.steps.iter().map(|s| (s.id.value.as_str(), 0)).collect();
    for s in &rb.steps {
        for d in &s.after {
            if indeg.contains_key(d.value.as_str()) && d.value != s.id.value {
                *indeg.get_mut(s.id.value.as_str()).expect("present") += 1;
            }
        }
    }
    let mut ready: Vec<&str> = indeg.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    while let Some(id) = ready.pop() {
        indeg.remove(id);
        for s in rb.steps.iter().filter(|s| s.after.iter().any(|d| d.value == id)) {
            if let Some(n) = indeg.get_mut(s.id.value.as_str()) {
                *n -= 1;
                if *n == 0 {
                    ready.push(&s.id.value);
                }
            }
        }
    }
    if indeg.is_empty() {
        return false;
    }
    // Walk from a remaining step along remaining dependencies until a step repeats.
    let start = rb
        .steps
        .iter()
        .find(|s| indeg.contains_key(s.id.value.as_str()))
        .expect("remaining");
    let mut path = vec![start.id.value.as_str()];
    let mut cur = start;
    loop {
        let next = cur
            .after
            .iter()
            .find(|d| indeg.contains_key(d.value.as_str()) && d.value != cur.id.value)
            .and_then(|d| rb.step(&d.value))
            .expect("a step on a cycle has a remaining dependency");
        if let Some(i) = path.iter().position(|p| *p == next.id.value) {
            let cycle: Vec<&str> = path[i..].iter().copied().chain([next.id.value.as_str()]).collect();
            let at = rb.step(path[i]).expect("present");
            sink.error(
                at.pos,
                format!("dependency cycle: {} (each runs after the next)", cycle.join(" → ")),
                Some("remove one of these `after` entries".into()),
            );
            return true;
        }
        path.push(&next.id.value);
        cur = next;
    }
}

/// Steps that `id` runs after, directly or not.
pub(crate) fn ancestors(rb: &Runbook, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![id.to_string()];
    while let Some(cur) = todo.pop() {
        if let Some(s) = rb.step(&cur) {
            for d in &s.after {
                if out.insert(d.value.clone()) {
                    todo.push(d.value.clone());
                }
            }
        }
    }
    out
}

/// Checks the runbook against the deployment: the group exists and every volume
/// it names is one of the group's.
pub fn check_against(rb: &Runbook, config: &Config) -> Vec<Diagnostic> {
    let file = rb.file.display().to_string();
    let mut sink = Sink::new(&file);
    let Some(group) = config.group(&rb.group.value) else {
        let help = match actions::suggest(&rb.group.value, config.groups.keys().map(String::as_str)) {
            Some(g) => format!("did you mean `{g}`?"),
            None if config.groups.is_empty() => {
                "the configuration has no [groups.NAME] sections (pass --config)".into()
            }
            None => format!(
                "groups in the configuration: {}",
                config.groups.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        sink.error(
            rb.group.pos,
            format!("group `{}` is not in the configuration", rb.group.value),
            Some(help),
        );
        return sink.out;
    };
    let volumes: Vec<&str> = group.volumes.keys().map(String::as_str).collect();
    let check_volume = |name: &str, pos: Pos, sink: &mut Sink| {
        if !group.volumes.contains_key(name) {
            sink.error(
                pos,
                format!("group `{}` has no volume `{name}`", rb.group.value),
                Some(match actions::suggest(name, volumes.iter().copied()) {
                    Some(v) => format!("did you mean `{v}`?"),
                    None => format!("its volumes: {}", volumes.join(", ")),
                }),
            );
        }
    };
    for s in &rb.steps {
        let mut all: Vec<&Params> = vec![&s.params];
        if let Some(u) = &s.undo {
            all.push(&u.params);
        }
        if let DrillBehaviour::Substitute(sub) = &s.drill {
            all.push(sub);
        }
        for params in all {
            for v in params.values() {
                for text in v.value.strings() {
                    for piece in template::parse(text).unwrap_or_default() {
                        match piece {
                            template::Piece::Ref(Ref::Volume(n) | Ref::Target(n), _) => {
                                check_volume(&n, v.pos, &mut sink)
                            }
                            // A per-volume output (`${steps.promote.path.NAME}`) names a volume too.
                            template::Piece::Ref(Ref::Step { id, output }, _) => {
                                if let Some(n) = rb
                                    .step(&id)
                                    .and_then(|st| actions::action(&st.action.value))
                                    .and_then(|spec| spec.volume_of_output(&output))
                                {
                                    check_volume(n, v.pos, &mut sink);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        match s.action.value.as_str() {
            "volume.promote" => {
                if let Some(v) = s.params.get("volumes")
                    && let Value::List(l) = &v.value
                {
                    for n in l.iter().filter_map(Value::as_str) {
                        check_volume(n, v.pos, &mut sink);
                    }
                }
            }
            "check.volume" | "check.workload" => {
                if let Some(v) = s.params.get("volume")
                    && let Value::Str(n) = &v.value
                {
                    check_volume(n, v.pos, &mut sink);
                }
            }
            _ => {}
        }
    }
    sink.out.sort_by_key(|d| (d.line, d.col));
    sink.out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Runbook;

    /// The messages of the errors in a one-step runbook.
    fn errors(step: &str) -> Vec<String> {
        let text = format!("[runbook]\nname = \"t\"\ngroup = \"shop\"\n[[step]]\nid = \"s\"\n{step}");
        match Runbook::parse(&text, Path::new("t.toml")) {
            Ok(_) => vec![],
            Err(e) => {
                e.0.iter()
                    .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
                    .collect()
            }
        }
    }

    #[test]
    fn an_instant_promote_takes_booleans_and_hydration_only_when_instant() {
        for ok in [
            "action = \"volume.promote\"\ninstant = true",
            "action = \"volume.promote\"\ninstant = true\nhydrate = false",
            "action = \"volume.promote\"\ninstant = true\nhydrate = true\nhydrate_rate = \"50MiB/s\"",
            "action = \"volume.promote\"\ninstant = false",
        ] {
            assert_eq!(errors(ok), Vec::<String>::new(), "{ok}");
        }
        for (bad, want) in [
            (
                "action = \"volume.promote\"\ninstant = \"yes\"",
                "7:11 `instant` of `volume.promote` must be true or false, not a string",
            ),
            (
                "action = \"volume.promote\"\nhydrate = true",
                "7:11 `hydrate` and `hydrate_rate` apply only to an instant promote",
            ),
            (
                "action = \"volume.promote\"\ninstant = false\nhydrate_rate = \"1MiB\"",
                "8:16 `hydrate` and `hydrate_rate` apply only to an instant promote",
            ),
            (
                "action = \"volume.promote\"\ninstant = true\nhydrate_rate = \"fast\"",
                "8:16 `hydrate_rate`: invalid rate `fast`",
            ),
        ] {
            let got = errors(bad);
            assert!(got.iter().any(|e| e.starts_with(want)), "{bad}: {got:?}");
        }
    }

    #[test]
    fn a_drill_skips_or_substitutes_every_production_target() {
        // Allowed: the default (skip), skip, substitutions into the sandbox or another command.
        for ok in [
            "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"",
            "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = \"skip\"",
            "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { file = \"${run.dir}/zone\" }",
            "action = \"traffic.switch\"\ncommand = \"dns-set\"\ndrill = { command = \"true\" }",
            "action = \"service.stop\"\ncommand = \"systemctl\"\nargs = [\"stop\", \"shop\"]",
            "action = \"service.stop\"\ncommand = \"systemctl\"\nargs = [\"stop\", \"shop\"]\ndrill = { command = \"true\" }",
            "action = \"service.stop\"\nstep = \"s\"\ndrill = \"run\"",
            "action = \"replication.stop\"\ndrill = \"skip\"",
            "action = \"check.command\"\ncommand = \"true\"\ndrill = {}",
            "action = \"notify\"\nurl = \"http://127.0.0.1:1/\"\ndrill = \"run\"",
        ] {
            assert_eq!(errors(ok), Vec::<String>::new(), "{ok}");
        }
        // Refused, at the place to fix.
        for (bad, want) in [
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = {}",
                "9:9 step `s`: the drill substitution keeps production's `file`",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { content = \"y\" }",
                "9:9 step `s`: the drill substitution keeps production's `file`",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = \"run\"",
                "9:9 step `s`: `traffic.switch` with `file` acts on production",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { file = \"/etc/zone\" }",
                "9:18 step `s`: a drill's `file` must lie in the sandbox",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { file = \"${run.dir}/../../etc/zone\" }",
                "9:18 step `s`: a drill's `file` must lie in the sandbox",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { file = \"${vars.x}/zone\" }",
                "9:18 step `s`: a drill's `file` must lie in the sandbox",
            ),
            (
                "action = \"traffic.switch\"\nfile = \"/etc/zone\"\ncontent = \"x\"\ndrill = { command = \"true\" }",
                "9:21 step `s`: the drill substitution gives `command`, but the step acts through `file`",
            ),
            (
                "action = \"traffic.switch\"\ncommand = \"dns-set\"\ndrill = { args = [\"x\"] }",
                "8:9 step `s`: the drill substitution keeps production's `command`",
            ),
            (
                "action = \"traffic.switch\"\ncommand = \"dns-set\"\ndrill = { command = \"dns-set\" }",
                "8:21 step `s`: the drill substitution runs production's command unchanged",
            ),
            (
                "action = \"service.stop\"\ncommand = \"systemctl\"\ndrill = {}",
                "8:9 step `s`: the drill substitution keeps production's `command`",
            ),
            (
                "action = \"service.stop\"\ncommand = \"systemctl\"\ndrill = \"run\"",
                "8:9 step `s`: `service.stop` with `command` acts on production",
            ),
            (
                "action = \"replication.stop\"\ndrill = {}",
                "7:9 step `s`: `replication.stop` drives production replication",
            ),
            (
                "action = \"replication.final_sync\"\ndrill = { agent = \"sandbox\" }",
                "7:9 step `s`: `replication.final_sync` drives production replication",
            ),
            (
                "action = \"replication.reverse\"\ndrill = \"run\"",
                "7:9 step `s`: `replication.reverse` drives production replication",
            ),
        ] {
            let got = errors(bad);
            assert!(
                got.iter().any(|e| e.starts_with(want)),
                "{bad}\nwant {want}\ngot {got:?}"
            );
        }
    }
}
