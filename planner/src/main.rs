//! The `lifeline` command: a thin layer over the planner and replicator libraries.
//!
//! Exit codes: 0 success; 1 a check failed (verify found damage, a restored volume
//! did not match its point); 2 an error (the message says what to do); 130
//! interrupted.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lifeline_service::ensure_crypto_provider();
    let cli = lifeline_planner::cli::Cli::parse();
    lifeline_planner::cli::init_logging();
    match lifeline_planner::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", lifeline_planner::cli::error_message(&e));
            lifeline_planner::cli::exit_code_for(&e)
        }
    }
}
