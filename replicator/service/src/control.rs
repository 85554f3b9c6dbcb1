//! The agent's control API: status, pause / resume, sync-now and retarget, served
//! on `--control ADDR` with the deployment's TLS (admin identities only). The
//! agent loop and the API share one [`AgentControl`]; the loop asks it when to
//! start the next cycle and where to send it, and reports each cycle's outcome.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeline_proto::v1 as pb;
use lifeline_proto::v1::agent_control_client::AgentControlClient;
use lifeline_proto::v1::agent_control_server::{AgentControl as AgentControlRpc, AgentControlServer};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::identity::Peer;
use crate::tls::{TlsDir, client_endpoint, client_runtime};
use crate::{ServiceError, certs::agent_control_domain};

/// How long sync-now waits for its point.
const SYNC_NOW_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
struct Inner {
    group: String,
    target: String,
    paused: bool,
    cycling: bool,
    /// A cycle was asked for (sync-now) and has not started yet.
    sync_requested: bool,
    last_seq: u64,
    last_taken_at: Option<DateTime<Utc>>,
    last_cycle_secs: f64,
    last_error: Option<String>,
    cycles: u64,
    /// Cycles that failed (shown by `lifeline status` as the group's errors).
    failures: u64,
}

/// State shared by the agent loop and its control API.
pub struct AgentControl {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl AgentControl {
    pub fn new(group: &str, target: &str) -> Arc<AgentControl> {
        Arc::new(AgentControl {
            inner: Mutex::new(Inner {
                group: group.into(),
                target: target.into(),
                ..Inner::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("agent control")
    }

    /// The receiver to replicate to now.
    pub fn target(&self) -> String {
        self.lock().target.clone()
    }

    /// Waits `wait` (or less, if a sync is requested), longer while paused.
    /// Returns false when `cancel` was set.
    pub fn wait_for_cycle(&self, wait: Duration, cancel: &AtomicBool) -> bool {
        let deadline = Instant::now() + wait;
        let mut g = self.lock();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            if !g.paused && (g.sync_requested || Instant::now() >= deadline) {
                g.sync_requested = false;
                g.cycling = true;
                return true;
            }
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(100))
                .expect("agent control")
                .0;
        }
    }

    /// Marks the start of the first cycle (which runs at once).
    pub fn cycle_started(&self) {
        let mut g = self.lock();
        g.cycling = true;
        g.sync_requested = false;
    }

    /// Records a committed point.
    pub fn cycle_ok(&self, seq: u64, taken_at: DateTime<Utc>, secs: f64) {
        let mut g = self.lock();
        g.cycling = false;
        g.last_seq = seq;
        g.last_taken_at = Some(taken_at);
        g.last_cycle_secs = secs;
        g.last_error = None;
        g.cycles += 1;
        self.cv.notify_all();
    }

    /// Records a failed cycle.
    pub fn cycle_failed(&self, error: &str) {
        let mut g = self.lock();
        g.cycling = false;
        g.last_error = Some(error.into());
        g.cycles += 1;
        g.failures += 1;
        self.cv.notify_all();
    }

    fn status(&self) -> pb::AgentStatus {
        let g = self.lock();
        pb::AgentStatus {
            group: g.group.clone(),
            target: g.target.clone(),
            paused: g.paused,
            cycling: g.cycling,
            last_seq: g.last_seq,
            last_taken_at_unix_ms: g.last_taken_at.map(|t| t.timestamp_millis()).unwrap_or(0),
            last_cycle_secs: g.last_cycle_secs,
            last_error: g.last_error.clone().unwrap_or_default(),
            cycles: g.cycles,
            failed_cycles: g.failures,
        }
    }

    /// Paused by the control API (a caller that schedules its own cycles, such
    /// as the daemon, starts none meanwhile).
    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// A sync-now waits for a cycle that has not started yet.
    pub fn sync_requested(&self) -> bool {
        let g = self.lock();
        g.sync_requested && !g.paused
    }

    /// Pauses or resumes replication (what the control API's pause and resume do).
    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
        self.cv.notify_all();
    }

    fn retarget(&self, url: &str) {
        self.lock().target = url.into();
        self.cv.notify_all();
    }

    /// Asks for a cycle and waits for a point taken after this call.
    fn sync_now(&self) -> Result<(u64, DateTime<Utc>), Status> {
        let asked = Utc::now();
        let deadline = Instant::now() + SYNC_NOW_TIMEOUT;
        let mut g = self.lock();
        if g.paused {
            return Err(Status::failed_precondition("the agent is paused: resume it first"));
        }
        g.sync_requested = true;
        let cycles_before = g.cycles;
        self.cv.notify_all();
        loop {
            if let Some(t) = g.last_taken_at
                && t >= asked
            {
                return Ok((g.last_seq, t));
            }
            if g.cycles > cycles_before
                && let Some(e) = &g.last_error
            {
                return Err(Status::unavailable(format!(
                    "the cycle started for sync-now failed: {e}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded("no point within 10 minutes"));
            }
            if !g.cycling && !g.sync_requested {
                // A cycle that started before the call ended; ask again.
                g.sync_requested = true;
                self.cv.notify_all();
            }
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(100))
                .expect("agent control")
                .0;
        }
    }
}

#[derive(Clone)]
struct ControlService(Arc<AgentControl>);

fn admin_only<T>(req: &Request<T>) -> Result<(), Status> {
    match Peer::of(req)? {
        Peer::Admin { .. } => Ok(()),
        Peer::Agent { name, .. } => Err(Status::permission_denied(format!(
            "agent `{name}` cannot control agents; use an admin identity"
        ))),
    }
}

#[tonic::async_trait]
impl AgentControlRpc for ControlService {
    async fn status(&self, req: Request<pb::AgentStatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        admin_only(&req)?;
        Ok(Response::new(self.0.status()))
    }

    async fn pause(&self, req: Request<pb::AgentStatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        admin_only(&req)?;
        self.0.set_paused(true);
        Ok(Response::new(self.0.status()))
    }

    async fn resume(&self, req: Request<pb::AgentStatusRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        admin_only(&req)?;
        self.0.set_paused(false);
        Ok(Response::new(self.0.status()))
    }

    async fn sync_now(&self, req: Request<pb::AgentStatusRequest>) -> Result<Response<pb::SyncNowResponse>, Status> {
        admin_only(&req)?;
        let ctl = self.0.clone();
        let (seq, t) = tokio::task::spawn_blocking(move || ctl.sync_now())
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::SyncNowResponse {
            seq,
            taken_at_unix_ms: t.timestamp_millis(),
        }))
    }

    async fn retarget(&self, req: Request<pb::RetargetRequest>) -> Result<Response<pb::AgentStatus>, Status> {
        admin_only(&req)?;
        let url = req.into_inner().url;
        if !url.starts_with("https://") {
            return Err(Status::invalid_argument(format!(
                "`{url}` is not an https://HOST:PORT address"
            )));
        }
        self.0.retarget(&url);
        Ok(Response::new(self.0.status()))
    }
}

/// Serves the control API of agent `name` until `shutdown`.
pub async fn serve_control(
    listener: TcpListener,
    tls: &TlsDir,
    name: &str,
    control: Arc<AgentControl>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    crate::tls::ensure_crypto_provider();
    let cfg = ServerTlsConfig::new()
        .identity(tls.identity(name)?)
        .client_ca_root(Certificate::from_pem(tls.ca_pem()?));
    Server::builder()
        .tls_config(cfg)
        .map_err(|e| ServiceError::Tls(e.to_string()))?
        .add_service(AgentControlServer::new(ControlService(control)))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| ServiceError::Tls(e.to_string()))
}

/// What a control call answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlAnswer {
    Status(pb::AgentStatus),
    Synced { seq: u64, taken_at: DateTime<Utc> },
}

