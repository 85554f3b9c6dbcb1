//! A fault-injecting TCP proxy for tests (std only): listens on 127.0.0.1:0 and forwards
//! every connection to a target; told to, it cuts connections in the middle of an upload.
//!
//! Include with `#[path = "support/cut_proxy.rs"] mod cut_proxy;`.
//!
//! ```ignore
//! let proxy = cut_proxy::CutProxy::new(garage.s3_addr(0));
//! proxy.cut_after_upload_bytes(4 << 20); // every connection dies after 4 MiB client->server
//! // ... a PUT through format!("http://{}", proxy.addr()) fails ...
//! proxy.heal();                            // plain forwarding again
//! ```
//!
//! Counting: a rule counts the bytes each connection forwards client->server from the moment
//! the rule is set (or from the connection's start, if later), so a pooled keep-alive
//! connection is not cut at once for what it sent before. When a connection reaches the
//! limit, exactly that many bytes have been forwarded; then both sockets are shut down and
//! closed while the client is still sending, which the kernel turns into a reset (the client
//! sees "connection reset" or "broken pipe", or an early EOF, never a response), and the
//! server sees a truncated request.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Forward,
    /// Cut every connection after this many upload bytes (counted since the rule was set).
    CutAfter(u64),
    /// Cut the first connection to reach this many upload bytes, then forward.
    CutOnceAfter(u64),
}

struct State {
    rule: Rule,
    /// Bumped at every rule change; connections reset their count when it moves.
    generation: u64,
    /// Open connections: (client side, server side), to cut them all at once.
    conns: HashMap<u64, (TcpStream, TcpStream)>,
}

struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    stop: AtomicBool,
    next_id: AtomicU64,
    accepted: AtomicU64,
    cuts: AtomicU64,
    uploaded: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy; stops accepting and cuts every open connection on drop.
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// A proxy on 127.0.0.1 (a free port) to `target`, forwarding plainly.
    pub fn new(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                rule: Rule::Forward,
                generation: 0,
                conns: HashMap::new(),
            }),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("cut-proxy-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn proxy thread");
        CutProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// From now on, every connection (open or new) is cut once it has forwarded `n` bytes
    /// client->server since this call (or since it opened). `n = 0` cuts at the first byte.
    pub fn cut_after_upload_bytes(&self, n: u64) {
        self.set_rule(Rule::CutAfter(n));
    }

    /// As `cut_after_upload_bytes`, but only the first connection to reach `n` is cut;
    /// then the proxy heals itself (so a client's retry goes through).
    pub fn cut_once_after_upload_bytes(&self, n: u64) {
        self.set_rule(Rule::CutOnceAfter(n));
    }

    /// Back to plain forwarding (connections already cut stay cut).
    pub fn heal(&self) {
        self.set_rule(Rule::Forward);
    }

    /// Cuts every open connection now, whatever the rule.
    pub fn cut_all_now(&self) {
        let conns: Vec<(TcpStream, TcpStream)> = self.shared.lock().conns.drain().map(|(_, c)| c).collect();
        for (c, s) in conns {
            cut(&c, &s);
            self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Connections cut so far (by a rule or `cut_all_now`).
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded client->server so far, all connections.
    pub fn uploaded_bytes(&self) -> u64 {
        self.shared.uploaded.load(Ordering::SeqCst)
    }

    fn set_rule(&self, rule: Rule) {
        let mut st = self.shared.lock();
        st.rule = rule;
        st.generation += 1;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        self.cut_all_now();
    }
}

fn cut(client: &TcpStream, server: &TcpStream) {
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(shared.target) else {
            // Target down: the client sees its connection closed.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        shared.lock().conns.insert(id, (c3, s3));
        let sh = shared.clone();
        let _ = thread::Builder::new()
            .name("cut-proxy-up".into())
            .spawn(move || upload(id, client, server, sh));
        let sh = shared.clone();
        let _ = thread::Builder::new()
            .name("cut-proxy-down".into())
            .spawn(move || download(id, s2, c2, sh));
    }
}

/// client -> server, counting and applying the rule.
fn upload(id: u64, mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut generation = u64::MAX;
    let mut count = 0u64;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // How much of this chunk may pass, and whether to cut after it.
        let (pass, cut_now) = {
            let mut st = shared.lock();
            if st.generation != generation {
                generation = st.generation;
                count = 0;
            }
            let limit = match st.rule {
                Rule::Forward => None,
                Rule::CutAfter(l) | Rule::CutOnceAfter(l) => Some(l),
            };
            match limit {
                Some(l) if count + n as u64 >= l => {
                    if let Rule::CutOnceAfter(_) = st.rule {
                        st.rule = Rule::Forward;
                        st.generation += 1;
                        generation = st.generation;
                    }
                    st.conns.remove(&id);
                    ((l - count) as usize, true)
                }
                _ => (n, false),
            }
        };
        if pass > 0 && server.write_all(&buf[..pass]).is_err() {
            break;
        }
        count += pass as u64;
        shared.uploaded.fetch_add(pass as u64, Ordering::SeqCst);
        if cut_now {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            cut(&client, &server);
            return;
        }
    }
    // Client finished sending (or failed): pass the half-close on. The download side
    // forgets the connection when the server is done.
    let _ = server.shutdown(Shutdown::Write);
}

/// server -> client, plain.
fn download(id: u64, mut server: TcpStream, mut client: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Write);
    forget(id, &shared);
}

fn forget(id: u64, shared: &Shared) {
    shared.lock().conns.remove(&id);
}
