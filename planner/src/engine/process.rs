//! Processes a run starts (`service.start`): each in its own session with its
//! output in a log file, identified by PID and start time so that stopping it
//! after a planner restart never hits a stranger that reused the PID.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::run_record::TrackedProcess;

/// Why a process could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("open log {}: {source}", log.display())]
    OpenLog {
        log: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("start `{command}` (is it installed and in PATH? cwd {}): {source}", cwd.display())]
    Start {
        command: String,
        cwd: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("invalid pid {0}")]
    InvalidPid(i32),
    #[error("process {pid} of step `{step}` survived SIGKILL")]
    SurvivedKill { pid: i32, step: String },
}

type Result<T, E = ProcessError> = std::result::Result<T, E>;

/// The fields of a /proc/PID/stat line from field 3 (the state) on: the
/// command name (field 2) may hold spaces and parentheses, so they are the
/// words after its last ')'. Field N of proc(5) is at index N - 3.
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// Start time of `pid` in clock ticks since boot, if it is alive (and not a zombie).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Field 22 overall; here index 22 - 3.
    fields.get(19)?.parse().ok()
}

/// Is the tracked process still the one we started, and alive?
pub fn alive(p: &TrackedProcess) -> bool {
    start_ticks(p.pid) == Some(p.start_ticks)
}

/// Spawns `command` in its own session (Ctrl-C of the planner does not reach
/// it, and it outlives the planner), stdout and stderr appended to `log`.
pub fn spawn(
    command: &str,
    args: &[String],
    env: &[(String, String)],
    cwd: &Path,
    log: &Path,
) -> Result<(std::process::Child, u64)> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcessError::OpenLog {
            log: log.to_path_buf(),
            source,
        })?;
    let err = out.try_clone()?;
    let mut cmd = std::process::Command::new(command);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    cmd.process_group(0);
    let child = cmd.spawn().map_err(|source| ProcessError::Start {
        command: command.to_string(),
        cwd: cwd.to_path_buf(),
        source,
    })?;
    let pid = child.id() as i32;
    let ticks = start_ticks(pid).unwrap_or(0);
    Ok((child, ticks))
}

/// Stops a tracked process group: SIGTERM, then SIGKILL after `grace`. Returns
/// once it is gone. A process that is no longer ours is left alone.
pub fn stop(p: &TrackedProcess, grace: Duration, child: Option<&mut std::process::Child>) -> Result<()> {
    if !alive(p) {
        return Ok(());
    }
    let Some(pid) = Pid::from_raw(p.pid) else {
        return Err(ProcessError::InvalidPid(p.pid));
    };
    let _ = rustix::process::kill_process_group(pid, Signal::TERM);
    let _ = rustix::process::kill_process(pid, Signal::TERM);
    let mut child = child;
    let deadline = Instant::now() + grace;
    loop {
        if let Some(c) = child.as_deref_mut() {
            let _ = c.try_wait();
        }
        if !alive(p) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(p) && Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut() {
            let _ = c.try_wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(p) {
        return Err(ProcessError::SurvivedKill {
            pid: p.pid,
            step: p.step.clone(),
        });
    }
    Ok(())
}
