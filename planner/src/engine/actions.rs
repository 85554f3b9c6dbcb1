//! What each action does when it runs. Parameters arrive resolved; every error is
//! a sentence that names the step's object and what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_replicator::{BackupOptions, PointSelector, Repository, RestoreOptions};
use lifeline_service::{ControlAnswer, ControlCall, TlsDir, call_agent};

use super::{Shared, TrackedProcess, http, process};
use crate::config::Config;
use crate::plan::{AgentRef, Plan, PlannedStep};
use crate::runbook::Value;
use crate::runbook::actions::{Mode, Reach};

/// How often a check that has not passed yet tries again (every `check.*`).
const CHECK_POLL: Duration = Duration::from_millis(100);

pub(super) struct Ctx {
    pub plan: Arc<Plan>,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
}

type Outputs = BTreeMap<String, String>;
type R<T> = Result<T, String>;

fn s<'a>(p: &'a BTreeMap<String, Value>, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

fn list(p: &BTreeMap<String, Value>, k: &str) -> Vec<String> {
    match p.get(k) {
        Some(Value::List(l)) => l.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

fn flag(p: &BTreeMap<String, Value>, k: &str) -> Option<bool> {
    match p.get(k) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn table(p: &BTreeMap<String, Value>, k: &str) -> Vec<(String, String)> {
    match p.get(k) {
        Some(Value::Table(t)) => t
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

fn out(pairs: &[(&str, String)]) -> Outputs {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("task failed: {e}"))?
}

impl Ctx {
    /// `command args` as run in the sandbox's network namespace, if any. Only
    /// the network namespace is entered (`nsenter --net`), not a fresh mount
    /// namespace as `ip netns exec` would make: every step of the run sees the
    /// mounts earlier steps made.
    fn in_netns(&self, command: &str, args: &[String]) -> (String, Vec<String>) {
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
    async fn probe(&self, extra: &[String]) -> bool {
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
    fn drill_writes_in_sandbox(&self, file: &Path) -> R<PathBuf> {
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

    fn cwd(&self, p: &BTreeMap<String, Value>) -> PathBuf {
        s(p, "cwd")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.plan.run_dir.clone())
    }

    fn agent(&self, p: &BTreeMap<String, Value>, which: Option<&AgentRef>, what: &str) -> R<AgentRef> {
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

    fn tls(&self) -> R<(TlsDir, Option<String>, Option<String>)> {
        let t = self
            .config
            .tls
            .as_ref()
            .ok_or("lifeline.toml has no [tls] section: the planner needs dir, identity and admin to reach agents and receivers")?;
        Ok((TlsDir::new(&t.dir), t.identity.clone(), t.admin.clone()))
    }

    async fn control(&self, agent: AgentRef, call: ControlCall) -> R<ControlAnswer> {
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
    fn repo_access(&self) -> R<(lifeline_replicator::KeyFile, crate::repo_target::RemoteArgs)> {
        let remote = crate::repo_target::RemoteArgs {
            tls_dir: self.config.tls.as_ref().map(|t| t.dir.clone()),
            identity: self.config.tls.as_ref().and_then(|t| t.identity.clone()),
        };
        Ok((key_file(&self.config)?, remote))
    }

    /// The TLS directory and admin identity leases go through on a receiver.
    fn lease_admin(&self) -> Option<(PathBuf, String)> {
        let tls = self.config.tls.as_ref()?;
        Some((tls.dir.clone(), tls.admin.clone()?))
    }

    fn outputs_of_action(&self, action: &str) -> Option<Outputs> {
        let rec = self.shared.record.lock().expect("record");
        self.plan
            .steps
            .iter()
            .filter(|s| s.action == action)
            .filter_map(|s| rec.steps.get(&s.id))
            .find(|r| !r.outputs.is_empty())
            .map(|r| r.outputs.clone())
    }
}

pub(super) async fn execute(ctx: Arc<Ctx>, ps: PlannedStep, p: BTreeMap<String, Value>) -> R<Outputs> {
    let d = ctx.plan.direction.clone();
    // Validation and planning keep production out of a drill; this is the last
    // line, for what they could not see.
    if ctx.plan.mode == Mode::Drill
        && crate::runbook::actions::action(&ps.action).is_some_and(|a| a.reach == Reach::Replication)
    {
        return Err(format!(
            "`{}` refused: a drill never drives production replication (production is untouched)",
            ps.action
        ));
    }
    match ps.action.as_str() {
        "replication.stop" => {
            let a = ctx.agent(&p, d.source_agent.as_ref(), "the source agent")?;
            ctx.control(a, ControlCall::Pause).await?;
            Ok(out(&[("reachable", "true".into())]))
        }
        "replication.reverse" => {
            let a = ctx.agent(&p, d.reverse_agent.as_ref(), "the reverse agent")?;
            ctx.control(a, ControlCall::Resume).await.map_err(|e| {
                if ctx.plan.mode == Mode::Failback && e.contains("cannot reach agent control") {
                    format!("{FORWARD_AGENT_UNREACHABLE}{e}")
                } else {
                    e
                }
            })?;
            Ok(out(&[("reachable", "true".into())]))
        }
        "replication.final_sync" => {
            let a = ctx.agent(&p, d.source_agent.as_ref(), "the source agent")?;
            // A paused agent would never sync: resume it first (a no-op when running).
            ctx.control(a.clone(), ControlCall::Resume).await?;
            match ctx.control(a, ControlCall::SyncNow).await? {
                ControlAnswer::Synced { seq, taken_at } => Ok(out(&[
                    ("seq", seq.to_string()),
                    (
                        "taken_at",
                        taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ),
                ])),
                other => Err(format!("unexpected answer to sync-now: {other:?}")),
            }
        }
        "replication.seed" => seed(&ctx, &p).await,
        "volume.promote" => promote(&ctx, &ps, &p).await,
        "service.start" => start_service(&ctx, &ps, &p).await,
        "service.stop" => match s(&p, "step") {
            Some(step) => {
                let grace = s(&p, "grace")
                    .map(crate::runbook::parse_duration)
                    .transpose()?
                    .unwrap_or(Duration::from_secs(10));
                if feeds_a_promote(&ctx.plan, step) {
                    super::release_pins(&ctx).await.map_err(|e| format!("{e:#}"))?;
                }
                stop_step_processes(&ctx, step, grace).await?;
                Ok(Outputs::new())
            }
            None => run_command(&ctx, &p).await.map(|_| Outputs::new()),
        },
        "check.tcp" => {
            let addr = s(&p, "address").unwrap_or_default().to_string();
            let t0 = Instant::now();
            if ctx.plan.netns.is_some() {
                let args = vec!["probe".to_string(), "tcp".into(), addr.clone()];
                while !ctx.probe(&args).await {
                    tokio::time::sleep(CHECK_POLL).await;
                }
                return Ok(out(&[("elapsed_ms", t0.elapsed().as_millis().to_string())]));
            }
            loop {
                let last =
                    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr)).await {
                        Ok(Ok(_)) => return Ok(out(&[("elapsed_ms", t0.elapsed().as_millis().to_string())])),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "connect timed out".into(),
                    };
                tracing::debug!(%addr, %last, "check.tcp not yet");
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        "check.http" => {
            let url = s(&p, "url").unwrap_or_default().to_string();
            let want = match p.get("status") {
                Some(Value::Int(i)) => *i as u16,
                _ => 200,
            };
            let body = s(&p, "body_contains").map(String::from);
            let ca = s(&p, "ca_file").map(PathBuf::from);
            let t0 = Instant::now();
            if ctx.plan.netns.is_some() {
                let mut args = vec![
                    "probe".to_string(),
                    "http".into(),
                    url.clone(),
                    "--status".into(),
                    want.to_string(),
                ];
                if let Some(b) = &body {
                    args.extend(["--body-contains".to_string(), b.clone()]);
                }
                if let Some(c) = &ca {
                    args.extend(["--ca-file".to_string(), c.display().to_string()]);
                }
                while !ctx.probe(&args).await {
                    tokio::time::sleep(CHECK_POLL).await;
                }
                return Ok(out(&[
                    ("status", want.to_string()),
                    ("elapsed_ms", t0.elapsed().as_millis().to_string()),
                ]));
            }
            loop {
                match http::request_with("GET", &url, None, ca.as_deref()).await {
                    Ok(a) if a.status == want && body.as_ref().is_none_or(|b| a.body.contains(b.as_str())) => {
                        return Ok(out(&[
                            ("status", a.status.to_string()),
                            ("elapsed_ms", t0.elapsed().as_millis().to_string()),
                        ]));
                    }
                    Ok(a) => tracing::debug!(%url, status = a.status, "check.http not yet"),
                    Err(e) if e.to_string().contains("not an http") || e.to_string().contains("CA file") => {
                        return Err(format!("{e:#}"));
                    }
                    Err(e) => tracing::debug!(%url, error = %e, "check.http not yet"),
                }
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        "check.command" => {
            // Polls like the other checks: runs the command again every
            // CHECK_POLL until it exits 0 or the step's timeout passes (the
            // engine leaves that timeout to this loop, so the error can say what
            // the last attempt printed). No timeout: one attempt.
            let t0 = Instant::now();
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let attempt = run_command(&ctx, &p);
                let r = if ps.timeout.is_zero() {
                    attempt.await
                } else {
                    match tokio::time::timeout(ps.timeout.saturating_sub(t0.elapsed()), attempt).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("`{}` was still running", s(&p, "command").unwrap_or_default())),
                    }
                };
                let last = match r {
                    Ok((code, stdout)) => {
                        return Ok(out(&[
                            ("exit", code.to_string()),
                            ("stdout", stdout),
                            ("attempts", attempts.to_string()),
                            ("elapsed_ms", t0.elapsed().as_millis().to_string()),
                        ]));
                    }
                    Err(e) => e,
                };
                if ps.timeout.is_zero() {
                    return Err(last);
                }
                if t0.elapsed() + CHECK_POLL >= ps.timeout {
                    return Err(format!(
                        "timed out after {} ({attempts} attempt{}); last attempt: {last}",
                        crate::runbook::format_duration(ps.timeout),
                        if attempts == 1 { "" } else { "s" }
                    ));
                }
                tracing::debug!(step = %ps.id, %last, "check.command not yet");
                tokio::time::sleep(CHECK_POLL).await;
            }
        }
        "check.volume" => check_volume(&ctx, &p).await,
        "check.workload" => check_workload(&ctx, &p).await,
        "traffic.switch" => {
            if let Some(file) = s(&p, "file") {
                let file = ctx.drill_writes_in_sandbox(Path::new(file))?;
                let backup = ctx.plan.run_dir.join(format!("{}.orig", ps.id));
                let content = s(&p, "content").map(String::from);
                let replace = s(&p, "replace").map(String::from).zip(s(&p, "with").map(String::from));
                blocking(move || {
                    let old = std::fs::read(&file).or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound && content.is_some() {
                            Ok(Vec::new())
                        } else {
                            Err(format!("read {}: {e}", file.display()))
                        }
                    })?;
                    let new = match (content, replace) {
                        (Some(c), _) => c.into_bytes(),
                        (None, Some((from, to))) => {
                            let text = String::from_utf8_lossy(&old);
                            if !text.contains(&from) {
                                return Err(format!(
                                    "{} does not contain {from:?}: nothing to switch (already switched, or the runbook is out of date)",
                                    file.display()
                                ));
                            }
                            text.replacen(&from, &to, 1).into_bytes()
                        }
                        (None, None) => return Err("traffic.switch with `file` needs `content`, or `replace` and `with`".into()),
                    };
                    if !backup.exists() {
                        lifeline_replicator::write_atomic_mode(&backup, &old, 0o600).map_err(|e| format!("{e:#}"))?;
                    }
                    lifeline_replicator::write_atomic_mode(&file, &new, 0o644).map_err(|e| format!("{e:#}"))?;
                    Ok(Outputs::new())
                })
                .await
            } else {
                run_command(&ctx, &p).await.map(|_| Outputs::new())
            }
        }
        "approval" => loop {
            let notified = ctx.shared.approvals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(who) = ctx.shared.record.lock().expect("record").approvals.get(&ps.id).cloned() {
                return Ok(out(&[("approved_by", who)]));
            }
            notified.await;
        },
        "wait" => {
            let d = crate::runbook::parse_duration(s(&p, "duration").unwrap_or("0s"))?;
            tokio::time::sleep(d).await;
            Ok(Outputs::new())
        }
        "notify" => {
            let url = s(&p, "url").unwrap_or_default().to_string();
            let body = serde_json::json!({
                "run": ctx.plan.run_id,
                "mode": ctx.plan.mode,
                "group": ctx.plan.direction.group,
                "runbook": ctx.plan.runbook,
                "step": ps.id,
                "message": s(&p, "message"),
            })
            .to_string();
            let a = http::request("POST", &url, Some(&body))
                .await
                .map_err(|e| format!("{e:#}"))?;
            if !(200..300).contains(&a.status) {
                return Err(format!("{url} answered {}", a.status));
            }
            Ok(out(&[("status", a.status.to_string())]))
        }
        other => Err(format!("action `{other}` cannot run here")),
    }
}

/// Runs a command to completion; Ok only on exit 0.
async fn run_command(ctx: &Ctx, p: &BTreeMap<String, Value>) -> R<(i32, String)> {
    let command = s(p, "command").ok_or("no `command`")?.to_string();
    let args = list(p, "args");
    let cwd = ctx.cwd(p);
    let (program, argv) = ctx.in_netns(&command, &args);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv)
        .envs(table(p, "env"))
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let o = cmd.output().await.map_err(|e| {
        format!(
            "run `{command}`: {e} (is it installed and in PATH? cwd {})",
            cwd.display()
        )
    })?;
    let mut stdout = String::from_utf8_lossy(&o.stdout).to_string();
    stdout.truncate(4096);
    let code = o.status.code().unwrap_or(-1);
    if !o.status.success() {
        let mut stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
        stderr.truncate(1024);
        let mut printed = stdout.trim().to_string();
        printed.truncate(1024);
        return Err(format!(
            "`{command} {}` exited with {}{}{}",
            args.join(" "),
            o.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            },
            if printed.is_empty() {
                String::new()
            } else {
                format!(" (stdout: {printed})")
            }
        ));
    }
    Ok((code, stdout.trim_end().to_string()))
}

async fn start_service(ctx: &Arc<Ctx>, ps: &PlannedStep, p: &BTreeMap<String, Value>) -> R<Outputs> {
    // A resumed run may find the process its earlier attempt started: keep it.
    let existing = {
        let rec = ctx.shared.record.lock().expect("record");
        rec.processes.iter().find(|x| x.step == ps.id && !x.stopped).cloned()
    };
    if let Some(x) = existing
        && process::alive(&x)
    {
        return Ok(out(&[("pid", x.pid.to_string()), ("log", x.log.display().to_string())]));
    }
    let command = s(p, "command").unwrap_or_default().to_string();
    let args = list(p, "args");
    let env = table(p, "env");
    let cwd = ctx.cwd(p);
    let log = ctx.plan.run_dir.join(format!("{}.log", ps.id));
    let (program, argv) = ctx.in_netns(&command, &args);
    let (mut child, ticks) = process::spawn(&program, &argv, &env, &cwd, &log).map_err(|e| format!("{e:#}"))?;
    let pid = child.id() as i32;
    let tracked = TrackedProcess {
        step: ps.id.clone(),
        pid,
        start_ticks: ticks,
        log: log.clone(),
        stopped: false,
    };
    ctx.shared
        .transition(
            "process_started",
            Some(&ps.id),
            Some(format!("pid {pid}: {command} {}", args.join(" "))),
            None,
            |r| r.processes.push(tracked.clone()),
        )
        .map_err(|e| format!("{e:#}"))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Ok(Some(status)) = child.try_wait() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = tail
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(format!(
            "`{command}` exited at once with {status} (log {}: {tail})",
            log.display()
        ));
    }
    ctx.shared.children.lock().expect("children").insert(pid, child);
    Ok(out(&[("pid", pid.to_string()), ("log", log.display().to_string())]))
}

async fn stop_step_processes(ctx: &Arc<Ctx>, step: &str, grace: Duration) -> R<()> {
    let procs: Vec<TrackedProcess> = {
        let rec = ctx.shared.record.lock().expect("record");
        rec.processes
            .iter()
            .filter(|x| x.step == step && !x.stopped)
            .cloned()
            .collect()
    };
    if procs.is_empty() {
        return Ok(());
    }
    for x in procs {
        let shared = ctx.shared.clone();
        let x2 = x.clone();
        blocking(move || {
            let mut children = shared.children.lock().expect("children");
            process::stop(&x2, grace, children.get_mut(&x2.pid)).map_err(|e| format!("{e:#}"))
        })
        .await?;
        ctx.shared
            .transition(
                "process_stopped",
                Some(step),
                Some(format!("process {} stopped", x.pid)),
                None,
                |r| {
                    if let Some(p) = r.processes.iter_mut().find(|p| p.pid == x.pid) {
                        p.stopped = true;
                    }
                },
            )
            .map_err(|e| format!("{e:#}"))?;
    }
    Ok(())
}

/// The builtin undo of a step (see `plan::builtin_undo`).
pub(super) async fn builtin_undo(ctx: Arc<Ctx>, ps: PlannedStep) -> R<String> {
    match ps.action.as_str() {
        "service.start" => {
            stop_step_processes(&ctx, &ps.id, Duration::from_secs(10)).await?;
            Ok("stopped its process".into())
        }
        "traffic.switch" => {
            let file = ctx.drill_writes_in_sandbox(Path::new(s(&ps.params, "file").unwrap_or_default()))?;
            let backup = ctx.plan.run_dir.join(format!("{}.orig", ps.id));
            blocking(move || {
                let old = std::fs::read(&backup).map_err(|e| format!("read {}: {e}", backup.display()))?;
                lifeline_replicator::write_atomic_mode(&file, &old, 0o644).map_err(|e| format!("{e:#}"))?;
                Ok(format!("put {} back", file.display()))
            })
            .await
        }
        "replication.stop" => {
            let a = ctx.agent(&ps.params, ctx.plan.direction.source_agent.as_ref(), "the source agent")?;
            ctx.control(a.clone(), ControlCall::Resume).await?;
            Ok(format!("resumed agent `{}`", a.name))
        }
        _ => Ok("nothing to undo".into()),
    }
}

fn key_file(config: &Config) -> R<lifeline_replicator::KeyFile> {
    let path = config
        .key_file
        .as_ref()
        .ok_or("lifeline.toml sets no key_file: promoting and seeding need the tenant's key")?;
    crate::repo_target::load_key(path).map_err(|e| format!("{e:#}"))
}

async fn promote(ctx: &Arc<Ctx>, ps: &PlannedStep, p: &BTreeMap<String, Value>) -> R<Outputs> {
    let d = ctx.plan.direction.clone();
    let repo = s(p, "repo").map(String::from).or(d.to_repo.clone()).ok_or_else(|| {
        format!(
            "no repository to promote from on site `{}`: set [sites.{}] receiver or repo in lifeline.toml",
            d.to_site, d.to_site
        )
    })?;
    let selector = match s(p, "point").map(String::from).or(ctx.plan.point.clone()) {
        Some(sel) => sel,
        None => match ctx.plan.mode {
            Mode::Switchover | Mode::Failback => ctx
                .outputs_of_action("replication.final_sync")
                .and_then(|o| o.get("seq").cloned())
                .unwrap_or_else(|| "latest".into()),
            _ => "latest".into(),
        },
    };
    let selector: PointSelector = selector.parse().map_err(|e| format!("{e}"))?;
    let names: Vec<String> = match list(p, "volumes") {
        l if !l.is_empty() => l,
        _ => d.target_volumes.keys().cloned().collect(),
    };
    let mut targets = Vec::new();
    for n in &names {
        let t = d.target_volumes.get(n).cloned().ok_or_else(|| {
            format!(
                "group `{}` has no target path for volume `{n}` on site `{}` (targets in lifeline.toml)",
                d.group, d.to_site
            )
        })?;
        targets.push((n.clone(), t));
    }
    let drill = ctx.plan.mode == Mode::Drill;
    let instant = flag(p, "instant")
        .unwrap_or(false)
        .then(|| super::instant::InstantRequest {
            step: ps.id.clone(),
            group: d.group.clone(),
            seq: 0,
            volumes: Vec::new(),
            run_dir: ctx.plan.run_dir.clone(),
            // A recovery hydrates its targets; a drill only when asked (its
            // targets are sandbox paths, checked below).
            hydrate: flag(p, "hydrate").unwrap_or(!drill),
            hydrate_rate: 0,
            drill,
            serve_args: serve_args(ctx, &repo, &d.tenant),
        });
    let instant = match (instant, s(p, "hydrate_rate")) {
        (Some(mut req), Some(rate)) => {
            req.hydrate_rate =
                lifeline_replicator::units::parse_rate(rate).map_err(|e| format!("hydrate_rate: {e}"))?;
            Some(req)
        }
        (i, _) => i,
    };
    if let Some(req) = &instant
        && req.hydrate
        && drill
    {
        for (_, t) in &targets {
            if let Some(dir) = t.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            ctx.drill_writes_in_sandbox(t)?;
        }
    }
    let (key, remote) = ctx.repo_access()?;
    let tenant = d.tenant.clone();
    let group = d.group.clone();
    let holder = ctx.plan.run_id.clone();
    let admin = ctx.lease_admin();
    let (o, served) = blocking(move || {
        let (target, keys) = crate::repo_target::RepoTarget::open(Path::new(&repo), &remote, &key)
            .map_err(|e| format!("open {repo}: {e:#}"))?;
        let t = target.tenant_named(Some(&tenant)).map_err(|e| format!("{e:#}"))?;
        let point = lifeline_replicator::select_point(t.as_ref(), &group, selector).map_err(|e| format!("{e}"))?;
        let seq = point.header.seq;
        // A lease on the point while the run uses it: prune keeps it. A recovery
        // goes on without one (it expires by itself if the planner dies).
        let pinned = match lease(admin.as_ref(), &repo, t.as_ref(), &group, seq, &holder, Some(PIN_TTL)) {
            Ok(()) => "true".to_string(),
            Err(e) => {
                tracing::warn!(group = %group, seq, error = %e, "could not pin the promoted point");
                "false".to_string()
            }
        };
        let mut o = out(&[
            ("pinned", pinned),
            ("seq", seq.to_string()),
            (
                "taken_at",
                point
                    .header
                    .taken_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        ]);
        if let Some(mut req) = instant {
            // Served, not restored: the point's own volume hashes are what
            // `check.volume` compares the attached files with.
            let opened = point
                .open(&keys, &t.describe())
                .map_err(|e| format!("open point {seq}: {e}"))?;
            req.seq = seq;
            req.volumes = targets;
            let (mut ip, files) = super::instant::start(t.as_ref(), &keys, &req)?;
            drop(t);
            ip.keep_open(Box::new(target));
            o.insert("instant".into(), "true".into());
            o.insert("served".into(), ip.address());
            o.insert("overlay".into(), ip.overlay_dir().display().to_string());
            for (name, file) in files {
                let hash = opened
                    .body
                    .volumes
                    .iter()
                    .find(|v| v.name == name)
                    .map(|v| v.volume_hash.clone())
                    .unwrap_or_default();
                o.insert(format!("path.{name}"), file.display().to_string());
                o.insert(format!("hash.{name}"), hash);
            }
            if req.hydrate {
                for (name, target) in &req.volumes {
                    o.insert(format!("hydrate.{name}"), target.display().to_string());
                }
            }
            return Ok((o, Some(ip)));
        }
        for (name, path) in targets {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            let r = lifeline_replicator::restore(
                t.as_ref(),
                &keys,
                &RestoreOptions {
                    group: group.clone(),
                    point: PointSelector::Seq(seq),
                    volume: name.clone(),
                    target: path.clone(),
                    progress: None,
                },
            )
            .map_err(|e| format!("restore volume `{name}` of point {seq} onto {}: {e}", path.display()))?;
            o.insert(format!("path.{name}"), path.display().to_string());
            o.insert(format!("hash.{name}"), r.volume_hash);
        }
        Ok((o, None))
    })
    .await?;
    if let Some(mut ip) = served {
        ip.start_hydrations(&ctx.shared);
        ctx.shared.instant.lock().expect("instant").push(ip);
    }
    Ok(o)
}

/// The `lifeline serve` arguments that open `repo` as this run does (the
/// command an instant promote's kept overlay is resumed with).
fn serve_args(ctx: &Ctx, repo: &str, tenant: &str) -> Vec<String> {
    let mut a = vec!["--repo".to_string(), repo.to_string()];
    if let Some(k) = &ctx.config.key_file {
        a.extend(["--key-file".to_string(), k.display().to_string()]);
    }
    if repo.starts_with("https://") || repo.starts_with("http://") {
        if let Some(t) = &ctx.config.tls {
            a.extend(["--tls-dir".to_string(), t.dir.display().to_string()]);
            if let Some(i) = &t.identity {
                a.extend(["--identity".to_string(), i.clone()]);
            }
        }
    } else if tenant != lifeline_replicator::DEFAULT_TENANT {
        a.extend(["--tenant".to_string(), tenant.to_string()]);
    }
    a
}

/// Takes (`ttl` given) or releases a run's lease on a point. On a receiver
/// it goes through the admin identity (`[tls] admin`) when there is one: a
/// receiver lets only writers of the group and admins lease points, and the
/// planner's read identity writes no group.
fn lease(
    admin: Option<&(PathBuf, String)>,
    repo: &str,
    t: &dyn lifeline_replicator::TenantRepository,
    group: &str,
    seq: u64,
    holder: &str,
    ttl: Option<Duration>,
) -> R<()> {
    let remote = repo.starts_with("https://") || repo.starts_with("http://");
    match (admin, ttl) {
        (Some((dir, name)), ttl) if remote => {
            lifeline_service::remote_pin(repo, &TlsDir::new(dir), name, t.tenant(), group, seq, holder, ttl)
                .map_err(|e| e.to_string())
        }
        (_, Some(ttl)) => t.pin(group, seq, holder, ttl).map_err(|e| e.to_string()),
        (_, None) => t.unpin(group, seq, holder).map_err(|e| e.to_string()),
    }
}

/// How long a run's lease on its promoted point lasts unless released first.
const PIN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Releases the given leases this run's volume.promote steps took, each with
/// its outcome (a failed release expires by itself).
pub(super) async fn release_pins(ctx: &Arc<Ctx>, held: &[super::PinLeft]) -> Vec<(super::PinLeft, R<()>)> {
    if held.is_empty() {
        return Vec::new();
    }
    let d = ctx.plan.direction.clone();
    let Some(repo) = d.to_repo.clone() else {
        return Vec::new();
    };
    let all_fail = |e: String| held.iter().map(|p| (p.clone(), Err(e.clone()))).collect::<Vec<_>>();
    let (key, remote) = match ctx.repo_access() {
        Ok(a) => a,
        Err(e) => return all_fail(e),
    };
    let holder = ctx.plan.run_id.clone();
    let pins = held.to_vec();
    let admin = ctx.lease_admin();
    blocking(move || {
        let (target, _) = crate::repo_target::RepoTarget::open(Path::new(&repo), &remote, &key)
            .map_err(|e| format!("open {repo}: {e:#}"))?;
        let t = target.tenant_named(Some(&d.tenant)).map_err(|e| format!("{e:#}"))?;
        Ok(pins
            .into_iter()
            .map(|p| {
                let r = lease(admin.as_ref(), &repo, t.as_ref(), &d.group, p.seq, &holder, None);
                (p, r)
            })
            .collect())
    })
    .await
    .unwrap_or_else(all_fail)
}

/// What a failback's `replication.reverse` says when the forward agent cannot
/// be reached (it died with the primary): the run ends "reprotect pending".
const FORWARD_AGENT_UNREACHABLE: &str = "the forward agent cannot be reached: ";

/// Does this failure of a step running `action` leave the run's reprotect
/// pending rather than failed? Only a failback's `replication.reverse` whose
/// agent could not be reached (no connection, or no answer before the step's
/// timeout); an agent that answered with an error (e.g. the planner's identity
/// refused) is a failure.
pub(super) fn defers_reprotect(action: &str, mode: Mode, error: &str) -> bool {
    action == "replication.reverse"
        && mode == Mode::Failback
        && (error.starts_with(FORWARD_AGENT_UNREACHABLE) || error.starts_with("timed out after "))
}

/// Is `step` one that a `volume.promote` step of the plan (transitively) runs
/// after? Stopping its process (the receiver the promote read from) would
/// strand the run's pins there.
fn feeds_a_promote(plan: &crate::plan::Plan, step: &str) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.action == "volume.promote")
        .map(|s| s.id.as_str())
        .collect();
    while let Some(id) = todo.pop() {
        let Some(s) = plan.step(id) else { continue };
        for dep in &s.after {
            if dep == step {
                return true;
            }
            if seen.insert(dep.as_str()) {
                todo.push(dep);
            }
        }
    }
    false
}

async fn seed(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outputs> {
    let d = ctx.plan.direction.clone();
    let repo = s(p, "repo")
        .map(PathBuf::from)
        .or(d.to_repo_dir.clone())
        .ok_or_else(|| {
            format!(
                "no repository directory for site `{}` to seed: set [sites.{}] repo in lifeline.toml",
                d.to_site, d.to_site
            )
        })?;
    let tenant = s(p, "tenant").map(String::from).unwrap_or(d.tenant.clone());
    let key = key_file(&ctx.config)?;
    let state = ctx.plan.run_dir.join("seed-state");
    let volumes: Vec<(String, PathBuf)> = d.target_volumes.clone().into_iter().collect();
    let group = d.group.clone();
    blocking(move || {
        let keys = key.keys();
        let r = match Repository::open(&repo) {
            Ok(r) => r,
            Err(lifeline_replicator::Error::NotARepository { .. }) => {
                Repository::create_empty(&repo).map_err(|e| format!("create repository {}: {e}", repo.display()))?
            }
            Err(e) => {
                return Err(format!(
                    "open {} (stop its receiver while seeding): {e}",
                    repo.display()
                ));
            }
        };
        if r.catalog().tenant(&tenant).map_err(|e| e.to_string())?.is_none() {
            r.create_tenant(&tenant, &keys).map_err(|e| e.to_string())?;
        }
        let keys = r.check_key(&tenant, &key).map_err(|e| e.to_string())?;
        let t = r.tenant(&tenant).map_err(|e| e.to_string())?;
        let s = lifeline_replicator::backup(
            &t,
            &keys,
            &BackupOptions {
                group,
                volumes,
                freeze: None,
                thaw: None,
                state_dir: state,
                cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                progress: None,
                block_map: true,
            },
        )
        .map_err(|e| format!("seed {}: {e}", repo.display()))?;
        Ok(out(&[
            ("seq", s.seq.to_string()),
            ("bytes_stored", s.bytes_stored.to_string()),
        ]))
    })
    .await
}

/// The step's `volume`, the outputs of this run's volume.promote, and the file to
/// read: `path`, else where the promote put the volume.
fn promoted_volume(ctx: &Ctx, p: &BTreeMap<String, Value>) -> R<(String, Outputs, PathBuf)> {
    let volume = s(p, "volume").unwrap_or_default().to_string();
    let promoted = ctx.outputs_of_action("volume.promote").unwrap_or_default();
    let path = s(p, "path")
        .map(PathBuf::from)
        .or(promoted.get(&format!("path.{volume}")).map(PathBuf::from))
        .ok_or_else(|| format!("no promoted copy of volume `{volume}`: a volume.promote step must run first"))?;
    Ok((volume, promoted, path))
}

async fn check_volume(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outputs> {
    let d = ctx.plan.direction.clone();
    let (volume, promoted, path) = promoted_volume(ctx, p)?;
    let expected = promoted.get(&format!("hash.{volume}")).cloned().ok_or_else(|| {
        format!("no point hash for volume `{volume}`: a volume.promote step of this run must promote it first")
    })?;
    let zero_loss = matches!(ctx.plan.mode, Mode::Switchover | Mode::Failback);
    let source = d.source_volumes.get(&volume).cloned();
    blocking(move || {
        let (_, h) = lifeline_replicator::hash_volume(&path).map_err(|e| format!("hash {}: {e}", path.display()))?;
        if h != expected {
            return Err(format!(
                "volume `{volume}` at {} hashes to {} but the point says {}: it was changed after the promote, or restored wrongly",
                path.display(),
                &h[..16],
                &expected[..16]
            ));
        }
        let mut o = out(&[("hash", h.clone())]);
        if zero_loss {
            let src = source.ok_or_else(|| format!("no source path for volume `{volume}`"))?;
            let (_, hs) = lifeline_replicator::hash_volume(&src).map_err(|e| format!("hash source {}: {e}", src.display()))?;
            if hs != h {
                return Err(format!(
                    "data loss: the source volume {} ({}) differs from the promoted copy ({}): writes were not stopped before the final sync",
                    src.display(),
                    &hs[..16],
                    &h[..16]
                ));
            }
            o.insert("zero_loss".into(), "true".into());
        } else {
            o.insert("zero_loss".into(), "unknown".into());
        }
        Ok(o)
    })
    .await
}

async fn check_workload(ctx: &Arc<Ctx>, p: &BTreeMap<String, Value>) -> R<Outputs> {
    let d = ctx.plan.direction.clone();
    let (volume, _, path) = promoted_volume(ctx, p)?;
    let log = s(p, "durable_log").map(PathBuf::from).or(d
        .source_volumes
        .get(&volume)
        .map(|v| lifeline_testbeds::default_durable_log(v)));
    // The instant of the disaster: the run's start (a drill's T0).
    let at = {
        let rec = ctx.shared.record.lock().expect("record");
        chrono::DateTime::parse_from_rfc3339(&rec.started_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("run start time: {e}"))?
    };
    blocking(move || {
        let log = log.filter(|l| l.exists());
        let r = lifeline_testbeds::check_path(&path, Some(at), log.as_deref())
            .map_err(|e| format!("check workload volume {}: {e}", path.display()))?;
        if let Some(e) = &r.superblock_error {
            return Err(format!("{} holds no workload: {e}", path.display()));
        }
        if !r.damaged.is_empty() {
            return Err(format!(
                "{} corrupt records in {} (first: slot {}: {})",
                r.damaged.len(),
                path.display(),
                r.damaged[0].slot,
                r.damaged[0].reason
            ));
        }
        Ok(out(&[
            ("last_seq", r.last_seq.to_string()),
            (
                "lost_records",
                r.lost_records
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            (
                "lost_secs",
                r.lost_secs
                    .map(|x| format!("{x:.3}"))
                    .unwrap_or_else(|| "unknown".into()),
            ),
            ("corrupt_records", r.damaged.len().to_string()),
            ("clean", r.clean.to_string()),
        ]))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_forward_agent_in_a_failback_defers_the_reprotect() {
        let unreachable =
            format!("{FORWARD_AGENT_UNREACHABLE}agent `db1` at 10.0.0.1:7444: cannot reach agent control");
        assert!(defers_reprotect("replication.reverse", Mode::Failback, &unreachable));
        assert!(defers_reprotect(
            "replication.reverse",
            Mode::Failback,
            "timed out after 1m"
        ));
        // An agent that answered with an error, another mode or another action: a failure.
        assert!(!defers_reprotect(
            "replication.reverse",
            Mode::Failback,
            "agent `db1` at 10.0.0.1:7444: permission denied"
        ));
        assert!(!defers_reprotect(
            "replication.reverse",
            Mode::Switchover,
            "timed out after 1m"
        ));
        assert!(!defers_reprotect("replication.stop", Mode::Failback, &unreachable));
    }
}