/// A control call, from the CLI or the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCall {
    Status,
    Pause,
    Resume,
    SyncNow,
    Retarget(String),
}

/// Calls agent `agent`'s control API at `addr` (HOST:PORT) as admin `identity`.
pub fn call_agent(
    addr: &str,
    agent: &str,
    tls: &TlsDir,
    identity: &str,
    call: ControlCall,
) -> Result<ControlAnswer, ServiceError> {
    let rt = client_runtime(0)?;
    let url = format!("https://{addr}");
    let endpoint = client_endpoint(&url, tls, identity, Some(&agent_control_domain(agent)))?;
    rt.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("cannot reach agent control at {addr}: {e}")))?;
        let mut c = AgentControlClient::new(channel);
        let r = pb::AgentStatusRequest {};
        Ok(match call {
            ControlCall::Status => ControlAnswer::Status(c.status(r).await?.into_inner()),
            ControlCall::Pause => ControlAnswer::Status(c.pause(r).await?.into_inner()),
            ControlCall::Resume => ControlAnswer::Status(c.resume(r).await?.into_inner()),
            ControlCall::Retarget(url) => {
                ControlAnswer::Status(c.retarget(pb::RetargetRequest { url }).await?.into_inner())
            }
            ControlCall::SyncNow => {
                let s = c.sync_now(r).await?.into_inner();
                ControlAnswer::Synced {
                    seq: s.seq,
                    taken_at: DateTime::from_timestamp_millis(s.taken_at_unix_ms).unwrap_or_default(),
                }
            }
        })
    })
    .map_err(|s: tonic::Status| {
        ServiceError::Replicator(crate::remote::remote_named(format!("agent control at {addr}"), s))
    })
}
