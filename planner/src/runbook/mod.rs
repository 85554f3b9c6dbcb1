//! Runbooks: the declarative TOML file of steps that recovers one protection
//! group. This module reads a runbook into [`Runbook`] keeping the line and column
//! of every value, and checks everything that can be checked without the
//! deployment (actions, parameters, durations, dependencies, cycles,
//! interpolations), reporting every error at once. The format is documented in
//! `runbooks/README.md`; the actions in [`actions`].

pub mod actions;
pub mod template;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::de::{DeTable, DeValue};

pub use validate::{DrillProblem, check_against, drill_problems};

/// A line and column (1-based) in a runbook file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Sp<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Sp { value, pos }
    }
}

/// A parameter value as written in a runbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
    Table(BTreeMap<String, Value>),
}

impl Value {
    /// The TOML-ish name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::List(_) => "a list",
            Value::Table(_) => "a table",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Every string inside the value (for interpolation).
    pub fn strings(&self) -> Vec<&str> {
        match self {
            Value::Str(s) => vec![s.as_str()],
            Value::List(l) => l.iter().flat_map(Value::strings).collect(),
            Value::Table(t) => t.values().flat_map(Value::strings).collect(),
            _ => vec![],
        }
    }

    /// Applies `f` to every string inside the value.
    pub fn map_strings<E>(&self, f: &mut impl FnMut(&str) -> Result<String, E>) -> Result<Value, E> {
        Ok(match self {
            Value::Str(s) => Value::Str(f(s)?),
            Value::List(l) => Value::List(l.iter().map(|v| v.map_strings(f)).collect::<Result<_, _>>()?),
            Value::Table(t) => Value::Table(
                t.iter()
                    .map(|(k, v)| Ok((k.clone(), v.map_strings(f)?)))
                    .collect::<Result<_, E>>()?,
            ),
            other => other.clone(),
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(l) => {
                write!(f, "[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Value::Table(t) => {
                write!(f, "{{")?;
                for (i, (k, v)) in t.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, " {k} = {v}")?;
                }
                write!(f, " }}")
            }
        }
    }
}

/// Parameters of a step (or of its undo, or its drill substitution).
pub type Params = BTreeMap<String, Sp<Value>>;

/// What a step does when it fails for good (after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop the run; completed steps stay as they are (the default).
    #[default]
    Abort,
    /// Record the failure and go on with the steps that do not depend on it.
    Continue,
    /// Stop the run and undo the completed steps in reverse order.
    Rollback,
}

/// Retries of a failing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// Wait before the 2nd attempt; doubles for each further one.
    #[serde(with = "duration_ms")]
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What a step does in a drill.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DrillBehaviour {
    /// What its action does by default in a drill (see [`actions`]).
    #[default]
    Default,
    Run,
    Skip,
    /// Run with these parameters replaced.
    Substitute(Params),
}

/// An action and its parameters (a step's undo).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionCall {
    pub action: Sp<String>,
    pub params: Params,
}

/// One `[[step]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: Sp<String>,
    pub action: Sp<String>,
    pub params: Params,
    pub after: Vec<Sp<String>>,
    pub timeout: Option<Sp<Duration>>,
    pub retry: Retry,
    pub on_failure: OnFailure,
    pub undo: Option<ActionCall>,
    pub drill: DrillBehaviour,
    /// Where `drill = ...` is written (the step's start when it is not).
    pub drill_pos: Pos,
    /// Where the step's table starts.
    pub pos: Pos,
}

/// A runbook: one group's recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub group: Sp<String>,
    /// `[runbook.variables]`: values for `${vars.NAME}`.
    pub variables: BTreeMap<String, Sp<Value>>,
    /// `[runbook.ports]`: ports for `${ports.NAME}`; a drill binds each to a free port.
    pub ports: BTreeMap<String, Sp<u16>>,
    pub steps: Vec<Step>,
    /// BLAKE3 of the file's bytes, hex: names exactly what ran.
    pub digest: String,
}

