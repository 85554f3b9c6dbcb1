//! Runbooks built from the steps a test cares about, so that each test shows
//! only what differs: [`Runbook::new`] writes the `[runbook]` table, each
//! [`step`](Runbook::step) one `[[step]]` with its own fields, and the steps
//! most tests share have a name ([`sleeper`](Runbook::sleeper), an
//! [`approval`](Runbook::approval) gate, a passing
//! [`check`](Runbook::check)). What it writes is plain runbook TOML, the
//! format the README documents: a test that is about the format itself writes
//! its TOML out in full.

use std::fs;
use std::path::{Path, PathBuf};

use super::s;

/// A runbook being written.
#[derive(Debug, Clone)]
pub struct Runbook {
    toml: String,
}

impl Runbook {
    /// `[runbook]` named `name` for `group`.
    pub fn new(name: &str, group: &str) -> Runbook {
        Runbook {
            toml: format!("[runbook]\nname = \"{name}\"\ngroup = \"{group}\"\n"),
        }
    }

    /// TOML added verbatim (a `[runbook.ports]` table, say): before the first
    /// step, it belongs to the `[runbook]` table.
    pub fn toml(mut self, toml: &str) -> Runbook {
        self.toml.push_str(toml.trim_end());
        self.toml.push('\n');
        self
    }

    /// A `[[step]]` `id` running `action`, with `fields` (TOML lines such as
    /// `command = "true"` or `after = ["svc"]`).
    pub fn step(self, id: &str, action: &str, fields: &str) -> Runbook {
        self.toml(&format!(
            "[[step]]\nid = \"{id}\"\naction = \"{action}\"\n{}",
            fields.trim()
        ))
    }

    /// A `service.start` of `sleep 600`: a process the run starts and must
    /// stop on rollback, abort or teardown.
    pub fn sleeper(self, id: &str) -> Runbook {
        self.step(id, "service.start", "command = \"sleep\"\nargs = [\"600\"]")
    }

    /// An `approval` gate after `after`, with `fields` more.
    pub fn approval(self, id: &str, after: &[&str], fields: &str) -> Runbook {
        self.step(id, "approval", &format!("{fields}\n{}", after_field(after)))
    }

    /// A `check.command` of `true` after `after`: a check that passes.
    pub fn check(self, id: &str, after: &[&str]) -> Runbook {
        self.step(
            id,
            "check.command",
            &format!("command = \"true\"\n{}", after_field(after)),
        )
    }

    /// A `check.command` of `sh -c SCRIPT` (a TOML basic string: no `"`),
    /// then `fields`.
    pub fn shell(self, id: &str, script: &str, fields: &str) -> Runbook {
        self.step(
            id,
            "check.command",
            &format!("command = \"sh\"\nargs = [\"-c\", \"{script}\"]\n{fields}"),
        )
    }

    /// The TOML.
    pub fn text(&self) -> &str {
        &self.toml
    }

    /// Writes the runbook to `path`; returns the path.
    #[track_caller]
    pub fn write(&self, path: &Path) -> PathBuf {
        fs::write(path, &self.toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// `drill RUNBOOK --config CONFIG --report-dir REPORTS` and `extra`: the
/// arguments of a drill.
pub fn drill_args<'a>(rb: &'a Path, config: &'a Path, reports: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["drill", s(rb), "--config", s(config), "--report-dir", s(reports)];
    args.extend_from_slice(extra);
    args
}

/// `after = ["a", "b"]`, or nothing for no dependencies.
fn after_field(after: &[&str]) -> String {
    if after.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = after.iter().map(|a| format!("\"{a}\"")).collect();
    format!("after = [{}]", ids.join(", "))
}

#[test]
fn a_built_runbook_is_the_toml_it_replaces() {
    let rb = Runbook::new("abort", "app")
        .sleeper("svc")
        .approval("gate", &["svc"], "")
        .check("up", &[]);
    let want = r#"[runbook]
name = "abort"
group = "app"
[[step]]
id = "svc"
action = "service.start"
command = "sleep"
args = ["600"]
[[step]]
id = "gate"
action = "approval"
after = ["svc"]
[[step]]
id = "up"
action = "check.command"
command = "true"
"#;
    assert_eq!(rb.text(), want);
}
