//! Running the real `lifeline` binary: to completion ([`run`]), or in the
//! background ([`Background`]) with its output drained by threads and every
//! wait bounded by a deadline.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{BIN, Run, poll_until};

/// The variables `lifeline agent` reads its options from (besides
/// LIFELINE_STATE_DIR), which a test sets only on purpose.
const AGENT_VARIABLES: [&str; 11] = [
    "LIFELINE_REPO",
    "LIFELINE_TLS_DIR",
    "LIFELINE_IDENTITY",
    "LIFELINE_KEY_FILE",
    "LIFELINE_INTERVAL",
    "LIFELINE_RETRY_FOR",
    "LIFELINE_LIMIT_UPLOAD",
    "LIFELINE_CONTROL",
    "LIFELINE_FREEZE",
    "LIFELINE_THAW",
    "LIFELINE_BLOCK_MAP",
];

/// `lifeline ARGS` with an environment that cannot leak into the test: no
/// passphrase, no state dir default, no config file or agent options from the
/// environment, default logging.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("LIFELINE_PASSPHRASE")
        .env_remove("LIFELINE_STATE_DIR")
        .env_remove("LIFELINE_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for v in AGENT_VARIABLES {
        c.env_remove(v);
    }
    c
}

/// Runs `lifeline ARGS` to completion.
pub fn run(args: &[&str]) -> Run {
    run_env(args, &[])
}

/// Runs `lifeline ARGS` with extra environment variables.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("spawn lifeline");
    Run::from_output(args.join(" "), out)
}

/// Spawns `lifeline ARGS` with piped output.
pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lifeline")
}

/// Waits for a spawned `lifeline`.
pub fn finish(child: Child, args: &[&str]) -> Run {
    Run::from_output(args.join(" "), child.wait_with_output().expect("wait for lifeline"))
}

/// A `lifeline` process in the background (a receiver, an agent). Two threads
/// drain its pipes, so it never blocks on a full one: stdout lines arrive on a
/// channel (read them with [`wait_for_line`](Self::wait_for_line), with a
/// deadline), stderr is collected whole. Killed on drop.
pub struct Background {
    pub args: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Stdout lines received so far.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Background {
    /// Spawns `lifeline ARGS` with piped output.
    pub fn spawn(args: &[&str]) -> Background {
        Self::start(spawn(args), args)
    }

    /// Spawns `lifeline ARGS` in the working directory `dir`, with extra
    /// environment variables.
    pub fn spawn_in(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Background {
        let mut c = command(args);
        c.current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        Self::start(c.spawn().expect("spawn lifeline"), args)
    }

    fn start(mut child: Child, args: &[&str]) -> Background {
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }),
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink
                            .lock()
                            .expect("stderr")
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            }),
        ];
        Background {
            args: args.join(" "),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the stdout lines that arrived so far without waiting.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits up to `timeout` for the next stdout line that satisfies `pred`
    /// (earlier lines are kept in [`stdout`](Self::stdout)). `None` when the
    /// deadline passes or stdout closes (the process ended) first.
    pub fn wait_for_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits up to `timeout` for the stdout line that starts with `prefix`
    /// (`metrics listening on `) and returns the rest of it, trimmed; panics
    /// when none comes.
    #[track_caller]
    pub fn value_after(&mut self, timeout: Duration, prefix: &str) -> String {
        let line = self
            .wait_for_line(timeout, |l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}…`: {}", self.describe()));
        line.trim_start_matches(prefix).trim().to_string()
    }

    /// The address a daemon serves metrics on (its `metrics listening on`
    /// line, within 20 s).
    #[track_caller]
    pub fn metrics_address(&mut self) -> String {
        self.value_after(Duration::from_secs(20), "metrics listening on ")
    }

    /// The `run` of the JSON event that says `step` started (waits up to
    /// `timeout` for it).
    #[track_caller]
    pub fn started_run(&mut self, timeout: Duration, step: &str) -> String {
        let needle = format!("\"{step}\"");
        let line = self
            .wait_for_line(timeout, |l| l.contains("\"step_started\"") && l.contains(&needle))
            .unwrap_or_else(|| panic!("step `{step}` never started: {}", self.describe()));
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["run"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Stdout so far.
    pub fn stdout(&mut self) -> String {
        self.drain();
        self.seen.join("\n")
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// What the process printed, for failure messages.
    pub fn describe(&mut self) -> String {
        let stdout = self.stdout();
        format!(
            "`lifeline {}`\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            self.args,
            self.stderr()
        )
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) with kill(1).
    #[track_caller]
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{sig} {pid} failed");
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Polls for the exit status until `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.try_status();
            status.is_some()
        });
        status
    }

    /// Waits up to `timeout` for the process to end (kills it and fails the test
    /// after that) and returns what it printed.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Run {
        let Some(status) = self.wait_exit(timeout) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("still running after {timeout:?}, killed: {}", self.describe());
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.drain();
        Run {
            args: self.args.clone(),
            code: status.code(),
            stdout: self.seen.join("\n"),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
