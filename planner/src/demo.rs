//! `lifeline demo`: a self-contained tour of the data path on a sample volume, in a
//! temporary directory laid out as two sites. Later issues grow it into a full
//! two-site drill.

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
pub fn run(a: &DemoArgs) -> Result<ExitCode> {
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