/// One problem in a runbook, at a place, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)?;
        if let Some(h) = &self.help {
            write!(f, "\n    help: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in a runbook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RunbookErrors(pub Vec<Diagnostic>);

impl fmt::Display for RunbookErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} error{} in the runbook:", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
pub(crate) struct Sink<'a> {
    file: &'a str,
    pub(crate) out: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Sink { file, out: Vec::new() }
    }
    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>, help: Option<String>) {
        self.out.push(Diagnostic {
            file: self.file.into(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            help,
        });
    }
}

/// Byte offset → line and column.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }
    fn pos(&self, text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        let line = self.0.partition_point(|&s| s <= offset);
        let start = self.0[line - 1];
        Pos {
            line,
            col: text[start..offset].chars().count() + 1,
        }
    }
}

impl Runbook {
    /// Reads and checks a runbook file (without the deployment: see [`check_against`]).
    pub fn load(path: &Path) -> Result<Result<Runbook, RunbookErrors>, RunbookError> {
        Ok(Self::parse(&Self::read(path)?, path))
    }

    /// Reads a runbook file's text.
    pub fn read(path: &Path) -> Result<String, RunbookError> {
        std::fs::read_to_string(path).map_err(|source| RunbookError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses and checks runbook `text` read from `path`: every error at once.
    pub fn parse(text: &str, path: &Path) -> Result<Runbook, RunbookErrors> {
        match Self::parse_partial(text, path) {
            (Some(rb), errors) if errors.is_empty() => Ok(rb),
            (_, errors) => Err(RunbookErrors(errors)),
        }
    }

    /// Like [`parse`](Self::parse), but also returns what could be read of a
    /// runbook with errors (none when it is not TOML), so the checks against
    /// the deployment can report their errors alongside.
    pub fn parse_partial(text: &str, path: &Path) -> (Option<Runbook>, Vec<Diagnostic>) {
        let file = path.display().to_string();
        let lines = Lines::new(text);
        let mut sink = Sink::new(&file);
        let doc = match DeTable::parse(text) {
            Ok(d) => d,
            Err(e) => {
                let pos = e.span().map(|s| lines.pos(text, s.start)).unwrap_or_default();
                sink.error(pos, format!("not valid TOML: {}", e.message().trim()), None);
                return (None, sink.out);
            }
        };
        let conv = Converter { text, lines: &lines };
        let mut rb = Runbook {
            file: path.to_path_buf(),
            name: String::new(),
            description: None,
            group: Sp::new(String::new(), Pos { line: 1, col: 1 }),
            variables: BTreeMap::new(),
            ports: BTreeMap::new(),
            steps: Vec::new(),
            digest: blake3::hash(text.as_bytes()).to_hex().to_string(),
        };
        let mut saw_runbook = false;
        for (k, v) in doc.get_ref().iter() {
            let pos = conv.pos(k.span());
            match k.get_ref().as_ref() {
                "runbook" => {
                    saw_runbook = true;
                    conv.runbook_table(v, &mut rb, &mut sink);
                }
                "step" => match v.get_ref() {
                    DeValue::Array(items) => {
                        for item in items.iter() {
                            if let Some(s) = conv.step(item, &mut sink) {
                                rb.steps.push(s);
                            }
                        }
                    }
                    _ => sink.error(
                        pos,
                        "`step` must be an array of tables",
                        Some("write each step as [[step]]".into()),
                    ),
                },
                other => sink.error(
                    pos,
                    format!("unknown top-level key `{other}`"),
                    Some("a runbook has one [runbook] table and [[step]] tables".into()),
                ),
            }
        }
        if !saw_runbook {
            sink.error(
                Pos { line: 1, col: 1 },
                "missing [runbook] table",
                Some("start the file with [runbook] and name = \"...\", group = \"...\"".into()),
            );
        }
        if saw_runbook && rb.steps.is_empty() && sink.out.is_empty() {
            sink.error(
                Pos { line: 1, col: 1 },
                "the runbook has no steps",
                Some("add [[step]] tables".into()),
            );
        }
        validate::check_steps(&rb, &mut sink);
        sink.out.sort_by_key(|d| (d.line, d.col));
        (Some(rb), sink.out)
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }
}

struct Converter<'a> {
    text: &'a str,
    lines: &'a Lines,
}

type DeSp<'i> = toml::Spanned<DeValue<'i>>;

impl Converter<'_> {
    fn pos(&self, span: std::ops::Range<usize>) -> Pos {
        self.lines.pos(self.text, span.start)
    }

