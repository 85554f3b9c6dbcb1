//! Site processes: started detached (so `testbed up` can exit and the process
//! outlives it), inside the site's network namespace when there is one, with
//! stdout and stderr appended to log files; ready when their stdout shows the
//! expected line (polled with a deadline); stopped by pid after checking the pid
//! still runs the command line we started (pids get reused).

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::state::ProcessState;
use crate::error::{Result, TestbedError};

/// How often readiness and exits are polled.
const POLL: Duration = Duration::from_millis(5);

/// The full command line: `ip netns exec NS` in front when in a namespace.
pub fn full_argv(p: &ProcessState) -> Vec<String> {
    let mut argv = Vec::new();
    if let Some(ns) = &p.namespace {
        argv.extend(["ip".to_string(), "netns".into(), "exec".into(), ns.clone()]);
    }
    argv.extend(p.argv.iter().cloned());
    argv
}

/// Starts `p` detached and returns its pid and the stdout length before it
/// started (readiness is looked for after that). A shell forks it into the
/// background and exits, so the process is adopted by init, in a process group
/// of its own, never a child (or zombie) of the caller. `ip netns exec` execs
/// the command, so the pid is the command's.
pub fn spawn_detached(p: &ProcessState) -> Result<(u32, u64)> {
    for f in [&p.stdout, &p.stderr] {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .map_err(|e| TestbedError::io(format!("create log {}", f.display()), e))?;
    }
    let offset = fs::metadata(&p.stdout).map(|m| m.len()).unwrap_or(0);
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$@" </dev/null >>"$LLTB_OUT" 2>>"$LLTB_ERR" & echo $!"#)
        .arg("sh")
        .args(full_argv(p))
        .env("LLTB_OUT", &p.stdout)
        .env("LLTB_ERR", &p.stderr)
        .env_remove("LIFELINE_CONFIG")
        .env_remove("LIFELINE_STATE_DIR")
        .env_remove("LIFELINE_PASSPHRASE")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .output()
        .map_err(|e| TestbedError::io("run sh to start a process", e))?;
    let pid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .map_err(|_| TestbedError::Command {
            command: format!("sh -c … {}", full_argv(p).join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })?;
    tracing::info!(name = %p.name, pid, "started");
    Ok((pid, offset))
}

/// The last lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Waits until stdout (after `offset`) has a line starting with `p.ready`;
/// returns what follows it on that line.
pub fn wait_ready(p: &ProcessState, pid: u32, offset: u64, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(bytes) = fs::read(&p.stdout) {
            let new = String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned();
            if let Some(line) = new.lines().find(|l| l.starts_with(&p.ready)) {
                return Ok(line[p.ready.len()..].trim().to_string());
            }
        }
        if !is_alive(pid) {
            return Err(TestbedError::Exited {
                name: p.name.clone(),
                stderr: tail(&p.stderr, 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(TestbedError::NotReady {
                name: p.name.clone(),
                needle: p.ready.clone(),
                secs: timeout.as_secs(),
                log: p.stdout.clone(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// `/proc/PID/stat` fields after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// True while `pid` runs (a zombie is not running).
pub fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot).
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// True when `pid` runs `p`'s program (so a reused pid is never signalled).
pub fn runs(p: &ProcessState, pid: u32) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // `ip netns exec` execs the program with the same argv.
    args.first() == p.argv.first() && args.get(1) == p.argv.get(1)
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = kill_process(p, sig);
    }
}

/// Waits until none of `pids` runs; false at the deadline.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !is_alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM to every process of `ps` that still runs, SIGKILL to those still
/// running after `grace`; returns when all are gone (or 5 s after the kill).
pub fn stop_all(ps: &[&ProcessState], grace: Duration) {
    let pids: Vec<u32> = ps.iter().filter(|p| runs(p, p.pid)).map(|p| p.pid).collect();
    for &pid in &pids {
        signal(pid, Signal::TERM);
    }
    if !wait_gone(&pids, grace) {
        for &pid in &pids {
            if is_alive(pid) {
                signal(pid, Signal::KILL);
            }
        }
        wait_gone(&pids, Duration::from_secs(5));
    }
}

/// kill -9 of `p`, waiting until it is gone.
pub fn kill9(p: &ProcessState) -> Result<()> {
    if !runs(p, p.pid) {
        return Err(TestbedError::Invalid(format!(
            "{} (pid {}) is not running",
            p.name, p.pid
        )));
    }
    signal(p.pid, Signal::KILL);
    if !wait_gone(&[p.pid], Duration::from_secs(5)) {
        return Err(TestbedError::Invalid(format!(
            "{} (pid {}) still runs 5 s after SIGKILL",
            p.name, p.pid
        )));
    }
    Ok(())
}
