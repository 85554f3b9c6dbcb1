//! The console's router: pages, the JSON API (`/api/v1/`), the event stream,
//! the admin actions, the embedded assets and `/metrics`, behind
//! [`super::auth`], with security headers on every answer:
//! `Content-Security-Policy` (nothing but this origin's own script and style;
//! a signed report is framed sandboxed, without script), `X-Content-Type-Options`,
//! `Referrer-Policy` and `Cache-Control: no-store`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::actions::{self, ApproveError, ConsoleAction};
use super::auth::{self, PeerIdentity, Role};
use super::{Console, pages, views};
use crate::daemon::feed::RPO_HISTORY;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's own pages: this origin's script and style only, no inline
/// script, frames only from this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";
/// A signed report.html: self-contained, its inline style allowed, no script,
/// framed only by the console.
const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'self'; sandbox";
/// An event stream ends after this (the browser's EventSource reconnects), so
/// no connection lives unbounded.
const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// How often an idle event stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest body read (the login form).
const MAX_BODY: usize = 4096;

type Shared = State<Arc<Console>>;

/// The console's router over `console`.
pub fn router(console: Arc<Console>) -> Router {
    let mut r = Router::new()
        .route("/", get(overview))
        .route("/groups/{name}", get(group_page))
        .route("/drills", get(drills_page))
        .route("/drills/{id}", get(drill_page))
        .route("/drills/{id}/report.html", get(report_html))
        .route("/jobs", get(jobs_page))
        .route("/login", get(login_page).post(login))
        .route("/assets/console.css", get(|| asset(CSS, "text/css; charset=utf-8")))
        .route(
            "/assets/console.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
        .route("/api/v1/groups", get(api_groups))
        .route("/api/v1/groups/{name}", get(api_group))
        .route("/api/v1/groups/{name}/points", get(api_points))
        .route("/api/v1/groups/{name}/rpo", get(api_rpo))
        .route("/api/v1/groups/{name}/drill", post(action_drill))
        .route("/api/v1/groups/{name}/pause", post(action_pause))
        .route("/api/v1/groups/{name}/resume", post(action_resume))
        .route("/api/v1/runs", get(api_runs))
        .route("/api/v1/runs/{id}/approve", post(action_approve))
        .route("/api/v1/drills", get(api_drills))
        .route("/api/v1/drills/{id}", get(api_drill))
        .route("/api/v1/jobs", get(api_jobs))
        .route("/api/v1/events", get(api_events));
    if console.metrics.is_some() {
        r = r.route("/metrics", get(metrics));
    }
    r.fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An API error: `{"error": "...", "status": N}`.
#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
    status: u16,
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    json(
        status,
        &ApiError {
            error: message.to_string(),
            status: status.as_u16(),
        },
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        api_error(StatusCode::NOT_FOUND, "no such API route; see /api/v1/groups")
    } else {
        html(StatusCode::NOT_FOUND, pages::error(404, "No such page."))
    }
}

/// A caller allowed to read: any role. Rejects with 401 (JSON under
/// `/api/`, the login page elsewhere).
struct Reader(Role);

/// A caller allowed to act: `admin`, on a same-origin request.
struct Admin(String);

fn who(parts: &Parts) -> Option<&PeerIdentity> {
    parts.extensions.get::<PeerIdentity>()
}

impl FromRequestParts<Arc<Console>> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Self::Rejection> {
        match c.auth.role(&parts.headers, who(parts)) {
            Ok(role) => Ok(Reader(role)),
            Err(why) => Err(
                if parts.uri.path().starts_with("/api/") || parts.uri.path() == "/metrics" {
                    let mut r = api_error(StatusCode::UNAUTHORIZED, why);
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    r
                } else {
                    html(StatusCode::UNAUTHORIZED, pages::login(Some(why)))
                },
            ),
        }
    }
}

impl FromRequestParts<Arc<Console>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Arc<Console>) -> Result<Self, Self::Rejection> {
        let Reader(role) = Reader::from_request_parts(parts, c).await?;
        match role {
            Role::Admin => {}
            Role::Auditor => {
                return Err(api_error(
                    StatusCode::FORBIDDEN,
                    "the auditor role reads; actions need the admin role",
                ));
            }
            Role::Local => {
                return Err(api_error(
                    StatusCode::FORBIDDEN,
                    "actions need the admin role: configure http_token_file or client certificates",
                ));
            }
        }
        auth::same_origin(&parts.headers).map_err(|why| api_error(StatusCode::FORBIDDEN, why))?;
        let name = match who(parts) {
            Some(PeerIdentity(Some(cn))) => cn.clone(),
            _ => "admin token".to_string(),
        };
        Ok(Admin(name))
    }
}

