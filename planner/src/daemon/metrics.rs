//! What the daemon reports to Prometheus: [`Metrics`], a registry of gauges,
//! counters and summaries; [`serve`], a minimal HTTP/1.1 server for `/metrics`;
//! and [`parse_exposition`], a strict parser of what it serves, for tests.
//!
//! # Metrics
//!
//! A family (one metric name) has a help text, a type and one series per label
//! set. Label order does not matter: `[("group", "db"), ("site", "b")]` and the
//! reverse are the same series. A duration is a summary without quantiles: its
//! `NAME_sum` and `NAME_count`, from which Prometheus computes rates and means.
//! Families are rendered sorted by name and series sorted by labels, so output
//! is deterministic and diffable.
//!
//! Names and label names are chosen by code, not by users, so an invalid one, or
//! a name reused with another type, is a bug and panics (see each method's
//! *Panics*); label *values* are data and may hold anything. A counter
//! increment or an observed duration that is negative or not finite is dropped
//! with a warning: counters only go up, and one bad clock reading should not
//! poison a rate.
//!
//! # Text format
//!
//! [`Metrics::render`] writes the Prometheus text exposition format 0.0.4:
//! `# HELP` and `# TYPE` once per family, then its samples, each line ended by
//! a newline; label values escape `\`, `"` and newline as `\\`, `\"`, `\n`
//! (help texts escape `\` and newline); values are `NaN`, `+Inf`, `-Inf` or
//! Rust's shortest round-trip decimal, which Prometheus (Go's `ParseFloat`) reads
//! back exactly.
//!
//! # The endpoint
//!
//! [`serve`] answers `GET /metrics` (and `HEAD`) with the rendered registry,
//! `GET /` with a pointer to it, other paths with 404, other methods with 405 and
//! anything it cannot read with 400. One request per connection: the response
//! says `Connection: close` and the server closes. A client gets at most 8 KiB
//! and 5 seconds to send its request head (408 after that), and a bounded
//! number of connections are served at once, so slow or hostile clients cannot
//! pin the daemon. On shutdown the server stops accepting and drops open
//! connections; scrapes are short and Prometheus retries.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Summary => "summary",
        }
    }
}

/// Label pairs sorted by name: the identity of a series within its family.
type LabelSet = Vec<(String, String)>;

/// A gauge's or counter's value is `value`; a summary's sum is `value` and its
/// number of observations `count`.
#[derive(Debug, Default, Clone, Copy)]
struct Series {
    value: f64,
    count: u64,
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<LabelSet, Series>,
}

