//! The `lifeline` command: a thin layer over the planner and replicator libraries.
//! It parses the command line ([`cli`]), runs one function per command
//! ([`commands`]) and renders what the libraries return; the libraries cannot
//! reach back up here (the compiler forbids it), so every domain rule lives in
//! `lifeline_planner` or `lifeline_replicator`.
//!
//! Exit codes: 0 success; 1 a check failed (verify found damage, a restored volume
//! did not match its point); 2 an error (the message says what to do); 130
//! interrupted.

mod cli;
mod commands;
mod demo;
mod demo_console;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    lifeline_service::ensure_crypto_provider();
    let cli = cli::Cli::parse();
    cli::init_logging();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::error_message(&e));
            cli::exit_code_for(&e)
        }
    }
}