fn now(c: &Console) -> DateTime<Utc> {
    (c.now)()
}

async fn overview(State(c): Shared, _r: Reader) -> Response {
    let now = now(&c);
    let since = now.timestamp() - RPO_HISTORY.as_secs() as i64;
    let groups: Vec<_> = views::groups(&c)
        .into_iter()
        .map(|g| {
            let rpo = c.feed.rpo_since(&g.name, since);
            (g, rpo)
        })
        .collect();
    html(StatusCode::OK, pages::overview(&groups, &c.backend.site(), now))
}

async fn group_page(State(c): Shared, _r: Reader, Path(name): Path<String>) -> Response {
    let Some(g) = views::group(&c, &name) else {
        return html(StatusCode::NOT_FOUND, pages::error(404, &format!("No group `{name}`.")));
    };
    let now = now(&c);
    let points = c.backend.points(&name);
    let drills: Vec<_> = c
        .drills
        .all()
        .iter()
        .filter(|d| d.report.group == name)
        .map(|d| views::DrillSummary::of(d))
        .collect();
    let rpo = c.feed.rpo_since(&name, now.timestamp() - RPO_HISTORY.as_secs() as i64);
    html(StatusCode::OK, pages::group(&g, points.as_deref(), &drills, &rpo, now))
}

async fn drills_page(State(c): Shared, _r: Reader) -> Response {
    let drills: Vec<_> = c.drills.all().iter().map(|d| views::DrillSummary::of(d)).collect();
    html(StatusCode::OK, pages::drills(&drills))
}

async fn drill_page(State(c): Shared, _r: Reader, Path(id): Path<String>) -> Response {
    match c.drills.get(&id) {
        Some(d) => html(StatusCode::OK, pages::drill(&d)),
        None => html(StatusCode::NOT_FOUND, pages::error(404, &format!("No drill `{id}`."))),
    }
}

async fn report_html(State(c): Shared, _r: Reader, Path(id): Path<String>) -> Response {
    let Some(d) = c.drills.get(&id) else {
        return html(StatusCode::NOT_FOUND, pages::error(404, &format!("No drill `{id}`.")));
    };
    match std::fs::read(d.dir.join("report.html")) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, REPORT_CSP),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => html(
            StatusCode::NOT_FOUND,
            pages::error(404, &format!("The drill's report.html cannot be read: {e}")),
        ),
    }
}

async fn jobs_page(State(c): Shared, _r: Reader) -> Response {
    let (running, recent) = c.feed.jobs();
    // The page reads without the planner's runs when they cannot be had.
    let runs = planner_runs(&c).await.unwrap_or_default();
    html(StatusCode::OK, pages::jobs(&views::JobsView { running, recent }, &runs))
}

/// The runs of the planner in the daemon's state directory that have not
/// finished (none when the console acts on no planner).
async fn planner_runs(c: &Console) -> Result<Vec<actions::RunView>, String> {
    let Some(state) = c.backend.planner_state_dir() else {
        return Ok(Vec::new());
    };
    tokio::task::spawn_blocking(move || actions::running(&state))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))
}

async fn login_page() -> Response {
    html(StatusCode::OK, pages::login(None))
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_value(body: &str, key: &str) -> Option<String> {
    let raw = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn login(State(c): Shared, headers: HeaderMap, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return html(
            StatusCode::PAYLOAD_TOO_LARGE,
            pages::login(Some("The form is too large.")),
        );
    };
    let token = form_value(&String::from_utf8_lossy(&bytes), "token").unwrap_or_default();
    let token = token.trim();
    if c.auth.token_role(token).is_none() || token.contains([';', ',', '"', '\\']) {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some("That token is not this console's.")),
        );
    }
    let secure = headers.get("x-forwarded-proto").is_some() || c.auth.client_certs;
    let cookie = format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/{}",
        auth::COOKIE,
        if secure { "; Secure" } else { "" }
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn metrics(State(c): Shared, _r: Reader) -> Response {
    match &c.metrics {
        Some(m) => (
            [(header::CONTENT_TYPE, crate::daemon::metrics::CONTENT_TYPE)],
            m.render(),
        )
            .into_response(),
        None => not_found(Uri::from_static("/metrics")).await,
    }
}

async fn api_groups(State(c): Shared, _r: Reader) -> Response {
    json(StatusCode::OK, &views::groups(&c))
}

fn unknown_group(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        &format!("no group `{name}` in the configuration"),
    )
}

async fn api_group(State(c): Shared, _r: Reader, Path(name): Path<String>) -> Response {
    match views::group(&c, &name) {
        Some(g) => json(StatusCode::OK, &g),
        None => unknown_group(&name),
    }
}

