//! The impairment proxy: an async TCP proxy between the sites that adds what
//! this kernel cannot (it has no netem): one-way latency with jitter, a
//! bandwidth cap, periodic stalls, connection resets, and a cut that drops every
//! connection and refuses new ones until healed. Everything is changeable while
//! it runs, through a line protocol on a Unix socket (reachable from any network
//! namespace, since the socket is a file):
//!
//! ```text
//! get                                  -> the state, one JSON line
//! set latency=20ms jitter=5ms rate=200mbit stall_every=10s stall_for=2s
//!                                      (rate=off, stall_every=off switch them off)
//! cut | heal | reset                   -> the state after the change
//! ```
//!
//! Each direction of a connection is a delay line: a reader stamps chunks with
//! their due time (now + latency + a random part of the jitter, never earlier
//! than the previous chunk's, so bytes keep their order) and a writer sends them
//! when due, after the shared token bucket of that direction allows them and no
//! stall is in progress. A cut or a reset closes both sockets with RST.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::{Result, TestbedError};
use crate::units::{parse_duration, parse_rate};

/// Chunks in flight per direction: enough for 200 Mbit/s x 50 ms in 64 KiB chunks.
const IN_FLIGHT: usize = 4096;
/// Largest read per chunk.
const CHUNK: usize = 64 << 10;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impairment {
    /// One-way delay added in each direction.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk.
    pub jitter: Duration,
    /// Bytes per second per direction (shared by every connection); `None` = no cap.
    pub rate: Option<u64>,
    /// A stall (nothing forwarded) starts every this often; `None` = never.
    pub stall_every: Option<Duration>,
    /// How long each stall lasts.
    pub stall_for: Duration,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate: None,
            stall_every: None,
            stall_for: Duration::from_secs(2),
        }
    }
}

/// What `get` answers: the settings and counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyState {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub rate_bytes_per_sec: Option<u64>,
    pub stall_every_ms: Option<u64>,
    pub stall_for_ms: u64,
    /// True while cut: no connection is open and new ones are reset.
    pub cut: bool,
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted and connected upstream since start.
    pub accepted: u64,
    /// Connections refused (cut, or upstream unreachable).
    pub refused: u64,
    /// Connections closed by a cut or a reset.
    pub resets: u64,
    /// Bytes forwarded towards the upstream (client to server).
    pub bytes_up: u64,
    /// Bytes forwarded back.
    pub bytes_down: u64,
}

/// A command of the control protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyCommand {
    Get,
    Cut,
    Heal,
    Reset,
    /// `key=value` pairs; see the module docs.
    Set(Vec<(String, String)>),
}

impl ProxyCommand {
    /// Parses one line of the control protocol.
    pub fn parse(line: &str) -> Result<ProxyCommand> {
        let mut words = line.split_whitespace();
        let cmd = match words.next() {
            Some("get") => ProxyCommand::Get,
            Some("cut") => ProxyCommand::Cut,
            Some("heal") => ProxyCommand::Heal,
            Some("reset") => ProxyCommand::Reset,
            Some("set") => {
                let mut pairs = Vec::new();
                for w in words.by_ref() {
                    let (k, v) = w
                        .split_once('=')
                        .ok_or_else(|| TestbedError::Invalid(format!("`{w}`: write KEY=VALUE")))?;
                    pairs.push((k.to_string(), v.to_string()));
                }
                ProxyCommand::Set(pairs)
            }
            other => {
                return Err(TestbedError::Invalid(format!(
                    "unknown proxy command {other:?}: use get, set, cut, heal or reset"
                )));
            }
        };
        if words.next().is_some() {
            return Err(TestbedError::Invalid(format!("`{line}`: unexpected words")));
        }
        Ok(cmd)
    }

    /// The command as one protocol line.
    pub fn to_line(&self) -> String {
        match self {
            ProxyCommand::Get => "get".into(),
            ProxyCommand::Cut => "cut".into(),
            ProxyCommand::Heal => "heal".into(),
            ProxyCommand::Reset => "reset".into(),
            ProxyCommand::Set(pairs) => {
                let mut s = String::from("set");
                for (k, v) in pairs {
                    s.push_str(&format!(" {k}={v}"));
                }
                s
            }
        }
    }
}

