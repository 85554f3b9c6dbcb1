//! `lifeline plan | failover | switchover | failback | resume | runs | approve |
//! abort | audit verify`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cli::{AbortArgs, ApproveArgs, DriveArgs, PlanArgs, PlannerArgs, ResumeArgs, RunArgs, RunsArgs};
use lifeline_planner::audit::AuditLog;
use lifeline_planner::config::Config;
use lifeline_planner::engine::control_socket::{self, Request};
use lifeline_planner::engine::{self, Driving, Event, Prepared, RunObserver, RunRecord, RunStatus, StepStatus};
use lifeline_planner::plan::{self, Plan, PlanOptions};
use lifeline_planner::run_catalog::{PlannerCatalog, planner_dir};
use lifeline_planner::run_record::format_timestamp;
use lifeline_planner::runbook::actions::{Action, Mode};
use lifeline_planner::runbook::load_checked;

pub fn plan_cmd(a: &PlanArgs, config: &Config) -> Result<ExitCode> {
    let rb = load_checked(&a.runbook, None, config)?;
    let p = plan::plan(
        &rb,
        config,
        &PlanOptions {
            mode: a.mode,
            point: a.point.clone(),
            run_id: "RUN".into(),
            run_dir: PathBuf::from("RUNDIR"),
            ports: Default::default(),
            bin: lifeline_planner::plan::this_binary(),
            netns: None,
        },
    )
    .map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", plan::render_text(&p));
    }
    Ok(ExitCode::SUCCESS)
}

fn who(a: &PlannerArgs) -> String {
    let user = lifeline_planner::audit::os_user();
    match &a.operator {
        Some(op) => format!("{op} ({user})"),
        None => user,
    }
}