/// A thread-safe registry of metric families; share it as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Sets a gauge series to `value` (any float, `NaN` included).
    ///
    /// # Panics
    /// If `name` or a label name is not a valid Prometheus name, a label name
    /// repeats, or `name` is already registered with another type.
    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.update(name, help, Kind::Gauge, labels, |s| s.value = value);
    }

    /// Adds `by` to a counter series, which starts at zero. A negative or
    /// non-finite `by` is dropped with a warning. Counter names conventionally
    /// end in `_total`.
    ///
    /// # Panics
    /// As [`Metrics::set_gauge`].
    pub fn inc_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], by: f64) {
        if !(by.is_finite() && by >= 0.0) {
            tracing::warn!(
                metric = name,
                by,
                "counter increment dropped: counters only go up by finite amounts"
            );
            return;
        }
        self.update(name, help, Kind::Counter, labels, |s| s.value += by);
    }

    /// Records one duration of `secs` seconds in a summary series (rendered as
    /// `name_sum` and `name_count`). Name it for its unit, e.g.
    /// `lifeline_cycle_duration_seconds`. A negative or non-finite duration is
    /// dropped with a warning.
    ///
    /// # Panics
    /// As [`Metrics::set_gauge`].
    pub fn observe_duration(&self, name: &str, help: &str, labels: &[(&str, &str)], secs: f64) {
        if !(secs.is_finite() && secs >= 0.0) {
            tracing::warn!(
                metric = name,
                secs,
                "duration observation dropped: not a finite, non-negative time"
            );
            return;
        }
        self.update(name, help, Kind::Summary, labels, |s| {
            s.value += secs;
            s.count += 1;
        });
    }

    fn update(&self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], apply: impl FnOnce(&mut Series)) {
        assert!(
            valid_metric_name(name),
            "metric name `{name}` is not valid: use [a-zA-Z_:][a-zA-Z0-9_:]*"
        );
        let mut key: LabelSet = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        key.sort();
        for (i, (label, _)) in key.iter().enumerate() {
            assert!(
                valid_label_name(label),
                "label name `{label}` of metric `{name}` is not valid: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
            );
            assert!(
                i == 0 || key[i - 1].0 != *label,
                "label `{label}` given twice for metric `{name}`"
            );
        }
        // A panic elsewhere while the lock was held cannot leave a half-made
        // update (each is one assignment), so a poisoned registry is still good.
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        assert!(
            family.kind == kind,
            "metric `{name}` is a {}; it cannot also be a {}",
            family.kind.name(),
            kind.name()
        );
        apply(family.series.entry(key).or_default());
    }

    /// The registry in the text exposition format 0.0.4 (see the module docs).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
            for (labels, series) in &family.series {
                let labels = render_labels(labels);
                match family.kind {
                    Kind::Gauge | Kind::Counter => {
                        let _ = writeln!(out, "{name}{labels} {}", format_value(series.value));
                    }
                    Kind::Summary => {
                        let _ = writeln!(out, "{name}_sum{labels} {}", format_value(series.value));
                        let _ = writeln!(out, "{name}_count{labels} {}", series.count);
                    }
                }
            }
        }
        out
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn render_labels(labels: &LabelSet) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
            )
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// `NaN`, `+Inf`, `-Inf`, or the shortest decimal that reads back as `v`
/// (Rust's `Display` for f64 never uses an exponent, which Go parses fine).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        v.to_string()
    }
}

/// One sample of a scrape. A timestamp, if the line had one, is checked and
/// dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format 0.0.4 strictly, for tests and the daemon's
/// scrape test: every line must be a `# HELP`, a `# TYPE`, another comment, an
/// empty line or a well-formed sample, and the text must end with a newline.
/// It also refuses a second `# HELP` or `# TYPE` for a name, a `# TYPE` after
/// its family's samples, a family whose samples are not together, the same
/// series twice, and summaries and histograms without their `quantile` / `le`.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>> {
    if !text.is_empty() && !text.ends_with('\n') {
        bail!("the text does not end with a newline");
    }
    let mut parser = Exposition::default();
    for (i, line) in text.split_terminator('\n').enumerate() {
        parser
            .line(line)
            .map_err(|e| anyhow!("line {}: {e}: {line:?}", i + 1))?;
    }
    Ok(parser.samples)
}

#[derive(Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: HashSet<String>,
    /// Families that have samples, and the one whose samples came last.
    started: HashSet<String>,
    current: Option<String>,
    series: HashSet<(String, Vec<(String, String)>)>,
}

impl Exposition {
    fn line(&mut self, line: &str) -> Result<()> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        let sample = parse_sample(line)?;
        let family = self.family_of(&sample.name);
        match self.types.get(&family).map(String::as_str) {
            Some("summary") if sample.name == family && !sample.labels.contains_key("quantile") => {
                bail!("a summary's sample `{family}` needs a `quantile` label")
            }
            Some("histogram") if sample.name == format!("{family}_bucket") && !sample.labels.contains_key("le") => {
                bail!("a histogram's `{family}_bucket` sample needs an `le` label")
            }
            Some("histogram") if sample.name == family => bail!("a histogram has no sample named `{family}` itself"),
            _ => {}
        }
        if self.current.as_deref() != Some(family.as_str()) {
            if !self.started.insert(family.clone()) {
                bail!("the samples of `{family}` are not together");
            }
            self.current = Some(family);
        }
        let key = (
            sample.name.clone(),
            sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        if !self.series.insert(key) {
            bail!("the same series appears twice");
        }
        self.samples.push(sample);
        Ok(())
    }

