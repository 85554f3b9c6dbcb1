//! Drills: a test failover from a recovery point into a sandbox while production
//! and replication carry on. The drill declares a disaster instant T0, plans the
//! runbook in drill mode with its ports rebound to free ones and its volumes
//! promoted into the sandbox (the run's directory), runs it with the engine,
//! watches the group's replication lag on the receiver before, during and after,
//! then measures RPO (T0 − `taken_at` of the point used) and RTO (T0 → every
//! check green), tears the sandbox down (unless `--keep`) and writes the signed
//! report (see [`crate::report`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::engine::{RunObserver, RunRecord, RunStatus, StepStatus};
use crate::plan::{self, Plan, PlanOptions};
use crate::report::{self, DrillReport};
use crate::run_catalog::PlannerArgs;
use crate::run_catalog::{DrillSummary, PlannerCatalog, planner_dir};
use crate::runbook::actions::Mode;
use crate::sandbox::Sandbox;

/// What to drill and where the report goes.
pub struct DrillOptions {
    pub runbook: PathBuf,
    pub point: Option<String>,
    pub report_dir: PathBuf,
    pub keep: bool,
    pub planner: PlannerArgs,
    pub parallel: usize,
    /// Who watches the drill's run (the terminal display, or [`crate::engine::Unobserved`]).
    pub observer: Arc<dyn RunObserver>,
    /// Time between two lag samples.
    pub lag_every: Duration,
    /// Run services and checks in a network namespace of the drill's own (when root).
    pub netns: bool,
}

/// What a drill produced.
pub struct DrillOutcome {
    pub report: DrillReport,
    pub report_dir: PathBuf,
    pub status: RunStatus,
    pub sandbox: PathBuf,
}

fn secs_of(d: &str) -> Option<f64> {
    crate::runbook::parse_duration(d).ok().map(|d| d.as_secs_f64())
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// Free loopback ports for the runbook's ports (nothing collides with production).
fn free_ports(names: impl Iterator<Item = String>) -> Result<BTreeMap<String, u16>> {
    let mut held = Vec::new();
    let mut out = BTreeMap::new();
    for n in names {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port for the sandbox")?;
        out.insert(n, l.local_addr()?.port());
        held.push(l); // hold each until all are chosen, so none repeats
    }
    Ok(out)
}

/// Lag samples with their absolute instant (made relative to T0 at the end).
type Samples = Arc<Mutex<Vec<(DateTime<Utc>, report::LagSample)>>>;

/// The drill's own network namespace (root and iproute2): its services listen
/// and its checks connect inside it, so nothing collides with production. Removed
/// on drop; a leftover of a crashed drill (its owner PID gone) is removed by the
/// next drill.
struct SandboxNetns {
    name: String,
}

const NETNS_PREFIX: &str = "lldrill-";
const NETNS_OWNERS: &str = "/run/lifeline-drills";

fn ip(args: &[&str]) -> std::result::Result<(), String> {
    let o = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e} (install iproute2)"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl SandboxNetns {
    /// Creates the namespace, or says why the machine does not allow it.
    fn create(drill_id: &str) -> std::result::Result<SandboxNetns, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        // Steps enter the namespace with nsenter (util-linux), not `ip netns
        // exec`, so they keep the drill's shared mount namespace.
        let nsenter = std::process::Command::new("nsenter")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !nsenter.is_ok_and(|s| s.success()) {
            return Err("no nsenter (install util-linux)".into());
        }
        Self::remove_leftovers();
        let tail: String = drill_id
            .chars()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name = format!("{NETNS_PREFIX}{tail}");
        ip(&["netns", "add", &name])?;
        let ns = SandboxNetns { name };
        let _ = std::fs::create_dir_all(NETNS_OWNERS);
        let _ = std::fs::write(
            std::path::Path::new(NETNS_OWNERS).join(&ns.name),
            std::process::id().to_string(),
        );
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn remove_leftovers() {
        let Ok(out) = std::process::Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if !name.starts_with(NETNS_PREFIX) {
                continue;
            }
            let owner = std::fs::read_to_string(std::path::Path::new(NETNS_OWNERS).join(name)).unwrap_or_default();
            let alive = owner
                .trim()
                .parse::<i32>()
                .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                tracing::info!(netns = name, "removing a crashed drill's network namespace");
                let _ = ip(&["netns", "del", name]);
                let _ = std::fs::remove_file(std::path::Path::new(NETNS_OWNERS).join(name));
            }
        }
    }
}