async fn api_points(State(c): Shared, _r: Reader, Path(name): Path<String>) -> Response {
    if !c.backend.config().groups.contains_key(&name) {
        return unknown_group(&name);
    }
    match c.backend.points(&name) {
        Some(points) => json(StatusCode::OK, &views::PointsView { group: name, points }),
        None => api_error(
            StatusCode::NOT_FOUND,
            &format!("this daemon does not reach group `{name}`'s repository: ask the daemon of the site that owns it"),
        ),
    }
}

/// `since`: an RFC 3339 instant, or a duration back from now (`90m`, `24h`).
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    match crate::repo_target::parse_duration(raw)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        Some(d) => Ok(now - d),
        None => Err(format!(
            "since=`{raw}` is neither an RFC 3339 time (2026-01-02T03:04:05Z) nor a duration back from now (90m, 24h)"
        )),
    }
}

async fn api_rpo(State(c): Shared, _r: Reader, Path(name): Path<String>, uri: Uri) -> Response {
    if !c.backend.config().groups.contains_key(&name) {
        return unknown_group(&name);
    }
    let now = now(&c);
    let raw = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "since")
        .map(|(_, v)| {
            v.replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%2B", "+")
                .replace("%2b", "+")
        });
    let since = match raw {
        None => now - chrono::Duration::from_std(RPO_HISTORY).unwrap_or_default(),
        Some(raw) => match parse_since(&raw, now) {
            Ok(t) => t,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, &e),
        },
    };
    json(
        StatusCode::OK,
        &views::RpoView {
            group: name.clone(),
            sample_every_seconds: c.feed.sample_every().as_secs(),
            since,
            samples: c
                .feed
                .rpo_since(&name, since.timestamp())
                .into_iter()
                .map(Into::into)
                .collect(),
        },
    )
}

async fn api_drills(State(c): Shared, _r: Reader) -> Response {
    let drills: Vec<_> = c.drills.all().iter().map(|d| views::DrillSummary::of(d)).collect();
    json(StatusCode::OK, &drills)
}

async fn api_drill(State(c): Shared, _r: Reader, Path(id): Path<String>) -> Response {
    match c.drills.get(&id) {
        Some(d) => json(StatusCode::OK, &views::drill(&d)),
        None => api_error(StatusCode::NOT_FOUND, &format!("no drill `{id}`")),
    }
}

async fn api_jobs(State(c): Shared, _r: Reader) -> Response {
    let (running, recent) = c.feed.jobs();
    json(StatusCode::OK, &views::JobsView { running, recent })
}

async fn api_runs(State(c): Shared, _r: Reader) -> Response {
    match planner_runs(&c).await {
        Ok(runs) => json(StatusCode::OK, &actions::RunsView { runs }),
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot list the planner's runs: {e}"),
        ),
    }
}

async fn api_events(State(c): Shared, _r: Reader) -> Response {
    let rx = c.feed.subscribe();
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    let hello = Event::default().event("hello").data("{}");
    let stream = futures_util::stream::unfold((Some(hello), rx), move |(first, mut rx)| async move {
        if let Some(e) = first {
            return Some((Ok::<_, Infallible>(e), (None, rx)));
        }
        let next = tokio::select! {
            () = tokio::time::sleep_until(deadline) => return None,
            // A comment now and then, so proxies and the browser see the stream alive.
            () = tokio::time::sleep(KEEP_ALIVE) => return Some((Ok(Event::default().comment("keep-alive")), (None, rx))),
            next = rx.recv() => next,
        };
        let event = match next {
            Ok(e) => Event::default()
                .event(e.name())
                .data(serde_json::to_string(&e).unwrap_or_default()),
            // Fell behind: the client reloads the state it shows.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("resync").data(format!("{{\"missed\":{n}}}"))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), (None, rx)))
    });
    Sse::new(stream).into_response()
}

/// Records `action` on the planner's audit chain; an answer when it cannot
/// be (then the action is not taken).
async fn record(c: &Console, who: &str, group: &str, action: &str) -> Result<String, Response> {
    let Some(state) = c.backend.planner_state_dir() else {
        return Err(api_error(
            StatusCode::CONFLICT,
            "this console acts on no planner, so it has no audit chain to record actions on",
        ));
    };
    let entry = ConsoleAction {
        action: action.into(),
        group: group.into(),
        by: who.into(),
        site: c.backend.site(),
    };
    match tokio::task::spawn_blocking(move || actions::record(&state, &entry)).await {
        Ok(Ok(recorded)) => Ok(recorded),
        Ok(Err(e)) => Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("not done: the action could not be recorded on the planner's audit chain: {e:#}"),
        )),
        Err(e) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("not done: recording the action failed: {e}"),
        )),
    }
}