    /// The family a sample belongs to: its own name, or the summary or
    /// histogram it is the `_sum`, `_count` or `_bucket` of.
    fn family_of(&self, name: &str) -> String {
        for suffix in ["_sum", "_count", "_bucket"] {
            if let Some(base) = name.strip_suffix(suffix) {
                match self.types.get(base).map(String::as_str) {
                    Some("histogram") => return base.to_owned(),
                    Some("summary") if suffix != "_bucket" => return base.to_owned(),
                    _ => {}
                }
            }
        }
        name.to_owned()
    }

    fn comment(&mut self, comment: &str) -> Result<()> {
        let mut words = comment.trim_start_matches([' ', '\t']).splitn(2, [' ', '\t']);
        let keyword = words.next().unwrap_or_default();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let rest = words.next().unwrap_or_default().trim_start_matches([' ', '\t']);
        let (name, tail) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        if !valid_metric_name(name) {
            bail!("`{name}` is not a metric name");
        }
        if self.started.contains(name) {
            bail!("# {keyword} for `{name}` after its samples");
        }
        if keyword == "HELP" {
            unescape(tail, false)?;
            if !self.helps.insert(name.to_owned()) {
                bail!("a second # HELP for `{name}`");
            }
            return Ok(());
        }
        let kind = tail.trim_matches([' ', '\t']);
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            bail!("`{kind}` is not a type: counter, gauge, histogram, summary or untyped");
        }
        if self.types.insert(name.to_owned(), kind.to_owned()).is_some() {
            bail!("a second # TYPE for `{name}`");
        }
        Ok(())
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        bail!("`{name}` is not a metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    if rest.trim_matches([' ', '\t']).is_empty() {
        bail!("no value");
    }
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    if !rest.starts_with([' ', '\t']) {
        bail!("the value must follow the name or labels after a space");
    }
    let value = fields.next().ok_or_else(|| anyhow!("no value"))?;
    let value = parse_value(value).ok_or_else(|| anyhow!("`{value}` is not a number"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| anyhow!("`{timestamp}` is not a timestamp in milliseconds"))?;
    }
    if let Some(extra) = fields.next() {
        bail!("unexpected `{extra}` after the value and timestamp");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (after the `{`), returning what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("a label needs `name=\"value\"`"))?;
        if !valid_label_name(name) {
            bail!("`{name}` is not a label name");
        }
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| anyhow!("the value of label `{name}` is not quoted"))?;
        let end = closing_quote(rest).ok_or_else(|| anyhow!("the value of label `{name}` is not closed"))?;
        let value = unescape(&rest[..end], true)?;
        if labels.insert(name.to_owned(), value).is_some() {
            bail!("label `{name}` appears twice");
        }
        s = &rest[end + 1..];
        match s.as_bytes().first() {
            Some(b',') => s = &s[1..],
            Some(b'}') => {}
            _ => bail!("labels are separated by `,` and closed by `}}`"),
        }
    }
}

/// The index of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Undoes `\\` and `\n` (and `\"` in label values); any other escape is an error.
fn unescape(s: &str, quotes: bool) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => bail!("`\\{other}` is not an escape here"),
            None => bail!("a lone `\\` at the end"),
        }
    }
    Ok(out)
}

/// A sample value as Go's `ParseFloat` reads it in Prometheus: decimals, `NaN`
/// and (signed) `Inf`.
fn parse_value(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = ["nan", "inf", "infinity"]
        .iter()
        .any(|w| digits.eq_ignore_ascii_case(w));
    if !word && !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse().ok()
}