impl Drop for SandboxNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_file(std::path::Path::new(NETNS_OWNERS).join(&self.name));
    }
}

/// Samples the group's replication lag on its receiver in the background.
struct LagWatch {
    samples: Samples,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    unavailable: Option<String>,
}

impl LagWatch {
    fn start(config: &Config, group: &str, every: Duration) -> LagWatch {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (Some(url), Some(tls)) = (config.receiver_of(group).map(String::from), config.tls.clone()) else {
            return LagWatch {
                samples,
                stop,
                thread: None,
                unavailable: Some("the group's secondary site has no receiver URL or [tls] is not set".into()),
            };
        };
        let Some(identity) = tls.identity.clone() else {
            return LagWatch {
                samples,
                stop,
                thread: None,
                unavailable: Some("[tls] identity is not set".into()),
            };
        };
        let sample = {
            let group = group.to_string();
            move |remote: &lifeline_service::RemoteRepository| -> Option<(DateTime<Utc>, report::LagSample)> {
                let st = remote.status().ok()?;
                let g = st.into_iter().find(|g| g.group == group)?;
                let now = Utc::now();
                let taken = g.last_taken_at;
                Some((
                    now,
                    report::LagSample {
                        at_secs: 0.0,
                        lag_secs: (now - taken).num_milliseconds() as f64 / 1000.0,
                        last_seq: g.last_seq,
                        last_cycle_secs: g.last_cycle_secs,
                    },
                ))
            }
        };
        let remote = match lifeline_service::RemoteRepository::connect_with(
            &url,
            &lifeline_service::TlsDir::new(&tls.dir),
            &identity,
            None,
        ) {
            Ok(r) => r,
            Err(e) => {
                return LagWatch {
                    samples,
                    stop,
                    thread: None,
                    unavailable: Some(format!("cannot reach {url}: {e}")),
                };
            }
        };
        if let Some(s) = sample(&remote) {
            samples.lock().expect("samples").push(s);
        }
        let (s2, stop2) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let deadline = std::time::Instant::now() + every;
                while std::time::Instant::now() < deadline && !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Some(s) = sample(&remote) {
                    s2.lock().expect("samples").push(s);
                }
            }
        });
        LagWatch {
            samples,
            stop,
            thread: Some(thread),
            unavailable: None,
        }
    }

    fn finish(mut self, t0: DateTime<Utc>, t_end: f64, rpo: Option<f64>) -> report::ReplicationLag {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let samples: Vec<report::LagSample> = self
            .samples
            .lock()
            .expect("samples")
            .iter()
            .map(|(at, s)| report::LagSample {
                at_secs: (*at - t0).num_milliseconds() as f64 / 1000.0,
                ..s.clone()
            })
            .collect();
        if let Some(why) = self.unavailable {
            return report::ReplicationLag {
                unavailable: Some(why),
                ..Default::default()
            };
        }
        let before = samples.iter().rev().find(|s| s.at_secs <= 0.0).map(|s| s.lag_secs);
        let during: Vec<f64> = samples
            .iter()
            .filter(|s| s.at_secs > 0.0 && s.at_secs <= t_end)
            .map(|s| s.lag_secs)
            .collect();
        let after = samples.last().filter(|s| s.at_secs >= t_end).map(|s| s.lag_secs);
        let max_during = during
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let first_seq = samples.first().map(|s| s.last_seq).unwrap_or(0);
        let last_seq = samples.last().map(|s| s.last_seq).unwrap_or(0);
        let exceeded = rpo.is_some_and(|o| samples.iter().any(|s| s.lag_secs > o));
        report::ReplicationLag {
            before_secs: before,
            max_during_secs: max_during,
            after_secs: after,
            points_during: last_seq.saturating_sub(first_seq),
            exceeded_rpo: exceeded,
            samples,
            unavailable: if before.is_none() && during.is_empty() {
                Some("the receiver reported no point of the group".into())
            } else {
                None
            },
        }
    }
}