impl Impairment {
    /// Applies `key=value` settings.
    pub fn set(&mut self, pairs: &[(String, String)]) -> Result<()> {
        let mut next = self.clone();
        for (k, v) in pairs {
            match k.as_str() {
                "latency" => next.latency = parse_duration(v)?,
                "jitter" => next.jitter = parse_duration(v)?,
                "rate" => next.rate = if v == "off" { None } else { Some(parse_rate(v)?) },
                "stall_every" => {
                    next.stall_every = if v == "off" {
                        None
                    } else {
                        Some(parse_duration(v)?).filter(|d| !d.is_zero())
                    }
                }
                "stall_for" => next.stall_for = parse_duration(v)?,
                _ => {
                    return Err(TestbedError::Invalid(format!(
                        "unknown setting `{k}`: use latency, jitter, rate, stall_every or stall_for"
                    )));
                }
            }
        }
        *self = next;
        Ok(())
    }
}

/// A token bucket of one direction: `rate` bytes per second, bursts of 64 KiB.
struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Shared {
    settings: Mutex<Impairment>,
    cut: AtomicBool,
    /// Bumped by every cut and reset: connections of an older epoch close.
    epoch: watch::Sender<u64>,
    started: Instant,
    connections: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    resets: AtomicU64,
    bytes: [AtomicU64; 2],
    buckets: [Mutex<Bucket>; 2],
}

/// The proxy; cheap to clone (one shared state).
#[derive(Clone)]
pub struct ImpairmentProxy {
    shared: Arc<Shared>,
}

fn jitter_of(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    let r = u64::from_le_bytes(b) % (max.as_micros() as u64 + 1);
    Duration::from_micros(r)
}

impl ImpairmentProxy {
    /// A proxy that starts with `impairment`.
    pub fn new(impairment: Impairment) -> ImpairmentProxy {
        let now = Instant::now();
        let bucket = || Mutex::new(Bucket { tokens: 0.0, last: now });
        ImpairmentProxy {
            shared: Arc::new(Shared {
                settings: Mutex::new(impairment),
                cut: AtomicBool::new(false),
                epoch: watch::channel(0).0,
                started: now,
                connections: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                resets: AtomicU64::new(0),
                bytes: [AtomicU64::new(0), AtomicU64::new(0)],
                buckets: [bucket(), bucket()],
            }),
        }
    }

    fn settings(&self) -> Impairment {
        self.shared.settings.lock().expect("settings").clone()
    }

    /// The current settings and counters.
    pub fn state(&self) -> ProxyState {
        let s = self.settings();
        let sh = &self.shared;
        ProxyState {
            latency_ms: s.latency.as_millis() as u64,
            jitter_ms: s.jitter.as_millis() as u64,
            rate_bytes_per_sec: s.rate,
            stall_every_ms: s.stall_every.map(|d| d.as_millis() as u64),
            stall_for_ms: s.stall_for.as_millis() as u64,
            cut: sh.cut.load(Ordering::SeqCst),
            connections: sh.connections.load(Ordering::SeqCst),
            accepted: sh.accepted.load(Ordering::SeqCst),
            refused: sh.refused.load(Ordering::SeqCst),
            resets: sh.resets.load(Ordering::SeqCst),
            bytes_up: sh.bytes[0].load(Ordering::SeqCst),
            bytes_down: sh.bytes[1].load(Ordering::SeqCst),
        }
    }

    /// Carries out a command and returns the state after it.
    pub fn apply(&self, cmd: &ProxyCommand) -> Result<ProxyState> {
        match cmd {
            ProxyCommand::Get => {}
            ProxyCommand::Cut => {
                self.shared.cut.store(true, Ordering::SeqCst);
                self.shared.epoch.send_modify(|e| *e += 1);
            }
            ProxyCommand::Heal => self.shared.cut.store(false, Ordering::SeqCst),
            ProxyCommand::Reset => self.shared.epoch.send_modify(|e| *e += 1),
            ProxyCommand::Set(pairs) => self.shared.settings.lock().expect("settings").set(pairs)?,
        }
        tracing::info!(command = %cmd.to_line(), "impairment proxy");
        Ok(self.state())
    }

