//! The NBD server: accepts connections, negotiates an export (newstyle fixed
//! handshake), then serves requests. Each connection has a reader thread that
//! takes requests off the socket and a few workers that answer them, replies
//! going out whole under the socket's lock in whatever order they finish (NBD
//! matches them by cookie), so one connection keeps both cores busy. Sequential
//! readers get the next segments decoded ahead by a shared read-ahead pool.
//!
//! Bad input never panics: a malformed option gets an error reply, a request
//! out of range or too large gets an NBD error, a client that goes away in the
//! middle of a request ends its connection only.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use super::export::Export;
use super::nbd::*;

/// Workers answering the requests of one connection.
const WORKERS_PER_CONNECTION: usize = 4;
/// Requests read ahead of the workers on one connection.
const QUEUED_PER_CONNECTION: usize = 16;
/// Threads decoding segments ahead of sequential readers.
const READ_AHEAD_THREADS: usize = 2;

/// What the server offers.
pub struct NbdServer {
    exports: Vec<Arc<Export>>,
    read_ahead: Mutex<Option<SyncSender<(usize, usize)>>>,
}

/// Stops a running [`NbdServer::serve`]: no new connection is accepted, open
/// ones are shut down, and `serve` returns once their threads have ended.
#[derive(Clone)]
pub struct Shutdown {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    conns: Arc<Mutex<std::collections::HashMap<u64, TcpStream>>>,
}

impl Shutdown {
    pub fn new(listener: &TcpListener) -> io::Result<Shutdown> {
        Ok(Shutdown {
            stop: Arc::new(AtomicBool::new(false)),
            addr: listener.local_addr()?,
            conns: Arc::new(Mutex::new(std::collections::HashMap::new())),
        })
    }

