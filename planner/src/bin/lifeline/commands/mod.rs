//! One function per command. Each returns the process exit code; errors carry
//! their own remedy.

mod backup;
mod bench;
mod drill;
mod key;
mod mount;
mod net;
mod points;
pub(crate) mod prune;
mod repair;
mod restore;
pub mod runbooks;
mod serve;
mod testbed;
mod verify;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, KeyCommand};
use lifeline_planner::repo_target::RepoTarget;
use lifeline_planner::runbook::actions::Mode;

/// Which identity of `[tls]` a command presents to a receiver by default.
enum Presents {
    /// `[tls] identity`: reads (points, status, restore).
    Identity,
    /// `[tls] admin`: the receiver's admin service (prune, gc, verify).
    Admin,
}

/// Fills `--tls-dir` and `--identity` that the command line left out from the
/// configuration's `[tls]`; flags win.
fn tls_from_config(remote: &mut crate::cli::RemoteArgs, config: &lifeline_planner::config::Config, presents: Presents) {
    let Some(tls) = &config.tls else { return };
    if remote.tls_dir.is_none() {
        remote.tls_dir = Some(tls.dir.clone());
    }
    if remote.identity.is_none() {
        remote.identity = match presents {
            Presents::Identity => tls.identity.clone(),
            Presents::Admin => tls.admin.clone(),
        };
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let config = lifeline_planner::config::Config::load(cli.config.as_deref())?;
    configure_s3(&cli.command, &config);
    match cli.command {
        Command::Key(KeyCommand::New { out }) => key::new(&out),
        Command::Init(a) => key::init(&a),
        Command::Backup(a) => backup::run(&a, &config),
        Command::Points(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Identity);
            points::run(&a)
        }
        Command::Restore(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Identity);
            restore::run(&a)
        }
        Command::Serve(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Identity);
            serve::run(&a)
        }
        Command::Mount(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Identity);
            mount::run(&a)
        }
        Command::Verify(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Admin);
            verify::run(&a)
        }
        Command::Bench(a) => bench::run(&a),
        Command::Demo(a) => crate::demo::run(&a),
        Command::Prune(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Admin);
            prune::run(&a, &config)
        }
        Command::Gc(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Admin);
            prune::gc(&a)
        }
        Command::Repair(a) => repair::run(&a),
        Command::Scope(a) => repair::scope(&a),
        Command::Certs(crate::cli::CertsCommand::New(a)) => net::certs_new(&a),
        Command::Receiver(a) => net::receiver(&a, &config),
        Command::Agent(a) => net::agent(&a, &config),
        Command::Daemon(a) => Ok(lifeline_planner::daemon::scheduler::run(&a, cli.config.as_deref())?),
        Command::Status(mut a) => {
            tls_from_config(&mut a.remote, &config, Presents::Identity);
            net::status(&a, &config)
        }
        Command::Control(a) => net::control(&a, &config),
        Command::Plan(a) => runbooks::plan_cmd(&a, &config),
        Command::Failover(a) => runbooks::start_run(Mode::Failover, &a, cli.config.as_deref()),
        Command::Switchover(a) => runbooks::start_run(Mode::Switchover, &a, cli.config.as_deref()),
        Command::Failback(a) => runbooks::start_run(Mode::Failback, &a, cli.config.as_deref()),
        Command::Resume(a) => runbooks::resume(&a, cli.config.as_deref()),
        Command::Runs(a) => runbooks::runs(&a, &config),
        Command::Approve(a) => runbooks::approve(&a, &config),
        Command::Abort(a) => runbooks::abort(&a, &config),
        Command::Audit(crate::cli::AuditCommand::Verify { pubkey, planner, json }) => {
            runbooks::audit_verify(&planner, pubkey.as_deref(), json, &config)
        }
        Command::Drill(a) => drill::run(&a, cli.config.as_deref()),
        Command::Report(crate::cli::ReportCommand::Verify {
            path,
            pubkey,
            audit_log,
            planner,
            json,
        }) => drill::verify(&path, pubkey.as_deref(), audit_log.as_deref(), &planner, json, &config),
        Command::Report(crate::cli::ReportCommand::List { planner, json }) => drill::list(&planner, json, &config),
        Command::Keys(crate::cli::KeysCommand::ShowSigner { planner }) => drill::show_signer(&planner, &config),
        Command::Probe(a) => runbooks::probe(&a),
        Command::Testbed(c) => testbed::testbed(c),
        Command::Workload(c) => testbed::workload(c),
    }
}

/// Tells the replicator how to reach `s3://` repositories: the command's
/// `--state-dir` (else the configuration's, else the default) for the local
/// cache, and the configuration's `[s3]` table (the AWS_* variables fill in
/// what it leaves out).
fn configure_s3(command: &Command, config: &lifeline_planner::config::Config) {
    let flag = match command {
        Command::Init(a) => a.repo.state_dir.as_deref(),
        Command::Backup(a) => a.repo.state_dir.as_deref(),
        Command::Points(a) => a.repo.state_dir.as_deref(),
        Command::Restore(a) => a.repo.state_dir.as_deref(),
        Command::Serve(a) => a.repo.state_dir.as_deref(),
        Command::Mount(a) => a.repo.state_dir.as_deref(),
        Command::Verify(a) => a.repo.state_dir.as_deref(),
        Command::Prune(a) => a.repo.state_dir.as_deref(),
        Command::Gc(a) => a.repo.state_dir.as_deref(),
        Command::Repair(a) => a.state_dir.as_deref(),
        Command::Scope(a) => a.state_dir.as_deref(),
        Command::Receiver(a) => a.state_dir.as_deref(),
        Command::Daemon(a) => a.state_dir.as_deref(),
        _ => None,
    };
    lifeline_replicator::set_s3_context(lifeline_replicator::S3Context {
        state_dir: Some(config.state_dir(flag)),
        settings: config.s3.clone().unwrap_or_default(),
    });
}

pub use lifeline_planner::repo_target::{load_key, passphrase};

/// The start of a listing (`runs`, `drill --list`): with `--json`, prints
/// `items` as JSON; without any, says there are no `what` in `state`. `true`
/// when that is all the listing prints.
fn listed_briefly<T: serde::Serialize>(json: bool, items: &[T], what: &str, state: &std::path::Path) -> Result<bool> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(true);
    }
    if items.is_empty() {
        println!("no {what} in {}", state.display());
        return Ok(true);
    }
    Ok(false)
}

/// Opens the repository (`--repo` with the remote flags) with the key in
/// `key_file`, for `tenant` if one is named: the target and the keys.
fn open_keyed(
    repo: &std::path::Path,
    remote: &crate::cli::RemoteArgs,
    key_file: &std::path::Path,
    tenant: Option<&str>,
) -> Result<(RepoTarget, lifeline_replicator::Keys)> {
    let key = load_key(key_file)?;
    Ok(match tenant {
        None => RepoTarget::open(repo, remote, &key)?,
        Some(t) => RepoTarget::open_tenant(repo, remote, &key, t)?,
    })
}
pub use lifeline_replicator::units::{human_bytes, human_rate as rate};
