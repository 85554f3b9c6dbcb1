//! `lifeline bench`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::BenchArgs;

pub fn run(a: &BenchArgs) -> Result<ExitCode> {
    let dir = tempfile::Builder::new().prefix("lifeline-bench-").tempdir()?;
    eprintln!("measuring in {} ...", dir.path().display());
    let stages = lifeline_replicator::bench::run(a.file.as_deref(), dir.path())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stages)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<44} {:>7} {:>10} {:>10}", "STAGE", "THREADS", "MB", "MB/s");
    for s in stages {
        println!(
            "{:<44} {:>7} {:>10.0} {:>10.0}",
            s.stage,
            s.threads,
            s.bytes as f64 / 1e6,
            s.mb_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}