    fn value(&self, v: &DeSp<'_>, sink: &mut Sink) -> Option<Value> {
        Some(match v.get_ref() {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(
                    digits
                        .trim_start_matches("0x")
                        .trim_start_matches("0o")
                        .trim_start_matches("0b"),
                    i.radix(),
                ) {
                    Ok(n) => Value::Int(n),
                    Err(_) => {
                        sink.error(
                            self.pos(v.span()),
                            format!("integer `{}` is out of range", i.as_str()),
                            None,
                        );
                        return None;
                    }
                }
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Float(_) | DeValue::Datetime(_) => {
                sink.error(
                    self.pos(v.span()),
                    "floats and dates are not parameter values",
                    Some("write a string (durations: \"5s\") or an integer".into()),
                );
                return None;
            }
            DeValue::Array(a) => Value::List(a.iter().filter_map(|x| self.value(x, sink)).collect()),
            DeValue::Table(t) => Value::Table(
                t.iter()
                    .filter_map(|(k, x)| Some((k.get_ref().to_string(), self.value(x, sink)?)))
                    .collect(),
            ),
        })
    }

    fn sp_value(&self, v: &DeSp<'_>, sink: &mut Sink) -> Option<Sp<Value>> {
        Some(Sp::new(self.value(v, sink)?, self.pos(v.span())))
    }