    /// The flag [`trigger`](Self::trigger) sets, for other workers to watch.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Asks the server to stop (any thread, e.g. a signal watcher).
    pub fn trigger(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().expect("connections").values() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// How a negotiation ended.
struct Negotiated {
    export: usize,
    structured: bool,
    allocation: bool,
}

fn lock_err<T>(_: T) -> io::Error {
    io::Error::other("a connection thread panicked")
}

impl NbdServer {
    pub fn new(exports: Vec<Export>) -> Self {
        NbdServer {
            exports: exports.into_iter().map(Arc::new).collect(),
            read_ahead: Mutex::new(None),
        }
    }

    pub fn exports(&self) -> &[Arc<Export>] {
        &self.exports
    }

    /// Serves connections from `listener` until `shutdown` fires. Overlays are
    /// flushed before it returns.
    pub fn serve(&self, listener: TcpListener, shutdown: &Shutdown) -> io::Result<()> {
        let (ra_tx, ra_rx) = sync_channel::<(usize, usize)>(64);
        *self.read_ahead.lock().map_err(lock_err)? = Some(ra_tx);
        let ra_rx = Mutex::new(ra_rx);
        let result = std::thread::scope(|scope| {
            for _ in 0..READ_AHEAD_THREADS {
                scope.spawn(|| self.read_ahead_worker(&ra_rx));
            }
            let mut conns = Vec::new();
            let mut next_id = 0u64;
            let accepted = loop {
                let (stream, peer) = match listener.accept() {
                    Ok(a) => a,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                };
                if shutdown.is_stopping() {
                    break Ok(());
                }
                next_id += 1;
                let id = next_id;
                if let Ok(c) = stream.try_clone() {
                    shutdown.conns.lock().expect("connections").insert(id, c);
                }
                conns.retain(|h: &std::thread::ScopedJoinHandle<'_, ()>| !h.is_finished());
                conns.push(scope.spawn(move || {
                    tracing::debug!(%peer, "NBD client connected");
                    if let Err(e) = self.connection(stream) {
                        tracing::debug!(%peer, error = %e, "NBD connection ended");
                    }
                    // Close it for the client too: the clone kept for shutdown
                    // would hold it open.
                    if let Some(c) = shutdown.conns.lock().expect("connections").remove(&id) {
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                }));
            };
            for c in shutdown.conns.lock().expect("connections").values() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            for h in conns {
                let _ = h.join();
            }
            // The read-ahead workers end when their channel closes.
            self.read_ahead.lock().expect("read-ahead").take();
            accepted
        });
        for e in &self.exports {
            if let Err(err) = e.flush() {
                tracing::error!(export = e.name(), error = %err, "flush of the overlay at exit failed");
            }
        }
        result
    }

    fn read_ahead_worker(&self, rx: &Mutex<Receiver<(usize, usize)>>) {
        loop {
            let job = rx.lock().expect("read-ahead queue").recv();
            let Ok((export, segment)) = job else { return };
            // An error here is reported by the read that needs the segment.
            let _ = self.exports[export].image().segment(segment);
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        if name.is_empty() && self.exports.len() == 1 {
            return Some(0);
        }
        self.exports.iter().position(|e| e.name() == name)
    }

    fn unknown_export(&self, name: &str) -> String {
        let names: Vec<&str> = self.exports.iter().map(|e| e.name()).collect();
        if name.is_empty() {
            format!(
                "this server has {} exports: name one of {}",
                names.len(),
                names.join(", ")
            )
        } else {
            format!("no export `{name}`: this server exports {}", names.join(", "))
        }
    }

    fn transmission_flags(&self, e: &Export) -> u16 {
        let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_DF | TFLAG_CAN_MULTI_CONN;
        if e.read_only() {
            f |= TFLAG_READ_ONLY;
        } else {
            f |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
        }
        f
    }

    fn connection(&self, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut r = BufReader::with_capacity(256 << 10, stream.try_clone()?);
        let mut w = stream;
        let mut hello = Vec::with_capacity(18);
        hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
        hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
        hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        w.write_all(&hello)?;
        let mut cf = [0u8; 4];
        r.read_exact(&mut cf)?;
        let client_flags = u32::from_be_bytes(cf);
        if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown client flags"));
        }
        let Some(n) = self.negotiate(&mut r, &mut w, client_flags & FLAG_C_NO_ZEROES != 0)? else {
            return Ok(());
        };
        self.transmission(r, w, n)
    }

    /// The option haggling phase; `None` when the client aborted.
    fn negotiate(&self, r: &mut impl Read, w: &mut impl Write, no_zeroes: bool) -> io::Result<Option<Negotiated>> {
        let mut structured = false;
        // The export the base:allocation context was selected for.
        let mut meta_for: Option<usize> = None;
        loop {
            let (opt, whole) = read_option(r)?;
            let o = opt.option;
            let err = |w: &mut dyn Write, code: u32, msg: &str| write_option_reply(w, o, code, msg.as_bytes());
            if !whole {
                err(w, REP_ERR_TOO_BIG, "option payload too long")?;
                continue;
            }
            match o {
                OPT_EXPORT_NAME => {
                    let Some(i) = std::str::from_utf8(&opt.data).ok().and_then(|n| self.find(n)) else {
                        // The protocol has no error reply here: close.
                        return Ok(None);
                    };
                    let e = &self.exports[i];
                    let mut b = Vec::with_capacity(134);
                    b.extend_from_slice(&e.size().to_be_bytes());
                    b.extend_from_slice(&self.transmission_flags(e).to_be_bytes());
                    if !no_zeroes {
                        b.extend_from_slice(&[0u8; 124]);
                    }
                    w.write_all(&b)?;
                    return Ok(Some(Negotiated {
                        export: i,
                        structured: false,
                        allocation: false,
                    }));
                }
                OPT_ABORT => {
                    let _ = write_option_reply(w, o, REP_ACK, &[]);
                    return Ok(None);
                }
                OPT_LIST => {
                    if !opt.data.is_empty() {
                        err(w, REP_ERR_INVALID, "NBD_OPT_LIST takes no data")?;
                        continue;
                    }
                    for e in &self.exports {
                        let mut d = Vec::new();
                        d.extend_from_slice(&(e.name().len() as u32).to_be_bytes());
                        d.extend_from_slice(e.name().as_bytes());
                        write_option_reply(w, o, REP_SERVER, &d)?;
                    }
                    write_option_reply(w, o, REP_ACK, &[])?;
                }
                OPT_STRUCTURED_REPLY => {
                    if !opt.data.is_empty() {
                        err(w, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data")?;
                        continue;
                    }
                    structured = true;
                    write_option_reply(w, o, REP_ACK, &[])?;
                }
                OPT_INFO | OPT_GO => {
                    let Some((name, infos)) = parse_info_request(&opt.data) else {
                        err(w, REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO request")?;
                        continue;
                    };
                    let Some(i) = self.find(name) else {
                        err(w, REP_ERR_UNKNOWN, &self.unknown_export(name))?;
                        continue;
                    };
                    let e = &self.exports[i];
                    let mut d = Vec::with_capacity(12);
                    d.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                    d.extend_from_slice(&e.size().to_be_bytes());
                    d.extend_from_slice(&self.transmission_flags(e).to_be_bytes());
                    write_option_reply(w, o, REP_INFO, &d)?;
                    if infos.contains(&INFO_NAME) {
                        let mut d = INFO_NAME.to_be_bytes().to_vec();
                        d.extend_from_slice(e.name().as_bytes());
                        write_option_reply(w, o, REP_INFO, &d)?;
                    }
                    if infos.contains(&INFO_BLOCK_SIZE) {
                        let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                        d.extend_from_slice(&1u32.to_be_bytes());
                        d.extend_from_slice(&4096u32.to_be_bytes());
                        d.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
                        write_option_reply(w, o, REP_INFO, &d)?;
                    }
                    write_option_reply(w, o, REP_ACK, &[])?;
                    if o == OPT_GO {
                        return Ok(Some(Negotiated {
                            export: i,
                            structured,
                            allocation: structured && meta_for == Some(i),
                        }));
                    }
                }
                OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                    if !structured {
                        err(
                            w,
                            REP_ERR_INVALID,
                            "negotiate structured replies before metadata contexts",
                        )?;
                        continue;
                    }
                    let Some((name, queries)) = parse_meta_request(&opt.data) else {
                        err(w, REP_ERR_INVALID, "malformed metadata context request")?;
                        continue;
                    };
                    let Some(i) = self.find(name) else {
                        err(w, REP_ERR_UNKNOWN, &self.unknown_export(name))?;
                        continue;
                    };
                    let matches = if o == OPT_LIST_META_CONTEXT {
                        queries.is_empty() || queries.iter().any(|q| *q == "base:" || *q == BASE_ALLOCATION)
                    } else {
                        queries.contains(&BASE_ALLOCATION)
                    };
                    if matches {
                        let mut d = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                        d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                        write_option_reply(w, o, REP_META_CONTEXT, &d)?;
                    }
                    if o == OPT_SET_META_CONTEXT {
                        meta_for = matches.then_some(i);
                    }
                    write_option_reply(w, o, REP_ACK, &[])?;
                }
                _ => err(w, REP_ERR_UNSUP, "option not supported by lifeline serve")?,
            }
        }
    }

    fn transmission(&self, mut r: impl Read + Send, w: TcpStream, n: Negotiated) -> io::Result<()> {
        let export = &self.exports[n.export];
        let w = Mutex::new(w);
        let (tx, rx) = sync_channel::<(Request, Vec<u8>)>(QUEUED_PER_CONNECTION);
        let rx = Mutex::new(rx);
        std::thread::scope(|scope| {
            for _ in 0..WORKERS_PER_CONNECTION {
                scope.spawn(|| {
                    loop {
                        let job = rx.lock().expect("request queue").recv();
                        let Ok((req, payload)) = job else { return };
                        let reply = self.answer(n.export, export, &n, req, payload);
                        if w.lock().expect("socket").write_all(&reply).is_err() {
                            // The client went away; the reader sees it too.
                            return;
                        }
                    }
                });
            }
            let result = (|| -> io::Result<()> {
                loop {
                    let mut h = [0u8; REQUEST_LEN];
                    match r.read_exact(&mut h) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    let Some(req) = Request::decode(&h) else {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request magic"));
                    };
                    let mut payload = Vec::new();
                    match req.kind {
                        CMD_DISC => return Ok(()),
                        CMD_WRITE if req.length > MAX_PAYLOAD => {
                            // Read it through to stay in step, then refuse it.
                            io::copy(&mut (&mut r).take(req.length as u64), &mut io::sink())?;
                            let reply = simple_reply(EOVERFLOW, req.cookie);
                            w.lock().map_err(lock_err)?.write_all(&reply)?;
                            continue;
                        }
                        CMD_WRITE => {
                            payload = vec![0u8; req.length as usize];
                            r.read_exact(&mut payload)?;
                        }
                        _ => {}
                    }
                    if tx.send((req, payload)).is_err() {
                        return Ok(());
                    }
                }
            })();
            drop(tx);
            result
        })
    }

    /// The reply bytes to one request.
    fn answer(&self, number: usize, export: &Export, n: &Negotiated, req: Request, payload: Vec<u8>) -> Vec<u8> {
        let size = export.size();
        let in_range = req.offset.checked_add(req.length as u64).is_some_and(|end| end <= size);
        let fail = |code: u32, msg: &str| -> Vec<u8> {
            if n.structured && matches!(req.kind, CMD_READ | CMD_BLOCK_STATUS) {
                structured_error(req.cookie, code, msg)
            } else {
                simple_reply(code, req.cookie).to_vec()
            }
        };
        let writes = matches!(req.kind, CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM);
        if writes && export.read_only() {
            return fail(EPERM, "the export is read-only (lifeline serve --read-only)");
        }
        if req.kind == CMD_READ && req.length > MAX_PAYLOAD {
            return fail(EOVERFLOW, &format!("reads are limited to {MAX_PAYLOAD} bytes"));
        }
        if matches!(
            req.kind,
            CMD_READ | CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM | CMD_BLOCK_STATUS
        ) && !in_range
        {
            let code = if req.kind == CMD_WRITE { ENOSPC } else { EINVAL };
            return fail(
                code,
                &format!(
                    "{} bytes at offset {} go past the end of the {size}-byte export",
                    req.length, req.offset
                ),
            );
        }
        let io_error = |what: &str, e: crate::error::Error| -> Vec<u8> {
            tracing::error!(
                export = export.name(),
                offset = req.offset,
                length = req.length,
                "{what} failed: {e}"
            );
            fail(EIO, &format!("{what} failed: {e}"))
        };
        let flushed = |r: crate::error::Result<()>| -> crate::error::Result<()> {
            r?;
            if req.flags & CMD_FLAG_FUA != 0 {
                export.flush()?;
            }
            Ok(())
        };
        match req.kind {
            CMD_READ => {
                if req.length == 0 {
                    return fail(EINVAL, "a read of 0 bytes");
                }
                for seg in export.read_ahead(req.offset, req.length as u64) {
                    if let Some(tx) = self.read_ahead.lock().expect("read-ahead").as_ref()
                        && let Err(TrySendError::Disconnected(_)) = tx.try_send((number, seg))
                    {
                        break;
                    }
                }
                if n.structured
                    && req.flags & CMD_FLAG_DF == 0
                    && export.is_hole(req.offset, req.length as u64).unwrap_or(false)
                {
                    let mut b = structured_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, req.cookie, 12).to_vec();
                    b.extend_from_slice(&req.offset.to_be_bytes());
                    b.extend_from_slice(&req.length.to_be_bytes());
                    return b;
                }
                let head = if n.structured { 28 } else { 16 };
                let mut b = vec![0u8; head + req.length as usize];
                if let Err(e) = export.read(req.offset, &mut b[head..]) {
                    return io_error("read", e);
                }
                if n.structured {
                    b[..20].copy_from_slice(&structured_header(
                        REPLY_FLAG_DONE,
                        REPLY_TYPE_OFFSET_DATA,
                        req.cookie,
                        8 + req.length,
                    ));
                    b[20..28].copy_from_slice(&req.offset.to_be_bytes());
                } else {
                    b[..16].copy_from_slice(&simple_reply(0, req.cookie));
                }
                b
            }
            CMD_WRITE => match flushed(export.write(req.offset, &payload)) {
                Ok(()) => simple_reply(0, req.cookie).to_vec(),
                Err(e) => io_error("write", e),
            },
            CMD_WRITE_ZEROES | CMD_TRIM => match flushed(export.zero(req.offset, req.length as u64)) {
                Ok(()) => simple_reply(0, req.cookie).to_vec(),
                Err(e) => io_error("write zeroes", e),
            },
            CMD_FLUSH => match export.flush() {
                Ok(()) => simple_reply(0, req.cookie).to_vec(),
                Err(e) => io_error("flush", e),
            },
            CMD_BLOCK_STATUS => {
                if !n.allocation {
                    return fail(EINVAL, "select the base:allocation context first");
                }
                if req.length == 0 {
                    return fail(EINVAL, "block status of 0 bytes");
                }
                let extents = match export.extents(req.offset, req.offset + req.length as u64) {
                    Ok(x) => x,
                    Err(e) => return io_error("block status", e),
                };
                let take = if req.flags & CMD_FLAG_REQ_ONE != 0 {
                    1
                } else {
                    extents.len()
                };
                let mut d = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                for e in extents.iter().take(take) {
                    d.extend_from_slice(&((e.end - e.start) as u32).to_be_bytes());
                    let flags = if e.hole { STATE_HOLE | STATE_ZERO } else { 0 };
                    d.extend_from_slice(&flags.to_be_bytes());
                }
                let mut b =
                    structured_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, req.cookie, d.len() as u32).to_vec();
                b.extend_from_slice(&d);
                b
            }
            _ => fail(ENOTSUP, "command not supported by lifeline serve"),
        }
    }
}
