//! `lifeline testbed up|status|fault|down|proxy` and the hidden `lifeline
//! workload run|pause|resume|status|check`: thin wrappers over the testbeds
//! library, which holds every behaviour (and is what the e2e suite drives).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lifeline_testbeds::{
    CheckOptions, Fault, Flavour, Impairment, ImpairmentProxy, ObjectDamage, Testbed, TestbedSpec, Workload,
    WorkloadOptions, check_volume, default_durable_log, describe, http_call, parse_duration, parse_rate, parse_size,
    serve_http,
};

use crate::cli::{FaultCommand, ProxyArgs, TestbedCommand, TestbedUpArgs, WorkloadCommand, WorkloadRunArgs};

pub fn testbed(c: TestbedCommand) -> Result<ExitCode> {
    match c {
        TestbedCommand::Up(a) => up(&a),
        TestbedCommand::Status { dir, json } => {
            let tb = Testbed::load(&dir)?;
            let v = tb.status_json();
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Fault(a) => {
            let mut tb = Testbed::load(&a.dir)?;
            let fault = fault_of(&a.fault)?;
            let out = tb.fault(&fault)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}: {}", out.fault, out.detail);
            }
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Down { dir } => {
            let started = std::time::Instant::now();
            Testbed::down_dir(&dir)?;
            println!(
                "testbed in {} is down ({:.2} s)",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Proxy(a) => proxy(&a),
    }
}

fn up(a: &TestbedUpArgs) -> Result<ExitCode> {
    let bin = std::env::current_exe().context("find the lifeline binary")?;
    let mut spec = TestbedSpec::new(&a.dir, &bin);
    if a.netns {
        spec.flavour = Flavour::Netns;
    }
    if let Some(l) = &a.latency {
        spec.latency = parse_duration(l)?;
    }
    if let Some(j) = &a.jitter {
        spec.jitter = parse_duration(j)?;
    }
    spec.rate = a.rate.as_deref().map(parse_rate).transpose()?;
    spec.stall_every = a.stall_every.as_deref().map(parse_duration).transpose()?;
    spec.stall_for = parse_duration(&a.stall_for)?;
    spec.loss_percent = a.loss.unwrap_or(0.0);
    spec.interval = parse_duration(&a.interval)?;
    let started = std::time::Instant::now();
    let tb = Testbed::up(&spec)?;
    let v = tb.status_json();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "testbed {} is up in {} ({:.2} s)",
            tb.state.id,
            tb.state.dir.display(),
            started.elapsed().as_secs_f64()
        );
        print_status(&v);
        println!("configuration: {}", tb.state.paths.config.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(v: &serde_json::Value) {
    let str_of = |v: &serde_json::Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    println!(
        "testbed {} ({}) in {}",
        str_of(&v["id"]),
        str_of(&v["flavour"]),
        str_of(&v["dir"])
    );
    if let Some(sites) = v["sites"].as_object() {
        for (name, s) in sites {
            let ns = s["namespace"]
                .as_str()
                .map(|n| format!(" (namespace {n})"))
                .unwrap_or_default();
            println!("  site {name:<9} receiver {}{ns}", str_of(&s["receiver_url"]));
        }
    }
    let l = &v["link"];
    println!(
        "  link {} latency {} ms, jitter {} ms, rate {}, stalls {}, loss {}%",
        str_of(&l["state"]),
        l["latency_ms"],
        l["jitter_ms"],
        l["rate_bytes_per_sec"]
            .as_u64()
            .map(|r| format!("{:.1} Mbit/s", r as f64 * 8.0 / 1e6))
            .unwrap_or_else(|| "unlimited".into()),
        l["stall_every_ms"]
            .as_u64()
            .map(|e| format!("{} ms every {} ms", l["stall_for_ms"], e))
            .unwrap_or_else(|| "none".into()),
        l["loss_percent"]
    );
    if let Some(p) = v["proxy"].as_object() {
        println!(
            "  proxy {}: {} connections open, {} bytes up, {} bytes down",
            str_of(&l["proxy_url"]),
            p["connections"],
            p["bytes_up"],
            p["bytes_down"]
        );
    }
    if let Some(procs) = v["processes"].as_object() {
        for (name, p) in procs {
            println!(
                "  {name:<19} pid {:<8} {:<8} {}",
                p["pid"],
                if p["running"].as_bool() == Some(true) {
                    "running"
                } else {
                    "STOPPED"
                },
                str_of(&p["address"])
            );
        }
    }
}

fn fault_of(f: &FaultCommand) -> Result<Fault> {
    Ok(match f {
        FaultCommand::Cut => Fault::Cut,
        FaultCommand::Heal => Fault::Heal,
        FaultCommand::Reset => Fault::Reset,
        FaultCommand::KillAgent => Fault::KillAgent,
        FaultCommand::RestartAgent => Fault::RestartAgent,
        FaultCommand::KillReceiver { site } => Fault::KillReceiver { site: site.clone() },
        FaultCommand::RestartReceiver { site } => Fault::RestartReceiver { site: site.clone() },
        FaultCommand::FillDisk => Fault::FillDisk,
        FaultCommand::FreeDisk => Fault::FreeDisk,
        FaultCommand::CorruptObject { how } => Fault::CorruptObject(match how.as_str() {
            "truncate" => ObjectDamage::Truncate,
            "delete" => ObjectDamage::Delete,
            _ => ObjectDamage::FlipBits,
        }),
        FaultCommand::Impair {
            latency,
            jitter,
            rate,
            stall_every,
            stall_for,
            loss,
        } => {
            let off_or = |v: &Option<String>, f: &dyn Fn(&str) -> lifeline_testbeds::Result<u64>| -> Result<_> {
                Ok(match v.as_deref() {
                    None => None,
                    Some("off") => Some(None),
                    Some(x) => Some(Some(f(x)?)),
                })
            };
            let stall_every = off_or(stall_every, &|x| parse_duration(x).map(|d| d.as_millis() as u64))?
                .map(|o| o.map(std::time::Duration::from_millis));
            if latency.is_none()
                && jitter.is_none()
                && rate.is_none()
                && stall_every.is_none()
                && stall_for.is_none()
                && loss.is_none()
            {
                bail!("impair: pass at least one of --latency, --jitter, --rate, --stall-every, --stall-for, --loss");
            }
            Fault::Impair {
                latency: latency.as_deref().map(parse_duration).transpose()?,
                jitter: jitter.as_deref().map(parse_duration).transpose()?,
                rate: off_or(rate, &parse_rate)?,
                stall_every,
                stall_for: stall_for.as_deref().map(parse_duration).transpose()?,
                loss_percent: *loss,
            }
        }
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn proxy(a: &ProxyArgs) -> Result<ExitCode> {
    let imp = Impairment {
        latency: parse_duration(&a.latency)?,
        jitter: parse_duration(&a.jitter)?,
        rate: a.rate.as_deref().map(parse_rate).transpose()?,
        stall_every: a.stall_every.as_deref().map(parse_duration).transpose()?,
        stall_for: parse_duration(&a.stall_for)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("listen on {}", a.listen))?;
        let control = match &a.control {
            Some(p) => {
                let _ = std::fs::remove_file(p);
                Some(tokio::net::UnixListener::bind(p).with_context(|| format!("control socket {}", p.display()))?)
            }
            None => None,
        };
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        ImpairmentProxy::new(imp)
            .run(listener, a.upstream.clone(), control, shutdown_signal())
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn workload(c: WorkloadCommand) -> Result<ExitCode> {
    match c {
        WorkloadCommand::Run(a) => workload_run(&a),
        WorkloadCommand::Pause { addr, lease } => {
            let path = match lease {
                Some(l) => format!("/pause?lease={l}"),
                None => "/pause".into(),
            };
            call(&addr, &path)
        }
        WorkloadCommand::Resume { addr } => call(&addr, "/resume"),
        WorkloadCommand::Status { addr } => call(&addr, "/health"),
        WorkloadCommand::Check(a) => {
            let at =
                a.at.as_deref()
                    .map(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .map(|t| t.with_timezone(&chrono::Utc))
                            .with_context(|| format!("--at {t}: write an RFC 3339 time, e.g. 2026-11-25T08:00:00Z"))
                    })
                    .transpose()?;
            let report = check_volume(&CheckOptions {
                volume: a.volume.clone(),
                at,
                durable_log: a.durable_log.clone(),
            })?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", describe(&report));
            }
            Ok(if report.clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn call(addr: &str, path: &str) -> Result<ExitCode> {
    let (code, body) = http_call(addr, "POST", path)?;
    println!("{body}");
    if code != 200 {
        bail!("workload at {addr} answered {code} to {path}");
    }
    Ok(ExitCode::SUCCESS)
}

fn workload_run(a: &WorkloadRunArgs) -> Result<ExitCode> {
    let opts = WorkloadOptions {
        volume: a.volume.clone(),
        size: parse_size(&a.size)?,
        ring: parse_size(&a.ring)?,
        ballast: parse_size(&a.ballast)?,
        durable_log: a.durable_log.clone().unwrap_or_else(|| default_durable_log(&a.volume)),
        write_every: parse_duration(&a.write_every)?,
        fsync_every: parse_duration(&a.fsync_every)?,
        pause_lease: parse_duration(&a.pause_lease)?,
    };
    let w = Workload::open(opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&a.listen))
        .with_context(|| format!("listen on {}", a.listen))?;
    let writer = {
        let w = w.clone();
        std::thread::spawn(move || w.run_writer())
    };
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let ww = w.clone();
    rt.block_on(async {
        // Ends on SIGTERM / Ctrl-C, or when the writer fails (e.g. the disk is gone).
        let writer_done = async {
            while !writer.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = serve_http(ww, listener, shutdown_signal()) => {}
            _ = writer_done => {}
        }
    });
    w.stop();
    match writer.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("workload: writing {} failed: {e}", a.volume.display()),
        Err(_) => bail!("workload: the writer panicked"),
    }
    let last = w.status();
    eprintln!(
        "workload: stopped after record {} (durable up to {})",
        last.last_seq, last.durable_seq
    );
    Ok(ExitCode::SUCCESS)
}