/// How long a client may take, and how much it may send, before the server
/// gives up on it.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_head: usize,
    head_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// Serves `metrics` over HTTP on `listener` until `shutdown` completes (see the
/// module docs). Tests bind `127.0.0.1:0` and pass the listener in.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, metrics, shutdown, Limits::default()).await;
}

async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>, limits: Limits) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= limits.max_connections {
            tokio::select! {
                () = &mut shutdown => break,
                _ = connections.join_next() => continue,
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(answer(stream, metrics.clone(), limits));
                }
                Err(e) => {
                    // Out of file descriptors, typically: back off rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

enum HeadError {
    TooLarge,
    Closed,
}

/// Reads one request, writes one response and closes the connection.
async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>, limits: Limits) {
    let response = match tokio::time::timeout(limits.head_timeout, read_head(&mut stream, limits.max_head)).await {
        Err(_) => Response::text(408, "Request Timeout", "timed out reading the request\n"),
        Ok(Err(HeadError::TooLarge)) => Response::text(
            400,
            "Bad Request",
            &format!("request head longer than {} bytes\n", limits.max_head),
        ),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Ok(head)) => route(&head, &metrics),
    };
    let _ = tokio::time::timeout(limits.write_timeout, respond(&mut stream, &response)).await;
}

/// Reads up to the empty line that ends the request head (CRLF CRLF, or LF LF
/// from lenient clients) and returns the head without it.
async fn read_head(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        head.extend_from_slice(&chunk[..n]);
        let end = [&b"\r\n\r\n"[..], b"\n\n"]
            .iter()
            .filter_map(|sep| {
                head.windows(sep.len())
                    .position(|w| w == *sep)
                    .map(|at| (at, at + sep.len()))
            })
            .min();
        match end {
            Some((at, len)) if len <= max => {
                head.truncate(at);
                return Ok(head);
            }
            _ if head.len() >= max => return Err(HeadError::TooLarge),
            _ => {}
        }
    }
}