/// How much a drill yields the CPU to production (nice value of the drill's
/// threads and of the processes it starts): production and its replication go
/// first, the drill's restores and checks take what is left.
pub const DRILL_NICE: i32 = 10;

/// Runs a drill and writes its report.
pub fn run(opts: &DrillOptions, config_flag: Option<&std::path::Path>) -> Result<DrillOutcome> {
    // Before any thread exists, so that every one the drill starts inherits it.
    if let Err(e) = rustix::process::setpriority_process(None, DRILL_NICE) {
        tracing::warn!(error = %e, "could not lower the drill's priority");
    }
    let (config, config_file, config_text) = Config::load_with_text(config_flag)?;
    let text = std::fs::read_to_string(&opts.runbook)
        .with_context(|| format!("read runbook {} (check the path)", opts.runbook.display()))?;
    let rb = crate::runbook::load_checked(&opts.runbook, Some(&text), &config)?;
    let group = config.group(&rb.group.value).cloned().unwrap_or_default();
    let objectives = report::Objectives {
        rpo_secs: group.rpo.as_deref().and_then(secs_of),
        rto_secs: group.rto.as_deref().and_then(secs_of),
    };
    let interval = group
        .drill_interval
        .as_deref()
        .map(|d| crate::runbook::parse_duration(d).map_err(anyhow::Error::msg))
        .transpose()
        .context("drill_interval of the group")?
        .unwrap_or(Duration::from_secs(30 * 86_400));
    let state = opts.planner.state_dir(&config);
    let catalog = PlannerCatalog::open(&state)?;
    let audit = AuditLog::open(catalog.dir())?;
    let key = crate::audit::signing_key(catalog.dir())?;
    let id = crate::engine::new_run_id(Mode::Drill);
    let sandbox = planner_dir(&state).join("runs").join(&id);
    std::fs::create_dir_all(&sandbox).with_context(|| format!("create the sandbox {}", sandbox.display()))?;
    let ports = free_ports(rb.ports.keys().cloned())?;
    let netns = if opts.netns {
        SandboxNetns::create(&id).map_err(|why| format!("no network namespace for the sandbox: {why}"))
    } else {
        Err("no network namespace for the sandbox: --no-netns".to_string())
    };
    let netns_name = netns.as_ref().ok().map(|n| n.name.clone());
    // T0, the simulated disaster. The lag watch takes its "before" sample first;
    // without --point the drill recovers the newest point taken at or before T0
    // (a point committed later did not exist when the disaster struck).
    let watch = LagWatch::start(&config, &rb.group.value, opts.lag_every);
    let t0 = Utc::now();
    let point = opts
        .point
        .clone()
        .unwrap_or_else(|| t0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let p: Plan = plan::plan(
        &rb,
        &config,
        &PlanOptions {
            mode: Mode::Drill,
            point: Some(point),
            run_id: id.clone(),
            run_dir: sandbox.clone(),
            ports,
            bin: crate::plan::this_binary(),
            netns: netns_name.clone(),
        },
    )
    .map_err(anyhow::Error::msg)?;
    std::fs::write(sandbox.join("plan.txt"), plan::render_text(&p))?;
    let mut record = crate::engine::new_record(&p, text, config_file, config_text, opts.planner.operator.clone());
    // The run starts at T0 (check.workload measures the application's loss against it).
    record.started_at = t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, shared, plan) = crate::engine::execute_run(
        crate::engine::Prepared {
            record,
            plan: p,
            config: config.clone(),
            catalog,
            audit,
        },
        crate::engine::Driving {
            operator: opts.planner.operator.clone(),
            parallel: opts.parallel,
            resumed: false,
            observer: opts.observer.clone(),
        },
    )?;
    let t_end = (Utc::now() - t0).num_milliseconds() as f64 / 1000.0;
    let lag = watch.finish(t0, t_end, objectives.rpo_secs);
    let rec: RunRecord = shared.record.lock().expect("record").clone();

    // The sandbox goes, whatever happened (its processes first).
    let mut torn_down = vec![if crate::sandbox::in_private_mount_namespace() {
        "the steps ran in the drill's own mount namespace (their mounts go with it)".to_string()
    } else {
        "the steps ran in the host's mount namespace (not root, or no unshare)".to_string()
    }];
    // What the run tore down itself (instant promotes: mounts, server, overlay).
    torn_down.extend(rec.teardown.iter().cloned());
    for p in rec.processes.iter().filter(|p| !p.stopped) {
        match crate::engine::process::stop(p, Duration::from_secs(10), None) {
            Ok(()) => torn_down.push(format!("stopped process {} of step {}", p.pid, p.step)),
            Err(e) => torn_down.push(format!("{e:#}")),
        }
    }

    let rel = |t: &Option<String>| {
        t.as_deref()
            .and_then(parse_time)
            .map(|x| (x - t0).num_milliseconds() as f64 / 1000.0)
    };
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    let mut all_checks_green = true;
    let mut last_check_end: Option<f64> = None;
    for id in plan.levels.iter().flatten() {
        let ps = plan.step(id).expect("planned");
        let s = &rec.steps[id];
        let excerpt: String = s
            .error
            .clone()
            .or(s.note.clone())
            .or_else(|| (!s.outputs.is_empty()).then(|| format!("{:?}", s.outputs)))
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        steps.push(report::StepTiming {
            id: id.clone(),
            action: ps.action.clone(),
            status: s.status.as_str().into(),
            start_secs: rel(&s.started_at),
            end_secs: rel(&s.ended_at),
            started_at: s.started_at.clone(),
            ended_at: s.ended_at.clone(),
            excerpt,
        });
        if ps.action.starts_with("check.") && s.status != StepStatus::Skipped {
            let passed = s.status == StepStatus::Succeeded;
            all_checks_green &= passed;
            if passed {
                last_check_end = match (last_check_end, rel(&s.ended_at)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            let mut evidence = s.outputs.clone();
            for (k, v) in &ps.params {
                evidence.entry(format!("param.{k}")).or_insert_with(|| v.to_string());
            }
            checks.push(report::CheckEvidence {
                step: id.clone(),
                action: ps.action.clone(),
                passed,
                evidence,
            });
        }
    }
    let promoted = plan
        .steps
        .iter()
        .filter(|s| s.action == "volume.promote")
        .filter_map(|s| rec.steps.get(&s.id))
        .find(|s| s.status == StepStatus::Succeeded)
        .map(|s| s.outputs.clone());
    let point = promoted.as_ref().and_then(|o| {
        Some(report::PointRef {
            seq: o.get("seq")?.parse().ok()?,
            taken_at: o.get("taken_at")?.clone(),
        })
    });
    let volumes = promoted
        .as_ref()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("path.")?;
                    Some(report::VolumeEvidence {
                        name: name.into(),
                        path: v.clone(),
                        point_hash: o.get(&format!("hash.{name}")).cloned().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let promote = promote_evidence(&plan, &rec, &rel);
    let rpo = point
        .as_ref()
        .and_then(|p| parse_time(&p.taken_at))
        .map(|t| (t0 - t).num_milliseconds() as f64 / 1000.0);
    // RTO is T0 → every check green: measured when every check passed, even if
    // the run was interrupted or a later step failed (without checks, only a
    // run that finished measures it: to its end).
    let rto = if status == RunStatus::Succeeded && checks.is_empty() {
        Some(t_end)
    } else if all_checks_green && !checks.is_empty() {
        last_check_end
    } else {
        None
    };
    let data_loss = plan
        .steps
        .iter()
        .filter(|s| s.action == "check.workload")
        .filter_map(|s| rec.steps.get(&s.id))
        .find(|s| s.status == StepStatus::Succeeded)
        .and_then(|s| {
            let o = &s.outputs;
            Some(report::DataLoss {
                records: o.get("lost_records")?.parse().ok()?,
                seconds: o.get("lost_secs")?.parse().ok()?,
                last_record: o.get("last_seq").and_then(|x| x.parse().ok()),
                corrupt_records: o.get("corrupt_records").and_then(|x| x.parse().ok()).unwrap_or(0),
            })
        });
    let achieved = report::Achieved {
        rpo_secs: rpo,
        rto_secs: rto,
        data_loss,
    };
    let (mut verdict, mut reasons) = report::verdict(
        status == RunStatus::Succeeded,
        &objectives,
        &achieved,
        &lag,
        checks.len(),
    );
    if status == RunStatus::Aborted && rec.preempted_by.is_none() {
        // Stopped by Ctrl-C, SIGTERM or `lifeline abort`, not by a failing step.
        verdict = report::Verdict::Failed;
        reasons.retain(|r| !r.starts_with("the drill run did not complete"));
        reasons.insert(
            0,
            "the drill was interrupted (Ctrl-C, SIGTERM or `lifeline abort`) before it finished".to_string(),
        );
    }
    if let Some(by) = &rec.preempted_by {
        // Not a failed step: a recovery took the planner. Still no proof.
        verdict = report::Verdict::Failed;
        reasons.retain(|r| !r.starts_with("the drill run did not complete"));
        reasons.insert(
            0,
            format!("preempted by {by}: a recovery run needed the planner, so the drill stopped before it finished"),
        );
    }
    let next_due = t0 + chrono::Duration::from_std(interval).unwrap_or_default();
    let mut report = DrillReport {
        schema: report::SCHEMA.into(),
        version: report::SCHEMA_VERSION,
        drill_id: id.clone(),
        runbook: report::RunbookRef {
            name: plan.runbook.clone(),
            file: plan.file.display().to_string(),
            digest: plan.digest.clone(),
        },
        group: plan.direction.group.clone(),
        tenant: plan.direction.tenant.clone(),
        disaster_at: t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        point,
        objectives,
        achieved,
        verdict,
        reasons,
        preempted_by: rec.preempted_by.clone(),
        steps,
        checks,
        volumes,
        promote,
        replication_lag: lag,
        environment: report::Environment {
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .into(),
            os: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| format!("Linux {}", r.trim()))
                .unwrap_or_else(|_| std::env::consts::OS.into()),
            lifeline_version: env!("CARGO_PKG_VERSION").into(),
            sandbox: sandbox.display().to_string(),
            network_namespace: plan.netns.clone(),
            ports: plan.ports.clone(),
            teardown: Vec::new(),
            leftovers: Vec::new(),
        },
        operator: opts.planner.operator.clone(),
        user: crate::audit::os_user(),
        sign_off: report::SignOff {
            prepared_by: format!(
                "lifeline drill ({})",
                opts.planner.operator.clone().unwrap_or_else(crate::audit::os_user)
            ),
            ..Default::default()
        },
        next_drill_due: next_due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        audit_head: rec.audit_head.clone(),
    };
    match netns {
        Ok(ns) => {
            torn_down.push(format!("removed network namespace {}", ns.name));
            drop(ns);
        }
        Err(why) => torn_down.push(why),
    }
    // What the run mounted under the sandbox goes first (deepest first), then
    // the directory, never crossing into a filesystem that is still mounted.
    // With --keep the sandbox is kept as the run left it (mounts made in the
    // drill's own mount namespace still go with the namespace).
    if !opts.keep {
        let t = Sandbox::new(&sandbox).tear_down(true);
        torn_down.extend(t.done);
        let leftovers: Vec<String> = t.leftovers.iter().map(|l| l.to_string()).collect();
        if !leftovers.is_empty() {
            report.verdict = report::Verdict::Failed;
            let mut reasons = leftovers.clone();
            reasons.append(&mut report.reasons);
            report.reasons = reasons;
        }
        report.environment.leftovers = leftovers;
    }
    report.environment.teardown = torn_down.clone();
    shared.transition(
        "sandbox_torn_down",
        None,
        Some(
            torn_down
                .iter()
                .chain(report.environment.leftovers.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None,
        |_| {},
    )?;
    report.audit_head = shared.record.lock().expect("record").audit_head.clone();
    let dir = opts.report_dir.join(&id);
    let digest = report::write(&dir, &report, &key)?;
    // The manifest's digest goes on the chain, typed: `report verify
    // --audit-log` finds it there (see FORMAT.md).
    let on_chain = crate::audit::ReportDigest {
        drill_id: id.clone(),
        manifest_blake3: digest.clone(),
        dir: dir.display().to_string(),
        verdict: report.verdict,
    };
    shared.transition_with(
        crate::audit::REPORT_WRITTEN,
        None,
        Some(format!(
            "{} manifest BLAKE3 {digest} verdict {}",
            dir.display(),
            report.verdict.label()
        )),
        None,
        Some(("report", serde_json::to_value(&on_chain).expect("serialisable"))),
        |_| {},
    )?;
    shared.catalog().save_drill(&DrillSummary {
        version: 1,
        id: id.clone(),
        group: report.group.clone(),
        runbook: report.runbook.name.clone(),
        disaster_at: report.disaster_at.clone(),
        rpo_secs: report.achieved.rpo_secs,
        rto_secs: report.achieved.rto_secs,
        rpo_objective_secs: report.objectives.rpo_secs,
        rto_objective_secs: report.objectives.rto_secs,
        verdict: report.verdict,
        report_dir: dir.canonicalize().unwrap_or(dir.clone()),
        next_drill_due: report.next_drill_due.clone(),
    })?;
    Ok(DrillOutcome {
        report,
        report_dir: dir.canonicalize().unwrap_or(dir),
        status,
        sandbox,
    })
}

/// How the run's (first successful) `volume.promote` went: instant or full,
/// and for an instant one the service start and the hydration, in seconds
/// after T0 (`rel`).
fn promote_evidence(
    plan: &Plan,
    rec: &RunRecord,
    rel: &dyn Fn(&Option<String>) -> Option<f64>,
) -> Option<report::PromoteEvidence> {
    let (id, s) = plan
        .steps
        .iter()
        .filter(|s| s.action == "volume.promote")
        .filter_map(|s| rec.steps.get(&s.id).map(|r| (&s.id, r)))
        .find(|(_, r)| r.status == StepStatus::Succeeded)?;
    let instant = s.outputs.get("instant").is_some_and(|v| v == "true");
    let hydration: Vec<report::HydrationEvidence> = rec
        .hydrations
        .iter()
        .filter(|h| &h.step == id)
        .map(|h| report::HydrationEvidence {
            volume: h.volume.clone(),
            target: h.target.display().to_string(),
            size: h.size,
            copied: h.copied,
            state: serde_json::to_value(h.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            end_secs: if h.state == crate::engine::instant::HydrationState::Done {
                rel(&h.ended_at)
            } else {
                None
            },
        })
        .collect();
    let hydration_end_secs = if !hydration.is_empty() && hydration.iter().all(|h| h.end_secs.is_some()) {
        hydration.iter().filter_map(|h| h.end_secs).reduce(f64::max)
    } else {
        None
    };
    Some(report::PromoteEvidence {
        step: id.clone(),
        instant,
        service_start_secs: rel(&s.ended_at),
        hydration_end_secs,
        hydration,
    })
}