    fn string(&self, v: &DeSp<'_>, what: &str, sink: &mut Sink) -> Option<Sp<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(s.to_string(), self.pos(v.span()))),
            _ => {
                sink.error(
                    self.pos(v.span()),
                    format!("`{what}` must be a string"),
                    Some(format!("{what} = \"...\"")),
                );
                None
            }
        }
    }

    fn duration(&self, v: &DeSp<'_>, what: &str, sink: &mut Sink) -> Option<Sp<Duration>> {
        let s = self.string(v, what, sink)?;
        match parse_duration(&s.value) {
            Ok(d) => Some(Sp::new(d, s.pos)),
            Err(e) => {
                sink.error(
                    s.pos,
                    format!("`{what}`: {e}"),
                    Some(format!("{what} = \"30s\" (units: ms, s, m, h, d)")),
                );
                None
            }
        }
    }

    fn table<'b, 'i>(&self, v: &'b DeSp<'i>, what: &str, sink: &mut Sink) -> Option<&'b DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                sink.error(self.pos(v.span()), format!("`{what}` must be a table"), None);
                None
            }
        }
    }

    fn runbook_table(&self, v: &DeSp<'_>, rb: &mut Runbook, sink: &mut Sink) {
        let Some(t) = self.table(v, "runbook", sink) else {
            return;
        };
        let mut group = None;
        let mut name = None;
        for (k, v) in t.iter() {
            let kpos = self.pos(k.span());
            match k.get_ref().as_ref() {
                "name" => name = self.string(v, "name", sink),
                "group" => group = self.string(v, "group", sink),
                "description" => rb.description = self.string(v, "description", sink).map(|s| s.value),
                "variables" => {
                    if let Some(vars) = self.table(v, "variables", sink) {
                        for (k, v) in vars.iter() {
                            if let Some(val) = self.sp_value(v, sink) {
                                rb.variables.insert(k.get_ref().to_string(), val);
                            }
                        }
                    }
                }
                "ports" => {
                    if let Some(ports) = self.table(v, "ports", sink) {
                        for (k, v) in ports.iter() {
                            match self.value(v, sink) {
                                Some(Value::Int(p)) if (0..=65535).contains(&p) => {
                                    rb.ports
                                        .insert(k.get_ref().to_string(), Sp::new(p as u16, self.pos(v.span())));
                                }
                                Some(_) => sink.error(
                                    self.pos(v.span()),
                                    format!("port `{}` must be an integer from 0 to 65535", k.get_ref()),
                                    Some(format!("{} = 8080", k.get_ref())),
                                ),
                                None => {}
                            }
                        }
                    }
                }
                other => sink.error(
                    kpos,
                    format!("unknown key `{other}` in [runbook]"),
                    Some("[runbook] takes name, group, description, variables and ports".into()),
                ),
            }
        }
        match name {
            Some(n) => rb.name = n.value,
            None => sink.error(
                self.pos(v.span()),
                "[runbook] needs a name",
                Some("name = \"shop-recovery\"".into()),
            ),
        }
        match group {
            Some(g) => rb.group = g,
            None => sink.error(
                self.pos(v.span()),
                "[runbook] needs the protection group it recovers",
                Some("group = \"shop\" (a [groups.shop] section of lifeline.toml)".into()),
            ),
        }
    }

    fn step(&self, v: &DeSp<'_>, sink: &mut Sink) -> Option<Step> {
        let t = self.table(v, "step", sink)?;
        let pos = self.pos(v.span());
        let before = sink.out.len();
        let mut id = None;
        let mut action = None;
        let mut step = Step {
            id: Sp::new(String::new(), pos),
            action: Sp::new(String::new(), pos),
            params: BTreeMap::new(),
            after: Vec::new(),
            timeout: None,
            retry: Retry::default(),
            on_failure: OnFailure::default(),
            undo: None,
            drill: DrillBehaviour::Default,
            drill_pos: pos,
            pos,
        };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "id" => id = self.string(v, "id", sink),
                "action" => action = self.string(v, "action", sink),
                "after" => match v.get_ref() {
                    DeValue::Array(a) => {
                        step.after = a.iter().filter_map(|x| self.string(x, "after", sink)).collect();
                    }
                    _ => sink.error(
                        self.pos(v.span()),
                        "`after` must be a list of step ids",
                        Some("after = [\"promote\"]".into()),
                    ),
                },
                "timeout" => step.timeout = self.duration(v, "timeout", sink),
                "retry" => {
                    if let Some(r) = self.table(v, "retry", sink) {
                        for (rk, rv) in r.iter() {
                            match (rk.get_ref().as_ref(), self.value(rv, sink)) {
                                ("attempts", Some(Value::Int(n))) if (1..=100).contains(&n) => {
                                    step.retry.attempts = n as u32
                                }
                                ("attempts", _) => sink.error(
                                    self.pos(rv.span()),
                                    "`retry.attempts` must be an integer from 1 to 100",
                                    Some("retry = { attempts = 3, backoff = \"2s\" }".into()),
                                ),
                                ("backoff", _) => {
                                    if let Some(d) = self.duration(rv, "retry.backoff", sink) {
                                        step.retry.backoff = d.value;
                                    }
                                }
                                (other, _) => sink.error(
                                    self.pos(rk.span()),
                                    format!("unknown key `{other}` in retry"),
                                    Some("retry = { attempts = 3, backoff = \"2s\" }".into()),
                                ),
                            }
                        }
                    }
                }
                "on_failure" => {
                    if let Some(s) = self.string(v, "on_failure", sink) {
                        step.on_failure = match s.value.as_str() {
                            "abort" => OnFailure::Abort,
                            "continue" => OnFailure::Continue,
                            "rollback" => OnFailure::Rollback,
                            other => {
                                sink.error(
                                    s.pos,
                                    format!("unknown on_failure `{other}`"),
                                    Some("on_failure = \"abort\" | \"continue\" | \"rollback\"".into()),
                                );
                                OnFailure::Abort
                            }
                        }
                    }
                }
                "undo" => {
                    if let Some(u) = self.table(v, "undo", sink) {
                        let mut params = BTreeMap::new();
                        let mut act = None;
                        for (uk, uv) in u.iter() {
                            if uk.get_ref().as_ref() == "action" {
                                act = self.string(uv, "undo.action", sink);
                            } else if let Some(val) = self.sp_value(uv, sink) {
                                params.insert(uk.get_ref().to_string(), val);
                            }
                        }
                        match act {
                            Some(a) => step.undo = Some(ActionCall { action: a, params }),
                            None => sink.error(
                                self.pos(v.span()),
                                "`undo` needs an action",
                                Some("undo = { action = \"check.command\", command = \"...\" }".into()),
                            ),
                        }
                    }
                }
                "drill" => {
                    step.drill_pos = self.pos(v.span());
                    match v.get_ref() {
                        DeValue::String(s) if s.as_ref() == "run" => step.drill = DrillBehaviour::Run,
                        DeValue::String(s) if s.as_ref() == "skip" => step.drill = DrillBehaviour::Skip,
                        DeValue::Table(t) => {
                            let mut params = BTreeMap::new();
                            for (dk, dv) in t.iter() {
                                if let Some(val) = self.sp_value(dv, sink) {
                                    params.insert(dk.get_ref().to_string(), val);
                                }
                            }
                            step.drill = DrillBehaviour::Substitute(params);
                        }
                        _ => sink.error(
                            self.pos(v.span()),
                            "`drill` must be \"run\", \"skip\" or a table of substituted parameters",
                            Some("drill = \"skip\", or drill = { url = \"http://127.0.0.1:${ports.app}/\" }".into()),
                        ),
                    }
                }
                name => {
                    if let Some(val) = self.sp_value(v, sink) {
                        step.params.insert(name.to_string(), val);
                    }
                }
            }
        }
        match id {
            Some(i) => step.id = i,
            None => sink.error(pos, "a step needs an id", Some("id = \"promote\"".into())),
        }
        match action {
            Some(a) => step.action = a,
            None => sink.error(
                pos,
                format!("step `{}` needs an action", step.id.value),
                Some(format!("action = \"...\", one of: {}", actions::names().join(", "))),
            ),
        }
        (sink.out.len() == before || !step.id.value.is_empty()).then_some(step)
    }
}