/// Writes the response, then closes: our side first (FIN), then reading what
/// the client still sends until it closes too, briefly, so that unread request
/// bytes do not make the kernel reset the connection and lose the response.
async fn respond(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            total += n;
            if total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    allow: bool,
    body: Vec<u8>,
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            allow: status == 405,
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// Parses the request head and picks the response.
fn route(head: &[u8], metrics: &Metrics) -> Response {
    let bad = |why: &str| Response::text(400, "Bad Request", &format!("{why}\n"));
    let Ok(head) = std::str::from_utf8(head) else {
        return bad("the request head is not UTF-8");
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return bad("the request line is not `METHOD /path HTTP/1.1`");
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return bad("only HTTP/1.0 and HTTP/1.1 are served");
    }
    if !target.starts_with('/') || method.is_empty() {
        return bad("the request line is not `METHOD /path HTTP/1.1`");
    }
    for header in lines {
        let Some((name, _)) = header.split_once(':') else {
            return bad("a header line has no `:`");
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return bad("a header name is empty or has spaces");
        }
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let mut response = match path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            allow: false,
            body: Vec::new(),
            head_only: false,
        },
        "/" => Response::text(200, "OK", "Lifeline daemon\n\nPrometheus metrics: /metrics\n"),
        _ => return Response::text(404, "Not Found", "not found; the metrics are at /metrics\n"),
    };
    match method {
        "GET" | "HEAD" => {
            if path == "/metrics" {
                response.body = metrics.render().into_bytes();
            }
            response.head_only = method == "HEAD";
            response
        }
        _ => Response::text(405, "Method Not Allowed", "only GET and HEAD are served\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::sync::oneshot;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            value,
        }
    }

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::new();
        m.set_gauge(
            "lifeline_rpo_seconds",
            "Age of the newest point.",
            &[("group", "db")],
            12.5,
        );
        m.set_gauge(
            "lifeline_rpo_seconds",
            "ignored: the first help wins",
            &[("group", "app")],
            f64::NAN,
        );
        m.inc_counter(
            "lifeline_points_total",
            "Points taken.\nBy group.",
            &[("site", "b"), ("group", "db")],
            1.0,
        );
        m.inc_counter("lifeline_points_total", "", &[("group", "db"), ("site", "b")], 2.0);
        m.observe_duration("lifeline_cycle_duration_seconds", "Cycle time.", &[], 1.5);
        m.observe_duration("lifeline_cycle_duration_seconds", "Cycle time.", &[], 0.25);
        m.set_gauge("lifeline_up", "C:\\path", &[], f64::INFINITY);
        m.set_gauge("a_first", "Sorted by name.", &[], -0.0);
        m.inc_counter("lifeline_points_total", "", &[("group", "db"), ("site", "b")], -1.0); // dropped
        m.inc_counter("lifeline_points_total", "", &[("group", "db"), ("site", "b")], f64::NAN); // dropped
        let want = "\
# HELP a_first Sorted by name.
# TYPE a_first gauge
a_first -0
# HELP lifeline_cycle_duration_seconds Cycle time.
# TYPE lifeline_cycle_duration_seconds summary
lifeline_cycle_duration_seconds_sum 1.75
lifeline_cycle_duration_seconds_count 2
# HELP lifeline_points_total Points taken.\\nBy group.
# TYPE lifeline_points_total counter
lifeline_points_total{group=\"db\",site=\"b\"} 3
# HELP lifeline_rpo_seconds Age of the newest point.
# TYPE lifeline_rpo_seconds gauge
lifeline_rpo_seconds{group=\"app\"} NaN
lifeline_rpo_seconds{group=\"db\"} 12.5
# HELP lifeline_up C:\\\\path
# TYPE lifeline_up gauge
lifeline_up +Inf
";
        assert_eq!(m.render(), want);
        assert_eq!(Metrics::new().render(), "");
    }

    #[test]
    fn render_parse_round_trip() {
        let awkward = [
            "",
            "plain",
            "back\\slash",
            "\"quoted\"",
            "new\nline",
            "\\n is not a newline",
            "trailing backslash \\",
            "{braces}, commas, = signs",
            "ünïcødé ✓",
            "\\\"\n\\",
        ];
        let values = [
            0.0,
            -0.0,
            0.1,
            -3.5,
            1e300,
            5e-324,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        let m = Metrics::new();
        let mut want = Vec::new();
        for (i, (label, value)) in awkward.iter().zip(values).enumerate() {
            let idx = i.to_string();
            m.set_gauge("g", "Gauge \\ with\nhelp.", &[("v", label), ("i", &idx)], value);
            want.push(sample("g", &[("i", &idx), ("v", label)], value));
        }
        m.observe_duration("d_seconds", "", &[("v", awkward[4])], 2.0);
        want.push(sample("d_seconds_sum", &[("v", awkward[4])], 2.0));
        want.push(sample("d_seconds_count", &[("v", awkward[4])], 1.0));
        let mut got = parse_exposition(&m.render()).unwrap();
        let key = |s: &Sample| (s.name.clone(), s.labels.clone().into_iter().collect::<Vec<_>>());
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.name, &g.labels), (&w.name, &w.labels));
            assert!(
                g.value.to_bits() == w.value.to_bits() || (g.value.is_nan() && w.value.is_nan()),
                "{g:?}"
            );
        }
    }

    #[test]
    fn parser_accepts_the_format_as_written_by_others() {
        let text = "# A comment\n\n# HELP x Some \\\\ help\n# TYPE x counter\nx{a=\"1\",} 1 1700000000000\n\
                    x{a=\"2\"}\t2\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1e-3\nh_count 2\nplain -Inf\nn nan\n";
        let got = parse_exposition(text).unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x", "x", "s", "s_sum", "s_count", "h_bucket", "h_sum", "h_count", "plain", "n"
            ]
        );
        assert_eq!(got[0], sample("x", &[("a", "1")], 1.0));
        assert_eq!(got[7].value, 2.0);
        assert_eq!(got[8].value, f64::NEG_INFINITY);
        assert_eq!(parse_exposition("").unwrap(), []);
    }

    #[test]
    fn parser_rejects_malformed_text() {
        let cases = [
            ("x 1", "does not end with a newline"),
            ("x\n", "no value"),
            ("x 1 2 3\n", "unexpected `3`"),
            ("x one\n", "`one` is not a number"),
            ("x 0x10\n", "not a number"),
            ("x 1 1.5\n", "not a timestamp"),
            ("1x 1\n", "`1x` is not a metric name"),
            ("x-y 1\n", "`x-y` is not a metric name"),
            ("x{a=1} 1\n", "not quoted"),
            ("x{a=\"1} 1\n", "not closed"),
            ("x{a=\"1\" b=\"2\"} 1\n", "separated by `,`"),
            ("x{a=\"1\",a=\"2\"} 1\n", "appears twice"),
            ("x{a=\"\\t\"} 1\n", "not an escape"),
            ("x{__name__=\"x\"} 1\n", "not a label name"),
            ("x{a=\"1\"}1\n", "after a space"),
            ("x 1\r\n", "not a number"),
            ("x 1\nx 2\n", "same series appears twice"),
            ("x 1\ny 1\nx{a=\"b\"} 1\n", "samples of `x` are not together"),
            ("# TYPE x gauge\n# TYPE x gauge\nx 1\n", "a second # TYPE"),
            ("# HELP x a\n# HELP x b\n", "a second # HELP"),
            ("x 1\n# TYPE x gauge\n", "after its samples"),
            ("# TYPE x meter\n", "`meter` is not a type"),
            ("# HELP x bad \\q\n", "not an escape"),
            ("# TYPE s summary\ns 1\n", "needs a `quantile` label"),
            ("# TYPE h histogram\nh_bucket 1\n", "needs an `le` label"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse_exposition(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        /// Any label value and any float survive render and parse.
        #[test]
        fn any_label_value_round_trips(value in "(\\PC|\n)*", v in proptest::num::f64::ANY) {
            let m = Metrics::new();
            m.set_gauge("g", "help \\ \n", &[("l", &value)], v);
            let got = parse_exposition(&m.render()).unwrap();
            proptest::prop_assert_eq!(got.len(), 1);
            proptest::prop_assert_eq!(&got[0].labels["l"], &value);
            proptest::prop_assert!(got[0].value.to_bits() == v.to_bits() || (v.is_nan() && got[0].value.is_nan()));
        }

        /// The request parser answers any head, never panics.
        #[test]
        fn any_request_head_gets_an_answer(head in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let status = route(&head, &Metrics::new()).status;
            proptest::prop_assert!([200, 400, 404, 405].contains(&status));
        }

        /// The exposition parser refuses or accepts, never panics.
        #[test]
        fn any_text_parses_or_fails(text in "[a-z_{}=\",# \\\\\n0-9.+-]{0,200}") {
            let _ = parse_exposition(&text);
        }
    }

    #[test]
    #[should_panic(expected = "metric `x` is a gauge; it cannot also be a counter")]
    fn a_name_keeps_its_type() {
        let m = Metrics::new();
        m.set_gauge("x", "", &[], 1.0);
        m.inc_counter("x", "", &[], 1.0);
    }

    #[test]
    #[should_panic(expected = "label name `bad-label` of metric `x` is not valid")]
    fn label_names_are_checked() {
        Metrics::new().set_gauge("x", "", &[("bad-label", "v")], 1.0);
    }

    /// A server on 127.0.0.1:0 and the means to stop it.
    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(metrics: Arc<Metrics>, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            metrics,
            async {
                let _ = stopped.await;
            },
            limits,
        ));
        Server { addr, stop, task }
    }

    impl Server {
        async fn stop(self) {
            self.stop.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    /// Sends `request` as is and reads until the server closes.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
        read.await.expect("the server closes the connection").unwrap();
        String::from_utf8(response).unwrap()
    }

    /// The status line, the headers (lower-cased names) and the body.
    fn split_response(response: &str) -> (&str, BTreeMap<String, String>, &str) {
        let (head, body) = response.split_once("\r\n\r\n").expect("a complete response head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        (status, headers, body)
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_gauge("lifeline_rpo_seconds", "Age.", &[("group", "d\"b")], 4.0);
        metrics.inc_counter("lifeline_points_total", "Points.", &[("group", "db")], 3.0);
        let server = start(metrics.clone(), Limits::default()).await;

        let response = exchange(server.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").await;
        let (status, headers, body) = split_response(&response);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(headers["content-type"], CONTENT_TYPE);
        assert_eq!(headers["content-length"], body.len().to_string());
        assert_eq!(headers["connection"], "close");
        assert_eq!(
            parse_exposition(body).unwrap(),
            [
                sample("lifeline_points_total", &[("group", "db")], 3.0),
                sample("lifeline_rpo_seconds", &[("group", "d\"b")], 4.0),
            ]
        );

        // The registry is read per request.
        metrics.set_gauge("lifeline_rpo_seconds", "Age.", &[("group", "d\"b")], 5.0);
        let response = exchange(server.addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(
            split_response(&response)
                .2
                .contains("lifeline_rpo_seconds{group=\"d\\\"b\"} 5\n")
        );

        let response = exchange(server.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        let (status, headers, body) = split_response(&response);
        assert_eq!((status, body), ("HTTP/1.1 200 OK", ""));
        assert_eq!(headers["content-length"], metrics.render().len().to_string());
        server.stop().await;
    }

    #[tokio::test]
    async fn answers_other_requests() {
        let server = start(Arc::new(Metrics::new()), Limits::default()).await;
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"GET /metric HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (b"GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (
                b"GET /metrics HTTP/1.1\r\nX-Bytes: \xff\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"GET /metrics HTTP/1.1\n\n", "HTTP/1.1 200 OK"),
        ];
        for (request, want) in cases {
            let response = exchange(server.addr, request).await;
            let (status, headers, body) = split_response(&response);
            assert_eq!(status, *want, "{}", String::from_utf8_lossy(request));
            assert_eq!(headers["content-length"], body.len().to_string());
        }
        let response = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(split_response(&response).2.contains("/metrics"));
        let response = exchange(server.addr, b"DELETE / HTTP/1.1\r\n\r\n").await;
        assert_eq!(split_response(&response).1["allow"], "GET, HEAD");
        server.stop().await;
    }

    #[tokio::test]
    async fn refuses_oversized_and_slow_requests() {
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(Arc::new(Metrics::new()), limits).await;

        let mut big = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        big.resize(9 * 1024, b'a');
        let response = exchange(server.addr, &big).await;
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");

        // A head that fits only with its terminator past 8 KiB is too long too.
        let mut edge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        edge.resize(8 * 1024 - 2, b'a');
        edge.extend_from_slice(b"\r\n\r\n");
        let response = exchange(server.addr, &edge).await;
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");

        // A client that starts a request and stalls is answered and dropped.
        let response = exchange(server.addr, b"GET /metr").await;
        assert!(response.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{response}");

        // A client that sends nothing at all ties up nothing once it times out,
        // and does not block others meanwhile.
        let idle = TcpStream::connect(server.addr).await.unwrap();
        let response = exchange(server.addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
        drop(idle);
        server.stop().await;
    }

    #[tokio::test]
    async fn stops_on_shutdown_with_connections_open() {
        let server = start(Arc::new(Metrics::new()), Limits::default()).await;
        let addr = server.addr;
        let _idle = TcpStream::connect(addr).await.unwrap();
        server.stop().await;
        // The listener is closed with the server.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