/// `lifeline failover | switchover | failback`.
pub fn start_run(mode: Mode, a: &RunArgs, config_flag: Option<&Path>) -> Result<ExitCode> {
    let (config, config_file, config_text) = Config::load_with_text(config_flag)?;
    let text = std::fs::read_to_string(&a.runbook)
        .with_context(|| format!("read runbook {} (check the path)", a.runbook.display()))?;
    let rb = load_checked(&a.runbook, Some(&text), &config)?;
    let state = a.drive.planner.state_dir(&config);
    let id = engine::new_run_id(mode);
    let wait = lifeline_planner::runbook::parse_duration(&a.preempt_wait)
        .map_err(|e| anyhow::anyhow!("--preempt-wait {}: {e}", a.preempt_wait))?;
    let catalog = open_catalog_preempting_drill(&state, &id, &who(&a.drive.planner), wait)?;
    let audit = AuditLog::open(catalog.dir())?;
    let run_dir = planner_dir(&state).join("runs").join(&id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let p = plan::plan(
        &rb,
        &config,
        &PlanOptions {
            mode,
            point: a.point.clone(),
            run_id: id.clone(),
            run_dir,
            ports: Default::default(),
            bin: lifeline_planner::plan::this_binary(),
            netns: None,
        },
    )
    .map_err(anyhow::Error::msg)?;
    std::fs::write(p.run_dir.join("plan.txt"), plan::render_text(&p))?;
    let record = engine::new_record(&p, text, config_file, config_text, a.drive.planner.operator.clone());
    drive(&a.drive, false, record, p, config, catalog, audit)
}

/// Opens the planner catalog for the recovery run `id`. A drill holding it is
/// asked (over its control socket) to stop; this waits up to `wait` for it to
/// tear down and release the catalog. Any other holder (another failover, a
/// resumed run) keeps it: the error names it.
fn open_catalog_preempting_drill(
    state: &Path,
    id: &str,
    who: &str,
    wait: std::time::Duration,
) -> Result<PlannerCatalog> {
    let started = Instant::now();
    let mut asked = false;
    loop {
        let held = match PlannerCatalog::open(state) {
            Ok(c) => {
                if asked {
                    eprintln!(
                        "the preempted drill released the planner catalog after {:.1} s; {id} goes on",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(c);
            }
            Err(e @ lifeline_planner::run_catalog::CatalogError::Held(_)) => anyhow::Error::new(e),
            Err(e) => return Err(e.into()),
        };
        if !asked {
            // No answer (no socket yet, or already gone) means the holder is
            // starting or finishing: ask again on the next round.
            if let Ok(Some(ans)) = control_socket::call(
                state,
                &Request::Preempt {
                    by: id.to_string(),
                    who: who.to_string(),
                },
            ) {
                if !ans.ok {
                    return Err(held.context(ans.error.unwrap_or_default()));
                }
                asked = true;
                eprintln!(
                    "{}; waiting up to {} for it",
                    ans.message.unwrap_or_default(),
                    lifeline_planner::runbook::format_duration(wait)
                );
            }
        }
        if started.elapsed() >= wait {
            return Err(held.context(format!(
                "{} waited {} for the planner catalog (--preempt-wait){}",
                id,
                lifeline_planner::runbook::format_duration(wait),
                if asked {
                    ": the drill it preempted has not released it yet"
                } else {
                    ""
                }
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `lifeline resume RUN`.
pub fn resume(a: &ResumeArgs, config_flag: Option<&Path>) -> Result<ExitCode> {
    let config_now = Config::load(config_flag)?;
    let state = a.drive.planner.state_dir(&config_now);
    if control_socket::call(&state, &Request::Runs)?.is_some() {
        bail!(
            "a planner is running in {} (it owns the catalog): wait for it, or `lifeline abort` its run first",
            state.display()
        );
    }
    let catalog = PlannerCatalog::open(&state)?;
    let Some(mut record) = catalog.load(&a.run)? else {
        bail!("no run `{}` in {} (see `lifeline runs`)", a.run, state.display());
    };
    if record.status.finished() && record.status != RunStatus::ReprotectPending {
        bail!(
            "run {} has finished ({:?}): nothing to resume",
            record.id,
            record.status
        );
    }
    let config_path = record
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("lifeline.toml"));
    let config = if record.config_text.is_empty() {
        Config::default()
    } else {
        Config::parse(&record.config_text, &config_path)?
    };
    let rb = load_checked(&record.runbook_file, Some(&record.runbook_text.clone()), &config)?;
    let p = plan::plan(
        &rb,
        &config,
        &PlanOptions {
            mode: record.mode,
            point: record.point.clone(),
            run_id: record.id.clone(),
            run_dir: record.run_dir.clone(),
            ports: record.ports.clone(),
            bin: lifeline_planner::plan::this_binary(),
            netns: None,
        },
    )
    .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&record.run_dir)?;
    // Steps that were running when the planner stopped run again.
    engine::prepare_resume(&mut record);
    let audit = AuditLog::open(catalog.dir())?;
    drive(&a.drive, true, record, p, config, catalog, audit)
}

/// `lifeline failback` brought the group home but could not resume the forward
/// agent (see `RunStatus::ReprotectPending`).
pub const EXIT_REPROTECT_PENDING: u8 = 3;

/// Executes a prepared run (`resumed` or not) as `a` says.
fn drive(
    a: &DriveArgs,
    resumed: bool,
    record: RunRecord,
    plan: Plan,
    config: Config,
    catalog: PlannerCatalog,
    audit: AuditLog,
) -> Result<ExitCode> {
    execute(
        Prepared {
            record,
            plan,
            config,
            catalog,
            audit,
        },
        Driving {
            operator: a.planner.operator.clone(),
            parallel: a.parallel,
            resumed,
            observer: Display::new(a.json),
        },
        a.json,
    )
}

fn execute(run: Prepared, how: Driving, json: bool) -> Result<ExitCode> {
    let (status, shared, plan) = engine::execute_run(run, how)?;
    let rec = shared.record.lock().expect("record").clone();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "event": "summary",
                "run": rec.id,
                "status": rec.status,
                "promoted": engine::promoted_points(&rec, &plan),
                "pins_left": engine::pins_left(&rec, &plan)
                    .iter()
                    .map(|p| serde_json::json!({"step": p.step, "seq": p.seq}))
                    .collect::<Vec<_>>(),
                "audit_head": rec.audit_head,
            })
        );
    } else {
        print_summary(&rec, &plan);
    }
    Ok(match status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        // Home, nothing failed, but not protected yet: neither 0 nor a failure.
        RunStatus::ReprotectPending => ExitCode::from(EXIT_REPROTECT_PENDING),
        _ => ExitCode::from(1),
    })
}

fn print_summary(rec: &RunRecord, plan: &Plan) {
    println!();
    println!("run {}: {:?}", rec.id, rec.status);
    for id in plan.levels.iter().flatten() {
        let s = &rec.steps[id];
        let time = s
            .elapsed_ms
            .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let what = s.error.as_deref().or(s.note.as_deref()).unwrap_or("");
        println!("  {:<11} {:<20} {:>7}  {}", s.status.as_str(), id, time, what);
    }
    for p in engine::promoted_points(rec, plan) {
        let rpo = match (p.rpo_secs, p.rpo_objective_secs) {
            (Some(a), Some(o)) => format!(
                "achieved RPO {a:.1}s ({} the objective of {o:.0}s)",
                if a <= o { "within" } else { "OVER" }
            ),
            (Some(a), None) => format!("achieved RPO {a:.1}s"),
            _ => "achieved RPO unknown".into(),
        };
        println!(
            "promoted point {} taken at {} (step `{}`): {rpo}, measured from the run's start {}",
            p.seq,
            p.taken_at,
            p.step,
            format_timestamp(&rec.started_at)
        );
    }
    if rec.status == RunStatus::ReprotectPending {
        println!(
            "reprotect pending: start the forward agent (the group's `agent`), then `lifeline resume {}`",
            rec.id
        );
    }
    for p in engine::pins_left(rec, plan) {
        println!(
            "pin left behind: {p} of group {}, held by run {} (prune keeps the point until it expires, 24 h after the promote)",
            rec.group, rec.id
        );
    }
    if let Some(h) = &rec.audit_head {
        println!("audit head: entry {} {} (signed)", h.seq, &h.hash[..16]);
    }
    println!("logs and plan: {}", rec.run_dir.display());
}

/// Live progress: a line per event, and on a terminal a spinner with the running steps.
pub(crate) struct Display {
    json: bool,
    approval_steps: OnceLock<Vec<String>>,
    bar: Option<indicatif::ProgressBar>,
    t0: Instant,
}

impl Display {
    pub(crate) fn new(json: bool) -> Arc<Display> {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("template"));
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            pb
        });
        Arc::new(Display {
            json,
            approval_steps: OnceLock::new(),
            bar,
            t0: Instant::now(),
        })
    }

    fn approval_steps(&self) -> &[String] {
        self.approval_steps.get().map(Vec::as_slice).unwrap_or_default()
    }
}