/// Parses `5s`, `250ms`, `2m`, `1h30m`, `1d`, `30` (seconds): the one
/// dialect ([`lifeline_replicator::units`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    lifeline_replicator::units::parse_duration(s)
}

/// Formats a duration the way runbooks write them.
pub fn format_duration(d: Duration) -> String {
    lifeline_replicator::units::format_duration(d)
}

pub(crate) mod duration_ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

/// A runbook failed validation: the diagnostics are the message; exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRunbook(pub RunbookErrors);

/// Why a runbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("read runbook {path}: {source} (check the path)")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Read, but not valid (here or against the deployment).
    #[error("{0}")]
    Invalid(#[from] InvalidRunbook),
}

/// Reads, checks and returns a runbook, with every error at once.
pub fn load_checked(path: &Path, text: Option<&str>, config: &crate::config::Config) -> Result<Runbook, RunbookError> {
    let text = match text {
        Some(t) => t.to_string(),
        None => Runbook::read(path)?,
    };
    // The deployment's errors (an unknown group or volume) come with the file's.
    let (rb, mut errors) = Runbook::parse_partial(&text, path);
    let Some(rb) = rb else {
        return Err(InvalidRunbook(RunbookErrors(errors)).into());
    };
    errors.extend(check_against(&rb, config));
    if !errors.is_empty() {
        errors.sort_by_key(|d| (d.line, d.col));
        errors.dedup();
        return Err(InvalidRunbook(RunbookErrors(errors)).into());
    }
    Ok(rb)
}
