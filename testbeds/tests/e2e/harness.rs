//! What every end-to-end case shares: the real `lifeline` binary, a testbed in
//! a temp dir under a guard that takes it down on drop (failure and panic
//! included), commands run on a site (inside its namespace in netns), polling
//! with deadlines, and the final check of every case: restore the latest point
//! committed before a "disaster" instant and check the recovered workload
//! volume against that instant.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeline_testbeds::{
    ADMIN, AGENT, CheckReport, Flavour, GROUP, ProxyCommand, ProxyState, Testbed, TestbedGuard, TestbedSpec, VOLUME,
    check_path,
};
use serde_json::Value;
use tempfile::TempDir;

/// The `lifeline` binary next to this test's target directory.
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/e2e-HASH -> target/<profile>/lifeline
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("lifeline"))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build the binaries first (`cargo build --release --bins`, as .ci/run does)",
        bin.display()
    );
    bin
}

/// True when the netns flavour can run here; prints why not otherwise.
pub fn netns_possible(case: &str) -> bool {
    if !lifeline_testbeds::is_root() {
        eprintln!("SKIP {case}: the netns flavour needs root");
        return false;
    }
    if !lifeline_testbeds::which("ip") {
        eprintln!("SKIP {case}: the netns flavour needs iproute2 (`ip`)");
        return false;
    }
    true
}

pub use lifeline_testkit::Run;

/// Polls `cond` until it holds or `timeout` passes: every 20 ms, as most
/// conditions here run a command.
pub fn poll_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    lifeline_testkit::poll_every(Duration::from_millis(20), timeout, cond)
}

/// A testbed for one case. Fields drop in order: the testbed, then its dir.
pub struct Bed {
    pub tb: TestbedGuard,
    pub dir: TempDir,
}

/// One point as `points --json` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub seq: u64,
    pub taken_at: DateTime<Utc>,
    pub consistency: String,
}