    /// When the stall in progress ends, if one is.
    fn stall_until(&self, now: Instant) -> Option<Instant> {
        let s = self.settings();
        let every = s.stall_every?;
        let since = now.duration_since(self.shared.started);
        let period = every.as_micros().max(1);
        let into = since.as_micros() % period;
        // The stall sits at the end of each period, so the first one comes after `every - stall_for`.
        let stall = s.stall_for.as_micros().min(period);
        let stall_start = period - stall;
        (into >= stall_start).then(|| now + Duration::from_micros((period - into) as u64))
    }

    /// Waits until the bucket of direction `dir` allows `n` bytes.
    async fn take_tokens(&self, dir: usize, n: usize) {
        let Some(rate) = self.settings().rate else { return };
        let wait = {
            let mut b = self.shared.buckets[dir].lock().expect("bucket");
            let now = Instant::now();
            let burst = CHUNK as f64;
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate as f64).min(burst);
            b.last = now;
            b.tokens -= n as f64;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / rate as f64)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// One direction of a connection; returns when `from` ends or the epoch moves.
    async fn pipe(self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: usize, mut epoch: watch::Receiver<u64>) {
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
        let me = self.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut last_due = Instant::now();
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let s = me.settings();
                        let due = (Instant::now() + s.latency + jitter_of(s.jitter)).max(last_due);
                        last_due = due;
                        if tx.send((due, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let forward = async {
            while let Some((due, bytes)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                while let Some(until) = self.stall_until(Instant::now()) {
                    tokio::time::sleep_until(until).await;
                }
                self.take_tokens(dir, bytes.len()).await;
                if to.write_all(&bytes).await.is_err() {
                    return false;
                }
                self.shared.bytes[dir].fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
            true
        };
        let aborted = tokio::select! {
            _ = forward => false,
            _ = epoch.changed() => true,
        };
        if aborted {
            // RST, not FIN: the peer sees the connection die, as on a real cut.
            let _ = to.as_ref().set_zero_linger();
        } else {
            let _ = to.shutdown().await;
        }
        reader.abort();
    }

    async fn connection(self, client: TcpStream, upstream: String) {
        let epoch = self.shared.epoch.subscribe();
        if self.shared.cut.load(Ordering::SeqCst) {
            self.shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_zero_linger();
            return;
        }
        let server = match TcpStream::connect(&upstream).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(%upstream, error = %e, "impairment proxy: upstream unreachable");
                self.shared.refused.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_zero_linger();
                return;
            }
        };
        if self.shared.cut.load(Ordering::SeqCst) {
            self.shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            return;
        }
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        self.shared.accepted.fetch_add(1, Ordering::SeqCst);
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        let start_epoch = *epoch.borrow();
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::join!(
            self.clone().pipe(cr, sw, 0, epoch.clone()),
            self.clone().pipe(sr, cw, 1, epoch.clone())
        );
        if *epoch.borrow() != start_epoch {
            self.shared.resets.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }

    async fn control_client(self, stream: tokio::net::UnixStream) {
        let (r, mut w) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let answer = match ProxyCommand::parse(&line).and_then(|c| self.apply(&c)) {
                Ok(state) => serde_json::to_string(&state).expect("state serializes"),
                Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
            };
            if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                break;
            }
        }
    }

    /// Accepts on `listener` and connects each client to `upstream`, serving the
    /// control protocol on `control` if given, until `shutdown` resolves.
    /// Connection tasks end with their sockets (or at the next cut or reset).
    pub async fn run(
        &self,
        listener: TcpListener,
        upstream: String,
        control: Option<UnixListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        let control_loop = async {
            let Some(control) = control else {
                return std::future::pending::<()>().await;
            };
            loop {
                if let Ok((s, _)) = control.accept().await {
                    tokio::spawn(self.clone().control_client(s));
                }
            }
        };
        tokio::pin!(control_loop);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    self.shared.epoch.send_modify(|e| *e += 1);
                    return Ok(());
                }
                _ = &mut control_loop => {}
                accepted = listener.accept() => {
                    let (client, _) = accepted?;
                    tokio::spawn(self.clone().connection(client, upstream.clone()));
                }
            }
        }
    }
}

