//! `lifeline serve`: a point's volumes as NBD exports until SIGINT / SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lifeline_replicator::PointSelector;
use lifeline_replicator::serve::{
    Hydration, HydrationProgress, HydrationStatusFile, ServeOptions, Shutdown, open_for_serving,
};

use super::human_bytes;
use crate::cli::ServeArgs;

pub fn run(a: &ServeArgs) -> Result<ExitCode> {
    let point: PointSelector = a.point.parse()?;
    let (target, keys) = super::open_keyed(&a.repo.repo, &a.remote, &a.key_file, a.tenant.as_deref())?;
    let repo = target.tenant_named(a.tenant.as_deref())?;
    // Without --overlay-dir, writes still work, into a directory removed at exit.
    let temp = match (&a.overlay_dir, a.read_only) {
        (None, false) => Some(
            tempfile::Builder::new()
                .prefix("lifeline-overlay-")
                .tempdir()
                .context("create a temporary overlay directory")?,
        ),
        _ => None,
    };
    let overlay_dir = a
        .overlay_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()));
    let served = open_for_serving(
        repo.as_ref(),
        &keys,
        &ServeOptions {
            group: a.group.clone(),
            point,
            volumes: a.volume.clone(),
            overlay_dir: overlay_dir.clone(),
            read_only: a.read_only,
            cache_bytes: a.cache_mib.max(1) << 20,
        },
    )?;
    let mut hydrations = Vec::new();
    for spec in &a.hydrate {
        let Some((name, path)) = spec.split_once('=') else {
            anyhow::bail!("--hydrate {spec}: write VOLUME=PATH");
        };
        let Some(export) = served.server.exports().iter().find(|e| e.name() == name) else {
            anyhow::bail!(
                "--hydrate {spec}: volume `{name}` is not served (served: {})",
                served
                    .volumes
                    .iter()
                    .map(|v| v.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let Some(dir) = overlay_dir.as_ref().filter(|_| !a.read_only) else {
            anyhow::bail!("--hydrate needs writes to reach the target: drop --read-only");
        };
        let rate = a
            .hydrate_rate
            .as_deref()
            .map(lifeline_replicator::units::parse_rate)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--hydrate-rate: {e}"))?
            .unwrap_or(0);
        hydrations.push(Hydration::open(export.clone(), dir, std::path::Path::new(path), rate)?);
    }
    // Progress for programs: hydration.json in the overlay directory, written
    // before the address is printed, so whoever waits for that finds it.
    let status = match (hydrations.is_empty(), &overlay_dir) {
        (false, Some(dir)) => Some(std::sync::Arc::new(HydrationStatusFile::create(
            dir,
            &served.group,
            served.seq,
            served.reads.clone(),
            &hydrations,
        )?)),
        _ => None,
    };
    let listener = TcpListener::bind(&a.listen).with_context(|| {
        format!(
            "listen on {} (give HOST:PORT, e.g. 127.0.0.1:10809, or port 0 for any)",
            a.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::new(&listener)?;
    // Said before the first stdout line, so whoever waits for that line
    // (a script, the tests) finds it already on stderr.
    match (&temp, &overlay_dir) {
        (Some(t), _) => eprintln!(
            "writes go to a temporary overlay in {}, removed at exit: pass --overlay-dir to keep them",
            t.path().display()
        ),
        (None, Some(d)) => eprintln!("writes go to the overlay in {}", d.display()),
        (None, None) => {}
    }
    if let Some(st) = &status {
        eprintln!("hydration status (JSON, about once a second): {}", st.path().display());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on nbd://{addr}")?;
    writeln!(
        out,
        "point {} of group `{}` (taken at {}){}",
        served.seq,
        served.group,
        served.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        if a.read_only { ", read-only" } else { "" }
    )?;
    for ((name, size), blocks) in served.volumes.iter().zip(&served.overlay_blocks) {
        let kept = if *blocks > 0 {
            format!(", {blocks} overlay blocks kept from an earlier run")
        } else {
            String::new()
        };
        writeln!(out, "  export nbd://{addr}/{name}  {}{kept}", human_bytes(*size))?;
    }
    out.flush()?;
    drop(out);

    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let handle = signals.handle();
    let stopper = shutdown.clone();
    let watcher = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopper.trigger();
        }
    });
    let stop = shutdown.stop_flag();
    let workers: Vec<_> = hydrations
        .into_iter()
        .map(|h| {
            let (stop, status) = (stop.clone(), status.clone());
            std::thread::spawn(move || hydrate(&h, &stop, status.as_deref()))
        })
        .collect();
    // Rewrites the status every second while serving: fresh rates, bytes read
    // from the repository, and an `updated_at` that shows the server is alive.
    let ticker = status.clone().map(|st| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut warned, mut last) = (false, std::time::Instant::now());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if last.elapsed() < std::time::Duration::from_secs(1) {
                    continue;
                }
                last = std::time::Instant::now();
                if let Err(e) = st.write()
                    && !std::mem::replace(&mut warned, true)
                {
                    eprintln!("hydration status: cannot write {}: {e}", st.path().display());
                }
            }
        })
    });
    let result = served.server.serve(listener, &shutdown);
    for w in workers {
        let _ = w.join();
    }
    if let Some(t) = ticker {
        let _ = t.join();
    }
    if let Some(st) = &status {
        // The bytes read up to the end.
        let _ = st.write();
    }
    handle.close();
    let _ = watcher.join();
    result.context("NBD server")?;
    println!("stopped; overlay flushed");
    drop(temp);
    Ok(ExitCode::SUCCESS)
}

/// Runs one hydration, its progress on stderr (every 10 %, and when done) and
/// in the status file.
fn hydrate(h: &Hydration, stop: &std::sync::atomic::AtomicBool, status: Option<&HydrationStatusFile>) {
    let (name, path) = (h.export_name().to_string(), h.target_path().display().to_string());
    if h.resumed_from() > 0 {
        eprintln!(
            "hydrate {name}: resuming into {path} at {}",
            human_bytes(h.resumed_from())
        );
    }
    let mut shown = u64::MAX;
    let started = std::time::Instant::now();
    let result = h.run(stop, |p: HydrationProgress| {
        if let Some(st) = status {
            st.progress(&name, &p);
        }
        let tenth = (p.copied * 10).checked_div(p.size).unwrap_or(10);
        if tenth != shown && !p.done {
            shown = tenth;
            eprintln!(
                "hydrate {name}: {} of {} ({} %)",
                human_bytes(p.copied),
                human_bytes(p.size),
                tenth * 10
            );
        }
    });
    if let Some(st) = status
        && let Err(e) = st.finish(&name, result.as_ref().map_err(|e| e.to_string()))
    {
        eprintln!("hydration status: cannot write {}: {e}", st.path().display());
    }
    match result {
        Ok(p) if p.done => eprintln!(
            "hydrated {name} into {path}: {} in {:.1} s; client writes keep reaching it",
            human_bytes(p.size),
            started.elapsed().as_secs_f64()
        ),
        Ok(p) => eprintln!(
            "hydrate {name}: stopped at {} of {}; a restart with the same --overlay-dir resumes there",
            human_bytes(p.copied),
            human_bytes(p.size)
        ),
        Err(e) => {
            tracing::error!(volume = %name, "hydration failed: {e}");
            eprintln!("hydrate {name}: failed: {e}; the export keeps serving; restart to resume");
        }
    }
}
