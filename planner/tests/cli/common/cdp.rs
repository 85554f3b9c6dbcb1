//! A small Chrome DevTools Protocol client: starts a real headless Chromium
//! with `--remote-debugging-port=0`, reads its DevTools websocket address from
//! stderr, and sends commands to one page over a flattened session, keeping
//! the events that arrive meanwhile.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The chromium binary, if installed.
pub fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_string)
}

/// A headless Chromium and a session on one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: String,
    /// Events received so far (method, params), in order.
    pub events: Vec<(String, Value)>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `binary` and opens a blank page with the Page, Network,
    /// Runtime and Log domains enabled.
    pub fn start(binary: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium printed no DevTools address within 60 s");
        let hostport = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(&hostport).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket handshake");
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = b.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call_browser("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page.enable", "Network.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}));
        }
        b
    }

    fn read(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            match self.ws.read() {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return None;
                }
                Err(e) => panic!("DevTools websocket: {e}"),
            }
        }
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self
                .read(deadline)
                .unwrap_or_else(|| panic!("no answer to {method} within 30 s"));
            if m["id"] == id {
                if let Some(e) = m.get("error") {
                    panic!("{method}: {e}");
                }
                return m["result"].clone();
            }
            if let Some(ev) = m["method"].as_str() {
                self.events.push((ev.to_string(), m["params"].clone()));
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Waits for event `method` (after any already received, which are
    /// consumed up to it).
    pub fn wait_event(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        if let Some(i) = self.events.iter().position(|(m, _)| m == method) {
            let (_, p) = self.events.remove(i);
            return Some(p);
        }
        let deadline = Instant::now() + timeout;
        while let Some(m) = self.read(deadline) {
            if let Some(ev) = m["method"].as_str() {
                if ev == method {
                    return Some(m["params"].clone());
                }
                self.events.push((ev.to_string(), m["params"].clone()));
            }
        }
        None
    }

    /// Navigates and waits for the load event.
    pub fn navigate(&mut self, url: &str) {
        self.events.retain(|(m, _)| m != "Page.loadEventFired");
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait_event("Page.loadEventFired", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{url} did not load within 30 s"));
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `js` until it is true, or panics with `what` after `timeout`.
    pub fn wait_true(&mut self, js: &str, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.eval(js) == json!(true) {
                return;
            }
            // Keep reading events meanwhile.
            let _ = self.wait_event("(none)", Duration::from_millis(200));
        }
        panic!("{what}: not within {timeout:?}");
    }

    /// The page's HTML as the DOM holds it (works with script disabled).
    pub fn outer_html(&mut self) -> String {
        let doc = self.call("DOM.getDocument", json!({"depth": 0}));
        let root = doc["root"]["nodeId"].clone();
        self.call("DOM.getOuterHTML", json!({"nodeId": root}))["outerHTML"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A PNG screenshot of the page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64_decode as b64;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        b64(r["data"].as_str().unwrap())
    }
}

/// Standard base64 (what DevTools sends screenshots in).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