fn action_done(c: &Console, who: &str, group: &str, what: &str, audit: &str) -> Response {
    tracing::info!(group, who, what, audit, "console action");
    eprintln!("console: {who}: {what} (group {group}; {audit})");
    c.feed.group_changed(group, what);
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"group": group, "action": what, "by": who, "audit": audit}),
    )
}

async fn action_drill(State(c): Shared, Admin(who): Admin, Path(name): Path<String>) -> Response {
    let config = c.backend.config();
    let Some(g) = config.groups.get(&name) else {
        return unknown_group(&name);
    };
    let site = c.backend.site();
    if g.secondary.as_deref().unwrap_or("secondary") != site {
        return api_error(
            StatusCode::CONFLICT,
            &format!("group `{name}` is drilled on its recovery site's daemon, not on site `{site}`"),
        );
    }
    if g.drill_schedule.is_none() || g.drill_runbook.is_none() {
        return api_error(
            StatusCode::CONFLICT,
            &format!("group `{name}` has no drill job: set drill_schedule and drill_runbook in [groups.{name}]"),
        );
    }
    let audit = match record(&c, &who, &name, "drill now").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    c.feed.request_drill(&name);
    action_done(&c, &who, &name, "drill requested", &audit)
}

async fn set_paused(c: &Console, who: &str, name: &str, paused: bool) -> Response {
    if !c.backend.config().groups.contains_key(name) {
        return unknown_group(name);
    }
    let Some(control) = c.backend.control(name) else {
        return api_error(
            StatusCode::CONFLICT,
            &format!(
                "this daemon does not replicate group `{name}` with a control address: set `control` in \
                 [groups.{name}] on its primary site"
            ),
        );
    };
    let audit = match record(c, who, name, if paused { "pause" } else { "resume" }).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    control.set_paused(paused);
    action_done(c, who, name, if paused { "paused" } else { "resumed" }, &audit)
}

/// `POST /api/v1/runs/ID/approve[?step=STEP]`: the step (or the one step
/// that waits) approved through the running planner's control socket, as
/// `lifeline approve` does; the planner records it on the audit chain
/// (`approved`, by `IDENTITY (console)`) before it answers.
async fn action_approve(State(c): Shared, Admin(who): Admin, Path(run): Path<String>, uri: Uri) -> Response {
    let Some(state) = c.backend.planner_state_dir() else {
        return api_error(
            StatusCode::CONFLICT,
            "this console acts on no planner: nothing to approve",
        );
    };
    let step = uri.query().and_then(|q| form_value(q, "step"));
    let by = format!("{who} (console)");
    let (r, by2) = (run.clone(), by.clone());
    let answer = tokio::task::spawn_blocking(move || actions::approve(&state, &r, step.as_deref(), &by2)).await;
    match answer {
        Ok(Ok(a)) => {
            tracing::info!(run, step = a.step, who, "console approval");
            eprintln!("console: {who}: {}", a.message);
            c.feed
                .group_changed(&a.group, &format!("approved: run {run}, step {}", a.step));
            json(
                StatusCode::OK,
                &serde_json::json!({"run": run, "step": a.step, "group": a.group, "action": "approved", "by": by,
                                    "message": a.message}),
            )
        }
        Ok(Err(e)) => {
            let status = match e {
                ApproveError::NotWaiting(_) => StatusCode::NOT_FOUND,
                ApproveError::Ambiguous(_) | ApproveError::Refused(_) => StatusCode::CONFLICT,
                ApproveError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            api_error(status, &e.to_string())
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the approval failed: {e}")),
    }
}

async fn action_pause(State(c): Shared, Admin(who): Admin, Path(name): Path<String>) -> Response {
    set_paused(&c, &who, &name, true).await
}

async fn action_resume(State(c): Shared, Admin(who): Admin, Path(name): Path<String>) -> Response {
    set_paused(&c, &who, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_back() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(parse_since("90m", now).unwrap(), now - chrono::Duration::minutes(90));
        assert_eq!(
            parse_since("2027-01-15T08:00:00Z", now).unwrap().to_rfc3339(),
            "2027-01-15T08:00:00+00:00"
        );
        assert!(parse_since("yesterday", now).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn form_values() {
        assert_eq!(form_value("a=1&token=ab%2Bc+d", "token").as_deref(), Some("ab+c d"));
        assert_eq!(form_value("token=%zz", "token"), None);
        assert_eq!(form_value("token=%4", "token").as_deref(), Some("%4"));
        assert_eq!(form_value("x=1", "token"), None);
    }
}
