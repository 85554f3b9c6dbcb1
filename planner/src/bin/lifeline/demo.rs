//! `lifeline demo`: the main job on a fresh machine. A local two-site testbed in
//! a temporary directory (a receiver per site, the sample workload writing, an
//! agent replicating it every second), a drill of the built-in
//! `runbooks/demo.toml` into a sandbox, then the achieved RPO/RTO against the
//! objectives and the signed report. Only `./lifeline-demo/` stays (the report
//! and the signer's public key). `--data-path` runs the earlier tour of the
//! data path alone (back up, change, back up, restore, verify).

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use lifeline_replicator::bench::sample_data;
use lifeline_replicator::{
    BackupOptions, BackupSummary, DEFAULT_TENANT, KeyFile, PointSelector, Repository, RestoreOptions, VerifyOptions,
    backup, restore, verify,
};

use crate::cli::DemoArgs;
use crate::commands::{human_bytes, rate};

/// Overwrites about 1 % of the 4 KiB blocks of `path` with other data, plus one
/// 1 MiB region; returns the bytes overwritten.
pub fn scatter_writes(path: &Path, seed: u64) -> Result<u64> {
    let f = OpenOptions::new().write(true).open(path)?;
    let size = f.metadata()?.len();
    let blocks = size / 4096;
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut written = 0;
    let block: Vec<u8> = (0..4096).map(|i| (i * 7 + seed as usize) as u8).collect();
    for _ in 0..blocks / 100 {
        let b = next() % blocks;
        let mut data = block.clone();
        data[..8].copy_from_slice(&next().to_le_bytes());
        f.write_all_at(&data, b * 4096)?;
        written += 4096;
    }
    let region: Vec<u8> = (0..(1 << 20)).map(|_| next() as u8).collect();
    let at = (next() % blocks.saturating_sub(256).max(1)) * 4096;
    f.write_all_at(&region, at)?;
    written += region.len() as u64;
    f.sync_all()?;
    Ok(written)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn print_backup(label: &str, s: &BackupSummary) {
    println!(
        "  {label:<22} point {} in {:.2} s ({}): {} scanned, {} new after dedup, {} stored after compression, {}/{} segments changed",
        s.seq,
        s.elapsed_secs,
        rate(s.bytes_scanned, s.elapsed_secs),
        human_bytes(s.bytes_scanned),
        human_bytes(s.bytes_new),
        human_bytes(s.bytes_stored),
        s.segments_changed,
        s.segments
    );
}

/// Runs the demo.
/// The runbook the demo drills.
pub const DEMO_RUNBOOK: &str = include_str!("../../../../runbooks/demo.toml");
/// The runbook `lifeline demo --instant` drills.
pub const DEMO_INSTANT_RUNBOOK: &str = include_str!("../../../../runbooks/demo-instant.toml");

/// The cycles the agent reported (`lifeline agent --json`, one object per line).
fn agent_cycles(log: &str) -> Vec<lifeline_service::CycleReport> {
    log.lines()
        .filter_map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v["event"] == "cycle" => serde_json::from_value(v).ok(),
            _ => None,
        })
        .collect()
}

/// Bytes sent over the agent's cycles, and how many cycles.
fn bytes_sent_by_agent(log: &str) -> (u64, u64) {
    let cycles = agent_cycles(log);
    (cycles.iter().map(|c| c.bytes_sent).sum(), cycles.len() as u64)
}

/// Durations of the agent's cycles, in log order.
fn cycle_secs(log: &str) -> Vec<f64> {
    agent_cycles(log).iter().map(|c| c.elapsed_secs).collect()
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (!v.is_empty()).then(|| v[v.len() / 2])
}

