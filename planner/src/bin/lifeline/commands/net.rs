//! `lifeline certs new`, `lifeline receiver` and `lifeline agent`.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lifeline_replicator::BackupOptions;
use lifeline_service::{
    AgentControl, AgentError, AgentEvent, AgentExit, CertsRequest, Receiver, ReceiverConfig, TlsDir, mint_certificates,
    run_agent, serve, serve_control,
};

use super::backup::cancel_on_signals;
use super::human_bytes;
use crate::cli::{AgentArgs, CertsArgs, ControlArgs, ControlSubcommand, ReceiverArgs, StatusArgs};
use lifeline_planner::config::Config;
use lifeline_planner::repo_target::parse_duration;

pub fn certs_new(a: &CertsArgs) -> Result<ExitCode> {
    let written = mint_certificates(&CertsRequest {
        ca_dir: a.ca_dir.clone(),
        out: a.out.clone(),
        receiver_sans: a.receiver_sans.clone(),
        agents: a.agents.clone(),
        admins: a.admins.clone(),
        auditors: a.auditors.clone(),
        console_sans: a.console_sans.clone(),
        days: a.days,
    })?;
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `NAME[@TENANT]=GROUP[,GROUP...]` flags: a bare `NAME` is that agent
/// name in every tenant, `NAME@TENANT` only in that tenant.
pub fn parse_allow(flags: &[String]) -> Result<HashMap<String, Vec<String>>> {
    const HOW: &str = "write NAME=GROUP[,GROUP...] (the name in every tenant) or NAME@TENANT=GROUP[,GROUP...]";
    let mut allow: HashMap<String, Vec<String>> = HashMap::new();
    for f in flags {
        let Some((name, groups)) = f.split_once('=') else {
            bail!("invalid --allow `{f}`: {HOW}");
        };
        let groups: Vec<String> = groups.split(',').filter(|g| !g.is_empty()).map(String::from).collect();
        if name.is_empty() || groups.is_empty() {
            bail!("invalid --allow `{f}`: {HOW}");
        }
        match name.split_once('@') {
            Some((agent, tenant)) => {
                lifeline_replicator::check_name("agent", agent)?;
                lifeline_replicator::check_name("tenant", tenant)?;
            }
            None => lifeline_replicator::check_name("agent", name)?,
        }
        for g in &groups {
            lifeline_replicator::check_name("group", g)?;
        }
        allow.entry(name.into()).or_default().extend(groups);
    }
    Ok(allow)
}

pub fn receiver(a: &ReceiverArgs, config: &Config) -> Result<ExitCode> {
    let site = match &a.site {
        Some(name) => Some(
            config
                .sites
                .get(name)
                .with_context(|| format!("no [sites.{name}] in the configuration"))?,
        ),
        None => None,
    };
    let mut allow = parse_allow(&a.allow)?;
    if a.allow.is_empty()
        && let Some(site) = site
    {
        allow = site.allow.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    let repo = a
        .repo
        .clone()
        .or_else(|| site.and_then(|s| s.repo.clone()))
        .context("no repository: pass --repo DIR (or --site with a repo in the configuration)")?;
    let listen = a
        .listen
        .clone()
        .or_else(|| site.and_then(|s| s.listen.clone()))
        .context("no address: pass --listen ADDR (or --site with listen in the configuration)")?;
    let tls_dir = a
        .tls_dir
        .clone()
        .or_else(|| config.tls.as_ref().map(|t| t.dir.clone()))
        .context("no TLS directory: pass --tls-dir TLSDIR (or [tls] dir in the configuration)")?;
    let tls = TlsDir::new(&tls_dir).server_config()?;
    let own_scopes = match (a.own_scope.is_empty(), site) {
        (true, Some(site)) => site.own_scopes()?,
        _ => a
            .own_scope
            .iter()
            .map(|s| lifeline_planner::config::parse_own_scope(s))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let receiver = Arc::new(
        Receiver::open(&ReceiverConfig {
            repo: repo.clone(),
            allow,
        })?
        .with_own_scopes(own_scopes)?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let _owner = lifeline_replicator::OwnerNote::write(&repo, "lifeline receiver", &format!("https://{addr}"))?;
        println!("listening on {addr}");
        std::io::stdout().flush()?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("receiver: shutting down; in-flight calls finish, unfinished uploads commit nothing");
        };
        serve(listener, tls, receiver, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn agent(a: &AgentArgs, config: &Config) -> Result<ExitCode> {
    let s = a.options.resolve(&a.group, a.once, config)?;
    if let Some(notice) = &s.hooks_skipped {
        eprintln!("agent: {notice}");
    }
    let key = super::load_key(&s.key_file)?;
    let keys = key.keys();
    let cancel = cancel_on_signals()?;
    let tls = TlsDir::new(&s.tls_dir);
    let control = AgentControl::new(&s.group, &s.receiver);
    // The control API runs on its own runtime thread for the agent's lifetime.
    let _control_server = match &s.control {
        Some(addr) => Some(start_control(addr, &tls, &s.identity, control.clone(), cancel.clone())?),
        None => None,
    };
    let (freeze, thaw) = s.hooks.unzip();
    let opts = lifeline_service::AgentOptions {
        url: s.receiver,
        tls,
        identity: s.identity,
        interval: s.interval,
        retry_for: s.retry_for,
        limit_upload: s.limit_upload,
        backup: BackupOptions {
            group: s.group,
            volumes: s.volumes,
            freeze,
            thaw,
            state_dir: s.state_dir,
            cancel,
            progress: None,
            block_map: s.block_map,
        },
    };
    let json = a.json;
    let mut show = |e: &AgentEvent| {
        if json {
            println!("{}", serde_json::to_string(e).expect("serialisable"));
        } else {
            match e {
                AgentEvent::Cycle(c) => println!(
                    "cycle: point {} of group `{}` committed, {} sent ({} new), {:.2} s, lag {:.2} s",
                    c.seq,
                    c.group,
                    human_bytes(c.bytes_sent),
                    human_bytes(c.bytes_new),
                    c.elapsed_secs,
                    c.lag_secs
                ),
                AgentEvent::Retargeted { from, to } => eprintln!("agent: retargeted from {from} to {to}"),
                AgentEvent::Retrying { error, retry_in_secs } => {
                    eprintln!("agent: {error}; retrying in {retry_in_secs:.1} s")
                }
            }
        }
        let _ = std::io::stdout().flush();
    };
    match run_agent(&opts, &keys, &control, &mut show) {
        Ok(AgentExit::Once) => Ok(ExitCode::SUCCESS),
        Ok(AgentExit::Stopped) => {
            eprintln!("agent: stopped after the last cycle");
            Ok(ExitCode::SUCCESS)
        }
        Ok(AgentExit::Interrupted) => {
            eprintln!("agent: stopped");
            Ok(ExitCode::from(130))
        }
        Err(AgentError::Failed(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}

/// Starts the control API on `addr` in a background runtime; prints the bound
/// address as `control listening on ADDR`.
fn start_control(
    addr: &str,
    tls: &TlsDir,
    identity: &str,
    control: Arc<AgentControl>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("control API: listen on {addr}"))?;
    println!("control listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let tls = tls.clone();
    let identity = identity.to_string();
    Ok(std::thread::spawn(move || {
        let shutdown = async move {
            while !cancel.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        if let Err(e) = rt.block_on(serve_control(listener, &tls, &identity, control, shutdown)) {
            eprintln!("agent: control API stopped: {e}");
        }
    }))
}

/// Each group's last passing drill from the planner's catalog, or why it is unknown.
fn last_passing_drills(
    config: &lifeline_planner::config::Config,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let state = config.state_dir(None);
    if !lifeline_planner::run_catalog::planner_dir(&state)
        .join("catalog")
        .exists()
    {
        return Ok(Default::default());
    }
    let cat = lifeline_planner::run_catalog::PlannerCatalog::open(&state).map_err(|e| format!("{e:#}"))?;
    let mut out = std::collections::BTreeMap::new();
    for d in cat.drills().map_err(|e| format!("{e:#}"))? {
        if d.verdict != lifeline_planner::report::Verdict::Failed {
            out.insert(d.group.clone(), d.disaster_at.clone());
        }
    }
    Ok(out)
}

pub fn status(a: &StatusArgs, config: &lifeline_planner::config::Config) -> Result<ExitCode> {
    let (tls_dir, identity) = a.remote.require(&a.repo)?;
    // No session: an agent identity reads its tenant's groups, an admin every tenant's.
    let groups = lifeline_service::remote_status(&a.repo, &TlsDir::new(tls_dir), identity)?;
    let now = chrono::Utc::now();
    let drills = last_passing_drills(config);
    // The receiver counts the uploads and commits that failed there; a cycle
    // that failed before reaching it (receiver down, a freeze hook) only its
    // agent knows: ask each configured group's control API (`lifeline agent
    // --control`, or the daemon that replicates it), as [tls] admin.
    // All at once, within one 5 s deadline: an unreachable host must not hang it.
    let asked: Vec<(String, AgentAnswer)> = groups
        .iter()
        .filter_map(|g| {
            let c = config.group(&g.group)?;
            let addr = c.control.clone()?;
            let tls = config.tls.as_ref()?;
            let admin = tls.admin.clone()?;
            let agent = config.agent_identity(&g.group)?;
            Some((g.group.clone(), ask_agent(&addr, &agent, &tls.dir, &admin)))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let agents: std::collections::BTreeMap<String, Result<lifeline_service::AgentStatus, String>> = asked
        .into_iter()
        .map(|(group, rx)| {
            let answer = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(lifeline_service::ControlAnswer::Status(s))) => Ok(s),
                Ok(Ok(_)) => Err("unexpected answer".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 5 s".to_string()),
            };
            (group, answer)
        })
        .collect();
    let rows: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let taken = g.last_taken_at;
            let lag = (now - taken).num_milliseconds() as f64 / 1000.0;
            let gc = config.group(&g.group);
            let objective = gc
                .and_then(|c| c.rpo.as_deref())
                .and_then(|r| parse_duration(r).ok())
                .map(|d| d.as_secs_f64());
            let interval = gc
                .and_then(|c| c.drill_interval.as_deref())
                .and_then(|r| parse_duration(r).ok())
                .unwrap_or(std::time::Duration::from_secs(30 * 86_400));
            let mut flags = Vec::new();
            if objective.is_some_and(|o| lag > o) {
                flags.push("RPO exceeded".to_string());
            }
            let agent = agents.get(&g.group);
            let agent_failed = match agent {
                Some(Ok(s)) => s.failed_cycles,
                _ => 0,
            };
            match agent {
                Some(Ok(s)) if s.paused => flags.push("agent paused".to_string()),
                Some(Err(_)) => flags.push("agent unreachable".to_string()),
                _ => {}
            }
            let last_drill = drills.as_ref().ok().and_then(|d| d.get(&g.group).cloned());
            if gc.is_some() && drills.is_ok() {
                let due = last_drill
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc) + chrono::Duration::from_std(interval).unwrap_or_default());
                if due.is_none_or(|d| d < now) {
                    flags.push("drill overdue".to_string());
                }
            }
            serde_json::json!({
                "rpo_objective_secs": objective,
                "last_passing_drill": last_drill,
                "flags": flags,
                "tenant": g.tenant,
                "group": g.group,
                "points": g.points,
                "last_seq": g.last_seq,
                "last_point_at": taken.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "lag_secs": lag,
                "last_cycle_secs": g.last_cycle_secs,
                "last_bytes_sent": g.last_bytes_sent,
                "errors": g.errors + agent_failed,
                "receiver_errors": g.errors,
                "agent_failed_cycles": agent.and_then(|a| a.as_ref().ok()).map(|s| s.failed_cycles),
                "agent_last_error": agent.and_then(|a| a.as_ref().ok()).and_then(|s| (!s.last_error.is_empty()).then(|| s.last_error.clone())),
                "agent_error": agent.and_then(|a| a.as_ref().err()),
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no points yet on {} (as `{identity}`)", a.repo);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>7} {:>8}  {:<24}  {:>10} {:>8} {:>10} {:>12} {:>7}  FLAGS",
        "GROUP", "POINTS", "LAST SEQ", "LAST POINT", "LAG", "RPO", "CYCLE", "SENT", "ERRORS"
    );
    for r in &rows {
        println!(
            "{:<20} {:>7} {:>8}  {:<24}  {:>9.1}s {:>8} {:>10} {:>12} {:>7}  {}",
            r["group"].as_str().unwrap_or(""),
            r["points"].as_u64().unwrap_or(0),
            r["last_seq"].as_u64().unwrap_or(0),
            r["last_point_at"].as_str().unwrap_or(""),
            r["lag_secs"].as_f64().unwrap_or(0.0),
            r["rpo_objective_secs"]
                .as_f64()
                .map(|o| format!("{o:.0}s"))
                .unwrap_or_else(|| "-".into()),
            format!("{:.2}s", r["last_cycle_secs"].as_f64().unwrap_or(0.0)),
            human_bytes(r["last_bytes_sent"].as_u64().unwrap_or(0)),
            r["errors"].as_u64().unwrap_or(0),
            r["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
    }
    if let Err(why) = &drills {
        println!("(drill history unavailable: {why})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer of an agent's control API to a status call, when it comes.
type AgentAnswer = std::sync::mpsc::Receiver<Result<lifeline_service::ControlAnswer, lifeline_service::ServiceError>>;

/// Asks the control API of `agent` at `addr` for its status, in the background.
fn ask_agent(addr: &str, agent: &str, tls_dir: &std::path::Path, admin: &str) -> AgentAnswer {
    use lifeline_service::{ControlCall, call_agent};
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, agent, tls, admin) = (
        addr.to_string(),
        agent.to_string(),
        TlsDir::new(tls_dir),
        admin.to_string(),
    );
    // Ends with the call; a call that outlives the caller's deadline ends with
    // the process (`status` prints and exits).
    std::thread::spawn(move || {
        let _ = tx.send(call_agent(&addr, &agent, &tls, &admin, ControlCall::Status));
    });
    rx
}

pub fn control(a: &ControlArgs, config: &lifeline_planner::config::Config) -> Result<ExitCode> {
    use lifeline_service::{ControlAnswer, ControlCall, call_agent};
    let call = match &a.call {
        ControlSubcommand::Status => ControlCall::Status,
        ControlSubcommand::Pause => ControlCall::Pause,
        ControlSubcommand::Resume => ControlCall::Resume,
        ControlSubcommand::SyncNow => ControlCall::SyncNow,
        ControlSubcommand::Retarget { url } => ControlCall::Retarget(url.clone()),
    };
    let tls = config.tls.as_ref();
    let tls_dir = a
        .tls_dir
        .clone()
        .or_else(|| tls.map(|t| t.dir.clone()))
        .context("pass --tls-dir TLSDIR (or [tls] dir in the configuration)")?;
    let identity = a
        .identity
        .clone()
        .or_else(|| tls.and_then(|t| t.admin.clone()))
        .context("pass --identity ADMIN (or [tls] admin in the configuration)")?;
    let answer = call_agent(&a.control, &a.agent, &TlsDir::new(&tls_dir), &identity, call)?;
    let json = match answer {
        ControlAnswer::Synced { seq, taken_at } => serde_json::json!({
            "seq": seq,
            "taken_at": taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }),
        ControlAnswer::Status(s) => serde_json::json!({
            "group": s.group,
            "target": s.target,
            "paused": s.paused,
            "cycling": s.cycling,
            "cycles": s.cycles,
            "last_seq": s.last_seq,
            "last_point_at": chrono::DateTime::from_timestamp_millis(s.last_taken_at_unix_ms)
                .filter(|_| s.last_taken_at_unix_ms > 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "last_cycle_secs": s.last_cycle_secs,
            "last_error": (!s.last_error.is_empty()).then_some(s.last_error),
            "failed_cycles": s.failed_cycles,
        }),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if let Some(map) = json.as_object() {
        for (k, v) in map {
            println!(
                "{k:<16} {}",
                v.as_str().map(String::from).unwrap_or_else(|| v.to_string())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_allow;

    #[test]
    fn allow_names_an_agent_in_every_tenant_or_in_one() {
        let a = parse_allow(&["db1=shop,crm".into(), "db2@acme=shop".into(), "db1=web".into()]).unwrap();
        assert_eq!(a["db1"], ["shop", "crm", "web"]);
        assert_eq!(a["db2@acme"], ["shop"]);
        for bad in ["a", "a=", "=g", "a@=g", "@t=g", "a@t@u=g", "a b=g", "a=../g"] {
            assert!(parse_allow(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
