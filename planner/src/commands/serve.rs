//! `lifeline serve`: a point's volumes as NBD exports until SIGINT / SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lifeline_replicator::PointSelector;
use lifeline_replicator::serve::{ServeOptions, Shutdown, open_for_serving};

use super::human_bytes;
use crate::cli::ServeArgs;
use crate::repo_target::RepoTarget;

pub fn run(a: &ServeArgs) -> Result<ExitCode> {
    let point: PointSelector = a.point.parse()?;
    let key = super::load_key(&a.key_file)?;
    let (target, keys) = match &a.tenant {
        None => RepoTarget::open(&a.repo.repo, &a.remote, &key)?,
        Some(t) => RepoTarget::open_tenant(&a.repo.repo, &a.remote, &key, t)?,
    };
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
    let listener = TcpListener::bind(&a.listen).with_context(|| {
        format!(
            "listen on {} (give HOST:PORT, e.g. 127.0.0.1:10809, or port 0 for any)",
            a.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::new(&listener)?;
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
    match (&temp, &overlay_dir) {
        (Some(t), _) => eprintln!(
            "writes go to a temporary overlay in {}, removed at exit: pass --overlay-dir to keep them",
            t.path().display()
        ),
        (None, Some(d)) => eprintln!("writes go to the overlay in {}", d.display()),
        (None, None) => {}
    }

    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let handle = signals.handle();
    let stopper = shutdown.clone();
    let watcher = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopper.trigger();
        }
    });
    let result = served.server.serve(listener, &shutdown);
    handle.close();
    let _ = watcher.join();
    result.context("NBD server")?;
    println!("stopped; overlay flushed");
    drop(temp);
    Ok(ExitCode::SUCCESS)
}
