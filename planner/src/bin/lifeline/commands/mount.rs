//! `lifeline mount`: a point's volumes (or every point's) as read-only files in
//! a FUSE mount until SIGINT / SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use lifeline_replicator::PointSelector;
use lifeline_replicator::serve::{
    MountOptions, MountPoints, PointMount, Unmounted, check_mount_dir, image_name, open_for_mounting,
};

use super::human_bytes;
use crate::cli::MountArgs;

pub fn run(a: &MountArgs) -> Result<ExitCode> {
    let points = match (&a.point, a.all_points) {
        (Some(_), true) => bail!("--point and --all-points: give one"),
        (Some(p), false) => MountPoints::One(p.parse::<PointSelector>()?),
        (None, false) => MountPoints::One(PointSelector::Latest),
        (None, true) => MountPoints::All,
    };
    // Before the repository is opened: a wrong directory is the cheaper mistake.
    check_mount_dir(&a.dir)?;
    let (target, keys) = super::open_keyed(&a.repo.repo, &a.remote, &a.key_file, a.tenant.as_deref())?;
    let repo = target.tenant_named(a.tenant.as_deref())?;
    let content = open_for_mounting(
        repo.as_ref(),
        &keys,
        &MountOptions {
            group: a.group.clone(),
            points,
            cache_bytes: a.cache_mib.max(1) << 20,
        },
    )?;
    for (seq, e) in &content.skipped {
        eprintln!("warning: point {seq} is not shown: {e}");
    }
    let shown = content.points.clone();

    // Signals are caught before the mount exists, so a stop that comes right
    // after `mounted at` unmounts instead of killing the process.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let handle = signals.handle();
    let mount = PointMount::mount(content, &a.dir)?;
    let stopper = mount.stopper();
    let watcher = std::thread::spawn(move || {
        for _ in signals.forever() {
            stopper.stop();
        }
    });

    let dir = a.dir.display().to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "mounted at {dir}")?;
    for p in &shown {
        writeln!(
            out,
            "point {} of group `{}` (taken at {}), read-only:",
            p.seq,
            a.group,
            p.taken_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )?;
        let under = p.dir.as_ref().map_or(dir.clone(), |d| format!("{dir}/{d}"));
        for (name, size) in &p.volumes {
            writeln!(out, "  {under}/{}  {}", image_name(name), human_bytes(*size))?;
        }
    }
    writeln!(out, "Ctrl-C unmounts (after `umount` of any loop mount of an image)")?;
    out.flush()?;
    drop(out);

    let ended = mount.wait(|busy| eprintln!("{busy}"));
    handle.close();
    let _ = watcher.join();
    match ended? {
        Unmounted::Stopped => println!("unmounted {dir}"),
        Unmounted::FromOutside => println!("{dir} was unmounted from outside; stopped"),
    }
    Ok(ExitCode::SUCCESS)
}