/// Sends one command to the proxy whose control socket is `socket` and returns
/// its state (a blocking call with a 10 s timeout).
pub fn proxy_call(socket: &Path, cmd: &ProxyCommand) -> Result<ProxyState> {
    let ctx = |what: &str| format!("impairment proxy control {}: {what}", socket.display());
    let mut s = StdUnixStream::connect(socket).map_err(|e| TestbedError::io(ctx("connect"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| TestbedError::io(ctx("timeout"), e))?;
    s.write_all(format!("{}\n", cmd.to_line()).as_bytes())
        .map_err(|e| TestbedError::io(ctx("send"), e))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| TestbedError::io(ctx("read the answer"), e))?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
        && let Some(e) = v.get("error").and_then(|e| e.as_str())
    {
        return Err(TestbedError::Invalid(format!("impairment proxy: {e}")));
    }
    serde_json::from_str(&line).map_err(|e| TestbedError::Invalid(format!("{}: bad answer {line:?}: {e}", ctx("read"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> String {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = echo.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn start(imp: Impairment) -> (ImpairmentProxy, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let upstream = echo_server().await;
        let proxy = ImpairmentProxy::new(imp);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let p = proxy.clone();
        tokio::spawn(async move {
            p.run(listener, upstream, None, async {
                let _ = stopped.await;
            })
            .await
        });
        (proxy, addr, stop)
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_and_late() {
        let imp = Impairment {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            ..Default::default()
        };
        let (proxy, addr, _stop) = start(imp).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        c.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, data);
        // Two one-way delays at least (the round trip through the echo server).
        assert!(started.elapsed() >= Duration::from_millis(40));
        let st = proxy.state();
        assert_eq!(st.bytes_up, data.len() as u64);
        assert_eq!(st.bytes_down, data.len() as u64);
    }

    #[tokio::test]
    async fn the_rate_cap_spreads_bytes_over_time() {
        let imp = Impairment {
            rate: Some(1 << 20),
            ..Default::default()
        };
        let (_proxy, addr, _stop) = start(imp).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let data = vec![7u8; 512 << 10];
        let started = Instant::now();
        c.write_all(&data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).await.unwrap();
        // 512 KiB at 1 MiB/s, less one burst of 64 KiB.
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_cut_resets_connections_and_refuses_new_ones_until_healed() {
        let (proxy, addr, _stop) = start(Impairment::default()).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        proxy.apply(&ProxyCommand::Cut).unwrap();
        // The open connection dies: reads end with an error or EOF.
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        // A new one is accepted by the kernel, then reset.
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        let _ = c2.write_all(b"x").await;
        let r = tokio::time::timeout(Duration::from_secs(5), c2.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let st = proxy.apply(&ProxyCommand::Heal).unwrap();
        assert!(!st.cut);
        assert!(st.refused >= 1 && st.resets >= 1, "{st:?}");
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        c3.write_all(b"pong").await.unwrap();
        c3.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
    }

    #[test]
    fn commands_parse_and_settings_apply() {
        let c = ProxyCommand::parse("set latency=20ms rate=200mbit stall_every=10s").unwrap();
        assert_eq!(ProxyCommand::parse(&c.to_line()).unwrap(), c);
        let mut imp = Impairment::default();
        let ProxyCommand::Set(pairs) = c else { panic!() };
        imp.set(&pairs).unwrap();
        assert_eq!(imp.latency, Duration::from_millis(20));
        assert_eq!(imp.rate, Some(25_000_000));
        assert_eq!(imp.stall_every, Some(Duration::from_secs(10)));
        assert!(imp.set(&[("nope".into(), "1".into())]).is_err());
        assert!(ProxyCommand::parse("explode").is_err());
    }

    #[test]
    fn stalls_sit_at_the_end_of_each_period() {
        let proxy = ImpairmentProxy::new(Impairment {
            stall_every: Some(Duration::from_secs(10)),
            stall_for: Duration::from_secs(2),
            ..Default::default()
        });
        let t0 = proxy.shared.started;
        assert_eq!(proxy.stall_until(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            proxy.stall_until(t0 + Duration::from_secs(9)),
            Some(t0 + Duration::from_secs(10))
        );
        assert_eq!(proxy.stall_until(t0 + Duration::from_secs(11)), None);
    }
}
