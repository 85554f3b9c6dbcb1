//! The running planner's control socket, `STATE/planner/control.sock`: `lifeline
//! runs`, `approve` and `abort` from other shells (and the daemon's console:
//! approvals, and its actions' audit entries) reach the process that owns the
//! planner catalog through it. One JSON request per line, one JSON answer per line.
//! The socket is created mode 0600: whoever may read the state directory's
//! planner files may drive its runs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::engine::{EngineError, Result, RunRecord, Shared};
use crate::io_error::doing;
use crate::plan::Plan;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Runs,
    Approve {
        run: String,
        step: String,
        who: String,
    },
    Abort {
        run: String,
        who: String,
    },
    /// Another process (the daemon's console) records an action on the audit
    /// chain, which only the catalog's owner writes: `event` with `who` as the
    /// operator and `detail`.
    Audit {
        event: String,
        who: String,
        detail: serde_json::Value,
    },
    /// A failover, switchover or failback (`by`, its run id) needs the catalog:
    /// a drill stops for it; any other run refuses.
    Preempt {
        by: String,
        who: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunRecord>,
}

impl Answer {
    fn ok(message: impl Into<String>) -> Answer {
        Answer {
            ok: true,
            error: None,
            message: Some(message.into()),
            runs: Vec::new(),
        }
    }
    fn err(e: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(e.into()),
            message: None,
            runs: Vec::new(),
        }
    }
}

/// Serves the socket until `shutdown` fires.
pub async fn serve(
    path: std::path::PathBuf,
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    // We own the catalog (sled's lock), so a socket file here is a dead planner's.
    let path = path.as_path();
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(doing(format!("bind {}", path.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                let shared = shared.clone();
                let plan = plan.clone();
                // Short-lived and bounded by the client's one request: owned by the
                // runtime, which the run shuts down at its end.
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    if let Ok(Some(line)) = lines.next_line().await {
                        let answer = match serde_json::from_str::<Request>(&line) {
                            Ok(req) => {
                                let s2 = shared.clone();
                                tokio::task::spawn_blocking(move || handle(&s2, &plan, req)).await.unwrap_or_else(|e| Answer::err(e.to_string()))
                            }
                            Err(e) => Answer::err(format!("bad request: {e}")),
                        };
                        let mut bytes = serde_json::to_vec(&answer).expect("serialisable");
                        bytes.push(b'\n');
                        let _ = w.write_all(&bytes).await;
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn handle(shared: &Shared, plan: &Plan, req: Request) -> Answer {
    let this = shared.record.lock().expect("record").id.clone();
    match req {
        Request::Runs => match shared.catalog().list() {
            Ok(runs) => Answer {
                ok: true,
                error: None,
                message: None,
                runs,
            },
            Err(e) => Answer::err(format!("{e:#}")),
        },
        Request::Approve { run, .. } | Request::Abort { run, .. } if run != this => Answer::err(format!(
            "the running planner is running {this}, not {run}: run {run} is not running (`lifeline resume {run}` continues it)"
        )),
        Request::Approve { step, who, .. } => match shared.approve(plan, &step, &who) {
            Ok(()) => Answer::ok(format!("step `{step}` of run {this} approved by {who}")),
            Err(e) => Answer::err(format!("{e:#}")),
        },
        Request::Preempt { by, who } => match shared.request_preempt(&by, &who) {
            Ok(()) => Answer::ok(format!(
                "drill {this} (PID {}) stops for {by}: it tears down, writes its report and releases the planner catalog",
                std::process::id()
            )),
            Err(e) => Answer::err(format!("{e:#}")),
        },
        Request::Audit { event, who, detail } => match shared.append_audit(&event, &who, detail) {
            Ok(head) => Answer::ok(format!("recorded `{event}` by {who} at audit entry {}", head.seq)),
            Err(e) => Answer::err(format!("{e:#}")),
        },
        Request::Abort { who, .. } => match shared.request_abort(&who) {
            Ok(()) => Answer::ok(format!(
                "run {this}: abort requested by {who}; running steps stop and its processes are stopped"
            )),
            Err(e) => Answer::err(format!("{e:#}")),
        },
    }
}

/// Sends a request to the planner owning `state_dir`'s catalog; `None` when no
/// planner runs there.
pub fn call(state_dir: &Path, req: &Request) -> Result<Option<Answer>> {
    let path = crate::run_catalog::control_socket(state_dir);
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(doing(format!("connect to {}", path.display()))(e).into()),
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut bytes = serde_json::to_vec(req).expect("serialisable");
    bytes.push(b'\n');
    s.write_all(&bytes)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    if line.is_empty() {
        return Err(EngineError::NoAnswer { socket: path });
    }
    Ok(Some(serde_json::from_str(&line).map_err(EngineError::Answer)?))
}