impl Bed {
    /// A testbed of `flavour`, `tune`d, owned by this test process.
    pub fn up(flavour: Flavour, tune: impl FnOnce(&mut TestbedSpec)) -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = TestbedSpec::new(&dir.path().join("tb"), &bin());
        spec.flavour = flavour;
        spec.owner = Some(std::process::id());
        tune(&mut spec);
        let tb = Testbed::up(&spec).unwrap_or_else(|e| panic!("testbed up: {e}")).guard();
        Bed { tb, dir }
    }

    /// `lifeline ARGS` on `site`.
    pub fn lifeline(&self, site: &str, args: &[&str]) -> Run {
        let out = self.tb.command(site, args).output().expect("run lifeline");
        Run::from_output(args.join(" "), out)
    }

    /// `--repo URL --tls-dir TLS --identity ID` for the secondary's receiver.
    pub fn remote(&self, identity: &str) -> Vec<String> {
        let st = &self.tb.state;
        vec![
            "--repo".into(),
            st.sites["secondary"].receiver_url.clone(),
            "--tls-dir".into(),
            st.paths.tls_dir.display().to_string(),
            "--identity".into(),
            identity.into(),
        ]
    }

    fn on_secondary(&self, cmd: &[&str], identity: &str, extra: &[&str]) -> Run {
        let remote = self.remote(identity);
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend(remote.iter().map(String::as_str));
        args.extend(extra);
        self.lifeline("secondary", &args)
    }

    /// `lifeline control … sync-now` as the admin: the agent skips any retry
    /// back-off and returns once a point holding everything written before the
    /// call is committed.
    pub fn sync_now(&self) -> Run {
        let st = &self.tb.state;
        let tls = st.paths.tls_dir.display().to_string();
        self.lifeline(
            "primary",
            &[
                "control",
                "--control",
                &st.agent.control,
                "--agent",
                AGENT,
                "--tls-dir",
                &tls,
                "--identity",
                ADMIN,
                "--json",
                "sync-now",
            ],
        )
    }

    /// The group's committed points on the secondary.
    pub fn points(&self) -> Vec<Point> {
        let r = self
            .on_secondary(&["points"], AGENT, &["--group", GROUP, "--json"])
            .ok();
        r.json()
            .as_array()
            .expect("points --json is an array")
            .iter()
            .map(|p| Point {
                seq: p["seq"].as_u64().expect("seq"),
                taken_at: p["taken_at"].as_str().expect("taken_at").parse().expect("RFC 3339"),
                consistency: p["consistency"].as_str().unwrap_or("").into(),
            })
            .collect()
    }

    /// Waits until the newest point's seq is at least `seq`.
    #[track_caller]
    pub fn wait_point(&self, seq: u64, timeout: Duration) -> Vec<Point> {
        let mut last = Vec::new();
        let ok = poll_until(timeout, || {
            last = self.points();
            last.last().is_some_and(|p| p.seq >= seq)
        });
        assert!(
            ok,
            "no point {seq} within {timeout:?} (have {:?})\n--- agent stdout ---\n{}\n--- agent stderr ---\n{}\n--- secondary receiver stderr ---\n{}",
            last.last(),
            self.log("agent.out"),
            self.log("agent.err"),
            self.log("receiver-secondary.err")
        );
        last
    }

    /// `lifeline status --json` of the group, as the agent's tenant sees it.
    pub fn status(&self) -> Value {
        let r = self.on_secondary(&["status"], AGENT, &["--json"]).ok();
        r.json()
            .as_array()
            .and_then(|a| a.iter().find(|g| g["group"] == GROUP).cloned())
            .expect("the group in status --json")
    }

    /// The no-key scrub of the secondary's repository, as the admin.
    pub fn verify(&self) -> Run {
        self.on_secondary(&["verify"], ADMIN, &[])
    }

    /// A log of the testbed (`agent.err`, `receiver-secondary.out`, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tb.state.paths.logs.join(name)).unwrap_or_default()
    }

    /// The proxy's counters.
    pub fn proxy(&self) -> ProxyState {
        self.tb.proxy(&ProxyCommand::Get).expect("proxy state")
    }

    /// Waits until the agent (`--json` on stdout) reports a failed cycle it
    /// retries whose error holds `needle`, after `from` bytes of its stdout.
    #[track_caller]
    pub fn wait_agent_error(&self, from: usize, needle: &str, timeout: Duration) {
        let ok = poll_until(timeout, || {
            self.log("agent.out").get(from..).is_some_and(|s| {
                s.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .any(|v| v["event"] == "retrying" && v["error"].as_str().is_some_and(|e| e.contains(needle)))
            })
        });
        assert!(
            ok,
            "the agent reported no `{needle}` within {timeout:?}:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.log("agent.out"),
            self.log("agent.err")
        );
    }

    /// Restores `point` of the workload volume to a file on the secondary.
    pub fn restore(&self, point: &str, to: &Path) -> Run {
        let key = self.tb.state.paths.key_file.display().to_string();
        let to = to.display().to_string();
        self.on_secondary(
            &["restore"],
            AGENT,
            &[
                "--key-file",
                &key,
                "--group",
                GROUP,
                "--volume",
                VOLUME,
                "--point",
                point,
                "--to",
                &to,
            ],
        )
    }

    /// The check every case ends with. Lists the committed points, then takes
    /// "now" as the disaster instant T (so every listed point was committed by
    /// T), restores the newest, and checks the recovered volume against T with
    /// the workload's durability log: it must be clean, and the data it lost
    /// (records durable at T that are missing; how long before T the oldest of
    /// them was written) must not exceed the RPO at T = T - taken_at.
    /// Also restores the first point, and returns the newest check.
    #[track_caller]
    pub fn disaster_check(&self, name: &str) -> (CheckReport, f64) {
        self.disaster_check_with(name, true)
    }

    /// [`disaster_check`](Self::disaster_check), optionally without the first point.
    #[track_caller]
    pub fn disaster_check_with(&self, name: &str, first_too: bool) -> (CheckReport, f64) {
        let points = self.points();
        let at = Utc::now();
        let latest = points.last().expect("at least one point").clone();
        let rpo = (at - latest.taken_at).num_milliseconds() as f64 / 1000.0;
        let out = self.dir.path().join(format!("{name}-latest.img"));
        self.restore(&latest.seq.to_string(), &out).ok();
        let log = &self.tb.state.workload.durable_log;
        let r = check_path(&out, Some(at), Some(log)).expect("check");
        assert!(r.clean, "the recovered volume is damaged: {r:?}");
        assert!(r.last_seq > 0, "no record recovered: {r:?}");
        let lost = r.lost_secs.expect("lost_secs");
        assert!(
            lost <= rpo,
            "lost {lost:.3} s of durable writes ({:?} records), more than the RPO at that instant ({rpo:.3} s): {r:?}",
            r.lost_records
        );
        eprintln!(
            "{name}: point {} restored and clean; at T: RPO {rpo:.3} s, lost {:?} durable records = {lost:.3} s of writes",
            latest.seq, r.lost_records
        );
        let _ = std::fs::remove_file(&out);
        if !first_too {
            return (r, rpo);
        }
        // The oldest point is intact too.
        let first = points.first().expect("a point");
        let out1 = self.dir.path().join(format!("{name}-first.img"));
        self.restore(&first.seq.to_string(), &out1).ok();
        let r1 = check_path(&out1, None, None).expect("check");
        assert!(r1.clean, "the first point's volume is damaged: {r1:?}");
        let _ = std::fs::remove_file(out1);
        (r, rpo)
    }

    /// Asserts that every point of `before` is still there, unchanged.
    #[track_caller]
    pub fn assert_points_kept(&self, before: &[Point]) {
        let now = self.points();
        for p in before {
            assert!(now.contains(p), "committed point {p:?} is gone or changed: now {now:?}");
        }
        self.verify().ok();
    }
}