pub fn run(a: &DemoArgs) -> Result<ExitCode> {
    if a.data_path {
        return run_data_path(a);
    }
    let t_start = std::time::Instant::now();
    let out = std::env::current_dir()?.join("lifeline-demo");
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let tmp = tempfile::Builder::new().prefix("lifeline-demo-").tempdir()?;
    let bin = std::env::current_exe().context("find this lifeline binary")?;
    let mut spec = lifeline_testbeds::TestbedSpec::new(&tmp.path().join("testbed"), &bin);
    if a.size_mib < 16 {
        bail!(
            "--size-mib {}: the demo's workload volume needs at least 16 MiB (an 8 MiB record ring and ballast)",
            a.size_mib
        );
    }
    spec.volume_size = a.size_mib << 20;
    // Seeded ballast fills half of what the 8 MiB record ring leaves: data to replicate and check.
    spec.ballast = ((a.size_mib - 9) << 20) / 2;
    spec.interval = std::time::Duration::from_secs(1);
    spec.owner = Some(std::process::id());
    // The secondary's repository on the temp directory's disk, not a small tmpfs.
    spec.disk_size = None;
    println!(
        "1. two sites on this machine (local testbed in {})",
        tmp.path().display()
    );
    let tb = lifeline_testbeds::Testbed::up(&spec)
        .context("start the demo's testbed")?
        .guard();
    let config = tb.state.paths.config.clone();
    let agent_log = tb.state.paths.logs.join("agent.out");
    println!(
        "   receivers {} (primary) and {} (secondary); the workload writes records to a {} MiB volume; the agent replicates every 1 s",
        tb.state.sites["primary"].receiver_url, tb.state.sites["secondary"].receiver_url, a.size_mib
    );
    // A few cycles while the workload writes.
    // The first cycle sends the whole volume: allow for large ones.
    let deadline_secs = 60 + a.size_mib / 10;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(deadline_secs);
    loop {
        let (_, cycles) = bytes_sent_by_agent(&fs::read_to_string(&agent_log).unwrap_or_default());
        if cycles >= 3 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let err = fs::read_to_string(tb.state.paths.logs.join("agent.err")).unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            bail!(
                "the demo's agent committed {cycles} points in {} s (log {}): {}",
                deadline_secs,
                agent_log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (sent_before, cycles_before) = bytes_sent_by_agent(&fs::read_to_string(&agent_log).unwrap_or_default());
    println!(
        "2. replicating: {cycles_before} points committed, {} sent",
        human_bytes(sent_before)
    );
    let (name, text) = if a.instant {
        ("demo-instant.toml", DEMO_INSTANT_RUNBOOK)
    } else {
        ("demo.toml", DEMO_RUNBOOK)
    };
    let rb = tmp.path().join(name);
    fs::write(&rb, text)?;
    let cycles_before_drill = cycle_secs(&fs::read_to_string(&agent_log).unwrap_or_default());
    println!("3. drill of runbooks/{name} (disaster declared now; replication goes on)");
    let outcome = lifeline_planner::drill::run(
        &lifeline_planner::drill::DrillOptions {
            runbook: rb,
            point: None,
            report_dir: out.join("reports"),
            keep: false,
            netns: true,
            planner: crate::cli::PlannerArgs {
                state_dir: None,
                operator: Some("demo".into()),
            },
            parallel: 4,
            observer: crate::commands::runbooks::Display::new(false),
            lag_every: std::time::Duration::from_millis(500),
        },
        Some(&config),
    )?;
    let agent_text = fs::read_to_string(&agent_log).unwrap_or_default();
    let (sent, cycles) = bytes_sent_by_agent(&agent_text);
    let all_cycles = cycle_secs(&agent_text);
    // The first cycle sends the whole volume: the steady state is the ones after.
    let before: Vec<f64> = cycles_before_drill.iter().skip(1).copied().collect();
    let during: Vec<f64> = all_cycles.iter().skip(cycles_before_drill.len()).copied().collect();
    // The signer's public key beside the reports, for `report verify --pubkey`.
    let pubkey = out.join("signer.pub");
    fs::copy(tb.state.paths.state_dir.join("planner/planner.pub"), &pubkey).context("copy the signer's public key")?;
    if let Some(addr) = &a.console {
        println!(
            "4. drill {}: {}; the operations console over the demo:",
            outcome.report.drill_id,
            outcome.report.verdict.label()
        );
        crate::demo_console::serve_until_interrupted(&config, &outcome.report_dir, &pubkey, tmp.path(), addr)?;
    }
    tb.down().context("take the demo's testbed down")?;
    drop(tmp);
    let r = &outcome.report;
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into());
    println!();
    println!("drill {}: {}", r.drill_id, r.verdict.label());
    for reason in &r.reasons {
        println!("  - {reason}");
    }
    println!(
        "  RPO achieved {:>7}   objective {}",
        secs(r.achieved.rpo_secs),
        secs(r.objectives.rpo_secs)
    );
    println!(
        "  RTO achieved {:>7}   objective {}",
        secs(r.achieved.rto_secs),
        secs(r.objectives.rto_secs)
    );
    if let Some(p) = r.promote.as_ref().filter(|p| p.instant) {
        println!(
            "  instant promote: services could start at T0 + {}; hydration {}",
            secs(p.service_start_secs),
            match p.hydration_end_secs {
                Some(h) => format!("done at T0 + {h:.1} s, in the background"),
                None => "off or unfinished".into(),
            }
        );
    }
    if let Some(d) = &r.achieved.data_loss {
        println!(
            "  data lost by the application: {} records ({:.2} s of writes), last record {}",
            d.records,
            d.seconds,
            d.last_record.unwrap_or(0)
        );
    }
    let volume_bytes = (a.size_mib << 20) * cycles.max(1);
    println!(
        "  replication: {cycles} points, {} sent for {} of volume scanned (dedup + compression: {:.0}×)",
        human_bytes(sent),
        human_bytes(volume_bytes),
        volume_bytes as f64 / sent.max(1) as f64
    );
    let before = median(&before)
        .map(|s| format!("{s:.2} s"))
        .unwrap_or_else(|| "—".into());
    match median(&during) {
        Some(m) => println!(
            "  agent cycles: median {before} before the drill, {m:.2} s during it ({} cycles)",
            during.len()
        ),
        None => println!(
            "  agent cycles: median {before} before the drill; none ended during it (the agent cycles every {} s)",
            spec.interval.as_secs_f64()
        ),
    }
    println!("  report: {}", outcome.report_dir.join("report.html").display());
    println!(
        "  verify: lifeline report verify {} --pubkey {}",
        outcome.report_dir.display(),
        pubkey.display()
    );
    println!(
        "demo finished in {:.1} s; everything but {} was removed",
        t_start.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(match r.verdict {
        lifeline_planner::report::Verdict::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// The data-path tour (`lifeline demo --data-path`).
pub fn run_data_path(a: &DemoArgs) -> Result<ExitCode> {
    if a.size_mib == 0 || a.size_mib > 64 * 1024 {
        bail!("--size-mib must be between 1 and 65536");
    }
    let tmp = tempfile::Builder::new().prefix("lifeline-demo-").tempdir()?;
    let root = tmp.path().to_path_buf();
    let primary = root.join("site-primary");
    let secondary = root.join("site-secondary");
    fs::create_dir_all(primary.join("volumes"))?;
    fs::create_dir_all(&secondary)?;
    println!("Lifeline demo in {}", root.display());

    // A sample volume: mixed text, random data, zero runs and a sparse tail.
    let size = a.size_mib << 20;
    let vol = primary.join("volumes/app.img");
    fs::write(&vol, sample_data(size as usize, 2026))?;
    let f = OpenOptions::new().write(true).open(&vol)?;
    f.set_len(size + size / 2)?;
    // Flushed now, so the first backup's sync does not pay for writing the sample.
    f.sync_all()?;
    drop(f);
    println!(
        "  sample volume          {} ({} of data, a sparse tail of {})",
        vol.display(),
        human_bytes(size),
        human_bytes(size / 2)
    );

    let key_path = primary.join("tenant.key");
    let key = KeyFile::create(&key_path, None)?;
    let keys = key.keys();
    let repo = Repository::init(&secondary.join("repo"), &keys, DEFAULT_TENANT)?;
    println!(
        "  key                    {} (fingerprint {})",
        key_path.display(),
        keys.fingerprint_hex()
    );
    println!("  repository             {}", repo.path().display());

    let opts = BackupOptions {
        group: "demo".into(),
        volumes: vec![("app".into(), vol.clone())],
        freeze: None,
        thaw: None,
        state_dir: primary.join("state"),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        block_map: false,
    };
    let first = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    print_backup("first backup", &first);
    let again = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    print_backup("unchanged backup", &again);
    let overwritten = scatter_writes(&vol, 99)?;
    let third = backup(&repo.tenant(DEFAULT_TENANT)?, &keys, &opts)?;
    print_backup("after 1% + 1 MiB write", &third);
    println!(
        "  {:<22} {} overwritten, {} stored: {:.2}x",
        "",
        human_bytes(overwritten),
        human_bytes(third.bytes_stored),
        third.bytes_stored as f64 / overwritten as f64
    );

    let target = secondary.join("restored-app.img");
    let r = restore(
        &repo.tenant(DEFAULT_TENANT)?,
        &keys,
        &RestoreOptions {
            group: "demo".into(),
            point: PointSelector::Latest,
            volume: "app".into(),
            target: target.clone(),
            progress: None,
        },
    )?;
    let identical = same_content(&vol, &target).context("compare restored volume")?;
    println!(
        "  restore                point {} in {:.2} s ({}), {} written (sparse), volume hash ok, byte-identical: {}",
        r.seq,
        r.elapsed_secs,
        rate(r.size, r.elapsed_secs),
        human_bytes(r.bytes_written),
        if identical { "yes" } else { "NO" }
    );
    let v = verify(
        &repo,
        &VerifyOptions {
            tenant: DEFAULT_TENANT.into(),
            keys: Some(keys.clone()),
            progress: None,
            repair: false,
        },
    )?;
    println!(
        "  deep verify            {} objects, {} points, {} volume hashes: {}",
        v.objects,
        v.points,
        v.volumes_hashed,
        if v.is_clean() { "clean" } else { "DAMAGE FOUND" }
    );
    if a.keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    if !identical || !v.is_clean() {
        bail!("the demo found a problem: see above");
    }
    println!("demo ok");
    Ok(ExitCode::SUCCESS)
}
