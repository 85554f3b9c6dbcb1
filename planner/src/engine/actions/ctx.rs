//! What every action reads: the run's context (plan, configuration, shared
//! state) and its helpers (agents, TLS, the repository, the sandbox's reach),
//! and the typed readers of a step's resolved parameters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeline_service::{ControlAnswer, ControlCall, TlsDir, call_agent};

use crate::config::Config;
use crate::engine::Shared;
use crate::plan::{AgentRef, Plan};
pub(crate) use crate::run_record::{Outcome, to_millis};
use crate::runbook::Value;
use crate::runbook::actions::{Action, Mode};

pub(crate) struct Ctx {
    pub plan: Arc<Plan>,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
}

pub(crate) type R<T> = Result<T, String>;

pub(crate) fn s<'a>(p: &'a BTreeMap<String, Value>, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

pub(crate) fn list(p: &BTreeMap<String, Value>, k: &str) -> Vec<String> {
    match p.get(k) {
        Some(Value::List(l)) => l.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn flag(p: &BTreeMap<String, Value>, k: &str) -> Option<bool> {
    match p.get(k) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

pub(crate) fn table(p: &BTreeMap<String, Value>, k: &str) -> Vec<(String, String)> {
    match p.get(k) {
        Some(Value::Table(t)) => t
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

/// Milliseconds since `t0`, as outcomes keep them.
pub(crate) fn millis(t0: std::time::Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("task failed: {e}"))?
}

impl Ctx {
    /// `command args` as run in the sandbox's network namespace, if any. Only
    /// the network namespace is entered (`nsenter --net`), not a fresh mount
    /// namespace as `ip netns exec` would make: every step of the run sees the
    /// mounts earlier steps made.
    pub(crate) fn in_netns(&self, command: &str, args: &[String]) -> (String, Vec<String>) {
        match &self.plan.netns {
            Some(ns) => {
                let mut a = vec![format!("--net=/run/netns/{ns}"), "--".to_string(), command.to_string()];
                a.extend(args.iter().cloned());
                ("nsenter".into(), a)
            }
            None => (command.to_string(), args.to_vec()),
        }
    }

    /// One probe inside the namespace: `lifeline probe KIND TARGET ...`.
    pub(crate) async fn probe(&self, extra: &[String]) -> bool {
        let (cmd, args) = self.in_netns(&crate::plan::this_binary(), extra);
        tokio::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// The path to write `file` at. In a drill, a file a step writes must lie
    /// in the sandbox once resolved (its directory's symlinks followed; the
    /// file itself is replaced by a rename, never written through), else the
    /// write is refused; the resolved path is what gets written, so a symlink
    /// made later by another step is not followed.
    pub(crate) fn drill_writes_in_sandbox(&self, file: &Path) -> R<PathBuf> {
        if self.plan.mode != Mode::Drill {
            return Ok(file.to_path_buf());
        }
        let refused = |why: String| {
            Err(format!(
                "a drill writes only in its sandbox {}: {} {why}; refused (production is untouched)",
                self.plan.run_dir.display(),
                file.display()
            ))
        };
        let root = match self.plan.run_dir.canonicalize() {
            Ok(r) => r,
            Err(e) => return refused(format!("cannot be checked ({e})")),
        };
        let Some(name) = file.file_name() else {
            return refused("names no file".into());
        };
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match parent.canonicalize() {
            Ok(dir) if dir.starts_with(&root) => Ok(dir.join(name)),
            Ok(dir) => refused(format!("resolves to {}, outside it", dir.join(name).display())),
            Err(e) => refused(format!("cannot be resolved ({e})")),
        }
    }

    pub(crate) fn cwd(&self, p: &BTreeMap<String, Value>) -> PathBuf {
        s(p, "cwd")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.plan.run_dir.clone())
    }

    pub(crate) fn agent(&self, p: &BTreeMap<String, Value>, which: Option<&AgentRef>, what: &str) -> R<AgentRef> {
        let control = s(p, "control")
            .map(String::from)
            .or(which.map(|w| w.control.clone()))
            .ok_or_else(|| {
                format!(
                    "no control address for {what} of group `{}`: set `control` on the step, or {} in lifeline.toml",
                    self.plan.direction.group,
                    if what.contains("reverse") || self.plan.mode == Mode::Failback {
                        "reverse_control / control"
                    } else {
                        "control"
                    }
                )
            })?;
        let name = s(p, "agent")
            .map(String::from)
            .or(which.map(|w| w.name.clone()))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("no agent identity for {what}: set `agent` on the step or in the group"))?;
        Ok(AgentRef { name, control })
    }

    pub(crate) fn tls(&self) -> R<(TlsDir, Option<String>, Option<String>)> {
        let t = self
            .config
            .tls
            .as_ref()
            .ok_or("lifeline.toml has no [tls] section: the planner needs dir, identity and admin to reach agents and receivers")?;
        Ok((TlsDir::new(&t.dir), t.identity.clone(), t.admin.clone()))
    }

    pub(crate) async fn control(&self, agent: AgentRef, call: ControlCall) -> R<ControlAnswer> {
        let (tls, _, admin) = self.tls()?;
        let admin = admin.ok_or("[tls] admin is not set: the planner drives agents with an admin identity")?;
        blocking(move || {
            call_agent(&agent.control, &agent.name, &tls, &admin, call)
                .map_err(|e| format!("agent `{}` at {}: {e}", agent.name, agent.control))
        })
        .await
    }

    /// The tenant's key and how to reach a receiver ([tls] dir and identity):
    /// what opening the recovery site's repository takes.
    pub(crate) fn repo_access(&self) -> R<(lifeline_replicator::KeyFile, crate::repo_target::RemoteArgs)> {
        let remote = crate::repo_target::RemoteArgs {
            tls_dir: self.config.tls.as_ref().map(|t| t.dir.clone()),
            identity: self.config.tls.as_ref().and_then(|t| t.identity.clone()),
        };
        Ok((key_file(&self.config)?, remote))
    }

    /// The TLS directory and admin identity leases go through on a receiver.
    pub(crate) fn lease_admin(&self) -> Option<(PathBuf, String)> {
        let tls = self.config.tls.as_ref()?;
        Some((tls.dir.clone(), tls.admin.clone()?))
    }

    /// The outcome of this run's first step of `action` that has one.
    pub(crate) fn outcome_of_action(&self, action: Action) -> Option<Outcome> {
        let rec = self.shared.record.lock().expect("record");
        self.plan
            .steps
            .iter()
            .filter(|s| s.kind == action)
            .filter_map(|s| rec.steps.get(&s.id))
            .find_map(|r| r.outcome.clone())
    }
}

pub(crate) fn key_file(config: &Config) -> R<lifeline_replicator::KeyFile> {
    let path = config
        .key_file
        .as_ref()
        .ok_or("lifeline.toml sets no key_file: promoting and seeding need the tenant's key")?;
    crate::repo_target::load_key(path).map_err(|e| format!("{e:#}"))
}
