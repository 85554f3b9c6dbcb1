//! Commands a test runs to completion: the outcome of one `lifeline` run with
//! assertions on it, any other program through [`sh`], and what a test asks
//! before it starts (is this root, is that program installed).

use std::process::{Command, Output};

use serde_json::Value;

/// The outcome of one `lifeline` run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The arguments, for failure messages.
    pub args: String,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The run of `lifeline ARGS` that produced `out`.
    pub fn from_output(args: String, out: Output) -> Run {
        Run {
            args,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command, its exit code and everything it printed.
    pub fn describe(&self) -> String {
        format!(
            "`lifeline {}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "expected success: {}", self.describe());
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "expected exit code {code}: {}", self.describe());
        self
    }

    /// Asserts the exit code and that stderr holds every needle.
    #[track_caller]
    pub fn fails(self, code: i32, needles: &[&str]) -> Run {
        self.code(code).stderr_has(needles)
    }

    /// Asserts that stderr holds every needle.
    #[track_caller]
    pub fn stderr_has(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}: {}", self.describe());
        }
        self
    }

    /// Asserts that stdout holds every needle.
    #[track_caller]
    pub fn stdout_has(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(self.stdout.contains(n), "stdout lacks {n:?}: {}", self.describe());
        }
        self
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

/// The JSON events a `--json` command printed, one a line (other lines skipped).
pub fn events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Runs `program ARGS` to completion: its stdout, or `Err` naming the command,
/// its status and what it printed.
pub fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}: {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` is an executable file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// True when the tests run as root (the root-only fixtures: loop devices,
/// tmpfs mounts, network namespaces).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_returns_stdout_or_says_what_failed() {
        assert_eq!(sh("sh", &["-c", "echo hi"]).unwrap(), "hi\n");
        let e = sh("sh", &["-c", "echo out; echo err >&2; exit 3"]).unwrap_err();
        assert!(
            e.contains("exit status: 3") && e.contains("out") && e.contains("err"),
            "{e}"
        );
        assert!(sh("no-such-program-here", &[]).is_err());
    }

    #[test]
    fn programs_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-here"));
    }

    #[test]
    fn events_skip_what_is_not_json() {
        let ev = events("{\"event\":\"a\"}\nplain text\n{\"event\":\"b\"}\n");
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1]["event"], "b");
    }
}