impl RunObserver for Display {
    fn started(&self, plan: &Plan, record: &RunRecord) {
        let approvals = plan
            .steps
            .iter()
            .filter(|s| s.kind == Action::Approval)
            .map(|s| s.id.clone())
            .collect();
        let _ = self.approval_steps.set(approvals);
        if !self.json {
            eprintln!("run {}", record.id);
        }
    }

    fn event(&self, e: &Event, r: &RunRecord) {
        if self.json {
            println!("{}", serde_json::to_string(e).expect("serialisable"));
            return;
        }
        let hint = match &e.step {
            Some(st) if e.event == "step_started" && self.approval_steps().contains(st) => {
                format!("waits for `lifeline approve {} {st}`", e.run)
            }
            _ => String::new(),
        };
        let line = format!(
            "{:>7.1}s  {:<18} {:<20} {}{hint}",
            self.t0.elapsed().as_secs_f64(),
            e.event,
            e.step.as_deref().unwrap_or(""),
            e.message.as_deref().unwrap_or("")
        );
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.set_message(running_message(r, self.approval_steps()));
            }
            None => eprintln!("{line}"),
        }
    }

    fn tick_every(&self) -> Option<std::time::Duration> {
        self.bar.as_ref().map(|_| std::time::Duration::from_millis(500))
    }

    fn tick(&self, r: &RunRecord) {
        if let Some(b) = &self.bar {
            b.set_message(running_message(r, self.approval_steps()));
        }
    }

    fn finished(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn running_message(r: &RunRecord, approval_steps: &[String]) -> String {
    let now = chrono::Utc::now();
    let running: Vec<String> = r
        .steps
        .iter()
        .filter(|(_, s)| s.status == StepStatus::Running)
        .map(|(id, s)| {
            let secs = s.started_at.map(|t| (now - t).num_seconds()).unwrap_or(0);
            if r.approvals.contains_key(id) {
                format!("{id} ({secs}s)")
            } else if approval_steps.contains(id) {
                format!("{id} waits for `lifeline approve {} {id}` ({secs}s)", r.id)
            } else {
                format!("{id} ({secs}s)")
            }
        })
        .collect();
    let done = r
        .steps
        .values()
        .filter(|s| s.status != StepStatus::Pending && s.status != StepStatus::Running)
        .count();
    format!(
        "{done}/{} done; running: {}",
        r.steps.len(),
        if running.is_empty() {
            "-".into()
        } else {
            running.join(", ")
        }
    )
}

/// `lifeline runs`.
pub fn runs(a: &RunsArgs, config: &Config) -> Result<ExitCode> {
    let state = a.planner.state_dir(config);
    let runs = match control_socket::call(&state, &Request::Runs)? {
        Some(ans) if ans.ok => ans.runs,
        Some(ans) => bail!("{}", ans.error.unwrap_or_default()),
        None => PlannerCatalog::open(&state)?.list()?,
    };
    if super::listed_briefly(a.json, &runs, "runs", &state)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36} {:<10} {:<12} {:<12} {:<10} {:>6}  started",
        "run", "mode", "runbook", "group", "status", "steps"
    );
    for r in runs {
        let done = r.steps.values().filter(|s| s.status.satisfies()).count();
        let waiting: Vec<&String> = r
            .steps
            .iter()
            .filter(|(id, s)| s.status == StepStatus::Running && !r.approvals.contains_key(*id))
            .map(|(id, _)| id)
            .collect();
        println!(
            "{:<36} {:<10} {:<12} {:<12} {:<10} {:>3}/{:<3} {}{}",
            r.id,
            r.mode,
            r.runbook,
            r.group,
            format!("{:?}", r.status).to_lowercase(),
            done,
            r.steps.len(),
            format_timestamp(&r.started_at),
            if r.status == RunStatus::Running && !waiting.is_empty() {
                format!(
                    "  (running: {})",
                    waiting.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            } else {
                String::new()
            }
        );
        if let Some(h) = r.hydration_progress() {
            println!("  {h}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeline approve RUN STEP`.
pub fn approve(a: &ApproveArgs, config: &Config) -> Result<ExitCode> {
    let state = a.planner.state_dir(config);
    let req = Request::Approve {
        run: a.run.clone(),
        step: a.step.clone(),
        who: who(&a.planner),
    };
    match control_socket::call(&state, &req)? {
        Some(ans) if ans.ok => {
            println!("{}", ans.message.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Some(ans) => bail!("{}", ans.error.unwrap_or_default()),
        None => bail!(
            "no planner is running in {}: run {} waits for no one (`lifeline resume {}` continues a stopped run)",
            state.display(),
            a.run,
            a.run
        ),
    }
}

/// `lifeline abort RUN`: through the running planner, or directly on a run whose
/// planner died (its processes are stopped and it is marked aborted).
pub fn abort(a: &AbortArgs, config: &Config) -> Result<ExitCode> {
    let state = a.planner.state_dir(config);
    let req = Request::Abort {
        run: a.run.clone(),
        who: who(&a.planner),
    };
    match control_socket::call(&state, &req)? {
        Some(ans) if ans.ok => {
            println!("{}", ans.message.unwrap_or_default());
            return Ok(ExitCode::SUCCESS);
        }
        Some(ans) => bail!("{}", ans.error.unwrap_or_default()),
        None => {}
    }
    let catalog = PlannerCatalog::open(&state)?;
    let Some(mut rec) = catalog.load(&a.run)? else {
        bail!("no run `{}` in {} (see `lifeline runs`)", a.run, state.display());
    };
    if rec.status.finished() {
        bail!("run {} has finished ({:?}): nothing to abort", rec.id, rec.status);
    }
    let mut audit = AuditLog::open(catalog.dir())?;
    for p in rec.processes.iter_mut().filter(|p| !p.stopped) {
        engine::process::stop(p, std::time::Duration::from_secs(10), None)?;
        p.stopped = true;
    }
    for s in rec.steps.values_mut().filter(|s| s.status == StepStatus::Running) {
        s.status = StepStatus::Failed;
        s.error = Some("interrupted: the planner stopped and the run was aborted".into());
    }
    rec.status = RunStatus::Aborted;
    rec.abort_requested = true;
    rec.ended_at = Some(lifeline_planner::run_record::now());
    let head = audit.append(
        a.planner.operator.as_deref(),
        Some(&rec.id),
        None,
        "run_aborted",
        Some(serde_json::json!({"by": who(&a.planner), "planner": "not running"})),
    )?;
    rec.audit_head = Some(head);
    catalog.save(&rec)?;
    println!(
        "run {} aborted (its planner was not running); the processes it started were stopped",
        rec.id
    );
    Ok(ExitCode::SUCCESS)
}

/// `lifeline audit verify [--pubkey KEY]`.
pub fn audit_verify(planner: &PlannerArgs, pubkey: Option<&Path>, json: bool, config: &Config) -> Result<ExitCode> {
    let state = planner.state_dir(config);
    let trusted = pubkey.map(lifeline_planner::audit::read_public_key).transpose()?;
    let runs = match control_socket::call(&state, &Request::Runs)? {
        Some(ans) => Some(ans.runs),
        None => PlannerCatalog::open_existing(&state)?.map(|c| c.list()).transpose()?,
    };
    let catalog = match runs {
        Some(runs) => {
            lifeline_planner::audit::CatalogRuns::Runs(runs.into_iter().map(|r| (r.id, r.audit_head)).collect())
        }
        None => lifeline_planner::audit::CatalogRuns::Missing(PlannerCatalog::path(&state)),
    };
    let mut report = lifeline_planner::audit::verify(&planner_dir(&state), trusted.as_ref(), &[])?;
    report.check_catalog(&catalog);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.ok() {
        println!(
            "audit log ok: {} entries, head signed at entry {}, {} run heads on the chain, {} by {}",
            report.entries,
            report.head.as_ref().map(|h| h.seq).unwrap_or(0),
            report.run_heads,
            match report.key_source {
                lifeline_planner::audit::KeySource::Trusted => "signed",
                lifeline_planner::audit::KeySource::BesideTheLog => "checked",
            },
            match report.key_source {
                lifeline_planner::audit::KeySource::Trusted => format!("the trusted key {}…", &report.key[..16]),
                lifeline_planner::audit::KeySource::BesideTheLog => "planner.pub beside the log".to_string(),
            }
        );
    } else {
        println!("audit log DAMAGED ({} entries):", report.entries);
        for p in &report.problems {
            println!("  {p}");
        }
    }
    if report.key_source == lifeline_planner::audit::KeySource::BesideTheLog && !json {
        eprintln!(
            "note: checked against {}, which whoever holds this host can replace along with the log; \
             pass --pubkey with the auditor's copy of the key (`lifeline keys show-signer`) to detect a re-signed log",
            planner_dir(&state).join("planner.pub").display()
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `lifeline probe tcp|http TARGET`: one attempt, exit 0 when it passes; prints
/// what it got.
pub fn probe(a: &crate::cli::ProbeArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let ok =
        rt.block_on(async {
            let t = std::time::Duration::from_secs(2);
            match a.kind.as_str() {
                "tcp" => Ok(matches!(
                    tokio::time::timeout(t, tokio::net::TcpStream::connect(&a.target)).await,
                    Ok(Ok(_))
                )),
                "http" => match tokio::time::timeout(
                    t,
                    engine::http::request_with("GET", &a.target, None, a.ca_file.as_deref()),
                )
                .await
                {
                    Ok(Ok(ans)) => {
                        println!("{}", ans.status);
                        Ok(ans.status == a.status
                            && a.body_contains.as_ref().is_none_or(|b| ans.body.contains(b.as_str())))
                    }
                    Ok(Err(e @ engine::http::HttpError::NotHttp { .. })) => Err(e.into()),
                    _ => Ok(false),
                },
                other => bail!("probe `{other}`: tcp or http"),
            }
        })?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
